//! The HTTPS entry: TLS termination, forwarding headers, the HTTP→HTTPS redirect and the
//! handshake limits, with a real TLS client over loopback.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use lb::{Config, HttpsConfig, LoadBalancer, Running, TlsVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A self-signed ECDSA P-256 certificate for `localhost` and 127.0.0.1, as PEM files.
struct Cert {
    dir: tempfile::TempDir,
    pem: String,
}

impl Cert {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Self {
            dir,
            pem: cert.pem(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn https(&self) -> HttpsConfig {
        HttpsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            certificate: self.cert_path(),
            private_key: self.key_path(),
            ..HttpsConfig::default()
        }
    }
}

/// A client builder that trusts only `cert`.
fn trusting(cert: &Cert) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
}

/// A client that trusts only `cert`, follows no redirect, and offers TLS up to `max`.
fn tls_client(cert: &Cert, max: reqwest::tls::Version) -> reqwest::Client {
    trusting(cert)
        .max_tls_version(max)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The JSON body of the answer to `req`.
async fn json(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

fn https_url(lb: &Running, path: &str) -> String {
    format!(
        "https://localhost:{}{path}",
        lb.https_addr().unwrap().port()
    )
}

/// A backend, a certificate, and a load balancer with an HTTPS entry: the certificate's
/// defaults as `https` changes them.
async fn start(https: impl FnOnce(HttpsConfig) -> HttpsConfig) -> (TestBackend, Cert, Running) {
    let backend = TestBackend::start("a").await;
    let cert = Cert::new();
    let lb = start_lb(Config {
        https: Some(https(cert.https())),
        ..fast_config(&[&backend])
    })
    .await;
    (backend, cert, lb)
}

#[tokio::test]
async fn https_requests_reach_the_backend_as_http_with_forwarding_headers() {
    let (_backend, cert, lb) = start(|h| h).await;
    let https_port = lb.https_addr().unwrap().port().to_string();
    for max in [
        reqwest::tls::Version::TLS_1_3,
        reqwest::tls::Version::TLS_1_2,
    ] {
        let c = tls_client(&cert, max);
        let res = c.get(https_url(&lb, "/x?y=1")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        let h = &body["headers"];
        assert_eq!(body["path"], "/x?y=1");
        assert_eq!(h["x-forwarded-proto"], "https", "{max:?}");
        assert_eq!(h["x-forwarded-port"], https_port.as_str());
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }
    // The HTTP entry still says http (no redirect asked for).
    let (status, body) = get_json(&client(), &lb, "/").await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bodies_of_every_framing_cross_tls_whole_on_one_connection() {
    let (_backend, cert, lb) = start(|h| h).await;
    let c = tls_client(&cert, reqwest::tls::Version::TLS_1_3);
    for _ in 0..3 {
        // 3 MB streamed from the backend, several TLS records and socket writes.
        let res = c
            .get(https_url(&lb, "/pattern?bytes=3000000"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.bytes().await.unwrap(), pattern(3_000_000));
        // An upload bigger than the body held for replay, so it streams.
        let upload = pattern(900_000);
        let body = json(c.post(https_url(&lb, "/up")).body(upload)).await;
        assert_eq!(body["body_len"], 900_000);
    }
    lb.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_http_entry_redirects_to_the_same_url_on_https() {
    let (a, cert, lb) = start(|h| HttpsConfig {
        redirect_http_to_https: true,
        ..h
    })
    .await;
    let port = lb.https_addr().unwrap().port();
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let res = plain
        .get(url(&lb, "/api/users?limit=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 301);
    let expected = format!("https://127.0.0.1:{port}/api/users?limit=2");
    assert_eq!(res.headers()["location"], expected.as_str());
    // POST keeps its method and body only with 308.
    let res = plain
        .post(url(&lb, "/api/users"))
        .header("host", "api.example.com:8080")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 308);
    let expected = format!("https://api.example.com:{port}/api/users");
    assert_eq!(res.headers()["location"], expected.as_str());
    assert_eq!(a.seen.hits.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Following it lands on the backend over TLS.
    let follow = trusting(&cert).build().unwrap();
    let http_url = format!("http://localhost:{}/z", lb.local_addr().port());
    let body = json(follow.get(http_url)).await;
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    assert_eq!(body["path"], "/z");

    // A hostile Host can't steer the Location anywhere but a host name.
    let mut s = TcpStream::connect(lb.local_addr()).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nhost: evil.com/x?\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    let expected = format!("location: https://127.0.0.1:{port}/a\r\n");
    assert!(head.contains(&expected), "{head}");
    // Kept alive: a second request on the same connection is answered too.
    s.write_all(b"HEAD /b HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 301 "), "{head}");
    lb.shutdown(Duration::from_secs(1)).await;
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed mid-head");
        buf.push(byte[0]);
    }
    String::from_utf8(buf).unwrap()
}

/// Whether the server closes `s` within `limit` (reads to EOF or reset).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_handshakes_are_cut_off_and_capped() {
    let (a, cert, lb) = start(|h| HttpsConfig {
        handshake_timeout: Duration::from_millis(500),
        max_handshakes: 2,
        ..h
    })
    .await;
    let addr = lb.https_addr().unwrap();
    let c = tls_client(&cert, reqwest::tls::Version::TLS_1_3);
    // Two connections that never say hello take every handshake slot...
    let started = Instant::now();
    let mut silent = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so a third handshake is refused at once rather than queued,
    let refused = c.get(https_url(&lb, "/")).send().await;
    assert!(refused.is_err(), "{refused:?}");
    // and they are closed once the handshake timeout is over.
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(3)).await);
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "closed after {waited:?}"
    );
    let res = c.get(https_url(&lb, "/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Plain HTTP spoken to the HTTPS entry is no handshake: closed, nothing proxied.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert_eq!(a.seen.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let counts = lb.report().tls_handshakes.unwrap();
    assert_eq!(counts.timed_out, 2, "{counts:?}");
    assert_eq!(counts.failed, 1, "{counts:?}");
    assert!(counts.refused >= 1, "{counts:?}");
    assert_eq!(counts.full + counts.resumed, 1, "{counts:?}");
    lb.shutdown(Duration::from_secs(1)).await;
}

/// Three requests on three connections from one client; the handshake counts after them.
async fn three_connections(resumption: bool) -> lb::HandshakeCounts {
    let (_backend, cert, lb) = start(|h| HttpsConfig { resumption, ..h }).await;
    let c = tls_client(&cert, reqwest::tls::Version::TLS_1_3);
    for _ in 0..3 {
        let res = c
            .get(https_url(&lb, "/"))
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
    let counts = lb.report().tls_handshakes.unwrap();
    lb.shutdown(Duration::from_secs(1)).await;
    counts
}

#[tokio::test]
async fn returning_clients_resume_their_session_unless_resumption_is_off() {
    let on = three_connections(true).await;
    assert_eq!((on.full, on.resumed), (1, 2), "{on:?}");
    let off = three_connections(false).await;
    assert_eq!((off.full, off.resumed), (3, 0), "{off:?}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_handshakes_in_progress() {
    let (_backend, _cert, lb) = start(|h| h).await;
    let mut silent = TcpStream::connect(lb.https_addr().unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    lb.shutdown(Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(closed_within(&mut silent, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_tls12_only_entry_refuses_tls13_only_clients() {
    let (_backend, cert, lb) = start(|h| HttpsConfig {
        max_version: TlsVersion::Tls12,
        ..h
    })
    .await;
    let tls13_only = trusting(&cert)
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .build()
        .unwrap();
    assert!(tls13_only.get(https_url(&lb, "/")).send().await.is_err());
    let c = tls_client(&cert, reqwest::tls::Version::TLS_1_3);
    assert_eq!(
        c.get(https_url(&lb, "/")).send().await.unwrap().status(),
        200
    );
    lb.shutdown(Duration::from_secs(1)).await;
}

async fn bind_error(https: HttpsConfig) -> String {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        https: Some(https),
        ..Config::default()
    };
    match LoadBalancer::bind(config).await {
        Ok(_) => panic!("bound with a bad certificate"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn unusable_certificates_are_refused_naming_the_file_and_never_its_contents() {
    let cert = Cert::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let missing = dir.path().join("missing.pem");
    let e = bind_error(HttpsConfig {
        certificate: missing.clone(),
        ..cert.https()
    })
    .await;
    assert!(e.contains(&missing.display().to_string()), "{e}");

    let secret =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
    let bad_key = write("bad-key.pem", secret);
    let e = bind_error(HttpsConfig {
        private_key: bad_key.clone(),
        ..cert.https()
    })
    .await;
    assert!(e.contains(&bad_key.display().to_string()), "{e}");
    assert!(!e.contains("c2VjcmV0"), "{e}");

    // A key that is not the certificate's.
    let other = Cert::new();
    let e = bind_error(HttpsConfig {
        private_key: other.key_path(),
        ..cert.https()
    })
    .await;
    assert!(e.contains(&path_str(&other.key_path())), "{e}");

    let not_pem = write("cert.txt", "hello");
    let e = bind_error(HttpsConfig {
        certificate: not_pem.clone(),
        ..cert.https()
    })
    .await;
    assert!(e.contains("no PEM certificate"), "{e}");
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}
