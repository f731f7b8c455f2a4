use super::secret_token::{SecretToken, TokenError, TokenKind};

/// The secret in a provider's webhook URL (`/webhooks/{provider}/{token}`): `fwh_` followed by 256 random
/// bits, URL-safe base64. Stored as SHA-256 for routing and encrypted for the administrator to reveal.
pub type WebhookToken = SecretToken<Webhook>;
pub type WebhookTokenError = TokenError<Webhook>;

/// The kind of `WebhookToken`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {}

impl TokenKind for Webhook {
    const PREFIX: &'static str = "fwh_";
    const NOUN: &'static str = "a webhook token";
    const NAME: &'static str = "WebhookToken";
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = WebhookToken::generate();
        let b = WebhookToken::generate();
        assert_ne!(a, b);
        assert_eq!(WebhookToken::parse(a.expose()).unwrap(), a);
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(&a.expose()[12..]));
    }

    #[test]
    fn malformed_tokens_are_rejected_with_a_reason() {
        let good = WebhookToken::generate();
        assert_eq!(
            WebhookToken::parse(&good.expose()[4..]),
            Err(WebhookTokenError::Prefix)
        );
        assert_eq!(
            WebhookToken::parse(&good.expose()[..40]),
            Err(WebhookTokenError::Length)
        );
        let mut bad = good.expose().to_owned();
        bad.replace_range(10..11, "!");
        assert_eq!(WebhookToken::parse(&bad), Err(WebhookTokenError::Alphabet));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_exact_shape(s in "\\PC{0,60}") {
            if let Ok(t) = WebhookToken::parse(&s) {
                prop_assert_eq!(t.expose().len(), 47);
                prop_assert!(s.starts_with("fwh_"));
            }
        }
    }
}

#[cfg(test)]
mod shape {
    use super::*;

    #[test]
    fn webhook_and_api_tokens_are_not_interchangeable() {
        let api = crate::domain::ApiToken::generate();
        assert_eq!(
            WebhookToken::parse(api.expose()),
            Err(WebhookTokenError::Prefix)
        );
        let hook = WebhookToken::generate();
        assert!(hook.expose().starts_with("fwh_"));
        assert_eq!(hook.expose().len(), 47);
        assert_eq!(
            WebhookTokenError::Length.to_string(),
            "a webhook token has 43 characters after its prefix"
        );
    }
}
