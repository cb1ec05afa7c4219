#![forbid(unsafe_code)]

use clap::Parser;
use portal_operator::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.run(&mut std::io::stdout().lock()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
