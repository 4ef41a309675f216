//! `vigil demo`: the edge and a replay together, on the committed sample of the hydraulic rig
//! (`models/samples/hydraulic/`: 12 cycles of cooler at 100 %, 12 at 20 %, 12 at 3 %).
//!
//! In one process: an embedded broker on a free loopback port, `vigil edge` with a temporary
//! state directory, a watcher subscribed to `dt/vigil/+/condition` and `dt/vigil/+/alerts`, and
//! a replay publishing the cycles. Each cycle's verdict is printed against the truth
//! (`profile.txt`, column 0), then alert transitions and a summary.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use vigil_core::ports::{AlertEvent, WindowResult};

use vigil_datasets::models;
use vigil_datasets::{label_of, Hydraulic};
use vigil_edge::{self as edge, broker, EdgeConfig};
use vigil_mqtt::{BrokerUrl, Subscriber};
use vigil_sim::fleet::percentile;
use vigil_sim::replay::{self, PlanOptions, Replayer};

const PROFILE: &str = "hydraulic-cooler";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Replay speed: 0 = as fast as possible, 1 = real time (one sample per second).
    #[arg(long, default_value_t = 0.0)]
    pub speed: f64,
    /// Number of things replaying the cycles (`rig-001`, ...).
    #[arg(long, default_value_t = 1)]
    pub things: usize,
    /// Dataset directory (default: the committed sample, models/samples/hydraulic).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Models directory (default: models/ of this checkout, or VIGIL_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Samples per message.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Thing i starts i * STAGGER cycles into the sample.
    #[arg(long, default_value_t = 0)]
    pub stagger: usize,
}

/// Prints above the progress bar (or plainly when it is hidden).
struct Out {
    bar: ProgressBar,
}

impl Out {
    fn line(&self, text: impl AsRef<str>) {
        self.bar.suspend(|| println!("{}", text.as_ref()));
    }
}

/// A temporary directory removed on drop (the CLI does not depend on `tempfile`).
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.things == 0 {
        bail!("--things must be at least 1");
    }
    if args.speed < 0.0 || !args.speed.is_finite() {
        bail!("--speed must be 0 (as fast as possible) or positive");
    }
    let models_dir = models::models_dir(args.models.as_deref());
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| models::repo_root().join("models/samples/hydraulic"));
    let profiles = Arc::new(edge::load_profiles_named(&models_dir, &[PROFILE])?);
    let profile = profiles
        .get(PROFILE)
        .with_context(|| format!("no profile {PROFILE:?} in {}", models_dir.display()))?;
    let channels = profile.profile.channels.clone();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let data = Hydraulic::load(&data_dir, &names)?;

    println!(
        "vigil demo: {} cycles of the UCI hydraulic rig ({}), cooler condition by {} ({})",
        data.cycles(),
        data_dir.display(),
        PROFILE,
        profile.scorer.version()
    );
    println!(
        "  data: ZeMA gGmbH, \"Condition monitoring of hydraulic systems\", UCI Machine Learning Repository, CC BY 4.0"
    );

    // Broker, edge, watcher.
    let embedded = broker::start_embedded("127.0.0.1:0".parse()?)?;
    let url = BrokerUrl::parse(&embedded.url())?;
    let state = TempDir::new("vigil-demo")?;
    let mut config = EdgeConfig::new(url.clone(), &state.0);
    config.models_dir = models_dir.clone();
    config.default_profile = PROFILE.into();
    // The operator's side: the demo acknowledges each alarm it is told of, over HTTP.
    config.http = Some("127.0.0.1:0".parse()?);
    let mut edge = edge::start_with(config, Arc::clone(&profiles)).await?;
    let operator = edge
        .http_addr
        .zip(edge.http_token.as_ref().map(|t| t.0.clone()));
    edge.ready(Duration::from_secs(10)).await?;
    let mut watch = Subscriber::connect(
        &url,
        "vigil-demo-watch",
        &["dt/vigil/+/condition", "dt/vigil/+/alerts"],
    )
    .await?;
    println!(
        "  broker {url} (embedded), edge state {} (temporary)",
        state.0.display()
    );

    // The replay.
    let mut options = PlanOptions::new(replay::thing_names("rig", args.things)?, 0..data.cycles());
    options.batch = args.batch;
    options.stagger = args.stagger;
    let plan = Arc::new(replay::plan(&data, &channels, &options)?);
    let expected = plan.windows();
    println!(
        "  replay: {} thing(s), {} messages of {} sample(s), {}",
        plan.things.len(),
        plan.messages.len(),
        args.batch,
        if args.speed == 0.0 {
            "as fast as possible".to_string()
        } else {
            format!("speed {}", args.speed)
        }
    );
    println!();

    let bar = if std::io::stdout().is_terminal() {
        let bar = ProgressBar::new(expected as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} cycles scored, {elapsed}")
                .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let out = Out { bar };

    // Publish time of the last original message of each window: latency is measured from it.
    let sent: Arc<Mutex<HashMap<(usize, u64), Instant>>> = Arc::default();
    let mut replayer = Replayer::connect(&url, "vigil-demo-replay").await?;
    let started = Instant::now();
    let publisher = {
        let plan = Arc::clone(&plan);
        let sent = Arc::clone(&sent);
        let speed = args.speed;
        tokio::spawn(async move {
            let stats = replayer
                .publish(&plan.messages, speed, |m| {
                    if !m.duplicate {
                        let now = Instant::now();
                        let mut sent = sent.lock().expect("lock");
                        for w in plan.windows_of(m) {
                            sent.insert((m.thing, w), now);
                        }
                    }
                })
                .await;
            let acked = replayer.wait_acked(Duration::from_secs(60)).await;
            replayer.disconnect().await;
            (stats, acked)
        })
    };

    let span = plan.messages.last().map_or(Duration::ZERO, |m| m.due);
    let budget = Duration::from_secs(60)
        + if args.speed > 0.0 {
            span.div_f64(args.speed)
        } else {
            Duration::ZERO
        };
    let deadline = Instant::now() + budget;
    let mut results: BTreeMap<(String, u64), WindowResult> = BTreeMap::new();
    let mut alerts: Vec<AlertEvent> = Vec::new();
    let mut latencies: Vec<f64> = Vec::new();
    let mut last_result_at = started;
    let mut correct = 0usize;
    let mut per_class: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    loop {
        // Alerts travel on their own topic: once the edge has handled every message, wait for
        // every alert it sent.
        let stats = edge.stats();
        if results.len() >= expected
            && stats.acked >= plan.messages.len() as u64
            && alerts.len() as u64 >= stats.alerts_published
        {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(msg) = watch
            .recv_timeout(left.min(Duration::from_millis(500)))
            .await
        else {
            if Instant::now() >= deadline {
                out.bar.finish_and_clear();
                bail!(
                    "demo: {} of {expected} cycles scored within {budget:?}; edge: {}",
                    results.len(),
                    edge.stats().summary()
                );
            }
            continue;
        };
        let Some(thing) = vigil_mqtt::thing_of(&msg.topic).map(str::to_string) else {
            continue;
        };
        if msg.topic.ends_with("/condition") {
            let r: WindowResult = serde_json::from_slice(&msg.payload)
                .with_context(|| format!("result on {}", msg.topic))?;
            let thing_index = plan.things.iter().position(|d| d.as_str() == thing);
            let Some(cycle) = plan.cycle_of(&thing, r.window) else {
                out.line(format!(
                    "  (result for unknown window {} of {thing})",
                    r.window
                ));
                continue;
            };
            if results.contains_key(&(thing.clone(), r.window)) {
                out.line(format!("  (duplicate result: {thing} window {})", r.window));
                continue;
            }
            let truth = label_of(data.conditions[cycle][0]);
            let ok = r.label == truth;
            correct += usize::from(ok);
            let e = per_class.entry(truth.clone()).or_default();
            e.0 += usize::from(ok);
            e.1 += 1;
            let latency = thing_index
                .and_then(|t| sent.lock().expect("lock").get(&(t, r.window)).copied())
                .map(|at| msg.at.saturating_duration_since(at).as_secs_f64() * 1000.0);
            if let Some(l) = latency {
                latencies.push(l);
            }
            let p = r
                .labels
                .iter()
                .position(|l| *l == r.label)
                .and_then(|i| r.probabilities.get(i))
                .copied()
                .unwrap_or(f32::NAN);
            out.line(format!(
                "  {thing}  cycle {cycle:>2}  truth {truth:>3} %  verdict {:>3} %  {}  p={p:.2}  {}/{} samples{}  {}",
                r.label,
                if ok { "ok  " } else { "MISS" },
                (r.completeness * (r.seq_end - r.seq_start) as f32).round(),
                r.seq_end - r.seq_start,
                if r.filled > 0 { format!(" ({} filled)", r.filled) } else { String::new() },
                latency.map_or(String::new(), |l| format!("{l:.1} ms")),
            ));
            last_result_at = msg.at;
            results.insert((thing, r.window), r);
            out.bar.inc(1);
        } else if msg.topic.ends_with("/alerts") {
            let a: AlertEvent = serde_json::from_slice(&msg.payload)
                .with_context(|| format!("alert on {}", msg.topic))?;
            let alarm = a.alarm.as_ref();
            out.line(format!(
                "  >> alert {}: {} (window {}){}",
                a.transition.kind(),
                a.subject(),
                a.window,
                alarm.map_or(String::new(), |n| format!(", alarm {}", n.state.as_str()))
            ));
            if let (Some((addr, token)), Some(n)) = (&operator, alarm) {
                if n.state == vigil_core::alarm::AlarmState::ActiveUnacknowledged {
                    let body = serde_json::json!({
                        "device": thing, "condition": n.condition, "by": "demo-operator",
                        "id": format!("demo-{thing}-{}-{}", n.condition, a.window),
                        "action": "acknowledge", "note": "seen in the demo",
                    })
                    .to_string();
                    let (addr, token) = (*addr, token.clone());
                    let answer = tokio::task::spawn_blocking(move || {
                        crate::alarm::send(addr, &token, &body)
                    })
                    .await?;
                    out.line(match answer {
                        Ok((200, text)) => format!(
                            "  >> operator acknowledges {} on {thing}: {}",
                            n.condition,
                            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()
                                ["state"]
                        ),
                        Ok((status, text)) => format!(
                            "  >> operator acknowledges {}: refused {status} {}",
                            n.condition,
                            text.trim()
                        ),
                        Err(e) => format!("  >> operator acknowledges {}: {e}", n.condition),
                    });
                }
            }
            alerts.push(a);
        }
    }
    out.bar.finish_and_clear();
    let elapsed = last_result_at.duration_since(started).as_secs_f64();

    let (replay_stats, acked) = publisher.await.context("replay task")?;
    let replay_stats = replay_stats?;
    let acked = acked?;
    let edge_stats = edge.shutdown().await?;
    drop(watch);
    print_alarm_histories(&state.0, &plan.things).await?;

    latencies.sort_by(f64::total_cmp);
    println!();
    println!(
        "summary: {expected} cycles ({} thing(s) x {}), accuracy {:.3} ({correct}/{expected})",
        plan.things.len(),
        data.cycles(),
        correct as f64 / expected as f64
    );
    let classes: Vec<String> = per_class
        .iter()
        .rev()
        .map(|(label, (ok, n))| format!("{label} %: {ok}/{n}"))
        .collect();
    println!("  per condition: {}", classes.join(", "));
    let transitions: Vec<String> = alerts
        .iter()
        .map(|a| {
            let what = match &a.transition {
                vigil_core::alert::Transition::Raised { label, .. } => format!("raised {label}"),
                vigil_core::alert::Transition::Changed { from, to, .. } => {
                    format!("changed {from} -> {to}")
                }
                vigil_core::alert::Transition::Cleared { label } => format!("cleared {label}"),
            };
            format!("{} {what} at window {}", a.device, a.window)
        })
        .collect();
    println!(
        "  alert transitions: {}{}",
        alerts.len(),
        if transitions.is_empty() {
            String::new()
        } else {
            format!(" ({})", transitions.join("; "))
        }
    );
    println!(
        "  messages: {} published ({} duplicates), {acked} acknowledged; {} samples; edge: {} deliveries in {} batches, {} windows scored, {} rejected",
        replay_stats.messages,
        replay_stats.duplicates,
        replay_stats.samples,
        edge_stats.deliveries,
        edge_stats.batches,
        edge_stats.pipeline.windows_scored,
        edge_stats.pipeline.rejected
    );
    println!(
        "  elapsed {elapsed:.2} s: {:.0} messages/s, {:.0} samples/s; latency publish -> result p50 {:.1} ms, p99 {:.1} ms ({} windows{})",
        replay_stats.messages as f64 / elapsed.max(1e-9),
        replay_stats.samples as f64 / elapsed.max(1e-9),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len(),
        if args.speed == 0.0 {
            "; all published at once, so mostly queueing"
        } else {
            ""
        }
    );
    Ok(())
}

/// Each alarm's story from the edge's store: raised, acknowledged, cleared.
async fn print_alarm_histories(
    state: &std::path::Path,
    things: &[vigil_core::DeviceId],
) -> anyhow::Result<()> {
    use vigil_core::ports::DeviceStateStore;
    let store =
        vigil_edge::store::EdgeStore::open_dir(state, vigil_edge::store::Durability::PerCommit)?;
    println!();
    for thing in things {
        let key = vigil_core::ports::StreamKey {
            device: thing.clone(),
            profile: PROFILE.into(),
        };
        let alarms = store.load(&key).await?.value.alarms;
        for (condition, alarm) in &alarms.alarms {
            let story: Vec<String> = alarm
                .history
                .iter()
                .map(|h| {
                    format!(
                        "{}{} -> {}",
                        h.cause,
                        h.by.as_ref().map_or(String::new(), |b| format!(" by {b}")),
                        h.state.as_str()
                    )
                })
                .collect();
            println!(
                "  alarm {thing} condition {condition}: {}",
                story.join("; ")
            );
        }
    }
    Ok(())
}
