//! The API key: writes need `Authorization: Bearer <key>` when one is configured.

use http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The configured key, kept only as its SHA-256 digest.
pub struct ApiKey([u8; 32]);

impl ApiKey {
    pub fn new(key: &SecretString) -> Self {
        Self(Sha256::digest(key.expose_secret().as_bytes()).into())
    }

    /// Both sides are hashed first so the comparison takes the same time whatever the length
    /// or content of the guess.
    fn matches(&self, presented: &str) -> bool {
        let got = Sha256::digest(presented.as_bytes());
        bool::from(got[..].ct_eq(&self.0[..]))
    }
}

/// Lets the request through when no key is configured or it presents the key. Refusals are
/// counted in `auth_rejected_total{reason}`: `missing` (no bearer credentials) or `invalid`.
pub fn authorize(key: Option<&ApiKey>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    let Some(presented) = bearer_token(headers) else {
        metrics::counter!("auth_rejected_total", "reason" => "missing").increment(1);
        return Err(ApiError::Unauthorized(
            "writes need `Authorization: Bearer <api key>`",
        ));
    };
    if key.matches(presented) {
        Ok(())
    } else {
        metrics::counter!("auth_rejected_total", "reason" => "invalid").increment(1);
        Err(ApiError::Unauthorized("the API key is not valid"))
    }
}

/// The token of `Authorization: Bearer <token>`; the scheme's case does not matter (RFC 9110
/// section 11.1).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_auth(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn only_the_configured_key_passes_whatever_the_scheme_case() {
        let key = ApiKey::new(&"s3cret-key".into());
        for accepted in [
            "Bearer s3cret-key",
            "bearer s3cret-key ",
            "BEARER s3cret-key",
            "bEaReR \ts3cret-key",
        ] {
            assert!(
                authorize(Some(&key), &with_auth(accepted)).is_ok(),
                "{accepted}"
            );
        }
        for refused in [
            "Bearer s3cret-kez",
            "Basic s3cret-key",
            "Bearers3cret-key",
            "Bearer ",
            "s3cret-key",
        ] {
            assert!(
                authorize(Some(&key), &with_auth(refused)).is_err(),
                "{refused}"
            );
        }
        assert!(authorize(Some(&key), &HeaderMap::new()).is_err());
        assert!(authorize(None, &HeaderMap::new()).is_ok());
    }
}
