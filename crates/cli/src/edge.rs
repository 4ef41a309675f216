//! `vigil edge` (being built).

use clap::Args;

#[derive(Debug, Args)]
pub struct EdgeArgs {}

pub async fn run(_args: EdgeArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil edge is not available in this build yet")
}
