//! Export and import of whole sessions.

use session_core::lease::now_ms;
use session_core::{DcOption, FileKind, SentFile, SessionData, UpdateStateChange};

use crate::support::{CLOCK_SKEW_MS, Rng, file_key, rich_session, v4};
use crate::{CaseResult, Ctx};

/// The export of a fresh session is `SessionData::default()`.
pub async fn export_of_fresh_session_is_default(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    assert_eq!(store.export("alice").await?, SessionData::default());
    Ok(())
}

/// What is imported exports back exactly, through the store and the handle,
/// even when the imported lists are out of order.
pub async fn export_import_round_trip(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let data = rich_session(1);
    store.import("direct", &data).await?;
    assert_eq!(
        store.export("direct").await?,
        data,
        "store.import then export"
    );
    let mut shuffled = rich_session(2);
    shuffled.peers.reverse();
    shuffled.dcs.reverse();
    shuffled.sent_files.reverse();
    let session = store.session("handle")?;
    session.import(&shuffled).await?;
    let mut expected = shuffled;
    expected.canonicalize();
    assert_eq!(
        session.export().await?,
        expected,
        "Session::import then export"
    );
    Ok(())
}

/// Import replaces the whole session: nothing of the old data stays.
pub async fn import_replaces_everything(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    session.import(&rich_session(1)).await?;
    session
        .set_dc_option(&DcOption::new(999, Some(v4(9, 9, 9, 9, 9)), None))
        .await?;
    session
        .set_update_state(UpdateStateChange::Channel {
            id: 987_654,
            pts: 1,
        })
        .await?;
    let extra = file_key(200, 5, FileKind::Photo);
    session
        .cache_sent_file(
            &extra,
            &SentFile {
                id: 1,
                access_hash: 1,
            },
        )
        .await?;
    let old = session.export().await?;
    let new = rich_session(2);
    session.import(&new).await?;
    assert_eq!(
        session.export().await?,
        new,
        "old DCs, channels, peers or files survived"
    );
    let old_ids: Vec<_> = old.peers.iter().map(|p| p.id).collect();
    let found = session.peers(&old_ids).await?;
    assert!(
        found.iter().all(Option::is_none),
        "old peers survived import: {found:?}"
    );
    assert_eq!(session.sent_file(&extra).await?, None);
    Ok(())
}

/// Import into a missing session creates it, with its creation time set.
pub async fn import_creates_a_missing_session(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let data = rich_session(3);
    let before = now_ms();
    store.import("new", &data).await?;
    assert!(store.exists("new").await?);
    assert_eq!(store.list().await?, vec!["new".to_owned()]);
    assert_eq!(store.export("new").await?, data);
    let meta = store.metadata("new").await?;
    assert!(
        meta.created_at_ms >= before - CLOCK_SKEW_MS,
        "created_at_ms {} of an imported session is not its import time ({before})",
        meta.created_at_ms
    );
    assert_eq!((meta.api_id, meta.test_mode), (data.api_id, data.test_mode));
    Ok(())
}

/// After import, username and phone lookups answer the imported peers and
/// no longer answer the replaced ones.
pub async fn import_rebuilds_lookup_indexes(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let first = rich_session(1);
    session.import(&first).await?;
    for peer in &first.peers {
        for username in peer.usernames.iter().flatten() {
            let found = session.peer_by_username(&username.to_uppercase()).await?;
            assert_eq!(
                found.map(|p| p.id),
                Some(peer.id),
                "imported username {username:?}"
            );
        }
        if let Some(phone) = &peer.phone {
            let found = session.peer_by_phone(phone).await?;
            assert_eq!(
                found.map(|p| p.id),
                Some(peer.id),
                "imported phone {phone:?}"
            );
        }
    }
    session.import(&rich_session(2)).await?;
    for peer in &first.peers {
        for username in peer.usernames.iter().flatten() {
            assert_eq!(
                session.peer_by_username(username).await?,
                None,
                "{username:?} survived"
            );
        }
        if let Some(phone) = &peer.phone {
            assert_eq!(
                session.peer_by_phone(phone).await?,
                None,
                "phone {phone:?} survived"
            );
        }
    }
    Ok(())
}

/// Whatever the order of writes, `export` lists DCs by id, peers by marked
/// id and sent files by key.
pub async fn export_is_canonical(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let data = rich_session(4);
    let mut rng = Rng::new(4);
    let mut dcs = data.dcs.clone();
    let mut peers = data.peers.clone();
    let mut files = data.sent_files.clone();
    shuffle(&mut dcs, &mut rng);
    shuffle(&mut peers, &mut rng);
    shuffle(&mut files, &mut rng);
    for dc in dcs.iter().rev() {
        session.set_dc_option(dc).await?;
    }
    for peer in &peers {
        session.cache_peer(peer).await?;
    }
    for (key, file) in &files {
        session.cache_sent_file(key, file).await?;
    }
    let exported = session.export().await?;
    let mut canonical = exported.clone();
    canonical.canonicalize();
    assert_eq!(exported, canonical, "export is not in canonical order");
    assert_eq!(exported.peers, data.peers);
    assert_eq!(exported.dcs, data.dcs);
    assert_eq!(exported.sent_files, data.sent_files);
    Ok(())
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
        let j = usize::try_from(rng.next_u64() % bound).unwrap_or(0);
        items.swap(i, j);
    }
}
