//! demo
/// Flags of `rollguardctl demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub(crate) async fn run(_args: DemoArgs) -> anyhow::Result<u8> {
    anyhow::bail!("demo not built yet")
}
