//! `GET /api/stats`: checks the window and hands over to the stats query.

use http::StatusCode;
use serde::Deserialize;
use utoipa::openapi::path::Parameter;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use super::{Call, HandlerResult};
use crate::apidoc::query_param;
use crate::input::query;
use crate::reply::json_bytes;
use crate::stats::{self, Window};

/// Query of `GET /api/stats`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    pub window: Option<String>,
}

/// The documented query parameters of `GET /api/stats`.
pub fn stats_query() -> Vec<Parameter> {
    let window = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(Window::pattern()))
        .default(Some("all".into()));
    vec![query_param(
        "window",
        "`all` (the default) or a length such as `90s`, `15m`, `1h`, `24h`, `7d`",
        window,
    )]
}

pub async fn get(call: Call) -> HandlerResult {
    let params: StatsParams = query::parse(&call.query)?;
    let window = match params.window.as_deref() {
        None => Window::all(),
        Some(raw) => Window::parse(raw).map_err(query::invalid)?,
    };
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
