//! The peer cache: round trips, id spaces, merging, access hashes, batches.

use session_core::{
    AccessHash, ErrorKind, Peer, PeerId, PeerIdKind, PeerKind, SessionOptions, UpdateStateChange,
};

use crate::support::{
    Rng, assert_kind, channel, chat, file_key, full_user, key, rich_session, user,
};
use crate::{CaseResult, Ctx};

fn sample_of_kind(kind: PeerKind, n: i64, rng: &mut Rng) -> Peer {
    let id = match kind.id_kind() {
        PeerIdKind::User => user(1_000 + n),
        PeerIdKind::Chat => chat(2_000 + n),
        PeerIdKind::Channel => channel(3_000 + n),
    };
    let access_hash = match kind {
        PeerKind::Chat => None,
        PeerKind::Bot | PeerKind::Megagroup => Some(AccessHash::min(rng.next_i64())),
        _ => Some(AccessHash::full(rng.next_i64())),
    };
    Peer {
        id,
        kind: Some(kind),
        access_hash,
        usernames: match kind {
            PeerKind::Chat => None,
            PeerKind::Gigagroup => Some(vec![]),
            _ => Some(vec![
                format!("{}_{n}", kind.as_str()),
                format!("Alt_{}_{n}", kind.as_str()),
            ]),
        },
        phone: matches!(kind.id_kind(), PeerIdKind::User).then(|| format!("3{n:010}")),
        name: Some(format!("{} number {n}", kind.as_str())),
        last_seen: Some(1_600_000_000 + n),
    }
}

/// A peer of every kind, in its own id space, reads back exactly by id and in `export`.
pub async fn peers_round_trip_every_kind(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let mut rng = Rng::new(1);
    let peers: Vec<Peer> = PeerKind::ALL
        .into_iter()
        .zip(1..)
        .map(|(kind, n)| sample_of_kind(kind, n, &mut rng))
        .collect();
    session.cache_peers(&peers).await?;
    let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
    let found = session.peers(&ids).await?;
    for (peer, found) in peers.iter().zip(&found) {
        assert_eq!(found.as_ref(), Some(peer), "peer of kind {:?}", peer.kind);
        assert_eq!(
            found.as_ref().map(|p| p.id.kind()),
            peer.kind.map(PeerKind::id_kind),
            "id space of {:?}",
            peer.kind
        );
    }
    let mut sorted = peers.clone();
    sorted.sort_by_key(|p| p.id);
    assert_eq!(
        session.export().await?.peers,
        sorted,
        "export lists peers by marked id"
    );
    Ok(())
}

/// Marked ids at the ends of each id space, and extreme hashes, are exact.
pub async fn marked_id_extremes(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let max_channel = i64::MAX - 1_000_000_000_000;
    let peers = vec![
        Peer::new(user(1))
            .with_kind(PeerKind::User)
            .with_hash(i64::MIN),
        Peer::new(user(i64::MAX))
            .with_kind(PeerKind::Bot)
            .with_hash(i64::MAX),
        Peer::new(chat(1)).with_kind(PeerKind::Chat),
        Peer::new(chat(999_999_999_999))
            .with_kind(PeerKind::Chat)
            .with_name("largest chat"),
        Peer::new(channel(1))
            .with_kind(PeerKind::Broadcast)
            .with_min_hash(0),
        Peer::new(channel(max_channel))
            .with_kind(PeerKind::Megagroup)
            .with_hash(-1),
    ];
    let expected_marked = [
        1,
        i64::MAX,
        -1,
        -999_999_999_999,
        -1_000_000_000_001,
        -(1_000_000_000_000 + max_channel),
    ];
    for (peer, marked) in peers.iter().zip(expected_marked) {
        assert_eq!(peer.id.marked(), marked, "suite bug: marked id");
    }
    session.cache_peers(&peers).await?;
    let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
    let found = session.peers(&ids).await?;
    for (peer, found) in peers.iter().zip(found) {
        assert_eq!(
            found.as_ref(),
            Some(peer),
            "peer with marked id {}",
            peer.id.marked()
        );
    }
    let exported: Vec<i64> = session
        .export()
        .await?
        .peers
        .iter()
        .map(|p| p.id.marked())
        .collect();
    let mut sorted = expected_marked.to_vec();
    sorted.sort_unstable();
    assert_eq!(exported, sorted);
    Ok(())
}

/// Bare id 42 as a user, a basic chat and a channel is three different peers.
pub async fn same_bare_id_in_three_id_spaces(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let peers = [
        Peer::new(user(42))
            .with_kind(PeerKind::User)
            .with_name("user 42")
            .with_hash(1),
        Peer::new(chat(42))
            .with_kind(PeerKind::Chat)
            .with_name("chat 42"),
        Peer::new(channel(42))
            .with_kind(PeerKind::Broadcast)
            .with_name("channel 42")
            .with_hash(3),
    ];
    session.cache_peers(&peers).await?;
    assert_eq!(session.peer_count().await?, 3);
    let found = session.peers(&[user(42), chat(42), channel(42)]).await?;
    for (peer, found) in peers.iter().zip(found) {
        assert_eq!(found.as_ref(), Some(peer));
    }
    Ok(())
}

/// Merging a peer whose fields are unknown (`None`) keeps the stored values.
pub async fn merge_keeps_unknown_fields(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let full = full_user(7, "Keeper", "+1 555 0100");
    session.cache_peer(&full).await?;
    let stored = session.peer(full.id).await?;
    session.cache_peer(&Peer::new(full.id)).await?;
    assert_eq!(
        session.peer(full.id).await?,
        stored,
        "an all-unknown peer changed the stored one"
    );
    session
        .cache_peer(&Peer::new(full.id).with_name("New name"))
        .await?;
    let expected = stored.map(|p| Peer {
        name: Some("New name".to_owned()),
        ..p
    });
    assert_eq!(
        session.peer(full.id).await?,
        expected,
        "only the name may change"
    );
    assert_eq!(session.peer_by_username("keeper").await?, expected);
    assert_eq!(session.peer_by_phone("15550100").await?, expected);
    Ok(())
}

/// Merging a peer whose fields are all known replaces every one of them.
pub async fn merge_replaces_known_fields(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let first = full_user(7, "first", "111");
    session.cache_peer(&first).await?;
    let second = Peer {
        id: first.id,
        kind: Some(PeerKind::Bot),
        access_hash: Some(AccessHash::full(-99)),
        usernames: Some(vec!["second".to_owned(), "Second_Alias".to_owned()]),
        phone: Some("222".to_owned()),
        name: Some("Second".to_owned()),
        last_seen: Some(5),
    };
    session.cache_peer(&second).await?;
    assert_eq!(session.peer(first.id).await?, Some(second.clone()));
    assert_eq!(
        session.peer_by_username("first").await?,
        None,
        "old username still answers"
    );
    assert_eq!(
        session.peer_by_phone("111").await?,
        None,
        "old phone still answers"
    );
    assert_eq!(
        session.peer_by_username("second_alias").await?,
        Some(second)
    );
    Ok(())
}

/// A `min` hash is stored when no hash was known.
pub async fn min_hash_stored_when_nothing_known(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let id = user(5);
    session
        .cache_peer(&Peer::new(id).with_kind(PeerKind::User))
        .await?;
    session.cache_peer(&Peer::new(id).with_min_hash(55)).await?;
    let hash = session.peer(id).await?.and_then(|p| p.access_hash);
    assert_eq!(
        hash,
        Some(AccessHash::min(55)),
        "the min hash was not stored as min"
    );
    let fresh = channel(6);
    session
        .cache_peer(&Peer::new(fresh).with_min_hash(-66))
        .await?;
    let hash = session.peer(fresh).await?.and_then(|p| p.access_hash);
    assert_eq!(hash, Some(AccessHash::min(-66)));
    Ok(())
}

/// A `min` hash never overwrites a full one (in separate calls).
pub async fn min_hash_never_overwrites_full(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let id = user(5);
    session.cache_peer(&Peer::new(id).with_hash(1_111)).await?;
    session
        .cache_peer(
            &Peer::new(id)
                .with_min_hash(2_222)
                .with_name("seen in a group"),
        )
        .await?;
    let stored = session.peer(id).await?;
    assert_eq!(
        stored.as_ref().and_then(|p| p.access_hash),
        Some(AccessHash::full(1_111)),
        "a min hash overwrote the full one"
    );
    assert_eq!(
        stored.and_then(|p| p.name),
        Some("seen in a group".to_owned()),
        "the other fields of the min peer must still merge"
    );
    Ok(())
}

/// A full hash overwrites a `min` one.
pub async fn full_hash_overwrites_min(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let id = channel(5);
    session
        .cache_peer(&Peer::new(id).with_min_hash(2_222))
        .await?;
    session.cache_peer(&Peer::new(id).with_hash(3_333)).await?;
    let hash = session.peer(id).await?.and_then(|p| p.access_hash);
    assert_eq!(hash, Some(AccessHash::full(3_333)));
    Ok(())
}

/// Full replaces full, min replaces min, and an unknown hash keeps either.
pub async fn known_hashes_replace_each_other(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let (a, b) = (user(1), user(2));
    session
        .cache_peers(&[Peer::new(a).with_hash(1), Peer::new(b).with_min_hash(1)])
        .await?;
    session
        .cache_peers(&[Peer::new(a).with_hash(2), Peer::new(b).with_min_hash(2)])
        .await?;
    let found = session.peers(&[a, b]).await?;
    let hashes: Vec<_> = found
        .iter()
        .map(|p| p.as_ref().and_then(|p| p.access_hash))
        .collect();
    assert_eq!(
        hashes,
        vec![Some(AccessHash::full(2)), Some(AccessHash::min(2))]
    );
    session
        .cache_peers(&[Peer::new(a).with_name("x"), Peer::new(b).with_name("y")])
        .await?;
    let found = session.peers(&[a, b]).await?;
    let hashes: Vec<_> = found
        .iter()
        .map(|p| p.as_ref().and_then(|p| p.access_hash))
        .collect();
    assert_eq!(
        hashes,
        vec![Some(AccessHash::full(2)), Some(AccessHash::min(2))]
    );
    Ok(())
}

/// The min rule also holds between occurrences of one id inside one batch.
pub async fn min_hash_rule_within_one_batch(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let (a, b) = (user(1), channel(2));
    session
        .cache_peers(&[
            Peer::new(a).with_hash(10),
            Peer::new(b).with_min_hash(20),
            Peer::new(a).with_min_hash(11),
            Peer::new(b).with_hash(21),
        ])
        .await?;
    let found = session.peers(&[a, b]).await?;
    let hashes: Vec<_> = found
        .iter()
        .map(|p| p.as_ref().and_then(|p| p.access_hash))
        .collect();
    assert_eq!(
        hashes,
        vec![Some(AccessHash::full(10)), Some(AccessHash::full(21))]
    );
    Ok(())
}

/// An empty batch succeeds and changes nothing.
pub async fn batch_of_zero_peers(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    session.cache_peers(&[]).await?;
    assert_eq!(session.peer_count().await?, 0);
    let peer = full_user(1, "one", "1");
    session.cache_peer(&peer).await?;
    session.cache_peers(&[]).await?;
    assert_eq!(session.peer_count().await?, 1);
    assert_eq!(session.peers(&[]).await?, vec![]);
    assert_eq!(
        session.peer(peer.id).await?,
        Some(Peer {
            phone: Some("1".to_owned()),
            ..peer
        })
    );
    Ok(())
}

/// A batch of one peer is stored and answers every lookup.
pub async fn batch_of_one_peer(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let peer = full_user(77, "Single", "+7 700 000 0077");
    session.cache_peers(std::slice::from_ref(&peer)).await?;
    let stored = Peer {
        phone: Some("77000000077".to_owned()),
        ..peer
    };
    assert_eq!(session.peer_count().await?, 1);
    assert_eq!(session.peer(stored.id).await?, Some(stored.clone()));
    assert_eq!(
        session.peer_by_username("single").await?,
        Some(stored.clone())
    );
    assert_eq!(session.peer_by_phone("77000000077").await?, Some(stored));
    Ok(())
}

/// 10 000 peers in one `cache_peers` call are all stored and all found by
/// id (in one lookup), by username and by phone.
pub async fn batch_of_ten_thousand_peers(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let mut rng = Rng::new(10_000);
    let peers: Vec<Peer> = (1..=10_000i64)
        .map(|i| {
            if i % 4 == 0 {
                Peer::new(channel(i))
                    .with_kind(PeerKind::Megagroup)
                    .with_hash(rng.next_i64())
                    .with_username(format!("Bulk_{i}"))
                    .with_name(format!("group {i}"))
            } else {
                Peer::new(user(i))
                    .with_kind(PeerKind::User)
                    .with_hash(rng.next_i64())
                    .with_username(format!("Bulk_{i}"))
                    .with_phone(format!("1555{i:07}"))
            }
        })
        .collect();
    session.cache_peers(&peers).await?;
    assert_eq!(
        session.peer_count().await?,
        10_000,
        "peers lost from a 10 000 batch"
    );
    let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
    let found = session.peers(&ids).await?;
    assert_eq!(found.len(), 10_000);
    for (peer, found) in peers.iter().zip(&found) {
        assert_eq!(found.as_ref(), Some(peer), "peer {} of the batch", peer.id);
    }
    for (i, peer) in (1..).zip(&peers) {
        let by_name = session.peer_by_username(&format!("BULK_{i}")).await?;
        assert_eq!(by_name.map(|p| p.id), Some(peer.id), "username Bulk_{i}");
        if let Some(phone) = &peer.phone {
            let by_phone = session.peer_by_phone(&format!("+{phone}")).await?;
            assert_eq!(by_phone.map(|p| p.id), Some(peer.id), "phone of peer {i}");
        }
    }
    Ok(())
}

/// Repeated ids in one batch merge in order: the last known value of each field wins.
pub async fn duplicate_ids_in_one_batch_merge_in_order(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let id = user(9);
    session
        .cache_peers(&[
            Peer::new(id)
                .with_kind(PeerKind::User)
                .with_name("first")
                .with_hash(10),
            Peer::new(user(10)).with_name("other"),
            Peer::new(id).with_username("dup"),
            Peer::new(id).with_name("last").with_min_hash(20),
        ])
        .await?;
    let expected = Peer::new(id)
        .with_kind(PeerKind::User)
        .with_name("last")
        .with_hash(10)
        .with_username("dup");
    assert_eq!(session.peer(id).await?, Some(expected.clone()));
    assert_eq!(session.peer_count().await?, 2);
    assert_eq!(session.peer_by_username("DUP").await?, Some(expected));
    Ok(())
}

/// Inside one batch a later peer takes a username and phone from an earlier one.
pub async fn ownership_moves_within_one_batch(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let (a, b) = (user(1), user(2));
    session
        .cache_peers(&[
            Peer::new(a).with_username("Same").with_phone("555"),
            Peer::new(b).with_username("same").with_phone("555"),
        ])
        .await?;
    assert_eq!(
        session.peer_by_username("same").await?.map(|p| p.id),
        Some(b)
    );
    assert_eq!(session.peer_by_phone("555").await?.map(|p| p.id), Some(b));
    let old = session.peer(a).await?;
    let old_names = old
        .as_ref()
        .and_then(|p| p.usernames.clone())
        .unwrap_or_default();
    assert!(
        old_names.is_empty(),
        "the earlier owner still lists {old_names:?}"
    );
    assert_eq!(
        old.and_then(|p| p.phone),
        None,
        "the earlier owner kept the phone"
    );
    Ok(())
}

/// `peers` answers in the order asked, `None` for unknown ids, repeats included.
pub async fn lookups_answer_in_the_order_asked(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let known: Vec<Peer> = (1..=3)
        .map(|i| Peer::new(user(i)).with_name(format!("p{i}")))
        .collect();
    session.cache_peers(&known).await?;
    let asked = [
        user(3),
        user(99),
        user(1),
        user(3),
        chat(1),
        user(2),
        channel(1),
    ];
    let found = session.peers(&asked).await?;
    let expected = vec![
        Some(known[2].clone()),
        None,
        Some(known[0].clone()),
        Some(known[2].clone()),
        None,
        Some(known[1].clone()),
        None,
    ];
    assert_eq!(found, expected);
    let many: Vec<PeerId> = (1..=1_000).rev().map(user).collect();
    let found = session.peers(&many).await?;
    assert_eq!(found.len(), 1_000);
    let present: Vec<usize> = (0..)
        .zip(&found)
        .filter(|(_, p)| p.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        present,
        vec![997, 998, 999],
        "known peers at the wrong positions"
    );
    Ok(())
}

/// `peer_count` counts distinct peers of the session only.
pub async fn peer_count_counts_distinct_peers(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let other = store.open("bob").await?;
    let peers: Vec<Peer> = (1..=3).map(|i| Peer::new(user(i)).with_hash(i)).collect();
    session.cache_peers(&peers).await?;
    assert_eq!(session.peer_count().await?, 3);
    let renamed: Vec<Peer> = peers
        .iter()
        .map(|p| p.clone().with_name("renamed"))
        .collect();
    session.cache_peers(&renamed).await?;
    assert_eq!(session.peer_count().await?, 3, "re-caching counted twice");
    session.cache_peer(&Peer::new(chat(1))).await?;
    assert_eq!(session.peer_count().await?, 4);
    assert_eq!(other.peer_count().await?, 0);
    Ok(())
}

/// Lookups in an empty cache, and of malformed usernames or phones, answer `None`.
pub async fn unknown_peers_are_none(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    assert_eq!(session.peer(user(1)).await?, None);
    assert_eq!(session.peer_by_username("nobody").await?, None);
    assert_eq!(session.peer_by_phone("+1 555 0000").await?, None);
    session.cache_peer(&full_user(1, "somebody", "123")).await?;
    assert_eq!(session.peer_by_username("").await?, None);
    assert_eq!(session.peer_by_username("@").await?, None);
    assert_eq!(
        session.peer_by_username("somebod").await?,
        None,
        "prefix must not match"
    );
    assert_eq!(session.peer_by_username("somebody_").await?, None);
    assert_eq!(
        session.peer_by_username("some%").await?,
        None,
        "no LIKE wildcards"
    );
    assert_eq!(
        session.peer_by_username("some*").await?,
        None,
        "no glob wildcards"
    );
    assert_eq!(
        session.peer_by_phone("12").await?,
        None,
        "prefix must not match"
    );
    assert_eq!(session.peer_by_phone("not a phone").await?, None);
    Ok(())
}

/// Display names and usernames up to 1024 bytes, with any Unicode, are exact;
/// longer ones are refused with `InvalidInput`.
pub async fn long_and_unicode_peer_text(ctx: Ctx) -> CaseResult {
    let session = ctx.store().open("alice").await?;
    let long_name = format!("{}a", "€".repeat(341));
    let long_username = format!("{}Z", "ü".repeat(511));
    assert_eq!(
        (long_name.len(), long_username.len()),
        (1_024, 1_023),
        "suite bug"
    );
    let names = [
        long_name.clone(),
        "👩‍👩‍👧‍👦 family".to_owned(),
        "مرحبا بالعالم".to_owned(),
        "e\u{301}te\u{301}".to_owned(),
        "zero\u{200b}width".to_owned(),
        "'; DROP TABLE peers; --".to_owned(),
        String::new(),
    ];
    let peers: Vec<Peer> = (1..)
        .zip(&names)
        .map(|(i, name)| Peer::new(user(i)).with_name(name.clone()))
        .collect();
    session.cache_peers(&peers).await?;
    let ids: Vec<PeerId> = peers.iter().map(|p| p.id).collect();
    assert_eq!(
        session.peers(&ids).await?,
        peers.into_iter().map(Some).collect::<Vec<_>>()
    );
    let with_username = Peer::new(user(100)).with_username(long_username.clone());
    session.cache_peer(&with_username).await?;
    let found = session
        .peer_by_username(&long_username.to_uppercase())
        .await?;
    assert_eq!(found, Some(with_username));
    let too_long = Peer::new(user(101)).with_name("x".repeat(1_025));
    assert_kind(
        session.cache_peer(&too_long).await,
        ErrorKind::InvalidInput,
        "1025-byte name",
    );
    assert_eq!(session.peer(user(101)).await?, None);
    Ok(())
}

/// With `SessionOptions { cache_peers: false }` peer writes are dropped and
/// lookups answer nothing, while every other kind of data is kept.
pub async fn disabled_peer_cache_keeps_other_data(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let options = SessionOptions { cache_peers: false };
    let session = store.open_with("alice", options).await?;
    let peer = full_user(1, "ignored", "123");
    session.cache_peer(&peer).await?;
    assert_eq!(
        session.peer_count().await?,
        0,
        "a peer was cached with caching off"
    );
    assert_eq!(session.peer(peer.id).await?, None);
    assert_eq!(session.peer_by_username("ignored").await?, None);
    assert_eq!(session.peer_by_phone("123").await?, None);
    session
        .set_update_state(UpdateStateChange::Channel { id: 5, pts: 50 })
        .await?;
    session.set_auth_key(2, Some(key(2))).await?;
    let fk = file_key(3, 300, session_core::FileKind::Photo);
    let file = session_core::SentFile {
        id: 3,
        access_hash: 33,
    };
    session.cache_sent_file(&fk, &file).await?;
    assert_eq!(session.update_state().await?.channels.get(&5), Some(&50));
    assert_eq!(session.home_auth_key().await?, Some(key(2)));
    assert_eq!(session.sent_file(&fk).await?, Some(file));
    let data = rich_session(5);
    session.import(&data).await?;
    let expected = session_core::SessionData {
        peers: vec![],
        ..data
    };
    assert_eq!(
        store.export("alice").await?,
        expected,
        "import kept peers with caching off"
    );
    let missing = store.session("absent")?;
    let missing = session_core::Session::new(missing.store().clone(), "absent", options)?;
    assert_kind(
        missing.cache_peer(&peer).await,
        ErrorKind::NotFound,
        "missing session",
    );
    Ok(())
}
