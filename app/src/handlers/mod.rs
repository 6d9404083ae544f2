//! Request handlers: take what they need from a [`Call`], ask the service, shape the answer.
//!
//! Errors are [`ApiError`]s; the router turns them into responses.

pub mod meta;
pub mod stats;
pub mod users;

use futures_util::future::BoxFuture;
use warp::reply::Response;

use crate::error::ApiError;
use crate::input::body::Body;
use crate::state::AppState;

/// What every handler returns.
pub type HandlerResult = Result<Response, ApiError>;

/// A handler as the route table holds it.
pub type Handler = fn(Call) -> BoxFuture<'static, HandlerResult>;

/// One routed request, as a handler sees it. Authorization has been checked already.
pub struct Call {
    pub state: AppState,
    /// The value of the route's `:param` segment, for routes that have one.
    pub param: Option<String>,
    /// The raw query string, `""` when absent.
    pub query: String,
    pub body: Body,
}
