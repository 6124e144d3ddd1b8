use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fleetctx::cli::Cli::parse();
    match fleetctx::cli::run(cli) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(error.exit() as u8)
        }
    }
}
