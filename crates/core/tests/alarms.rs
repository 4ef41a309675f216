//! Alarms through the whole pipeline over the in-memory ports: notifications carry the alarm
//! state, operators' actions saved in the device state change what is told next (escalation,
//! snooze, acknowledgement).

use std::collections::BTreeMap;

mod common;

use futures_executor::block_on;
use vigil_core::alarm::{operate, AlarmState, Command, NoticeReason, OperatorAction};
use vigil_core::alert::Severity;
use vigil_core::memory::MemoryPorts;
use vigil_core::ports::StreamKey;
use vigil_core::{CompiledProfile, DeviceId, Pipeline, Sample};

const MIN: u64 = 60_000;

fn profiles() -> BTreeMap<String, CompiledProfile> {
    common::one_channel_profiles(
        4,
        "close_after = 4",
        "escalate_after_s = 600\nescalate_max = 1",
    )
}

struct Rig {
    profiles: BTreeMap<String, CompiledProfile>,
    ports: MemoryPorts,
    device: DeviceId,
    next_seq: u64,
}

impl Rig {
    fn new() -> Self {
        Self {
            profiles: profiles(),
            ports: MemoryPorts::new(),
            device: DeviceId::new("press-1").unwrap(),
            next_seq: 0,
        }
    }

    /// Sends one whole window at the given value, processed at `now_ms`.
    fn window(&mut self, value: f32, now_ms: u64) {
        let batch: Vec<Sample> = (0..4)
            .map(|i| Sample {
                seq: self.next_seq + i,
                ts: (self.next_seq + i) * 1000,
                values: vec![value],
            })
            .collect();
        self.next_seq += 4;
        let m = common::message_a(&self.device, format!("m{}", self.next_seq), &batch);
        let pipeline =
            Pipeline::new(&self.profiles, self.ports.ports(), common::test_config()).unwrap();
        block_on(pipeline.process(&[m], now_ms));
    }

    fn act(&self, id: &str, command: Command, now_ms: u64) -> AlarmState {
        let action = OperatorAction {
            id: id.into(),
            condition: "hot".into(),
            by: "ana".into(),
            command,
        };
        let key = StreamKey {
            device: self.device.clone(),
            profile: "test".into(),
        };
        let policy = &self.profiles["test"].profile.alert;
        block_on(operate(&self.ports.states, &key, policy, &action, now_ms)).unwrap();
        self.ports.states.get(&key).unwrap().alarms.state_of("hot")
    }

    /// (kind, alarm state, severity, reason) of every notification so far.
    fn told(&self) -> Vec<(String, &'static str, Severity, NoticeReason)> {
        self.ports
            .recorder
            .alerts()
            .iter()
            .map(|a| {
                let n = a
                    .alarm
                    .as_ref()
                    .expect("every notification carries its alarm");
                (
                    a.transition.kind().to_string(),
                    n.state.as_str(),
                    n.severity,
                    n.reason,
                )
            })
            .collect()
    }
}

#[test]
fn unacknowledged_alarms_escalate_and_latch_when_they_clear() {
    let mut rig = Rig::new();
    rig.window(90.0, 0);
    rig.window(90.0, 5 * MIN);
    rig.window(90.0, 10 * MIN); // escalates
    rig.window(90.0, 30 * MIN); // the limit is one escalation
    rig.window(10.0, 31 * MIN);
    assert_eq!(
        rig.told(),
        vec![
            (
                "raised".into(),
                "active_unacknowledged",
                Severity::Warning,
                NoticeReason::Transition
            ),
            (
                "raised".into(),
                "active_unacknowledged",
                Severity::Critical,
                NoticeReason::Escalated
            ),
            (
                "cleared".into(),
                "cleared_unacknowledged",
                Severity::Critical,
                NoticeReason::Transition
            ),
        ]
    );
    assert_eq!(
        rig.act(
            "late-ack",
            Command::Acknowledge { note: "".into() },
            40 * MIN
        ),
        AlarmState::Normal
    );
}

#[test]
fn acknowledged_alarms_do_not_escalate_and_clear_to_normal() {
    let mut rig = Rig::new();
    rig.window(90.0, 0);
    assert_eq!(
        rig.act(
            "ack-1",
            Command::Acknowledge {
                note: "on it".into()
            },
            MIN
        ),
        AlarmState::ActiveAcknowledged
    );
    rig.window(90.0, 20 * MIN);
    rig.window(10.0, 21 * MIN);
    let told = rig.told();
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[1].1, "normal");
    let alerts = rig.ports.recorder.alerts();
    assert_eq!(
        alerts[1].alarm.as_ref().unwrap().acknowledged_by.as_deref(),
        Some("ana")
    );
}

#[test]
fn a_snoozed_alarm_is_silent_then_reminds() {
    let mut rig = Rig::new();
    assert!(matches!(
        rig.act("s1", Command::Snooze { for_s: 1800 }, 0),
        AlarmState::Snoozed { .. }
    ));
    rig.window(90.0, MIN);
    rig.window(90.0, 20 * MIN);
    assert!(rig.told().is_empty());
    rig.window(90.0, 31 * MIN);
    assert_eq!(
        rig.told(),
        vec![(
            "raised".into(),
            "active_unacknowledged",
            Severity::Warning,
            NoticeReason::Reminder
        )]
    );
}
