#![no_main]
//! The edge gateway's MQTT packet framer (`vigil_edge::mqtt_frames::fuzz_frames`, compiled in
//! by `src/lib.rs`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::mqtt_frames::fuzz_frames(data));
