//! [`SqliteDriver`]: `sqlite:` URLs.

use std::time::Duration;

use async_trait::async_trait;
use session_core::{Driver, Durability, Error, OpenMode, Result, Store, StoreUrl};

use crate::store::SqliteStore;

/// The URL options of `sqlite:` besides `session`.
const OPTIONS: &[&str] = &["durability", "max_delay_ms", "busy_timeout_ms"];

/// The write-behind delay when `durability=write-behind` names none.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(100);

/// Opens [`SqliteStore`]s from `sqlite:PATH` URLs.
///
/// | option | values | default |
/// | --- | --- | --- |
/// | `durability` | `immediate`, `write-behind` | `immediate` |
/// | `max_delay_ms` | with `write-behind`: the longest a write stays unsynced, in ms (≥ 1) | 100 |
/// | `busy_timeout_ms` | how long a call waits for another process's lock, in ms | 10000 |
///
/// `sqlite:sessions.db`, `sqlite:///var/lib/app/sessions.db`,
/// `sqlite:s.db?durability=write-behind&max_delay_ms=50&session=alice`.
/// Any other option is refused, naming the valid ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteDriver;

fn number(url: &StoreUrl, key: &str) -> Result<Option<u64>> {
    let Some(text) = url.param(key)? else {
        return Ok(None);
    };
    text.parse::<u64>().map(Some).map_err(|_| {
        Error::invalid(format!(
            "sqlite: option {key} takes a whole number of milliseconds, got {:?}",
            session_core::url::shorten(&text)
        ))
    })
}

/// The durability a URL asks for.
fn durability(url: &StoreUrl) -> Result<Durability> {
    let max_delay = number(url, "max_delay_ms")?;
    let policy = url.param("durability")?;
    match (policy.as_deref(), max_delay) {
        (None | Some("immediate"), None) => Ok(Durability::Immediate),
        (None | Some("immediate"), Some(_)) => Err(Error::invalid(
            "sqlite: max_delay_ms applies to durability=write-behind only",
        )),
        (Some("write-behind"), None) => Ok(Durability::WriteBehind {
            max_delay: DEFAULT_MAX_DELAY,
        }),
        (Some("write-behind"), Some(0)) => Err(Error::invalid(
            "sqlite: max_delay_ms must be at least 1; use durability=immediate for none",
        )),
        (Some("write-behind"), Some(ms)) => Ok(Durability::WriteBehind {
            max_delay: Duration::from_millis(ms),
        }),
        (Some(other), _) => Err(Error::invalid(format!(
            "sqlite: durability is immediate or write-behind, got {:?}",
            session_core::url::shorten(other)
        ))),
    }
}

#[async_trait]
impl Driver for SqliteDriver {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["sqlite"]
    }

    fn syntax(&self) -> &'static str {
        "sqlite:PATH"
    }

    fn options(&self) -> &'static [&'static str] {
        OPTIONS
    }

    async fn open(&self, url: &StoreUrl, mode: OpenMode) -> Result<Store> {
        url.check_params(self.options())?;
        let path = url.path()?;
        let mut builder = SqliteStore::builder(&path)
            .durability(durability(url)?)
            .mode(mode);
        if let Some(ms) = number(url, "busy_timeout_ms")? {
            builder = builder.busy_timeout(Duration::from_millis(ms));
        }
        Ok(Store::new(builder.open().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> StoreUrl {
        StoreUrl::parse(url).expect("a URL")
    }

    #[test]
    fn durability_options() {
        assert_eq!(
            durability(&parse("sqlite:a.db")).expect("ok"),
            Durability::Immediate
        );
        assert_eq!(
            durability(&parse("sqlite:a.db?durability=write-behind")).expect("ok"),
            Durability::WriteBehind {
                max_delay: DEFAULT_MAX_DELAY
            }
        );
        assert_eq!(
            durability(&parse("sqlite:a.db?durability=write-behind&max_delay_ms=7")).expect("ok"),
            Durability::WriteBehind {
                max_delay: Duration::from_millis(7)
            }
        );
        for bad in [
            "sqlite:a.db?durability=later",
            "sqlite:a.db?max_delay_ms=5",
            "sqlite:a.db?durability=write-behind&max_delay_ms=0",
            "sqlite:a.db?durability=write-behind&max_delay_ms=soon",
        ] {
            let err = durability(&parse(bad)).expect_err(bad);
            assert_eq!(err.kind(), session_core::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
