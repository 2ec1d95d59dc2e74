//! Continuous monitors (issue 6) through the HTTP API: definitions checked field by field (one or
//! a thousand at once), roles and contract isolation, optimistic concurrency; the engine inside
//! the server probing a real HTTP server on loopback (a small axum app whose answer the test
//! switches) going down → one ticket, still down an hour later → one comment, back up → one note,
//! down again → a comment on the same ticket; edits reaching the engine; the lease moving between
//! two nodes; results stored in batches and rolled up hourly; the pages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::{AdminPermission, AdminRole, ContractRole};
use yunwei_storage::audit::{self, AuditFilter};
use yunwei_storage::monitors::{self as store, FollowUp, MonitorReport};
use yunwei_web::monitors::Settings;
use yunwei_web::{AppState, WebConfig};

use crate::both_engines;
use crate::harness::{Browser, Resp, TestServer};

const HOUR: i64 = 3_600_000;

async fn ok(b: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = b.api(method, path, body).await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    if r.body.is_empty() { Value::Null } else { r.json() }
}

fn fields(r: &Resp) -> Vec<String> {
    r.json()["error"]["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap().to_string()).collect()
}

fn tcp(port: u16) -> Value {
    json!({ "kind": "tcp", "host": "127.0.0.1", "port": port })
}

/// A real HTTP server on loopback answering `/health` with the status the test sets.
async fn switchable_server() -> (String, Arc<AtomicU16>) {
    let code = Arc::new(AtomicU16::new(200));
    let c = code.clone();
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let c = c.clone();
            async move { (axum::http::StatusCode::from_u16(c.load(Ordering::Relaxed)).unwrap(), "ok") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/health"), code)
}

/// Quick ticks for tests: changes and results within a fraction of a second.
fn fast() -> Settings {
    Settings { tick: Duration::from_millis(200), batch_every: Duration::from_millis(200), ..Settings::default() }
}

async fn detail(b: &mut Browser, cid: i64, id: i64) -> Value {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/monitors/{id}"), None).await
}

/// Polls the monitor until `done` holds (a run is at most one interval, 10 s, away).
async fn wait_for(b: &mut Browser, cid: i64, id: i64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let v = detail(b, cid, id).await;
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "monitor {id}: not {what} after 25 s: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn comments(b: &mut Browser, cid: i64, tid: i64) -> Vec<String> {
    let d = ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    d["comments"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap().to_string()).collect()
}

async fn ticket_count(b: &mut Browser, cid: i64) -> usize {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/tickets?limit=100"), None).await["rows"]
        .as_array()
        .unwrap()
        .len()
}

// ---------------------------------------------------------------------------------------------

async fn monitors_are_checked_scoped_and_versioned(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    let other = s.contract("OTHER-1").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    s.member("other.pm", other, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    let base = format!("/api/v1/contracts/{cid}/monitors");

    // Every problem at once, with its field and a message in both languages; nothing stored.
    let r = pm
        .api(
            Method::POST,
            &base,
            Some(json!({
                "name": "",
                "probe": { "kind": "http", "url": "ftp://x" },
                "interval_s": 5,
                "timeout_s": 200,
                "credential": "nobody",
                "asset_id": 999999,
                "down_after": 11,
                "expected": { "min": 10, "max": 1 },
                "tickets": { "level": "L9" },
                "retain_raw_days": 0
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let got = fields(&r);
    for f in [
        "name",
        "probe",
        "interval_s",
        "timeout_s",
        "credential",
        "asset_id",
        "down_after",
        "expected",
        "tickets.level",
        "retain_raw_days",
    ] {
        assert!(got.contains(&f.to_string()), "{f} not in {got:?}");
    }
    let e = &r.json()["error"];
    assert!(!e["message_zh"].as_str().unwrap().is_empty() && !e["message_en"].as_str().unwrap().is_empty());
    let level = e["problems"].as_array().unwrap().iter().find(|p| p["field"] == "tickets.level").unwrap();
    assert!(
        level["message_en"].as_str().unwrap().contains("L9") && level["message_zh"].as_str().unwrap().contains("L1")
    );
    // Format errors name the field; malformed JSON is a bilingual 400.
    let r = pm
        .api(Method::POST, &base, Some(json!({ "name": "x", "probe": tcp(1), "interval_s": "60", "colour": 1 })))
        .await;
    let mut got = fields(&r);
    got.sort();
    assert_eq!(got, vec!["colour", "interval_s"]);
    let csrf = pm.csrf.clone().unwrap();
    let rb = pm
        .request(Method::POST, &base)
        .header("x-csrf-token", csrf)
        .header("content-type", "application/json")
        .body("{");
    let r = pm.send(rb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message_zh"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(ok(&mut pm, Method::GET, &base, None).await["items"].as_array().unwrap().len(), 0);

    // A good one.
    let m = pm
        .api(
            Method::POST,
            &base,
            Some(json!({ "name": "门户网站", "probe": tcp(9), "interval_s": 30, "tickets": { "level": "L3" } })),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{}", m.body);
    let m = m.json();
    let id = m["id"].as_i64().unwrap();
    assert_eq!(
        (m["status"].as_str(), m["kind"].as_str(), m["version"].as_i64()),
        (Some("unknown"), Some("tcp"), Some(1))
    );
    assert_eq!(m["definition"]["timeout_s"], Value::Null);

    // Roles: engineers read but do not define; end users see nothing.
    let mut eng = s.login("eng.wang").await;
    assert_eq!(ok(&mut eng, Method::GET, &base, None).await["items"].as_array().unwrap().len(), 1);
    let r = eng.api(Method::POST, &base, Some(json!({ "name": "x", "probe": tcp(9) }))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let mut user = s.login("user.zhou").await;
    assert_eq!(user.api(Method::GET, &base, None).await.status, StatusCode::FORBIDDEN);

    // Optimistic concurrency: a stale version is a conflict; pausing is an edit.
    let mut def = m["definition"].clone();
    def["enabled"] = json!(false);
    let path = format!("{base}/{id}");
    let r = pm.api(Method::PUT, &path, Some(json!({ "version": 7, "definition": def.clone() }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let v = ok(&mut pm, Method::PUT, &path, Some(json!({ "version": 1, "definition": def.clone() }))).await;
    assert_eq!((v["status"].as_str(), v["version"].as_i64()), (Some("paused"), Some(2)));
    def["interval_s"] = json!(3);
    let r = pm.api(Method::PUT, &path, Some(json!({ "version": 2, "definition": def }))).await;
    assert_eq!(fields(&r), vec!["interval_s"]);

    // Bulk: all or none, problems named by index; at most 1,000.
    let bulk = format!("{base}/bulk");
    let many: Vec<Value> = (0..3).map(|i| json!({ "name": format!("端口 {i}"), "probe": tcp(10 + i) })).collect();
    let v = ok(&mut pm, Method::POST, &bulk, Some(json!({ "monitors": many }))).await;
    let ids: Vec<i64> = v["ids"].as_array().unwrap().iter().map(|i| i.as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let bad = json!({ "monitors": [{ "name": "a", "probe": tcp(1) }, { "name": "b", "probe": { "kind": "tcp", "host": "" } }, { "name": "c" }] });
    let r = pm.api(Method::POST, &bulk, Some(bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&r), vec!["monitors[2].probe"], "format problems first: {}", r.body);
    let bad = json!({ "monitors": [{ "name": "a", "probe": tcp(1) }, { "name": "b", "probe": { "kind": "tcp", "host": "", "port": 1 } }] });
    let r = pm.api(Method::POST, &bulk, Some(bad)).await;
    assert_eq!(fields(&r), vec!["monitors[1].probe"], "{}", r.body);
    let too_many: Vec<Value> = (0..1001).map(|i| json!({ "name": format!("m{i}"), "probe": tcp(1) })).collect();
    let r = pm.api(Method::POST, &bulk, Some(json!({ "monitors": too_many }))).await;
    assert_eq!(fields(&r), vec!["monitors"]);
    let summary = ok(&mut pm, Method::GET, &format!("{base}/summary"), None).await;
    assert_eq!(
        (summary["total"].as_i64(), summary["paused"].as_i64(), summary["unknown"].as_i64()),
        (Some(4), Some(1), Some(3))
    );
    let page = ok(&mut pm, Method::GET, &format!("{base}?limit=2"), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next_cursor"].as_str().unwrap().to_string();
    let page2 = ok(&mut pm, Method::GET, &format!("{base}?limit=2&cursor={next}"), None).await;
    assert_eq!(page2["items"][0]["id"], ids[1]);
    let paused = ok(&mut pm, Method::GET, &format!("{base}?status=paused"), None).await;
    assert_eq!(paused["items"][0]["id"], id);
    let r = pm.api(Method::GET, &format!("{base}?status=sideways"), None).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("status")));
    let r = pm.api(Method::GET, &format!("{base}?limit=abc"), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Another contract's manager: nothing of this contract exists for them, and this contract's
    // monitors do not exist in theirs.
    let mut o = s.login("other.pm").await;
    for p in [base.clone(), path.clone(), format!("{path}/history"), format!("{path}/history.svg")] {
        assert_eq!(o.api(Method::GET, &p, None).await.status, StatusCode::NOT_FOUND, "{p}");
    }
    let theirs = format!("/api/v1/contracts/{other}/monitors/{id}");
    assert_eq!(o.api(Method::GET, &theirs, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(o.api(Method::DELETE, &theirs, None).await.status, StatusCode::NOT_FOUND);

    // Deleted: gone from lists and lookups; audited like every change.
    let r = pm.api(Method::DELETE, &format!("{base}/{}", ids[0]), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(pm.api(Method::GET, &format!("{base}/{}", ids[0]), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ok(&mut pm, Method::GET, &format!("{base}/summary"), None).await["total"], 3);
    let scope = s.operator().admin_scope(AdminPermission::AuditRead).unwrap();
    let f = AuditFilter { action_prefix: Some("monitor.".into()), ..Default::default() };
    let log = audit::list(&s.state.db, &scope, &f, None, 100).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, vec!["monitor.delete", "monitor.bulk_create", "monitor.update", "monitor.create"]);
}
both_engines!(monitors_are_checked_scoped_and_versioned);

/// Results written straight through storage with the test clock: a monitor that needs two
/// failures to be down, its ticket, the hourly "still down" comment, the recovery note, going
/// down again while the ticket is open; one audit record per batch that changed a state; the
/// hourly roll-up after the retention.
async fn results_make_incidents_tickets_and_rollups(s: TestServer) {
    let t0 = 1_780_002_000_000; // 2026-05-28 21:00 UTC, on the hour (roll-ups are by hour)
    s.set_now(t0);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    let base = format!("/api/v1/contracts/{cid}/monitors");
    let v = ok(
        &mut pm,
        Method::POST,
        &base,
        Some(json!({ "name": "统一门户", "probe": tcp(9), "down_after": 2, "retain_raw_days": 1,
                     "reading": "status", "expected": { "max": 399 }, "tickets": { "level": "L3", "incident_class": "一般" } })),
    )
    .await;
    let id = v["id"].as_i64().unwrap();
    let quiet = ok(&mut pm, Method::POST, &base, Some(json!({ "name": "无工单", "probe": tcp(9) }))).await["id"]
        .as_i64()
        .unwrap();
    let db = &s.state.db;
    let report = |monitor_id: i64, at: i64, ok: bool, status: f64| MonitorReport {
        monitor_id,
        at,
        ok,
        elapsed_ms: 3.5,
        reason: (!ok).then(|| yunwei_core::ledger::Message::new("连接被拒绝", "connection refused")),
        readings: vec![("status".into(), status)],
    };
    let srv = &s;
    let run = |reports: Vec<MonitorReport>, now: i64| async move {
        srv.set_now(now);
        let rec = store::record_results(db, &reports, now).await.unwrap();
        for f in &rec.follow_ups {
            store::follow_up(db, f, now).await.unwrap();
        }
        rec
    };

    // First failure: not down yet. The probe passing with a reading out of range fails too.
    let rec = run(vec![report(id, t0, false, 0.0), report(quiet, t0, true, 200.0)], t0 + 100).await;
    assert_eq!((rec.stored, rec.transitions, rec.follow_ups.len()), (2, 0, 0));
    let rec =
        run(vec![report(id, t0 + 60_000, true, 503.0), report(quiet, t0 + 60_000, false, 0.0)], t0 + 60_100).await;
    assert_eq!(rec.transitions, 2, "both went down (the quiet one needs one failure)");
    assert!(
        matches!(rec.follow_ups.as_slice(), [FollowUp::Down { monitor_id, .. }] if *monitor_id == id),
        "{:?}",
        rec.follow_ups
    );
    let d = detail(&mut pm, cid, id).await;
    assert_eq!((d["monitor"]["status"].as_str(), d["monitor"]["state"]["failures"].as_i64()), (Some("down"), Some(2)));
    assert!(d["monitor"]["state"]["last_reason"]["en"].as_str().unwrap().contains("status = 503"), "{d}");
    let tid = d["incidents"][0]["ticket_id"].as_i64().unwrap();
    let t = ok(&mut pm, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    assert_eq!((t["ticket"]["level"].as_str(), t["ticket"]["channel"].as_str()), (Some("L3"), Some("alert")));
    assert!(t["ticket"]["description"].as_str().unwrap().contains("统一门户"));
    assert_eq!(ticket_count(&mut pm, cid).await, 1, "the monitor without a ticket rule raised none");
    assert_eq!(detail(&mut pm, cid, quiet).await["incidents"].as_array().unwrap().len(), 1);

    // Still down: no comment within the hour, one after it.
    for k in 2..5 {
        let rec = run(vec![report(id, t0 + k * 60_000, false, 0.0)], t0 + k * 60_000 + 100).await;
        assert!(rec.follow_ups.is_empty());
    }
    let at = t0 + HOUR + 120_000;
    let rec = run(vec![report(id, at, false, 0.0)], at + 100).await;
    assert!(matches!(rec.follow_ups.as_slice(), [FollowUp::StillDown { failures: 6, .. }]), "{:?}", rec.follow_ups);
    let rec = run(vec![report(id, at + 60_000, false, 0.0)], at + 60_100).await;
    assert!(rec.follow_ups.is_empty(), "at most once an hour");
    let mut pm = s.login("pm.chen").await;
    let c = comments(&mut pm, cid, tid).await;
    assert_eq!(c.iter().filter(|c| c.contains("仍未恢复 / Still down")).count(), 1, "{c:?}");

    // Recovered: one note; a second passing run adds nothing.
    let up = at + 120_000;
    run(vec![report(id, up, true, 200.0)], up + 100).await;
    let rec = run(vec![report(id, up + 60_000, true, 200.0)], up + 60_100).await;
    assert!(rec.follow_ups.is_empty() && rec.transitions == 0);
    let c = comments(&mut pm, cid, tid).await;
    assert_eq!(c.iter().filter(|c| c.contains("已恢复 / Recovered")).count(), 1, "{c:?}");
    let d = detail(&mut pm, cid, id).await;
    assert_eq!(d["monitor"]["status"], "up");
    assert!(d["incidents"][0]["recovered_at"].as_i64().is_some());

    // Down again while the ticket is open: the same ticket, commented on.
    let again = up + 120_000;
    run(vec![report(id, again, false, 0.0)], again + 100).await;
    run(vec![report(id, again + 60_000, false, 0.0)], again + 60_100).await;
    assert_eq!(ticket_count(&mut pm, cid).await, 1);
    let d = detail(&mut pm, cid, id).await;
    assert_eq!(
        (d["incidents"][0]["ticket_id"].as_i64(), d["incidents"][0]["opened_ticket"].as_bool()),
        (Some(tid), Some(false))
    );
    let c = comments(&mut pm, cid, tid).await;
    assert_eq!(c.iter().filter(|c| c.contains("再次发生")).count(), 1, "{c:?}");

    // Batches that changed a state are audited with the changes; the others are not.
    let scope = s.operator().admin_scope(AdminPermission::AuditRead).unwrap();
    let f = AuditFilter { action_prefix: Some("monitor.state".into()), ..Default::default() };
    let log = audit::list(db, &scope, &f, None, 100).await.unwrap();
    assert_eq!(log.len(), 3, "down (both), up, down again: {log:?}");
    assert!(log.iter().all(|r| r.contract_id == Some(cid)));

    // Results of a deleted monitor are dropped.
    ok(&mut pm, Method::DELETE, &format!("{base}/{quiet}"), None).await;
    let rec = run(vec![report(quiet, again + 120_000, true, 200.0)], again + 120_100).await;
    assert_eq!((rec.stored, rec.ignored), (0, 1));

    // History: raw points; after the retention (1 day) hourly roll-ups with the same figures.
    let h = ok(&mut pm, Method::GET, &format!("{base}/{id}/history?from={t0}&to={}", t0 + 6 * HOUR), None).await;
    let raw = h["points"].as_array().unwrap();
    assert_eq!(raw.len(), 11);
    assert!(raw.iter().all(|p| p["hourly"] == false));
    assert_eq!(raw.iter().filter(|p| p["n_ok"] == 1).count(), 2);
    let later = t0 + 3 * 24 * HOUR;
    s.set_now(later);
    let rolled = store::roll_up(db, later).await.unwrap();
    assert_eq!(rolled, 11, "the other monitor keeps its raw results 7 days");
    assert_eq!(store::roll_up(db, later).await.unwrap(), 0, "nothing twice");
    let mut pm = s.login("pm.chen").await;
    let h = ok(&mut pm, Method::GET, &format!("{base}/{id}/history?from={t0}&to={}", t0 + 6 * HOUR), None).await;
    let pts = h["points"].as_array().unwrap();
    assert!(pts.iter().all(|p| p["hourly"] == true), "{h}");
    assert_eq!(pts.iter().map(|p| p["n"].as_i64().unwrap()).sum::<i64>(), 11);
    assert_eq!(pts.iter().map(|p| p["n_ok"].as_i64().unwrap()).sum::<i64>(), 2);
    let svg = pm.get(&format!("{base}/{id}/history.svg?from={t0}&to={}", t0 + 6 * HOUR)).await;
    assert_eq!(svg.status, StatusCode::OK);
    assert!(svg.body.starts_with("<svg") && svg.body.contains("统一门户") && !svg.body.contains("<script"));
    let r = pm.api(Method::GET, &format!("{base}/{id}/history?hours=0"), None).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("hours")));
}
both_engines!(results_make_incidents_tickets_and_rollups);

/// The engine in the server against a real HTTP server on loopback: up, down (one ticket), back
/// up (one note); an edit reaches the engine (paused: no more runs; a new target: down within an
/// interval); figures on the admin API and /metrics.
async fn the_engine_probes_a_real_server(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let (_, secret) = s.admin("sys.admin", AdminRole::SystemAdmin).await;
    let (url, code) = switchable_server().await;
    let service = yunwei_web::monitors::spawn(s.state.clone(), "node-a".into(), fast());
    let mut pm = s.login("pm.chen").await;
    let base = format!("/api/v1/contracts/{cid}/monitors");
    let v = ok(
        &mut pm,
        Method::POST,
        &base,
        Some(json!({ "name": "健康检查", "probe": { "kind": "http", "url": url, "expect_status": [200] },
                     "interval_s": 10, "timeout_s": 3, "tickets": { "level": "L2" } })),
    )
    .await;
    let id = v["id"].as_i64().unwrap();
    let d = wait_for(&mut pm, cid, id, "up", |v| v["monitor"]["status"] == "up").await;
    assert!(d["monitor"]["state"]["last_value"].as_f64().is_some(), "the probe's time: {d}");

    code.store(503, Ordering::Relaxed);
    wait_for(&mut pm, cid, id, "down", |v| v["monitor"]["status"] == "down").await;
    let d = wait_for(&mut pm, cid, id, "ticketed", |v| v["incidents"][0]["ticket_id"].is_i64()).await;
    let tid = d["incidents"][0]["ticket_id"].as_i64().unwrap();
    assert!(d["monitor"]["state"]["last_reason"]["en"].as_str().unwrap().contains("503"), "{d}");
    let t = ok(&mut pm, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    assert_eq!(t["ticket"]["level"], "L2");

    code.store(200, Ordering::Relaxed);
    wait_for(&mut pm, cid, id, "up again", |v| v["monitor"]["status"] == "up").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !comments(&mut pm, cid, tid).await.iter().any(|c| c.contains("已恢复 / Recovered")) {
        assert!(Instant::now() < deadline, "no recovery note");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ticket_count(&mut pm, cid).await, 1);

    // Paused: the engine drops it at once.
    let path = format!("{base}/{id}");
    let mut def = d["monitor"]["definition"].clone();
    def["enabled"] = json!(false);
    let v = ok(&mut pm, Method::PUT, &path, Some(json!({ "version": 1, "definition": def.clone() }))).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.state.monitors.stats().monitors != 0 {
        assert!(Instant::now() < deadline, "the paused monitor still runs: {:?}", s.state.monitors.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Resumed against a port nothing listens on: down within an interval.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    def["enabled"] = json!(true);
    def["probe"] = tcp(closed);
    ok(&mut pm, Method::PUT, &path, Some(json!({ "version": v["version"], "definition": def }))).await;
    let d = wait_for(&mut pm, cid, id, "down on the new target", |v| v["monitor"]["status"] == "down").await;
    assert_eq!(d["monitor"]["kind"], "tcp");

    let stats = s.state.monitors.stats();
    // (Lateness is measured, not asserted: tests share two cores with each other.)
    assert!(stats.running && stats.runs >= 4 && stats.write_errors == 0, "{stats:?}");
    assert!(stats.batches >= 1 && stats.results_written >= 4, "{stats:?}");
    let metrics = s.client().get("/metrics").await.body;
    assert!(metrics.contains("monitor_engine_running 1"), "{metrics}");
    assert!(metrics.contains("monitor_runs_total") && metrics.contains("monitor_run_lateness_seconds_bucket"));
    // The engine's figures are the system administrator's; members are refused.
    assert_eq!(pm.api(Method::GET, "/api/v1/admin/monitor-engine", None).await.status, StatusCode::FORBIDDEN);
    let mut adm = s.login_admin("sys.admin", &secret).await;
    let v = ok(&mut adm, Method::GET, "/api/v1/admin/monitor-engine", None).await;
    assert_eq!((v["this_node"]["running"].as_bool(), v["lease_holder"].as_str()), (Some(true), Some("node-a")));
    assert_eq!(v["this_node"]["monitors"], 1);
    service.shutdown().await;
    assert!(!s.state.monitors.stats().running);
}
both_engines!(the_engine_probes_a_real_server);

/// Two nodes over one database: one runs the engine; when it shuts down the other takes over at
/// its next tick; a node that loses the lease stops.
async fn the_lease_moves_between_nodes(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    ok(
        &mut pm,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/monitors"),
        Some(json!({ "name": "p", "probe": tcp(9) })),
    )
    .await;
    let b_state = AppState::new(s.state.db.clone(), s.state.clock.clone(), WebConfig::default());
    let a = yunwei_web::monitors::spawn(s.state.clone(), "node-a".into(), fast());
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.state.monitors.stats().monitors != 1 {
        assert!(Instant::now() < deadline, "node A did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = yunwei_web::monitors::spawn(b_state.clone(), "node-b".into(), fast());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!b_state.monitors.stats().running, "only one node runs the monitors");

    a.shutdown().await;
    assert!(!s.state.monitors.stats().running);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b_state.monitors.stats().monitors != 1 {
        assert!(Instant::now() < deadline, "node B did not take over: {:?}", b_state.monitors.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Another holder (a node whose clock runs ahead, an operator) takes the lease: B stops.
    let took = yunwei_storage::desk_jobs::try_lease(&s.state.db, "monitors", "node-c", s.now() + 60_000, 600_000)
        .await
        .unwrap();
    assert!(took);
    let deadline = Instant::now() + Duration::from_secs(5);
    while b_state.monitors.stats().running {
        assert!(Instant::now() < deadline, "node B still runs without the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.shutdown().await;
}
both_engines!(the_lease_moves_between_nodes);

/// The pages: the list with its status tabs and the new-monitor form (problems listed with their
/// field), a monitor's page with its charts and editor; the nav entry; no page for end users.
async fn monitor_pages(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut pm = s.login("pm.chen").await;
    let list = pm.get(&format!("/c/{cid}/monitors")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(
        list.body.contains("持续监控")
            && list.body.contains("&#x2f;c&#x2f;")
            && list.body.contains("name=\"definition\"")
    );
    let r = pm
        .post_form(
            &format!("/c/{cid}/monitors"),
            &[("definition", "{\"name\": \"x\", \"probe\": {\"kind\": \"tcp\"}, \"interval_s\": 1}")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("<code>probe</code>") && r.body.contains("<code>interval_s</code>"), "{}", r.body);
    let r = pm.post_form(&format!("/c/{cid}/monitors"), &[("definition", "{ not json")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let good = json!({ "name": "数据库端口", "probe": tcp(5432) }).to_string();
    let r = pm.post_form(&format!("/c/{cid}/monitors"), &[("definition", &good)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = pm.get(r.location()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("数据库端口") && page.body.contains("history.svg?hours=24"), "{}", page.body);
    let id: i64 = r.location().rsplit('/').next().unwrap().parse().unwrap();
    let mut edited = serde_json::from_str::<Value>(&good).unwrap();
    edited["name"] = json!("数据库端口（主）");
    let r = pm
        .post_form(&format!("/c/{cid}/monitors/{id}"), &[("definition", &edited.to_string()), ("version", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    pm.get(&format!("/c/{cid}/monitors/{id}")).await;
    let r = pm
        .post_form(&format!("/c/{cid}/monitors/{id}"), &[("definition", &edited.to_string()), ("version", "1")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a stale form: {}", r.body);
    let list = pm.get(&format!("/c/{cid}/monitors?status=unknown")).await;
    assert!(list.body.contains("数据库端口（主）"));
    let nav = &list.body[list.body.find("<nav class=\"main\">").unwrap()..];
    assert!(nav[..nav.find("</nav>").unwrap()].contains(&format!("&#x2f;c&#x2f;{cid}&#x2f;monitors\"")));
    pm.get(&format!("/c/{cid}/monitors/{id}")).await;
    let r = pm.post_form(&format!("/c/{cid}/monitors/{id}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(pm.get(&format!("/c/{cid}/monitors/{id}")).await.status, StatusCode::NOT_FOUND);
    let mut user = s.login("user.zhou").await;
    assert_eq!(user.get(&format!("/c/{cid}/monitors")).await.status, StatusCode::FORBIDDEN);
}
both_engines!(monitor_pages);
