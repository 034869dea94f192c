//! Redis-specific behaviour against the server at `MTSESSION_TEST_REDIS_URL`:
//! the key layout, corrupt and foreign data, schema versions, URL handling,
//! and the Lua peer merge checked against the reference `MemoryStore`.
//! Every test works under its own prefix and removes it afterwards.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{
    AuthKey, DcOption, ErrorKind, FileKind, MemoryStore, Peer, PeerId, PeerKind, SentFile,
    SentFileKey, SessionStore, UpdateStateChange,
};
use session_redis::RedisStore;

use common::{drop_prefix, free_port, keys_under, raw_connection, test_url, unique_prefix};

/// Runs `body` on a store under a fresh prefix, then removes the prefix
/// whether the body passed or panicked.
async fn scoped<F, Fut>(body: F)
where
    F: FnOnce(Arc<RedisStore>, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = test_url();
    let prefix = unique_prefix();
    let store = RedisStore::builder(&url)
        .prefix(&prefix)
        .open()
        .await
        .unwrap_or_else(|e| panic!("the test Redis is needed (set MTSESSION_TEST_REDIS_URL): {e}"));
    let outcome = tokio::spawn(body(Arc::new(store), prefix.clone())).await;
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
        let other = RedisStore::builder(&test_url())
            .prefix(&other_prefix)
            .open()
            .await
            .expect("open");
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
    assert!(shown.contains(":***@"), "{shown}");
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
        let store = RedisStore::builder(&url)
            .prefix(&prefix)
            .open()
            .await
            .expect("open");
        store.create("k").await.expect("create");
        let key = AuthKey::new([0xAB; 256]);
        let dc = DcOption {
            auth_key: Some(key),
            ..DcOption::new(2, None, None)
        };
        store.set_dc_option("k", &dc).await.expect("set");
        let shown = format!("{store:?} {:?}", store.dc_options("k").await.expect("dcs"));
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
}

fn random_peer(rng: &mut Rng) -> Peer {
    const NAMES: [&str; 6] = ["alice", "Alice", "BOB", "bob_", "Ünï", "ünÏ"];
    const PHONES: [&str; 3] = ["100", "200", "300"];
    let id = match rng.below(3) {
        0 => PeerId::user(1 + rng.below(6) as i64),
        1 => PeerId::chat(1 + rng.below(3) as i64),
        _ => PeerId::channel(1 + rng.below(3) as i64),
    }
    .expect("id");
    let mut peer = Peer::new(id);
    if rng.chance(50) {
        peer.kind = Some(match id.kind() {
            session_core::PeerIdKind::User => PeerKind::User,
            session_core::PeerIdKind::Chat => PeerKind::Chat,
            session_core::PeerIdKind::Channel => PeerKind::Megagroup,
        });
    }
    if id.kind() != session_core::PeerIdKind::Chat && rng.chance(60) {
        let value = rng.next() as i64;
        peer = if rng.chance(50) {
            peer.with_min_hash(value)
        } else {
            peer.with_hash(value)
        };
    }
    if rng.chance(60) {
        let count = rng.below(3) as usize;
        peer.usernames = Some(
            (0..count)
                .map(|_| NAMES[rng.below(NAMES.len() as u64) as usize].to_owned())
                .collect(),
        );
    }
    if rng.chance(40) {
        peer.phone = Some(PHONES[rng.below(3) as usize].to_owned());
    }
    if rng.chance(30) {
        peer.name = Some(format!("name {}", rng.below(100)));
    }
    if rng.chance(30) {
        peer.last_seen = Some(rng.next() as i64);
    }
    peer.normalized().expect("normalized")
}

/// The Lua merge gives exactly what the reference `PeerTable` gives, batch
/// after batch, including lookups by every username and phone.
#[tokio::test]
async fn lua_merge_matches_the_reference_table() {
    scoped(|store, _prefix| async move {
        let memory = MemoryStore::new();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..4 {
            let name = format!("round-{round}");
            store.create(&name).await.expect("create");
            memory.create(&name).await.expect("create");
            for batch in 0..40 {
                let size = rng.below(8) as usize;
                let peers: Vec<Peer> = (0..size).map(|_| random_peer(&mut rng)).collect();
                store.cache_peers(&name, &peers).await.expect("redis batch");
                memory
                    .cache_peers(&name, &peers)
                    .await
                    .expect("memory batch");
                let got = store.export(&name).await.expect("export").peers;
                let want = memory.export(&name).await.expect("export").peers;
                assert_eq!(got, want, "round {round} batch {batch}: {peers:?}");
                for username in ["alice", "@ALICE", "bob", "bob_", "ünï", "ÜNÏ", "nobody"] {
                    assert_eq!(
                        store
                            .peer_by_username(&name, username)
                            .await
                            .expect("lookup"),
                        memory
                            .peer_by_username(&name, username)
                            .await
                            .expect("lookup"),
                        "round {round} batch {batch}: username {username}"
                    );
                }
                for phone in ["100", "200", "300", "400"] {
                    assert_eq!(
                        store.peer_by_phone(&name, phone).await.expect("lookup"),
                        memory.peer_by_phone(&name, phone).await.expect("lookup"),
                        "round {round} batch {batch}: phone {phone}"
                    );
                }
            }
            // Import rebuilds the same table from the same peers.
            let data = memory.export(&name).await.expect("export");
            store.import("imported", &data).await.expect("import");
            assert_eq!(
                store.export("imported").await.expect("export").peers,
                data.peers
            );
            store.delete("imported").await.expect("delete");
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
