//! URLs: `StoreUrl::parse`, `check_params`, `to_driver_url` and `redact` never
//! panic on any text, and a password put into a URL (in the user info or a
//! `password=` option) never shows in `redact`, `Display`, `Debug` or an
//! error.
//!
//! The input is read twice: as a whole, it is a URL; split at `|` into
//! scheme, user, password, host and tail, it builds a URL with a known
//! password (the first byte, odd or even, puts it in the query or the user
//! info), so that seeds like `redis|u|hunter22|127.0.0.1:1|0` steer it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::url::{StoreUrl, redact};

/// A password as a URL carries it: unreserved characters and %-escapes,
/// after a marker that no message holds (so that a password like `session`
/// is not "found" in a message's own words).
fn url_password(raw: &str) -> Option<String> {
    let password: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-._~%!$'()*+,;".contains(*c))
        .collect();
    (!password.is_empty()).then(|| format!("Pw7q{password}"))
}

fn must_not_show(password: &str, url: &str, shown: &str, what: &str) {
    assert!(
        !shown.contains(password),
        "{what} shows the password {password:?} of {url:?}: {shown:?}"
    );
}

fn any_text(text: &str) {
    let _ = redact(text);
    if let Ok(url) = StoreUrl::parse(text) {
        let _ = url.check_params(&["table_prefix", "prefix", "busy_timeout"]);
        let _ = url.to_driver_url(&["table_prefix"]);
        let _ = url.path();
        let _ = url.param("prefix");
        let _ = url.store_identity();
        let _ = url.with_session(Some("fuzz"));
        let _ = url.to_string();
        let _ = format!("{url:?}");
    }
}

fn with_password(text: &str, in_query: bool) {
    let mut fields = text.split('|');
    let mut next = || fields.next().unwrap_or("");
    let (scheme, user, password, host, tail) = (next(), next(), next(), next(), next());
    let Some(password) = url_password(password) else {
        return;
    };
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && !c.is_control() && !"@/?#:".contains(*c))
            .collect()
    };
    let scheme: String = scheme
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-.".contains(*c))
        .collect();
    let scheme = if scheme.is_empty() {
        "redis".to_owned()
    } else {
        scheme
    };
    let (user, host) = (clean(user), clean(host));
    let tail: String = tail
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let url = if in_query {
        format!("{scheme}://{user}@{host}/db?x=1&password={password}&{tail}")
    } else {
        format!("{scheme}://{user}:{password}@{host}/{tail}")
    };
    // The password must be the only place its text occurs.
    if url.matches(password.as_str()).count() != 1 {
        return;
    }
    must_not_show(&password, &url, &redact(&url), "redact");
    match StoreUrl::parse(&url) {
        Ok(parsed) => {
            must_not_show(&password, &url, &parsed.to_string(), "Display");
            must_not_show(&password, &url, &format!("{parsed:?}"), "Debug");
            if let Err(e) = parsed.check_params(&["x"]) {
                must_not_show(&password, &url, &e.to_string(), "check_params");
            }
        }
        Err(e) => must_not_show(&password, &url, &e.to_string(), "the parse error"),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    any_text(&text);
    with_password(&text, bytes.first().is_some_and(|b| b % 2 == 1));
});
