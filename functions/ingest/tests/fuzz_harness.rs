//! The `event` fuzz target's body (`vigil_ingest::event::fuzz_event`) on stable Rust:
//! arbitrary bytes, and mutations of the committed seed corpus (`fuzz/corpus/event`).

vigil_core::stable_fuzz_harness!(vigil_ingest::event::fuzz_event, "event", cases = 256);
