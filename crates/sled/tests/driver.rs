//! `sled:` URLs through [`SledDriver`]: the path forms, every documented
//! option, and refusals that name the valid options.

use std::time::Duration;

use session_core::url::StoreUrl;
use session_core::{Driver, Durability, ErrorKind, OpenMode, Result, Store};
use session_sled::{DEFAULT_MAX_DELAY, SledDriver, SledStore};

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mtsession-sled-driver-")
        .tempdir()
        .expect("a temporary directory")
}

async fn open(url: &str, mode: OpenMode) -> Result<Store> {
    SledDriver.open(&StoreUrl::parse(url)?, mode).await
}

/// The durability of the database behind a store the driver opened.
async fn durability_of(path: &std::path::Path) -> Durability {
    // A second store on the directory shares the first one's database.
    SledStore::builder(path)
        .mode(OpenMode::ReadOnly)
        .open()
        .await
        .expect("shared")
        .durability()
}

#[test]
fn declares_its_scheme_and_options() {
    assert_eq!(SledDriver.backend(), "sled");
    assert_eq!(SledDriver.schemes(), ["sled"]);
    assert_eq!(SledDriver.syntax(), "sled:PATH");
    assert_eq!(
        SledDriver.options(),
        [
            "durability",
            "max_delay_ms",
            "cache_bytes",
            "lock_timeout_ms"
        ]
    );
}

#[tokio::test]
async fn options_set_durability_cache_and_lock_timeout() {
    let root = tempdir();
    let cases = [
        ("a", "", Durability::Immediate),
        ("b", "?durability=immediate", Durability::Immediate),
        (
            "c",
            "?durability=write-behind",
            Durability::WriteBehind {
                max_delay: DEFAULT_MAX_DELAY,
            },
        ),
        (
            "d",
            "?max_delay_ms=250&cache_bytes=8388608&lock_timeout_ms=50",
            Durability::WriteBehind {
                max_delay: Duration::from_millis(250),
            },
        ),
        (
            "e",
            "?DURABILITY=write-behind&max_delay_ms=7&session=x",
            Durability::WriteBehind {
                max_delay: Duration::from_millis(7),
            },
        ),
    ];
    for (name, query, expected) in cases {
        let path = root.path().join(name);
        let store = open(&format!("sled:{}{query}", path.display()), OpenMode::Create)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        store.create("s").await.expect("usable");
        assert_eq!(durability_of(&path).await, expected, "{query}");
    }
    // The absolute form.
    let path = root.path().join("f");
    let store = open(&format!("sled://{}", path.display()), OpenMode::Create)
        .await
        .expect("sled:// form");
    store.create("s").await.expect("usable");
    assert!(path.join("db").exists());
}

#[tokio::test]
async fn bad_options_are_refused_before_anything_is_created() {
    let root = tempdir();
    let path = root.path().join("store");
    let shown = path.display();
    let cases = [
        (
            format!("sled:{shown}?durabilty=immediate"),
            "valid options are session, durability, max_delay_ms, cache_bytes, lock_timeout_ms",
        ),
        (
            format!("sled:{shown}?durability=sometimes"),
            "immediate or write-behind",
        ),
        (
            format!("sled:{shown}?durability=immediate&max_delay_ms=5"),
            "cannot be given with",
        ),
        (
            format!("sled:{shown}?max_delay_ms=0"),
            "max_delay_ms is a whole number from 1",
        ),
        (
            format!("sled:{shown}?max_delay_ms=soon"),
            "max_delay_ms is a whole number",
        ),
        (
            format!("sled:{shown}?cache_bytes=12"),
            "cache_bytes is a whole number from 1048576",
        ),
        (
            format!("sled:{shown}?lock_timeout_ms=-1"),
            "lock_timeout_ms",
        ),
        ("sled:".to_owned(), "needs a path"),
    ];
    for (url, expected) in cases {
        let err = open(&url, OpenMode::Create).await.expect_err(&url);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
        assert!(err.to_string().contains(expected), "{url}: {err}");
    }
    assert!(!path.exists(), "a refused URL created the store");
}
