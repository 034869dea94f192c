//! Helpers the cases share: sample data, expected-error checks and polling.

use std::fmt::Debug;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use session_core::{
    AUTH_KEY_LEN, AuthKey, DcOption, ErrorKind, FileKind, Peer, PeerId, PeerKind, Result, SelfUser,
    SentFile, SentFileKey, Session, SessionData, UpdateState, UpdateStateChange,
};

/// Asserts that `result` failed with `kind`; `what` names the call in the message.
#[track_caller]
pub fn assert_kind<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) {
    match result {
        Err(e) if e.kind() == kind => {}
        Err(e) => panic!(
            "{what}: expected a {kind} error, got {} error: {e}",
            e.kind()
        ),
        Ok(value) => panic!("{what}: expected a {kind} error, got Ok({value:?})"),
    }
}

/// A deterministic pseudo-random sequence (SplitMix64), so failures reproduce.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next value as an `i64` (any bit pattern).
    pub fn next_i64(&mut self) -> i64 {
        i64::from_ne_bytes(self.next_u64().to_ne_bytes())
    }

    /// Fills a buffer.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A pseudo-random auth key from a seed.
pub fn key(seed: u64) -> AuthKey {
    let mut bytes = [0u8; AUTH_KEY_LEN];
    Rng::new(seed).fill(&mut bytes);
    AuthKey::new(bytes)
}

/// A key holding every byte value 0..=255 once, in order: NUL, quotes,
/// backslashes and invalid UTF-8 included.
pub fn every_byte_key() -> AuthKey {
    let mut bytes = [0u8; AUTH_KEY_LEN];
    for (slot, value) in bytes.iter_mut().zip(0u8..=255) {
        *slot = value;
    }
    AuthKey::new(bytes)
}

/// An IPv4 socket address.
pub fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port)
}

/// An IPv6 socket address (no flow info, no scope).
pub fn v6(segments: [u16; 8], port: u16) -> SocketAddrV6 {
    let [a, b, c, d, e, f, g, h] = segments;
    SocketAddrV6::new(Ipv6Addr::new(a, b, c, d, e, f, g, h), port, 0, 0)
}

/// A user id, from a bare id known to be valid.
#[track_caller]
pub fn user(bare: i64) -> PeerId {
    match PeerId::user(bare) {
        Ok(id) => id,
        Err(e) => panic!("bad user id in the suite: {e}"),
    }
}

/// A basic chat id, from a bare id known to be valid.
#[track_caller]
pub fn chat(bare: i64) -> PeerId {
    match PeerId::chat(bare) {
        Ok(id) => id,
        Err(e) => panic!("bad chat id in the suite: {e}"),
    }
}

/// A channel id, from a bare id known to be valid.
#[track_caller]
pub fn channel(bare: i64) -> PeerId {
    match PeerId::channel(bare) {
        Ok(id) => id,
        Err(e) => panic!("bad channel id in the suite: {e}"),
    }
}

/// A user peer with every field known.
pub fn full_user(bare: i64, username: &str, phone: &str) -> Peer {
    Peer {
        id: user(bare),
        kind: Some(PeerKind::User),
        access_hash: Some(session_core::AccessHash::full(
            bare.wrapping_mul(31).wrapping_add(7),
        )),
        usernames: Some(vec![username.to_owned()]),
        phone: Some(phone.to_owned()),
        name: Some(format!("User {bare}")),
        last_seen: Some(1_700_000_000 + bare),
    }
}

/// A sent-file key.
pub fn file_key(seed: u8, size: i64, kind: FileKind) -> SentFileKey {
    let mut md5 = [0u8; 16];
    for (i, byte) in md5.iter_mut().enumerate() {
        *byte = seed
            .wrapping_mul(17)
            .wrapping_add(u8::try_from(i).unwrap_or(0));
    }
    SentFileKey { md5, size, kind }
}

/// A session with every kind of data set, already canonical, so that an
/// export of what was imported compares equal to it.
pub fn rich_session(seed: u64) -> SessionData {
    let mut rng = Rng::new(seed);
    let base = i64::try_from(seed % 1_000).unwrap_or(0) * 100_000;
    let mut dcs = session_core::model::production_dcs();
    for dc in &mut dcs {
        if dc.id == 2 || dc.id == 4 {
            dc.auth_key = Some(key(seed.wrapping_add(u64::from(dc.id.unsigned_abs()))));
        }
    }
    dcs.push(DcOption {
        id: 203,
        ipv4: Some(v4(10, 0, 0, 1, 8443)),
        ipv6: None,
        auth_key: Some(key(seed.wrapping_add(203))),
    });
    let mut channels = std::collections::BTreeMap::new();
    for i in 1..=20 {
        channels.insert(base + i, i32::try_from(i * 1_000).unwrap_or(0));
    }
    let mut peers = vec![
        full_user(
            base + 1,
            &format!("Rich{seed}_One"),
            &format!("7900{seed}001"),
        ),
        Peer {
            id: user(base + 2),
            kind: Some(PeerKind::Bot),
            access_hash: Some(session_core::AccessHash::min(rng.next_i64())),
            usernames: Some(vec![format!("rich{seed}_bot"), format!("Rich{seed}Alias")]),
            phone: None,
            name: Some("Bötchen 🤖".to_owned()),
            last_seen: None,
        },
        Peer::new(chat(base + 3))
            .with_kind(PeerKind::Chat)
            .with_name("A basic group"),
        Peer {
            id: channel(base + 4),
            kind: Some(PeerKind::Broadcast),
            access_hash: Some(session_core::AccessHash::full(rng.next_i64())),
            usernames: Some(vec![]),
            phone: None,
            name: Some("Новости".to_owned()),
            last_seen: Some(0),
        },
        Peer::new(channel(base + 5))
            .with_kind(PeerKind::Megagroup)
            .with_hash(rng.next_i64())
            .with_username(format!("rich{seed}_group")),
        Peer::new(user(base + 6))
            .with_kind(PeerKind::SelfUser)
            .with_hash(rng.next_i64()),
    ];
    peers.sort_by_key(|p| p.id);
    let mut sent_files = vec![
        (
            file_key(1, 1024, FileKind::Photo),
            SentFile {
                id: rng.next_i64(),
                access_hash: 1,
            },
        ),
        (
            file_key(1, 1024, FileKind::Document),
            SentFile {
                id: 2,
                access_hash: rng.next_i64(),
            },
        ),
        (
            file_key(2, i64::MAX, FileKind::Document),
            SentFile {
                id: i64::MIN,
                access_hash: -1,
            },
        ),
    ];
    sent_files.sort_by_key(|(k, _)| *k);
    let mut data = SessionData {
        home_dc: 4,
        dcs,
        self_user: Some(SelfUser {
            id: base + 6,
            is_bot: false,
        }),
        api_id: Some(123_456),
        test_mode: true,
        takeout_id: Some(-42),
        update_state: UpdateState {
            pts: 11,
            qts: 22,
            date: 1_700_000_000,
            seq: 33,
            channels,
        },
        peers,
        sent_files,
    };
    data.canonicalize();
    data
}

/// Polls `check` every 10 ms until it returns true or `limit` passes;
/// returns whether it became true.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `data` into an existing session one call per item (home DC, each
/// DC, self user, metadata, takeout id, update state, one peer batch, each
/// sent file), the way a client fills a session, as opposed to `import`.
pub async fn write_by_calls(session: &Session, data: &SessionData) -> Result<()> {
    session.set_home_dc(data.home_dc).await?;
    for dc in &data.dcs {
        session.set_dc_option(dc).await?;
    }
    session.set_self_user(data.self_user).await?;
    session.set_metadata(data.api_id, data.test_mode).await?;
    session.set_takeout_id(data.takeout_id).await?;
    session
        .set_update_state(UpdateStateChange::All(data.update_state.clone()))
        .await?;
    session.cache_peers(&data.peers).await?;
    for (key, file) in &data.sent_files {
        session.cache_sent_file(key, file).await?;
    }
    Ok(())
}

/// How far apart a backend's clock and the test's may be, in milliseconds.
pub const CLOCK_SKEW_MS: i64 = 60_000;

/// Awaits spawned tasks in order and returns their outputs; a task that
/// panicked re-raises its panic here, so the case fails with its message.
pub async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(output) => outputs.push(output),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a task of the case was cancelled: {e}"),
        }
    }
    outputs
}
