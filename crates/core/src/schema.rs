//! Schema versions: the one check every backend makes when it opens a store.

use crate::error::{Error, Result};

/// Checks a stored schema version against the newest one this build reads.
///
/// `what` names the store, file or namespace in the error. A version above
/// `supported` is refused with [`Error::UnsupportedSchemaVersion`] (never
/// read or rewritten); a version below 1 is [`Error::Corrupt`].
pub fn check_version(what: &str, found: i64, supported: i64) -> Result<()> {
    if found < 1 {
        return Err(Error::corrupt(
            what,
            format!("the stored schema version is {found}; versions start at 1"),
        ));
    }
    if found > supported {
        return Err(Error::UnsupportedSchemaVersion {
            what: what.to_owned(),
            found,
            supported,
        });
    }
    Ok(())
}

/// Like [`check_version`], for a version stored as text (as key-value
/// engines keep it): text that is not a number is [`Error::Corrupt`].
pub fn check_version_text(what: &str, found: &str, supported: i64) -> Result<i64> {
    let version = found.trim().parse::<i64>().map_err(|_| {
        Error::corrupt(
            what,
            format!("the stored schema version {found:?} is not a number"),
        )
    })?;
    check_version(what, version, supported)?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn versions() {
        assert!(check_version("x", 1, 1).is_ok());
        let newer = check_version("x", 2, 1).expect_err("newer");
        assert_eq!(newer.kind(), ErrorKind::UnsupportedSchemaVersion);
        assert!(newer.to_string().contains("upgrade"), "{newer}");
        assert_eq!(
            check_version("x", 0, 1).expect_err("zero").kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(check_version_text("x", "1", 3).expect("ok"), 1);
        assert_eq!(
            check_version_text("x", "v1", 3).expect_err("text").kind(),
            ErrorKind::Corrupt
        );
    }
}
