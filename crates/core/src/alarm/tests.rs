use proptest::prelude::*;

use super::*;

const MIN: u64 = 60_000;

fn policy(escalate_after_s: Option<u64>) -> AlertPolicy {
    AlertPolicy {
        unhealthy: vec!["3".into(), "20".into()],
        raise_after: 1,
        clear_after: 1,
        cooldown_s: 0,
        severity: [("20".to_string(), Severity::Info)].into_iter().collect(),
        escalate_after_s,
        escalate_max: 2,
    }
}

fn raised(label: &str) -> Transition {
    Transition::Raised {
        label: label.into(),
        severity: policy(None).severity_of(label),
    }
}

fn cleared(label: &str) -> Transition {
    Transition::Cleared {
        label: label.into(),
    }
}

fn action(id: &str, command: Command) -> OperatorAction {
    OperatorAction {
        id: id.into(),
        condition: "3".into(),
        by: "ana".into(),
        command,
    }
}

fn all_commands() -> Vec<Command> {
    vec![
        Command::Acknowledge {
            note: "on it".into(),
        },
        Command::Snooze { for_s: 600 },
        Command::Disable,
        Command::Enable,
        Command::Reset,
    ]
}

/// A book whose alarm "3" is in the given state, with the condition active or not.
fn book_in(state: AlarmState, active: bool) -> AlarmBook {
    let mut book = AlarmBook::default();
    book.alarms.insert(
        "3".into(),
        Alarm {
            state,
            active,
            severity: Severity::Warning,
            notified_ms: Some(0),
            ..Alarm::default()
        },
    );
    book
}

/// Every reachable (state, condition active) pair.
fn all_states() -> Vec<(AlarmState, bool)> {
    vec![
        (AlarmState::Normal, false),
        (AlarmState::ActiveUnacknowledged, true),
        (AlarmState::ActiveAcknowledged, true),
        (AlarmState::ClearedUnacknowledged, false),
        (AlarmState::Snoozed { until_ms: MIN * 60 }, true),
        (AlarmState::Snoozed { until_ms: MIN * 60 }, false),
        (AlarmState::Disabled, true),
        (AlarmState::Disabled, false),
    ]
}

/// The whole action table: what every action does from every state.
fn expected(state: AlarmState, active: bool, command: &Command) -> Option<AlarmState> {
    use AlarmState::*;
    let condition = if active { ActiveUnacknowledged } else { Normal };
    match (command, state) {
        (Command::Acknowledge { .. }, ActiveUnacknowledged) => Some(ActiveAcknowledged),
        (Command::Acknowledge { .. }, ClearedUnacknowledged) => Some(Normal),
        (Command::Acknowledge { .. }, Snoozed { .. }) if active => Some(ActiveAcknowledged),
        (Command::Acknowledge { .. }, Snoozed { .. }) => Some(Normal),
        (Command::Acknowledge { .. }, _) => None,
        (Command::Snooze { .. }, Disabled) => None,
        (Command::Snooze { .. }, _) => Some(Snoozed {
            until_ms: 1000 + 600_000,
        }),
        (Command::Disable, Disabled) => None,
        (Command::Disable, _) => Some(Disabled),
        (Command::Enable, Disabled) => Some(condition),
        (Command::Enable, _) => None,
        (Command::Reset, Disabled) => None,
        (Command::Reset, _) => Some(condition),
    }
}

#[test]
fn every_action_from_every_state() {
    let p = policy(None);
    for (state, active) in all_states() {
        for command in all_commands() {
            let mut book = book_in(state, active);
            let before = book.clone();
            let got = apply_action(&p, &mut book, &action("a1", command.clone()), 1000);
            match expected(state, active, &command) {
                Some(to) => {
                    assert_eq!(
                        got,
                        Ok(ActionOutcome::Applied { from: state, to }),
                        "{command:?} from {state:?} (active {active})"
                    );
                    let alarm = &book.alarms["3"];
                    assert_eq!(alarm.active, active, "actions never change the condition");
                    let last = alarm.history.back().unwrap();
                    assert_eq!((last.cause.as_str(), last.state), (command.name(), to));
                    assert_eq!(last.by.as_deref(), Some("ana"));
                }
                None => {
                    assert!(
                        matches!(got, Err(ActionError::NotApplicable { .. })),
                        "{command:?} from {state:?}: {got:?}"
                    );
                    assert_eq!(book, before, "a refused action changes nothing");
                }
            }
        }
    }
}

#[test]
fn the_same_action_id_twice_changes_nothing() {
    let p = policy(None);
    for (state, active) in all_states() {
        for command in all_commands() {
            let mut book = book_in(state, active);
            let a = action("retry-1", command.clone());
            let first = apply_action(&p, &mut book, &a, 1000);
            let after_first = book.clone();
            let second = apply_action(&p, &mut book, &a, 5000);
            assert_eq!(book, after_first, "{command:?} from {state:?}");
            if first.is_ok() {
                assert_eq!(
                    second,
                    Ok(ActionOutcome::Duplicate {
                        state: book.state_of("3")
                    })
                );
            } else {
                assert_eq!(second, first, "a refused action is refused again");
            }
        }
    }
}

#[test]
fn acknowledgement_keeps_who_and_note() {
    let p = policy(None);
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("3")), 0);
    apply_action(
        &p,
        &mut book,
        &action(
            "x",
            Command::Acknowledge {
                note: "cooler fan replaced".into(),
            },
        ),
        10,
    )
    .unwrap();
    let ack = book.alarms["3"].acknowledged.clone().unwrap();
    assert_eq!(
        (ack.by.as_str(), ack.note.as_str(), ack.at_ms),
        ("ana", "cooler fan replaced", 10)
    );
    // The clear that follows is told, and carries who acknowledged.
    let n = on_window(&p, &mut book, Some(&cleared("3")), 20);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].note.state, AlarmState::Normal);
    assert_eq!(n[0].note.acknowledged_by.as_deref(), Some("ana"));
}

#[test]
fn an_unacknowledged_clear_latches_until_acknowledged() {
    let p = policy(None);
    let mut book = AlarmBook::default();
    let n = on_window(&p, &mut book, Some(&raised("3")), 0);
    assert_eq!(n[0].note.state, AlarmState::ActiveUnacknowledged);
    let n = on_window(&p, &mut book, Some(&cleared("3")), MIN);
    assert_eq!(n[0].note.state, AlarmState::ClearedUnacknowledged);
    assert_eq!(on_window(&p, &mut book, None, 100 * MIN), vec![]);
    assert_eq!(book.state_of("3"), AlarmState::ClearedUnacknowledged);
    apply_action(
        &p,
        &mut book,
        &action("ack", Command::Acknowledge { note: "".into() }),
        101 * MIN,
    )
    .unwrap();
    assert_eq!(book.state_of("3"), AlarmState::Normal);
}

#[test]
fn escalation_raises_severity_at_the_interval_up_to_the_limit() {
    // Raised at 0 (warning); escalate after 10 min unacknowledged, at most twice.
    let p = policy(Some(600));
    let mut book = AlarmBook::default();
    let mut told = vec![];
    for minute in 0..60 {
        let t = (minute == 0).then(|| raised("3"));
        for n in on_window(&p, &mut book, t.as_ref(), minute * MIN) {
            told.push((minute, n.note.reason, n.note.severity, n.note.escalation));
        }
    }
    assert_eq!(
        told,
        vec![
            (0, NoticeReason::Transition, Severity::Warning, 0),
            (10, NoticeReason::Escalated, Severity::Critical, 1),
            (20, NoticeReason::Escalated, Severity::Critical, 2),
        ]
    );
    // The escalated notification is a raise at the raised severity.
    assert_eq!(book.alarms["3"].severity, Severity::Critical);
}

#[test]
fn escalation_steps_severity_one_level_at_a_time() {
    // "20" is info: escalates to warning, then critical.
    let p = policy(Some(60));
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("20")), 0);
    let severities: Vec<_> = (1..=5)
        .flat_map(|m| on_window(&p, &mut book, None, m * MIN))
        .map(|n| n.note.severity)
        .collect();
    assert_eq!(severities, vec![Severity::Warning, Severity::Critical]);
}

#[test]
fn acknowledging_stops_escalation_and_no_escalation_without_an_interval() {
    let p = policy(Some(600));
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("3")), 0);
    apply_action(
        &p,
        &mut book,
        &action("a", Command::Acknowledge { note: "".into() }),
        MIN,
    )
    .unwrap();
    assert!((2..100).all(|m| on_window(&p, &mut book, None, m * MIN).is_empty()));

    let p = policy(None);
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("3")), 0);
    assert!((1..100).all(|m| on_window(&p, &mut book, None, m * MIN).is_empty()));
}

#[test]
fn a_snooze_holds_notifications_and_reminds_when_it_ends_if_still_active() {
    let p = policy(Some(600));
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("3")), 0);
    apply_action(
        &p,
        &mut book,
        &action("s", Command::Snooze { for_s: 1800 }),
        MIN,
    )
    .unwrap();
    // Held: no escalation while snoozed (31 min is the end of the snooze).
    for m in 2..31 {
        assert_eq!(
            on_window(&p, &mut book, None, m * MIN),
            vec![],
            "minute {m}"
        );
    }
    let n = on_window(&p, &mut book, None, 31 * MIN);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].note.reason, NoticeReason::Reminder);
    assert_eq!(n[0].note.state, AlarmState::ActiveUnacknowledged);
    // Escalation counts from the reminder.
    assert!(on_window(&p, &mut book, None, 40 * MIN).is_empty());
    assert_eq!(
        on_window(&p, &mut book, None, 41 * MIN)[0].note.reason,
        NoticeReason::Escalated
    );
}

#[test]
fn a_condition_that_clears_while_snoozed_ends_normal_and_silent() {
    let p = policy(None);
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("3")), 0);
    apply_action(
        &p,
        &mut book,
        &action("s", Command::Snooze { for_s: 60 }),
        0,
    )
    .unwrap();
    assert!(on_window(&p, &mut book, Some(&cleared("3")), 10_000).is_empty());
    assert!(on_window(&p, &mut book, None, 2 * MIN).is_empty());
    assert_eq!(book.state_of("3"), AlarmState::Normal);
}

#[test]
fn disabled_alarms_are_silent_until_enabled_and_then_tell_what_holds() {
    let p = policy(Some(60));
    let mut book = AlarmBook::default();
    apply_action(&p, &mut book, &action("d", Command::Disable), 0).unwrap();
    assert!(on_window(&p, &mut book, Some(&raised("3")), MIN).is_empty());
    assert!((2..20).all(|m| on_window(&p, &mut book, None, m * MIN).is_empty()));
    apply_action(&p, &mut book, &action("e", Command::Enable), 20 * MIN).unwrap();
    let n = on_window(&p, &mut book, None, 21 * MIN);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].note.reason, NoticeReason::Reminder);
    assert_eq!(
        n[0].transition,
        Transition::Raised {
            label: "3".into(),
            severity: Severity::Warning
        }
    );
}

#[test]
fn a_change_of_condition_clears_the_old_alarm_and_raises_the_new() {
    let p = policy(None);
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("20")), 0);
    let change = Transition::Changed {
        from: "20".into(),
        to: "3".into(),
        severity: Severity::Warning,
    };
    let n = on_window(&p, &mut book, Some(&change), MIN);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].transition, change);
    assert_eq!(book.state_of("20"), AlarmState::ClearedUnacknowledged);
    assert_eq!(book.state_of("3"), AlarmState::ActiveUnacknowledged);

    // With the new condition disabled, operators hear that the old one ended.
    let mut book = AlarmBook::default();
    on_window(&p, &mut book, Some(&raised("20")), 0);
    apply_action(&p, &mut book, &action("d", Command::Disable), 0).unwrap();
    let n = on_window(&p, &mut book, Some(&change), MIN);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].transition, cleared("20"));
}

#[test]
fn malformed_actions_are_refused_with_the_field() {
    let p = policy(None);
    let mut book = AlarmBook::default();
    let cases = [
        (
            OperatorAction {
                id: "".into(),
                ..action("x", Command::Reset)
            },
            "id",
        ),
        (
            OperatorAction {
                id: "a b".into(),
                ..action("x", Command::Reset)
            },
            "id",
        ),
        (
            OperatorAction {
                condition: "100".into(),
                ..action("x", Command::Reset)
            },
            "condition",
        ),
        (
            OperatorAction {
                by: " ".into(),
                ..action("x", Command::Reset)
            },
            "by",
        ),
        (action("x", Command::Snooze { for_s: 0 }), "for_s"),
        (
            action(
                "x",
                Command::Snooze {
                    for_s: MAX_SNOOZE_S + 1,
                },
            ),
            "for_s",
        ),
        (
            action(
                "x",
                Command::Acknowledge {
                    note: "n".repeat(MAX_NOTE + 1),
                },
            ),
            "note",
        ),
        (
            action(
                "x",
                Command::Acknowledge {
                    note: "a\u{7}".into(),
                },
            ),
            "note",
        ),
    ];
    for (a, field) in cases {
        match apply_action(&p, &mut book, &a, 0) {
            Err(ActionError::Invalid(f, _)) => assert_eq!(f, field, "{a:?}"),
            other => panic!("{a:?}: {other:?}"),
        }
    }
    assert_eq!(book, AlarmBook::default());
}

#[test]
fn actions_parse_from_json() {
    let a: OperatorAction = serde_json::from_str(
        r#"{"id":"7","condition":"3","by":"ana","action":"snooze","for_s":900}"#,
    )
    .unwrap();
    assert_eq!(a.command, Command::Snooze { for_s: 900 });
    let a: OperatorAction =
        serde_json::from_str(r#"{"id":"8","condition":"3","by":"ana","action":"acknowledge"}"#)
            .unwrap();
    assert_eq!(a.command, Command::Acknowledge { note: "".into() });
    assert!(serde_json::from_str::<OperatorAction>(
        r#"{"id":"8","condition":"3","by":"ana","action":"explode"}"#
    )
    .is_err());
}

#[derive(Clone, Debug)]
enum Step {
    Window(Option<bool>),
    Act(u8, usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Some(true): the condition raises; Some(false): clears; None: no transition.
        prop::option::of(any::<bool>()).prop_map(Step::Window),
        (0u8..8, 0usize..5).prop_map(|(id, c)| Step::Act(id, c)),
        (1u64..3600).prop_map(Step::Wait),
    ]
}

proptest! {
    /// Random mixes of windows, actions (ids reused on purpose) and time: the state always
    /// agrees with the condition, nothing is told while snoozed or disabled, escalation stays
    /// within its limit, and re-applying any action changes nothing.
    #[test]
    fn lifecycle_invariants(steps in prop::collection::vec(step(), 1..80)) {
        let p = policy(Some(300));
        let mut book = AlarmBook::default();
        let mut now = 0u64;
        let mut active = false;
        for s in steps {
            match s {
                Step::Window(t) => {
                    let transition = match t {
                        Some(true) if !active => { active = true; Some(raised("3")) }
                        Some(false) if active => { active = false; Some(cleared("3")) }
                        _ => None,
                    };
                    let held = matches!(
                        book.state_of("3"),
                        AlarmState::Disabled
                    );
                    let notices = on_window(&p, &mut book, transition.as_ref(), now);
                    if held {
                        prop_assert!(notices.is_empty());
                    }
                    for n in &notices {
                        let told_while_held = matches!(
                            n.note.state,
                            AlarmState::Snoozed { .. } | AlarmState::Disabled
                        );
                        prop_assert!(!told_while_held);
                    }
                }
                Step::Act(id, c) => {
                    let a = action(&format!("id{id}"), all_commands()[c].clone());
                    let _ = apply_action(&p, &mut book, &a, now);
                    let again = book.clone();
                    let _ = apply_action(&p, &mut book, &a, now + 1);
                    prop_assert_eq!(&book, &again);
                }
                Step::Wait(s) => now += s * 1000,
            }
            if let Some(alarm) = book.alarms.get("3") {
                prop_assert_eq!(alarm.active, active);
                match alarm.state {
                    AlarmState::ActiveUnacknowledged | AlarmState::ActiveAcknowledged => prop_assert!(active),
                    AlarmState::Normal | AlarmState::ClearedUnacknowledged => prop_assert!(!active),
                    _ => {}
                }
                prop_assert!(alarm.escalations <= p.escalate_max);
                prop_assert!(alarm.history.len() <= MAX_HISTORY);
            }
            prop_assert!(book.applied_actions.len() <= MAX_REMEMBERED_ACTIONS);
        }
    }
}
