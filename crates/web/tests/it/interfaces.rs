//! Data-exchange interfaces (IN5) through the HTTP API with time driven by the test clock: pushes
//! reported on the heartbeat URL decide windows as ok; a window without a push raises one ticket,
//! a second miss comments on it, pushes resuming add one recovery note; source and target counts
//! read from real databases (two scratch PostgreSQL databases, or PostgreSQL and MariaDB) that
//! differ are an anomaly and equal ones are not; bad definitions are refused field by field in
//! Chinese and English; an unknown token is a plain 404; contracts do not see each other's
//! interfaces; the pages work.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;
use yunwei_core::calendar::{day_start_utc, days_from_civil};

use crate::both_engines;
use crate::harness::{Browser, Resp, TestServer};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Shanghai wall time → UTC epoch ms.
fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
    day_start_utc(days_from_civil(y, m, d)) + h * HOUR + min * MIN
}

async fn pass(s: &TestServer) -> yunwei_web::interface_checks::InterfacePassReport {
    yunwei_web::interface_checks::run_interfaces(&s.state, "test-node").await.unwrap()
}

async fn ok(b: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = b.api(method, path, body).await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r.json()
}

/// A heartbeat as a pushing job sends it: no cookie, no token header.
async fn beat(s: &TestServer, token: &str, body: Option<Value>) -> Resp {
    s.client().api(Method::POST, &format!("/api/v1/heartbeat/{token}"), body).await
}

async fn create(b: &mut Browser, cid: i64, def: Value) -> Value {
    let r = b.api(Method::POST, &format!("/api/v1/contracts/{cid}/interfaces"), Some(def)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()
}

async fn interface(b: &mut Browser, cid: i64, id: i64) -> Value {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/interfaces/{id}"), None).await
}

async fn history(b: &mut Browser, cid: i64, id: i64) -> Value {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/interfaces/{id}/history"), None).await
}

fn outcomes(h: &Value) -> Vec<String> {
    h["checks"].as_array().unwrap().iter().map(|c| c["outcome"].as_str().unwrap().to_string()).collect()
}

async fn tickets(b: &mut Browser, cid: i64) -> Vec<Value> {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/tickets?limit=100"), None).await["rows"]
        .as_array()
        .unwrap()
        .clone()
}

async fn comments(b: &mut Browser, cid: i64, tid: i64) -> Vec<String> {
    let d = ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    d["comments"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap().to_string()).collect()
}

fn problem_fields(r: &Resp) -> Vec<String> {
    r.json()["error"]["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap().to_string()).collect()
}

fn daily() -> Value {
    json!({
        "code": "3-6.8",
        "name": "数字化城管案卷信息",
        "content": "案件时间、案件大类 ID、案件小类 ID、区域 ID、区域名称",
        "source_system": "成都市数字化城市管理信息系统",
        "target_system": "市网络理政中心",
        "frequency": "每天 1 次(23:00 后推送)",
        "tickets": { "level": "L4", "incident_class": "轻微" }
    })
}

// ---------------------------------------------------------------------------------------------

/// A daily interface: a push on time → ok; no push → one ticket; no push again → a comment on
/// it, not a second ticket; pushes resume → one recovery note. A 10-minute interface: a push a
/// little late still counts (grace); windows missed while nobody looked are all decided.
async fn heartbeats_decide_windows_and_raise_one_ticket(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    let created = create(&mut pm, cid, daily()).await;
    let id = created["interface"]["id"].as_i64().unwrap();
    let token = created["heartbeat_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ywh_") && token.len() == 68, "{token}");
    assert_eq!(created["heartbeat_path"], format!("/api/v1/heartbeat/{token}"));
    let i = &created["interface"];
    assert_eq!((i["frequency"].as_str(), i["status"].as_str()), (Some("daily after 23:00"), Some("pending")));
    assert_eq!(i["next_check_at"], at(2026, 3, 3, 2, 0), "the window 23:00–24:00 closes after 2 h of grace");
    // The token is shown once: never again in what the API returns.
    let list = pm.api(Method::GET, &format!("/api/v1/contracts/{cid}/interfaces"), None).await;
    assert!(list.body.contains("3-6.8") && !list.body.contains(&token[4..]), "{}", list.body);
    assert!(!interface(&mut pm, cid, id).await.to_string().contains(&token[4..]));

    // Day 1: a push before the window does not count; one at 23:10 does. A second heartbeat in
    // the same second is refused.
    s.set_now(at(2026, 3, 2, 22, 59));
    assert_eq!(beat(&s, &token, None).await.status, StatusCode::OK);
    s.set_now(at(2026, 3, 2, 23, 10));
    let r = beat(&s, &token, Some(json!({ "records": 120, "batch": "20260302" }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["received_at"], at(2026, 3, 2, 23, 10));
    let again = beat(&s, &token, Some(json!({ "records": 1 }))).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS, "{}", again.body);
    assert_eq!(again.headers["retry-after"], "1");
    assert!(again.json()["error"]["message_zh"].as_str().unwrap().contains("每秒"));
    // Nothing is decided before the window closes.
    s.set_now(at(2026, 3, 3, 1, 59));
    assert_eq!(pass(&s).await.windows, 0);
    s.set_now(at(2026, 3, 3, 2, 0));
    let report = pass(&s).await;
    assert_eq!((report.windows, report.anomalies), (1, 0));
    let mut pm = s.login("pm.chen").await;
    let i = interface(&mut pm, cid, id).await;
    assert_eq!((i["status"].as_str(), i["last_records"].as_i64()), (Some("ok"), Some(120)));
    assert_eq!(i["last_push_at"], at(2026, 3, 2, 23, 10));
    let h = history(&mut pm, cid, id).await;
    assert_eq!(outcomes(&h), vec!["ok"]);
    assert_eq!((h["checks"][0]["pushes"].as_i64(), h["checks"][0]["records"].as_i64()), (Some(1), Some(120)));
    assert_eq!(h["heartbeats"].as_array().unwrap().len(), 2, "both pushes are kept, the early one too");
    assert_eq!(h["heartbeats"][0]["batch"], "20260302");
    assert!(tickets(&mut pm, cid).await.is_empty());

    // Day 2: no push → one L4 ticket raised by the platform. Passing again changes nothing.
    s.set_now(at(2026, 3, 4, 2, 0));
    assert_eq!(pass(&s).await.anomalies, 1);
    assert_eq!(pass(&s).await.windows, 0);
    let mut pm = s.login("pm.chen").await;
    let t = tickets(&mut pm, cid).await;
    assert_eq!(t.len(), 1);
    let tid = t[0]["id"].as_i64().unwrap();
    let d = ok(&mut pm, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    assert_eq!((d["ticket"]["level"].as_str(), d["ticket"]["channel"].as_str()), (Some("L4"), Some("inspection")));
    let desc = d["ticket"]["description"].as_str().unwrap();
    assert!(desc.contains("3-6.8") && desc.contains("未收到推送") && desc.contains("no push"), "{desc}");
    assert!(desc.contains("2026-03-03 23:00"), "the window is named: {desc}");
    let i = interface(&mut pm, cid, id).await;
    assert_eq!((i["status"].as_str(), i["anomaly_ticket_id"].as_i64()), (Some("missing"), Some(tid)));

    // Day 3: still no push → a comment on that ticket, no second ticket.
    s.set_now(at(2026, 3, 5, 2, 0));
    pass(&s).await;
    let mut pm = s.login("pm.chen").await;
    assert_eq!(tickets(&mut pm, cid).await.len(), 1);
    let c = comments(&mut pm, cid, tid).await;
    assert_eq!(c.iter().filter(|c| c.contains("再次发生")).count(), 1, "{c:?}");

    // Day 4: the job pushes again → one recovery note; day 5 fine too → no second note.
    s.set_now(at(2026, 3, 5, 23, 30));
    assert_eq!(beat(&s, &token, Some(json!({ "records": 98 }))).await.status, StatusCode::OK);
    s.set_now(at(2026, 3, 6, 2, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 6, 23, 5));
    assert_eq!(beat(&s, &token, None).await.status, StatusCode::OK);
    s.set_now(at(2026, 3, 7, 2, 0));
    pass(&s).await;
    let mut pm = s.login("pm.chen").await;
    let c = comments(&mut pm, cid, tid).await;
    let notes: Vec<&String> = c.iter().filter(|c| c.contains("已恢复 / Recovered at")).collect();
    assert_eq!(notes.len(), 1, "{c:?}");
    assert!(notes[0].contains("2026-03-06 02:00"), "{}", notes[0]);
    assert_eq!(tickets(&mut pm, cid).await.len(), 1);
    let i = interface(&mut pm, cid, id).await;
    assert_eq!((i["status"].as_str(), i["anomaly_since"].as_i64()), (Some("ok"), None));
    let h = history(&mut pm, cid, id).await;
    assert_eq!(outcomes(&h), vec!["ok", "ok", "missing", "missing", "ok"]);
    assert_eq!(h["checks"][2]["ticket_id"].as_i64(), Some(tid), "the missed windows name their ticket");
    let m =
        ok(&mut pm, Method::GET, &format!("/api/v1/contracts/{cid}/interface-compliance?month=2026-03"), None).await;
    let row = &m["interfaces"][0];
    assert_eq!(
        (row["decided"].as_i64(), row["ok"].as_i64(), row["missing"].as_i64(), row["mismatch"].as_i64()),
        (Some(5), Some(3), Some(2), Some(0))
    );

    // Every 10 minutes, no ticket rule: a push at 09:22 counts for the window 09:10–09:20 (5 min
    // of grace) and for 09:20–09:30.
    s.set_now(at(2026, 3, 7, 9, 3));
    let mut pm = s.login("pm.chen").await;
    let ten = create(
        &mut pm,
        cid,
        json!({ "code": "3-8.1", "name": "四川省省厅数据对接接口", "source_system": "数字化城管", "target_system": "四川省住建厅",
                "frequency": "每10分钟推送1次" }),
    )
    .await;
    let (tid10, token10) =
        (ten["interface"]["id"].as_i64().unwrap(), ten["heartbeat_token"].as_str().unwrap().to_string());
    assert_eq!(ten["interface"]["next_check_at"], at(2026, 3, 7, 9, 25));
    s.set_now(at(2026, 3, 7, 9, 22));
    assert_eq!(beat(&s, &token10, None).await.status, StatusCode::OK);
    s.set_now(at(2026, 3, 7, 9, 35));
    assert_eq!(pass(&s).await.windows, 2);
    // Nobody pushes and nobody looks until 10:05: three windows are decided at once.
    s.set_now(at(2026, 3, 7, 10, 5));
    let report = pass(&s).await;
    assert_eq!((report.windows, report.anomalies), (3, 3));
    let mut pm = s.login("pm.chen").await;
    assert_eq!(outcomes(&history(&mut pm, cid, tid10).await), vec!["missing", "missing", "missing", "ok", "ok"]);
    let i = interface(&mut pm, cid, tid10).await;
    assert_eq!(i["status"], "missing");
    assert!(i["anomaly_since"].as_i64().is_some() && i["anomaly_ticket_id"].is_null(), "recorded, no ticket rule");
    assert_eq!(tickets(&mut pm, cid).await.len(), 1);
}
both_engines!(heartbeats_decide_windows_and_raise_one_ticket);

/// Unknown, malformed, rotated and retired tokens are all the same plain 404; a bad body is a
/// bilingual 422; nothing of it needs a session or CSRF token.
async fn heartbeat_tokens_reveal_nothing(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    let created = create(&mut pm, cid, daily()).await;
    let (id, token) =
        (created["interface"]["id"].as_i64().unwrap(), created["heartbeat_token"].as_str().unwrap().to_string());
    let plain_404 = s.client().api(Method::POST, "/api/v1/no-such-thing", None).await;
    assert_eq!(plain_404.status, StatusCode::NOT_FOUND);
    let unknown = format!("ywh_{}", "0".repeat(64));
    let not_hex = format!("ywh_{}", "g".repeat(64));
    for t in [unknown.as_str(), not_hex.as_str(), "ywh_short", "%00"] {
        let r = beat(&s, t, Some(json!({ "records": 1 }))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{t}");
        assert_eq!(r.body, plain_404.body, "{t}: the same answer as any unknown path");
    }
    // A bad body with a good token: a clear 422, nothing recorded.
    s.set_now(at(2026, 3, 2, 23, 0));
    for body in [json!({ "records": -1 }), json!({ "records": "many" }), json!({ "colour": 1 })] {
        let r = beat(&s, &token, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        let e = &r.json()["error"];
        assert!(!e["message_zh"].as_str().unwrap().is_empty() && !e["message_en"].as_str().unwrap().is_empty());
    }
    let r = s.client().api(Method::POST, &format!("/api/v1/heartbeat/{token}?records=7&batch=b1"), None).await;
    assert_eq!(r.status, StatusCode::OK, "query parameters work for jobs that send no body: {}", r.body);
    let mut pm = s.login("pm.chen").await;
    let h = history(&mut pm, cid, id).await;
    assert_eq!(h["heartbeats"].as_array().unwrap().len(), 1);
    assert_eq!((h["heartbeats"][0]["records"].as_i64(), h["heartbeats"][0]["batch"].as_str()), (Some(7), Some("b1")));

    // A new token replaces the old one at once.
    let i = interface(&mut pm, cid, id).await;
    let rotated = ok(&mut pm, Method::POST, &format!("/api/v1/contracts/{cid}/interfaces/{id}/token"), None).await;
    let new_token = rotated["heartbeat_token"].as_str().unwrap().to_string();
    assert_ne!(new_token, token);
    s.set_now(at(2026, 3, 2, 23, 5));
    assert_eq!(beat(&s, &token, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(beat(&s, &new_token, None).await.status, StatusCode::OK);
    // Retired: the token stops working, the code may be used again, the old one is gone.
    let v = interface(&mut pm, cid, id).await["version"].as_i64().unwrap();
    assert!(v > i["version"].as_i64().unwrap());
    let r = pm.api(Method::DELETE, &format!("/api/v1/contracts/{cid}/interfaces/{id}?version={}", v - 1), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a stale version: {}", r.body);
    let r = pm.api(Method::DELETE, &format!("/api/v1/contracts/{cid}/interfaces/{id}?version={v}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    s.set_now(at(2026, 3, 2, 23, 10));
    assert_eq!(beat(&s, &new_token, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        pm.api(Method::GET, &format!("/api/v1/contracts/{cid}/interfaces/{id}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    create(&mut pm, cid, daily()).await;
    // Heartbeats are in the audit log with the caller's address, never the token.
    let db = &s.state.db;
    let scope = s.operator().admin_scope(yunwei_core::authz::AdminPermission::AuditRead).unwrap();
    let f =
        yunwei_storage::audit::AuditFilter { action_prefix: Some("interface.heartbeat".into()), ..Default::default() };
    let log = yunwei_storage::audit::list(db, &scope, &f, None, 100).await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|a| a.username == "heartbeat:3-6.8" && !a.detail.contains(&token[4..])));
}
both_engines!(heartbeat_tokens_reveal_nothing);

// ---------------------------------------------------------------------------------------------
// Counts on real databases

fn admin_pg_url() -> String {
    std::env::var("YUNWEI_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs SQL on a database of the local PostgreSQL server (`None`: the maintenance database).
async fn pg(database: Option<&str>, sql: &str) -> Result<(), String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let admin = admin_pg_url();
    let url = match database {
        None => admin,
        Some(db) => format!("{}/{db}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin)),
    };
    let mut c = sqlx::AnyConnection::connect(&url).await.map_err(|e| e.to_string())?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await.map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(())
}

/// Runs SQL on the local MariaDB (root, no password) with its command-line client.
fn maria(sql: &str) -> Result<(), String> {
    let out = std::process::Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--connect-timeout=3", "-e", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// Scratch databases, dropped at the end.
struct Scratch {
    pg: Vec<String>,
    maria: Option<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(m) = &self.maria {
            let _ = maria(&format!("DROP DATABASE IF EXISTS {m}"));
        }
        let names = std::mem::take(&mut self.pg);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                for n in names {
                    let _ = pg(None, &format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// Source counts in PostgreSQL, target counts in MariaDB (or a second PostgreSQL database when
/// MariaDB is not there): 5 against 3 is a mismatch and raises an L3 ticket; equal counts are ok
/// and note the recovery; an unreachable source is a failed check with its reason.
async fn count_mismatch_on_real_databases(s: TestServer) {
    let suffix = yunwei_storage::random_token(4);
    let (src, tgt) = (format!("yw_if_src_{suffix}"), format!("yw_if_tgt_{suffix}"));
    if let Err(e) = pg(None, &format!("CREATE DATABASE {src}")).await {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but PostgreSQL is unreachable: {e}");
        }
        eprintln!("SKIPPED: PostgreSQL not reachable for the count check ({e})");
        return;
    }
    let mut scratch = Scratch { pg: vec![src.clone()], maria: None };
    pg(
        Some(&src),
        "CREATE TABLE cases (id int PRIMARY KEY, pushed_at timestamp NOT NULL); \
        INSERT INTO cases SELECT g, '2026-03-01 12:00:00' FROM generate_series(1, 5) g",
    )
    .await
    .unwrap();
    let target_probe = match maria(&format!(
        "CREATE DATABASE {tgt}; CREATE TABLE {tgt}.cases (id INT PRIMARY KEY); INSERT INTO {tgt}.cases VALUES (1), (2), (3)"
    )) {
        Ok(()) => {
            scratch.maria = Some(tgt.clone());
            json!({ "kind": "mysql", "host": "127.0.0.1", "port": 3306, "username": "root", "database": tgt,
                    "query": "SELECT COUNT(*) FROM cases" })
        }
        Err(e) => {
            eprintln!("MariaDB unavailable ({e}); the target is a second PostgreSQL database");
            pg(None, &format!("CREATE DATABASE {tgt}")).await.unwrap();
            scratch.pg.push(tgt.clone());
            pg(Some(&tgt), "CREATE TABLE cases (id int PRIMARY KEY); INSERT INTO cases VALUES (1), (2), (3)")
                .await
                .unwrap();
            json!({ "kind": "postgres", "host": "127.0.0.1", "port": 5432, "database": tgt,
                    "query": "SELECT count(*) FROM cases" })
        }
    };
    let add_to_target = |ids: &str| {
        let (tgt, ids, is_maria) = (tgt.clone(), ids.to_string(), scratch.maria.is_some());
        async move {
            if is_maria {
                maria(&format!("INSERT INTO {tgt}.cases VALUES {ids}")).unwrap();
            } else {
                pg(Some(&tgt), &format!("INSERT INTO cases VALUES {ids}")).await.unwrap();
            }
        }
    };

    s.set_now(at(2026, 3, 2, 9, 3));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    // The source account is a stored (sealed) probe credential.
    ok(
        &mut pm,
        Method::PUT,
        &format!("/api/v1/contracts/{cid}/inspection-credentials/src-db"),
        Some(json!({ "username": "postgres", "password": "unused-under-trust" })),
    )
    .await;
    let def = json!({
        "code": "3-8.1", "name": "四川省省厅数据对接接口 · 案件基本信息",
        "source_system": "成都市数字化城市管理信息系统", "target_system": "四川省住建厅",
        "frequency": "every 10 min", "heartbeat": false,
        "count_check": {
            "source": { "credential": "src-db", "timeout_s": 10, "probe": { "kind": "postgres", "host": "127.0.0.1", "port": 5432, "database": src,
                        "query": "SELECT count(*) FROM cases WHERE pushed_at < {window_end}" } },
            "target": { "timeout_s": 10, "probe": target_probe },
            "tolerance": 0
        },
        "tickets": { "level": "L3", "incident_class": "一般" }
    });
    let created = create(&mut pm, cid, def.clone()).await;
    assert!(created["heartbeat_token"].is_null(), "no heartbeat, no token");
    let id = created["interface"]["id"].as_i64().unwrap();

    // 5 against 3 → mismatch → an L3 ticket that names both counts.
    s.set_now(at(2026, 3, 2, 9, 25));
    let report = pass(&s).await;
    assert_eq!((report.windows, report.anomalies, report.counts_read), (1, 1, 1));
    let mut pm = s.login("pm.chen").await;
    let i = interface(&mut pm, cid, id).await;
    assert_eq!(
        (i["status"].as_str(), i["last_source_count"].as_i64(), i["last_target_count"].as_i64()),
        (Some("mismatch"), Some(5), Some(3)),
        "{i}"
    );
    let t = tickets(&mut pm, cid).await;
    assert_eq!(t.len(), 1);
    let tid = t[0]["id"].as_i64().unwrap();
    let d = ok(&mut pm, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    assert_eq!(d["ticket"]["level"], "L3");
    let desc = d["ticket"]["description"].as_str().unwrap();
    assert!(desc.contains("源端 5 条，目标端 3 条") && desc.contains("differ by 2"), "{desc}");

    // The missing records arrive → equal counts → ok, one recovery note; equal again → ok.
    add_to_target("(4), (5)").await;
    s.set_now(at(2026, 3, 2, 9, 35));
    assert_eq!(pass(&s).await.anomalies, 0);
    s.set_now(at(2026, 3, 2, 9, 45));
    assert_eq!(pass(&s).await.anomalies, 0);
    let mut pm = s.login("pm.chen").await;
    let h = history(&mut pm, cid, id).await;
    assert_eq!(outcomes(&h), vec!["ok", "ok", "mismatch"]);
    assert_eq!((h["checks"][0]["source_count"].as_i64(), h["checks"][0]["target_count"].as_i64()), (Some(5), Some(5)));
    let c = comments(&mut pm, cid, tid).await;
    assert_eq!(c.iter().filter(|c| c.contains("已恢复 / Recovered at")).count(), 1, "{c:?}");

    // A source that does not answer: the check fails with its reason, on the same ticket.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut broken = def.clone();
    broken["count_check"]["source"]["probe"]["port"] = json!(closed);
    let v = interface(&mut pm, cid, id).await["version"].as_i64().unwrap();
    ok(
        &mut pm,
        Method::PUT,
        &format!("/api/v1/contracts/{cid}/interfaces/{id}"),
        Some(json!({ "version": v, "definition": broken })),
    )
    .await;
    s.set_now(at(2026, 3, 2, 9, 55));
    assert_eq!(pass(&s).await.anomalies, 1);
    let mut pm = s.login("pm.chen").await;
    let h = history(&mut pm, cid, id).await;
    assert_eq!(h["checks"][0]["outcome"], "error");
    let detail = &h["checks"][0]["detail"];
    assert!(
        detail["zh"].as_str().unwrap().contains("源端") && detail["en"].as_str().unwrap().contains("source"),
        "{detail}"
    );
    assert_eq!(tickets(&mut pm, cid).await.len(), 1, "the open ticket is commented on");
    drop(scratch);
}
both_engines!(count_mismatch_on_real_databases);

// ---------------------------------------------------------------------------------------------

/// Every problem of a definition with its field, in Chinese and English; roles as for inspection
/// plans.
async fn bad_definitions_are_refused(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut pm = s.login("pm.chen").await;
    let base = format!("/api/v1/contracts/{cid}/interfaces");
    let r = pm
        .api(
            Method::POST,
            &base,
            Some(json!({
                "code": "3-6 8", "name": "", "source_system": "a", "target_system": "b",
                "frequency": "every 7 min", "grace": "soon",
                "count_check": {
                    "source": { "probe": { "kind": "http", "url": "http://x" } },
                    "target": { "probe": { "kind": "postgres", "host": "", "query": "", "expect": { "value": 1 } },
                                "credential": "nobody", "timeout_s": 900 },
                    "tolerance_pct": 120
                },
                "tickets": { "level": "L9", "incident_class": "天大" }
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let fields = problem_fields(&r);
    for f in [
        "code",
        "name",
        "frequency",
        "grace",
        "count_check.source.probe",
        "count_check.target.probe.query",
        "count_check.target.probe.expect",
        "count_check.target.probe",
        "count_check.target.credential",
        "count_check.target.timeout_s",
        "count_check.tolerance_pct",
        "tickets.level",
        "tickets.incident_class",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} not in {fields:?}");
    }
    for p in r.json()["error"]["problems"].as_array().unwrap() {
        assert!(!p["message_zh"].as_str().unwrap().is_empty() && !p["message_en"].as_str().unwrap().is_empty(), "{p}");
    }
    let level = r.json()["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["field"] == "tickets.level")
        .cloned()
        .unwrap();
    assert!(
        level["message_en"].as_str().unwrap().contains("L9") && level["message_zh"].as_str().unwrap().contains("L1")
    );

    // Shapes: unknown fields, a missing field, nothing observing the interface, a bad frequency.
    let mut bad = daily();
    bad["colour"] = json!("red");
    bad.as_object_mut().unwrap().remove("target_system");
    let r = pm.api(Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["colour", "target_system"]);
    let mut bad = daily();
    bad["heartbeat"] = json!(false);
    let r = pm.api(Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["heartbeat"]);
    let mut bad = daily();
    bad["frequency"] = json!("每周一次");
    let r = pm.api(Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["frequency"]);
    assert!(r.json()["error"]["message_zh"].as_str().unwrap().contains("每周一次"), "{}", r.body);
    let r = pm.api(Method::POST, &base, Some(json!([1, 2]))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing was stored; a good one is, and its code is then taken.
    assert!(ok(&mut pm, Method::GET, &base, None).await.as_array().unwrap().is_empty());
    let v = ok(&mut pm, Method::POST, &format!("{base}/check"), Some(daily())).await;
    assert_eq!((v["frequency"].as_str(), v["grace_ms"].as_i64()), (Some("daily after 23:00"), Some(2 * HOUR)));
    let id = create(&mut pm, cid, daily()).await["interface"]["id"].as_i64().unwrap();
    let r = pm.api(Method::POST, &base, Some(daily())).await;
    assert_eq!(problem_fields(&r), vec!["code"]);
    // A stale edit is a conflict; a good edit applies.
    let mut edit = daily();
    edit["frequency"] = json!("hourly");
    let r = pm.api(Method::PUT, &format!("{base}/{id}"), Some(json!({ "version": 99, "definition": edit }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(!r.json()["error"]["message_zh"].as_str().unwrap().is_empty());
    let r = ok(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(json!({ "version": 1, "definition": edit }))).await;
    assert_eq!(r["interface"]["frequency"], "hourly");
    assert!(r["heartbeat_token"].is_null(), "the token stays as it was");

    // Roles: an engineer reads but does not define; an end user sees nothing.
    let mut eng = s.login("eng.wang").await;
    assert_eq!(eng.api(Method::GET, &base, None).await.status, StatusCode::OK);
    assert_eq!(eng.api(Method::POST, &base, Some(daily())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(eng.api(Method::POST, &format!("{base}/{id}/token"), None).await.status, StatusCode::FORBIDDEN);
    let mut user = s.login("user.zhou").await;
    assert_eq!(user.api(Method::GET, &base, None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(user.get(&format!("/c/{cid}/interfaces")).await.status, StatusCode::FORBIDDEN);
}
both_engines!(bad_definitions_are_refused);

/// One contract's member neither sees nor changes another contract's interfaces, and a token
/// records for its own interface only.
async fn interfaces_are_isolated_between_contracts(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let a = s.seed_contract("004-chengdu-dcm.toml").await;
    let b = s.contract("OTHER-2026").await;
    s.member("pm.chen", a, ContractRole::ProjectManager).await;
    s.member("pm.li", b, ContractRole::ProjectManager).await;
    let mut pma = s.login("pm.chen").await;
    let created = create(&mut pma, a, daily()).await;
    let (id, token) =
        (created["interface"]["id"].as_i64().unwrap(), created["heartbeat_token"].as_str().unwrap().to_string());
    let mut pmb = s.login("pm.li").await;
    // B's contract has no ticket levels: a rule is refused, an interface without one is fine.
    let r = pmb.api(Method::POST, &format!("/api/v1/contracts/{b}/interfaces"), Some(daily())).await;
    assert_eq!(problem_fields(&r), vec!["tickets.level", "tickets.incident_class"]);
    let mut mine = daily();
    mine.as_object_mut().unwrap().remove("tickets");
    create(&mut pmb, b, mine).await;
    for (m, path, body) in [
        (Method::GET, format!("/api/v1/contracts/{a}/interfaces"), None),
        (Method::GET, format!("/api/v1/contracts/{a}/interfaces/{id}"), None),
        (Method::GET, format!("/api/v1/contracts/{a}/interfaces/{id}/history"), None),
        (Method::POST, format!("/api/v1/contracts/{a}/interfaces/{id}/token"), None),
        (
            Method::PUT,
            format!("/api/v1/contracts/{a}/interfaces/{id}"),
            Some(json!({ "version": 1, "definition": daily() })),
        ),
        (Method::DELETE, format!("/api/v1/contracts/{a}/interfaces/{id}?version=1"), None),
    ] {
        assert_eq!(pmb.api(m.clone(), &path, body).await.status, StatusCode::NOT_FOUND, "{m} {path}");
    }
    // B's own contract path with A's interface id: not found either.
    for (m, path) in [
        (Method::GET, format!("/api/v1/contracts/{b}/interfaces/{id}")),
        (Method::GET, format!("/api/v1/contracts/{b}/interfaces/{id}/history")),
        (Method::POST, format!("/api/v1/contracts/{b}/interfaces/{id}/token")),
    ] {
        assert_eq!(pmb.api(m.clone(), &path, None).await.status, StatusCode::NOT_FOUND, "{m} {path}");
    }
    assert_eq!(pmb.get(&format!("/c/{a}/interfaces/{id}")).await.status, StatusCode::NOT_FOUND);
    let list_b = ok(&mut pmb, Method::GET, &format!("/api/v1/contracts/{b}/interfaces"), None).await;
    assert_eq!(list_b.as_array().unwrap().len(), 1);
    assert_ne!(list_b[0]["id"].as_i64(), Some(id));
    // A's token records for A's interface, not for B's of the same code.
    s.set_now(at(2026, 3, 2, 23, 10));
    assert_eq!(beat(&s, &token, None).await.status, StatusCode::OK);
    let bid = list_b[0]["id"].as_i64().unwrap();
    let mut pmb = s.login("pm.li").await;
    assert!(history(&mut pmb, b, bid).await["heartbeats"].as_array().unwrap().is_empty());
    let mut pma = s.login("pm.chen").await;
    assert_eq!(history(&mut pma, a, id).await["heartbeats"].as_array().unwrap().len(), 1);
    let m = ok(&mut pmb, Method::GET, &format!("/api/v1/contracts/{b}/interface-compliance?month=2026-03"), None).await;
    assert_eq!(m["interfaces"].as_array().unwrap().len(), 1);
}
both_engines!(interfaces_are_isolated_between_contracts);

/// The pages: the navigation entry, a new interface typed as TOML (problems listed with their
/// fields, the token shown once on the answer), the interface's page with its windows and pushes,
/// pause and resume; no inline script.
async fn pages_show_interfaces(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    let mut pm = s.login("pm.chen").await;
    let home = pm.get(&format!("/c/{cid}/interfaces")).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let nav = &home.body[home.body.find("<nav class=\"main\">").unwrap()..];
    assert!(
        nav[..nav.find("</nav>").unwrap()].contains(&format!("&#x2f;c&#x2f;{cid}&#x2f;interfaces\"")),
        "nav: {nav}"
    );
    assert!(home.body.contains("数据对接接口") && !home.body.contains("<script>"));

    let path = format!("/c/{cid}/interfaces");
    let r = pm.post_form(&path, &[("definition", "code = \"x\"\ncolour = 1\n")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("line 2") && r.body.contains("colour"), "{}", r.body);
    let bad = "code = \"3-6.12\"\nname = \"路灯当日信息\"\nsource_system = \"数字化城管\"\ntarget_system = \"市网络理政中心\"\nfrequency = \"every 7 min\"\n";
    let r = pm.post_form(&path, &[("definition", bad)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("<code>frequency</code>") && r.body.contains("整除"), "{}", r.body);
    let good = bad.replace("every 7 min", "每 1 小时推送一次");
    let r = pm.post_form(&path, &[("definition", &good), ("check_only", "1")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("定义无误"));
    let r = pm.post_form(&path, &[("definition", &good)]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token_at = r.body.find("ywh_").expect("the token is shown on the answer");
    let token: String = r.body[token_at..].chars().take(68).collect();
    assert!(r.body.contains("仅显示这一次"));
    let mut pm2 = s.login("pm.chen").await;
    let list = ok(&mut pm2, Method::GET, &format!("/api/v1/contracts/{cid}/interfaces"), None).await;
    let id = list[0]["id"].as_i64().unwrap();
    let page = pm.get(&format!("/c/{cid}/interfaces/{id}")).await;
    assert!(!page.body.contains(&token), "shown once only");

    s.set_now(at(2026, 3, 2, 8, 10));
    assert_eq!(beat(&s, &token, Some(json!({ "records": 42, "batch": "b-0810" }))).await.status, StatusCode::OK);
    s.set_now(at(2026, 3, 2, 9, 30));
    pass(&s).await;
    let mut eng = s.login("eng.wang").await;
    let page = eng.get(&format!("/c/{cid}/interfaces/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in ["3-6.12", "路灯当日信息", "每小时", "b-0810", "42", "正常"] {
        assert!(page.body.contains(text), "{text} missing from the interface page");
    }
    assert!(!page.body.contains("name=\"definition\""), "an engineer has no editor");
    let list = eng.get(&path).await;
    assert!(list.body.contains("data-status=\"ok\""), "{}", list.body);

    // Pause and resume from the page.
    let mut pm = s.login("pm.chen").await;
    pm.get(&format!("/c/{cid}/interfaces/{id}")).await;
    let r = pm.post_form(&format!("/c/{cid}/interfaces/{id}/active"), &[("active", "0"), ("version", "1")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let i = interface(&mut pm, cid, id).await;
    assert_eq!((i["active"].as_bool(), i["next_check_at"].as_i64()), (Some(false), None));
    s.set_now(at(2026, 3, 2, 12, 0));
    assert_eq!(pass(&s).await.windows, 0, "paused: nothing is decided");
    let mut pm = s.login("pm.chen").await;
    pm.get(&format!("/c/{cid}/interfaces/{id}")).await;
    pm.post_form(&format!("/c/{cid}/interfaces/{id}/active"), &[("active", "1"), ("version", "2")]).await;
    let i = interface(&mut pm, cid, id).await;
    assert_eq!(i["next_check_at"], at(2026, 3, 2, 13, 30), "judged again from the next window");
}
both_engines!(pages_show_interfaces);
