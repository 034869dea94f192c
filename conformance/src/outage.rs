//! Numbered writes for outage and crash tests: write `n` is one of three
//! kinds (a channel's update state, a peer, a sent file) chosen by `n % 3`,
//! so that a test can keep writing through a store while its server is
//! killed, remember which numbers the store acknowledged, and check at the
//! end that every one of them is there.

use session_core::{
    Error, FileKind, Peer, PeerId, Result, SentFile, SentFileKey, Session, UpdateStateChange,
};

/// The user id of write `n` (`n` must be positive).
pub fn user(n: i64) -> PeerId {
    PeerId::user(n).expect("a positive id")
}

/// The sent-file key of write `n`.
pub fn file_key(n: i64) -> SentFileKey {
    let mut md5 = [0u8; 16];
    md5[..8].copy_from_slice(&n.to_be_bytes());
    SentFileKey {
        md5,
        size: n,
        kind: FileKind::Document,
    }
}

/// The channel pts write `n` stores.
fn pts(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Write number `n` (positive): a channel's pts, a peer with username
/// `w{n}`, or a sent file, by `n % 3`.
pub async fn write_one(session: &Session, n: i64) -> Result<()> {
    match n.rem_euclid(3) {
        0 => {
            session
                .set_update_state(UpdateStateChange::Channel { id: n, pts: pts(n) })
                .await
        }
        1 => {
            session
                .cache_peers(&[Peer::new(user(n)).with_username(format!("w{n}"))])
                .await
        }
        _ => {
            session
                .cache_sent_file(
                    &file_key(n),
                    &SentFile {
                        id: n,
                        access_hash: -n,
                    },
                )
                .await
        }
    }
}

/// Asserts that every write of `acknowledged` (numbers given to
/// [`write_one`]) is in `session`.
pub async fn assert_all_there(session: &Session, acknowledged: impl IntoIterator<Item = i64>) {
    let state = session.update_state().await.expect("read the update state");
    let data = session.export().await.expect("export the session");
    for n in acknowledged {
        match n.rem_euclid(3) {
            0 => assert_eq!(
                state.channels.get(&n).copied(),
                Some(pts(n)),
                "acknowledged channel write {n} lost"
            ),
            1 => assert!(
                data.peers.iter().any(|p| p.id == user(n)),
                "acknowledged peer write {n} lost"
            ),
            _ => assert!(
                data.sent_files.iter().any(|(k, _)| *k == file_key(n)),
                "acknowledged sent-file write {n} lost"
            ),
        }
    }
}

/// Everything an error shows: its text, its Debug and every source's, for
/// checking that no password or key leaks through any of them.
pub fn shown(err: &Error) -> String {
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    text
}
