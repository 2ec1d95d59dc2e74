//! Operations endpoints, security headers, the OpenAPI document, 401 on every API route.

use reqwest::{Method, StatusCode};

use crate::both_engines;
use crate::harness::TestServer;

async fn health_metrics_and_headers(s: TestServer) {
    let mut b = s.client();
    assert_eq!(b.get("/healthz").await.body, "ok");
    assert_eq!(b.get("/readyz").await.status, StatusCode::OK);
    b.get("/login").await;
    let m = b.get("/metrics").await;
    assert!(m.body.contains("http_requests_total"), "{}", m.body);
    assert!(m.body.contains("route=\"/login\""));
    assert!(m.body.contains("http_request_duration_seconds_bucket"));
    assert!(m.body.contains("db_pool_connections"));
    for path in ["/login", "/assets/app.css", "/api/v1/me", "/nope"] {
        let r = b.get(path).await;
        let h = &r.headers;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline';") || csp.contains("style-src 'self';"),
            "{path}: {csp}"
        );
        assert!(!csp.split(';').any(|d| d.trim().starts_with("script-src") && d.contains("unsafe")), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin");
    }
    // Pages reference only assets the binary serves.
    let page = b.get("/login").await.body;
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"));
    assert_eq!(b.get("/assets/app.js").await.status, StatusCode::OK);
    let schema = b.get("/contracts/schema.json").await;
    assert_eq!(schema.status, StatusCode::OK);
    assert_eq!(schema.json()["title"], "ContractFile");
}
both_engines!(health_metrics_and_headers);

async fn api_requires_authentication_except_openapi(s: TestServer) {
    let mut b = s.client();
    let doc = b.get("/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    // Every documented path answers 401 without a session or token.
    for (path, item) in paths {
        let concrete = path.replace("{cid}", "1").replace("{id}", "1");
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = b.api(m, &concrete, Some(serde_json::json!({}))).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", r.body);
            assert_eq!(r.error_code(), "unauthorized");
        }
    }
    // The Swagger UI is served from the binary.
    let ui = b.get("/api/docs/swagger/").await;
    assert_eq!(ui.status, StatusCode::OK);
    assert!(ui.body.contains("swagger"), "{}", &ui.body[..ui.body.len().min(300)]);
}
both_engines!(api_requires_authentication_except_openapi);

async fn language_switch_and_graceful_shutdown(mut s: TestServer) {
    let mut b = s.client();
    assert!(b.get("/login").await.body.contains("登录名"));
    let r = b.get("/lang/en").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(b.get("/login").await.body.contains("Login name"));
    b.get("/lang/zh").await;
    assert!(b.get("/login").await.body.contains("登录名"));
    // Shutdown finishes and the port stops answering.
    let base = s.base.clone();
    s.stop().await;
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}
both_engines!(language_switch_and_graceful_shutdown);
