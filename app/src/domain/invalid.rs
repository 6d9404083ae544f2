//! `Invalid`: why a value was refused, worded for the caller.

/// For example `` `name` must not be empty ``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
