//! How IoT Core hands a rule's output to a Lambda function: an asynchronous invocation. The event
//! is queued and the caller goes on; the function is invoked (here through cargo-lambda's
//! Runtime API emulator, whose invoke URL answers like Lambda's Invoke API), an error is retried
//! `retries` times with a growing pause (Lambda: 2 retries, after about 1 and 2 minutes; locally
//! seconds, see [`AsyncInvoker::new`]), and an event that still fails goes to the failure
//! destination as Lambda's on-failure record (`condition: RetriesExhausted`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::awsjson::{post, Endpoint};

/// Largest function answer read back (Lambda's synchronous response limit is 6 MB).
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// Events waiting for the function; IoT's rule actions fail (and count) beyond what Lambda
/// accepts, and so does this queue when full.
const QUEUE: usize = 10_000;

/// What one invocation came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Value),
    /// The function reported an error (`errorType`, `errorMessage`) or did not answer.
    Failed(Value),
}

/// Where exhausted events go (the Terraform's on-failure destination).
pub type FailureSink = mpsc::UnboundedSender<Value>;

/// Counts, for the operator's log and the tests.
#[derive(Debug, Default)]
pub struct InvokeCounters {
    pub invocations: AtomicU64,
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub exhausted: AtomicU64,
    pub dropped: AtomicU64,
}

/// The function's invoke endpoint: `http://host:port/2015-03-31/functions/{name}/invocations`.
#[derive(Clone, Debug)]
pub struct Function {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub arn: String,
    /// The function's timeout (the Terraform's `timeout`).
    pub timeout: Duration,
}

impl Function {
    /// One synchronous invocation (what Lambda's service does for each async attempt).
    pub async fn invoke(&self, event: &Value) -> Outcome {
        match tokio::time::timeout(self.timeout, self.post(event)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Failed(json!({
                "errorType": "Runtime.Unavailable",
                "errorMessage": format!("invoke: {e}"),
            })),
            Err(_) => Outcome::Failed(json!({
                "errorType": "Sandbox.Timedout",
                "errorMessage": format!("Task timed out after {:.2} seconds", self.timeout.as_secs_f64()),
            })),
        }
    }

    async fn post(&self, event: &Value) -> std::io::Result<Outcome> {
        let at = Endpoint {
            host: self.host.clone(),
            port: self.port,
        };
        let path = format!("/2015-03-31/functions/{}/invocations", self.name);
        let answer = post(
            &at,
            &path,
            &[
                ("Content-Type", "application/json"),
                ("X-Amz-Invocation-Type", "RequestResponse"),
            ],
            event.to_string().as_bytes(),
        )
        .await?;
        if answer.body.len() > MAX_RESPONSE_BYTES {
            return Err(std::io::Error::other("the answer exceeds Lambda's 6 MB"));
        }
        let value = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer.body).into_owned()));
        let function_error = answer.head.contains("x-amz-function-error");
        Ok(if (200..300).contains(&answer.status) && !function_error {
            Outcome::Ok(value)
        } else {
            Outcome::Failed(value)
        })
    }
}

/// The asynchronous invocation queue in front of one function.
#[derive(Clone)]
pub struct AsyncInvoker {
    queue: mpsc::Sender<Value>,
    pub counters: Arc<InvokeCounters>,
}

impl AsyncInvoker {
    /// Starts the queue: `retries` retries, the first after `first_pause`, each next one after
    /// twice the last; `concurrency` invocations at once (one per running bootstrap).
    pub fn new(
        function: Function,
        retries: u32,
        first_pause: Duration,
        concurrency: usize,
        on_failure: Option<FailureSink>,
    ) -> Self {
        let (queue, mut events) = mpsc::channel::<Value>(QUEUE);
        let counters = Arc::<InvokeCounters>::default();
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let c = Arc::clone(&counters);
        tokio::spawn(async move {
            let function = Arc::new(function);
            while let Some(event) = events.recv().await {
                // The first attempt's slot is taken here, in queue order, so that first
                // attempts start in the order the rule saw the messages; only retries
                // reorder (as in Lambda).
                let Ok(first_slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let (function, slots, c, on_failure) = (
                    Arc::clone(&function),
                    Arc::clone(&slots),
                    Arc::clone(&c),
                    on_failure.clone(),
                );
                tokio::spawn(async move {
                    let mut pause = first_pause;
                    let mut attempt = 0;
                    let mut first_slot = Some(first_slot);
                    loop {
                        attempt += 1;
                        let outcome = {
                            let _slot = match first_slot.take() {
                                Some(slot) => slot,
                                None => match Arc::clone(&slots).acquire_owned().await {
                                    Ok(slot) => slot,
                                    Err(_) => return,
                                },
                            };
                            c.invocations.fetch_add(1, Ordering::Relaxed);
                            function.invoke(&event).await
                        };
                        let error = match outcome {
                            Outcome::Ok(_) => {
                                c.succeeded.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Outcome::Failed(error) => error,
                        };
                        if attempt > retries {
                            c.exhausted.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(function = %function.name, attempts = attempt, error = %error, "async invoke: retries exhausted");
                            if let Some(sink) = &on_failure {
                                let _ =
                                    sink.send(failure_record(&function, &event, &error, attempt));
                            }
                            return;
                        }
                        c.retried.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(function = %function.name, attempt, error = %error, "async invoke: retrying");
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                });
            }
        });
        Self { queue, counters }
    }

    /// Queues one event (IoT's rule action returns at once); `false` when the queue is full.
    pub fn submit(&self, event: Value) -> bool {
        let queued = self.queue.try_send(event).is_ok();
        if !queued {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }
}

/// Lambda's on-failure destination record for an asynchronous invocation.
pub fn failure_record(function: &Function, event: &Value, error: &Value, attempts: u32) -> Value {
    json!({
        "version": "1.0",
        "timestamp": vigil_aws::time::iso8601_ms(now_ms()),
        "requestContext": {
            "functionArn": format!("{}:$LATEST", function.arn),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": error,
    })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
