//! Permission tests: the database file and its `-wal` and `-shm` files,
//! which hold auth keys, are created 0600 under an open umask, for both
//! durability policies and for the server store; an existing file keeps its
//! mode and its side files grant no more than it does.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Spawn, setting, side};
use session_core::{AuthKey, Durability, ServerStore, Store};
use session_sqlite::{SqliteServerStore, SqliteStore};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn durability(name: &str) -> Durability {
    match name {
        "immediate" => Durability::Immediate,
        _ => Durability::WriteBehind {
            max_delay: Duration::from_millis(20),
        },
    }
}

#[test]
#[ignore = "child process of the permission tests, started by them"]
fn child_process() {
    let Some(role) = common::role() else {
        panic!("started by a permission test, which sets the role");
    };
    let db = setting("DB");
    let db = Path::new(&db);
    let policy = setting("DURABILITY");
    common::runtime().block_on(async {
        // Keep the store open while the modes are checked: -wal and -shm
        // exist only while a connection has the file open.
        let _open: Box<dyn std::any::Any> = match role.as_str() {
            "store" => {
                let store = Store::new(
                    SqliteStore::builder(db)
                        .durability(durability(&policy))
                        .open()
                        .await
                        .expect("open"),
                );
                let session = store.open("s").await.expect("session");
                session
                    .set_auth_key(2, Some(AuthKey::new([1; 256])))
                    .await
                    .expect("key");
                Box::new(store)
            }
            "server" => {
                let server = SqliteServerStore::builder(db)
                    .durability(durability(&policy))
                    .open()
                    .await
                    .expect("open");
                server
                    .put_auth_key(&AuthKey::new([1; 256]))
                    .await
                    .expect("key");
                Box::new(server)
            }
            other => panic!("unknown role {other}"),
        };
        for file in [db.to_owned(), side(db, "-wal"), side(db, "-shm")] {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        println!("modes ok");
    });
}

fn check_under_umask(role: &str, policy: &str, umask: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("private.sqlite");
    let lines = Spawn::role(role)
        .setting("DB", db.display())
        .setting("DURABILITY", policy)
        .umask(umask)
        .start(format!("{role} {policy} under umask {umask}"))
        .wait_success();
    assert!(lines.iter().any(|l| l == "modes ok"), "{lines:?}");
    // Reopened in this process, the file keeps its mode.
    let runtime = common::runtime();
    runtime.block_on(SqliteStore::open(&db)).expect("reopen");
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn permissions_immediate_store_files_are_0600_under_umask_022() {
    check_under_umask("store", "immediate", "022");
}

#[test]
fn permissions_write_behind_store_files_are_0600_under_umask_022() {
    check_under_umask("store", "write-behind", "022");
}

#[test]
fn permissions_server_store_files_are_0600_under_umask_022() {
    check_under_umask("server", "immediate", "022");
}

#[test]
fn permissions_write_behind_server_store_files_are_0600_under_umask_022() {
    check_under_umask("server", "write-behind", "022");
}

#[test]
fn permissions_store_files_are_0600_under_umask_000() {
    check_under_umask("store", "immediate", "000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_an_existing_files_mode_is_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.sqlite");
    std::fs::write(&path, b"").expect("empty file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let store = Store::new(SqliteStore::open(&path).await.expect("open"));
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
