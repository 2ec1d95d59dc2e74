//! Bad input: a clear 4xx in Chinese and English, nothing stored half-way, never a 500; every text
//! is escaped on output.

use reqwest::{Method, StatusCode};
use serde_json::json;
use yunwei_core::authz::ContractRole;

use crate::both_engines;
use crate::harness::TestServer;

async fn malformed_requests_get_clear_4xx(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.login("eng").await;
    b.get("/").await;
    let csrf = b.csrf.clone().unwrap();
    let path = format!("/api/v1/contracts/{cid}/sites");
    let send_raw = |body: Vec<u8>, ctype: &'static str| {
        b.request(Method::POST, &path).header("x-csrf-token", csrf.clone()).header("content-type", ctype).body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode)> = vec![
        ("malformed JSON", send_raw(b"{\"name\": ".to_vec(), "application/json"), StatusCode::BAD_REQUEST),
        (
            "invalid UTF-8",
            send_raw(b"{\"name\": \"\xff\xfe\", \"kind\": \"other\"}".to_vec(), "application/json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong type",
            send_raw(br#"{"name": 12, "kind": "other"}"#.to_vec(), "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown field",
            send_raw(br#"{"name": "x", "kind": "other", "contract_id": 2}"#.to_vec(), "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "missing field",
            send_raw(br#"{"kind": "other"}"#.to_vec(), "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "not JSON content type",
            send_raw(br#"{"name": "x", "kind": "other"}"#.to_vec(), "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "unknown kind",
            send_raw(br#"{"name": "x", "kind": "spaceship"}"#.to_vec(), "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty name",
            send_raw(br#"{"name": "   ", "kind": "other"}"#.to_vec(), "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "control characters",
            send_raw(br#"{"name": "a\u0000b", "kind": "other"}"#.to_vec(), "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "100 KB name",
            send_raw(
                json!({"name": "机".repeat(100_000), "kind": "other"}).to_string().into_bytes(),
                "application/json",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("2 MB body", send_raw(vec![b' '; 2 * 1024 * 1024], "application/json"), StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (what, rb, want) in cases {
        let r = b.send(rb).await;
        assert_eq!(r.status, want, "{what}: {}", r.body);
        let e = r.json();
        assert!(!e["error"]["code"].as_str().unwrap().is_empty(), "{what}");
        let zh = e["error"]["message_zh"].as_str().unwrap();
        let en = e["error"]["message_en"].as_str().unwrap();
        assert!(zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{what}: Chinese message: {zh}");
        assert!(en.chars().any(|c| c.is_ascii_alphabetic()), "{what}: English message");
    }
    // The server closes a connection whose body it refused part-way (the 2 MB case).
    b.reconnect();
    // Huge numbers in ids, cursors and versions.
    for p in [
        format!("/api/v1/contracts/{cid}/sites/99999999999999999999999"),
        format!("/api/v1/contracts/{cid}/sites?limit=1e400"),
        format!("/api/v1/contracts/{cid}/sites?cursor=%00%00"),
        format!("/api/v1/contracts/{cid}/sites?unknown=1"),
        "/api/v1/contracts/-1".to_string(),
    ] {
        let r = b.api(Method::GET, &p, None).await;
        assert!(r.status.is_client_error(), "{p}: {}", r.status);
    }
    let r =
        b.api(Method::PUT, &format!("{path}/1"), Some(json!({"name": "x", "kind": "other", "version": 1e30}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was stored by any of it.
    let list = b.api(Method::GET, &path, None).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // Forms: a wrong type is a 400 page, not a 500.
    let r = b.post_form("/contracts/switch", &[("contract_id", "abc")]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("<html") && r.body.contains("表单内容无效"));
    // Unknown paths are a 404 page or JSON.
    assert_eq!(b.get("/no/such/page").await.status, StatusCode::NOT_FOUND);
    let r = b.api(Method::GET, "/api/v1/no/such", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
}
both_engines!(malformed_requests_get_clear_4xx);

async fn metacharacters_are_stored_verbatim_and_escaped(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.login("eng").await;
    b.get("/").await;
    let nasty = "<script>alert(1)</script>' OR 1=1; DROP TABLE site;--\"&";
    let r = b
        .api(Method::POST, &format!("/api/v1/contracts/{cid}/sites"), Some(json!({"name": nasty, "kind": "machine_room", "address": "<img src=x onerror=alert(1)>", "notes": "'; --"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.json()["id"].as_i64().unwrap();
    // Stored exactly as typed (parameterised SQL), returned exactly through the API.
    let got = b.api(Method::GET, &format!("/api/v1/contracts/{cid}/sites/{id}"), None).await.json();
    assert_eq!(got["name"], nasty);
    // Every page that shows it escapes it.
    for path in [format!("/c/{cid}"), format!("/c/{cid}/sites/{id}")] {
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<script>alert(1)"), "{path} renders raw script");
        assert!(!page.body.contains("<img src=x"), "{path} renders raw img");
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{path}");
    }
    // The table is still there.
    assert_eq!(b.api(Method::GET, &format!("/api/v1/contracts/{cid}/sites"), None).await.status, StatusCode::OK);
    // Through the form path too, with the error re-shown escaped.
    let r = b.post_form(&format!("/c/{cid}/sites"), &[("name", nasty), ("kind", "machine_room")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "duplicate name in this contract");
    assert!(!r.body.contains("<script>alert(1)"));
    assert!(r.body.contains("同名站点"));
}
both_engines!(metacharacters_are_stored_verbatim_and_escaped);

async fn concurrent_edits_conflict(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    s.member("pm", cid, ContractRole::ProjectManager).await;
    let mut a = s.login("eng").await;
    a.get("/").await;
    let mut b = s.login("pm").await;
    b.get("/").await;
    let site = a
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/sites"),
            Some(json!({"name": "机房", "kind": "machine_room"})),
        )
        .await
        .json();
    let path = format!("/api/v1/contracts/{cid}/sites/{}", site["id"]);
    let v = site["version"].as_i64().unwrap();
    let r = a.api(Method::PUT, &path, Some(json!({"name": "机房甲", "kind": "machine_room", "version": v}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = b.api(Method::PUT, &path, Some(json!({"name": "机房乙", "kind": "machine_room", "version": v}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(b.api(Method::GET, &path, None).await.json()["name"], "机房甲");
}
both_engines!(concurrent_edits_conflict);
