//! The hostile-input corpus through the library: every case of
//! `fixtures/hostile/cases.json` run through `mtsession::Endpoint`,
//! `session_formats` and `session_core::url` gives exactly the error kind the
//! manifest names, never panics, leaks no secret, writes nothing, and says
//! what went wrong in words a user reads.

#[path = "corpus/harness.rs"]
mod harness;

use std::panic::AssertUnwindSafe;

use harness::{Case, FEATURES, KINDS, SecretScanner, WorkingCopy, changes, snapshot};
use mtsession::{Endpoint, OpenMode, PeerId};
use session_core::url::StoreUrl;
use session_core::{Error, validate_data};
use session_formats::string::{self, StringFormat};

/// Runs a future to completion, turning a panic into an `Err` with its message.
fn catch_unwind<T>(
    runtime: &tokio::runtime::Runtime,
    future: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(future))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

/// The value after `flag` in `args`, if any.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The positional arguments after the command words, without flags.
fn positional(args: &[String], skip: usize) -> Vec<&str> {
    const WITH_VALUE: &[&str] = &[
        "--format",
        "--api-id",
        "--id",
        "--phone",
        "--username",
        "--limit",
    ];
    let mut out = Vec::new();
    let mut rest = args.iter().skip(skip);
    let mut literal = false;
    while let Some(arg) = rest.next() {
        if literal {
            out.push(arg.as_str());
        } else if arg == "--" {
            literal = true;
        } else if WITH_VALUE.contains(&arg.as_str()) {
            rest.next();
        } else if !arg.starts_with("--") {
            out.push(arg.as_str());
        }
    }
    out
}

fn string_format(name: &str) -> StringFormat {
    name.parse().expect("a string format")
}

/// How a case ended when it did not succeed.
enum Failure {
    /// The library's error.
    Error(Error),
    /// A foreign reader returned data that the validation of every store
    /// refuses: a file must be validated once, on read, so that `inspect`
    /// and `convert` agree.
    AcceptedInvalid(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

fn read_is_valid(endpoint: &Endpoint, data: &session_core::SessionData) -> Result<(), Failure> {
    if endpoint.is_store() {
        return Ok(());
    }
    validate_data(data, true).map(|_| ()).map_err(|e| {
        Failure::AcceptedInvalid(format!(
            "{} reads, but what it read is refused by every store: {e}",
            endpoint.describe()
        ))
    })
}

/// Runs a case's command through the library, as the `mtsession` command
/// runs it.
async fn run(case: &Case) -> Result<(), Failure> {
    let args = &case.args;
    match args.first().map(String::as_str) {
        Some("inspect") => {
            let url = StoreUrl::parse(&args[1])?;
            let endpoint = Endpoint::open_url(&url, OpenMode::ReadOnly).await?;
            let loaded = endpoint.read().await?;
            read_is_valid(&endpoint, &loaded.data)?;
            if let Endpoint::Store { store, session } = &endpoint {
                store.header(session).await?;
            }
            Ok(())
        }
        Some("peers") => {
            let url = StoreUrl::parse(&args[1])?;
            let endpoint = Endpoint::open_url(&url, OpenMode::ReadOnly).await?;
            if let Some(id) = flag_value(args, "--id") {
                PeerId::from_marked(id.parse().expect("an integer id"))?;
            }
            let loaded = endpoint.read().await?;
            read_is_valid(&endpoint, &loaded.data)?;
            if let Some(phone) = flag_value(args, "--phone") {
                session_core::model::normalize_phone(phone)?;
            }
            Ok(())
        }
        Some("list") => {
            let url = StoreUrl::parse(&args[1])?;
            let store = mtsession::open_url(&url, OpenMode::ReadOnly).await?;
            store.list().await?;
            Ok(())
        }
        Some("delete") => {
            let url = StoreUrl::parse(&args[1])?;
            let store = mtsession::open_url(&url, OpenMode::ReadWrite).await?;
            let name = url.session_or_default();
            if !store.delete(name).await? {
                return Err(Error::session_not_found(name).into());
            }
            Ok(())
        }
        Some("convert") => {
            let force = args.iter().any(|a| a == "--force");
            let all = args.iter().any(|a| a == "--all");
            let urls = positional(args, 1);
            let src = StoreUrl::parse(urls[0])?;
            let dst = StoreUrl::parse(urls[1])?;
            if all {
                let from = mtsession::open_url(&src, OpenMode::ReadOnly).await?;
                let names = from.list().await?;
                let to = mtsession::open_url(&dst, OpenMode::Create).await?;
                for name in names {
                    session_core::copy_between(&from, &name, &to, &name, force).await?;
                }
                return Ok(());
            }
            let source = Endpoint::open_url(&src, OpenMode::ReadOnly).await?;
            let loaded = source.read().await?;
            read_is_valid(&source, &loaded.data)?;
            let data = validate_data(&loaded.data, true)?;
            let destination = Endpoint::open_url(&dst, OpenMode::Create).await?;
            destination.write(&data, force).await?;
            Ok(())
        }
        Some("string") if args.get(1).is_some_and(|a| a == "decode") => {
            let input = positional(args, 2)[0];
            match flag_value(args, "--format") {
                None | Some("auto") => string::decode(input)?,
                Some(format) => string::decode_as(input, string_format(format))?,
            };
            Ok(())
        }
        Some("string") if args.get(1).is_some_and(|a| a == "encode") => {
            let format = string_format(flag_value(args, "--format").expect("--format"));
            let src = positional(args, 2)[0];
            let endpoint = Endpoint::open(src, OpenMode::ReadOnly).await?;
            let loaded = endpoint.read().await?;
            read_is_valid(&endpoint, &loaded.data)?;
            let mut data = loaded.data;
            if data.api_id.is_none() {
                data.api_id = flag_value(args, "--api-id").map(|v| v.parse().expect("api id"));
            }
            Endpoint::encode(&data, format)?;
            Ok(())
        }
        _ => panic!("case {}: no library mapping for {:?}", case.id, args),
    }
}

/// Whether this build has every backend the case needs.
fn has_backends(case: &Case) -> Result<bool, String> {
    let mut missing = Vec::new();
    for need in &case.needs {
        let scheme = FEATURES
            .iter()
            .find(|(feature, _)| feature == need)
            .map(|(_, scheme)| *scheme)
            .ok_or_else(|| format!("unknown feature {need:?}"))?;
        if mtsession::driver_for(scheme).is_none() {
            missing.push(need.as_str());
        }
    }
    Ok(missing.is_empty())
}

#[test]
fn corpus_manifest_is_well_formed() {
    let manifest = harness::load();
    assert!(
        manifest.cases.len() >= 150,
        "the corpus holds {} cases; at least 150 expected",
        manifest.cases.len()
    );
    let mut ids = std::collections::HashSet::new();
    for case in &manifest.cases {
        assert!(ids.insert(case.id.as_str()), "duplicate case {}", case.id);
        assert!(
            KINDS.contains(&case.kind.as_str()),
            "{}: kind {}",
            case.id,
            case.kind
        );
        for need in &case.needs {
            assert!(
                FEATURES.iter().any(|(f, _)| f == need),
                "{}: unknown feature {need}",
                case.id
            );
        }
        for layer in &case.layers {
            assert!(
                ["cli", "library"].contains(&layer.as_str()),
                "{}: layer {layer}",
                case.id
            );
        }
        assert!(!case.args.is_empty(), "{}: no arguments", case.id);
    }
    // The reproductions of issue 8 that a corpus can hold are all in it.
    for issue in [
        "8.1", "8.6", "8.9", "8.10", "8.11", "8.12", "8.14", "8.15", "8.16", "8.17",
    ] {
        assert!(
            manifest
                .cases
                .iter()
                .any(|c| c.issue.as_deref() == Some(issue)),
            "no case pins issue {issue}"
        );
    }
    for kind in [
        "Corrupt",
        "InvalidInput",
        "MalformedString",
        "NotFound",
        "AlreadyExists",
        "UnsupportedSchemaVersion",
    ] {
        assert!(
            manifest
                .cases
                .iter()
                .filter(|c| c.needs.is_empty())
                .any(|c| c.kind == kind),
            "no case without backends expects {kind}"
        );
    }
    assert!(manifest.secrets.len() > 10, "the fixture keys are secrets");
}

#[test]
fn corpus_every_case_gives_its_error_kind_through_the_library() {
    let manifest = harness::load();
    let work = WorkingCopy::new(&manifest);
    // Case paths are relative to the working copy; this is the only test of
    // this binary that depends on the current directory.
    std::env::set_current_dir(work.path()).expect("enter the working copy");
    let scanner = SecretScanner::new(&manifest.secrets);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Quiet the default hook: a panic is reported as a failed case.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let whole = |_: &std::path::Path| true;
    let start = snapshot(work.path(), &whole);
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut skipped = Vec::new();
    for case in manifest.cases.iter().filter(|c| c.runs_in("library")) {
        match has_backends(case) {
            Ok(true) => {}
            Ok(false) => {
                skipped.push(case.id.clone());
                continue;
            }
            Err(e) => {
                failures.push(format!("{}: {e}", case.id));
                continue;
            }
        }
        ran += 1;
        let named = case.named_paths();
        let hash_named = |p: &std::path::Path| named.iter().any(|n| p.starts_with(n));
        let before = snapshot(work.path(), &hash_named);
        let outcome = catch_unwind(&runtime, run(case));
        let after = snapshot(work.path(), &hash_named);
        let line = case.command_line();
        for change in changes(&before, &after) {
            failures.push(format!("{}: `{line}` changed the files: {change}", case.id));
        }
        let error = match outcome {
            Err(panic) => {
                failures.push(format!("{}: `{line}` panicked: {panic}", case.id));
                continue;
            }
            Ok(Ok(())) => {
                failures.push(format!(
                    "{}: `{line}` succeeded; expected {}",
                    case.id, case.kind
                ));
                continue;
            }
            Ok(Err(Failure::AcceptedInvalid(why))) => {
                failures.push(format!("{}: `{line}`: {why}", case.id));
                continue;
            }
            Ok(Err(Failure::Error(e))) => e,
        };
        let message = error.to_string();
        let kind = format!("{:?}", error.kind());
        if kind != case.kind {
            failures.push(format!(
                "{}: `{line}` gave {kind} ({message}); expected {}",
                case.id, case.kind
            ));
        }
        let debug = format!("{error:?}");
        for shown in [&message, &debug] {
            if let Some(secret) = scanner.leak(shown) {
                failures.push(format!(
                    "{}: the error shows a secret ({secret}): {shown}",
                    case.id
                ));
            }
        }
        let unreadable = harness::unreadable_parts(&message, true);
        if !unreadable.is_empty() {
            failures.push(format!(
                "{}: the message holds {}: {message}",
                case.id,
                unreadable.join(", ")
            ));
        }
    }
    std::panic::set_hook(hook);
    let end = snapshot(work.path(), &whole);
    for change in changes(&start, &end) {
        failures.push(format!("the run changed the files: {change}"));
    }
    if harness::services_required() && !skipped.is_empty() {
        failures.push(format!(
            "MTSESSION_REQUIRE_SERVICES=1, but this build lacks the backends of {} cases ({}); \
             build with mtsession/all-backends",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    eprintln!(
        "corpus through the library: {ran} cases ran, {} skipped (backend not in this build)",
        skipped.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
