//! The `vigil` command line: edge runner, device simulator and replay, evaluations on the
//! public datasets, calibration, and the demo. Each subcommand is a module with an `Args`
//! struct and an async `run`.

pub mod broker;
pub mod calibrate;
pub mod datasets;
pub mod demo;
pub mod device;
pub mod edge;
pub mod eval;
pub mod features;
pub mod fleet;
pub mod models;
pub mod proxy;
pub mod queue;
pub mod replay;
pub mod store;
pub mod tasks;
pub mod tls;
