//! Regressions of defects found under hostile use: each test reproduces one
//! and fails on the code before its fix.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::*;

fn telethon() -> String {
    format!("telethon:{}", fixture("telethon1.session").display())
}

fn pyrogram() -> String {
    format!("pyrogram:{}", fixture("pyrogram.session").display())
}

/// Two `convert`s without `--force` into one SQLite session: exactly one wins,
/// the other reports that the session exists, and the winner's data stays.
#[test]
fn concurrency_two_converts_into_one_session_one_wins() {
    for trial in 0..10 {
        let dir = tempfile::tempdir().expect("tempdir");
        let dst = format!("sqlite:{}?session=s", dir.path().join("c.db").display());
        let spawn = |src: &str| {
            Command::new(binary())
                .args(["convert", "-q", src, &dst])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        };
        let (a, b) = (spawn(&telethon()), spawn(&pyrogram()));
        let (a, b) = (
            a.wait_with_output().expect("a"),
            b.wait_with_output().expect("b"),
        );
        let wins: Vec<bool> = [&a, &b].iter().map(|o| o.status.success()).collect();
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "trial {trial}: exactly one convert may win: {} / {}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        );
        let loser = if wins[0] { &b } else { &a };
        let message = String::from_utf8_lossy(&loser.stderr);
        assert!(
            message.contains("already exists") && message.contains("--force"),
            "trial {trial}: {message}"
        );
        let winner_src = if wins[0] { telethon() } else { pyrogram() };
        let stored = json(&["inspect", "--json", "--reveal-key", &dst]);
        let source = json(&["inspect", "--json", "--reveal-key", &winner_src]);
        assert_eq!(
            stored["dcs"], source["dcs"],
            "trial {trial}: the winner's data"
        );
    }
}

/// Writing to a full device is an error, not a silent success.
#[test]
fn stdout_errors_exit_one() {
    if !std::path::Path::new("/dev/full").exists() {
        panic!("this test needs /dev/full");
    }
    for args in [
        vec!["string", "encode", "--format", "telethon"],
        vec!["inspect"],
    ] {
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        args.push(telethon());
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let out = Command::new(binary())
            .args(&args)
            .stdout(full)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write the output"), "{stderr}");
    }
}

/// A closed pipe ends the command quietly.
#[test]
fn a_closed_pipe_is_quiet() {
    let mut child = Command::new(binary())
        .args(["peers", &telethon()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("mtsession: warning: ")),
        "only the source's warnings: {stderr}"
    );
}

/// Reading a 0-byte file or a missing file changes nothing and creates nothing.
#[test]
fn reads_never_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("e.db");
    std::fs::write(&empty, b"").expect("empty file");
    let before = snapshot(dir.path());
    for command in ["inspect", "list", "peers"] {
        fails(&[command, &format!("sqlite:{}", empty.display())]);
        fails(&[
            command,
            &format!("sqlite:{}", dir.path().join("missing.db").display()),
        ]);
    }
    assert_eq!(snapshot(dir.path()), before, "a read changed the directory");
}

/// A source that cannot be read leaves no destination behind.
#[test]
fn a_failed_convert_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = fails(&[
        "convert",
        &format!("telethon:{}", dir.path().join("missing.session").display()),
        &format!("sqlite:{}", dir.path().join("x.db").display()),
    ]);
    assert!(err.contains("missing.session"), "{err}");
    assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none());
}

/// Names are printed one per line, with control characters escaped.
#[test]
fn list_escapes_control_characters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    ok(&[
        "convert",
        "-q",
        &telethon(),
        &format!("{store}?session=alice%0Abob%09%1B[31m"),
    ]);
    assert_eq!(ok(&["list", &store]), "alice\\nbob\\t\\u{1b}[31m\n");
    let listed = json(&["list", "--json", &store]);
    assert_eq!(listed["sessions"][0], "alice\nbob\t\u{1b}[31m");
}

/// White space at the end of a session name is refused, not dropped.
#[test]
fn trailing_space_in_a_session_name_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}?session=a ", dir.path().join("s.db").display());
    let err = fails(&["convert", &telethon(), &url]);
    assert!(err.contains("white space") && err.contains("%20"), "{err}");
    assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none());
}

/// A missing destination directory is named as such.
#[test]
fn a_missing_destination_directory_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("no/such/dir/out.session");
    let err = fails(&[
        "convert",
        &telethon(),
        &format!("telethon:{}", out.display()),
    ]);
    assert!(
        err.contains("no/such/dir") && err.contains("not found"),
        "{err}"
    );
    assert!(
        !err.contains(".out.session."),
        "no temporary file name: {err}"
    );
    let err = fails(&[
        "convert",
        "--force",
        &telethon(),
        &format!("telethon:{}", dir.path().display()),
    ]);
    assert!(err.contains("is a directory"), "{err}");
}

/// A DC id out of range is found when the file is read, by inspect and
/// convert alike, naming the file and the table.
#[test]
fn an_invalid_dc_id_is_reported_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dc.session");
    std::fs::copy(fixture("telethon1.session"), &file).expect("copy");
    rusqlite::Connection::open(&file)
        .expect("open")
        .execute("UPDATE sessions SET dc_id = 100000", [])
        .expect("update");
    let src = format!("telethon:{}", file.display());
    let inspected = fails(&["inspect", &src]);
    let converted = fails(&[
        "convert",
        &src,
        &format!("sqlite:{}", dir.path().join("x.db").display()),
    ]);
    assert_eq!(inspected, converted);
    assert!(
        inspected.contains("dc.session")
            && inspected.contains("sessions table")
            && inspected.contains("100000"),
        "{inspected}"
    );
    assert!(!dir.path().join("x.db").exists());
}

/// A Telethon string pasted with its quotes decodes.
#[test]
fn quoted_strings_decode() {
    let path = root().join("fixtures/strings/telethon.json");
    let fixtures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let s = fixtures["valid"][0]["string"].as_str().expect("string");
    for quoted in [format!("'{s}'"), format!("\"{s}\"")] {
        let decoded = json(&["string", "decode", "--json", &quoted]);
        assert_eq!(decoded["format"], "telethon");
    }
}

/// URL options nobody knows are refused with the valid ones.
#[test]
fn unknown_url_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}?sesion=a", dir.path().join("s.db").display());
    let err = fails(&["convert", &telethon(), &url]);
    assert!(
        err.contains("\"sesion\"") && err.contains("valid options are session"),
        "{err}"
    );
    let err = fails(&["inspect", &format!("{}?x=1", telethon())]);
    assert!(err.contains("\"x\""), "{err}");
}

/// Every file the command writes that holds keys is 0600, under umask 022.
#[test]
fn permissions_of_written_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[String]| {
        let out = Command::new("sh")
            .arg("-c")
            .arg("umask 022; exec \"$@\"")
            .arg("sh")
            .arg(binary())
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let db = dir.path().join("store.db");
    run(&[
        "convert".into(),
        "-q".into(),
        telethon(),
        format!("sqlite:{}?session=a", db.display()),
    ]);
    let written = dir.path().join("out.session");
    run(&[
        "convert".into(),
        "-q".into(),
        telethon(),
        format!("telethon:{}", written.display()),
    ]);
    let pyro = dir.path().join("out-pyrogram.session");
    run(&[
        "convert".into(),
        "-q".into(),
        pyrogram(),
        format!("pyrogram:{}", pyro.display()),
    ]);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
}

/// Ctrl-C during `convert --all` stops between sessions and says what was copied.
#[test]
fn ctrl_c_stops_convert_all_between_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = format!("sqlite:{}", dir.path().join("src.db").display());
    let dst = format!("sqlite:{}", dir.path().join("dst.db").display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let data = mtsession::Endpoint::open(&telethon(), mtsession::OpenMode::ReadOnly)
            .await
            .expect("fixture")
            .read()
            .await
            .expect("read")
            .data;
        let store = mtsession::open(&src).await.expect("store");
        for i in 0..300 {
            store
                .import(&format!("s{i:03}"), &data)
                .await
                .expect("import");
        }
    });
    drop(runtime);
    let mut child = Command::new(binary())
        .args(["convert", "--all", &src, &dst])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let first = lines.next().expect("a progress line").expect("utf-8");
    assert!(
        first.starts_with("mtsession: copied 1/300 sessions"),
        "{first}"
    );
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    let last = rest.last().cloned().unwrap_or_default();
    if status.success() {
        // It finished before the signal arrived; that is allowed only when done.
        assert!(last.contains("copied 300 sessions"), "{rest:?}");
        return;
    }
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        last.starts_with("mtsession: interrupted by Ctrl-C: copied "),
        "{last}"
    );
    let copied: usize = last
        .trim_start_matches("mtsession: interrupted by Ctrl-C: copied ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    let listed = json(&["list", "--json", &dst]);
    assert_eq!(listed["sessions"].as_array().map(Vec::len), Some(copied));
}

#[cfg(feature = "sled")]
mod sled {
    use super::*;

    /// `list` and `inspect` on a directory that is not a store change nothing.
    #[test]
    fn reads_of_a_directory_that_is_not_a_store_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proj = dir.path().join("proj");
        std::fs::create_dir(&proj).expect("dir");
        std::fs::write(proj.join("build.sh"), "echo hi\n").expect("script");
        for path in [&proj, &proj.join("build.sh")] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("dir");
        let before = snapshot(dir.path());
        for url in [
            format!("sled:{}", proj.display()),
            format!("sled:{}", empty.display()),
        ] {
            let err = fails(&["list", &url]);
            assert!(err.contains("not an mtsession"), "{err}");
            fails(&["inspect", &url]);
        }
        assert_eq!(snapshot(dir.path()), before);
    }

    /// A copy between two sessions of one sled store opens it once.
    #[test]
    fn copy_between_sessions_of_one_sled_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = format!("sled:{}", dir.path().join("s.sled").display());
        ok(&["convert", "-q", &telethon(), &format!("{store}?session=a")]);
        ok(&[
            "convert",
            "-q",
            &format!("{store}?session=a"),
            &format!("{store}?session=b"),
        ]);
        assert_eq!(ok(&["list", &store]), "a\nb\n");
    }

    /// The sled store's directory and files are private.
    #[test]
    fn permissions_of_a_sled_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sled");
        let out = Command::new("sh")
            .arg("-c")
            .arg("umask 022; exec \"$@\"")
            .arg("sh")
            .arg(binary())
            .args([
                "convert",
                "-q",
                &telethon(),
                &format!("sled:{}", path.display()),
            ])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (entry, mode, bytes) in snapshot(&path) {
            let expected = if bytes.is_some() { 0o600 } else { 0o700 };
            assert_eq!(mode & 0o777, expected, "{}", entry.display());
        }
    }
}
