//! The edge's device gateway (`vigil edge --tls-listen`): devices connect with mutual TLS, as to
//! AWS IoT Core, and every packet they send is held to IoT Core's per-device policy before it
//! reaches the broker. Without it the broker has no authentication, and the pipeline, which takes
//! the device from the topic, would believe any client on the network that names a thing.
//!
//! - TLS 1.2/1.3 (rustls, aws-lc-rs) with a client certificate.
//! - A certificate belongs to a thing the way IoT Core attaches certificates to things: the
//!   `--device-certs` directory holds `<thing>.pem` per device, and the handshake fails for any
//!   other certificate. (By certificate, not by subject name: what IoT Core issues carries no
//!   thing name, and a CA may sign two certificates with one name.) With `--device-ca` the
//!   certificate must also chain to it; without, attachment alone admits it, so the certificates
//!   AWS IoT issued (from a CA it does not publish) work at the edge unchanged.
//! - The policy, with `thing` from the certificate, is `infra/modules/fleet`'s ([`policy`]: the
//!   Terraform's document when the caller gives it, as `make local` does, else the built-in
//!   copy): CONNECT with client id = thing (a will only on a topic the thing may publish to);
//!   PUBLISH to `dt/vigil/{thing}/telemetry` (or through Basic Ingest) or
//!   `$aws/things/{thing}/shadow/name/condition/get`; SUBSCRIBE to `dt/vigil/{thing}/condition`
//!   and the replies of its `condition` shadow, exactly (no wildcards); RECEIVE the same.
//!   Anything else closes the connection, as IoT Core does, and is logged and counted. Packets
//!   are parsed with rumqttc's codecs and forwarded byte for byte, except that `$aws/` topics
//!   travel the broker under another name ([`topics`]) and, with a rule sink, Basic Ingest
//!   publishes go to the rule instead of the broker ([`Gateway::with_basic_ingest`]).
//! - Client ids (so thing names) starting with [`RESERVED_CLIENT_PREFIX`] are the edge's own
//!   (`vigil-edge`): a thing so named is refused at start and such a CONNECT is a violation, so
//!   no device can take over the edge's broker session.
//! - A packet whose header announces more than the packet limit is refused from the header
//!   alone (a violation, counted), before its body is read.
//! - MQTT 5 devices: the CONNECT's protocol level picks the codec; [`v5`] holds the v5 side
//!   (reason codes, topic aliases, session expiry) under the same policy.

mod connection;
pub mod policy;
pub mod topics;
pub mod v5;

use connection::{admit, publish_route, relay, renamed_filters, Checker, Route, V4};
pub use connection::{IngestMessage, IngestSink};
pub use policy::{DevicePolicy, PolicyDocument};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::BytesMut;
use rumqttc::Packet;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::pki_types::{CertificateDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::TlsAcceptor;
use vigil_core::DeviceId;

use vigil_mqtt::MAX_PACKET_BYTES;

use crate::mqtt_frames::{next_raw_frame, FrameError};

/// Client ids the edge's own connections use: no device may connect with one.
pub const RESERVED_CLIENT_PREFIX: &str = "vigil-";

/// Whether `id` is reserved for the edge's own clients (ASCII case ignored, so that a broker
/// that folds case cannot be used to get round it).
pub fn is_reserved_client_id(id: &str) -> bool {
    id.get(..RESERVED_CLIENT_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_CLIENT_PREFIX))
}

/// A handshake that takes longer than this is dropped (a slow-loris guard).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and with what the gateway listens (the library form of the `--tls-*` flags).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The gateway's own certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates that issue device certificates (PEM). Without it a device certificate is
    /// accepted on attachment alone (pinned): what AWS IoT issues comes from a CA it does not
    /// publish, and those certificates work at the edge as they are.
    pub device_ca: Option<PathBuf>,
    /// `<thing>.pem`: the certificate attached to each thing.
    pub device_certs: PathBuf,
}

/// What the gateway turned away, for logs and `/metrics`.
#[derive(Debug, Default)]
pub struct GatewayCounters {
    pub connections: AtomicU64,
    /// Every refused handshake, unattached certificates included.
    pub failed_handshakes: AtomicU64,
    /// Handshakes refused because the certificate is attached to no thing.
    pub unattached_certificates: AtomicU64,
    pub policy_violations: AtomicU64,
    /// MQTT 5 sessions the gateway ended at their expiry.
    pub sessions_expired: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GatewayStats {
    pub connections: u64,
    pub failed_handshakes: u64,
    pub unattached_certificates: u64,
    pub policy_violations: u64,
    pub sessions_expired: u64,
}

impl GatewayCounters {
    pub fn snapshot(&self) -> GatewayStats {
        GatewayStats {
            connections: self.connections.load(Ordering::Relaxed),
            failed_handshakes: self.failed_handshakes.load(Ordering::Relaxed),
            unattached_certificates: self.unattached_certificates.load(Ordering::Relaxed),
            policy_violations: self.policy_violations.load(Ordering::Relaxed),
            sessions_expired: self.sessions_expired.load(Ordering::Relaxed),
        }
    }
}

/// A bound gateway, ready to serve.
pub struct Gateway {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    attached: Arc<HashMap<Vec<u8>, DeviceId>>,
    broker: (String, u16),
    sessions: Arc<v5::Sessions>,
    policy: Arc<PolicyDocument>,
    ingest: Option<IngestSink>,
    pub counters: Arc<GatewayCounters>,
    pub addr: SocketAddr,
}

impl Gateway {
    /// Reads the certificates and binds: every configuration error shows at start.
    pub async fn bind(config: &GatewayConfig, broker: (String, u16)) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = match &config.device_ca {
            Some(ca) => Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(vigil_mqtt::tls::roots("device-ca", ca)?),
                    provider.clone(),
                )
                .build()
                .with_context(|| format!("--device-ca {}", ca.display()))?,
            ),
            None => None,
        };
        let attached = Arc::new(attached_certificates(&config.device_certs)?);
        let counters = Arc::<GatewayCounters>::default();
        let verifier = Arc::new(AttachedOnly {
            attached: Arc::clone(&attached),
            chain,
            algorithms: provider.signature_verification_algorithms,
            counters: Arc::clone(&counters),
        });
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vigil_mqtt::tls::certificates("tls-cert", &config.cert)?,
                vigil_mqtt::tls::private_key("tls-key", &config.key)?,
            )
            .context("--tls-cert/--tls-key: not a usable certificate and key")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("--tls-listen {}: cannot listen", config.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, devices = attached.len(), "gateway: mutual TLS for devices");
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            attached,
            broker,
            sessions: Arc::default(),
            policy: Arc::new(PolicyDocument::builtin(None)),
            ingest: None,
            counters,
            addr,
        })
    }

    /// Enforces `policy` instead of the built-in copy of the fleet's policy.
    pub fn with_policy(mut self, policy: PolicyDocument) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Hands Basic Ingest publishes (`$aws/rules/...`) to `sink` instead of the broker, and
    /// acknowledges them to the device once the sink took them.
    pub fn with_basic_ingest(mut self, sink: IngestSink) -> Self {
        self.ingest = Some(sink);
        self
    }

    /// Serves until the task is aborted.
    pub async fn serve(self) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let attached = Arc::clone(&self.attached);
            let counters = Arc::clone(&self.counters);
            let broker = self.broker.clone();
            let sessions = Arc::clone(&self.sessions);
            let document = Arc::clone(&self.policy);
            let ingest = self.ingest.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        counters.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                        return tracing::warn!(%peer, error = %e, "gateway: TLS handshake refused");
                    }
                    Err(_) => {
                        counters.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                        return tracing::warn!(%peer, "gateway: TLS handshake timed out");
                    }
                };
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|c| c.as_ref().to_vec());
                // The verifier admitted only attached certificates.
                let Some(thing) = leaf.and_then(|der| attached.get(&der).cloned()) else {
                    return;
                };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let policy = DevicePolicy::for_thing(&document, &thing);
                let ticket = sessions.begin(policy.thing());
                let mut expiry = None;
                let ended = admit(tls, &policy, &broker, ingest.as_ref(), &mut expiry).await;
                sessions.end(ticket, expiry, broker, Arc::clone(&counters));
                match ended {
                    Ok(()) => {}
                    Err(Ended::Policy(v)) => {
                        counters.policy_violations.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%thing, %peer, violation = %v, "gateway: policy violation; connection closed");
                    }
                    Err(Ended::Io(e)) => tracing::debug!(%thing, error = %e, "gateway: connection"),
                }
            });
        }
    }
}

/// The client certificate check: the certificate must be attached to a thing and, with
/// `--device-ca`, also chain to it (validity dates and key usage included). Attachment alone
/// suffices without a CA: only the holder of an attached certificate's private key can sign the
/// handshake, which rustls checks with the certificate's public key.
#[derive(Debug)]
struct AttachedOnly {
    attached: Arc<HashMap<Vec<u8>, DeviceId>>,
    chain: Option<Arc<dyn ClientCertVerifier>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    counters: Arc<GatewayCounters>,
}

impl ClientCertVerifier for AttachedOnly {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.chain.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_client_cert(end_entity, intermediates, now)?;
        }
        if self.attached.contains_key(end_entity.as_ref()) {
            Ok(ClientCertVerified::assertion())
        } else {
            self.counters
                .unattached_certificates
                .fetch_add(1, Ordering::Relaxed);
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `<thing>.pem` files of `dir`: leaf certificate (DER) → thing.
fn attached_certificates(dir: &Path) -> anyhow::Result<HashMap<Vec<u8>, DeviceId>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("--device-certs {}", dir.display()))?;
    let mut attached = HashMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let thing = DeviceId::new(stem.to_string()).map_err(|e| {
            anyhow::anyhow!("--device-certs: {}: not a thing name: {e}", path.display())
        })?;
        if is_reserved_client_id(thing.as_str()) {
            bail!(
                "--device-certs: {}: thing names starting with {RESERVED_CLIENT_PREFIX:?} are reserved for the edge's own MQTT clients (a device named so could take over the edge's session); rename the thing",
                path.display()
            );
        }
        let leaf = vigil_mqtt::tls::certificates("device-certs", &path)?.remove(0);
        if let Some(other) = attached.insert(leaf.as_ref().to_vec(), thing.clone()) {
            bail!("--device-certs: one certificate is attached to both {other} and {thing}");
        }
    }
    if attached.is_empty() {
        bail!(
            "--device-certs {}: no <thing>.pem certificate in it",
            dir.display()
        );
    }
    Ok(attached)
}

/// Why a connection was closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the first packet must be CONNECT, got {0}")]
    NotConnected(&'static str),
    #[error("client id {got:?} is not the certificate's thing {thing:?}")]
    ClientId { thing: String, got: String },
    #[error("a second CONNECT")]
    Reconnect,
    #[error("client id {0:?} is reserved for the edge's own connections")]
    Reserved(String),
    #[error("a packet of {0} bytes, over the {max} byte limit", max = MAX_PACKET_BYTES)]
    Oversize(usize),
    #[error("will on {0:?}, a topic this thing may not publish to")]
    Will(String),
    #[error("publish to {0:?}, which this thing may not")]
    Publish(String),
    #[error("subscribe to {0:?}, which this thing may not")]
    Subscribe(String),
    #[error("{0} is the broker's packet, not a client's")]
    ServerPacket(&'static str),
    #[error("malformed MQTT: {0}")]
    Malformed(String),
    #[error("a retained message on {0:?}: IoT Core retains nothing on its reserved topics")]
    Retained(String),
    #[error("topic alias {0}, which this connection never set")]
    TopicAlias(u16),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}

/// How a device connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum Ended {
    #[error(transparent)]
    Policy(#[from] Violation),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// MQTT packets out of a byte stream: each one raw (to forward verbatim) and parsed (to check).
struct Framer<R> {
    from: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Framer<R> {
    fn new(from: R) -> Self {
        Self {
            from,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// The next whole packet, unparsed (the fixed header is the same in MQTT 3.1.1 and 5).
    /// Cancel-safe: what was read stays in the buffer.
    async fn next_frame(&mut self) -> Result<Option<BytesMut>, Ended> {
        loop {
            match next_raw_frame(&mut self.buf, MAX_PACKET_BYTES) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(FrameError::Oversize(n)) => return Err(Violation::Oversize(n).into()),
                Err(FrameError::Malformed(e)) => return Err(Violation::Malformed(e).into()),
            }
            if self.from.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

fn parse_v4(raw: &BytesMut) -> Result<Packet, Violation> {
    Packet::read(&mut raw.clone(), MAX_PACKET_BYTES)
        .map_err(|e| Violation::Malformed(format!("{e:?}")))
}

/// A device's whole packet stream, from its CONNECT on, through its policy into `to`: what a
/// connection does after the TLS handshake, as one call (the benchmark measures it).
pub async fn forward_stream<R, W>(from: R, to: &mut W, policy: &DevicePolicy) -> Result<(), Ended>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut packets = Framer::new(from);
    let mut checker = V4 {
        policy,
        connected: false,
        ingest: false,
    };
    while let Some(raw) = packets.next_frame().await? {
        if let Route::Broker(raw) = checker.route(raw)? {
            to.write_all(&raw).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{Connect, LastWill, Publish, Subscribe, SubscribeFilter};
    use rumqttc::mqttbytes::QoS;

    fn policy() -> DevicePolicy {
        DevicePolicy::new(&DeviceId::new("rig-001").unwrap())
    }

    fn connect(id: &str) -> Packet {
        Packet::Connect(Connect::new(id))
    }

    /// A v4 QoS 1 PUBLISH of `{}` (the gateway's tests share these packets).
    pub(super) fn publish(topic: &str) -> Packet {
        let mut publish = Publish::new(topic, QoS::AtLeastOnce, b"{}".to_vec());
        publish.pkid = 1;
        Packet::Publish(publish)
    }

    /// A v4 SUBSCRIBE to one filter at QoS 1.
    pub(super) fn subscribe(filter: &str) -> Packet {
        Packet::Subscribe(Subscribe::new_many([SubscribeFilter::new(
            filter.into(),
            QoS::AtLeastOnce,
        )]))
    }

    #[test]
    fn a_device_connects_as_itself_and_uses_its_own_topics() {
        let p = policy();
        assert_eq!(p.check(&connect("rig-001"), false), Ok(()));
        for topic in [
            "dt/vigil/rig-001/telemetry",
            "$aws/things/rig-001/shadow/name/condition/get",
        ] {
            assert_eq!(p.check(&publish(topic), true), Ok(()), "{topic}");
        }
        for filter in [
            "dt/vigil/rig-001/condition",
            "$aws/things/rig-001/shadow/name/condition/update/accepted",
            "$aws/things/rig-001/shadow/name/condition/get/accepted",
        ] {
            assert_eq!(p.check(&subscribe(filter), true), Ok(()), "{filter}");
        }
        assert_eq!(p.check(&Packet::PingReq, true), Ok(()));
        assert_eq!(p.check(&Packet::Disconnect, true), Ok(()));
    }

    #[test]
    fn everything_else_is_a_violation_that_names_what_was_tried() {
        let p = policy();
        assert_eq!(
            p.check(&connect("rig-002"), false),
            Err(Violation::ClientId {
                thing: "rig-001".into(),
                got: "rig-002".into()
            })
        );
        assert_eq!(
            p.check(&publish("dt/vigil/rig-001/telemetry"), false),
            Err(Violation::NotConnected("PUBLISH"))
        );
        assert_eq!(
            p.check(&connect("rig-001"), true),
            Err(Violation::Reconnect)
        );
        for topic in [
            "dt/vigil/rig-002/telemetry",
            "dt/vigil/rig-001/condition",
            "$aws/things/rig-001/shadow/name/condition/update",
            "dt/vigil/rig-001/telemetry/extra",
        ] {
            assert_eq!(
                p.check(&publish(topic), true),
                Err(Violation::Publish(topic.into())),
                "{topic}"
            );
        }
        for filter in ["dt/vigil/+/condition", "#", "dt/vigil/rig-002/condition"] {
            assert_eq!(
                p.check(&subscribe(filter), true),
                Err(Violation::Subscribe(filter.into())),
                "{filter}"
            );
        }
        let mut with_will = Connect::new("rig-001");
        with_will.last_will = Some(LastWill::new(
            "dt/vigil/rig-002/telemetry",
            "gone",
            QoS::AtMostOnce,
            false,
        ));
        assert_eq!(
            p.check(&Packet::Connect(with_will), false),
            Err(Violation::Will("dt/vigil/rig-002/telemetry".into()))
        );
        assert_eq!(
            p.check(&Packet::PingResp, true),
            Err(Violation::ServerPacket("PINGRESP"))
        );
    }

    /// The stream side: packets split across reads pass whole and byte for byte; the first
    /// forbidden one stops the stream before anything of it is forwarded.
    #[tokio::test]
    async fn the_stream_is_forwarded_verbatim_until_the_first_violation() {
        let mut allowed = BytesMut::new();
        for packet in [
            connect("rig-001"),
            publish("dt/vigil/rig-001/telemetry"),
            Packet::PingReq,
        ] {
            packet.write(&mut allowed, MAX_PACKET_BYTES).unwrap();
        }
        let mut input = allowed.to_vec();
        let mut forbidden = BytesMut::new();
        publish("dt/vigil/rig-002/telemetry")
            .write(&mut forbidden, MAX_PACKET_BYTES)
            .unwrap();
        input.extend_from_slice(&forbidden);

        // A reader that hands out 3 bytes at a time, so that frames straddle reads.
        let (mut writer, reader) = tokio::io::duplex(3);
        let feed = tokio::spawn(async move {
            writer.write_all(&input).await.unwrap();
        });
        let mut forwarded = Vec::new();
        let outcome = forward_stream(reader, &mut forwarded, &policy()).await;
        feed.abort();
        assert!(
            matches!(&outcome, Err(Ended::Policy(Violation::Publish(t))) if t == "dt/vigil/rig-002/telemetry"),
            "{outcome:?}"
        );
        assert_eq!(forwarded, allowed.to_vec());
    }

    #[test]
    fn the_edge_s_own_client_ids_are_refused_whatever_the_certificate() {
        assert!(is_reserved_client_id("vigil-edge"));
        assert!(is_reserved_client_id("VIGIL-edge"));
        assert!(!is_reserved_client_id("vigil"));
        assert!(!is_reserved_client_id("rig-001"));
        // Even a policy for a thing so named (which `--device-certs` refuses at start).
        let p = DevicePolicy::new(&DeviceId::new("vigil-edge").unwrap());
        assert_eq!(
            p.check(&connect("vigil-edge"), false),
            Err(Violation::Reserved("vigil-edge".into()))
        );
        assert_eq!(
            policy().check(&connect("vigil-edge"), false),
            Err(Violation::Reserved("vigil-edge".into()))
        );
    }

    #[tokio::test]
    async fn an_oversize_packet_is_refused_from_its_header() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut connect_bytes = BytesMut::new();
        connect("rig-001")
            .write(&mut connect_bytes, MAX_PACKET_BYTES)
            .unwrap();
        writer.write_all(&connect_bytes).await.unwrap();
        // A PUBLISH header announcing 1 MiB, and no body: refused without waiting for it.
        writer.write_all(&[0x32, 0x80, 0x80, 0x40]).await.unwrap();
        let mut forwarded = Vec::new();
        let outcome = forward_stream(reader, &mut forwarded, &policy()).await;
        assert!(
            matches!(outcome, Err(Ended::Policy(Violation::Oversize(1_048_576)))),
            "{outcome:?}"
        );
        assert_eq!(forwarded, connect_bytes.to_vec());
        drop(writer);
    }

    #[tokio::test]
    async fn garbage_is_malformed_not_forwarded() {
        let (mut writer, reader) = tokio::io::duplex(64);
        writer.write_all(&[0xF0, 0x00]).await.unwrap();
        drop(writer);
        let mut forwarded = Vec::new();
        let outcome = forward_stream(reader, &mut forwarded, &policy()).await;
        assert!(
            matches!(outcome, Err(Ended::Policy(Violation::Malformed(_)))),
            "{outcome:?}"
        );
        assert!(forwarded.is_empty());
    }
}
