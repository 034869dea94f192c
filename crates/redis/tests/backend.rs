//! Redis-specific behaviour against the server at `MTSESSION_TEST_REDIS_URL`:
//! the key layout, corrupt and foreign data, schema versions, URL handling,
//! and the stored peer and header hashes checked key by key against core's
//! reference rules.
//! Every test works under its own prefix and removes it afterwards.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use session_core::{
    AuthKey, DcOption, ErrorKind, FileKind, HeaderWrite, Peer, PeerBatch, PeerId, PeerKind,
    PeerTable, SelfUser, SentFile, SentFileKey, Store, UpdateStateChange,
};
use session_redis::RedisStore;

use common::{drop_prefix, free_port, keys_under, raw_connection, test_url, unique_prefix};

/// Runs `body` on a store under a fresh prefix, then removes the prefix
/// whether the body passed or panicked.
async fn scoped<F, Fut>(body: F)
where
    F: FnOnce(Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = test_url();
    let prefix = unique_prefix();
    let store = RedisStore::builder(&url)
        .prefix(&prefix)
        .open()
        .await
        .unwrap_or_else(|e| panic!("the test Redis is needed (set MTSESSION_TEST_REDIS_URL): {e}"));
    let outcome = tokio::spawn(body(Store::new(store), prefix.clone())).await;
    drop_prefix(&url, &prefix)
        .await
        .expect("remove the test prefix");
    assert!(keys_under(&url, &prefix).await.expect("scan").is_empty());
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

async fn redis_set(key: &str, field: Option<&[u8]>, value: &[u8]) {
    let mut con = raw_connection(&test_url()).await.expect("connect");
    let mut cmd = match field {
        Some(f) => {
            let mut c = redis::cmd("HSET");
            c.arg(key).arg(f);
            c
        }
        None => {
            let mut c = redis::cmd("SET");
            c.arg(key);
            c
        }
    };
    cmd.arg(value);
    let _: i64 = match field {
        Some(_) => cmd.query_async(&mut con).await.expect("HSET"),
        None => {
            let _: () = cmd.query_async(&mut con).await.expect("SET");
            0
        }
    };
}

fn key_names(keys: Vec<Vec<u8>>, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = keys
        .into_iter()
        .map(|k| String::from_utf8(k).expect("utf-8 key"))
        .map(|k| k.strip_prefix(prefix).expect("under the prefix").to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn key_layout_is_as_documented() {
    scoped(|store, prefix| async move {
        let name = "a:{b} ü";
        let hex = hex_of(name);
        store.create(name).await.expect("create");
        store
            .set_update_state(name, &UpdateStateChange::Channel { id: 5, pts: 6 })
            .await
            .expect("channel");
        let peer = Peer::new(PeerId::user(7).expect("id"))
            .with_kind(PeerKind::User)
            .with_hash(1)
            .with_username("Seven")
            .with_phone("123");
        store.cache_peers(name, &[peer]).await.expect("peers");
        let file = SentFileKey {
            md5: [1; 16],
            size: 2,
            kind: FileKind::Photo,
        };
        store
            .cache_sent_file(
                name,
                &file,
                &SentFile {
                    id: 3,
                    access_hash: 4,
                },
            )
            .await
            .expect("file");
        store
            .set_update_state(
                name,
                &UpdateStateChange::Primary {
                    pts: 1,
                    date: 2,
                    seq: 3,
                },
            )
            .await
            .expect("state");
        store
            .acquire_lease(name, "me", Duration::from_secs(30))
            .await
            .expect("lease");

        let keys = key_names(
            keys_under(&test_url(), &prefix).await.expect("scan"),
            &prefix,
        );
        let mut expected: Vec<String> = [
            ":schema".to_owned(),
            ":sessions".to_owned(),
            format!(":lease:{{{hex}}}"),
        ]
        .into_iter()
        .chain(
            [
                "meta", "dcs", "state", "channels", "peers", "uname", "phone", "files",
            ]
            .iter()
            .map(|s| format!(":s:{{{hex}}}:{s}")),
        )
        .collect();
        expected.sort();
        assert_eq!(keys, expected);

        assert!(store.delete(name).await.expect("delete"));
        let keys = key_names(
            keys_under(&test_url(), &prefix).await.expect("scan"),
            &prefix,
        );
        assert_eq!(
            keys,
            vec![":lease:{".to_owned() + &hex + "}", ":schema".to_owned()]
        );
        assert!(store.release_lease(name, "me").await.expect("release"));
    })
    .await;
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn corrupt_values_are_reported_as_corrupt() {
    scoped(|store, prefix| async move {
        store.create("s").await.expect("create");
        let hex = hex_of("s");
        let peers = format!("{prefix}:s:{{{hex}}}:peers");
        redis_set(&peers, Some(b"5"), b"{not json").await;
        let err = store
            .peers("s", &[PeerId::user(5).expect("id")])
            .await
            .expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains(":peers"), "{err}");

        let dcs = format!("{prefix}:s:{{{hex}}}:dcs");
        redis_set(&dcs, Some(b"2"), &[4, 1, 2, 3]).await;
        let err = store.dc_options("s").await.expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");

        let meta = format!("{prefix}:s:{{{hex}}}:meta");
        redis_set(&meta, Some(b"home_dc"), b"two").await;
        let err = store.home_dc("s").await.expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        let err = store.export("s").await.expect_err("corrupt");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_key_of_the_wrong_type_is_a_backend_error() {
    scoped(|store, prefix| async move {
        store.create("s").await.expect("create");
        let state = format!("{prefix}:s:{{{}}}:state", hex_of("s"));
        let mut con = raw_connection(&test_url()).await.expect("connect");
        let _: () = redis::cmd("DEL")
            .arg(&state)
            .query_async(&mut con)
            .await
            .expect("del");
        redis_set(&state, None, b"a string, not a hash").await;
        let err = store.update_state("s").await.expect_err("wrong type");
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
        let err = store
            .set_update_state("s", &UpdateStateChange::Secondary { qts: 1 })
            .await
            .expect_err("wrong type");
        assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    })
    .await;
}

#[tokio::test]
async fn schema_versions() {
    scoped(|store, prefix| async move {
        let url = test_url();
        drop(store);
        let mut con = raw_connection(&url).await.expect("connect");
        let version: i64 = redis::cmd("GET")
            .arg(format!("{prefix}:schema"))
            .query_async(&mut con)
            .await
            .expect("get");
        assert_eq!(version, session_redis::SCHEMA_VERSION);

        redis_set(&format!("{prefix}:schema"), None, b"7").await;
        let err = RedisStore::builder(&url)
            .prefix(&prefix)
            .open()
            .await
            .expect_err("newer");
        match &err {
            session_core::Error::UnsupportedSchemaVersion {
                found,
                supported,
                what,
            } => {
                assert_eq!((*found, *supported), (7, session_redis::SCHEMA_VERSION));
                assert!(what.contains(&prefix), "{what}");
            }
            other => panic!("expected UnsupportedSchemaVersion, got {other:?}"),
        }
        // Refusing did not rewrite the version.
        let version: i64 = redis::cmd("GET")
            .arg(format!("{prefix}:schema"))
            .query_async(&mut con)
            .await
            .expect("get");
        assert_eq!(version, 7);

        redis_set(&format!("{prefix}:schema"), None, b"one").await;
        let err = RedisStore::builder(&url)
            .prefix(&prefix)
            .open()
            .await
            .expect_err("garbage");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        redis_set(&format!("{prefix}:schema"), None, b"0").await;
        let err = RedisStore::builder(&url)
            .prefix(&prefix)
            .open()
            .await
            .expect_err("zero");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    })
    .await;
}

#[tokio::test]
async fn prefixes_are_isolated() {
    scoped(|store, prefix| async move {
        // Nested under the test prefix, so the cleanup removes it even if a
        // check fails first.
        let other_prefix = format!("{prefix}:other");
        let other = Store::new(
            RedisStore::builder(&test_url())
                .prefix(&other_prefix)
                .open()
                .await
                .expect("open"),
        );
        store.create("same").await.expect("create");
        assert!(!other.exists("same").await.expect("exists"));
        assert!(other.list().await.expect("list").is_empty());
        other
            .create("same")
            .await
            .expect("create in the other prefix");
        other.set_home_dc("same", 5).await.expect("set");
        assert_eq!(store.home_dc("same").await.expect("home"), 2);
        drop_prefix(&test_url(), &other_prefix)
            .await
            .expect("cleanup");
    })
    .await;
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_invalid_input_without_the_password() {
    for url in [
        "redis://:hunter2@127.0.0.1:notaport",
        "http://:hunter2@127.0.0.1",
        "hunter2",
    ] {
        let err = RedisStore::open(url).await.expect_err("bad url");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let err = RedisStore::builder(&test_url())
        .prefix("")
        .open()
        .await
        .expect_err("empty prefix");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = RedisStore::builder(&test_url())
        .prefix("x".repeat(201))
        .open()
        .await
        .expect_err("long prefix");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn nothing_listening_is_unavailable_quickly() {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let started = Instant::now();
    let err = RedisStore::open(&url)
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains(&format!(":***@127.0.0.1:{port}")), "{shown}");
    assert!(shown.contains("connection refused"), "{shown}");
}

#[tokio::test]
async fn an_unknown_host_is_unavailable_quickly_and_named() {
    let url = "redis://:hunter2@no-such-host.invalid:6379";
    let started = Instant::now();
    let err = RedisStore::builder(url)
        .connect_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect_err("no such host");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(text.contains("no-such-host.invalid:6379"), "{text}");
    assert!(text.contains("could not be resolved"), "{text}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test]
async fn debug_never_shows_the_password_or_keys() {
    scoped(|_store, prefix| async move {
        let url = test_url();
        // The test server has no password, so add a user name-less one only
        // to the builder's text: Debug must hide it before connecting.
        let with_password = url.replacen("redis://", "redis://:hunter2@", 1);
        let builder = RedisStore::builder(&with_password).prefix(&prefix);
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let redis = RedisStore::builder(&url)
            .prefix(&prefix)
            .open()
            .await
            .expect("open");
        let shown_store = format!("{redis:?}");
        let store = Store::new(redis);
        store.create("k").await.expect("create");
        let key = AuthKey::new([0xAB; 256]);
        let dc = DcOption {
            auth_key: Some(key),
            ..DcOption::new(2, None, None)
        };
        store.set_dc_option("k", &dc).await.expect("set");
        let shown = format!(
            "{shown_store} {store:?} {:?}",
            store.dc_options("k").await.expect("dcs")
        );
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    })
    .await;
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Usernames that collide in every way: case, a leading `@`, unicode case.
const NAMES: [&str; 10] = [
    "alice", "Alice", "@ALICE", "bob", "BOB_", "bob_", "Ünï", "ünÏ", "carol", "@dave",
];
const PHONES: [&str; 5] = ["100", "+1 00", "200", "300", "(4)00"];

/// A peer from a small id space (users, chats and channels), so a batch
/// repeats ids and claims usernames and phones other peers hold.
fn random_peer(rng: &mut Rng, ids: u64) -> Peer {
    let bare = 1 + rng.below(ids) as i64;
    let id = match rng.below(5) {
        0 => PeerId::chat(bare),
        1 => PeerId::channel(bare),
        _ => PeerId::user(bare),
    }
    .expect("id");
    let mut peer = Peer::new(id);
    if rng.chance(50) {
        peer.kind = Some(match id.kind() {
            session_core::PeerIdKind::User if rng.chance(50) => PeerKind::Bot,
            session_core::PeerIdKind::User => PeerKind::User,
            session_core::PeerIdKind::Chat => PeerKind::Chat,
            session_core::PeerIdKind::Channel => PeerKind::Megagroup,
        });
    }
    if id.kind() != session_core::PeerIdKind::Chat && rng.chance(70) {
        let value = (rng.next() as i64) >> rng.below(64);
        peer = if rng.chance(50) {
            peer.with_min_hash(value)
        } else {
            peer.with_hash(value)
        };
    }
    if rng.chance(70) {
        let count = rng.below(4) as usize;
        peer.usernames = Some((0..count).map(|_| rng.pick(&NAMES).to_owned()).collect());
    }
    if rng.chance(50) {
        peer.phone = Some(rng.pick(&PHONES).to_owned());
    }
    if rng.chance(30) {
        peer.name = Some(format!("name {}", rng.below(100)));
    }
    if rng.chance(30) {
        peer.last_seen = Some(rng.next() as i64);
    }
    peer
}

type RawHash = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

async fn raw_hash(key: &str) -> RawHash {
    let mut con = raw_connection(&test_url()).await.expect("connect");
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut con)
        .await
        .expect("HGETALL")
}

fn session_key(prefix: &str, session: &str, suffix: &str) -> String {
    format!("{prefix}:s:{{{}}}:{suffix}", hex_of(session))
}

/// Compares the stored peer hashes of `session` with `table`, key by key:
/// every record decodes to the reference peer, and the username and phone
/// index hashes hold exactly the reference's entries.
async fn assert_stored_as(prefix: &str, session: &str, table: &PeerTable, context: &str) {
    let records = raw_hash(&session_key(prefix, session, "peers")).await;
    let unames = raw_hash(&session_key(prefix, session, "uname")).await;
    let phones = raw_hash(&session_key(prefix, session, "phone")).await;
    let mut want_records = RawHash::new();
    let mut want_unames = RawHash::new();
    let mut want_phones = RawHash::new();
    for peer in table.iter() {
        let id = peer.id.marked().to_string().into_bytes();
        want_records.insert(id.clone(), Vec::new());
        for key in peer.username_keys() {
            assert_eq!(table.by_username(&key).map(|p| p.id), Some(peer.id));
            want_unames.insert(key.into_bytes(), id.clone());
        }
        if let Some(phone) = &peer.phone {
            want_phones.insert(phone.clone().into_bytes(), id.clone());
        }
    }
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        want_records.keys().collect::<Vec<_>>(),
        "{context}: the peer ids stored"
    );
    for (id, raw) in &records {
        let got = decode_stored_peer(raw);
        let id: i64 = String::from_utf8_lossy(id).parse().expect("decimal id");
        let want = table
            .get(PeerId::from_marked(id).expect("id"))
            .expect("reference peer");
        assert_eq!(got, want, "{context}: peer {id}");
    }
    assert_eq!(unames, want_unames, "{context}: the username index");
    assert_eq!(phones, want_phones, "{context}: the phone index");
}

/// Decodes a stored peer record as the README's key layout describes it,
/// independently of the store's own decoder, and checks that `k` holds the
/// lookup keys of `u`.
fn decode_stored_peer(raw: &[u8]) -> Peer {
    let v: serde_json::Value = serde_json::from_slice(raw).expect("a JSON record");
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let int = |k: &str| text(k).map(|t| t.parse::<i64>().expect("decimal"));
    let id = PeerId::from_marked(int("i").expect("id")).expect("marked id");
    let usernames = match v.get("u") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(items)) => Some(
            items
                .iter()
                .map(|i| i.as_str().expect("a string").to_owned())
                .collect(),
        ),
        Some(serde_json::Value::Object(o)) if o.is_empty() => Some(Vec::new()),
        Some(other) => panic!("usernames {other}"),
    };
    if let Some(names) = &usernames {
        let keys: Vec<String> = match v.get("k") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().expect("a string").to_owned())
                .collect(),
            Some(serde_json::Value::Object(o)) if o.is_empty() => Vec::new(),
            other => panic!("lookup keys {other:?}"),
        };
        let mut probe = Peer::new(id);
        probe.usernames = Some(names.clone());
        assert_eq!(keys, probe.username_keys(), "k holds the lookup keys");
    }
    Peer {
        id,
        kind: v
            .get("t")
            .and_then(serde_json::Value::as_i64)
            .map(|c| PeerKind::from_code(c).expect("kind code")),
        access_hash: int("h").map(|value| session_core::AccessHash {
            value,
            min: v
                .get("m")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        }),
        usernames,
        phone: text("p"),
        name: text("n"),
        last_seen: int("s"),
    }
}

/// The peer writes against core's reference, compared key by key in
/// Redis: many random batches (up to 300 peers, ids repeated within a
/// batch, colliding usernames and phones, `min` and full hashes) go through
/// the store and through `PeerTable::upsert`, and after every batch the
/// stored hashes must equal what the reference holds. Every batch is then
/// sent a second time, as a caller retrying after `OutcomeUnknown` would:
/// nothing may change.
#[tokio::test]
async fn peer_batches_store_exactly_what_core_plans() {
    scoped(|store, prefix| async move {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..6u64 {
            let name = format!("round-{round}");
            let session = store.open(&name).await.expect("create");
            let mut table = PeerTable::default();
            let ids = [4, 12, 40, 150][round as usize % 4];
            for batch_no in 0..25 {
                let size = match rng.below(4) {
                    0 => rng.below(3),
                    1 => rng.below(20),
                    _ => rng.below(300),
                } as usize;
                let peers: Vec<Peer> = (0..size).map(|_| random_peer(&mut rng, ids)).collect();
                let batch = PeerBatch::new(&peers).expect("valid batch");
                for peer in batch.peers() {
                    table.upsert(peer);
                }
                session.cache_peers(&peers).await.expect("redis batch");
                let context = format!("round {round} batch {batch_no} ({size} peers)");
                assert_stored_as(&prefix, &name, &table, &context).await;
                session
                    .cache_peers(&peers)
                    .await
                    .expect("the same batch again");
                assert_stored_as(&prefix, &name, &table, &format!("{context}, sent twice")).await;
            }
            assert_eq!(
                session.peer_count().await.expect("count"),
                table.len() as u64
            );
        }
    })
    .await;
}

/// Writers on separate connections send overlapping batches at once (the
/// same few usernames and phones moving between peers). A batch planned
/// from a context another writer changed must be planned again, never
/// applied: afterwards every index entry names a peer that lists it, and
/// every username and phone a peer lists is indexed to that peer. (Applying
/// stale plans leaves two peers listing one username.)
#[tokio::test]
async fn concurrent_overlapping_batches_keep_the_indexes_consistent() {
    scoped(|store, prefix| async move {
        store.create("shared").await.expect("create");
        let mut writers = Vec::new();
        for writer in 0..6u64 {
            let url = test_url();
            let prefix = prefix.clone();
            writers.push(tokio::spawn(async move {
                let own = Store::new(
                    RedisStore::builder(&url)
                        .prefix(prefix)
                        .open()
                        .await
                        .expect("open"),
                );
                let session = own.session("shared").expect("name");
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ (writer + 1));
                for _ in 0..40 {
                    let peers: Vec<Peer> = (0..1 + rng.below(12))
                        .map(|_| random_peer(&mut rng, 8))
                        .collect();
                    session.cache_peers(&peers).await.expect("batch");
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
        let records = raw_hash(&session_key(&prefix, "shared", "peers")).await;
        let unames = raw_hash(&session_key(&prefix, "shared", "uname")).await;
        let phones = raw_hash(&session_key(&prefix, "shared", "phone")).await;
        let peers: Vec<Peer> = records.values().map(|r| decode_stored_peer(r)).collect();
        let mut listed_names = RawHash::new();
        let mut listed_phones = RawHash::new();
        for peer in &peers {
            let id = peer.id.marked().to_string().into_bytes();
            for key in peer.username_keys() {
                let previous = listed_names.insert(key.clone().into_bytes(), id.clone());
                assert!(
                    previous.is_none(),
                    "two peers list username {key}: {peers:?}"
                );
            }
            if let Some(phone) = &peer.phone {
                let previous = listed_phones.insert(phone.clone().into_bytes(), id.clone());
                assert!(
                    previous.is_none(),
                    "two peers list phone {phone}: {peers:?}"
                );
            }
        }
        assert_eq!(unames, listed_names, "the username index");
        assert_eq!(phones, listed_phones, "the phone index");
    })
    .await;
}

/// The one rule the store applies in Lua: a header or DC write moves
/// `updated_at_ms` to the larger of the stored time and its own, and sets
/// exactly the fields it names. Random writes (times going back and forth,
/// i64 extremes, values 2^53 apart by one that Lua's doubles cannot tell
/// apart) must leave the header `SessionHeader::apply` computes.
#[tokio::test]
async fn header_writes_match_session_header_apply() {
    scoped(|store, _prefix| async move {
        let backend = store.backend().clone();
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        const TIMES: [i64; 9] = [
            0,
            1,
            1_700_000_000_000,
            1 << 53,
            (1 << 53) + 1,
            i64::MAX - 1,
            i64::MAX,
            -1,
            i64::MIN,
        ];
        for round in 0..4 {
            let name = format!("h{round}");
            store.create(&name).await.expect("create");
            let mut want = backend.header(&name).await.expect("header");
            for step in 0..60 {
                let at = TIMES[rng.below(TIMES.len() as u64) as usize];
                if rng.chance(25) {
                    let dc = DcOption::new(1 + rng.below(5) as i32, None, None);
                    backend
                        .write_dc_option(&name, &dc, at)
                        .await
                        .expect("dc write");
                    want.apply(&HeaderWrite::at(at));
                } else {
                    let mut write = HeaderWrite::at(at);
                    if rng.chance(40) {
                        write.home_dc = Some(1 + rng.below(5) as i32);
                    }
                    if rng.chance(40) {
                        write.self_user = Some(rng.chance(50).then(|| SelfUser {
                            id: 1 + rng.below(1_000) as i64,
                            is_bot: rng.chance(50),
                        }));
                    }
                    if rng.chance(40) {
                        write.api_id = Some(rng.chance(50).then(|| rng.below(99_999) as i32));
                    }
                    if rng.chance(40) {
                        write.test_mode = Some(rng.chance(50));
                    }
                    if rng.chance(40) {
                        write.takeout_id = Some(rng.chance(50).then(|| rng.next() as i64));
                    }
                    backend.write_header(&name, &write).await.expect("write");
                    want.apply(&write);
                }
                let got = backend.header(&name).await.expect("header");
                assert_eq!(got, want, "round {round} step {step} (time {at})");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn import_of_a_large_session_and_copy_keep_everything() {
    scoped(|store, _prefix| async move {
        let mut data = session_core::SessionData {
            peers: (1..=20_000)
                .map(|i| {
                    Peer::new(PeerId::user(i).expect("id"))
                        .with_kind(PeerKind::User)
                        .with_hash(i * 7)
                        .with_username(format!("user{i}"))
                })
                .collect(),
            ..Default::default()
        };
        for i in 1..=3000 {
            data.update_state.channels.insert(i, i as i32);
        }
        store.import("big", &data).await.expect("import");
        store.copy("big", "copy", false).await.expect("copy");
        let mut got = store.export("copy").await.expect("export");
        got.canonicalize();
        assert_eq!(got, data);
        assert_eq!(store.peer_count("copy").await.expect("count"), 20_000);
        let found = store
            .peer_by_username("copy", "USER19999")
            .await
            .expect("lookup");
        assert_eq!(found.map(|p| p.id.marked()), Some(19_999));
    })
    .await;
}

#[tokio::test]
async fn a_bad_tls_root_certificate_is_invalid_input() {
    let url = "rediss://:hunter2@127.0.0.1:1";
    let pem = b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
    let err = RedisStore::builder(url)
        .tls_root_certificate(pem.to_vec())
        .open()
        .await
        .expect_err("bad certificate");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    assert!(err.to_string().contains("root certificate"), "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

/// Keys as the previous version wrote them (its Lua merge script encoded
/// empty lists as `{}` and kinds as numbers; leases `{expires}:{owner}`):
/// the store reads them, moves a username off such a record, and honours
/// the lease. Schema version 1 is unchanged, so no migration is needed.
#[tokio::test]
async fn keys_written_by_the_previous_version_read_and_update() {
    scoped(|_store, prefix| async move {
        let s = |suffix: &str| session_key(&prefix, "old", suffix);
        for (key, field, value) in [
            (s("meta"), "home_dc", "4"),
            (s("meta"), "test_mode", "0"),
            (s("meta"), "created", "1000"),
            (s("meta"), "updated", "2000"),
            (s("meta"), "api_id", "77"),
            (
                s("peers"),
                "5",
                r#"{"i":"5","t":1,"h":"-9","m":false,"u":{},"k":{},"n":"five"}"#,
            ),
            (
                s("peers"),
                "6",
                r#"{"i":"6","t":2.0,"h":"8","m":true,"u":["Bob"],"k":["bob"],"p":"123"}"#,
            ),
            (s("uname"), "bob", "6"),
            (s("phone"), "123", "6"),
            (s("state"), "pts", "10"),
            (s("channels"), "9", "90"),
        ] {
            redis_set(&key, Some(field.as_bytes()), value.as_bytes()).await;
        }
        let mut con = raw_connection(&test_url()).await.expect("connect");
        let _: i64 = redis::cmd("ZADD")
            .arg(format!("{prefix}:sessions"))
            .arg(0)
            .arg("old")
            .query_async(&mut con)
            .await
            .expect("zadd");
        let until = session_core::lease::now_ms() + 60_000;
        redis_set(
            &format!("{prefix}:lease:{{{}}}", hex_of("old")),
            None,
            format!("{until}:someone").as_bytes(),
        )
        .await;

        let store = Store::new(
            RedisStore::builder(&test_url())
                .prefix(&prefix)
                .open()
                .await
                .expect("open"),
        );
        let old = store.session("old").expect("name");
        let header = old.header().await.expect("header");
        assert_eq!((header.home_dc, header.api_id), (4, Some(77)));
        assert_eq!((header.created_at_ms, header.updated_at_ms), (1000, 2000));
        let five = old
            .peer(PeerId::user(5).expect("id"))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(five.usernames, Some(vec![]));
        assert_eq!(five.kind, Some(PeerKind::User));
        let six = old
            .peer_by_phone("123")
            .await
            .expect("read")
            .expect("owner");
        assert_eq!(six.kind, Some(PeerKind::Bot));
        assert_eq!(six.access_hash, Some(session_core::AccessHash::min(8)));
        assert_eq!(old.update_state().await.expect("state").channels[&9], 90);

        old.cache_peer(&Peer::new(PeerId::user(5).expect("id")).with_username("BOB"))
            .await
            .expect("move bob");
        assert_eq!(
            raw_hash(&s("uname")).await,
            [(b"bob".to_vec(), b"5".to_vec())].into()
        );
        let six = old
            .peer(PeerId::user(6).expect("id"))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(six.usernames, Some(vec![]));
        assert_eq!(six.phone.as_deref(), Some("123"));

        let err = store
            .acquire_lease("old", "me", Duration::from_secs(5))
            .await
            .expect_err("held");
        assert_eq!(err.kind(), ErrorKind::LeaseHeld, "{err}");
        assert!(err.to_string().contains("someone"), "{err}");
    })
    .await;
}

/// A batch whose peers are stored already is answered in one round trip
/// when the stored records are the bytes this build writes; records in
/// another encoding of the same peers (e.g. keys in insertion order, as a
/// build of serde_json with `preserve_order` writes them) are planned from
/// what is stored instead. Either way the hashes end as core's reference
/// says, including when the batch then changes a peer and moves a username.
#[tokio::test]
async fn batches_over_stored_peers_in_any_encoding_apply_as_planned() {
    scoped(|store, prefix| async move {
        let session = store.open("s").await.expect("create");
        let peers: Vec<Peer> = (1..=20)
            .map(|i| {
                Peer::new(PeerId::user(i).expect("id"))
                    .with_kind(PeerKind::User)
                    .with_hash(i * 7)
                    .with_username(format!("user{i}"))
                    .with_phone(format!("555{i}"))
                    .with_name(format!("Peer {i}"))
            })
            .collect();
        let mut table = PeerTable::default();
        for peer in PeerBatch::new(&peers).expect("valid").peers() {
            table.upsert(peer);
        }
        session.cache_peers(&peers).await.expect("new peers");
        assert_stored_as(&prefix, "s", &table, "new peers").await;
        let before = raw_hash(&session_key(&prefix, "s", "peers")).await;
        session.cache_peers(&peers).await.expect("the same again");
        assert_eq!(
            raw_hash(&session_key(&prefix, "s", "peers")).await,
            before,
            "nothing rewritten"
        );
        // The same peers, stored in another key order.
        let key = session_key(&prefix, "s", "peers");
        for peer in table.iter() {
            let id = peer.id.marked();
            let hash = peer.access_hash.expect("hash").value;
            let name = peer.name.clone().expect("name");
            let phone = peer.phone.clone().expect("phone");
            let username = &peer.usernames.as_ref().expect("usernames")[0];
            let raw = format!(
                "{{\"i\":\"{id}\",\"t\":1,\"h\":\"{hash}\",\"m\":false,\"u\":[\"{username}\"],\
                 \"k\":[\"{username}\"],\"p\":\"{phone}\",\"n\":\"{name}\"}}"
            );
            redis_set(&key, Some(id.to_string().as_bytes()), raw.as_bytes()).await;
        }
        session
            .cache_peers(&peers)
            .await
            .expect("over another encoding");
        assert_stored_as(&prefix, "s", &table, "over another encoding").await;
        // A changed batch: peer 3 renamed, peer 4 takes user5 from peer 5.
        let changed = vec![
            peers[2].clone().with_name("Renamed"),
            Peer::new(PeerId::user(4).expect("id")).with_username("user5"),
        ];
        for peer in PeerBatch::new(&changed).expect("valid").peers() {
            table.upsert(peer);
        }
        session.cache_peers(&changed).await.expect("changed");
        assert_stored_as(&prefix, "s", &table, "changed").await;
        session
            .cache_peers(&peers)
            .await
            .expect("the first batch again");
        for peer in PeerBatch::new(&peers).expect("valid").peers() {
            table.upsert(peer);
        }
        assert_stored_as(&prefix, "s", &table, "the first batch again").await;
    })
    .await;
}
