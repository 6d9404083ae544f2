//! `infra up --stack local --https`: the API over TLS at the load balancer with the certificate
//! `up` made and printed, and HTTP redirected there, checked with a TLS client, curl, `infra
//! verify` and chromium.

mod browser;
mod stack;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A detached local stack started with `--https` on free ports; destroyed on drop.
struct HttpsStack {
    root: stack::Root,
    https_port: u16,
    certificate: PathBuf,
    /// What `up` printed.
    printed: String,
}

impl HttpsStack {
    fn up() -> HttpsStack {
        let (root, https_port) = loop {
            let (https_port, _) = stack::free_ports(0);
            let root = stack::Root::new(
                3,
                3,
                stack::SQLITE,
                &format!("  rustlb:lbHttpsAddress: 127.0.0.1:{https_port}\n"),
            );
            let taken = [
                root.lb_port,
                root.first_port,
                root.first_port + 1,
                root.first_port + 2,
            ];
            if !taken.contains(&https_port) {
                break (root, https_port);
            }
        };
        let up = root.infra(&["up", "--stack", "local", "--https", "--detach"]);
        let printed = String::from_utf8_lossy(&up.stdout).into_owned();
        assert!(
            up.status.success(),
            "up --https failed: {printed}{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let certificate = root.root().join(".stack/local/tls/localhost.pem");
        let stack = HttpsStack {
            root,
            https_port,
            certificate,
            printed,
        };
        stack.wait_all_up();
        stack
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    fn status(&self) -> Value {
        let out = self.root.infra(&["status", "--stack", "local", "--json"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn wait_all_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status();
            let backends = status["backends"].as_array().unwrap();
            if backends.len() == 3 && backends.iter().all(|b| b["state"] == "up") {
                return;
            }
            assert!(Instant::now() < deadline, "not all up: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn client(&self) -> reqwest::blocking::Client {
        let pem = std::fs::read(&self.certificate).unwrap();
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }
}

impl Drop for HttpsStack {
    fn drop(&mut self) {
        let _ = self.root.infra(&["destroy", "--stack", "local"]);
    }
}

#[test]
fn an_https_stack_serves_the_api_over_tls_and_redirects_http_there() {
    let stack = HttpsStack::up();
    let cert = stack.certificate.display().to_string();
    assert!(
        stack.printed.contains(&cert) && stack.printed.contains(&stack.https_url("")),
        "up must print the URL and the certificate's path:\n{}",
        stack.printed
    );
    let status = stack.status();
    assert_eq!(status["url"], stack.https_url("").as_str());
    assert_eq!(status["certificate"], cert.as_str());

    let client = stack.client();
    let mut servers = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let res = client.get(stack.https_url("/server-info")).send().unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().unwrap();
        servers.insert(body["server_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(servers.len(), 3, "{servers:?}");

    let http = format!("http://127.0.0.1:{}/api/users?limit=1", stack.root.lb_port);
    let res = client.get(&http).send().unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(
        res.headers()["location"],
        stack.https_url("/api/users?limit=1").as_str()
    );
    let res = client
        .post(format!("http://127.0.0.1:{}/api/users", stack.root.lb_port))
        .json(&serde_json::json!({"name": "Ann", "email": "ann@example.com"}))
        .send()
        .unwrap();
    assert_eq!(res.status(), 308);

    // A client that trusts only the system's roots refuses the self-signed certificate.
    let strict = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(strict.get(stack.https_url("/health")).send().is_err());

    // `verify` finds the certificate through the running stack.
    let verify = stack
        .root
        .infra(&["verify", "--stack", "local", "--requests", "30"]);
    assert!(
        verify.status.success(),
        "verify failed:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// curl, with `args`, printing `-w`'s `format`; its stdout.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs curl: apt-get install curl"]
fn curl_creates_a_user_over_https_and_follows_the_redirect_from_http() {
    tools::require("curl", tools::runs("curl"), "apt-get install curl");
    let stack = HttpsStack::up();
    let cert = stack.certificate.display().to_string();
    let http = |path: &str| format!("http://127.0.0.1:{}{path}", stack.root.lb_port);

    // The redirect as curl sees it, then followed (308 keeps the POST and its body).
    let seen = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &http("/server-info"),
    ]);
    assert_eq!(seen, format!("301 {}", stack.https_url("/server-info")));
    let created = curl(&[
        "-L",
        "--cacert",
        &cert,
        "-w",
        "\n%{http_code} %{scheme} %{num_redirects}",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"Bea","email":"bea@example.com"}"#,
        &http("/api/users"),
    ]);
    let (body, outcome) = created.rsplit_once('\n').unwrap();
    assert_eq!(outcome, "201 HTTPS 1", "{created}");
    let user: Value = serde_json::from_str(body).unwrap();
    assert_eq!(user["user"]["email"], "bea@example.com", "{body}");

    let listed = curl(&["--cacert", &cert, &stack.https_url("/api/users")]);
    assert!(listed.contains("bea@example.com"), "{listed}");
    // Without the certificate, curl refuses the connection (exit 60: certificate problem).
    let strict = Command::new("curl")
        .args(["-sS", "--max-time", "10", &stack.https_url("/health")])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(60), "{strict:?}");
}

#[test]
#[ignore = "needs chromium: apt-get install chromium"]
fn the_dashboard_works_over_https_in_a_real_browser_reached_from_its_http_url() {
    browser::chromium();
    let stack = HttpsStack::up();
    let client = stack.client();
    for _ in 0..30 {
        let res = client.get(stack.https_url("/server-info")).send().unwrap();
        assert_eq!(res.status(), 200);
    }
    // The browser is pointed at the HTTP URL and follows the redirect; the certificate is
    // self-signed, so it is told to accept it.
    let http = format!("http://127.0.0.1:{}/dashboard", stack.root.lb_port);
    let flags = ["--ignore-certificate-errors"];
    let dom = browser::browse_with(&http, 8000, None, &flags);
    assert!(
        dom.contains("data-state=\"live\""),
        "the page never got its data over https:\n{dom}"
    );
    for id in ["local-1", "local-2", "local-3"] {
        assert!(
            dom.contains(&format!("data-server-id=\"{id}\"")),
            "{id} missing:\n{dom}"
        );
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-https.png");
    let _ = std::fs::remove_file(&shot);
    browser::browse_with(&http, 8000, Some((&shot, "1280,860")), &flags);
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
}
