//! `vigil fleet`: many simulated devices against the edge pipeline, as a load test.
//!
//! Every device is a task with its own MQTT connection (client id `{prefix}-{i}`) that
//! publishes `--cycles` cycles of the hydraulic sample with QoS 1, `--batch` samples per message,
//! seq-numbered from 0. One collector subscribes to `dt/vigil/+/condition`. The report (the
//! last line, JSON) gives:
//! - sustained messages/s and samples/s: everything published, over the time from the first
//!   publish to the last result;
//! - p50 / p99 / max end-to-end latency: from the publish of the message that completes a
//!   window to the arrival of that window's result at the collector (same process clock);
//! - peak memory: VmHWM of the edge process (and of this process);
//! - loss: windows expected minus windows with a result (must be 0), and duplicate results.
//!
//! By default the edge is started as a subprocess (`vigil edge --listen 127.0.0.1:PORT`, a
//! fresh state directory) so its memory can be read apart from the load generator's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::AsyncBufReadExt;
use vigil_core::telemetry::{encode_batch, telemetry_topic};
use vigil_core::DeviceId;

use vigil_datasets::Hydraulic;

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Simulated devices, each with its own MQTT connection.
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Cycles (windows of 60 samples) each device sends.
    #[arg(long, default_value_t = 2)]
    pub cycles: usize,
    /// Samples per message (60: one message per cycle).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// `embedded` (start `vigil edge` as a subprocess) or the `mqtt://host:port` of a running edge.
    #[arg(long, default_value = "embedded")]
    pub broker: String,
    /// The hydraulic sample (defaults to models/samples/hydraulic of this checkout).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Devices connecting per second (a thousand devices reconnecting at once: set it high).
    #[arg(long, default_value_t = 500.0)]
    pub connect_rate: f64,
    /// Messages in flight per device.
    #[arg(long, default_value_t = 20)]
    pub inflight: u16,
    /// Give up waiting for results after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Client id and thing name prefix.
    #[arg(long, default_value = "fleet")]
    pub prefix: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetReport {
    pub devices: usize,
    pub cycles: usize,
    pub batch: usize,
    pub messages: u64,
    pub samples: u64,
    pub seconds: f64,
    pub messages_per_s: f64,
    pub samples_per_s: f64,
    pub windows_expected: u64,
    pub windows_scored: u64,
    pub loss: u64,
    pub duplicate_results: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub edge_peak_rss_mb: Option<f64>,
    pub generator_peak_rss_mb: Option<f64>,
    pub connect_seconds: f64,
    pub machine: String,
}

/// VmHWM (peak resident set) of a process, in MiB.
pub fn peak_rss_mb(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPUs, model and memory of this machine, for reports.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} CPUs, {model}, {mem:.1} GiB")
}

/// The `p` quantile (0..=1) of sorted values, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let report = bench(&args).await?;
    println!("{}", serde_json::to_string(&report)?);
    if report.loss > 0 {
        bail!(
            "{} windows of {} got no result",
            report.loss,
            report.windows_expected
        );
    }
    Ok(())
}

pub async fn bench(args: &FleetArgs) -> anyhow::Result<FleetReport> {
    if args.batch == 0 || 60 % args.batch != 0 {
        bail!(
            "--batch {} must divide 60 (the samples of a cycle)",
            args.batch
        );
    }
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(|| vigil_datasets::models::repo_root().join("models/samples/hydraulic"));
    let channels: Vec<String> = ["TS1", "TS2", "TS3", "TS4"].map(String::from).to_vec();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let data = Hydraulic::load(&data_dir, &names)?;

    // The edge: a subprocess on a free port, or a running one.
    let mut _edge = None;
    let mut _edge_state = None;
    let mut edge_pid = None;
    let (host, port) = if args.broker == "embedded" {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let state = tempfile_dir()?;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["edge", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state")
            .arg(&state)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting vigil edge")?;
        edge_pid = child.id().map(|p| p.to_string());
        // Ready once it printed its start line: profiles loaded and subscribed (telemetry sent
        // before that would not reach it).
        let stdout = child.stdout.take().context("edge stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("vigil edge:") {
                    return Ok(());
                }
            }
            bail!("vigil edge exited at start")
        })
        .await
        .context("vigil edge did not start within 120 s")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        _edge = Some(child);
        _edge_state = Some(TempDir(state));
        ("127.0.0.1".to_string(), port)
    } else {
        let broker = vigil_mqtt::BrokerUrl::parse(&args.broker)
            .with_context(|| format!("--broker {:?}", args.broker))?;
        (broker.host, broker.port)
    };

    // Collector of results.
    let sent_at: Arc<Mutex<HashMap<(usize, u64), Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let results: Arc<Mutex<HashMap<(usize, u64), u32>>> = Arc::default();
    let last_result = Arc::new(Mutex::new(Instant::now()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let collector = {
        let mut options =
            MqttOptions::new(format!("{}-collector", args.prefix), host.clone(), port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (sent_at, latencies, results, last_result) = (
            sent_at.clone(),
            latencies.clone(),
            results.clone(),
            last_result.clone(),
        );
        let prefix = format!("{}-", args.prefix);
        let mut ready_tx = Some(ready_tx);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client
                            .subscribe("dt/vigil/+/condition", QoS::AtLeastOnce)
                            .await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = Instant::now();
                        let thing = p.topic.split('/').nth(2).unwrap_or("");
                        let Some(i) = thing
                            .strip_prefix(&prefix)
                            .and_then(|s| s.parse::<usize>().ok())
                        else {
                            continue;
                        };
                        let v: serde_json::Value =
                            serde_json::from_slice(&p.payload).unwrap_or_default();
                        let Some(w) = v["window"].as_u64() else {
                            continue;
                        };
                        *results.lock().unwrap().entry((i, w)).or_default() += 1;
                        if let Some(t) = sent_at.lock().unwrap().get(&(i, w)) {
                            latencies
                                .lock()
                                .unwrap()
                                .push(now.duration_since(*t).as_secs_f64() * 1000.0);
                        }
                        *last_result.lock().unwrap() = now;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("the collector did not subscribe within 30 s")??;

    // Devices.
    let messages = Arc::new(AtomicU64::new(0));
    let first_publish = Arc::new(Mutex::new(None::<Instant>));
    let data = Arc::new(data);
    let connect_started = Instant::now();
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(args.devices);
    let gap = Duration::from_secs_f64(1.0 / args.connect_rate.max(1.0));
    for i in 0..args.devices {
        let thing =
            DeviceId::new(format!("{}-{i}", args.prefix)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut options = MqttOptions::new(thing.as_str(), host.clone(), port);
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_inflight(args.inflight.max(1))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, usize::from(args.inflight.max(1)));
        let (data, channels, messages, first_publish, sent_at, connected) = (
            data.clone(),
            channels.clone(),
            messages.clone(),
            first_publish.clone(),
            sent_at.clone(),
            connected.clone(),
        );
        let (cycles, batch) = (args.cycles, args.batch);
        tasks.push(tokio::spawn(async move {
            let topic = telemetry_topic(&thing);
            let total = cycles * (60 / batch);
            // Wait for the connection, then publish while the event loop runs.
            let (conn_tx, conn_rx) = tokio::sync::oneshot::channel::<()>();
            let publisher = {
                let client = client.clone();
                let topic = topic.clone();
                tokio::spawn(async move {
                    if conn_rx.await.is_err() {
                        return;
                    }
                    first_publish
                        .lock()
                        .unwrap()
                        .get_or_insert_with(Instant::now);
                    let base = 1_700_000_000_000u64;
                    for c in 0..cycles {
                        let cycle = c % data.cycles();
                        let mut samples = data.cycle_samples(cycle, base);
                        for s in &mut samples {
                            s.seq = (c * 60) as u64 + s.seq % 60;
                        }
                        for (k, chunk) in samples.chunks(batch).enumerate() {
                            let payload = encode_batch(chunk, &channels);
                            if k == 60 / batch - 1 {
                                sent_at
                                    .lock()
                                    .unwrap()
                                    .insert((i, c as u64), Instant::now());
                            }
                            if client
                                .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                                .await
                                .is_err()
                            {
                                return;
                            }
                            messages.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            };
            let mut conn_tx = Some(conn_tx);
            let mut acked = 0usize;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = conn_tx.take() {
                            connected.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked += 1;
                        if acked >= total {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            let _ = publisher.await;
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while eventloop.poll().await.is_ok() {}
            })
            .await;
        }));
        tokio::time::sleep(gap).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();

    let expected = (args.devices * args.cycles) as u64;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let got = results.lock().unwrap().len() as u64;
        if got >= expected {
            break;
        }
        if Instant::now() > deadline {
            tracing::warn!(got, expected, "fleet: timed out waiting for results");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A short grace period to catch duplicate results.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in &tasks {
        t.abort();
    }
    collector.abort();

    let results = results.lock().unwrap().clone();
    let scored = results.len() as u64;
    let duplicates: u64 = results
        .values()
        .map(|&n| u64::from(n.saturating_sub(1)))
        .sum();
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let start = first_publish.lock().unwrap().unwrap_or(connect_started);
    let end = *last_result.lock().unwrap();
    let seconds = end.saturating_duration_since(start).as_secs_f64().max(1e-9);
    let messages = messages.load(Ordering::Relaxed);
    let samples = messages * args.batch as u64;
    Ok(FleetReport {
        devices: args.devices,
        cycles: args.cycles,
        batch: args.batch,
        messages,
        samples,
        seconds,
        messages_per_s: messages as f64 / seconds,
        samples_per_s: samples as f64 / seconds,
        windows_expected: expected,
        windows_scored: scored,
        loss: expected.saturating_sub(scored),
        duplicate_results: duplicates,
        latency_ms_p50: percentile(&lat, 0.5),
        latency_ms_p99: percentile(&lat, 0.99),
        latency_ms_max: lat.last().copied().unwrap_or(f64::NAN),
        edge_peak_rss_mb: edge_pid.as_deref().and_then(peak_rss_mb),
        generator_peak_rss_mb: peak_rss_mb("self"),
        connect_seconds,
        machine: machine(),
    })
}

/// A temporary directory removed on drop (no tempfile dependency outside tests).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "vigil-fleet-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
