//! Permissions: every directory the store creates is 0700 and every file
//! 0600, under umask 022 (which would make them 0755 and 0644): the store's
//! directory and the parents it creates, sled's `conf`, `db`, `blobs/` and
//! `snap.*` files, whether written at open, by writes, by a flush or when
//! the store closes, and the private copy a read-only open reads.
//!
//! The umask is per process, so the child, an ignored test of this binary,
//! runs under `sh -c 'umask 022; exec ...'` and checks as it goes; the
//! parent checks again once the child has exited.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use session_core::{AuthKey, OpenMode, Peer, PeerId, SessionData, Store};
use session_sled::SledStore;

const DIR_VAR: &str = "MTSESSION_SLED_PERMISSIONS_DIR";

/// Every entry under `root` (and `root` itself) whose mode is not 0700 for
/// a directory or 0600 for a file, and how many files were seen.
fn wrong_modes(root: &Path) -> (Vec<String>, usize) {
    let mut wrong = Vec::new();
    let mut files = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o7777;
        if mode != 0o700 {
            wrong.push(format!("{} {mode:o}", dir.display()));
        }
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files += 1;
                let mode = meta.permissions().mode() & 0o7777;
                if mode != 0o600 {
                    wrong.push(format!("{} {mode:o}", entry.path().display()));
                }
            }
        }
    }
    (wrong, files)
}

fn assert_private(root: &Path, when: &str) {
    let (wrong, files) = wrong_modes(root);
    assert!(wrong.is_empty(), "{when}: not private: {wrong:?}");
    assert!(files > 0, "{when}: no files under {}", root.display());
}

fn store_path(dir: &Path) -> PathBuf {
    dir.join("nested").join("parents").join("store")
}

fn big_session() -> SessionData {
    let mut data = SessionData::default();
    data.dcs[1].auth_key = Some(AuthKey::new([3; 256]));
    data.peers = (1..=3_000)
        .map(|i| {
            Peer::new(PeerId::user(i).expect("id"))
                .with_hash(i)
                .with_username(format!("user{i}"))
                .with_name("x".repeat(900))
        })
        .collect();
    data
}

/// Child: creates and uses a store under umask 022, checking modes as it goes.
#[tokio::test]
#[ignore = "child process of permissions_are_private_under_umask_022"]
async fn permissions_child_uses_a_store() {
    let dir = PathBuf::from(std::env::var(DIR_VAR).expect("run by the parent test"));
    let path = store_path(&dir);
    let nested = dir.join("nested");
    {
        let store = Store::new(SledStore::open(&path).await.expect("creates"));
        assert_private(&nested, "after create");
        let session = store.open("alice").await.expect("session");
        session
            .set_auth_key(2, Some(AuthKey::new([7; 256])))
            .await
            .expect("key");
        for round in 0..3 {
            store
                .import(&format!("big-{round}"), &big_session())
                .await
                .expect("import");
        }
        store.flush().await.expect("flush");
        assert_private(&nested, "after writes and a flush");
    }
    assert_private(&nested, "after close");
    {
        let store = SledStore::builder(&path)
            .mode(OpenMode::ReadWrite)
            .open()
            .await
            .expect("reopens");
        drop(store);
    }
    assert_private(&nested, "after a reopen");
    // A read-only open reads a private copy in the temporary directory.
    let temp = dir.join("tmp");
    {
        let store = Store::new(
            SledStore::builder(&path)
                .mode(OpenMode::ReadOnly)
                .open()
                .await
                .expect("read-only"),
        );
        assert_eq!(store.list().await.expect("list").len(), 4);
        let copies: Vec<_> = std::fs::read_dir(&temp)
            .expect("temp dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(copies.len(), 1, "one private copy: {copies:?}");
        assert_private(&copies[0], "the private copy");
    }
    assert_eq!(
        std::fs::read_dir(&temp).expect("temp dir").count(),
        0,
        "the private copy was not removed"
    );
    println!("CHILD-RESULT ok");
}

#[test]
fn permissions_are_private_under_umask_022() {
    let dir = tempfile::Builder::new()
        .prefix("mtsession-sled-permissions-")
        .tempdir()
        .expect("a temporary directory");
    let temp = dir.path().join("tmp");
    std::fs::create_dir(&temp).expect("temp dir");
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--ignored",
            "--exact",
            "permissions_child_uses_a_store",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .env("TMPDIR", &temp)
        .output()
        .expect("the child runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && out.contains("CHILD-RESULT ok"),
        "the child failed:\n{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_private(&dir.path().join("nested"), "after the child exited");
    // What umask 022 gives a directory created without care, for contrast.
    let plain = dir.path().join("plain");
    let status = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && mkdir \"$0\"")
        .arg(&plain)
        .status()
        .expect("mkdir");
    assert!(status.success());
    let mode = std::fs::metadata(&plain).expect("dir").permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the child did not run under umask 022");
}
