//! `vigil alarm` against a running `vigil edge --http`: the generated token is found in the
//! state directory, an action applies once per id, a refused action and a wrong token fail.

mod common;

use std::process::Command;

use common::{free_port, start_edge_with, VIGIL};

fn alarm(http: u16, state: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(VIGIL)
        .arg("alarm")
        .args(args)
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--state")
        .arg(state)
        .env_remove("VIGIL_HTTP_TOKEN")
        .output()
        .expect("vigil alarm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn operators_act_on_alarms_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("edge");
    let http = free_port();
    let extra = ["--http".into(), format!("127.0.0.1:{http}").into()];
    let _edge = start_edge_with(free_port(), &state, &extra);

    let token = state.join("http-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
    }

    let snooze = [
        "snooze", "rig-001", "20", "--for", "10m", "--by", "ana", "--id", "op-1",
    ];
    let (ok, text) = alarm(http, &state, &snooze);
    assert!(ok, "{text}");
    assert!(
        text.contains("rig-001 20: snoozed (applied, id op-1)"),
        "{text}"
    );
    let (ok, text) = alarm(http, &state, &snooze);
    assert!(ok && text.contains("(duplicate, id op-1)"), "{text}");

    // Enabling an alarm that is not disabled is refused, with the reason.
    let (ok, text) = alarm(http, &state, &["enable", "rig-001", "20"]);
    assert!(
        !ok && text.contains("409") && text.contains("cannot enable"),
        "{text}"
    );
    // A condition the profile does not have.
    let (ok, text) = alarm(http, &state, &["reset", "rig-001", "77"]);
    assert!(!ok && text.contains("400"), "{text}");
    // A wrong token.
    let (ok, text) = alarm(
        http,
        &state,
        &["ack", "rig-001", "20", "--token", "not-the-token-at-all"],
    );
    assert!(!ok && text.contains("401"), "{text}");
    // The right one: acknowledging the snoozed (inactive) alarm ends it.
    let (ok, text) = alarm(http, &state, &["ack", "rig-001", "20", "--note", "checked"]);
    assert!(ok && text.contains("rig-001 20: normal (applied"), "{text}");
}
