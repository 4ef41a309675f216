//! Seq sanity through the pipeline (in-memory ports): a sample too far past its device's last
//! applied window is rejected with `seq_jump`, and alerting keeps working after any sequence
//! of accepted windows, whatever their seqs and device times.

use std::collections::BTreeMap;

mod common;

use futures_executor::block_on;
use proptest::prelude::*;
use vigil_core::memory::MemoryPorts;
use vigil_core::ports::StreamKey;
use vigil_core::seq_guard::{max_seq_jump, MAX_SEQ_JUMP_WINDOWS};
use vigil_core::telemetry::MAX_JSON_SAFE_INTEGER;
use vigil_core::{CompiledProfile, DeviceId, MessageOutcome, Pipeline, Sample};

const SIZE: u64 = 4;
const COOLDOWN_MS: u64 = 60_000;

fn profiles() -> BTreeMap<String, CompiledProfile> {
    common::one_channel_profiles(
        SIZE,
        "",
        &format!(
            "raise_after = 2\nclear_after = 2\ncooldown_s = {}",
            COOLDOWN_MS / 1000
        ),
    )
}

struct Device {
    profiles: BTreeMap<String, CompiledProfile>,
    ports: MemoryPorts,
    id: DeviceId,
    sent: usize,
}

impl Device {
    fn new() -> Self {
        Self {
            profiles: profiles(),
            ports: MemoryPorts::new(),
            id: DeviceId::new("rig-1").unwrap(),
            sent: 0,
        }
    }

    /// Sends window `w` whole in one message, hot or not, its samples stamped from `ts`.
    fn send(&mut self, w: u64, hot: bool, ts: u64) -> MessageOutcome {
        let value = if hot { 90.0 } else { 10.0 };
        let samples: Vec<Sample> = (0..SIZE)
            .map(|j| Sample {
                seq: w * SIZE + j,
                ts: ts.saturating_add(j).min(MAX_JSON_SAFE_INTEGER),
                values: vec![value],
            })
            .collect();
        self.sent += 1;
        let message = common::message_a(&self.id, format!("m{}", self.sent), &samples);
        let pipeline =
            Pipeline::new(&self.profiles, self.ports.ports(), common::test_config()).unwrap();
        let mut report = block_on(pipeline.process(&[message], 0));
        report.outcomes.remove(0)
    }

    fn active_alert(&self) -> Option<String> {
        let key = StreamKey {
            device: self.id.clone(),
            profile: "test".into(),
        };
        self.ports.states.get(&key).and_then(|s| s.alert.active)
    }
}

fn rejected_code(o: &MessageOutcome) -> Option<&'static str> {
    match o {
        MessageOutcome::Rejected(e) => Some(e.code()),
        _ => None,
    }
}

#[test]
fn a_far_future_window_is_rejected_and_the_real_stream_still_alerts() {
    let mut d = Device::new();
    for w in 0..3 {
        assert!(matches!(
            d.send(w, false, w * 4_000),
            MessageOutcome::Accepted { .. }
        ));
    }
    // One window at seq ≈ 2^53 (a corrupted counter): rejected, dead-lettered, counted.
    let far = MAX_JSON_SAFE_INTEGER / SIZE - 1;
    let outcome = d.send(far, true, MAX_JSON_SAFE_INTEGER - 10);
    assert_eq!(rejected_code(&outcome), Some("seq_jump"), "{outcome:?}");
    let rejected = d.ports.recorder.rejected.lock().unwrap().clone();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].error.field, "samples[0].seq");
    // The device's own stream goes on where it was and raises its alert.
    d.send(3, true, 12_000);
    d.send(4, true, 16_000);
    assert_eq!(d.active_alert().as_deref(), Some("hot"));
}

#[test]
fn the_bound_is_windows_past_the_last_applied_one() {
    let mut d = Device::new();
    d.send(0, false, 0);
    // Window 0 applied: the next expected seq is 4; 4 + limit is the last one accepted.
    let last_ok = (SIZE + max_seq_jump(&WindowSpecProbe::spec())) / SIZE - 1;
    assert!(matches!(
        d.send(last_ok, false, 1),
        MessageOutcome::Accepted { .. }
    ));
    // That window was applied too, so the bound moved with it.
    assert!(matches!(
        d.send(last_ok + MAX_SEQ_JUMP_WINDOWS, false, 2),
        MessageOutcome::Accepted { .. }
    ));
    let too_far = last_ok + 2 * MAX_SEQ_JUMP_WINDOWS + 2;
    assert_eq!(rejected_code(&d.send(too_far, false, 3)), Some("seq_jump"));
}

/// The profile's window spec, for computing bounds in the tests.
struct WindowSpecProbe;

impl WindowSpecProbe {
    fn spec() -> vigil_core::window::WindowSpec {
        profiles()["test"].profile.window.clone()
    }
}

/// Where a step's window lies relative to what the device sent so far.
#[derive(Debug, Clone)]
enum Step {
    /// The next window of the device's stream.
    Next,
    /// An older window (late, or a duplicate).
    Back(u64),
    /// Ahead of the stream by up to twice the bound (accepted or not).
    Ahead(u64),
    /// Anywhere in the seq space up to 2^53.
    Far(u64),
}

fn step() -> impl Strategy<Value = (Step, bool, u64)> {
    let where_ = prop_oneof![
        4 => Just(Step::Next),
        1 => (1u64..20).prop_map(Step::Back),
        2 => (1u64..2 * MAX_SEQ_JUMP_WINDOWS + 8).prop_map(Step::Ahead),
        1 => (0u64..MAX_JSON_SAFE_INTEGER / SIZE).prop_map(Step::Far),
    ];
    let ts = prop_oneof![
        3 => 0u64..10_000_000,
        1 => 0u64..=MAX_JSON_SAFE_INTEGER - SIZE,
    ];
    (where_, any::<bool>(), ts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// After any sequence of windows (at any seq, hot or not, stamped with any device time,
    /// going backwards or far into the future), a device that carries on from its high-water
    /// mark raises an alert on two hot windows, clears it on two cold ones, and raises it again
    /// once the cooldown has passed.
    #[test]
    fn alerting_keeps_working_after_any_sequence_of_accepted_windows(
        steps in prop::collection::vec(step(), 0..24),
        resume_ts in prop_oneof![Just(0u64), 0u64..10_000_000_000],
    ) {
        let mut d = Device::new();
        let mut high: Option<u64> = None;
        for (where_, hot, ts) in steps {
            let next = high.map_or(0, |h| h + 1);
            let w = match where_ {
                Step::Next => next,
                Step::Back(k) => next.saturating_sub(k),
                Step::Ahead(k) => next + k,
                Step::Far(w) => w,
            };
            let outcome = d.send(w, hot, ts);
            match &outcome {
                MessageOutcome::Accepted { .. } => high = Some(high.map_or(w, |h| h.max(w))),
                MessageOutcome::Rejected(e) => prop_assert_eq!(e.code(), "seq_jump"),
                MessageOutcome::Failed { .. } => prop_assert!(false, "{:?}", outcome),
            }
        }
        let mut w = high.map_or(0, |h| h + 1);
        let mut ts = resume_ts;
        let mut send = |d: &mut Device, hot: bool| {
            let o = d.send(w, hot, ts);
            w += 1;
            ts += COOLDOWN_MS;
            o
        };
        for _ in 0..2 {
            let o = send(&mut d, true);
            prop_assert!(matches!(o, MessageOutcome::Accepted { .. }), "{:?}", o);
        }
        prop_assert_eq!(d.active_alert(), Some("hot".to_string()));
        for _ in 0..2 {
            send(&mut d, false);
        }
        prop_assert_eq!(d.active_alert(), None);
        // A raise from the earlier steps may sit up to a cooldown before this one (the device
        // time steps by one cooldown a window): a third hot window is always past it.
        for _ in 0..3 {
            send(&mut d, true);
        }
        prop_assert_eq!(d.active_alert(), Some("hot".to_string()));
    }
}

/// The device state as the pipeline reads it, counted.
struct CountingStates<'a> {
    inner: &'a dyn vigil_core::ports::DeviceStateStore,
    loads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl vigil_core::ports::DeviceStateStore for CountingStates<'_> {
    async fn load(
        &self,
        stream: &StreamKey,
    ) -> Result<
        vigil_core::ports::Versioned<vigil_core::ports::DeviceState>,
        vigil_core::ports::PortError,
    > {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.load(stream).await
    }
    async fn save(
        &self,
        stream: &StreamKey,
        state: &vigil_core::ports::DeviceState,
        expected: u64,
    ) -> Result<bool, vigil_core::ports::PortError> {
        self.inner.save(stream, state, expected).await
    }
}

/// A device whose seqs are past the first jump bound (older than 4,096 windows) pays no state
/// read per message for the seq guard: the mark this process read is kept (one pipeline config
/// across messages, as the Lambda keeps it across invocations), and only the closes read the
/// state. Without the kept mark every message would read it.
#[test]
fn past_the_first_bound_the_guard_reads_the_state_once_not_per_message() {
    let profiles = profiles();
    let memory = MemoryPorts::new();
    let states = CountingStates {
        inner: &memory.states,
        loads: Default::default(),
    };
    let ports = vigil_core::Ports {
        states: &states,
        ..memory.ports()
    };
    // One configuration across messages: its close hints carry the mark.
    let config = common::test_config();
    let device = DeviceId::new("rig-old").unwrap();
    let send = |seq: u64| {
        let sample = Sample {
            seq,
            ts: seq,
            values: vec![10.0],
        };
        let message = common::message_a(&device, format!("m{seq}"), &[sample]);
        let pipeline = Pipeline::new(&profiles, ports, config.clone()).unwrap();
        let mut report = block_on(pipeline.process(&[message], 0));
        assert!(
            matches!(report.outcomes[0], MessageOutcome::Accepted { .. }),
            "seq {seq}: {:?}",
            report.outcomes[0]
        );
        report.outcomes.remove(0);
        report.counters.windows_scored
    };
    // Walk the device up past the bound one window at a time (each window's last sample).
    let spec = WindowSpecProbe::spec();
    let high = max_seq_jump(&spec) + 10 * SIZE;
    let mut w = 0;
    while w * SIZE <= high {
        for j in 0..SIZE {
            send(w * SIZE + j);
        }
        w += 1;
    }
    let before = states.loads.load(std::sync::atomic::Ordering::Relaxed);
    let (mut messages, mut closes) = (0usize, 0u64);
    for _ in 0..25 {
        for j in 0..SIZE {
            closes += send(w * SIZE + j);
            messages += 1;
        }
        w += 1;
    }
    let loads = states.loads.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(closes, 25);
    assert!(
        loads as u64 <= closes + 1,
        "{loads} state reads for {messages} messages and {closes} closes"
    );
}
