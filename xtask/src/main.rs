//! Project automation: `cargo xtask test-all`, `cargo xtask bench`, `cargo xtask services`.
//!
//! Only the standard library is used, so the xtask builds in seconds.

mod services;
mod testrun;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test-all   start (or install) every test service, run every test of every
             backend, print per-backend conformance counts; fails when a
             backend ran no conformance test or any test failed
  bench      start the services and run every backend's criterion benchmarks
             (extra arguments go to `cargo bench`, e.g. `-- --quick`)
  services   start (or install) the test services, print the environment
             variables that point at them, and keep them running until Ctrl-C
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test-all") => testrun::test_all(&args[1..]),
        Some("bench") => testrun::bench(&args[1..]),
        Some("services") => services::serve_forever(),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
