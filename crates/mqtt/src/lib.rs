//! MQTT plumbing shared by the device agent, the edge runtime, the simulators and the tests:
//! broker URLs, client options sized for Vigil's payloads, a small subscriber, topic names and
//! PEM loading for mutual TLS. Must not depend on the edge runtime (rumqttd, redb) or on AWS.

pub mod tls;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use vigil_core::telemetry::MAX_PAYLOAD_BYTES;

/// Largest MQTT packet a Vigil client sends or accepts: a maximal payload plus topic and header.
pub const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 4 * 1024;

/// A broker address: `mqtt://host:port`, `tcp://host:port` or `host:port` (port 1883 if left
/// out). TLS brokers are not supported by this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => {
                bail!("broker URL {url:?}: scheme {scheme:?} is not supported (use mqtt://host:port; TLS is not built in)")
            }
            None => url,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('?') {
            bail!("broker URL {url:?}: expected mqtt://host:port");
        }
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal in brackets: [::1]:1883.
            Some((h, p)) if !h.ends_with(':') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("broker URL {url:?}: bad port {p:?}"))?,
            ),
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("broker URL {url:?}: no host");
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// Resolves the address, e.g. to check that nothing else runs an embedded broker there.
    pub fn socket_addr(&self) -> anyhow::Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("{}:{} does not resolve", self.host, self.port))
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

/// Client options for Vigil: packets up to [`MAX_PACKET_BYTES`], a 30 s keep-alive.
pub fn client_options(client_id: &str, broker: &BrokerUrl) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options
}

/// A client and its event loop, with Nagle's algorithm off: acknowledgements and small
/// telemetry messages go out at once instead of waiting for the peer's delayed ACK (~40 ms).
pub fn client(options: MqttOptions, capacity: usize) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// A message received by a [`Subscriber`].
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// A clean-session QoS 1 subscriber whose messages arrive on a channel. Dropping it ends it.
#[derive(Debug)]
pub struct Subscriber {
    pub client: AsyncClient,
    pub messages: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Connects, subscribes to `filters` and returns once the broker acknowledged them, so
    /// nothing published afterwards on those filters is missed.
    pub async fn connect(
        broker: &BrokerUrl,
        client_id: &str,
        filters: &[&str],
    ) -> anyhow::Result<Self> {
        let (client, mut eventloop) = client(client_options(client_id, broker), 256);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await?;
        }
        let mut remaining = filters.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while remaining > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => remaining -= 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("subscriber {client_id}: connecting to {broker}: {e}"),
                Err(_) => bail!("subscriber {client_id}: no SUBACK from {broker} within 10 s"),
            }
        }
        let (tx, messages) = mpsc::unbounded_channel();
        let task = tokio::spawn(forward(eventloop, tx));
        Ok(Self {
            client,
            messages,
            task,
        })
    }

    /// The next message, or `None` after `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.messages.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Received>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let message = Received {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    at: Instant::now(),
                };
                if tx.send(message).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "subscriber connection; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Topic filter the edge subscribes to.
pub const TELEMETRY_FILTER: &str = "dt/vigil/+/telemetry";

/// `dt/vigil/{thing}/alerts`: alert transitions.
pub fn alerts_topic(device: &str) -> String {
    format!("dt/vigil/{device}/alerts")
}

/// `dt/vigil/{thing}/rejected`: messages the pipeline refused, with the reason.
pub fn rejected_topic(device: &str) -> String {
    format!("dt/vigil/{device}/rejected")
}

/// `$aws/things/{thing}/shadow/name/condition/update`: the named shadow update, as on AWS IoT.
pub fn shadow_update_topic(device: &str) -> String {
    format!(
        "{}/update",
        shadow_topic(device, vigil_core::telemetry::CONDITION_SHADOW)
    )
}

/// The prefix of a shadow's topics as AWS IoT names them: `$aws/things/{thing}/shadow` for the
/// classic shadow (`name` empty), `$aws/things/{thing}/shadow/name/{name}` for a named one.
pub fn shadow_topic(thing: &str, name: &str) -> String {
    if name.is_empty() {
        format!("$aws/things/{thing}/shadow")
    } else {
        format!("$aws/things/{thing}/shadow/name/{name}")
    }
}

/// `(thing, shadow name)` of a shadow `get` request topic (`$aws/things/{thing}/shadow[/name/{name}]/get`,
/// `""` for the classic shadow); `None` for any other topic, or names that are not valid thing
/// or shadow names (`[A-Za-z0-9_:-]{1,128}`). The thing comes from the topic only.
pub fn shadow_get_request(topic: &str) -> Option<(String, String)> {
    let rest = topic.strip_prefix("$aws/things/")?.strip_suffix("/get")?;
    let (thing, shadow) = rest.split_once("/shadow")?;
    let name = match shadow {
        "" => "",
        named => named.strip_prefix("/name/").filter(|n| !n.is_empty())?,
    };
    (valid_shadow_name(thing) && (name.is_empty() || valid_shadow_name(name)))
        .then(|| (thing.to_string(), name.to_string()))
}

/// A thing or shadow name as IoT accepts it: `[A-Za-z0-9_:-]{1,128}`.
pub fn valid_shadow_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
}

/// A thing name from `dt/vigil/{thing}/{kind}` (for subscribers of results and alerts).
pub fn thing_of(topic: &str) -> Option<&str> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("dt"), Some("vigil"), Some(thing)) => Some(thing),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1884));
        let u = BrokerUrl::parse("tcp://broker.local").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("broker.local", 1883));
        let u = BrokerUrl::parse("localhost:2000/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("localhost", 2000));
        let u = BrokerUrl::parse("mqtt://[::1]:1885").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1885));
        assert!(BrokerUrl::parse("mqtts://x:8883").is_err());
        assert!(BrokerUrl::parse("mqtt://x:notaport").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
        assert_eq!(thing_of("dt/vigil/rig-001/condition"), Some("rig-001"));
    }

    #[test]
    fn shadow_get_requests() {
        assert_eq!(
            shadow_get_request("$aws/things/rig-001/shadow/name/condition/get"),
            Some(("rig-001".into(), "condition".into()))
        );
        assert_eq!(
            shadow_get_request("$aws/things/rig-001/shadow/get"),
            Some(("rig-001".into(), String::new()))
        );
        for not in [
            "$aws/things/rig-001/shadow/name/condition/update",
            "$aws/things/rig+/shadow/get",
            "$aws/things//shadow/get",
            "$aws/things/rig-001/shadow/name//get",
            "dt/vigil/rig-001/condition",
        ] {
            assert_eq!(shadow_get_request(not), None, "{not}");
        }
        assert_eq!(
            shadow_update_topic("rig-001"),
            "$aws/things/rig-001/shadow/name/condition/update"
        );
    }
}
