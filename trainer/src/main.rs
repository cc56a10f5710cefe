//! `keel`: train, evaluate, export and inspect controllers.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = keel_trainer::cli::Cli::parse();
    match keel_trainer::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.status).unwrap_or(1))
        }
    }
}
