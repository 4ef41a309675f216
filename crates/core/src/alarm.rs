//! Alarms: what operators act on, per device and condition (an unhealthy label of the profile).
//!
//! The alert hysteresis ([`crate::alert`]) says when a condition starts and stops; an alarm adds
//! what people do about it. States:
//!
//! | state                    | meaning                                                        |
//! |--------------------------|----------------------------------------------------------------|
//! | `normal`                 | condition absent, nothing owed                                 |
//! | `active_unacknowledged`  | condition present, nobody has taken it (escalates)             |
//! | `active_acknowledged`    | condition present, someone took it (note + who)                |
//! | `cleared_unacknowledged` | condition gone, but nobody saw it: latched until acknowledged  |
//! | `snoozed` until T        | notifications held until T, then back to what the condition says |
//! | `disabled`               | no notifications until enabled                                 |
//!
//! Actions: acknowledge (note, who), snooze (duration), disable, enable, reset. Each carries an
//! id; the ids of the latest actions are kept in the alarm book, so an action applied twice (a
//! retried HTTP request, a redelivered shadow delta) changes nothing the second time.
//!
//! Escalation: an alarm active and unacknowledged for `escalate_after_s` since operators were
//! last told re-notifies one severity higher, at most `escalate_max` times.
//!
//! Time here is the processing clock (`now_ms`, wall time), not device time: a snooze of an hour
//! is an hour of the operators' time. Everything is pure and synchronous; the pipeline calls
//! [`on_window`] with the hysteresis transition of each applied window, and the operators' path
//! calls [`apply_action`] inside the device state's optimistic-concurrency save.

use std::collections::{BTreeMap, VecDeque};

pub mod operate;
pub use operate::{operate, OperateError};

use serde::{Deserialize, Serialize};

use crate::alert::{AlertPolicy, Severity, Transition};

/// History entries kept per alarm (for the fleet page); older ones are dropped.
pub const MAX_HISTORY: usize = 32;
/// Operator action ids remembered per device for idempotence.
pub const MAX_REMEMBERED_ACTIONS: usize = 64;
pub const MAX_ACTION_ID: usize = 64;
pub const MAX_NOTE: usize = 500;
pub const MAX_BY: usize = 64;
/// Longest snooze: a week.
pub const MAX_SNOOZE_S: u64 = 7 * 24 * 3600;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlarmState {
    #[default]
    Normal,
    ActiveUnacknowledged,
    ActiveAcknowledged,
    /// The condition cleared before anyone acknowledged it: latched until acknowledged or reset.
    ClearedUnacknowledged,
    Snoozed {
        until_ms: u64,
    },
    Disabled,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::ActiveUnacknowledged => "active_unacknowledged",
            Self::ActiveAcknowledged => "active_acknowledged",
            Self::ClearedUnacknowledged => "cleared_unacknowledged",
            Self::Snoozed { .. } => "snoozed",
            Self::Disabled => "disabled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub note: String,
    pub at_ms: u64,
}

/// One change of an alarm, for the history shown to operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: u64,
    pub state: AlarmState,
    /// What caused it: `raised`, `cleared`, `escalated`, `snooze_ended`, or an action name.
    pub cause: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub state: AlarmState,
    /// Whether the condition holds now (from the hysteresis), whatever operators did.
    pub active: bool,
    /// Severity of the latest notification (raised by escalation).
    pub severity: Severity,
    pub escalations: u32,
    /// When operators were last told about the active condition; `None` while one is owed.
    pub notified_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
    #[serde(default)]
    pub history: VecDeque<HistoryEntry>,
}

impl Default for Alarm {
    fn default() -> Self {
        Self {
            state: AlarmState::Normal,
            active: false,
            severity: Severity::Warning,
            escalations: 0,
            notified_ms: None,
            acknowledged: None,
            history: VecDeque::new(),
        }
    }
}

impl Alarm {
    fn record(&mut self, at_ms: u64, cause: &str, by: Option<&str>, note: &str) {
        self.history.push_back(HistoryEntry {
            at_ms,
            state: self.state,
            cause: cause.to_string(),
            by: by.map(str::to_string),
            note: note.to_string(),
        });
        while self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
    }

    /// What the condition alone says, forgetting acknowledgement, snooze and escalation.
    fn rearm(&mut self, base: Severity) {
        self.acknowledged = None;
        self.escalations = 0;
        self.severity = base;
        self.notified_ms = None;
        self.state = if self.active {
            AlarmState::ActiveUnacknowledged
        } else {
            AlarmState::Normal
        };
    }
}

/// The alarms of one device (under one profile), stored in its device state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmBook {
    /// By condition (unhealthy label). Absent: normal and never touched.
    #[serde(default)]
    pub alarms: BTreeMap<String, Alarm>,
    /// Ids of the latest operator actions applied, oldest first.
    #[serde(default)]
    pub applied_actions: VecDeque<String>,
}

impl AlarmBook {
    /// The state of a condition's alarm (normal when never raised).
    pub fn state_of(&self, condition: &str) -> AlarmState {
        self.alarms
            .get(condition)
            .map_or(AlarmState::Normal, |a| a.state)
    }
}

/// Why a notification is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeReason {
    /// The hysteresis raised, changed or cleared the condition.
    Transition,
    /// Active and unacknowledged for too long.
    Escalated,
    /// Still active when a snooze ended, or after an enable or reset: operators are told again.
    Reminder,
}

impl NoticeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transition => "transition",
            Self::Escalated => "escalated",
            Self::Reminder => "reminder",
        }
    }
}

/// The alarm as a notification carries it (SNS message attributes, the MQTT alert's body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmNote {
    pub condition: String,
    pub state: AlarmState,
    pub severity: Severity,
    pub escalation: u32,
    pub reason: NoticeReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
}

/// A notification owed to operators: the transition to report and the alarm it concerns.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub transition: Transition,
    pub note: AlarmNote,
}

fn note(condition: &str, alarm: &Alarm, reason: NoticeReason) -> AlarmNote {
    AlarmNote {
        condition: condition.to_string(),
        state: alarm.state,
        severity: alarm.severity,
        escalation: alarm.escalations,
        reason,
        acknowledged_by: alarm.acknowledged.as_ref().map(|a| a.by.clone()),
    }
}

fn raised_severity(s: Severity) -> Severity {
    match s {
        Severity::Info => Severity::Warning,
        Severity::Warning | Severity::Critical => Severity::Critical,
    }
}

/// The condition started. True when operators are to be told (not snoozed or disabled).
fn raise(alarm: &mut Alarm, severity: Severity, now_ms: u64) -> bool {
    alarm.active = true;
    alarm.acknowledged = None;
    alarm.escalations = 0;
    alarm.severity = severity;
    alarm.notified_ms = None;
    match alarm.state {
        AlarmState::Normal | AlarmState::ClearedUnacknowledged => {
            alarm.state = AlarmState::ActiveUnacknowledged;
            alarm.notified_ms = Some(now_ms);
            alarm.record(now_ms, "raised", None, "");
            true
        }
        AlarmState::ActiveUnacknowledged | AlarmState::ActiveAcknowledged => {
            // Raised again without a clear in between (not produced by the hysteresis).
            alarm.state = AlarmState::ActiveUnacknowledged;
            alarm.notified_ms = Some(now_ms);
            true
        }
        AlarmState::Snoozed { .. } | AlarmState::Disabled => {
            alarm.record(now_ms, "raised (held)", None, "");
            false
        }
    }
}

/// The condition stopped. True when operators are to be told.
fn clear(alarm: &mut Alarm, now_ms: u64) -> bool {
    alarm.active = false;
    let told = match alarm.state {
        AlarmState::ActiveUnacknowledged => {
            alarm.state = AlarmState::ClearedUnacknowledged;
            true
        }
        AlarmState::ActiveAcknowledged => {
            alarm.state = AlarmState::Normal;
            true
        }
        AlarmState::Normal | AlarmState::ClearedUnacknowledged => return false,
        AlarmState::Snoozed { .. } | AlarmState::Disabled => false,
    };
    alarm.record(now_ms, "cleared", None, "");
    told
}

/// Applies one window to the alarms: the hysteresis transition it caused (if any), then the
/// clock (snoozes that ended, escalation). Returns the notifications owed, in order.
pub fn on_window(
    policy: &AlertPolicy,
    book: &mut AlarmBook,
    transition: Option<&Transition>,
    now_ms: u64,
) -> Vec<Notice> {
    let mut notices = Vec::new();
    match transition {
        Some(t @ Transition::Raised { label, severity }) => {
            let alarm = book.alarms.entry(label.clone()).or_default();
            if raise(alarm, *severity, now_ms) {
                notices.push(Notice {
                    transition: t.clone(),
                    note: note(label, alarm, NoticeReason::Transition),
                });
            }
        }
        Some(t @ Transition::Changed { from, to, severity }) => {
            let was_told = {
                let old = book.alarms.entry(from.clone()).or_default();
                let active_before = matches!(
                    old.state,
                    AlarmState::ActiveUnacknowledged | AlarmState::ActiveAcknowledged
                );
                clear(old, now_ms);
                active_before
            };
            let alarm = book.alarms.entry(to.clone()).or_default();
            if raise(alarm, *severity, now_ms) {
                notices.push(Notice {
                    transition: t.clone(),
                    note: note(to, alarm, NoticeReason::Transition),
                });
            } else if was_told {
                // The new condition is held, but operators knew of the old one: say it ended.
                let old = &book.alarms[from];
                notices.push(Notice {
                    transition: Transition::Cleared {
                        label: from.clone(),
                    },
                    note: note(from, old, NoticeReason::Transition),
                });
            }
        }
        Some(t @ Transition::Cleared { label }) => {
            let alarm = book.alarms.entry(label.clone()).or_default();
            if clear(alarm, now_ms) {
                notices.push(Notice {
                    transition: t.clone(),
                    note: note(label, alarm, NoticeReason::Transition),
                });
            }
        }
        None => {}
    }
    notices.extend(tick(policy, book, now_ms));
    notices
}

/// The clock's part: snoozes that ended, owed reminders, escalation.
fn tick(policy: &AlertPolicy, book: &mut AlarmBook, now_ms: u64) -> Vec<Notice> {
    let mut notices = Vec::new();
    for (condition, alarm) in &mut book.alarms {
        if let AlarmState::Snoozed { until_ms } = alarm.state {
            if now_ms >= until_ms {
                alarm.state = if alarm.active {
                    AlarmState::ActiveUnacknowledged
                } else {
                    AlarmState::Normal
                };
                alarm.record(now_ms, "snooze_ended", None, "");
            }
        }
        if alarm.state != AlarmState::ActiveUnacknowledged {
            continue;
        }
        let reason = match alarm.notified_ms {
            None => NoticeReason::Reminder,
            Some(told) => match policy.escalate_after_s {
                Some(after)
                    if alarm.escalations < policy.escalate_max
                        && now_ms.saturating_sub(told) >= after.saturating_mul(1000) =>
                {
                    alarm.escalations += 1;
                    alarm.severity = raised_severity(alarm.severity);
                    alarm.record(now_ms, "escalated", None, "");
                    NoticeReason::Escalated
                }
                _ => continue,
            },
        };
        alarm.notified_ms = Some(now_ms);
        notices.push(Notice {
            transition: Transition::Raised {
                label: condition.clone(),
                severity: alarm.severity,
            },
            note: note(condition, alarm, reason),
        });
    }
    notices
}

/// What an operator asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    Acknowledge {
        #[serde(default)]
        note: String,
    },
    Snooze {
        for_s: u64,
    },
    Disable,
    Enable,
    Reset,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Acknowledge { .. } => "acknowledge",
            Self::Snooze { .. } => "snooze",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Reset => "reset",
        }
    }
}

/// An operator's action on one alarm. `id` makes it idempotent: choose a fresh one per intent
/// (a UUID, or the shadow version it came from) and reuse it on retries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    pub id: String,
    pub condition: String,
    pub by: String,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The action itself is malformed (field, what is wrong): retrying cannot help.
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    /// Well-formed but meaningless in the alarm's state (e.g. acknowledging a normal alarm).
    #[error("cannot {action} an alarm that is {state}")]
    NotApplicable {
        action: &'static str,
        state: &'static str,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ActionOutcome {
    Applied {
        from: AlarmState,
        to: AlarmState,
    },
    /// This id was applied before: nothing changed.
    Duplicate {
        state: AlarmState,
    },
}

fn bounded(field: &'static str, v: &str, max: usize) -> Result<(), ActionError> {
    if v.chars().count() > max {
        return Err(ActionError::Invalid(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ActionError::Invalid(
            field,
            "contains control characters".into(),
        ));
    }
    Ok(())
}

impl OperatorAction {
    /// Checks the action against the device's alert policy (the condition must be one of its
    /// unhealthy labels) and the size limits.
    pub fn validate(&self, policy: &AlertPolicy) -> Result<(), ActionError> {
        if self.id.is_empty()
            || self.id.len() > MAX_ACTION_ID
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(ActionError::Invalid(
                "id",
                format!("must be 1 to {MAX_ACTION_ID} characters of A-Z a-z 0-9 - _ . :"),
            ));
        }
        if !policy.is_unhealthy(&self.condition) {
            return Err(ActionError::Invalid(
                "condition",
                format!(
                    "{:?} is not an alarm condition (unhealthy labels: {})",
                    self.condition,
                    policy.unhealthy.join(", ")
                ),
            ));
        }
        if self.by.trim().is_empty() {
            return Err(ActionError::Invalid("by", "is required".into()));
        }
        bounded("by", &self.by, MAX_BY)?;
        match &self.command {
            Command::Acknowledge { note } => bounded("note", note, MAX_NOTE)?,
            Command::Snooze { for_s } if *for_s == 0 || *for_s > MAX_SNOOZE_S => {
                return Err(ActionError::Invalid(
                    "for_s",
                    format!("must be 1 to {MAX_SNOOZE_S} seconds"),
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

/// Applies an operator's action to the alarm book. Validates it first; an id applied before
/// changes nothing and says so.
pub fn apply_action(
    policy: &AlertPolicy,
    book: &mut AlarmBook,
    action: &OperatorAction,
    now_ms: u64,
) -> Result<ActionOutcome, ActionError> {
    action.validate(policy)?;
    if book.applied_actions.iter().any(|id| *id == action.id) {
        return Ok(ActionOutcome::Duplicate {
            state: book.state_of(&action.condition),
        });
    }
    let base = policy.severity_of(&action.condition);
    let mut alarm = book
        .alarms
        .get(&action.condition)
        .cloned()
        .unwrap_or_else(|| Alarm {
            severity: base,
            ..Alarm::default()
        });
    let from = alarm.state;
    let refuse = || ActionError::NotApplicable {
        action: action.command.name(),
        state: from.as_str(),
    };
    let mut note_text = "";
    match (&action.command, from) {
        (Command::Acknowledge { note }, s) => {
            alarm.state = match s {
                AlarmState::ActiveUnacknowledged => AlarmState::ActiveAcknowledged,
                AlarmState::ClearedUnacknowledged => AlarmState::Normal,
                // Acknowledging a snoozed alarm ends the snooze: someone has it now.
                AlarmState::Snoozed { .. } if alarm.active => AlarmState::ActiveAcknowledged,
                AlarmState::Snoozed { .. } => AlarmState::Normal,
                _ => return Err(refuse()),
            };
            alarm.acknowledged = Some(Acknowledgement {
                by: action.by.clone(),
                note: note.clone(),
                at_ms: now_ms,
            });
            note_text = note;
        }
        (Command::Snooze { .. }, AlarmState::Disabled) => return Err(refuse()),
        (Command::Snooze { for_s }, _) => {
            // Operators are told again when it ends, if the condition still holds.
            alarm.notified_ms = None;
            alarm.state = AlarmState::Snoozed {
                until_ms: now_ms.saturating_add(for_s.saturating_mul(1000)),
            };
        }
        (Command::Disable, AlarmState::Disabled) => return Err(refuse()),
        (Command::Disable, _) => alarm.state = AlarmState::Disabled,
        (Command::Enable, AlarmState::Disabled) => alarm.rearm(base),
        (Command::Enable, _) => return Err(refuse()),
        (Command::Reset, AlarmState::Disabled) => return Err(refuse()),
        (Command::Reset, _) => alarm.rearm(base),
    }
    alarm.record(now_ms, action.command.name(), Some(&action.by), note_text);
    let to = alarm.state;
    book.alarms.insert(action.condition.clone(), alarm);
    book.applied_actions.push_back(action.id.clone());
    while book.applied_actions.len() > MAX_REMEMBERED_ACTIONS {
        book.applied_actions.pop_front();
    }
    Ok(ActionOutcome::Applied { from, to })
}

#[cfg(test)]
#[path = "alarm/tests.rs"]
mod tests;
