//! Bearer tokens for the legacy media service: JWT, HS256, `iss = "ferry"`, `aud = "legacy-media"`, expiring
//! five minutes after issue (`reference/legacy-source.md`). Small enough to write out rather than depend on.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const ISSUER: &str = "ferry";
pub const AUDIENCE: &str = "legacy-media";
/// The most the legacy service accepts.
pub const LIFETIME_SECONDS: i64 = 300;
/// What ferry asks for: a minute short of the most, so a clock a little ahead of the legacy one still passes.
pub const ISSUED_LIFETIME_SECONDS: i64 = 240;

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

pub fn issue(secret: &[u8], now_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now_secs, "exp": now_secs + ISSUED_LIFETIME_SECONDS})
            .to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// What the legacy media service checks (used by the fake server in tests): signature, algorithm, issuer,
/// audience, and an expiry in the future but at most five minutes away.
pub fn verify(secret: &[u8], token: &str, now_secs: i64) -> Result<(), &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT");
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "bad signature encoding")?;
    let mut m = mac(secret);
    m.update(format!("{header}.{claims}").as_bytes());
    m.verify_slice(&signature).map_err(|_| "bad signature")?;
    let decode = |part: &str| -> Result<Value, &'static str> {
        let raw = URL_SAFE_NO_PAD.decode(part).map_err(|_| "bad encoding")?;
        serde_json::from_slice(&raw).map_err(|_| "bad JSON")
    };
    if decode(header)?["alg"] != "HS256" {
        return Err("wrong algorithm");
    }
    let claims = decode(claims)?;
    if claims["iss"] != ISSUER || claims["aud"] != AUDIENCE {
        return Err("wrong issuer or audience");
    }
    let exp = claims["exp"].as_i64().ok_or("no expiry")?;
    if exp <= now_secs || exp > now_secs + LIFETIME_SECONDS {
        return Err("expired or too long-lived");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_with_its_secret_until_it_expires() {
        let token = issue(b"s3cret", 1_000);
        assert_eq!(verify(b"s3cret", &token, 1_000), Ok(()));
        assert_eq!(verify(b"s3cret", &token, 1_239), Ok(()));
        assert!(verify(b"s3cret", &token, 1_240).is_err());
        // A legacy clock 50 s behind still accepts it.
        assert_eq!(verify(b"s3cret", &token, 950), Ok(()));
        assert_eq!(verify(b"other", &token, 1_000), Err("bad signature"));
        assert!(verify(b"s3cret", "a.b", 1_000).is_err());
    }

    #[test]
    fn signs_with_hmac_sha256_and_carries_the_claims() {
        // RFC 4231, test case 2.
        let mut m = mac(b"Jefe");
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let token = issue(b"k", 50);
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims,
            json!({"iss": "ferry", "aud": "legacy-media", "iat": 50, "exp": 290})
        );
    }
}
