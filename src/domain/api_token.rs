use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A personal API token: `fry_` followed by 256 random bits, URL-safe base64. Only its SHA-256 is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenError {
    #[error("an API token starts with \"fry_\"")]
    Prefix,
    #[error("an API token has 43 characters after its prefix")]
    Length,
    #[error("an API token uses only letters, digits, '-' and '_'")]
    Alphabet,
}

impl ApiToken {
    pub const PREFIX: &'static str = "fry_";
    const BODY_LEN: usize = 43;

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("{}{}", Self::PREFIX, URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn parse(s: &str) -> Result<Self, ApiTokenError> {
        let body = s.strip_prefix(Self::PREFIX).ok_or(ApiTokenError::Prefix)?;
        if body.len() != Self::BODY_LEN {
            return Err(ApiTokenError::Length);
        }
        if !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ApiTokenError::Alphabet);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// What may be shown to identify a token: its prefix and first characters.
    pub fn display_prefix(&self) -> String {
        self.0[..Self::PREFIX.len() + 6].to_owned()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

// Never print the secret by accident.
impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}…)", self.display_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_ne!(a, b);
        assert_eq!(ApiToken::parse(a.expose()).unwrap(), a);
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(&a.expose()[12..]));
    }

    #[test]
    fn malformed_tokens_are_rejected_with_a_reason() {
        let good = ApiToken::generate();
        assert_eq!(
            ApiToken::parse(&good.expose()[4..]),
            Err(ApiTokenError::Prefix)
        );
        assert_eq!(
            ApiToken::parse(&good.expose()[..40]),
            Err(ApiTokenError::Length)
        );
        let mut bad = good.expose().to_owned();
        bad.replace_range(10..11, "!");
        assert_eq!(ApiToken::parse(&bad), Err(ApiTokenError::Alphabet));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_exact_shape(s in "\\PC{0,60}") {
            if let Ok(t) = ApiToken::parse(&s) {
                prop_assert_eq!(t.expose().len(), 47);
                prop_assert!(s.starts_with("fry_"));
            }
        }
    }
}
