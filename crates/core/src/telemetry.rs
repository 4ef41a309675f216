//! Telemetry messages: parsing, validation and the limits we enforce.
//!
//! A message is JSON, either one sample `{"seq": 1, "ts": 1700000000123, "values": {"TS1": 35.5}}`
//! or a batch `{"samples": [ ... ]}`. The schema and the limits are documented in
//! `docs/telemetry.md`; keep the two in step.
//!
//! Parsing is strict: every channel of the profile must be present, no other channel may be,
//! every value must be a finite number. A rejected message names the field and the reason so
//! that an operator reading the dead-letter queue knows what the device did wrong. Every key
//! appears at most once, and a payload never names a device: identity is the topic's.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

/// Largest payload accepted, in bytes. AWS IoT Core's own limit for an MQTT message is 128 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// Most samples in one batch message: a 1024-sample vibration frame twice over. The smallest
/// sample takes ~34 bytes of JSON, so this is what fits in `MAX_PAYLOAD_BYTES` anyway.
pub const MAX_SAMPLES_PER_MESSAGE: usize = 2048;
/// Largest `seq` and `ts`: integers above 2^53 do not survive JSON number handling everywhere.
pub const MAX_JSON_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Longest device id: AWS IoT thing names are at most 128 characters.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// A device identity, always taken from the MQTT topic (never from the payload).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Validates a thing name: 1..=128 characters of `[A-Za-z0-9_:-]`, as AWS IoT allows.
    pub fn new(name: impl Into<String>) -> Result<Self, TelemetryError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_DEVICE_ID_LEN {
            return Err(TelemetryError::new(
                "device",
                Reason::InvalidDevice(format!(
                    "length {} is outside 1..={MAX_DEVICE_ID_LEN}",
                    name.len()
                )),
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')))
        {
            return Err(TelemetryError::new(
                "device",
                Reason::InvalidDevice(format!(
                    "character {bad:?} is not allowed (use A-Z a-z 0-9 _ - :)"
                )),
            ));
        }
        Ok(Self(name))
    }

    /// Extracts the device from a telemetry topic `dt/vigil/{thing}/telemetry`.
    pub fn from_topic(topic: &str) -> Result<Self, TelemetryError> {
        let mut parts = topic.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some("dt"), Some("vigil"), Some(thing), Some("telemetry"), None) => Self::new(thing),
            _ => Err(TelemetryError::new(
                "topic",
                Reason::InvalidDevice(format!(
                    "{:?} is not dt/vigil/{{thing}}/telemetry",
                    quoted_key(topic)
                )),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DeviceId {
    type Error = TelemetryError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<DeviceId> for String {
    fn from(value: DeviceId) -> Self {
        value.0
    }
}

/// Topic on which a device publishes telemetry.
pub fn telemetry_topic(device: &DeviceId) -> String {
    format!("dt/vigil/{device}/telemetry")
}

/// Topic on which results are published back to a device.
pub fn condition_topic(device: &DeviceId) -> String {
    format!("dt/vigil/{device}/condition")
}

/// Name of the device shadow holding the latest condition.
pub const CONDITION_SHADOW: &str = "condition";

/// One validated sample; `values` follow the profile's channel order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub seq: u64,
    pub ts: u64,
    pub values: Vec<f32>,
}

/// Why a message was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("payload is {0} bytes, above the limit of {MAX_PAYLOAD_BYTES}")]
    Oversize(usize),
    #[error("batch holds more than {MAX_SAMPLES_PER_MESSAGE} samples")]
    TooManySamples,
    #[error("batch is empty")]
    EmptyBatch,
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("missing")]
    Missing,
    #[error("expected {0}")]
    WrongType(&'static str),
    #[error("negative")]
    Negative,
    #[error("above 2^53-1")]
    TooLarge,
    #[error("not a finite number")]
    NotFinite,
    #[error("missing channel {0:?}")]
    MissingChannel(String),
    #[error("unknown channel {0:?} (the profile expects {1})")]
    UnknownChannel(String, String),
    #[error("channel given twice")]
    RepeatedChannel,
    #[error("key given twice")]
    DuplicateKey,
    #[error("seq {0} appears more than once in the message")]
    DuplicateSeq(u64),
    #[error("unexpected field (expected seq, ts, values or samples)")]
    UnknownField,
    #[error("both a single sample and `samples` are given")]
    Ambiguous,
    #[error("{0}")]
    InvalidDevice(String),
    /// A key the rule's event never has (the device's own keys are inside `payload`).
    #[error("not a key of the rule's event (expected payload, device and received_at)")]
    UnexpectedKey,
    #[error("seq {seq} is {jump} past the device's next expected seq {next}, above the limit of {limit}")]
    SeqJump {
        seq: u64,
        next: u64,
        jump: u64,
        limit: u64,
    },
}

/// A rejected message: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct TelemetryError {
    /// Path of the offending field, e.g. `samples[3].values.TS2`; `$` for the whole message.
    pub field: String,
    pub reason: Reason,
}

impl TelemetryError {
    pub fn new(field: impl Into<String>, reason: Reason) -> Self {
        Self {
            field: field.into(),
            reason,
        }
    }

    /// Short machine-readable code for metrics and dead-letter attributes.
    pub fn code(&self) -> &'static str {
        match self.reason {
            Reason::Oversize(_) => "oversize",
            Reason::TooManySamples => "too_many_samples",
            Reason::EmptyBatch => "empty_batch",
            Reason::Json(_) => "invalid_json",
            Reason::Missing => "missing_field",
            Reason::WrongType(_) => "wrong_type",
            Reason::Negative => "negative",
            Reason::TooLarge => "too_large",
            Reason::NotFinite => "not_finite",
            Reason::MissingChannel(_) => "missing_channel",
            Reason::UnknownChannel(..) => "unknown_channel",
            Reason::RepeatedChannel => "repeated_channel",
            Reason::DuplicateKey => "duplicate_key",
            Reason::DuplicateSeq(_) => "duplicate_seq",
            Reason::UnknownField => "unknown_field",
            Reason::Ambiguous => "ambiguous",
            Reason::InvalidDevice(_) => "invalid_device",
            Reason::UnexpectedKey => "unexpected_key",
            Reason::SeqJump { .. } => "seq_jump",
        }
    }
}

/// Parses and validates one message against the ordered channel names of a profile.
///
/// This is the one validation of a device's bytes, shared by every path: the edge (the payload
/// of an MQTT publish) and the Lambda (the rule's base64 `payload`) both reach it through
/// [`crate::Pipeline`], so they accept exactly the same messages.
///
/// Samples come back in message order; `seq` values are unique within the message.
pub fn parse_message(payload: &[u8], channels: &[String]) -> Result<Vec<Sample>, TelemetryError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(TelemetryError::new("$", Reason::Oversize(payload.len())));
    }
    let ctx = Ctx {
        channels,
        error: Cell::new(None),
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let parsed = MessageSeed { ctx: &ctx }
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m));
    let message = match parsed {
        Ok(m) => m,
        // Our own rejections travel as data in the context; serde's error is then only the
        // signal to stop. Anything else is a syntax error, reported with serde_json's position.
        Err(e) => {
            return Err(ctx
                .error
                .take()
                .unwrap_or_else(|| TelemetryError::new("$", Reason::Json(e.to_string()))))
        }
    };
    let samples = match message {
        RawMessage {
            single: Some(_),
            samples: Some(_),
        } => return Err(TelemetryError::new("$", Reason::Ambiguous)),
        RawMessage {
            single: Some(sample),
            samples: None,
        } => vec![sample.finish(At::Message, channels)?],
        RawMessage {
            single: None,
            samples: Some(batch),
        } => {
            if batch.is_empty() {
                return Err(TelemetryError::new("samples", Reason::EmptyBatch));
            }
            let mut out = Vec::with_capacity(batch.len());
            for (i, raw) in batch.into_iter().enumerate() {
                out.push(raw.finish(At::Sample(i), channels)?);
            }
            out
        }
        RawMessage {
            single: None,
            samples: None,
        } => return Err(TelemetryError::new("seq", Reason::Missing)),
    };
    reject_duplicate_seq(&samples)?;
    Ok(samples)
}

fn reject_duplicate_seq(samples: &[Sample]) -> Result<(), TelemetryError> {
    // Batches are nearly always in order: check that first and only sort when they are not.
    if samples.windows(2).all(|w| w[0].seq < w[1].seq) {
        return Ok(());
    }
    let mut seqs: Vec<u64> = samples.iter().map(|s| s.seq).collect();
    seqs.sort_unstable();
    match seqs.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(TelemetryError::new("samples", Reason::DuplicateSeq(w[0]))),
        None => Ok(()),
    }
}

/// Longest piece of a device's key quoted in an error's field path: the path names the key, it
/// does not carry the device's text at any length.
pub const MAX_KEY_IN_FIELD: usize = 64;

/// A key as quoted in a field path, cut to [`MAX_KEY_IN_FIELD`] characters; the empty key is
/// shown as `""` so that a field never reads as nothing.
pub fn quoted_key(key: &str) -> Cow<'_, str> {
    if key.is_empty() {
        return Cow::Borrowed("\"\"");
    }
    match key.char_indices().nth(MAX_KEY_IN_FIELD) {
        None => Cow::Borrowed(key),
        Some((cut, _)) => Cow::Owned(format!("{}…", &key[..cut])),
    }
}

/// State shared by the visitors of one message: the profile's channels, and the first reason
/// the message is rejected for.
struct Ctx<'c> {
    channels: &'c [String],
    error: Cell<Option<TelemetryError>>,
}

impl Ctx<'_> {
    /// Records why the message is rejected and stops the deserializer. The code and field are
    /// kept as data here, never formatted into serde's error text and read back, so nothing a
    /// device writes (a key such as `x|expected a number`) can change what is reported.
    fn reject<E: de::Error>(&self, field: impl Into<String>, reason: Reason) -> E {
        let first = self.error.take();
        self.error
            .set(first.or_else(|| Some(TelemetryError::new(field, reason))));
        E::custom("message rejected")
    }
}

/// Visitors that expect one kind of JSON value answer every other kind with their own
/// wrong-type rejection (`Self::wrong_type`), so serde's `expecting` text is never needed.
macro_rules! reject_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong_type())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong_type())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong_type())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong_type())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong_type())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong_type())
        }
    };
}

struct RawMessage {
    single: Option<RawSample>,
    samples: Option<Vec<RawSample>>,
}

/// A sample as read, before the checks that need the whole sample (missing fields, channels).
struct RawSample {
    seq: Option<Num>,
    ts: Option<Num>,
    values: Option<RawValues>,
}

/// Numbers are kept as read so that we can say "negative" or "not an integer" precisely.
#[derive(Clone, Copy)]
enum Num {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    NotANumber,
}

struct RawValues {
    values: Vec<f32>,
    seen: u64,
    problem: Option<(String, Reason)>,
}

impl RawSample {
    fn finish(self, at: At, channels: &[String]) -> Result<Sample, TelemetryError> {
        let seq = integer(self.seq, at, "seq")?;
        let ts = integer(self.ts, at, "ts")?;
        let values = self
            .values
            .ok_or_else(|| TelemetryError::new(at.field("values"), Reason::Missing))?;
        if let Some((field, reason)) = values.problem {
            return Err(TelemetryError::new(
                at.field(&format!("values.{field}")),
                reason,
            ));
        }
        if let Some(missing) = channels
            .iter()
            .enumerate()
            .find(|&(i, _)| values.seen & channel_bit(i) == 0)
        {
            return Err(TelemetryError::new(
                at.field("values"),
                Reason::MissingChannel(missing.1.clone()),
            ));
        }
        Ok(Sample {
            seq,
            ts,
            values: values.values,
        })
    }
}

/// The bit of channel `index` in a sample's seen-mask (profiles have at most 64 channels).
fn channel_bit(index: usize) -> u64 {
    u32::try_from(index)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

/// Where in a message a sample stands. Field paths are only formatted for an error: a batch of
/// 2,048 samples must not cost thousands of allocations to parse.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The message itself is one sample.
    Message,
    /// `samples[i]` of a batch.
    Sample(usize),
}

impl At {
    fn field(self, name: &str) -> String {
        match self {
            At::Message => name.to_string(),
            At::Sample(i) => format!("samples[{i}].{name}"),
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Message => f.write_str("$"),
            At::Sample(i) => write!(f, "samples[{i}]"),
        }
    }
}

fn integer(value: Option<Num>, at: At, name: &str) -> Result<u64, TelemetryError> {
    let field = || at.field(name);
    match value {
        None => Err(TelemetryError::new(field(), Reason::Missing)),
        Some(Num::Unsigned(v)) if v > MAX_JSON_SAFE_INTEGER => {
            Err(TelemetryError::new(field(), Reason::TooLarge))
        }
        Some(Num::Unsigned(v)) => Ok(v),
        Some(Num::Signed(_)) => Err(TelemetryError::new(field(), Reason::Negative)),
        Some(Num::Float(f)) if f < 0.0 => Err(TelemetryError::new(field(), Reason::Negative)),
        Some(Num::Float(_) | Num::NotANumber) => Err(TelemetryError::new(
            field(),
            Reason::WrongType("a non-negative integer"),
        )),
    }
}

struct MessageSeed<'a, 'c> {
    ctx: &'a Ctx<'c>,
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_, '_> {
    type Value = RawMessage;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawMessage, D::Error> {
        d.deserialize_any(SampleVisitor {
            ctx: self.ctx,
            at: At::Message,
        })
        .map(|(sample, samples)| RawMessage {
            single: sample,
            samples,
        })
    }
}

struct SampleVisitor<'a, 'c> {
    ctx: &'a Ctx<'c>,
    at: At,
}

impl SampleVisitor<'_, '_> {
    fn wrong_type<E: de::Error>(&self) -> E {
        self.ctx
            .reject(self.at.to_string(), Reason::WrongType("an object"))
    }
}

/// The keys a sample (or the message) may hold, each at most once.
const SAMPLE_KEYS: [&str; 4] = ["seq", "ts", "values", "samples"];

impl<'de> Visitor<'de> for SampleVisitor<'_, '_> {
    type Value = (Option<RawSample>, Option<Vec<RawSample>>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sample object")
    }

    reject_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let top_level = matches!(self.at, At::Message);
        let mut sample = RawSample {
            seq: None,
            ts: None,
            values: None,
        };
        let mut seen = [false; SAMPLE_KEYS.len()];
        let mut samples = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let known = SAMPLE_KEYS
                .iter()
                .position(|k| *k == key.as_ref())
                .filter(|&i| top_level || SAMPLE_KEYS[i] != "samples");
            let Some(index) = known else {
                // Identity comes from the topic alone: a `device` key is as unknown as any.
                return Err(self
                    .ctx
                    .reject(self.at.field(&quoted_key(&key)), Reason::UnknownField));
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(self.ctx.reject(self.at.field(&key), Reason::DuplicateKey));
            }
            match SAMPLE_KEYS[index] {
                "seq" => sample.seq = Some(map.next_value::<NumSeed>()?.0),
                "ts" => sample.ts = Some(map.next_value::<NumSeed>()?.0),
                "values" => {
                    sample.values = Some(map.next_value_seed(ValuesSeed {
                        ctx: self.ctx,
                        at: self.at,
                    })?);
                }
                _ => samples = Some(map.next_value_seed(BatchSeed { ctx: self.ctx })?),
            }
        }
        let any_sample_field = seen[..3].iter().any(|&s| s);
        Ok((any_sample_field.then_some(sample), samples))
    }
}

struct NumSeed(Num);

impl<'de> de::Deserialize<'de> for NumSeed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num::Unsigned(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(u64::try_from(v).map_or(Num::Signed(v), Num::Unsigned))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num::Float(v))
            }
            fn visit_str<E>(self, _: &str) -> Result<Num, E> {
                Ok(Num::NotANumber)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Num, E> {
                Ok(Num::NotANumber)
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num::NotANumber)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Num, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Num::NotANumber)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Num, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Num::NotANumber)
            }
        }
        d.deserialize_any(V).map(NumSeed)
    }
}

struct BatchSeed<'a, 'c> {
    ctx: &'a Ctx<'c>,
}

impl BatchSeed<'_, '_> {
    fn wrong_type<E: de::Error>(&self) -> E {
        self.ctx.reject("samples", Reason::WrongType("an array"))
    }
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_, '_> {
    type Value = Vec<RawSample>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_, '_> {
    type Value = Vec<RawSample>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of samples")
    }

    reject_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out =
            Vec::with_capacity(seq.size_hint().unwrap_or(16).min(MAX_SAMPLES_PER_MESSAGE));
        loop {
            if out.len() == MAX_SAMPLES_PER_MESSAGE {
                // One more element means the batch is too large; stop reading it right here.
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(self.ctx.reject("samples", Reason::TooManySamples));
                }
                return Ok(out);
            }
            let visitor = SampleVisitor {
                ctx: self.ctx,
                at: At::Sample(out.len()),
            };
            match seq.next_element_seed(SampleSeed(visitor))? {
                Some(sample) => out.push(sample),
                None => return Ok(out),
            }
        }
    }
}

struct SampleSeed<'a, 'c>(SampleVisitor<'a, 'c>);

impl<'de> DeserializeSeed<'de> for SampleSeed<'_, '_> {
    type Value = RawSample;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawSample, D::Error> {
        d.deserialize_any(self.0).map(|(sample, _)| {
            sample.unwrap_or(RawSample {
                seq: None,
                ts: None,
                values: None,
            })
        })
    }
}

struct ValuesSeed<'a, 'c> {
    ctx: &'a Ctx<'c>,
    at: At,
}

impl ValuesSeed<'_, '_> {
    fn wrong_type<E: de::Error>(&self) -> E {
        self.ctx
            .reject(self.at.field("values"), Reason::WrongType("an object"))
    }
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_, '_> {
    type Value = RawValues;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawValues, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_, '_> {
    type Value = RawValues;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of channel values")
    }

    reject_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.wrong_type())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValues, A::Error> {
        let channels = self.ctx.channels;
        let mut out = RawValues {
            values: vec![0.0; channels.len()],
            seen: 0,
            problem: None,
        };
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value = map.next_value::<NumSeed>()?.0;
            if out.problem.is_some() {
                continue;
            }
            let Some(index) = channels.iter().position(|c| c == key.as_ref()) else {
                let quoted = quoted_key(&key).into_owned();
                out.problem = Some((
                    quoted.clone(),
                    Reason::UnknownChannel(quoted, channels.join(",")),
                ));
                continue;
            };
            let bit = channel_bit(index);
            if out.seen & bit != 0 {
                out.problem = Some((key.to_string(), Reason::RepeatedChannel));
                continue;
            }
            out.seen |= bit;
            let number = match value {
                Num::Unsigned(v) => v as f64,
                Num::Signed(v) => v as f64,
                Num::Float(v) => v,
                Num::NotANumber => {
                    out.problem = Some((key.to_string(), Reason::WrongType("a number")));
                    continue;
                }
            };
            let narrowed = number as f32;
            if !narrowed.is_finite() {
                out.problem = Some((key.to_string(), Reason::NotFinite));
                continue;
            }
            if let Some(slot) = out.values.get_mut(index) {
                *slot = narrowed;
            }
        }
        Ok(out)
    }
}

/// Serializes samples as a batch message in the documented schema (used by simulators and tests).
pub fn encode_batch(samples: &[Sample], channels: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + samples.len() * (24 + channels.len() * 16));
    out.extend_from_slice(b"{\"samples\":[");
    for (i, s) in samples.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_sample_into(&mut out, s, channels);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Serializes one sample as a single-sample message.
pub fn encode_sample(sample: &Sample, channels: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + channels.len() * 16);
    encode_sample_into(&mut out, sample, channels);
    out
}

fn encode_sample_into(out: &mut Vec<u8>, s: &Sample, channels: &[String]) {
    use std::io::Write;
    let _ = write!(out, "{{\"seq\":{},\"ts\":{},\"values\":{{", s.seq, s.ts);
    for (j, (name, v)) in channels.iter().zip(&s.values).enumerate() {
        if j > 0 {
            out.push(b',');
        }
        // Channel names are validated identifiers (profile check), so no escaping is needed.
        let _ = write!(out, "\"{name}\":{v}");
    }
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests;
