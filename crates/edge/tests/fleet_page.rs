//! The fleet page in headless Chromium (Debian's `chromium`, driven by `playwright-core` from
//! `make setup`): during a replay it lists the devices, shows a new verdict without a reload,
//! acknowledges an alarm from the page (checked in the store), and refuses a request without the
//! token. The browser script is `tests/page/drive.mjs`; the whole run is bounded in time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vigil_core::alarm::AlarmState;
use vigil_core::ports::{DeviceStateStore, StreamKey};
use vigil_core::{CompiledProfile, DeviceId};
use vigil_datasets::{models, Hydraulic};
use vigil_edge::{self as edge, broker, EdgeConfig};
use vigil_mqtt::BrokerUrl;
use vigil_sim::replay::{self, PlanOptions, Replayer};

const PROFILE: &str = "hydraulic-cooler";
const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "page-test-token-0123456789";

fn tools() -> PathBuf {
    models::repo_root().join(".tools/browser/node_modules/playwright-core")
}

async fn publish(
    url: &BrokerUrl,
    id: &str,
    data: &Hydraulic,
    cycles: std::ops::Range<usize>,
) -> u64 {
    let mut options = PlanOptions::new(replay::thing_names("pg", 2).unwrap(), cycles);
    options.batch = 20;
    let channels: Vec<String> = ["TS1", "TS2", "TS3", "TS4"].map(String::from).to_vec();
    let plan = replay::plan(data, &channels, &options).unwrap();
    let mut replayer = Replayer::connect(url, id).await.unwrap();
    replayer.publish(&plan.messages, 0.0, |_| {}).await.unwrap();
    let acked = replayer.wait_acked(DEADLINE).await.unwrap();
    replayer.disconnect().await;
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_page_lists_updates_live_and_acknowledges() {
    assert!(
        tools().exists() && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and playwright-core: run scripts/setup-browser.sh (make setup)"
    );
    let data = Hydraulic::load(
        &models::repo_root().join("models/samples/hydraulic"),
        &["TS1", "TS2", "TS3", "TS4"],
    )
    .unwrap();
    let profiles: Arc<BTreeMap<String, CompiledProfile>> = Arc::new(
        edge::load_profiles_named(&models::models_dir(None), &[PROFILE]).expect("profile (ORT?)"),
    );
    let broker = broker::start_embedded("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = BrokerUrl::parse(&broker.url()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut config = EdgeConfig::new(url.clone(), state.path());
    config.default_profile = PROFILE.into();
    config.client_id = "page-edge".into();
    config.http = Some("127.0.0.1:0".parse().unwrap());
    config.http_token = Some(TOKEN.into());
    let mut edge = edge::start_with(config, profiles).await.unwrap();
    edge.ready(DEADLINE).await.unwrap();
    let addr = edge.http_addr.unwrap();

    // Cycles 10-13: healthy twice, then reduced cooling ("20") twice: an alarm is raised.
    let mut acked = publish(&url, "page-replay-1", &data, 10..14).await;
    edge.wait_until(DEADLINE, |s| s.acked >= acked)
        .await
        .unwrap();

    let screenshot = std::env::var("VIGIL_PAGE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| state.path().join("page.png"));
    let mut node = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/page/drive.mjs"))
        .env("VIGIL_URL", format!("http://{addr}"))
        .env("VIGIL_TOKEN", TOKEN)
        .env("VIGIL_SCREENSHOT", &screenshot)
        .env("PLAYWRIGHT_CORE", tools())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stdin = node.stdin.take().unwrap();
    let (tx, mut steps) = tokio::sync::mpsc::unbounded_channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(90), steps.recv())
            .await
            .expect("the browser script moves on in time")
    };

    let listed = next().await.expect("the page lists the devices");
    assert!(listed.starts_with("step listed"), "{listed}");
    // Two more cycles ("20"): new verdicts for both devices while the page is open.
    acked += publish(&url, "page-replay-2", &data, 14..16).await;
    edge.wait_until(DEADLINE, |s| s.acked >= acked)
        .await
        .unwrap();
    writeln!(stdin, "go").unwrap();
    let changed = next().await.expect("a verdict change shows live");
    assert!(changed.starts_with("step verdict"), "{changed}");
    let done = next()
        .await
        .expect("the alarm is acknowledged from the page");
    assert_eq!(done, "step acknowledged");

    let status = tokio::task::spawn_blocking(move || node.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the browser script failed: {status}");
    // The acknowledgement is in the device state, as the pipeline sees it.
    edge.shutdown().await.unwrap();
    let store =
        edge::store::EdgeStore::open_dir(state.path(), edge::store::Durability::PerCommit).unwrap();
    let key = StreamKey {
        device: DeviceId::new("pg-001").unwrap(),
        profile: PROFILE.into(),
    };
    let alarms = store.load(&key).await.unwrap().value.alarms;
    assert_eq!(alarms.state_of("20"), AlarmState::ActiveAcknowledged);
    assert_eq!(
        alarms.alarms["20"].acknowledged.as_ref().unwrap().by,
        "fleet-page"
    );
    assert!(screenshot.exists());
}
