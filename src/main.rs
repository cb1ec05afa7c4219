#![forbid(unsafe_code)]

use clap::Parser;
use portal_operator::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.run(&mut std::io::stdout().lock())
}
