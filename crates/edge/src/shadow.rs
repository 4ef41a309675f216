//! The edge's shadow service for the `condition` named shadow: what AWS IoT's shadow service does
//! for a device that asks for it, from the shadow the edge keeps in its store (the latest
//! verdict it published for that device, versioned; see [`EdgeStore::save_shadow`]).
//!
//! - A `get` on `$aws/things/{thing}/shadow/name/condition/get` is answered on `.../get/accepted`
//!   with the stored document (`state.reported`, `version`, `timestamp`), or on
//!   `.../get/rejected` with `{"code":404,...}` before the edge published any result for it.
//!   Only what is synced to disk is told ([`EdgeStore::synced_shadow`]): a verdict of a batch
//!   whose sync has not happened yet could be taken back by a crash.
//! - Every result also goes out as `.../update/accepted` ([`crate::sinks`]).
//!
//! The topics travel the broker as the gateway names them (`vigil-aws/...`, see
//! [`crate::gateway::topics`]): devices on the gateway use the `$aws/...` names, under the
//! per-device policy (only their own shadow); a client on the plain listener, which the broker
//! would drop for a `$` topic, uses the `vigil-aws/...` names directly.
//!
//! The thing is the topic's, never the payload's. A request is an empty payload or a JSON object
//! with at most a `clientToken` (a string of up to 64 bytes, echoed in the reply, as IoT does),
//! within [`MAX_GET_BYTES`]; anything else is answered on `get/rejected` with code 400 or 413.

use serde_json::Value;
use vigil_core::documents::{shadow_error, with_client_token};
use vigil_core::telemetry::CONDITION_SHADOW;
use vigil_mqtt::{shadow_get_request, shadow_topic, valid_shadow_name};

use crate::gateway::topics;
use crate::store::EdgeStore;

/// Largest `get` request payload: room for a client token with plenty to spare (IoT's own
/// requests carry nothing else).
pub const MAX_GET_BYTES: usize = 1024;
/// Longest `clientToken` (IoT's limit).
pub const MAX_CLIENT_TOKEN_BYTES: usize = 64;

/// Most `get` requests answered per thing per second: a device that asks more often (a loop, a
/// flood) is not answered beyond it, so that its requests cannot fill the edge's MQTT queue,
/// which the telemetry's acknowledgements and results use too.
pub const MAX_GETS_PER_THING_PER_SECOND: u32 = 5;
/// Most things tracked per second (on the plain listener any client can name any thing).
const MAX_THINGS_PER_SECOND: usize = 4096;

/// The per-thing budget of [`MAX_GETS_PER_THING_PER_SECOND`], over fixed one-second windows.
#[derive(Debug)]
pub struct GetLimiter {
    window: std::time::Instant,
    counts: std::collections::HashMap<String, u32>,
}

impl GetLimiter {
    pub fn new(now: std::time::Instant) -> Self {
        Self {
            window: now,
            counts: std::collections::HashMap::new(),
        }
    }

    /// Whether a `get` on `broker_topic_name` may be answered now (counted if so).
    pub fn admit(&mut self, broker_topic_name: &str, now: std::time::Instant) -> bool {
        if now.duration_since(self.window) >= std::time::Duration::from_secs(1) {
            self.window = now;
            self.counts.clear();
        }
        // The thing segment of `vigil-aws/things/{thing}/...`: only a valid thing name is
        // tracked (at most 128 bytes; a request for any other gets no answer anyway), so that
        // long made-up names on the plain listener cannot grow the map.
        let thing = broker_topic_name.split('/').nth(2).unwrap_or_default();
        if !valid_shadow_name(thing) {
            return false;
        }
        if !self.counts.contains_key(thing) && self.counts.len() >= MAX_THINGS_PER_SECOND {
            return false;
        }
        let count = self.counts.entry(thing.to_string()).or_insert(0);
        *count += 1;
        *count <= MAX_GETS_PER_THING_PER_SECOND
    }

    /// Things tracked in the current second (bounded by `MAX_THINGS_PER_SECOND`).
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

/// The broker filter the edge subscribes to for `get` requests.
pub fn get_filter() -> String {
    format!(
        "{}things/+/shadow/name/{CONDITION_SHADOW}/get",
        topics::BROKER_PREFIX
    )
}

/// The broker topic of `suffix` (e.g. `update/accepted`) of a thing's `condition` shadow.
pub fn broker_topic(thing: &str, suffix: &str) -> String {
    let topic = format!("{}/{suffix}", shadow_topic(thing, CONDITION_SHADOW));
    topics::to_broker(&topic).unwrap_or(topic)
}

/// What a `get` request got.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Where it goes (the broker's name for it).
    pub topic: String,
    pub payload: Vec<u8>,
    pub accepted: bool,
}

/// The reply to a message on `broker_topic` (one [`get_filter`] matched), or `None` if it is
/// not a `get` for a `condition` shadow (nothing to answer, nobody to answer to).
pub fn answer_get(
    store: &EdgeStore,
    broker_topic_name: &str,
    payload: &[u8],
    now_s: u64,
) -> Option<Reply> {
    let (thing, name) = shadow_get_request(&topics::from_broker(broker_topic_name)?)?;
    if name != CONDITION_SHADOW {
        return None;
    }
    let reject = |code: u16, message: &str, token: Option<&str>| Reply {
        topic: broker_topic(&thing, "get/rejected"),
        payload: with_client_token(shadow_error(code, message, now_s), token)
            .to_string()
            .into_bytes(),
        accepted: false,
    };
    let token = match client_token(payload) {
        Ok(token) => token,
        Err((code, message)) => return Some(reject(code, &message, None)),
    };
    let token = token.as_deref();
    match store.synced_shadow(&thing) {
        Ok(Some(doc)) => Some(Reply {
            topic: broker_topic(&thing, "get/accepted"),
            payload: with_client_token(doc, token).to_string().into_bytes(),
            accepted: true,
        }),
        Ok(None) => Some(reject(
            404,
            &format!("No shadow exists with name: '{thing}~{name}'"),
            token,
        )),
        Err(e) => {
            tracing::warn!(%thing, error = %e, "shadow get: reading the store");
            Some(reject(500, "Internal service failure", token))
        }
    }
}

/// The request's `clientToken`, if any; or the code and message of why it is refused.
fn client_token(payload: &[u8]) -> Result<Option<String>, (u16, String)> {
    if payload.len() > MAX_GET_BYTES {
        return Err((
            413,
            format!(
                "Payload too large: {} bytes, over {MAX_GET_BYTES}",
                payload.len()
            ),
        ));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(payload) else {
        return Err((400, "Payload contains invalid json".into()));
    };
    match request.get("clientToken") {
        None => Ok(None),
        Some(Value::String(t)) if t.len() <= MAX_CLIENT_TOKEN_BYTES => Ok(Some(t.clone())),
        Some(_) => Err((
            400,
            format!("clientToken: a string of at most {MAX_CLIENT_TOKEN_BYTES} bytes"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Durability;
    use serde_json::json;

    #[test]
    fn a_thing_asking_too_often_is_not_answered_and_others_still_are() {
        let t0 = std::time::Instant::now();
        let mut limiter = GetLimiter::new(t0);
        let (a, b) = (
            broker_topic("rig-001", "get"),
            broker_topic("rig-002", "get"),
        );
        let answered = (0..20).filter(|_| limiter.admit(&a, t0)).count();
        assert_eq!(answered, MAX_GETS_PER_THING_PER_SECOND as usize);
        assert!(limiter.admit(&b, t0));
        assert!(limiter.admit(&a, t0 + std::time::Duration::from_secs(1)));
    }

    /// The plain listener lets any client name any thing: names no thing can have (each up to
    /// the broker's packet limit) are neither answered nor remembered, and at most
    /// `MAX_THINGS_PER_SECOND` valid ones are.
    #[test]
    fn made_up_things_cannot_grow_the_limiter() {
        let t0 = std::time::Instant::now();
        let mut limiter = GetLimiter::new(t0);
        let long = "x".repeat(60_000);
        for i in 0..64 {
            for thing in [
                format!("{long}{i}"),
                format!("rig {i}"),
                String::new(),
                format!("rig-{i}+"),
            ] {
                let topic = format!("vigil-aws/things/{thing}/shadow/name/{CONDITION_SHADOW}/get");
                assert!(
                    !limiter.admit(&topic, t0),
                    "{}",
                    &thing[..thing.len().min(20)]
                );
            }
        }
        assert_eq!(limiter.tracked(), 0);
        let admitted = (0..MAX_THINGS_PER_SECOND + 100)
            .filter(|i| limiter.admit(&broker_topic(&format!("rig-{i}"), "get"), t0))
            .count();
        assert_eq!(admitted, MAX_THINGS_PER_SECOND);
        assert_eq!(limiter.tracked(), MAX_THINGS_PER_SECOND);
    }

    fn reply_json(r: &Reply) -> Value {
        serde_json::from_slice(&r.payload).unwrap()
    }

    #[test]
    fn a_get_is_answered_from_the_store_and_bad_requests_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open_dir(dir.path(), Durability::PerCommit).unwrap();
        let get = |thing: &str, payload: &[u8]| {
            answer_get(&store, &broker_topic(thing, "get"), payload, 5)
        };
        let before = get("rig-001", b"").unwrap();
        assert!(!before.accepted);
        assert_eq!(
            before.topic,
            "vigil-aws/things/rig-001/shadow/name/condition/get/rejected"
        );
        assert_eq!(reply_json(&before)["code"], 404);

        let update = json!({"state": {"reported": {"label": "3", "seq_start": 0, "seq_end": 60}}});
        store.save_shadow("rig-001", &update, 4).unwrap();
        let after = get("rig-001", br#"{"clientToken":"t-1"}"#).unwrap();
        assert!(after.accepted);
        assert_eq!(
            after.topic,
            "vigil-aws/things/rig-001/shadow/name/condition/get/accepted"
        );
        let doc = reply_json(&after);
        assert_eq!(doc["state"]["reported"]["seq_end"], 60);
        assert_eq!(
            (doc["version"].clone(), doc["clientToken"].clone()),
            (1.into(), "t-1".into())
        );
        // Another thing's shadow is its own (here: none).
        assert_eq!(reply_json(&get("rig-002", b"{}").unwrap())["code"], 404);

        for (payload, code) in [
            (b"not json".to_vec(), 400),
            (b"[1]".to_vec(), 400),
            (
                format!(r#"{{"clientToken":"{}"}}"#, "x".repeat(65)).into_bytes(),
                400,
            ),
            (vec![b' '; MAX_GET_BYTES + 1], 413),
        ] {
            let r = get("rig-001", &payload).unwrap();
            assert!(!r.accepted);
            assert_eq!(
                reply_json(&r)["code"],
                code,
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
        // Not a get for the condition shadow: nothing to answer.
        for topic in [
            "vigil-aws/things/rig-001/shadow/name/alarm/get",
            "vigil-aws/things/rig-001/shadow/name/condition/update",
            "dt/vigil/rig-001/condition",
        ] {
            assert_eq!(answer_get(&store, topic, b"", 5), None, "{topic}");
        }
    }
}
