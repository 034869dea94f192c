//! Many tasks writing at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use session_core::{
    AccessHash, ErrorKind, Peer, PeerId, PeerKind, Store, UpdateState, UpdateStateChange,
};

use crate::support::{join_all, rich_session, user, write_by_calls};
use crate::{CaseResult, Ctx};

/// Of 16 tasks creating the same session at once, exactly one succeeds and
/// the others get `AlreadyExists`.
pub async fn concurrent_create_exactly_one_succeeds(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    for round in 0..5 {
        let name = format!("race-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let handles = (0..16)
            .map(|_| {
                let store = store.clone();
                let name = name.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.create(&name).await
                })
            })
            .collect();
        let results = join_all(handles).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{ok} of 16 concurrent creates of {name:?} succeeded");
        for result in results {
            if let Err(e) = result {
                assert_eq!(e.kind(), ErrorKind::AlreadyExists, "losing create: {e}");
            }
        }
    }
    assert_eq!(store.list().await?.len(), 5);
    Ok(())
}

/// 16 tasks × 200 channel-pts writes to different channels: all 3 200 are kept.
pub async fn concurrent_channel_writers_lose_nothing(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    let handles = (0..16i64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 1..=200i32 {
                    let change = UpdateStateChange::Channel {
                        id: task * 1_000 + i64::from(i),
                        pts: i,
                    };
                    store.set_update_state("alice", &change).await?;
                }
                Ok::<(), session_core::Error>(())
            })
        })
        .collect();
    for result in join_all(handles).await {
        result?;
    }
    let channels = store.update_state("alice").await?.channels;
    assert_eq!(
        channels.len(),
        3_200,
        "channel pts lost under concurrent writers"
    );
    for task in 0..16i64 {
        for i in 1..=200i32 {
            assert_eq!(channels.get(&(task * 1_000 + i64::from(i))), Some(&i));
        }
    }
    Ok(())
}

/// Concurrent partial writes to different fields (Primary, Secondary, two
/// channels, home DC, peers) do not overwrite each other with stale values:
/// in each of 100 rounds six tasks write at once, then every write must be there.
pub async fn concurrent_partial_writes_do_not_clobber(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    for i in 1..=100i32 {
        let barrier = Arc::new(tokio::sync::Barrier::new(6));
        let handles = (0..6u8)
            .map(|lane| {
                let (store, barrier) = (store.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let change = match lane {
                        0 => UpdateStateChange::Primary {
                            pts: i,
                            date: i * 2,
                            seq: i * 3,
                        },
                        1 => UpdateStateChange::Secondary { qts: i },
                        2 => UpdateStateChange::Channel { id: 1, pts: i },
                        3 => UpdateStateChange::Channel { id: 2, pts: -i },
                        4 => return store.set_home_dc("alice", 1 + i % 5).await,
                        _ => {
                            let peer = Peer::new(user(i64::from(i))).with_hash(i64::from(i));
                            return store.cache_peers("alice", &[peer]).await;
                        }
                    };
                    store.set_update_state("alice", &change).await
                })
            })
            .collect();
        for result in join_all(handles).await {
            result?;
        }
        let expected = UpdateState {
            pts: i,
            qts: i,
            date: i * 2,
            seq: i * 3,
            channels: [(1, i), (2, -i)].into_iter().collect(),
        };
        let state = store.update_state("alice").await?;
        assert_eq!(
            state, expected,
            "round {i}: a concurrent partial write was lost"
        );
        assert_eq!(
            store.home_dc("alice").await?,
            1 + i % 5,
            "round {i}: home DC"
        );
        let count = store.peer_count("alice").await?;
        assert_eq!(count, u64::from(i.unsigned_abs()), "round {i}: peers");
    }
    Ok(())
}

/// 8 tasks × 10 batches × 50 peers at once: all 4 000 peers and their
/// usernames and phones are kept.
pub async fn concurrent_peer_batches_lose_nothing(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    store.create("alice").await?;
    let handles = (0..8i64)
        .map(|task| {
            let store: Store = store.clone();
            tokio::spawn(async move {
                let session = store.session("alice")?;
                for batch in 0..10i64 {
                    let peers: Vec<Peer> = (0..50i64)
                        .map(|i| {
                            let n = task * 10_000 + batch * 100 + i + 1;
                            Peer::new(user(n))
                                .with_kind(PeerKind::User)
                                .with_hash(n)
                                .with_username(format!("c{n}"))
                                .with_phone(format!("9{n:08}"))
                        })
                        .collect();
                    session.cache_peers(&peers).await?;
                }
                Ok::<(), session_core::Error>(())
            })
        })
        .collect();
    for result in join_all(handles).await {
        result?;
    }
    assert_eq!(
        store.peer_count("alice").await?,
        4_000,
        "peers lost under concurrent batches"
    );
    let session = store.session("alice")?;
    let ids: Vec<PeerId> = (0..8i64)
        .flat_map(|t| {
            (0..10i64).flat_map(move |b| (0..50i64).map(move |i| t * 10_000 + b * 100 + i + 1))
        })
        .map(user)
        .collect();
    let found = session.peers(&ids).await?;
    for (id, peer) in ids.iter().zip(&found) {
        let hash = peer.as_ref().and_then(|p| p.access_hash);
        assert_eq!(hash, Some(AccessHash::full(id.marked())), "peer {id}");
    }
    for id in ids.iter().step_by(7) {
        let n = id.marked();
        assert_eq!(
            session
                .peer_by_username(&format!("C{n}"))
                .await?
                .map(|p| p.id),
            Some(*id)
        );
        assert_eq!(
            session
                .peer_by_phone(&format!("9{n:08}"))
                .await?
                .map(|p| p.id),
            Some(*id)
        );
    }
    Ok(())
}

/// Eight tasks filling eight sessions at once each end with exactly their own data.
pub async fn concurrent_sessions_stay_separate(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let handles = (0..8u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let session = store.open(&format!("s{i}")).await?;
                write_by_calls(&session, &rich_session(100 + i)).await
            })
        })
        .collect();
    for result in join_all(handles).await {
        result?;
    }
    let names: BTreeSet<String> = store.list().await?.into_iter().collect();
    assert_eq!(names, (0..8).map(|i| format!("s{i}")).collect());
    for i in 0..8u64 {
        assert_eq!(
            store.export(&format!("s{i}")).await?,
            rich_session(100 + i),
            "session s{i}"
        );
    }
    Ok(())
}

/// With `atomic_multi_key_writes`, readers racing repeated imports of two
/// versions see one version or the other in every single read, never a mix
/// or an empty session.
pub async fn import_is_atomic_for_readers(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let a = rich_session(1);
    let mut b = rich_session(2);
    b.peers.truncate(3);
    store.import("alice", &a).await?;
    let ids: Vec<PeerId> = a.peers.iter().chain(&b.peers).map(|p| p.id).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, a, b, stop) = (store.clone(), a.clone(), b.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            for round in 0..60 {
                let data = if round % 2 == 0 { &b } else { &a };
                store.import("alice", data).await?;
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), session_core::Error>(())
        })
    };
    let reader = {
        let (store, a, b, stop) = (store.clone(), a.clone(), b.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let expect_a: Vec<bool> = ids
                .iter()
                .map(|id| a.peers.iter().any(|p| p.id == *id))
                .collect();
            let expect_b: Vec<bool> = ids
                .iter()
                .map(|id| b.peers.iter().any(|p| p.id == *id))
                .collect();
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || reads < 10 {
                let present: Vec<bool> = store
                    .peers("alice", &ids)
                    .await?
                    .iter()
                    .map(Option::is_some)
                    .collect();
                assert!(
                    present == expect_a || present == expect_b,
                    "peers() saw a mix: {present:?}"
                );
                let state = store.update_state("alice").await?;
                assert!(
                    state == a.update_state || state == b.update_state,
                    "update_state() saw a mix of two imports"
                );
                let count = store.peer_count("alice").await?;
                assert!(
                    count == 6 || count == 3,
                    "peer_count() saw {count} peers mid-import"
                );
                reads += 1;
            }
            Ok::<(), session_core::Error>(())
        })
    };
    for result in join_all(vec![writer, reader]).await {
        result?;
    }
    Ok(())
}

/// With `atomic_multi_key_writes`, a username moving back and forth between
/// two peers always has exactly one owner, which lists it.
pub async fn username_moves_are_atomic_for_readers(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    let session = store.open("alice").await?;
    let (a, b) = (user(1), user(2));
    session
        .cache_peers(&[
            Peer::new(a).with_username("hot"),
            Peer::new(b).with_username("cold"),
        ])
        .await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (session, stop) = (session.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            for round in 0..200 {
                let (taker, other) = if round % 2 == 0 { (b, a) } else { (a, b) };
                session
                    .cache_peers(&[
                        Peer::new(taker).with_username("hot"),
                        Peer::new(other).with_username("cold"),
                    ])
                    .await?;
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), session_core::Error>(())
        })
    };
    let reader = {
        let (session, stop) = (session.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || reads < 10 {
                let owner = session.peer_by_username("hot").await?;
                let Some(owner) = owner else {
                    panic!("no peer owned \"hot\" in the middle of a move");
                };
                let names = owner.usernames.clone().unwrap_or_default();
                assert_eq!(
                    names,
                    vec!["hot".to_owned()],
                    "the owner of \"hot\" lists {names:?}"
                );
                reads += 1;
            }
            Ok::<(), session_core::Error>(())
        })
    };
    for result in join_all(vec![writer, reader]).await {
        result?;
    }
    Ok(())
}
