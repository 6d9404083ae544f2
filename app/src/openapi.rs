//! The OpenAPI 3 document served at `/openapi.json`, assembled from the route table.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Required, ResponseBuilder, schema::Type};
use utoipa::{Modify, OpenApi};

use crate::apidoc::{Answer, Content, Schemas, schema};
use crate::error::ErrorBody;
use crate::routes::{Auth, ROUTES, Route};

#[derive(OpenApi)]
#[openapi(
    info(title = "rustlb API", description = "Users CRUD, server identification and cluster-wide request statistics behind a load balancer. Every JSON body carries `server_id`; every response has `X-Server-Id` and `X-Request-Id` headers."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The scheme routes with [`Auth::ApiKey`] refer to.
const BEARER: &str = "bearer";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document: every route of the table under its OpenAPI path (`{id}` for `:id`).
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(assemble()).unwrap_or_default();
    spell_links(&mut doc);
    doc
}

fn assemble() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let mut schemas = Schemas::new();
    schema::<ErrorBody<'static>>(&mut schemas);
    let mut paths = Paths::new();
    for route in ROUTES {
        paths.add_path_operation(
            openapi_path(route.path),
            vec![route.method.openapi()],
            operation(route, &mut schemas),
        );
    }
    doc.paths = paths;
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.extend(schemas);
    doc
}

/// The document, serialised once at start.
pub fn document_json() -> Vec<u8> {
    serde_json::to_vec_pretty(&document()).unwrap_or_default()
}

/// utoipa 5.5 writes a link's fields in snake case (`operation_id`); OpenAPI spells them in
/// camel case, and clients ignore a link without `operationId`.
fn spell_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
}

/// `/api/users/:id` as OpenAPI writes it: `/api/users/{id}`.
pub fn openapi_path(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn operation(route: &Route, schemas: &mut Schemas) -> utoipa::openapi::path::Operation {
    let doc = &route.doc;
    let mut op = OperationBuilder::new()
        .summary(Some(route.summary))
        .operation_id(Some(operation_id(route)));
    for name in route.path.split('/').filter_map(|s| s.strip_prefix(':')) {
        let schema = match doc.param {
            Some(param) => param(schemas),
            None => utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::String)
                .into(),
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema)),
        );
    }
    if let Some(query) = doc.query {
        op = op.parameters(Some(query()));
    }
    if let Some(body) = doc.body {
        let content = ContentBuilder::new().schema(Some(body(schemas))).build();
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content("application/json", content)
                .required(Some(Required::True))
                .build(),
        ));
    }
    if route.auth == Auth::ApiKey {
        op = op.security(SecurityRequirement::new(BEARER, Vec::<String>::new()));
    }
    for answer in doc.answers.iter().chain(&shared_answers(route)) {
        op = op.response(answer.status.to_string(), response(answer, schemas));
    }
    op.build()
}

/// Errors a route can answer because of its shape rather than what it does.
fn shared_answers(route: &Route) -> Vec<Answer> {
    let doc = &route.doc;
    let mut answers = Vec::new();
    if doc.param.is_some() || doc.query.is_some() || doc.body.is_some() {
        answers.push(Answer::error(
            400,
            "the path, query or body is not valid (`error.code` says which)",
        ));
    }
    if route.auth == Auth::ApiKey {
        answers.push(
            Answer::error(401, "the API key is missing or wrong")
                .with_header("WWW-Authenticate", "`Bearer`"),
        );
    }
    if doc.body.is_some() {
        answers.push(Answer::error(413, "the body is over the size limit"));
        answers.push(Answer::error(415, "the body is not application/json"));
    }
    if route.needs_database {
        answers.push(
            Answer::error(
                503,
                "the database is unreachable (`database_unavailable`, with `Retry-After`) or \
                 has pending migrations (`schema_not_migrated`)",
            )
            .with_header("Retry-After", "seconds to wait before trying again"),
        );
    }
    answers
}

fn response(answer: &Answer, schemas: &mut Schemas) -> utoipa::openapi::Response {
    let mut response = ResponseBuilder::new().description(answer.description);
    match answer.content {
        Content::Empty => {}
        Content::Json(schema) => {
            let content = ContentBuilder::new().schema(Some(schema(schemas))).build();
            response = response.content("application/json", content);
        }
        Content::Other(content_type) => {
            response = response.content(content_type, ContentBuilder::new().build());
        }
    }
    let every_response = [
        ("X-Server-Id", "the instance that answered"),
        (
            "X-Request-Id",
            "the request's id: the caller's `X-Request-Id` when it is 1-128 characters of \
             A-Z a-z 0-9 - _ . :, else a generated one",
        ),
    ];
    for (name, description) in answer.header.iter().chain(&every_response) {
        let string = utoipa::openapi::ObjectBuilder::new().schema_type(Type::String);
        response = response.header(
            *name,
            HeaderBuilder::new()
                .schema(string)
                .description(Some(*description))
                .build(),
        );
    }
    for (operation_id, id) in answer.links {
        let link = LinkBuilder::new()
            .operation_id(*operation_id)
            .parameter("id", *id)
            .build();
        response = response.link(*operation_id, link);
    }
    response.build()
}

/// `get_api_users_id`: the method and the path's words.
fn operation_id(route: &Route) -> String {
    let words: Vec<&str> = route
        .path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let path = if words.is_empty() {
        "index".to_owned()
    } else {
        words.join("_")
    };
    format!("{}_{path}", route.method.as_str().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_under_its_method_and_path() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = 0;
        for (path, item) in paths {
            documented += item.as_object().unwrap().len();
            assert!(
                ROUTES.iter().any(|r| openapi_path(r.path) == *path),
                "{path} is not a route"
            );
        }
        assert_eq!(documented, ROUTES.len());
        for route in ROUTES {
            let method = route.method.as_str().to_ascii_lowercase();
            let op = &paths[&openapi_path(route.path)][&method];
            assert_eq!(op["summary"], route.summary, "{method} {}", route.path);
            assert_eq!(
                op.get("security").is_some(),
                route.auth == Auth::ApiKey,
                "{method} {}",
                route.path
            );
        }
    }

    #[test]
    fn every_link_names_an_operation_of_the_document() {
        let doc = document();
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("operation_id"), "links in snake case");
        let mut linked = 0;
        for reference in text.split("\"operationId\":\"").skip(1) {
            let id = &reference[..reference.find('"').unwrap()];
            assert!(ids.contains(&id), "a link to {id}, which is no operation");
            linked += 1;
        }
        assert!(linked > ids.len(), "links were written");
    }

    #[test]
    fn every_reference_resolves() {
        let text = String::from_utf8(document_json()).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but missing"
            );
        }
    }
}
