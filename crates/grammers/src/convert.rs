//! grammers' types to mtsession's and back.

use grammers_session::types::{
    ChannelKind, ChannelState, DcOption as GrammersDc, PeerAuth, PeerInfo, UpdateState as Write,
    UpdatesState,
};
use session_core::{
    AccessHash, AuthKey, DcOption, Peer, PeerId, PeerIdKind, PeerKind, Result, SelfUser,
    UpdateState, UpdateStateChange,
};

/// The kind a grammers user is stored as. `bot` and `is_self` are kept as one
/// kind: the logged-in user, a bot, a user, or unknown.
pub(crate) fn user_kind(bot: Option<bool>, is_self: Option<bool>) -> Option<PeerKind> {
    match (bot, is_self) {
        (_, Some(true)) => Some(PeerKind::SelfUser),
        (Some(true), _) => Some(PeerKind::Bot),
        (Some(false), _) => Some(PeerKind::User),
        (None, _) => None,
    }
}

/// The kind a user is stored as once it is no longer the logged-in user.
pub(crate) fn former_self_kind(bot: Option<bool>) -> Option<PeerKind> {
    bot.map(|bot| if bot { PeerKind::Bot } else { PeerKind::User })
}

fn hash(auth: Option<PeerAuth>) -> Option<AccessHash> {
    auth.map(|a| AccessHash::full(a.hash()))
}

/// A grammers peer as an mtsession peer: the id in its id space, the hash
/// (grammers keeps only full ones), the kind; every other field unknown, so
/// that merging keeps what the store knows (usernames, phone, name).
pub(crate) fn peer_from_info(info: &PeerInfo) -> Result<Peer> {
    Ok(match info {
        PeerInfo::User {
            id,
            auth,
            bot,
            is_self,
        } => Peer {
            kind: user_kind(*bot, *is_self),
            access_hash: hash(*auth),
            ..Peer::new(PeerId::user(*id)?)
        },
        PeerInfo::Chat { id } => Peer::new(PeerId::chat(*id)?).with_kind(PeerKind::Chat),
        PeerInfo::Channel { id, auth, kind } => Peer {
            kind: kind.map(|k| match k {
                ChannelKind::Broadcast => PeerKind::Broadcast,
                ChannelKind::Megagroup => PeerKind::Megagroup,
                ChannelKind::Gigagroup => PeerKind::Gigagroup,
                ChannelKind::Community => PeerKind::Community,
            }),
            access_hash: hash(*auth),
            ..Peer::new(PeerId::channel(*id)?)
        },
    })
}

/// A stored peer as grammers sees it, given who is logged in (`me`).
///
/// A `min` access hash is no authority grammers can use (it drops them
/// itself), so it reads as `auth: None`. For users, `me` decides `is_self`;
/// the kind decides `bot` (for the logged-in user without a bot or user kind,
/// `me`'s flag does). Monoforums read as channels of unknown kind.
pub(crate) fn info_from_peer(peer: &Peer, me: Option<SelfUser>) -> PeerInfo {
    let auth = peer
        .access_hash
        .filter(|h| !h.min)
        .map(|h| PeerAuth::from_hash(h.value));
    let bare = peer.id.bare();
    match peer.id.kind() {
        PeerIdKind::User => {
            let me = me.filter(|u| u.id == peer.id.marked());
            let (bot, is_self) = match (peer.kind, me) {
                (Some(PeerKind::Bot), me) => (Some(true), Some(me.is_some())),
                (Some(PeerKind::User), me) => (Some(false), Some(me.is_some())),
                (_, Some(me)) => (Some(me.is_bot), Some(true)),
                (Some(PeerKind::SelfUser), None) => (None, Some(false)),
                (_, None) => (None, None),
            };
            PeerInfo::User {
                id: bare,
                auth,
                bot,
                is_self,
            }
        }
        PeerIdKind::Chat => PeerInfo::Chat { id: bare },
        PeerIdKind::Channel => PeerInfo::Channel {
            id: bare,
            auth,
            kind: match peer.kind {
                Some(PeerKind::Broadcast) => Some(ChannelKind::Broadcast),
                Some(PeerKind::Megagroup) => Some(ChannelKind::Megagroup),
                Some(PeerKind::Gigagroup) => Some(ChannelKind::Gigagroup),
                Some(PeerKind::Community) => Some(ChannelKind::Community),
                _ => None,
            },
        },
    }
}

/// The logged-in user as grammers sees it when the store has no peer for it.
pub(crate) fn self_info(me: SelfUser) -> PeerInfo {
    PeerInfo::User {
        id: me.id,
        auth: None,
        bot: Some(me.is_bot),
        is_self: Some(true),
    }
}

/// A grammers DC option as mtsession's (both addresses known).
pub(crate) fn dc_from_grammers(dc: &GrammersDc) -> DcOption {
    DcOption {
        id: dc.id,
        ipv4: Some(dc.ipv4),
        ipv6: Some(dc.ipv6),
        auth_key: dc.auth_key.map(AuthKey::new),
    }
}

/// An mtsession DC option that has both addresses (see
/// [`session_formats::file::grammers_dc`]) as grammers' type.
pub(crate) fn dc_to_grammers(dc: &DcOption) -> Option<GrammersDc> {
    Some(GrammersDc {
        id: dc.id,
        ipv4: dc.ipv4?,
        ipv6: dc.ipv6?,
        auth_key: dc.auth_key.as_ref().map(|k| *k.expose()),
    })
}

/// grammers' update-state write as mtsession's. `All`'s channel list becomes
/// a table keyed by id: of two entries for one channel, the later one wins.
pub(crate) fn change_from_grammers(write: Write) -> UpdateStateChange {
    match write {
        Write::All(state) => UpdateStateChange::All(UpdateState {
            pts: state.pts,
            qts: state.qts,
            date: state.date,
            seq: state.seq,
            channels: state.channels.iter().map(|c| (c.id, c.pts)).collect(),
        }),
        Write::Primary { pts, date, seq } => UpdateStateChange::Primary { pts, date, seq },
        Write::Secondary { qts } => UpdateStateChange::Secondary { qts },
        Write::Channel { id, pts } => UpdateStateChange::Channel { id, pts },
    }
}

/// The stored update state as grammers' type, channels sorted by id.
pub(crate) fn state_to_grammers(state: UpdateState) -> UpdatesState {
    UpdatesState {
        pts: state.pts,
        qts: state.qts,
        date: state.date,
        seq: state.seq,
        channels: state
            .channels
            .into_iter()
            .map(|(id, pts)| ChannelState { id, pts })
            .collect(),
    }
}
