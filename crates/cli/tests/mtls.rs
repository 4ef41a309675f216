//! `vigil device --endpoint` speaks MQTT over mutual TLS, as to AWS IoT Core: the device must
//! present its certificate, and it must refuse an endpoint its CA does not vouch for.
//!
//! The "endpoint" here is a TLS terminator in the test that, like IoT Core, requires a client
//! certificate from a CA it trusts, records which certificate connected, and forwards the MQTT
//! stream to the embedded broker of a real `vigil edge`. Certificates: tests/fixtures/tls
//! (test-only PKI, see make.sh there).
//!
//! The last tests put the edge's own gateway (`vigil edge --tls-listen`) in that place: mutual
//! TLS plus IoT Core's per-device policy (a certificate is attached to one thing, which may
//! connect and publish only as itself).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn der(name: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(tls_file(name))
        .expect("pem file")
        .collect::<Result<_, _>>()
        .expect("certificates")
}

/// What the terminator saw: the client certificates of completed handshakes, failed handshakes.
#[derive(Default)]
struct Seen {
    clients: Mutex<Vec<CertificateDer<'static>>>,
    failed_handshakes: AtomicUsize,
}

/// A loopback TLS endpoint requiring a client certificate signed by `ca.pem`, forwarding each
/// connection to the plain MQTT broker on `broker_port`. Returns its port.
fn start_terminator(rt: &tokio::runtime::Runtime, broker_port: u16, seen: Arc<Seen>) -> u16 {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in der("ca.pem") {
        roots.add(c).expect("CA certificate");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let key = PrivateKeyDer::from_pem_file(tls_file("endpoint.key")).expect("endpoint key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(der("endpoint.pem"), key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind terminator");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        seen.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                if let Some(chain) = tls.get_ref().1.peer_certificates() {
                    seen.clients
                        .lock()
                        .unwrap()
                        .push(chain[0].clone().into_owned());
                }
                if let Ok(mut broker) =
                    tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                }
            });
        }
    });
    port
}

fn device(endpoint_port: u16, cert: &str, key: &str, ca: &str, state: &std::path::Path) -> Proc {
    device_as("tls-rig", endpoint_port, cert, key, ca, state)
}

fn device_as(
    thing: &str,
    endpoint_port: u16,
    cert: &str,
    key: &str,
    ca: &str,
    state: &std::path::Path,
) -> Proc {
    let child = Command::new(VIGIL)
        .args(["device", "--thing", thing, "--endpoint"])
        .arg(format!("127.0.0.1:{endpoint_port}"))
        .arg("--cert")
        .arg(tls_file(cert))
        .arg("--key")
        .arg(tls_file(key))
        .arg("--ca")
        .arg(tls_file(ca))
        .arg("--source")
        .arg(format!("replay-hydraulic:{}", sample_dir()))
        .arg("--state")
        .arg(state)
        .args(["--cycles", "2", "--speed", "0", "--batch", "20"])
        .args([
            "--backoff-min",
            "0.05",
            "--backoff-max",
            "0.2",
            "--resend-after",
            "3",
        ])
        // The terminator hands `$aws/...` topics to the broker as they are, which it refuses (the
        // edge's gateway would carry them; its shadow service is tested in takeover.rs).
        .args(["--no-shadow", "--exit-when-drained", "--quiet"])
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil device");
    Proc::new(child, "vigil device")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn device_connects_with_its_certificate_and_every_sample_is_scored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker_port = free_port();
    let _edge = start_edge(broker_port, &dir.path().join("edge"));
    let observer = Observer::start(broker_port);
    let rt = runtime();
    let seen = Arc::new(Seen::default());
    let endpoint = start_terminator(&rt, broker_port, seen.clone());

    let mut agent = device(
        endpoint,
        "device.pem",
        "device.key",
        "ca.pem",
        &dir.path().join("d"),
    );
    let status = agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "vigil device exited with {status}");

    observer.assert_exactly_once("tls-rig", 2);
    let clients = seen.clients.lock().unwrap();
    assert!(
        !clients.is_empty(),
        "no TLS connection reached the endpoint"
    );
    let device_cert = &der("device.pem")[0];
    assert!(
        clients.iter().all(|c| c == device_cert),
        "a connection presented another certificate than the device's"
    );
}

/// Runs the device with these files against the endpoint and asserts the handshake fails (the
/// device keeps retrying; two failures show it tried and was turned away) and nothing arrives.
fn assert_refused(cert: &str, key: &str, ca: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker_port = free_port();
    let _edge = start_edge(broker_port, &dir.path().join("edge"));
    let observer = Observer::start(broker_port);
    let rt = runtime();
    let seen = Arc::new(Seen::default());
    let endpoint = start_terminator(&rt, broker_port, seen.clone());

    let mut agent = device(endpoint, cert, key, ca, &dir.path().join("d"));
    wait_until("failed handshakes", Duration::from_secs(30), || {
        seen.failed_handshakes.load(Ordering::SeqCst) >= 2
    });
    agent.kill();
    assert!(seen.clients.lock().unwrap().is_empty());
    assert_eq!(observer.windows_of("tls-rig"), 0);
}

#[test]
fn an_untrusted_device_certificate_is_refused_and_delivers_nothing() {
    assert_refused("impostor.pem", "impostor.key", "ca.pem");
}

#[test]
fn the_device_refuses_an_endpoint_its_ca_does_not_vouch_for() {
    // The device trusts another CA: the endpoint's certificate must not satisfy it, so the
    // handshake fails on the device's side (the endpoint sees it abort).
    assert_refused("device.pem", "device.key", "other-ca.pem");
}

/// The edge with its gateway, a device agent for `thing` with device.pem, and an observer of
/// the broker behind the gateway.
struct GatewayRun {
    _dir: tempfile::TempDir,
    _edge: Proc,
    observer: Observer,
    agent: Proc,
    http: u16,
    gateway: u16,
}

impl GatewayRun {
    /// With ca.pem as the device CA; `start_with` chooses.
    fn start(attached: &[(&str, &str)], thing: &str) -> Self {
        Self::start_with(attached, Some("ca.pem"), thing, "device")
    }

    /// `identity`: the fixture pair (`<identity>.pem`, `<identity>.key`) the agent presents.
    fn start_with(
        attached: &[(&str, &str)],
        device_ca: Option<&str>,
        thing: &str,
        identity: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (edge, broker, gateway, http) = start_gateway_edge(dir.path(), attached, device_ca);
        let observer = Observer::start(broker);
        let agent = device_as(
            thing,
            gateway,
            &format!("{identity}.pem"),
            &format!("{identity}.key"),
            "ca.pem",
            &dir.path().join("d"),
        );
        Self {
            _dir: dir,
            _edge: edge,
            observer,
            agent,
            http,
            gateway,
        }
    }

    fn metric(&self, name: &str) -> u64 {
        metric(self.http, name)
    }

    /// Waits for `name` to reach `at_least` (the agent keeps retrying), then stops the agent.
    fn refused(mut self, name: &str, at_least: u64) -> Self {
        wait_until(name, Duration::from_secs(30), || {
            self.metric(name) >= at_least
        });
        self.agent.kill();
        self
    }
}

#[test]
fn the_edge_gateway_admits_a_device_on_its_own_certificate_and_topics() {
    let mut run = GatewayRun::start(&[("tls-rig", "device.pem")], "tls-rig");
    let status = run.agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "vigil device exited with {status}");
    run.observer.assert_exactly_once("tls-rig", 2);
    assert!(run.metric("vigil_gateway_connections_total") >= 1);
    assert_eq!(run.metric("vigil_gateway_policy_violations_total"), 0);
}

#[test]
fn a_device_posing_as_another_thing_is_cut_off_and_delivers_nothing() {
    // The certificate is tls-rig's; the agent claims to be rig-002 (its MQTT client id).
    let run = GatewayRun::start(&[("tls-rig", "device.pem")], "rig-002")
        .refused("vigil_gateway_policy_violations_total", 2);
    assert_eq!(run.observer.windows_of("rig-002"), 0);
    assert_eq!(run.observer.windows_of("tls-rig"), 0);
}

#[test]
fn a_trusted_certificate_attached_to_no_thing_is_refused() {
    // Only another certificate is attached (to another thing): the CA vouches for device.pem,
    // but no thing owns it.
    let run = GatewayRun::start(&[("rig-002", "impostor.pem")], "tls-rig")
        .refused("vigil_gateway_unattached_certificates_total", 2);
    assert_eq!(run.metric("vigil_gateway_connections_total"), 0);
    assert_eq!(run.observer.windows_of("tls-rig"), 0);
}

#[test]
fn without_a_device_ca_an_attached_certificate_from_any_issuer_is_admitted_and_others_are_not() {
    // As with certificates AWS IoT issued: their CA is not published, attachment is the check.
    // impostor.pem comes from another CA; attached to tls-rig, it delivers.
    let mut run =
        GatewayRun::start_with(&[("tls-rig", "impostor.pem")], None, "tls-rig", "impostor");
    let status = run.agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "vigil device exited with {status}");
    run.observer.assert_exactly_once("tls-rig", 2);

    // device.pem (from the CA the gateway no longer checks) is attached to nobody: refused.
    let run = GatewayRun::start_with(&[("tls-rig", "impostor.pem")], None, "tls-rig", "device")
        .refused("vigil_gateway_unattached_certificates_total", 2);
    assert_eq!(run.metric("vigil_gateway_connections_total"), 0);
    assert_eq!(run.observer.windows_of("tls-rig"), 0);
}

#[test]
fn with_a_device_ca_an_attached_certificate_from_another_issuer_is_refused() {
    let run = GatewayRun::start_with(
        &[("tls-rig", "impostor.pem")],
        Some("ca.pem"),
        "tls-rig",
        "impostor",
    )
    .refused("vigil_gateway_failed_handshakes_total", 2);
    assert_eq!(run.metric("vigil_gateway_unattached_certificates_total"), 0);
    assert_eq!(run.metric("vigil_gateway_connections_total"), 0);
    assert_eq!(run.observer.windows_of("tls-rig"), 0);
}

/// A thing named like the edge's own client (`vigil-edge`) could take over its broker session:
/// `--device-certs` holding one stops the start with an error saying why.
#[test]
fn a_thing_named_like_the_edge_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("device-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(tls_file("device.pem"), certs.join("vigil-edge.pem")).unwrap();
    let mut cmd = Command::new(VIGIL);
    cmd.args(["edge", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--state")
        .arg(dir.path().join("edge"))
        .arg("--tls-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--tls-cert")
        .arg(tls_file("endpoint.pem"))
        .arg("--tls-key")
        .arg(tls_file("endpoint.key"))
        .arg("--device-certs")
        .arg(&certs)
        .env("VIGIL_LOG", "warn");
    let (code, stderr) = run_to_end(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("vigil-edge.pem") && stderr.contains("reserved"),
        "{stderr}"
    );
}

/// A raw MQTT stream over the gateway's mutual TLS, as tls-rig (device.pem).
async fn raw_device(gateway: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in der("ca.pem") {
        roots.add(c).expect("CA certificate");
    }
    let key = PrivateKeyDer::from_pem_file(tls_file("device.key")).expect("device key");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(der("device.pem"), key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway))
        .await
        .expect("gateway");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s) with `client_id`.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut p = vec![0x10, (12 + id.len()) as u8];
    p.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60]);
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id);
    p
}

/// Sends `bytes`, then reads until the gateway closes the connection (bounded).
async fn sent_and_closed(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    bytes: &[u8],
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    got
}

/// The edge's own client id through the gateway, and a packet over the size limit: each cuts
/// the connection off and is counted; the edge's session is never displaced (one connection
/// all along) and the honest device is scored.
#[test]
fn the_edge_s_client_id_and_oversize_packets_are_cut_off_and_counted() {
    let mut run = GatewayRun::start(&[("tls-rig", "device.pem")], "tls-rig");
    let gateway = run.gateway;
    let rt = runtime();
    rt.block_on(async {
        // Posing as the edge: refused before the broker hears of it (no CONNACK).
        let mut s = raw_device(gateway).await;
        let got = sent_and_closed(&mut s, &connect_packet("vigil-edge")).await;
        assert!(got.is_empty(), "{got:?}");

        // As itself (CONNACK), then a PUBLISH announcing 1 MiB: refused from its header.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = raw_device(gateway).await;
        s.write_all(&connect_packet("tls-rig")).await.unwrap();
        let mut connack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut connack))
            .await
            .expect("CONNACK in time")
            .expect("CONNACK");
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
        let got = sent_and_closed(&mut s, &[0x32, 0x80, 0x80, 0x40, 0, 1, b'x']).await;
        assert!(got.is_empty(), "{got:?}");
    });
    wait_until("both violations", Duration::from_secs(20), || {
        run.metric("vigil_gateway_policy_violations_total") >= 2
    });
    let status = run.agent.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "vigil device exited with {status}");
    run.observer.assert_exactly_once("tls-rig", 2);
    assert_eq!(run.metric("vigil_edge_connections_total"), 1);
    assert_eq!(run.metric("vigil_gateway_policy_violations_total"), 2);
}
