//! Login, password policy, lockout, idle timeout, TOTP, CSRF.

use reqwest::StatusCode;
use yunwei_core::authz::{AdminRole, ContractRole};

use crate::both_engines;
use crate::harness::{PASSWORD, TestServer};

async fn first_login_forces_password_change_and_policy(s: TestServer) {
    let cid = s.contract("A").await;
    // An account fresh from an administrator: initial password, must change it.
    let scope = s.operator().admin_scope(yunwei_core::authz::AdminPermission::UserManage).unwrap();
    let initial = "Init#Pass9word".replace("Pass9word", "Xq9zTw");
    let new =
        yunwei_storage::users::NewUser { login: "li.na".into(), display_name: "李娜".into(), email: String::new() };
    let id = yunwei_storage::users::create(&s.state.db, &scope, new, &initial, s.now()).await.unwrap();
    let grant = s.operator().admin_scope(yunwei_core::authz::AdminPermission::RoleGrant).unwrap();
    yunwei_storage::contracts::grant(&s.state.db, &grant, cid, id, ContractRole::Engineer, s.now()).await.unwrap();

    let mut b = s.client();
    let r = b.login("li.na", &initial).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/password");
    // Nothing else is reachable before the change.
    let r = b.get("/").await;
    assert_eq!(r.location(), "/password");
    let r = b.api(reqwest::Method::GET, "/api/v1/me", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    b.get("/password").await;
    // Each policy rule is enforced with a bilingual message.
    for (bad, needle) in [
        ("Sh0rt!x", "密码长度不足"),
        ("alllowercase1!", "大写字母"),
        ("ALLUPPERCASE1!", "小写字母"),
        ("NoDigitsHere!", "数字"),
        ("NoSymbols123A", "符号"),
        ("P@ssw0rd2026!", "常见"),
        ("Li.na#2026xyz", "登录名"),
    ] {
        let r = b
            .post_form("/password", &[("current_password", &initial), ("new_password", bad), ("confirm_password", bad)])
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} accepted");
        assert!(r.body.contains(needle), "{bad}: expected {needle} in the page");
    }
    // Reusing the initial password is refused too.
    let r = b
        .post_form(
            "/password",
            &[("current_password", &initial), ("new_password", &initial), ("confirm_password", &initial)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("不能重复使用"));
    let r = b
        .post_form(
            "/password",
            &[("current_password", &initial), ("new_password", PASSWORD), ("confirm_password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/");
    let r = b.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("合同 A"));
}
both_engines!(first_login_forces_password_change_and_policy);

async fn lockout_after_five_failures_and_unlock(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("zhang", cid, ContractRole::Engineer).await;
    let (_, secret) = s.admin("sec", AdminRole::SecurityAdmin).await;
    let mut b = s.client();
    for i in 1..=5 {
        let r = b.login("zhang", "Wrong#Pass123").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Locked now: even the right password is refused.
    let r = b.login("zhang", PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("账号已锁定"));
    // The security admin sees the lock and lifts it.
    let mut admin = s.login_admin("sec", &secret).await;
    let users = admin.api(reqwest::Method::GET, "/api/v1/admin/users", None).await.json();
    let zhang = users.as_array().unwrap().iter().find(|u| u["login"] == "zhang").unwrap().clone();
    assert_eq!(zhang["locked"], true);
    admin.get("/admin/users").await;
    let r = admin.post_form(&format!("/admin/users/{}/unlock", zhang["id"]), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = b.login("zhang", PASSWORD).await;
    assert_eq!(r.location(), "/");
    // Locking again, then waiting out the 30 minutes, works too.
    let mut c = s.client();
    for _ in 0..5 {
        c.login("zhang", "Wrong#Pass123").await;
    }
    assert!(c.login("zhang", PASSWORD).await.body.contains("账号已锁定"));
    s.state.clock.advance_ms(31 * 60_000);
    assert_eq!(c.login("zhang", PASSWORD).await.location(), "/");
    // Every failure and the lockout are in the audit log.
    let (_, asec) = s.admin("aud", AdminRole::AuditAdmin).await;
    let mut aud = s.login_admin("aud", &asec).await;
    let log = aud.api(reqwest::Method::GET, "/api/v1/audit?username=zhang&limit=100", None).await.json();
    let items = log["items"].as_array().unwrap();
    assert!(items.iter().filter(|r| r["action"] == "auth.login" && r["result"] == "failed").count() >= 10);
    assert!(items.iter().any(|r| r["action"] == "auth.lockout"));
}
both_engines!(lockout_after_five_failures_and_unlock);

async fn idle_timeout_and_absolute_lifetime(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("wang", cid, ContractRole::Engineer).await;
    let mut b = s.login("wang").await;
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    s.state.clock.advance_ms(29 * 60_000);
    assert_eq!(b.get("/").await.status, StatusCode::OK, "29 idle minutes are within the limit");
    s.state.clock.advance_ms(31 * 60_000);
    let r = b.get("/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?ended=idle");
    // The session is gone for the API as well.
    assert_eq!(b.api(reqwest::Method::GET, "/api/v1/me", None).await.status, StatusCode::UNAUTHORIZED);

    // A busy session still ends at the absolute lifetime (12 h by default).
    let mut c = s.login("wang").await;
    for i in 0..24 {
        s.state.clock.advance_ms(29 * 60_000);
        assert_eq!(c.get("/").await.status, StatusCode::OK, "still alive after {} minutes", (i + 1) * 29);
    }
    s.state.clock.advance_ms(29 * 60_000);
    let r = c.get("/").await;
    assert_eq!(r.location(), "/login?ended=expired");
}
both_engines!(idle_timeout_and_absolute_lifetime);

async fn totp_is_required_for_admins_and_codes_work_once(s: TestServer) {
    let (_, secret) = s.admin("sys", AdminRole::SystemAdmin).await;
    let mut b = s.client();
    let r = b.login("sys", PASSWORD).await;
    assert_eq!(r.location(), "/login/totp");
    // Password alone reaches nothing.
    assert_eq!(b.get("/admin/users").await.location(), "/login/totp");
    assert_eq!(b.api(reqwest::Method::GET, "/api/v1/admin/users", None).await.status, StatusCode::UNAUTHORIZED);
    b.get("/login/totp").await;
    let r = b.post_form("/login/totp", &[("code", "000000")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    s.state.clock.advance_ms(30_000);
    let code = yunwei_core::totp::code_at(&secret, (s.now() / 1000) as u64).unwrap();
    let session_before = b.cookies.get("yw_session").cloned();
    let r = b.post_form("/login/totp", &[("code", &code)]).await;
    assert_eq!(r.location(), "/");
    assert_ne!(b.cookies.get("yw_session").cloned(), session_before, "session cookie rotates after the second factor");
    assert_eq!(b.get("/admin/users").await.status, StatusCode::OK);
    // The same code cannot be replayed in another login.
    let mut c = s.client();
    c.login("sys", PASSWORD).await;
    c.get("/login/totp").await;
    let r = c.post_form("/login/totp", &[("code", &code)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
both_engines!(totp_is_required_for_admins_and_codes_work_once);

async fn admin_without_totp_must_enrol(s: TestServer) {
    // A new administrator account (initial password, no authenticator yet).
    let id = s.user("newsec").await;
    let scope = s.operator().admin_scope(yunwei_core::authz::AdminPermission::RoleGrant).unwrap();
    yunwei_storage::users::set_admin_role(&s.state.db, &scope, id, Some(AdminRole::SecurityAdmin), s.now())
        .await
        .unwrap();
    let mut b = s.client();
    let r = b.login("newsec", PASSWORD).await;
    assert_eq!(r.location(), "/login/enrol");
    let page = b.get("/login/enrol").await;
    assert!(page.body.contains("<svg"), "QR code drawn as inline SVG");
    let start = page.body.find("class=\"secret\">").unwrap() + 15;
    let secret = &page.body[start..start + page.body[start..].find('<').unwrap()];
    let code = yunwei_core::totp::code_at(secret, (s.now() / 1000) as u64).unwrap();
    let r = b.post_form("/login/enrol", &[("code", &code)]).await;
    assert_eq!(r.location(), "/", "{}", r.body);
    assert_eq!(b.get("/admin/policy").await.status, StatusCode::OK);
    let u = yunwei_storage::users::get(&s.state.db, id).await.unwrap();
    assert!(u.totp_enrolled);
}
both_engines!(admin_without_totp_must_enrol);

async fn csrf_is_required_on_every_state_change(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.login("eng").await;
    b.get("/").await;
    let good = b.csrf.clone().unwrap();
    let form = [("name", "一号机房"), ("kind", "machine_room")];
    // No token, a wrong token, a cross-site origin: all refused, nothing stored.
    let r = b.post_form_raw(&format!("/c/{cid}/sites"), &form).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut wrong = form.to_vec();
    wrong.push(("_csrf", "0000000000000000000000000000000000000000000000000000000000000000"));
    assert_eq!(b.post_form_raw(&format!("/c/{cid}/sites"), &wrong).await.status, StatusCode::FORBIDDEN);
    let mut with_good = form.to_vec();
    with_good.push(("_csrf", &good));
    let rb = b
        .request(reqwest::Method::POST, &format!("/c/{cid}/sites"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&with_good).unwrap());
    assert_eq!(b.send(rb).await.status, StatusCode::FORBIDDEN);
    // The API with a session cookie needs the header too.
    let saved = b.csrf.take();
    let r = b
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/contracts/{cid}/sites"),
            Some(serde_json::json!({"name": "x", "kind": "other"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "csrf");
    b.csrf = saved;
    let list = b.api(reqwest::Method::GET, &format!("/api/v1/contracts/{cid}/sites"), None).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing was stored");
    // With the token everything works.
    let r = b.post_form(&format!("/c/{cid}/sites"), &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = b
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/contracts/{cid}/sites"),
            Some(serde_json::json!({"name": "二号机房", "kind": "machine_room"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // The login form itself is protected (double-submit cookie).
    let mut anon = s.client();
    let r = anon.post_form_raw("/login", &[("login", "eng"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Logout needs the token as well.
    let r = b.post_form_raw("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b.post_form("/logout", &[]).await;
    assert_eq!(r.location(), "/login");
    assert_eq!(b.get("/").await.location(), "/login");
}
both_engines!(csrf_is_required_on_every_state_change);

async fn session_cookie_attributes_and_secure_behind_proxy(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.client();
    let r = b.login("eng", PASSWORD).await;
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("yw_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
}
both_engines!(session_cookie_attributes_and_secure_behind_proxy);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_password_login_from_remote_is_refused() {
    use crate::harness::Engine;
    let config = yunwei_web::WebConfig { tls: false, behind_tls_proxy: true, ..Default::default() };
    let s = TestServer::start_with(Engine::Sqlite, config, None).await.unwrap();
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.client();
    b.get("/login").await;
    let csrf = b.csrf.clone().unwrap();
    let form = serde_urlencoded::to_string([("login", "eng"), ("password", PASSWORD), ("_csrf", &csrf)]).unwrap();
    // The proxy says the browser came over plain HTTP from another machine: refused.
    let rb = b
        .request(reqwest::Method::POST, "/login")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-forwarded-proto", "http")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone());
    let r = b.send(rb).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("HTTPS"));
    // Over HTTPS at the proxy it works, and the cookie is marked Secure, with HSTS.
    let rb = b
        .request(reqwest::Method::POST, "/login")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form);
    let r = b.send(rb).await;
    assert_eq!(r.location(), "/");
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("yw_session="))
        .unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(r.headers.get("strict-transport-security").is_some());
}

async fn security_admin_policy_takes_effect(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("zhang", cid, ContractRole::Engineer).await;
    let (_, secret) = s.admin("sec", AdminRole::SecurityAdmin).await;
    let mut admin = s.login_admin("sec", &secret).await;
    admin.get("/admin/policy").await;
    let mut form = vec![
        ("min_length", "10"),
        ("expiry_days", "90"),
        ("reuse_history", "5"),
        ("lockout_threshold", "3"),
        ("lockout_minutes", "10"),
        ("idle_timeout_minutes", "15"),
        ("absolute_lifetime_hours", "8"),
    ];
    // Weakening below 等保 bounds is refused with a message, and nothing changes.
    let mut weak = form.clone();
    weak[0] = ("min_length", "4");
    let r = admin.post_form("/admin/policy", &weak).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("8 到 128"));
    form.push(("totp_required_for_all", "true"));
    let r = admin.post_form("/admin/policy", &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("安全策略已保存"));
    // Three failures now lock.
    let mut b = s.client();
    for _ in 0..3 {
        b.login("zhang", "Wrong#Pass123").await;
    }
    assert!(b.login("zhang", PASSWORD).await.body.contains("账号已锁定"));
    // Lockout lasts 10 minutes; afterwards everyone must enrol a second factor.
    s.state.clock.advance_ms(11 * 60_000);
    let r = b.login("zhang", PASSWORD).await;
    assert_eq!(r.location(), "/login/enrol");
    // The change is audited with before and after values.
    let (_, asec) = s.admin("aud", AdminRole::AuditAdmin).await;
    let mut aud = s.login_admin("aud", &asec).await;
    let log = aud.api(reqwest::Method::GET, "/api/v1/audit?action_prefix=policy.", None).await.json();
    let detail = log["items"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("\"lockout_threshold\":5") && detail.contains("\"lockout_threshold\":3"), "{detail}");
}
both_engines!(security_admin_policy_takes_effect);

async fn users_may_add_a_second_factor(s: TestServer) {
    let cid = s.contract("A").await;
    let id = s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.login("eng").await;
    let page = b.get("/password").await;
    assert!(page.body.contains("/login/enrol"), "the optional enrolment is offered");
    let page = b.get("/login/enrol").await;
    let start = page.body.find("class=\"secret\">").unwrap() + 15;
    let secret = page.body[start..start + page.body[start..].find('<').unwrap()].to_string();
    let code = yunwei_core::totp::code_at(&secret, (s.now() / 1000) as u64).unwrap();
    assert_eq!(b.post_form("/login/enrol", &[("code", &code)]).await.location(), "/");
    assert!(yunwei_storage::users::get(&s.state.db, id).await.unwrap().totp_enrolled);
    // From now on the second factor is asked for at login.
    let mut c = s.client();
    assert_eq!(c.login("eng", PASSWORD).await.location(), "/login/totp");
}
both_engines!(users_may_add_a_second_factor);
