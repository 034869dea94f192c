//! Project automation: `cargo xtask test-all`, `cargo xtask bench`, `cargo xtask fuzz`,
//! `cargo xtask services`.
//!
//! Besides the standard library it uses only serde_json (to read cargo's
//! build messages), so the xtask builds in seconds.

mod bench;
mod fuzz;
mod services;
mod testrun;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test-all   start (or install) every test service, run every test of every
             backend, print per-backend conformance counts; fails when a
             backend ran no conformance test or any test failed
  bench      start the services and run every backend's criterion benchmarks
             (extra arguments go to `cargo bench`, e.g. `-- --quick`)
  bench --compare [--backends a,b] [--repeat N] [--peers N] [--open-peers N]
                  [--scale 1000,100000,1000000|none] [--scale-backends a,b]
                  [--with-peer-libraries]
             measure every store beside its raw engine doing the same work in
             one run, then the scale check (lookups and opening at each peer
             count); writes docs/bench/RESULTS.md and docs/bench/ratios.svg.
             --with-peer-libraries also builds crates/bench/grammers-sqlite
             (outside the workspace, into target/peer-libraries) and measures
             grammers-session's own SqliteSession for the sqlite rows
  fuzz [--seconds N] [--target NAME]... [-- LIBFUZZER-FLAGS]
             install cargo-fuzz (pinned) into target/tools if missing, build
             the fuzz targets of fuzz/, seed them from fixtures/, run each for
             N seconds (default 60); fails when one crashes, saving the input
             under fuzz/artifacts/TARGET/
  services   start (or install) the test services, print the environment
             variables that point at them, and keep them running until Ctrl-C
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test-all") => testrun::test_all(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
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
