//! The edge's HTTP endpoint (`vigil edge --http ADDR`): liveness for a supervisor, the counters
//! for a Prometheus scraper, the fleet page for operators, and the alarm actions they take.
//!
//! | path                     | token | answer |
//! |--------------------------|-------|--------|
//! | `/healthz`               | no    | `200 ok` while subscribed to the broker, `503` while not |
//! | `/`, `/app.js`, `/style.css` | no | the fleet page (no data in it; it asks the API below) |
//! | `/metrics`               | yes   | Prometheus text format 0.0.4: [`EdgeStats`] as counters |
//! | `/shadows`               | yes   | JSON object: device → its stored `condition` shadow |
//! | `/api/fleet`             | yes   | JSON: every device with verdict, probability, alarms, last seen, rejects |
//! | `/api/devices/{id}`      | yes   | JSON: recent verdicts, contributions, alarms with history |
//! | `/api/events`            | yes   | server-sent events: `verdict`, `alarm`, `reject` as they happen |
//! | `POST /api/alarm`        | yes   | applies an operator action (body: [`AlarmRequest`]) |
//!
//! Data and actions need `Authorization: Bearer TOKEN`; the token is given (`--http-token`,
//! `VIGIL_HTTP_TOKEN`) or generated at first start and kept in the state directory
//! ([`http::TOKEN_FILE`]). A token in a URL is never accepted by the server: the page takes
//! `/?token=` once, keeps it in the tab's sessionStorage, removes it from the address bar and
//! sends it as a header, for the live events too (a streaming `fetch`, not `EventSource`, which
//! cannot send headers).
//!
//! One request per connection, `Connection: close`, bodies of at most [`http::MAX_BODY`]: enough
//! for curl, Prometheus and browsers without a web framework in the edge binary. Store reads and
//! writes run on blocking threads, so the endpoint never holds up the pipeline's runtime.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use vigil_core::alarm::{self, OperateError, OperatorAction};
use vigil_core::ports::{DeviceState, DeviceStateStore, StreamKey};
use vigil_core::{CompiledProfile, DeviceId};

use crate::gateway::GatewayCounters;
use crate::store::EdgeStore;
use crate::EdgeStats;

pub mod fleet;
pub mod http;
mod metrics;

pub use fleet::FleetLog;
use http::{Request, Response};
pub use metrics::prometheus;

/// Between two keep-alive comments on a live-events stream (proxies drop silent connections).
const KEEPALIVE: Duration = Duration::from_secs(15);

const PAGE: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// What the endpoint reads from the running edge.
#[derive(Clone)]
pub struct Monitor {
    pub stats: watch::Receiver<EdgeStats>,
    /// True while subscribed to the broker.
    pub subscribed: watch::Receiver<bool>,
    pub store: Arc<EdgeStore>,
    /// The device gateway's counters, when it runs.
    pub gateway: Option<Arc<GatewayCounters>>,
    /// When the edge started: uptime is live, the other figures are as of the last batch.
    pub started: std::time::Instant,
    /// Bearer token for data and actions.
    pub token: Arc<str>,
    pub fleet: Arc<FleetLog>,
    pub profiles: Arc<BTreeMap<String, CompiledProfile>>,
    /// Device → profile for devices not on the default one.
    pub devices: Arc<BTreeMap<String, String>>,
    pub default_profile: String,
}

impl Monitor {
    fn profile_of(&self, device: &str) -> &str {
        self.devices
            .get(device)
            .map_or(self.default_profile.as_str(), String::as_str)
    }
}

/// An operator's action as the endpoint takes it: the device, then the action itself.
#[derive(Debug, Deserialize)]
pub struct AlarmRequest {
    pub device: String,
    #[serde(flatten)]
    pub action: OperatorAction,
}

/// Serves until the task is aborted (the edge's handle does that when it stops). Connections
/// live in a set owned by this task, so aborting it ends them too (live-event streams included,
/// which would otherwise keep the store open after the edge stopped).
pub async fn serve(listener: TcpListener, monitor: Monitor) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                let monitor = monitor.clone();
                connections.spawn(async move {
                    if let Err(e) = answer(stream, monitor).await {
                        tracing::debug!(%peer, error = %e, "monitor: connection");
                    }
                });
            }
            // Out of file descriptors and the like: keep serving once it passes.
            Err(e) => {
                tracing::warn!(error = %e, "monitor: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Binds `addr` (port 0: any free port) and returns the listener with its actual address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn answer(mut stream: TcpStream, monitor: Monitor) -> std::io::Result<()> {
    let request =
        match tokio::time::timeout(http::READ_TIMEOUT, http::read_request(&mut stream)).await {
            Ok(Ok(r)) => r,
            Ok(Err((status, reason, text))) => {
                let r = Response::text(status, reason, text);
                stream.write_all(&r.to_bytes(false)).await?;
                return stream.shutdown().await;
            }
            Err(_) => return Ok(()),
        };
    if request.path == "/api/events" && request.method == "GET" && authorized(&request, &monitor) {
        // A stream lives long: it keeps the fleet log only, not the store.
        let fleet = Arc::clone(&monitor.fleet);
        drop(monitor);
        return live_events(stream, &fleet).await;
    }
    let response = respond(&request, &monitor).await;
    stream
        .write_all(&response.to_bytes(request.method == "HEAD"))
        .await?;
    stream.shutdown().await
}

fn authorized(request: &Request, monitor: &Monitor) -> bool {
    request
        .bearer
        .as_deref()
        .is_some_and(|t| http::same_token(t, &monitor.token))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    Response {
        status: 200,
        reason: "OK",
        content_type,
        // The page runs only its own script and talks only to this endpoint.
        extra: Some("Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
        body: body.as_bytes().to_vec(),
    }
}

async fn respond(request: &Request, monitor: &Monitor) -> Response {
    let open = matches!(
        request.path.as_str(),
        "/healthz" | "/" | "/index.html" | "/app.js" | "/style.css"
    );
    let method_ok = match request.path.as_str() {
        "/api/alarm" => request.method == "POST",
        _ => request.method == "GET" || request.method == "HEAD",
    };
    if !method_ok {
        let mut r = Response::text(
            405,
            "Method Not Allowed",
            "method not allowed here\n".into(),
        );
        r.extra = Some(if request.path == "/api/alarm" {
            "Allow: POST"
        } else {
            "Allow: GET, HEAD"
        });
        return r;
    }
    if !open && !authorized(request, monitor) {
        let mut r = Response::text(
            401,
            "Unauthorized",
            "this needs Authorization: Bearer TOKEN (printed by vigil edge at start, kept in its state directory)\n".into(),
        );
        r.extra = Some("WWW-Authenticate: Bearer realm=\"vigil\"");
        return r;
    }
    match request.path.as_str() {
        "/healthz" => {
            if *monitor.subscribed.borrow() {
                Response::text(200, "OK", "ok\n".into())
            } else {
                Response::text(
                    503,
                    "Service Unavailable",
                    "not subscribed to the broker\n".into(),
                )
            }
        }
        "/" | "/index.html" => asset("text/html; charset=utf-8", PAGE),
        "/app.js" => asset("text/javascript; charset=utf-8", SCRIPT),
        "/style.css" => asset("text/css; charset=utf-8", STYLE),
        "/metrics" => {
            let mut stats = monitor.stats.borrow().clone();
            stats.uptime_s = monitor.started.elapsed().as_secs_f64();
            let up = *monitor.subscribed.borrow();
            let gateway = monitor.gateway.as_ref().map(|g| g.snapshot());
            Response {
                status: 200,
                reason: "OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                extra: None,
                body: prometheus(&stats, up, gateway.as_ref()).into_bytes(),
            }
        }
        "/shadows" => {
            match blocking(monitor, |m| m.store.shadows().map_err(|e| e.to_string())).await {
                Ok(list) => {
                    let map: serde_json::Map<String, Value> = list.into_iter().collect();
                    Response::json(200, "OK", &Value::Object(map))
                }
                Err(e) => Response::text(500, "Internal Server Error", format!("{e}\n")),
            }
        }
        "/api/fleet" => match blocking(monitor, fleet_document).await {
            Ok(doc) => Response::json(200, "OK", &doc),
            Err(e) => Response::text(500, "Internal Server Error", format!("{e}\n")),
        },
        "/api/alarm" => alarm_action(&request.body, monitor).await,
        path => match path.strip_prefix("/api/devices/") {
            Some(device) => {
                let device = device.to_string();
                match blocking(monitor, move |m| device_document(m, &device)).await {
                    Ok(Some(doc)) => Response::json(200, "OK", &doc),
                    Ok(None) => Response::text(404, "Not Found", "no such device\n".into()),
                    Err(e) => Response::text(500, "Internal Server Error", format!("{e}\n")),
                }
            }
            None => Response::text(
                404,
                "Not Found",
                format!("no {path}: try /, /healthz, /metrics, /shadows, /api/fleet\n"),
            ),
        },
    }
}

/// Runs store work (redb is synchronous) on a blocking thread.
async fn blocking<T: Send + 'static>(
    monitor: &Monitor,
    f: impl FnOnce(&Monitor) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let m = monitor.clone();
    tokio::task::spawn_blocking(move || f(&m))
        .await
        .map_err(|e| e.to_string())?
}

fn state_of(monitor: &Monitor, device: &str, profile: &str) -> Result<DeviceState, String> {
    let key = StreamKey {
        device: DeviceId::new(device).map_err(|e| e.to_string())?,
        profile: profile.to_string(),
    };
    // The store's port is async in signature only: it completes without waiting.
    let load = monitor.store.load(&key);
    tokio::runtime::Handle::current()
        .block_on(load)
        .map(|v| v.value)
        .map_err(|e| e.to_string())
}

fn alarms_summary(state: &DeviceState) -> Value {
    state
        .alarms
        .alarms
        .iter()
        .map(|(c, a)| (c.clone(), json!(a.state.as_str())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Every device: latest verdict, probability, alarm states, last seen, rejects.
fn fleet_document(monitor: &Monitor) -> Result<Value, String> {
    let mut rows: BTreeMap<String, Value> = BTreeMap::new();
    for (device, shadow) in monitor.store.shadows().map_err(|e| e.to_string())? {
        let r = &shadow["state"]["reported"];
        let label = r["label"].as_str().unwrap_or_default();
        let profile = r["profile"]
            .as_str()
            .unwrap_or(monitor.profile_of(&device))
            .to_string();
        let state = state_of(monitor, &device, &profile)?;
        rows.insert(
            device.clone(),
            json!({
                "device": device,
                "profile": profile,
                "label": label,
                "probability": r["probabilities"].get(label),
                "anomaly_score": r["anomaly_score"],
                "window": r["window"],
                "alert": r["alert"],
                "last_seen_ms": r["time"],
                "alarms": alarms_summary(&state),
                "rejects": monitor.fleet.rejects(&device),
            }),
        );
    }
    // Devices heard of only through rejections.
    for (device, _) in monitor.fleet.devices() {
        rows.entry(device.clone()).or_insert_with(|| {
            json!({
                "device": device,
                "profile": monitor.profile_of(&device),
                "label": null,
                "alarms": {},
                "rejects": monitor.fleet.rejects(&device),
            })
        });
    }
    Ok(json!({ "devices": rows.into_values().collect::<Vec<_>>() }))
}

/// One device: recent verdicts (with contributions), alarms with their history.
fn device_document(monitor: &Monitor, device: &str) -> Result<Option<Value>, String> {
    if DeviceId::new(device).is_err() {
        return Ok(None);
    }
    let shadows = monitor.store.shadows().map_err(|e| e.to_string())?;
    let shadow = shadows
        .into_iter()
        .find(|(d, _)| d == device)
        .map(|(_, s)| s);
    let recent = monitor.fleet.recent(device);
    if shadow.is_none() && recent.is_empty() && monitor.fleet.rejects(device) == 0 {
        return Ok(None);
    }
    let profile = shadow
        .as_ref()
        .and_then(|s| {
            s["state"]["reported"]["profile"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| monitor.profile_of(device).to_string());
    let state = state_of(monitor, device, &profile)?;
    let conditions = monitor
        .profiles
        .get(&profile)
        .map(|p| p.profile.alert.unhealthy.clone())
        .unwrap_or_default();
    Ok(Some(json!({
        "device": device,
        "profile": profile,
        "channels": monitor.profiles.get(&profile).map(|p| p.profile.channels.clone()),
        "conditions": conditions,
        "shadow": shadow.map(|s| s["state"]["reported"].clone()),
        "verdicts": recent,
        "alarms": state.alarms.alarms,
        "rejects": monitor.fleet.rejects(device),
    })))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `POST /api/alarm`: validates, applies with the device state's optimistic concurrency, syncs.
async fn alarm_action(body: &[u8], monitor: &Monitor) -> Response {
    let request: AlarmRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Response::json(
                400,
                "Bad Request",
                &json!({"error": format!("not an alarm action: {e}")}),
            )
        }
    };
    let Ok(device) = DeviceId::new(request.device.clone()) else {
        return Response::json(400, "Bad Request", &json!({"error": "invalid device"}));
    };
    let profile = monitor.profile_of(device.as_str()).to_string();
    let Some(compiled) = monitor.profiles.get(&profile) else {
        return Response::json(
            500,
            "Internal Server Error",
            &json!({"error": format!("profile {profile} is not loaded")}),
        );
    };
    let policy = compiled.profile.alert.clone();
    let key = StreamKey {
        device: device.clone(),
        profile,
    };
    let action = request.action;
    let outcome = blocking(monitor, move |m| {
        let handle = tokio::runtime::Handle::current();
        let outcome = handle.block_on(alarm::operate(&*m.store, &key, &policy, &action, now_ms()));
        if outcome.is_ok() {
            // Acknowledged to the operator only once durable.
            m.store.flush().map_err(|e| e.to_string())?;
        }
        Ok((outcome, action))
    })
    .await;
    match outcome {
        Ok((Ok(outcome), action)) => {
            let state = match &outcome {
                alarm::ActionOutcome::Applied { to, .. } => *to,
                alarm::ActionOutcome::Duplicate { state } => *state,
            };
            tracing::info!(device = %device, condition = %action.condition, action = action.command.name(), by = %action.by, id = %action.id, state = state.as_str(), "alarm action");
            monitor
                .fleet
                .alarm_changed(device.as_str(), &action.condition, state.as_str());
            Response::json(
                200,
                "OK",
                &json!({"device": device.as_str(), "condition": action.condition, "outcome": outcome, "state": state.as_str()}),
            )
        }
        Ok((Err(OperateError::Action(e @ alarm::ActionError::NotApplicable { .. })), _)) => {
            Response::json(409, "Conflict", &json!({"error": e.to_string()}))
        }
        Ok((Err(OperateError::Action(e)), _)) => {
            Response::json(400, "Bad Request", &json!({"error": e.to_string()}))
        }
        Ok((Err(OperateError::Port(e)), _)) => Response::json(
            503,
            "Service Unavailable",
            &json!({"error": e.to_string(), "retryable": e.retryable}),
        ),
        Err(e) => Response::json(500, "Internal Server Error", &json!({"error": e})),
    }
}

/// `GET /api/events`: server-sent events until the client goes away.
async fn live_events(mut stream: TcpStream, fleet: &FleetLog) -> std::io::Result<()> {
    let Some(mut listener) = fleet.listen() else {
        let r = Response::text(503, "Service Unavailable", "too many live pages\n".into());
        stream.write_all(&r.to_bytes(false)).await?;
        return stream.shutdown().await;
    };
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n: live\n\n")
        .await?;
    loop {
        let frame = match tokio::time::timeout(KEEPALIVE, listener.rx.recv()).await {
            Ok(Ok(e)) => format!("event: {}\ndata: {}\n\n", e.kind, e.data),
            // Too slow a reader missed events: tell the page to reload the fleet.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => "event: resync\ndata: {}\n\n".into(),
            Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(()),
            Err(_) => ": keepalive\n\n".into(),
        };
        stream.write_all(frame.as_bytes()).await?;
    }
}
