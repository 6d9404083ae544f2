//! Query strings: typed parameters, with 400 `invalid_query` naming what is wrong.

use serde::de::DeserializeOwned;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::echo::{capped, echo};
use crate::error::ApiError;

/// Parses the raw query (`""` when absent) into `T`; unknown keys are errors when `T` denies
/// them.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str(query)
        .map_err(|err| invalid(capped(&format!("query string is not valid: {err}"))))
}

/// A whole-number query parameter, its range and default: parsed and documented from here.
pub struct Number {
    pub name: &'static str,
    pub description: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

impl Number {
    /// The value given as `raw`, or the default when absent. Only plain decimal digits
    /// (no sign, no leading zero, no spaces): exactly the integers the document allows.
    pub fn parse(&self, raw: Option<&str>) -> Result<u64, ApiError> {
        let Some(raw) = raw else {
            return Ok(self.default);
        };
        let plain = !raw.is_empty()
            && raw.bytes().all(|b| b.is_ascii_digit())
            && (raw == "0" || !raw.starts_with('0'));
        match raw.parse::<u64>() {
            Ok(n) if plain && (self.min..=self.max).contains(&n) => Ok(n),
            _ => Err(invalid(format!(
                "`{}` must be a whole number from {} to {}, got {}",
                self.name,
                self.min,
                self.max,
                echo(raw)
            ))),
        }
    }

    /// The parameter's schema for the OpenAPI document.
    pub fn schema(&self) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(self.min))
            .maximum(Some(self.max))
            .default(Some(self.default.into()))
    }
}

/// A 400 `invalid_query` with `message`.
pub fn invalid(message: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_query",
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_digits_within_their_range() {
        let limit = Number {
            name: "limit",
            description: "",
            default: 50,
            min: 1,
            max: 500,
        };
        assert_eq!(limit.parse(None).unwrap(), 50);
        assert_eq!(limit.parse(Some("500")).unwrap(), 500);
        for bad in ["", "0", "501", "+5", " 5", "05", "5.0", "1e2", "-1", "abc"] {
            assert!(limit.parse(Some(bad)).is_err(), "{bad:?} accepted");
        }
        let offset = Number { min: 0, ..limit };
        assert_eq!(offset.parse(Some("0")).unwrap(), 0);
        assert!(offset.parse(Some("00")).is_err());
    }
}
