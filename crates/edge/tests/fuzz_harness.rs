//! The `framer` fuzz target's body (`vigil_edge::mqtt_frames::fuzz_frames`) on stable Rust:
//! arbitrary bytes, and mutations of the committed seed corpus (`fuzz/corpus/framer`).

vigil_core::stable_fuzz_harness!(vigil_edge::mqtt_frames::fuzz_frames, "framer", cases = 1024);
