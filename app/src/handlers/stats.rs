//! `GET /api/stats`: checks the window and hands over to the stats query.

use http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Call, HandlerResult};
use crate::input::query;
use crate::reply::json_bytes;
use crate::stats::{self, Window};

/// Query of `GET /api/stats`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    /// `all` (default) or a duration such as `15m`, `1h`, `24h`, `7d`.
    pub window: Option<String>,
}

pub async fn get(call: Call) -> HandlerResult {
    let params: StatsParams = query::parse(&call.query)?;
    let window =
        Window::parse(params.window.as_deref().unwrap_or_default()).map_err(query::invalid)?;
    let state = &call.state;
    let body = stats::report(
        state.db(),
        state.stats_cache(),
        &window,
        state.stats_minute_retention(),
        state.server_id(),
    )
    .await?;
    Ok(json_bytes(StatusCode::OK, body))
}
