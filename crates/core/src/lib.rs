//! Vigil core: the domain of condition monitoring, free of AWS, Lambda and async runtimes.
//!
//! - [`telemetry`]: messages, their validation and limits;
//! - [`profile`]: what a kind of device sends and how it is judged;
//! - [`window`]: windows keyed by `seq`, and their closing policy;
//! - [`transform`]: composable steps from a window to a scorer's input;
//! - [`scorer`]: the scorer port and the streaming statistics scorers;
//! - [`alert`]: hysteresis and cooldown, transitions only;
//! - [`alarm`]: what operators act on: acknowledge, snooze, disable, reset, escalation;
//! - [`ports`]: the traits adapters implement; [`memory`]: in-memory adapters;
//! - [`pipeline`]: the whole flow over ports, for batches of messages from many devices.

pub mod alarm;
pub mod alert;
pub mod calibrate;
pub mod documents;
pub mod memory;
pub mod pipeline;
pub mod ports;
pub mod profile;
pub mod scorer;
pub mod telemetry;
pub mod transform;
pub mod window;

pub use pipeline::{CompiledProfile, Message, MessageOutcome, Pipeline, PipelineConfig, Ports};
pub use profile::{Profile, ProfileSet, ScorerSpec};
pub use telemetry::{DeviceId, Sample, TelemetryError};
