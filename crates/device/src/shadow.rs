//! The agent's use of the `condition` named shadow: the pipeline keeps the LATEST verdict of
//! each thing there (AWS IoT's shadow service; `vigil edge` answers for it too). A verdict the
//! agent missed — its session was lost with the results in it — can be read back from the shadow
//! as long as it is still the latest: the agent asks (`get`) after a reconnect that found no
//! session and before it gives samples up, and counts the windows the shadow's verdict covers
//! as received. Older missed verdicts are not in the shadow any more; those samples are still
//! given up.

use std::ops::Range;
use std::time::{Duration, Instant};

use rumqttc::{QoS, SubscribeFilter};
use vigil_core::telemetry::CONDITION_SHADOW;
use vigil_core::window::MAX_WINDOW_SIZE;

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
    window_shape(&v)?;
    Ok(v)
}

/// Whether the verdict's seqs are those of one window as the pipeline lays windows out
/// (`seq_start = window × hop`, `seq_end = seq_start + size`, `hop <= size <= MAX_WINDOW_SIZE`):
/// a reply for a range no window can have (backwards, empty, wider than any window, or not at
/// its window's place) accounts for nothing.
fn window_shape(v: &Verdict) -> Result<(), String> {
    let span = v.seq_end.checked_sub(v.seq_start).filter(|s| *s > 0);
    let Some(span) = span.filter(|s| *s <= u64::from(MAX_WINDOW_SIZE)) else {
        return Err(format!(
            "seq {}..{} is not a window's range (1..={MAX_WINDOW_SIZE} seqs)",
            v.seq_start, v.seq_end
        ));
    };
    let placed = match v.window {
        0 => v.seq_start == 0,
        w => v.seq_start % w == 0 && (1..=span).contains(&(v.seq_start / w)),
    };
    if !placed {
        return Err(format!(
            "window {} cannot start at seq {} with {span} seqs",
            v.window, v.seq_start
        ));
    }
    Ok(())
}

/// The seqs a shadow verdict may confirm: its window's, but only those the agent has sent
/// (`sent_end`: one past the highest seq it published). The shadow is read back because a
/// result was lost, so it can only account for samples that reached the pipeline; a verdict
/// that reaches past them (a buggy or hostile reply, another run's seqs) confirms none of the
/// samples still to be delivered.
pub fn confirmable(v: &Verdict, sent_end: u64) -> Range<u64> {
    v.seq_start.min(sent_end)..v.seq_end.min(sent_end)
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

    fn verdict(window: u64, seq_start: u64, seq_end: u64) -> String {
        format!(
            r#"{{"state":{{"reported":{{"window":{window},"seq_start":{seq_start},"seq_end":{seq_end},"label":"3"}}}}}}"#
        )
    }

    /// Hostile or buggy `get/accepted` replies: only a range one window can have is read, and
    /// only the part of it the agent has sent is confirmed.
    #[test]
    fn a_shadow_reply_confirms_only_what_it_can_account_for() {
        let t = ShadowTopics::new("rig-001");
        let read = |doc: &str| match t.read(&t.get_accepted, doc.as_bytes()) {
            Some(ShadowMessage::Verdict(v)) => Ok(v),
            Some(ShadowMessage::Unreadable(why)) => Err(why),
            other => panic!("{other:?}"),
        };
        // Sliding windows (hop 30, size 60) and tumbling ones read as they are.
        for (w, start, end) in [(0, 0, 60), (3, 180, 240), (7, 210, 270), (1, 30, 90)] {
            let v = read(&verdict(w, start, end)).unwrap();
            assert_eq!((v.seq_start, v.seq_end), (start, end));
        }
        for (w, start, end) in [
            (0, 0, u64::MAX),                       // every seq there is
            (0, 0, u64::from(MAX_WINDOW_SIZE) + 1), // wider than any window
            (3, 240, 180),                          // backwards
            (3, 180, 180),                          // empty
            (0, 60, 120),                           // window 0 starts at 0
            (7, 181, 241),                          // not at a multiple of the window
            (2, 500, 560),                          // hop 250 > size 60
            (u64::MAX, u64::MAX - 1, u64::MAX),     // hop 0
        ] {
            assert!(read(&verdict(w, start, end)).is_err(), "{w} {start}..{end}");
        }
        for doc in [
            r#"{"state":{"reported":{"window":"3","seq_start":180,"seq_end":240}}}"#,
            r#"{"state":{"reported":{"window":3,"seq_start":-60,"seq_end":240}}}"#,
            r#"{"state":{"reported":{"window":3,"seq_start":180.5,"seq_end":240}}}"#,
            r#"{"state":{"reported":{"window":3,"seq_start":180,"seq_end":1e30}}}"#,
            r#"{"state":{"reported":[]}}"#,
        ] {
            assert!(read(doc).is_err(), "{doc}");
        }
        let v = read(&verdict(3, 180, 240)).unwrap();
        assert_eq!(confirmable(&v, 1000), 180..240);
        // The agent has sent up to seq 199: the rest of the window is not the reply's to confirm.
        assert_eq!(confirmable(&v, 200), 180..200);
        // A verdict for a window the agent never sent confirms nothing.
        assert!(confirmable(&v, 120).is_empty());
        assert!(confirmable(&v, 0).is_empty());
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
