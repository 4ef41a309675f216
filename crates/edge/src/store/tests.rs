//! The same scenarios on the memory store (the reference) and on redb; their transcripts
//! must be equal. Then what only a file can do: survive a reopen.

use super::*;
use vigil_core::memory::{MemoryStateStore, MemoryWindowStore};
use vigil_core::DeviceId;

fn key(device: &str) -> StreamKey {
    StreamKey {
        device: DeviceId::new(device).unwrap(),
        profile: "p".into(),
    }
}

fn s(seq: u64, v: f32) -> Sample {
    Sample {
        seq,
        ts: 1000 * seq,
        values: vec![v, -v],
    }
}

fn chunk(seqs: std::ops::Range<u64>, v: f32) -> Chunk {
    Chunk::new(seqs.map(|q| s(q, v)).collect())
}

/// Every window-store behaviour the pipeline relies on; returns a transcript.
async fn window_scenario(store: &dyn WindowStore) -> Vec<String> {
    let mut log = Vec::new();
    let a = key("a");
    let b = key("b");
    let mut say = |x: String| log.push(x);
    // Idempotent per chunk id; `received` counts stored chunks.
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(0..3, 1.0), 5).await.unwrap()
    ));
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(0..3, 9.0), 5).await.unwrap()
    ));
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(3..5, 1.0), 5).await.unwrap()
    ));
    // Overlapping chunk with other values: received goes above distinct seqs; load keeps
    // the copy of the chunk whose id sorts first.
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(2..4, 7.0), 5).await.unwrap()
    ));
    say(format!("{:?}", store.load(&a, 0).await.unwrap()));
    say(format!("{:?}", store.load(&a, 1).await.unwrap()));
    // Streams are separate.
    say(format!(
        "{:?}",
        store.append(&b, 0, &chunk(0..3, 2.0), 5).await.unwrap()
    ));
    say(format!("{:?}", store.load(&b, 0).await.unwrap()));
    // Listing: existing windows in order, absent left out.
    say(format!(
        "{:?}",
        store.append(&a, 3, &chunk(180..181, 3.0), 5).await.unwrap()
    ));
    say(format!(
        "{:?}",
        store.append(&a, 2, &chunk(120..121, 3.0), 5).await.unwrap()
    ));
    say(format!("{:?}", store.windows(&a, 0..=10).await.unwrap()));
    say(format!("{:?}", store.windows(&a, 1..=2).await.unwrap()));
    say(format!("{:?}", store.windows(&a, 4..=9).await.unwrap()));
    say(format!(
        "{:?}",
        store.windows(&key("c"), 0..=9).await.unwrap()
    ));
    // Claims: missing, granted, busy while the lease lives, taken over after it.
    say(format!("{:?}", store.claim(&a, 7, 100, 50).await.unwrap()));
    say(format!("{:?}", store.claim(&a, 0, 100, 50).await.unwrap()));
    say(format!("{:?}", store.claim(&a, 0, 149, 50).await.unwrap()));
    say(format!("{:?}", store.windows(&a, 0..=0).await.unwrap()));
    say(format!("{:?}", store.claim(&a, 0, 150, 50).await.unwrap()));
    // Appends still land in a claimed window.
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(5..6, 1.0), 160).await.unwrap()
    ));
    // Finish: done, samples dropped, later appends late, claims say done.
    let outcome = WindowOutcome {
        label: "x".into(),
        finished_ms: 170,
    };
    store.finish(&a, 0, &outcome).await.unwrap();
    say(format!("{:?}", store.windows(&a, 0..=0).await.unwrap()));
    say(format!("{:?}", store.load(&a, 0).await.unwrap()));
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(6..7, 1.0), 180).await.unwrap()
    ));
    say(format!(
        "{:?}",
        store.append(&a, 0, &chunk(0..3, 1.0), 180).await.unwrap()
    ));
    say(format!(
        "{:?}",
        store.claim(&a, 0, 10_000, 50).await.unwrap()
    ));
    // Finishing a window never seen makes it done (a retry after its record was lost).
    store.finish(&a, 9, &outcome).await.unwrap();
    say(format!("{:?}", store.windows(&a, 9..=9).await.unwrap()));
    say(format!(
        "{:?}",
        store.append(&a, 9, &chunk(540..541, 1.0), 5).await.unwrap()
    ));
    say(format!("{:?}", store.claim(&a, 9, 5, 5).await.unwrap()));
    // Other windows untouched.
    say(format!("{:?}", store.load(&a, 2).await.unwrap()));
    say(format!(
        "{:?}",
        store.windows(&a, 0..=u64::MAX).await.unwrap()
    ));
    log
}

async fn state_scenario(store: &dyn DeviceStateStore) -> Vec<String> {
    let mut log = Vec::new();
    let a = key("a");
    log.push(format!("{:?}", store.load(&a).await.unwrap()));
    let mut st = DeviceState {
        applied_window: Some(3),
        last_label: Some("20".into()),
        ..Default::default()
    };
    st.alert.active = Some("20".into());
    st.baseline = Some(Baseline::empty(2));
    log.push(format!("{:?}", store.save(&a, &st, 0).await.unwrap()));
    log.push(format!("{:?}", store.save(&a, &st, 0).await.unwrap()));
    log.push(format!("{:?}", store.load(&a).await.unwrap()));
    st.applied_window = Some(4);
    log.push(format!("{:?}", store.save(&a, &st, 1).await.unwrap()));
    log.push(format!("{:?}", store.save(&a, &st, 5).await.unwrap()));
    log.push(format!("{:?}", store.load(&a).await.unwrap()));
    log.push(format!("{:?}", store.load(&key("b")).await.unwrap()));
    log
}

fn temp_store(dir: &tempfile::TempDir) -> EdgeStore {
    EdgeStore::open_dir(dir.path(), Durability::PerCommit).unwrap()
}

#[tokio::test]
async fn window_store_matches_the_memory_reference() {
    let memory = window_scenario(&MemoryWindowStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let redb = window_scenario(&temp_store(&dir)).await;
    for (i, (m, r)) in memory.iter().zip(&redb).enumerate() {
        assert_eq!(m, r, "step {i} differs");
    }
    assert_eq!(memory.len(), redb.len());
    // Spot checks of the reference itself, so that both cannot be wrong the same way.
    assert!(memory[0].contains("stored: true") && memory[0].contains("received: 3"));
    assert!(memory[1].contains("stored: false") && memory[1].contains("received: 3"));
    assert!(memory[3].contains("received: 7"));
    assert!(memory[14].contains("Missing"));
    assert!(memory[15].contains("Granted") && memory[16].contains("Busy"));
    assert!(memory[18].contains("Granted"));
    assert!(memory[22].contains("stored: false") && memory[22].contains("Done"));
}

#[tokio::test]
async fn state_store_matches_the_memory_reference() {
    let memory = state_scenario(&MemoryStateStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let redb = state_scenario(&temp_store(&dir)).await;
    assert_eq!(memory, redb);
    assert_eq!(memory[1], "true");
    assert_eq!(memory[2], "false");
    assert!(memory[6].contains("version: 2"));
}

#[tokio::test]
async fn survives_a_reopen_and_releases_stale_claims() {
    let dir = tempfile::tempdir().unwrap();
    let a = key("a");
    {
        let store = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap();
        store.append(&a, 0, &chunk(0..30, 1.0), 0).await.unwrap();
        store.append(&a, 1, &chunk(60..70, 1.0), 0).await.unwrap();
        assert_eq!(store.claim(&a, 1, 0, 60_000).await.unwrap(), Claim::Granted);
        store
            .finish(
                &a,
                2,
                &WindowOutcome {
                    label: "3".into(),
                    finished_ms: 1,
                },
            )
            .await
            .unwrap();
        let st = DeviceState {
            applied_window: Some(2),
            ..Default::default()
        };
        assert!(store.save(&a, &st, 0).await.unwrap());
        assert_eq!(store.shadow("a").unwrap(), None);
        let update = serde_json::json!({"state": {"reported": {"label": "3", "alert": null}}});
        let first = store.save_shadow("a", &update, 7).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"state": {"reported": {"label": "3"}}, "version": 1, "timestamp": 7})
        );
        let second = store.save_shadow("a", &update, 8).unwrap();
        assert_eq!(
            (second["version"].clone(), second["timestamp"].clone()),
            (2.into(), 8.into())
        );
        assert_eq!(store.shadow("a").unwrap(), Some(second));
        store.flush().unwrap();
        // Open twice in one process: refused, with a message that says why.
        let again = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap_err();
        assert!(again.message.contains("already open"), "{again}");
    }
    let store = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap();
    assert_eq!(
        store.open_report(),
        OpenReport {
            open_windows: 2,
            done_windows: 1,
            devices: 1,
            released_claims: 1
        }
    );
    // The open window kept its samples; a cycle split across the restart completes.
    assert_eq!(WindowStore::load(&store, &a, 0).await.unwrap().len(), 30);
    let after = store.append(&a, 0, &chunk(30..60, 1.0), 0).await.unwrap();
    assert_eq!(after.info.received, 60);
    assert_eq!(WindowStore::load(&store, &a, 0).await.unwrap().len(), 60);
    // The dead process's claim is gone: no wait for its lease.
    assert_eq!(store.claim(&a, 1, 1, 60_000).await.unwrap(), Claim::Granted);
    assert!(
        !store
            .append(&a, 2, &chunk(120..121, 1.0), 0)
            .await
            .unwrap()
            .stored
    );
    let st = DeviceStateStore::load(&store, &a).await.unwrap();
    assert_eq!((st.version, st.value.applied_window), (1, Some(2)));
    assert_eq!(store.shadows().unwrap().len(), 1);
}

#[tokio::test]
async fn pruning_forgets_old_done_windows_but_still_rejects_late_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = temp_store(&dir);
    let a = key("a");
    let done = WindowOutcome {
        label: "100".into(),
        finished_ms: 0,
    };
    for w in 0..10u64 {
        store
            .append(&a, w, &chunk(w * 60..w * 60 + 60, 1.0), 0)
            .await
            .unwrap();
        if w != 3 {
            store.finish(&a, w, &done).await.unwrap();
        }
    }
    // Keep the newest 4: windows 0..=5 go, except open window 3.
    assert_eq!(store.prune(4).unwrap(), 5);
    let left: Vec<u64> = store
        .windows(&a, 0..=20)
        .await
        .unwrap()
        .iter()
        .map(|i| i.window)
        .collect();
    assert_eq!(left, vec![3, 6, 7, 8, 9]);
    let late = store.append(&a, 1, &chunk(61..62, 1.0), 0).await.unwrap();
    assert_eq!((late.stored, late.info.state), (false, WindowState::Done));
    let open = store.append(&a, 3, &chunk(300..301, 1.0), 0).await.unwrap();
    assert!(open.stored);
    assert_eq!(store.prune(4).unwrap(), 0);
}

#[test]
fn samples_round_trip_exactly() {
    let samples = vec![
        Sample {
            seq: u64::MAX,
            ts: 7,
            values: vec![f32::MIN_POSITIVE, -0.0, 35.57, f32::MAX],
        },
        Sample {
            seq: 0,
            ts: 0,
            values: vec![],
        },
    ];
    let mut out = Vec::new();
    decode_samples(&encode_samples(&samples), &mut out).unwrap();
    assert_eq!(out, samples);
    assert!(decode_samples(&encode_samples(&samples)[..10], &mut out).is_err());
}

#[tokio::test]
async fn baselines_are_read_from_files_and_follow_new_versions() {
    let dir = tempfile::tempdir().unwrap();
    let source = FileBaselines::new(dir.path());
    let a = key("rig-1");
    assert_eq!(source.latest(&a).await.unwrap(), None);
    let path = source.path_of(&a);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut b = Baseline::fit(&[vec![1.0, 2.0], vec![3.0, 4.0]], "v1").unwrap();
    std::fs::write(&path, serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!(source.latest(&a).await.unwrap().unwrap().version, "v1");
    b.version = "v2-longer".into();
    std::fs::write(&path, serde_json::to_vec(&b).unwrap()).unwrap();
    assert_eq!(
        source.latest(&a).await.unwrap().unwrap().version,
        "v2-longer"
    );
    // A half-written file keeps the last good version.
    std::fs::write(&path, b"{\"version\":").unwrap();
    assert_eq!(
        source.latest(&a).await.unwrap().unwrap().version,
        "v2-longer"
    );
}

/// A store file that is damaged, truncated or not a store: an error naming the file and
/// `--reset-store`, never a panic; with the reset, set aside and a fresh store.
#[tokio::test]
async fn a_damaged_store_is_a_clear_error_and_reset_sets_it_aside() {
    for damage in ["garbage", "truncated", "zeroed"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = temp_store(&dir);
            window_scenario(&store).await;
            store.flush().unwrap();
        }
        let path = dir.path().join(DB_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let bad = match damage {
            "garbage" => b"\"not a store\"".repeat(500),
            "truncated" => bytes[..bytes.len() / 3].to_vec(),
            _ => {
                let mut b = bytes.clone();
                b[..512].fill(0);
                b
            }
        };
        std::fs::write(&path, &bad).unwrap();
        let e = EdgeStore::open_dir(dir.path(), Durability::PerCommit).unwrap_err();
        assert!(e.damaged, "{damage}: {e}");
        let text = e.to_string();
        assert!(text.contains("vigil.redb"), "{damage}: {text}");
        assert!(text.contains("--reset-store"), "{damage}: {text}");
        let store = EdgeStore::open_dir_or_reset(dir.path(), Durability::PerCommit, true).unwrap();
        assert_eq!(store.open_report(), OpenReport::default(), "{damage}");
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("vigil.redb.bad-"))
            .collect();
        assert_eq!(aside.len(), 1, "{damage}: {aside:?}");
        assert_eq!(std::fs::read(dir.path().join(&aside[0])).unwrap(), bad);
    }
}

/// The outbox keeps publishes in order across a reopen (what a crash after the sync leaves is
/// sent at the next start), and removing sent ones leaves the rest.
#[test]
fn the_outbox_keeps_publishes_in_order_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap();
        store
            .outbox_push("dt/vigil/a/condition", b"{\"window\":1}")
            .unwrap();
        store.outbox_push("dt/vigil/a/alerts", b"").unwrap();
        store
            .outbox_push("dt/vigil/b/condition", b"{\"window\":7}")
            .unwrap();
        store.flush().unwrap();
    }
    let store = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap();
    let left = store.outbox().unwrap();
    let topics: Vec<&str> = left.iter().map(|o| o.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "dt/vigil/a/condition",
            "dt/vigil/a/alerts",
            "dt/vigil/b/condition"
        ]
    );
    assert_eq!(left[0].payload, b"{\"window\":1}");
    assert!(left[1].payload.is_empty());
    store.outbox_remove(&[left[0].id, left[1].id]).unwrap();
    let rest = store.outbox().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].payload, b"{\"window\":7}");
    // New entries go after the remaining one.
    store.outbox_push("dt/vigil/c/condition", b"x").unwrap();
    let ids: Vec<u64> = store.outbox().unwrap().iter().map(|o| o.id).collect();
    assert!(ids[0] < ids[1], "{ids:?}");
}

/// A device asking for its shadow is told only what is on disk: with `OnFlush`, a document
/// saved since the last sync is not told until the next one (a crash would take it back).
#[test]
fn shadow_gets_see_only_synced_documents() {
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open_dir(dir.path(), Durability::OnFlush).unwrap();
    let update = |label: &str| serde_json::json!({"state": {"reported": {"label": label}}});
    let first = store.save_shadow("a", &update("0"), 7).unwrap();
    assert_eq!(store.synced_shadow("a").unwrap(), None, "not synced yet");
    assert_eq!(store.shadow("a").unwrap(), Some(first.clone()));
    store.flush().unwrap();
    assert_eq!(store.synced_shadow("a").unwrap(), Some(first.clone()));
    let second = store.save_shadow("a", &update("3"), 8).unwrap();
    let third = store.save_shadow("a", &update("20"), 9).unwrap();
    assert_ne!(second, third);
    assert_eq!(
        store.synced_shadow("a").unwrap(),
        Some(first),
        "the synced one"
    );
    assert_eq!(store.synced_shadow("b").unwrap(), None);
    store.flush().unwrap();
    assert_eq!(store.synced_shadow("a").unwrap(), Some(third));
    // Every commit synced: nothing is held back.
    drop(store);
    let dir = tempfile::tempdir().unwrap();
    let store = EdgeStore::open_dir(dir.path(), Durability::PerCommit).unwrap();
    let doc = store.save_shadow("a", &update("0"), 7).unwrap();
    assert_eq!(store.synced_shadow("a").unwrap(), Some(doc));
}
