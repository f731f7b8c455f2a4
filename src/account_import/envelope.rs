//! The legacy config API's envelopes: base64 (standard, padded) of `nonce (12) ‖ ciphertext ‖ tag (16)`,
//! AES-256-GCM under the shared key, with the channel id as associated data — a config cannot be moved to
//! another channel.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the legacy config key must be base64 of 32 bytes")]
    BadKey,
    #[error("the config of channel {0} is not base64")]
    NotBase64(String),
    #[error(
        "the config of channel {0} does not decrypt (wrong key, another channel's config, or tampered)"
    )]
    Decrypt(String),
    #[error("the config of channel {0} is not a JSON object")]
    NotJson(String),
}

#[derive(Clone)]
pub struct ConfigKey(Aes256Gcm);

impl ConfigKey {
    pub fn parse(base64_key: &str) -> Result<Self, EnvelopeError> {
        let bytes = STANDARD
            .decode(base64_key.trim())
            .map_err(|_| EnvelopeError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| EnvelopeError::BadKey)?;
        Ok(Self(cipher))
    }

    pub fn open(
        &self,
        channel_id: &str,
        envelope: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, EnvelopeError> {
        let raw = STANDARD
            .decode(envelope.trim())
            .map_err(|_| EnvelopeError::NotBase64(channel_id.into()))?;
        if raw.len() < 12 + 16 {
            return Err(EnvelopeError::Decrypt(channel_id.into()));
        }
        let (nonce, sealed) = raw.split_at(12);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: channel_id.as_bytes(),
                },
            )
            .map_err(|_| EnvelopeError::Decrypt(channel_id.into()))?;
        match serde_json::from_slice(&plain) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(EnvelopeError::NotJson(channel_id.into())),
        }
    }

    /// What the legacy system does (the demo export, fakes and tests).
    pub fn seal(&self, channel_id: &str, config: &serde_json::Value) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: config.to_string().as_bytes(),
                    aad: channel_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a small config");
        let mut raw = nonce.to_vec();
        raw.extend(sealed);
        STANDARD.encode(raw)
    }
}

/// A new random key, base64.
pub fn generate_key() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn opens_what_it_seals_only_for_the_same_channel_and_key() {
        let key = ConfigKey::parse(&generate_key()).unwrap();
        let config = json!({"instance_name": "loja", "api_key": "k"});
        let envelope = key.seal("ch-1", &config);
        assert_eq!(
            serde_json::Value::Object(key.open("ch-1", &envelope).unwrap()),
            config
        );
        assert_eq!(
            key.open("ch-2", &envelope),
            Err(EnvelopeError::Decrypt("ch-2".into()))
        );
        let other = ConfigKey::parse(&generate_key()).unwrap();
        assert!(matches!(
            other.open("ch-1", &envelope),
            Err(EnvelopeError::Decrypt(_))
        ));
        let mut raw = STANDARD.decode(&envelope).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(
            key.open("ch-1", &STANDARD.encode(raw)),
            Err(EnvelopeError::Decrypt(_))
        ));
        assert!(matches!(
            key.open("ch-1", "%%%"),
            Err(EnvelopeError::NotBase64(_))
        ));
        assert!(matches!(
            key.open("ch-1", "AAAA"),
            Err(EnvelopeError::Decrypt(_))
        ));
    }

    #[test]
    fn a_plaintext_that_is_not_an_object_is_refused() {
        let key = ConfigKey::parse(&generate_key()).unwrap();
        let envelope = key.seal("c", &json!([1, 2]));
        assert_eq!(
            key.open("c", &envelope),
            Err(EnvelopeError::NotJson("c".into()))
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert_eq!(
            ConfigKey::parse("c2hvcnQ=").err(),
            Some(EnvelopeError::BadKey)
        );
        assert_eq!(
            ConfigKey::parse("not base64!").err(),
            Some(EnvelopeError::BadKey)
        );
    }
}
