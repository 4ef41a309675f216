//! The handler: an event in, the pipeline over ports, a response out. Generic over the ports
//! (in-memory in unit tests, AWS in the Lambda and the integration tests).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use vigil_aws::Usage;
use vigil_core::pipeline::{CloseHints, Counters, MessageOutcome};
use vigil_core::ports::{AlarmReports, AlertEvent, Rejected, WindowResult};
use vigil_core::{CompiledProfile, Message, Pipeline, PipelineConfig, Ports};

use crate::dead_letters::CountedRejects;
use crate::event::{parse_event, BadEnvelope, Trigger, UnsupportedEvent};
use crate::metrics::{emf, InvocationMetrics};

/// What the handler works with: built once per cold start.
pub struct App<'a> {
    pub profiles: &'a BTreeMap<String, CompiledProfile>,
    pub ports: Ports<'a>,
    pub default_profile: String,
    /// DynamoDB capacity counters, reported per invocation when given.
    pub usage: Option<&'a Usage>,
    /// Function name for metrics.
    pub function: String,
    /// Whether the EMF line is printed (tests turn it off).
    pub print_metrics: bool,
    /// Shared by the invocations of this process.
    pub close_hints: CloseHints,
    /// Where the outcome of an operator's alarm action is reported (the `alarm` shadow's
    /// `reported` side); `None`: not reported.
    pub alarm_reports: Option<&'a dyn AlarmReports>,
}

impl std::fmt::Debug for App<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("profiles", &self.profiles.keys().collect::<Vec<_>>())
            .field("default_profile", &self.default_profile)
            .finish()
    }
}

/// The invocation's context.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    /// When Lambda stops this invocation (epoch ms), if known.
    pub deadline_ms: Option<u64>,
    /// The clock (epoch ms); `None`: the system clock. Tests set it to replay a retry later.
    pub now_ms: Option<u64>,
}

/// Why an invocation failed as a whole. Lambda reports `error_type`; async invocations (direct
/// mode) are retried by Lambda and end on the function's failure destination.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Unsupported(#[from] UnsupportedEvent),
    #[error("message {message_id} failed ({kind}): {error}", kind = if *.retryable { "retryable" } else { "permanent" })]
    Failed {
        message_id: String,
        error: String,
        retryable: bool,
    },
}

impl HandlerError {
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "Vigil.UnsupportedEvent",
            Self::Failed {
                retryable: true, ..
            } => "Vigil.Retryable",
            Self::Failed { .. } => "Vigil.Permanent",
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Failed {
                retryable: true,
                ..
            }
        )
    }
}

/// The outcome of one record, in input order.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordOutcome {
    Accepted {
        samples: usize,
        duplicates: usize,
        late: usize,
    },
    Rejected {
        code: &'static str,
        reason: String,
    },
    Failed {
        error: String,
        retryable: bool,
    },
}

/// Everything one invocation did (the integration tests read it; `handle` keeps the response).
#[derive(Debug)]
pub struct Handled {
    pub trigger: Option<Trigger>,
    pub response: Result<Value, HandlerError>,
    pub outcomes: Vec<(String, RecordOutcome)>,
    pub results: Vec<WindowResult>,
    pub alerts: Vec<AlertEvent>,
    pub metrics: InvocationMetrics,
    pub emf: Value,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Lease on a window being scored: until this invocation is certainly dead, plus a margin.
fn lease_ms(inv: &Invocation, now: u64) -> u64 {
    match inv.deadline_ms {
        Some(deadline) if deadline > now => (deadline - now + 5_000).max(10_000),
        _ => 60_000,
    }
}

pub async fn handle(app: &App<'_>, event: &Value, inv: &Invocation) -> Result<Value, HandlerError> {
    handle_detailed(app, event, inv).await.response
}

pub async fn handle_detailed(app: &App<'_>, event: &Value, inv: &Invocation) -> Handled {
    let started = Instant::now();
    if let Some(u) = app.usage {
        u.take();
    }
    let mut handled = Handled {
        trigger: None,
        response: Ok(Value::Null),
        outcomes: vec![],
        results: vec![],
        alerts: vec![],
        metrics: InvocationMetrics::default(),
        emf: Value::Null,
    };
    // Operators' actions from the `alarm` shadow's delta rule ([`crate::alarm`]).
    if crate::alarm::is_alarm_event(event) {
        let now = inv.now_ms.unwrap_or_else(now_ms);
        handled.response =
            crate::alarm::handle(app, event, now)
                .await
                .map_err(|e| HandlerError::Failed {
                    message_id: format!("alarm-delta-{}", inv.request_id),
                    retryable: e.is_retryable(),
                    error: e.to_string(),
                });
        return finish(app, handled, started, "alarm");
    }
    let parsed = match parse_event(event, &inv.request_id) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(request_id = %inv.request_id, error = %e, "unsupported event");
            handled.response = Err(e.into());
            return finish(app, handled, started, "unknown");
        }
    };
    handled.trigger = Some(parsed.trigger);
    // Every dead letter of this invocation goes through the counter, from either path.
    let rejects = CountedRejects::new(app.ports.rejects);
    let mut ports = app.ports;
    ports.rejects = &rejects;
    let mut counters = Counters::default();
    let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; parsed.records.len()];
    let mut messages: Vec<Message> = Vec::new();
    let mut message_index: Vec<usize> = Vec::new();

    for (i, record) in parsed.records.iter().enumerate() {
        match &record.content {
            Ok(m) => {
                messages.push(m.clone());
                message_index.push(i);
            }
            Err(bad) => {
                counters.messages += 1;
                outcomes[i] =
                    Some(reject_envelope(&ports, inv, &record.id, bad, &mut counters).await);
            }
        }
    }

    if !messages.is_empty() {
        let now = inv.now_ms.unwrap_or_else(now_ms);
        let config = PipelineConfig {
            default_profile: app.default_profile.clone(),
            lease_ms: lease_ms(inv, now),
            close_hints: app.close_hints.clone(),
            ..PipelineConfig::default()
        };
        match Pipeline::new(app.profiles, ports, config) {
            Ok(pipeline) => {
                let report = pipeline.process(&messages, now).await;
                counters.merge(&report.counters);
                for (k, outcome) in report.outcomes.into_iter().enumerate() {
                    let i = message_index[k];
                    let m = &messages[k];
                    outcomes[i] = Some(match outcome {
                        MessageOutcome::Accepted {
                            samples,
                            duplicates,
                            late,
                        } => RecordOutcome::Accepted {
                            samples,
                            duplicates,
                            late,
                        },
                        MessageOutcome::Rejected(e) => {
                            tracing::warn!(request_id = %inv.request_id, device = %m.device, message_id = %m.id, code = e.code(), field = %e.field, reason = %e.reason, "message rejected");
                            RecordOutcome::Rejected {
                                code: e.code(),
                                reason: e.to_string(),
                            }
                        }
                        MessageOutcome::Failed { error, retryable } => {
                            tracing::error!(request_id = %inv.request_id, device = %m.device, message_id = %m.id, retryable, error = %error, "message failed");
                            RecordOutcome::Failed { error, retryable }
                        }
                    });
                }
                for r in &report.results {
                    tracing::info!(request_id = %inv.request_id, device = %r.device, window = r.window, label = %r.label, source = %r.source, status = ?r.status, "window closed");
                }
                for a in &report.alerts {
                    tracing::info!(request_id = %inv.request_id, device = %a.device, window = a.window, transition = a.transition.kind(), condition = a.transition.condition(), alarm_state = a.alarm.as_ref().map_or("none", |n| n.state.as_str()), "alert sent");
                }
                handled.results = report.results;
                handled.alerts = report.alerts;
            }
            Err(e) => {
                // Checked at cold start; kept for handlers built by hand.
                for &i in &message_index {
                    outcomes[i] = Some(RecordOutcome::Failed {
                        error: e.to_string(),
                        retryable: false,
                    });
                }
                counters.messages += messages.len() as u64;
                counters.failed += messages.len() as u64;
            }
        }
    }

    handled.outcomes = parsed
        .records
        .iter()
        .zip(outcomes)
        .map(|(r, o)| {
            (
                r.id.clone(),
                o.unwrap_or(RecordOutcome::Failed {
                    error: "not processed".into(),
                    retryable: true,
                }),
            )
        })
        .collect();
    handled.metrics.counters = counters;
    handled.metrics.dead_letters_undelivered = rejects.undelivered();
    handled.response = response(parsed.trigger, &handled.outcomes);
    finish(app, handled, started, parsed.trigger.as_str())
}

async fn reject_envelope(
    ports: &Ports<'_>,
    inv: &Invocation,
    id: &str,
    bad: &BadEnvelope,
    counters: &mut Counters,
) -> RecordOutcome {
    let rejected = Rejected {
        message_id: id.to_string(),
        device: bad.device.clone(),
        error: bad.error.clone(),
        payload: bad.payload.clone(),
    };
    let device = bad.device.as_ref().map_or("", |d| d.as_str());
    match ports.rejects.reject(&rejected).await {
        Ok(()) => {
            tracing::warn!(request_id = %inv.request_id, device, message_id = id, code = bad.error.code(), field = %bad.error.field, reason = %bad.error.reason, "message rejected");
            counters.rejected += 1;
            *counters
                .rejects_by_reason
                .entry(bad.error.code().to_string())
                .or_default() += 1;
            RecordOutcome::Rejected {
                code: bad.error.code(),
                reason: bad.error.to_string(),
            }
        }
        Err(e) => {
            tracing::error!(request_id = %inv.request_id, device, message_id = id, error = %e, "dead-lettering failed");
            counters.failed += 1;
            RecordOutcome::Failed {
                error: e.to_string(),
                retryable: e.retryable,
            }
        }
    }
}

/// Batches: partial failure report (failed records only; rejected ones are dead-lettered, not
/// failed). Direct: a failure fails the invocation so Lambda retries it.
fn response(trigger: Trigger, outcomes: &[(String, RecordOutcome)]) -> Result<Value, HandlerError> {
    match trigger {
        Trigger::Sqs | Trigger::Kinesis => {
            let failures: Vec<Value> = outcomes
                .iter()
                .filter(|(_, o)| matches!(o, RecordOutcome::Failed { .. }))
                .map(|(id, _)| json!({ "itemIdentifier": id }))
                .collect();
            Ok(json!({ "batchItemFailures": failures }))
        }
        Trigger::Direct => match outcomes.first() {
            Some((id, RecordOutcome::Failed { error, retryable })) => Err(HandlerError::Failed {
                message_id: id.clone(),
                error: error.clone(),
                retryable: *retryable,
            }),
            Some((_, RecordOutcome::Rejected { code, reason })) => {
                Ok(json!({ "status": "rejected", "code": code, "reason": reason }))
            }
            Some((
                _,
                RecordOutcome::Accepted {
                    samples,
                    duplicates,
                    late,
                },
            )) => Ok(json!({
                "status": "accepted", "samples": samples, "duplicates": duplicates, "late": late
            })),
            None => Ok(json!({ "status": "empty" })),
        },
    }
}

fn finish(app: &App<'_>, mut handled: Handled, started: Instant, trigger: &str) -> Handled {
    handled.metrics.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(u) = app.usage {
        let s = u.take();
        handled.metrics.dynamo_write_units = s.write_units;
        handled.metrics.dynamo_read_units = s.read_units;
        handled.metrics.dynamo_requests = s.read_requests + s.write_requests;
    }
    handled.emf = emf(&app.function, trigger, &handled.metrics, now_ms());
    if app.print_metrics {
        println!("{}", handled.emf);
    }
    handled
}
