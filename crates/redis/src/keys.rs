//! The key layout: every key the store uses, built from the prefix.

/// The per-session hashes, in the order the Lua scripts expect them.
/// `meta` comes first: it exists exactly while the session exists.
pub(crate) const SESSION_SUFFIXES: [&str; 8] = [
    "meta", "dcs", "state", "channels", "peers", "uname", "phone", "files",
];

/// Index of each suffix in [`SESSION_SUFFIXES`].
pub(crate) const META: usize = 0;
pub(crate) const DCS: usize = 1;
pub(crate) const STATE: usize = 2;
pub(crate) const CHANNELS: usize = 3;
pub(crate) const PEERS: usize = 4;
pub(crate) const UNAME: usize = 5;
pub(crate) const PHONE: usize = 6;
pub(crate) const FILES: usize = 7;

/// Builds the keys under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:schema`: the schema version of everything under the prefix.
    pub(crate) fn schema(&self) -> String {
        format!("{}:schema", self.prefix)
    }

    /// `{prefix}:sessions`: a sorted set of every session name (all scores 0,
    /// so members come back in byte order).
    pub(crate) fn sessions(&self) -> String {
        format!("{}:sessions", self.prefix)
    }

    /// `{prefix}:s:{HEX}:{suffix}` for one of [`SESSION_SUFFIXES`].
    pub(crate) fn session(&self, session: &str, which: usize) -> String {
        format!(
            "{}:s:{{{}}}:{}",
            self.prefix,
            hex::encode(session),
            SESSION_SUFFIXES[which]
        )
    }

    /// Every key of one session, in [`SESSION_SUFFIXES`] order.
    pub(crate) fn session_all(&self, session: &str) -> Vec<String> {
        (0..SESSION_SUFFIXES.len())
            .map(|i| self.session(session, i))
            .collect()
    }

    /// `{prefix}:lease:{HEX}`: the session's lease.
    pub(crate) fn lease(&self, session: &str) -> String {
        format!("{}:lease:{{{}}}", self.prefix, hex::encode(session))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hex_encoded_inside_a_hash_tag() {
        let keys = Keys::new("mtsession");
        assert_eq!(keys.session("a:{b}", META), "mtsession:s:{613a7b627d}:meta");
        assert_eq!(keys.lease("a"), "mtsession:lease:{61}");
        assert_eq!(keys.schema(), "mtsession:schema");
        assert_eq!(keys.sessions(), "mtsession:sessions");
        let all = keys.session_all("x");
        assert_eq!(all.len(), 8);
        assert!(all[FILES].ends_with(":files"));
        assert!(all[PEERS].ends_with(":peers"));
    }

    #[test]
    fn distinct_names_never_share_keys() {
        let keys = Keys::new("p");
        // Without encoding, "a:s" + suffix and "a" + ":s..." could collide.
        assert_ne!(keys.session("a", META), keys.session("a}:meta", META));
        assert_ne!(keys.session("ab", META), keys.session("a", META));
    }
}
