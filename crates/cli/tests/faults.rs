//! Fault tests on loopback: the device agent (`vigil device`) and the edge (`vigil edge`, which
//! hosts the embedded broker) run as subprocesses of the built binary so that they can be
//! killed with SIGKILL; a [`FaultProxy`] cuts and restores the device's link.
//!
//! Each test replays a few cycles of the committed hydraulic sample and then checks, from the
//! results on `dt/vigil/{thing}/condition`, that every window was scored exactly once with
//! completeness 1.0 and nothing filled: every sample reached the pipeline and counted once.
//! Every wait has a deadline; every test stops by itself.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vigil_cli::proxy::{FaultProxy, LinkMode};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
const SAMPLES_PER_WINDOW: u64 = 60;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sample_dir() -> String {
    repo()
        .join("models/samples/hydraulic")
        .display()
        .to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !ok() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit within {deadline:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `vigil edge` with its embedded broker on `port` and its store in `state`; returns once the
/// edge has printed its start line (profiles loaded, subscribed).
fn start_edge(port: u16, state: &Path) -> Proc {
    let mut child = Command::new(VIGIL)
        .args(["edge", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state")
        .arg(state)
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil edge");
    let stdout = child.stdout.take().expect("edge stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("vigil edge:") {
                let _ = tx.send(());
            }
        }
    });
    let mut proc = Proc {
        child,
        name: "vigil edge",
    };
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            panic!("vigil edge exited at start: {status}");
        }
        assert!(Instant::now() < end, "vigil edge did not start within 90 s");
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    proc
}

struct DeviceRun<'a> {
    thing: &'a str,
    port: u16,
    state: &'a Path,
    cycles: usize,
    speed: f64,
}

fn start_device(d: &DeviceRun<'_>) -> Proc {
    let child = Command::new(VIGIL)
        .args(["device", "--thing", d.thing, "--source"])
        .arg(format!("replay-hydraulic:{}", sample_dir()))
        .arg("--broker")
        .arg(format!("mqtt://127.0.0.1:{}", d.port))
        .arg("--state")
        .arg(d.state)
        .args(["--cycles", &d.cycles.to_string()])
        .args(["--speed", &d.speed.to_string()])
        .args(["--batch", "10", "--keep-alive", "2", "--resend-after", "3"])
        .args(["--backoff-min", "0.05", "--backoff-max", "0.5"])
        .args(["--exit-when-drained", "--quiet"])
        .env("VIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vigil device");
    Proc {
        child,
        name: "vigil device",
    }
}

/// Results seen on the condition topics: window → (count, completeness, filled).
type Seen = Arc<Mutex<BTreeMap<(String, u64), Vec<(f64, u64)>>>>;

/// An observer that stays subscribed across broker restarts (it re-subscribes on every
/// CONNACK) and records every result it sees.
struct Observer {
    seen: Seen,
    _rt: tokio::runtime::Runtime,
}

impl Observer {
    fn start(port: u16) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let mut options = MqttOptions::new(format!("observer-{port}"), "127.0.0.1", port);
            options
                .set_keep_alive(Duration::from_secs(2))
                .set_max_packet_size(256 * 1024, 256 * 1024);
            let (client, mut eventloop) = AsyncClient::new(options, 64);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client
                            .subscribe("dt/vigil/+/condition", QoS::AtLeastOnce)
                            .await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&p.payload).unwrap_or_default();
                        let thing = p.topic.split('/').nth(2).unwrap_or("").to_string();
                        let window = v["window"].as_u64().unwrap_or(u64::MAX);
                        let completeness = v["completeness"].as_f64().unwrap_or(-1.0);
                        let filled = v["filled"].as_u64().unwrap_or(u64::MAX);
                        s.lock()
                            .unwrap()
                            .entry((thing, window))
                            .or_default()
                            .push((completeness, filled));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("observer subscribed");
        Self { seen, _rt: rt }
    }

    fn windows_of(&self, thing: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, _)| t == thing)
            .count()
    }

    /// Every window of `cycles` cycles scored exactly once, complete, nothing filled.
    fn assert_exactly_once(&self, thing: &str, cycles: usize) {
        let seen = self.seen.lock().unwrap();
        let mine: BTreeMap<u64, &Vec<(f64, u64)>> = seen
            .iter()
            .filter(|((t, _), _)| t == thing)
            .map(|((_, w), r)| (*w, r))
            .collect();
        let expected: Vec<u64> = (0..cycles as u64).collect();
        assert_eq!(
            mine.keys().copied().collect::<Vec<_>>(),
            expected,
            "{thing}: windows with a result"
        );
        for (w, results) in mine {
            assert_eq!(
                results.len(),
                1,
                "{thing}: window {w} has {} results: {results:?}",
                results.len()
            );
            let (completeness, filled) = results[0];
            assert!(
                (completeness - 1.0).abs() < 1e-6,
                "{thing}: window {w} completeness {completeness}"
            );
            assert_eq!(filled, 0, "{thing}: window {w} filled {filled} samples");
        }
    }
}

fn device_summary(state: &Path) -> (u64, u64) {
    // The queue's own counters: (next_seq, queued) after the device exited.
    let q = vigil_cli::queue::Queue::open(state, 1_000_000, vigil_cli::queue::FullPolicy::Block)
        .expect("open the device queue");
    let s = q.stats().expect("stats");
    (s.next_seq, s.queued)
}

#[test]
fn link_cut_and_blackholed_then_restored_loses_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _edge = start_edge(port, &dir.path().join("edge"));
    let observer = Observer::start(port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt
        .block_on(FaultProxy::start(
            "127.0.0.1:0",
            SocketAddr::from(([127, 0, 0, 1], port)),
        ))
        .unwrap();
    let cycles = 8;
    let thing = "link-1";
    let state = dir.path().join("device");
    let mut device = start_device(&DeviceRun {
        thing,
        port: proxy.addr().port(),
        state: &state,
        cycles,
        speed: 150.0,
    });
    wait_until(
        "two results before the cut",
        Duration::from_secs(30),
        || observer.windows_of(thing) >= 2,
    );
    proxy.set(LinkMode::Drop);
    std::thread::sleep(Duration::from_millis(700)); // the outage itself, not a synchronisation
    proxy.set(LinkMode::Forward);
    wait_until(
        "four results before the blackhole",
        Duration::from_secs(30),
        || observer.windows_of(thing) >= 4,
    );
    proxy.set(LinkMode::Blackhole);
    std::thread::sleep(Duration::from_millis(3000)); // longer than the keep-alive
    proxy.set(LinkMode::Forward);
    let status = device.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "device exit {status}");
    wait_until("all windows", Duration::from_secs(20), || {
        observer.windows_of(thing) >= cycles
    });
    std::thread::sleep(Duration::from_millis(300)); // would a duplicate result follow?
    observer.assert_exactly_once(thing, cycles);
    assert_eq!(
        device_summary(&state),
        (cycles as u64 * SAMPLES_PER_WINDOW, 0)
    );
    assert!(
        proxy
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    eprintln!("link cut test took {:?}", started.elapsed());
}

#[test]
fn device_killed_and_restarted_continues_its_seq() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _edge = start_edge(port, &dir.path().join("edge"));
    let observer = Observer::start(port);
    let cycles = 8;
    let thing = "restart-1";
    let state = dir.path().join("device");
    let run = DeviceRun {
        thing,
        port,
        state: &state,
        cycles,
        speed: 150.0,
    };
    let mut device = start_device(&run);
    wait_until(
        "three results before the kill",
        Duration::from_secs(30),
        || observer.windows_of(thing) >= 3,
    );
    device.kill();
    let (seq_at_kill, _) = device_summary(&state);
    assert!(
        seq_at_kill < cycles as u64 * SAMPLES_PER_WINDOW,
        "killed too late"
    );
    let mut device = start_device(&run);
    let status = device.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "device exit {status}");
    wait_until("all windows", Duration::from_secs(20), || {
        observer.windows_of(thing) >= cycles
    });
    std::thread::sleep(Duration::from_millis(300));
    observer.assert_exactly_once(thing, cycles);
    assert_eq!(
        device_summary(&state),
        (cycles as u64 * SAMPLES_PER_WINDOW, 0)
    );
    eprintln!("device kill test took {:?}", started.elapsed());
}

#[test]
fn edge_and_its_broker_killed_and_restarted_mid_replay() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let edge_state = dir.path().join("edge");
    let mut edge = start_edge(port, &edge_state);
    let observer = Observer::start(port);
    let cycles = 8;
    let thing = "broker-1";
    let state = dir.path().join("device");
    let mut device = start_device(&DeviceRun {
        thing,
        port,
        state: &state,
        cycles,
        speed: 150.0,
    });
    wait_until(
        "three results before the kill",
        Duration::from_secs(30),
        || observer.windows_of(thing) >= 3,
    );
    edge.kill();
    std::thread::sleep(Duration::from_millis(500)); // the outage itself
    let _edge = start_edge(port, &edge_state);
    let status = device.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "device exit {status}");
    wait_until("all windows", Duration::from_secs(20), || {
        observer.windows_of(thing) >= cycles
    });
    std::thread::sleep(Duration::from_millis(300));
    observer.assert_exactly_once(thing, cycles);
    assert_eq!(
        device_summary(&state),
        (cycles as u64 * SAMPLES_PER_WINDOW, 0)
    );
    eprintln!("edge kill test took {:?}", started.elapsed());
}

#[test]
fn small_fleet_loses_nothing() {
    let out = Command::new(VIGIL)
        .args([
            "fleet",
            "--devices",
            "20",
            "--cycles",
            "2",
            "--batch",
            "10",
            "--timeout",
            "60",
        ])
        .env("VIGIL_LOG", "error,rumqttd=off")
        .stderr(Stdio::inherit())
        .output()
        .expect("run vigil fleet");
    assert!(out.status.success(), "vigil fleet failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(text.lines().last().expect("a report line")).expect("JSON report");
    assert_eq!(report["windows_expected"], 40);
    assert_eq!(report["windows_scored"], 40);
    assert_eq!(report["loss"], 0);
    assert_eq!(report["duplicate_results"], 0);
}
