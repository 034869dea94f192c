//! The peer-cache rules, once: merging, `min` hashes, and username and phone
//! ownership moves.
//!
//! [`PeerTable`] is the reference implementation (the memory store keeps its
//! peers in one). A persistent backend loads the stored peers a
//! [`PeerBatch`] touches, calls [`PeerBatch::plan`], and applies the
//! [`PeerPlan`] it gets back in the same transaction. The plan is a pure
//! function of its inputs, so a transaction that is retried calls it again.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use foldhash::HashMap;

use crate::error::Result;
use crate::model::{AccessHash, Peer, PeerId, PeerKind, merge_hash, normalize_username};

/// A username's lookup key ([`normalize_username`]), borrowed when the
/// username already is one (no `@`, no uppercase).
fn username_key(name: &str) -> Cow<'_, str> {
    if name.is_ascii() && !name.starts_with('@') && !name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(normalize_username(name))
    }
}

/// A peer cache with username and phone indexes, applying the merge and
/// ownership rules of the contract.
///
/// Invariant: a username key (or phone) is in the index exactly when one
/// stored peer lists it, and the index names that peer.
#[derive(Clone, Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerId, Slot>,
    by_username: HashMap<String, PeerId>,
    by_phone: HashMap<String, PeerId>,
}

/// A peer as the table keeps it: the fixed-size fields inline and the text
/// (usernames, phone, name) in one box, which a peer known only by id, kind
/// and hash does not allocate. 32 bytes against a [`Peer`]'s 128, so a
/// table of lean peers is a quarter of the memory a lookup walks through.
#[derive(Clone, Debug, Default)]
struct Slot {
    hash: i64,
    last_seen: i64,
    text: Option<Box<PeerText>>,
    kind: Option<PeerKind>,
    flags: u8,
}

/// The text fields of a [`Slot`]; never all `None` (then the slot has no box).
#[derive(Clone, Debug, Default)]
struct PeerText {
    usernames: Option<Vec<String>>,
    phone: Option<String>,
    name: Option<String>,
}

impl PeerText {
    fn is_empty(&self) -> bool {
        self.usernames.is_none() && self.phone.is_none() && self.name.is_none()
    }
}

const HAS_HASH: u8 = 1;
const HASH_MIN: u8 = 2;
const HAS_LAST_SEEN: u8 = 4;

impl Slot {
    /// `peer` as a slot.
    fn from_peer(peer: Peer) -> Slot {
        let Peer {
            id: _,
            kind,
            access_hash,
            usernames,
            phone,
            name,
            last_seen,
        } = peer;
        let text = PeerText {
            usernames,
            phone,
            name,
        };
        let text = (!text.is_empty()).then(|| Box::new(text));
        let mut flags = 0;
        if let Some(hash) = access_hash {
            flags |= HAS_HASH;
            if hash.min {
                flags |= HASH_MIN;
            }
        }
        if last_seen.is_some() {
            flags |= HAS_LAST_SEEN;
        }
        Slot {
            hash: access_hash.map_or(0, |h| h.value),
            last_seen: last_seen.unwrap_or(0),
            text,
            kind,
            flags,
        }
    }

    /// A copy of `peer` as a slot.
    fn of(peer: &Peer) -> Slot {
        Slot::from_peer(peer.clone())
    }

    /// The peer `id` with this slot's fixed fields and `text`.
    fn peer(&self, id: PeerId, text: PeerText) -> Peer {
        Peer {
            id,
            kind: self.kind,
            access_hash: self.access_hash(),
            usernames: text.usernames,
            phone: text.phone,
            name: text.name,
            last_seen: self.last_seen(),
        }
    }

    fn last_seen(&self) -> Option<i64> {
        (self.flags & HAS_LAST_SEEN != 0).then_some(self.last_seen)
    }

    /// Whether the slot holds exactly `peer`'s fields (its id aside),
    /// compared in place, without copying the peer out.
    fn holds(&self, peer: &Peer) -> bool {
        let text = match &self.text {
            Some(text) => {
                text.usernames == peer.usernames
                    && text.phone == peer.phone
                    && text.name == peer.name
            }
            None => peer.usernames.is_none() && peer.phone.is_none() && peer.name.is_none(),
        };
        text && self.kind == peer.kind
            && self.access_hash() == peer.access_hash
            && self.last_seen() == peer.last_seen
    }

    /// The stored peer `id`, copied out.
    fn to_peer(&self, id: PeerId) -> Peer {
        self.peer(id, self.text.as_deref().cloned().unwrap_or_default())
    }

    /// The stored peer `id`, moved out.
    fn into_peer(mut self, id: PeerId) -> Peer {
        let text = self.text.take().map(|boxed| *boxed).unwrap_or_default();
        self.peer(id, text)
    }

    fn usernames(&self) -> Option<&Vec<String>> {
        self.text.as_ref().and_then(|t| t.usernames.as_ref())
    }

    fn phone(&self) -> Option<&String> {
        self.text.as_ref().and_then(|t| t.phone.as_ref())
    }

    fn username_keys(&self) -> Vec<String> {
        self.usernames()
            .into_iter()
            .flatten()
            .map(|u| normalize_username(u))
            .collect()
    }

    fn access_hash(&self) -> Option<AccessHash> {
        (self.flags & HAS_HASH != 0).then_some(AccessHash {
            value: self.hash,
            min: self.flags & HASH_MIN != 0,
        })
    }

    /// [`Peer::merge`] of `new` into the stored peer, field by field in
    /// place (the same rules: known values replace, [`merge_hash`] for the
    /// hash); `peers_merge_as_peer_merge_does` holds the two together.
    fn merge(&mut self, new: &Peer) {
        if new.kind.is_some() {
            self.kind = new.kind;
        }
        if let Some(hash) = merge_hash(self.access_hash(), new.access_hash) {
            self.hash = hash.value;
            self.flags = (self.flags & !HASH_MIN) | HAS_HASH | if hash.min { HASH_MIN } else { 0 };
        }
        if let Some(seen) = new.last_seen {
            self.last_seen = seen;
            self.flags |= HAS_LAST_SEEN;
        }
        if new.usernames.is_some() || new.phone.is_some() || new.name.is_some() {
            let text = self.text.get_or_insert_default();
            if new.usernames.is_some() {
                text.usernames.clone_from(&new.usernames);
            }
            if new.phone.is_some() {
                text.phone.clone_from(&new.phone);
            }
            if new.name.is_some() {
                text.name.clone_from(&new.name);
            }
        }
    }

    /// Drops a username key (the peer lost it to another).
    fn remove_username(&mut self, key: &str) {
        if let Some(text) = &mut self.text
            && let Some(names) = &mut text.usernames
        {
            names.retain(|n| normalize_username(n) != key);
        }
    }

    /// Drops the phone (the peer lost it to another).
    fn clear_phone(&mut self) {
        if let Some(text) = &mut self.text {
            text.phone = None;
            if text.is_empty() {
                self.text = None;
            }
        }
    }
}

impl PeerTable {
    /// The bytes one cached peer takes in the table (its id and its fixed
    /// fields), besides the one allocation holding its usernames, phone and
    /// name when it has any.
    pub const ENTRY_BYTES: usize = std::mem::size_of::<(PeerId, Slot)>();

    /// A table holding `rows` as stored (no rules applied), indexed by their
    /// usernames and phones.
    pub fn from_rows(rows: impl IntoIterator<Item = Peer>) -> Self {
        let mut table = PeerTable::default();
        for row in rows {
            for key in row.username_keys() {
                table.by_username.insert(key, row.id);
            }
            if let Some(phone) = &row.phone {
                table.by_phone.insert(phone.clone(), row.id);
            }
            table.peers.insert(row.id, Slot::from_peer(row));
        }
        table
    }

    /// Merges one normalized peer, moving its usernames and phone to it.
    pub fn upsert(&mut self, peer: &Peer) {
        self.upsert_tracking(peer, |_| {});
    }

    /// Like [`upsert`](Self::upsert), calling `touched` with the id of every
    /// other peer that lost a username or its phone to `peer`.
    pub fn upsert_tracking(&mut self, peer: &Peer, mut touched: impl FnMut(PeerId)) {
        let id = peer.id;
        let (old_keys, old_phone) = match self.peers.get_mut(&id) {
            Some(stored) => {
                let same_names =
                    peer.usernames.is_none() || peer.usernames.as_ref() == stored.usernames();
                let same_phone = peer.phone.is_none() || peer.phone.as_ref() == stored.phone();
                if same_names && same_phone {
                    // The stored peer keeps its usernames and phone, which
                    // the indexes already name it for (the invariant).
                    stored.merge(peer);
                    return;
                }
                let old = (stored.username_keys(), stored.phone().cloned());
                stored.merge(peer);
                old
            }
            None => {
                self.peers.insert(id, Slot::of(peer));
                (Vec::new(), None)
            }
        };
        let Some(merged) = self.peers.get(&id) else {
            return;
        };
        let new_keys = merged.username_keys();
        let new_phone = merged.phone().cloned();
        for key in old_keys {
            if !new_keys.contains(&key) && self.by_username.get(&key) == Some(&id) {
                self.by_username.remove(&key);
            }
        }
        if let Some(phone) = old_phone
            && new_phone.as_ref() != Some(&phone)
            && self.by_phone.get(&phone) == Some(&id)
        {
            self.by_phone.remove(&phone);
        }
        let PeerTable {
            peers,
            by_username,
            by_phone,
        } = self;
        for key in new_keys {
            match by_username.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(id);
                }
                Entry::Occupied(mut entry) => {
                    let previous = entry.insert(id);
                    if previous != id
                        && let Some(other) = peers.get_mut(&previous)
                        && other.usernames().is_some()
                    {
                        other.remove_username(entry.key());
                        touched(previous);
                    }
                }
            }
        }
        if let Some(phone) = new_phone
            && let Some(previous) = by_phone.insert(phone, id)
            && previous != id
            && let Some(other) = peers.get_mut(&previous)
        {
            other.clear_phone();
            touched(previous);
        }
    }

    /// One peer by id, copied out of the table.
    pub fn get(&self, id: PeerId) -> Option<Peer> {
        self.peers.get(&id).map(|slot| slot.to_peer(id))
    }

    /// The owner of a username key (lowercased, without `@`).
    pub fn by_username(&self, key: &str) -> Option<Peer> {
        self.by_username.get(key).and_then(|id| self.get(*id))
    }

    /// The owner of a phone.
    pub fn by_phone(&self, phone: &str) -> Option<Peer> {
        self.by_phone.get(phone).and_then(|id| self.get(*id))
    }

    /// Whether a peer is stored.
    pub fn contains(&self, id: PeerId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every peer, by id, copied out of the table.
    pub fn iter(&self) -> impl Iterator<Item = Peer> {
        let mut rows: Vec<(&PeerId, &Slot)> = self.peers.iter().collect();
        rows.sort_unstable_by_key(|(id, _)| **id);
        rows.into_iter().map(|(id, slot)| slot.to_peer(*id))
    }

    /// Every peer, by id, by value.
    pub fn into_rows(self) -> impl Iterator<Item = Peer> {
        let mut rows: Vec<(PeerId, Slot)> = self.peers.into_iter().collect();
        rows.sort_unstable_by_key(|(id, _)| *id);
        rows.into_iter().map(|(id, slot)| slot.into_peer(id))
    }
}

/// A batch of peers to cache, normalized, with the keys a backend needs to
/// load what the batch touches (computed when first asked for).
#[derive(Clone, Debug)]
pub struct PeerBatch {
    peers: Vec<Peer>,
    keys: OnceLock<BatchKeys>,
}

/// The distinct ids, username keys and phones of a batch, sorted.
#[derive(Clone, Debug)]
struct BatchKeys {
    ids: Vec<PeerId>,
    username_keys: Vec<String>,
    phones: Vec<String>,
}

impl PartialEq for PeerBatch {
    fn eq(&self, other: &Self) -> bool {
        // The keys are a function of the peers.
        self.peers == other.peers
    }
}

impl Eq for PeerBatch {}

impl PeerBatch {
    /// Normalizes every peer ([`Peer::normalized`]).
    /// Fails with `InvalidInput` on the first peer that is not valid.
    pub fn new(peers: &[Peer]) -> Result<Self> {
        let peers = peers
            .iter()
            .map(Peer::normalized)
            .collect::<Result<Vec<_>>>()?;
        Ok(PeerBatch {
            peers,
            keys: OnceLock::new(),
        })
    }

    fn keys(&self) -> &BatchKeys {
        self.keys.get_or_init(|| {
            fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
                v.sort_unstable();
                v.dedup();
                v
            }
            BatchKeys {
                ids: sorted(self.peers.iter().map(|p| p.id).collect()),
                username_keys: sorted(self.peers.iter().flat_map(Peer::username_keys).collect()),
                phones: sorted(self.peers.iter().filter_map(|p| p.phone.clone()).collect()),
            }
        })
    }

    /// The peers, normalized, in the order given (later ones merge over earlier ones).
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// Whether the batch holds no peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The distinct ids of the batch, sorted: load the stored peers with these ids.
    pub fn ids(&self) -> &[PeerId] {
        &self.keys().ids
    }

    /// The distinct username keys the batch claims, sorted: load the peers
    /// that own them now.
    pub fn username_keys(&self) -> &[String] {
        &self.keys().username_keys
    }

    /// The distinct phones the batch claims, sorted: load the peers that own them now.
    pub fn phones(&self) -> &[String] {
        &self.keys().phones
    }

    /// Computes what the batch writes, given the stored peers it touches:
    /// every stored peer whose id is in [`ids`](Self::ids) or who owns one of
    /// the [`username_keys`](Self::username_keys) or [`phones`](Self::phones)
    /// (extra peers are harmless; missing ones make the plan wrong).
    ///
    /// The peers of the batch are merged in order into what is stored
    /// ([`Peer::merge`], with the `min`-hash rule), and each username and
    /// phone moves to the peer that claimed it last.
    pub fn plan(&self, stored: impl IntoIterator<Item = Peer>) -> PeerPlan {
        let mut stored = stored.into_iter().peekable();
        if stored.peek().is_none() && self.claims_nothing_twice() {
            return self.plan_new();
        }
        let mut table = PeerTable::from_rows(stored);
        // The stored value of every row the batch may change, taken just
        // before its first change: the peer itself, and the current owners of
        // the usernames and phone it claims.
        let mut before: BTreeMap<PeerId, Option<Peer>> = BTreeMap::new();
        for peer in &self.peers {
            let mut remember = |id: PeerId, table: &PeerTable| {
                before.entry(id).or_insert_with(|| table.get(id));
            };
            remember(peer.id, &table);
            for name in peer.usernames.iter().flatten() {
                if let Some(owner) = table.by_username.get(&*username_key(name)).copied() {
                    remember(owner, &table);
                }
            }
            if let Some(owner) = peer
                .phone
                .as_ref()
                .and_then(|p| table.by_phone.get(p))
                .copied()
            {
                remember(owner, &table);
            }
            table.upsert(peer);
        }
        let mut plan = PeerPlan::default();
        for (id, old) in before {
            let Some(slot) = table.peers.get(&id) else {
                continue;
            };
            let Some(old) = old else {
                plan.insert_row(slot.to_peer(id));
                continue;
            };
            if slot.holds(&old) {
                continue;
            }
            let after = slot.to_peer(id);
            if old.usernames != after.usernames {
                let old_keys: BTreeSet<String> = old.username_keys().into_iter().collect();
                let new_keys: BTreeSet<String> = after.username_keys().into_iter().collect();
                for key in old_keys.difference(&new_keys) {
                    plan.usernames_removed.push((key.clone(), id));
                }
                for key in new_keys.difference(&old_keys) {
                    plan.usernames_added.push((key.clone(), id));
                }
            }
            if old.phone != after.phone {
                if let Some(phone) = &old.phone {
                    plan.phones_removed.push((phone.clone(), id));
                }
                if let Some(phone) = &after.phone {
                    plan.phones_added.push((phone.clone(), id));
                }
            }
            plan.rows.push(after);
        }
        plan.sort_entries();
        plan
    }
}

impl PeerBatch {
    /// Whether no id, username key or phone comes twice in the batch (then
    /// no peer of it merges over another or takes a name from another).
    fn claims_nothing_twice(&self) -> bool {
        let keys = self.keys();
        let names: usize = self
            .peers
            .iter()
            .map(|p| p.usernames.as_ref().map_or(0, Vec::len))
            .sum();
        let phones = self.peers.iter().filter(|p| p.phone.is_some()).count();
        keys.ids.len() == self.peers.len()
            && keys.username_keys.len() == names
            && keys.phones.len() == phones
    }

    /// [`plan`](Self::plan) when nothing is stored and nothing is claimed
    /// twice: every peer is a new row as it is, and every username and phone
    /// a new index entry of its own (what the general case computes then,
    /// without building a table; `plans_agree_with_the_reference` covers both).
    fn plan_new(&self) -> PeerPlan {
        let mut rows = self.peers.clone();
        rows.sort_unstable_by_key(|p| p.id);
        let mut plan = PeerPlan::default();
        for peer in rows {
            plan.insert_row(peer);
        }
        plan.sort_entries();
        plan
    }
}

/// What a [`PeerBatch`] writes: the rows whose stored value changes and the
/// index entries that move.
///
/// Apply it in this order, in one transaction: delete the removed index
/// entries (and, where phones live in a uniquely indexed column, clear the
/// `phones_removed` phones first), write the rows, then write the added
/// index entries (replacing whatever entry a key has).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPlan {
    /// Whole rows to insert or replace, sorted by id, each id once: the
    /// merged peers of the batch and the peers that lost a username or phone.
    pub rows: Vec<Peer>,
    /// How many of `rows` are new (the peer count grows by this much).
    pub inserted: u64,
    /// Username index entries to delete: `(key, peer that listed it)`.
    pub usernames_removed: Vec<(String, PeerId)>,
    /// Username index entries to write: `(key, new owner)`.
    pub usernames_added: Vec<(String, PeerId)>,
    /// Phone index entries to delete: `(phone, peer that had it)`.
    pub phones_removed: Vec<(String, PeerId)>,
    /// Phone index entries to write: `(phone, new owner)`.
    pub phones_added: Vec<(String, PeerId)>,
}

impl PeerPlan {
    /// Adds `peer` as a new row: each of its username keys and its phone
    /// becomes an index entry naming it.
    fn insert_row(&mut self, peer: Peer) {
        for key in peer.username_keys() {
            self.usernames_added.push((key, peer.id));
        }
        if let Some(phone) = &peer.phone {
            self.phones_added.push((phone.clone(), peer.id));
        }
        self.inserted += 1;
        self.rows.push(peer);
    }

    /// Sorts the index entries (the rows come sorted by id).
    fn sort_entries(&mut self) {
        self.usernames_removed.sort();
        self.usernames_added.sort();
        self.phones_removed.sort();
        self.phones_added.sort();
    }

    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Applies the plan to a table (what a key-value backend does with its
    /// own storage). Used by tests to check a plan against [`PeerTable::upsert`].
    pub fn apply_to(&self, table: &mut PeerTable) {
        for (key, id) in &self.usernames_removed {
            if table.by_username.get(key) == Some(id) {
                table.by_username.remove(key);
            }
        }
        for (phone, id) in &self.phones_removed {
            if table.by_phone.get(phone) == Some(id) {
                table.by_phone.remove(phone);
            }
        }
        for row in &self.rows {
            table.peers.insert(row.id, Slot::of(row));
        }
        for (key, id) in &self.usernames_added {
            table.by_username.insert(key.clone(), *id);
        }
        for (phone, id) in &self.phones_added {
            table.by_phone.insert(phone.clone(), *id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> PeerId {
        PeerId::user(id).expect("valid")
    }

    type Snapshot = (Vec<Peer>, Vec<(String, PeerId)>, Vec<(String, PeerId)>);

    fn snapshot(table: &PeerTable) -> Snapshot {
        let mut names: Vec<_> = table
            .by_username
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        names.sort();
        let mut phones: Vec<_> = table
            .by_phone
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        phones.sort();
        (table.iter().collect(), names, phones)
    }

    /// The peer `id` with known and unknown fields as the bits of `i` say.
    fn variant(id: i64, i: i64) -> Peer {
        let mut peer = Peer::new(user(id));
        if i & 1 != 0 {
            peer.kind = Some(if i & 64 != 0 {
                PeerKind::User
            } else {
                PeerKind::Bot
            });
        }
        match (i >> 1) & 3 {
            0 => {}
            1 => peer.access_hash = Some(AccessHash::full(-i)),
            2 => peer.access_hash = Some(AccessHash::min(i64::MIN + i)),
            _ => peer.access_hash = Some(AccessHash::full(0)),
        }
        match (i >> 3) & 3 {
            0 => {}
            1 => peer.usernames = Some(vec![]),
            _ => peer.usernames = Some(vec![format!("Name{i}"), format!("other{i}")]),
        }
        if i & 32 != 0 {
            peer.phone = Some(format!("7{i}"));
            peer.name = Some(String::new());
            peer.last_seen = Some(i - 32);
        }
        peer
    }

    #[test]
    fn a_lean_peer_takes_40_bytes() {
        assert_eq!(PeerTable::ENTRY_BYTES, 40);
    }

    /// Upserting a peer over a stored one gives what `Peer::merge` gives,
    /// for every pair of field combinations.
    #[test]
    fn peers_merge_as_peer_merge_does() {
        for old in 0..128 {
            for new in 0..128 {
                let (old, new) = (variant(1, old), variant(1, new));
                let mut table = PeerTable::default();
                table.upsert(&old);
                table.upsert(&new);
                let mut merged = old.clone();
                merged.merge(&new);
                assert_eq!(table.get(user(1)), Some(merged), "{old:?} then {new:?}");
            }
        }
    }

    /// A slot holds exactly the peer it was made from, for every pair of
    /// field combinations.
    #[test]
    fn slots_hold_exactly_their_peer() {
        for a in 0..128 {
            for b in 0..128 {
                let (a, b) = (variant(1, a), variant(1, b));
                assert_eq!(Slot::of(&a).holds(&b), a == b, "{a:?} holds {b:?}");
            }
        }
        // Each field apart: a peer differing in that field alone is not held.
        for i in 0..128 {
            let a = variant(1, i);
            let slot = Slot::of(&a);
            let changes: [fn(&mut Peer); 7] = [
                |p| {
                    p.kind = if p.kind.is_some() {
                        None
                    } else {
                        Some(PeerKind::Chat)
                    }
                },
                |p| {
                    p.access_hash = match p.access_hash {
                        None => Some(AccessHash::full(3)),
                        Some(h) => Some(AccessHash { min: !h.min, ..h }),
                    }
                },
                |p| {
                    p.access_hash = p.access_hash.map(|h| AccessHash {
                        value: h.value ^ 1,
                        ..h
                    })
                },
                |p| {
                    p.usernames = if p.usernames.is_some() {
                        None
                    } else {
                        Some(vec![])
                    }
                },
                |p| {
                    p.phone = if p.phone.is_some() {
                        None
                    } else {
                        Some("1".into())
                    }
                },
                |p| {
                    p.name = if p.name.is_some() {
                        None
                    } else {
                        Some("n".into())
                    }
                },
                |p| p.last_seen = Some(p.last_seen.map_or(0, |t| t + 1)),
            ];
            for change in changes {
                let mut b = a.clone();
                change(&mut b);
                assert_eq!(slot.holds(&b), a == b, "{a:?} holds {b:?}");
            }
        }
    }

    /// Every combination of known and unknown fields reads back from the
    /// table as it went in (the table keeps peers in a compact form).
    #[test]
    fn peers_read_back_as_stored() {
        let mut peers = Vec::new();
        for i in 0..64_i64 {
            let peer = variant(100 + i, i);
            peers.push(peer);
        }
        let mut upserted = PeerTable::default();
        for peer in &peers {
            upserted.upsert(peer);
        }
        let loaded = PeerTable::from_rows(peers.clone());
        for table in [&upserted, &loaded] {
            for peer in &peers {
                assert_eq!(table.get(peer.id).as_ref(), Some(peer));
                assert!(table.contains(peer.id));
            }
            assert_eq!(table.iter().collect::<Vec<_>>(), peers);
            assert_eq!(table.by_username("name48").map(|p| p.id), Some(user(148)));
            assert_eq!(table.by_phone("748").map(|p| p.id), Some(user(148)));
        }
        assert_eq!(upserted.into_rows().collect::<Vec<_>>(), peers);
        // A peer losing its only text field to another keeps no text.
        let mut table = PeerTable::default();
        table.upsert(&Peer::new(user(1)).with_phone("5"));
        table.upsert(&Peer::new(user(2)).with_phone("5"));
        assert_eq!(table.get(user(1)), Some(Peer::new(user(1))));
        assert_eq!(table.by_phone("5").map(|p| p.id), Some(user(2)));
    }

    #[test]
    fn plan_moves_a_username_and_a_phone() {
        let stored = vec![
            Peer::new(user(1)).with_username("Alice").with_phone("111"),
            Peer::new(user(2)).with_hash(5),
        ];
        let batch = PeerBatch::new(&[Peer::new(user(2))
            .with_username("@ALICE")
            .with_phone("+1 11")])
        .expect("valid");
        assert_eq!(batch.username_keys(), ["alice"]);
        assert_eq!(batch.phones(), ["111"]);
        let plan = batch.plan(stored.clone());
        assert_eq!(plan.inserted, 0);
        assert_eq!(plan.rows.len(), 2);
        assert_eq!(plan.rows[0].usernames, Some(vec![]));
        assert_eq!(plan.rows[0].phone, None);
        assert_eq!(plan.rows[1].usernames, Some(vec!["ALICE".to_owned()]));
        assert_eq!(plan.rows[1].access_hash, Some(AccessHash::full(5)));
        assert_eq!(plan.usernames_removed, vec![("alice".to_owned(), user(1))]);
        assert_eq!(plan.usernames_added, vec![("alice".to_owned(), user(2))]);
        assert_eq!(plan.phones_removed, vec![("111".to_owned(), user(1))]);
        assert_eq!(plan.phones_added, vec![("111".to_owned(), user(2))]);
    }

    #[test]
    fn unchanged_rows_are_not_rewritten() {
        let stored = vec![Peer::new(user(1)).with_hash(1).with_username("a")];
        let batch = PeerBatch::new(&[Peer::new(user(1)).with_min_hash(9)]).expect("valid");
        assert!(batch.plan(stored).is_empty());
    }

    /// Sequences of random batches: applying each plan to a table gives the
    /// same table as upserting the batch into it directly.
    #[test]
    fn plans_agree_with_the_reference() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut reference = PeerTable::default();
            let mut planned = PeerTable::default();
            for _ in 0..8 {
                let batch: Vec<Peer> = (0..next(6))
                    .map(|_| {
                        let mut peer = Peer::new(user(1 + next(5) as i64));
                        match next(3) {
                            0 => peer.usernames = None,
                            1 => peer.usernames = Some(vec![]),
                            _ => {
                                peer.usernames = Some(
                                    (0..1 + next(2)).map(|_| format!("U{}", next(4))).collect(),
                                );
                            }
                        }
                        if next(2) == 0 {
                            peer.phone = Some(format!("{}", next(3)));
                        }
                        match next(3) {
                            0 => peer.access_hash = Some(AccessHash::min(next(9) as i64)),
                            1 => peer.access_hash = Some(AccessHash::full(next(9) as i64)),
                            _ => {}
                        }
                        peer
                    })
                    .collect();
                let batch = PeerBatch::new(&batch).expect("valid");
                for peer in batch.peers() {
                    reference.upsert(peer);
                }
                let stored: Vec<Peer> = planned.iter().collect();
                batch.plan(stored).apply_to(&mut planned);
                assert_eq!(snapshot(&planned), snapshot(&reference));
            }
        }
    }
}
