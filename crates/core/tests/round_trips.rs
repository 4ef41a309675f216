//! Round trips on a message's critical path, counted: every port call that is a request in
//! the DynamoDB deployment takes one tick of a lockstep clock, calls in flight together share
//! a tick, and a message's ticks are its sequential round trips. The store commits first, as
//! DynamoDB does (`MemoryWindowStore::committing_first`).

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

mod common;

use async_trait::async_trait;
use vigil_core::memory::{MemoryPorts, MemoryWindowStore};
use vigil_core::pipeline::Ports;
use vigil_core::ports::*;
use vigil_core::window::WindowId;
use vigil_core::{DeviceId, Message, Pipeline, Sample};

const SIZE: u64 = 6;

/// Ticks when nothing else can run: every call waiting on it completes at the next tick.
#[derive(Default)]
struct Clock {
    now: AtomicU64,
    waiting: Mutex<Vec<Waker>>,
}

impl Clock {
    /// One round trip: returns at the next tick.
    async fn round_trip(&self) {
        let start = self.now.load(Ordering::SeqCst);
        std::future::poll_fn(|cx| {
            if self.now.load(Ordering::SeqCst) > start {
                Poll::Ready(())
            } else {
                self.waiting.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Runs `f` to completion, ticking whenever it waits; returns its output and the ticks.
    fn run<F: Future>(&self, f: F) -> (F::Output, u64) {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        let mut ticks = 0;
        loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return (out, ticks);
            }
            let woken = std::mem::take(&mut *self.waiting.lock().unwrap());
            assert!(!woken.is_empty(), "waiting on something other than a port");
            self.now.fetch_add(1, Ordering::SeqCst);
            ticks += 1;
            woken.into_iter().for_each(Waker::wake);
        }
    }
}

/// The memory ports, each request one round trip. Free, as in the deployment: `finish`
/// (DynamoDB writes nothing: the commit marked the window), the registry and the baselines
/// (cached in the process for their TTL).
struct Timed<'a> {
    inner: &'a MemoryPorts,
    clock: &'a Clock,
}

#[async_trait]
impl WindowStore for Timed<'_> {
    async fn append(
        &self,
        stream: &StreamKey,
        window: WindowId,
        chunk: &Chunk,
        now_ms: u64,
    ) -> Result<AppendOutcome, PortError> {
        self.clock.round_trip().await;
        self.inner
            .windows
            .append(stream, window, chunk, now_ms)
            .await
    }
    async fn load(&self, stream: &StreamKey, window: WindowId) -> Result<Vec<Sample>, PortError> {
        self.clock.round_trip().await;
        self.inner.windows.load(stream, window).await
    }
    async fn windows(
        &self,
        stream: &StreamKey,
        range: RangeInclusive<WindowId>,
    ) -> Result<Vec<WindowInfo>, PortError> {
        self.clock.round_trip().await;
        self.inner.windows.windows(stream, range).await
    }
    async fn claim(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Claim, PortError> {
        self.clock.round_trip().await;
        self.inner
            .windows
            .claim(stream, window, now_ms, lease_ms)
            .await
    }
    fn commits_first(&self) -> bool {
        self.inner.windows.commits_first()
    }
    async fn finish(
        &self,
        stream: &StreamKey,
        window: WindowId,
        outcome: &WindowOutcome,
    ) -> Result<(), PortError> {
        self.inner.windows.finish(stream, window, outcome).await
    }
}

#[async_trait]
impl DeviceStateStore for Timed<'_> {
    async fn load(&self, stream: &StreamKey) -> Result<Versioned<DeviceState>, PortError> {
        self.clock.round_trip().await;
        self.inner.states.load(stream).await
    }
    async fn save(
        &self,
        stream: &StreamKey,
        state: &DeviceState,
        expected_version: u64,
    ) -> Result<bool, PortError> {
        self.clock.round_trip().await;
        self.inner
            .states
            .save(stream, state, expected_version)
            .await
    }
}

#[async_trait]
impl ResultSink for Timed<'_> {
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError> {
        self.clock.round_trip().await;
        self.inner.recorder.publish(result).await
    }
}

#[async_trait]
impl AlertSink for Timed<'_> {
    async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError> {
        self.clock.round_trip().await;
        self.inner.recorder.notify(alert).await
    }
}

#[async_trait]
impl WindowArchive for Timed<'_> {
    async fn archive(&self, window: &ClosedWindow) -> Result<(), PortError> {
        self.clock.round_trip().await;
        self.inner.recorder.archive(window).await
    }
    async fn contains(&self, result: &WindowResult) -> Result<bool, PortError> {
        self.clock.round_trip().await;
        self.inner.recorder.contains(result).await
    }
    fn tells_contents(&self) -> bool {
        true
    }
    async fn withdraw(&self, result: &WindowResult) -> Result<(), PortError> {
        self.clock.round_trip().await;
        self.inner.recorder.withdraw(result).await
    }
}

fn profiles() -> std::collections::BTreeMap<String, vigil_core::CompiledProfile> {
    common::one_channel_profiles(SIZE, "", "raise_after = 1\nclear_after = 1\ncooldown_s = 0")
}

/// One-sample messages at 1 Hz, the direct path's shape: the ticks of each message, and the
/// ports' recorder to check what went out.
fn one_sample_messages(n: u64, hot_from: u64) -> (Vec<u64>, MemoryPorts) {
    let memory = MemoryPorts {
        windows: MemoryWindowStore::committing_first(),
        ..MemoryPorts::default()
    };
    let clock = Clock::default();
    let timed = Timed {
        inner: &memory,
        clock: &clock,
    };
    let ports = Ports {
        windows: &timed,
        states: &timed,
        results: &timed,
        alerts: &timed,
        archive: &timed,
        ..memory.ports()
    };
    let profiles = profiles();
    let pipeline = Pipeline::new(&profiles, ports, common::test_config()).unwrap();
    let device = DeviceId::new("rig-1").unwrap();
    let mut ticks = Vec::new();
    for seq in 0..n {
        let value = if seq >= hot_from { 90.0 } else { 10.0 };
        let sample = Sample {
            seq,
            ts: 1_000 * seq,
            values: vec![value],
        };
        let message: Message = common::message_a(&device, format!("m{seq}"), &[sample]);
        let (report, t) = clock.run(pipeline.process(&[message], 1_000 * seq));
        assert_eq!(report.counters.failed, 0, "message {seq}");
        ticks.push(t);
    }
    (ticks, memory)
}

#[test]
fn a_message_that_closes_its_window_takes_three_round_trips_and_the_others_one() {
    // Windows 0 and 1 ok, window 2 hot (raises an alert), window 3 hot.
    let (ticks, memory) = one_sample_messages(4 * SIZE, 2 * SIZE);
    let closing: Vec<u64> = (0..4).map(|w| (w + 1) * SIZE - 1).collect();
    for (seq, t) in ticks.iter().enumerate() {
        let seq = seq as u64;
        if closing.contains(&seq) {
            // Samples and state together; the commit; result, alerts and archive together.
            assert_eq!(*t, 3, "closing message {seq}: {ticks:?}");
        } else if seq == 0 {
            // A device's first message also reads its state (the seq guard has no mark yet).
            assert!(*t <= 2, "first message: {ticks:?}");
        } else {
            assert_eq!(*t, 1, "message {seq}: {ticks:?}");
        }
    }
    let alerts = memory.recorder.alerts();
    assert_eq!(alerts.len(), 1, "window 2 raised");
    assert_eq!(memory.recorder.results().len(), 4);
    assert_eq!(memory.recorder.archived.lock().unwrap().len(), 4);
}
