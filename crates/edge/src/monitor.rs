//! The edge's monitoring endpoint (`vigil edge --http ADDR`): liveness for a supervisor, the
//! counters for a Prometheus scraper, and each device's current condition for a dashboard.
//!
//! | path       | answer |
//! |------------|--------|
//! | `/healthz` | `200 ok` while subscribed to the broker, `503` while not (starting, broker lost) |
//! | `/metrics` | Prometheus text format 0.0.4: [`EdgeStats`] as counters, `vigil_edge_up`, uptime |
//! | `/shadows` | JSON object: device → its stored `condition` shadow (last result, alert state) |
//!
//! Read-only and GET/HEAD only. Each answer is one small document, so the server speaks just
//! enough HTTP/1.1 for curl, Prometheus and browsers (one request per connection,
//! `Connection: close`) instead of pulling a web framework into the edge binary. It reads the
//! statistics the worker publishes after every batch and the store through its own read
//! transactions, so it never waits for, or holds up, the pipeline.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::gateway::{GatewayCounters, GatewayStats};
use crate::store::EdgeStore;
use crate::EdgeStats;

/// Longest request head accepted; the endpoints take no body and no parameters.
const MAX_HEAD: usize = 8 * 1024;
/// A client that does not finish its request in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// Serves until the task is aborted (the edge's handle does that when it stops).
pub async fn serve(listener: TcpListener, monitor: Monitor) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let monitor = monitor.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &monitor).await {
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

async fn answer(mut stream: TcpStream, monitor: &Monitor) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let (response, head_only) = match parse_request_line(&head) {
        Ok(request) => (respond(&request, monitor).await, request.method == "HEAD"),
        Err(reason) => (
            Response::text(400, "Bad Request", format!("{reason}\n")),
            false,
        ),
    };
    stream.write_all(&response.to_bytes(head_only)).await?;
    stream.shutdown().await
}

/// The request head, up to the blank line (or what came before the client stopped sending).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    /// Without the query string.
    path: String,
}

fn parse_request_line(head: &[u8]) -> Result<Request, &'static str> {
    let end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("incomplete request line")?;
    let line = std::str::from_utf8(&head[..end]).map_err(|_| "request line is not UTF-8")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected: METHOD PATH HTTP/1.x");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("only HTTP/1.x is spoken here");
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
    })
}

async fn respond(request: &Request, monitor: &Monitor) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        let mut r = Response::text(405, "Method Not Allowed", "only GET and HEAD\n".into());
        r.extra = Some("Allow: GET, HEAD");
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
            let store = Arc::clone(&monitor.store);
            // redb reads are synchronous; keep them off the runtime's workers.
            let shadows = tokio::task::spawn_blocking(move || store.shadows()).await;
            match shadows {
                Ok(Ok(list)) => {
                    let map: serde_json::Map<String, serde_json::Value> =
                        list.into_iter().collect();
                    Response {
                        status: 200,
                        reason: "OK",
                        content_type: "application/json",
                        extra: None,
                        body: serde_json::to_vec(&map).expect("JSON value serializes"),
                    }
                }
                Ok(Err(e)) => Response::text(500, "Internal Server Error", format!("{e}\n")),
                Err(e) => Response::text(500, "Internal Server Error", format!("{e}\n")),
            }
        }
        "/" => Response::text(200, "OK", "vigil edge: /healthz /metrics /shadows\n".into()),
        other => Response::text(
            404,
            "Not Found",
            format!("no {other}: try /healthz, /metrics or /shadows\n"),
        ),
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    extra: Option<&'static str>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: String) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra: None,
            body: body.into_bytes(),
        }
    }

    fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if let Some(extra) = self.extra {
            out.push_str(extra);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The statistics in Prometheus text format. Counter names end in `_total`; they restart from
/// zero with the process, which Prometheus' `rate()` handles as a counter reset.
pub fn prometheus(stats: &EdgeStats, subscribed: bool, gateway: Option<&GatewayStats>) -> String {
    let p = &stats.pipeline;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "vigil_edge_up",
        "gauge",
        "1 while the edge is subscribed to the broker.",
        u8::from(subscribed).to_string(),
    );
    metric(
        "vigil_edge_uptime_seconds",
        "gauge",
        "Seconds since the edge started.",
        format!("{:.3}", stats.uptime_s),
    );
    let mut counters: Vec<(&str, &str, u64)> = vec![
        (
            "vigil_edge_deliveries_total",
            "Telemetry deliveries received, redeliveries included.",
            stats.deliveries,
        ),
        (
            "vigil_edge_acked_total",
            "Deliveries acknowledged to the broker.",
            stats.acked,
        ),
        (
            "vigil_edge_batches_total",
            "Batches processed.",
            stats.batches,
        ),
        (
            "vigil_edge_batch_retries_total",
            "Batches retried after a retryable failure.",
            stats.retries,
        ),
        (
            "vigil_edge_invalid_topic_total",
            "Deliveries on a topic that names no valid thing (dropped).",
            stats.invalid_topic,
        ),
        (
            "vigil_edge_failed_total",
            "Messages that failed for good (published as rejections with code failed).",
            stats.failed,
        ),
        (
            "vigil_edge_results_published_total",
            "Window results published.",
            stats.results_published,
        ),
        (
            "vigil_edge_alerts_published_total",
            "Alert transitions published.",
            stats.alerts_published,
        ),
        (
            "vigil_edge_rejects_published_total",
            "Rejections published on the dead-letter topics.",
            stats.rejects_published,
        ),
        (
            "vigil_edge_connections_total",
            "Connections to the broker (1 + reconnections).",
            stats.connections,
        ),
        (
            "vigil_messages_total",
            "Messages through the pipeline, retries included.",
            p.messages,
        ),
        (
            "vigil_messages_accepted_total",
            "Messages accepted.",
            p.accepted,
        ),
        (
            "vigil_messages_rejected_total",
            "Messages rejected as bad input (see vigil_rejects_total).",
            p.rejected,
        ),
        (
            "vigil_messages_failed_total",
            "Message attempts that failed in a port or scorer.",
            p.failed,
        ),
        (
            "vigil_samples_total",
            "Samples accepted, duplicates and late ones included.",
            p.samples,
        ),
        (
            "vigil_samples_duplicate_total",
            "Samples seen before (same device and seq), not counted again.",
            p.duplicates,
        ),
        (
            "vigil_samples_late_total",
            "Samples for a window already scored.",
            p.late,
        ),
        (
            "vigil_windows_scored_total",
            "Windows scored.",
            p.windows_scored,
        ),
        (
            "vigil_windows_incomplete_total",
            "Windows closed with missing samples (scored if complete enough).",
            p.windows_incomplete,
        ),
        (
            "vigil_alerts_total",
            "Alert transitions decided by the alert policy.",
            p.alerts,
        ),
    ];
    if let Some(g) = gateway {
        counters.extend([
            (
                "vigil_gateway_connections_total",
                "Device connections admitted (certificate attached to a thing).",
                g.connections,
            ),
            (
                "vigil_gateway_failed_handshakes_total",
                "TLS handshakes refused: no client certificate, or one not admitted (unattached included).",
                g.failed_handshakes,
            ),
            (
                "vigil_gateway_unattached_certificates_total",
                "Handshakes refused because the certificate is attached to no thing.",
                g.unattached_certificates,
            ),
            (
                "vigil_gateway_policy_violations_total",
                "Connections closed for a packet outside the thing's policy.",
                g.policy_violations,
            ),
        ]);
    }
    for (name, help, value) in counters {
        metric(name, "counter", help, value.to_string());
    }
    let _ = writeln!(
        out,
        "# HELP vigil_rejects_total Rejected messages by reason code.\n# TYPE vigil_rejects_total counter"
    );
    for (reason, n) in &p.rejects_by_reason {
        let _ = writeln!(
            out,
            "vigil_rejects_total{{reason=\"{}\"}} {n}",
            label_value(reason)
        );
    }
    out
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_or_refused_with_a_reason() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Request {
                method: "GET".into(),
                path: "/metrics".into()
            })
        );
        assert_eq!(
            parse_request_line(b"GET /metrics\r\n\r\n"),
            Err("expected: METHOD PATH HTTP/1.x")
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/2\r\n\r\n"),
            Err("only HTTP/1.x is spoken here")
        );
        assert_eq!(
            parse_request_line(b"GET / HT"),
            Err("incomplete request line")
        );
    }

    #[test]
    fn metrics_carry_every_counter_with_its_value() {
        let mut stats = EdgeStats {
            deliveries: 2160,
            acked: 2159,
            failed: 3,
            ..EdgeStats::default()
        };
        stats.pipeline.windows_scored = 36;
        stats
            .pipeline
            .rejects_by_reason
            .insert("missing_channel".into(), 2);
        stats
            .pipeline
            .rejects_by_reason
            .insert("odd\"code\\".into(), 1);
        let gateway = GatewayStats {
            policy_violations: 4,
            ..GatewayStats::default()
        };
        let text = prometheus(&stats, true, Some(&gateway));
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "vigil_edge_up 1",
            "vigil_edge_deliveries_total 2160",
            "vigil_edge_acked_total 2159",
            "vigil_edge_failed_total 3",
            "vigil_windows_scored_total 36",
            "vigil_rejects_total{reason=\"missing_channel\"} 2",
            "vigil_gateway_policy_violations_total 4",
            "vigil_rejects_total{reason=\"odd\\\"code\\\\\"} 1",
        ] {
            assert!(
                lines.contains(&expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        // Every sample line has its TYPE line first, once.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let typed = format!("# TYPE {name} ");
            assert_eq!(
                lines.iter().filter(|l| l.starts_with(&typed)).count(),
                1,
                "{name}"
            );
        }
        let without = prometheus(&stats, false, None);
        assert!(without.contains("vigil_edge_up 0\n"));
        assert!(!without.contains("vigil_gateway_"));
    }
}
