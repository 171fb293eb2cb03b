//! `gregor-bench`: see the library docs for what it measures and how.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = gregor_bench::args::Args::parse();
    gregor_bench::run::main_with(args)
}
