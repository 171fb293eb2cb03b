//! The `gregor` binary: `serve` runs the broker; the other subcommands are client tools.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gregor::config::{Config, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "gregor",
    version,
    about = "A Kafka-compatible event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker (defaults: 127.0.0.1:9092, data under ./data, one shard per core).
    Serve(ServeArgs),
    #[command(flatten)]
    Client(gregor::cli::ClientCommand),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// TOML file of settings, by Kafka's names (see configs/gregor.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A setting by Kafka's name, overriding the file: --set log.retention.ms=60000
    #[arg(long = "set", value_name = "NAME=VALUE")]
    overrides: Vec<String>,
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        config.apply_toml(&text, &path.display().to_string())?;
    }
    config.apply_overrides(&args.overrides)?;
    config.validate()?;
    Ok(config)
}

/// Log lines go to stderr, filtered by `RUST_LOG` (default `info`), as text or, with
/// `log.format=json`, one JSON object per line (timestamp, level, target, fields).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => load_config(&args).and_then(|c| {
            init_logging(c.log_format);
            gregor::node::run(c).map_err(anyhow::Error::from)
        }),
        Command::Client(cmd) => gregor::cli::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("gregor: {e:#}");
        std::process::exit(1);
    }
}
