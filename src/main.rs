//! The `cairn` binary: argument parsing and dispatch, nothing else.

use std::process::ExitCode;

use clap::Parser;

use cairn::cli::{self, args::Cli};

fn main() -> ExitCode {
    let argv = cli::args::normalize_args(std::env::args());
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => return cli::report_usage_error(e),
    };
    cli::init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(cli::run(cli));
    // Blocking tasks (file copies) must not hold the process after the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    cli::exit_code(outcome)
}
