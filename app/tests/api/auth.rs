//! The API key: writes need it, reads don't.

use serde_json::json;

use crate::helpers::{Backend, Options, error_code, spawn_app_with};

async fn writes_need_the_api_key_and_reads_do_not(backend: Backend) {
    let options = Options {
        api_key: Some("s3cret-key-0123456789".into()),
        ..Options::default()
    };
    let app = spawn_app_with(backend, options).await;
    let body = json!({"name": "Ann", "email": "ann@example.com"});

    let anonymous = app
        .client
        .post(app.url("/api/users"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(anonymous, &app.server_id).await, "unauthorized");

    let wrong = app
        .client
        .post(app.url("/api/users"))
        .bearer_auth("s3cret-key-012345678X")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let user = app.create_user("Ann", "ann@example.com").await;
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());
    assert_eq!(
        app.client
            .delete(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        app.client
            .put(app.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Reads stay open.
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/api/users"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.delete(&path).await.status(), 204);
}

/// `auth_rejected_total{reason}` as /metrics shows it now.
async fn rejected(app: &crate::helpers::TestApp, reason: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let series = format!("auth_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
        .parse()
        .unwrap()
}

async fn the_bearer_scheme_is_case_insensitive_and_refusals_are_counted(backend: Backend) {
    let key = "k3y-0123456789abcdef";
    let app = spawn_app_with(
        backend,
        Options {
            api_key: Some(key.into()),
            ..Options::default()
        },
    )
    .await;
    let post = |authorization: Option<String>, email: &'static str| {
        let mut request = app
            .client
            .post(app.url("/api/users"))
            .json(&json!({"name": "Ann", "email": email}));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    for (i, scheme) in ["BEARER", "bearer", "bEaReR"].into_iter().enumerate() {
        let email = ["a@example.com", "b@example.com", "c@example.com"][i];
        let response = post(Some(format!("{scheme} {key}")), email).await.unwrap();
        assert_eq!(response.status(), 201, "{scheme}");
    }
    // Counters are process-wide (other tests refuse too): compare before and after.
    let (missing, invalid) = (
        rejected(&app, "missing").await,
        rejected(&app, "invalid").await,
    );
    assert_eq!(post(None, "d@example.com").await.unwrap().status(), 401);
    let wrong = post(Some("Bearer k3y-0123456789abcdeX".into()), "d@example.com");
    assert_eq!(wrong.await.unwrap().status(), 401);
    assert!(rejected(&app, "missing").await > missing);
    assert!(rejected(&app, "invalid").await > invalid);
}

on_both_databases!(
    writes_need_the_api_key_and_reads_do_not,
    the_bearer_scheme_is_case_insensitive_and_refusals_are_counted,
);
