//! Operators' alarm actions through the `alarm` shadow's delta rule, against DynamoDB Local: the
//! action lands in the device state, a redelivered delta (same shadow version) writes nothing,
//! a refused action fails permanently.

use serde_json::json;
use vigil_tests::fixture::{Fixture, Options};

fn delta(thing: &str, version: u64, action: serde_json::Value) -> serde_json::Value {
    // What the topic rule (infra/modules/pipeline/alarms.tf) hands the function.
    json!({"vigil_event": "alarm", "thing": thing, "version": version, "state": {"action": action}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_deltas_apply_alarm_actions_once() {
    let fx = Fixture::new(Options::default()).await;
    let thing = fx.thing("alarm").await;
    let action = json!({"condition": "20", "by": "ana", "action": "snooze", "for_s": 3600});
    let snooze = delta(&thing, 5, action.clone());
    let h = fx.invoke(&snooze, "req-alarm-1").await;
    let answer = h.response.expect("the action is applied");
    assert_eq!(answer["outcome"]["outcome"], "applied");
    assert_eq!(answer["id"], "shadow-v5");
    let (state, version) = fx.state(&thing, "hydraulic-cooler").await.unwrap();
    assert_eq!(state["alarms"]["alarms"]["20"]["state"]["state"], "snoozed");
    // The `alarm` shadow's reported side says what became of it, and repeats the desired
    // action, so that the shadow's delta clears.
    let reported = fx.named_shadow(&thing, "alarm").await["state"]["reported"].clone();
    assert_eq!(reported["action"], action);
    assert_eq!(reported["applied"]["state"], "snoozed");
    assert_eq!(reported["applied"]["id"], "shadow-v5");

    // Redelivered: same version, nothing written.
    let h = fx.invoke(&snooze, "req-alarm-2").await;
    assert_eq!(h.response.unwrap()["outcome"]["outcome"], "duplicate");
    assert_eq!(
        fx.state(&thing, "hydraulic-cooler").await.unwrap().1,
        version
    );

    // Meaningless here (a snoozed, inactive alarm cannot be enabled): permanent, not retried.
    let enable = delta(
        &thing,
        6,
        json!({"condition": "20", "by": "ana", "action": "enable"}),
    );
    let err = fx
        .invoke(&enable, "req-alarm-3")
        .await
        .response
        .unwrap_err();
    assert_eq!(err.error_type(), "Vigil.Permanent", "{err}");
    // A condition the profile does not have: permanent too.
    let bad = delta(
        &thing,
        7,
        json!({"condition": "42", "by": "ana", "action": "reset"}),
    );
    let err = fx.invoke(&bad, "req-alarm-4").await.response.unwrap_err();
    assert_eq!(err.error_type(), "Vigil.Permanent", "{err}");
    // Refusals are reported too: operators see why, and the delta clears.
    let reported = fx.named_shadow(&thing, "alarm").await["state"]["reported"].clone();
    assert_eq!(reported["action"]["condition"], "42");
    assert!(
        reported["refused"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("42")),
        "{reported}"
    );
    assert!(
        reported.get("applied").is_none(),
        "the earlier outcome is gone: {reported}"
    );
    assert_eq!(
        fx.state(&thing, "hydraulic-cooler").await.unwrap().1,
        version
    );
}
