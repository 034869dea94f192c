//! The URL syntax shared by every backend, the facade and the `mtsession`
//! command ([design §6](https://github.com/mtsession/mtsession/blob/main/docs/design.md#6-urls-and-the-command-line-tool)).
//!
//! A URL is `SCHEME:BODY[?OPTIONS]`. Core parses the generic parts (the
//! scheme, the `session=` option, the other options) and knows no scheme: each
//! backend's [`Driver`](crate::driver::Driver) declares the schemes it serves
//! and the options it accepts.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::model::{DEFAULT_SESSION, validate_session_name};

/// A parsed URL: scheme, body, options, and the session it names.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    scheme: String,
    body: String,
    /// `(key, value)` pairs as written (still percent-encoded), without `session`.
    params: Vec<(String, String)>,
    session: Option<String>,
}

impl StoreUrl {
    /// Parses `SCHEME:BODY[?OPTIONS]`. One final newline (as a shell or a
    /// file adds) is ignored; nothing else is trimmed.
    pub fn parse(input: &str) -> Result<StoreUrl> {
        let input = input
            .strip_suffix("\r\n")
            .or_else(|| input.strip_suffix('\n'))
            .unwrap_or(input);
        let Some((scheme, rest)) = input.split_once(':') else {
            if looks_like_string_session(input) {
                // Never echo it: the start of a string session holds key bytes.
                return Err(Error::invalid(format!(
                    "the argument is not a URL: it has no SCHEME: and its {} characters look \
                     like a string session; write it as string:STRING",
                    input.chars().count()
                )));
            }
            return Err(Error::invalid(format!(
                "{:?} is not a URL: expected SCHEME:..., such as sqlite:sessions.db or \
                 redis://127.0.0.1:6379",
                shorten(input)
            )));
        };
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(Error::invalid(format!(
                "{:?} does not start with a URL scheme such as sqlite: or redis://",
                shorten(input)
            )));
        }
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let mut params = Vec::new();
        let mut session = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "session" {
                if session.is_some() {
                    return Err(Error::invalid("the URL names ?session= twice"));
                }
                session = Some(decode_session(value)?);
            } else {
                params.push((key.to_owned(), value.to_owned()));
            }
        }
        Ok(StoreUrl {
            scheme: scheme.to_ascii_lowercase(),
            body: body.to_owned(),
            params,
            session,
        })
    }

    /// The scheme, lowercased (`sqlite`, `redis`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Everything between `SCHEME:` and `?`, as written.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The session named by `?session=NAME`, if any.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The session to use: the one named, or `default`.
    pub fn session_or_default(&self) -> &str {
        self.session.as_deref().unwrap_or(DEFAULT_SESSION)
    }

    /// The same URL naming another session.
    pub fn with_session(&self, session: Option<&str>) -> Result<StoreUrl> {
        if let Some(name) = session {
            validate_session_name(name)?;
        }
        Ok(StoreUrl {
            session: session.map(str::to_owned),
            ..self.clone()
        })
    }

    /// The body as a file path (`sqlite:dir/a.db`, `sqlite:///abs/a.db`).
    pub fn path(&self) -> Result<PathBuf> {
        let path = self.body.strip_prefix("//").unwrap_or(&self.body);
        if path.is_empty() {
            return Err(Error::invalid(format!(
                "{0}: needs a path, e.g. {0}:my.session",
                self.scheme
            )));
        }
        Ok(PathBuf::from(path))
    }

    /// The options other than `session`, as written.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The percent-decoded value of option `key`, if given.
    pub fn param(&self, key: &str) -> Result<Option<String>> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| percent_decode(v, false))
            .transpose()
    }

    /// Refuses every option not in `known` (compared case-insensitively),
    /// naming the valid ones: a typo never passes silently.
    pub fn check_params(&self, known: &[&str]) -> Result<()> {
        let unknown: Vec<&str> = self
            .params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let valid = if known.is_empty() {
            "it takes none besides session=".to_owned()
        } else {
            format!("valid options are session, {}", known.join(", "))
        };
        Err(Error::invalid(format!(
            "unknown URL option{} {} for {}: ({valid})",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|k| format!("{:?}", shorten(k)))
                .collect::<Vec<_>>()
                .join(", "),
            self.scheme
        )))
    }

    /// `SCHEME:BODY[?OPTIONS]` without `session` and without the options in
    /// `drop`: the URL to hand to a driver.
    pub fn to_driver_url(&self, drop: &[&str]) -> String {
        let kept: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| !drop.iter().any(|d| d.eq_ignore_ascii_case(k)))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if kept.is_empty() {
            format!("{}:{}", self.scheme, self.body)
        } else {
            format!("{}:{}?{}", self.scheme, self.body, kept.join("&"))
        }
    }

    /// What identifies the store (scheme, body, options; not the session):
    /// two URLs with the same identity name the same store.
    pub fn store_identity(&self) -> String {
        let mut params = self.params.clone();
        params.sort();
        format!("{}:{}?{:?}", self.scheme, self.body, params)
    }
}

/// Shows the URL without passwords.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == "string" {
            // The body of a string: URL is a string session, auth key included.
            return write!(f, "string:<{} characters>", self.body.chars().count());
        }
        let mut shown = redact(&self.to_driver_url(&[]));
        if let Some(session) = &self.session {
            shown.push(if self.params.is_empty() { '?' } else { '&' });
            shown.push_str("session=");
            shown.push_str(&percent_encode(session));
        }
        f.write_str(&shown)
    }
}

/// Shows the URL without passwords.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

fn decode_session(raw: &str) -> Result<String> {
    if raw.starts_with(char::is_whitespace) || raw.ends_with(char::is_whitespace) {
        return Err(Error::invalid(
            "the session name in ?session= starts or ends with white space; write such a \
             name percent-encoded (%20 for a space) if it is really meant",
        ));
    }
    let name = percent_decode(raw, true)?;
    validate_session_name(&name)?;
    Ok(name)
}

/// Whether text without a scheme is long base64, as a string session is
/// (Telethon, Pyrogram and GramJS strings are all over 300 characters).
fn looks_like_string_session(text: &str) -> bool {
    let text = text.trim();
    text.len() >= 100
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
}

/// Percent-decodes a query value; `+` is a space when `plus_is_space`.
pub fn percent_decode(value: &str, plus_is_space: bool) -> Result<String> {
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
                    .ok_or_else(|| {
                        Error::invalid(
                            "a URL option holds a bad %-escape (expected %XX, two hex digits)",
                        )
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("a URL option is not UTF-8 once decoded"))
}

/// Percent-encodes a session name for display in a URL.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first 40 characters of `text`, for messages.
pub fn shorten(text: &str) -> String {
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
    fn generic_parts() {
        let url = StoreUrl::parse("SQLite:dir/a.db?session=al%20ice").expect("ok");
        assert_eq!(url.scheme(), "sqlite");
        assert_eq!(url.path().expect("path"), PathBuf::from("dir/a.db"));
        assert_eq!(url.session(), Some("al ice"));
        let url = StoreUrl::parse("postgres://u@h/db?sslmode=disable&session=bob").expect("ok");
        assert_eq!(url.to_driver_url(&[]), "postgres://u@h/db?sslmode=disable");
        assert_eq!(url.session_or_default(), "bob");
        assert_eq!(
            url.param("sslmode").expect("ok").as_deref(),
            Some("disable")
        );
        assert_eq!(
            StoreUrl::parse("memory:").expect("ok").session_or_default(),
            "default"
        );
        assert!(StoreUrl::parse("memory:?session=").is_err());
        assert!(StoreUrl::parse("no-colon").is_err());
        assert!(StoreUrl::parse(":x").is_err());
        assert!(StoreUrl::parse("sqlite:").expect("parses").path().is_err());
        assert!(StoreUrl::parse("sqlite:a?session=x&session=y").is_err());
    }

    #[test]
    fn a_string_session_given_as_a_url_is_not_echoed() {
        let string = format!("1ApWapzMBuw{}=", "AbCd".repeat(87));
        let err = StoreUrl::parse(&string).expect_err("no scheme");
        let text = err.to_string();
        assert!(text.contains("string:STRING"), "{text}");
        assert!(!text.contains("1ApWapzM"), "{text}");
        let err = StoreUrl::parse("sessions.db").expect_err("no scheme");
        assert!(err.to_string().contains("\"sessions.db\""), "{err}");
    }

    #[test]
    fn session_names_keep_their_spaces_or_are_refused() {
        assert!(StoreUrl::parse("sqlite:a.db?session=a ").is_err());
        assert!(StoreUrl::parse("sqlite:a.db?session= a").is_err());
        let url = StoreUrl::parse("sqlite:a.db?session=a%20\n").expect("final newline ignored");
        assert_eq!(url.session(), Some("a "));
        assert_eq!(
            StoreUrl::parse("sqlite:a.db?session=a\n")
                .expect("ok")
                .session(),
            Some("a")
        );
    }

    #[test]
    fn unknown_options_are_refused_with_the_valid_ones() {
        let url = StoreUrl::parse("postgres://h/test?table_prefx=x").expect("ok");
        let err = url
            .check_params(&["table_prefix", "sslmode"])
            .expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("\"table_prefx\""), "{text}");
        assert!(text.contains("table_prefix, sslmode"), "{text}");
        assert!(url.check_params(&["TABLE_PREFX"]).is_ok());
    }

    #[test]
    fn display_hides_passwords() {
        let url = StoreUrl::parse("redis://:secret@h:1/0?session=a%2Fb").expect("ok");
        assert_eq!(url.to_string(), "redis://:***@h:1/0?session=a%2Fb");
        assert!(!format!("{url:?}").contains("secret"));
        let url = StoreUrl::parse("mysql://h/db?password=pw&x=1").expect("ok");
        assert_eq!(url.to_string(), "mysql://h/db?password=***&x=1");
        let url = StoreUrl::parse("string:1ABCDEF").expect("ok");
        assert!(!format!("{url} {url:?}").contains("ABCDEF"));
    }

    #[test]
    fn identity_ignores_the_session() {
        let a = StoreUrl::parse("sled:s.sled?session=a").expect("ok");
        let b = StoreUrl::parse("sled:s.sled?session=b").expect("ok");
        let c = StoreUrl::parse("sled:t.sled?session=a").expect("ok");
        assert_eq!(a.store_identity(), b.store_identity());
        assert_ne!(a.store_identity(), c.store_identity());
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
    }
}
