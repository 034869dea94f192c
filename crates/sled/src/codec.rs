//! Keys and values as they are laid out in the trees.
//!
//! Every key of per-session data starts with [`prefix`]: one byte holding the
//! length of the session name, the name's UTF-8 bytes, and the big-endian
//! generation of the session (see the crate docs). Because the length comes
//! first, no session's keys are a prefix of another's ("a" and "ab" differ in
//! the first byte). Signed integers in keys are stored big-endian with the sign
//! bit flipped, so byte order is numeric order.
//!
//! Every value starts with a format byte ([`FORMAT_V1`]) except the username
//! and phone index values, which are exactly 8 bytes (a marked peer id).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use session_core::{
    AUTH_KEY_LEN, AccessHash, AuthKey, DcOption, FileKind, LeaseInfo, Peer, PeerId, PeerKind,
    SelfUser, SentFile, SentFileKey, SessionHeader, UpdateState,
};

/// The first byte of every versioned value written by this build.
pub(crate) const FORMAT_V1: u8 = 1;

/// Why a stored value could not be decoded (becomes `Error::Corrupt`).
#[derive(Debug)]
pub(crate) struct Decode(pub(crate) String);

pub(crate) type DecodeResult<T> = std::result::Result<T, Decode>;

/// An `i64` as 8 bytes whose byte order is numeric order.
pub(crate) fn flip_i64(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`flip_i64`].
pub(crate) fn unflip_i64(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// An `i32` as 4 bytes whose byte order is numeric order.
pub(crate) fn flip_i32(value: i32) -> [u8; 4] {
    ((value as u32) ^ (1 << 31)).to_be_bytes()
}

/// The inverse of [`flip_i32`].
pub(crate) fn unflip_i32(bytes: [u8; 4]) -> i32 {
    (u32::from_be_bytes(bytes) ^ (1 << 31)) as i32
}

/// The key prefix of one generation of one session. `session` is at most 255
/// bytes (checked by the store before any key is built).
pub(crate) fn prefix(session: &str, generation: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + session.len() + 8 + 24);
    key.push(u8::try_from(session.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(session.as_bytes());
    key.extend_from_slice(&generation.to_be_bytes());
    key
}

/// `prefix` followed by `suffix`.
pub(crate) fn key(prefix: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + suffix.len());
    key.extend_from_slice(prefix);
    key.extend_from_slice(suffix);
    key
}

/// The part of a key after a prefix of `len` bytes.
pub(crate) fn suffix(key: &[u8], len: usize) -> DecodeResult<&[u8]> {
    key.get(len..).ok_or_else(|| {
        Decode(format!(
            "key of {} bytes is shorter than its prefix",
            key.len()
        ))
    })
}

/// Reads a fixed-size array from a key suffix.
pub(crate) fn fixed<const N: usize>(bytes: &[u8], what: &str) -> DecodeResult<[u8; N]> {
    bytes.try_into().map_err(|_| {
        Decode(format!(
            "{what} key part has {} bytes, expected {N}",
            bytes.len()
        ))
    })
}

/// A session's row in the `sessions` tree: the header, plus what the store
/// keeps to find and check the session's other keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The generation all of the session's other keys carry.
    pub(crate) generation: u64,
    /// Bumped by every write to the session; lets readers detect concurrent writes.
    pub(crate) revision: u64,
    /// Home DC, self user, api_id, test mode, takeout id and the times.
    pub(crate) header: SessionHeader,
    /// How many peers the session caches.
    pub(crate) peer_count: u64,
}

const REC_SELF: u8 = 1;
const REC_SELF_BOT: u8 = 1 << 1;
const REC_API_ID: u8 = 1 << 2;
const REC_TEST_MODE: u8 = 1 << 3;
const REC_TAKEOUT: u8 = 1 << 4;

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let header = &self.header;
        let mut out = Vec::with_capacity(72);
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.revision.to_be_bytes());
        out.extend_from_slice(&header.home_dc.to_be_bytes());
        let mut flags = 0;
        if let Some(user) = header.self_user {
            flags |= REC_SELF;
            if user.is_bot {
                flags |= REC_SELF_BOT;
            }
        }
        if header.api_id.is_some() {
            flags |= REC_API_ID;
        }
        if header.test_mode {
            flags |= REC_TEST_MODE;
        }
        if header.takeout_id.is_some() {
            flags |= REC_TAKEOUT;
        }
        out.push(flags);
        if let Some(user) = header.self_user {
            out.extend_from_slice(&user.id.to_be_bytes());
        }
        if let Some(api_id) = header.api_id {
            out.extend_from_slice(&api_id.to_be_bytes());
        }
        if let Some(takeout) = header.takeout_id {
            out.extend_from_slice(&takeout.to_be_bytes());
        }
        out.extend_from_slice(&header.created_at_ms.to_be_bytes());
        out.extend_from_slice(&header.updated_at_ms.to_be_bytes());
        out.extend_from_slice(&self.peer_count.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> DecodeResult<Record> {
        let mut r = Reader::versioned(bytes, "session record")?;
        let generation = r.u64()?;
        let revision = r.u64()?;
        let home_dc = r.i32()?;
        let flags = r.u8()?;
        if flags & !(REC_SELF | REC_SELF_BOT | REC_API_ID | REC_TEST_MODE | REC_TAKEOUT) != 0 {
            return Err(Decode(format!(
                "session record has unknown flags {flags:#04x}"
            )));
        }
        let self_user = if flags & REC_SELF != 0 {
            Some(SelfUser {
                id: r.i64()?,
                is_bot: flags & REC_SELF_BOT != 0,
            })
        } else {
            None
        };
        let api_id = if flags & REC_API_ID != 0 {
            Some(r.i32()?)
        } else {
            None
        };
        let takeout_id = if flags & REC_TAKEOUT != 0 {
            Some(r.i64()?)
        } else {
            None
        };
        let record = Record {
            generation,
            revision,
            header: SessionHeader {
                home_dc,
                self_user,
                api_id,
                test_mode: flags & REC_TEST_MODE != 0,
                takeout_id,
                created_at_ms: r.i64()?,
                updated_at_ms: r.i64()?,
            },
            peer_count: r.u64()?,
        };
        r.finish()?;
        Ok(record)
    }
}

/// The `state` value: pts, qts, date, seq (channels live in their own tree).
pub(crate) fn encode_state(state: &UpdateState) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(FORMAT_V1);
    for v in [state.pts, state.qts, state.date, state.seq] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The inverse of [`encode_state`]; `channels` is left empty.
pub(crate) fn decode_state(bytes: &[u8]) -> DecodeResult<UpdateState> {
    let mut r = Reader::versioned(bytes, "update state")?;
    let state = UpdateState {
        pts: r.i32()?,
        qts: r.i32()?,
        date: r.i32()?,
        seq: r.i32()?,
        channels: Default::default(),
    };
    r.finish()?;
    Ok(state)
}

/// A channel's pts value.
pub(crate) fn encode_channel_pts(pts: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(5);
    out.push(FORMAT_V1);
    out.extend_from_slice(&pts.to_be_bytes());
    out
}

/// The inverse of [`encode_channel_pts`].
pub(crate) fn decode_channel_pts(bytes: &[u8]) -> DecodeResult<i32> {
    let mut r = Reader::versioned(bytes, "channel pts")?;
    let pts = r.i32()?;
    r.finish()?;
    Ok(pts)
}

const DC_V4: u8 = 1;
const DC_V6: u8 = 1 << 1;
const DC_KEY: u8 = 1 << 2;

/// A DC option value (the id is in the key).
pub(crate) fn encode_dc(dc: &DcOption) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 6 + 26 + AUTH_KEY_LEN);
    out.push(FORMAT_V1);
    let mut flags = 0;
    if dc.ipv4.is_some() {
        flags |= DC_V4;
    }
    if dc.ipv6.is_some() {
        flags |= DC_V6;
    }
    if dc.auth_key.is_some() {
        flags |= DC_KEY;
    }
    out.push(flags);
    if let Some(v4) = dc.ipv4 {
        out.extend_from_slice(&v4.ip().octets());
        out.extend_from_slice(&v4.port().to_be_bytes());
    }
    if let Some(v6) = dc.ipv6 {
        out.extend_from_slice(&v6.ip().octets());
        out.extend_from_slice(&v6.port().to_be_bytes());
        out.extend_from_slice(&v6.flowinfo().to_be_bytes());
        out.extend_from_slice(&v6.scope_id().to_be_bytes());
    }
    if let Some(key) = &dc.auth_key {
        out.extend_from_slice(key.expose());
    }
    out
}

/// The inverse of [`encode_dc`].
pub(crate) fn decode_dc(id: i32, bytes: &[u8]) -> DecodeResult<DcOption> {
    let mut r = Reader::versioned(bytes, "DC option")?;
    let flags = r.u8()?;
    if flags & !(DC_V4 | DC_V6 | DC_KEY) != 0 {
        return Err(Decode(format!("DC option has unknown flags {flags:#04x}")));
    }
    let ipv4 = if flags & DC_V4 != 0 {
        let ip = Ipv4Addr::from(r.array::<4>()?);
        Some(SocketAddrV4::new(ip, r.u16()?))
    } else {
        None
    };
    let ipv6 = if flags & DC_V6 != 0 {
        let ip = Ipv6Addr::from(r.array::<16>()?);
        let port = r.u16()?;
        let flowinfo = r.u32()?;
        let scope = r.u32()?;
        Some(SocketAddrV6::new(ip, port, flowinfo, scope))
    } else {
        None
    };
    let auth_key = if flags & DC_KEY != 0 {
        Some(AuthKey::new(r.array::<AUTH_KEY_LEN>()?))
    } else {
        None
    };
    r.finish()?;
    Ok(DcOption {
        id,
        ipv4,
        ipv6,
        auth_key,
    })
}

const PEER_KIND: u8 = 1;
const PEER_HASH: u8 = 1 << 1;
const PEER_HASH_MIN: u8 = 1 << 2;
const PEER_USERNAMES: u8 = 1 << 3;
const PEER_PHONE: u8 = 1 << 4;
const PEER_NAME: u8 = 1 << 5;
const PEER_LAST_SEEN: u8 = 1 << 6;

/// A peer value (the id is in the key). Core bounds every text to 1 024
/// bytes, so each length fits the 4-byte length field.
pub(crate) fn encode_peer(peer: &Peer) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_V1);
    let mut flags = 0;
    if peer.kind.is_some() {
        flags |= PEER_KIND;
    }
    if let Some(hash) = peer.access_hash {
        flags |= PEER_HASH;
        if hash.min {
            flags |= PEER_HASH_MIN;
        }
    }
    if peer.usernames.is_some() {
        flags |= PEER_USERNAMES;
    }
    if peer.phone.is_some() {
        flags |= PEER_PHONE;
    }
    if peer.name.is_some() {
        flags |= PEER_NAME;
    }
    if peer.last_seen.is_some() {
        flags |= PEER_LAST_SEEN;
    }
    out.push(flags);
    if let Some(kind) = peer.kind {
        out.push(u8::try_from(kind.code()).unwrap_or(0));
    }
    if let Some(hash) = peer.access_hash {
        out.extend_from_slice(&hash.value.to_be_bytes());
    }
    if let Some(usernames) = &peer.usernames {
        put_len(&mut out, usernames.len());
        for username in usernames {
            put_text(&mut out, username);
        }
    }
    if let Some(phone) = &peer.phone {
        put_text(&mut out, phone);
    }
    if let Some(name) = &peer.name {
        put_text(&mut out, name);
    }
    if let Some(seen) = peer.last_seen {
        out.extend_from_slice(&seen.to_be_bytes());
    }
    out
}

/// The inverse of [`encode_peer`].
pub(crate) fn decode_peer(id: PeerId, bytes: &[u8]) -> DecodeResult<Peer> {
    let mut r = Reader::versioned(bytes, "peer")?;
    let flags = r.u8()?;
    if flags & 0x80 != 0 {
        return Err(Decode(format!("peer has unknown flags {flags:#04x}")));
    }
    let kind = if flags & PEER_KIND != 0 {
        let code = r.u8()?;
        Some(
            PeerKind::from_code(i64::from(code))
                .ok_or_else(|| Decode(format!("peer kind code {code} is not a known peer kind")))?,
        )
    } else {
        None
    };
    let access_hash = if flags & PEER_HASH != 0 {
        Some(AccessHash {
            value: r.i64()?,
            min: flags & PEER_HASH_MIN != 0,
        })
    } else {
        None
    };
    let usernames = if flags & PEER_USERNAMES != 0 {
        let count = r.len()?;
        let mut names = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            names.push(r.text()?);
        }
        Some(names)
    } else {
        None
    };
    let phone = if flags & PEER_PHONE != 0 {
        Some(r.text()?)
    } else {
        None
    };
    let name = if flags & PEER_NAME != 0 {
        Some(r.text()?)
    } else {
        None
    };
    let last_seen = if flags & PEER_LAST_SEEN != 0 {
        Some(r.i64()?)
    } else {
        None
    };
    r.finish()?;
    Ok(Peer {
        id,
        kind,
        access_hash,
        usernames,
        phone,
        name,
        last_seen,
    })
}

/// The key suffix of a peer.
pub(crate) fn peer_suffix(id: PeerId) -> [u8; 8] {
    flip_i64(id.marked())
}

/// A marked id stored in an index value or key suffix.
pub(crate) fn decode_peer_id(bytes: &[u8]) -> DecodeResult<PeerId> {
    let marked = unflip_i64(fixed::<8>(bytes, "peer id")?);
    PeerId::from_marked(marked).map_err(|_| Decode(format!("{marked} is not a marked peer id")))
}

/// The key suffix of a sent file: md5, size, kind.
pub(crate) fn file_suffix(key: &SentFileKey) -> [u8; 25] {
    let mut out = [0u8; 25];
    out[..16].copy_from_slice(&key.md5);
    out[16..24].copy_from_slice(&flip_i64(key.size));
    out[24] = u8::try_from(key.kind.code()).unwrap_or(0);
    out
}

/// The inverse of [`file_suffix`].
pub(crate) fn decode_file_suffix(bytes: &[u8]) -> DecodeResult<SentFileKey> {
    let bytes = fixed::<25>(bytes, "sent file")?;
    let mut md5 = [0u8; 16];
    md5.copy_from_slice(&bytes[..16]);
    let mut size = [0u8; 8];
    size.copy_from_slice(&bytes[16..24]);
    let kind = FileKind::from_code(i64::from(bytes[24]))
        .ok_or_else(|| Decode(format!("file kind code {} is not 0 or 1", bytes[24])))?;
    Ok(SentFileKey {
        md5,
        size: unflip_i64(size),
        kind,
    })
}

/// A sent-file value.
pub(crate) fn encode_file(file: &SentFile) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(FORMAT_V1);
    out.extend_from_slice(&file.id.to_be_bytes());
    out.extend_from_slice(&file.access_hash.to_be_bytes());
    out
}

/// The inverse of [`encode_file`].
pub(crate) fn decode_file(bytes: &[u8]) -> DecodeResult<SentFile> {
    let mut r = Reader::versioned(bytes, "sent file")?;
    let file = SentFile {
        id: r.i64()?,
        access_hash: r.i64()?,
    };
    r.finish()?;
    Ok(file)
}

/// A lease value: expiry and owner.
pub(crate) fn encode_lease(owner: &str, expires_at_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + owner.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(owner.as_bytes());
    out
}

/// The inverse of [`encode_lease`], as the lease on `session`.
pub(crate) fn decode_lease(session: &str, bytes: &[u8]) -> DecodeResult<LeaseInfo> {
    let mut r = Reader::versioned(bytes, "lease")?;
    let expires_at_ms = r.i64()?;
    let owner = std::str::from_utf8(r.rest())
        .map_err(|_| Decode("lease owner is not UTF-8".to_owned()))?
        .to_owned();
    Ok(LeaseInfo {
        session: session.to_owned(),
        owner,
        expires_at_ms,
    })
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_len(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// A cursor over a stored value.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks the format byte and starts after it.
    fn versioned(bytes: &'a [u8], what: &'static str) -> DecodeResult<Self> {
        match bytes.first() {
            Some(&FORMAT_V1) => Ok(Reader {
                bytes,
                pos: 1,
                what,
            }),
            Some(other) => Err(Decode(format!(
                "{what} has format byte {other}, expected {FORMAT_V1}"
            ))),
            None => Err(Decode(format!("{what} is empty"))),
        }
    }

    fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                Decode(format!(
                    "{} of {} bytes ends early: needed {n} more bytes at offset {}",
                    self.what,
                    self.bytes.len(),
                    self.pos
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn len(&mut self) -> DecodeResult<usize> {
        usize::try_from(self.u32()?)
            .map_err(|_| Decode(format!("{} has an oversized length", self.what)))
    }

    fn text(&mut self) -> DecodeResult<String> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Decode(format!("{} holds text that is not UTF-8", self.what)))
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        out
    }

    fn finish(&self) -> DecodeResult<()> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(Decode(format!(
                "{} has {} unexpected trailing bytes",
                self.what,
                self.bytes.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flipped_integers_sort_numerically() {
        let values = [i64::MIN, -1_000_000_000_042, -5, -1, 0, 1, 7, i64::MAX];
        let encoded: Vec<_> = values.iter().map(|v| flip_i64(*v)).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]));
        for v in values {
            assert_eq!(unflip_i64(flip_i64(v)), v);
        }
        let small = [i32::MIN, -1, 0, 1, i32::MAX];
        assert!(small.windows(2).all(|w| flip_i32(w[0]) < flip_i32(w[1])));
        for v in small {
            assert_eq!(unflip_i32(flip_i32(v)), v);
        }
    }

    #[test]
    fn prefixes_of_names_never_collide() {
        let a = prefix("a", 1);
        let ab = prefix("ab", 1);
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab));
        assert!(!prefix("a", 1).starts_with(&prefix("a", 2)));
    }

    #[test]
    fn record_round_trip() {
        let record = Record {
            generation: 9,
            revision: u64::MAX,
            header: SessionHeader {
                home_dc: 4,
                self_user: Some(SelfUser {
                    id: 77,
                    is_bot: true,
                }),
                api_id: Some(-3),
                test_mode: true,
                takeout_id: Some(i64::MIN),
                created_at_ms: 1,
                updated_at_ms: 2,
            },
            peer_count: 3,
        };
        assert_eq!(Record::decode(&record.encode()).expect("decodes"), record);
        let bare = Record {
            header: SessionHeader {
                self_user: None,
                api_id: None,
                takeout_id: None,
                test_mode: false,
                ..record.header.clone()
            },
            ..record
        };
        assert_eq!(Record::decode(&bare.encode()).expect("decodes"), bare);
    }

    #[test]
    fn peer_round_trip() {
        let id = PeerId::channel(5).expect("valid");
        let full = Peer {
            id,
            kind: Some(PeerKind::Megagroup),
            access_hash: Some(AccessHash::min(-9)),
            usernames: Some(vec!["Ünï".into(), "b".into()]),
            phone: Some("123".into()),
            name: Some(String::new()),
            last_seen: Some(-1),
        };
        assert_eq!(decode_peer(id, &encode_peer(&full)).expect("decodes"), full);
        let empty = Peer::new(id);
        assert_eq!(
            decode_peer(id, &encode_peer(&empty)).expect("decodes"),
            empty
        );
        let none = Peer {
            usernames: Some(vec![]),
            ..Peer::new(id)
        };
        assert_eq!(decode_peer(id, &encode_peer(&none)).expect("decodes"), none);
    }

    #[test]
    fn dc_round_trip_keeps_key_and_v6_details() {
        let dc = DcOption {
            id: 3,
            ipv4: Some(SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 443)),
            ipv6: Some(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 7, 9)),
            auth_key: Some(AuthKey::new([0x5A; AUTH_KEY_LEN])),
        };
        assert_eq!(decode_dc(3, &encode_dc(&dc)).expect("decodes"), dc);
        let bare = DcOption::new(1, None, None);
        assert_eq!(decode_dc(1, &encode_dc(&bare)).expect("decodes"), bare);
    }

    #[test]
    fn truncated_and_unknown_values_are_rejected() {
        let id = PeerId::user(1).expect("valid");
        let mut bytes = encode_peer(&Peer::new(id).with_name("abc"));
        bytes.pop();
        let err = decode_peer(id, &bytes).expect_err("truncated");
        assert!(err.0.contains("ends early"), "{}", err.0);
        assert!(
            decode_state(&[2, 0, 0])
                .expect_err("format")
                .0
                .contains("format byte 2")
        );
        assert!(decode_state(&[]).is_err());
        let mut state = encode_state(&UpdateState::default());
        state.push(0);
        assert!(
            decode_state(&state)
                .expect_err("trailing")
                .0
                .contains("trailing")
        );
        assert!(decode_file_suffix(&[0; 24]).is_err());
        let mut suffix = [0u8; 25];
        suffix[24] = 9;
        assert!(decode_file_suffix(&suffix).is_err());
    }

    #[test]
    fn file_and_lease_round_trip() {
        let key = SentFileKey {
            md5: [3; 16],
            size: -2,
            kind: FileKind::Photo,
        };
        assert_eq!(
            decode_file_suffix(&file_suffix(&key)).expect("decodes"),
            key
        );
        let file = SentFile {
            id: 1,
            access_hash: -1,
        };
        assert_eq!(decode_file(&encode_file(&file)).expect("decodes"), file);
        let lease = decode_lease("s", &encode_lease("ö", 5)).expect("decodes");
        assert_eq!((lease.session.as_str(), lease.owner.as_str()), ("s", "ö"));
        assert_eq!(lease.expires_at_ms, 5);
    }
}
