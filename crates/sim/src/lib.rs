//! What drives devices in demos, tests and benchmarks: dataset replay (`vigil replay`), fleet
//! load (`vigil fleet`) and a fault-injecting TCP proxy. Talks to an edge only over MQTT (or its
//! `vigil edge` process): must not depend on the edge runtime's crate, ONNX Runtime or AWS.

pub mod fleet;
pub mod proxy;
pub mod replay;
