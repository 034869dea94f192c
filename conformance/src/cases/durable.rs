//! Persistence across reopen and schema versions (durable backends).

use session_core::{Error, SessionData};

use crate::support::{rich_session, write_by_calls};
use crate::{CaseResult, Ctx};

/// Every kind of data, the lookup indexes and the times survive closing and
/// reopening the store.
pub async fn reopen_keeps_every_kind(ctx: Ctx) -> CaseResult {
    let (alice_data, bob_data) = (rich_session(31), rich_session(32));
    let (alice_meta, bob_meta) = {
        let store = ctx.store();
        let alice = store.open("alice").await?;
        write_by_calls(&alice, &alice_data).await?;
        store.import("bob", &bob_data).await?;
        store.flush().await?;
        (store.metadata("alice").await?, store.metadata("bob").await?)
    };
    let ctx = ctx.reopen().await?;
    let store = ctx.store();
    assert_eq!(
        store.list().await?,
        vec!["alice".to_owned(), "bob".to_owned()]
    );
    for (name, data, meta) in [
        ("alice", &alice_data, &alice_meta),
        ("bob", &bob_data, &bob_meta),
    ] {
        assert_eq!(&store.export(name).await?, data, "{name} after reopen");
        assert_eq!(
            &store.metadata(name).await?,
            meta,
            "metadata of {name} after reopen"
        );
        let session = store.session(name)?;
        for peer in &data.peers {
            for username in peer.usernames.iter().flatten() {
                let found = session.peer_by_username(username).await?.map(|p| p.id);
                assert_eq!(
                    found,
                    Some(peer.id),
                    "{name}: username {username:?} after reopen"
                );
            }
            if let Some(phone) = &peer.phone {
                let found = session.peer_by_phone(phone).await?.map(|p| p.id);
                assert_eq!(found, Some(peer.id), "{name}: phone {phone:?} after reopen");
            }
        }
        for (key, file) in &data.sent_files {
            assert_eq!(
                session.sent_file(key).await?,
                Some(*file),
                "{name}: sent file"
            );
        }
        assert_eq!(
            session.home_auth_key().await?,
            data.home_auth_key().cloned()
        );
    }
    Ok(())
}

/// Deletes and creations survive reopening; a deleted session stays gone.
pub async fn reopen_keeps_deletes_and_lists(ctx: Ctx) -> CaseResult {
    {
        let store = ctx.store();
        for name in ["a", "b", "c"] {
            store.import(name, &rich_session(40)).await?;
        }
        assert!(store.delete("b").await?);
        store.flush().await?;
    }
    let ctx = ctx.reopen().await?;
    let store = ctx.store();
    assert_eq!(store.list().await?, vec!["a".to_owned(), "c".to_owned()]);
    assert!(!store.exists("b").await?);
    store.create("b").await?;
    assert_eq!(
        store.export("b").await?,
        SessionData::default(),
        "b came back with old data"
    );
    Ok(())
}

/// Opening a namespace whose recorded schema version is newer than this
/// build fails with `UnsupportedSchemaVersion` (found / supported), every
/// time, and leaves the data alone: written back to the supported version,
/// it opens with the data intact.
pub async fn newer_schema_version_is_refused(ctx: Ctx) -> CaseResult {
    let data = rich_session(50);
    {
        let store = ctx.store();
        store.import("alice", &data).await?;
        store.flush().await?;
    }
    let namespace = ctx.close();
    let newer = i64::from(i32::MAX) + 12_345;
    namespace.write_schema_version(newer).await?;
    let mut supported_version = None;
    for attempt in 1..=2 {
        match namespace.open().await {
            Err(Error::UnsupportedSchemaVersion {
                found, supported, ..
            }) => {
                assert_eq!(
                    found, newer,
                    "attempt {attempt}: `found` is not the version written"
                );
                assert!(
                    supported < newer,
                    "attempt {attempt}: supported {supported} >= found"
                );
                supported_version = Some(supported);
            }
            Err(e) => panic!(
                "attempt {attempt}: expected UnsupportedSchemaVersion, got {} error: {e}",
                e.kind()
            ),
            Ok(_) => panic!("attempt {attempt}: a store opened data of schema version {newer}"),
        }
    }
    let Some(supported) = supported_version else {
        panic!("no UnsupportedSchemaVersion error was seen");
    };
    namespace.write_schema_version(supported).await?;
    let ctx = namespace.open().await?;
    assert_eq!(
        ctx.store().export("alice").await?,
        data,
        "the refused open changed the data"
    );
    Ok(())
}
