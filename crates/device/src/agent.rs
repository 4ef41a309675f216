//! `vigil device`: the device / gateway agent.
//!
//! It reads a sensor source (a dataset replay, a CSV file, JSON lines on stdin), gives each
//! sample the device's next `seq`, stores it in the on-disk queue (`crate::queue`), and sends
//! the queue in seq order with QoS 1 — to any MQTT broker (`--broker mqtt://host:port`) or to
//! AWS IoT Core over mutual TLS (`--endpoint`, `--cert`, `--key`, `--ca`).
//!
//! What makes it lose nothing (docs/device.md has the full story):
//! - a sample leaves the queue only when a result on `dt/vigil/{thing}/condition` covers its
//!   seq (the end-to-end acknowledgement). A PUBACK only says the broker has the message; a
//!   broker that dies before delivering it would lose it, so PUBACK does not remove anything;
//! - after every reconnect, and when no result has come for `--resend-after`, everything still
//!   queued is sent again from the head, in order. The pipeline is idempotent by seq, so
//!   duplicates cost bandwidth and nothing else;
//! - the MQTT session is persistent (`clean_session = false`) and the agent subscribes again on
//!   every connection: a broker that kept the session delivers the results published while the
//!   link was down;
//! - a result can still be lost (the broker lost the session: it restarted, or another client
//!   connected with this thing's client id and a clean session). Samples that were re-sent in
//!   a full round, all PUBACKed on one connection, and still got no result, belong to windows
//!   the pipeline already closed (it answers nothing for late samples): they are removed and
//!   counted as `given_up` — below the newest confirmed window while the source runs, all of
//!   them once it has ended. With the shadow on (`--shadow`, the default with `--endpoint`), the
//!   agent first reads the `condition` shadow back (after a reconnect that found no session, and
//!   before a give-up): its verdict, the LATEST one, confirms the samples it covers
//!   (`recovered_from_shadow`), and only what it does not cover is given up (`crate::shadow`);
//! - no result for `--stall-after` with samples queued is reported as a stall (an error; with
//!   `--exit-when-drained` the agent exits with it) instead of a silent wait;
//! - reconnects back off exponentially with full jitter (`--backoff-min` .. `--backoff-max`);
//! - the queue is bounded by `--queue-max-samples`; when full, `--on-full drop-oldest` (the
//!   default) removes the oldest samples and counts them in `dropped`, `--on-full block`
//!   stops reading the source until room is made.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, Notify};
use vigil_core::telemetry::{condition_topic, encode_batch, encode_sample, telemetry_topic};
use vigil_core::DeviceId;

use vigil_mqtt::BrokerUrl;

use crate::queue::{FullPolicy, OpenOptions, Queue};
use crate::shadow::{BeforeGiveUp, ShadowCheck, ShadowMessage, ShadowTopics};
pub use crate::source::{parse_json_line, Source};
use crate::source::{read_source, ReaderArgs};

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Thing name: the MQTT client id and the `{thing}` of the topics.
    #[arg(long, env = "VIGIL_THING")]
    pub thing: String,
    /// Plain MQTT broker, `mqtt://host:port` (local brokers, `vigil edge`).
    #[arg(
        long,
        default_value = "mqtt://127.0.0.1:1883",
        conflicts_with = "endpoint"
    )]
    pub broker: String,
    /// AWS IoT Core data endpoint (`terraform output -raw iot_endpoint`); port 8883, mutual TLS.
    #[arg(long, env = "VIGIL_IOT_ENDPOINT", requires_all = ["cert", "key", "ca"])]
    pub endpoint: Option<String>,
    /// Device certificate (PEM) for mutual TLS.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Device private key (PEM).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// CA certificate of the endpoint (Amazon Root CA 1, PEM).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Publish through AWS IoT Basic Ingest to this rule: `$aws/rules/RULE/dt/vigil/{thing}/telemetry`.
    #[arg(long)]
    pub basic_ingest: Option<String>,
    /// Samples per message (1: one sample per message; up to 2048).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `replay-hydraulic:DIR`, `csv:FILE` or `stdin` (JSON lines `{"ts":..,"values":{..}}`).
    #[arg(long, default_value = "stdin")]
    pub source: String,
    /// Channel names in order (the profile's); for csv, the header columns to send.
    #[arg(long, value_delimiter = ',', default_value = "TS1,TS2,TS3,TS4")]
    pub channels: Vec<String>,
    /// Stop a dataset replay after this many cycles (from the start of the dataset).
    #[arg(long)]
    pub cycles: Option<usize>,
    /// Replay speed (dataset and CSV; stdin is live, never paced): 1.0 is the recorded rate
    /// (1 Hz for the hydraulic rig), 0 as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// State directory: the queue, the seq cursor and the source position (one per thing).
    #[arg(long, default_value = ".vigil/device")]
    pub state: PathBuf,
    /// Most samples kept unconfirmed on disk.
    #[arg(long, default_value_t = 1_000_000)]
    pub queue_max_samples: u64,
    /// What to do when the queue is full. `block` needs `--queue-max-samples` of at least
    /// 2 × `--window-samples` + `--batch` (checked at start).
    #[arg(long, value_enum, default_value = "drop-oldest")]
    pub on_full: FullPolicy,
    /// Samples per window of the thing's profile (60 for the hydraulic rig): only to check
    /// that a blocking queue can hold what a window needs to be confirmed.
    #[arg(long, default_value_t = 60)]
    pub window_samples: u64,
    /// The seq the next sample gets, for a queue that has none (new, or set aside): the seq
    /// after this thing's last result. Needed when a thing's queue was lost.
    #[arg(long, value_name = "SEQ")]
    pub start_seq: Option<u64>,
    /// If the queue file cannot be opened (damaged, truncated, empty), set it aside as
    /// `queue.redb.bad-<time>` and start a new one (give --start-seq with it).
    #[arg(long)]
    pub reset_store: bool,
    /// Seconds without a new result, with samples sent and unconfirmed, before re-sending.
    #[arg(long, default_value_t = 60.0)]
    pub resend_after: f64,
    /// Seconds without a new result, with samples queued, after which the agent reports a
    /// stall (an error naming the unconfirmed seqs and the reconnects meanwhile); with
    /// --exit-when-drained it then exits with an error instead of waiting for ever.
    #[arg(long, default_value_t = 600.0)]
    pub stall_after: f64,
    /// First reconnect delay, in seconds (doubles per failure, with full jitter).
    #[arg(long, default_value_t = 0.2)]
    pub backoff_min: f64,
    /// Longest reconnect delay, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub backoff_max: f64,
    /// MQTT keep-alive in seconds (how fast a dead link is noticed).
    #[arg(long, default_value_t = 30)]
    pub keep_alive: u64,
    /// Messages in flight (published, not yet PUBACKed).
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// Also use the `condition` named shadow (AWS IoT, or `vigil edge` through its gateway; on
    /// by default with --endpoint): show its updates, and read it back after a lost session and
    /// before giving samples up, recovering the latest verdict if it was missed.
    #[arg(long)]
    pub shadow: bool,
    /// Do not use the shadow even with --endpoint (brokers that refuse `$` topics, such as the
    /// embedded one on its plain listener, drop a client that tries).
    #[arg(long, conflicts_with = "shadow")]
    pub no_shadow: bool,
    /// Exit once the source has ended and every sample is confirmed.
    #[arg(long)]
    pub exit_when_drained: bool,
    /// Print nothing per verdict (the summary line is still printed on exit).
    #[arg(long)]
    pub quiet: bool,
}

/// Where to connect: host and port of a plain MQTT broker.
pub fn parse_broker(url: &str) -> anyhow::Result<(String, u16)> {
    let broker = BrokerUrl::parse(url).with_context(|| format!("--broker {url:?}"))?;
    Ok((broker.host, broker.port))
}

/// `--on-full block` waits for confirmations, and a confirmation needs a window's samples in
/// the queue: a complete window is scored at once, an incomplete one only when seqs a window
/// past its end arrive; and one message (`batch`) goes out whole. A smaller bound would wait
/// for ever, so it is refused at start.
pub fn check_block_bound(max_samples: u64, window: u64, batch: usize) -> anyhow::Result<()> {
    let window = window.max(1);
    let needed = 2 * window + batch as u64;
    if max_samples < needed {
        bail!(
            "--on-full block with --queue-max-samples {max_samples}: needs at least {needed} \
             (2 × --window-samples {window} + --batch {batch}); with less the queue fills before \
             a window can be confirmed and the reader waits for ever. Raise the bound or use \
             --on-full drop-oldest"
        );
    }
    Ok(())
}

/// Small xorshift for backoff jitter (no need for a crypto RNG here).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self(seed | 1)
    }
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exponential backoff with full jitter: attempt `n` waits uniformly in `[0, min(max, min*2^n)]`
/// (at least `min / 2` so a flapping link is not hammered).
pub fn backoff(attempt: u32, min: f64, max: f64, unit: f64) -> Duration {
    let cap = (min * 2f64.powi(attempt.min(30) as i32)).min(max).max(min);
    Duration::from_secs_f64((cap * unit).max(min / 2.0))
}

/// A verdict as published on the condition topic (only the fields the agent needs).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Verdict {
    pub window: u64,
    pub seq_start: u64,
    pub seq_end: u64,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub status: serde_json::Value,
    #[serde(default)]
    pub completeness: f64,
    #[serde(default)]
    pub alert: Option<String>,
}

/// Counters printed as the last line (JSON) on exit.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DeviceSummary {
    pub thing: String,
    pub messages_published: u64,
    pub samples_published: u64,
    pub pubacks: u64,
    pub results: u64,
    pub confirmed: u64,
    pub reconnects: u64,
    pub resend_rounds: u64,
    /// Connections on which the broker had no session left (results may have been lost).
    pub sessions_lost: u64,
    pub queued: u64,
    pub next_seq: u64,
    pub dropped: u64,
    pub given_up: u64,
    pub last_label: Option<String>,
    /// Updates of the `condition` shadow heard (`.../update/accepted`).
    pub shadow_updates: u64,
    /// Shadow `get` requests sent (after a lost session, before a give-up).
    pub shadow_gets: u64,
    /// Verdicts read back from the shadow that confirmed queued samples (a result the agent
    /// had missed; the shadow holds only the latest).
    pub recovered_from_shadow: u64,
}

enum Net {
    Event(Event),
    Error(String),
}

pub async fn run(args: DeviceArgs) -> anyhow::Result<()> {
    run_with_summary(args).await.map(|_| ())
}

/// [`run`], giving back the summary it prints.
pub async fn run_with_summary(args: DeviceArgs) -> anyhow::Result<DeviceSummary> {
    let thing = DeviceId::new(args.thing.clone()).map_err(|e| anyhow::anyhow!("--thing: {e}"))?;
    let source = Source::parse(&args.source)?;
    if args.batch == 0 || args.batch > vigil_core::telemetry::MAX_SAMPLES_PER_MESSAGE {
        bail!("--batch {} must be within 1..=2048", args.batch);
    }
    if args.on_full == FullPolicy::Block {
        check_block_bound(args.queue_max_samples, args.window_samples, args.batch)?;
    }
    let queue = Arc::new(Queue::open_with(
        &args.state,
        args.queue_max_samples,
        args.on_full,
        OpenOptions {
            start_seq: args.start_seq,
            reset_store: args.reset_store,
        },
    )?);
    let wake = Arc::new(Notify::new());
    let stop = Arc::new(AtomicBool::new(false));

    // Where rumqttc connects: the broker, or the loopback end of the TLS bridge to IoT Core.
    let (host, port) = match &args.endpoint {
        Some(endpoint) => {
            let bridge = start_tls_bridge(
                endpoint,
                args.cert.as_deref().unwrap_or(Path::new("")),
                args.key.as_deref().unwrap_or(Path::new("")),
                args.ca.as_deref().unwrap_or(Path::new("")),
            )
            .await?;
            (bridge.ip().to_string(), bridge.port())
        }
        None => parse_broker(&args.broker)?,
    };
    let mut options = MqttOptions::new(thing.as_str(), host, port);
    // A persistent session: the broker keeps the subscription while the link is down and
    // delivers the results published meanwhile on the next connection (rumqttd, IoT Core).
    options
        .set_keep_alive(Duration::from_secs(args.keep_alive.max(1)))
        .set_clean_session(false)
        .set_inflight(args.inflight.max(1))
        .set_max_packet_size(256 * 1024, 256 * 1024)
        .set_request_channel_capacity(usize::from(args.inflight.max(1)));
    let (client, eventloop) = AsyncClient::new(options, usize::from(args.inflight.max(1)));

    let (net_tx, mut net_rx) = mpsc::unbounded_channel();
    let backoff_args = (args.backoff_min, args.backoff_max);
    let net_task = tokio::spawn(drive(eventloop, net_tx, backoff_args));

    let reader_args = ReaderArgs {
        channels: args.channels.clone(),
        cycles: args.cycles,
        speed: args.speed,
    };
    let reader = {
        let (queue, wake, stop) = (queue.clone(), wake.clone(), stop.clone());
        tokio::task::spawn_blocking(move || read_source(source, reader_args, queue, wake, stop))
    };
    let source_done = Arc::new(AtomicBool::new(false));

    let topic = match &args.basic_ingest {
        Some(rule) => format!("$aws/rules/{rule}/{}", telemetry_topic(&thing)),
        None => telemetry_topic(&thing),
    };
    let result_topic = condition_topic(&thing);
    let shadow = ShadowTopics::new(thing.as_str());
    let mut shadow_check = ShadowCheck::default();
    let want_shadow = !args.no_shadow && (args.shadow || args.endpoint.is_some());
    let resend_after = Duration::from_secs_f64(args.resend_after.max(0.1));
    let stall_after = Duration::from_secs_f64(args.stall_after.max(0.1));

    let mut summary = DeviceSummary {
        thing: thing.to_string(),
        ..DeviceSummary::default()
    };
    let mut connected = false;
    let mut connected_at = Instant::now();
    let mut next_send: u64 = 0;
    // One past the highest seq published in this run: what a shadow verdict may confirm.
    let mut sent_end: u64 = 0;
    let mut outstanding: u64 = 0;
    let mut confirmed_end: u64 = 0;
    let mut last_progress = Instant::now();
    // The last result (or the last time nothing was waiting for one), for the stall deadline.
    let mut last_result = Instant::now();
    let mut reconnects_at_result: u64 = 0;
    let mut failure: Option<anyhow::Error> = None;
    // Hole limit of the previous resend round, with the time it started.
    let mut prev_round: Option<(u64, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut reader = Some(reader);
    let mut shutdown = Box::pin(tokio::signal::ctrl_c());

    loop {
        // Send what the queue holds past the cursor, within the in-flight budget.
        while connected && outstanding < u64::from(args.inflight) {
            let batch = queue.read_from(next_send, args.batch)?;
            if batch.is_empty() {
                break;
            }
            let payload = if args.batch == 1 {
                encode_sample(&batch[0], &args.channels)
            } else {
                encode_batch(&batch, &args.channels)
            };
            if client
                .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                break;
            }
            next_send = batch.last().map_or(next_send, |s| s.seq + 1);
            sent_end = sent_end.max(next_send);
            outstanding += 1;
            summary.messages_published += 1;
            summary.samples_published += batch.len() as u64;
        }

        tokio::select! {
            net = net_rx.recv() => {
                let Some(net) = net else { bail!("the MQTT event loop stopped") };
                match net {
                    Net::Event(Event::Incoming(Packet::ConnAck(ack))) => {
                        connected = true;
                        connected_at = Instant::now();
                        summary.reconnects += 1;
                        outstanding = 0;
                        prev_round = None;
                        // Everything unconfirmed goes again, from the head, in order.
                        next_send = queue.head()?.unwrap_or(next_send);
                        last_progress = Instant::now();
                        tracing::info!(session_present = ack.session_present, from = next_send, "connected");
                        let session_lost = !ack.session_present && summary.reconnects > 1;
                        if session_lost {
                            summary.sessions_lost += 1;
                            tracing::warn!("the broker has no session for this thing's client id \
                                (it restarted, or another client connected with this id): results \
                                published meanwhile are lost; the queue is re-sent, and what a full \
                                acknowledged re-send gets no result for is given up");
                        }
                        // Again on every connection: a session that survived ignores it, a new
                        // one gets the subscription it lacks.
                        client.subscribe(result_topic.clone(), QoS::AtLeastOnce).await.ok();
                        if want_shadow {
                            client.subscribe_many(shadow.filters()).await.ok();
                            if session_lost {
                                // The latest of the lost results may still be in the shadow.
                                ask_shadow(&client, &shadow, &mut shadow_check, &mut summary).await;
                            }
                        }
                    }
                    Net::Event(Event::Incoming(Packet::PubAck(_))) => {
                        summary.pubacks += 1;
                        outstanding = outstanding.saturating_sub(1);
                    }
                    Net::Event(Event::Incoming(Packet::Publish(p))) => {
                        let verdict = if p.topic == result_topic {
                            match serde_json::from_slice::<Verdict>(&p.payload) {
                                Ok(v) => Some((v, false)),
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable result");
                                    None
                                }
                            }
                        } else {
                            match shadow.read(&p.topic, &p.payload) {
                                Some(ShadowMessage::Updated) => {
                                    summary.shadow_updates += 1;
                                    if !args.quiet {
                                        println!("shadow {thing}: {}", String::from_utf8_lossy(&p.payload));
                                    }
                                    None
                                }
                                Some(ShadowMessage::Verdict(v)) => {
                                    shadow_check.answered();
                                    Some((v, true))
                                }
                                Some(ShadowMessage::Unreadable(why)) => {
                                    shadow_check.answered();
                                    tracing::warn!(%why, "unreadable shadow document");
                                    None
                                }
                                Some(ShadowMessage::Rejected(code)) => {
                                    shadow_check.answered();
                                    tracing::info!(?code, "shadow get rejected (no verdict yet?)");
                                    None
                                }
                                None => None,
                            }
                        };
                        if let Some((v, from_shadow)) = verdict {
                            let seqs = if from_shadow {
                                crate::shadow::confirmable(&v, sent_end)
                            } else {
                                v.seq_start..v.seq_end
                            };
                            let removed = queue.remove(seqs.clone(), false)?;
                            // A shadow verdict that confirms nothing queued was received already.
                            if from_shadow && removed == 0 && !args.quiet {
                                println!(
                                    "shadow {thing}: latest verdict window {} seq {}..{}: nothing queued is waiting for it",
                                    v.window, v.seq_start, v.seq_end
                                );
                            }
                            if !from_shadow || removed > 0 {
                                if from_shadow {
                                    summary.recovered_from_shadow += 1;
                                } else {
                                    summary.results += 1;
                                }
                                summary.confirmed += removed;
                                confirmed_end = confirmed_end.max(seqs.end);
                                last_progress = Instant::now();
                                last_result = last_progress;
                                reconnects_at_result = summary.reconnects;
                                summary.last_label = Some(v.label.clone());
                                if !args.quiet {
                                    print_verdict(&thing, &v, from_shadow);
                                }
                            }
                        }
                    }
                    Net::Event(_) => {}
                    Net::Error(e) => {
                        if connected {
                            tracing::warn!(error = %e, "disconnected");
                        }
                        connected = false;
                        prev_round = None;
                    }
                }
            }
            () = wake.notified() => {}
            _ = tick.tick() => {
                if let Some(r) = &reader {
                    if r.is_finished() {
                        let r = reader.take().context("reader")?;
                        r.await.context("the source reader panicked")??;
                        source_done.store(true, Ordering::Relaxed);
                    }
                }
                let stats = queue.stats()?;
                if stats.queued == 0 {
                    last_result = Instant::now();
                    reconnects_at_result = summary.reconnects;
                } else if last_result.elapsed() >= stall_after {
                    let stall = stalled(&queue, stats.queued, connected, summary.reconnects - reconnects_at_result, stall_after)?;
                    if args.exit_when_drained {
                        failure = Some(stall);
                        break;
                    }
                    tracing::error!("{stall:#}");
                    last_result = Instant::now();
                    reconnects_at_result = summary.reconnects;
                }
                if connected && stats.queued > 0 && next_send > queue.head()?.unwrap_or(0)
                    && last_progress.elapsed() >= resend_after
                {
                    // Give up holes that a full, acknowledged round on this connection did
                    // not get a result for: their windows were closed before. Below the newest
                    // result only while the source runs (the newest window may still be
                    // filling); once it has ended nothing more is coming that could close a
                    // window, and waiting longer gets nothing.
                    let due = prev_round
                        .filter(|(_, started)| outstanding == 0 && connected_at <= *started)
                        .map(|(limit, _)| limit);
                    // Before giving up, the shadow may still hold the latest missed verdict.
                    let hold = match due {
                        Some(_) if want_shadow => match shadow_check.before_give_up(Instant::now(), resend_after) {
                            BeforeGiveUp::Ask => {
                                ask_shadow(&client, &shadow, &mut shadow_check, &mut summary).await;
                                true
                            }
                            BeforeGiveUp::Wait => true,
                            BeforeGiveUp::Proceed => false,
                        },
                        _ => false,
                    };
                    if !hold {
                        if let Some(limit) = due {
                            let n = queue.remove(0..limit, true)?;
                            if n > 0 {
                                let below = (limit < u64::MAX).then_some(limit);
                                tracing::warn!(samples = n, ?below, "no result after re-sending: given up (their windows are closed)");
                            }
                        }
                        summary.resend_rounds += 1;
                        let limit = if source_done.load(Ordering::Relaxed) { u64::MAX } else { confirmed_end };
                        prev_round = Some((limit, Instant::now()));
                        shadow_check.new_round();
                        next_send = queue.head()?.unwrap_or(next_send);
                        last_progress = Instant::now();
                        tracing::info!(from = next_send, "no result lately: re-sending the queue");
                    }
                }
                if args.exit_when_drained && source_done.load(Ordering::Relaxed) && stats.queued == 0 {
                    break;
                }
            }
            _ = &mut shutdown => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    queue.flush()?;
    net_task.abort();
    let stats = queue.stats()?;
    summary.queued = stats.queued;
    summary.next_seq = stats.next_seq;
    summary.dropped = stats.dropped;
    summary.given_up = stats.given_up;
    println!("{}", serde_json::to_string(&summary)?);
    failure.map_or(Ok(summary), Err)
}

/// Asks for the `condition` shadow (its answer comes on `get/accepted` or `get/rejected`).
async fn ask_shadow(
    client: &AsyncClient,
    shadow: &ShadowTopics,
    check: &mut ShadowCheck,
    summary: &mut DeviceSummary,
) {
    if client
        .publish(shadow.get.clone(), QoS::AtLeastOnce, false, b"{}".to_vec())
        .await
        .is_ok()
    {
        summary.shadow_gets += 1;
    }
    check.asked(Instant::now());
}

/// One line per verdict: `condition THING window N seq A..B: LABEL (STATUS, completeness C)`,
/// with the alert if any, and `[from the shadow]` for a verdict read back from the shadow.
fn print_verdict(thing: &DeviceId, v: &Verdict, from_shadow: bool) {
    println!(
        "condition {thing} window {} seq {}..{}: {} ({}, completeness {:.2}){}{}",
        v.window,
        v.seq_start,
        v.seq_end,
        v.label,
        v.status.as_str().unwrap_or("?"),
        v.completeness,
        v.alert
            .as_ref()
            .map(|a| format!(", alert {a}"))
            .unwrap_or_default(),
        if from_shadow {
            " [from the shadow]"
        } else {
            ""
        }
    );
}

/// The stall error: what is waiting, since when, and what may be the cause.
fn stalled(
    queue: &Queue,
    queued: u64,
    connected: bool,
    reconnects: u64,
    after: Duration,
) -> anyhow::Result<anyhow::Error> {
    let head = queue.head()?.unwrap_or(0);
    let link = if !connected && reconnects == 0 {
        "not connected to the broker".to_string()
    } else if reconnects > 1 {
        format!(
            "{reconnects} reconnects in that time: another client may be connecting with this \
             thing's client id, each taking the session over"
        )
    } else {
        format!("connected: {connected}, {reconnects} reconnects in that time")
    };
    Ok(anyhow::anyhow!(
        "stalled: no result for {:.0} s with {queued} samples unconfirmed (from seq {head}); {link}",
        after.as_secs_f64()
    ))
}

/// Polls the event loop, forwarding events; on errors backs off (exponential, full jitter).
async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Net>, (min, max): (f64, f64)) {
    let mut jitter = Jitter::new();
    let mut failures: u32 = 0;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                tracing::trace!(?event, "mqtt event");
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    failures = 0;
                }
                if tx.send(Net::Event(event)).is_err() {
                    return;
                }
            }
            Err(e) => {
                if tx.send(Net::Error(e.to_string())).is_err() {
                    return;
                }
                let wait = backoff(failures, min, max, jitter.unit());
                failures = failures.saturating_add(1);
                tracing::debug!(?wait, error = %e, "reconnecting after a pause");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Starts a loopback listener whose connections are carried over mutual TLS to `endpoint`
/// (port 8883 unless given), and returns its address: rumqttc then speaks plain MQTT to it.
pub async fn start_tls_bridge(
    endpoint: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> anyhow::Result<SocketAddr> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::ServerName;

    let certs = vigil_mqtt::tls::certificates("cert", cert)?;
    let key_der = vigil_mqtt::tls::private_key("key", key)?;
    let roots = vigil_mqtt::tls::roots("ca", ca)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key_der)
        .context("--cert/--key: not a usable certificate and key")?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h.to_string(), p.parse()?),
        _ => (endpoint.to_string(), 8883u16),
    };
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| anyhow::anyhow!("--endpoint {endpoint:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let (connector, name, host) = (connector.clone(), server_name.clone(), host.clone());
            tokio::spawn(async move {
                let tcp = match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                    Ok(t) => t,
                    Err(e) => {
                        return tracing::warn!(error = %e, %host, port, "connecting to the endpoint")
                    }
                };
                let _ = tcp.set_nodelay(true);
                let mut tls = match connector.connect(name, tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        return tracing::warn!(error = %e, %host, "TLS handshake with the endpoint")
                    }
                };
                let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
            });
        }
    });
    tracing::info!(%endpoint, %addr, "mutual TLS bridge to the endpoint");
    Ok(addr)
}

/// Loopback address a caller can use (tests, fleet).
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0, 0.2, 30.0, 1.0) <= Duration::from_secs_f64(0.2));
        assert!(backoff(3, 0.2, 30.0, 1.0) <= Duration::from_secs_f64(1.6));
        assert_eq!(backoff(40, 0.2, 30.0, 1.0), Duration::from_secs_f64(30.0));
        assert!(backoff(40, 0.2, 30.0, 0.0) >= Duration::from_secs_f64(0.1));
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884)
        );
        assert_eq!(
            parse_broker("localhost").unwrap(),
            ("localhost".into(), 1883)
        );
    }

    #[test]
    fn a_blocking_queue_too_small_for_a_window_is_refused_at_start() {
        let e = check_block_bound(100, 60, 10).unwrap_err().to_string();
        assert!(e.contains("needs at least 130"), "{e}");
        assert!(check_block_bound(130, 60, 10).is_ok());
    }
}
