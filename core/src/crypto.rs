//! Provider secrets at rest: AES-256-GCM-SIV with a random nonce per record and the
//! record's identity as associated data, so a ciphertext copied onto another record
//! does not decrypt. Several key ids may be loaded for rotation; one is active for
//! sealing, any loaded one opens.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngExt;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("keyring spec is empty")]
    Empty,
    #[error("keyring entry {0} is not `id:base64key`")]
    BadEntry(usize),
    #[error("key id {0:?} must be 1-32 characters of [A-Za-z0-9_-]")]
    BadKeyId(String),
    #[error("key {0:?} is not 32 bytes of base64")]
    BadKey(String),
    #[error("key id {0:?} appears twice")]
    DuplicateKeyId(String),
    #[error("no key with id {0:?} is loaded")]
    UnknownKeyId(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext does not open with key {0:?} for this record")]
    Forged(String),
}

/// A sealed secret as stored: which key sealed it, and `nonce || ciphertext+tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({}, {} bytes)", self.key_id, self.blob.len())
    }
}

/// The key-encryption keys. The first key of the spec is the active one.
pub struct Keyring {
    active: String,
    ciphers: BTreeMap<String, Aes256GcmSiv>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("ids", &self.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Parse `id:base64key[,id:base64key...]`. The first entry seals new secrets.
    pub fn parse(spec: &str) -> Result<Self, CryptoError> {
        let mut active = None;
        let mut ciphers = BTreeMap::new();
        for (i, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, key) = entry.split_once(':').ok_or(CryptoError::BadEntry(i))?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(CryptoError::BadKeyId(id.to_owned()));
            }
            let bytes = Zeroizing::new(
                B64.decode(key)
                    .map_err(|_| CryptoError::BadKey(id.to_owned()))?,
            );
            let cipher = Aes256GcmSiv::new_from_slice(&bytes)
                .map_err(|_| CryptoError::BadKey(id.to_owned()))?;
            if ciphers.insert(id.to_owned(), cipher).is_some() {
                return Err(CryptoError::DuplicateKeyId(id.to_owned()));
            }
            active.get_or_insert_with(|| id.to_owned());
        }
        let active = active.ok_or(CryptoError::Empty)?;
        Ok(Self { active, ciphers })
    }

    /// A new random key in spec form (`id:base64key`), for first-time setup.
    pub fn generate_spec(id: &str) -> Zeroizing<String> {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill(&mut key[..]);
        Zeroizing::new(format!("{id}:{}", B64.encode(&key[..])))
    }

    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Every key id this keyring opens secrets with.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.ciphers.keys().map(String::as_str)
    }

    /// Seal `plaintext` for the record identified by `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let cipher = self
            .ciphers
            .get(&self.active)
            .ok_or_else(|| CryptoError::UnknownKeyId(self.active.clone()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(Sealed {
            key_id: self.active.clone(),
            blob,
        })
    }

    /// Open a sealed secret. The plaintext is wiped when the returned value drops.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let cipher = self
            .ciphers
            .get(&sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(sealed.key_id.clone()))?;
        if sealed.blob.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ct) = sealed.blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Forged(sealed.key_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        let a = Keyring::generate_spec("k2");
        let b = Keyring::generate_spec("k1");
        Keyring::parse(&format!("{},{}", a.as_str(), b.as_str())).unwrap()
    }

    #[test]
    fn seal_then_open() {
        let ring = ring();
        let sealed = ring.seal(b"sk-upstream", b"record-1").unwrap();
        assert_eq!(sealed.key_id, "k2");
        assert_eq!(
            &ring.open(&sealed, b"record-1").unwrap()[..],
            b"sk-upstream"
        );
    }

    #[test]
    fn nonces_differ_per_record() {
        let ring = ring();
        let a = ring.seal(b"same", b"r").unwrap();
        let b = ring.seal(b"same", b"r").unwrap();
        assert_ne!(a.blob, b.blob);
    }

    #[test]
    fn another_records_identity_does_not_open() {
        let ring = ring();
        let sealed = ring.seal(b"secret", b"record-1").unwrap();
        assert_eq!(
            ring.open(&sealed, b"record-2"),
            Err(CryptoError::Forged("k2".into()))
        );
    }

    #[test]
    fn tampered_or_short_blobs_fail() {
        let ring = ring();
        let mut sealed = ring.seal(b"secret", b"r").unwrap();
        let last = sealed.blob.len() - 1;
        sealed.blob[last] ^= 1;
        assert!(ring.open(&sealed, b"r").is_err());
        sealed.blob.truncate(5);
        assert_eq!(ring.open(&sealed, b"r"), Err(CryptoError::Malformed));
    }

    #[test]
    fn older_key_ids_still_open() {
        let old = Keyring::generate_spec("old");
        let ring_old = Keyring::parse(old.as_str()).unwrap();
        let sealed = ring_old.seal(b"secret", b"r").unwrap();
        let new = Keyring::generate_spec("new");
        let ring_new = Keyring::parse(&format!("{},{}", new.as_str(), old.as_str())).unwrap();
        assert_eq!(ring_new.active_id(), "new");
        assert_eq!(&ring_new.open(&sealed, b"r").unwrap()[..], b"secret");
    }

    #[test]
    fn bad_specs_are_refused() {
        assert_eq!(Keyring::parse("").err(), Some(CryptoError::Empty));
        assert_eq!(
            Keyring::parse("nocolon").err(),
            Some(CryptoError::BadEntry(0))
        );
        assert_eq!(
            Keyring::parse("a:notbase64!").err(),
            Some(CryptoError::BadKey("a".into()))
        );
        assert_eq!(
            Keyring::parse("a:c2hvcnQ=").err(),
            Some(CryptoError::BadKey("a".into()))
        );
        assert_eq!(
            Keyring::parse("bad id:c2hvcnQ=").err(),
            Some(CryptoError::BadKeyId("bad id".into()))
        );
        let k = Keyring::generate_spec("a");
        assert_eq!(
            Keyring::parse(&format!("{},{}", k.as_str(), k.as_str())).err(),
            Some(CryptoError::DuplicateKeyId("a".into()))
        );
    }
}
