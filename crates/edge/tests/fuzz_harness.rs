//! The `framer` fuzz target's body (`vigil_edge::mqtt_frames::fuzz_frames`) on stable Rust:
//! arbitrary bytes, and mutations of the committed seed corpus (`fuzz/corpus/framer`).

use proptest::prelude::*;
use vigil_core::fuzzing::{corpus, mutate, Edit};
use vigil_edge::mqtt_frames::fuzz_frames;

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/framer");
    let seeds = corpus(&dir).expect("fuzz/corpus/framer");
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
        fuzz_frames(&seed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        fuzz_frames(&data);
    }

    #[test]
    fn mutated_seeds(i in any::<prop::sample::Index>(), edits in edits(), cut in any::<Option<usize>>()) {
        let seeds = seeds();
        fuzz_frames(&mutate(&seeds[i.index(seeds.len())], &edits, cut));
    }
}
