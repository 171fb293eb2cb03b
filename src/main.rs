use clap::Parser;

fn main() -> anyhow::Result<()> {
    let _ = gregor::config::Config::default();
    Ok(())
}
