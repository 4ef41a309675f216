//! The agent's use of the `condition` named shadow: the pipeline keeps the LATEST verdict of
//! each thing there (AWS IoT's shadow service; `vigil edge` answers for it too). A verdict the
//! agent missed — its session was lost with the results in it — can be read back from the shadow
//! as long as it is still the latest: the agent asks (`get`) after a reconnect that found no
//! session and before it gives samples up, and counts the windows the shadow's verdict covers
//! as received. Older missed verdicts are not in the shadow any more; those samples are still
//! given up.

use std::time::{Duration, Instant};

use rumqttc::{QoS, SubscribeFilter};
use vigil_core::telemetry::CONDITION_SHADOW;

use crate::agent::Verdict;

/// Largest shadow document read (IoT's shadow documents are at most 8 KiB of state; the
/// `condition` shadow holds one verdict).
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The topics of the thing's `condition` shadow the agent uses.
#[derive(Debug, Clone)]
pub struct ShadowTopics {
    pub get: String,
    pub get_accepted: String,
    pub get_rejected: String,
    pub update_accepted: String,
}

impl ShadowTopics {
    pub fn new(thing: &str) -> Self {
        let base = vigil_mqtt::shadow_topic(thing, CONDITION_SHADOW);
        Self {
            get: format!("{base}/get"),
            get_accepted: format!("{base}/get/accepted"),
            get_rejected: format!("{base}/get/rejected"),
            update_accepted: format!("{base}/update/accepted"),
        }
    }

    /// What the agent subscribes to on every connection.
    pub fn filters(&self) -> Vec<SubscribeFilter> {
        [
            &self.update_accepted,
            &self.get_accepted,
            &self.get_rejected,
        ]
        .into_iter()
        .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
        .collect()
    }

    /// What a message on one of the shadow's topics says; `None` for other topics.
    pub fn read(&self, topic: &str, payload: &[u8]) -> Option<ShadowMessage> {
        if topic == self.update_accepted {
            Some(ShadowMessage::Updated)
        } else if topic == self.get_accepted {
            Some(match verdict_of(payload) {
                Ok(v) => ShadowMessage::Verdict(v),
                Err(why) => ShadowMessage::Unreadable(why),
            })
        } else if topic == self.get_rejected {
            let code = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|r| r["code"].as_u64());
            Some(ShadowMessage::Rejected(code))
        } else {
            None
        }
    }
}

/// A message on the shadow's topics.
#[derive(Debug)]
pub enum ShadowMessage {
    /// `update/accepted`: the pipeline published a verdict (also on the condition topic).
    Updated,
    /// `get/accepted`: the latest verdict.
    Verdict(Verdict),
    /// `get/accepted` without a readable verdict.
    Unreadable(String),
    /// `get/rejected` with its code (404: no verdict yet).
    Rejected(Option<u64>),
}

fn verdict_of(payload: &[u8]) -> Result<Verdict, String> {
    if payload.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "{} bytes, over {MAX_DOCUMENT_BYTES}",
            payload.len()
        ));
    }
    #[derive(serde::Deserialize)]
    struct Document {
        state: State,
    }
    #[derive(serde::Deserialize)]
    struct State {
        reported: Verdict,
    }
    let doc: Document = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let v = doc.state.reported;
    if v.seq_end < v.seq_start {
        return Err(format!("seq {}..{} is backwards", v.seq_start, v.seq_end));
    }
    Ok(v)
}

/// Whether a give-up waits for the shadow.
#[derive(Debug, PartialEq, Eq)]
pub enum BeforeGiveUp {
    /// Send a `get` now and wait for its answer.
    Ask,
    /// A `get` is on its way: wait.
    Wait,
    /// The shadow has answered since the round began (or does not answer): give up.
    Proceed,
}

/// When the agent last asked the shadow, and whether it answered since the current resend
/// round began.
#[derive(Debug, Default)]
pub struct ShadowCheck {
    asked_at: Option<Instant>,
    answered: bool,
}

impl ShadowCheck {
    pub fn asked(&mut self, now: Instant) {
        self.asked_at = Some(now);
        self.answered = false;
    }

    pub fn answered(&mut self) {
        self.asked_at = None;
        self.answered = true;
    }

    /// A resend round begins: what the shadow said before is old news at its end.
    pub fn new_round(&mut self) {
        self.answered = false;
    }

    /// A give-up is due. An unanswered `get` is waited for at most `patience` (a broker or
    /// edge that does not answer costs a round, not the give-up).
    pub fn before_give_up(&self, now: Instant, patience: Duration) -> BeforeGiveUp {
        match self.asked_at {
            _ if self.answered => BeforeGiveUp::Proceed,
            None => BeforeGiveUp::Ask,
            Some(t) if now.duration_since(t) < patience => BeforeGiveUp::Wait,
            Some(_) => BeforeGiveUp::Proceed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_replies_are_read() {
        let t = ShadowTopics::new("rig-001");
        assert_eq!(t.get, "$aws/things/rig-001/shadow/name/condition/get");
        let doc = br#"{"state":{"reported":{"window":3,"seq_start":180,"seq_end":240,"label":"3",
                       "status":"ok","completeness":1.0}},"version":4,"timestamp":1}"#;
        match t.read(&t.get_accepted, doc) {
            Some(ShadowMessage::Verdict(v)) => {
                assert_eq!((v.window, v.seq_start, v.seq_end), (3, 180, 240));
            }
            other => panic!("{other:?}"),
        }
        let backwards = br#"{"state":{"reported":{"window":3,"seq_start":240,"seq_end":180}}}"#;
        assert!(matches!(
            t.read(&t.get_accepted, backwards),
            Some(ShadowMessage::Unreadable(_))
        ));
        assert!(matches!(
            t.read(&t.get_accepted, br#"{"state":{}}"#),
            Some(ShadowMessage::Unreadable(_))
        ));
        assert!(matches!(
            t.read(&t.get_rejected, br#"{"code":404,"message":"no"}"#),
            Some(ShadowMessage::Rejected(Some(404)))
        ));
        assert!(matches!(
            t.read(&t.update_accepted, b"{}"),
            Some(ShadowMessage::Updated)
        ));
        assert!(t.read("dt/vigil/rig-001/condition", b"{}").is_none());
    }

    #[test]
    fn a_give_up_asks_first_and_waits_a_bounded_time() {
        let (t0, patience) = (Instant::now(), Duration::from_secs(2));
        let mut check = ShadowCheck::default();
        assert_eq!(check.before_give_up(t0, patience), BeforeGiveUp::Ask);
        check.asked(t0);
        assert_eq!(check.before_give_up(t0, patience), BeforeGiveUp::Wait);
        assert_eq!(
            check.before_give_up(t0 + patience, patience),
            BeforeGiveUp::Proceed
        );
        check.answered();
        assert_eq!(check.before_give_up(t0, patience), BeforeGiveUp::Proceed);
        check.new_round();
        assert_eq!(check.before_give_up(t0, patience), BeforeGiveUp::Ask);
    }
}
