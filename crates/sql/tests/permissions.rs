//! Permission tests on `sql+sqlite:`: the database file and its `-wal` and
//! `-shm` files, which hold auth keys, are created 0600 under an open umask
//! (issue 8, defect 4: they were 0644 under umask 022); an existing file
//! keeps its mode and its side files grant no more than it does.

#![cfg(feature = "sqlite")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::child::{self, Spawn, setting, side};
use session_core::{AuthKey, Store};
use session_sql::SqlStore;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
#[ignore = "child process of the permission tests, started by them"]
fn child_process() {
    assert_eq!(
        child::role().as_deref(),
        Some("store"),
        "started by a permission test"
    );
    let db = setting("DB");
    let db = Path::new(&db);
    child::runtime().block_on(async {
        // Keep the store open while the modes are checked: -wal and -shm
        // exist only while a connection has the file open.
        let store = Store::new(
            SqlStore::open(&format!("sql+sqlite:{}", db.display()))
                .await
                .expect("open"),
        );
        let session = store.open("s").await.expect("session");
        session
            .set_auth_key(2, Some(AuthKey::new([1; 256])))
            .await
            .expect("key");
        for file in [db.to_owned(), side(db, "-wal"), side(db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        println!("modes ok");
    });
}

fn check_under_umask(umask: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("private.db");
    let lines = Spawn::role("store")
        .setting("DB", db.display())
        .umask(umask)
        .start(format!("store under umask {umask}"))
        .wait_success();
    assert!(lines.iter().any(|l| l == "modes ok"), "{lines:?}");
    // Reopened in this process, the file keeps its mode.
    let runtime = child::runtime();
    runtime
        .block_on(SqlStore::open(&format!("sql+sqlite:{}", db.display())))
        .expect("reopen");
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn permissions_store_files_are_0600_under_umask_022() {
    check_under_umask("022");
}

#[test]
fn permissions_store_files_are_0600_under_umask_000() {
    check_under_umask("000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_an_existing_files_mode_is_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");
    std::fs::write(&path, b"").expect("empty file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let store = Store::new(
        SqlStore::open(&format!("sql+sqlite:{}", path.display()))
            .await
            .expect("open"),
    );
    store.create("s").await.expect("create");
    assert_eq!(mode(&path), 0o640);
    for suffix in ["-wal", "-shm"] {
        assert_eq!(
            mode(&side(&path, suffix)) & !0o640,
            0,
            "{suffix} grants no more than the file"
        );
    }
}
