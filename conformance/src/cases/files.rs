//! The sent-file cache.

use session_core::{FileKind, SentFile, SentFileKey};

use crate::support::file_key;
use crate::{CaseResult, Ctx};

/// Sent files read back by key; unknown keys answer `None`.
pub async fn sent_file_round_trip(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let entries: Vec<(SentFileKey, SentFile)> = (0..20u8)
        .map(|i| {
            let kind = if i % 2 == 0 {
                FileKind::Photo
            } else {
                FileKind::Document
            };
            let file = SentFile {
                id: i64::from(i) * 1_000 + 1,
                access_hash: -i64::from(i) - 7,
            };
            (file_key(i, 1_000 + i64::from(i), kind), file)
        })
        .collect();
    for (key, file) in &entries {
        session.cache_sent_file(key, file).await?;
    }
    for (key, file) in &entries {
        assert_eq!(session.sent_file(key).await?, Some(*file), "entry {key:?}");
    }
    assert_eq!(
        session.sent_file(&file_key(99, 1, FileKind::Photo)).await?,
        None
    );
    let mut sorted = entries.clone();
    sorted.sort_by_key(|(k, _)| *k);
    assert_eq!(
        session.export().await?.sent_files,
        sorted,
        "export lists files by key"
    );
    Ok(())
}

/// Caching a key again replaces its value.
pub async fn sent_file_is_replaced(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let key = file_key(1, 4_096, FileKind::Document);
    session
        .cache_sent_file(
            &key,
            &SentFile {
                id: 1,
                access_hash: 2,
            },
        )
        .await?;
    session
        .cache_sent_file(
            &key,
            &SentFile {
                id: 3,
                access_hash: 4,
            },
        )
        .await?;
    assert_eq!(
        session.sent_file(&key).await?,
        Some(SentFile {
            id: 3,
            access_hash: 4
        })
    );
    assert_eq!(
        session.export().await?.sent_files.len(),
        1,
        "the old entry was kept beside"
    );
    Ok(())
}

/// Photo and document of the same bytes, and the same md5 with another size,
/// are different keys.
pub async fn sent_file_kinds_are_distinct_keys(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let photo = file_key(5, 100, FileKind::Photo);
    let document = SentFileKey {
        kind: FileKind::Document,
        ..photo
    };
    let bigger = SentFileKey { size: 101, ..photo };
    session
        .cache_sent_file(
            &photo,
            &SentFile {
                id: 1,
                access_hash: 1,
            },
        )
        .await?;
    assert_eq!(
        session.sent_file(&document).await?,
        None,
        "a photo answered as a document"
    );
    assert_eq!(
        session.sent_file(&bigger).await?,
        None,
        "another size answered"
    );
    session
        .cache_sent_file(
            &document,
            &SentFile {
                id: 2,
                access_hash: 2,
            },
        )
        .await?;
    session
        .cache_sent_file(
            &bigger,
            &SentFile {
                id: 3,
                access_hash: 3,
            },
        )
        .await?;
    assert_eq!(
        session.sent_file(&photo).await?,
        Some(SentFile {
            id: 1,
            access_hash: 1
        })
    );
    assert_eq!(
        session.sent_file(&document).await?,
        Some(SentFile {
            id: 2,
            access_hash: 2
        })
    );
    assert_eq!(
        session.sent_file(&bigger).await?,
        Some(SentFile {
            id: 3,
            access_hash: 3
        })
    );
    Ok(())
}

/// md5 bytes of 0x00 and 0xFF, sizes 0 and i64::MAX, and extreme ids are exact.
pub async fn sent_file_extremes(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let entries = [
        (
            SentFileKey {
                md5: [0; 16],
                size: 0,
                kind: FileKind::Photo,
            },
            SentFile {
                id: i64::MIN,
                access_hash: i64::MAX,
            },
        ),
        (
            SentFileKey {
                md5: [0xFF; 16],
                size: i64::MAX,
                kind: FileKind::Document,
            },
            SentFile {
                id: i64::MAX,
                access_hash: i64::MIN,
            },
        ),
        (
            SentFileKey {
                md5: [0; 16],
                size: 0,
                kind: FileKind::Document,
            },
            SentFile {
                id: 0,
                access_hash: 0,
            },
        ),
    ];
    for (key, file) in &entries {
        session.cache_sent_file(key, file).await?;
    }
    for (key, file) in &entries {
        assert_eq!(session.sent_file(key).await?, Some(*file), "entry {key:?}");
    }
    Ok(())
}
