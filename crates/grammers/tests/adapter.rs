//! What `GrammersSession` answers, call by call: grammers' own session test
//! run unchanged against it, the semantics grammers expects (cache,
//! write-through, defaults, known DCs, `extend_info` merges, the self user,
//! partial update-state writes, monoforum ids, communities), the deliberate
//! differences from `MemorySession`, errors and leases.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use grammers_session::types::{
    ChannelKind, ChannelState, DcOption as GDc, PeerAuth, PeerId as GPeerId, PeerInfo,
    UpdateState as GWrite, UpdatesState,
};
use grammers_session::{Session as _, SessionData};
use session_core::model::production_dcs;
use session_core::{
    AccessHash, AuthKey, DcOption, ErrorKind, MemoryStore, Peer, PeerId, PeerKind, SelfUser,
    Session, Store, UpdateStateChange,
};
use session_grammers::GrammersSession;

const MONOFORUM_BASE: i64 = 1_002_147_483_649;

async fn fresh() -> (Session, GrammersSession) {
    let store = Store::new(MemoryStore::new());
    let session = store.open("grammers").await.expect("open session");
    let adapter = GrammersSession::open(session.clone())
        .await
        .expect("open adapter");
    (session, adapter)
}

fn user(id: i64, hash: Option<i64>, bot: Option<bool>, is_self: Option<bool>) -> PeerInfo {
    PeerInfo::User {
        id,
        auth: hash.map(PeerAuth::from_hash),
        bot,
        is_self,
    }
}

fn channel(id: i64, hash: Option<i64>, kind: Option<ChannelKind>) -> PeerInfo {
    PeerInfo::Channel {
        id,
        auth: hash.map(PeerAuth::from_hash),
        kind,
    }
}

fn known(id: i32) -> GDc {
    SessionData::default()
        .dc_options
        .remove(&id)
        .expect("a known DC")
}

fn key(seed: u8) -> [u8; 256] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
}

/// grammers-session 0.11's `exercise_sqlite_session` (src/storages/sqlite.rs),
/// call for call, with the adapter in place of `SqliteSession`.
#[tokio::test]
async fn grammers_own_session_test_passes_against_the_adapter() {
    let (_, session) = fresh().await;
    const DEFAULT_DC: i32 = 2;
    let known_dcs: Vec<GDc> = (1..=5).map(known).collect();

    assert_eq!(session.home_dc_id().expect("succeeds"), DEFAULT_DC);
    session
        .set_home_dc_id(DEFAULT_DC + 1)
        .await
        .expect("succeeds");
    assert_eq!(session.home_dc_id().expect("succeeds"), DEFAULT_DC + 1);

    assert_eq!(
        session.dc_option(known_dcs[0].id).expect("succeeds"),
        Some(known_dcs[0].clone())
    );
    let new_dc_option = GDc {
        id: known_dcs.iter().map(|dc| dc.id).max().expect("succeeds") + 1,
        ipv4: SocketAddrV4::new(Ipv4Addr::from_bits(0), 1),
        ipv6: SocketAddrV6::new(Ipv6Addr::from_bits(0), 1, 0, 0),
        auth_key: Some([1; 256]),
    };
    assert_eq!(session.dc_option(new_dc_option.id).expect("succeeds"), None);
    session
        .set_dc_option(&new_dc_option)
        .await
        .expect("succeeds");
    assert_eq!(
        session.dc_option(new_dc_option.id).expect("succeeds"),
        Some(new_dc_option)
    );

    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        None
    );
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(1))
            .await
            .expect("succeeds"),
        None
    );
    let peer = user(1, None, Some(true), Some(true));
    session.cache_peer(peer.clone()).await.expect("succeeds");
    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        Some(peer.clone())
    );
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(1))
            .await
            .expect("succeeds"),
        Some(peer)
    );

    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(1))
            .await
            .expect("succeeds"),
        None
    );
    let peer = channel(1, Some(-1), Some(ChannelKind::Broadcast));
    session.cache_peer(peer.clone()).await.expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(1))
            .await
            .expect("succeeds"),
        Some(peer)
    );

    let peers = vec![
        channel(2, Some(-2), Some(ChannelKind::Megagroup)),
        channel(3, Some(-3), None),
    ];
    session.cache_peers(peers.clone()).await.expect("succeeds");
    for peer in peers.iter() {
        assert_eq!(
            session.peer(peer.id()).await.expect("succeeds").as_ref(),
            Some(peer)
        );
    }

    // If the inserted peer is going to be updated with some fields changed
    // from `Some` to `None`, the old `Some` is expected to be kept.
    let new_inserted_peers = vec![
        channel(2, None, Some(ChannelKind::Broadcast)),
        channel(3, Some(-30), None),
    ];
    session
        .cache_peers(new_inserted_peers)
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(2))
            .await
            .expect("succeeds"),
        Some(channel(2, Some(-2), Some(ChannelKind::Broadcast)))
    );
    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(3))
            .await
            .expect("succeeds"),
        Some(channel(3, Some(-30), None))
    );

    assert_eq!(
        session.updates_state().await.expect("succeeds"),
        UpdatesState::default()
    );
    session
        .set_update_state(GWrite::All(UpdatesState {
            pts: 1,
            qts: 2,
            date: 3,
            seq: 4,
            channels: vec![
                ChannelState { id: 5, pts: 6 },
                ChannelState { id: 7, pts: 8 },
            ],
        }))
        .await
        .expect("succeeds");
    session
        .set_update_state(GWrite::Primary {
            pts: 2,
            date: 4,
            seq: 5,
        })
        .await
        .expect("succeeds");
    session
        .set_update_state(GWrite::Secondary { qts: 3 })
        .await
        .expect("succeeds");
    session
        .set_update_state(GWrite::Channel { id: 7, pts: 9 })
        .await
        .expect("succeeds");
    assert_eq!(
        session.updates_state().await.expect("succeeds"),
        UpdatesState {
            pts: 2,
            qts: 3,
            date: 4,
            seq: 5,
            channels: vec![
                ChannelState { id: 5, pts: 6 },
                ChannelState { id: 7, pts: 9 },
            ],
        }
    );
}

#[tokio::test]
async fn a_fresh_store_answers_as_session_data_default() {
    let (_, session) = fresh().await;
    let default = SessionData::default();
    assert_eq!(session.home_dc_id().expect("succeeds"), default.home_dc);
    for id in -1..=210 {
        assert_eq!(
            session.dc_option(id).expect("succeeds"),
            default.dc_options.get(&id).cloned(),
            "DC {id}"
        );
    }
    assert_eq!(
        session.updates_state().await.expect("succeeds"),
        default.updates_state
    );
    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        None
    );
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(7))
            .await
            .expect("succeeds"),
        None
    );
}

#[test]
fn the_known_dc_table_is_grammers_own() {
    let ours: Vec<GDc> = session_formats::file::grammers_known_dcs()
        .iter()
        .map(|dc| GDc {
            id: dc.id,
            ipv4: dc.ipv4.expect("ipv4"),
            ipv6: dc.ipv6.expect("ipv6"),
            auth_key: None,
        })
        .collect();
    let mut theirs: Vec<GDc> = SessionData::default().dc_options.into_values().collect();
    theirs.sort_by_key(|dc| dc.id);
    assert_eq!(ours, theirs);
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)
}

fn v6(segments: [u16; 8], port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::from(segments), port, 0, 0)
}

#[tokio::test]
async fn a_stored_dc_missing_an_address_family_gets_it() {
    let store = Store::new(MemoryStore::new());
    let mut data = session_core::SessionData {
        dcs: vec![
            // Known DCs: the missing family comes from grammers' known list.
            DcOption {
                auth_key: Some(AuthKey::new(key(2))),
                ..DcOption::new(2, Some(v4(149, 154, 167, 51, 443)), None)
            },
            DcOption::new(
                4,
                None,
                Some(v6([0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xb], 443)),
            ),
            // Unknown DCs: IPv6 mapped from IPv4, IPv4 from a mapped IPv6.
            DcOption::new(300, Some(v4(10, 0, 0, 1, 8443)), None),
            DcOption::new(
                301,
                None,
                Some(SocketAddrV6::new(
                    Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped(),
                    80,
                    0,
                    0,
                )),
            ),
            DcOption::new(302, None, Some(v6([0x2a0a, 0, 0, 0, 0, 0, 0, 1], 443))),
            DcOption::new(303, None, None),
        ],
        ..session_core::SessionData::default()
    };
    data.canonicalize();
    store.import("s", &data).await.expect("import");
    let session = GrammersSession::open(store.session("s").expect("name"))
        .await
        .expect("open");
    assert_eq!(
        session.dc_option(2).expect("succeeds"),
        Some(GDc {
            id: 2,
            ipv4: v4(149, 154, 167, 51, 443),
            ipv6: known(2).ipv6,
            auth_key: Some(key(2)),
        })
    );
    assert_eq!(
        session.dc_option(4).expect("succeeds"),
        Some(GDc {
            id: 4,
            ipv4: known(4).ipv4,
            ipv6: v6([0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xb], 443),
            auth_key: None,
        })
    );
    assert_eq!(
        session.dc_option(300).expect("succeeds"),
        Some(GDc {
            id: 300,
            ipv4: v4(10, 0, 0, 1, 8443),
            ipv6: SocketAddrV6::new(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped(), 8443, 0, 0),
            auth_key: None,
        })
    );
    assert_eq!(
        session.dc_option(301).expect("succeeds").map(|dc| dc.ipv4),
        Some(v4(10, 0, 0, 2, 80))
    );
    // Without an IPv4 address grammers cannot use the DC: not known.
    assert_eq!(session.dc_option(302).expect("succeeds"), None);
    assert_eq!(session.dc_option(303).expect("succeeds"), None);
    // DCs 1, 3 and 5 are not stored: grammers' known ones, as its sessions answer.
    for id in [1, 3, 5] {
        assert_eq!(
            session.dc_option(id).expect("succeeds"),
            Some(known(id)),
            "DC {id}"
        );
    }
}

#[tokio::test]
async fn in_test_mode_production_addresses_are_never_filled_in() {
    let store = Store::new(MemoryStore::new());
    let data = session_core::SessionData {
        test_mode: true,
        dcs: vec![DcOption::new(2, Some(v4(149, 154, 167, 40, 80)), None)],
        ..session_core::SessionData::default()
    };
    store.import("t", &data).await.expect("import");
    let session = GrammersSession::open(store.session("t").expect("name"))
        .await
        .expect("open");
    assert_eq!(
        session.dc_option(2).expect("succeeds"),
        Some(GDc {
            id: 2,
            ipv4: v4(149, 154, 167, 40, 80),
            ipv6: SocketAddrV6::new(Ipv4Addr::new(149, 154, 167, 40).to_ipv6_mapped(), 80, 0, 0),
            auth_key: None,
        })
    );
    assert_eq!(session.dc_option(1).expect("succeeds"), None);
}

/// Deliberate difference: a DC stored exactly as mtsession's fresh-session
/// default (no key) is answered as grammers' known DC, so a fresh store
/// answers `SessionData::default()`; `MemorySession` would answer the
/// stored addresses.
#[tokio::test]
async fn an_untouched_mtsession_default_dc_is_answered_as_grammers_known_dc() {
    let (stored, session) = fresh().await;
    let mtsession_default = production_dcs()
        .into_iter()
        .find(|dc| dc.id == 2)
        .expect("DC 2");
    assert_ne!(
        mtsession_default.ipv4,
        Some(known(2).ipv4),
        "the tables differ"
    );
    assert_eq!(
        stored.dc_option(2).await.expect("stored"),
        Some(mtsession_default.clone())
    );
    assert_eq!(session.dc_option(2).expect("succeeds"), Some(known(2)));
    // Setting those addresses explicitly (without a key) reads back the same way.
    session
        .set_dc_option(&GDc {
            id: 2,
            ipv4: mtsession_default.ipv4.expect("v4"),
            ipv6: mtsession_default.ipv6.expect("v6"),
            auth_key: None,
        })
        .await
        .expect("succeeds");
    assert_eq!(session.dc_option(2).expect("succeeds"), Some(known(2)));
    // With a key the stored addresses are answered as they are.
    let keyed = GDc {
        id: 2,
        ipv4: mtsession_default.ipv4.expect("v4"),
        ipv6: mtsession_default.ipv6.expect("v6"),
        auth_key: Some(key(9)),
    };
    session.set_dc_option(&keyed).await.expect("succeeds");
    assert_eq!(session.dc_option(2).expect("succeeds"), Some(keyed));
}

#[tokio::test]
async fn setters_write_through_and_a_rejected_write_changes_nothing() {
    let (stored, session) = fresh().await;
    session.set_home_dc_id(4).await.expect("succeeds");
    assert_eq!(stored.home_dc().await.expect("succeeds"), 4);
    let dc = GDc {
        id: 4,
        auth_key: Some(key(4)),
        ..known(4)
    };
    session.set_dc_option(&dc).await.expect("succeeds");
    let in_store = stored
        .dc_option(4)
        .await
        .expect("succeeds")
        .expect("DC 4 stored");
    assert_eq!(
        in_store.auth_key.as_ref().map(|k| *k.expose()),
        Some(key(4))
    );
    assert_eq!(in_store.ipv4, Some(known(4).ipv4));
    assert_eq!(in_store.ipv6, Some(known(4).ipv6));

    // A second adapter over the same session starts from what was written.
    let again = GrammersSession::open(stored.clone())
        .await
        .expect("succeeds");
    assert_eq!(again.home_dc_id().expect("succeeds"), 4);
    assert_eq!(again.dc_option(4).expect("succeeds"), Some(dc.clone()));

    // DC ids outside 1..=32767 are refused before anything is stored or cached.
    for bad in [0, -1, 40_000] {
        let e = session.set_home_dc_id(bad).await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.operation(), "set_home_dc_id");
        assert_eq!(session.home_dc_id().expect("succeeds"), 4);
        let e = session
            .set_dc_option(&GDc {
                id: bad,
                ..known(1)
            })
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(session.dc_option(bad).expect("succeeds"), None);
    }
    assert_eq!(stored.home_dc().await.expect("succeeds"), 4);
}

#[tokio::test]
async fn cache_peers_is_one_batch_per_call() {
    let (backend, store) = common::counting_memory();
    let session = store.open("s").await.expect("succeeds");
    let adapter = GrammersSession::open(session).await.expect("succeeds");
    backend.take();
    let peers: Vec<PeerInfo> = (1..=200)
        .map(|i| match i % 3 {
            0 => user(i, Some(i * 7), Some(false), Some(false)),
            1 => channel(i, Some(-i), Some(ChannelKind::Megagroup)),
            _ => PeerInfo::Chat { id: i },
        })
        .collect();
    adapter.cache_peers(peers).await.expect("succeeds");
    let calls = backend.take();
    assert_eq!(calls.get("cache_peers"), Some(&1), "{calls:?}");
    assert_eq!(calls.values().sum::<usize>(), 1, "{calls:?}");

    // A batch that logs a user in: the batch plus one header write.
    adapter
        .cache_peers(vec![
            user(500, Some(1), Some(false), Some(true)),
            user(501, Some(2), Some(true), Some(false)),
        ])
        .await
        .expect("succeeds");
    let calls = backend.take();
    assert_eq!(calls.get("cache_peers"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("write_header"), Some(&1), "{calls:?}");
    assert_eq!(calls.values().sum::<usize>(), 2, "{calls:?}");

    // cache_peer is a batch of one; home_dc_id and dc_option never reach the store.
    adapter
        .cache_peer(PeerInfo::Chat { id: 9 })
        .await
        .expect("succeeds");
    for _ in 0..100 {
        adapter.home_dc_id().expect("succeeds");
        adapter.dc_option(2).expect("succeeds");
    }
    let calls = backend.take();
    assert_eq!(calls.get("cache_peers"), Some(&1), "{calls:?}");
    assert_eq!(calls.values().sum::<usize>(), 1, "{calls:?}");
}

#[tokio::test]
async fn merges_keep_known_values_like_extend_info() {
    let (stored, session) = fresh().await;
    session
        .cache_peer(user(10, Some(100), Some(true), Some(false)))
        .await
        .expect("succeeds");
    session
        .cache_peer(user(10, None, None, None))
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(10))
            .await
            .expect("succeeds"),
        Some(user(10, Some(100), Some(true), Some(false)))
    );
    session
        .cache_peer(user(10, Some(101), Some(false), Some(false)))
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(10))
            .await
            .expect("succeeds"),
        Some(user(10, Some(101), Some(false), Some(false)))
    );
    // Within one batch, later entries extend earlier ones.
    session
        .cache_peers(vec![
            channel(20, Some(5), None),
            channel(20, None, Some(ChannelKind::Gigagroup)),
            channel(20, None, None),
        ])
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(20))
            .await
            .expect("succeeds"),
        Some(channel(20, Some(5), Some(ChannelKind::Gigagroup)))
    );
    // What grammers does not know (usernames, phone, name) is never touched.
    let id = PeerId::user(10).expect("succeeds");
    stored
        .cache_peer(
            &Peer::new(id)
                .with_username("Alice")
                .with_phone("+1 555 0100")
                .with_name("Alice A."),
        )
        .await
        .expect("succeeds");
    session
        .cache_peer(user(10, Some(102), Some(false), Some(false)))
        .await
        .expect("succeeds");
    let peer = stored.peer(id).await.expect("succeeds").expect("stored");
    assert_eq!(peer.usernames, Some(vec!["Alice".to_owned()]));
    assert_eq!(peer.phone.as_deref(), Some("15550100"));
    assert_eq!(peer.name.as_deref(), Some("Alice A."));
    assert_eq!(peer.access_hash, Some(AccessHash::full(102)));
    assert_eq!(
        stored
            .peer_by_username("@alice")
            .await
            .expect("succeeds")
            .map(|p| p.id),
        Some(id)
    );
}

/// Deliberate difference: `peer(PeerId::self_user())` answers the logged-in
/// user (grammers' `MemorySession` always answers `None`; its `SqliteSession`
/// answers like this adapter).
#[tokio::test]
async fn the_self_user_is_found_and_there_is_only_one() {
    let (stored, session) = fresh().await;
    let me = user(42, Some(4_242), Some(false), Some(true));
    session.cache_peer(me.clone()).await.expect("succeeds");
    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        Some(me)
    );
    assert_eq!(
        stored.self_user().await.expect("succeeds"),
        Some(SelfUser {
            id: 42,
            is_bot: false
        })
    );
    assert_eq!(
        stored
            .peer(PeerId::user(42).expect("succeeds"))
            .await
            .expect("succeeds")
            .and_then(|p| p.kind),
        Some(PeerKind::SelfUser)
    );
    let peer_ref = session
        .peer_ref(GPeerId::self_user())
        .await
        .expect("succeeds")
        .expect("a ref");
    assert_eq!(peer_ref.auth, PeerAuth::from_hash(4_242));

    // Logging in as a bot account replaces the logged-in user: the previous
    // one keeps its data but is no longer `is_self` (MemorySession would keep
    // both marked as self).
    let bot = user(43, Some(4_343), Some(true), Some(true));
    session.cache_peer(bot.clone()).await.expect("succeeds");
    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        Some(bot)
    );
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(42))
            .await
            .expect("succeeds"),
        Some(user(42, Some(4_242), Some(false), Some(false)))
    );
    assert_eq!(
        stored.self_user().await.expect("succeeds"),
        Some(SelfUser {
            id: 43,
            is_bot: true
        })
    );

    // Two self users in one batch: the later one is the logged-in one.
    session
        .cache_peers(vec![
            user(44, Some(1), Some(false), Some(true)),
            user(45, Some(2), Some(false), Some(true)),
        ])
        .await
        .expect("succeeds");
    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        Some(user(45, Some(2), Some(false), Some(true)))
    );
    for id in [43, 44] {
        let answer = session
            .peer(GPeerId::user_unchecked(id))
            .await
            .expect("succeeds");
        assert!(
            matches!(
                answer,
                Some(PeerInfo::User {
                    is_self: Some(false),
                    ..
                })
            ),
            "{id}: {answer:?}"
        );
    }

    // The logged-in user seen as not self: nobody is logged in.
    session
        .cache_peer(user(45, None, Some(false), Some(false)))
        .await
        .expect("succeeds");
    assert_eq!(
        session.peer(GPeerId::self_user()).await.expect("succeeds"),
        None
    );
    assert_eq!(stored.self_user().await.expect("succeeds"), None);

    // The logged-in user survives reopening.
    session
        .cache_peer(user(46, Some(3), Some(true), Some(true)))
        .await
        .expect("succeeds");
    let again = GrammersSession::open(stored.clone())
        .await
        .expect("succeeds");
    assert_eq!(
        again.peer(GPeerId::self_user()).await.expect("succeeds"),
        Some(user(46, Some(3), Some(true), Some(true)))
    );
}

/// A session converted from Telethon or Pyrogram records who is logged in
/// (and may have no peer row for them): grammers sees that user.
#[tokio::test]
async fn a_logged_in_user_recorded_by_another_library_is_seen() {
    let store = Store::new(MemoryStore::new());
    let session = store.open("converted").await.expect("succeeds");
    session
        .set_self_user(Some(SelfUser {
            id: 77,
            is_bot: true,
        }))
        .await
        .expect("succeeds");
    let adapter = GrammersSession::open(session.clone())
        .await
        .expect("succeeds");
    assert_eq!(
        adapter.peer(GPeerId::self_user()).await.expect("succeeds"),
        Some(user(77, None, Some(true), Some(true)))
    );
    assert_eq!(
        adapter
            .peer(GPeerId::user_unchecked(77))
            .await
            .expect("succeeds"),
        Some(user(77, None, Some(true), Some(true)))
    );
    session
        .cache_peer(
            &Peer::new(PeerId::user(77).expect("succeeds"))
                .with_kind(PeerKind::SelfUser)
                .with_hash(7),
        )
        .await
        .expect("succeeds");
    assert_eq!(
        adapter
            .peer(GPeerId::user_unchecked(77))
            .await
            .expect("succeeds"),
        Some(user(77, Some(7), Some(true), Some(true)))
    );
}

#[tokio::test]
async fn every_update_state_write_is_a_partial_write() {
    let (stored, session) = fresh().await;
    session
        .set_update_state(GWrite::All(UpdatesState {
            pts: 10,
            qts: 20,
            date: 30,
            seq: 40,
            channels: vec![
                ChannelState { id: 9, pts: 1 },
                ChannelState { id: 3, pts: 2 },
                ChannelState { id: 9, pts: 3 },
            ],
        }))
        .await
        .expect("succeeds");
    let state = stored.update_state().await.expect("succeeds");
    assert_eq!(
        (state.pts, state.qts, state.date, state.seq),
        (10, 20, 30, 40)
    );
    // Of two entries for one channel, the later one wins.
    assert_eq!(
        state.channels.into_iter().collect::<Vec<_>>(),
        [(3, 2), (9, 3)]
    );

    // Another writer's channel is kept by grammers' partial writes.
    stored
        .set_update_state(UpdateStateChange::Channel { id: 100, pts: 5 })
        .await
        .expect("succeeds");
    session
        .set_update_state(GWrite::Primary {
            pts: 11,
            date: 31,
            seq: 41,
        })
        .await
        .expect("succeeds");
    session
        .set_update_state(GWrite::Secondary { qts: 21 })
        .await
        .expect("succeeds");
    session
        .set_update_state(GWrite::Channel { id: 3, pts: 4 })
        .await
        .expect("succeeds");
    assert_eq!(
        session.updates_state().await.expect("succeeds"),
        UpdatesState {
            pts: 11,
            qts: 21,
            date: 31,
            seq: 41,
            channels: vec![
                ChannelState { id: 3, pts: 4 },
                ChannelState { id: 9, pts: 3 },
                ChannelState { id: 100, pts: 5 },
            ],
        }
    );
    // `All` replaces the channel table.
    session
        .set_update_state(GWrite::All(UpdatesState::default()))
        .await
        .expect("succeeds");
    assert_eq!(
        stored.update_state().await.expect("succeeds"),
        Default::default()
    );

    for bad in [0, -5] {
        let e = session
            .set_update_state(GWrite::Channel { id: bad, pts: 1 })
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}

#[tokio::test]
async fn concurrent_channel_writes_are_all_kept() {
    let (_, session) = fresh().await;
    let session = Arc::new(session);
    let mut tasks = Vec::new();
    for id in 1..=50 {
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            session
                .set_update_state(GWrite::Channel {
                    id,
                    pts: id as i32 * 2,
                })
                .await
                .expect("succeeds");
            session
                .cache_peer(channel(id, Some(id), Some(ChannelKind::Broadcast)))
                .await
                .expect("succeeds");
        }));
    }
    for task in tasks {
        task.await.expect("succeeds");
    }
    let state = session.updates_state().await.expect("succeeds");
    assert_eq!(state.channels.len(), 50);
    for id in 1..=50 {
        assert_eq!(
            session
                .peer(GPeerId::channel_unchecked(id))
                .await
                .expect("succeeds"),
            Some(channel(id, Some(id), Some(ChannelKind::Broadcast)))
        );
    }
}

#[tokio::test]
async fn monoforum_ids_and_communities_round_trip() {
    let (stored, session) = fresh().await;
    let monoforum = MONOFORUM_BASE + 41;
    let top = 3_000_000_000_000;
    let peers = vec![
        channel(monoforum, Some(-9), Some(ChannelKind::Megagroup)),
        channel(top, Some(9), None),
        channel(77, Some(1), Some(ChannelKind::Community)),
    ];
    session.cache_peers(peers.clone()).await.expect("succeeds");
    for peer in &peers {
        assert_eq!(
            session.peer(peer.id()).await.expect("succeeds").as_ref(),
            Some(peer)
        );
    }
    let marked = GPeerId::channel(monoforum)
        .and_then(GPeerId::bot_api_dialog_id)
        .expect("succeeds");
    assert_eq!(marked, -(1_000_000_000_000 + monoforum));
    let stored_monoforum = stored
        .peer(PeerId::from_marked(marked).expect("succeeds"))
        .await
        .expect("succeeds")
        .expect("stored");
    assert_eq!(stored_monoforum.id.bare(), monoforum);
    assert_eq!(
        stored
            .peer(PeerId::channel(77).expect("succeeds"))
            .await
            .expect("succeeds")
            .and_then(|p| p.kind),
        Some(PeerKind::Community)
    );
    // An mtsession monoforum (kurigram's `direct`) is a channel of unknown
    // kind to grammers, which has no such kind.
    stored
        .cache_peer(
            &Peer::new(PeerId::channel(monoforum + 1).expect("succeeds"))
                .with_kind(PeerKind::Monoforum)
                .with_hash(5),
        )
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(monoforum + 1))
            .await
            .expect("succeeds"),
        Some(channel(monoforum + 1, Some(5), None))
    );
}

#[tokio::test]
async fn peers_from_other_libraries_read_as_grammers_would_build_them() {
    let (stored, session) = fresh().await;
    stored
        .cache_peers(&[
            Peer::new(PeerId::user(1).expect("succeeds")).with_min_hash(11),
            Peer::new(PeerId::user(2).expect("succeeds"))
                .with_kind(PeerKind::Bot)
                .with_hash(22),
            Peer::new(PeerId::chat(3).expect("succeeds")).with_kind(PeerKind::Chat),
            Peer::new(PeerId::channel(4).expect("succeeds"))
                .with_kind(PeerKind::Megagroup)
                .with_min_hash(44),
            Peer::new(PeerId::user(5).expect("succeeds")).with_username("five"),
        ])
        .await
        .expect("succeeds");
    // A min hash is no authority grammers can use: it reads as none.
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(1))
            .await
            .expect("succeeds"),
        Some(user(1, None, None, None))
    );
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(2))
            .await
            .expect("succeeds"),
        Some(user(2, Some(22), Some(true), Some(false)))
    );
    assert_eq!(
        session
            .peer(GPeerId::chat_unchecked(3))
            .await
            .expect("succeeds"),
        Some(PeerInfo::Chat { id: 3 })
    );
    assert_eq!(
        session
            .peer(GPeerId::channel_unchecked(4))
            .await
            .expect("succeeds"),
        Some(channel(4, None, Some(ChannelKind::Megagroup)))
    );
    assert_eq!(
        session
            .peer_ref(GPeerId::channel_unchecked(4))
            .await
            .expect("succeeds"),
        None
    );
    // A full hash from grammers replaces the min one.
    session
        .cache_peer(channel(4, Some(45), None))
        .await
        .expect("succeeds");
    assert_eq!(
        stored
            .peer(PeerId::channel(4).expect("succeeds"))
            .await
            .expect("succeeds")
            .and_then(|p| p.access_hash),
        Some(AccessHash::full(45))
    );
}

/// Documented loss: grammers' `bot` and `is_self` are stored as one kind, so
/// a pair with one side unknown (grammers itself never builds one: a user
/// from Telegram has both, an empty user neither) reads back completed or
/// dropped.
#[tokio::test]
async fn half_known_user_pairs_are_completed_or_dropped() {
    let (_, session) = fresh().await;
    session
        .cache_peer(user(1, Some(1), Some(false), None))
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(1))
            .await
            .expect("succeeds"),
        Some(user(1, Some(1), Some(false), Some(false)))
    );
    session
        .cache_peer(user(2, Some(2), None, Some(false)))
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(2))
            .await
            .expect("succeeds"),
        Some(user(2, Some(2), None, None))
    );
    session
        .cache_peer(user(3, Some(3), None, Some(true)))
        .await
        .expect("succeeds");
    assert_eq!(
        session
            .peer(GPeerId::user_unchecked(3))
            .await
            .expect("succeeds"),
        Some(user(3, Some(3), Some(false), Some(true)))
    );
}

#[tokio::test]
async fn a_batch_with_an_invalid_peer_writes_nothing() {
    let (stored, session) = fresh().await;
    let e = session
        .cache_peers(vec![channel(1, Some(1), None), PeerInfo::Chat { id: 0 }])
        .await
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(e.operation(), "cache_peers");
    assert_eq!(stored.peer_count().await.expect("succeeds"), 0);
    // Built by hand, a PeerInfo can hold ids grammers' own constructors refuse.
    for bad in [user(0, None, None, None), channel(-3, None, None)] {
        let e = session.cache_peer(bad).await.expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
    assert_eq!(stored.peer_count().await.expect("succeeds"), 0);
}

#[tokio::test]
async fn errors_keep_the_mtsession_error_as_their_source() {
    let store = Store::new(MemoryStore::new());
    let e = GrammersSession::open(store.session("missing").expect("succeeds"))
        .await
        .expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.operation(), "open");
    let source = std::error::Error::source(&e).expect("a source");
    assert_eq!(source.to_string(), e.mtsession().to_string());
    assert!(
        e.to_string().contains("session \"missing\" not found"),
        "{e}"
    );

    // Through grammers' erased session (what SenderPool holds) the error is boxed whole.
    let session = store.open("present").await.expect("succeeds");
    let adapter = Arc::new(
        GrammersSession::open(session.clone())
            .await
            .expect("succeeds"),
    );
    let erased = grammers_session::storages::erase(adapter);
    store.delete("present").await.expect("succeeds");
    let e = erased.updates_state().await.expect_err("deleted");
    let ours = e
        .downcast_ref::<session_grammers::Error>()
        .expect("our error type");
    assert_eq!(ours.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn the_lease_keeps_a_second_owner_out_until_released() {
    let store = Store::new(MemoryStore::new());
    let session = store.open("bot").await.expect("succeeds");
    let ttl = Duration::from_millis(300);
    let first = GrammersSession::open_exclusive(session.clone(), "host-a", ttl)
        .await
        .expect("first owner");
    assert!(matches!(first.lease_status(), Some(Ok(ref l)) if l.owner == "host-a"));

    let e = GrammersSession::open_exclusive(session.clone(), "host-b", ttl)
        .await
        .expect_err("held");
    assert_eq!(e.kind(), ErrorKind::LeaseHeld);
    assert_eq!(e.operation(), "open_exclusive");
    match e.mtsession() {
        session_core::Error::LeaseHeld {
            owner, until_ms, ..
        } => {
            assert_eq!(owner, "host-a");
            assert!(*until_ms > session_core::lease::now_ms());
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    assert!(e.to_string().contains("\"host-a\""), "{e}");

    // Renewed in the background: still held well past the first TTL.
    tokio::time::sleep(ttl * 3).await;
    let e = GrammersSession::open_exclusive(session.clone(), "host-b", ttl)
        .await
        .expect_err("still held");
    assert_eq!(e.kind(), ErrorKind::LeaseHeld);

    assert!(first.release_lease().await.expect("succeeds"));
    assert!(first.lease_status().is_none());
    let second = GrammersSession::open_exclusive(session.clone(), "host-b", ttl)
        .await
        .expect("free after release");
    // Dropping the value releases the lease too.
    drop(second);
    let mut third = None;
    for _ in 0..50 {
        match GrammersSession::open_exclusive(session.clone(), "host-c", ttl).await {
            Ok(s) => {
                third = Some(s);
                break;
            }
            Err(e) if e.kind() == ErrorKind::LeaseHeld => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(third.is_some(), "the dropped value's lease was released");
}

#[test]
fn debug_output_shows_no_key_bytes() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("succeeds");
    runtime.block_on(async {
        let (_, session) = fresh().await;
        session
            .set_dc_option(&GDc {
                id: 2,
                auth_key: Some([0xAB; 256]),
                ..known(2)
            })
            .await
            .expect("succeeds");
        let shown = format!("{session:?}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
    });
}

/// Two store handles on one namespace (one SQLite file, one Redis prefix)
/// stand for two processes: the second `open_exclusive` is refused while the
/// first value lives, and what the first wrote is there for the second once
/// the lease is free.
async fn lease_between_two_handles<F: session_conformance::StoreFactory>(factory: F) {
    let namespace = factory.create_namespace().await.expect("namespace");
    let first_store = factory.open(&namespace).await.expect("first store");
    let second_store = factory.open(&namespace).await.expect("second store");
    // Renewed every third of it: a lease lapses only when two renewals in a
    // row are late by more than a second, which a loaded machine's fsync
    // does not reach (at 500 ms it did, once, with every suite running).
    let ttl = Duration::from_millis(1500);
    let first = GrammersSession::open_exclusive(
        first_store.open("bot").await.expect("session"),
        "process-a",
        ttl,
    )
    .await
    .expect("first owner");
    first.set_home_dc_id(4).await.expect("write");
    first
        .set_dc_option(&GDc {
            id: 4,
            auth_key: Some(key(44)),
            ..known(4)
        })
        .await
        .expect("write");

    let second_session = second_store.session("bot").expect("name");
    let e = GrammersSession::open_exclusive(second_session.clone(), "process-b", ttl)
        .await
        .expect_err("held by process-a");
    assert_eq!(e.kind(), ErrorKind::LeaseHeld);
    assert!(e.to_string().contains("process-a"), "{e}");
    // Still held after two TTLs: the first value keeps renewing it.
    tokio::time::sleep(ttl * 2).await;
    let e = GrammersSession::open_exclusive(second_session.clone(), "process-b", ttl)
        .await
        .expect_err("still held");
    assert_eq!(e.kind(), ErrorKind::LeaseHeld);

    assert!(first.release_lease().await.expect("release"));
    let second = GrammersSession::open_exclusive(second_session, "process-b", ttl)
        .await
        .expect("free after release");
    assert_eq!(second.home_dc_id().expect("home"), 4);
    assert_eq!(
        second.dc_option(4).expect("dc").and_then(|dc| dc.auth_key),
        Some(key(44))
    );
    second.release_lease().await.expect("release");
    drop((first, second, first_store, second_store));
    factory
        .drop_namespace(&namespace)
        .await
        .expect("drop namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_exclusive_between_two_handles_on_one_sqlite_file() {
    lease_between_two_handles(common::PathFactory::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_exclusive_between_two_connections_to_redis() {
    let Some(factory) = tokio::task::spawn_blocking(common::RedisFactory::reachable)
        .await
        .expect("probe")
    else {
        return;
    };
    lease_between_two_handles(factory).await;
}
