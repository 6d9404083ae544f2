//! What a request carries, checked once: the API key, the JSON body, the query string.

pub mod auth;
pub mod body;
pub mod query;
