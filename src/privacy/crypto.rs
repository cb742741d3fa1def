//! Encryption at rest for account tokens: XChaCha20-Poly1305, so a stored value that was
//! tampered with, or read back with another key, fails loudly instead of decoding to junk.
//!
//! The key comes from `FACTORY_SECRET_KEY` (32 bytes, base64 or hex) or, when that is
//! unset, from a key file created on first use and readable by its owner only.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The environment variable that holds the key.
pub const KEY_ENV: &str = "FACTORY_SECRET_KEY";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("`{KEY_ENV}` is not a 32-byte key in base64 or hex")]
    BadEnvKey,
    #[error("key file `{}` does not hold a 32-byte key in base64 or hex", path.display())]
    BadKeyFile { path: PathBuf },
    #[error("cannot read or create key file `{}`: {source}", path.display())]
    KeyFile { path: PathBuf, source: io::Error },
    #[error("cannot decrypt stored tokens: the secret key is wrong or missing (`{KEY_ENV}`)")]
    Decrypt,
}

/// A 32-byte key. Prints as `[redacted]`.
#[derive(Clone)]
pub struct Key(chacha20poly1305::Key);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key([redacted])")
    }
}

impl Key {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// Parses 32 bytes written as 64 hex digits or as base64 (padded or not).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| STANDARD_NO_PAD.decode(text))
                .ok()?
        };
        (bytes.len() == KEY_LEN).then(|| Self(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    /// The key from `FACTORY_SECRET_KEY` when it is set, otherwise the one in `key_file`,
    /// which is created (mode 0600) the first time.
    pub fn resolve(key_file: &Path) -> Result<Self, CryptoError> {
        match crate::secret::Secret::from_env(KEY_ENV) {
            Some(value) => Self::parse(value.expose()).ok_or(CryptoError::BadEnvKey),
            None => Self::load_or_create(key_file),
        }
    }

    /// Reads the key in `path`, or creates the file with a new key, readable by its owner
    /// only, when there is none yet.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let io_error = |source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                return Self::parse(&text).ok_or_else(|| CryptoError::BadKeyFile {
                    path: path.to_owned(),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(error)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                writeln!(file, "{}", STANDARD.encode(key.0)).map_err(io_error)?;
                file.sync_all().map_err(io_error)?;
                Ok(key)
            }
            // Another process created it between our read and our create: use theirs.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io_error)?;
                Self::parse(&text).ok_or_else(|| CryptoError::BadKeyFile {
                    path: path.to_owned(),
                })
            }
            Err(error) => Err(io_error(error)),
        }
    }
}

impl Key {
    /// Writes the key to a new file at `path`, readable by its owner only; an existing
    /// file there is replaced.
    pub fn write_file(&self, path: &Path) -> Result<(), CryptoError> {
        let io_error = |source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(error)),
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_error)?;
        writeln!(file, "{}", STANDARD.encode(self.0)).map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }
}

/// Encrypts `plaintext` under a fresh random nonce; returns base64 of nonce ‖ ciphertext.
pub fn encrypt(key: &Key, plaintext: &str) -> String {
    let cipher = XChaCha20Poly1305::new(&key.0);
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(&nonce, plaintext.as_bytes())
        .expect("XChaCha20-Poly1305 only refuses plaintexts beyond 256 GiB");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    STANDARD.encode(out)
}

/// Reverses [`encrypt`]. Any failure — bad base64, a wrong key, a tampered value — reads
/// the same to the user: the key does not fit.
pub fn decrypt(key: &Key, stored: &str) -> Result<String, CryptoError> {
    let bytes = STANDARD
        .decode(stored.trim())
        .map_err(|_| CryptoError::Decrypt)?;
    if bytes.len() < NONCE_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let plaintext = XChaCha20Poly1305::new(&key.0)
        .decrypt(XNonce::from_slice(nonce), ciphertext)
        .map_err(|_| CryptoError::Decrypt)?;
    String::from_utf8(plaintext).map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_a_fresh_nonce_each_time() {
        let key = Key::generate();
        let a = encrypt(&key, "rft.secret-refresh-token");
        let b = encrypt(&key, "rft.secret-refresh-token");
        assert_ne!(a, b);
        assert!(!a.contains("secret"));
        assert_eq!(decrypt(&key, &a).unwrap(), "rft.secret-refresh-token");
        assert_eq!(decrypt(&key, &b).unwrap(), "rft.secret-refresh-token");
    }

    #[test]
    fn a_wrong_key_or_a_tampered_value_gives_the_clear_error() {
        let key = Key::generate();
        let stored = encrypt(&key, "act.token");
        let wrong = decrypt(&Key::generate(), &stored).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "cannot decrypt stored tokens: the secret key is wrong or missing (`FACTORY_SECRET_KEY`)"
        );
        let mut bytes = STANDARD.decode(&stored).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            decrypt(&key, &STANDARD.encode(bytes)),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            decrypt(&key, "not base64!"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(decrypt(&key, "AAAA"), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn parses_hex_and_base64_of_exactly_32_bytes() {
        let raw = [7u8; 32];
        let from_hex = Key::parse(&hex::encode(raw)).unwrap();
        let from_b64 = Key::parse(&STANDARD.encode(raw)).unwrap();
        let from_b64_no_pad = Key::parse(&STANDARD_NO_PAD.encode(raw)).unwrap();
        let stored = encrypt(&from_hex, "x");
        assert_eq!(decrypt(&from_b64, &stored).unwrap(), "x");
        assert_eq!(decrypt(&from_b64_no_pad, &stored).unwrap(), "x");
        assert!(Key::parse(&hex::encode([7u8; 31])).is_none());
        assert!(Key::parse(&STANDARD.encode([7u8; 33])).is_none());
        assert!(Key::parse("").is_none());
    }

    #[test]
    fn key_file_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("secret.key");
        let first = Key::load_or_create(&path).unwrap();
        let again = Key::load_or_create(&path).unwrap();
        assert_eq!(decrypt(&again, &encrypt(&first, "t")).unwrap(), "t");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            Key::load_or_create(&path),
            Err(CryptoError::BadKeyFile { .. })
        ));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = Key::parse(&hex::encode([0xabu8; 32])).unwrap();
        assert_eq!(format!("{key:?}"), "Key([redacted])");
    }
}
