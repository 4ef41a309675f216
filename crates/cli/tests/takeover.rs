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
//!
//! With the `condition` shadow (the agent on the edge's mutual-TLS gateway, which carries
//! `$aws/...` topics and whose edge answers shadow requests), the latest destroyed verdict is
//! read back from the shadow; the last tests check the edge's shadow service itself.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
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

/// The thing the test PKI's `device.pem` is attached to at the gateway.
const GATEWAY_THING: &str = "tls-rig";

/// How the agent reaches the edge: the plain broker without the shadow (`--no-shadow`), or the
/// mutual-TLS gateway with it (`--shadow`), through a TLS bridge the test runs with the agent's
/// certificate (what `--endpoint` does inside the agent): the fault proxy sits on the plain side
/// of that bridge, as a TLS stream whose bytes are thrown away mid-record stalls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Plain,
    Gateway,
}

fn hydraulic() -> vigil_datasets::Hydraulic {
    let data = vigil_datasets::Hydraulic::load(Path::new(&sample_dir()), &CHANNELS)
        .expect("the committed hydraulic sample");
    assert!(data.cycles() >= CYCLES);
    data
}

/// Window `cycle` of the sample as one telemetry message, with the seqs and timestamps the
/// agent gives those samples (`feed_to`).
fn window_telemetry(data: &vigil_datasets::Hydraulic, cycle: usize) -> Vec<u8> {
    let channels: Vec<String> = CHANNELS.iter().map(|c| c.to_string()).collect();
    let samples: Vec<vigil_core::telemetry::Sample> = (0..60)
        .map(|t| {
            let seq = (cycle * 60 + t) as u64;
            vigil_core::telemetry::Sample {
                seq,
                ts: 1_700_000_000_000 + seq * 1000,
                values: data.channels.iter().map(|ch| ch[cycle][t]).collect(),
            }
        })
        .collect();
    vigil_core::telemetry::encode_batch(&samples, &channels)
}

fn start_agent(thing: &str, port: u16, state: &Path, link: Link) -> Agent {
    let data = hydraulic();
    let mut cmd = Command::new(VIGIL);
    cmd.args(["device", "--thing", thing, "--source", "stdin"]);
    match link {
        Link::Plain => cmd
            .arg("--broker")
            .arg(format!("mqtt://127.0.0.1:{port}"))
            .arg("--no-shadow"),
        Link::Gateway => cmd
            .arg("--broker")
            .arg(format!("mqtt://127.0.0.1:{port}"))
            .arg("--shadow"),
    };
    let mut child = cmd
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
        for cycle in self.fed..to {
            self.feed_samples(cycle, 0..60);
        }
        self.fed = to;
        if to >= CYCLES {
            self.stdin = None;
        }
    }

    /// Writes samples `ts` of `cycle` to the agent's stdin (part of a window: `fed` stays).
    fn feed_samples(&mut self, cycle: usize, ts: std::ops::Range<usize>) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        {
            for t in ts {
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
    }

    /// The windows the agent printed a verdict for so far (`condition THING window N ...`),
    /// received on the condition topic or read back from the shadow.
    fn received(&self) -> BTreeSet<u64> {
        self.windows(|_| true)
    }

    /// The windows whose verdict the agent read back from the shadow (`... [from the shadow]`).
    fn recovered(&self) -> BTreeSet<u64> {
        self.windows(|l| l.ends_with(" [from the shadow]"))
    }

    fn windows(&self, keep: impl Fn(&str) -> bool) -> BTreeSet<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| keep(l))
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
    take_over_sending(rt, port, thing, None)
}

/// [`take_over`], the second client also publishing `telemetry` (on the thing's topic) once
/// connected.
fn take_over_sending(
    rt: &tokio::runtime::Runtime,
    port: u16,
    thing: &str,
    telemetry: Option<Vec<u8>>,
) -> std::sync::mpsc::Receiver<()> {
    let (connected_tx, connected_rx) = std::sync::mpsc::channel();
    let (kicked_tx, kicked_rx) = std::sync::mpsc::channel();
    let mut options = MqttOptions::new(thing, "127.0.0.1", port);
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(256 * 1024, 256 * 1024);
    let client_thing = thing.to_string();
    rt.spawn(async move {
        let (client, mut eventloop) = AsyncClient::new(options, 8);
        let topic = format!("dt/vigil/{}/telemetry", client_thing);
        let mut telemetry = telemetry;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(payload) = telemetry.take() {
                        let _ = client.try_publish(&topic, QoS::AtLeastOnce, false, payload);
                    }
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

/// The edge, an observer on its broker, and a fault proxy in front of what the agent connects
/// to (`link`: the broker, or the gateway with `tls-rig` attached to `device.pem`).
fn rig(link: Link) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (edge, port, agent_port, http) = match link {
        Link::Plain => {
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
            (edge, port, port, http)
        }
        Link::Gateway => {
            start_gateway_edge(dir.path(), &[(GATEWAY_THING, "device.pem")], Some("ca.pem"))
        }
    };
    let observer = Observer::start(port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = match link {
        Link::Plain => SocketAddr::from(([127, 0, 0, 1], agent_port)),
        Link::Gateway => rt
            .block_on(vigil_device::start_tls_bridge(
                &format!("127.0.0.1:{agent_port}"),
                &tls_file("device.pem"),
                &tls_file("device.key"),
                &tls_file("ca.pem"),
            ))
            .unwrap(),
    };
    let proxy = rt
        .block_on(FaultProxy::start("127.0.0.1:0", upstream))
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
    let rig = rig(Link::Plain);
    let thing = "twin-1";
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state, Link::Plain);
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

/// The three takeovers above with the shadow (the agent on the edge's gateway): after each
/// reconnect that found no session the agent reads the `condition` shadow back. The shadow
/// holds only the LATEST verdict; here the destroyed result is the latest each time (the
/// takeover follows it at once), so all three are recovered from it and nothing is given up,
/// where without the shadow their 180 samples are.
#[test]
fn with_the_shadow_the_destroyed_verdicts_are_recovered_and_nothing_given_up() {
    let rig = rig(Link::Gateway);
    let thing = GATEWAY_THING;
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state, Link::Gateway);
    let mut destroyed = BTreeSet::new();
    for (round, after) in FAULTS_AFTER.into_iter().enumerate() {
        agent.feed_to(after);
        agent.wait_received(&BTreeSet::new());
        let window = lose_next_result(&rig.proxy, &rig.observer, &mut agent, thing);
        destroyed.insert(window);
        let kicked = take_over(&rig.rt, rig.port, thing);
        rig.proxy.set(LinkMode::Forward);
        kicked
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("takeover {}: the agent never took its id back", round + 1));
        wait_until(
            "the destroyed verdict read back from the shadow",
            Duration::from_secs(30),
            || agent.recovered().contains(&window),
        );
    }
    let (received, summary) = agent.finish(Duration::from_secs(60));
    assert_scored_once(&rig, thing);

    assert_eq!(agent.recovered(), destroyed, "{summary}");
    assert_eq!(received, (0..CYCLES as u64).collect(), "{summary}");
    let samples = CYCLES as u64 * SAMPLES_PER_WINDOW;
    assert_eq!(
        summary["recovered_from_shadow"],
        destroyed.len(),
        "{summary}"
    );
    assert_eq!(summary["given_up"], 0, "{summary}");
    assert_eq!(summary["confirmed"], samples, "{summary}");
    assert_eq!(
        summary["results"],
        CYCLES as u64 - destroyed.len() as u64,
        "{summary}"
    );
    assert_eq!(summary["queued"], 0, "{summary}");
    assert!(summary["sessions_lost"].as_u64() >= Some(3), "{summary}");
    assert!(summary["shadow_gets"].as_u64() >= Some(3), "{summary}");
}

/// The shadow holds only the LATEST verdict. The second client that takes the agent's id over
/// (destroying the session with window 3's result) also sends window 4 itself, so the shadow's
/// verdict is window 4's when the agent asks: window 3's is gone for good and its samples are
/// given up, while window 4 — whose samples the agent then sends as duplicates, which the
/// pipeline answers with nothing — is accounted for by the shadow before a give-up.
#[test]
fn the_shadow_holds_only_the_latest_verdict_so_an_older_destroyed_one_is_given_up() {
    let rig = rig(Link::Gateway);
    let thing = GATEWAY_THING;
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state, Link::Gateway);
    agent.feed_to(3);
    agent.wait_received(&BTreeSet::new());
    let lost = lose_next_result(&rig.proxy, &rig.observer, &mut agent, thing);
    let kicked = take_over_sending(
        &rig.rt,
        rig.port,
        thing,
        Some(window_telemetry(&agent.data, 4)),
    );
    wait_until("window 4 scored", Duration::from_secs(30), || {
        rig.observer.windows_of(thing) > 4
    });
    rig.proxy.set(LinkMode::Forward);
    kicked
        .recv_timeout(Duration::from_secs(30))
        .expect("the agent took its id back");
    // The agent's question after the reconnect is answered before window 4 is queued (so the
    // shadow's verdict cannot confirm part of it).
    wait_until(
        "the shadow's answer after the reconnect",
        Duration::from_secs(30),
        || {
            agent
                .lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with(&format!("shadow {thing}: latest verdict window 4 ")))
        },
    );
    agent.feed_to(5);
    wait_until(
        "window 4 accounted for by the shadow",
        Duration::from_secs(30),
        || agent.recovered().contains(&4),
    );
    agent.feed_to(CYCLES);
    let (received, summary) = agent.finish(Duration::from_secs(60));
    assert_scored_once(&rig, thing);

    assert_eq!(lost, 3);
    assert_eq!(agent.recovered(), BTreeSet::from([4]), "{summary}");
    let missing: BTreeSet<u64> = (0..CYCLES as u64)
        .filter(|w| !received.contains(w))
        .collect();
    assert_eq!(missing, BTreeSet::from([3]), "{summary}");
    let samples = CYCLES as u64 * SAMPLES_PER_WINDOW;
    assert_eq!(summary["recovered_from_shadow"], 1, "{summary}");
    assert_eq!(summary["given_up"], SAMPLES_PER_WINDOW, "{summary}");
    assert_eq!(
        summary["confirmed"],
        samples - SAMPLES_PER_WINDOW,
        "{summary}"
    );
    assert_eq!(summary["queued"], 0, "{summary}");
}

/// The edge's shadow service, as a device on the gateway sees it: a `get` of its `condition`
/// shadow before any result is rejected with 404, after a result it is accepted with that
/// verdict (and the result also came as `update/accepted`), the request's `clientToken` echoed
/// each time; a `get` of another thing's shadow is a policy violation that ends the connection.
#[test]
fn the_edge_answers_a_device_s_get_of_its_own_condition_shadow_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_edge, _broker, gateway, http) =
        start_gateway_edge(dir.path(), &[(GATEWAY_THING, "device.pem")], Some("ca.pem"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let shadow = format!("$aws/things/{GATEWAY_THING}/shadow/name/condition");
    rt.block_on(async {
        let bridge = vigil_device::start_tls_bridge(
            &format!("127.0.0.1:{gateway}"),
            &tls_file("device.pem"),
            &tls_file("device.key"),
            &tls_file("ca.pem"),
        )
        .await
        .unwrap();
        let mut options = MqttOptions::new(GATEWAY_THING, "127.0.0.1", bridge.port());
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut events) = AsyncClient::new(options, 16);
        let condition = format!("dt/vigil/{GATEWAY_THING}/condition");
        let filters = [
            condition.clone(),
            format!("{shadow}/get/accepted"),
            format!("{shadow}/get/rejected"),
            format!("{shadow}/update/accepted"),
        ];
        for f in &filters {
            client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
        }
        for _ in &filters {
            next_event(&mut events, |p| matches!(p, Packet::SubAck(_))).await;
        }
        let get = format!("{shadow}/get");

        client
            .publish(&get, QoS::AtLeastOnce, false, r#"{"clientToken":"before"}"#)
            .await
            .unwrap();
        let rejected = message_on(&mut events, &format!("{shadow}/get/rejected")).await;
        assert_eq!(rejected["code"], 404, "{rejected}");
        assert_eq!(rejected["clientToken"], "before", "{rejected}");

        // One whole window of telemetry: the edge scores it at once.
        client
            .publish(
                format!("dt/vigil/{GATEWAY_THING}/telemetry"),
                QoS::AtLeastOnce,
                false,
                window_telemetry(&hydraulic(), 0),
            )
            .await
            .unwrap();
        let result = message_on(&mut events, &condition).await;
        assert_eq!(
            (result["window"].clone(), result["seq_end"].clone()),
            (0.into(), 60.into())
        );
        let update = message_on(&mut events, &format!("{shadow}/update/accepted")).await;
        assert_eq!(
            update["state"]["reported"]["label"], result["label"],
            "{update}"
        );
        assert_eq!(update["version"], 1, "{update}");

        client
            .publish(&get, QoS::AtLeastOnce, false, r#"{"clientToken":"after"}"#)
            .await
            .unwrap();
        let accepted = message_on(&mut events, &format!("{shadow}/get/accepted")).await;
        let reported = &accepted["state"]["reported"];
        for field in [
            "window",
            "seq_start",
            "seq_end",
            "label",
            "status",
            "model_version",
        ] {
            assert_eq!(reported[field], result[field], "{field}: {accepted}");
        }
        assert_eq!(accepted["version"], 1, "{accepted}");
        assert_eq!(accepted["clientToken"], "after", "{accepted}");

        // Another thing's shadow: refused by the policy, and the connection ends.
        client
            .publish(
                "$aws/things/other-rig/shadow/name/condition/get",
                QoS::AtLeastOnce,
                false,
                "{}",
            )
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.poll()).await {
                Err(_) => panic!("the gateway did not end the connection"),
                Ok(Err(_)) => break,
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    panic!(
                        "received {} after asking for another thing's shadow",
                        p.topic
                    )
                }
                Ok(Ok(_)) => {}
            }
        }
    });
    assert_eq!(metric(http, "vigil_gateway_policy_violations_total"), 1);
}

/// The next incoming packet `want` accepts, within 30 s (others are skipped).
async fn next_event(events: &mut rumqttc::EventLoop, want: impl Fn(&Packet) -> bool) -> Packet {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.poll())
            .await
            .expect("the expected MQTT packet within 30 s")
            .expect("the connection to the gateway");
        if let Event::Incoming(p) = event {
            if want(&p) {
                return p;
            }
        }
    }
}

/// The next message on `topic`, as JSON.
async fn message_on(events: &mut rumqttc::EventLoop, topic: &str) -> serde_json::Value {
    let p = next_event(
        events,
        |p| matches!(p, Packet::Publish(m) if m.topic == topic),
    )
    .await;
    let Packet::Publish(m) = p else {
        unreachable!()
    };
    serde_json::from_slice(&m.payload).expect("a JSON message")
}

/// Results lost on the link (not to a takeover) are kept by the broker in the agent's
/// persistent session and delivered when it reconnects: the agent receives every one, gives
/// nothing up.
#[test]
fn results_lost_on_the_link_come_back_with_the_persistent_session() {
    let rig = rig(Link::Plain);
    let thing = "oneway-1";
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state, Link::Plain);
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

/// A forged `get/accepted` for the agent's shadow (anyone on the edge's plain listener can
/// publish under `vigil-aws/...`) claiming a verdict for every seq there is, while half of
/// window 2 waits in the agent's queue: the agent reads no window in it and removes nothing,
/// so window 2 is scored whole and every sample is confirmed by its own result.
#[test]
fn a_forged_shadow_reply_drops_nothing_the_agent_still_has_to_deliver() {
    let rig = rig(Link::Gateway);
    let thing = GATEWAY_THING;
    let mut agent = start_agent(thing, rig.proxy.addr().port(), &rig.state, Link::Gateway);
    agent.feed_to(2);
    agent.wait_received(&BTreeSet::new());
    agent.feed_samples(2, 0..30);

    let shadow = format!("vigil-aws/things/{thing}/shadow/name/condition");
    let mut options = MqttOptions::new("forger", "127.0.0.1", rig.port);
    options.set_keep_alive(Duration::from_secs(30));
    let forged = format!(
        r#"{{"state":{{"reported":{{"window":0,"seq_start":0,"seq_end":{},"label":"forged","completeness":1.0}}}},"version":9}}"#,
        u64::MAX
    );
    let marker = r#"{"state":{"reported":{"label":"marker"}}}"#;
    let (published_tx, published_rx) = std::sync::mpsc::channel();
    rig.rt.spawn(async move {
        let (client, mut eventloop) = AsyncClient::new(options, 8);
        // In this order on one connection: the agent handles the forgery before the marker.
        for (topic, payload) in [
            (format!("{shadow}/get/accepted"), forged),
            (format!("{shadow}/update/accepted"), marker.to_string()),
        ] {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        let mut acks = 0;
        while let Ok(event) = eventloop.poll().await {
            if matches!(event, Event::Incoming(Packet::PubAck(_))) {
                acks += 1;
                if acks == 2 {
                    let _ = published_tx.send(());
                }
            }
        }
    });
    published_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the forged replies published");
    let lines = agent.lines.clone();
    wait_until("the agent read the marker", Duration::from_secs(30), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with(&format!("shadow {thing}: ")) && l.contains("marker"))
    });

    agent.feed_samples(2, 30..60);
    agent.fed = 3;
    agent.feed_to(CYCLES);
    let (received, summary) = agent.finish(Duration::from_secs(60));
    assert_scored_once(&rig, thing);
    assert_eq!(received, (0..CYCLES as u64).collect(), "{summary}");
    assert!(agent.recovered().is_empty(), "{summary}");
    let window_2 = agent
        .lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.starts_with(&format!("condition {thing} window 2 ")))
        .cloned()
        .unwrap();
    assert!(window_2.contains("completeness 1.00"), "{window_2}");
    assert_eq!(summary["recovered_from_shadow"], 0, "{summary}");
    assert_eq!(summary["given_up"], 0, "{summary}");
    assert_eq!(summary["results"], CYCLES as u64, "{summary}");
    assert_eq!(
        summary["confirmed"],
        CYCLES as u64 * SAMPLES_PER_WINDOW,
        "{summary}"
    );
}
