//! The documents the store writes, and their decoding into the data model.
//!
//! Every integer that is an `i64` in the model is written as BSON Int64 (and
//! `i32` as Int32), so ids and hashes round-trip exactly. Decoding accepts
//! Int32 where Int64 is expected (a value another tool wrote narrower) and
//! rejects anything else as [`Error::Corrupt`].

use std::collections::BTreeMap;
use std::net::{SocketAddrV4, SocketAddrV6};

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc};
use session_core::{
    AccessHash, AuthKey, DcOption, Error, FileKind, Peer, PeerId, PeerKind, Result, SelfUser,
    SentFile, SentFileKey, SessionData, SessionHeader, UpdateState,
};

/// Field names of a session document.
pub(crate) mod field {
    pub(crate) const ID: &str = "_id";
    pub(crate) const HOME_DC: &str = "home_dc";
    pub(crate) const DCS: &str = "dcs";
    pub(crate) const SELF_USER: &str = "self_user";
    pub(crate) const API_ID: &str = "api_id";
    pub(crate) const TEST_MODE: &str = "test_mode";
    pub(crate) const TAKEOUT_ID: &str = "takeout_id";
    pub(crate) const CREATED_AT: &str = "created_at";
    pub(crate) const UPDATED_AT: &str = "updated_at";
    pub(crate) const UPDATE_STATE: &str = "update_state";
    pub(crate) const REV: &str = "rev";
    pub(crate) const SESSION: &str = "session";
}

/// Reads typed fields of one document, naming it in every error.
pub(crate) struct Fields<'a> {
    doc: &'a Document,
    what: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(doc: &'a Document, what: impl Into<String>) -> Self {
        Fields {
            doc,
            what: what.into(),
        }
    }

    fn corrupt(&self, key: &str, expected: &str) -> Error {
        let found = match self.doc.get(key) {
            None => "nothing".to_owned(),
            Some(value) => format!("a BSON {:?}", value.element_type()),
        };
        Error::corrupt(
            self.what.clone(),
            format!("field {key:?} should be {expected}, found {found}"),
        )
    }

    /// `None` for a missing or null field.
    fn get(&self, key: &str) -> Option<&'a Bson> {
        match self.doc.get(key) {
            None | Some(Bson::Null) => None,
            Some(value) => Some(value),
        }
    }

    pub(crate) fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::Int64(v)) => Ok(Some(*v)),
            Some(Bson::Int32(v)) => Ok(Some(i64::from(*v))),
            Some(_) => Err(self.corrupt(key, "a 64-bit integer")),
        }
    }

    pub(crate) fn i64(&self, key: &str) -> Result<i64> {
        self.opt_i64(key)?
            .ok_or_else(|| self.corrupt(key, "a 64-bit integer"))
    }

    pub(crate) fn opt_i32(&self, key: &str) -> Result<Option<i32>> {
        match self.opt_i64(key) {
            Ok(None) => Ok(None),
            Ok(Some(v)) => i32::try_from(v)
                .map(Some)
                .map_err(|_| self.corrupt(key, "a 32-bit integer")),
            Err(_) => Err(self.corrupt(key, "a 32-bit integer")),
        }
    }

    pub(crate) fn i32(&self, key: &str) -> Result<i32> {
        self.opt_i32(key)?
            .ok_or_else(|| self.corrupt(key, "a 32-bit integer"))
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::Boolean(v)) => Ok(Some(*v)),
            Some(_) => Err(self.corrupt(key, "a boolean")),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::String(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(key, "a string")),
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| self.corrupt(key, "a string"))
    }

    pub(crate) fn opt_bytes(&self, key: &str) -> Result<Option<&'a [u8]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::Binary(b)) => Ok(Some(b.bytes.as_slice())),
            Some(_) => Err(self.corrupt(key, "binary data")),
        }
    }

    pub(crate) fn opt_doc(&self, key: &str) -> Result<Option<&'a Document>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::Document(d)) => Ok(Some(d)),
            Some(_) => Err(self.corrupt(key, "an embedded document")),
        }
    }

    pub(crate) fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Bson>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.corrupt(key, "an array")),
        }
    }

    pub(crate) fn opt_millis(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Bson::DateTime(t)) => Ok(Some(t.timestamp_millis())),
            Some(Bson::Int64(v)) => Ok(Some(*v)),
            Some(_) => Err(self.corrupt(key, "a date")),
        }
    }

    pub(crate) fn millis(&self, key: &str) -> Result<i64> {
        self.opt_millis(key)?
            .ok_or_else(|| self.corrupt(key, "a date"))
    }
}

/// BinData of the generic subtype.
pub(crate) fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

fn opt<T: Into<Bson>>(value: Option<T>) -> Bson {
    value.map_or(Bson::Null, Into::into)
}

/// One DC option as stored under `dcs.<id>`.
pub(crate) fn dc_doc(dc: &DcOption) -> Document {
    doc! {
        "ipv4": opt(dc.ipv4.map(|a| a.to_string())),
        "ipv6": opt(dc.ipv6.map(|a| a.to_string())),
        "auth_key": dc.auth_key.as_ref().map_or(Bson::Null, |k| binary(k.expose())),
    }
}

fn dcs_doc(dcs: &[DcOption]) -> Document {
    dcs.iter()
        .map(|dc| (dc.id.to_string(), Bson::Document(dc_doc(dc))))
        .collect()
}

/// The DC options of a session document, sorted by id.
pub(crate) fn decode_dcs(dcs: &Document, what: &str) -> Result<Vec<DcOption>> {
    let mut out = Vec::with_capacity(dcs.len());
    for (key, value) in dcs {
        let id: i32 = key.parse().map_err(|_| {
            Error::corrupt(what, format!("DC key {key:?} should be a decimal DC id"))
        })?;
        let Bson::Document(dc) = value else {
            return Err(Error::corrupt(
                what,
                format!("DC {id} should be an embedded document"),
            ));
        };
        let dc_what = format!("{what}, DC {id}");
        let fields = Fields::new(dc, dc_what.clone());
        let ipv4 = match fields.opt_str("ipv4")? {
            None => None,
            Some(text) => Some(text.parse::<SocketAddrV4>().map_err(|_| {
                Error::corrupt(
                    dc_what.clone(),
                    format!("ipv4 should be an IPv4 address with a port, found {text:?}"),
                )
            })?),
        };
        let ipv6 = match fields.opt_str("ipv6")? {
            None => None,
            Some(text) => Some(text.parse::<SocketAddrV6>().map_err(|_| {
                Error::corrupt(
                    dc_what.clone(),
                    format!("ipv6 should be an [IPv6 address]:port, found {text:?}"),
                )
            })?),
        };
        let auth_key = match fields.opt_bytes("auth_key")? {
            None => None,
            Some(bytes) => Some(AuthKey::from_slice(bytes).map_err(|_| {
                Error::corrupt(
                    dc_what.clone(),
                    format!("auth_key should be 256 bytes, found {} bytes", bytes.len()),
                )
            })?),
        };
        out.push(DcOption {
            id,
            ipv4,
            ipv6,
            auth_key,
        });
    }
    out.sort_by_key(|dc| dc.id);
    Ok(out)
}

/// The update state as stored under `update_state`.
pub(crate) fn state_doc(state: &UpdateState) -> Document {
    let channels: Document = state
        .channels
        .iter()
        .map(|(id, pts)| (id.to_string(), Bson::Int32(*pts)))
        .collect();
    doc! {
        "pts": state.pts,
        "qts": state.qts,
        "date": state.date,
        "seq": state.seq,
        "channels": channels,
    }
}

pub(crate) fn decode_state(state: &Document, what: &str) -> Result<UpdateState> {
    let what = format!("{what}, update_state");
    let fields = Fields::new(state, what.clone());
    let mut channels = BTreeMap::new();
    if let Some(table) = fields.opt_doc("channels")? {
        for (key, value) in table {
            let id: i64 = key.parse().map_err(|_| {
                Error::corrupt(
                    what.clone(),
                    format!("channel key {key:?} should be a decimal channel id"),
                )
            })?;
            let pts = match value {
                Bson::Int32(pts) => *pts,
                _ => {
                    return Err(Error::corrupt(
                        what.clone(),
                        format!("the pts of channel {id} should be a 32-bit integer"),
                    ));
                }
            };
            channels.insert(id, pts);
        }
    }
    Ok(UpdateState {
        pts: fields.i32("pts")?,
        qts: fields.i32("qts")?,
        date: fields.i32("date")?,
        seq: fields.i32("seq")?,
        channels,
    })
}

fn self_user_bson(user: Option<SelfUser>) -> Bson {
    match user {
        None => Bson::Null,
        Some(user) => Bson::Document(doc! { "id": user.id, "is_bot": user.is_bot }),
    }
}

/// `$set` fields for the self user.
pub(crate) fn self_user_value(user: Option<SelfUser>) -> Bson {
    self_user_bson(user)
}

/// `$set` value for an optional i32.
pub(crate) fn opt_i32(value: Option<i32>) -> Bson {
    opt(value)
}

/// `$set` value for an optional i64.
pub(crate) fn opt_i64(value: Option<i64>) -> Bson {
    opt(value)
}

/// A whole session document.
pub(crate) fn session_doc(
    name: &str,
    data: &SessionData,
    created_at_ms: i64,
    updated_at_ms: i64,
    rev: i64,
) -> Document {
    doc! {
        field::ID: name,
        field::HOME_DC: data.home_dc,
        field::DCS: dcs_doc(&data.dcs),
        field::SELF_USER: self_user_bson(data.self_user),
        field::API_ID: opt(data.api_id),
        field::TEST_MODE: data.test_mode,
        field::TAKEOUT_ID: opt(data.takeout_id),
        field::CREATED_AT: DateTime::from_millis(created_at_ms),
        field::UPDATED_AT: DateTime::from_millis(updated_at_ms),
        field::UPDATE_STATE: state_doc(&data.update_state),
        field::REV: rev,
    }
}

/// The header of a session document.
pub(crate) fn decode_header(doc: &Document, what: &str) -> Result<SessionHeader> {
    let fields = Fields::new(doc, what);
    let self_user = match fields.opt_doc(field::SELF_USER)? {
        None => None,
        Some(user) => {
            let user_fields = Fields::new(user, format!("{what}, self_user"));
            Some(SelfUser {
                id: user_fields.i64("id")?,
                is_bot: user_fields.opt_bool("is_bot")?.unwrap_or(false),
            })
        }
    };
    Ok(SessionHeader {
        home_dc: fields.i32(field::HOME_DC)?,
        self_user,
        api_id: fields.opt_i32(field::API_ID)?,
        test_mode: fields.opt_bool(field::TEST_MODE)?.unwrap_or(false),
        takeout_id: fields.opt_i64(field::TAKEOUT_ID)?,
        created_at_ms: fields.millis(field::CREATED_AT)?,
        updated_at_ms: fields.millis(field::UPDATED_AT)?,
    })
}

/// The DC options of a session document, sorted by id.
pub(crate) fn decode_dcs_of(doc: &Document, what: &str) -> Result<Vec<DcOption>> {
    match Fields::new(doc, what).opt_doc(field::DCS)? {
        None => Ok(Vec::new()),
        Some(dcs) => decode_dcs(dcs, what),
    }
}

/// The update state of a session document.
pub(crate) fn decode_state_of(doc: &Document, what: &str) -> Result<UpdateState> {
    match Fields::new(doc, what).opt_doc(field::UPDATE_STATE)? {
        None => Ok(UpdateState::default()),
        Some(state) => decode_state(state, what),
    }
}

/// A peer document. Unknown fields are left out, so that "unknown" and
/// "known to be empty" (`usernames: []`) stay apart.
pub(crate) fn peer_doc(session: &str, peer: &Peer) -> Document {
    let mut doc = doc! { field::SESSION: session, "id": peer.id.marked() };
    if let Some(kind) = peer.kind {
        doc.insert("kind", kind.code());
    }
    if let Some(hash) = peer.access_hash {
        doc.insert("hash", hash.value);
        doc.insert("hash_min", hash.min);
    }
    if let Some(usernames) = &peer.usernames {
        let entries: Vec<Bson> = usernames
            .iter()
            .zip(peer.username_keys())
            .map(|(name, key)| Bson::Document(doc! { "name": name, "key": key }))
            .collect();
        doc.insert("usernames", entries);
    }
    if let Some(phone) = &peer.phone {
        doc.insert("phone", phone);
    }
    if let Some(name) = &peer.name {
        doc.insert("name", name);
    }
    if let Some(last_seen) = peer.last_seen {
        doc.insert("last_seen", last_seen);
    }
    doc
}

/// Decodes a peer document.
pub(crate) fn decode_peer(doc: &Document, collection: &str) -> Result<Peer> {
    let raw_id = Fields::new(doc, format!("mongo collection {collection:?}")).i64("id")?;
    let what = format!("mongo collection {collection:?}, peer {raw_id}");
    let fields = Fields::new(doc, what.clone());
    let id = PeerId::from_marked(raw_id)
        .map_err(|_| Error::corrupt(what.clone(), format!("{raw_id} is not a marked peer id")))?;
    let kind = match fields.opt_i64("kind")? {
        None => None,
        Some(code) => Some(PeerKind::from_code(code).ok_or_else(|| {
            Error::corrupt(
                what.clone(),
                format!("kind should be a peer kind code 1..=7, found {code}"),
            )
        })?),
    };
    let access_hash = fields
        .opt_i64("hash")?
        .map(|value| AccessHash { value, min: false });
    let access_hash = match access_hash {
        Some(mut hash) => {
            hash.min = fields.opt_bool("hash_min")?.unwrap_or(false);
            Some(hash)
        }
        None => None,
    };
    let usernames = match fields.opt_array("usernames")? {
        None => None,
        Some(entries) => {
            let mut names = Vec::with_capacity(entries.len());
            for entry in entries {
                let Bson::Document(entry) = entry else {
                    return Err(Error::corrupt(
                        what.clone(),
                        "usernames should hold embedded documents {name, key}",
                    ));
                };
                names.push(
                    Fields::new(entry, format!("{what}, usernames"))
                        .str("name")?
                        .to_owned(),
                );
            }
            Some(names)
        }
    };
    Ok(Peer {
        id,
        kind,
        access_hash,
        usernames,
        phone: fields.opt_str("phone")?.map(str::to_owned),
        name: fields.opt_str("name")?.map(str::to_owned),
        last_seen: fields.opt_i64("last_seen")?,
    })
}

/// The filter that finds one sent-file entry.
pub(crate) fn file_filter(session: &str, key: &SentFileKey) -> Document {
    doc! {
        field::SESSION: session,
        "md5": binary(&key.md5),
        "size": key.size,
        "kind": key.kind.code(),
    }
}

/// A whole sent-file document.
pub(crate) fn file_doc(session: &str, key: &SentFileKey, file: &SentFile) -> Document {
    let mut doc = file_filter(session, key);
    doc.insert("file_id", file.id);
    doc.insert("hash", file.access_hash);
    doc
}

/// The value part of a sent-file document.
pub(crate) fn decode_file_value(doc: &Document, what: &str) -> Result<SentFile> {
    let fields = Fields::new(doc, what);
    Ok(SentFile {
        id: fields.i64("file_id")?,
        access_hash: fields.i64("hash")?,
    })
}

/// A whole sent-file document.
pub(crate) fn decode_file(doc: &Document, what: &str) -> Result<(SentFileKey, SentFile)> {
    let fields = Fields::new(doc, what);
    let md5_bytes = fields.opt_bytes("md5")?.unwrap_or_default();
    let md5: [u8; 16] = md5_bytes.try_into().map_err(|_| {
        Error::corrupt(
            what,
            format!("md5 should be 16 bytes, found {} bytes", md5_bytes.len()),
        )
    })?;
    let code = fields.i64("kind")?;
    let kind = FileKind::from_code(code).ok_or_else(|| {
        Error::corrupt(
            what,
            format!("kind should be 0 (document) or 1 (photo), found {code}"),
        )
    })?;
    let key = SentFileKey {
        md5,
        size: fields.i64("size")?,
        kind,
    };
    Ok((key, decode_file_value(doc, what)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_round_trip_keeps_unknown_and_empty_apart() {
        let id = PeerId::channel(77).expect("valid");
        let full = Peer {
            id,
            kind: Some(PeerKind::Megagroup),
            access_hash: Some(AccessHash::min(i64::MIN)),
            usernames: Some(vec!["Foo".into(), "bar".into()]),
            phone: None,
            name: Some("Ünïcode 🎉".into()),
            last_seen: Some(i64::MAX),
        };
        let back = decode_peer(&peer_doc("s", &full), "peers").expect("decodes");
        assert_eq!(back, full);
        let mut empty = Peer::new(id);
        empty.usernames = Some(Vec::new());
        let back = decode_peer(&peer_doc("s", &empty), "peers").expect("decodes");
        assert_eq!(back, empty);
        let bare = Peer::new(id);
        assert_eq!(
            decode_peer(&peer_doc("s", &bare), "peers").expect("decodes"),
            bare
        );
    }

    #[test]
    fn session_round_trip() {
        let mut data = SessionData::default();
        data.dcs[1].auth_key = Some(AuthKey::new([7; 256]));
        data.self_user = Some(SelfUser {
            id: i64::MAX,
            is_bot: true,
        });
        data.api_id = Some(i32::MAX);
        data.takeout_id = Some(i64::MIN);
        data.update_state
            .channels
            .insert(i64::MAX - 1_000_000_000_000, -5);
        data.update_state.pts = 9;
        let doc = session_doc("x", &data, i64::MIN, i64::MAX, 0);
        let header = decode_header(&doc, "session").expect("decodes");
        assert_eq!(header, SessionHeader::from_data(&data, i64::MIN, i64::MAX));
        assert_eq!(decode_dcs_of(&doc, "session").expect("dcs"), data.dcs);
        assert_eq!(
            decode_state_of(&doc, "session").expect("state"),
            data.update_state
        );
    }

    #[test]
    fn corrupt_fields_are_named() {
        let doc = doc! { "session": "s", "id": 5_i64, "hash": "not a number" };
        let err = decode_peer(&doc, "p_peers").expect_err("corrupt");
        let text = err.to_string();
        assert!(
            text.contains("hash") && text.contains("64-bit integer"),
            "{text}"
        );
        let doc = doc! { "session": "s", "id": 0_i64 };
        assert!(decode_peer(&doc, "p_peers").is_err());
        let mut session = session_doc("x", &SessionData::default(), 1, 2, 0);
        session.insert("dcs", doc! { "2": { "auth_key": binary(&[1, 2, 3]) } });
        let text = decode_dcs_of(&session, "session \"x\"")
            .expect_err("corrupt")
            .to_string();
        assert!(
            text.contains("256 bytes") && text.contains("3 bytes"),
            "{text}"
        );
    }
}
