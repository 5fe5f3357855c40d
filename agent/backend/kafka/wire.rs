//! A minimal Kafka protocol client on the `kafka-protocol` crate's types, for the admin APIs
//! librdkafka lacks (KIP-455 reassignments, ElectLeaders, IncrementalAlterConfigs,
//! DescribeCluster). This module only performs I/O.
//!
//! Each call opens a connection to the first bootstrap server that answers, negotiates the
//! version with ApiVersions (the highest both sides support), sends one request and reads one
//! response, all under the configured timeout.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backend::Error;

/// Largest response accepted (a corrupt length must not allocate gigabytes).
const MAX_FRAME: usize = 64 << 20;
pub const CLIENT_ID: &str = "kafka-autopilot";

/// A Kafka protocol client for admin requests.
#[derive(Clone, Debug)]
pub struct Wire {
    bootstrap: Vec<String>,
    timeout: Duration,
}

fn protocol(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Rejected { message: format!("{what}: {e}") }
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable { message: format!("{what}: {e}") }
}

async fn send_frame(stream: &mut TcpStream, body: &[u8]) -> Result<(), Error> {
    let len = i32::try_from(body.len()).map_err(|_| protocol("request", "too large"))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(|e| io("write", e))?;
    stream.write_all(body).await.map_err(|e| io("write", e))
}

async fn read_frame(stream: &mut TcpStream) -> Result<Bytes, Error> {
    let len = stream.read_i32().await.map_err(|e| io("read", e))?;
    let len = usize::try_from(len).map_err(|_| protocol("response", "negative length"))?;
    if len > MAX_FRAME {
        return Err(protocol("response", format!("frame of {len} bytes")));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await.map_err(|e| io("read", e))?;
    Ok(Bytes::from(buf))
}

struct Connection {
    stream: TcpStream,
    correlation: i32,
    versions: Vec<(i16, i16, i16)>,
}

impl Connection {
    async fn exchange<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, Error> {
        let name = ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_else(|()| R::KEY.to_string());
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).map_err(|e| protocol(&name, e))?;
        req.encode(&mut buf, version).map_err(|e| protocol(&name, e))?;
        send_frame(&mut self.stream, &buf).await?;
        let mut frame = read_frame(&mut self.stream).await?;
        let header =
            ResponseHeader::decode(&mut frame, R::Response::header_version(version)).map_err(|e| protocol(&name, e))?;
        if header.correlation_id != self.correlation {
            return Err(protocol(&name, "response to another request"));
        }
        R::Response::decode(&mut frame, version).map_err(|e| protocol(&name, e))
    }

    /// Highest version of `R` both sides support.
    fn version<R: Request>(&self) -> Result<i16, Error> {
        let name = ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_else(|()| R::KEY.to_string());
        let (_, min, max) = self
            .versions
            .iter()
            .find(|(k, _, _)| *k == R::KEY)
            .copied()
            .ok_or_else(|| Error::Rejected { message: format!("the broker does not support {name}") })?;
        let ours = R::VERSIONS;
        let v = max.min(ours.max);
        if v < min.max(ours.min) {
            return Err(Error::Rejected {
                message: format!("no common version of {name} (broker {min}..{max}, agent {ours})"),
            });
        }
        Ok(v)
    }
}

impl Wire {
    /// A client for these bootstrap servers.
    pub fn new(bootstrap: Vec<String>, timeout: Duration) -> Self {
        Self { bootstrap, timeout }
    }

    async fn connect(&self) -> Result<Connection, Error> {
        let mut last = Error::Unavailable { message: "no bootstrap servers configured".into() };
        for addr in &self.bootstrap {
            match TcpStream::connect(addr.as_str()).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let mut c = Connection { stream, correlation: 0, versions: Vec::new() };
                    // ApiVersions v1 is understood by every broker since Kafka 0.10.
                    let r: ApiVersionsResponse = c.exchange(&ApiVersionsRequest::default(), 1).await?;
                    if r.error_code != 0 {
                        return Err(protocol("ApiVersions", format!("error code {}", r.error_code)));
                    }
                    c.versions = r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
                    return Ok(c);
                }
                Err(e) => last = io(&format!("connect {addr}"), e),
            }
        }
        Err(last)
    }

    /// Send one request at the highest common version and return the response.
    pub async fn call<R: Request>(&self, req: &R) -> Result<R::Response, Error> {
        let work = async {
            let mut c = self.connect().await?;
            let v = c.version::<R>()?;
            c.exchange(req, v).await
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| Error::Timeout { after: self.timeout })?
    }

    /// Whether the broker answers this request type (for reporting what a broker can do).
    pub async fn supports<R: Request>(&self) -> Result<bool, Error> {
        let c = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| Error::Timeout { after: self.timeout })??;
        Ok(c.version::<R>().is_ok())
    }
}

/// Kafka error code as text, for messages.
pub fn error_text(code: i16, message: Option<&StrBytes>) -> String {
    let name = kafka_protocol::error::ResponseError::try_from_code(code)
        .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
    match message {
        Some(m) if !m.is_empty() => format!("{name}: {}", m.as_str()),
        _ => name,
    }
}
