//! Test harness: a real server on port 0 over a fresh database (SQLite temp file, or a uniquely
//! named PostgreSQL database that is dropped afterwards), and a cookie-keeping browser-like client.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use yunwei_core::authz::{AdminPermission, AdminRole, ContractRole};
use yunwei_storage::secrets::SecretBox;
use yunwei_storage::{Actor, Clock, Db, Principal, contracts, users};
use yunwei_web::{AppState, ServeOptions, TlsFiles, WebConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Runs one test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(s) = $crate::harness::TestServer::start($crate::harness::Engine::Sqlite).await {
                    super::$name(s).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(s) = $crate::harness::TestServer::start($crate::harness::Engine::Postgres).await {
                    super::$name(s).await;
                }
            }
        }
    };
}

pub const PASSWORD: &str = "Kq7#vLp2!xWm";

/// A database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    dir: Option<std::path::PathBuf>,
}

fn admin_pg_url() -> String {
    std::env::var("YUNWEI_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    /// `None` when PostgreSQL is unreachable outside CI (the test then says it was skipped).
    /// Under CI (`CI=true`) an unreachable PostgreSQL fails the test instead.
    pub async fn create(engine: Engine) -> Option<TestDb> {
        let suffix = yunwei_storage::random_token(6);
        match engine {
            Engine::Sqlite => {
                let dir = std::env::temp_dir().join(format!("yunwei-test-{suffix}"));
                std::fs::create_dir_all(&dir).unwrap();
                Some(TestDb {
                    url: format!("sqlite://{}?mode=rwc", dir.join("t.db").display()),
                    pg_name: None,
                    dir: Some(dir),
                })
            }
            Engine::Postgres => {
                use sqlx::Connection;
                sqlx::any::install_default_drivers();
                let admin = admin_pg_url();
                let mut conn = match sqlx::AnyConnection::connect(&admin).await {
                    Ok(c) => c,
                    Err(e) => {
                        if std::env::var("CI").as_deref() == Ok("true") {
                            panic!("CI=true but PostgreSQL is unreachable at {admin}: {e}");
                        }
                        eprintln!(
                            "SKIPPED: PostgreSQL not reachable at {admin} ({e}); set YUNWEI_TEST_PG_URL or start it"
                        );
                        return None;
                    }
                };
                let name = format!("yw_test_{suffix}");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
                Some(TestDb { url: format!("{base}/{name}"), pg_name: Some(name), dir: None })
            }
        }
    }

    pub async fn open(&self) -> Db {
        Db::connect(&self.url, SecretBox::from_base64(&SecretBox::generate_base64()).unwrap()).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take() {
            // Drop needs its own runtime: the test's runtime may be shutting down.
            let admin = admin_pg_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::AnyConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                .execute(&mut c)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub engine: Engine,
    pub db: TestDb,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(engine: Engine) -> Option<TestServer> {
        Self::start_with(engine, WebConfig::default(), None).await
    }

    pub async fn start_with(engine: Engine, config: WebConfig, tls: Option<TlsFiles>) -> Option<TestServer> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::create(engine).await?;
        let store = db.open().await;
        let mut config = config;
        if config.attachments_dir.is_none() {
            let dir = std::env::temp_dir().join(format!("yunwei-files-{}", yunwei_storage::random_token(6)));
            config.attachments_dir = Some(dir);
        }
        let state = AppState::new(store, Arc::new(Clock::default()), config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(yunwei_web::serve(
            listener,
            state.clone(),
            ServeOptions { tls, grace: std::time::Duration::from_secs(5) },
            async move {
                let _ = rx.await;
            },
        ));
        Some(TestServer { base: format!("{scheme}://{addr}"), state, engine, db, shutdown: Some(tx), task: Some(task) })
    }

    /// Stops accepting, lets in-flight requests finish, waits for the server task.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn now(&self) -> i64 {
        self.state.now_ms()
    }

    pub fn operator(&self) -> Principal {
        Principal::local_operator("test")
    }

    pub async fn contract(&self, code: &str) -> i64 {
        let scope = self.operator().admin_scope(AdminPermission::ContractManage).unwrap();
        let input = contracts::ContractInput {
            code: code.into(),
            name: format!("合同 {code}"),
            client_name: "采购人".into(),
            vendor_name: "服务商".into(),
            starts_on: "2026-01-01".into(),
            ends_on: "2026-12-31".into(),
        };
        contracts::create(&self.state.db, &scope, &input, self.now()).await.unwrap()
    }

    /// Imports a seed contract file from `contracts/` (e.g. "004-chengdu-dcm.toml"); returns its id.
    pub async fn seed_contract(&self, file: &str) -> i64 {
        let path = format!("{}/../../contracts/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let scope = self.operator().admin_scope(AdminPermission::ContractManage).unwrap();
        yunwei_storage::contract_files::import(&self.state.db, &scope, &bytes, self.now()).await.unwrap().contract_id
    }

    /// Stops the server clock at an absolute instant, so that due times can be asserted to the
    /// millisecond. Set it before creating users and sessions when going back in time (seed
    /// contracts run in their own years, e.g. 2022); sessions expire after big jumps (log in again).
    pub fn set_now(&self, at_ms: i64) {
        self.state.clock.freeze_at(at_ms);
    }

    /// One pass of the background jobs (desk scheduler) at the current test time.
    pub async fn desk_pass(&self) {
        yunwei_web::jobs::run_once(&self.state, "test-node", &[]).await.unwrap();
    }

    /// An account whose password is [`PASSWORD`] and needs no change at next login.
    pub async fn user(&self, login: &str) -> i64 {
        let scope = self.operator().admin_scope(AdminPermission::UserManage).unwrap();
        let initial = yunwei_core::password::initial_password_for(login);
        let new = users::NewUser { login: login.into(), display_name: format!("用户{login}"), email: String::new() };
        let id = users::create(&self.state.db, &scope, new, &initial, self.now()).await.unwrap();
        let actor = Actor { user_id: Some(id), name: login.into(), source_ip: "test".into() };
        users::change_own_password(&self.state.db, &actor, id, &initial, PASSWORD, None, self.now()).await.unwrap();
        id
    }

    pub async fn member(&self, login: &str, contract_id: i64, role: ContractRole) -> i64 {
        let id = self.user(login).await;
        let scope = self.operator().admin_scope(AdminPermission::RoleGrant).unwrap();
        contracts::grant(&self.state.db, &scope, contract_id, id, role, self.now()).await.unwrap();
        id
    }

    /// An administrator with an enrolled TOTP secret (returned).
    pub async fn admin(&self, login: &str, role: AdminRole) -> (i64, String) {
        let id = self.user(login).await;
        let scope = self.operator().admin_scope(AdminPermission::RoleGrant).unwrap();
        users::set_admin_role(&self.state.db, &scope, id, Some(role), self.now()).await.unwrap();
        let secret = yunwei_core::totp::generate_secret();
        let actor = Actor { user_id: Some(id), name: login.into(), source_ip: "test".into() };
        users::enrol_totp(&self.state.db, &actor, id, &secret, 0, self.now()).await.unwrap();
        (id, secret)
    }

    pub fn client(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A logged-in browser for a contract member.
    pub async fn login(&self, login: &str) -> Browser {
        let mut b = self.client();
        let r = b.login(login, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "login of {login} failed: {}", r.body);
        assert_eq!(r.location(), "/", "login of {login} did not complete: {:?}", r.location());
        b
    }

    /// A logged-in browser for an administrator (password, then TOTP).
    pub async fn login_admin(&self, login: &str, secret: &str) -> Browser {
        let mut b = self.client();
        let r = b.login(login, PASSWORD).await;
        assert_eq!(r.location(), "/login/totp");
        // Each code is accepted once: move the server clock to a fresh 30-second step.
        self.state.clock.advance_ms(30_000);
        let code = yunwei_core::totp::code_at(secret, (self.now() / 1000) as u64).unwrap();
        let r = b.post_form("/login/totp", &[("code", &code)]).await;
        assert_eq!(r.location(), "/", "TOTP step failed: {}", r.body);
        b
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

/// Keeps cookies and the page's CSRF token like a browser would; follows no redirects.
pub struct Browser {
    base: String,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { base: base.to_string(), http, cookies: BTreeMap::new(), csrf: None, bearer: None }
    }

    /// A fresh connection pool: after the server refused a request body half-way it closes that
    /// connection, and a pooled client could try to reuse it.
    pub fn reconnect(&mut self) {
        self.http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    }

    fn cookie_header(&self) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let s: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        HeaderValue::from_str(&s.join("; ")).ok()
    }

    async fn finish(&mut self, r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let body = r.text().await.unwrap_or_default();
        if let Some(token) = extract_csrf(&body) {
            self.csrf = Some(token);
        }
        Resp { status, headers, body }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = self.cookie_header() {
            rb = rb.header("cookie", c);
        }
        if let Some(t) = &self.bearer {
            rb = rb.header("authorization", format!("Bearer {t}"));
        }
        rb
    }

    pub async fn send(&mut self, rb: reqwest::RequestBuilder) -> Resp {
        let r = rb.send().await.expect("request failed");
        self.finish(r).await
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        let rb = self.request(reqwest::Method::GET, path);
        self.send(rb).await
    }

    /// Posts a form with the current CSRF token added.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone().unwrap_or_default();
        all.push(("_csrf", &csrf));
        self.post_form_raw(path, &all).await
    }

    pub async fn post_form_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let rb = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(rb).await
    }

    /// JSON API call; a session's CSRF token goes in X-CSRF-Token for writes.
    pub async fn api(&mut self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> Resp {
        let write = method != reqwest::Method::GET;
        let mut rb = self.request(method, path);
        if write
            && self.bearer.is_none()
            && let Some(t) = &self.csrf
        {
            rb = rb.header("x-csrf-token", t.clone());
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        self.send(rb).await
    }

    /// Logs in and, like a browser, loads the page the server redirects to (which refreshes the
    /// CSRF token). Returns the response to the login POST.
    pub async fn login(&mut self, login: &str, password: &str) -> Resp {
        self.get("/login").await;
        let r = self.post_form("/login", &[("login", login), ("password", password)]).await;
        let next = r.location().to_string();
        if !next.is_empty() {
            self.get(&next).await;
        }
        r
    }
}

fn extract_csrf(body: &str) -> Option<String> {
    let i = body.find("name=\"_csrf\" value=\"")?;
    let rest = &body[i + 20..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Percent-encodes a query value (Chinese search words, file names).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}
