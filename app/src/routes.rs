//! The route table: every route of the API, declared once.
//!
//! The router, the `Allow` header of a 405, the route template in logs, metrics and
//! `requests_log`, the `/` index and the OpenAPI document are all read from [`ROUTES`].

use utoipa::openapi::path::HttpMethod;

use crate::apidoc::{Answer, Doc, schema, uuid};
use crate::handlers::meta::{HealthBody, IndexBody, ServerInfoBody};
use crate::handlers::users::{UserBody, UserListBody};
use crate::handlers::{Handler, meta, stats, users};
use crate::stats::StatsBody;

/// One route: a method on a path template whose `:name` segments match any non-empty segment.
pub struct Route {
    pub method: Verb,
    pub path: &'static str,
    /// One line for the index and the OpenAPI summary.
    pub summary: &'static str,
    pub auth: Auth,
    /// Reads or writes the tables: answered with 503 `database_unavailable` while the
    /// database is unreachable, and `schema_not_migrated` while migrations are pending.
    pub needs_database: bool,
    pub handler: Handler,
    pub doc: Doc,
}

/// The methods routes are declared with. HEAD is answered wherever GET is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }

    pub const fn openapi(self) -> HttpMethod {
        match self {
            Self::Get => HttpMethod::Get,
            Self::Post => HttpMethod::Post,
            Self::Put => HttpMethod::Put,
            Self::Delete => HttpMethod::Delete,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Anyone,
    /// `Authorization: Bearer <application.api_key>` when a key is configured.
    ApiKey,
}

/// The load balancer's health check: logged only when `request_log.log_health_checks`.
pub const HEALTH: &str = "/health";
/// Which server answered.
pub const SERVER_INFO: &str = "/server-info";
/// The users collection.
pub const USERS: &str = "/api/users";
/// One user, by id.
pub const USER: &str = "/api/users/:id";
/// Requests per server.
pub const STATS: &str = "/api/stats";

const NO_DOC: Doc = Doc {
    param: None,
    query: None,
    body: None,
    answers: &[],
};

/// The API. Order matters only for the index and the `Allow` header.
pub static ROUTES: &[Route] = &[
    Route {
        method: Verb::Get,
        path: "/",
        summary: "this index",
        auth: Auth::Anyone,
        needs_database: false,
        handler: |call| Box::pin(meta::index(call)),
        doc: Doc {
            answers: &[Answer::json(200, "the endpoints", schema::<IndexBody>)],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: HEALTH,
        summary: "liveness and database check (used by the load balancer)",
        auth: Auth::Anyone,
        needs_database: false,
        handler: |call| Box::pin(meta::health(call)),
        doc: Doc {
            answers: &[
                Answer::json(
                    200,
                    "healthy, or degraded (the shared database unreachable, or this \
                     instance's storage unwritable; reason says which)",
                    schema::<HealthBody>,
                ),
                Answer::json(
                    503,
                    "unhealthy (the database schema is not migrated for this build) or \
                     draining (the instance is stopping)",
                    schema::<HealthBody>,
                ),
            ],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: SERVER_INFO,
        summary: "which instance answered",
        auth: Auth::Anyone,
        needs_database: false,
        handler: |call| Box::pin(meta::server_info(call)),
        doc: Doc {
            answers: &[Answer::json(
                200,
                "this instance",
                schema::<ServerInfoBody<'static>>,
            )],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: "/dashboard",
        summary: "live dashboard (HTML): requests per server, latency, errors, who answered",
        auth: Auth::Anyone,
        needs_database: false,
        handler: |call| Box::pin(meta::dashboard(call)),
        doc: Doc {
            answers: &[Answer::other(
                200,
                "a self-contained page that polls /api/stats and /server-info",
                "text/html",
            )],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: USERS,
        summary: "list users, newest first (?limit=1..500&offset=)",
        auth: Auth::Anyone,
        needs_database: true,
        handler: |call| Box::pin(users::list(call)),
        doc: Doc {
            query: Some(users::list_query),
            answers: &[Answer::json(200, "a page of users", schema::<UserListBody>)],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Post,
        path: USERS,
        summary: "create a user {name, email}",
        auth: Auth::ApiKey,
        needs_database: true,
        handler: |call| Box::pin(users::create(call)),
        doc: Doc {
            body: Some(users::input_schema),
            answers: &[
                Answer::json(201, "created", schema::<UserBody>)
                    .with_header("Location", "the new user's URL")
                    .with_links(&[
                        ("get_api_users_id", "$response.body#/user/id"),
                        ("put_api_users_id", "$response.body#/user/id"),
                        ("delete_api_users_id", "$response.body#/user/id"),
                    ]),
                Answer::error(409, "another user has this email"),
            ],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: USER,
        summary: "one user",
        auth: Auth::Anyone,
        needs_database: true,
        handler: |call| Box::pin(users::get(call)),
        doc: Doc {
            param: Some(uuid),
            answers: &[
                Answer::json(200, "the user", schema::<UserBody>),
                Answer::error(404, "no such user"),
            ],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Put,
        path: USER,
        summary: "replace a user's name and email",
        auth: Auth::ApiKey,
        needs_database: true,
        handler: |call| Box::pin(users::replace(call)),
        doc: Doc {
            param: Some(uuid),
            body: Some(users::input_schema),
            answers: &[
                Answer::json(200, "the user as replaced", schema::<UserBody>),
                Answer::error(404, "no such user"),
                Answer::error(409, "another user has this email"),
            ],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Delete,
        path: USER,
        summary: "delete a user",
        auth: Auth::ApiKey,
        needs_database: true,
        handler: |call| Box::pin(users::delete(call)),
        doc: Doc {
            param: Some(uuid),
            answers: &[
                Answer::empty(204, "deleted"),
                Answer::error(404, "no such user"),
            ],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: STATS,
        summary: "cluster-wide request distribution (?window=1h)",
        auth: Auth::Anyone,
        needs_database: true,
        handler: |call| Box::pin(stats::get(call)),
        doc: Doc {
            query: Some(stats::stats_query),
            answers: &[Answer::json(
                200,
                "the distribution",
                schema::<StatsBody<'static>>,
            )],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: "/metrics",
        summary: "Prometheus metrics",
        auth: Auth::Anyone,
        needs_database: false,
        handler: |call| Box::pin(meta::metrics(call)),
        doc: Doc {
            answers: &[Answer::other(200, "Prometheus text format", "text/plain")],
            ..NO_DOC
        },
    },
    Route {
        method: Verb::Get,
        path: "/openapi.json",
        summary: "OpenAPI 3 description of this API",
        auth: Auth::Anyone,
        needs_database: false,
        handler: |call| Box::pin(meta::openapi(call)),
        doc: Doc {
            answers: &[Answer::other(200, "this document", "application/json")],
            ..NO_DOC
        },
    },
];
