//! `LogRecord`: one answered request, as it waits for the database; where a spooled one ends.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// One answered request: a future `requests_log` row.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub method: &'static str,
    /// The route template (`/api/users/:id`), so rows group by route.
    pub route: &'static str,
    pub status: u16,
    pub duration_us: u64,
    pub client_ip: Option<IpAddr>,
    pub request_id: Arc<str>,
    pub at: DateTime<Utc>,
}

/// Where a batch read from a spool ends: stored in the batch's own transaction, so the
/// database has exactly the rows before it, whatever happens after the commit.
#[derive(Debug, Clone, Copy)]
pub struct SpoolPosition<'a> {
    pub spool_id: &'a str,
    pub segment: u64,
    pub offset: u64,
}
