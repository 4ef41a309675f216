//! `vigil edge`: the pipeline against an MQTT broker — an embedded rumqttd by default, `--broker`
//! for another — with windows and device state in an embedded store (see [`crate::store`]).
//!
//! - Subscribes to `dt/vigil/+/telemetry` at QoS 1 with a persistent session (fixed client id,
//!   clean session off): what is published while the edge is down is delivered when it is back.
//! - The device is the topic's `{thing}`, never a payload field.
//! - Messages are processed in batches (whatever arrived within `batch_wait`, up to `batch_max`),
//!   many devices at once, through [`vigil_core::Pipeline`].
//! - Acknowledgements are manual: a batch is acknowledged, in order, only once every message has
//!   a final outcome (accepted, rejected, or failed for good) and the store is synced. Retryable
//!   failures are retried in place with a backoff; a crash before the acknowledgement means the
//!   broker redelivers, and the pipeline's idempotency makes the redelivery harmless.
//! - Results go to `dt/vigil/{thing}/condition` and the `condition` shadow (kept in the store and
//!   published on `$aws/things/{thing}/shadow/name/condition/update`), alert transitions to
//!   `dt/vigil/{thing}/alerts`, rejected messages to `dt/vigil/{thing}/rejected`.
//!
//! See docs/edge.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, Publish, QoS, SubscribeFilter};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use vigil_core::memory::MemoryRegistry;
use vigil_core::pipeline::Counters;
use vigil_core::ports::{NoArchive, Pause};
use vigil_core::{
    CompiledProfile, DeviceId, Message, MessageOutcome, Pipeline, PipelineConfig, Ports,
};

use vigil_datasets::models;
use vigil_mqtt::{self as mqtt, BrokerUrl, TELEMETRY_FILTER};

use crate::sinks::{MqttSinks, SinkCounters};
use crate::store::{Durability, EdgeStore, FileBaselines, OpenReport};
use crate::{gateway, monitor, shadow};

/// How an edge runs (the library form of the flags).
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub broker: BrokerUrl,
    pub state_dir: PathBuf,
    pub models_dir: PathBuf,
    pub default_profile: String,
    /// Device → profile, for devices that do not use the default.
    pub devices: BTreeMap<String, String>,
    pub client_id: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// A batch is also closed when no message arrived for this long.
    pub batch_gap: Duration,
    pub exit_after_idle: Option<Duration>,
    pub keep_done_windows: u64,
    pub print_alerts: bool,
    /// Where to serve the monitoring endpoint ([`monitor`]); none by default.
    pub http: Option<SocketAddr>,
    /// The endpoint's bearer token; `None`: the one kept in the state directory (made at first start).
    pub http_token: Option<String>,
    /// The mutual-TLS device gateway in front of the broker ([`gateway`]); none by default.
    pub gateway: Option<gateway::GatewayConfig>,
    /// A store that cannot be opened is set aside and an empty one made (`--reset-store`);
    /// without it, such a store stops the start with an error naming the file.
    pub reset_store: bool,
}

impl EdgeConfig {
    pub fn new(broker: BrokerUrl, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            broker,
            state_dir: state_dir.into(),
            models_dir: models::models_dir(None),
            default_profile: "hydraulic-cooler".into(),
            devices: BTreeMap::new(),
            client_id: "vigil-edge".into(),
            batch_max: 256,
            batch_wait: Duration::from_millis(20),
            batch_gap: Duration::from_millis(2),
            exit_after_idle: None,
            keep_done_windows: 64,
            print_alerts: false,
            http: None,
            http_token: None,
            gateway: None,
            reset_store: false,
        }
    }
}

/// What the edge did so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EdgeStats {
    /// Telemetry deliveries received (redeliveries included).
    pub deliveries: u64,
    /// Deliveries acknowledged to the broker.
    pub acked: u64,
    pub batches: u64,
    /// Batches retried after a retryable failure.
    pub retries: u64,
    /// Deliveries on a topic that names no valid thing (acknowledged and dropped).
    pub invalid_topic: u64,
    /// Messages that failed for good (published as rejections with code `failed`).
    pub failed: u64,
    /// Dead letters (rejections and failures) that could not be published: logged with the
    /// payload's length and sha256, counted here, and the message still acknowledged.
    pub dead_letters_undelivered: u64,
    pub results_published: u64,
    pub alerts_published: u64,
    pub rejects_published: u64,
    /// Shadow `get` requests answered with the document, and refused (404 before any result,
    /// 400/413 for a bad request); replies dropped on a full request queue ([`shadow`]).
    pub shadow_gets_accepted: u64,
    pub shadow_gets_rejected: u64,
    pub shadow_replies_dropped: u64,
    /// Shadow `get` requests not answered: over a thing's budget ([`shadow::GetLimiter`]).
    pub shadow_gets_limited: u64,
    /// Connections to the broker (1 + reconnections).
    pub connections: u64,
    /// The pipeline's counters, summed over batches (retries included).
    pub pipeline: Counters,
    pub uptime_s: f64,
}

impl EdgeStats {
    /// One line for the end of a run.
    pub fn summary(&self) -> String {
        let p = &self.pipeline;
        format!(
            "vigil edge: {} deliveries in {} batches ({} accepted, {} rejected, {} failed, {} invalid topic); \
             {} samples ({} duplicate, {} late); {} windows scored, {} incomplete; {} alerts; {} retries; up {:.1} s",
            self.deliveries,
            self.batches,
            p.accepted,
            p.rejected,
            self.failed,
            self.invalid_topic,
            p.samples,
            p.duplicates,
            p.late,
            p.windows_scored,
            p.windows_incomplete,
            self.alerts_published,
            self.retries,
            self.uptime_s
        )
    }
}

/// A running edge. Dropping it stops it after the batch in hand (like [`EdgeHandle::shutdown`],
/// without waiting).
pub struct EdgeHandle {
    shutdown: Option<watch::Sender<bool>>,
    stats: watch::Receiver<EdgeStats>,
    ready: watch::Receiver<bool>,
    /// The worker's final statistics (`None`: killed), sent once its store is closed.
    task: Option<oneshot::Receiver<Option<EdgeStats>>>,
    kill: Option<oneshot::Sender<()>>,
    mqtt: Option<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
    /// Where the monitoring endpoint listens, when it was asked for.
    pub http_addr: Option<SocketAddr>,
    /// Its bearer token, and whether it was generated at this start.
    pub http_token: Option<(String, bool)>,
    gateway: Option<JoinHandle<()>>,
    /// Where the device gateway listens, when it was asked for.
    pub gateway_addr: Option<SocketAddr>,
    /// What the store held at start.
    pub open_report: OpenReport,
    pub profiles: Vec<String>,
}

impl std::fmt::Debug for EdgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeHandle")
            .field("stats", &*self.stats.borrow())
            .finish()
    }
}

impl EdgeHandle {
    /// Waits until the edge is subscribed: from then on nothing published on the telemetry
    /// filter is lost.
    pub async fn ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        tokio::time::timeout(timeout, self.subscribed())
            .await
            .context("the edge did not subscribe in time (is the broker reachable?)")?
    }

    /// Waits, without a deadline, until the edge is subscribed.
    pub async fn subscribed(&mut self) -> anyhow::Result<()> {
        self.ready
            .wait_for(|r| *r)
            .await
            .context("the edge stopped before subscribing")?;
        Ok(())
    }

    pub fn stats(&self) -> EdgeStats {
        self.stats.borrow().clone()
    }

    /// Waits until the statistics satisfy `done`.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        done: impl FnMut(&EdgeStats) -> bool,
    ) -> anyhow::Result<EdgeStats> {
        let waited = tokio::time::timeout(timeout, self.stats.wait_for(done))
            .await
            .map(|r| r.map(|s| s.clone()));
        match waited {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(_)) => bail!("edge stopped: {}", self.stats().summary()),
            Err(_) => bail!(
                "edge: condition not met within {timeout:?}: {}",
                self.stats().summary()
            ),
        }
    }

    /// Waits for the edge to stop by itself (`exit_after_idle`).
    pub async fn finished(&mut self) -> anyhow::Result<EdgeStats> {
        let task = self.task.as_mut().context("edge already stopped")?;
        let stats = task
            .await
            .ok()
            .flatten()
            .context("the edge worker ended abnormally")?;
        self.task = None;
        self.stop_servers().await;
        self.stop_mqtt().await;
        Ok(stats)
    }

    /// Stops after the batch in hand (acknowledged), disconnects, closes the store.
    pub async fn shutdown(mut self) -> anyhow::Result<EdgeStats> {
        self.shutdown.take();
        let stats = match self.task.take() {
            Some(task) => task
                .await
                .ok()
                .flatten()
                .context("the edge worker ended abnormally")?,
            None => self.stats(),
        };
        self.stop_servers().await;
        self.stop_mqtt().await;
        Ok(stats)
    }

    /// Stops at once, as a crash would: the batch in hand is neither finished nor acknowledged.
    pub async fn kill(mut self) {
        self.stop_servers().await;
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(task) = self.task.take() {
            // Returns once the worker's state (and the store) is dropped.
            let _ = task.await;
        }
        if let Some(mqtt) = self.mqtt.take() {
            mqtt.abort();
            let _ = mqtt.await;
        }
    }

    /// The monitoring endpoint (which holds the store open) and the device gateway, taken out
    /// of the handle to be stopped.
    fn take_servers(&mut self) -> Vec<JoinHandle<()>> {
        [self.monitor.take(), self.gateway.take()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Stops them before the edge reports itself stopped (devices on the gateway reconnect to
    /// whatever serves them next).
    async fn stop_servers(&mut self) {
        for task in self.take_servers() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn stop_mqtt(&mut self) {
        if let Some(mqtt) = self.mqtt.take() {
            // The edge task sent a DISCONNECT after its last acknowledgements; the connection
            // task ends once it went out. Bound the wait in case the broker is gone.
            let abort = mqtt.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), mqtt)
                .await
                .is_err()
            {
                tracing::warn!("edge: MQTT connection did not close within 5 s");
                abort.abort();
            }
        }
    }
}

impl Drop for EdgeHandle {
    fn drop(&mut self) {
        // Dropping the sender tells the edge task to stop; it disconnects on its way out.
        self.shutdown.take();
        for task in self.take_servers() {
            task.abort();
        }
    }
}

/// One telemetry delivery, with the connection it came on.
struct Delivery {
    publish: Publish,
    generation: u64,
}

/// Loads the profiles the edge uses (the default and those of `config.devices`) and starts it.
pub async fn start(config: EdgeConfig) -> anyhow::Result<EdgeHandle> {
    let mut names: Vec<&str> = vec![config.default_profile.as_str()];
    names.extend(config.devices.values().map(String::as_str));
    let profiles = Arc::new(load_profiles_named(&config.models_dir, &names)?);
    start_with(config, profiles).await
}

/// Validates every profile of `<models>/profiles/` and compiles (scorer and transforms) only
/// the named ones: an edge need not build models it does not use.
pub fn load_profiles_named(
    models_dir: &Path,
    names: &[&str],
) -> anyhow::Result<BTreeMap<String, CompiledProfile>> {
    models::ensure_onnxruntime();
    let dir = models_dir.join("profiles");
    let set = vigil_core::ProfileSet::load_dir(&dir)
        .with_context(|| format!("loading profiles from {}", dir.display()))?;
    let mut wanted = Vec::new();
    for name in names {
        match set.get(name) {
            Some(p) => {
                if !wanted.iter().any(|w: &vigil_core::Profile| w.name == *name) {
                    wanted.push(p.clone());
                }
            }
            None => bail!(
                "unknown profile {name:?} (in {}: {})",
                dir.display(),
                set.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    vigil_onnx::compile_profiles(wanted, models_dir, None)
        .with_context(|| format!("building the scorers of {}", names.join(", ")))
}

/// Starts an edge with profiles loaded already (the demo and tests share them).
pub async fn start_with(
    config: EdgeConfig,
    profiles: Arc<BTreeMap<String, CompiledProfile>>,
) -> anyhow::Result<EdgeHandle> {
    // Configuration errors first, all of them at once.
    let mut missing: Vec<String> = Vec::new();
    if !profiles.contains_key(&config.default_profile) {
        missing.push(format!("default profile {:?}", config.default_profile));
    }
    for (device, profile) in &config.devices {
        DeviceId::new(device.clone())
            .map_err(|e| anyhow::anyhow!("--devices: {device:?} is not a valid thing name: {e}"))?;
        if !profiles.contains_key(profile) {
            missing.push(format!("profile {profile:?} of device {device}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "unknown profiles: {} (loaded: {})",
            missing.join(", "),
            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if config.batch_max == 0 {
        bail!("batch size must be at least 1");
    }
    if config.gateway.is_some() && !gateway::is_reserved_client_id(&config.client_id) {
        bail!(
            "--client-id {:?}: with the device gateway the edge's client id must start with {:?} (reserved: no device may connect with it, so none can take over the edge's session)",
            config.client_id,
            gateway::RESERVED_CLIENT_PREFIX
        );
    }

    let store =
        EdgeStore::open_dir_or_reset(&config.state_dir, Durability::OnFlush, config.reset_store)?;
    let open_report = store.open_report();
    let store = Arc::new(store);
    // Bound before anything runs: a port in use is a start-up error, not a log line later.
    let http = match config.http {
        Some(addr) => Some(
            monitor::bind(addr)
                .await
                .with_context(|| format!("--http {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let http_token = match http {
        Some(_) => Some(
            monitor::http::token(&config.state_dir, config.http_token.as_deref())
                .context("the HTTP endpoint's token")?,
        ),
        None => None,
    };
    let fleet = Arc::new(monitor::FleetLog::default());
    let device_gateway = match &config.gateway {
        Some(g) => {
            Some(gateway::Gateway::bind(g, (config.broker.host.clone(), config.broker.port)).await?)
        }
        None => None,
    };

    let mut options = mqtt::client_options(&config.client_id, &config.broker);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_inflight(1000);
    let (client, eventloop) = mqtt::client(options, 1024);

    let registry = MemoryRegistry::default();
    {
        let mut map = registry.profiles.lock().expect("lock");
        for (device, profile) in &config.devices {
            map.insert(DeviceId::new(device.clone())?, profile.clone());
        }
    }
    let counters = Arc::new(SinkCounters::default());
    let runtime = Runtime {
        profiles: Arc::clone(&profiles),
        store: Arc::clone(&store),
        registry,
        baselines: FileBaselines::new(config.state_dir.join("baselines")),
        sinks: MqttSinks {
            client: client.clone(),
            store: Arc::clone(&store),
            counters: Arc::clone(&counters),
            print_alerts: config.print_alerts,
            fleet: Arc::clone(&fleet),
        },
        pipeline: PipelineConfig {
            default_profile: config.default_profile.clone(),
            // One process owns the store; a lease only guards against a failed attempt of our own.
            lease_ms: 10_000,
            ..PipelineConfig::default()
        },
    };

    let generation = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready) = watch::channel(false);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stats_tx, stats) = watch::channel(EdgeStats::default());

    let (monitor, http_addr) = match http {
        Some((listener, addr)) => {
            let endpoint = monitor::Monitor {
                stats: stats.clone(),
                subscribed: ready.clone(),
                store: Arc::clone(&store),
                gateway: device_gateway.as_ref().map(|g| Arc::clone(&g.counters)),
                started: Instant::now(),
                token: http_token.as_ref().map_or("", |t| t.0.as_str()).into(),
                fleet: Arc::clone(&fleet),
                profiles: Arc::clone(&profiles),
                devices: Arc::new(config.devices.clone()),
                default_profile: config.default_profile.clone(),
            };
            (
                Some(tokio::spawn(monitor::serve(listener, endpoint))),
                Some(addr),
            )
        }
        None => (None, None),
    };
    let gateway_addr = device_gateway.as_ref().map(|g| g.addr);
    let gateway = device_gateway.map(|g| tokio::spawn(g.serve()));
    let mqtt = tokio::spawn(connection_task(
        eventloop,
        Connection {
            client: client.clone(),
            tx,
            generation: Arc::clone(&generation),
            connections: Arc::clone(&connections),
            ready: ready_tx,
            store: Arc::clone(&store),
            counters: Arc::clone(&counters),
        },
    ));
    let worker = Worker {
        config: config.clone(),
        client,
        generation,
        connections,
        counters,
        stats_tx,
        stats: EdgeStats::default(),
        started: Instant::now(),
    };
    // The worker runs on a thread of its own: the store is synchronous (redb), scoring is CPU
    // work, and neither should hold up the runtime's workers (the MQTT connections among them).
    let (done_tx, done_rx) = oneshot::channel();
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("vigil-edge".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "edge: building the worker runtime");
                    let _ = done_tx.send(None);
                    return;
                }
            };
            let stats = rt.block_on(async move {
                tokio::select! {
                    stats = worker.run(runtime, rx, shutdown_rx) => Some(stats),
                    // A kill drops the worker where it stands, as a crash would.
                    Ok(()) = kill_rx => None,
                }
            });
            drop(rt);
            let _ = done_tx.send(stats);
        })
        .context("spawning the edge worker thread")?;
    Ok(EdgeHandle {
        shutdown: Some(shutdown_tx),
        stats,
        ready,
        task: Some(done_rx),
        kill: Some(kill_tx),
        mqtt: Some(mqtt),
        monitor,
        http_addr,
        http_token,
        gateway,
        gateway_addr,
        open_report,
        profiles: profiles.keys().cloned().collect(),
    })
}

/// Everything the pipeline borrows.
struct Runtime {
    profiles: Arc<BTreeMap<String, CompiledProfile>>,
    store: Arc<EdgeStore>,
    registry: MemoryRegistry,
    baselines: FileBaselines,
    sinks: MqttSinks,
    pipeline: PipelineConfig,
}

impl Runtime {
    fn ports(&self) -> Ports<'_> {
        Ports {
            windows: &*self.store,
            states: &*self.store,
            registry: &self.registry,
            baselines: &self.baselines,
            results: &self.sinks,
            alerts: &self.sinks,
            archive: &NoArchive,
            rejects: &self.sinks,
            pause: &TokioPause,
        }
    }
}

/// The pipeline's short waits for a window another worker holds, on tokio's timer.
struct TokioPause;

#[async_trait::async_trait]
impl Pause for TokioPause {
    async fn pause(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// What the connection task shares with the rest of the edge.
struct Connection {
    client: AsyncClient,
    tx: mpsc::UnboundedSender<Delivery>,
    generation: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    ready: watch::Sender<bool>,
    /// For the shadow service's answers ([`shadow`]).
    store: Arc<EdgeStore>,
    counters: Arc<SinkCounters>,
}

/// Drives the MQTT connection: (re)subscribes on every CONNACK, forwards telemetry to the
/// worker, answers shadow `get` requests ([`shadow`]), reconnects with a backoff.
async fn connection_task(mut eventloop: EventLoop, c: Connection) {
    let Connection {
        client,
        tx,
        generation,
        connections,
        ready,
        store,
        counters,
    } = c;
    let mut backoff = Duration::from_millis(100);
    let mut down_since: Option<Instant> = None;
    let mut limiter = shadow::GetLimiter::new(Instant::now());
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                generation.fetch_add(1, Ordering::SeqCst);
                connections.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = down_since.take() {
                    tracing::warn!(after_s = t.elapsed().as_secs_f64(), "edge: reconnected");
                }
                tracing::info!(session_present = ack.session_present, "edge: connected");
                backoff = Duration::from_millis(100);
                // Always subscribe: harmless when the session kept the subscription, needed
                // when the broker forgot it. Not awaited here: the event loop must keep turning.
                // Shadow requests at QoS 0: they need no acknowledgement (the telemetry's are
                // manual), and a device asks again if one is lost.
                let c = client.clone();
                let filters = [
                    SubscribeFilter::new(TELEMETRY_FILTER.into(), QoS::AtLeastOnce),
                    SubscribeFilter::new(shadow::get_filter(), QoS::AtMostOnce),
                ];
                tokio::spawn(async move {
                    if let Err(e) = c.subscribe_many(filters).await {
                        tracing::warn!(error = %e, "edge: subscribe");
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(publish)))
                if publish.topic.starts_with(gateway::topics::BROKER_PREFIX) =>
            {
                if limiter.admit(&publish.topic, Instant::now()) {
                    answer_shadow_get(&client, &store, &counters, &publish);
                } else {
                    counters.shadow_gets_limited.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                ready.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let delivery = Delivery {
                    publish,
                    generation: generation.load(Ordering::SeqCst),
                };
                if tx.send(delivery).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if tx.is_closed() {
                    return;
                }
                // Not subscribed until the next SUBACK (what /healthz reports).
                ready.send_replace(false);
                if down_since.is_none() {
                    tracing::warn!(error = %e, "edge: broker connection lost; reconnecting");
                    down_since = Some(Instant::now());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Answers a shadow `get` (see [`shadow`]) on the edge's own connection. Without waiting: a
/// reply that finds the client's request queue full is dropped and counted (the device asks
/// again), so a flood of requests cannot hold up the telemetry.
fn answer_shadow_get(
    client: &AsyncClient,
    store: &EdgeStore,
    counters: &SinkCounters,
    publish: &Publish,
) {
    if publish.qos != QoS::AtMostOnce {
        let _ = client.try_ack(publish);
    }
    let now_s = now_ms() / 1000;
    let Some(reply) = shadow::answer_get(store, &publish.topic, &publish.payload, now_s) else {
        return;
    };
    let counter = if reply.accepted {
        &counters.shadow_gets_accepted
    } else {
        &counters.shadow_gets_rejected
    };
    match client.try_publish(reply.topic, QoS::AtLeastOnce, false, reply.payload) {
        Ok(()) => {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counters
                .shadow_replies_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %publish.topic, error = %e, "edge: shadow reply dropped");
        }
    }
}

struct Worker {
    config: EdgeConfig,
    client: AsyncClient,
    generation: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    counters: Arc<SinkCounters>,
    stats_tx: watch::Sender<EdgeStats>,
    stats: EdgeStats,
    started: Instant,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How a batch ended.
enum BatchEnd {
    Acked,
    /// Shutdown while retrying: left unacknowledged, for redelivery.
    Abandoned,
}

impl Worker {
    async fn run(
        mut self,
        runtime: Runtime,
        mut rx: mpsc::UnboundedReceiver<Delivery>,
        mut shutdown: watch::Receiver<bool>,
    ) -> EdgeStats {
        let pipeline = Pipeline::new(&runtime.profiles, runtime.ports(), runtime.pipeline.clone())
            .expect("default profile checked at start");
        // What a crash left in the outbox (on disk, never sent, or sent and not yet removed).
        match runtime.sinks.release().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                publishes = n,
                "edge: sent what the last run left in the outbox"
            ),
            Err(e) => tracing::warn!(error = %e, "edge: the outbox left by the last run not sent"),
        }
        let mut last_prune = Instant::now();
        loop {
            let idle = self.config.exit_after_idle;
            let idle_timer = async {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = idle_timer => {
                    tracing::info!("edge: idle for {idle:?}; exiting");
                    break;
                }
            };
            let batch = self.collect(first, &mut rx).await;
            let end = self
                .process(&pipeline, &runtime, batch, &mut shutdown)
                .await;
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = Instant::now();
                match runtime.store.prune(self.config.keep_done_windows) {
                    Ok(n) if n > 0 => tracing::info!(windows = n, "edge: pruned finished windows"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "edge: pruning the store"),
                }
            }
            self.publish_stats();
            if matches!(end, BatchEnd::Abandoned) {
                break;
            }
        }
        drop(pipeline);
        match runtime.store.flush() {
            // What an abandoned batch produced is on disk now: it may leave.
            Ok(()) => {
                if let Err(e) = runtime.sinks.release().await {
                    tracing::warn!(error = %e, "edge: results of the last batch not sent");
                }
            }
            Err(e) => tracing::warn!(error = %e, "edge: final sync of the store"),
        }
        // After the acknowledgements already queued: MQTT keeps them in order.
        let _ = self.client.disconnect().await;
        self.publish_stats();
        self.stats.clone()
    }

    /// The first delivery and whatever follows it closely: up to `batch_max`, within
    /// `batch_wait`, stopping early after a `batch_gap` of silence.
    async fn collect(
        &self,
        first: Delivery,
        rx: &mut mpsc::UnboundedReceiver<Delivery>,
    ) -> Vec<Delivery> {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.config.batch_wait;
        while batch.len() < self.config.batch_max {
            match rx.try_recv() {
                Ok(d) => {
                    batch.push(d);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let wait = self.config.batch_gap.min(deadline - now);
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(d)) => batch.push(d),
                _ => break,
            }
        }
        batch
    }

    async fn process(
        &mut self,
        pipeline: &Pipeline<'_>,
        runtime: &Runtime,
        batch: Vec<Delivery>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> BatchEnd {
        self.stats.batches += 1;
        self.stats.deliveries += batch.len() as u64;
        let mut messages = Vec::with_capacity(batch.len());
        for d in &batch {
            match DeviceId::from_topic(&d.publish.topic) {
                Ok(device) => messages.push(Message {
                    id: format!("mqtt:{}:{}", d.generation, d.publish.pkid),
                    device,
                    payload: d.publish.payload.to_vec(),
                }),
                Err(e) => {
                    // Not ours to judge which device this is: drop it, loudly.
                    self.stats.invalid_topic += 1;
                    tracing::warn!(topic = %d.publish.topic, error = %e, "edge: message on an invalid topic dropped");
                }
            }
        }

        let t0 = Instant::now();
        let mut todo: Option<Vec<Message>> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt: &[Message] = todo.as_deref().unwrap_or(&messages);
            if attempt.is_empty() {
                break;
            }
            let report = pipeline.process(attempt, now_ms()).await;
            self.stats.pipeline.merge(&report.counters);
            let mut retry = Vec::new();
            for (m, outcome) in attempt.iter().zip(&report.outcomes) {
                match outcome {
                    MessageOutcome::Failed {
                        error,
                        retryable: true,
                    } => {
                        tracing::warn!(device = %m.device, message_id = %m.id, error = %error, "edge: will retry");
                        retry.push(m.clone());
                    }
                    MessageOutcome::Failed {
                        error,
                        retryable: false,
                    } => {
                        self.stats.failed += 1;
                        tracing::error!(device = %m.device, message_id = %m.id, error = %error, "edge: message failed for good");
                        self.dead_letter(runtime, m, error).await;
                    }
                    MessageOutcome::Accepted { .. } | MessageOutcome::Rejected(_) => {}
                }
            }
            if retry.is_empty() {
                break;
            }
            self.stats.retries += 1;
            self.publish_stats();
            if !self.pause(backoff, shutdown).await {
                return BatchEnd::Abandoned;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
            todo = Some(retry);
        }

        let t1 = Instant::now();
        // Nothing is acknowledged before it is on disk.
        let mut backoff = Duration::from_millis(50);
        while let Err(e) = runtime.store.flush() {
            tracing::warn!(error = %e, "edge: syncing the store; will retry");
            if !self.pause(backoff, shutdown).await {
                return BatchEnd::Abandoned;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        // On disk now: what the batch produced may leave, ahead of the acknowledgements.
        if let Err(e) = runtime.sinks.release().await {
            tracing::warn!(error = %e, "edge: the connection task is gone; results not sent");
        }

        let current = self.generation.load(Ordering::SeqCst);
        for d in &batch {
            if d.generation != current {
                // Delivered on a connection that is gone: the broker redelivers it on this one,
                // and an acknowledgement with the old packet id would be out of order.
                continue;
            }
            if self.client.ack(&d.publish).await.is_err() {
                break;
            }
            self.stats.acked += 1;
        }
        tracing::debug!(
            messages = batch.len(),
            process_ms = (t1 - t0).as_secs_f64() * 1e3,
            sync_ms = t1.elapsed().as_secs_f64() * 1e3,
            "edge: batch done"
        );
        BatchEnd::Acked
    }

    /// Sleeps unless asked to stop; false when asked to stop.
    async fn pause(&self, d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = shutdown.changed() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// A message that failed for good goes where rejected ones go, with code `failed` (a
    /// document bounded by [`vigil_core::documents::MAX_DEAD_LETTER_BYTES`]). One that cannot
    /// be published is counted and logged; the message is acknowledged all the same.
    async fn dead_letter(&self, runtime: &Runtime, m: &Message, error: &str) {
        let doc =
            vigil_core::documents::failure_document(&m.id, m.device.as_str(), error, &m.payload);
        let topic = mqtt::rejected_topic(m.device.as_str());
        if let Err(e) = runtime.sinks.send_dead_letter(topic, &doc).await {
            runtime
                .sinks
                .undelivered(&m.id, m.device.as_str(), &m.payload, &e);
        }
    }

    fn publish_stats(&mut self) {
        self.stats.results_published = self.counters.results.load(Ordering::Relaxed);
        self.stats.alerts_published = self.counters.alerts.load(Ordering::Relaxed);
        self.stats.rejects_published = self.counters.rejects.load(Ordering::Relaxed);
        self.stats.dead_letters_undelivered =
            self.counters.rejects_undelivered.load(Ordering::Relaxed);
        let c = &self.counters;
        self.stats.shadow_gets_accepted = c.shadow_gets_accepted.load(Ordering::Relaxed);
        self.stats.shadow_gets_rejected = c.shadow_gets_rejected.load(Ordering::Relaxed);
        self.stats.shadow_replies_dropped = c.shadow_replies_dropped.load(Ordering::Relaxed);
        self.stats.shadow_gets_limited = c.shadow_gets_limited.load(Ordering::Relaxed);
        self.stats.connections = self.connections.load(Ordering::Relaxed);
        self.stats.uptime_s = self.started.elapsed().as_secs_f64();
        self.stats_tx.send_replace(self.stats.clone());
    }
}
