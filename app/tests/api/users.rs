//! `/api/users` CRUD and every way a caller can get it wrong.

use serde_json::{Value, json};

use crate::helpers::{Backend, Options, error_code, spawn_app, spawn_app_with};

async fn creating_a_user_returns_201_with_location_and_creator(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .post_json(
            "/api/users",
            &json!({"name": "Ann", "email": "ann@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["user"]["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/users/{id}"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(body["user"]["name"], "Ann");
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["created_by"], app.server_id.as_str());
    assert_eq!(body["server_id"], app.server_id.as_str());

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched["user"], body["user"]);
}

async fn users_are_listed_newest_first_in_pages_with_a_total(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        app.create_user(&format!("User {i}"), &format!("u{i}@example.com"))
            .await;
    }
    let page: Value = app
        .get("/api/users?limit=2&offset=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    let names: Vec<&str> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["User 3", "User 2"]);

    let all: Value = app.get("/api/users").await.json().await.unwrap();
    assert_eq!(all["limit"], 50);
    assert_eq!(all["users"].as_array().unwrap().len(), 5);
    assert_eq!(all["users"][0]["name"], "User 4");
}

async fn bad_paging_parameters_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "offset=-1",
        "limt=5",
        "limit=",
        "limit=+5",
        "limit=05",
        "limit=%205",
    ] {
        let response = app.get(&format!("/api/users?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            error_code(response, &app.server_id).await,
            "invalid_query",
            "{query}"
        );
    }
    assert_eq!(app.get("/api/users?limit=500").await.status(), 200);
}

async fn the_offset_is_bounded_with_an_error_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/api/users?offset=10000").await.status(), 200);
    for offset in ["10001", "9223372036854775807"] {
        let response = app.get(&format!("/api/users?offset={offset}")).await;
        assert_eq!(response.status(), 400, "{offset}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_query", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`offset`") && message.contains("0 to 10000"),
            "{message}"
        );
    }
    let documented: Value = app.get("/openapi.json").await.json().await.unwrap();
    let parameters = documented["paths"]["/api/users"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let offset = parameters.iter().find(|p| p["name"] == "offset").unwrap();
    assert_eq!(offset["schema"]["maximum"], 10000, "{offset}");
}

async fn error_bodies_show_at_most_100_characters_of_the_input(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = "9".repeat(60_000);
    let id = "x".repeat(5_000);
    for path in [
        format!("/api/users?limit={long}"),
        format!("/api/users?{long}=1"),
        format!("/api/stats?window={long}"),
        format!("/api/users/{id}"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 400, "{}", &path[..40]);
        let body = response.text().await.unwrap();
        assert!(body.len() < 600, "{} bytes: {}", body.len(), &body[..200]);
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains('…'), "{message}");
    }
}

async fn a_user_can_be_replaced_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("Bob", "bob@example.com").await;
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());

    let response = app
        .put_json(
            &path,
            &json!({"name": "Robert", "email": "robert@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["user"]["name"], "Robert");
    assert_eq!(updated["user"]["email"], "robert@example.com");
    assert_eq!(updated["user"]["created_at"], user["created_at"]);
    assert_ne!(updated["user"]["updated_at"], user["updated_at"]);

    let deleted = app.delete(&path).await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.headers()["x-server-id"], app.server_id.as_str());
    let gone = app.get(&path).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(gone, &app.server_id).await, "not_found");
    assert_eq!(app.delete(&path).await.status(), 404);
}

async fn unknown_and_malformed_ids_are_404_and_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = format!("/api/users/{}", uuid::Uuid::now_v7());
    assert_eq!(app.get(&unknown).await.status(), 404);
    let put = app
        .put_json(&unknown, &json!({"name": "X", "email": "x@example.com"}))
        .await;
    assert_eq!(put.status(), 404);
    for path in [
        "/api/users/42",
        "/api/users/not-a-uuid",
        // The same UUID without hyphens, or braced: not the form the API hands out.
        "/api/users/0190c3a4000070008000000000000000",
        "/api/users/%7B0190c3a4-0000-7000-8000-000000000000%7D",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(error_code(response, &app.server_id).await, "invalid_id");
    }
    assert_eq!(app.delete("/api/users/nope").await.status(), 400);
}

async fn invalid_user_input_is_a_400_naming_the_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let long_name = "n".repeat(101);
    let long_email = format!("{}@example.com", "e".repeat(250));
    let cases = [
        (
            json!({"email": "a@example.com"}),
            "validation_error",
            "name",
        ),
        (json!({"name": "A"}), "validation_error", "email"),
        (
            json!({"name": "   ", "email": "a@example.com"}),
            "validation_error",
            "name",
        ),
        (
            json!({"name": long_name, "email": "a@example.com"}),
            "validation_error",
            "100",
        ),
        (
            json!({"name": "A", "email": "not-an-email"}),
            "validation_error",
            "email",
        ),
        (
            json!({"name": "A", "email": long_email}),
            "validation_error",
            "254",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "admin": true}),
            "invalid_json",
            "admin",
        ),
        (
            json!({"name": 7, "email": "a@example.com"}),
            "invalid_json",
            "name",
        ),
        (json!(["A", "a@example.com"]), "invalid_json", ""),
    ];
    for (body, code, mentions) in cases {
        let response = app.post_json("/api/users", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let payload: Value = response.json().await.unwrap();
        assert_eq!(payload["error"]["code"], code, "{body} -> {payload}");
        let message = payload["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mentions),
            "{body}: message {message:?} should mention {mentions}"
        );
    }
    let broken = app
        .client
        .post(app.url("/api/users"))
        .header("content-type", "application/json")
        .body("{\"name\": \"A\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    assert_eq!(error_code(broken, &app.server_id).await, "invalid_json");
    let count: Value = app.get("/api/users").await.json().await.unwrap();
    assert_eq!(count["total"], 0, "nothing was written");
}

async fn names_are_trimmed_of_invisible_characters_and_never_hold_bidi_controls(backend: Backend) {
    let app = spawn_app(backend).await;
    let padded = app
        .create_user(" \u{200B}Ann\u{FEFF}\u{200B} ", "ann@example.com")
        .await;
    assert_eq!(padded["name"], "Ann");
    for name in [
        "\u{200B}\u{200B}\u{200B}",
        "\u{2060}\u{3164}",
        "Ann\u{202E}gnp.exe",
        "\u{2066}Bob",
    ] {
        let response = app
            .post_json(
                "/api/users",
                &json!({"name": name, "email": "x@example.com"}),
            )
            .await;
        assert_eq!(response.status(), 400, "{name:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "validation_error", "{name:?}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("name"),
            "{body}"
        );
    }
}

async fn duplicate_emails_conflict_whatever_their_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.create_user("Ann", "Ann@Example.com").await;
    let again = app
        .post_json(
            "/api/users",
            &json!({"name": "Ann 2", "email": "ann@example.COM"}),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again, &app.server_id).await, "email_taken");

    let other = app.create_user("Cy", "cy@example.com").await;
    let path = format!("/api/users/{}", other["id"].as_str().unwrap());
    let clash = app
        .put_json(&path, &json!({"name": "Cy", "email": "ANN@example.com"}))
        .await;
    assert_eq!(clash.status(), 409);
    // Keeping one's own email on update is not a conflict.
    let own = format!("/api/users/{}", first["id"].as_str().unwrap());
    assert_eq!(
        app.put_json(&own, &json!({"name": "Ann B", "email": "ann@example.com"}))
            .await
            .status(),
        200
    );
}

async fn emails_that_look_the_same_are_one_address_on_both_databases(backend: Backend) {
    let app = spawn_app(backend).await;
    // Non-ASCII case, Unicode normalisation (composed é, then e + combining acute), both.
    for (first, again) in [
        ("Äx@example.com", "äx@example.com"),
        ("café@example.com", "cafe\u{301}@example.com"),
        ("ÉCOLE@example.com", "e\u{301}cole@example.com"),
    ] {
        let user = app.create_user("First", first).await;
        assert_eq!(user["email"], first, "kept as given");
        let response = app
            .post_json("/api/users", &json!({"name": "Again", "email": again}))
            .await;
        assert_eq!(response.status(), 409, "{first} then {again}");
        assert_eq!(error_code(response, &app.server_id).await, "email_taken");
    }
    let other = app.create_user("Other", "other@example.com").await;
    let path = format!("/api/users/{}", other["id"].as_str().unwrap());
    let clash = app
        .put_json(
            &path,
            &json!({"name": "Other", "email": "CAFE\u{301}@example.com"}),
        )
        .await;
    assert_eq!(clash.status(), 409);
    let listed: Value = app.get("/api/users").await.json().await.unwrap();
    assert_eq!(listed["total"], 4);
}

async fn oversized_and_non_json_bodies_are_413_and_415(backend: Backend) {
    let options = Options {
        body_limit_bytes: 1024,
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let big = json!({"name": "x".repeat(2000), "email": "big@example.com"});
    let response = app.post_json("/api/users", &big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        error_code(response, &app.server_id).await,
        "payload_too_large"
    );

    // Without Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 800]), Ok(vec![b' '; 800])];
    let streamed = app
        .client
        .post(app.url("/api/users"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);

    let text = app
        .client
        .post(app.url("/api/users"))
        .header("content-type", "text/plain")
        .body("name=Ann")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    assert_eq!(
        error_code(text, &app.server_id).await,
        "unsupported_media_type"
    );
}

async fn two_hundred_concurrent_creates_make_exactly_two_hundred_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let requests = (0..200).map(|i| {
        let app = &app;
        async move {
            app.post_json(
                "/api/users",
                &json!({"name": format!("C{i}"), "email": format!("c{i}@example.com")}),
            )
            .await
            .status()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let db = app.connect_db().await;
    assert_eq!(app.count(&db, "users").await, 200);
    let listed: Value = app.get("/api/users?limit=500").await.json().await.unwrap();
    assert_eq!(listed["total"], 200);
}

/// The value of an unlabelled counter in `/metrics` text (0 before its first increment).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn concurrent_creates_share_statements_on_postgres() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let app = spawn_app(backend).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let requests = (0..300).map(|i| {
        let app = &app;
        async move {
            app.post_json(
                "/api/users",
                &json!({"name": format!("G{i}"), "email": format!("g{i}@example.com")}),
            )
            .await
            .status()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let after = app.get("/metrics").await.text().await.unwrap();
    // Other tests' creates in this process add to both counters alike unless they batch too.
    let saved = |m: &str| {
        counter(m, "user_creates_total").saturating_sub(counter(m, "user_create_statements_total"))
    };
    assert!(
        saved(&after) >= saved(&before) + 30,
        "300 concurrent creates shared too few statements:\n{after}"
    );
    let db = app.connect_db().await;
    assert_eq!(app.count(&db, "users").await, 300);
    let counted: i64 = sea_orm::ConnectionTrait::query_one_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT CAST(SUM(users) AS BIGINT) AS n FROM user_counts",
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap();
    assert_eq!(
        counted, 300,
        "the count triggers count every row of a batch"
    );
}

async fn concurrent_duplicate_emails_give_one_201_and_the_rest_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let requests = (0..40).map(|i| {
        let app = &app;
        async move {
            let email = if i % 2 == 0 {
                "race@example.com"
            } else {
                "RACE@example.com"
            };
            app.post_json(
                "/api/users",
                &json!({"name": format!("R{i}"), "email": email}),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        39,
        "{statuses:?}"
    );
    let db = app.connect_db().await;
    assert_eq!(app.count(&db, "users").await, 1);
}

on_both_databases!(
    creating_a_user_returns_201_with_location_and_creator,
    users_are_listed_newest_first_in_pages_with_a_total,
    bad_paging_parameters_are_rejected,
    the_offset_is_bounded_with_an_error_naming_it,
    error_bodies_show_at_most_100_characters_of_the_input,
    a_user_can_be_replaced_and_deleted,
    unknown_and_malformed_ids_are_404_and_400,
    invalid_user_input_is_a_400_naming_the_problem,
    names_are_trimmed_of_invisible_characters_and_never_hold_bidi_controls,
    duplicate_emails_conflict_whatever_their_case,
    emails_that_look_the_same_are_one_address_on_both_databases,
    oversized_and_non_json_bodies_are_413_and_415,
    two_hundred_concurrent_creates_make_exactly_two_hundred_users,
    concurrent_duplicate_emails_give_one_201_and_the_rest_409,
);
