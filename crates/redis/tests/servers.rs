//! Tests against `redis-server` processes started here, on their own
//! loopback ports: passwords, TLS, the commands opening sends, and that the
//! store never scans the keyspace. The servers keep nothing on disk and are
//! killed when each test ends. (Outages are in `outage.rs`.)

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use session_core::{Error, ErrorKind, Peer, PeerId, Store};
use session_redis::RedisStore;

use common::{TestServer, free_port, redis_server_or_skip};

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
async fn passwords_in_the_url() {
    let Some(_) = redis_server_or_skip("passwords_in_the_url") else {
        return;
    };
    let port = free_port();
    let _server = TestServer::start(port, &["--requirepass", PASSWORD]);

    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let redis = RedisStore::open(&url)
        .await
        .expect("the right password works");
    let shown = format!("{redis:?} {}", redis.redacted_url());
    let store = Store::new(redis);
    store.create("s").await.expect("create");
    assert_eq!(store.list().await.expect("list"), vec!["s".to_owned()]);
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("redis://:***@127.0.0.1"), "{shown}");

    // ACL user syntax: the default user with its password.
    let url = format!("redis://default:{PASSWORD}@127.0.0.1:{port}");
    let store = Store::new(
        RedisStore::open(&url)
            .await
            .expect("user and password work"),
    );
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
    let Some(_) = redis_server_or_skip("rediss_with_a_private_ca_and_a_password") else {
        return;
    };
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

    let store = Store::new(
        RedisStore::builder(&url)
            .tls_root_certificate(ca_pem)
            .open()
            .await
            .expect("TLS with the private CA works"),
    );
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
    let Some(_) = redis_server_or_skip("rediss_to_a_plain_server_is_unavailable") else {
        return;
    };
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
    let Some(_) = redis_server_or_skip("the_store_never_scans_the_keyspace") else {
        return;
    };
    let port = free_port();
    let _server = TestServer::start(port, &[]);
    let url = format!("redis://127.0.0.1:{port}");
    let store = Store::new(RedisStore::open(&url).await.expect("open"));
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

/// Opening and reading the home key: with no password, connecting sends
/// nothing (no `CLIENT SETINFO`, `HELLO` or `SELECT`); opening sends one
/// pipeline (`SET NX` and `GET` of the schema key) and the home read one
/// script. The server's command statistics are read after each step.
#[tokio::test]
async fn opening_and_reading_the_home_key_take_two_round_trips() {
    let Some(_) = redis_server_or_skip("opening_and_reading_the_home_key_take_two_round_trips")
    else {
        return;
    };
    let port = free_port();
    let _server = TestServer::start(port, &[]);
    let url = format!("redis://127.0.0.1:{port}");
    // Load the scripts once, as any earlier client would have.
    let warm = Store::new(RedisStore::open(&url).await.expect("open"));
    let session = warm.open("s").await.expect("create");
    session.home_auth_key().await.expect("home");

    let stats = || async {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut con)
            .await
            .expect("reset");
        move |label: &'static str| async move {
            let mut con = con;
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut con)
                .await
                .expect("info");
            let calls: std::collections::BTreeMap<String, u64> = info
                .lines()
                .filter_map(|line| {
                    let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                    let calls = rest
                        .strip_prefix("calls=")?
                        .split(',')
                        .next()?
                        .parse()
                        .ok()?;
                    Some((name.to_owned(), calls))
                })
                .filter(|(name, _)| name != "info" && name != "config|resetstat")
                .collect();
            eprintln!("{label}: {calls:?}");
            calls
        }
    };
    let read = stats().await;
    let store = Store::new(RedisStore::open(&url).await.expect("open"));
    let opened = read("open").await;
    assert_eq!(
        opened,
        [("get".to_owned(), 1), ("set".to_owned(), 1)].into(),
        "opening sends SET NX and GET of the schema key, in one pipeline"
    );
    let read = stats().await;
    let key = store
        .session("s")
        .expect("name")
        .home_auth_key()
        .await
        .expect("home");
    assert_eq!(key, None);
    let homed = read("home").await;
    // One call from the client; the script's own commands are counted too.
    assert_eq!(
        homed.get("evalsha"),
        Some(&1),
        "the home read is one script"
    );
    assert!(
        homed
            .keys()
            .all(|name| ["evalsha", "exists", "hgetall"].contains(&name.as_str())),
        "{homed:?}"
    );
}

/// `redis+unix://` URLs reach a server on a Unix socket, with the socket
/// options redis-rs reads (`db=`, `pass=`) next to mtsession's (`prefix=`).
#[tokio::test]
async fn a_unix_socket_url_with_its_options() {
    let Some(_) = redis_server_or_skip("a_unix_socket_url_with_its_options") else {
        return;
    };
    let port = free_port();
    let sockets = tempfile::tempdir().expect("temp dir");
    let socket = sockets.path().join("redis.sock");
    let socket_text = socket.display().to_string();
    let _server = TestServer::start(
        port,
        &[
            "--unixsocket",
            &socket_text,
            "--unixsocketperm",
            "700",
            "--requirepass",
            PASSWORD,
        ],
    );
    let url = format!("redis+unix://{socket_text}?db=3&pass={PASSWORD}&prefix=sock");
    let redis = RedisStore::open(&url).await.expect("open over the socket");
    assert!(!format!("{redis:?}").contains(PASSWORD));
    let store = Store::new(redis);
    store.create("s").await.expect("create");
    let client =
        redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{port}/3")).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let version: Option<i64> = redis::cmd("GET")
        .arg("sock:schema")
        .query_async(&mut con)
        .await
        .expect("get");
    assert_eq!(
        version,
        Some(session_redis::SCHEMA_VERSION),
        "db=3 and prefix=sock"
    );
    let wrong = format!("redis+unix://{socket_text}?db=3&pass=wrong");
    let err = RedisStore::open(&wrong).await.expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(!err.to_string().contains(PASSWORD), "{err}");
}
