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

/// Lets the request through when no key is configured or it presents the key.
pub fn authorize(key: Option<&ApiKey>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(ApiError::Unauthorized(
            "writes need `Authorization: Bearer <api key>`",
        ))?;
    if key.matches(presented.trim()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the API key is not valid"))
    }
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
    fn only_the_configured_key_passes() {
        let key = ApiKey::new(&"s3cret-key".into());
        assert!(authorize(Some(&key), &with_auth("Bearer s3cret-key")).is_ok());
        assert!(authorize(Some(&key), &with_auth("bearer s3cret-key ")).is_ok());
        assert!(authorize(Some(&key), &with_auth("Bearer s3cret-kez")).is_err());
        assert!(authorize(Some(&key), &with_auth("Basic s3cret-key")).is_err());
        assert!(authorize(Some(&key), &HeaderMap::new()).is_err());
        assert!(authorize(None, &HeaderMap::new()).is_ok());
    }
}
