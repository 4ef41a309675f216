//! The ingest handler in-process with real SDK clients against DynamoDB Local and moto server.
//! One binary, so the emulators start once; tests isolate themselves by resource names.

mod alarms;
mod bad_input;
mod calibrate;
mod concurrency;
mod cost;
mod fleet;
mod flow;
mod hostile;
mod normal;
mod replay;
mod retry;
mod sagemaker;

use vigil_core::telemetry::Sample;
use vigil_tests::Hydraulic;

pub fn data() -> &'static Hydraulic {
    static DATA: std::sync::OnceLock<Hydraulic> = std::sync::OnceLock::new();
    DATA.get_or_init(Hydraulic::load)
}

pub fn cycles(range: std::ops::Range<usize>) -> Vec<Sample> {
    data().samples(range)
}
