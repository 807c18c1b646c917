//! Issued API keys.
//!
//! Format: `sk-sy-` + 43 base62 characters of randomness (~256 bits) + 6 base62
//! characters of CRC-32 over the random part. The fixed prefix and the checksum let a
//! secret scanner recognise a leaked Switchyard key offline and tell it from noise;
//! the `sk-` start keeps clients that expect OpenAI-looking keys happy.
//!
//! Keys are stored and shipped in snapshots only as SHA-256 hashes. A plain hash (not
//! a password hash) is right here: the input is 256 random bits, so there is nothing
//! to brute-force, and the data plane can hash on every request cheaply.

use std::fmt;

use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub const PREFIX: &str = "sk-sy-";
const BODY_LEN: usize = 43;
const CHECK_LEN: usize = 6;
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECK_LEN;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SHA-256 of a presented key: what stores and snapshots hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash prefix is enough to correlate in logs and reveals nothing usable.
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A freshly generated key: the clear text (shown once) and its hash (stored).
pub struct NewKey {
    pub clear: Secret<String>,
    pub hash: KeyHash,
}

/// Generate an issued key.
pub fn generate() -> NewKey {
    generate_with_prefix(PREFIX)
}

/// Generate a key with another recognisable prefix (the operator's root key uses one).
pub fn generate_with_prefix(prefix: &str) -> NewKey {
    let mut rng = rand::rng();
    let body: String = (0..BODY_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    let clear = format!("{prefix}{body}{}", checksum(&body));
    let hash = KeyHash::of(&clear);
    NewKey {
        clear: Secret::new(clear),
        hash,
    }
}

/// Whether `presented` has the shape and checksum of a key issued by Switchyard.
/// Lets the data plane refuse noise without a table lookup, and scanners find keys.
pub fn is_well_formed(presented: &str) -> bool {
    let Some(rest) = presented.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, check) = rest.split_at(BODY_LEN);
    checksum(body) == check
}

/// The credential of an `Authorization: Bearer <key>` header value (scheme matched
/// without regard to case), or `None` for any other scheme.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, key) = header_value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// A short, non-secret tail for display (`…AbC123`): the checksum characters,
/// which carry no entropy of the key body beyond 32 bits.
pub fn display_tail(presented: &str) -> String {
    let tail: String = presented
        .chars()
        .rev()
        .take(CHECK_LEN)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{PREFIX}…{tail}")
}

fn checksum(body: &str) -> String {
    let mut value = u64::from(crc32fast::hash(body.as_bytes()));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_unique() {
        let a = generate();
        let b = generate();
        assert_eq!(a.clear.expose().len(), KEY_LEN);
        assert!(a.clear.expose().starts_with(PREFIX));
        assert!(is_well_formed(a.clear.expose()));
        assert_ne!(a.clear.expose(), b.clear.expose());
        assert_eq!(a.hash, KeyHash::of(a.clear.expose()));
    }

    #[test]
    fn checksum_catches_a_changed_character() {
        let key = generate().clear.expose().clone();
        let mut bytes = key.into_bytes();
        let i = PREFIX.len() + 5;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert!(!is_well_formed(&changed));
    }

    #[test]
    fn noise_is_not_well_formed() {
        for noise in [
            "",
            "sk-sy-",
            "sk-proj-abc",
            "Bearer sk-sy-xyz",
            "sk-sy-!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(!is_well_formed(noise), "{noise}");
        }
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn hash_round_trips_through_hex() {
        let h = KeyHash::of("abc");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert!(!format!("{h:?}").contains(&h.to_hex()));
    }

    #[test]
    fn tail_shows_only_the_checksum() {
        let key = generate().clear.expose().clone();
        let tail = display_tail(&key);
        assert!(tail.ends_with(&key[key.len() - CHECK_LEN..]));
        assert!(!tail.contains(&key[PREFIX.len()..PREFIX.len() + BODY_LEN]));
    }
}
