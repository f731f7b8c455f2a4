use super::secret_token::{SecretToken, TokenError, TokenKind};

/// A personal API token: `fry_` followed by 256 random bits, URL-safe base64. Only its SHA-256 is stored.
pub type ApiToken = SecretToken<Api>;
pub type ApiTokenError = TokenError<Api>;

/// The kind of `ApiToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {}

impl TokenKind for Api {
    const PREFIX: &'static str = "fry_";
    const NOUN: &'static str = "an API token";
    const NAME: &'static str = "ApiToken";
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
