//! `vigil features` (being built).

use clap::Args;

#[derive(Debug, Args)]
pub struct FeaturesArgs {}

pub async fn run(_args: FeaturesArgs) -> anyhow::Result<()> {
    anyhow::bail!("vigil features is not available in this build yet")
}
