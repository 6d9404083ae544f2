//! The index, unknown paths, wrong methods, request ids, OpenAPI and metrics.

use serde_json::Value;

use crate::helpers::{Backend, Options, error_code, spawn_app, spawn_app_with};

async fn the_index_lists_every_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let body: Value = app.get("/").await.json().await.unwrap();
    let paths: Vec<&str> = body["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for path in [
        "/health",
        "/server-info",
        "/api/users",
        "/api/users/:id",
        "/api/stats",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains(&path), "{path} not listed");
    }
    assert_eq!(body["server_id"], app.server_id.as_str());
}

async fn an_unknown_path_is_a_json_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/no/such/thing").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-server-id"], app.server_id.as_str());
    assert_eq!(error_code(response, &app.server_id).await, "not_found");
}

async fn a_wrong_method_is_a_json_405(backend: Backend) {
    let app = spawn_app(backend).await;
    for (method, path) in [
        (reqwest::Method::PATCH, "/api/users"),
        (reqwest::Method::POST, "/health"),
        (reqwest::Method::DELETE, "/api/stats"),
        (
            reqwest::Method::POST,
            "/api/users/0190c3a4-0000-7000-8000-000000000000",
        ),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(
            error_code(response, &app.server_id).await,
            "method_not_allowed"
        );
    }
}

async fn head_answers_like_get_without_a_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let get_len = app.get("/openapi.json").await.bytes().await.unwrap().len();
    let head = app
        .client
        .head(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["x-server-id"], app.server_id.as_str());
    assert_eq!(
        head.headers()["content-length"],
        get_len.to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    let wrong = app.client.post(app.url("/health")).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET, HEAD");
}

async fn a_request_id_is_echoed_or_generated(backend: Backend) {
    let app = spawn_app(backend).await;
    let given = app
        .client
        .get(app.url("/server-info"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-abc.123");

    let generated = app.get("/server-info").await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "generated id {id}");

    let unsafe_id = "x".repeat(200);
    let replaced = app
        .client
        .get(app.url("/server-info"))
        .header("x-request-id", &unsafe_id)
        .send()
        .await
        .unwrap();
    let echoed = replaced.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(echoed, unsafe_id);
    assert!(uuid::Uuid::parse_str(echoed).is_ok());
}

async fn openapi_describes_every_endpoint(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/", "get"),
        ("/health", "get"),
        ("/server-info", "get"),
        ("/api/users", "get"),
        ("/api/users", "post"),
        ("/api/users/{id}", "get"),
        ("/api/users/{id}", "put"),
        ("/api/users/{id}", "delete"),
        ("/api/stats", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} undocumented"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "UserInput",
        "UserBody",
        "UserListBody",
        "StatsBody",
        "ErrorBody",
        "HealthBody",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
}

async fn openapi_gives_queries_as_queries_and_bodies_with_their_real_limits(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let params = |path: &str| doc["paths"][path]["get"]["parameters"].clone();
    let users = params("/api/users");
    for (i, name, min, max) in [(0, "limit", 1, 500), (1, "offset", 0, 10_000)] {
        let param = &users[i];
        assert_eq!(param["name"], name);
        assert_eq!(param["in"], "query", "{param}");
        assert_eq!(param["required"], false, "{param}");
        assert_eq!(param["schema"]["type"], "integer", "{param}");
        assert_eq!(param["schema"]["minimum"], min, "{param}");
        assert_eq!(param["schema"]["maximum"], max, "{param}");
    }
    let window = &params("/api/stats")[0];
    assert_eq!(window["in"], "query", "{window}");
    let pattern = regex::Regex::new(window["schema"]["pattern"].as_str().unwrap()).unwrap();
    for (value, valid) in [("all", true), ("24h", true), ("", false), ("1y", false)] {
        assert_eq!(pattern.is_match(value), valid, "window={value}");
        let status = app
            .get(&format!("/api/stats?window={value}"))
            .await
            .status();
        assert_eq!(status.is_success(), valid, "window={value}: {status}");
    }

    let input = &doc["components"]["schemas"]["UserInput"];
    assert_eq!(input["additionalProperties"], false, "{input}");
    assert_eq!(input["required"], serde_json::json!(["name", "email"]));
    for field in ["name", "email"] {
        let schema = &input["properties"][field];
        assert_eq!(schema["type"], "string", "{field}: no null");
        assert!(schema["maxLength"].is_u64(), "{field}");
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        assert!(!pattern.is_match(""), "{field}: empty is not schema-valid");
    }
    let email =
        regex::Regex::new(input["properties"]["email"]["pattern"].as_str().unwrap()).unwrap();
    assert!(email.is_match("ann@example.com") && !email.is_match("not-an-email"));

    for (path, method) in [("/api/users", "post"), ("/api/users/{id}", "get")] {
        let unavailable = &doc["paths"][path][method]["responses"]["503"];
        assert!(
            unavailable["headers"]["Retry-After"].is_object(),
            "{method} {path}: {unavailable}"
        );
    }
}

async fn the_dashboard_is_one_self_contained_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/dashboard").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{headers:?}"
    );
    assert_eq!(headers["x-server-id"], app.server_id.as_str());
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in ["default-src 'none'", "connect-src 'self'"] {
        assert!(policy.contains(directive), "{policy}");
    }
    let page = response.text().await.unwrap();
    let external =
        regex::Regex::new(r#"(?i)(src|href|action)\s*=\s*["']?\s*([a-z]+:)?//"#).unwrap();
    assert!(!external.is_match(&page), "a reference to another host");
    for absent in [
        "http://", "https://", "@import", "url(", "<link", "<img", "<iframe",
    ] {
        assert!(!page.contains(absent), "the page holds {absent}");
    }
    for hook in [
        "data-server-id",
        "document.body.dataset.state",
        "\"live\"",
        "/api/stats",
        "/server-info",
        app::paths::LB_STATUS,
        "dataset.backendId",
        "name=\"viewport\"",
    ] {
        assert!(page.contains(hook), "the page lacks {hook}");
    }
    let index: Value = app.get("/").await.json().await.unwrap();
    assert!(
        index["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/dashboard"),
        "{index}"
    );
}

async fn metrics_expose_requests_latency_pool_and_queue(backend: Backend) {
    let app = spawn_app(backend).await;
    app.get("/server-info").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "http_requests_total{route=\"/server-info\",method=\"GET\",status=\"200\"}",
        "http_request_duration_seconds_bucket",
        "db_pool_connections",
        "request_log_queue_depth",
        "request_log_dropped_total",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from /metrics:\n{text}"
        );
    }
}

async fn every_route_is_indexed_documented_and_logged_under_its_template(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            log_health_checks: true,
            ..Options::default()
        },
    )
    .await;
    let table = app::testing::routes();
    let index: Value = app.get("/").await.json().await.unwrap();
    let indexed: Vec<(String, String)> = index["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let listed: Vec<(String, String)> = table
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(indexed, listed, "the index is the route table");

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        table.len(),
        "no undocumented or extra operations"
    );

    // One request per route, on a user that exists, deleted last.
    let user = app.create_user("Ann", "ann@example.com").await;
    let id = user["id"].as_str().unwrap();
    let mut requests = table.clone();
    requests.sort_by_key(|(method, _)| *method == "DELETE");
    for (method, template) in &requests {
        let openapi = template.replace(":id", "{id}");
        assert!(
            paths[&openapi].get(method.to_ascii_lowercase()).is_some(),
            "{method} {template} is not in /openapi.json"
        );
        let path = template.replace(":id", id);
        let request = app.client.request(method.parse().unwrap(), app.url(&path));
        let body = serde_json::json!({"name": "Ann", "email": "ann@example.com"});
        let request = match *method {
            "POST" => request.json(&serde_json::json!({"name": "Bo", "email": "bo@example.com"})),
            "PUT" => request.json(&body),
            _ => request,
        };
        let status = app.authorized(request).send().await.unwrap().status();
        assert!(status.is_success(), "{method} {path}: {status}");
    }
    for (method, template) in &table {
        let rows = format!("requests_log WHERE method = '{method}' AND path = '{template}'");
        assert!(
            app.wait_for_rows(&rows, 1).await >= 1,
            "{method} {template} is not logged under its template"
        );
    }
}

on_both_databases!(
    every_route_is_indexed_documented_and_logged_under_its_template,
    the_index_lists_every_endpoint,
    an_unknown_path_is_a_json_404,
    a_wrong_method_is_a_json_405,
    head_answers_like_get_without_a_body,
    a_request_id_is_echoed_or_generated,
    openapi_describes_every_endpoint,
    the_dashboard_is_one_self_contained_page,
    openapi_gives_queries_as_queries_and_bodies_with_their_real_limits,
    metrics_expose_requests_latency_pool_and_queue,
);
