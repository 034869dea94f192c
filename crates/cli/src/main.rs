//! The `mtsession` command.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mtsession::endpoint::is_single_session;
use mtsession::{Endpoint, Error, Loaded, OpenMode, Peer, PeerId, Store};
use serde_json::{Value, json};
use session_cli::output::{self, WriteFailure, printable, printable_message};
use session_cli::report::{self, FORMAT_VERSION};
use session_core::url::StoreUrl;
use session_core::validate_data;
use session_formats::string::{self, StringFormat};

/// Convert, inspect, browse, list and delete MTProto sessions in any store,
/// file or string format.
#[derive(Parser, Debug)]
#[command(name = "mtsession", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Copy a session (or with --all every session) from SRC to DST.
    Convert(ConvertArgs),
    /// Show what a session holds.
    Inspect(InspectArgs),
    /// List the peers a session has cached.
    Peers(PeersArgs),
    /// Decode and encode string sessions.
    #[command(subcommand)]
    String(StringCommand),
    /// List the sessions of a store.
    List {
        /// A store URL.
        store_url: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the session a URL names.
    Delete {
        /// A store URL with ?session=NAME (default `default`).
        url: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// Where to read from.
    src: String,
    /// Where to write to.
    dst: String,
    /// Copy every session of the source store (both URLs must be stores).
    #[arg(long)]
    all: bool,
    /// Replace a destination session or file that exists.
    #[arg(long)]
    force: bool,
    /// No progress and no warnings.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The session to show.
    url: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also print auth keys (512 hex digits). Handle the output as a secret.
    #[arg(long)]
    reveal_key: bool,
}

#[derive(Args, Debug)]
struct PeersArgs {
    /// The session whose peer cache to list.
    url: String,
    /// Only the current owner of this username (case and a leading @ ignored).
    #[arg(long)]
    username: Option<String>,
    /// Only the current owner of this phone number (+ and separators ignored).
    #[arg(long)]
    phone: Option<String>,
    /// Only the peer with this marked id (users +id, chats -id, channels -100…).
    #[arg(long, allow_hyphen_values = true)]
    id: Option<i64>,
    /// Show at most this many peers (0 for all).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also print access hashes. Handle the output as a secret.
    #[arg(long)]
    reveal_hashes: bool,
}

#[derive(Subcommand, Debug)]
enum StringCommand {
    /// Decode a string session.
    Decode {
        /// The string.
        string: String,
        /// Its format; `auto` detects it.
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Also print the auth key (512 hex digits).
        #[arg(long)]
        reveal_key: bool,
    },
    /// Print the session at SRC as a string session.
    Encode {
        /// The format to write.
        #[arg(long, value_enum)]
        format: EncodeFormat,
        /// The session to encode (any URL).
        src: String,
        /// api_id to put in a Pyrogram string when the source has none.
        #[arg(long)]
        api_id: Option<i32>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    Auto,
    Telethon,
    Pyrogram,
    Gramjs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum EncodeFormat {
    Telethon,
    Pyrogram,
    Gramjs,
}

impl EncodeFormat {
    fn format(self) -> StringFormat {
        match self {
            EncodeFormat::Telethon => StringFormat::Telethon,
            EncodeFormat::Pyrogram => StringFormat::Pyrogram,
            EncodeFormat::Gramjs => StringFormat::GramJs,
        }
    }
}

/// Why a command stopped.
#[derive(Debug)]
enum Stop {
    /// An error, with an optional hint said after it.
    Failed(Error, Option<String>),
    /// The reader of stdout went away: stop quietly.
    ClosedPipe,
    /// Ctrl-C between sessions: what was done.
    Interrupted(String),
    /// Writing the output failed (a full disk, a closed file).
    Output(std::io::Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e, None)
    }
}

impl From<WriteFailure> for Stop {
    fn from(failure: WriteFailure) -> Self {
        match failure {
            WriteFailure::ClosedPipe => Stop::ClosedPipe,
            WriteFailure::Failed(e) => Stop::Output(e),
        }
    }
}

type Outcome = std::result::Result<(), Stop>;

fn hinted(e: Error, hint: impl Into<String>) -> Stop {
    Stop::Failed(e, Some(hint.into()))
}

fn out(text: &str) -> Outcome {
    Ok(output::line(text)?)
}

fn out_lines(lines: &[String]) -> Outcome {
    for line in lines {
        out(line.trim_end())?;
    }
    Ok(())
}

fn print_json(value: &Value) -> Outcome {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::backend("json", e))?;
    out(&text)
}

fn warn(text: &str) {
    eprintln!("mtsession: warning: {}", printable_message(text));
}

fn main() -> ExitCode {
    // Errors are reported as one line; a panic (a bug) is reported the same way.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!(
            "mtsession: internal error (please report it): {}",
            printable_message(&message)
        );
    }));
    let command = Cli::command().after_help(format!(
        "URLs: {}; add ?session=NAME to pick a session of a store (default: default).",
        mtsession::known_urls().join(", ")
    ));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let outcome = std::panic::catch_unwind(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Stop::from(Error::backend("runtime", e)))?;
        runtime.block_on(run(cli))
    });
    match outcome {
        Ok(Ok(())) | Ok(Err(Stop::ClosedPipe)) => ExitCode::SUCCESS,
        Ok(Err(Stop::Failed(e, hint))) => {
            let mut line = one_line(&e);
            if let Some(hint) = hint {
                line = format!("{}. {hint}", line.trim_end_matches('.'));
            }
            eprintln!("mtsession: {line}");
            ExitCode::FAILURE
        }
        Ok(Err(Stop::Output(e))) => {
            eprintln!("mtsession: cannot write the output: {e}");
            ExitCode::FAILURE
        }
        Ok(Err(Stop::Interrupted(done))) => {
            eprintln!("mtsession: interrupted by Ctrl-C: {done}");
            ExitCode::from(130)
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// The error and its sources on one line, without secrets (errors never hold
/// keys or URL passwords), control characters escaped.
fn one_line(error: &Error) -> String {
    let mut line = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    printable_message(&line.replace(['\n', '\r'], " "))
}

async fn run(cli: Cli) -> Outcome {
    match cli.command {
        Command::Convert(args) => convert(args).await,
        Command::Inspect(args) => inspect(args).await,
        Command::Peers(args) => peers(args).await,
        Command::String(StringCommand::Decode {
            string,
            format,
            json,
            reveal_key,
        }) => decode(&string, format, json, reveal_key),
        Command::String(StringCommand::Encode {
            format,
            src,
            api_id,
        }) => encode(format.format(), &src, api_id).await,
        Command::List { store_url, json } => list(&store_url, json).await,
        Command::Delete { url, json } => delete(&url, json).await,
    }
}

fn quoted_names(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(10)
        .map(|n| format!("\"{}\"", printable(n)))
        .collect();
    let more = if names.len() > shown.len() {
        format!(" and {} more", names.len() - shown.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// Reads an endpoint; a missing session of a store is reported with the
/// sessions the store holds.
async fn read(endpoint: &Endpoint) -> std::result::Result<Loaded, Stop> {
    match endpoint.read().await {
        Ok(loaded) => Ok(loaded),
        Err(e @ Error::NotFound { .. }) => match endpoint {
            Endpoint::Store { store, session } if !store.exists(session).await? => {
                let names = store.list().await.unwrap_or_default();
                let hint = if names.is_empty() {
                    "The store holds no sessions yet".to_owned()
                } else {
                    format!(
                        "The store holds {}; pick one by adding ?session=NAME to the URL",
                        quoted_names(&names)
                    )
                };
                Err(hinted(
                    Error::NotFound {
                        what: endpoint.describe(),
                    },
                    hint,
                ))
            }
            _ => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

fn spinner(quiet: bool, message: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn both_stores(src: &StoreUrl, dst: &StoreUrl) -> bool {
    !is_single_session(src.scheme()) && !is_single_session(dst.scheme())
}

/// Whether two URLs name one store that must be opened once (an embedded
/// store may refuse a second open in one process; `memory:` is a new store
/// each time).
fn same_store(src: &StoreUrl, dst: &StoreUrl) -> bool {
    both_stores(src, dst)
        && src.scheme() != "memory"
        && src.store_identity() == dst.store_identity()
}

async fn convert(args: ConvertArgs) -> Outcome {
    let src = StoreUrl::parse(&args.src)?;
    let dst = StoreUrl::parse(&args.dst)?;
    if args.all {
        return convert_all(&src, &dst, args.force, args.quiet).await;
    }
    let shared = same_store(&src, &dst);
    if shared && src.session_or_default() == dst.session_or_default() {
        return Err(Error::invalid(format!(
            "SRC and DST name the same session {:?} of one store",
            src.session_or_default()
        ))
        .into());
    }
    // The source is read (read-only) and checked before the destination is
    // opened, so a source that cannot be read creates nothing.
    let (source, store) = if shared {
        let store = mtsession::open_url(&src, OpenMode::ReadWrite).await?;
        (Endpoint::on_store(store.clone(), &src), Some(store))
    } else {
        (Endpoint::open_url(&src, OpenMode::ReadOnly).await?, None)
    };
    let bar = spinner(args.quiet, &format!("copying {}", source.describe()));
    let loaded = read(&source).await?;
    let data = validate_data(&loaded.data, true).map_err(|e| {
        hinted(
            e,
            format!("{} holds data no store accepts", source.describe()),
        )
    })?;
    let destination = match store {
        Some(store) => Endpoint::on_store(store, &dst),
        None => Endpoint::open_url(&dst, OpenMode::Create).await?,
    };
    let written = destination.write(&data, args.force).await;
    bar.finish_and_clear();
    let mut warnings = loaded.warnings;
    match written {
        Ok(more) => warnings.extend(more),
        Err(e @ Error::AlreadyExists { .. }) => {
            return Err(hinted(e, "Pass --force to replace it"));
        }
        Err(e) => return Err(e.into()),
    }
    if !args.quiet {
        for warning in &warnings {
            warn(warning);
        }
        eprintln!(
            "mtsession: copied {} to {} ({} peers, {} sent files)",
            printable(&source.describe()),
            printable(&destination.describe()),
            data.peers.len(),
            data.sent_files.len()
        );
    }
    Ok(())
}

/// Reports progress of `convert --all`: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: ProgressBar,
    plain: bool,
    total: usize,
}

impl Progress {
    fn new(quiet: bool, total: usize) -> Self {
        let terminal = !quiet && std::io::stderr().is_terminal();
        let bar = if terminal {
            let bar = ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message("copying sessions");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            plain: !quiet && !terminal,
            total,
        }
    }

    fn copied(&self, done: usize, name: &str) {
        self.bar.inc(1);
        if self.plain {
            eprintln!(
                "mtsession: copied {done}/{} sessions: {}",
                self.total,
                printable(name)
            );
        }
    }
}

async fn convert_all(src: &StoreUrl, dst: &StoreUrl, force: bool, quiet: bool) -> Outcome {
    if !both_stores(src, dst) {
        return Err(Error::invalid(
            "--all copies every session of a store into a store; SRC and DST must both be \
             store URLs",
        )
        .into());
    }
    if src.session().is_some() || dst.session().is_some() {
        return Err(Error::invalid(
            "--all copies every session under its own name; drop ?session= from the URLs",
        )
        .into());
    }
    if same_store(src, dst) {
        return Err(Error::invalid("SRC and DST name the same store").into());
    }
    let from = mtsession::open_url(src, OpenMode::ReadOnly).await?;
    let names = from.list().await?;
    let to = mtsession::open_url(dst, OpenMode::Create).await?;
    if !force {
        let mut taken = Vec::new();
        for name in &names {
            if to.exists(name).await? {
                taken.push(name.clone());
            }
        }
        if !taken.is_empty() {
            return Err(hinted(
                Error::AlreadyExists {
                    what: format!(
                        "{} of the sessions in the destination ({})",
                        taken.len(),
                        quoted_names(&taken)
                    ),
                },
                "Pass --force to replace them",
            ));
        }
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    // Registered before the first copy, so Ctrl-C never kills a copy midway.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::backend("signal", e))?;
    let listener = tokio::spawn({
        let interrupted = Arc::clone(&interrupted);
        async move {
            if sigint.recv().await.is_some() {
                interrupted.store(true, Ordering::SeqCst);
            }
        }
    });
    let progress = Progress::new(quiet, names.len());
    let mut copied: Vec<String> = Vec::new();
    for name in &names {
        if interrupted.load(Ordering::SeqCst) {
            progress.bar.abandon();
            listener.abort();
            return Err(Stop::Interrupted(format!(
                "copied {} of {} sessions{}; the others were not touched",
                copied.len(),
                names.len(),
                if copied.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", quoted_names(&copied))
                }
            )));
        }
        copy_one(&from, &to, name, force).await?;
        copied.push(name.clone());
        progress.copied(copied.len(), name);
    }
    listener.abort();
    progress.bar.finish_and_clear();
    if !quiet {
        eprintln!("mtsession: copied {} sessions", names.len());
    }
    Ok(())
}

async fn copy_one(from: &Store, to: &Store, name: &str, force: bool) -> Outcome {
    match session_core::copy_between(from, name, to, name, force).await {
        Ok(()) => Ok(()),
        Err(e @ Error::AlreadyExists { .. }) => Err(hinted(e, "Pass --force to replace it")),
        Err(e) => Err(e.into()),
    }
}

async fn inspect(args: InspectArgs) -> Outcome {
    let url = StoreUrl::parse(&args.url)?;
    let endpoint = Endpoint::open_url(&url, OpenMode::ReadOnly).await?;
    let loaded = read(&endpoint).await?;
    let (session, header) = match &endpoint {
        Endpoint::Store { store, session } => {
            (Some(session.as_str()), Some(store.header(session).await?))
        }
        _ => (None, None),
    };
    let value = report::inspect_json(
        &endpoint.describe(),
        session,
        &loaded.data,
        header.as_ref(),
        &loaded.warnings,
        args.reveal_key,
    );
    if args.json {
        return print_json(&value);
    }
    for warning in &loaded.warnings {
        warn(warning);
    }
    out_lines(&report::inspect_text(&value))
}

async fn peers(args: PeersArgs) -> Outcome {
    let url = StoreUrl::parse(&args.url)?;
    let wanted_id = args.id.map(PeerId::from_marked).transpose().map_err(|e| {
        hinted(
            e,
            "--id takes a marked id: users +id, chats -id, channels -100…",
        )
    })?;
    let username = args
        .username
        .as_deref()
        .map(session_core::model::normalize_username);
    let phone = args
        .phone
        .as_deref()
        .map(session_core::model::normalize_phone)
        .transpose()
        .map_err(|e| hinted(e, "Check the number given to --phone"))?;
    let endpoint = Endpoint::open_url(&url, OpenMode::ReadOnly).await?;
    let (total, mut found): (u64, Vec<Peer>) = match &endpoint {
        Endpoint::Store { store, session } => {
            if !store.exists(session).await? {
                read(&endpoint).await?;
            }
            let total = store.peer_count(session).await?;
            let candidates = if let Some(name) = &args.username {
                store
                    .peer_by_username(session, name)
                    .await?
                    .into_iter()
                    .collect()
            } else if let Some(phone) = &args.phone {
                store
                    .peer_by_phone(session, phone)
                    .await?
                    .into_iter()
                    .collect()
            } else if let Some(id) = wanted_id {
                store
                    .peers(session, &[id])
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            } else {
                store.export(session).await?.peers
            };
            (total, candidates)
        }
        _ => {
            let loaded = read(&endpoint).await?;
            for warning in &loaded.warnings {
                warn(warning);
            }
            (loaded.data.peers.len() as u64, loaded.data.peers)
        }
    };
    found.retain(|peer| {
        username
            .as_ref()
            .is_none_or(|key| peer.username_keys().contains(key))
            && phone
                .as_ref()
                .is_none_or(|p| peer.phone.as_ref() == Some(p))
            && wanted_id.is_none_or(|id| peer.id == id)
    });
    if args.limit > 0 {
        found.truncate(args.limit);
    }
    let shown: Vec<Value> = found
        .iter()
        .map(|p| report::peer_json(p, args.reveal_hashes))
        .collect();
    let value = report::peers_json(&endpoint.describe(), total, &shown);
    if args.json {
        return print_json(&value);
    }
    out_lines(&report::peers_text(&value))
}

fn decode(input: &str, format: FormatArg, json: bool, reveal: bool) -> Outcome {
    let decoded = match format {
        FormatArg::Auto => string::decode(input)?,
        FormatArg::Telethon => string::decode_as(input, StringFormat::Telethon)?,
        FormatArg::Pyrogram => string::decode_as(input, StringFormat::Pyrogram)?,
        FormatArg::Gramjs => string::decode_as(input, StringFormat::GramJs)?,
    };
    let value = report::decoded_json(&decoded, reveal);
    if json {
        return print_json(&value);
    }
    out_lines(&report::decoded_text(&value))
}

async fn encode(format: StringFormat, src: &str, api_id: Option<i32>) -> Outcome {
    let url = StoreUrl::parse(src)?;
    let endpoint = Endpoint::open_url(&url, OpenMode::ReadOnly).await?;
    let mut data = read(&endpoint).await?.data;
    if data.api_id.is_none() {
        data.api_id = api_id;
    }
    if format == StringFormat::Pyrogram && data.api_id.is_none() {
        return Err(hinted(
            Error::invalid(format!(
                "a Pyrogram string holds the application's api_id, and {} records none",
                endpoint.describe()
            )),
            "Pass it with --api-id N",
        ));
    }
    if format == StringFormat::Telethon && data.home_auth_key().is_none() {
        // Telethon's StringSession.save() writes an empty string for a
        // session without a key; print the same.
        warn("the session has no auth key for its home DC, so the Telethon string is empty");
        return out("");
    }
    out(&Endpoint::encode(&data, format)?)
}

async fn list(url: &str, json: bool) -> Outcome {
    let url = StoreUrl::parse(url)?;
    if is_single_session(url.scheme()) {
        return Err(Error::invalid(format!(
            "{url} holds one session; `list` takes a store URL such as sqlite:PATH"
        ))
        .into());
    }
    let store = mtsession::open_url(&url, OpenMode::ReadOnly).await?;
    let names = store.list().await?;
    if json {
        return print_json(&json!({
            "format_version": FORMAT_VERSION,
            "store": url.with_session(None)?.to_string(),
            "sessions": names,
        }));
    }
    for name in &names {
        out(&printable(name))?;
    }
    Ok(())
}

async fn delete(url: &str, json: bool) -> Outcome {
    let url = StoreUrl::parse(url)?;
    if is_single_session(url.scheme()) || url.scheme() == "memory" {
        return Err(Error::invalid(format!(
            "`delete` removes a session from a store, and {url} is not a persistent store \
             (delete a foreign file with rm)"
        ))
        .into());
    }
    let store = mtsession::open_url(&url, OpenMode::ReadWrite).await?;
    let name = url.session_or_default();
    if !store.delete(name).await? {
        let endpoint = Endpoint::on_store(store, &url);
        read(&endpoint).await?;
        return Err(Error::session_not_found(name).into());
    }
    if json {
        return print_json(&json!({
            "format_version": FORMAT_VERSION,
            "session": name,
            "deleted": true,
        }));
    }
    eprintln!("mtsession: deleted session \"{}\"", printable(name));
    Ok(())
}
