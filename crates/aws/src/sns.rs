//! Alerts to operators through SNS, on transitions, escalations and reminders. Message attributes
//! (`device`, `severity`, `condition`, `profile`, `transition`, and the alarm's `alarm_state`,
//! `alarm_reason`, `escalation`) let subscriptions filter; the subject is one readable line, the
//! body a short text followed by the event as JSON.

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
    let mut line = alert.subject();
    if let Some(n) = alert.alarm.as_ref().filter(|n| n.escalation > 0) {
        line = format!("{line} (escalation {})", n.escalation);
    }
    let mut out: String = line
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
    let alarm = alert.alarm.as_ref().map_or(String::new(), |n| {
        let mut line = format!("\nAlarm: {} ({})", n.state.as_str(), n.reason.as_str());
        if n.escalation > 0 {
            line.push_str(&format!(", escalation {}", n.escalation));
        }
        if let Some(by) = &n.acknowledged_by {
            line.push_str(&format!(", acknowledged by {by}"));
        }
        line
    });
    let json = serde_json::to_string_pretty(alert).unwrap_or_default();
    format!(
        "{what}{alarm}\n\nProfile: {}\nWindow: {}\nDevice time: {}\nModel: {}\n\n-- event --\n{json}\n",
        alert.profile,
        alert.window,
        iso8601_ms(alert.ts),
        alert.model_version,
    )
}

fn attr(v: &str) -> MessageAttributeValue {
    typed_attr("String", v)
}

fn number(v: u32) -> MessageAttributeValue {
    typed_attr("Number", &v.to_string())
}

fn typed_attr(data_type: &str, v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(v)
        .build()
        .expect("data type is set")
}

#[async_trait]
impl AlertSink for SnsAlertSink {
    async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError> {
        let mut publish = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(alert))
            .message(body(alert))
            .message_attributes("device", attr(alert.device.as_str()))
            .message_attributes("severity", attr(alert.transition.severity().as_str()))
            .message_attributes("condition", attr(alert.transition.condition()))
            .message_attributes("profile", attr(&alert.profile))
            .message_attributes("transition", attr(alert.transition.kind()));
        if let Some(n) = &alert.alarm {
            publish = publish
                .message_attributes("alarm_state", attr(n.state.as_str()))
                .message_attributes("alarm_reason", attr(n.reason.as_str()))
                .message_attributes("escalation", number(n.escalation));
        }
        publish.send().await.map_err(|e| {
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
