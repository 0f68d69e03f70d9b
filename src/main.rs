//! `polypy`: the engine binary. Parses the command line, sets up logging and hands over to
//! [`polypy::app::run`]; a start-up failure prints one line and exits 1.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = polypy::cli::Cli::parse();
    let env = env_logger::Env::default().default_filter_or(cli.log_level.clone());
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .init();
    match polypy::app::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("polypy: {e:#}");
            ExitCode::FAILURE
        }
    }
}
