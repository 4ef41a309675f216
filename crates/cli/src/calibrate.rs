//! `vigil calibrate` (being built).

use clap::Args;

#[derive(Debug, Args)]
pub struct CalibrateArgs {}

pub async fn run(_args: CalibrateArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil calibrate is not available in this build yet")
}
