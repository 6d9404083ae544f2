//! Routing by the route table: which route a request is for, and the filter that runs it.

use std::convert::Infallible;

use http::{HeaderMap, Method};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::error::ApiError;
use crate::handlers::Call;
use crate::input::auth;
use crate::input::body::Body;
use crate::routes::{Auth, ROUTES, Route, Verb};
use crate::state::AppState;

/// What the route table says about a request.
pub enum Resolution<'p> {
    Found {
        route: &'static Route,
        /// The `:param` segment's value, for templates that have one.
        param: Option<&'p str>,
    },
    /// The path is a route's; the method is not one of its methods.
    WrongMethod {
        template: &'static str,
    },
    NotFound,
}

/// Logs and metrics name requests that match no route this way.
pub const UNMATCHED: &str = "unmatched";

impl Resolution<'_> {
    /// The route template (`/api/users/:id`, not the id) for logs and metrics.
    pub fn template(&self) -> &'static str {
        match self {
            Self::Found { route, .. } => route.path,
            Self::WrongMethod { template } => template,
            Self::NotFound => UNMATCHED,
        }
    }
}

/// Finds the route for `method` (HEAD already turned into GET) on `path`.
pub fn resolve<'p>(method: &Method, path: &'p str) -> Resolution<'p> {
    let mut template = None;
    for route in ROUTES {
        let Some(param) = match_path(route.path, path) else {
            continue;
        };
        if route.method.as_str() == method.as_str() {
            return Resolution::Found { route, param };
        }
        template.get_or_insert(route.path);
    }
    match template {
        Some(template) => Resolution::WrongMethod { template },
        None => Resolution::NotFound,
    }
}

/// The methods `template` answers, for the `Allow` header of a 405: HEAD follows GET.
pub fn allow(template: &str) -> String {
    let mut methods = Vec::new();
    for route in ROUTES.iter().filter(|r| r.path == template) {
        methods.push(route.method.as_str());
        if route.method == Verb::Get {
            methods.push("HEAD");
        }
    }
    methods.join(", ")
}

/// `Some(param)` when `path` fits `template`. Like warp's path filters, a trailing slash is
/// ignored; a `:param` segment must not be empty.
fn match_path<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut wanted = segments(template);
    let mut given = segments(path);
    let mut param = None;
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(param),
            (Some(w), Some(g)) if w.starts_with(':') && !g.is_empty() => param = Some(g),
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

fn segments(path: &str) -> std::str::Split<'_, char> {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.strip_suffix('/').unwrap_or(path).split('/')
}

/// The whole API as one warp filter: the request's route from the table, its authorization,
/// then its handler; every error as the JSON envelope.
pub fn api(state: AppState) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    // `query::raw` rejects an empty query; an absent query is just "".
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let server_id = state.server_id().to_owned();
    warp::method()
        .and(warp::path::full())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: FullPath, query: String, headers: HeaderMap, body| {
                let state = state.clone();
                async move {
                    let result = match resolve(&method, path.as_str()) {
                        Resolution::Found { route, param } => {
                            let call = Call {
                                state: state.clone(),
                                param: param.map(str::to_owned),
                                query,
                                body: Body::new(&headers, body),
                            };
                            run(route, call, &headers).await
                        }
                        Resolution::WrongMethod { template } => Err(ApiError::MethodNotAllowed {
                            allow: allow(template),
                        }),
                        Resolution::NotFound => Err(ApiError::NotFound(
                            "no such endpoint; GET / lists them".to_owned(),
                        )),
                    };
                    result.unwrap_or_else(|err| err.into_response(state.server_id()))
                }
            },
        )
        .recover(move |rejection| unexpected(server_id.clone(), rejection))
        .unify()
}

async fn run(route: &'static Route, call: Call, headers: &HeaderMap) -> Result<Response, ApiError> {
    if route.auth == Auth::ApiKey {
        auth::authorize(call.state.api_key(), headers)?;
    }
    if !route.needs_database {
        return (route.handler)(call).await;
    }
    let database = call.state.database().clone();
    if !database.is_up() {
        return Err(ApiError::DatabaseUnavailable);
    }
    if let Some(problem) = call.state.schema().problem() {
        return Err(ApiError::SchemaNotMigrated(problem));
    }
    // A request stuck waiting for a connection to a database that went away is let go as
    // soon as the probe confirms it is away, instead of after the pool's acquire timeout.
    let result = tokio::select! {
        biased;
        result = (route.handler)(call) => result,
        () = database.lost_while_waiting() => Err(ApiError::DatabaseUnavailable),
    };
    if matches!(result, Err(ApiError::DatabaseUnavailable)) {
        database.suspect();
    }
    result
}

/// The filters above reject nothing a client can cause; should one ever, the client gets the
/// envelope and the log gets the details.
async fn unexpected(server_id: String, rejection: Rejection) -> Result<Response, Infallible> {
    tracing::error!(?rejection, "unhandled rejection");
    Ok(ApiError::Internal(format!("{rejection:?}")).into_response(&server_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A concrete path for a template: `:id` becomes a UUID.
    fn example(template: &str) -> String {
        template.replace(":id", "0190c3a4-0000-7000-8000-000000000000")
    }

    #[test]
    fn every_route_resolves_to_itself_and_is_allowed() {
        for route in ROUTES {
            let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
            match resolve(&method, &example(route.path)) {
                Resolution::Found { route: found, .. } => {
                    assert!(
                        std::ptr::eq(found, route),
                        "{} {}",
                        route.method.as_str(),
                        route.path
                    )
                }
                _ => panic!("{} {} does not resolve", route.method.as_str(), route.path),
            }
            assert!(
                allow(route.path)
                    .split(", ")
                    .any(|m| m == route.method.as_str()),
                "{} missing from Allow of {}",
                route.method.as_str(),
                route.path
            );
        }
    }

    #[test]
    fn paths_resolve_like_warp_did() {
        let get = Method::GET;
        assert_eq!(resolve(&get, "/").template(), "/");
        assert_eq!(resolve(&get, "/health/").template(), "/health");
        assert_eq!(resolve(&get, "/api/users/abc").template(), "/api/users/:id");
        assert_eq!(resolve(&get, "/api/users/").template(), "/api/users");
        assert_eq!(resolve(&get, "/api/users/a/b").template(), UNMATCHED);
        assert_eq!(resolve(&get, "/api//users").template(), UNMATCHED);
        assert_eq!(resolve(&get, "/nope").template(), UNMATCHED);
        assert!(matches!(
            resolve(&Method::PATCH, "/api/users"),
            Resolution::WrongMethod {
                template: "/api/users"
            }
        ));
        match resolve(&get, "/api/users/abc") {
            Resolution::Found { param, .. } => assert_eq!(param, Some("abc")),
            _ => panic!("not found"),
        }
    }

    #[test]
    fn allow_lists_head_after_get() {
        assert_eq!(allow("/api/users"), "GET, HEAD, POST");
        assert_eq!(allow("/api/users/:id"), "GET, HEAD, PUT, DELETE");
        assert_eq!(allow("/health"), "GET, HEAD");
    }
}
