//! The store URL syntax shared by the library and the `mtsession` command (DESIGN §6).
//!
//! This module only parses; opening a store needs the backend crates and lives
//! in `session-cli` (`session_cli::open_url`).

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::model::{DEFAULT_SESSION, validate_session_name};

/// Where a session lives.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// `memory:` — a store in this process.
    Memory,
    /// `sqlite:PATH` — an mtsession SQLite store.
    Sqlite(PathBuf),
    /// `sled:PATH` — an mtsession sled store.
    Sled(PathBuf),
    /// `redis://…` or `rediss://…` (kept whole, minus `session=`).
    Redis(String),
    /// `mongodb://…` or `mongodb+srv://…`.
    Mongo(String),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// `mysql://…` or `mariadb://…` (the latter rewritten to `mysql://`).
    Mysql(String),
    /// `telethon:PATH` — a Telethon v1 `.session` file.
    Telethon(PathBuf),
    /// `telethon2:PATH` — a Telethon v2 `.session` file.
    Telethon2(PathBuf),
    /// `pyrogram:PATH` — a Pyrogram `.session` file.
    Pyrogram(PathBuf),
    /// `string:STRING` — a Telethon, Pyrogram or GramJS string session.
    String(String),
}

impl Target {
    /// The scheme as written in URLs.
    pub fn scheme(&self) -> &'static str {
        match self {
            Target::Memory => "memory",
            Target::Sqlite(_) => "sqlite",
            Target::Sled(_) => "sled",
            Target::Redis(_) => "redis",
            Target::Mongo(_) => "mongodb",
            Target::Postgres(_) => "postgres",
            Target::Mysql(_) => "mysql",
            Target::Telethon(_) => "telethon",
            Target::Telethon2(_) => "telethon2",
            Target::Pyrogram(_) => "pyrogram",
            Target::String(_) => "string",
        }
    }

    /// Whether the target is a store of many named sessions (as opposed to a
    /// foreign file or string holding exactly one).
    pub fn is_store(&self) -> bool {
        !matches!(
            self,
            Target::Telethon(_) | Target::Telethon2(_) | Target::Pyrogram(_) | Target::String(_)
        )
    }
}

/// Shows the target without passwords or string-session contents.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// Shows the target without passwords or string-session contents.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Memory => f.write_str("memory:"),
            Target::Sqlite(p)
            | Target::Sled(p)
            | Target::Telethon(p)
            | Target::Telethon2(p)
            | Target::Pyrogram(p) => write!(f, "{}:{}", self.scheme(), p.display()),
            Target::Redis(u) | Target::Mongo(u) | Target::Postgres(u) | Target::Mysql(u) => {
                f.write_str(&redact(u))
            }
            Target::String(s) => write!(f, "string:<{} characters>", s.chars().count()),
        }
    }
}

/// A parsed URL: where, and which session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The store, file or string.
    pub target: Target,
    /// The session named by `?session=NAME`, if any.
    pub session: Option<String>,
}

impl Location {
    /// The session to use: the one named, or `default`.
    pub fn session_or_default(&self) -> &str {
        self.session.as_deref().unwrap_or(DEFAULT_SESSION)
    }
}

const SCHEMES: &str = "memory:, sqlite:PATH, sled:PATH, redis://, rediss://, mongodb://, \
                       postgres://, mysql://, telethon:PATH, telethon2:PATH, pyrogram:PATH, string:STRING";

/// Parses a store URL such as `sqlite:sessions.db?session=alice`.
pub fn parse(input: &str) -> Result<Location> {
    let input = input.trim();
    let Some((scheme, rest)) = input.split_once(':') else {
        return Err(Error::invalid(format!(
            "{:?} is not a store URL; expected one of {SCHEMES}",
            shorten(input)
        )));
    };
    let (body, session) = split_session(rest)?;
    let lower = scheme.to_ascii_lowercase();
    let path = |kind: &str| -> Result<PathBuf> {
        let path = body.strip_prefix("//").unwrap_or(&body);
        if path.is_empty() {
            return Err(Error::invalid(format!(
                "{kind}: needs a path, e.g. {kind}:my.session"
            )));
        }
        Ok(PathBuf::from(path))
    };
    let whole = || format!("{lower}:{body}");
    let target = match lower.as_str() {
        "memory" => Target::Memory,
        "sqlite" => Target::Sqlite(path("sqlite")?),
        "sled" => Target::Sled(path("sled")?),
        "redis" | "rediss" => Target::Redis(whole()),
        "mongodb" | "mongodb+srv" => Target::Mongo(whole()),
        "postgres" | "postgresql" => Target::Postgres(whole()),
        "mysql" => Target::Mysql(whole()),
        "mariadb" => Target::Mysql(format!("mysql:{body}")),
        "telethon" => Target::Telethon(path("telethon")?),
        "telethon2" => Target::Telethon2(path("telethon2")?),
        "pyrogram" => Target::Pyrogram(path("pyrogram")?),
        "string" => {
            if body.trim().is_empty() {
                return Err(Error::invalid(
                    "string: needs a string session after the colon",
                ));
            }
            Target::String(body.trim().to_owned())
        }
        _ => {
            return Err(Error::invalid(format!(
                "unknown scheme {:?}; expected one of {SCHEMES}",
                shorten(scheme)
            )));
        }
    };
    Ok(Location { target, session })
}

/// Splits `?session=NAME` (or `&session=NAME`) off, keeping other parameters.
fn split_session(rest: &str) -> Result<(String, Option<String>)> {
    let Some((base, query)) = rest.rsplit_once('?') else {
        return Ok((rest.to_owned(), None));
    };
    let mut session = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("session", value)) => {
                let name = percent_decode(value)?;
                validate_session_name(&name)?;
                session = Some(name);
            }
            _ if pair.is_empty() => {}
            _ => kept.push(pair),
        }
    }
    let body = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((body, session))
}

fn percent_decode(value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::invalid("bad %-escape in the session name"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("the session name is not UTF-8"))
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// Query parameters whose values are secrets (compared case-insensitively).
const SECRET_PARAMETERS: [&str; 5] = [
    "password",
    "pass",
    "sslpassword",
    "tlscertificatekeyfilepassword",
    "sslclientcertificatekeypassword",
];

/// Replaces the password of a URL (in the user info, or a secret query
/// parameter such as `password=`) with `***`, so the URL can be shown in
/// messages, logs and `Debug` output. Everything else is kept, so the result
/// still says where the store is. Works on multi-host strings
/// (`mongodb://u:p@a:1,b:2/db`) that general URL parsers reject. Text that is
/// not URL-shaped at all (no `:`, or white space) is not shown, since there is
/// no telling where a secret would be in it. Every backend uses this one
/// function.
pub fn redact(url: &str) -> String {
    if !url.contains(':') || url.chars().any(char::is_whitespace) {
        return "<malformed URL, not shown>".to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#'; a password holding one
    // of those must be percent-encoded, so the user info ends at the last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_PARAMETERS.contains(&key.to_ascii_lowercase().as_str()) => {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{path}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        let cases = [
            ("memory:", "memory"),
            ("sqlite:a.db", "sqlite"),
            ("sled:/tmp/x", "sled"),
            ("redis://127.0.0.1", "redis"),
            ("rediss://h:1", "redis"),
            ("mongodb://h", "mongodb"),
            ("postgres://u@h/db", "postgres"),
            ("postgresql://u@h/db", "postgres"),
            ("mysql://root@h/test", "mysql"),
            ("mariadb://root@h/test", "mysql"),
            ("telethon:x.session", "telethon"),
            ("telethon2:x.session", "telethon2"),
            ("pyrogram:x.session", "pyrogram"),
            ("string:1AAAA", "string"),
        ];
        for (url, scheme) in cases {
            assert_eq!(parse(url).expect(url).target.scheme(), scheme, "{url}");
        }
    }

    #[test]
    fn session_parameter() {
        let loc = parse("sqlite:dir/a.db?session=al%20ice").expect("ok");
        assert_eq!(loc.target, Target::Sqlite("dir/a.db".into()));
        assert_eq!(loc.session.as_deref(), Some("al ice"));
        let loc = parse("postgres://u@h/db?sslmode=disable&session=bob").expect("ok");
        assert_eq!(
            loc.target,
            Target::Postgres("postgres://u@h/db?sslmode=disable".into())
        );
        assert_eq!(loc.session_or_default(), "bob");
        assert_eq!(
            parse("memory:").expect("ok").session_or_default(),
            "default"
        );
        assert!(parse("memory:?session=").is_err());
    }

    #[test]
    fn rejects_unknown() {
        let err = parse("ftp://x").expect_err("unknown").to_string();
        assert!(err.contains("expected one of"), "{err}");
        assert!(parse("no-colon").is_err());
        assert!(parse("sqlite:").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:hunter2@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("postgres://u:p%40ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact("mongodb://u:pw@a,b/?replicaSet=x"),
            "mongodb://u:***@a,b/?replicaSet=x"
        );
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact("mysql://h/db?password=x"),
            "mysql://h/db?password=***"
        );
        assert_eq!(
            redact("mysql://u@h/db?Password=x"),
            "mysql://u@h/db?Password=***"
        );
        assert_eq!(
            redact("redis+unix:///run/r.sock?db=1&pass=x"),
            "redis+unix:///run/r.sock?db=1&pass=***"
        );
        assert_eq!(
            redact("mongodb://h/?tlsCertificateKeyFilePassword=s#f"),
            "mongodb://h/?tlsCertificateKeyFilePassword=***#f"
        );
        assert_eq!(redact("sqlite:/tmp/x.db"), "sqlite:/tmp/x.db");
        assert!(!redact("not a url hunter2").contains("hunter2"));
        assert!(!redact("redis://:hunter2@[::1").contains("hunter2"));
        let shown = format!("{}", parse("redis://:secret@h").expect("ok").target);
        assert!(!shown.contains("secret"), "{shown}");
        let shown = format!("{:?}", parse("string:1ABCDEF").expect("ok").target);
        assert!(!shown.contains("ABCDEF"), "{shown}");
    }
}
