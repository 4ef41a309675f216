//! Operators' alarm actions on AWS. An operator's tool (or `aws iot-data update-thing-shadow`)
//! writes the desired state of the device's named shadow `alarm`; a topic rule on
//! `$aws/things/+/shadow/name/alarm/update/delta` invokes this function with
//! `SELECT state, version, topic(3) AS thing, 'alarm' AS vigil_event`. The action is applied
//! with [`vigil_core::alarm::operate`], the same code the edge's HTTP endpoint uses.
//!
//! Identity: the device comes from the topic (`thing`), never from the desired document. The
//! action id defaults to `shadow-v{version}`: a redelivered delta has the same version, so it
//! applies once.

use serde_json::{json, Value};
use vigil_core::alarm::{operate, ActionOutcome, Command, OperateError, OperatorAction};
use vigil_core::ports::StreamKey;
use vigil_core::DeviceId;

use crate::handler::App;

/// The marker the topic rule adds to these events.
pub const EVENT_KIND: &str = "alarm";
/// Largest delta accepted (an action is a few hundred bytes).
pub const MAX_EVENT_BYTES: usize = 8 * 1024;

/// Whether the event came from the `alarm` shadow rule (see the module doc).
pub fn is_alarm_event(event: &Value) -> bool {
    event.get("vigil_event").and_then(Value::as_str) == Some(EVENT_KIND)
}

#[derive(Debug, thiserror::Error)]
pub enum AlarmEventError {
    /// The delta is malformed or refused (field, reason): retrying cannot help.
    #[error("alarm delta: {0}: {1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Operate(#[from] OperateError),
}

impl AlarmEventError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Operate(e) if e.is_retryable())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AlarmEventError {
    AlarmEventError::Invalid(field, reason.into())
}

/// The device and the action a delta carries.
pub fn parse(event: &Value) -> Result<(DeviceId, OperatorAction), AlarmEventError> {
    if serde_json::to_vec(event).map_or(usize::MAX, |b| b.len()) > MAX_EVENT_BYTES {
        return Err(invalid(
            "event",
            format!("larger than {MAX_EVENT_BYTES} bytes"),
        ));
    }
    let thing = event
        .get("thing")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("thing", "missing (the topic rule sets it from the topic)"))?;
    let device = DeviceId::new(thing).map_err(|e| invalid("thing", e.to_string()))?;
    let desired = event
        .pointer("/state/action")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("state.action", "missing or not an object"))?;
    let text = |k: &str| desired.get(k).and_then(Value::as_str).map(str::to_string);
    let id = match text("id") {
        Some(id) => id,
        None => match event.get("version").and_then(Value::as_u64) {
            Some(v) => format!("shadow-v{v}"),
            None => return Err(invalid("state.action.id", "missing, and no shadow version")),
        },
    };
    let command = match text("action").as_deref() {
        Some("acknowledge") => Command::Acknowledge {
            note: text("note").unwrap_or_default(),
        },
        Some("snooze") => Command::Snooze {
            for_s: desired
                .get("for_s")
                .and_then(Value::as_u64)
                .ok_or_else(|| invalid("state.action.for_s", "a snooze needs seconds"))?,
        },
        Some("disable") => Command::Disable,
        Some("enable") => Command::Enable,
        Some("reset") => Command::Reset,
        other => {
            return Err(invalid(
                "state.action.action",
                format!("{other:?}: expected acknowledge, snooze, disable, enable or reset"),
            ))
        }
    };
    let action = OperatorAction {
        id,
        condition: text("condition").ok_or_else(|| invalid("state.action.condition", "missing"))?,
        by: text("by").ok_or_else(|| invalid("state.action.by", "missing"))?,
        command,
    };
    Ok((device, action))
}

/// Applies the delta's action to the device state; returns what to log and answer.
/// Applies the delta's action, then reports what became of it in the `alarm` shadow's
/// `reported` side: the desired action itself (so the delta clears) and `applied` (id, outcome,
/// the alarm's state) or `refused` (why). A failure that a retry may cure is not reported: the
/// retry decides. A failed report fails the invocation; its retry is a duplicate, applied once
/// and reported again.
pub async fn handle(app: &App<'_>, event: &Value, now_ms: u64) -> Result<Value, AlarmEventError> {
    let outcome = apply(app, event, now_ms).await;
    let device = event
        .get("thing")
        .and_then(Value::as_str)
        .and_then(|t| DeviceId::new(t).ok());
    let (Some(reports), Some(device)) = (app.alarm_reports, device) else {
        return outcome;
    };
    let desired = event
        .pointer("/state/action")
        .cloned()
        .unwrap_or(Value::Null);
    let reported = match &outcome {
        Ok(answer) => json!({
            "action": desired,
            "applied": {
                "id": answer["id"],
                "outcome": answer["outcome"]["outcome"],
                "state": answer["state"],
                "at_ms": now_ms,
            },
            // A shadow update merges: null removes the previous action's other outcome.
            "refused": null,
        }),
        Err(e) if !e.is_retryable() => json!({
            "action": desired,
            "refused": { "reason": e.to_string(), "at_ms": now_ms },
            "applied": null,
        }),
        Err(_) => return outcome,
    };
    match reports.report(&device, &reported).await {
        Ok(()) => outcome,
        Err(e) if outcome.is_ok() => Err(AlarmEventError::Operate(e.into())),
        Err(e) => {
            tracing::warn!(device = %device, error = %e, "refusal not reported");
            outcome
        }
    }
}

async fn apply(app: &App<'_>, event: &Value, now_ms: u64) -> Result<Value, AlarmEventError> {
    let (device, action) = parse(event)?;
    let profile = app
        .ports
        .registry
        .profile_of(&device)
        .await
        .map_err(|e| AlarmEventError::Operate(e.into()))?
        .unwrap_or_else(|| app.default_profile.clone());
    let compiled = app
        .profiles
        .get(&profile)
        .ok_or_else(|| invalid("profile", format!("{profile} is not loaded")))?;
    let key = StreamKey {
        device: device.clone(),
        profile,
    };
    let outcome = operate(
        app.ports.states,
        &key,
        &compiled.profile.alert,
        &action,
        now_ms,
    )
    .await?;
    let state = match &outcome {
        ActionOutcome::Applied { to, .. } => *to,
        ActionOutcome::Duplicate { state } => *state,
    };
    tracing::info!(device = %device, condition = %action.condition, action = action.command.name(), by = %action.by, id = %action.id, state = state.as_str(), "alarm action");
    Ok(json!({
        "device": device.as_str(),
        "condition": action.condition,
        "id": action.id,
        "outcome": outcome,
        "state": state.as_str(),
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use vigil_core::alarm::AlarmState;
    use vigil_core::memory::MemoryPorts;
    use vigil_core::scorer::{ZScoreConfig, ZScoreScorer};
    use vigil_core::{CompiledProfile, Profile};

    use super::*;

    fn profiles() -> BTreeMap<String, CompiledProfile> {
        let p = Profile::from_toml(
            r#"
name = "z"
channels = ["value"]
sample_rate_hz = 1.0
[window]
size = 1
hop = 1
close_after = 1
[scorer]
kind = "zscore"
[alert]
unhealthy = ["anomaly"]
"#,
            "z.toml",
        )
        .unwrap();
        let scorer = Arc::new(ZScoreScorer::new(ZScoreConfig {
            threshold: 3.0,
            warmup: 10,
            learn_anomalies: false,
        }));
        BTreeMap::from([("z".to_string(), CompiledProfile::new(p, scorer).unwrap())])
    }

    fn delta(thing: &str, version: u64, action: Value) -> Value {
        json!({"vigil_event": "alarm", "thing": thing, "version": version, "state": {"action": action}})
    }

    #[test]
    fn deltas_parse_with_the_device_from_the_topic() {
        let e = delta(
            "rig-1",
            7,
            json!({"condition": "anomaly", "by": "ana", "action": "snooze", "for_s": 60, "device": "someone-else"}),
        );
        assert!(is_alarm_event(&e));
        let (device, action) = parse(&e).unwrap();
        assert_eq!(device.as_str(), "rig-1");
        assert_eq!(action.id, "shadow-v7");
        assert_eq!(action.command, Command::Snooze { for_s: 60 });
        for (bad, field) in [
            (
                json!({"vigil_event": "alarm", "state": {"action": {}}}),
                "thing",
            ),
            (delta("rig 1", 1, json!({})), "thing"),
            (
                delta(
                    "rig-1",
                    1,
                    json!({"condition": "anomaly", "by": "a", "action": "explode"}),
                ),
                "state.action.action",
            ),
            (
                delta(
                    "rig-1",
                    1,
                    json!({"condition": "anomaly", "by": "a", "action": "snooze"}),
                ),
                "state.action.for_s",
            ),
            (
                delta("rig-1", 1, json!({"by": "a", "action": "reset"})),
                "state.action.condition",
            ),
            (
                delta(
                    "rig-1",
                    1,
                    json!({"note": "x".repeat(MAX_EVENT_BYTES), "by": "a", "condition": "anomaly", "action": "acknowledge"}),
                ),
                "event",
            ),
        ] {
            match parse(&bad) {
                Err(AlarmEventError::Invalid(f, _)) => assert_eq!(f, field, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(!is_alarm_event(&json!({"Records": []})));
    }

    #[tokio::test]
    async fn a_delta_applies_once_per_shadow_version() {
        let profiles = profiles();
        let mem = MemoryPorts::new();
        let app = App {
            profiles: &profiles,
            ports: mem.ports(),
            default_profile: "z".into(),
            usage: None,
            function: "test".into(),
            print_metrics: false,
            close_hints: Default::default(),
            alarm_reports: Some(&mem.recorder),
        };
        let e = delta(
            "rig-1",
            3,
            json!({"condition": "anomaly", "by": "ana", "action": "disable"}),
        );
        let first = handle(&app, &e, 1000).await.unwrap();
        assert_eq!(first["state"], "disabled");
        assert_eq!(first["outcome"]["outcome"], "applied");
        let again = handle(&app, &e, 2000).await.unwrap();
        assert_eq!(again["outcome"]["outcome"], "duplicate");
        let key = StreamKey {
            device: DeviceId::new("rig-1").unwrap(),
            profile: "z".into(),
        };
        assert_eq!(
            mem.states.get(&key).unwrap().alarms.state_of("anomaly"),
            AlarmState::Disabled
        );
        // Refused in this state: not retryable.
        let e = delta(
            "rig-1",
            4,
            json!({"condition": "anomaly", "by": "ana", "action": "disable"}),
        );
        let err = handle(&app, &e, 3000).await.unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        // Each outcome is reported as the `alarm` shadow's reported side, with the desired
        // action itself so that the delta clears.
        let reports = mem.recorder.alarm_reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|(d, _)| d.as_str() == "rig-1"));
        let desired = json!({"condition": "anomaly", "by": "ana", "action": "disable"});
        assert!(reports.iter().all(|(_, r)| r["action"] == desired));
        assert_eq!(reports[0].1["applied"]["outcome"], "applied");
        assert_eq!(reports[0].1["applied"]["state"], "disabled");
        assert_eq!(reports[0].1["applied"]["id"], "shadow-v3");
        assert_eq!(reports[1].1["applied"]["outcome"], "duplicate");
        assert!(reports[2].1["refused"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()));
        assert!(reports[2].1["applied"].is_null());
    }
}
