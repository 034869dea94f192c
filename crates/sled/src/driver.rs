//! [`SledDriver`]: `sled:PATH` URLs.

use std::time::Duration;

use async_trait::async_trait;
use session_core::url::StoreUrl;
use session_core::{Driver, Durability, Error, OpenMode, Result, Store};

use crate::store::SledStore;

/// The write-behind bound when `durability=write-behind` names none.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(100);

/// Opens sled stores from `sled:PATH` URLs (`sled:dir/store`,
/// `sled:///abs/store`).
///
/// Options (besides `session`):
///
/// | option | values | default |
/// | --- | --- | --- |
/// | `durability` | `immediate`, `write-behind` | `immediate` |
/// | `max_delay_ms` | the write-behind bound in ms (1..=86 400 000); implies `write-behind` | 100 |
/// | `cache_bytes` | sled's page cache size in bytes (at least 1 048 576) | 67 108 864 |
/// | `lock_timeout_ms` | how long opening waits for a directory another process holds, in ms | 1 000 |
///
/// Any other option is refused, naming these.
#[derive(Clone, Copy, Debug, Default)]
pub struct SledDriver;

/// The options [`SledDriver`] accepts.
const OPTIONS: &[&str] = &[
    "durability",
    "max_delay_ms",
    "cache_bytes",
    "lock_timeout_ms",
];

fn number(url: &StoreUrl, option: &str, min: u64, max: u64) -> Result<Option<u64>> {
    let Some(text) = url.param(option)? else {
        return Ok(None);
    };
    match text.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
        _ => Err(Error::invalid(format!(
            "sled: the URL option {option} is a whole number from {min} to {max}, got {:?}",
            session_core::url::shorten(&text)
        ))),
    }
}

#[async_trait]
impl Driver for SledDriver {
    fn backend(&self) -> &'static str {
        "sled"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["sled"]
    }

    fn syntax(&self) -> &'static str {
        "sled:PATH"
    }

    fn options(&self) -> &'static [&'static str] {
        OPTIONS
    }

    async fn open(&self, url: &StoreUrl, mode: OpenMode) -> Result<Store> {
        url.check_params(self.options())?;
        let path = url.path()?;
        let max_delay = number(url, "max_delay_ms", 1, 86_400_000)?.map(Duration::from_millis);
        let durability = match (url.param("durability")?.as_deref(), max_delay) {
            (None | Some("immediate"), None) => Durability::Immediate,
            (None | Some("write-behind"), Some(max_delay)) => Durability::WriteBehind { max_delay },
            (Some("write-behind"), None) => Durability::WriteBehind {
                max_delay: DEFAULT_MAX_DELAY,
            },
            (Some("immediate"), Some(_)) => {
                return Err(Error::invalid(
                    "sled: max_delay_ms is the write-behind bound; it cannot be given with \
                     durability=immediate",
                ));
            }
            (Some(other), _) => {
                return Err(Error::invalid(format!(
                    "sled: the URL option durability is immediate or write-behind, got {:?}",
                    session_core::url::shorten(other)
                )));
            }
        };
        let mut builder = SledStore::builder(&path).durability(durability).mode(mode);
        if let Some(bytes) = number(url, "cache_bytes", 1 << 20, u64::MAX)? {
            builder = builder.cache_capacity(bytes);
        }
        if let Some(ms) = number(url, "lock_timeout_ms", 0, 86_400_000)? {
            builder = builder.lock_timeout(Duration::from_millis(ms));
        }
        Ok(Store::new(builder.open().await?))
    }
}
