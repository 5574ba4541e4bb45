use clap::Args as ClapArgs;
#[derive(ClapArgs)]
pub struct Args {}
pub async fn run(_s: crate::config::Settings, _a: Args) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
