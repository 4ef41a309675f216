#![no_main]
//! The telemetry parser (`vigil_core::fuzzing::telemetry`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_core::fuzzing::telemetry(data));
