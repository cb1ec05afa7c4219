#![forbid(unsafe_code)]

use clap::Parser;
use portal_operator::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.run(&mut std::io::stdout().lock()) {
        Ok(code) => code,
        // `portal-operator roles | head`: the reader left; nothing to report.
        Err(error)
            if error.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
