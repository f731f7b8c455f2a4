//! The shape shared by ferry's bearer secrets (API tokens, webhook tokens): a recognisable prefix followed by
//! 256 random bits in URL-safe base64. Only their SHA-256 is looked up; `Debug` never prints the secret.

/// Defines a token newtype `$name` with prefix `$prefix`, its parse error `$error` and `generate`, `parse`,
/// `hash`, `display_prefix`, `expose`.
macro_rules! secret_token {
    ($(#[$doc:meta])* $name:ident, $error:ident, $prefix:literal, $noun:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $error {
            Prefix,
            Length,
            Alphabet,
        }

        impl std::fmt::Display for $error {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Self::Prefix => write!(f, "{} starts with \"{}\"", $noun, $prefix),
                    Self::Length => write!(f, "{} has 43 characters after its prefix", $noun),
                    Self::Alphabet => write!(f, "{} uses only letters, digits, '-' and '_'", $noun),
                }
            }
        }

        impl std::error::Error for $error {}

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            const BODY_LEN: usize = 43;

            pub fn generate() -> Self {
                use base64::Engine;
                use rand::RngCore;
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                Self(format!(
                    "{}{}",
                    Self::PREFIX,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
                ))
            }

            pub fn parse(s: &str) -> Result<Self, $error> {
                let body = s.strip_prefix(Self::PREFIX).ok_or($error::Prefix)?;
                if body.len() != Self::BODY_LEN {
                    return Err($error::Length);
                }
                if !body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err($error::Alphabet);
                }
                Ok(Self(s.to_owned()))
            }

            pub fn hash(&self) -> [u8; 32] {
                use sha2::Digest;
                sha2::Sha256::digest(self.0.as_bytes()).into()
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
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({}…)", stringify!($name), self.display_prefix())
            }
        }
    };
}

pub(super) use secret_token;
