//! Fault tests on loopback: the device agent (`vigil device`) and the edge (`vigil edge`, which
//! hosts the embedded broker) run as subprocesses of the built binary so that they can be
//! killed with SIGKILL; a [`FaultProxy`] cuts and restores the device's link.
//!
//! Each test replays a few cycles of the committed hydraulic sample and then checks, from the
//! results on `dt/vigil/{thing}/condition`, that every window was scored exactly once with
//! completeness 1.0 and nothing filled: every sample reached the pipeline and counted once.
//! Every wait has a deadline; every test stops by itself.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_sim::proxy::{FaultProxy, LinkMode};

mod common;
use common::*;

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
    Proc::new(child, "vigil device")
}

/// The device exits once drained; every window then has exactly one complete result, and the
/// device's queue holds nothing with every sample numbered.
fn assert_everything_delivered(
    device: &mut Proc,
    observer: &Observer,
    thing: &str,
    cycles: usize,
    state: &Path,
) {
    let status = device.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "device exit {status}");
    wait_until("all windows", Duration::from_secs(20), || {
        observer.windows_of(thing) >= cycles
    });
    std::thread::sleep(Duration::from_millis(300)); // would a duplicate result follow?
    observer.assert_exactly_once(thing, cycles);
    assert_eq!(
        device_summary(state),
        (cycles as u64 * SAMPLES_PER_WINDOW, 0)
    );
}

fn device_summary(state: &Path) -> (u64, u64) {
    // The queue's own counters: (next_seq, queued) after the device exited.
    let q =
        vigil_device::queue::Queue::open(state, 1_000_000, vigil_device::queue::FullPolicy::Block)
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
    assert_everything_delivered(&mut device, &observer, thing, cycles, &state);
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
    assert_everything_delivered(&mut device, &observer, thing, cycles, &state);
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
    assert_everything_delivered(&mut device, &observer, thing, cycles, &state);
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
