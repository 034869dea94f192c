//! The 256-byte MTProto authorization key.

use std::fmt;

use sha1::{Digest, Sha1};
use zeroize::Zeroize;

use crate::error::{Error, Result};

/// Length of an MTProto authorization key in bytes.
pub const AUTH_KEY_LEN: usize = 256;

/// A 256-byte MTProto authorization key.
///
/// The bytes are zeroized on drop, and neither `Debug` nor any error message
/// shows them: `Debug` prints only [`AuthKey::id`], the low 8 bytes of the
/// key's SHA-1 as MTProto defines `auth_key_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(Box<[u8; AUTH_KEY_LEN]>);

impl AuthKey {
    /// Wraps 256 key bytes.
    pub fn new(bytes: [u8; AUTH_KEY_LEN]) -> Self {
        AuthKey(Box::new(bytes))
    }

    /// Wraps a slice that must be exactly 256 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; AUTH_KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::invalid(format!(
                "an auth key is {AUTH_KEY_LEN} bytes long, got {} bytes",
                bytes.len()
            ))
        })?;
        Ok(AuthKey::new(array))
    }

    /// The raw key bytes. Handle with care: never log them.
    pub fn expose(&self) -> &[u8; AUTH_KEY_LEN] {
        &self.0
    }

    /// `auth_key_id`: the low 64 bits of SHA-1(key), read little-endian.
    pub fn id(&self) -> u64 {
        let digest = Sha1::digest(&self.0[..]);
        let mut low = [0u8; 8];
        low.copy_from_slice(&digest[12..20]);
        u64::from_le_bytes(low)
    }

    /// `auth_key_id` as 16 lowercase hex digits of the big-endian value.
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id())
    }

    /// Whether every byte is zero (Telethon's encoding of "no key").
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl Drop for AuthKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Serialized as 512 lowercase hex digits: serializing a key writes the
/// secret, which the caller asked for by serializing it.
#[cfg(feature = "serde")]
impl serde::Serialize for AuthKey {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let hex: zeroize::Zeroizing<String> =
            zeroize::Zeroizing::new(self.0.iter().map(|b| format!("{b:02x}")).collect());
        serializer.serialize_str(&hex)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for AuthKey {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(deserializer)?);
        let bytes: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
            (0..text.len())
                .step_by(2)
                .map(|i| {
                    text.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                        .ok_or_else(|| serde::de::Error::custom("an auth key is 512 hex digits"))
                })
                .collect::<std::result::Result<_, D::Error>>()?,
        );
        AuthKey::from_slice(&bytes)
            .map_err(|_| serde::de::Error::custom("an auth key is 512 hex digits"))
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(id={})", self.id_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let key = AuthKey::new([0xAB; AUTH_KEY_LEN]);
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(shown.contains(&key.id_hex()));
    }

    #[test]
    fn id_is_low_eight_bytes_of_sha1() {
        let key = AuthKey::new([1; AUTH_KEY_LEN]);
        let digest = Sha1::digest([1u8; AUTH_KEY_LEN]);
        let expected = u64::from_le_bytes(digest[12..20].try_into().expect("8 bytes"));
        assert_eq!(key.id(), expected);
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(AuthKey::from_slice(&[0; 255]).is_err());
        assert!(AuthKey::from_slice(&[0; 256]).is_ok());
    }
}
