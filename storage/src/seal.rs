//! Personal data at rest: sealed with XChaCha20-Poly1305 under a random 192-bit nonce, bound
//! to what it belongs to (the associated data names the tree and the record's key, so a
//! sealed value cannot be moved to another record). Lookups by phone number use
//! HMAC-SHA256 under a separate key, never the plaintext.

use crate::key::Keys;
use crate::StoreError;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const NONCE: usize = 24;

pub(crate) struct Sealer {
    aead: XChaCha20Poly1305,
    lookup: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(keys: &Keys) -> Sealer {
        Sealer { aead: XChaCha20Poly1305::new((&keys.seal).into()), lookup: keys.lookup }
    }

    /// nonce ‖ ciphertext+tag.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .aead
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| StoreError::Crypto("sealing failed".into()))?;
        let mut out = Vec::with_capacity(NONCE + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < NONCE + 16 {
            return Err(StoreError::Crypto("sealed value too short".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE);
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| StoreError::Crypto("sealed value does not open with this store's key".into()))
    }

    /// The keyed hash a phone number is looked up by.
    pub fn lookup_hash(&self, number: &str) -> [u8; 32] {
        // Invariant: HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup).expect("hmac key");
        mac.update(number.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&Keys { seal: [7; 32], lookup: [9; 32] })
    }

    #[test]
    fn sealed_values_open_only_with_their_associated_data() {
        let s = sealer();
        let a = s.seal(b"+8613800000000", b"contacts/1").expect("seal");
        let b = s.seal(b"+8613800000000", b"contacts/1").expect("seal");
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(s.open(&a, b"contacts/1").expect("open"), b"+8613800000000");
        assert!(s.open(&a, b"contacts/2").is_err(), "moved to another record");
        let mut bad = a.clone();
        bad[30] ^= 1;
        assert!(s.open(&bad, b"contacts/1").is_err(), "tampered");
        assert!(s.open(&a[..10], b"contacts/1").is_err());
    }

    #[test]
    fn lookup_hash_is_keyed_and_stable() {
        let s = sealer();
        assert_eq!(s.lookup_hash("+15555550100"), s.lookup_hash("+15555550100"));
        let other = Sealer::new(&Keys { seal: [7; 32], lookup: [8; 32] });
        assert_ne!(s.lookup_hash("+15555550100"), other.lookup_hash("+15555550100"));
    }
}
