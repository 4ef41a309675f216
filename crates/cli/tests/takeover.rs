//! The device agent when its results are lost on the way back: a link that carries the device's
//! messages but loses what the broker sends back, and another client that connects with the
//! agent's own client id (the broker then drops the agent's connection, and a clean session
//! wipes the agent's persistent one with the results it held).
//!
//! Real processes on loopback: `vigil edge` (its embedded broker and store), `vigil device`
//! replaying the committed hydraulic sample through a [`FaultProxy`], an observer of the
//! condition topic, and a second MQTT client under the agent's client id. Every wait is on an
//! observable event (results seen, the second client's CONNACK and its being cut off, the
//! agent's exit) with a deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use vigil_sim::proxy::{FaultProxy, LinkMode};

mod common;
use common::*;

const CYCLES: usize = 12;

/// `vigil device` with its stdout (a line per result, the summary last) collected.
struct Agent {
    proc: Proc,
    lines: Arc<Mutex<Vec<String>>>,
}

fn start_agent(thing: &str, port: u16, state: &Path) -> Agent {
    let mut child = Command::new(VIGIL)
        .args(["device", "--thing", thing, "--source"])
        .arg(format!("replay-hydraulic:{}", sample_dir()))
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .arg("--state")
        .arg(state)
        .args(["--cycles", &CYCLES.to_string(), "--speed", "100"])
        .args(["--batch", "10", "--keep-alive", "10", "--resend-after", "2"])
        .args(["--backoff-min", "0.05", "--backoff-max", "0.5"])
        // A stall is an error exit, not a test that hangs.
        .args(["--stall-after", "40", "--exit-when-drained"])
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil device");
    let stdout = child.stdout.take().expect("device stdout");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    Agent {
        proc: Proc::new(child, "vigil device"),
        lines,
    }
}

impl Agent {
    /// The windows the agent printed a result for so far (`condition THING window N ...`).
    fn received(&self) -> BTreeSet<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("condition "))
            .filter_map(|l| l.split(" window ").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }

    /// Waits for the exit, then returns the windows the agent got a result for and its summary.
    fn finish(&mut self, deadline: Duration) -> (BTreeSet<u64>, serde_json::Value) {
        let status = self.proc.wait_exit(deadline);
        let lines = self.lines.clone();
        wait_until("the summary line", Duration::from_secs(10), || {
            lines
                .lock()
                .unwrap()
                .last()
                .is_some_and(|l| l.starts_with('{'))
        });
        assert!(status.success(), "vigil device exited with {status}");
        let last = self.lines.lock().unwrap().last().cloned().unwrap();
        let summary = serde_json::from_str(&last).expect("summary JSON");
        (self.received(), summary)
    }
}

/// Sets the link to lose what the broker sends back, and waits until the edge has published
/// results the agent cannot get (at least `at_least` windows in all); returns the windows with
/// a result the agent had not received when the link turned (a superset of those lost).
fn lose_results(
    proxy: &FaultProxy,
    observer: &Observer,
    agent: &Agent,
    thing: &str,
    at_least: usize,
) -> BTreeSet<u64> {
    let before = agent.received();
    let seen = observer.windows_of(thing);
    proxy.set(LinkMode::UpOnly);
    let want = at_least.max(seen + 1);
    wait_until(
        "results published into the lost link",
        Duration::from_secs(30),
        || observer.windows_of(thing) >= want,
    );
    observer
        .windows(thing)
        .difference(&before)
        .copied()
        .collect()
}

/// Connects as `thing` with a clean session (the broker drops the agent's connection and its
/// session), and returns once connected; the receiver says when the broker cut it off again.
fn take_over(
    rt: &tokio::runtime::Runtime,
    port: u16,
    thing: &str,
) -> std::sync::mpsc::Receiver<()> {
    let (connected_tx, connected_rx) = std::sync::mpsc::channel();
    let (kicked_tx, kicked_rx) = std::sync::mpsc::channel();
    let mut options = MqttOptions::new(thing, "127.0.0.1", port);
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30));
    rt.spawn(async move {
        let (_client, mut eventloop) = AsyncClient::new(options, 8);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = connected_tx.send(());
                }
                Ok(_) => {}
                Err(_) => {
                    // Cut off (or never connected): it does not come back.
                    let _ = kicked_tx.send(());
                    return;
                }
            }
        }
    });
    connected_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the second client connected under the agent's client id");
    kicked_rx
}

struct Rig {
    _dir: tempfile::TempDir,
    _edge: Proc,
    port: u16,
    http: u16,
    observer: Observer,
    rt: tokio::runtime::Runtime,
    proxy: FaultProxy,
    state: std::path::PathBuf,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (port, http) = (free_port(), free_port());
    let edge = start_edge_with(
        port,
        &dir.path().join("edge"),
        &[
            "--http".into(),
            format!("127.0.0.1:{http}").into(),
            "--http-token".into(),
            MONITOR_TOKEN.into(),
        ],
    );
    let observer = Observer::start(port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt
        .block_on(FaultProxy::start(
            "127.0.0.1:0",
            SocketAddr::from(([127, 0, 0, 1], port)),
        ))
        .unwrap();
    let state = dir.path().join("device");
    Rig {
        _dir: dir,
        _edge: edge,
        port,
        http,
        observer,
        rt,
        proxy,
        state,
    }
}

/// Every window scored once by the edge (its own count and the results on the topic).
fn assert_scored_once(rig: &Rig, thing: &str) {
    wait_until("every window scored", Duration::from_secs(30), || {
        rig.observer.windows_of(thing) >= CYCLES
    });
    assert_eq!(
        metric(rig.http, "vigil_edge_results_published_total"),
        CYCLES as u64,
        "the edge scored a window twice"
    );
    rig.observer.assert_exactly_once(thing, CYCLES);
}

/// Three times another client takes the agent's client id over while results are on their way
/// back (the last time with the last window's): the agent reconnects, takes its id back, and
/// finishes in bounded time with every window scored exactly once. The results the takeover
/// destroyed (it wipes the agent's session) are the only ones the agent did not receive, and
/// exactly their samples are given up; none is left queued.
#[test]
fn the_agent_recovers_from_its_client_id_being_taken_over_three_times() {
    let started = Instant::now();
    let rig = rig();
    let thing = "twin-1";
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state);
    let mut destroyed = BTreeSet::new();
    for (round, at) in [(1, 2), (2, 5), (3, CYCLES)] {
        // The agent is connected and receiving again.
        wait_until(
            "results before the takeover",
            Duration::from_secs(60),
            || rig.observer.windows_of(thing) >= at.min(CYCLES - 1).max(round),
        );
        let lost = lose_results(&rig.proxy, &rig.observer, &agent, thing, at);
        let kicked = take_over(&rig.rt, rig.port, thing);
        destroyed.extend(lost);
        rig.proxy.set(LinkMode::Forward);
        // The agent reconnects, which cuts the second client off.
        kicked
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("takeover {round}: the agent never took its id back"));
    }
    let (received, summary) = agent.finish(Duration::from_secs(60));
    assert_scored_once(&rig, thing);

    let all: BTreeSet<u64> = (0..CYCLES as u64).collect();
    let missing: BTreeSet<u64> = all.difference(&received).copied().collect();
    assert!(
        missing.is_subset(&destroyed),
        "missing results {missing:?}, destroyed {destroyed:?}"
    );
    assert!(
        missing.contains(&(CYCLES as u64 - 1)),
        "the last window's result was destroyed: {missing:?}"
    );
    let samples = CYCLES as u64 * SAMPLES_PER_WINDOW;
    assert_eq!(summary["queued"], 0, "{summary}");
    assert_eq!(summary["next_seq"], samples, "{summary}");
    assert_eq!(
        summary["given_up"],
        missing.len() as u64 * SAMPLES_PER_WINDOW,
        "{summary}"
    );
    assert_eq!(
        summary["confirmed"],
        samples - missing.len() as u64 * SAMPLES_PER_WINDOW,
        "{summary}"
    );
    assert!(summary["reconnects"].as_u64() >= Some(4), "{summary}");
    eprintln!(
        "takeover test took {:?}; destroyed {destroyed:?}, not received {missing:?}",
        started.elapsed()
    );
}

/// Results lost on the link (not to a takeover) are kept by the broker in the agent's
/// persistent session and delivered when it reconnects: the agent receives every one, gives
/// nothing up.
#[test]
fn results_lost_on_the_link_come_back_with_the_persistent_session() {
    let rig = rig();
    let thing = "oneway-1";
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state);
    for at in [2, 5, CYCLES] {
        wait_until("results before the cut", Duration::from_secs(60), || {
            rig.observer.windows_of(thing) >= at.min(CYCLES - 1)
        });
        lose_results(&rig.proxy, &rig.observer, &agent, thing, at);
        rig.proxy.set(LinkMode::Drop);
        rig.proxy.set(LinkMode::Forward);
    }
    let (received, summary) = agent.finish(Duration::from_secs(60));
    assert_scored_once(&rig, thing);
    assert_eq!(received, (0..CYCLES as u64).collect(), "{summary}");
    assert_eq!(summary["given_up"], 0, "{summary}");
    assert_eq!(summary["sessions_lost"], 0, "{summary}");
    assert_eq!(
        summary["confirmed"],
        CYCLES as u64 * SAMPLES_PER_WINDOW,
        "{summary}"
    );
}

/// Waiting for results is bounded: with nothing that answers (here no broker at all), the
/// agent reports the stall and, with --exit-when-drained, exits with it instead of waiting for
/// ever.
#[test]
fn a_stall_is_a_clear_error_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut cmd = Command::new(VIGIL);
    cmd.args(["device", "--thing", "alone-1", "--source"])
        .arg(format!("replay-hydraulic:{}", sample_dir()))
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{}", free_port()))
        .arg("--state")
        .arg(dir.path())
        .args(["--cycles", "1", "--speed", "0", "--backoff-max", "0.2"])
        .args(["--stall-after", "2", "--exit-when-drained", "--quiet"])
        .env("VIGIL_LOG", "warn");
    let (code, stderr) = run_to_end(cmd, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stalled: no result for 2 s with 60 samples unconfirmed (from seq 0)")
            && stderr.contains("not connected to the broker"),
        "{stderr}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
}
