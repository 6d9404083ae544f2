//! The OpenAPI 3 document served at `/openapi.json`, generated from the handlers.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers;

#[derive(OpenApi)]
#[openapi(
    info(title = "rustlb API", description = "Users CRUD, server identification and cluster-wide request statistics behind a load balancer. Every JSON body carries `server_id`; every response has `X-Server-Id` and `X-Request-Id` headers."),
    paths(
        handlers::index,
        handlers::health,
        handlers::server_info,
        handlers::list_users,
        handlers::create_user,
        handlers::get_user,
        handlers::update_user,
        handlers::delete_user,
        handlers::get_stats,
        handlers::metrics,
        handlers::openapi,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, serialised once at start.
pub fn document_json() -> Vec<u8> {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_default()
        .into_bytes()
}
