//! Helpers shared by the subprocess tests (faults, mTLS): the built `vigil` binary, the edge
//! with its embedded broker, and an observer of the condition topic.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");
pub const SAMPLES_PER_WINDOW: u64 = 60;
/// The edge's HTTP token in these tests (`--http-token`).
pub const MONITOR_TOKEN: &str = "vigil-test-token-0123456789";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn sample_dir() -> String {
    repo()
        .join("models/samples/hydraulic")
        .display()
        .to_string()
}

/// A loopback port nobody listens on, below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel handed out for `:0` and we released can be taken by any outgoing
/// connection before the process we start binds it; these cannot. Never the same port twice in
/// one test binary, and each binary starts elsewhere (by its pid).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

pub fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
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
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn new(child: Child, name: &'static str) -> Self {
        Self { child, name }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
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
pub fn start_edge(port: u16, state: &Path) -> Proc {
    start_edge_with(port, state, &[])
}

/// [`start_edge`] with more flags.
pub fn start_edge_with(port: u16, state: &Path, extra: &[std::ffi::OsString]) -> Proc {
    let mut child = Command::new(VIGIL)
        .args(["edge", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state")
        .arg(state)
        .args(extra)
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
    let mut proc = Proc::new(child, "vigil edge");
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

/// Runs to the end (within `deadline`), returning the exit code and stderr.
pub fn run_to_end(mut cmd: Command, deadline: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut text = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let mut proc = Proc::new(child, "vigil");
    let status = proc.wait_exit(deadline);
    (status.code(), reader.join().unwrap())
}

/// One counter of the edge's /metrics (`--http` on `http_port`).
pub fn metric(http_port: u16, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", http_port)).expect("monitor");
    stream
        .write_all(
            format!(
                "GET /metrics HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {MONITOR_TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .parse()
        .unwrap()
}

/// Results seen on the condition topics: window → (count, completeness, filled).
pub type Seen = Arc<Mutex<BTreeMap<(String, u64), Vec<(f64, u64)>>>>;

/// An observer that stays subscribed across broker restarts (it re-subscribes on every
/// CONNACK) and records every result it sees.
pub struct Observer {
    seen: Seen,
    _rt: tokio::runtime::Runtime,
}

impl Observer {
    pub fn start(port: u16) -> Self {
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

    /// The windows of `thing` with at least one result.
    pub fn windows(&self, thing: &str) -> std::collections::BTreeSet<u64> {
        self.seen
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, _)| t == thing)
            .map(|(_, w)| *w)
            .collect()
    }

    pub fn windows_of(&self, thing: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .keys()
            .filter(|(t, _)| t == thing)
            .count()
    }

    /// Every window of `cycles` cycles scored exactly once, complete, nothing filled.
    pub fn assert_exactly_once(&self, thing: &str, cycles: usize) {
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

/// A file of the test PKI (tests/fixtures/tls; `device.pem` is attached to thing `tls-rig`).
pub fn tls_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// `vigil edge` with its device gateway on a free port, the gateway's certificate the test
/// endpoint's, `attached` (thing, fixture file) as its `--device-certs`, and `device_ca` (a
/// fixture file) as its `--device-ca` if any. Returns the edge, its broker port, gateway port
/// and monitoring port.
pub fn start_gateway_edge(
    dir: &std::path::Path,
    attached: &[(&str, &str)],
    device_ca: Option<&str>,
) -> (Proc, u16, u16, u16) {
    let certs = dir.join("device-certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (thing, file) in attached {
        std::fs::copy(tls_file(file), certs.join(format!("{thing}.pem"))).unwrap();
    }
    let (broker, gateway, http) = (free_port(), free_port(), free_port());
    let mut extra: Vec<std::ffi::OsString> = Vec::new();
    for (flag, value) in [
        ("--tls-listen", format!("127.0.0.1:{gateway}").into()),
        ("--tls-cert", tls_file("endpoint.pem")),
        ("--tls-key", tls_file("endpoint.key")),
        ("--device-certs", certs),
        ("--http", format!("127.0.0.1:{http}").into()),
        ("--http-token", MONITOR_TOKEN.into()),
    ] {
        extra.push(flag.into());
        extra.push(value.into_os_string());
    }
    if let Some(ca) = device_ca {
        extra.push("--device-ca".into());
        extra.push(tls_file(ca).into_os_string());
    }
    let edge = start_edge_with(broker, &dir.join("edge"), &extra);
    (edge, broker, gateway, http)
}
