//! Rejected messages to the dead-letter queue, with the reason as attributes so an operator can
//! see at a glance what a device did wrong.

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use vigil_core::documents::{reject_document_within, SQS_DEAD_LETTER_MAX_BYTES};
use vigil_core::ports::{PortError, RejectSink, Rejected};

use crate::error::port_error;

const PORT: &str = "rejects";

#[derive(Clone, Debug)]
pub struct SqsRejectSink {
    client: Client,
    queue_url: String,
}

impl SqsRejectSink {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("data type is set")
}

#[async_trait]
impl RejectSink for SqsRejectSink {
    async fn reject(&self, rejected: &Rejected) -> Result<(), PortError> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(reject_document_within(rejected, SQS_DEAD_LETTER_MAX_BYTES).to_string())
            .message_attributes("code", attr(rejected.error.code()));
        if let Some(d) = &rejected.device {
            req = req.message_attributes("device", attr(d.as_str()));
        }
        req.send().await.map_err(|e| {
            port_error(
                PORT,
                &format!("dead-letter message {}", rejected.message_id),
                e,
            )
        })?;
        Ok(())
    }
}
