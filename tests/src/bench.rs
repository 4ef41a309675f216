//! The cost scenarios of `make bench-aws` and of the bounds test (`tests/aws/cost.rs`): the same
//! hydraulic cycles delivered direct (one message per invocation), through SQS and through
//! Kinesis, one or 60 samples per message, and the per-sample figures they add up to.

use serde::Serialize;
use serde_json::{json, Value};
use vigil_core::telemetry::Sample;

use crate::fixture::{batch, direct_b64, kinesis_batch, one, sqs_batch};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Direct,
    Sqs,
    Kinesis,
}

/// One way of delivering the cycles.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub trigger: Trigger,
    pub samples_per_message: usize,
    /// Records per batch (SQS, Kinesis): one device at 1 Hz within a batching window.
    pub records_per_batch: usize,
}

/// Direct, SQS and Kinesis, with 1 and 60 samples per message. Batches hold 120 one-sample
/// records (two minutes of one device at 1 Hz) or 10 sixty-sample records.
pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for trigger in [Trigger::Direct, Trigger::Sqs, Trigger::Kinesis] {
        for spm in [1, 60] {
            let name = match (trigger, spm) {
                (Trigger::Direct, 1) => "direct_1",
                (Trigger::Direct, _) => "direct_60",
                (Trigger::Sqs, 1) => "sqs_1",
                (Trigger::Sqs, _) => "sqs_60",
                (Trigger::Kinesis, 1) => "kinesis_1",
                (Trigger::Kinesis, _) => "kinesis_60",
            };
            out.push(Scenario {
                name,
                trigger,
                samples_per_message: spm,
                records_per_batch: match (trigger, spm) {
                    (Trigger::Direct, _) => 1,
                    (_, 1) => 120,
                    _ => 10,
                },
            });
        }
    }
    out
}

/// An invocation's event, with how many messages and samples it carries.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub event: Value,
    pub messages: usize,
    pub samples: usize,
}

/// The events that deliver `samples` of `thing` in this scenario, in order.
pub fn events(s: &Scenario, thing: &str, samples: &[Sample]) -> Vec<Invocation> {
    let messages: Vec<(Value, usize)> = samples
        .chunks(s.samples_per_message)
        .map(|c| {
            let payload = if c.len() == 1 { one(&c[0]) } else { batch(c) };
            (direct_b64(thing, &payload), c.len())
        })
        .collect();
    messages
        .chunks(s.records_per_batch)
        .enumerate()
        .map(|(b, group)| {
            let samples = group.iter().map(|(_, n)| n).sum();
            let records: Vec<(String, Value)> = group
                .iter()
                .enumerate()
                .map(|(k, (v, _))| (format!("{thing}-{b}-{k}"), v.clone()))
                .collect();
            let event = match s.trigger {
                Trigger::Direct => records[0].1.clone(),
                Trigger::Sqs => sqs_batch(&records),
                Trigger::Kinesis => kinesis_batch(&records),
            };
            Invocation {
                event,
                messages: group.len(),
                samples,
            }
        })
        .collect()
}

/// What one invocation reported in its metrics line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    pub write_units: f64,
    pub read_units: f64,
    pub requests: f64,
    pub latency_ms: f64,
}

impl Measured {
    /// From the function's EMF line.
    pub fn from_emf(emf: &Value) -> Self {
        let f = |k: &str| emf[k].as_f64().unwrap_or(0.0);
        Self {
            write_units: f("DynamoWriteUnits"),
            read_units: f("DynamoReadUnits"),
            requests: f("DynamoRequests"),
            latency_ms: f("Latency"),
        }
    }
}

/// Per-sample and per-message figures of a scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub invocations: usize,
    pub messages: usize,
    pub samples: usize,
    pub write_units_per_sample: f64,
    pub read_units_per_sample: f64,
    pub requests_per_sample: f64,
    pub requests_per_message: f64,
    /// Handler latency per invocation (from its metrics line).
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
}

pub fn figures(runs: &[(Invocation, Measured)]) -> Figures {
    let samples: usize = runs.iter().map(|(i, _)| i.samples).sum();
    let messages: usize = runs.iter().map(|(i, _)| i.messages).sum();
    let sum = |f: fn(&Measured) -> f64| runs.iter().map(|(_, m)| f(m)).sum::<f64>();
    // NaN: not a latency sample (the cold invocation).
    let mut lat: Vec<f64> = runs
        .iter()
        .map(|(_, m)| m.latency_ms)
        .filter(|l| !l.is_nan())
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let per = |x: f64, n: usize| x / n.max(1) as f64;
    Figures {
        invocations: runs.len(),
        messages,
        samples,
        write_units_per_sample: per(sum(|m| m.write_units), samples),
        read_units_per_sample: per(sum(|m| m.read_units), samples),
        requests_per_sample: per(sum(|m| m.requests), samples),
        requests_per_message: per(sum(|m| m.requests), messages),
        latency_ms_p50: pct(0.5),
        latency_ms_p99: pct(0.99),
    }
}

/// The bounds of the direct path (docs/aws.md): per one-sample message in direct mode, and per
/// sample for one-sample messages batched by SQS or Kinesis. `None` when within them.
pub fn check_bounds(name: &str, f: &Figures) -> Option<String> {
    let (wcu, rcu, req) = match name {
        "direct_1" => (DIRECT_WRITE_UNITS, 0.25, 1.2),
        "sqs_1" | "kinesis_1" => (BATCHED_WRITE_UNITS, 0.1, 0.2),
        _ => return None,
    };
    let bad = f.write_units_per_sample > wcu
        || f.read_units_per_sample > rcu
        || f.requests_per_sample > req;
    bad.then(|| {
        format!(
            "{name}: {:.4} write units, {:.4} read units, {:.4} requests per sample; bounds {wcu}, {rcu}, {req}",
            f.write_units_per_sample, f.read_units_per_sample, f.requests_per_sample
        )
    })
}

/// Write units per one-sample direct message: per 60-sample window, 59 chunk writes and the
/// state save that commits the close (the message holding the last seq stores no chunk).
pub const DIRECT_WRITE_UNITS: f64 = 1.0 + 1e-9;

/// Write units per sample of one-sample messages batched by SQS or Kinesis (120 records of one
/// device per batch): one write per window, its commit (a whole window's chunk is never stored).
pub const BATCHED_WRITE_UNITS: f64 = 1.0 / 60.0 + 1e-9;

pub fn to_json(f: &Figures) -> Value {
    json!(f)
}
