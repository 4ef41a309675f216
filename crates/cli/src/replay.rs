//! `vigil replay` (being built).

use clap::Args;

#[derive(Debug, Args)]
pub struct ReplayArgs {}

pub async fn run(_args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil replay is not available in this build yet")
}
