//! Dead letters that could not be delivered: counted per invocation and logged with what
//! identifies the message (code, field, device, payload length and sha256), so that a reject
//! queue that refuses them is seen at once and the message can still be found.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use vigil_core::documents::payload_sha256;
use vigil_core::ports::{PortError, RejectSink, Rejected};

/// Wraps the reject sink of one invocation.
pub struct CountedRejects<'a> {
    inner: &'a dyn RejectSink,
    undelivered: AtomicU64,
}

impl<'a> CountedRejects<'a> {
    pub fn new(inner: &'a dyn RejectSink) -> Self {
        Self {
            inner,
            undelivered: AtomicU64::new(0),
        }
    }

    /// Dead letters the sink refused so far.
    pub fn undelivered(&self) -> u64 {
        self.undelivered.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for CountedRejects<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedRejects")
            .field("undelivered", &self.undelivered())
            .finish()
    }
}

#[async_trait]
impl RejectSink for CountedRejects<'_> {
    async fn reject(&self, rejected: &Rejected) -> Result<(), PortError> {
        let result = self.inner.reject(rejected).await;
        if let Err(e) = &result {
            self.undelivered.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                message_id = %rejected.message_id,
                device = rejected.device.as_ref().map_or("", |d| d.as_str()),
                code = rejected.error.code(),
                field = %rejected.error.field,
                payload_bytes = rejected.payload.len(),
                payload_sha256 = %payload_sha256(&rejected.payload),
                retryable = e.retryable,
                error = %e,
                "dead letter not delivered"
            );
        }
        result
    }
}
