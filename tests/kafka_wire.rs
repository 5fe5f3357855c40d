//! The Kafka adapter's protocol client against a protocol-level responder built from the
//! `kafka-protocol` crate's types, for the admin APIs no broker installable here answers:
//! AlterPartitionReassignments, ListPartitionReassignments with real entries, ElectLeaders.
//! (What tansu answers is tested against tansu in `tests/stack_kafka.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use autopilot::backend::kafka::KafkaCluster;
use autopilot::backend::{Error, KafkaAdmin, PartitionTarget};
use autopilot::config::KafkaClientConfig;
use support::responder::Responder;

fn client(r: &Responder) -> KafkaCluster {
    let config = KafkaClientConfig { timeout: Duration::from_secs(5), properties: Default::default() };
    KafkaCluster::new(&[r.addr.to_string()], &config).unwrap()
}

fn key(t: &str, p: i32) -> (String, i32) {
    (t.to_owned(), p)
}

#[tokio::test]
async fn reassignments_are_submitted_listed_cancelled_and_completed() {
    let r = Responder::start(5, "events", 4).await;
    let k = client(&r);
    let moves = vec![
        PartitionTarget { topic: "events".into(), partition: 0, replicas: vec![3, 1, 2] },
        PartitionTarget { topic: "events".into(), partition: 1, replicas: vec![4, 2, 3] },
    ];
    k.reassign(&moves).await.unwrap();
    let listed = k.reassignments().await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].target, vec![3, 1, 2], "the target excludes the replicas being removed");

    k.cancel_reassignments(&[key("events", 1)]).await.unwrap();
    assert_eq!(k.reassignments().await.unwrap().len(), 1);
    // Cancelling what is not moving is not an error (it may have just finished).
    k.cancel_reassignments(&[key("events", 1)]).await.unwrap();

    r.complete_reassignments();
    assert!(k.reassignments().await.unwrap().is_empty());
    assert_eq!(r.state.lock().unwrap().replicas[&key("events", 0)], vec![3, 1, 2]);
}

#[tokio::test]
async fn refused_reassignments_name_the_partition_and_the_reason() {
    let r = Responder::start(3, "events", 2).await;
    let e = client(&r)
        .reassign(&[PartitionTarget { topic: "events".into(), partition: 0, replicas: vec![0, 1, 9] }])
        .await
        .unwrap_err();
    let Error::Rejected { message } = e else { panic!("{e}") };
    assert!(message.contains("events-0") && message.contains("InvalidReplicaAssignment"), "{message}");
}

#[tokio::test]
async fn preferred_leaders_are_elected() {
    let r = Responder::start(3, "events", 3).await;
    r.state.lock().unwrap().leaders.insert(key("events", 1), 0);
    client(&r).elect_preferred_leaders(&[]).await.unwrap();
    let s = r.state.lock().unwrap();
    assert!(s.leaders.iter().all(|(k, l)| s.replicas[k][0] == *l), "{:?}", s.leaders);
}

#[tokio::test]
async fn throttles_are_set_on_moving_topics_and_cleared() {
    let r = Responder::start(3, "events", 2).await;
    let k = client(&r);
    k.set_replication_throttle(Some(50 << 20), &["events".to_owned()]).await.unwrap();
    {
        let s = r.state.lock().unwrap();
        assert_eq!(
            s.configs.get(&(4, String::new(), "leader.replication.throttled.rate".into())),
            Some(&"52428800".to_owned())
        );
        assert_eq!(
            s.configs.get(&(2, "events".into(), "follower.replication.throttled.replicas".into())),
            Some(&"*".to_owned())
        );
    }
    k.set_replication_throttle(None, &["events".to_owned()]).await.unwrap();
    assert!(r.state.lock().unwrap().configs.is_empty());
}

#[tokio::test]
async fn racks_and_controller_come_from_describe_cluster() {
    let r = Responder::start(4, "events", 1).await;
    let (controller, racks) = client(&r).racks().await.unwrap();
    assert_eq!(controller, Some(0));
    assert_eq!(racks.get(&3).cloned().flatten().as_deref(), Some("a"));
}

#[tokio::test]
async fn partition_sizes_come_from_each_brokers_log_dirs() {
    let r = Responder::start(3, "events", 4).await;
    let k = client(&r);
    let cluster = k.describe_cluster().await.unwrap();
    assert_eq!(cluster.addresses.len(), 3);
    assert!(cluster.addresses.values().all(|a| *a == r.addr.to_string()), "{:?}", cluster.addresses);
    let sizes = k.partition_sizes(&cluster.addresses).await.unwrap();
    assert_eq!(sizes.get(&("events".to_owned(), 3)), Some(&(4 << 20)));
    assert_eq!(sizes.len(), 4);
    let asked = r.state.lock().unwrap().requests.iter().filter(|n| n.as_str() == "DescribeLogDirs").count();
    assert_eq!(asked, 3, "one request per broker");
}

#[tokio::test]
async fn a_broker_that_never_answers_times_out_without_blocking() {
    // Accepts connections and never replies.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let config = KafkaClientConfig { timeout: Duration::from_millis(300), properties: Default::default() };
    let k = KafkaCluster::new(&[addr.to_string()], &config).unwrap();
    let started = std::time::Instant::now();
    let e = k.elect_preferred_leaders(&[]).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

mod tls {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use autopilot::backend::kafka::KafkaCluster;
    use autopilot::config::KafkaClientConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::TlsAcceptor;

    use crate::support::responder::Responder;

    fn openssl(args: &[&str], dir: &Path) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command is needed: apt-get install openssl (scripts/stack.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A CA and a broker certificate for 127.0.0.1 signed by it, as Strimzi's cluster CA signs
    /// broker certificates. Returns (CA, certificate, key) paths.
    fn certificate(dir: &Path) -> (String, String, String) {
        let ca = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
        openssl(
            &[
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=test-cluster-ca",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ][..],
                &ca[..],
            ]
            .concat(),
            dir,
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "broker.csr",
            ],
            dir,
        );
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "broker.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "cert.pem",
                "-extfile",
                "ext.cnf",
            ],
            dir,
        );
        let p = |f: &str| dir.join(f).display().to_string();
        (p("ca.pem"), p("cert.pem"), p("key.pem"))
    }

    fn acceptor(cert: &str, key: &str) -> TlsAcceptor {
        let chain = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        TlsAcceptor::from(Arc::new(ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap()))
    }

    fn client(r: &Responder, properties: &[(&str, &str)]) -> Result<KafkaCluster, autopilot::backend::Error> {
        let properties: BTreeMap<String, String> =
            properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        KafkaCluster::new(&[r.addr.to_string()], &KafkaClientConfig { timeout: Duration::from_secs(3), properties })
    }

    #[tokio::test]
    async fn the_protocol_client_speaks_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = certificate(dir.path());
        let r = Responder::start_with(3, "events", 2, Some(acceptor(&cert, &key))).await;
        // Creating the client also creates librdkafka's with security.protocol=SSL, which fails
        // when librdkafka was built without OpenSSL.
        let k = client(&r, &[("security.protocol", "SSL"), ("ssl.ca.location", &ca)]).unwrap();
        let (_, racks) = k.racks().await.unwrap();
        assert_eq!(racks.len(), 3);
        // Plaintext against a TLS listener fails (it does not hang or pass).
        let plain = client(&r, &[]).unwrap();
        assert!(plain.racks().await.is_err());
        // A CA that did not sign the broker's certificate is refused.
        let other = tempfile::tempdir().unwrap();
        let (wrong_ca, _, _) = certificate(other.path());
        let e = client(&r, &[("security.protocol", "SSL"), ("ssl.ca.location", &wrong_ca)])
            .unwrap()
            .racks()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("TLS handshake"), "{e}");
    }

    #[tokio::test]
    async fn misconfigured_tls_is_refused_up_front() {
        let r = Responder::start(1, "events", 1).await;
        let e = client(&r, &[("security.protocol", "SSL")]).unwrap_err();
        assert!(e.to_string().contains("ssl.ca.location"), "{e}");
        let e = client(&r, &[("security.protocol", "SASL_SSL"), ("ssl.ca.location", "/nope")]).unwrap_err();
        assert!(e.to_string().contains("SASL") || e.to_string().contains("not supported"), "{e}");
    }
}
