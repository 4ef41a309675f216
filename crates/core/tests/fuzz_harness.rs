//! The `telemetry` fuzz target's body (`vigil_core::fuzzing::telemetry`) on stable Rust:
//! arbitrary bytes, and mutations of the committed seed corpus (`fuzz/corpus/telemetry`).

use proptest::prelude::*;
use vigil_core::fuzzing::{corpus, mutate, telemetry, Edit};

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/telemetry");
    let seeds = corpus(&dir).expect("fuzz/corpus/telemetry");
    assert!(seeds.len() >= 10, "seed corpus: {}", seeds.len());
    seeds
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        (any::<usize>(), any::<u8>(), any::<u8>()).prop_map(|(at, byte, op)| Edit { at, byte, op }),
        0..8,
    )
}

#[test]
fn every_seed_runs() {
    for seed in seeds() {
        telemetry(&seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        telemetry(&data);
    }

    #[test]
    fn mutated_seeds(i in any::<prop::sample::Index>(), edits in edits(), cut in any::<Option<usize>>()) {
        let seeds = seeds();
        telemetry(&mutate(&seeds[i.index(seeds.len())], &edits, cut));
    }
}
