//! Applying an operator's action to a device's stored state: the same optimistic-concurrency
//! save the pipeline uses, so an action and a window scored at the same moment never lose each
//! other's change. Used by the edge's HTTP endpoint and by the Lambda's shadow-delta handler.

use crate::ports::{DeviceStateStore, PortError, StreamKey};

use super::{apply_action, ActionError, ActionOutcome, OperatorAction};
use crate::alert::AlertPolicy;

/// Saves that lost to a concurrent writer before giving up (retryably).
const MAX_CONFLICTS: usize = 16;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OperateError {
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl OperateError {
    /// Whether the same action may succeed later (a store failure, not a refused action).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Port(e) if e.retryable)
    }
}

/// Loads the device state, applies the action, saves if the version is unchanged (else
/// reloads and redoes). A refused or repeated action writes nothing.
pub async fn operate(
    states: &dyn DeviceStateStore,
    stream: &StreamKey,
    policy: &AlertPolicy,
    action: &OperatorAction,
    now_ms: u64,
) -> Result<ActionOutcome, OperateError> {
    for _ in 0..MAX_CONFLICTS {
        let stored = states.load(stream).await?;
        let mut state = stored.value;
        let outcome = apply_action(policy, &mut state.alarms, action, now_ms)?;
        if matches!(outcome, ActionOutcome::Duplicate { .. }) {
            return Ok(outcome);
        }
        if states.save(stream, &state, stored.version).await? {
            return Ok(outcome);
        }
    }
    Err(PortError::retryable(
        "states",
        format!(
            "alarm action {} on {}: {MAX_CONFLICTS} conflicting writes in a row",
            action.id, stream.device
        ),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use futures_executor::block_on;

    use super::*;
    use crate::alarm::{AlarmState, Command};
    use crate::alert::{Severity, Transition};
    use crate::memory::MemoryStateStore;
    use crate::ports::{DeviceState, Versioned};
    use crate::telemetry::DeviceId;

    fn key() -> StreamKey {
        StreamKey {
            device: DeviceId::new("press-1").unwrap(),
            profile: "p".into(),
        }
    }

    fn policy() -> AlertPolicy {
        AlertPolicy {
            unhealthy: vec!["3".into()],
            raise_after: 1,
            clear_after: 1,
            cooldown_s: 0,
            severity: Default::default(),
            escalate_after_s: None,
            escalate_max: 2,
        }
    }

    fn ack(id: &str) -> OperatorAction {
        OperatorAction {
            id: id.into(),
            condition: "3".into(),
            by: "ana".into(),
            command: Command::Acknowledge { note: "n".into() },
        }
    }

    /// A store whose first saves lose to a writer that raises the alarm in between, as the
    /// pipeline would when a window completes at the same moment.
    struct Racing {
        inner: MemoryStateStore,
        races: std::sync::Mutex<usize>,
    }

    #[async_trait]
    impl DeviceStateStore for Racing {
        async fn load(&self, s: &StreamKey) -> Result<Versioned<DeviceState>, PortError> {
            self.inner.load(s).await
        }
        async fn save(&self, s: &StreamKey, st: &DeviceState, v: u64) -> Result<bool, PortError> {
            let race = {
                let mut r = self.races.lock().unwrap();
                let go = *r > 0;
                *r = r.saturating_sub(1);
                go
            };
            if race {
                let cur = self.inner.load(s).await?;
                let mut other = cur.value.clone();
                other.applied_window = Some(other.applied_window.map_or(0, |w| w + 1));
                assert!(self.inner.save(s, &other, cur.version).await?);
            }
            self.inner.save(s, st, v).await
        }
    }

    fn raised_state() -> DeviceState {
        let mut st = DeviceState::default();
        crate::alarm::on_window(
            &policy(),
            &mut st.alarms,
            Some(&Transition::Raised {
                label: "3".into(),
                severity: Severity::Warning,
            }),
            0,
        );
        st
    }

    #[test]
    fn an_action_survives_concurrent_writes_and_keeps_theirs() {
        let store = Racing {
            inner: MemoryStateStore::new(),
            races: std::sync::Mutex::new(3),
        };
        block_on(async {
            assert!(store.inner.save(&key(), &raised_state(), 0).await.unwrap());
            let out = operate(&store, &key(), &policy(), &ack("a1"), 5)
                .await
                .unwrap();
            assert_eq!(
                out,
                ActionOutcome::Applied {
                    from: AlarmState::ActiveUnacknowledged,
                    to: AlarmState::ActiveAcknowledged
                }
            );
            let st = store.inner.get(&key()).unwrap();
            assert_eq!(st.alarms.state_of("3"), AlarmState::ActiveAcknowledged);
            // The three concurrent writes are kept, not overwritten.
            assert_eq!(st.applied_window, Some(2));
        });
    }

    #[test]
    fn a_retried_action_writes_nothing_and_a_refused_one_neither() {
        let store = MemoryStateStore::new();
        block_on(async {
            assert!(store.save(&key(), &raised_state(), 0).await.unwrap());
            operate(&store, &key(), &policy(), &ack("a1"), 5)
                .await
                .unwrap();
            let v = store.load(&key()).await.unwrap().version;
            let again = operate(&store, &key(), &policy(), &ack("a1"), 6)
                .await
                .unwrap();
            assert!(matches!(again, ActionOutcome::Duplicate { .. }));
            let refused = operate(&store, &key(), &policy(), &ack("a2"), 7).await;
            assert!(matches!(
                refused,
                Err(OperateError::Action(ActionError::NotApplicable { .. }))
            ));
            assert!(!refused.unwrap_err().is_retryable());
            assert_eq!(store.load(&key()).await.unwrap().version, v);
        });
    }

    #[test]
    fn endless_conflicts_fail_retryably() {
        let store = Racing {
            inner: MemoryStateStore::new(),
            races: std::sync::Mutex::new(usize::MAX),
        };
        block_on(async {
            assert!(store.inner.save(&key(), &raised_state(), 0).await.unwrap());
            let err = operate(&store, &key(), &policy(), &ack("a1"), 5)
                .await
                .unwrap_err();
            assert!(err.is_retryable(), "{err}");
        });
    }
}
