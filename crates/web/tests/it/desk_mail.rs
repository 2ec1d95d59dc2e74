//! Email both ways: notifications delivered over SMTP (to a small SMTP server run by the test: the
//! peer, not a stand-in for our code) with retries when the server is down, and mail ingest turning
//! messages into tickets and replies into comments.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use yunwei_core::authz::{AdminPermission, AdminRole, ContractRole};
use yunwei_storage::notifications::Channel;
use yunwei_storage::{Actor, contracts, users};
use yunwei_web::smtp::{Security, SmtpChannel, SmtpConfig};

use crate::both_engines;
use crate::harness::{Browser, PASSWORD, TestServer};

/// 2022-03-01 10:00 Shanghai: contract 004 runs in 2022.
const START: i64 = 1_646_100_000_000;
const FROM: &str = "运维台 <desk@example.cn>";

// ---------------------------------------------------------------------------------------------
// A minimal SMTP server (RFC 5321 subset: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT)

#[derive(Debug, Clone)]
struct Mail {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(smtp_session(stream, store.clone()));
            }
        });
        SmtpSink { port, mails, task }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn smtp_session(stream: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    let mut current = Mail { mail_from: String::new(), rcpt_to: Vec::new(), data: String::new() };
    if w.write_all(b"220 sink.test ESMTP test sink\r\n").await.is_err() {
        return;
    }
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test greets you\r\n250 HELP\r\n",
            "HELO" => b"250 sink.test\r\n",
            "MAIL" => {
                current = Mail { mail_from: angle(&text), rcpt_to: Vec::new(), data: String::new() };
                b"250 OK\r\n"
            }
            "RCPT" => {
                current.rcpt_to.push(angle(&text));
                b"250 OK\r\n"
            }
            "DATA" => {
                if w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = String::from_utf8_lossy(&line).to_string();
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                current.data = data;
                mails.lock().unwrap().push(current.clone());
                b"250 OK queued\r\n"
            }
            "RSET" | "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"502 command not implemented\r\n",
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn angle(cmd: &str) -> String {
    match (cmd.find('<'), cmd.find('>')) {
        (Some(a), Some(b)) if a < b => cmd[a + 1..b].to_string(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a message as a mail client would: unfolded headers, RFC 2047 words, transfer encodings

fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.to_string(), v.trim_start().to_string()));
        }
    }
    fields.into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn qp_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b[i + 1..].starts_with(b"\r\n") {
                i += 3;
            } else if b[i + 1..].starts_with(b"\n") {
                i += 2;
            } else {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Decodes RFC 2047 encoded words; white space between two adjacent encoded words is dropped.
fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut after_word = false;
    while let Some(i) = rest.find("=?") {
        let before = &rest[..i];
        if !(after_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        let mut parts = rest[i + 2..].splitn(3, '?');
        let (_charset, enc, tail) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let end = tail.find("?=").unwrap();
        let text = &tail[..end];
        let bytes = if enc.eq_ignore_ascii_case("b") {
            base64::engine::general_purpose::STANDARD.decode(text).unwrap()
        } else {
            qp_decode(&text.replace('_', " "))
        };
        out.push_str(&String::from_utf8(bytes).unwrap());
        rest = &tail[end + 2..];
        after_word = true;
    }
    out.push_str(rest);
    out
}

fn body_text(raw: &str) -> String {
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let cte = header(raw, "Content-Transfer-Encoding").unwrap_or_default().to_ascii_lowercase();
    let bytes = match cte.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(compact).unwrap()
        }
        "quoted-printable" => qp_decode(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes).unwrap()
}

// ---------------------------------------------------------------------------------------------

fn channel(port: u16) -> Arc<dyn Channel> {
    let config = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: None,
        password: None,
        from: FROM.into(),
    };
    Arc::new(SmtpChannel::new(&config).unwrap())
}

/// A contract member with an email address (the harness creates members without one).
async fn member_with_email(s: &TestServer, login: &str, email: &str, cid: i64, role: ContractRole) -> i64 {
    let scope = s.operator().admin_scope(AdminPermission::UserManage).unwrap();
    let initial = yunwei_core::password::initial_password_for(login);
    let new = users::NewUser { login: login.into(), display_name: format!("用户{login}"), email: email.into() };
    let id = users::create(&s.state.db, &scope, new, &initial, s.now()).await.unwrap();
    let actor = Actor { user_id: Some(id), name: login.into(), source_ip: "test".into() };
    users::change_own_password(&s.state.db, &actor, id, &initial, PASSWORD, None, s.now()).await.unwrap();
    let scope = s.operator().admin_scope(AdminPermission::RoleGrant).unwrap();
    contracts::grant(&s.state.db, &scope, cid, id, role, s.now()).await.unwrap();
    id
}

/// A ticket recorded by the desk and dispatched to `eng`; returns (id, number).
async fn dispatched_ticket(desk: &mut Browser, cid: i64, reporter: i64, eng: i64) -> (i64, String) {
    let r = desk
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/tickets"),
            Some(json!({ "kind": "fault", "level": "L4", "title": "短信平台偶发发送失败", "channel": "phone",
                         "reporter_user_id": reporter })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let t = r.json()["ticket"].clone();
    let (id, number) = (t["id"].as_i64().unwrap(), t["number"].as_str().unwrap().to_string());
    let r = desk
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/tickets/{id}/actions"),
            Some(json!({ "action": "dispatch", "version": t["version"], "assignee_user_id": eng })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "dispatch: {}", r.body);
    (id, number)
}

async fn inbox_titles(b: &mut Browser) -> Vec<String> {
    let r = b.api(Method::GET, "/api/v1/notifications?limit=200", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["items"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_string()).collect()
}

#[derive(Debug)]
struct OutboxRow {
    address: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
}

async fn outbox(s: &TestServer) -> Vec<OutboxRow> {
    let mut c = sqlx::AnyConnection::connect(&s.db.url).await.unwrap();
    let rows = sqlx::query(
        "SELECT address, state, attempts, next_attempt_at, last_error FROM notification_outbox \
         WHERE channel = 'email' ORDER BY id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    rows.iter()
        .map(|r| OutboxRow {
            address: r.get("address"),
            state: r.get("state"),
            attempts: r.get("attempts"),
            next_attempt_at: r.get("next_attempt_at"),
            last_error: r.get("last_error"),
        })
        .collect()
}

/// An engineer with an address who is dispatched a ticket hears of it in the app and by email.
async fn dispatch_is_mailed(s: TestServer) {
    s.set_now(START);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.state.db.enable_email(true);
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let eng = member_with_email(&s, "eng.wang", "wang@example.cn", cid, ContractRole::Engineer).await;
    let sink = SmtpSink::start().await;
    let email = channel(sink.port);

    let mut desk = s.login("desk.li").await;
    let (_, number) = dispatched_ticket(&mut desk, cid, reporter, eng).await;
    yunwei_web::jobs::run_once(&s.state, "n", std::slice::from_ref(&email)).await.unwrap();

    let mut engb = s.login("eng.wang").await;
    let titles = inbox_titles(&mut engb).await;
    assert!(titles.iter().any(|t| t.contains(&number) && t.contains("新派单")), "in-app: {titles:?}");

    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "only the engineer has an address: {mails:?}");
    let m = &mails[0];
    assert_eq!(m.mail_from, "desk@example.cn");
    assert_eq!(m.rcpt_to, vec!["wang@example.cn".to_string()]);
    let subject = decode_words(&header(&m.data, "Subject").expect("Subject"));
    assert!(subject.contains(&number) && subject.contains("新派单"), "{subject}");
    let from = decode_words(&header(&m.data, "From").expect("From"));
    assert!(from.contains("运维台") && from.contains("<desk@example.cn>"), "{from}");
    assert_eq!(header(&m.data, "To").as_deref(), Some("wang@example.cn"));
    assert!(header(&m.data, "Date").is_some_and(|d| d.contains(",") && d.ends_with("+0000")), "Date header");
    assert!(header(&m.data, "Message-ID").is_some_and(|id| id.ends_with("@example.cn>")), "Message-ID header");
    assert!(
        header(&m.data, "Content-Type").is_some_and(|c| c.to_ascii_lowercase().contains("charset=utf-8")),
        "{}",
        m.data
    );
    assert!(body_text(&m.data).contains("短信平台偶发发送失败"), "{}", m.data);

    let rows = outbox(&s).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].state.as_str(), rows[0].attempts), ("sent", 1), "{rows:?}");
    // Another pass sends nothing twice.
    s.set_now(START + 60_000);
    yunwei_web::jobs::run_once(&s.state, "n", std::slice::from_ref(&email)).await.unwrap();
    assert_eq!(sink.mails().len(), 1);
}
both_engines!(dispatch_is_mailed);

/// The SMTP server is down: the delivery stays pending with the error, is retried after its back-off,
/// and goes out once a server answers; the in-app notification is there all along.
async fn smtp_down_is_retried(s: TestServer) {
    s.set_now(START);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.state.db.enable_email(true);
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let eng = member_with_email(&s, "eng.wang", "wang@example.cn", cid, ContractRole::Engineer).await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = channel(closed);

    let mut desk = s.login("desk.li").await;
    let (_, number) = dispatched_ticket(&mut desk, cid, reporter, eng).await;
    yunwei_web::jobs::run_once(&s.state, "n", std::slice::from_ref(&down)).await.unwrap();
    let rows = outbox(&s).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!((r.address.as_str(), r.state.as_str(), r.attempts), ("wang@example.cn", "pending", 1), "{r:?}");
    let err = r.last_error.clone().unwrap_or_default();
    assert!(err.contains(&format!("127.0.0.1:{closed}")) && err.contains("refused"), "names server and cause: {err}");
    assert!(r.next_attempt_at > START, "retried later, not at once: {r:?}");
    let mut engb = s.login("eng.wang").await;
    assert!(inbox_titles(&mut engb).await.iter().any(|t| t.contains(&number)), "in-app notice kept");

    // Not due again before its back-off.
    yunwei_web::jobs::run_once(&s.state, "n", std::slice::from_ref(&down)).await.unwrap();
    assert_eq!(outbox(&s).await[0].attempts, 1);
    // Due again: a second failed attempt, still pending.
    s.set_now(r.next_attempt_at);
    yunwei_web::jobs::run_once(&s.state, "n", std::slice::from_ref(&down)).await.unwrap();
    let r = outbox(&s).await.remove(0);
    assert_eq!((r.state.as_str(), r.attempts), ("pending", 2), "{r:?}");
    // Within a short while of finding the server unreachable the channel does not wait on it again.
    assert!(r.last_error.as_deref().is_some_and(|e| e.contains("not tried again")), "{r:?}");

    // The server is back (here: configured anew): the same delivery goes out, once.
    let sink = SmtpSink::start().await;
    let up = channel(sink.port);
    s.set_now(r.next_attempt_at);
    yunwei_web::jobs::run_once(&s.state, "n", std::slice::from_ref(&up)).await.unwrap();
    let r = outbox(&s).await.remove(0);
    assert_eq!((r.state.as_str(), r.attempts), ("sent", 3), "{r:?}");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert!(decode_words(&header(&mails[0].data, "Subject").unwrap()).contains(&number));
    let mut engb = s.login("eng.wang").await;
    assert_eq!(inbox_titles(&mut engb).await.iter().filter(|t| t.contains(&number)).count(), 1);
}
both_engines!(smtp_down_is_retried);

async fn ticket(b: &mut Browser, cid: i64, id: i64) -> Value {
    let r = b.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

/// Mail ingest: a message from a gateway (API token) becomes a ticket on the email channel; a reply
/// quoting the number becomes a comment on it; a bad sender is refused and nothing is recorded.
async fn mail_ingest(s: TestServer) {
    s.set_now(START);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let (_, sec) = s.admin("sec", AdminRole::SecurityAdmin).await;
    let mut admin = s.login_admin("sec", &sec).await;
    admin.get("/admin/tokens").await;
    let r = admin
        .post_form(
            "/admin/tokens",
            &[("name", "邮件网关"), ("contract_id", &cid.to_string()), ("role", "service_desk"), ("days", "30")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let start = r.body.find("ywt_").expect("token shown once");
    let mut gateway = Browser::new(&s.base);
    gateway.bearer = Some(r.body[start..start + 68].to_string());
    let path = format!("/api/v1/contracts/{cid}/mail");

    let r = gateway
        .api(
            Method::POST,
            &path,
            Some(json!({ "from": "张三 <zhang.san@example.cn>", "subject": "视频监控子系统画面卡顿",
                         "body": "指挥中心大屏上的视频画面从今天上午起卡顿。\n——张三" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let out = r.json();
    assert_eq!(out["created"], true);
    let (id, number) = (out["ticket_id"].as_i64().unwrap(), out["number"].as_str().unwrap().to_string());
    assert_eq!(number, "CD-DCM-2022-000001");
    let mut desk = s.login("desk.li").await;
    let d = ticket(&mut desk, cid, id).await;
    assert_eq!(d["ticket"]["channel"], "email");
    assert_eq!(d["ticket"]["title"], "视频监控子系统画面卡顿");

    // The reply, posted by a desk member's session this time.
    let r = desk
        .api(
            Method::POST,
            &path,
            Some(
                json!({ "from": "zhang.san@example.cn", "subject": format!("回复：[{number}] 视频监控子系统画面卡顿"),
                         "body": "补充：只有 3 号屏卡顿。" }),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["created"], false);
    assert_eq!(r.json()["ticket_id"], id);
    let d = ticket(&mut desk, cid, id).await;
    let comments = d["comments"].as_array().unwrap();
    let c = comments.iter().find(|c| c["body"].as_str().unwrap_or("").contains("只有 3 号屏卡顿")).expect("comment");
    assert_eq!(c["via"], "email", "{c}");
    assert!(c["body"].as_str().unwrap().contains("zhang.san@example.cn"), "{c}");

    // A sender that is no address: 422 in both languages, nothing recorded.
    let n_comments = comments.len();
    for from in ["not an address", "张三 <zhang.san>", ""] {
        let r = gateway
            .api(
                Method::POST,
                &path,
                Some(json!({ "from": from, "subject": format!("Re: [{number}] 视频"), "body": "x" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{from}: {}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["field"], "from", "{e}");
        assert!(e["message_zh"].as_str().unwrap().contains("发件人"), "{e}");
        assert!(e["message_en"].as_str().unwrap().contains("sender"), "{e}");
        let r = gateway.api(Method::POST, &path, Some(json!({ "from": from, "subject": "新问题", "body": "y" }))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{from}: {}", r.body);
    }
    let list = desk.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets?view=all"), None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let items = list.json()["rows"].as_array().unwrap().len();
    assert_eq!(items, 1, "no ticket from a bad sender: {}", list.body);
    assert_eq!(ticket(&mut desk, cid, id).await["comments"].as_array().unwrap().len(), n_comments);
}
both_engines!(mail_ingest);
