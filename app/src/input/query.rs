//! Query strings: typed parameters, with 400 `invalid_query` naming what is wrong.

use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Parses the raw query (`""` when absent) into `T`; unknown keys are errors when `T` denies
/// them.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query)
        .map_err(|err| invalid(format!("query string is not valid: {err}")))
}

/// A whole number from `min` to `max` given as `key`, or `default` when absent.
pub fn number(
    key: &str,
    raw: Option<&str>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(format!(
            "`{key}` must be a whole number from {min} to {max}, got {raw:?}"
        ))),
    }
}

/// A 400 `invalid_query` with `message`.
pub fn invalid(message: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message,
    }
}
