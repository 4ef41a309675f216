//! The IoT data plane, locally: the HTTP API the function reaches through
//! `AWS_ENDPOINT_URL_IOT_DATA_PLANE` (the AWS SDK's per-service endpoint), delivering to the
//! broker so that devices see what the function publishes:
//! - Publish: `POST /topics/{topic}?qos=0|1` → the message on `{topic}`;
//! - UpdateThingShadow: `POST /things/{thing}/shadow?name={name}` → the `reported`/`desired`
//!   sections merged into the named shadow (objects merged, `null` deletes, as IoT does), the
//!   version bumped, and `.../update/accepted` and `.../update/documents` published;
//! - GetThingShadow: `GET /things/{thing}/shadow?name={name}` → the document, or 404;
//! - the shadow service's MQTT side ([`DataPlane::serve_mqtt`]): a device's
//!   `$aws/things/{thing}/shadow/name/{name}/get` is answered on `.../get/accepted` (the
//!   document) or `.../get/rejected` (404), and an update that leaves `desired` different from
//!   `reported` also publishes `.../update/delta`, as IoT's shadow service does.
//!
//! `$aws/...` topics reach the broker under the gateway's name for them
//! ([`vigil_edge::gateway::topics`]): the broker (rumqttd) carries no `$` topic, and the gateway
//! renames them back for the devices.
//!
//! Requests are bounded (head 16 KiB, body 128 KiB: IoT's message limit) and answered with IoT's
//! error shapes for what it would refuse. No SigV4 check: the endpoint listens on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use vigil_core::documents::{shadow_error, shadow_update_accepted};
use vigil_edge::gateway::topics;
use vigil_mqtt::{shadow_get_request, shadow_topic};

const MAX_HEAD_BYTES: usize = 16 * 1024;
/// IoT Core's largest message, and so the largest Publish or shadow update body.
pub const MAX_BODY_BYTES: usize = 128 * 1024;
/// An idle keep-alive connection is closed after this.
const IDLE: Duration = Duration::from_secs(60);

/// Named shadows, by (thing, name).
pub type Shadows = Arc<Mutex<HashMap<(String, String), Value>>>;

/// The endpoint's state: where it publishes, and the shadows.
#[derive(Clone)]
pub struct DataPlane {
    mqtt: AsyncClient,
    pub shadows: Shadows,
}

impl DataPlane {
    /// `mqtt` is a connected client of the broker the devices use (its event loop driven by
    /// the caller).
    pub fn new(mqtt: AsyncClient) -> Self {
        Self {
            mqtt,
            shadows: Arc::default(),
        }
    }

    /// The named shadow `name` of `thing`, if one was written.
    pub fn shadow(&self, thing: &str, name: &str) -> Option<Value> {
        self.shadows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(thing.to_string(), name.to_string()))
            .cloned()
    }

    /// Drives the data plane's broker connection (`events`, of the client given to [`Self::new`])
    /// until the task is aborted, answering devices' shadow `get` requests.
    pub async fn serve_mqtt(self, mut events: EventLoop) {
        let requests = [
            format!("{}things/+/shadow/name/+/get", topics::BROKER_PREFIX),
            format!("{}things/+/shadow/get", topics::BROKER_PREFIX),
        ];
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for filter in &requests {
                        if let Err(e) = self.mqtt.subscribe(filter, QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, "data plane: subscribe to shadow requests");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some((thing, name)) = topics::from_broker(&p.topic)
                        .as_deref()
                        .and_then(shadow_get_request)
                    {
                        self.answer_get(&thing, &name).await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "data plane: broker connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The shadow service's reply to an MQTT `get`.
    async fn answer_get(&self, thing: &str, name: &str) {
        let (status, doc) = self.get_shadow(thing, name);
        let (suffix, body) = if status == 200 {
            ("get/accepted", doc)
        } else {
            let message = doc["message"].as_str().unwrap_or_default();
            ("get/rejected", shadow_error(status, message, now_secs()))
        };
        self.deliver(
            &format!("{}/{suffix}", shadow_topic(thing, name)),
            body.to_string().into_bytes(),
        )
        .await;
    }

    /// Publishes at QoS 1 to `topic` (`$aws/...` under the broker's name for it).
    async fn deliver(&self, topic: &str, payload: Vec<u8>) {
        let topic = topics::to_broker(topic).unwrap_or_else(|| topic.to_string());
        if let Err(e) = self
            .mqtt
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::warn!(error = %e, "data plane: publish to the broker");
        }
    }

    /// Serves HTTP on `listener` until the task is aborted.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let plane = self.clone();
            tokio::spawn(async move {
                if let Err(e) = plane.connection(stream).await {
                    tracing::debug!(error = %e, "data plane: connection");
                }
            });
        }
    }

    async fn connection(&self, stream: TcpStream) -> std::io::Result<()> {
        let (rx, mut tx) = stream.into_split();
        let mut rx = BufReader::new(rx);
        loop {
            let request = match tokio::time::timeout(IDLE, read_request(&mut rx, &mut tx)).await {
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None)) | Err(_) => return Ok(()),
                Ok(Err(Refused(status, message))) => {
                    respond(&mut tx, status, &json!({ "message": message })).await?;
                    return Ok(());
                }
            };
            let (status, body) = self.answer(&request).await;
            respond(&mut tx, status, &body).await?;
        }
    }

    async fn answer(&self, r: &Request) -> (u16, Value) {
        let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
        let param = |key: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| percent_decode(v))
        };
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        match (r.method.as_str(), segments.as_slice()) {
            ("POST", [topics, topic]) if topics == "topics" && valid_topic(topic) => {
                let qos = match param("qos").as_deref() {
                    None | Some("0") => QoS::AtMostOnce,
                    Some("1") => QoS::AtLeastOnce,
                    Some(other) => return invalid(&format!("qos {other:?}: 0 or 1")),
                };
                self.publish(topic, qos, r.body.clone()).await
            }
            (method, [things, thing, shadow]) if things == "things" && shadow == "shadow" => {
                let name = param("name").unwrap_or_default();
                if !valid_name(thing) || !(name.is_empty() || valid_name(&name)) {
                    return invalid("thing or shadow name");
                }
                match method {
                    "GET" => self.get_shadow(thing, &name),
                    "POST" => self.update_shadow(thing, &name, &r.body).await,
                    _ => (405, json!({ "message": "method not allowed" })),
                }
            }
            _ => (
                404,
                json!({ "message": format!("no such API: {} {}", r.method, r.target) }),
            ),
        }
    }

    async fn publish(&self, topic: &str, qos: QoS, payload: Vec<u8>) -> (u16, Value) {
        let topic = topics::to_broker(topic).unwrap_or_else(|| topic.to_string());
        match self.mqtt.publish(topic, qos, false, payload).await {
            Ok(()) => (200, json!({})),
            Err(e) => (503, json!({ "message": format!("broker: {e}") })),
        }
    }

    fn get_shadow(&self, thing: &str, name: &str) -> (u16, Value) {
        let shadows = self.shadows.lock().unwrap_or_else(|e| e.into_inner());
        match shadows.get(&(thing.to_string(), name.to_string())) {
            Some(doc) => (200, doc.clone()),
            None => (
                404,
                json!({ "message": format!("No shadow exists with name: '{thing}~{name}'") }),
            ),
        }
    }

    async fn update_shadow(&self, thing: &str, name: &str, body: &[u8]) -> (u16, Value) {
        let Ok(Value::Object(update)) = serde_json::from_slice::<Value>(body) else {
            return invalid("Payload contains invalid json");
        };
        let Some(Value::Object(state)) = update.get("state") else {
            return invalid("Missing required node: state");
        };
        let now = now_secs();
        let (previous, current) = {
            let mut shadows = self.shadows.lock().unwrap_or_else(|e| e.into_inner());
            let doc = shadows
                .entry((thing.to_string(), name.to_string()))
                .or_insert_with(|| json!({ "state": {}, "version": 0 }));
            let previous = doc.clone();
            for section in ["reported", "desired"] {
                if let Some(patch) = state.get(section) {
                    let target = doc["state"]
                        .as_object_mut()
                        .map(|s| s.entry(section).or_insert(Value::Object(Map::new())));
                    if let Some(target) = target {
                        merge(target, patch);
                    }
                }
            }
            doc["version"] = Value::from(previous["version"].as_u64().unwrap_or(0) + 1);
            doc["timestamp"] = Value::from(now);
            (previous, doc.clone())
        };
        let topic = shadow_topic(thing, name);
        let version = current["version"].as_u64().unwrap_or(0);
        let accepted = shadow_update_accepted(&Value::Object(state.clone()), version, now);
        let documents = json!({ "previous": previous, "current": current, "timestamp": now });
        let mut replies = vec![("update/accepted", accepted.clone())];
        if let Some(delta) = delta(&current["state"]) {
            replies.push((
                "update/delta",
                json!({ "state": delta, "version": current["version"], "timestamp": now }),
            ));
        }
        replies.push(("update/documents", documents));
        for (suffix, doc) in replies {
            self.deliver(&format!("{topic}/{suffix}"), doc.to_string().into_bytes())
                .await;
        }
        (200, accepted)
    }
}

/// The `desired` fields that `reported` does not match (the shadow service's delta), if any.
fn delta(state: &Value) -> Option<Value> {
    fn diff(desired: &Value, reported: Option<&Value>) -> Option<Value> {
        match (desired, reported) {
            (Value::Object(d), Some(Value::Object(r))) => {
                let out: Map<String, Value> = d
                    .iter()
                    .filter_map(|(k, v)| diff(v, r.get(k)).map(|v| (k.clone(), v)))
                    .collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            (d, Some(r)) if d == r => None,
            (d, _) => Some(d.clone()),
        }
    }
    diff(state.get("desired")?, state.get("reported"))
}

fn invalid(message: &str) -> (u16, Value) {
    (400, json!({ "message": message }))
}

/// JSON merge as the shadow service does it: objects merge, `null` deletes, the rest replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 256 && !topic.contains(['+', '#', '\0'])
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// A request the endpoint refuses before reading it all: status and message.
struct Refused(u16, String);

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Self {
        Refused(400, e.to_string())
    }
}

/// One HTTP/1.1 request; `None` when the client closed between requests.
async fn read_request<R, W>(rx: &mut BufReader<R>, tx: &mut W) -> Result<Option<Request>, Refused>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = rx
            .take((MAX_HEAD_BYTES + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)
            .await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(Refused(400, "request ended inside its head".into()))
            };
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(Refused(431, "request head over 16 KiB".into()));
        }
        if &head[before..] == b"\r\n" || &head[before..] == b"\n" {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = match (first.next(), first.next()) {
        (Some(m), Some(t)) if !m.is_empty() && t.starts_with('/') => (m.to_string(), t.to_string()),
        _ => return Err(Refused(400, "bad request line".into())),
    };
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| Refused(400, format!("content-length {value:?}")))?;
            }
            "transfer-encoding" => {
                return Err(Refused(411, "chunked bodies are not accepted".into()))
            }
            "expect" if value.eq_ignore_ascii_case("100-continue") => {
                tx.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            _ => {}
        }
    }
    if length > MAX_BODY_BYTES {
        return Err(Refused(413, "body over IoT's 128 KiB message limit".into()));
    }
    let mut body = vec![0; length];
    rx.read_exact(&mut body).await?;
    Ok(Some(Request {
        method,
        target,
        body,
    }))
}

async fn respond<W: tokio::io::AsyncWrite + Unpin>(
    tx: &mut W,
    status: u16,
    body: &Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    // The REST-JSON error code the SDKs read (`is_resource_not_found_exception()`, ...).
    let error_type = match status {
        200 => String::new(),
        400 | 411 | 431 => "x-amzn-ErrorType: InvalidRequestException\r\n".into(),
        404 => "x-amzn-ErrorType: ResourceNotFoundException\r\n".into(),
        405 => "x-amzn-ErrorType: MethodNotAllowedException\r\n".into(),
        413 => "x-amzn-ErrorType: RequestEntityTooLargeException\r\n".into(),
        _ => "x-amzn-ErrorType: ServiceUnavailableException\r\n".into(),
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{error_type}Content-Length: {}\r\n\r\n",
        body.len()
    );
    tx.write_all(head.as_bytes()).await?;
    tx.write_all(body.as_bytes()).await?;
    tx.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_deltas() {
        // (The get-request topics are `vigil_mqtt::shadow_get_request`'s, tested there.)
        let state = json!({"desired": {"mode": "run", "limits": {"a": 1, "b": 2}},
                           "reported": {"mode": "run", "limits": {"a": 1, "b": 3}, "x": 0}});
        assert_eq!(delta(&state), Some(json!({"limits": {"b": 2}})));
        assert_eq!(delta(&json!({"reported": {"mode": "run"}})), None);
        assert_eq!(
            delta(&json!({"desired": {"mode": "run"}, "reported": {"mode": "run"}})),
            None
        );
    }

    #[test]
    fn shadow_merge_is_iots() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": 3});
        merge(&mut doc, &json!({"a": {"b": null, "e": 4}, "d": [1]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 4}, "d": [1]}));
    }

    #[test]
    fn topics_are_percent_decoded() {
        assert_eq!(
            percent_decode("dt%2Fvigil%2Frig-001%2Fcondition"),
            "dt/vigil/rig-001/condition"
        );
        assert_eq!(percent_decode("%24aws%2"), "$aws%2");
    }
}
