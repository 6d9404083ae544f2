//! The API key: writes need it, reads don't.

use serde_json::json;

use crate::helpers::{Backend, Options, error_code, spawn_app_with};

async fn writes_need_the_api_key_and_reads_do_not(backend: Backend) {
    let options = Options {
        api_key: Some("s3cret-key".into()),
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
        .bearer_auth("s3cret-kez")
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

on_both_databases!(writes_need_the_api_key_and_reads_do_not);
