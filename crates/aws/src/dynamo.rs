//! DynamoDB adapters: the window store, the device state and the device registry, in one table
//! (hash key `pk`, range key `sk`, TTL attribute `expires_at`).
//!
//! Key layout:
//!
//! | item            | pk                              | sk                     | attributes |
//! |-----------------|---------------------------------|------------------------|------------|
//! | window marker   | `W#<device>#<profile>`          | window id, 20 digits   | `st` (`claimed`; `done` from older versions), `lease_until`, `c_<tag>` (chunks stored with the claim), `expires_at` |
//! | chunk           | `C#<device>#<profile>#<window>` | chunk id               | `d` (binary samples, see `codec`), `expires_at` |
//! | device state    | `S#<device>#<profile>`          | `STATE`                | `state` (JSON), `version` |
//! | registry        | `DEVICE#<thing>`                | `PROFILE`              | `profile` (written by Terraform) |
//!
//! One write per message, idempotent per (device, seq), without transactions (IAM grants none):
//! - `append` is one `PutItem` of the chunk with `attribute_not_exists(pk)`: a redelivery finds
//!   its chunk and changes nothing. Nothing is counted per message (a counter would be a second
//!   write): the pipeline checks a window when its last seq is seen or its close deadline is
//!   crossed, by reading its chunks (`load`, one strongly consistent Query, and the marker).
//! - windows close without claims (`commits_first`): the device state is a versioned item saved
//!   with `version = :expected`, and that save is the close: it applies the window to the alert
//!   state, records it closed (`closed_through` / `closed_after`) and keeps the verdict as
//!   `pending` for a retry of the committing delivery, so `finish` writes nothing. The message
//!   holding a window's last seq stores no chunk: its commit is its one write.
//! - markers (`W#…`) are what the previous layout wrote when it claimed a window: still read
//!   (a chunk stored with a claim, `st = done` of older versions), never written by the
//!   pipeline. Chunk items expire by TTL (free), not by deletes (billed); appends to a closed
//!   window are stored and never read (the pipeline finds the window closed in the state).
//!
//! Per 60-sample window of one-sample messages: 59 chunk puts and the state save: 60 writes,
//! 1.0 per sample; reads only when a window's last seq comes or a deadline is crossed.
//!
//! Every call asks for `ReturnConsumedCapacity` and adds it to [`Usage`].

pub mod state_item;

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure,
};
use aws_sdk_dynamodb::Client;
use vigil_core::ports::{
    AppendOutcome, Chunk, Claim, DeviceRegistry, DeviceState, DeviceStateStore, PortError,
    StreamKey, Versioned, WindowInfo, WindowOutcome, WindowState, WindowStore,
};
use vigil_core::window::{dedup_by_seq, WindowId};
use vigil_core::{DeviceId, Sample};

use crate::codec;
use crate::error::port_error;

type Item = HashMap<String, AttributeValue>;

/// Capacity units consumed, as reported by DynamoDB (`ReturnConsumedCapacity = TOTAL`), in
/// thousandths so that they can be summed atomically.
#[derive(Debug, Default)]
pub struct Usage {
    read_milli: AtomicU64,
    write_milli: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
}

/// A snapshot of [`Usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct UsageSnapshot {
    pub read_units: f64,
    pub write_units: f64,
    pub read_requests: u64,
    pub write_requests: u64,
}

impl Usage {
    fn add(&self, c: Option<&ConsumedCapacity>, write: bool) {
        let (counter, requests) = if write {
            (&self.write_milli, &self.writes)
        } else {
            (&self.read_milli, &self.reads)
        };
        requests.fetch_add(1, Ordering::Relaxed);
        if let Some(units) = c.and_then(ConsumedCapacity::capacity_units) {
            counter.fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
        }
    }

    /// A write whose condition failed: billed (at least 1 WCU), but the error carries no
    /// consumed capacity.
    fn add_failed_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_milli.fetch_add(1000, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            read_units: self.read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            read_requests: self.reads.load(Ordering::Relaxed),
            write_requests: self.writes.load(Ordering::Relaxed),
        }
    }

    /// Returns the usage so far and starts again from zero (per invocation metrics).
    pub fn take(&self) -> UsageSnapshot {
        UsageSnapshot {
            read_units: self.read_milli.swap(0, Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.write_milli.swap(0, Ordering::Relaxed) as f64 / 1000.0,
            read_requests: self.reads.swap(0, Ordering::Relaxed),
            write_requests: self.writes.swap(0, Ordering::Relaxed),
        }
    }
}

/// The one table, shared by the adapters below.
#[derive(Clone, Debug)]
pub struct Table {
    client: Client,
    name: String,
    ttl: Duration,
    usage: Arc<Usage>,
}

impl Table {
    /// `ttl`: how long window data is kept after its last write (manifests, chunks).
    pub fn new(client: Client, name: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            name: name.into(),
            ttl,
            usage: Arc::new(Usage::default()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    fn expires_at(&self, now_ms: u64) -> AttributeValue {
        n((now_ms / 1000) + self.ttl.as_secs())
    }

    /// A conditional `PutItem`: `true` when written, `false` when its condition failed (a
    /// redelivery, or another writer first). Both are counted in the usage.
    async fn put_if(
        &self,
        put: PutItemFluentBuilder,
        port: &'static str,
        what: impl FnOnce() -> String,
    ) -> Result<bool, PortError> {
        let res = put
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match res {
            Ok(out) => {
                self.usage.add(out.consumed_capacity(), true);
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.usage.add_failed_write();
                Ok(false)
            }
            Err(e) => Err(port_error(port, &what(), e)),
        }
    }

    /// A conditional `UpdateItem` on a window manifest: the item as `returned` asks when written; when its
    /// condition failed, the item as it was (from the error, or read again: older emulators do
    /// not return it), `None` when there is none.
    async fn update_manifest_if(
        &self,
        update: UpdateItemFluentBuilder,
        returned: ReturnValue,
        stream: &StreamKey,
        window: WindowId,
        what: impl FnOnce() -> String,
    ) -> Result<Result<Item, Option<Item>>, PortError> {
        let res = update
            .return_values(returned)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match res {
            Ok(out) => {
                self.usage.add(out.consumed_capacity(), true);
                Ok(Ok(out.attributes.unwrap_or_default()))
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.usage.add_failed_write();
                let old = match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                };
                match old {
                    Some(item) => Ok(Err(Some(item))),
                    None => Ok(Err(self.get_manifest(stream, window).await?)),
                }
            }
            Err(e) => Err(port_error(PORT_WINDOWS, &what(), e)),
        }
    }

    /// A window manifest (state, lease, received count), read consistently.
    async fn get_manifest(
        &self,
        stream: &StreamKey,
        window: WindowId,
    ) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .key("pk", s(manifest_pk(stream)))
            .key("sk", s(window_sk(window)))
            .consistent_read(true)
            .projection_expression("st, lease_until, received")
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    PORT_WINDOWS,
                    &format!("get window {window} of {}", stream.device),
                    e,
                )
            })?;
        self.usage.add(out.consumed_capacity(), false);
        Ok(out.item)
    }

    /// Every item `query` returns, following its pages, with the capacity they consumed counted.
    async fn query_all(
        &self,
        query: QueryFluentBuilder,
        what: impl Fn() -> String,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = query
                .clone()
                .table_name(&self.name)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| port_error(PORT_WINDOWS, &what(), e))?;
            self.usage.add(out.consumed_capacity(), false);
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_u64(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

fn window_sk(window: WindowId) -> String {
    format!("{window:020}")
}

fn manifest_pk(stream: &StreamKey) -> String {
    format!("W#{}#{}", stream.device, stream.profile)
}

fn chunk_pk(stream: &StreamKey, window: WindowId) -> String {
    format!(
        "C#{}#{}#{}",
        stream.device,
        stream.profile,
        window_sk(window)
    )
}

fn state_pk(stream: &StreamKey) -> String {
    format!("S#{}#{}", stream.device, stream.profile)
}

/// An 8-character tag for a chunk id in the manifest's set: 48 bits of FNV-1a over the id.
/// Tags only need to be distinct among the chunks of one window.
pub fn chunk_tag(id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..8)
        .map(|i| ALPHABET[((hash >> (i * 6)) & 63) as usize] as char)
        .collect()
}

fn info_of(window: WindowId, item: &Item) -> WindowInfo {
    let state = match get_s(item, "st") {
        Some("done") => WindowState::Done,
        Some("claimed") => WindowState::Claimed {
            until_ms: get_u64(item, "lease_until").unwrap_or(0),
        },
        _ => WindowState::Open,
    };
    WindowInfo {
        window,
        state,
        received: get_u64(item, "received").map_or(0, |r| r.min(u64::from(u32::MAX)) as u32),
    }
}

const PORT_WINDOWS: &str = "windows";
const PORT_STATES: &str = "states";
const PORT_REGISTRY: &str = "registry";

/// Windows and their chunks in DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoWindowStore {
    table: Table,
}

impl DynamoWindowStore {
    pub fn new(table: Table) -> Self {
        Self { table }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    async fn put_chunk(
        &self,
        stream: &StreamKey,
        window: WindowId,
        chunk: &Chunk,
        now_ms: u64,
    ) -> Result<bool, PortError> {
        let data = encode(stream, chunk)?;
        let put = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item("pk", s(chunk_pk(stream, window)))
            .item("sk", s(&chunk.id))
            .item("d", AttributeValue::B(Blob::new(data)))
            .item("expires_at", self.table.expires_at(now_ms))
            .condition_expression("attribute_not_exists(pk)");
        self.table
            .put_if(put, PORT_WINDOWS, || {
                format!(
                    "put chunk {} of window {window} of {}",
                    chunk.id, stream.device
                )
            })
            .await
    }

    /// The claim update: from absent (or an expired lease) to `claimed`, with `pending` stored
    /// as a `c_<tag>` attribute of the marker.
    async fn claim_marker(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
        pending: Option<&Chunk>,
    ) -> Result<(Claim, Option<bool>), PortError> {
        let mut set = "SET st = :claimed, lease_until = :until, expires_at = :exp".to_string();
        let attr = pending.map(|c| format!("c_{}", chunk_tag(&c.id)));
        let mut update = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .key("pk", s(manifest_pk(stream)))
            .key("sk", s(window_sk(window)))
            .condition_expression(
                // `open`: a manifest of the previous layout, still counting when it was deployed.
                "attribute_not_exists(st) OR st = :open OR (st = :claimed AND lease_until <= :now)",
            )
            .expression_attribute_values(":open", s("open"))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":until", n(now_ms + lease_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":exp", self.table.expires_at(now_ms));
        if let Some(chunk) = pending {
            set.push_str(", #c = :d");
            update = update
                .expression_attribute_names("#c", attr.clone().unwrap_or_default())
                .expression_attribute_values(
                    ":d",
                    AttributeValue::B(Blob::new(encode(stream, chunk)?)),
                );
        }
        let claimed = self
            .table
            .update_manifest_if(
                update.update_expression(set),
                ReturnValue::AllOld,
                stream,
                window,
                || format!("claim window {window} of {}", stream.device),
            )
            .await?;
        Ok(match claimed {
            // The item before the claim tells whether our chunk was there already.
            Ok(old) => (Claim::Granted, attr.map(|a| !old.contains_key(&a))),
            Err(None) => (Claim::Busy, None),
            Err(Some(item)) => match info_of(window, &item).state {
                WindowState::Done => (Claim::Done, None),
                // Open can only be seen here if the item changed in between: someone
                // else is at it.
                WindowState::Claimed { .. } | WindowState::Open => (Claim::Busy, None),
            },
        })
    }

    /// The window's marker, read consistently (its state and the chunks stored with claims).
    async fn marker(
        &self,
        stream: &StreamKey,
        window: WindowId,
    ) -> Result<Option<Item>, PortError> {
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .key("pk", s(manifest_pk(stream)))
            .key("sk", s(window_sk(window)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    PORT_WINDOWS,
                    &format!("get window {window} of {}", stream.device),
                    e,
                )
            })?;
        self.table.usage.add(out.consumed_capacity(), false);
        Ok(out.item)
    }
}

fn encode(stream: &StreamKey, chunk: &Chunk) -> Result<Vec<u8>, PortError> {
    codec::encode(&chunk.samples).map_err(|e| {
        PortError::permanent(
            PORT_WINDOWS,
            format!("chunk {} of {}: {e}", chunk.id, stream.device),
        )
    })
}

fn decode_into(
    out: &mut Vec<Sample>,
    data: &Blob,
    stream: &StreamKey,
    what: &str,
) -> Result<(), PortError> {
    let decoded = codec::decode(data.as_ref()).map_err(|e| {
        PortError::permanent(
            PORT_WINDOWS,
            format!("chunk {what} of {}: {e}", stream.device),
        )
    })?;
    out.extend(decoded);
    Ok(())
}

#[async_trait]
impl WindowStore for DynamoWindowStore {
    async fn append(
        &self,
        stream: &StreamKey,
        window: WindowId,
        chunk: &Chunk,
        now_ms: u64,
    ) -> Result<AppendOutcome, PortError> {
        let stored = self.put_chunk(stream, window, chunk, now_ms).await?;
        Ok(AppendOutcome {
            stored,
            info: WindowInfo {
                window,
                state: WindowState::Open,
                received: 0,
            },
        })
    }

    async fn load(&self, stream: &StreamKey, window: WindowId) -> Result<Vec<Sample>, PortError> {
        let query = self
            .table
            .client
            .query()
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(chunk_pk(stream, window)));
        let (items, marker) = futures_util::future::try_join(
            self.table.query_all(query, || {
                format!("load window {window} of {}", stream.device)
            }),
            self.marker(stream, window),
        )
        .await?;
        // Items come sorted by chunk id: the first stored copy (by id) wins, as in memory.
        let mut samples = Vec::new();
        for item in &items {
            if let Some(AttributeValue::B(data)) = item.get("d") {
                decode_into(&mut samples, data, stream, get_s(item, "sk").unwrap_or("?"))?;
            }
        }
        if let Some(marker) = &marker {
            let mut claimed: Vec<(&String, &Blob)> = marker
                .iter()
                .filter_map(|(k, v)| match v {
                    AttributeValue::B(b) if k.starts_with("c_") => Some((k, b)),
                    _ => None,
                })
                .collect();
            claimed.sort_by_key(|(k, _)| *k);
            for (k, data) in claimed {
                decode_into(&mut samples, data, stream, k)?;
            }
        }
        dedup_by_seq(&mut samples);
        Ok(samples)
    }

    async fn windows(
        &self,
        stream: &StreamKey,
        range: RangeInclusive<WindowId>,
    ) -> Result<Vec<WindowInfo>, PortError> {
        if range.is_empty() {
            return Ok(vec![]);
        }
        let query = self
            .table
            .client
            .query()
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", s(manifest_pk(stream)))
            .expression_attribute_values(":a", s(window_sk(*range.start())))
            .expression_attribute_values(":b", s(window_sk(*range.end())))
            .projection_expression("sk, st, lease_until");
        let items = self
            .table
            .query_all(query, || {
                format!("list windows {range:?} of {}", stream.device)
            })
            .await?;
        let mut known: HashMap<WindowId, WindowInfo> = items
            .iter()
            .filter_map(|item| {
                let w = get_s(item, "sk").and_then(|v| v.parse().ok())?;
                Some((w, info_of(w, item)))
            })
            .collect();
        // Windows nobody claimed have no marker: listed as open (their chunks tell the rest).
        Ok(range
            .map(|w| {
                known.remove(&w).unwrap_or(WindowInfo {
                    window: w,
                    state: WindowState::Open,
                    received: 0,
                })
            })
            .collect())
    }

    async fn claim(
        &self,
        stream: &StreamKey,
        window: WindowId,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Claim, PortError> {
        Ok(self
            .claim_marker(stream, window, now_ms, lease_ms, None)
            .await?
            .0)
    }

    /// Windows close without claims: the state save is the close's one write (see the module
    /// documentation); `claim` stays for windows a previous layout left claimed.
    fn commits_first(&self) -> bool {
        true
    }

    /// Nothing to write: a window is closed when the device state saved with its result says
    /// so (`DeviceState::is_closed`), in the same conditional write that applied it. A second
    /// write here would cost a write unit per window and a round trip.
    async fn finish(
        &self,
        _stream: &StreamKey,
        _window: WindowId,
        _outcome: &WindowOutcome,
    ) -> Result<(), PortError> {
        Ok(())
    }
}

/// Device state (alert hysteresis, baseline) as a versioned JSON attribute.
#[derive(Clone, Debug)]
pub struct DynamoStateStore {
    table: Table,
}

impl DynamoStateStore {
    pub fn new(table: Table) -> Self {
        Self { table }
    }
}

#[async_trait]
impl DeviceStateStore for DynamoStateStore {
    async fn load(&self, stream: &StreamKey) -> Result<Versioned<DeviceState>, PortError> {
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .key("pk", s(state_pk(stream)))
            .key("sk", s("STATE"))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| {
                port_error(
                    PORT_STATES,
                    &format!("load state of {} ({})", stream.device, stream.profile),
                    e,
                )
            })?;
        self.table.usage.add(out.consumed_capacity(), false);
        let Some(item) = out.item else {
            return Ok(Versioned::default());
        };
        let version = get_u64(&item, "version").unwrap_or(0);
        let json = state_item::decode(&item).map_err(|e| {
            PortError::permanent(
                PORT_STATES,
                format!(
                    "state of {} ({}) is not readable: {e}",
                    stream.device, stream.profile
                ),
            )
        })?;
        let value = match json {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                PortError::permanent(
                    PORT_STATES,
                    format!(
                        "state of {} ({}) is not readable: {e}",
                        stream.device, stream.profile
                    ),
                )
            })?,
            None => DeviceState::default(),
        };
        Ok(Versioned { value, version })
    }

    async fn save(
        &self,
        stream: &StreamKey,
        state: &DeviceState,
        expected: u64,
    ) -> Result<bool, PortError> {
        let json = serde_json::to_string(state).map_err(|e| {
            PortError::permanent(PORT_STATES, format!("state of {}: {e}", stream.device))
        })?;
        let mut req = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item("pk", s(state_pk(stream)))
            .item("sk", s("STATE"))
            .item("version", n(expected + 1));
        let (name, value) = state_item::encode(json);
        req = req.item(name, value);
        req = if expected == 0 {
            req.condition_expression("attribute_not_exists(pk)")
        } else {
            req.condition_expression("version = :v")
                .expression_attribute_values(":v", n(expected))
        };
        self.table
            .put_if(req, PORT_STATES, || {
                format!("save state of {} ({})", stream.device, stream.profile)
            })
            .await
    }
}

/// Device → profile, from the items Terraform writes (`DEVICE#<thing>` / `PROFILE`), cached
/// for a short while per process.
#[derive(Debug)]
pub struct DynamoRegistry {
    table: Table,
    ttl: Duration,
    cache: Mutex<HashMap<DeviceId, (Option<String>, Instant)>>,
}

impl DynamoRegistry {
    pub fn new(table: Table, cache_ttl: Duration) -> Self {
        Self {
            table,
            ttl: cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl DeviceRegistry for DynamoRegistry {
    async fn profile_of(&self, device: &DeviceId) -> Result<Option<String>, PortError> {
        if let Some((profile, at)) = self.cache.lock().expect("lock").get(device) {
            if at.elapsed() < self.ttl {
                return Ok(profile.clone());
            }
        }
        let out = self
            .table
            .client
            .get_item()
            .table_name(&self.table.name)
            .key("pk", s(format!("DEVICE#{device}")))
            .key("sk", s("PROFILE"))
            .projection_expression("#p")
            .expression_attribute_names("#p", "profile")
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| port_error(PORT_REGISTRY, &format!("profile of {device}"), e))?;
        self.table.usage.add(out.consumed_capacity(), false);
        let profile = out
            .item
            .as_ref()
            .and_then(|i| get_s(i, "profile"))
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        self.cache
            .lock()
            .expect("lock")
            .insert(device.clone(), (profile.clone(), Instant::now()));
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_and_distinct() {
        let ids: Vec<String> = (0..10_000u64)
            .map(|i| {
                Chunk::new(vec![Sample {
                    seq: i,
                    ts: 0,
                    values: vec![],
                }])
                .id
            })
            .collect();
        let mut tags: Vec<String> = ids.iter().map(|i| chunk_tag(i)).collect();
        assert!(tags.iter().all(|t| t.len() == 8));
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ids.len());
    }

    #[test]
    fn keys_sort_by_window() {
        assert!(window_sk(9) < window_sk(10));
        assert_eq!(window_sk(u64::MAX).len(), 20);
    }
}
