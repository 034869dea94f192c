//! Username and phone lookups, case folding and ownership moves.

use session_core::{Peer, PeerId, Session};

use crate::support::user;
use crate::{CaseResult, Ctx};

async fn owner(session: &Session, username: &str) -> session_core::Result<Option<PeerId>> {
    Ok(session.peer_by_username(username).await?.map(|p| p.id))
}

async fn usernames_of(session: &Session, id: PeerId) -> session_core::Result<Vec<String>> {
    Ok(session
        .peer(id)
        .await?
        .and_then(|p| p.usernames)
        .unwrap_or_default())
}

/// Username lookups ignore case and a leading `@`; the stored spelling is kept.
pub async fn username_lookup_ignores_case_and_at(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let peer = Peer::new(user(1)).with_username("Alice_Bot");
    session.cache_peer(&peer).await?;
    for query in [
        "Alice_Bot",
        "alice_bot",
        "ALICE_BOT",
        "@Alice_Bot",
        "@aLiCe_bOt",
    ] {
        assert_eq!(
            session.peer_by_username(query).await?,
            Some(peer.clone()),
            "lookup of {query:?}"
        );
    }
    session
        .cache_peer(&Peer::new(user(2)).with_username("@Prefixed"))
        .await?;
    assert_eq!(owner(&session, "prefixed").await?, Some(user(2)));
    assert_eq!(
        usernames_of(&session, user(2)).await?,
        vec!["Prefixed".to_owned()]
    );
    Ok(())
}

/// `SessionStore::peer_by_username` itself ignores case and a leading `@`,
/// for callers that do not go through the `Session` handle.
pub async fn store_username_lookup_normalizes(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    session
        .cache_peer(&Peer::new(user(1)).with_username("MixedCase"))
        .await?;
    for query in ["MixedCase", "mixedcase", "MIXEDCASE", "@mixedCASE"] {
        let found = store.peer_by_username("alice", query).await?.map(|p| p.id);
        assert_eq!(found, Some(user(1)), "store.peer_by_username({query:?})");
    }
    Ok(())
}

/// Non-ASCII usernames fold case as Rust's `str::to_lowercase` does.
pub async fn unicode_usernames_fold_case(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let cases = [
        (1, "Ünïcødé", &["ünïcødé", "ÜNÏCØDÉ", "@üNïCøDé"][..]),
        (2, "ДУРОВ", &["дуров", "Дуров"][..]),
        (3, "Straße", &["straße", "STRAßE"][..]),
        (4, "Οδυσσευς", &["ΟΔΥΣΣΕΥΣ", "οδυσσευς"][..]),
    ];
    for (id, name, _) in cases {
        session
            .cache_peer(&Peer::new(user(id)).with_username(name))
            .await?;
    }
    for (id, name, queries) in cases {
        assert_eq!(
            usernames_of(&session, user(id)).await?,
            vec![name.to_owned()]
        );
        for query in queries {
            assert_eq!(
                owner(&session, query).await?,
                Some(user(id)),
                "lookup {query:?} of {name:?}"
            );
        }
    }
    Ok(())
}

/// A username taken by another peer moves to it: the old owner no longer
/// answers the lookup and no longer lists the username, but keeps its others.
pub async fn username_ownership_moves_to_latest_owner(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let (a, b) = (user(1), user(2));
    session
        .cache_peer(&Peer {
            usernames: Some(vec!["shared".into(), "a_own".into()]),
            ..Peer::new(a)
        })
        .await?;
    assert_eq!(owner(&session, "shared").await?, Some(a));
    session
        .cache_peer(&Peer::new(b).with_username("Shared"))
        .await?;
    assert_eq!(
        owner(&session, "shared").await?,
        Some(b),
        "the latest owner must win"
    );
    assert_eq!(usernames_of(&session, a).await?, vec!["a_own".to_owned()]);
    assert_eq!(
        owner(&session, "a_own").await?,
        Some(a),
        "the old owner's other username"
    );
    session
        .cache_peer(&Peer {
            usernames: Some(vec!["SHARED".into(), "a_own".into()]),
            ..Peer::new(a)
        })
        .await?;
    assert_eq!(
        owner(&session, "shared").await?,
        Some(a),
        "ownership must move back"
    );
    assert_eq!(usernames_of(&session, b).await?, Vec::<String>::new());
    Ok(())
}

/// When a peer changes its username, the old one stops answering.
pub async fn renamed_username_is_forgotten(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let a = user(1);
    session
        .cache_peer(&Peer::new(a).with_username("old_name"))
        .await?;
    session
        .cache_peer(&Peer::new(a).with_username("new_name"))
        .await?;
    assert_eq!(
        owner(&session, "old_name").await?,
        None,
        "the old username still answers"
    );
    assert_eq!(owner(&session, "new_name").await?, Some(a));
    session
        .cache_peer(&Peer::new(user(2)).with_username("old_name"))
        .await?;
    assert_eq!(owner(&session, "old_name").await?, Some(user(2)));
    assert_eq!(owner(&session, "new_name").await?, Some(a));
    Ok(())
}

/// A peer may own several usernames; each answers, in their given order and
/// spelling, without duplicates.
pub async fn multiple_usernames_per_peer(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let a = user(1);
    let given = ["one", "Two", "THREE", "@four", "ONE"];
    let peer = Peer {
        usernames: Some(given.iter().map(|u| (*u).to_owned()).collect()),
        ..Peer::new(a)
    };
    session.cache_peer(&peer).await?;
    assert_eq!(
        usernames_of(&session, a).await?,
        vec!["one", "Two", "THREE", "four"]
    );
    for query in ["one", "two", "three", "four", "@Four", "ONE"] {
        assert_eq!(owner(&session, query).await?, Some(a), "lookup {query:?}");
    }
    session
        .cache_peer(&Peer::new(user(2)).with_username("two"))
        .await?;
    assert_eq!(
        usernames_of(&session, a).await?,
        vec!["one", "THREE", "four"]
    );
    Ok(())
}

/// `Some(vec![])` clears a peer's usernames; they stop answering and are free to take.
pub async fn usernames_cleared_with_empty_list(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let a = user(1);
    session
        .cache_peer(&Peer {
            usernames: Some(vec!["x_name".into(), "y_name".into()]),
            ..Peer::new(a)
        })
        .await?;
    session
        .cache_peer(&Peer {
            usernames: Some(vec![]),
            ..Peer::new(a)
        })
        .await?;
    assert_eq!(
        session.peer(a).await?.and_then(|p| p.usernames),
        Some(vec![])
    );
    assert_eq!(owner(&session, "x_name").await?, None);
    assert_eq!(owner(&session, "y_name").await?, None);
    session
        .cache_peer(&Peer::new(user(2)).with_username("x_name"))
        .await?;
    assert_eq!(owner(&session, "x_name").await?, Some(user(2)));
    Ok(())
}

/// Merging a peer with unknown usernames (`None`) keeps them and their lookups.
pub async fn merge_without_usernames_keeps_them(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let a = user(1);
    session
        .cache_peer(&Peer::new(a).with_username("keep_me").with_phone("777"))
        .await?;
    session
        .cache_peer(&Peer::new(a).with_name("renamed").with_hash(5))
        .await?;
    assert_eq!(owner(&session, "keep_me").await?, Some(a));
    assert_eq!(session.peer_by_phone("777").await?.map(|p| p.id), Some(a));
    assert_eq!(usernames_of(&session, a).await?, vec!["keep_me".to_owned()]);
    Ok(())
}

/// Phones are stored as digits and found whatever the formatting of the query.
pub async fn phone_lookup_ignores_formatting(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let a = user(1);
    session
        .cache_peer(&Peer::new(a).with_phone("+1 (555) 010-9999"))
        .await?;
    assert_eq!(
        session.peer(a).await?.and_then(|p| p.phone),
        Some("15550109999".to_owned())
    );
    for query in [
        "15550109999",
        "+15550109999",
        "+1 555 010 9999",
        "1-555-010-9999",
        "(1) 555.010.9999",
    ] {
        assert_eq!(
            session.peer_by_phone(query).await?.map(|p| p.id),
            Some(a),
            "lookup {query:?}"
        );
    }
    assert_eq!(
        session.peer_by_phone("5550109999").await?,
        None,
        "a suffix must not match"
    );
    Ok(())
}

/// A phone given to another peer moves to it; the old owner's phone is cleared.
pub async fn phone_ownership_moves(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let (a, b) = (user(1), user(2));
    session
        .cache_peer(&Peer::new(a).with_phone("+44 7700 900123"))
        .await?;
    session
        .cache_peer(&Peer::new(b).with_phone("447700900123"))
        .await?;
    assert_eq!(
        session.peer_by_phone("447700900123").await?.map(|p| p.id),
        Some(b)
    );
    assert_eq!(
        session.peer(a).await?.and_then(|p| p.phone),
        None,
        "the old owner kept the phone"
    );
    Ok(())
}

/// When a peer's phone changes, the old number stops answering.
pub async fn changed_phone_is_forgotten(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let a = user(1);
    session
        .cache_peer(&Peer::new(a).with_phone("111222"))
        .await?;
    session
        .cache_peer(&Peer::new(a).with_phone("333444"))
        .await?;
    assert_eq!(session.peer_by_phone("111222").await?, None);
    assert_eq!(
        session.peer_by_phone("333444").await?.map(|p| p.id),
        Some(a)
    );
    Ok(())
}
