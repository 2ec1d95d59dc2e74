//! Least privilege and tenancy: a sample of denials for every role, and contract isolation
//! through both the pages and the API.

use reqwest::{Method, StatusCode};
use serde_json::json;
use yunwei_core::authz::{AdminRole, ContractRole};

use crate::both_engines;
use crate::harness::{Browser, TestServer};

async fn status(b: &mut Browser, method: Method, path: &str, body: Option<serde_json::Value>) -> StatusCode {
    b.api(method, path, body).await.status
}

async fn contract_roles_get_what_their_role_allows(s: TestServer) {
    let cid = s.contract("A").await;
    for (login, role) in [
        ("desk", ContractRole::ServiceDesk),
        ("eng", ContractRole::Engineer),
        ("expert", ContractRole::BacklineExpert),
        ("pm", ContractRole::ProjectManager),
        ("client", ContractRole::ClientSupervisor),
        ("enduser", ContractRole::ClientEndUser),
    ] {
        s.member(login, cid, role).await;
    }
    let site = json!({"name": "机房", "kind": "machine_room"});
    let sites = format!("/api/v1/contracts/{cid}/sites");
    // Who may write sites.
    for (login, allowed) in
        [("desk", false), ("eng", true), ("expert", false), ("pm", true), ("client", false), ("enduser", false)]
    {
        let mut b = s.login(login).await;
        b.get("/").await;
        let body = json!({"name": format!("机房-{login}"), "kind": "machine_room"});
        let st = status(&mut b, Method::POST, &sites, Some(body)).await;
        assert_eq!(st, if allowed { StatusCode::CREATED } else { StatusCode::FORBIDDEN }, "{login} creating a site");
        // No contract role reaches any administrator page or API.
        assert_eq!(b.get("/admin/users").await.status, StatusCode::FORBIDDEN, "{login} /admin/users");
        assert_eq!(b.get("/audit").await.status, StatusCode::FORBIDDEN, "{login} /audit");
        assert_eq!(status(&mut b, Method::GET, "/api/v1/audit", None).await, StatusCode::FORBIDDEN);
        assert_eq!(
            status(
                &mut b,
                Method::POST,
                "/api/v1/admin/contracts",
                Some(json!({"code": "X", "name": "x", "starts_on": "2026-01-01", "ends_on": "2026-12-31"}))
            )
            .await,
            StatusCode::FORBIDDEN
        );
    }
    let _ = site;
    // The client end user sees the contract but neither its sites nor its members.
    let mut end = s.login("enduser").await;
    assert_eq!(status(&mut end, Method::GET, &format!("/api/v1/contracts/{cid}"), None).await, StatusCode::OK);
    assert_eq!(status(&mut end, Method::GET, &sites, None).await, StatusCode::FORBIDDEN);
    assert_eq!(
        status(&mut end, Method::GET, &format!("/api/v1/contracts/{cid}/members"), None).await,
        StatusCode::FORBIDDEN
    );
    let page = end.get(&format!("/c/{cid}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("机房-eng"), "end user page must not list sites");
    // The client supervisor reads sites but cannot change them through the page either.
    let mut client = s.login("client").await;
    assert_eq!(status(&mut client, Method::GET, &sites, None).await, StatusCode::OK);
    assert_eq!(client.get(&format!("/c/{cid}/sites/new")).await.status, StatusCode::FORBIDDEN);
}
both_engines!(contract_roles_get_what_their_role_allows);

async fn admin_roles_are_separated(s: TestServer) {
    let (_, sys) = s.admin("sys", AdminRole::SystemAdmin).await;
    let (_, sec) = s.admin("sec", AdminRole::SecurityAdmin).await;
    let (_, aud) = s.admin("aud", AdminRole::AuditAdmin).await;
    let cid = s.contract("A").await;
    let eng = s.member("eng", cid, ContractRole::Engineer).await;
    let new_user = json!({"login": "new.user", "display_name": "新用户", "initial_password": "Tz8#pQ4!wLm2"});
    let new_contract = json!({"code": "B", "name": "合同 B", "starts_on": "2026-01-01", "ends_on": "2026-12-31"});
    let grant = json!({"contract_id": cid, "user_id": eng, "role": "project_manager"});

    let mut b = s.login_admin("sys", &sys).await;
    assert_eq!(status(&mut b, Method::POST, "/api/v1/admin/users", Some(new_user.clone())).await, StatusCode::CREATED);
    assert_eq!(
        status(&mut b, Method::POST, "/api/v1/admin/contracts", Some(new_contract.clone())).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status(&mut b, Method::POST, "/api/v1/admin/memberships", Some(grant.clone())).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&mut b, Method::GET, "/api/v1/audit", None).await, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/admin/policy").await.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/admin/tokens").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        status(&mut b, Method::GET, &format!("/api/v1/contracts/{cid}/sites"), None).await,
        StatusCode::NOT_FOUND,
        "admins are not contract members"
    );

    let mut b = s.login_admin("sec", &sec).await;
    assert_eq!(status(&mut b, Method::POST, "/api/v1/admin/memberships", Some(grant)).await, StatusCode::NO_CONTENT);
    assert_eq!(
        status(&mut b, Method::POST, "/api/v1/admin/users", Some(new_user.clone())).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&mut b, Method::POST, "/api/v1/admin/contracts", Some(new_contract)).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(&mut b, Method::GET, "/api/v1/audit", None).await, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/admin/policy").await.status, StatusCode::OK);
    // An administrator account cannot also hold a contract role.
    let admins = b.api(Method::GET, "/api/v1/admin/users", None).await.json();
    let sys_id = admins.as_array().unwrap().iter().find(|u| u["login"] == "sys").unwrap()["id"].clone();
    let r = b
        .api(
            Method::POST,
            "/api/v1/admin/memberships",
            Some(json!({"contract_id": cid, "user_id": sys_id, "role": "engineer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let mut b = s.login_admin("aud", &aud).await;
    assert_eq!(status(&mut b, Method::GET, "/api/v1/audit", None).await, StatusCode::OK);
    assert_eq!(b.get("/audit").await.status, StatusCode::OK);
    assert_eq!(status(&mut b, Method::POST, "/api/v1/admin/users", Some(new_user)).await, StatusCode::FORBIDDEN);
    assert_eq!(status(&mut b, Method::GET, "/api/v1/admin/users", None).await, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/admin/memberships").await.status, StatusCode::FORBIDDEN);
}
both_engines!(admin_roles_are_separated);

async fn other_contracts_are_invisible(s: TestServer) {
    let a = s.contract("A").await;
    let b_id = s.contract("B").await;
    s.member("alice", a, ContractRole::ProjectManager).await;
    s.member("bob", b_id, ContractRole::ProjectManager).await;
    let mut bob = s.login("bob").await;
    bob.get("/").await;
    let r = bob
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{b_id}/sites"),
            Some(json!({"name": "B 机房", "kind": "machine_room"})),
        )
        .await;
    let b_site = r.json()["id"].as_i64().unwrap();
    let mut alice = s.login("alice").await;
    alice.get("/").await;
    let r = alice
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{a}/sites"),
            Some(json!({"name": "A 机房", "kind": "machine_room"})),
        )
        .await;
    let a_site = r.json()["id"].as_i64().unwrap();

    // API: B's contract, members, sites and one site all answer 404, as if absent.
    for path in [
        format!("/api/v1/contracts/{b_id}"),
        format!("/api/v1/contracts/{b_id}/members"),
        format!("/api/v1/contracts/{b_id}/sites"),
        format!("/api/v1/contracts/{b_id}/sites/{b_site}"),
        // B's site under A's contract id: the scope filters it out.
        format!("/api/v1/contracts/{a}/sites/{b_site}"),
        "/api/v1/contracts/999999".to_string(),
    ] {
        let r = alice.api(Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error_code(), "not_found");
    }
    let r = alice
        .api(
            Method::PUT,
            &format!("/api/v1/contracts/{a}/sites/{b_site}"),
            Some(json!({"name": "hijack", "kind": "other", "version": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        alice.api(Method::DELETE, &format!("/api/v1/contracts/{b_id}/sites/{b_site}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    // Pages: the same.
    for path in [format!("/c/{b_id}"), format!("/c/{b_id}/sites/{b_site}"), format!("/c/{a}/sites/{b_site}")] {
        let r = alice.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.body.contains("B 机房"));
    }
    let r = alice.post_form(&format!("/c/{b_id}/sites/{b_site}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = alice.post_form("/contracts/switch", &[("contract_id", &b_id.to_string())]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Alice's own list shows only A; Bob's site is untouched.
    let mine = alice.api(Method::GET, "/api/v1/contracts", None).await.json();
    let codes: Vec<&str> = mine["items"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["A"]);
    let r = bob.api(Method::GET, &format!("/api/v1/contracts/{b_id}/sites/{b_site}"), None).await;
    assert_eq!(r.json()["name"], "B 机房");
    let _ = a_site;
}
both_engines!(other_contracts_are_invisible);

async fn api_tokens_are_scoped_and_expire(s: TestServer) {
    let a = s.contract("A").await;
    let b_id = s.contract("B").await;
    let (_, sec) = s.admin("sec", AdminRole::SecurityAdmin).await;
    let mut admin = s.login_admin("sec", &sec).await;
    admin.get("/admin/tokens").await;
    let r = admin
        .post_form(
            "/admin/tokens",
            &[("name", "监控集成"), ("contract_id", &a.to_string()), ("role", "service_desk"), ("days", "30")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let start = r.body.find("ywt_").expect("token shown once");
    let token = r.body[start..start + 68].to_string();
    assert!(!admin.get("/admin/tokens").await.body.contains(&token), "the token is never shown again");

    let mut t = Browser::new(&s.base);
    t.bearer = Some(token.clone());
    assert_eq!(status(&mut t, Method::GET, &format!("/api/v1/contracts/{a}/sites"), None).await, StatusCode::OK);
    let me = t.api(Method::GET, "/api/v1/me", None).await.json();
    assert_eq!(me["kind"], "token");
    assert_eq!(me["contracts"][0]["id"], a);
    assert_eq!(
        status(&mut t, Method::GET, &format!("/api/v1/contracts/{b_id}/sites"), None).await,
        StatusCode::NOT_FOUND
    );
    // The role is the token's: a service desk token cannot write sites.
    let r =
        t.api(Method::POST, &format!("/api/v1/contracts/{a}/sites"), Some(json!({"name": "x", "kind": "other"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Tokens do not open pages.
    assert_eq!(t.get("/").await.location(), "/login");
    // Expired after 30 days.
    s.state.clock.advance_ms(31 * 86_400_000);
    assert_eq!(
        status(&mut t, Method::GET, &format!("/api/v1/contracts/{a}/sites"), None).await,
        StatusCode::UNAUTHORIZED
    );
    // A made-up token is refused.
    t.bearer = Some(format!("ywt_{}", "0".repeat(64)));
    assert_eq!(status(&mut t, Method::GET, "/api/v1/me", None).await, StatusCode::UNAUTHORIZED);
}
both_engines!(api_tokens_are_scoped_and_expire);
