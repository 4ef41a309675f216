//! Vigil core: the domain of condition monitoring, free of AWS, Lambda and async runtimes.
//!
//! - [`telemetry`]: messages, their validation and limits;
//! - [`profile`]: what a kind of device sends and how it is judged;
//! - [`window`]: windows keyed by `seq`, and their closing policy;
//! - [`transform`]: composable steps from a window to a scorer's input;
//! - [`scorer`]: the scorer port and the streaming statistics scorers;
//! - [`normal`]: a machine's learned normal (PCA, T² and SPE) with per-channel contributions;
//! - [`streaming`]: the scale-free streaming detector (robust, seasonal, self-calibrating);
//! - [`alert`]: hysteresis and cooldown, transitions only;
//! - [`seq_guard`]: how far a sample may jump ahead of its device's last applied window;
//! - [`alarm`]: what operators act on: acknowledge, snooze, disable, reset, escalation;
//! - [`ports`]: the traits adapters implement; [`memory`]: in-memory adapters;
//! - [`pipeline`]: the whole flow over ports, for batches of messages from many devices.

pub mod alarm;
pub mod alert;
pub mod calibrate;
pub mod documents;
pub mod fuzzing;
pub mod memory;
pub mod normal;
pub mod pipeline;
pub mod ports;
pub mod profile;
pub mod scorer;
pub mod seq_guard;
pub mod state_file;
pub mod streaming;
pub mod telemetry;
pub mod transform;
pub mod window;

pub use pipeline::{CompiledProfile, Message, MessageOutcome, Pipeline, PipelineConfig, Ports};
pub use profile::{Profile, ProfileSet, ScorerSpec};
pub use telemetry::{DeviceId, Sample, TelemetryError};
