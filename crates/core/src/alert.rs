//! Alert policy: hysteresis and cooldown over the stream of window verdicts; emits transitions
//! only, so operators hear about a machine when its condition changes, not on every window.
//!
//! Time here is the device's own time (the window's last sample `ts`), so a replay of the same
//! data raises the same alerts whatever the wall clock says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicy {
    /// Labels that count as unhealthy; every other label is healthy.
    pub unhealthy: Vec<String>,
    /// Consecutive unhealthy windows that raise an alert.
    #[serde(default = "one")]
    pub raise_after: u32,
    /// Consecutive healthy windows that clear it.
    #[serde(default = "one")]
    pub clear_after: u32,
    /// Least time between two raised alerts of a device, in seconds of device time.
    #[serde(default)]
    pub cooldown_s: u64,
    /// Severity per unhealthy label (default: warning).
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
    /// An alarm active and unacknowledged this long (seconds, since operators were last told)
    /// re-notifies one severity higher; `None`: no escalation. See [`crate::alarm`].
    #[serde(default)]
    pub escalate_after_s: Option<u64>,
    /// At most this many escalations per raise.
    #[serde(default = "two")]
    pub escalate_max: u32,
}

fn one() -> u32 {
    1
}

fn two() -> u32 {
    2
}

impl AlertPolicy {
    pub(crate) fn validate(&self, labels: &[String]) -> Result<(), (&'static str, String)> {
        if let Some(bad) = self.unhealthy.iter().find(|l| !labels.contains(l)) {
            return Err((
                "unhealthy",
                format!(
                    "{bad:?} is not a label of the scorer ({})",
                    labels.join(", ")
                ),
            ));
        }
        if self.raise_after == 0 {
            return Err(("raise_after", "must be at least 1".into()));
        }
        if self.clear_after == 0 {
            return Err(("clear_after", "must be at least 1".into()));
        }
        if self.escalate_after_s == Some(0) {
            return Err(("escalate_after_s", "must be at least 1 when set".into()));
        }
        if let Some(bad) = self.severity.keys().find(|l| !self.unhealthy.contains(l)) {
            return Err(("severity", format!("{bad:?} is not an unhealthy label")));
        }
        Ok(())
    }

    pub fn is_unhealthy(&self, label: &str) -> bool {
        self.unhealthy.iter().any(|l| l == label)
    }

    pub fn severity_of(&self, label: &str) -> Severity {
        self.severity
            .get(label)
            .copied()
            .unwrap_or(Severity::Warning)
    }
}

/// Per-device alert state, persisted with the device state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// The label an open alert is about; `None` when healthy.
    pub active: Option<String>,
    /// Consecutive unhealthy windows, and the label of the latest of them.
    pub unhealthy_streak: u32,
    pub streak_label: Option<String>,
    /// Consecutive windows of `streak_label` (for a change of condition while alerting).
    pub label_streak: u32,
    pub healthy_streak: u32,
    /// Device time of the last raised alert, ms.
    pub last_raised_ts: Option<u64>,
    /// Windows judged `uncertain` (below the profile's `min_confidence`): they leave the streaks
    /// as they were, so they neither raise nor clear; counted here.
    #[serde(default)]
    pub uncertain: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    Raised {
        label: String,
        severity: Severity,
    },
    /// Still unhealthy, but the condition changed (e.g. reduced efficiency → close to failure).
    Changed {
        from: String,
        to: String,
        severity: Severity,
    },
    Cleared {
        label: String,
    },
}

impl Transition {
    pub fn severity(&self) -> Severity {
        match self {
            Self::Raised { severity, .. } | Self::Changed { severity, .. } => *severity,
            Self::Cleared { .. } => Severity::Info,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Raised { .. } => "raised",
            Self::Changed { .. } => "changed",
            Self::Cleared { .. } => "cleared",
        }
    }

    /// The condition the device is in after the transition.
    pub fn condition(&self) -> &str {
        match self {
            Self::Raised { label, .. } => label,
            Self::Changed { to, .. } => to,
            Self::Cleared { .. } => "healthy",
        }
    }
}

/// Applies one window's verdict; returns the transition it causes, if any.
pub fn apply(
    policy: &AlertPolicy,
    state: &mut AlertState,
    label: &str,
    ts: u64,
) -> Option<Transition> {
    if label == crate::scorer::UNCERTAIN_LABEL {
        state.uncertain = state.uncertain.saturating_add(1);
        return None;
    }
    if policy.is_unhealthy(label) {
        state.healthy_streak = 0;
        state.unhealthy_streak = state.unhealthy_streak.saturating_add(1);
        if state.streak_label.as_deref() == Some(label) {
            state.label_streak = state.label_streak.saturating_add(1);
        } else {
            state.streak_label = Some(label.to_string());
            state.label_streak = 1;
        }
        match state.active.clone() {
            None => {
                // Device time that went back (a clock reset, or an earlier window stamped far
                // in the future) ends the cooldown: it must never hold alerts back for good.
                let cooled = state
                    .last_raised_ts
                    .is_none_or(|t| ts < t || ts - t >= policy.cooldown_s.saturating_mul(1000));
                if state.unhealthy_streak >= policy.raise_after && cooled {
                    state.active = Some(label.to_string());
                    state.last_raised_ts = Some(ts);
                    return Some(Transition::Raised {
                        label: label.to_string(),
                        severity: policy.severity_of(label),
                    });
                }
            }
            Some(active) if active != label && state.label_streak >= policy.raise_after => {
                state.active = Some(label.to_string());
                return Some(Transition::Changed {
                    from: active,
                    to: label.to_string(),
                    severity: policy.severity_of(label),
                });
            }
            Some(_) => {}
        }
    } else {
        state.unhealthy_streak = 0;
        state.label_streak = 0;
        state.streak_label = None;
        state.healthy_streak = state.healthy_streak.saturating_add(1);
        if let Some(active) = state.active.clone() {
            if state.healthy_streak >= policy.clear_after {
                state.active = None;
                return Some(Transition::Cleared { label: active });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AlertPolicy {
        AlertPolicy {
            unhealthy: vec!["3".into(), "20".into()],
            raise_after: 2,
            clear_after: 3,
            cooldown_s: 150,
            severity: [("3".to_string(), Severity::Critical)]
                .into_iter()
                .collect(),
            escalate_after_s: None,
            escalate_max: 2,
        }
    }

    fn run(labels: &[&str], step_ms: u64) -> Vec<(usize, Transition)> {
        let p = policy();
        let mut s = AlertState::default();
        labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| apply(&p, &mut s, l, i as u64 * step_ms).map(|t| (i, t)))
            .collect()
    }

    #[test]
    fn hysteresis_raises_changes_and_clears_once() {
        let t = run(
            &[
                "100", "20", "100", "20", "20", "20", "3", "3", "100", "100", "20", "100", "100",
                "100",
            ],
            60_000,
        );
        assert_eq!(
            t,
            vec![
                (
                    4,
                    Transition::Raised {
                        label: "20".into(),
                        severity: Severity::Warning
                    }
                ),
                (
                    7,
                    Transition::Changed {
                        from: "20".into(),
                        to: "3".into(),
                        severity: Severity::Critical
                    }
                ),
                (13, Transition::Cleared { label: "3".into() }),
            ]
        );
    }

    #[test]
    fn uncertain_neither_raises_nor_clears_and_is_counted() {
        let u = crate::scorer::UNCERTAIN_LABEL;
        // Unhealthy, uncertain, unhealthy: the streak carries over the uncertain window (raise at 2).
        let t = run(&["20", u, "20", u, u, "100", u, "100", "100"], 60_000);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(matches!(t[0], (2, Transition::Raised { .. })), "{t:?}");
        // Clearing needs three healthy windows; the uncertain ones between do not count.
        assert!(matches!(t[1], (8, Transition::Cleared { .. })), "{t:?}");
        let p = policy();
        let mut s = AlertState::default();
        for l in [u, u, "100", u] {
            assert_eq!(apply(&p, &mut s, l, 0), None);
        }
        assert_eq!(s.uncertain, 3);
        assert_eq!(s.healthy_streak, 1);
    }

    #[test]
    fn cooldown_defers_a_second_raise() {
        // Raise at 1 (20 s), clear at 4, unhealthy again from 5: the 150 s cooldown holds the raise until 9 (180 s).
        let labels = [
            "20", "20", "100", "100", "100", "20", "20", "20", "20", "20", "20", "20", "20",
        ];
        let t = run(&labels, 20_000);
        assert_eq!(t[0].0, 1);
        assert!(matches!(t[1], (4, Transition::Cleared { .. })));
        assert!(matches!(t[2], (9, Transition::Raised { .. })), "{t:?}");
    }

    #[test]
    fn a_far_future_raise_does_not_hold_the_cooldown_forever() {
        let p = policy();
        let mut s = AlertState::default();
        let far = (1u64 << 53) - 1;
        apply(&p, &mut s, "20", far);
        assert!(apply(&p, &mut s, "20", far).is_some(), "raised at a far ts");
        for ts in 0..3 {
            apply(&p, &mut s, "100", ts);
        }
        assert_eq!(s.active, None);
        apply(&p, &mut s, "20", 10);
        assert!(
            matches!(apply(&p, &mut s, "20", 11), Some(Transition::Raised { .. })),
            "{s:?}"
        );
    }
}
