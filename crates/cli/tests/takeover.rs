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
const CHANNELS: [&str; 4] = ["TS1", "TS2", "TS3", "TS4"];

/// `vigil device` reading the committed hydraulic sample as JSON lines that the test writes to
/// its stdin (so that the test decides when each window's samples exist), with its stdout (a
/// line per result, the summary last) collected.
struct Agent {
    proc: Proc,
    stdin: Option<std::process::ChildStdin>,
    data: vigil_datasets::Hydraulic,
    fed: usize,
    lines: Arc<Mutex<Vec<String>>>,
}

fn start_agent(thing: &str, port: u16, state: &Path) -> Agent {
    let data = vigil_datasets::Hydraulic::load(Path::new(&sample_dir()), &CHANNELS)
        .expect("the committed hydraulic sample");
    assert!(data.cycles() >= CYCLES);
    let mut child = Command::new(VIGIL)
        .args(["device", "--thing", thing, "--source", "stdin"])
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .arg("--state")
        .arg(state)
        .args(["--batch", "10"])
        .args(["--keep-alive", "10", "--resend-after", "2"])
        .args(["--backoff-min", "0.05", "--backoff-max", "0.5"])
        // A stall is an error exit, not a test that hangs.
        .args(["--stall-after", "40", "--exit-when-drained"])
        .env("VIGIL_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil device");
    let stdin = child.stdin.take();
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
        stdin,
        data,
        fed: 0,
        lines,
    }
}

impl Agent {
    /// Writes the next cycles' samples (whole windows) to the agent's stdin, up to `to`;
    /// at `CYCLES`, closes it (the source ends).
    fn feed_to(&mut self, to: usize) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        for cycle in self.fed..to {
            for t in 0..60 {
                let values: serde_json::Map<String, serde_json::Value> = CHANNELS
                    .iter()
                    .zip(&self.data.channels)
                    .map(|(name, ch)| (name.to_string(), serde_json::json!(ch[cycle][t])))
                    .collect();
                let ts = 1_700_000_000_000u64 + (cycle * 60 + t) as u64 * 1000;
                let line = serde_json::json!({ "ts": ts, "values": values });
                writeln!(stdin, "{line}").expect("write to the agent's stdin");
            }
        }
        stdin.flush().expect("flush the agent's stdin");
        self.fed = to;
        if to >= CYCLES {
            self.stdin = None;
        }
    }

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

    /// Waits until the agent has a result for every window fed so far but `except`: it is
    /// connected and subscribed.
    fn wait_received(&self, except: &BTreeSet<u64>) {
        let want: BTreeSet<u64> = (0..self.fed as u64)
            .filter(|w| !except.contains(w))
            .collect();
        wait_until("the agent's results", Duration::from_secs(60), || {
            self.received().is_superset(&want)
        });
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

/// Sets the link to lose what the broker sends back, feeds the agent one more window and waits
/// until the edge has published its result (which the agent cannot get); returns that window.
fn lose_next_result(
    proxy: &FaultProxy,
    observer: &Observer,
    agent: &mut Agent,
    thing: &str,
) -> u64 {
    proxy.set(LinkMode::UpOnly);
    let window = agent.fed;
    agent.feed_to(window + 1);
    wait_until(
        "the result published into the lost link",
        Duration::from_secs(30),
        || observer.windows_of(thing) > window,
    );
    window as u64
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

/// Windows fed before each of the three faults; the third takes the last window's result.
const FAULTS_AFTER: [usize; 3] = [3, 7, CYCLES - 1];

/// Three times another client takes the agent's client id over while a result is on its way
/// back (the last time the last window's): the agent reconnects, takes its id back, and
/// finishes in bounded time with every window scored exactly once. The three results the
/// takeovers destroyed (a clean session wipes the agent's persistent one) are the only ones
/// the agent did not receive, and exactly their samples are given up; none is left queued.
#[test]
fn the_agent_recovers_from_its_client_id_being_taken_over_three_times() {
    let started = Instant::now();
    let rig = rig();
    let thing = "twin-1";
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state);
    let mut destroyed = BTreeSet::new();
    for (round, after) in FAULTS_AFTER.into_iter().enumerate() {
        agent.feed_to(after);
        agent.wait_received(&destroyed);
        destroyed.insert(lose_next_result(
            &rig.proxy,
            &rig.observer,
            &mut agent,
            thing,
        ));
        let kicked = take_over(&rig.rt, rig.port, thing);
        rig.proxy.set(LinkMode::Forward);
        // The agent reconnects, which cuts the second client off.
        kicked
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("takeover {}: the agent never took its id back", round + 1));
    }
    assert_eq!(agent.fed, CYCLES);
    let (received, summary) = agent.finish(Duration::from_secs(60));
    assert_scored_once(&rig, thing);

    let all: BTreeSet<u64> = (0..CYCLES as u64).collect();
    let missing: BTreeSet<u64> = all.difference(&received).copied().collect();
    assert_eq!(missing, destroyed, "windows without a result at the agent");
    let samples = CYCLES as u64 * SAMPLES_PER_WINDOW;
    let given_up = destroyed.len() as u64 * SAMPLES_PER_WINDOW;
    assert_eq!(summary["queued"], 0, "{summary}");
    assert_eq!(summary["next_seq"], samples, "{summary}");
    assert_eq!(summary["given_up"], given_up, "{summary}");
    assert_eq!(summary["confirmed"], samples - given_up, "{summary}");
    assert!(summary["reconnects"].as_u64() >= Some(4), "{summary}");
    eprintln!(
        "takeover test took {:?}; results destroyed {destroyed:?}",
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
    let none = BTreeSet::new();
    for after in FAULTS_AFTER {
        agent.feed_to(after);
        agent.wait_received(&none);
        lose_next_result(&rig.proxy, &rig.observer, &mut agent, thing);
        // Leaving the up-only mode ends the connection: the agent reconnects.
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
