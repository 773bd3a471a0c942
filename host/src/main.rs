//! The `plinth` binary: parses the command line and hands over to the library.

use clap::Parser;

/// jemalloc rather than the system allocator: less CPU per request and
/// fewer resident pages per connection (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = plinth::cli::Cli::parse();
    let _log_writer = match plinth::cli::init_logging(cli.log_format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: cannot start the log writer: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match plinth::cli::execute(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
