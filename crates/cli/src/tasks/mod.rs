//! One module per evaluation task: how its dataset is replayed through the pipeline and scored.

pub mod cwru;
pub mod hydraulic;
pub mod nab;
pub mod rmg941;
