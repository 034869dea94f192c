//! A grammers bot whose session lives in any mtsession store.
//!
//! ```sh
//! cargo run -p session-grammers --example bot -- 'memory:?session=echo'
//! TG_ID=12345 TG_HASH=0123abcd BOT_TOKEN=123:abc \
//!     cargo run -p session-grammers --example bot -- 'sqlite:bot.db?session=echo'
//! ```
//!
//! The URL is anything `mtsession::open_session` serves in this build
//! (`memory:`; `sqlite:PATH`, `redis://…`, `postgres://…` and the others with
//! the `mtsession` features that bring them), `?session=NAME` choosing the
//! session (default `default`). The session is opened with `open_exclusive`,
//! so a second copy of the bot on the same session stops with the holder's
//! name instead of getting `AUTH_KEY_DUPLICATED` from Telegram.
//!
//! Without `BOT_TOKEN` (and `TG_ID`, `TG_HASH`) the example stops after
//! building the client, before any connection is made.

use std::error::Error;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use grammers_client::Client;
use grammers_mtsender::SenderPool;
use grammers_session::Session as _;
use session_grammers::GrammersSession;

type AnyError = Box<dyn Error + Send + Sync>;

/// Prints a line; a closed stdout (`bot | head -1`) is not an error of the bot.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bot: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), AnyError> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: bot STORE_URL  (for example 'sqlite:bot.db?session=echo' or 'memory:')")?;
    let session = mtsession::open_session(&url).await?;
    let owner = format!("grammers bot example, process {}", std::process::id());
    let session =
        Arc::new(GrammersSession::open_exclusive(session, &owner, Duration::from_secs(30)).await?);
    say(format_args!(
        "session {:?} in the {} store, home DC {}, leased by {owner:?}",
        session.session().name(),
        session.session().store().backend_name(),
        session.home_dc_id()?,
    ));

    let api_id: i32 = match env("TG_ID") {
        Some(id) => id
            .parse()
            .map_err(|e| format!("TG_ID is not a number: {e}"))?,
        None => 0,
    };
    let SenderPool { runner, handle, .. } = SenderPool::new(Arc::clone(&session), api_id);
    let client = Client::new(handle.clone());

    let (Some(token), Some(api_hash), true) = (env("BOT_TOKEN"), env("TG_HASH"), api_id != 0)
    else {
        say(format_args!(
            "client built; set TG_ID, TG_HASH and BOT_TOKEN to sign in (stopping here)"
        ));
        drop(client);
        drop(runner);
        session.release_lease().await?;
        return Ok(());
    };

    let pool = tokio::spawn(runner.run());
    if !client.is_authorized().await? {
        client.bot_sign_in(&token, &api_hash).await?;
    }
    let me = client.get_me().await?;
    say(format_args!(
        "signed in as {} (id {}); the session now lives in the store",
        me.username().unwrap_or("a bot without a username"),
        me.id()
    ));
    handle.quit();
    pool.await?;
    session.release_lease().await?;
    Ok(())
}
