//! The shape shared by ferry's bearer secrets (API tokens, webhook tokens): a recognisable prefix followed by
//! 256 random bits in URL-safe base64. Only their SHA-256 is looked up; `Debug` never prints the secret.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine;
use rand::RngCore;
use sha2::Digest;

/// A kind of token: its prefix, and how messages name it.
pub trait TokenKind {
    const PREFIX: &'static str;
    const NOUN: &'static str;
    const NAME: &'static str;
}

/// A token of kind `K`. Tokens of two kinds never parse as each other (their prefixes differ).
pub struct SecretToken<K>(String, PhantomData<K>);

/// Why a text is not a token of kind `K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError<K> {
    Prefix,
    Length,
    Alphabet,
    #[doc(hidden)]
    Kind(std::convert::Infallible, PhantomData<K>),
}

/// Characters after the prefix: 32 bytes in unpadded base64.
const BODY_LEN: usize = 43;

impl<K: TokenKind> SecretToken<K> {
    pub const PREFIX: &'static str = K::PREFIX;

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self(format!("{}{body}", K::PREFIX), PhantomData)
    }

    pub fn parse(s: &str) -> Result<Self, TokenError<K>> {
        let body = s.strip_prefix(K::PREFIX).ok_or(TokenError::Prefix)?;
        if body.len() != BODY_LEN {
            return Err(TokenError::Length);
        }
        let url_safe = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if !body.bytes().all(url_safe) {
            return Err(TokenError::Alphabet);
        }
        Ok(Self(s.to_owned(), PhantomData))
    }

    pub fn hash(&self) -> [u8; 32] {
        sha2::Sha256::digest(self.0.as_bytes()).into()
    }

    /// What may be shown to identify a token: its prefix and first characters.
    pub fn display_prefix(&self) -> String {
        self.0[..K::PREFIX.len() + 6].to_owned()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<K> Clone for SecretToken<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K> PartialEq for SecretToken<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for SecretToken<K> {}

// Never print the secret by accident.
impl<K: TokenKind> fmt::Debug for SecretToken<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}…)", K::NAME, self.display_prefix())
    }
}

impl<K: TokenKind> fmt::Display for TokenError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix => write!(f, "{} starts with \"{}\"", K::NOUN, K::PREFIX),
            Self::Length => write!(f, "{} has 43 characters after its prefix", K::NOUN),
            Self::Alphabet => write!(f, "{} uses only letters, digits, '-' and '_'", K::NOUN),
            Self::Kind(never, _) => match *never {},
        }
    }
}

impl<K: TokenKind + fmt::Debug> std::error::Error for TokenError<K> {}
