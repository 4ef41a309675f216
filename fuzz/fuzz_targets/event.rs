#![no_main]
//! The Lambda's event parser (`vigil_ingest::event::fuzz_event`, compiled in by `src/lib.rs`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::event::fuzz_event(data));
