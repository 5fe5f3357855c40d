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
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::backend::Error;

/// Largest response accepted (a corrupt length must not allocate gigabytes).
const MAX_FRAME: usize = 64 << 20;
pub const CLIENT_ID: &str = "kafka-autopilot";

/// A byte stream to a broker: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TLS settings, from the same librdkafka properties the rest of the Kafka client uses
/// (`security.protocol=SSL`, `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`).
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// TLS from librdkafka-style properties; `None` for a plaintext listener. SASL is refused:
    /// this client does not speak it yet.
    pub fn from_properties(properties: &std::collections::BTreeMap<String, String>) -> Result<Option<Tls>, Error> {
        let protocol =
            properties.get("security.protocol").map(|p| p.to_ascii_lowercase()).unwrap_or_else(|| "plaintext".into());
        match protocol.as_str() {
            "plaintext" => return Ok(None),
            "ssl" => {}
            other => {
                return Err(protocol_err(
                    "security.protocol",
                    format!("{other:?} is not supported by the agent's protocol client (PLAINTEXT or SSL)"),
                ))
            }
        }
        let ca = properties
            .get("ssl.ca.location")
            .ok_or_else(|| protocol_err("ssl.ca.location", "required with security.protocol=SSL"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| protocol_err(ca, e))? {
            roots.add(cert.map_err(|e| protocol_err(ca, e))?).map_err(|e| protocol_err(ca, e))?;
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match (properties.get("ssl.certificate.location"), properties.get("ssl.key.location")) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| protocol_err(cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| protocol_err(cert, e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| protocol_err(key, e))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| protocol_err("client certificate", e))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(protocol_err("ssl.certificate.location", "needs ssl.key.location, and the other way round"))
            }
        };
        Ok(Some(Tls { connector: TlsConnector::from(Arc::new(config)) }))
    }
}

fn protocol_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Rejected { message: format!("Kafka TLS {what}: {e}") }
}

/// A Kafka protocol client for admin requests.
#[derive(Clone, Debug)]
pub struct Wire {
    bootstrap: Vec<String>,
    timeout: Duration,
    tls: Option<Tls>,
}

fn protocol(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Rejected { message: format!("{what}: {e}") }
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable { message: format!("{what}: {e}") }
}

async fn send_frame(stream: &mut Box<dyn Io>, body: &[u8]) -> Result<(), Error> {
    let len = i32::try_from(body.len()).map_err(|_| protocol("request", "too large"))?;
    stream.write_all(&len.to_be_bytes()).await.map_err(|e| io("write", e))?;
    stream.write_all(body).await.map_err(|e| io("write", e))
}

async fn read_frame(stream: &mut Box<dyn Io>) -> Result<Bytes, Error> {
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
    stream: Box<dyn Io>,
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
    /// A client for these bootstrap servers, over TLS when `tls` is given.
    pub fn new(bootstrap: Vec<String>, timeout: Duration, tls: Option<Tls>) -> Self {
        Self { bootstrap, timeout, tls }
    }

    async fn open(&self, addr: &str) -> Result<Box<dyn Io>, Error> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| io(&format!("connect {addr}"), e))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok(Box::new(tcp)) };
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
        let name =
            ServerName::try_from(host.to_owned()).map_err(|e| protocol_err(&format!("server name {host}"), e))?;
        let stream =
            tls.connector.connect(name, tcp).await.map_err(|e| io(&format!("TLS handshake with {addr}"), e))?;
        Ok(Box::new(stream))
    }

    async fn connect(&self) -> Result<Connection, Error> {
        let mut last = Error::Unavailable { message: "no bootstrap servers configured".into() };
        for addr in &self.bootstrap {
            match self.open(addr).await {
                Ok(stream) => return Self::handshake(stream).await,
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Negotiate API versions on a fresh connection.
    async fn handshake(stream: Box<dyn Io>) -> Result<Connection, Error> {
        let mut c = Connection { stream, correlation: 0, versions: Vec::new() };
        // ApiVersions v1 is understood by every broker since Kafka 0.10.
        let r: ApiVersionsResponse = c.exchange(&ApiVersionsRequest::default(), 1).await?;
        if r.error_code != 0 {
            return Err(protocol("ApiVersions", format!("error code {}", r.error_code)));
        }
        c.versions = r.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        Ok(c)
    }

    /// Send one request to the broker at `addr` (for requests each broker answers for itself).
    pub async fn call_at<R: Request>(&self, addr: &str, req: &R) -> Result<R::Response, Error> {
        let work = async {
            let mut c = Self::handshake(self.open(addr).await?).await?;
            let v = c.version::<R>()?;
            c.exchange(req, v).await
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| Error::Timeout { after: self.timeout })?
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
