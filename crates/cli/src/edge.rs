//! `vigil edge`: the flags, and the wiring from them to a running [`vigil_edge`] (embedded broker,
//! device map, start line, Ctrl-C).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vigil_datasets::models;
use vigil_edge::store::{Durability, EdgeStore};
use vigil_edge::{broker, gateway, start, EdgeConfig};
use vigil_mqtt::{BrokerUrl, TELEMETRY_FILTER};

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// An external broker (mqtt://host:port). Without it, a broker runs in this process.
    #[arg(long)]
    pub broker: Option<String>,
    /// Where the embedded broker listens.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    /// State directory: the store (`vigil.redb`) and published baselines (`baselines/`).
    #[arg(long, default_value = ".vigil/edge")]
    pub state: PathBuf,
    /// Models directory (default: models/ of this checkout, or VIGIL_MODELS_DIR).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Profile of devices not listed in --devices.
    #[arg(long, default_value = "hydraulic-cooler")]
    pub profile: String,
    /// Device → profile map, TOML (`rig-001 = "hydraulic-cooler"`, top level or under
    /// `[devices]`) or JSON (`{"rig-001": "hydraulic-cooler"}`).
    #[arg(long)]
    pub devices: Option<PathBuf>,
    /// Exit after this many seconds without a message.
    #[arg(long, value_name = "SECS")]
    pub exit_after_idle: Option<f64>,
    /// MQTT client id; the persistent session is tied to it.
    #[arg(long, default_value = "vigil-edge")]
    pub client_id: String,
    /// Most messages processed as one batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub batch_wait_ms: u64,
    /// Finished windows kept per device (older ones are forgotten; late samples still count as late).
    #[arg(long, default_value_t = 64)]
    pub keep_windows: u64,
    /// If the store (`vigil.redb`) cannot be opened (damaged, truncated), set it aside as
    /// `vigil.redb.bad-<time>` and start with an empty one (open windows and device state are
    /// lost; devices re-send what has no result yet).
    #[arg(long)]
    pub reset_store: bool,
    /// Print the stored `condition` shadows (JSON lines) and exit.
    #[arg(long)]
    pub shadows: bool,
    /// Serve /healthz, /metrics (Prometheus) and /shadows here, e.g. 127.0.0.1:9464.
    /// Binds loopback unless another address is given; data and actions need the bearer token.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Bearer token for --http (at least 16 characters); default: generated at first start and
    /// kept in the state directory (file http-token).
    #[arg(
        long,
        env = "VIGIL_HTTP_TOKEN",
        hide_env_values = true,
        requires = "http"
    )]
    pub http_token: Option<String>,
    /// Accept devices here over MQTT with mutual TLS, each held to its own topics (e.g.
    /// 0.0.0.0:8883); needs --tls-cert, --tls-key and --device-certs.
    #[arg(long, value_name = "ADDR", requires_all = ["tls_cert", "tls_key", "device_certs"])]
    pub tls_listen: Option<SocketAddr>,
    /// The gateway's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_listen")]
    pub tls_cert: Option<PathBuf>,
    /// The gateway's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_listen")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates that issue device certificates (PEM): device certificates must also
    /// chain to it. Without it, attachment (--device-certs) alone admits a certificate.
    #[arg(long, value_name = "FILE", requires = "tls_listen")]
    pub device_ca: Option<PathBuf>,
    /// Directory of `<thing>.pem`: the certificate attached to each thing.
    #[arg(long, value_name = "DIR", requires = "tls_listen")]
    pub device_certs: Option<PathBuf>,
}

/// Reads a device → profile map (TOML or JSON; flat, or under a `devices` key).
pub fn read_devices(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?
    } else {
        let t: toml::Value =
            toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
        serde_json::to_value(t)?
    };
    let map = match value.get("devices") {
        Some(inner) if inner.is_object() => inner.clone(),
        _ => value,
    };
    let obj = map
        .as_object()
        .with_context(|| format!("{}: expected a map of device to profile", path.display()))?;
    obj.iter()
        .map(|(k, v)| {
            let profile = v.as_str().with_context(|| {
                format!("{}: profile of {k:?} must be a string", path.display())
            })?;
            Ok((k.clone(), profile.to_string()))
        })
        .collect()
}

pub async fn run(args: EdgeArgs) -> anyhow::Result<()> {
    if args.shadows {
        let store = EdgeStore::open_dir(&args.state, Durability::PerCommit)?;
        for (device, doc) in store.shadows()? {
            println!("{}", serde_json::json!({"device": device, "shadow": doc}));
        }
        return Ok(());
    }
    let (broker_url, _embedded) = match &args.broker {
        Some(url) => (BrokerUrl::parse(url)?, None),
        None => {
            // The edge's session exists before the broker listens: devices that reconnect first
            // (the broker restarted with this process) lose nothing while the edge starts.
            let b = broker::start_embedded_with(
                args.listen,
                &[(args.client_id.as_str(), TELEMETRY_FILTER)],
            )?;
            (BrokerUrl::parse(&b.url())?, Some(b))
        }
    };
    let mut config = EdgeConfig::new(broker_url.clone(), &args.state);
    config.models_dir = models::models_dir(args.models.as_deref());
    config.default_profile = args.profile.clone();
    config.client_id = args.client_id.clone();
    config.batch_max = args.batch;
    config.batch_wait = Duration::from_millis(args.batch_wait_ms);
    config.keep_done_windows = args.keep_windows;
    config.exit_after_idle = args.exit_after_idle.map(Duration::from_secs_f64);
    config.print_alerts = true;
    config.http = args.http;
    config.reset_store = args.reset_store;
    config.http_token = args.http_token.clone();
    if let (Some(listen), Some(cert), Some(key), Some(device_certs)) = (
        args.tls_listen,
        &args.tls_cert,
        &args.tls_key,
        &args.device_certs,
    ) {
        config.gateway = Some(gateway::GatewayConfig {
            listen,
            cert: cert.clone(),
            key: key.clone(),
            device_ca: args.device_ca.clone(),
            device_certs: device_certs.clone(),
        });
    }
    if let Some(path) = &args.devices {
        config.devices = read_devices(path)?;
    }
    let mut edge = start(config).await?;
    // The start line means "subscribed": from then on nothing published is lost.
    loop {
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), edge.subscribed()) => match r {
                Ok(r) => {
                    r?;
                    break;
                }
                Err(_) => eprintln!("vigil edge: still waiting to subscribe at {broker_url}"),
            },
            _ = tokio::signal::ctrl_c() => {
                let stats = edge.shutdown().await?;
                println!("{}", stats.summary());
                return Ok(());
            }
        }
    }
    let r = edge.open_report;
    println!(
        "vigil edge: broker {broker_url}{}, state {} ({} open windows, {} done, {} device states{}), profiles [{}], default {}",
        if args.broker.is_none() { " (embedded)" } else { "" },
        args.state.display(),
        r.open_windows,
        r.done_windows,
        r.devices,
        if r.released_claims > 0 {
            format!(", {} stale claims released", r.released_claims)
        } else {
            String::new()
        },
        edge.profiles.join(", "),
        args.profile
    );
    if let Some(addr) = edge.gateway_addr {
        println!("vigil edge: devices over mutual TLS on {addr}, each held to its own topics");
    }
    if let Some(addr) = edge.http_addr {
        println!("vigil edge: fleet page and API on http://{addr}/ (/healthz open; the rest needs the token)");
        if let Some((token, generated)) = &edge.http_token {
            if *generated {
                println!("vigil edge: generated HTTP token {token} (kept in {}); open http://{addr}/?token={token}", args.state.join(vigil_edge::monitor::http::TOKEN_FILE).display());
            } else {
                println!(
                    "vigil edge: HTTP token as given or kept in {}",
                    args.state
                        .join(vigil_edge::monitor::http::TOKEN_FILE)
                        .display()
                );
            }
        }
    }
    let stopped = tokio::select! {
        r = edge.finished() => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    let stats = match stopped {
        Some(r) => r?,
        None => edge.shutdown().await?,
    };
    println!("{}", stats.summary());
    Ok(())
}
