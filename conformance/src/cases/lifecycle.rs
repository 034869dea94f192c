//! Whole sessions: create, exists, list, delete, copy, names, isolation.

use std::time::Duration;

use session_core::lease::now_ms;
use session_core::model::production_dcs;
use session_core::{
    DcOption, ErrorKind, FileKind, Peer, PeerKind, SelfUser, SentFile, SessionData, UpdateState,
    UpdateStateChange,
};

use crate::support::{
    CLOCK_SKEW_MS, assert_kind, file_key, full_user, key, rich_session, user, v4, write_by_calls,
};
use crate::{CaseResult, Ctx};

/// The store's `capabilities()` equal what the test invocation declared, and
/// a store without leases refuses them with `Unsupported`.
pub async fn capabilities_match_declaration(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let actual = store.capabilities();
    let declared = ctx.declared();
    assert_eq!(
        (
            actual.durable,
            actual.shared_between_processes,
            actual.leases,
            actual.atomic_multi_key_writes
        ),
        (
            declared.durable,
            declared.shared_between_processes,
            declared.leases,
            declared.atomic_multi_key_writes
        ),
        "store.capabilities() (durable, shared_between_processes, leases, \
         atomic_multi_key_writes) disagree with the conformance_tests! declaration"
    );
    assert!(!store.backend_name().is_empty(), "backend_name() is empty");
    if !actual.leases {
        assert_kind(
            store
                .acquire_lease("s", "owner", Duration::from_secs(1))
                .await,
            ErrorKind::Unsupported,
            "acquire_lease on a store without the leases capability",
        );
    }
    Ok(())
}

/// A created session holds home DC 2, the five production DCs without keys,
/// no self user, no takeout id, zero update state, no peers and no files.
pub async fn fresh_session_defaults(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    assert_eq!(
        store.home_dc("alice").await?,
        2,
        "home DC of a fresh session"
    );
    let dcs = store.dc_options("alice").await?;
    assert_eq!(dcs, production_dcs(), "DC options of a fresh session");
    assert!(
        dcs.iter().all(|dc| dc.auth_key.is_none()),
        "a fresh session has no keys"
    );
    assert_eq!(store.self_user("alice").await?, None);
    assert_eq!(store.takeout_id("alice").await?, None);
    assert_eq!(store.update_state("alice").await?, UpdateState::default());
    assert_eq!(store.peer_count("alice").await?, 0);
    let meta = store.metadata("alice").await?;
    assert_eq!((meta.api_id, meta.test_mode), (None, false));
    assert_eq!(
        store
            .sent_file("alice", &file_key(1, 10, FileKind::Photo))
            .await?,
        None
    );
    assert_eq!(store.export("alice").await?, SessionData::default());
    Ok(())
}

/// `created_at_ms` and `updated_at_ms` of a fresh session are the creation time.
pub async fn fresh_session_times_are_set(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let before = now_ms();
    store.create("alice").await?;
    let after = now_ms();
    let meta = store.metadata("alice").await?;
    for (field, value) in [
        ("created_at_ms", meta.created_at_ms),
        ("updated_at_ms", meta.updated_at_ms),
    ] {
        assert!(
            value >= before - CLOCK_SKEW_MS && value <= after + CLOCK_SKEW_MS,
            "{field} = {value} is not the creation time (between {before} and {after})"
        );
    }
    assert!(
        meta.updated_at_ms >= meta.created_at_ms,
        "updated_at_ms {} is before created_at_ms {}",
        meta.updated_at_ms,
        meta.created_at_ms
    );
    Ok(())
}

/// Creating an existing session is `AlreadyExists` and leaves it untouched.
pub async fn create_twice_is_already_exists(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    store.set_home_dc("alice", 5).await?;
    assert_kind(
        store.create("alice").await,
        ErrorKind::AlreadyExists,
        "second create",
    );
    assert_eq!(
        store.home_dc("alice").await?,
        5,
        "a failed create must not reset the session"
    );
    assert_eq!(store.list().await?, vec!["alice".to_owned()]);
    Ok(())
}

/// Every per-session read of a missing session is `NotFound`.
pub async fn missing_session_reads_are_not_found(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("present").await?;
    let s = "absent";
    let nf = ErrorKind::NotFound;
    assert_kind(store.home_dc(s).await, nf, "home_dc");
    assert_kind(store.dc_options(s).await, nf, "dc_options");
    assert_kind(store.self_user(s).await, nf, "self_user");
    assert_kind(store.metadata(s).await, nf, "metadata");
    assert_kind(store.takeout_id(s).await, nf, "takeout_id");
    assert_kind(store.update_state(s).await, nf, "update_state");
    assert_kind(store.peers(s, &[user(1)]).await, nf, "peers");
    assert_kind(
        store.peer_by_username(s, "someone").await,
        nf,
        "peer_by_username",
    );
    assert_kind(store.peer_by_phone(s, "123456").await, nf, "peer_by_phone");
    assert_kind(store.peer_count(s).await, nf, "peer_count");
    let fk = file_key(1, 1, FileKind::Document);
    assert_kind(store.sent_file(s, &fk).await, nf, "sent_file");
    assert_kind(store.export(s).await, nf, "export");
    let handle = store.session(s)?;
    assert_kind(handle.home_auth_key().await, nf, "Session::home_auth_key");
    assert_kind(
        handle.peer_by_username("someone").await,
        nf,
        "Session::peer_by_username",
    );
    Ok(())
}

/// Every per-session write to a missing session is `NotFound`.
pub async fn missing_session_writes_are_not_found(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("present").await?;
    let s = "absent";
    let nf = ErrorKind::NotFound;
    assert_kind(store.set_home_dc(s, 3).await, nf, "set_home_dc");
    let dc = DcOption::new(3, Some(v4(1, 2, 3, 4, 443)), None);
    assert_kind(store.set_dc_option(s, &dc).await, nf, "set_dc_option");
    let me = Some(SelfUser {
        id: 1,
        is_bot: false,
    });
    assert_kind(store.set_self_user(s, me).await, nf, "set_self_user");
    assert_kind(
        store.set_metadata(s, Some(1), true).await,
        nf,
        "set_metadata",
    );
    assert_kind(store.set_takeout_id(s, Some(1)).await, nf, "set_takeout_id");
    for change in [
        UpdateStateChange::All(UpdateState::default()),
        UpdateStateChange::Primary {
            pts: 1,
            date: 2,
            seq: 3,
        },
        UpdateStateChange::Secondary { qts: 1 },
        UpdateStateChange::Channel { id: 1, pts: 1 },
        UpdateStateChange::RemoveChannel { id: 1 },
    ] {
        assert_kind(
            store.set_update_state(s, &change).await,
            nf,
            &format!("{change:?}"),
        );
    }
    let peer = full_user(1, "someone", "123456");
    assert_kind(store.cache_peers(s, &[peer]).await, nf, "cache_peers");
    let fk = file_key(1, 1, FileKind::Document);
    let file = SentFile {
        id: 1,
        access_hash: 2,
    };
    assert_kind(
        store.cache_sent_file(s, &fk, &file).await,
        nf,
        "cache_sent_file",
    );
    let handle = store.session(s)?;
    assert_kind(
        handle.set_auth_key(2, Some(key(1))).await,
        nf,
        "Session::set_auth_key",
    );
    Ok(())
}

/// An empty peer batch or an empty id lookup on a missing session is still `NotFound`.
pub async fn missing_session_empty_batches_are_not_found(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    assert_kind(
        store.cache_peers("absent", &[]).await,
        ErrorKind::NotFound,
        "cache_peers(&[])",
    );
    assert_kind(
        store.peers("absent", &[]).await,
        ErrorKind::NotFound,
        "peers(&[])",
    );
    Ok(())
}

/// Failed writes (and a lease) on a missing session do not create it.
pub async fn nothing_creates_a_session_implicitly(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let s = "ghost";
    let _ = store.set_home_dc(s, 3).await;
    let _ = store
        .set_update_state(s, &UpdateStateChange::Channel { id: 5, pts: 5 })
        .await;
    let _ = store
        .cache_peers(s, &[full_user(1, "someone", "123")])
        .await;
    let fk = file_key(1, 1, FileKind::Photo);
    let _ = store
        .cache_sent_file(
            s,
            &fk,
            &SentFile {
                id: 1,
                access_hash: 1,
            },
        )
        .await;
    let _ = store.set_takeout_id(s, Some(9)).await;
    if ctx.declared().leases {
        let lease = store
            .acquire_lease(s, "owner", Duration::from_secs(5))
            .await?;
        assert_eq!(lease.owner, "owner");
        store.release_lease(s, "owner").await?;
    }
    assert!(
        !store.exists(s).await?,
        "a session appeared without create or import"
    );
    assert_eq!(store.list().await?, Vec::<String>::new());
    Ok(())
}

/// `exists` is false before `create`, true after, false after `delete`.
pub async fn exists_follows_create_and_delete(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    assert!(!store.exists("alice").await?);
    store.create("alice").await?;
    store.create("bob").await?;
    assert!(store.exists("alice").await?);
    assert!(
        !store.exists("Alice").await?,
        "session names are case-sensitive"
    );
    assert!(store.delete("alice").await?);
    assert!(!store.exists("alice").await?);
    assert!(
        store.exists("bob").await?,
        "deleting one session must not touch another"
    );
    Ok(())
}

/// `list` answers every session name sorted by bytes (Rust `String` order).
pub async fn list_is_sorted_by_bytes(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    assert_eq!(
        store.list().await?,
        Vec::<String>::new(),
        "a fresh namespace lists nothing"
    );
    let names = [
        "b", "a", "B", "ä", "a0", "A", "_", "~", "Z9", "a b", "ab", "10", "9", "é", "e",
    ];
    for name in names {
        store.create(name).await?;
    }
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(store.list().await?, expected);
    Ok(())
}

/// `delete` returns true for an existing session, then false; false for a
/// session that never existed.
pub async fn delete_twice_returns_true_then_false(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    assert!(store.delete("alice").await?, "first delete");
    assert!(!store.delete("alice").await?, "second delete");
    assert!(
        !store.delete("never").await?,
        "delete of a session that never existed"
    );
    Ok(())
}

/// After `delete`, a re-created session is fresh: no peers, lookups, files,
/// keys, channels or metadata survive.
pub async fn delete_removes_everything(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let data = rich_session(7);
    write_by_calls(&session, &data).await?;
    assert_eq!(session.export().await?, data, "the session was filled");
    assert!(store.delete("alice").await?);
    store.create("alice").await?;
    assert_eq!(
        session.export().await?,
        SessionData::default(),
        "re-created session is fresh"
    );
    for peer in &data.peers {
        for username in peer.usernames.iter().flatten() {
            assert_eq!(
                session.peer_by_username(username).await?,
                None,
                "username {username:?} survived delete"
            );
        }
        if let Some(phone) = &peer.phone {
            assert_eq!(
                session.peer_by_phone(phone).await?,
                None,
                "phone survived delete"
            );
        }
    }
    for (key, _) in &data.sent_files {
        assert_eq!(
            session.sent_file(key).await?,
            None,
            "sent file survived delete"
        );
    }
    assert_eq!(session.peer_count().await?, 0);
    let meta = session.metadata().await?;
    assert_eq!((meta.api_id, meta.test_mode), (None, false));
    Ok(())
}

/// Reads and writes of a deleted session are `NotFound`.
pub async fn deleted_session_is_not_found(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    write_by_calls(&session, &rich_session(3)).await?;
    assert!(store.delete("alice").await?);
    let nf = ErrorKind::NotFound;
    assert_kind(session.home_dc().await, nf, "home_dc after delete");
    assert_kind(
        session.update_state().await,
        nf,
        "update_state after delete",
    );
    assert_kind(
        session.peers(&[user(300_001)]).await,
        nf,
        "peers after delete",
    );
    assert_kind(session.export().await, nf, "export after delete");
    assert_kind(
        session.cache_peer(&full_user(5, "five", "5")).await,
        nf,
        "cache_peer after delete",
    );
    assert!(!store.exists("alice").await?);
    Ok(())
}

/// Sessions whose names share a prefix, or contain glob / LIKE wildcards,
/// are distinct: deleting one leaves the others whole.
pub async fn names_sharing_a_prefix_are_distinct(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let names = [
        "a", "a:b", "a:b:c", "a*", "a%", "a_", "a{b}", "a?", "a.b", "ab", "a[b]", "a\\",
    ];
    for (i, name) in names.iter().enumerate() {
        let session = store.open(name).await?;
        let n = i32::try_from(i).unwrap_or(0) + 1;
        session.set_home_dc(n).await?;
        session
            .cache_peer(&Peer::new(user(i64::from(n))).with_username(format!("owner{n}")))
            .await?;
    }
    let mut remaining: Vec<&str> = names.to_vec();
    for victim in ["a", "a*", "a%", "a_", "a?", "a[b]", "a\\"] {
        assert!(store.delete(victim).await?, "delete {victim:?}");
        remaining.retain(|n| *n != victim);
        let mut expected: Vec<String> = remaining.iter().map(|n| (*n).to_owned()).collect();
        expected.sort();
        assert_eq!(store.list().await?, expected, "after deleting {victim:?}");
        for name in &remaining {
            let i = names.iter().position(|n| n == name).unwrap_or(0);
            let n = i32::try_from(i).unwrap_or(0) + 1;
            assert_eq!(
                store.home_dc(name).await?,
                n,
                "{name:?} after deleting {victim:?}"
            );
            let owner = store
                .session(name)?
                .peer_by_username(&format!("owner{n}"))
                .await?;
            assert_eq!(
                owner.map(|p| p.id),
                Some(user(i64::from(n))),
                "peers of {name:?} after deleting {victim:?}"
            );
        }
    }
    Ok(())
}

/// Names of exactly 255 bytes, in 1-, 2-, 3- and 4-byte UTF-8, are stored verbatim.
pub async fn maximum_length_names(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let names = [
        "a".repeat(255),
        format!("{}x", "é".repeat(127)),
        "€".repeat(85),
        format!("{}abc", "😀".repeat(63)),
    ];
    for (i, name) in names.iter().enumerate() {
        assert_eq!(name.len(), 255, "suite bug: name {i} is not 255 bytes");
        let session = store.open(name).await?;
        let pts = i32::try_from(i).unwrap_or(0) + 100;
        session
            .set_update_state(UpdateStateChange::Primary {
                pts,
                date: 1,
                seq: 2,
            })
            .await?;
        assert!(store.exists(name).await?);
    }
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(
        store.list().await?,
        expected,
        "255-byte names must be listed verbatim"
    );
    for (i, name) in names.iter().enumerate() {
        let pts = i32::try_from(i).unwrap_or(0) + 100;
        assert_eq!(store.update_state(name).await?.pts, pts, "data of name {i}");
        assert!(store.delete(name).await?);
    }
    assert_eq!(store.list().await?, Vec::<String>::new());
    Ok(())
}

/// Unicode and special characters in names are stored verbatim and compared
/// byte for byte: no case folding, accent folding, trimming or escaping.
pub async fn unicode_and_special_names(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let names = [
        "Ünïcødé",
        "Unicode",
        "unicode",
        "日本語のセッション",
        "name with spaces",
        "x",
        "x ",
        " x",
        "tab\there",
        "new\nline",
        "quote'\"",
        "back\\slash",
        "'; DROP TABLE sessions; --",
        "$where",
        "{hash}",
        "..",
        "/",
        "./x",
        "%",
        "_",
        "*",
        "[abc]",
        "default",
        "DEFAULT",
        "Default",
    ];
    for (i, name) in names.iter().enumerate() {
        let session = store.open(name).await?;
        session
            .set_takeout_id(Some(i64::try_from(i).unwrap_or(0)))
            .await?;
    }
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(store.list().await?, expected);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            store.takeout_id(name).await?,
            Some(i64::try_from(i).unwrap_or(0)),
            "session {name:?} must hold its own data"
        );
    }
    Ok(())
}

/// The `Session` handle rejects empty, over-long and NUL-containing names
/// with `InvalidInput` before the store sees them.
pub async fn invalid_names_are_rejected_by_the_handle(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let inv = ErrorKind::InvalidInput;
    assert_kind(store.session(""), inv, "empty name");
    assert_kind(store.session(&"a".repeat(256)), inv, "256-byte name");
    assert_kind(
        store.session(&"é".repeat(128)),
        inv,
        "256-byte multi-byte name",
    );
    assert_kind(store.session("a\0b"), inv, "name with NUL");
    assert_kind(store.open("").await, inv, "open(\"\")");
    assert_kind(store.open(&"a".repeat(256)).await, inv, "open(256 bytes)");
    assert_kind(
        session_core::copy_between(&store, "", &store, "b", false).await,
        inv,
        "copy_between from an empty name",
    );
    assert_eq!(
        store.list().await?,
        Vec::<String>::new(),
        "nothing was created"
    );
    Ok(())
}

/// `Store::open` creates a missing session once; opening again keeps its data.
pub async fn open_creates_once_and_keeps_data(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    assert!(store.exists("alice").await?);
    session.set_home_dc(5).await?;
    session.cache_peer(&full_user(1, "one", "111")).await?;
    let again = store.open("alice").await?;
    assert_eq!(
        again.home_dc().await?,
        5,
        "a second open must not reset the session"
    );
    assert_eq!(again.peer_count().await?, 1);
    assert_eq!(store.list().await?, vec!["alice".to_owned()]);
    Ok(())
}

/// `copy` is a deep copy: afterwards, writes to either session leave the other alone.
pub async fn copy_is_deep_and_isolated(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let data = rich_session(11);
    store.import("src", &data).await?;
    store.copy("src", "dst", false).await?;
    assert_eq!(
        store.export("dst").await?,
        data,
        "the copy equals the source"
    );
    let dst = store.session("dst")?;
    let first = data.peers[0].clone();
    dst.cache_peer(&Peer::new(first.id).with_name("changed in dst"))
        .await?;
    dst.set_auth_key(2, Some(key(999))).await?;
    dst.set_update_state(UpdateStateChange::Channel { id: 777, pts: 1 })
        .await?;
    dst.set_takeout_id(None).await?;
    let (fk, _) = data.sent_files[0];
    dst.cache_sent_file(
        &fk,
        &SentFile {
            id: 1,
            access_hash: 1,
        },
    )
    .await?;
    assert_eq!(
        store.export("src").await?,
        data,
        "writes to the copy changed the source"
    );
    let dst_before = store.export("dst").await?;
    let src = store.session("src")?;
    src.set_home_dc(1).await?;
    src.cache_peer(&full_user(424_242, "onlysrc", "4242"))
        .await?;
    src.set_update_state(UpdateStateChange::Secondary { qts: 5 })
        .await?;
    assert_eq!(
        store.export("dst").await?,
        dst_before,
        "writes to the source changed the copy"
    );
    Ok(())
}

/// Copying a missing session is `NotFound` (with or without overwrite) and creates nothing.
pub async fn copy_of_missing_source_is_not_found(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    assert_kind(
        store.copy("nope", "dst", false).await,
        ErrorKind::NotFound,
        "copy",
    );
    assert_kind(
        store.copy("nope", "dst", true).await,
        ErrorKind::NotFound,
        "copy overwrite",
    );
    assert!(
        !store.exists("dst").await?,
        "a failed copy created its destination"
    );
    Ok(())
}

/// Copying onto an existing session without overwrite is `AlreadyExists`
/// and leaves the destination untouched.
pub async fn copy_onto_existing_is_already_exists(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let src = rich_session(1);
    let dst = rich_session(2);
    store.import("src", &src).await?;
    store.import("dst", &dst).await?;
    assert_kind(
        store.copy("src", "dst", false).await,
        ErrorKind::AlreadyExists,
        "copy",
    );
    assert_eq!(
        store.export("dst").await?,
        dst,
        "a refused copy changed the destination"
    );
    assert_eq!(store.export("src").await?, src);
    Ok(())
}

/// Copying with overwrite replaces the destination whole: none of its old
/// peers, usernames or files remain.
pub async fn copy_with_overwrite_replaces(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let src = rich_session(1);
    let old = rich_session(2);
    store.import("src", &src).await?;
    store.import("dst", &old).await?;
    store.copy("src", "dst", true).await?;
    assert_eq!(store.export("dst").await?, src);
    let dst = store.session("dst")?;
    for peer in &old.peers {
        for username in peer.usernames.iter().flatten() {
            assert_eq!(
                dst.peer_by_username(username).await?,
                None,
                "old username {username:?} survived an overwriting copy"
            );
        }
    }
    assert_eq!(store.export("src").await?, src, "the source changed");
    Ok(())
}

/// A copy answers username and phone lookups, and ownership moves in the
/// copy do not reach the source.
pub async fn copy_carries_lookup_indexes(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let src = store.open("src").await?;
    let owner = full_user(10, "Carried", "+44 20 7946 0000");
    src.cache_peer(&owner).await?;
    store.copy("src", "dst", false).await?;
    let dst = store.session("dst")?;
    assert_eq!(
        dst.peer_by_username("carried").await?.map(|p| p.id),
        Some(owner.id)
    );
    assert_eq!(
        dst.peer_by_phone("442079460000").await?.map(|p| p.id),
        Some(owner.id)
    );
    let thief = Peer::new(user(11))
        .with_username("carried")
        .with_phone("442079460000");
    dst.cache_peer(&thief).await?;
    assert_eq!(
        dst.peer_by_username("Carried").await?.map(|p| p.id),
        Some(thief.id)
    );
    assert_eq!(
        src.peer_by_username("Carried").await?.map(|p| p.id),
        Some(owner.id)
    );
    assert_eq!(
        src.peer_by_phone("442079460000").await?.map(|p| p.id),
        Some(owner.id)
    );
    Ok(())
}

/// Two sessions of one store share nothing: every kind written to one is
/// invisible in the other.
pub async fn sessions_are_isolated_for_every_kind(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let a = store.open("a").await?;
    let b = store.open("b").await?;
    let data_a = rich_session(21);
    write_by_calls(&a, &data_a).await?;
    assert_eq!(
        b.export().await?,
        SessionData::default(),
        "b saw writes to a"
    );
    let data_b = rich_session(22);
    write_by_calls(&b, &data_b).await?;
    assert_eq!(a.export().await?, data_a, "writes to b changed a");
    assert_eq!(b.export().await?, data_b);
    let (fk, _) = data_a.sent_files[0];
    b.cache_sent_file(
        &fk,
        &SentFile {
            id: -5,
            access_hash: -6,
        },
    )
    .await?;
    assert_eq!(a.sent_file(&fk).await?, Some(data_a.sent_files[0].1));
    assert!(store.delete("b").await?);
    assert_eq!(a.export().await?, data_a, "deleting b changed a");
    Ok(())
}

/// The same peer id in two sessions is two peers; username and phone
/// lookups answer only the session's own peers.
pub async fn lookups_are_isolated_between_sessions(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let a = store.open("a").await?;
    let b = store.open("b").await?;
    let in_a = full_user(42, "alpha", "111111");
    let in_b = Peer::new(user(42))
        .with_kind(PeerKind::Bot)
        .with_username("beta")
        .with_phone("222222");
    a.cache_peer(&in_a).await?;
    b.cache_peer(&in_b).await?;
    assert_eq!(a.peer(user(42)).await?, Some(in_a.clone()));
    assert_eq!(b.peer(user(42)).await?, Some(in_b.clone()));
    assert_eq!(a.peer_by_username("beta").await?, None);
    assert_eq!(b.peer_by_username("alpha").await?, None);
    assert_eq!(a.peer_by_phone("222222").await?, None);
    assert_eq!(b.peer_by_phone("111111").await?, None);
    b.cache_peer(
        &Peer::new(user(43))
            .with_username("alpha")
            .with_phone("111111"),
    )
    .await?;
    assert_eq!(
        a.peer_by_username("alpha").await?,
        Some(in_a.clone()),
        "a move in b reached a"
    );
    assert_eq!(a.peer_by_phone("111111").await?, Some(in_a));
    assert_eq!((a.peer_count().await?, b.peer_count().await?), (1, 2));
    Ok(())
}
