//! Fleet load on the Lambda path: many simulated devices through the ingest handler, in-process,
//! against DynamoDB Local and moto server (what `vigil fleet` does for the edge path).
//!
//! What is simulated:
//! - **the devices**: `devices` things, created in moto's IoT registry (shadows need them) and
//!   registered with the cooler profile in the table (as Terraform does). Each sends `cycles`
//!   hydraulic cycles (60 samples each, cycle `(device + c) % 36` of `models/samples/hydraulic`),
//!   seq-numbered from 0, `batch` samples per message;
//! - **a reconnect storm**: every device flushes its backlog at once. Messages are handed over in
//!   rounds: round `k` holds message `k` of every device, devices in a shuffled order (seeded);
//!   a device's own messages stay in order, as one MQTT connection delivers them;
//! - **IoT Core + Lambda**: direct mode turns each message into an IoT rule event
//!   (`SELECT *, topic(3) AS device`), one per invocation; SQS mode puts the rule's events on a
//!   standard queue and Lambda's poller hands over batches of `sqs_batch` consecutive records
//!   (so a batch mixes devices, as a standard queue does). `concurrency` invocations run at once
//!   (the Lambda concurrency being simulated) on one warm runtime built by the fixture;
//! - **retries**: a direct invocation that fails retryable is invoked again (Lambda's async
//!   retries: 3 attempts in all); the records an SQS batch reports in `batchItemFailures` are
//!   delivered again in a batch of their own (`maxReceiveCount` 5). The n-th redelivery is handed
//!   over n × `redelivery_delay_ms` after the failure (shorter than SQS's visibility timeout or
//!   Lambda's retry delays), ahead of the rest of the storm.
//!
//! What is measured:
//! - messages/s and samples/s: the storm's messages over the time from the first hand-off to the
//!   last invocation's return;
//! - latency (`latency_ms_*`): from the moment the event holding a window's last message is
//!   handed to the handler (first attempt) to the moment the result sink returned for that
//!   window: the IoT data plane `Publish` on `dt/vigil/{thing}/condition` and the `condition`
//!   shadow update were both accepted by moto. That is the latest in-process moment at which the
//!   result is on the topic (the publish precedes the shadow update by one moto call; moto's
//!   recording has no usable timestamps). `backlog_latency_ms_*`: from the storm (every message
//!   published at once) to the result, i.e. how long the backlog takes to drain;
//! - peak memory: VmHWM of this process (runtime, SDK clients, ONNX session, load generator);
//! - loss: windows expected minus distinct windows with a result on the condition topic (read
//!   back from moto's request recording; against LocalStack, from the result sink), windows not
//!   `done` in DynamoDB, devices whose state did not apply their last window; duplicates:
//!   results published more than once for one window;
//! - DynamoDB write/read capacity units per sample (`ReturnConsumedCapacity`, all invocations).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
pub use vigil_sim::fleet::machine;
use vigil_sim::fleet::percentile;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use vigil_core::ports::{PortError, ResultSink, WindowResult};
use vigil_core::telemetry::{encode_batch, encode_sample, Sample};
use vigil_ingest::{Invocation, RecordOutcome};

use crate::fixture::{channels, create_thing, direct_star, s, sqs_batch, Fixture, Options};
use crate::{publishes, recorded, Hydraulic, Rng};

mod report;
pub use report::*;

const PROFILE: &str = "hydraulic-cooler";
const WINDOW: usize = 60;

/// How the events reach the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// IoT rule → Lambda (asynchronous invocation), one message per invocation.
    Direct,
    /// IoT rule → SQS standard queue → Lambda, batches of up to `sqs_batch` records.
    Sqs,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(Self::Direct),
            "sqs" => Ok(Self::Sqs),
            other => Err(format!("mode {other:?}: direct or sqs")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub devices: usize,
    /// Cycles (windows of 60 samples) per device.
    pub cycles: usize,
    /// Samples per message; divides 60.
    pub batch: usize,
    pub mode: Mode,
    /// Invocations at once (the Lambda concurrency simulated).
    pub concurrency: usize,
    /// Records per SQS batch (SQS mode).
    pub sqs_batch: usize,
    /// Deliveries of one message before it is given up (default: 3 direct, 5 SQS).
    pub max_attempts: Option<u32>,
    /// Seed of the storm's interleaving.
    pub seed: u64,
    /// Check every device's manifests and state in DynamoDB after the run.
    pub check_dynamodb: bool,
    /// Delay before the n-th redelivery of a failed message: n × this (a stand-in for SQS's
    /// visibility timeout and Lambda's retry delay, shortened).
    pub redelivery_delay_ms: u64,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            devices: 100,
            cycles: 2,
            batch: 10,
            mode: Mode::Sqs,
            concurrency: 16,
            sqs_batch: 10,
            max_attempts: None,
            seed: 42,
            check_dynamodb: true,
            redelivery_delay_ms: 1000,
        }
    }
}

impl FleetOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 || WINDOW % self.batch != 0 {
            return Err(format!("--batch {} must divide 60", self.batch));
        }
        if self.devices == 0 || self.cycles == 0 || self.concurrency == 0 {
            return Err("--devices, --cycles and --concurrency must be positive".into());
        }
        if !(1..=10_000).contains(&self.sqs_batch) {
            return Err("--sqs-batch must be within 1..=10000".into());
        }
        Ok(())
    }

    fn attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(match self.mode {
            Mode::Direct => 3,
            Mode::Sqs => 5,
        })
    }

    fn messages_per_device(&self) -> usize {
        self.cycles * WINDOW / self.batch
    }
}

/// An error without what varies between messages (device, window, ids, numbers).
fn failure_kind(error: &str, retryable: bool) -> String {
    let mut kind: String = error
        .split(|c: char| c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("#");
    kind.truncate(160);
    format!(
        "{}: {kind}",
        if retryable { "retryable" } else { "permanent" }
    )
}

/// Message `index` of device `device`.
#[derive(Clone, Copy, Debug)]
struct Msg {
    device: u32,
    index: u32,
}

/// One delivery: an invocation's records.
#[derive(Debug)]
struct Job {
    msgs: Vec<Msg>,
    attempt: u32,
    /// A redelivery is not handed over before this (SQS visibility timeout, Lambda's retry
    /// delay).
    due: Option<Instant>,
}

/// The storm, generated lazily (the events are built at hand-off, so the generator's memory
/// stays small next to the handler's).
struct Storm {
    devices: usize,
    rounds: usize,
    round: usize,
    pos: usize,
    order: Vec<u32>,
    rng: Rng,
}

impl Storm {
    fn new(devices: usize, rounds: usize, seed: u64) -> Self {
        let mut storm = Self {
            devices,
            rounds,
            round: 0,
            pos: 0,
            order: (0..devices as u32).collect(),
            rng: Rng::new(seed),
        };
        storm.rng.shuffle_blocks(&mut storm.order, devices);
        storm
    }

    fn next_msg(&mut self) -> Option<Msg> {
        if self.pos == self.devices {
            self.round += 1;
            self.pos = 0;
            self.rng.shuffle_blocks(&mut self.order, self.devices);
        }
        if self.round >= self.rounds {
            return None;
        }
        let device = self.order[self.pos];
        self.pos += 1;
        Some(Msg {
            device,
            index: self.round as u32,
        })
    }
}

struct Queue {
    storm: Storm,
    retries: VecDeque<Job>,
    in_flight: usize,
}

#[derive(Default)]
struct Stats {
    invocations: u64,
    redelivered: u64,
    lost: u64,
    rejected: u64,
    duplicate_samples: u64,
    late_samples: u64,
    failures: BTreeMap<String, u64>,
    invocation_ms: Vec<f64>,
    first_handoff: Option<Instant>,
    last_return: Option<Instant>,
}

/// Wraps the real result sink (IoT publish + shadow) and notes when each window's result was
/// accepted.
struct TimingSink {
    inner: &'static dyn ResultSink,
    prefix: String,
    /// (device, window) → (first accepted, publishes).
    published: Mutex<HashMap<(u32, u64), (Instant, u32)>>,
    sink_ms: Mutex<Vec<f64>>,
}

impl TimingSink {
    fn device_index(&self, thing: &str) -> Option<u32> {
        thing.strip_prefix(&self.prefix)?.parse().ok()
    }
}

#[async_trait]
impl ResultSink for TimingSink {
    async fn publish(&self, result: &WindowResult) -> Result<(), PortError> {
        let started = Instant::now();
        let out = self.inner.publish(result).await;
        if out.is_ok() {
            let now = Instant::now();
            if let Some(d) = self.device_index(result.device.as_str()) {
                self.published
                    .lock()
                    .expect("lock")
                    .entry((d, result.window))
                    .or_insert((now, 0))
                    .1 += 1;
            }
            self.sink_ms
                .lock()
                .expect("lock")
                .push(now.duration_since(started).as_secs_f64() * 1000.0);
        }
        out
    }
}

struct Ctx {
    fx: &'static Fixture,
    sink: &'static TimingSink,
    opts: FleetOptions,
    data: Hydraulic,
    channels: Vec<String>,
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
    stats: Mutex<Stats>,
    /// (device, window) → first hand-off of the event holding the window's last message.
    handed: Mutex<HashMap<(u32, u64), Instant>>,
}

impl Ctx {
    fn thing(&self, device: u32) -> String {
        format!("{}{device}", self.sink.prefix)
    }

    fn message_id(m: Msg) -> String {
        format!("d{}-m{}", m.device, m.index)
    }

    /// The telemetry payload of a message: the same bytes on every delivery.
    fn payload(&self, m: Msg) -> Vec<u8> {
        let per_cycle = WINDOW / self.opts.batch;
        let c = m.index as usize / per_cycle;
        let j = m.index as usize % per_cycle;
        let data_cycle = (m.device as usize + c) % self.data.cycles.len();
        let base = 1_700_000_000_000u64;
        let samples: Vec<Sample> = (j * self.opts.batch..(j + 1) * self.opts.batch)
            .map(|i| {
                let seq = (c * WINDOW + i) as u64;
                Sample {
                    seq,
                    ts: base + seq * 1000,
                    values: self.data.cycles[data_cycle][i].to_vec(),
                }
            })
            .collect();
        if samples.len() == 1 {
            encode_sample(&samples[0], &self.channels)
        } else {
            encode_batch(&samples, &self.channels)
        }
    }

    /// The rule's event for a message (`SELECT *, topic(3) AS device`).
    fn rule_event(&self, m: Msg) -> Value {
        direct_star(&self.thing(m.device), &self.payload(m))
    }

    /// The window a message completes, if it is the last of its window.
    fn completes(&self, m: Msg) -> Option<u64> {
        let per_cycle = WINDOW / self.opts.batch;
        (m.index as usize % per_cycle == per_cycle - 1)
            .then(|| (m.index as usize / per_cycle) as u64)
    }

    async fn next_job(&self) -> Option<Job> {
        loop {
            let (wait, next_due) = {
                let mut q = self.queue.lock().expect("lock");
                let now = Instant::now();
                if let Some(i) = q
                    .retries
                    .iter()
                    .position(|j| j.due.is_none_or(|d| d <= now))
                {
                    let job = q.retries.remove(i);
                    q.in_flight += 1;
                    return job;
                }
                let take = match self.opts.mode {
                    Mode::Direct => 1,
                    Mode::Sqs => self.opts.sqs_batch,
                };
                let msgs: Vec<Msg> = std::iter::from_fn(|| q.storm.next_msg())
                    .take(take)
                    .collect();
                if !msgs.is_empty() {
                    q.in_flight += 1;
                    return Some(Job {
                        msgs,
                        attempt: 1,
                        due: None,
                    });
                }
                if q.in_flight == 0 && q.retries.is_empty() {
                    return None;
                }
                // A redelivery may still come: wait for the next job to finish, or for the
                // next redelivery to be due.
                (
                    self.wake.notified(),
                    q.retries.iter().filter_map(|j| j.due).min(),
                )
            };
            match next_due {
                Some(due) => {
                    tokio::select! {
                        () = wait => {}
                        () = tokio::time::sleep_until(due.into()) => {}
                    }
                }
                None => wait.await,
            }
        }
    }

    fn done(&self, retries: Vec<Job>) {
        let mut q = self.queue.lock().expect("lock");
        q.in_flight -= 1;
        q.retries.extend(retries);
        drop(q);
        self.wake.notify_waiters();
    }

    async fn worker(&'static self, worker: usize) {
        let mut n = 0u64;
        while let Some(job) = self.next_job().await {
            n += 1;
            let handed = Instant::now();
            if job.attempt == 1 {
                let mut h = self.handed.lock().expect("lock");
                for &m in &job.msgs {
                    if let Some(w) = self.completes(m) {
                        h.entry((m.device, w)).or_insert(handed);
                    }
                }
            }
            let (event, request_id) = match self.opts.mode {
                Mode::Direct => (
                    self.rule_event(job.msgs[0]),
                    // Lambda keeps the request id of an asynchronous event across its retries.
                    Self::message_id(job.msgs[0]),
                ),
                Mode::Sqs => {
                    let records: Vec<(String, Value)> = job
                        .msgs
                        .iter()
                        .map(|&m| (Self::message_id(m), self.rule_event(m)))
                        .collect();
                    (sqs_batch(&records), format!("w{worker}-{n}"))
                }
            };
            let mut app = self.fx.runtime.app();
            app.print_metrics = false;
            // Capacity is read from the shared counters once for the whole run: per-invocation
            // accounting would split it between concurrent invocations.
            app.usage = None;
            app.ports.results = self.sink;
            let inv = Invocation {
                request_id,
                deadline_ms: None,
                now_ms: None,
            };
            let h = vigil_ingest::handle_detailed(&app, &event, &inv).await;
            let returned = Instant::now();

            let mut retry = Vec::new();
            let mut lost = 0u64;
            let mut rejected = 0u64;
            let (mut dup, mut late) = (0u64, 0u64);
            let mut failures: Vec<String> = Vec::new();
            let outcomes: Vec<Option<&RecordOutcome>> = if h.outcomes.len() == job.msgs.len() {
                h.outcomes.iter().map(|(_, o)| Some(o)).collect()
            } else {
                vec![None; job.msgs.len()]
            };
            for (&m, o) in job.msgs.iter().zip(outcomes) {
                match o {
                    Some(RecordOutcome::Accepted {
                        duplicates,
                        late: l,
                        ..
                    }) => {
                        dup += *duplicates as u64;
                        late += *l as u64;
                    }
                    Some(RecordOutcome::Rejected { .. }) => rejected += 1,
                    Some(RecordOutcome::Failed { retryable, error }) => {
                        // SQS redelivers every record of batchItemFailures; Lambda retries an
                        // asynchronous event on any error.
                        failures.push(failure_kind(error, *retryable));
                        retry.push(m);
                    }
                    None => {
                        failures.push(match &h.response {
                            Err(e) => failure_kind(&e.to_string(), e.is_retryable()),
                            Ok(_) => "no outcome".into(),
                        });
                        retry.push(m);
                    }
                }
            }
            let mut redelivered = 0;
            let jobs = if retry.is_empty() {
                vec![]
            } else if job.attempt >= self.opts.attempts() {
                lost += retry.len() as u64;
                vec![]
            } else {
                redelivered = retry.len() as u64;
                vec![Job {
                    msgs: retry,
                    attempt: job.attempt + 1,
                    due: Some(
                        Instant::now()
                            + std::time::Duration::from_millis(
                                self.opts.redelivery_delay_ms * u64::from(job.attempt),
                            ),
                    ),
                }]
            };
            {
                let mut s = self.stats.lock().expect("lock");
                s.invocations += 1;
                s.redelivered += redelivered;
                s.lost += lost;
                s.rejected += rejected;
                s.duplicate_samples += dup;
                s.late_samples += late;
                for f in failures {
                    if s.failures.len() < 10 || s.failures.contains_key(&f) {
                        *s.failures.entry(f).or_default() += 1;
                    }
                }
                s.invocation_ms.push(h.metrics.latency_ms);
                s.first_handoff = Some(s.first_handoff.map_or(handed, |f| f.min(handed)));
                s.last_return = Some(s.last_return.map_or(returned, |l| l.max(returned)));
            }
            self.done(jobs);
        }
    }
}

/// Runs one fleet load: fresh resources (the fixture is leaked: invocations run on spawned
/// tasks, like Lambda's concurrent environments), the storm, then the checks.
pub async fn run(opts: FleetOptions) -> Result<FleetReport, String> {
    opts.validate()?;
    let setup_started = Instant::now();
    let fx: &'static Fixture = Box::leak(Box::new(Fixture::new(Options::default()).await));
    let prefix = format!("{}-d", fx.name);
    let sink: &'static TimingSink = Box::leak(Box::new(TimingSink {
        inner: fx.runtime.ports.ports().results,
        prefix: prefix.clone(),
        published: Mutex::default(),
        sink_ms: Mutex::default(),
    }));
    let things: Vec<String> = (0..opts.devices).map(|d| format!("{prefix}{d}")).collect();

    // Devices: things in the IoT registry (shadows need them), profiles in the table.
    let things = Arc::new(things);
    let threads = 8.min(opts.devices);
    let creators: Vec<_> = (0..threads)
        .map(|t| {
            let things = things.clone();
            tokio::task::spawn_blocking(move || {
                for thing in things.iter().skip(t).step_by(threads) {
                    create_thing(thing);
                }
            })
        })
        .collect();
    for c in creators {
        c.await.map_err(|e| format!("creating things: {e}"))?;
    }
    stream::iter(things.iter())
        .for_each_concurrent(32, |thing| fx.register(thing, PROFILE))
        .await;
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let ctx: &'static Ctx = Box::leak(Box::new(Ctx {
        fx,
        sink,
        data: Hydraulic::load(),
        channels: channels(),
        queue: Mutex::new(Queue {
            storm: Storm::new(opts.devices, opts.messages_per_device(), opts.seed),
            retries: VecDeque::new(),
            in_flight: 0,
        }),
        wake: tokio::sync::Notify::new(),
        stats: Mutex::default(),
        handed: Mutex::default(),
        opts: opts.clone(),
    }));

    // The storm.
    let usage_before = fx.runtime.ports.usage().snapshot();
    let rss_before_storm_mb = proc_status_mb("VmRSS:");
    let load_start = load_average();
    let emulator_pids = emulator_pids();
    let cpu_start = cpu_seconds("self");
    let emulator_cpu_start = emulator_pids
        .as_ref()
        .map(|(d, m)| (cpu_seconds(d), cpu_seconds(m)));
    let storm_at = Instant::now();
    // One thread per simulated invocation slot, each driving its worker on the runtime's I/O
    // and timers (`Handle::block_on`): the handler's CPU work runs in parallel, as Lambda's
    // environments do, without asking its future to be `Send`.
    let handle = tokio::runtime::Handle::current();
    let workers: Vec<_> = (0..opts.concurrency)
        .map(|w| {
            let handle = handle.clone();
            std::thread::Builder::new()
                .name(format!("invocation-{w}"))
                .spawn(move || handle.block_on(ctx.worker(w)))
                .map_err(|e| format!("worker thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a worker panicked".to_string()))
            .collect::<Result<Vec<()>, String>>()
    })
    .await
    .map_err(|e| format!("workers: {e}"))??;
    let load_end = load_average();
    let usage = fx.runtime.ports.usage().snapshot();
    let peak_rss_mb = proc_status_mb("VmHWM:");
    let cpu = cpu_seconds("self").zip(cpu_start).map(|(b, a)| b - a);
    let emulator_cpu = emulator_pids
        .as_ref()
        .map(|(d, m)| (cpu_seconds(d), cpu_seconds(m)));
    let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(b, a)| b - a);
    let (ddb_cpu, moto_cpu) = match (emulator_cpu_start, emulator_cpu) {
        (Some((d0, m0)), Some((d1, m1))) => (delta(d1, d0), delta(m1, m0)),
        _ => (None, None),
    };

    // Checks.
    let check_started = Instant::now();
    let expected = (opts.devices * opts.cycles) as u64;
    let published = sink.published.lock().expect("lock").clone();
    let handed = ctx.handed.lock().expect("lock").clone();
    let mut latencies = Vec::new();
    let mut backlog = Vec::new();
    for (key, (at, _)) in &published {
        backlog.push(at.duration_since(storm_at).as_secs_f64() * 1000.0);
        if let Some(h) = handed.get(key) {
            latencies.push(at.saturating_duration_since(*h).as_secs_f64() * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    backlog.sort_by(f64::total_cmp);

    // Results on the condition topics, as moto recorded them (the sink's view otherwise).
    let mut topic_counts: BTreeMap<(u32, u64), u32> = BTreeMap::new();
    let mut incomplete = 0u64;
    let results_from = if recorded() {
        for p in publishes(&format!("dt/vigil/{prefix}")) {
            if !p.topic.ends_with("/condition") {
                continue;
            }
            let thing = p.topic.split('/').nth(2).unwrap_or("");
            let Some(d) = sink.device_index(thing) else {
                continue;
            };
            let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
            let Some(w) = v["window"].as_u64() else {
                continue;
            };
            if v["completeness"].as_f64() != Some(1.0) || v["filled"].as_u64() != Some(0) {
                incomplete += 1;
            }
            *topic_counts.entry((d, w)).or_default() += 1;
        }
        "moto's recording of IoT data plane publishes"
    } else {
        for (key, (_, n)) in &published {
            topic_counts.insert(*key, *n);
        }
        "the result sink (no moto recording)"
    };
    let mut missing = Vec::new();
    let mut windows_published = 0;
    for d in 0..opts.devices as u32 {
        for w in 0..opts.cycles as u64 {
            if topic_counts.contains_key(&(d, w)) {
                windows_published += 1;
            } else if missing.len() < 20 {
                missing.push((d as usize, w));
            }
        }
    }
    // Results for windows that should not exist count as duplicates too.
    let duplicate_results: u64 = topic_counts
        .iter()
        .map(|(&(d, w), &n)| {
            if (d as usize) < opts.devices && (w as usize) < opts.cycles {
                u64::from(n - 1)
            } else {
                u64::from(n)
            }
        })
        .sum();

    let (windows_done, devices_complete) = if opts.check_dynamodb {
        let last = opts.cycles as u64 - 1;
        let per_device: Vec<(u64, bool)> = stream::iter(things.iter())
            .map(|thing| async move {
                let done = fx
                    .manifests(thing, PROFILE)
                    .await
                    .iter()
                    .filter(|(&w, m)| w <= last && s(m, "st") == "done")
                    .count() as u64;
                let applied = fx
                    .state(thing, PROFILE)
                    .await
                    .is_some_and(|(state, _)| state["applied_window"] == last);
                (done, applied)
            })
            .buffer_unordered(32)
            .collect()
            .await;
        (
            Some(per_device.iter().map(|(d, _)| d).sum()),
            Some(per_device.iter().filter(|(_, a)| *a).count() as u64),
        )
    } else {
        (None, None)
    };
    let check_seconds = check_started.elapsed().as_secs_f64();

    let stats = std::mem::take(&mut *ctx.stats.lock().expect("lock"));
    let mut inv_ms = stats.invocation_ms;
    inv_ms.sort_by(f64::total_cmp);
    let mut sink_ms = sink.sink_ms.lock().expect("lock").clone();
    sink_ms.sort_by(f64::total_cmp);
    let messages = (opts.devices * opts.messages_per_device()) as u64;
    let samples = messages * opts.batch as u64;
    let seconds = match (stats.first_handoff, stats.last_return) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-9),
        _ => f64::NAN,
    };
    Ok(FleetReport {
        path: "lambda",
        mode: opts.mode,
        devices: opts.devices,
        cycles: opts.cycles,
        batch: opts.batch,
        concurrency: opts.concurrency,
        sqs_batch: opts.sqs_batch,
        messages,
        samples,
        invocations: stats.invocations,
        redelivered_messages: stats.redelivered,
        lost_messages: stats.lost,
        rejected_messages: stats.rejected,
        duplicate_samples: stats.duplicate_samples,
        late_samples: stats.late_samples,
        failures: stats.failures,
        seconds,
        messages_per_s: messages as f64 / seconds,
        samples_per_s: samples as f64 / seconds,
        windows_expected: expected,
        windows_published,
        windows_done_in_dynamodb: windows_done,
        devices_complete,
        loss: expected - windows_published,
        duplicate_results,
        incomplete_results: incomplete,
        missing,
        latency_ms_p50: percentile(&latencies, 0.5),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(f64::NAN),
        backlog_latency_ms_p50: percentile(&backlog, 0.5),
        backlog_latency_ms_p99: percentile(&backlog, 0.99),
        backlog_latency_ms_max: backlog.last().copied().unwrap_or(f64::NAN),
        invocation_ms_p50: percentile(&inv_ms, 0.5),
        invocation_ms_p99: percentile(&inv_ms, 0.99),
        result_sink_ms_p50: percentile(&sink_ms, 0.5),
        wcu_per_sample: (usage.write_units - usage_before.write_units) / samples as f64,
        rcu_per_sample: (usage.read_units - usage_before.read_units) / samples as f64,
        dynamodb_requests_per_message: ((usage.write_requests + usage.read_requests)
            - (usage_before.write_requests + usage_before.read_requests))
            as f64
            / messages as f64,
        peak_rss_mb,
        rss_before_storm_mb,
        setup_seconds,
        check_seconds,
        results_from,
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine: machine(),
        load_average: (load_start, load_end),
        cpu_seconds: cpu.unwrap_or(f64::NAN),
        cpu_ms_per_message: cpu.map_or(f64::NAN, |c| c * 1000.0 / messages as f64),
        dynamodb_local_cpu_seconds: ddb_cpu,
        moto_cpu_seconds: moto_cpu,
        dynamodb_local_peak_rss_mb: emulator_pids
            .as_ref()
            .and_then(|(d, _)| pid_status_mb(d, "VmHWM:")),
        moto_peak_rss_mb: emulator_pids
            .as_ref()
            .and_then(|(_, m)| pid_status_mb(m, "VmHWM:")),
    })
}
