//! Alerts to operators through SNS, on transitions only. Message attributes (`device`,
//! `severity`, `condition`, `profile`, `transition`) let subscriptions filter; the subject is one
//! readable line, the body a short text followed by the event as JSON.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sns::Client;
use vigil_core::alert::Transition;
use vigil_core::ports::{AlertEvent, AlertSink, PortError};

use crate::error::port_error;
use crate::time::iso8601_ms;

const PORT: &str = "alerts";
/// SNS subjects: ASCII, no line breaks, under 100 characters.
const MAX_SUBJECT: usize = 99;

#[derive(Clone, Debug)]
pub struct SnsAlertSink {
    client: Client,
    topic_arn: String,
}

impl SnsAlertSink {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

/// The subject as SNS accepts it: printable ASCII, at most 99 characters.
pub fn subject(alert: &AlertEvent) -> String {
    let mut out: String = alert
        .subject()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > MAX_SUBJECT {
        out.truncate(MAX_SUBJECT - 3);
        out.push_str("...");
    }
    out.trim().to_string()
}

/// A readable body followed by the event as JSON (for scripts subscribed by e-mail or SQS).
pub fn body(alert: &AlertEvent) -> String {
    let what = match &alert.transition {
        Transition::Raised { label, severity } => format!(
            "Device {} entered condition \"{label}\" ({} severity).",
            alert.device,
            severity.as_str()
        ),
        Transition::Changed { from, to, severity } => format!(
            "Device {} changed condition from \"{from}\" to \"{to}\" ({} severity).",
            alert.device,
            severity.as_str()
        ),
        Transition::Cleared { label } => format!(
            "Device {} is healthy again; the alert for \"{label}\" is cleared.",
            alert.device
        ),
    };
    let json = serde_json::to_string_pretty(alert).unwrap_or_default();
    format!(
        "{what}\n\nProfile: {}\nWindow: {}\nDevice time: {}\nModel: {}\n\n-- event --\n{json}\n",
        alert.profile,
        alert.window,
        iso8601_ms(alert.ts),
        alert.model_version,
    )
}

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("data type is set")
}

#[async_trait]
impl AlertSink for SnsAlertSink {
    async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError> {
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(alert))
            .message(body(alert))
            .message_attributes("device", attr(alert.device.as_str()))
            .message_attributes("severity", attr(alert.transition.severity().as_str()))
            .message_attributes("condition", attr(alert.transition.condition()))
            .message_attributes("profile", attr(&alert.profile))
            .message_attributes("transition", attr(alert.transition.kind()))
            .send()
            .await
            .map_err(|e| {
                port_error(
                    PORT,
                    &format!(
                        "publish {} alert of {} (window {})",
                        alert.transition.kind(),
                        alert.device,
                        alert.window
                    ),
                    e,
                )
            })?;
        Ok(())
    }
}
