//! Fuzz target bodies, one function per target: `fuzz/` runs them under libFuzzer (nightly),
//! and `tests/fuzz_harness.rs` runs the same bodies under proptest on stable, so `make test`
//! keeps them working without a nightly toolchain. Each panics when an invariant breaks —
//! that is the finding; any other outcome is fine.

use crate::documents::{reject_document, MAX_DEAD_LETTER_BYTES};
use crate::ports::Rejected;
use crate::telemetry::{
    encode_batch, parse_message, DeviceId, Sample, MAX_JSON_SAFE_INTEGER, MAX_SAMPLES_PER_MESSAGE,
};

/// Longest field path a rejection may name: `samples[2047].values.` and a quoted key.
pub const MAX_FIELD_BYTES: usize = 320;
/// Longest rejection text (field and reason).
pub const MAX_ERROR_BYTES: usize = 1024;

/// The channels the targets validate against (the hydraulic cooler's).
pub fn channels() -> Vec<String> {
    ["TS1", "TS2", "TS3", "TS4"].map(String::from).to_vec()
}

/// Target `telemetry`: any bytes through the telemetry parser. Accepted samples obey the
/// schema and survive a round trip; a rejection is short, names a field, and makes a dead
/// letter within its cap.
pub fn telemetry(data: &[u8]) {
    let channels = channels();
    match parse_message(data, &channels) {
        Ok(samples) => check_samples(&samples, &channels),
        Err(error) => {
            check_rejection(&error);
            let rejected = Rejected {
                message_id: "fuzz".into(),
                device: DeviceId::new("fuzz-device").ok(),
                error,
                payload: data.to_vec(),
            };
            let doc = reject_document(&rejected);
            let size = serde_json::to_string(&doc).map_or(usize::MAX, |s| s.len());
            assert!(size <= MAX_DEAD_LETTER_BYTES, "dead letter of {size} bytes");
        }
    }
}

/// What every accepted message satisfies, on any path.
pub fn check_samples(samples: &[Sample], channels: &[String]) {
    assert!(!samples.is_empty() && samples.len() <= MAX_SAMPLES_PER_MESSAGE);
    for s in samples {
        assert!(s.seq <= MAX_JSON_SAFE_INTEGER && s.ts <= MAX_JSON_SAFE_INTEGER);
        assert_eq!(s.values.len(), channels.len());
        assert!(s.values.iter().all(|v| v.is_finite()));
    }
    let again = parse_message(&encode_batch(samples, channels), channels);
    assert_eq!(again.as_deref(), Ok(samples), "round trip");
}

/// What every rejection satisfies: bounded, and naming what is wrong.
pub fn check_rejection(error: &crate::TelemetryError) {
    assert!(!error.code().is_empty());
    assert!(!error.field.is_empty(), "{error}");
    assert!(
        error.field.len() <= MAX_FIELD_BYTES,
        "field of {} bytes",
        error.field.len()
    );
    let text = error.to_string();
    assert!(
        text.len() <= MAX_ERROR_BYTES,
        "error of {} bytes",
        text.len()
    );
}

/// One edit of a seed: at a position (taken modulo the length), overwrite, insert or remove.
#[derive(Clone, Copy, Debug)]
pub struct Edit {
    pub at: usize,
    pub byte: u8,
    pub op: u8,
}

/// A seed with edits applied and maybe cut short: the stable harness's mutations of the
/// committed corpus (libFuzzer brings its own).
pub fn mutate(seed: &[u8], edits: &[Edit], cut: Option<usize>) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for e in edits {
        let at = e.at % (bytes.len() + 1);
        match e.op % 3 {
            0 if at < bytes.len() => bytes[at] = e.byte,
            1 => bytes.insert(at, e.byte),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

/// The files of a seed corpus directory, in name order.
pub fn corpus(dir: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

/// The stable harness of one fuzz target, shared by the crates that own a target body: every
/// committed seed runs, then proptest feeds arbitrary bytes and mutated seeds to `$body`.
/// Used from an integration test (`tests/fuzz_harness.rs`), whose crate has proptest as a
/// dev-dependency; `$corpus` names the folder under `fuzz/corpus/` (two levels above the crate).
#[macro_export]
macro_rules! stable_fuzz_harness {
    ($body:path, $corpus:literal, cases = $cases:expr) => {
        use proptest::prelude::*;
        use $crate::fuzzing::{corpus, mutate, Edit};

        fn seeds() -> Vec<Vec<u8>> {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(concat!("../../fuzz/corpus/", $corpus));
            let seeds = corpus(&dir).expect(concat!("fuzz/corpus/", $corpus));
            assert!(seeds.len() >= 10, "seed corpus: {}", seeds.len());
            seeds
        }

        fn edits() -> impl Strategy<Value = Vec<Edit>> {
            prop::collection::vec(
                (any::<usize>(), any::<u8>(), any::<u8>())
                    .prop_map(|(at, byte, op)| Edit { at, byte, op }),
                0..8,
            )
        }

        #[test]
        fn every_seed_runs() {
            for seed in seeds() {
                $body(&seed);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: $cases, .. ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
                $body(&data);
            }

            #[test]
            fn mutated_seeds(i in any::<prop::sample::Index>(), edits in edits(), cut in any::<Option<usize>>()) {
                let seeds = seeds();
                $body(&mutate(&seeds[i.index(seeds.len())], &edits, cut));
            }
        }
    };
}
