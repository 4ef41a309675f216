//! The edge's outbox: what a batch publishes (results, shadows, alerts, dead letters) is written
//! here in the store, with the batch, and sent from here once the store has synced it. So a
//! result never leaves ahead of the close that produced it (a device drops the samples a result
//! covers; had the restarted edge lost them, the window would be scored again, short), and a
//! crash between the sync and the sends loses nothing: what is still here at start is sent then
//! (at least once: a crash after a send and before its entry is removed sends it again).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use vigil_core::ports::PortError;

use super::{port_err, EdgeStore};

/// Publishes in the order they were made: key = sequence number, value = topic length (u32,
/// little endian), topic, payload.
pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// One publish waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

impl EdgeStore {
    /// Adds a publish to the outbox (made durable by the next [`EdgeStore::flush`]).
    pub fn outbox_push(&self, topic: &str, payload: &[u8]) -> Result<(), PortError> {
        let txn = self.begin_write("outbox")?;
        {
            let mut table = txn.open_table(OUTBOX).map_err(|e| port_err("outbox", e))?;
            let next = table
                .last()
                .map_err(|e| port_err("outbox", e))?
                .map_or(0, |(k, _)| k.value() + 1);
            let len = u32::try_from(topic.len())
                .map_err(|_| PortError::permanent("outbox", "topic over 4 GiB"))?;
            let mut value = Vec::with_capacity(4 + topic.len() + payload.len());
            value.extend_from_slice(&len.to_le_bytes());
            value.extend_from_slice(topic.as_bytes());
            value.extend_from_slice(payload);
            table
                .insert(next, value.as_slice())
                .map_err(|e| port_err("outbox", e))?;
        }
        txn.commit().map_err(|e| port_err("outbox", e))
    }

    /// Everything in the outbox, oldest first. An entry that does not decode (a damaged page)
    /// is an error naming it, not skipped silently.
    pub fn outbox(&self) -> Result<Vec<Outgoing>, PortError> {
        let txn = self.db.begin_read().map_err(|e| port_err("outbox", e))?;
        let table = txn.open_table(OUTBOX).map_err(|e| port_err("outbox", e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| port_err("outbox", e))? {
            let (k, v) = entry.map_err(|e| port_err("outbox", e))?;
            let (id, bytes) = (k.value(), v.value());
            let decoded = bytes
                .get(..4)
                .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .and_then(|len| {
                    let topic = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
                    Some((topic.to_string(), bytes[4 + len..].to_vec()))
                });
            let Some((topic, payload)) = decoded else {
                return Err(PortError::permanent(
                    "outbox",
                    format!("outbox entry {id} does not decode"),
                ));
            };
            out.push(Outgoing { id, topic, payload });
        }
        Ok(out)
    }

    /// Removes sent entries (not synced: a crash before the next sync sends them again).
    pub fn outbox_remove(&self, ids: &[u64]) -> Result<(), PortError> {
        if ids.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write("outbox")?;
        {
            let mut table = txn.open_table(OUTBOX).map_err(|e| port_err("outbox", e))?;
            for id in ids {
                table.remove(id).map_err(|e| port_err("outbox", e))?;
            }
        }
        txn.commit().map_err(|e| port_err("outbox", e))
    }
}
