//! Every route in one place: path first, then method, so a known path with the wrong method
//! is a 405 and an unknown path a 404.

use std::convert::Infallible;

use warp::{Filter, Reply};

use crate::error::handle_rejection;
use crate::handlers;
use crate::state::AppState;

/// The whole API as one warp filter.
pub fn api(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    // `query::raw` rejects an empty query; an absent query is just "".
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let index = warp::path::end()
        .and(warp::get())
        .and(with_state.clone())
        .and_then(handlers::index);
    let health = warp::path!("health")
        .and(warp::get())
        .and(with_state.clone())
        .and_then(handlers::health);
    let server_info = warp::path!("server-info")
        .and(warp::get())
        .and(with_state.clone())
        .and_then(handlers::server_info);

    let users = warp::path!("api" / "users").and(
        warp::get()
            .and(with_state.clone())
            .and(raw_query)
            .and_then(handlers::list_users)
            .or(warp::post()
                .and(with_state.clone())
                .and(warp::header::headers_cloned())
                .and(warp::body::stream())
                .and_then(handlers::create_user))
            .unify(),
    );
    let user_path = warp::path!("api" / "users" / String);
    let user = user_path
        .and(warp::get())
        .and(with_state.clone())
        .and_then(handlers::get_user)
        .or(user_path
            .and(warp::put())
            .and(with_state.clone())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .and_then(handlers::update_user))
        .unify()
        .or(user_path
            .and(warp::delete())
            .and(with_state.clone())
            .and(warp::header::headers_cloned())
            .and_then(handlers::delete_user))
        .unify();
    let stats = warp::path!("api" / "stats")
        .and(warp::get())
        .and(with_state.clone())
        .and(raw_query)
        .and_then(handlers::get_stats);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .and_then(handlers::metrics);
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .and(with_state.clone())
        .and_then(handlers::openapi);

    index
        .or(health)
        .unify()
        .or(server_info)
        .unify()
        .or(users)
        .unify()
        .or(user)
        .unify()
        .or(stats)
        .unify()
        .or(metrics)
        .unify()
        .or(openapi)
        .unify()
        .map(Reply::into_response)
        .recover(move |err| handle_rejection(state.clone(), err))
        .unify()
}

/// The methods a route (as returned by [`template`]) accepts, for the `Allow` header of a 405.
pub fn allowed_methods(route: &str) -> &'static str {
    match route {
        "/api/users" => "GET, HEAD, POST",
        "/api/users/:id" => "GET, HEAD, PUT, DELETE",
        _ => "GET, HEAD",
    }
}

/// The route template a path belongs to, for logs and metrics (`/api/users/:id`, not the id).
pub fn template(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/health" => "/health",
        "/server-info" => "/server-info",
        "/api/users" => "/api/users",
        "/api/stats" => "/api/stats",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        other => match other.strip_prefix("/api/users/") {
            Some(rest) if !rest.is_empty() && !rest.contains('/') => "/api/users/:id",
            _ => "unmatched",
        },
    }
}
