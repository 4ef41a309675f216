//! The `telemetry` fuzz target's body (`vigil_core::fuzzing::telemetry`) on stable Rust:
//! arbitrary bytes, and mutations of the committed seed corpus (`fuzz/corpus/telemetry`).

vigil_core::stable_fuzz_harness!(vigil_core::fuzzing::telemetry, "telemetry", cases = 512);
