//! The `mtsession` command.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use session_cli::{Endpoint, open_store};
use session_core::string::{self, StringFormat, StringSession};
use session_core::url::{Target, parse};
use session_core::{AuthKey, Error, Result, SessionData};

/// Convert, inspect, list and delete MTProto sessions in any store, file or string format.
///
/// URLs: memory:, sqlite:PATH, sled:PATH, redis://…, rediss://…, mongodb://…,
/// postgres://…, mysql://…, telethon:PATH, telethon2:PATH, pyrogram:PATH,
/// string:STRING; `?session=NAME` selects a session (default `default`).
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
    /// Decode and encode string sessions.
    #[command(subcommand)]
    String(StringCommand),
    /// List the sessions of a store.
    List {
        /// A store URL.
        store_url: String,
    },
    /// Delete the session a URL names.
    Delete {
        /// A store URL with ?session=NAME (default `default`).
        url: String,
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
    /// No progress bar and no warnings.
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

/// Prints a line to stdout. A closed pipe (`mtsession ... | head`) ends the
/// program quietly instead of panicking like `println!`.
macro_rules! out {
    ($($arg:tt)*) => { emit(&format!($($arg)*)) };
}

fn emit(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
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
        eprintln!("mtsession: internal error: {message}");
    }));
    let cli = Cli::parse();
    let outcome = std::panic::catch_unwind(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::backend("runtime", e))?;
        runtime.block_on(run(cli))
    });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("mtsession: {}", one_line(&e));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// The error and its sources on one line, without secrets (errors never hold keys
/// or URL passwords).
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
    line.replace(['\n', '\r'], " ")
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert(args) => convert(args).await,
        Command::Inspect(args) => inspect(args).await,
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
        Command::List { store_url } => list(&store_url).await,
        Command::Delete { url } => delete(&url).await,
    }
}

fn progress(quiet: bool, len: Option<u64>, message: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn convert(args: ConvertArgs) -> Result<()> {
    let src = parse(&args.src)?;
    let dst = parse(&args.dst)?;
    if args.all {
        if !src.target.is_store() || !dst.target.is_store() {
            return Err(Error::invalid(
                "--all copies every session of a store into a store; SRC and DST must both be store URLs",
            ));
        }
        let from = open_store(&src.target, false).await?;
        let to = open_store(&dst.target, true).await?;
        return convert_all(&from, &to, args.force, args.quiet).await;
    }
    let source = Endpoint::open(&src, false).await?;
    let destination = Endpoint::open(&dst, true).await?;
    if !args.force && destination.exists().await? {
        return Err(Error::AlreadyExists {
            what: format!("{} (pass --force to replace it)", destination.describe()),
        });
    }
    let bar = progress(args.quiet, None, &format!("copying {}", source.describe()));
    let loaded = source.read().await?;
    let mut warnings = loaded.warnings;
    warnings.extend(destination.write(&loaded.data, args.force).await?);
    bar.finish_and_clear();
    if !args.quiet {
        for warning in &warnings {
            eprintln!("mtsession: warning: {warning}");
        }
        eprintln!(
            "mtsession: copied {} to {} ({} peers, {} sent files)",
            source.describe(),
            destination.describe(),
            loaded.data.peers.len(),
            loaded.data.sent_files.len()
        );
    }
    Ok(())
}

async fn convert_all(
    from: &Arc<dyn session_core::SessionStore>,
    to: &Arc<dyn session_core::SessionStore>,
    force: bool,
    quiet: bool,
) -> Result<()> {
    let names = from.list().await?;
    if !force {
        for name in &names {
            if to.exists(name).await? {
                return Err(Error::AlreadyExists {
                    what: format!(
                        "session {name:?} in the destination (pass --force to replace it)"
                    ),
                });
            }
        }
    }
    let bar = progress(quiet, Some(names.len() as u64), "copying sessions");
    for name in &names {
        session_core::copy_between(from.as_ref(), name, to.as_ref(), name, force).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !quiet {
        eprintln!("mtsession: copied {} sessions", names.len());
    }
    Ok(())
}

fn key_id(key: Option<&AuthKey>) -> Value {
    key.map_or(Value::Null, |k| Value::String(k.id_hex()))
}

fn key_hex(key: Option<&AuthKey>, reveal: bool) -> Value {
    match key {
        Some(k) if reveal => Value::String(hex::encode(k.expose())),
        _ => Value::Null,
    }
}

fn inspect_json(data: &SessionData, reveal: bool) -> Value {
    json!({
        "home_dc": data.home_dc,
        "dcs": data.dcs.iter().map(|dc| json!({
            "id": dc.id,
            "ipv4": dc.ipv4.map(|a| a.to_string()),
            "ipv6": dc.ipv6.map(|a| a.to_string()),
            "auth_key_id": key_id(dc.auth_key.as_ref()),
            "auth_key": key_hex(dc.auth_key.as_ref(), reveal),
        })).collect::<Vec<_>>(),
        "self_user": data.self_user.map(|u| json!({"id": u.id, "is_bot": u.is_bot})),
        "takeout_id": data.takeout_id,
        "update_state": {
            "pts": data.update_state.pts,
            "qts": data.update_state.qts,
            "date": data.update_state.date,
            "seq": data.update_state.seq,
            "channels": data.update_state.channels.iter()
                .map(|(id, pts)| json!({"id": id, "pts": pts})).collect::<Vec<_>>(),
        },
        "peers": data.peers.len(),
        "sent_files": data.sent_files.len(),
    })
}

fn print_json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::backend("json", e))?;
    out!("{text}");
    Ok(())
}

async fn inspect(args: InspectArgs) -> Result<()> {
    let location = parse(&args.url)?;
    let endpoint = Endpoint::open(&location, false).await?;
    let loaded = endpoint.read().await?;
    for warning in &loaded.warnings {
        eprintln!("mtsession: warning: {warning}");
    }
    let data = &loaded.data;
    if args.json {
        return print_json(&inspect_json(data, args.reveal_key));
    }
    out!("{}", endpoint.describe());
    out!("home DC:     {}", data.home_dc);
    out!("DCs:");
    for dc in &data.dcs {
        let v4 = dc.ipv4.map_or("-".into(), |a| a.to_string());
        let v6 = dc.ipv6.map_or("-".into(), |a| a.to_string());
        let key = match &dc.auth_key {
            Some(k) if args.reveal_key => format!("key {} {}", k.id_hex(), hex::encode(k.expose())),
            Some(k) => format!("key {}", k.id_hex()),
            None => "no key".into(),
        };
        out!("  {:>2}  {v4:<22} {v6:<42} {key}", dc.id);
    }
    match data.self_user {
        Some(u) => out!(
            "self user:   {} ({})",
            u.id,
            if u.is_bot { "bot" } else { "user" }
        ),
        None => out!("self user:   none"),
    }
    out!(
        "api_id:      {}",
        data.api_id.map_or("none".into(), |a| a.to_string())
    );
    out!("test mode:   {}", data.test_mode);
    out!(
        "takeout id:  {}",
        data.takeout_id.map_or("none".into(), |t| t.to_string())
    );
    let state = &data.update_state;
    out!(
        "update state: pts {} qts {} date {} seq {}, {} channels",
        state.pts,
        state.qts,
        state.date,
        state.seq,
        state.channels.len()
    );
    for (id, pts) in &state.channels {
        out!("  channel {id}: pts {pts}");
    }
    out!("peers:       {}", data.peers.len());
    out!("sent files:  {}", data.sent_files.len());
    Ok(())
}

fn decode(input: &str, format: FormatArg, json: bool, reveal: bool) -> Result<()> {
    let decoded = match format {
        FormatArg::Auto => string::decode(input)?,
        FormatArg::Telethon => string::decode_as(input, StringFormat::Telethon)?,
        FormatArg::Pyrogram => string::decode_as(input, StringFormat::Pyrogram)?,
        FormatArg::Gramjs => string::decode_as(input, StringFormat::GramJs)?,
    };
    let value = decoded_json(&decoded, reveal);
    if json {
        return print_json(&value);
    }
    if let Value::Object(map) = value {
        for (key, value) in map {
            let shown = match value {
                Value::Null => "-".to_owned(),
                Value::String(s) => s,
                other => other.to_string(),
            };
            out!("{key:<15} {shown}");
        }
    }
    Ok(())
}

fn decoded_json(s: &StringSession, reveal: bool) -> Value {
    json!({
        "format": s.format.as_str(),
        "dc_id": s.dc_id,
        "server_address": s.server_address,
        "port": s.port,
        "auth_key_id": key_id(s.auth_key.as_ref()),
        "auth_key": key_hex(s.auth_key.as_ref(), reveal),
        "api_id": s.api_id,
        "test_mode": s.test_mode,
        "user_id": s.user_id,
        "is_bot": s.is_bot,
    })
}

async fn encode(format: StringFormat, src: &str, api_id: Option<i32>) -> Result<()> {
    let location = parse(src)?;
    let loaded = Endpoint::open(&location, false).await?.read().await?;
    let mut data = loaded.data;
    if data.api_id.is_none() {
        data.api_id = api_id;
    }
    if format == StringFormat::Telethon && data.home_auth_key().is_none() {
        // Telethon's StringSession.save() writes an empty string for a
        // session without a key; print the same.
        eprintln!("mtsession: warning: the session has no auth key; the Telethon string is empty");
        out!("");
        return Ok(());
    }
    let encoded = StringSession::from_session_data(&data, format)?.encode()?;
    out!("{encoded}");
    Ok(())
}

async fn list(url: &str) -> Result<()> {
    let location = parse(url)?;
    if !location.target.is_store() {
        return Err(Error::invalid(format!(
            "{} holds one session; `list` takes a store URL",
            location.target
        )));
    }
    let store = open_store(&location.target, false).await?;
    for name in store.list().await? {
        out!("{name}");
    }
    Ok(())
}

async fn delete(url: &str) -> Result<()> {
    let location = parse(url)?;
    if !location.target.is_store() || matches!(location.target, Target::Memory) {
        return Err(Error::invalid(format!(
            "`delete` removes a session from a store; {} is not a persistent store \
             (delete a foreign file with rm)",
            location.target
        )));
    }
    let store = open_store(&location.target, false).await?;
    let name = location.session_or_default();
    if store.delete(name).await? {
        eprintln!("mtsession: deleted session {name:?}");
        Ok(())
    } else {
        Err(Error::session_not_found(name))
    }
}
