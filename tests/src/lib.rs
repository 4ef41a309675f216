//! Test harness: DynamoDB Local and moto server on loopback, started once per test binary and
//! stopped when it exits; per-test resources with unique names; real hydraulic data.
//!
//! Environment (test-only names, not read by the function):
//! - `VIGIL_TEST_DYNAMODB_LOCAL_DIR`: DynamoDB Local (default `.tools/dynamodb-local`);
//! - `VIGIL_TEST_MOTO_SERVER`: the `moto_server` executable (default `.tools/venv/bin/moto_server`);
//! - `VIGIL_TEST_ENDPOINT`: use this endpoint (e.g. LocalStack) for every service instead of
//!   starting emulators; moto-only checks (recorded IoT publishes, SageMaker answers) are skipped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use vigil_core::telemetry::Sample;

pub mod bench;
pub mod fixture;
pub mod fleet;
pub mod local;

pub use fixture::Fixture;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The running emulators.
#[derive(Debug)]
pub struct Emulators {
    pub dynamodb: String,
    pub moto: String,
    /// False against LocalStack (`VIGIL_TEST_ENDPOINT`): moto's own API is not there.
    pub is_moto: bool,
    /// moto's request recording (IoT data plane publishes are read from it).
    pub recording: Option<PathBuf>,
    /// Watchdogs: each kills its emulator when our end of its stdin closes (at exit).
    _children: Mutex<Vec<Child>>,
}

static EMULATORS: OnceLock<Emulators> = OnceLock::new();

/// The emulators, started on first use.
pub fn emulators() -> &'static Emulators {
    EMULATORS.get_or_init(|| {
        let emulators = match std::env::var("VIGIL_TEST_ENDPOINT") {
            Ok(endpoint) if !endpoint.is_empty() => Emulators {
                dynamodb: endpoint.clone(),
                moto: endpoint,
                is_moto: false,
                recording: None,
                _children: Mutex::new(vec![]),
            },
            _ => start_emulators(),
        };
        set_sdk_env(&emulators);
        emulators
    })
}

/// SDK configuration through the environment, as in the Lambda: `AWS_ENDPOINT_URL` (moto) and
/// `AWS_ENDPOINT_URL_DYNAMODB` (DynamoDB Local). Set once, before any client exists.
fn set_sdk_env(e: &Emulators) {
    std::env::set_var("AWS_ENDPOINT_URL", &e.moto);
    std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", &e.dynamodb);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        std::env::set_var("ORT_DYLIB_PATH", ort_dylib());
    }
}

/// ONNX Runtime from the project's venv (installed by `make setup`).
pub fn ort_dylib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root().join(
                ".tools/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1",
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn log_dir() -> PathBuf {
    let dir = repo_root().join("target/emulators");
    std::fs::create_dir_all(&dir).expect("target/emulators");
    dir
}

/// Runs `program args` under `sh`, which kills it when its stdin reaches end of file: that
/// happens when this process exits, however it exits, so no emulator outlives the tests.
fn spawn_watched(program: &Path, args: &[String], log: &Path, envs: &[(&str, String)]) -> Child {
    let log_file = std::fs::File::create(log).expect("emulator log");
    let mut cmd = Command::new("sh");
    // DynamoDB Local writes a metadata file into its working directory: keep it in target/.
    cmd.current_dir(log.parent().expect("log dir"))
        .arg("-c")
        .arg(r#""$@" & child=$!; cat >/dev/null; kill "$child" 2>/dev/null; wait "$child""#)
        .arg("sh")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

fn start_emulators() -> Emulators {
    let root = repo_root();
    let ddb_dir = std::env::var_os("VIGIL_TEST_DYNAMODB_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/dynamodb-local"));
    let moto_bin = std::env::var_os("VIGIL_TEST_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/venv/bin/moto_server"));
    assert!(
        ddb_dir.join("DynamoDBLocal.jar").is_file(),
        "DynamoDB Local not found in {} (run scripts/setup-emulators.sh)",
        ddb_dir.display()
    );
    assert!(
        moto_bin.is_file(),
        "moto server not found at {} (run scripts/setup-emulators.sh)",
        moto_bin.display()
    );
    let logs = log_dir();
    let pid = std::process::id();

    let ddb_port = free_port();
    let ddb = spawn_watched(
        Path::new("java"),
        &[
            format!(
                "-Djava.library.path={}",
                ddb_dir.join("DynamoDBLocal_lib").display()
            ),
            "-jar".into(),
            ddb_dir.join("DynamoDBLocal.jar").display().to_string(),
            "-inMemory".into(),
            "-port".into(),
            ddb_port.to_string(),
        ],
        &logs.join(format!("dynamodb-{pid}.log")),
        &[],
    );
    let moto_port = free_port();
    let recording = logs.join(format!("moto-recording-{pid}.jsonl"));
    let moto = spawn_watched(
        &moto_bin,
        &[
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            moto_port.to_string(),
        ],
        &logs.join(format!("moto-{pid}.log")),
        &[
            ("MOTO_ENABLE_RECORDING", "true".into()),
            ("MOTO_RECORDER_FILEPATH", recording.display().to_string()),
        ],
    );
    let emulators = Emulators {
        dynamodb: format!("http://127.0.0.1:{ddb_port}"),
        moto: format!("http://127.0.0.1:{moto_port}"),
        is_moto: true,
        recording: Some(recording),
        _children: Mutex::new(vec![ddb, moto]),
    };
    // DynamoDB Local answers any POST; moto's own API answers GET /moto-api/.
    wait_ready(
        ddb_port,
        "POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "DynamoDB Local",
    );
    wait_ready(moto_port, "GET /moto-api/ HTTP/1.0\r\n\r\n", "moto server");
    emulators
}

/// Polls until the server answers an HTTP request (no fixed sleep: a short pause between tries).
fn wait_ready(port: u16, request: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(request.as_bytes()).is_ok() {
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.0 client for moto's own API on loopback.
pub fn http(method: &str, url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    http_with(method, url, body, "")
}

/// Same, with extra header lines (each ending in `\r\n`).
pub fn http_with(method: &str, url: &str, body: &[u8], headers: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response head");
    let status = std::str::from_utf8(&out[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out[split + 4..].to_vec())
}

/// Queues canned SageMaker answers (moto hands them out in order; one per distinct request).
pub fn sagemaker_answers(bodies: &[String]) {
    let e = emulators();
    let results: Vec<Value> = bodies
        .iter()
        .map(|b| serde_json::json!({"Body": b, "ContentType": "application/json"}))
        .collect();
    let (status, body) = http(
        "POST",
        &format!("{}/moto-api/static/sagemaker/endpoint-results", e.moto),
        serde_json::json!({ "results": results })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
}

/// moto's queue of SageMaker answers is global: tests that use it hold this lock.
pub async fn sagemaker_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// One IoT data plane publish recorded by moto.
#[derive(Clone, Debug)]
pub struct Publish {
    pub topic: String,
    pub qos: Option<u8>,
    pub payload: Vec<u8>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether IoT data plane publishes can be read back (moto's request recording); false against
/// LocalStack, where the checks that need them are skipped.
pub fn recorded() -> bool {
    emulators().recording.is_some()
}

/// The results published to a thing's condition topic, read back from moto; against LocalStack
/// (no recording), the results the handler reported publishing, `reported`.
pub fn condition_results(thing: &str, reported: &[vigil_core::ports::WindowResult]) -> Vec<Value> {
    if recorded() {
        publishes(&format!("dt/vigil/{thing}/condition"))
            .iter()
            .map(|p| serde_json::from_slice(&p.payload).expect("result JSON"))
            .collect()
    } else {
        reported
            .iter()
            .filter(|r| r.device.as_str() == thing)
            .map(|r| serde_json::to_value(r).expect("result JSON"))
            .collect()
    }
}

/// IoT data plane publishes whose topic starts with `prefix`, in order.
pub fn publishes(prefix: &str) -> Vec<Publish> {
    let Some(path) = &emulators().recording else {
        return vec![];
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let url = entry["url"].as_str().unwrap_or("");
        let Some(pos) = url.find("/topics/") else {
            continue;
        };
        let rest = &url[pos + "/topics/".len()..];
        let (topic, query) = rest.split_once('?').unwrap_or((rest, ""));
        let topic = percent_decode(topic);
        if !topic.starts_with(prefix) {
            continue;
        }
        let qos = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("qos="))
            .and_then(|v| v.parse().ok());
        let body = entry["body"].as_str().unwrap_or("");
        let payload = if entry["body_encoded"].as_bool() == Some(true) {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap_or_default()
        } else {
            body.as_bytes().to_vec()
        };
        out.push(Publish {
            topic,
            qos,
            payload,
        });
    }
    out
}

/// Unique suffix for resource names (tests run in parallel against shared emulators).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The hydraulic rig excerpt: per cycle, 60 samples of TS1..TS4 and the cooler condition.
#[derive(Clone, Debug)]
pub struct Hydraulic {
    /// `cycles[c][i]` = [TS1, TS2, TS3, TS4] at second `i` of cycle `c`.
    pub cycles: Vec<Vec<[f32; 4]>>,
    pub cooler: Vec<u32>,
}

impl Hydraulic {
    /// The committed excerpt `models/samples/hydraulic`, else `../shared/datasets/hydraulic`.
    pub fn load() -> Self {
        let root = repo_root();
        let dir = [
            root.join("models/samples/hydraulic"),
            root.join("../shared/datasets/hydraulic"),
        ]
        .into_iter()
        .find(|d| d.join("TS1.txt").is_file())
        .expect("hydraulic data (models/samples/hydraulic)");
        let read = |name: &str| -> Vec<Vec<f32>> {
            std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    l.split_whitespace()
                        .map(|v| v.parse().expect("number"))
                        .collect()
                })
                .collect()
        };
        let ts: Vec<Vec<Vec<f32>>> = ["TS1.txt", "TS2.txt", "TS3.txt", "TS4.txt"]
            .iter()
            .map(|n| read(n))
            .collect();
        let cooler = read("profile.txt").iter().map(|r| r[0] as u32).collect();
        let cycles = (0..ts[0].len())
            .map(|c| {
                (0..60)
                    .map(|i| [ts[0][c][i], ts[1][c][i], ts[2][c][i], ts[3][c][i]])
                    .collect()
            })
            .collect();
        Self { cycles, cooler }
    }

    /// Samples of cycles `range`, seq = cycle * 60 + second, ts = base + seq seconds.
    pub fn samples(&self, cycles: std::ops::Range<usize>) -> Vec<Sample> {
        let base = 1_700_000_000_000u64;
        cycles
            .flat_map(|c| {
                self.cycles[c].iter().enumerate().map(move |(i, v)| {
                    let seq = (c * 60 + i) as u64;
                    Sample {
                        seq,
                        ts: base + seq * 1000,
                        values: v.to_vec(),
                    }
                })
            })
            .collect()
    }
}

/// Deterministic pseudo-random numbers (xorshift), so failures replay.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Shuffles within consecutive blocks of `block` items: bounded reordering.
    pub fn shuffle_blocks<T>(&mut self, items: &mut [T], block: usize) {
        for chunk in items.chunks_mut(block) {
            for i in (1..chunk.len()).rev() {
                let j = self.below(i + 1);
                chunk.swap(i, j);
            }
        }
    }
}

pub mod flaky {
    //! Ports that fail on demand, wrapping the real adapters: to replay a Lambda that died or
    //! failed half-way.

    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;
    use vigil_core::ports::{
        AlertEvent, AlertSink, ClosedWindow, PortError, WindowArchive, WindowResult,
    };

    /// Fails the next `failures` calls (retryable), then delegates; `only_device` limits the
    /// failures to one device.
    pub struct Flaky<'a, T: ?Sized> {
        pub inner: &'a T,
        pub failures: AtomicU32,
        pub only_device: Option<String>,
    }

    impl<'a, T: ?Sized> Flaky<'a, T> {
        pub fn new(inner: &'a T, failures: u32) -> Self {
            Self {
                inner,
                failures: AtomicU32::new(failures),
                only_device: None,
            }
        }
        pub fn for_device(mut self, device: &str) -> Self {
            self.only_device = Some(device.into());
            self
        }
        fn fail(&self, device: &str) -> bool {
            if self.only_device.as_deref().is_some_and(|d| d != device) {
                return false;
            }
            self.failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    #[async_trait]
    impl<T: AlertSink + ?Sized> AlertSink for Flaky<'_, T> {
        async fn notify(&self, alert: &AlertEvent) -> Result<(), PortError> {
            if self.fail(alert.device.as_str()) {
                return Err(PortError::retryable("alerts", "injected: SNS unavailable"));
            }
            self.inner.notify(alert).await
        }
    }

    #[async_trait]
    impl<T: WindowArchive + ?Sized> WindowArchive for Flaky<'_, T> {
        async fn archive(&self, window: &ClosedWindow) -> Result<(), PortError> {
            if self.fail(window.result.device.as_str()) {
                return Err(PortError::retryable("archive", "injected: S3 unavailable"));
            }
            self.inner.archive(window).await
        }

        async fn contains(&self, result: &WindowResult) -> Result<bool, PortError> {
            self.inner.contains(result).await
        }

        async fn withdraw(&self, result: &WindowResult) -> Result<(), PortError> {
            self.inner.withdraw(result).await
        }

        fn tells_contents(&self) -> bool {
            self.inner.tells_contents()
        }
    }
}
