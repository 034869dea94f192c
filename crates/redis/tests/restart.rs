//! Tests against `redis-server` processes started here, on their own
//! loopback ports: surviving a restart, passwords, TLS, and that the store
//! never scans the keyspace. The servers keep nothing on disk and are
//! killed when each test ends.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use session_core::{Error, ErrorKind, Peer, PeerId, PeerKind, SessionStore, UpdateStateChange};
use session_redis::RedisStore;

use common::{TestServer, free_port};

const PASSWORD: &str = "s3cret-Pa55";

/// Asserts that `err` is `Unavailable` from redis and that neither its
/// text, its Debug nor its source chain shows the password.
fn assert_unavailable_without_password(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Unavailable {
                backend: "redis",
                ..
            }
        ),
        "expected Unavailable, got {err:?}"
    );
    assert_no_password(err);
}

fn assert_no_password(err: &Error) {
    let mut shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
}

#[tokio::test]
async fn store_survives_a_server_restart() {
    let port = free_port();
    let mut server = TestServer::start(port, &["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let store = RedisStore::builder(&url)
        .prefix("restart")
        .open()
        .await
        .expect("open");
    store.create("alice").await.expect("create");
    store.set_home_dc("alice", 4).await.expect("write");
    assert_eq!(store.home_dc("alice").await.expect("read"), 4);

    server.kill();

    // Every call while the server is down fails fast with Unavailable.
    for attempt in 0..5 {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(30), store.home_dc("alice"))
            .await
            .expect("a call to a stopped server must not hang");
        let took = started.elapsed();
        let err = result.expect_err("the server is down");
        assert_unavailable_without_password(&err);
        assert!(
            took < Duration::from_secs(10),
            "attempt {attempt} took {took:?}"
        );
    }
    let err = store
        .cache_peers("alice", &[Peer::new(PeerId::user(1).expect("id"))])
        .await
        .expect_err("down");
    assert_unavailable_without_password(&err);
    let err = store.list().await.expect_err("down");
    assert_unavailable_without_password(&err);

    server.restart();

    // The same store instance reconnects by itself. The first call after the
    // restart may still see the failed reconnection; poll within a bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        match store.list().await {
            Ok(names) => break names,
            Err(err) => {
                assert_unavailable_without_password(&err);
                assert!(
                    Instant::now() < deadline,
                    "the store did not reconnect: {err}\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The server keeps nothing on disk, so the old data is gone.
    assert!(listed.is_empty(), "{listed:?}");
    let err = store
        .home_dc("alice")
        .await
        .expect_err("gone with the restart");
    assert_eq!(err.kind(), ErrorKind::NotFound);

    store.create("alice").await.expect("create after restart");
    store
        .set_home_dc("alice", 5)
        .await
        .expect("write after restart");
    store
        .set_update_state("alice", &UpdateStateChange::Channel { id: 9, pts: 10 })
        .await
        .expect("state after restart");
    let peer = Peer::new(PeerId::user(7).expect("id"))
        .with_kind(PeerKind::Bot)
        .with_username("B");
    store
        .cache_peers("alice", std::slice::from_ref(&peer))
        .await
        .expect("scripts load again");
    assert_eq!(store.home_dc("alice").await.expect("read"), 5);
    assert_eq!(
        store
            .update_state("alice")
            .await
            .expect("read")
            .channels
            .get(&9),
        Some(&10)
    );
    assert_eq!(
        store.peer_by_username("alice", "b").await.expect("lookup"),
        Some(peer)
    );
}

#[tokio::test]
async fn opening_while_the_server_is_down_is_unavailable_then_works() {
    let port = free_port();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let started = Instant::now();
    let err = RedisStore::open(&url)
        .await
        .expect_err("nothing listens yet");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_unavailable_without_password(&err);
    let _server = TestServer::start(port, &["--requirepass", PASSWORD]);
    let store = RedisStore::open(&url)
        .await
        .expect("open once the server is up");
    store.create("x").await.expect("create");
}

#[tokio::test]
async fn passwords_in_the_url() {
    let port = free_port();
    let _server = TestServer::start(port, &["--requirepass", PASSWORD]);

    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let store = RedisStore::open(&url)
        .await
        .expect("the right password works");
    store.create("s").await.expect("create");
    assert_eq!(store.list().await.expect("list"), vec!["s".to_owned()]);
    let shown = format!("{store:?} {}", store.redacted_url());
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("redis://:***@127.0.0.1"), "{shown}");

    // ACL user syntax: the default user with its password.
    let url = format!("redis://default:{PASSWORD}@127.0.0.1:{port}");
    let store = RedisStore::open(&url)
        .await
        .expect("user and password work");
    assert!(store.exists("s").await.expect("exists"));

    let wrong = format!("redis://:{PASSWORD}-wrong@127.0.0.1:{port}");
    let err = RedisStore::open(&wrong).await.expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err:?}");
    assert!(err.to_string().contains("authentication"), "{err}");
    assert_no_password(&err);

    let none = format!("redis://127.0.0.1:{port}");
    let err = RedisStore::open(&none).await.expect_err("no password");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err:?}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for the TLS test: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA and a server certificate for 127.0.0.1, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write extensions");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=mtsession test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca);
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_a_password() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certificates(certs.path());
    let path = |name: &str| certs.path().join(name).display().to_string();
    let port = free_port();
    let port_text = port.to_string();
    let (cert, key, ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let _server = TestServer::start(
        port,
        &[
            "--tls-port",
            &port_text,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
        ],
    );
    let ca_pem = std::fs::read(certs.path().join("ca.crt")).expect("read CA");
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{port}");

    let store = RedisStore::builder(&url)
        .tls_root_certificate(ca_pem)
        .open()
        .await
        .expect("TLS with the private CA works");
    store.create("tls").await.expect("create over TLS");
    store.set_home_dc("tls", 3).await.expect("write over TLS");
    assert_eq!(store.home_dc("tls").await.expect("read over TLS"), 3);

    // Without the CA the certificate is not trusted: a typed error, no password.
    let err = RedisStore::open(&url)
        .await
        .expect_err("untrusted certificate");
    assert_unavailable_without_password(&err);

    // Plain redis:// to a TLS-only port fails too, typed and without the password.
    let plain = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let err = RedisStore::builder(&plain)
        .response_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect_err("plain text to a TLS port");
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Backend),
        "{err:?}"
    );
    assert_no_password(&err);
}

#[tokio::test]
async fn rediss_to_a_plain_server_is_unavailable() {
    let port = free_port();
    let _server = TestServer::start(port, &[]);
    let url = format!("rediss://:{PASSWORD}@127.0.0.1:{port}");
    let started = Instant::now();
    let err = RedisStore::open(&url).await.expect_err("no TLS there");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_unavailable_without_password(&err);
}

/// `list`, `delete`, `copy` and the rest never use KEYS or SCAN: the
/// server's command statistics are read before and after.
#[tokio::test]
async fn the_store_never_scans_the_keyspace() {
    let port = free_port();
    let _server = TestServer::start(port, &[]);
    let url = format!("redis://127.0.0.1:{port}");
    let store = RedisStore::open(&url).await.expect("open");
    for i in 0..50 {
        store.create(&format!("s{i}")).await.expect("create");
    }
    store
        .cache_peers(
            "s0",
            &[Peer::new(PeerId::user(1).expect("id")).with_username("u")],
        )
        .await
        .expect("peers");
    assert_eq!(store.list().await.expect("list").len(), 50);
    store.copy("s0", "copy", false).await.expect("copy");
    store.copy("s1", "copy", true).await.expect("copy over");
    let data = store.export("s0").await.expect("export");
    store.import("imported", &data).await.expect("import");
    assert!(store.delete("s2").await.expect("delete"));
    assert!(!store.delete("s2").await.expect("delete again"));
    assert!(store.exists("s3").await.expect("exists"));

    let client = redis::Client::open(url.as_str()).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .expect("info");
    assert!(stats.contains("cmdstat_evalsha"), "scripts ran: {stats}");
    for forbidden in ["cmdstat_keys:", "cmdstat_scan:"] {
        assert!(!stats.contains(forbidden), "{forbidden} was used:\n{stats}");
    }
}
