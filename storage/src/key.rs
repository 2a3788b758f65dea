//! The store's master key: 32 bytes from `WAIHU_STORE_KEY` (64 hex digits) or from the key
//! file, which is created on first start, readable by its owner only (0600). Two subkeys
//! are derived from it with HKDF-SHA256: one seals personal data, one keys the lookup hash.

use crate::StoreError;
use hkdf::Hkdf;
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

/// The environment variable that carries the master key, in hex.
pub const KEY_ENV: &str = "WAIHU_STORE_KEY";

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// This file; created with a fresh random key when it does not exist.
    File(std::path::PathBuf),
    /// 64 hex digits (what `WAIHU_STORE_KEY` holds).
    Hex(String),
}

impl KeySource {
    /// `WAIHU_STORE_KEY` if set, else `<store>/store.key`.
    pub fn default_for(store: &Path) -> KeySource {
        match std::env::var(KEY_ENV) {
            Ok(hex) if !hex.is_empty() => KeySource::Hex(hex),
            _ => KeySource::File(store.join("store.key")),
        }
    }
}

pub(crate) struct Keys {
    pub seal: [u8; 32],
    pub lookup: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

pub(crate) fn load(source: &KeySource) -> Result<Keys, StoreError> {
    let master = match source {
        KeySource::Hex(hex) => parse_hex(hex.trim()).ok_or_else(|| {
            StoreError::Key(format!("{KEY_ENV} must be 64 hex digits (32 bytes), got {} characters", hex.trim().len()))
        })?,
        KeySource::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => parse_hex(text.trim())
                .ok_or_else(|| StoreError::Key(format!("{}: not 64 hex digits", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(e) => return Err(StoreError::Key(format!("{}: {e}", path.display()))),
        },
    };
    let hk = Hkdf::<Sha256>::new(Some(b"waihu-store-v1"), &master);
    let mut keys = Keys { seal: [0; 32], lookup: [0; 32] };
    // Invariant: 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    hk.expand(b"seal", &mut keys.seal).expect("hkdf length");
    hk.expand(b"lookup", &mut keys.lookup).expect("hkdf length");
    Ok(keys)
}

fn create(path: &Path) -> Result<[u8; 32], StoreError> {
    use chacha20poly1305::aead::{KeyInit, OsRng};
    let key = chacha20poly1305::XChaCha20Poly1305::generate_key(&mut OsRng);
    let mut master = [0u8; 32];
    master.copy_from_slice(&key);
    let hex: String = master.iter().map(|b| format!("{b:02x}")).collect();
    let err = |e: std::io::Error| StoreError::Key(format!("create {}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(hex.as_bytes()).and_then(|_| f.write_all(b"\n")).and_then(|_| f.sync_all()).map_err(err)?;
    Ok(master)
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_is_owner_only_and_loads_the_same_keys_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.key");
        let a = load(&KeySource::File(path.clone())).expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let b = load(&KeySource::File(path)).expect("load");
        assert_eq!((a.seal, a.lookup), (b.seal, b.lookup));
        assert_ne!(a.seal, a.lookup);
    }

    #[test]
    fn a_bad_key_is_refused_clearly() {
        let e = load(&KeySource::Hex("abc".into())).expect_err("short");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let ok = load(&KeySource::Hex("00".repeat(32))).expect("zeros are a key");
        assert_ne!(ok.seal, [0; 32]);
    }
}
