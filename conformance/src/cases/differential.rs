//! The differential property test: random operation sequences run on the
//! backend and on the in-memory reference (`MemoryStore`), which must give
//! identical answers call by call and identical sessions at the end.
//!
//! This is what proves an engine-native path (a Lua script, a single SQL
//! statement) equal to core's rules: the operations are drawn from a small
//! space of ids, usernames and phones so that merges, `min` hashes and
//! ownership moves collide constantly.

use std::fmt::Debug;

use session_core::{
    AccessHash, DcOption, Error, FileKind, MemoryStore, Peer, PeerId, PeerKind, Result, SelfUser,
    SentFile, SentFileKey, SessionData, Store, UpdateState, UpdateStateChange,
};

use crate::support::{Rng, key, v4};
use crate::{CaseResult, Ctx};

/// Sequences per run, and operations per sequence. Chosen so that a network
/// backend finishes in seconds while every kind of operation runs hundreds of times.
const SEQUENCES: u64 = 6;
const STEPS: usize = 120;
const SESSIONS: [&str; 3] = ["d-a", "d-b", "d-c"];

/// One operation, shown in the failure message.
#[derive(Clone, Debug)]
enum Op {
    Create(&'static str),
    Delete(&'static str),
    Copy(&'static str, &'static str, bool),
    Import(&'static str, SessionData),
    Export(&'static str),
    HomeDc(&'static str, i32),
    DcOption(&'static str, DcOption),
    SelfUser(&'static str, Option<SelfUser>),
    Metadata(&'static str, Option<i32>, bool),
    Takeout(&'static str, Option<i64>),
    UpdateState(&'static str, UpdateStateChange),
    CachePeers(&'static str, Vec<Peer>),
    Peers(&'static str, Vec<PeerId>),
    ByUsername(&'static str, String),
    ByPhone(&'static str, String),
    Count(&'static str),
    CacheFile(&'static str, SentFileKey, SentFile),
    File(&'static str, SentFileKey),
    List,
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[usize::try_from(rng.next_u64() % items.len() as u64).unwrap_or(0)]
}

fn below(rng: &mut Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn small(rng: &mut Rng, n: u64) -> i32 {
    i32::try_from(below(rng, n)).unwrap_or(0)
}

fn peer_id(rng: &mut Rng) -> PeerId {
    let bare = 1 + i64::try_from(below(rng, 4)).unwrap_or(0);
    let made = match below(rng, 6) {
        0 => PeerId::chat(bare),
        1 => PeerId::channel(bare),
        _ => PeerId::user(bare),
    };
    made.unwrap_or_else(|_| PeerId::from_marked(1).unwrap_or_else(|_| unreachable!()))
}

fn username(rng: &mut Rng) -> String {
    let base = format!("u{}", below(rng, 5));
    match below(rng, 3) {
        0 => base.to_uppercase(),
        1 => format!("@{base}"),
        _ => base,
    }
}

fn random_peer(rng: &mut Rng) -> Peer {
    let id = peer_id(rng);
    let mut peer = Peer::new(id);
    let is_chat = id.kind() == session_core::PeerIdKind::Chat;
    if below(rng, 2) == 0 {
        let kinds: Vec<PeerKind> = PeerKind::ALL
            .into_iter()
            .filter(|k| k.id_kind() == id.kind())
            .collect();
        peer.kind = Some(pick(rng, &kinds));
    }
    if !is_chat {
        peer.access_hash = match below(rng, 3) {
            0 => Some(AccessHash::full(i64::try_from(below(rng, 5)).unwrap_or(0))),
            1 => Some(AccessHash::min(i64::try_from(below(rng, 5)).unwrap_or(0))),
            _ => None,
        };
    }
    peer.usernames = match below(rng, 4) {
        0 => None,
        1 => Some(vec![]),
        2 => Some(vec![username(rng)]),
        _ => Some(vec![username(rng), username(rng)]),
    };
    if below(rng, 2) == 0 {
        peer.phone = Some(format!("+7 {}", below(rng, 3)));
    }
    if below(rng, 3) == 0 {
        peer.name = Some(format!("name {}", below(rng, 3)));
    }
    if below(rng, 3) == 0 {
        peer.last_seen = Some(i64::try_from(below(rng, 1_000)).unwrap_or(0));
    }
    peer
}

fn file_key(rng: &mut Rng) -> SentFileKey {
    SentFileKey {
        md5: [u8::try_from(below(rng, 3)).unwrap_or(0); 16],
        size: i64::try_from(below(rng, 2)).unwrap_or(0),
        kind: if below(rng, 2) == 0 {
            FileKind::Photo
        } else {
            FileKind::Document
        },
    }
}

fn random_data(rng: &mut Rng) -> SessionData {
    let mut data = SessionData {
        home_dc: 1 + small(rng, 5),
        ..SessionData::default()
    };
    if below(rng, 2) == 0 {
        data.dcs[0].auth_key = Some(key(below(rng, 100)));
    }
    data.self_user = (below(rng, 2) == 0).then_some(SelfUser {
        id: 1 + i64::try_from(below(rng, 3)).unwrap_or(0),
        is_bot: below(rng, 2) == 0,
    });
    data.api_id = (below(rng, 2) == 0).then_some(small(rng, 99));
    data.update_state.pts = small(rng, 50);
    data.update_state.channels.insert(1, small(rng, 9));
    // Distinct ids, as an import requires; usernames and phones may collide.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..below(rng, 6) {
        let peer = random_peer(rng);
        if seen.insert(peer.id) {
            data.peers.push(peer);
        }
    }
    if below(rng, 2) == 0 {
        data.sent_files.push((
            file_key(rng),
            SentFile {
                id: 1,
                access_hash: 2,
            },
        ));
    }
    data
}

fn random_op(rng: &mut Rng) -> Op {
    let s = pick(rng, &SESSIONS);
    match below(rng, 27) {
        0 | 19 => Op::Create(s),
        1 => Op::Delete(s),
        2 => Op::Copy(s, pick(rng, &SESSIONS), below(rng, 2) == 0),
        3 => Op::Import(s, random_data(rng)),
        4 | 20 => Op::Export(s),
        5 => Op::HomeDc(s, 1 + small(rng, 5)),
        6 => {
            let mut dc = DcOption::new(
                1 + small(rng, 6),
                (below(rng, 2) == 0).then(|| v4(10, 0, 0, 1, 443)),
                None,
            );
            if below(rng, 2) == 0 {
                dc.auth_key = Some(key(below(rng, 100)));
            }
            Op::DcOption(s, dc)
        }
        7 => Op::SelfUser(
            s,
            (below(rng, 2) == 0).then_some(SelfUser {
                id: 1 + i64::try_from(below(rng, 3)).unwrap_or(0),
                is_bot: below(rng, 2) == 0,
            }),
        ),
        8 => Op::Metadata(
            s,
            (below(rng, 2) == 0).then_some(small(rng, 9)),
            below(rng, 2) == 0,
        ),
        9 => Op::Takeout(s, (below(rng, 2) == 0).then_some(rng.next_i64())),
        10 => {
            let change = match below(rng, 5) {
                0 => UpdateStateChange::All(UpdateState {
                    pts: small(rng, 9),
                    qts: small(rng, 9),
                    date: small(rng, 9),
                    seq: small(rng, 9),
                    channels: (1..=i64::from(small(rng, 3)))
                        .map(|id| (id, small(rng, 9)))
                        .collect(),
                }),
                1 => UpdateStateChange::Primary {
                    pts: small(rng, 9),
                    date: small(rng, 9),
                    seq: small(rng, 9),
                },
                2 => UpdateStateChange::Secondary { qts: small(rng, 9) },
                3 => UpdateStateChange::Channel {
                    id: 1 + i64::from(small(rng, 3)),
                    pts: small(rng, 9),
                },
                _ => UpdateStateChange::RemoveChannel {
                    id: 1 + i64::from(small(rng, 3)),
                },
            };
            Op::UpdateState(s, change)
        }
        11..=13 | 21 | 22 => {
            Op::CachePeers(s, (0..below(rng, 6)).map(|_| random_peer(rng)).collect())
        }
        14 | 23 => Op::Peers(s, (0..below(rng, 4)).map(|_| peer_id(rng)).collect()),
        15 | 24 | 25 => Op::ByUsername(s, username(rng)),
        16 | 26 => Op::ByPhone(s, format!("7{}", below(rng, 3))),
        17 => Op::Count(s),
        18 => {
            if below(rng, 2) == 0 {
                Op::CacheFile(
                    s,
                    file_key(rng),
                    SentFile {
                        id: rng.next_i64(),
                        access_hash: rng.next_i64(),
                    },
                )
            } else {
                Op::File(s, file_key(rng))
            }
        }
        _ => Op::List,
    }
}

/// The answer of one operation, comparable between stores: a value's debug
/// form, or the error's kind (messages may differ by backend).
fn answer<T: Debug>(result: Result<T>) -> String {
    match result {
        Ok(value) => format!("Ok({value:?})"),
        Err(Error::NotFound { .. }) => "NotFound".to_owned(),
        Err(e) => format!("Err({})", e.kind()),
    }
}

async fn apply(store: &Store, op: &Op) -> String {
    match op {
        Op::Create(s) => answer(store.create(s).await),
        Op::Delete(s) => answer(store.delete(s).await),
        Op::Copy(from, to, overwrite) => answer(store.copy(from, to, *overwrite).await),
        Op::Import(s, data) => answer(store.import(s, data).await),
        Op::Export(s) => answer(store.export(s).await),
        Op::HomeDc(s, dc) => answer(store.set_home_dc(s, *dc).await),
        Op::DcOption(s, dc) => answer(store.set_dc_option(s, dc).await),
        Op::SelfUser(s, user) => answer(store.set_self_user(s, *user).await),
        Op::Metadata(s, api_id, test) => answer(store.set_metadata(s, *api_id, *test).await),
        Op::Takeout(s, id) => answer(store.set_takeout_id(s, *id).await),
        Op::UpdateState(s, change) => answer(store.set_update_state(s, change).await),
        Op::CachePeers(s, peers) => answer(store.cache_peers(s, peers).await),
        Op::Peers(s, ids) => answer(store.peers(s, ids).await),
        Op::ByUsername(s, name) => answer(store.peer_by_username(s, name).await),
        Op::ByPhone(s, phone) => answer(store.peer_by_phone(s, phone).await),
        Op::Count(s) => answer(store.peer_count(s).await),
        Op::CacheFile(s, key, file) => answer(store.cache_sent_file(s, key, file).await),
        Op::File(s, key) => answer(store.sent_file(s, key).await),
        Op::List => answer(store.list().await.map(|names| {
            names
                .into_iter()
                .filter(|n| SESSIONS.contains(&n.as_str()))
                .collect::<Vec<_>>()
        })),
    }
}

/// Everything the sessions of a run hold, for the final comparison.
async fn snapshot(store: &Store) -> Vec<String> {
    let mut all = Vec::new();
    for session in SESSIONS {
        all.push(answer(store.export(session).await));
        all.push(answer(store.update_state(session).await));
        all.push(answer(store.peer_count(session).await));
        let meta = store
            .metadata(session)
            .await
            .map(|m| (m.api_id, m.test_mode));
        all.push(answer(meta));
    }
    all
}

/// Random operation sequences give the same answers, call by call, on the
/// backend and on `MemoryStore`, and leave the same sessions behind.
pub async fn differential_random_operations_match_the_reference(ctx: Ctx) -> CaseResult {
    let store = ctx.store();
    for seed in 1..=SEQUENCES {
        let reference = Store::new(MemoryStore::new());
        for session in SESSIONS {
            store.delete(session).await?;
        }
        let mut rng = Rng::new(0x5eed_0000 + seed);
        let mut log = Vec::new();
        for step in 0..STEPS {
            let op = random_op(&mut rng);
            let expected = apply(&reference, &op).await;
            let got = apply(&store, &op).await;
            log.push(format!("{step}: {op:?}"));
            if got != expected {
                let recent = log[log.len().saturating_sub(12)..].join("\n  ");
                panic!(
                    "sequence {seed}, step {step}: the backend answered\n  {got}\nbut the \
                     reference answered\n  {expected}\nafter these operations:\n  {recent}"
                );
            }
        }
        let (got, expected) = (snapshot(&store).await, snapshot(&reference).await);
        for (got, expected) in got.iter().zip(&expected) {
            assert_eq!(
                got, expected,
                "sequence {seed}: the sessions differ from the reference at the end"
            );
        }
    }
    for session in SESSIONS {
        store.delete(session).await?;
    }
    Ok(())
}
