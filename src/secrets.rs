//! Encryption at rest for provider credentials, webhook tokens and imported channel configs (README: "Configuration").
//!
//! Envelope: `0x01 ‖ key id (4 bytes) ‖ nonce (24 bytes) ‖ XChaCha20-Poly1305 ciphertext`. The associated data
//! binds a value to its table, column and row, so a ciphertext copied to another row does not decrypt.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "this value was encrypted with secret key {found}, but the configured key is {expected}: \
         set FERRY_SECRET_KEY to the key this database was created with"
    )]
    WrongKey { expected: String, found: String },
    #[error("encrypted value for {0} is corrupt or was moved from another row")]
    Tampered(String),
    #[error("encrypted value for {0} has an unknown format")]
    Format(String),
    #[error("FERRY_SECRET_KEY must be 32 bytes as base64 or 64 hex characters")]
    BadKey,
    #[error("cannot read or create the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// The 256-bit key. Zeroed on drop and never printed.
#[derive(Clone)]
pub struct SecretKey {
    key: Zeroizing<[u8; 32]>,
    id: [u8; 4],
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(id {})", self.id_hex())
    }
}

impl SecretKey {
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self::from_bytes(key)
    }

    fn from_bytes(key: Zeroizing<[u8; 32]>) -> Self {
        let digest = Sha256::digest(key.as_ref());
        let id = [digest[0], digest[1], digest[2], digest[3]];
        Self { key, id }
    }

    /// Accepts 64 hex characters or base64 (standard or URL-safe) of exactly 32 bytes.
    pub fn parse(s: &str) -> Result<Self, SecretsError> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).ok()
        } else {
            STANDARD
                .decode(s)
                .ok()
                .or_else(|| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
        };
        let bytes = Zeroizing::new(bytes.ok_or(SecretsError::BadKey)?);
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::BadKey)?;
        Ok(Self::from_bytes(Zeroizing::new(array)))
    }

    pub fn encode(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.as_ref()))
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// The embedded mode's key: `FERRY_SECRET_KEY` when set, otherwise `DATA_DIR/secret.key`, created with mode
    /// 0600 on first start. Creation uses `create_new`, so two processes starting at once agree on one key.
    pub fn load_or_create(explicit: Option<&str>, data_dir: &Path) -> Result<Self, SecretsError> {
        if let Some(k) = explicit {
            return Self::parse(k);
        }
        let path = data_dir.join("secret.key");
        let io = |source| SecretsError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                let key = Self::generate();
                file.write_all(key.encode().as_bytes()).map_err(io)?;
                file.write_all(b"\n").map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(io)?);
                Self::parse(&text)
            }
            Err(e) => Err(io(e)),
        }
    }
}

/// Where an encrypted value lives; part of the associated data.
#[derive(Debug, Clone, Copy)]
pub struct RowBinding<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_id: i64,
}

impl RowBinding<'_> {
    fn aad(&self) -> String {
        format!("ferry:v1:{}.{}:{}", self.table, self.column, self.row_id)
    }
}

impl fmt::Display for RowBinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} of row {}", self.table, self.column, self.row_id)
    }
}

#[derive(Clone, Debug)]
pub struct Cipher {
    key: SecretKey,
}

impl Cipher {
    pub fn new(key: SecretKey) -> Self {
        Self { key }
    }

    pub fn key_id(&self) -> String {
        self.key.id_hex()
    }

    pub fn encrypt(&self, plaintext: &[u8], at: RowBinding<'_>) -> Vec<u8> {
        let aead = XChaCha20Poly1305::new(self.key.key.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = at.aad();
        let ciphertext = aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&self.key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn decrypt(
        &self,
        envelope: &[u8],
        at: RowBinding<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        if envelope.len() < HEADER_LEN + 16 || envelope[0] != VERSION {
            return Err(SecretsError::Format(at.to_string()));
        }
        let key_id = &envelope[1..5];
        if key_id != self.key.id {
            return Err(SecretsError::WrongKey {
                expected: self.key.id_hex(),
                found: hex::encode(key_id),
            });
        }
        let aead = XChaCha20Poly1305::new(self.key.key.as_ref().into());
        let aad = at.aad();
        aead.decrypt(
            XNonce::from_slice(&envelope[5..HEADER_LEN]),
            Payload {
                msg: &envelope[HEADER_LEN..],
                aad: aad.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SecretsError::Tampered(at.to_string()))
    }

    pub fn encrypt_json(&self, value: &serde_json::Value, at: RowBinding<'_>) -> Vec<u8> {
        let plaintext = Zeroizing::new(serde_json::to_vec(value).expect("JSON values serialize"));
        self.encrypt(&plaintext, at)
    }

    pub fn decrypt_json(
        &self,
        envelope: &[u8],
        at: RowBinding<'_>,
    ) -> Result<serde_json::Value, SecretsError> {
        let plaintext = self.decrypt(envelope, at)?;
        serde_json::from_slice(&plaintext).map_err(|_| SecretsError::Format(at.to_string()))
    }
}

/// 256 random bits, URL-safe: session cookies, CSRF tokens, invitation links.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a random token: its SHA-256, so a copy of the database opens nothing.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: RowBinding<'static> = RowBinding {
        table: "inboxes",
        column: "provider_config",
        row_id: 7,
    };

    #[test]
    fn round_trips_and_uses_a_fresh_nonce_each_time() {
        let cipher = Cipher::new(SecretKey::generate());
        let a = cipher.encrypt(b"api-key-123", AT);
        let b = cipher.encrypt(b"api-key-123", AT);
        assert_ne!(a, b);
        assert_eq!(cipher.decrypt(&a, AT).unwrap().as_slice(), b"api-key-123");
        assert!(!a.windows(11).any(|w| w == b"api-key-123"));
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_decrypt() {
        let cipher = Cipher::new(SecretKey::generate());
        let env = cipher.encrypt(b"secret", AT);
        let other_row = RowBinding { row_id: 8, ..AT };
        let other_column = RowBinding {
            column: "token_ciphertext",
            ..AT
        };
        assert!(matches!(
            cipher.decrypt(&env, other_row),
            Err(SecretsError::Tampered(_))
        ));
        assert!(matches!(
            cipher.decrypt(&env, other_column),
            Err(SecretsError::Tampered(_))
        ));
        let mut flipped = env.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            cipher.decrypt(&flipped, AT),
            Err(SecretsError::Tampered(_))
        ));
    }

    #[test]
    fn a_wrong_key_is_named_never_garbage() {
        let env = Cipher::new(SecretKey::generate()).encrypt(b"secret", AT);
        let err = Cipher::new(SecretKey::generate())
            .decrypt(&env, AT)
            .unwrap_err();
        assert!(matches!(err, SecretsError::WrongKey { .. }));
        assert!(err.to_string().contains("FERRY_SECRET_KEY"));
        assert!(matches!(
            Cipher::new(SecretKey::generate()).decrypt(b"\x01abc", AT),
            Err(SecretsError::Format(_))
        ));
    }

    #[test]
    fn keys_parse_from_hex_and_base64_and_nothing_shorter() {
        let key = SecretKey::generate();
        let b64 = key.encode();
        assert_eq!(SecretKey::parse(&b64).unwrap().id_hex(), key.id_hex());
        let hex = hex::encode(STANDARD.decode(b64.as_str()).unwrap());
        assert_eq!(SecretKey::parse(&hex).unwrap().id_hex(), key.id_hex());
        assert!(matches!(
            SecretKey::parse("c2hvcnQ="),
            Err(SecretsError::BadKey)
        ));
        assert!(matches!(
            SecretKey::parse("not base64 at all!"),
            Err(SecretsError::BadKey)
        ));
        assert!(!format!("{key:?}").contains(b64.as_str()));
    }

    #[test]
    fn the_key_file_is_created_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SecretKey::load_or_create(None, dir.path()).unwrap();
        let second = SecretKey::load_or_create(None, dir.path()).unwrap();
        assert_eq!(first.id_hex(), second.id_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let explicit = SecretKey::generate();
        let chosen = SecretKey::load_or_create(Some(&explicit.encode()), dir.path()).unwrap();
        assert_eq!(chosen.id_hex(), explicit.id_hex());
    }
}
