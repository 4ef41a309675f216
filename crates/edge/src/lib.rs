//! The edge runtime (`vigil edge`): the embedded broker, the mutual-TLS device gateway with IoT
//! Core's per-device policy, the redb store, the monitoring endpoint, the MQTT sinks, the worker
//! driving `vigil_core::Pipeline`, and calibration. AWS (S3) only behind the `s3` feature.

pub mod broker;
pub mod calibrate;
pub mod gateway;
pub mod monitor;
pub mod mqtt_frames;
mod runtime;
pub mod shadow;
pub mod sinks;
pub mod store;
pub mod train_normal;

pub use runtime::*;
