//! Several OS processes on one file. The test binary runs itself as the
//! child processes: `child_process` does nothing unless the role variable is set.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::{Peer, PeerId, SessionStore, SessionStoreExt, UpdateStateChange};
use session_sqlite::SqliteStore;

const ROLE: &str = "MTSESSION_SQLITE_TEST_ROLE";
const DB: &str = "MTSESSION_SQLITE_TEST_DB";

/// Update-state writes per writer process.
const WRITES: i64 = 2_000;
/// Peers per batch; a batch is cached every `BATCH` writes.
const BATCH: i64 = 40;

/// The ids a writer uses, distinct per writer.
fn base(writer: i64) -> i64 {
    (writer + 1) * 1_000_000
}

fn ready_file(db: &Path, writer: i64) -> PathBuf {
    db.with_extension(format!("ready-{writer}"))
}

fn user(id: i64) -> PeerId {
    PeerId::user(id).expect("user id")
}

fn peer(writer: i64, i: i64) -> Peer {
    Peer::new(user(base(writer) + i))
        .with_hash(i)
        .with_username(format!("W{writer}_user_{i}"))
        .with_phone(format!("{}", base(writer) + i))
}

/// Runs in a child process: the role says what to do. Ignored in a normal
/// run; the parent tests start it with `--ignored`.
#[test]
#[ignore = "child process of the two-process tests, started by them"]
fn child_process() {
    let role = std::env::var(ROLE).expect("started by a two-process test, which sets the role");
    let db = PathBuf::from(std::env::var(DB).expect("the parent names the database"));
    match role.as_str() {
        "umask" => check_modes_under_open_umask(&db),
        writer => {
            let writer: i64 = writer.parse().expect("a writer number");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(write_concurrently(&db, writer));
        }
    }
}

async fn write_concurrently(db: &Path, writer: i64) {
    // Both writers open (and so initialize) the new file at the same time.
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(db).expect("open"));
    let shared = store.open("shared").await.expect("shared session");
    let own = store
        .open(&format!("own-{writer}"))
        .await
        .expect("own session");
    std::fs::write(ready_file(db, writer), b"").expect("ready file");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(0..2).all(|w| ready_file(db, w).exists()) {
        assert!(
            Instant::now() < deadline,
            "the other writer never got ready"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    // A reader task in the same process, reading while everyone writes.
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = tokio::spawn({
        let (shared, reading) = (shared.clone(), Arc::clone(&reading));
        async move {
            let mut reads = 0u64;
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                shared.update_state().await?;
                shared.peer_count().await?;
                shared
                    .peer_by_username(&format!("w{}_user_1", 1 - writer))
                    .await?;
                reads += 1;
            }
            Ok::<_, session_core::Error>(reads)
        }
    });

    let mut batch = Vec::new();
    for i in 1..=WRITES {
        shared
            .set_update_state(UpdateStateChange::Channel {
                id: base(writer) + i,
                pts: i32::try_from(i).expect("small"),
            })
            .await
            .expect("update-state write");
        own.set_update_state(UpdateStateChange::Primary {
            pts: i32::try_from(i).expect("small"),
            date: 1,
            seq: 2,
        })
        .await
        .expect("own update-state write");
        batch.push(peer(writer, i));
        if i % BATCH == 0 {
            shared.cache_peers(&batch).await.expect("peer batch");
            batch.clear();
        }
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.expect("reader task").expect("reads");
    assert!(reads > 0);
}

fn check_modes_under_open_umask(db: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    runtime.block_on(async {
        let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(db).expect("open"));
        store.create("s").await.expect("create");
        let mut files = vec![db.to_owned()];
        for suffix in ["-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            files.push(PathBuf::from(name));
        }
        for file in files {
            let mode = std::fs::metadata(&file)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{} under umask 000", file.display());
        }
    });
}

fn spawn_child(role: &str, db: &Path, umask_zero: bool) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    let args = [
        "--exact",
        "child_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut command = if umask_zero {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("umask 000 && exec \"$@\"")
            .arg("sh")
            .arg(&exe)
            .args(args);
        sh
    } else {
        let mut direct = Command::new(&exe);
        direct.args(args);
        direct
    };
    command
        .env(ROLE, role)
        .env(DB, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn check_child(name: &str, output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains("database is locked") && !stderr.contains("database is locked"),
        "{name} saw 'database is locked':\n{stdout}\n{stderr}"
    );
    assert!(
        output.status.success(),
        "{name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "{name} ran its role:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_write_one_file_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shared.sqlite");
    let children: Vec<_> = (0..2)
        .map(|w| spawn_child(&w.to_string(), &db, false))
        .collect();

    // This process reads while both write (and races them to create the file).
    let store: Arc<dyn SessionStore> = Arc::new(SqliteStore::open(&db).expect("open"));
    let waits: Vec<_> = children
        .into_iter()
        .map(|child| tokio::task::spawn_blocking(move || child.wait_with_output()))
        .collect();
    let mut reads = 0;
    while !waits.iter().all(|w| w.is_finished()) {
        if store.exists("shared").await.expect("exists") {
            store
                .update_state("shared")
                .await
                .expect("read while writing");
            store
                .peer_count("shared")
                .await
                .expect("count while writing");
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (n, wait) in waits.into_iter().enumerate() {
        let output = wait.await.expect("join").expect("child output");
        check_child(&format!("writer {n}"), &output);
    }
    assert!(reads > 0, "the parent read while the children wrote");

    // Nothing written is lost.
    let state = store.update_state("shared").await.expect("state");
    let mut expected = BTreeMap::new();
    for w in 0..2 {
        for i in 1..=WRITES {
            expected.insert(base(w) + i, i32::try_from(i).expect("small"));
        }
    }
    assert_eq!(state.channels, expected);
    assert_eq!(
        store.peer_count("shared").await.expect("count"),
        2 * u64::try_from(WRITES).expect("n")
    );
    let session = store.session("shared").expect("handle");
    for w in 0..2 {
        let ids: Vec<PeerId> = (1..=WRITES).map(|i| user(base(w) + i)).collect();
        let found = session.peers(&ids).await.expect("lookup");
        for (i, peer) in (1..=WRITES).zip(found) {
            assert_eq!(peer, Some(peer_of(w, i)), "writer {w} peer {i}");
        }
        let by_name = session
            .peer_by_username(&format!("w{w}_user_{WRITES}"))
            .await
            .expect("name");
        assert_eq!(by_name.map(|p| p.id), Some(user(base(w) + WRITES)));
        let own = store
            .update_state(&format!("own-{w}"))
            .await
            .expect("own state");
        assert_eq!(own.pts, i32::try_from(WRITES).expect("small"));
    }
}

fn peer_of(writer: i64, i: i64) -> Peer {
    peer(writer, i).normalized().expect("valid peer")
}

#[test]
fn files_are_private_under_an_open_umask() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("umask.sqlite");
    let output = spawn_child("umask", &db, true)
        .wait_with_output()
        .expect("child output");
    check_child("umask child", &output);
}
