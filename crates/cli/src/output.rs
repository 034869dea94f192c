//! Writing to the terminal: lines that report write errors, text made safe to
//! print, and dates.

use std::io::{self, Write};

/// What went wrong writing to stdout.
#[derive(Debug)]
pub enum WriteFailure {
    /// The reader went away (`mtsession list | head`): stop quietly.
    ClosedPipe,
    /// Any other failure (a full disk, `/dev/full`): an error.
    Failed(io::Error),
}

/// Writes one line to stdout and flushes it.
pub fn line(text: &str) -> Result<(), WriteFailure> {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(WriteFailure::ClosedPipe),
        Err(e) => Err(WriteFailure::Failed(e)),
    }
}

/// `text` with control characters (new lines, tabs, terminal escapes)
/// written as `\n`, `\t`, `\u{1b}`, so that one name stays one line and
/// cannot drive the terminal. Backslashes are doubled so the result is
/// unambiguous. `--json` output keeps names exact instead.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` with control characters escaped as [`printable`] escapes them,
/// but with backslashes kept as they are: for error and warning messages,
/// whose quoted parts the library has escaped already (`session "a\nb"`), so
/// that an escape is not shown doubled (`a\\nb`).
pub fn printable_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push('\\'),
            c => out.push_str(&printable(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

/// Unicode characters that reorder text on a terminal (a name could
/// otherwise pretend to be another).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// A time in seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_seconds(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A time in milliseconds since the Unix epoch, as [`utc_seconds`] shows it.
pub fn utc_millis(ms: i64) -> String {
    utc_seconds(ms.div_euclid(1000))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("alice\nbob"), "alice\\nbob");
        assert_eq!(printable("a\tb\u{1b}[31m"), "a\\tb\\u{1b}[31m");
        assert_eq!(printable("c:\\x"), "c:\\\\x");
        assert_eq!(printable("ünïcödé ok"), "ünïcödé ok");
        assert_eq!(printable("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(
            printable_message("session \"a\\nb\" \u{1b}[2J\ttab"),
            "session \"a\\nb\" \\u{1b}[2J\\ttab"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc_seconds(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_seconds(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_seconds(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_seconds(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(utc_millis(1_700_000_000_999), "2023-11-14 22:13:20 UTC");
    }
}
