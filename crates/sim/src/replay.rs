//! `vigil replay`: a device simulator. It publishes a dataset's cycles as seq-numbered telemetry
//! (QoS 1) on `dt/vigil/{thing}/telemetry`, at the real rate or faster, as one thing or many,
//! optionally with the faults a real network adds (duplicates, reordering).
//!
//! Seqs: cycle `c` of the dataset, second `t`, is seq `c * 60 + t` of every thing (with
//! `--stagger`, thing `i` plays the cycles rotated by `i * stagger`, and seq `w * 60 + t` holds the
//! `w`-th cycle it plays). Timestamps are milliseconds, one second apart.
//!
//! The replay is split in two: [`plan`] builds every message (pure, testable), and [`Replayer`]
//! publishes them and counts the broker's PUBACKs.

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::watch;
use vigil_core::telemetry::{encode_batch, encode_sample, telemetry_topic};
use vigil_core::{DeviceId, Profile, Sample};

use vigil_datasets::models;
use vigil_datasets::{label_of, Hydraulic};
use vigil_mqtt::{self as broker, BrokerUrl};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    /// UCI hydraulic rig: 60 s cycles of TS1..TS4 at 1 Hz (the channels of the profile).
    Hydraulic,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub dataset: Dataset,
    /// Dataset directory (default: the committed sample, models/samples/hydraulic).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// 1 = real time (one sample per second); 10 = ten times faster; 0 = as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Number of things, named `<prefix>-001`, `<prefix>-002`, ...
    #[arg(long, conflicts_with = "thing")]
    pub things: Option<usize>,
    /// One thing with this name.
    #[arg(long)]
    pub thing: Option<String>,
    #[arg(long, default_value = "rig")]
    pub thing_prefix: String,
    /// Cycles to play: `A..B` (B excluded), `A..=B`, `A..` or one index.
    #[arg(long)]
    pub cycles: Option<String>,
    /// At most this many cycles (after --cycles).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Samples per message (1 = one message per second, like a real 1 Hz device).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Thing i plays the cycles rotated by i * STAGGER, so that things are in different conditions.
    #[arg(long, default_value_t = 0)]
    pub stagger: usize,
    /// Fraction of messages published twice (a redelivering network).
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Shuffle each thing's messages within groups of this many (0/1: in order).
    #[arg(long, default_value_t = 0)]
    pub reorder: usize,
    /// Seed of the duplicates and the shuffle.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Profile giving the channels to send.
    #[arg(long, default_value = "hydraulic-cooler")]
    pub profile: String,
    /// Models directory (default: models/ of this checkout, or VIGIL_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
    #[arg(long)]
    pub client_id: Option<String>,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub things: Vec<DeviceId>,
    /// Dataset cycles, in play order.
    pub cycles: Range<usize>,
    pub batch: usize,
    pub stagger: usize,
    pub duplicates: f64,
    pub reorder: usize,
    pub seed: u64,
    /// Timestamp of seq 0, ms.
    pub ts0_ms: u64,
    /// Sample period, ms (1000 for the hydraulic rig).
    pub period_ms: u64,
}

impl PlanOptions {
    pub fn new(things: Vec<DeviceId>, cycles: Range<usize>) -> Self {
        Self {
            things,
            cycles,
            batch: 1,
            stagger: 0,
            duplicates: 0.0,
            reorder: 0,
            seed: 1,
            ts0_ms: now_ms() / 1000 * 1000,
            period_ms: 1000,
        }
    }
}

/// One message to publish.
#[derive(Clone, Debug)]
pub struct PlannedMessage {
    /// Index into [`Plan::things`].
    pub thing: usize,
    pub topic: String,
    pub payload: Vec<u8>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub samples: usize,
    /// A second copy of an earlier message.
    pub duplicate: bool,
    /// When it is due, from the start, at real rate.
    pub due: Duration,
}

/// Every message of a replay, in publish order (things interleaved by due time).
#[derive(Clone, Debug)]
pub struct Plan {
    pub things: Vec<DeviceId>,
    /// Per thing: the dataset cycle held by window `first_window + j` at index `j`.
    pub cycles: Vec<Vec<usize>>,
    pub first_window: u64,
    pub messages: Vec<PlannedMessage>,
    /// Samples per window (one cycle).
    pub window: u64,
}

impl Plan {
    /// The dataset cycle behind a thing's window.
    pub fn cycle_of(&self, thing: &str, window: u64) -> Option<usize> {
        let t = self.things.iter().position(|d| d.as_str() == thing)?;
        let j = window.checked_sub(self.first_window)? as usize;
        self.cycles[t].get(j).copied()
    }

    /// Windows in the plan: things × cycles.
    pub fn windows(&self) -> usize {
        self.cycles.iter().map(Vec::len).sum()
    }

    /// Distinct samples (duplicates not counted).
    pub fn samples(&self) -> usize {
        self.messages
            .iter()
            .filter(|m| !m.duplicate)
            .map(|m| m.samples)
            .sum()
    }

    /// Windows a message's samples belong to (tumbling windows of one cycle).
    pub fn windows_of(&self, m: &PlannedMessage) -> Range<u64> {
        m.first_seq / self.window..m.last_seq / self.window + 1
    }
}

/// splitmix64: a small, good, seedable generator (no dependency for a shuffle).
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

/// Builds every message of the replay.
pub fn plan(data: &Hydraulic, channels: &[String], options: &PlanOptions) -> anyhow::Result<Plan> {
    if options.cycles.is_empty() || options.cycles.end > data.cycles() {
        bail!(
            "cycles {:?} are not within the {} cycles of the data",
            options.cycles,
            data.cycles()
        );
    }
    if options.things.is_empty() {
        bail!("no things to replay as");
    }
    if options.batch == 0 || options.batch > vigil_core::telemetry::MAX_SAMPLES_PER_MESSAGE {
        bail!(
            "batch must be within 1..={}",
            vigil_core::telemetry::MAX_SAMPLES_PER_MESSAGE
        );
    }
    if !(0.0..=1.0).contains(&options.duplicates) {
        bail!("duplicates must be a fraction within 0..=1");
    }
    let order: Vec<usize> = options.cycles.clone().collect();
    let first_window = options.cycles.start as u64;
    let mut rng = SplitMix::new(options.seed);
    let mut per_thing: Vec<Vec<PlannedMessage>> = Vec::new();
    let mut cycles = Vec::new();
    for (t, thing) in options.things.iter().enumerate() {
        let mut played = order.clone();
        if !played.is_empty() {
            let shift = (t * options.stagger) % played.len();
            played.rotate_left(shift);
        }
        // All samples of this thing, seq-numbered by window position.
        let mut samples: Vec<Sample> = Vec::with_capacity(played.len() * 60);
        for (j, &cycle) in played.iter().enumerate() {
            let window = first_window + j as u64;
            for (k, mut s) in data.cycle_samples(cycle, 0).into_iter().enumerate() {
                s.seq = window * 60 + k as u64;
                s.ts = options.ts0_ms + s.seq * options.period_ms;
                samples.push(s);
            }
        }
        let mut list: Vec<PlannedMessage> = samples
            .chunks(options.batch)
            .enumerate()
            .map(|(i, chunk)| {
                let payload = if chunk.len() == 1 && options.batch == 1 {
                    encode_sample(&chunk[0], channels)
                } else {
                    encode_batch(chunk, channels)
                };
                PlannedMessage {
                    thing: t,
                    topic: telemetry_topic(thing),
                    payload,
                    first_seq: chunk[0].seq,
                    last_seq: chunk[chunk.len() - 1].seq,
                    samples: chunk.len(),
                    duplicate: false,
                    // A device sends a batch when its last sample is taken.
                    due: Duration::from_millis(
                        (i * options.batch + chunk.len() - 1) as u64 * options.period_ms,
                    ),
                }
            })
            .collect();
        // Duplicates: a copy shows up a few messages later.
        if options.duplicates > 0.0 {
            let mut with_dups = Vec::with_capacity(list.len() + list.len() / 8);
            let mut pending: Vec<(usize, PlannedMessage)> = Vec::new();
            for (i, m) in list.into_iter().enumerate() {
                if rng.chance(options.duplicates) {
                    let mut copy = m.clone();
                    copy.duplicate = true;
                    pending.push((i + 1 + rng.below(8), copy));
                }
                with_dups.push(m);
                let (now, later): (Vec<_>, Vec<_>) =
                    pending.into_iter().partition(|(at, _)| *at <= i);
                pending = later;
                with_dups.extend(now.into_iter().map(|(_, c)| c));
            }
            with_dups.extend(pending.into_iter().map(|(_, c)| c));
            list = with_dups;
        }
        // Reordering: shuffle within consecutive groups.
        if options.reorder > 1 {
            for group in list.chunks_mut(options.reorder) {
                for i in (1..group.len()).rev() {
                    let j = rng.below(i + 1);
                    group.swap(i, j);
                }
            }
        }
        // Keep due times non-decreasing in publish order, so interleaving keeps the shuffle.
        let mut latest = Duration::ZERO;
        for m in &mut list {
            latest = latest.max(m.due);
            m.due = latest;
        }
        per_thing.push(list);
        cycles.push(played);
    }
    // Interleave things by due time (stable: a thing's own order is kept).
    let mut messages: Vec<PlannedMessage> = per_thing.into_iter().flatten().collect();
    messages.sort_by_key(|m| m.due);
    Ok(Plan {
        things: options.things.clone(),
        cycles,
        first_window,
        messages,
        window: 60,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A publishing connection that counts PUBACKs.
pub struct Replayer {
    client: AsyncClient,
    acked: watch::Receiver<u64>,
    published: u64,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("published", &self.published)
            .field("acked", &*self.acked.borrow())
            .finish()
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReplayStats {
    pub messages: u64,
    pub duplicates: u64,
    pub samples: u64,
    pub bytes: u64,
    pub acked: u64,
    pub elapsed_s: f64,
}

impl Replayer {
    pub async fn connect(broker: &BrokerUrl, client_id: &str) -> anyhow::Result<Self> {
        let mut options = broker::client_options(client_id, broker);
        options.set_inflight(200);
        let (client, mut eventloop) = broker::client(options, 512);
        // Wait for the CONNACK so that a wrong address fails here, clearly.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("replay: connecting to {broker}: {e}"),
                Err(_) => bail!("replay: no CONNACK from {broker} within 10 s"),
            }
        }
        let (acked_tx, acked) = watch::channel(0u64);
        let task = tokio::spawn(count_acks(eventloop, acked_tx));
        Ok(Self {
            client,
            acked,
            published: 0,
            task,
        })
    }

    /// Publishes `messages` in order, paced by their due time divided by `speed` (0: no pacing).
    /// `on_publish` sees each message as it is handed to the connection.
    pub async fn publish(
        &mut self,
        messages: &[PlannedMessage],
        speed: f64,
        mut on_publish: impl FnMut(&PlannedMessage),
    ) -> anyhow::Result<ReplayStats> {
        let start = tokio::time::Instant::now();
        let offset = messages.first().map_or(Duration::ZERO, |m| m.due);
        let mut stats = ReplayStats::default();
        for m in messages {
            if speed > 0.0 {
                let at = start + (m.due.saturating_sub(offset)).div_f64(speed);
                tokio::time::sleep_until(at).await;
            }
            self.client
                .publish(m.topic.clone(), QoS::AtLeastOnce, false, m.payload.clone())
                .await
                .context("replay: the connection is gone")?;
            on_publish(m);
            self.published += 1;
            stats.messages += 1;
            stats.duplicates += u64::from(m.duplicate);
            stats.samples += m.samples as u64;
            stats.bytes += m.payload.len() as u64;
        }
        stats.elapsed_s = start.elapsed().as_secs_f64();
        Ok(stats)
    }

    /// Messages handed to the connection so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    pub fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    /// Waits until the broker acknowledged everything published.
    pub async fn wait_acked(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let want = self.published;
        let waited = tokio::time::timeout(timeout, self.acked.wait_for(|a| *a >= want))
            .await
            .map(|r| r.map(|a| *a));
        match waited {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(_)) => bail!(
                "replay: the connection ended with {} of {want} messages acknowledged",
                self.acked()
            ),
            Err(_) => bail!(
                "replay: {} of {want} messages acknowledged after {timeout:?}",
                self.acked()
            ),
        }
    }

    /// Disconnects cleanly (after what is queued).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

async fn count_acks(mut eventloop: EventLoop, acked: watch::Sender<u64>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.send_modify(|a| *a += 1);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if acked.is_closed() {
                    return;
                }
                tracing::warn!(error = %e, "replay: connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Parses `A..B`, `A..=B`, `A..` or `A` into a range of cycles below `n`.
pub fn parse_cycles(text: &str, n: usize) -> anyhow::Result<Range<usize>> {
    let bad = || format!("--cycles {text:?}: expected A..B, A..=B, A.. or A");
    let num = |s: &str| s.trim().parse::<usize>().with_context(bad);
    let r = if let Some((a, b)) = text.split_once("..=") {
        num(a)?..num(b)? + 1
    } else if let Some((a, b)) = text.split_once("..") {
        let start = if a.trim().is_empty() { 0 } else { num(a)? };
        let end = if b.trim().is_empty() { n } else { num(b)? };
        start..end
    } else {
        let a = num(text)?;
        a..a + 1
    };
    if r.is_empty() || r.end > n {
        bail!("--cycles {text:?}: the data has cycles 0..{n}");
    }
    Ok(r)
}

/// Thing names `<prefix>-001`, ...
pub fn thing_names(prefix: &str, n: usize) -> anyhow::Result<Vec<DeviceId>> {
    (1..=n)
        .map(|i| DeviceId::new(format!("{prefix}-{i:03}")).map_err(Into::into))
        .collect()
}

/// The profile file of `name` (channels only: no model is loaded).
pub fn load_profile(models_dir: &std::path::Path, name: &str) -> anyhow::Result<Profile> {
    let path = models_dir.join("profiles").join(format!("{name}.toml"));
    Profile::load(&path).with_context(|| format!("loading profile {}", path.display()))
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let Dataset::Hydraulic = args.dataset;
    let models_dir = models::models_dir(args.models.as_deref());
    let profile = load_profile(&models_dir, &args.profile)?;
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| models::repo_root().join("models/samples/hydraulic"));
    let names: Vec<&str> = profile.channels.iter().map(String::as_str).collect();
    let data = Hydraulic::load(&data_dir, &names)?;
    let mut cycles = match &args.cycles {
        Some(text) => parse_cycles(text, data.cycles())?,
        None => 0..data.cycles(),
    };
    if let Some(limit) = args.limit {
        cycles.end = cycles.end.min(cycles.start + limit);
    }
    let things = match (&args.thing, args.things) {
        (Some(name), _) => vec![DeviceId::new(name.clone())?],
        (None, n) => thing_names(&args.thing_prefix, n.unwrap_or(1))?,
    };
    if args.speed < 0.0 || !args.speed.is_finite() {
        bail!("--speed must be 0 (as fast as possible) or positive");
    }
    let mut options = PlanOptions::new(things, cycles.clone());
    options.batch = args.batch;
    options.stagger = args.stagger;
    options.duplicates = args.duplicates;
    options.reorder = args.reorder;
    options.seed = args.seed;
    options.period_ms = (1000.0 / profile.sample_rate_hz).round().max(1.0) as u64;
    let plan = plan(&data, &profile.channels, &options)?;

    let broker = BrokerUrl::parse(&args.broker)?;
    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("vigil-replay-{}", std::process::id()));
    let mut replayer = Replayer::connect(&broker, &client_id).await?;
    let span = plan.messages.last().map_or(Duration::ZERO, |m| m.due);
    println!(
        "vigil replay: {} thing(s) x cycles {}..{} ({} messages, {} samples) to {broker}, {}",
        plan.things.len(),
        cycles.start,
        cycles.end,
        plan.messages.len(),
        plan.samples(),
        if args.speed == 0.0 {
            "as fast as possible".to_string()
        } else {
            format!(
                "speed {} (about {:.0} s)",
                args.speed,
                span.as_secs_f64() / args.speed
            )
        }
    );
    for (t, thing) in plan.things.iter().enumerate() {
        let first = plan.cycles[t][0];
        println!(
            "  {thing}: windows {}.., starting with cycle {first} (cooler {} %)",
            plan.first_window,
            label_of(data.conditions[first][0])
        );
    }
    let stats = tokio::select! {
        r = replayer.publish(&plan.messages, args.speed, |_| {}) => r?,
        _ = tokio::signal::ctrl_c() => {
            println!("interrupted after {} messages", replayer.published());
            ReplayStats { messages: replayer.published(), ..Default::default() }
        }
    };
    let acked = replayer.wait_acked(Duration::from_secs(60)).await?;
    replayer.disconnect().await;
    println!(
        "vigil replay: {} messages published ({} duplicates, {} samples, {} bytes), {acked} acknowledged, in {:.2} s",
        stats.messages, stats.duplicates, stats.samples, stats.bytes, stats.elapsed_s
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Hydraulic {
        Hydraulic::load(
            &models::repo_root().join("models/samples/hydraulic"),
            &["TS1", "TS2", "TS3", "TS4"],
        )
        .unwrap()
    }

    fn channels() -> Vec<String> {
        ["TS1", "TS2", "TS3", "TS4"].map(String::from).to_vec()
    }

    #[test]
    fn cycles_parse() {
        assert_eq!(parse_cycles("0..36", 36).unwrap(), 0..36);
        assert_eq!(parse_cycles("3..=5", 36).unwrap(), 3..6);
        assert_eq!(parse_cycles("30..", 36).unwrap(), 30..36);
        assert_eq!(parse_cycles("7", 36).unwrap(), 7..8);
        assert!(parse_cycles("0..37", 36).is_err());
        assert!(parse_cycles("5..5", 36).is_err());
        assert!(parse_cycles("x", 36).is_err());
    }

    #[test]
    fn plan_numbers_seqs_per_thing_and_interleaves() {
        let d = data();
        let opts = PlanOptions::new(thing_names("rig", 2).unwrap(), 10..13);
        let p = plan(&d, &channels(), &opts).unwrap();
        assert_eq!(p.messages.len(), 2 * 3 * 60);
        assert_eq!(p.samples(), 360);
        assert_eq!(p.messages[0].first_seq, 600);
        assert_eq!((p.messages[0].thing, p.messages[1].thing), (0, 1));
        assert_eq!(p.cycle_of("rig-002", 12), Some(12));
        assert_eq!(p.cycle_of("rig-002", 13), None);
        let parsed =
            vigil_core::telemetry::parse_message(&p.messages[5].payload, &channels()).unwrap();
        assert_eq!(parsed[0].seq, p.messages[5].first_seq);
        assert_eq!(parsed[0].values, d.cycle_samples(10, 0)[2].values);
    }

    #[test]
    fn faults_keep_every_sample_and_add_copies() {
        let d = data();
        let mut opts = PlanOptions::new(thing_names("rig", 1).unwrap(), 0..36);
        opts.duplicates = 0.1;
        opts.reorder = 8;
        opts.stagger = 5;
        opts.batch = 3;
        let p = plan(&d, &channels(), &opts).unwrap();
        let originals: Vec<u64> = {
            let mut v: Vec<u64> = p
                .messages
                .iter()
                .filter(|m| !m.duplicate)
                .map(|m| m.first_seq)
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(originals, (0..720).map(|i| i * 3).collect::<Vec<_>>());
        let dups = p.messages.iter().filter(|m| m.duplicate).count();
        assert!((40..110).contains(&dups), "{dups} duplicates");
        let in_order = p
            .messages
            .windows(2)
            .filter(|w| w[0].first_seq < w[1].first_seq)
            .count();
        assert!(in_order < p.messages.len() - 50, "shuffled");
        assert!(p.messages.windows(2).all(|w| w[0].due <= w[1].due));
        // Rotated by 0 for the first thing.
        assert_eq!(p.cycle_of("rig-001", 0), Some(0));
    }
}
