//! Inspections (巡检) through the HTTP API with time driven by the test clock: plan validation,
//! scheduling across the 2026 Spring Festival and its make-up Saturday, runs done on time, late
//! and missed, compliance figures, the offline sync (replays, out-of-order batches, bad input),
//! failed items becoming one ticket with comments and a recovery note, probes against a local
//! port and the test server itself, and isolation between contracts.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::{AdminPermission, ContractRole};
use yunwei_core::calendar::{day_start_utc, days_from_civil};

use crate::both_engines;
use crate::harness::{Browser, Resp, TestServer};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Shanghai wall time → UTC epoch ms.
fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
    day_start_utc(days_from_civil(y, m, d)) + h * HOUR + min * MIN
}

async fn pass(s: &TestServer) {
    yunwei_web::jobs::run_inspections(&s.state, "test-node").await.unwrap();
}

async fn call(b: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Resp {
    b.api(method, path, body).await
}

async fn ok(b: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = b.api(method, path, body).await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.body);
    r.json()
}

async fn create_plan(b: &mut Browser, cid: i64, plan: Value) -> Value {
    let r = b.api(Method::POST, &format!("/api/v1/contracts/{cid}/inspection-plans"), Some(plan)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()
}

async fn runs_of(b: &mut Browser, cid: i64, plan: i64, from: &str, to: &str) -> Vec<Value> {
    let v = ok(
        b,
        Method::GET,
        &format!("/api/v1/contracts/{cid}/inspection-runs?plan_id={plan}&from={from}&to={to}"),
        None,
    )
    .await;
    v["items"].as_array().unwrap().clone()
}

async fn run_detail(b: &mut Browser, cid: i64, rid: i64) -> Value {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/inspection-runs/{rid}"), None).await
}

async fn submit(b: &mut Browser, cid: i64, results: Value) -> Resp {
    b.api(Method::POST, &format!("/api/v1/contracts/{cid}/inspection-results"), Some(json!({ "results": results })))
        .await
}

fn statuses(r: &Resp) -> Vec<String> {
    r.json()["results"].as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap().to_string()).collect()
}

fn problem_fields(r: &Resp) -> Vec<String> {
    r.json()["error"]["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap().to_string()).collect()
}

/// The only open run of a plan (created by the last pass).
async fn latest_run(b: &mut Browser, cid: i64, plan: i64) -> i64 {
    let runs = runs_of(b, cid, plan, "2026-01-01", "2027-01-01").await;
    runs.last().unwrap()["id"].as_i64().unwrap()
}

/// 004 with an office calendar (working days, holidays off, make-up days on) added.
async fn chengdu_with_office_calendar(s: &TestServer) -> i64 {
    let path = format!("{}/../../contracts/004-chengdu-dcm.toml", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str("\n[calendars.office]\ndescription = \"工作日（含调休补班）\"\ndays = \"working_days\"\n");
    let scope = s.operator().admin_scope(AdminPermission::ContractManage).unwrap();
    yunwei_storage::contract_files::import(&s.state.db, &scope, text.as_bytes(), s.now()).await.unwrap().contract_id
}

fn env_plan() -> Value {
    json!({
        "name": "机房环境巡检",
        "frequency": "daily at 09:00",
        "calendar": "hotline",
        "window": { "on_time": "2h", "missed_after": "6h" },
        "targets": [{ "kind": "room", "ref": "1号机房" }],
        "items": [
            { "key": "temp", "label": "温度", "expected": { "range": { "min": 18, "max": 27 } }, "unit": "℃" },
            { "key": "door", "label": "门禁正常" }
        ]
    })
}

// ---------------------------------------------------------------------------------------------

async fn plans_are_checked_field_by_field(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut pm = s.login("pm.chen").await;
    let base = format!("/api/v1/contracts/{cid}/inspection-plans");

    let r = call(
        &mut pm,
        Method::POST,
        &base,
        Some(json!({
            "name": "",
            "duty": "inspect.nope",
            "targets": [{ "kind": "room", "ref": "A" }, { "kind": "room", "ref": "A" }],
            "items": [
                { "key": "Bad Key", "label": "x" },
                { "key": "temp", "label": "温度", "expected": { "range": { "min": 30, "max": 20 } } },
                { "key": "web", "label": "网站", "kind": "probe", "probe": { "kind": "http", "url": "ftp://x" } },
                { "key": "ssh", "label": "SSH", "kind": "probe", "probe": { "kind": "tcp", "host": "10.0.0.1", "port": 22 }, "credential": "nobody" }
            ],
            "window": { "on_time": "3h", "missed_after": "1h" },
            "tickets": { "level": "L9" }
        })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let fields = problem_fields(&r);
    for f in [
        "name",
        "duty",
        "frequency",
        "window.missed_after",
        "targets[1].ref",
        "items[0].key",
        "items[1].expected.range.min",
        "items[2].probe",
        "items[3].credential",
        "tickets.level",
    ] {
        assert!(fields.contains(&f.to_string()), "{f} not in {fields:?}");
    }
    let e = &r.json()["error"];
    assert_eq!(e["code"], "invalid");
    let level = e["problems"].as_array().unwrap().iter().find(|p| p["field"] == "tickets.level").unwrap();
    assert!(
        level["message_en"].as_str().unwrap().contains("L9") && level["message_zh"].as_str().unwrap().contains("L1")
    );

    // Format errors name the field or the element of the list.
    let mut bad = env_plan();
    bad["colour"] = json!("red");
    let r = call(&mut pm, Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["colour"]);
    let mut bad = env_plan();
    bad["items"][1]["expected"] = json!({ "range": { "mx": 1 } });
    let r = call(&mut pm, Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["items[1]"]);
    assert!(r.json()["error"]["message_en"].as_str().unwrap().contains("mx"), "{}", r.body);
    let mut bad = env_plan();
    bad["frequency"] = json!("hourly");
    let r = call(&mut pm, Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["frequency"]);
    let mut bad = env_plan();
    bad["assignee_user_id"] = json!(999_999);
    let r = call(&mut pm, Method::POST, &base, Some(bad)).await;
    assert_eq!(problem_fields(&r), vec!["assignee_user_id"]);
    // Nothing was stored.
    assert_eq!(ok(&mut pm, Method::GET, &base, None).await.as_array().unwrap().len(), 0);

    // Roles: an engineer carries out runs but does not define plans; end users see none of it.
    let mut engb = s.login("eng.wang").await;
    assert_eq!(call(&mut engb, Method::POST, &base, Some(env_plan())).await.status, StatusCode::FORBIDDEN);
    let mut user = s.login("user.zhou").await;
    assert_eq!(call(&mut user, Method::GET, &base, None).await.status, StatusCode::FORBIDDEN);

    // A probe credential is stored sealed and never shown.
    let cred = format!("/api/v1/contracts/{cid}/inspection-credentials/db-readonly");
    let v = ok(&mut pm, Method::PUT, &cred, Some(json!({ "username": "monitor", "password": "S3cret!pw" }))).await;
    assert_eq!(v["password"], "••••");
    let list = call(&mut pm, Method::GET, &format!("/api/v1/contracts/{cid}/inspection-credentials"), None).await;
    assert!(!list.body.contains("S3cret"), "{}", list.body);

    // A valid plan: checked, stored, then a stale edit is a conflict.
    let mut good = env_plan();
    good["assignee_user_id"] = json!(eng);
    good["items"].as_array_mut().unwrap().push(json!({
        "key": "pg", "label": "数据库端口", "kind": "probe", "credential": "db-readonly",
        "probe": { "kind": "tcp", "host": "127.0.0.1", "port": 5432 }, "timeout_s": 3
    }));
    let v = ok(&mut pm, Method::POST, &format!("{base}/check"), Some(good.clone())).await;
    assert_eq!(v["frequency"], "daily at 09:00");
    assert_eq!(v["cells"], 3);
    let plan = create_plan(&mut pm, cid, good.clone()).await;
    let pid = plan["id"].as_i64().unwrap();
    assert_eq!(plan["next_slot_at"], at(2026, 3, 2, 9, 0));
    good["name"] = json!("机房环境巡检（新）");
    let r =
        call(&mut pm, Method::PUT, &format!("{base}/{pid}"), Some(json!({ "version": 0, "definition": good.clone() })))
            .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let v = ok(&mut pm, Method::PUT, &format!("{base}/{pid}"), Some(json!({ "version": 1, "definition": good }))).await;
    assert_eq!((v["name"].as_str(), v["version"].as_i64()), (Some("机房环境巡检（新）"), Some(2)));
    let v = ok(&mut pm, Method::POST, &format!("{base}/{pid}/active"), Some(json!({ "active": false, "version": 2 })))
        .await;
    assert_eq!((v["active"].as_bool(), v["next_slot_at"].is_null()), (Some(false), true));
}
both_engines!(plans_are_checked_field_by_field);

/// 004's twice-daily core inspection on an office calendar around the 2026 Spring Festival
/// (15–23 Feb off, Saturday 14 Feb a make-up workday), and "monthly on 10" when the 10th is a
/// Saturday: the previews and the runs the scheduler creates, each at its slot.
async fn scheduling_follows_the_calendar_and_holidays(s: TestServer) {
    s.set_now(at(2026, 1, 9, 8, 0));
    let cid = chengdu_with_office_calendar(&s).await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm.chen").await;
    let base = format!("/api/v1/contracts/{cid}/inspection-plans");
    let monthly = create_plan(
        &mut pm,
        cid,
        json!({
            "name": "数据库月度安全巡检", "frequency": "monthly on 10", "calendar": "office",
            "targets": [{ "kind": "system", "ref": "数据库" }],
            "items": [{ "key": "backup", "label": "当日备份正常" }]
        }),
    )
    .await;
    let mid = monthly["id"].as_i64().unwrap();
    let v = ok(&mut pm, Method::GET, &format!("{base}/{mid}/slots?from=2026-01-01&to=2027-01-01"), None).await;
    let ats: Vec<i64> = v["slots"].as_array().unwrap().iter().map(|s| s["at"].as_i64().unwrap()).collect();
    assert_eq!(ats.len(), 12);
    assert_eq!(ats[0], at(2026, 1, 12, 0, 0), "Saturday 10 Jan → Monday 12 Jan");
    assert!(ats.contains(&at(2026, 10, 10, 0, 0)), "Saturday 10 Oct 2026 is a make-up workday");
    assert!(ats.contains(&at(2026, 5, 11, 0, 0)), "Sunday 10 May → Monday 11 May");

    s.set_now(at(2026, 1, 10, 0, 0));
    pass(&s).await;
    let mut pm = s.login("pm.chen").await;
    assert!(runs_of(&mut pm, cid, mid, "2026-01-01", "2026-02-01").await.is_empty(), "no run on Saturday the 10th");
    s.set_now(at(2026, 1, 12, 0, 0));
    pass(&s).await;
    pass(&s).await;
    let mut pm = s.login("pm.chen").await;
    let runs = runs_of(&mut pm, cid, mid, "2026-01-01", "2026-02-01").await;
    assert_eq!(runs.len(), 1, "one run however many passes");
    assert_eq!(runs[0]["slot_at"], at(2026, 1, 12, 0, 0));
    assert_eq!(runs[0]["created_at"], at(2026, 1, 12, 0, 0), "created on time");
    assert_eq!(runs[0]["due_by"], at(2026, 1, 13, 0, 0));

    // The core subsystems (duty inspect.core, daily at 09:00 and 15:00) on working days.
    s.set_now(at(2026, 2, 12, 8, 0));
    let mut pm = s.login("pm.chen").await;
    let core = create_plan(
        &mut pm,
        cid,
        json!({
            "name": "9 大基础子系统巡检", "duty": "inspect.core", "calendar": "office",
            "targets": [{ "kind": "system", "ref": "呼叫受理子系统" }, { "kind": "system", "ref": "协同工作子系统" }],
            "items": [{ "key": "login", "label": "登录正常" }, { "key": "query", "label": "查询响应正常" }]
        }),
    )
    .await;
    let pid = core["id"].as_i64().unwrap();
    assert_eq!(core["frequency"], "daily at 09:00, 15:00", "the duty's frequency");
    let v = ok(&mut pm, Method::GET, &format!("{base}/{pid}/slots?from=2026-02-12&to=2026-02-25"), None).await;
    let ats: Vec<i64> = v["slots"].as_array().unwrap().iter().map(|s| s["at"].as_i64().unwrap()).collect();
    let expected = vec![
        at(2026, 2, 12, 9, 0),
        at(2026, 2, 12, 15, 0),
        at(2026, 2, 13, 9, 0),
        at(2026, 2, 13, 15, 0),
        at(2026, 2, 14, 9, 0),
        at(2026, 2, 14, 15, 0),
        at(2026, 2, 24, 9, 0),
        at(2026, 2, 24, 15, 0),
    ];
    assert_eq!(ats, expected);
    assert_eq!(v["slots"][0]["due_by"], at(2026, 2, 12, 11, 0));

    s.set_now(at(2026, 2, 12, 8, 59));
    pass(&s).await;
    let mut pm = s.login("pm.chen").await;
    assert!(runs_of(&mut pm, cid, pid, "2026-02-01", "2026-03-01").await.is_empty());
    s.set_now(at(2026, 2, 12, 9, 0));
    pass(&s).await;
    let mut pm = s.login("pm.chen").await;
    let runs = runs_of(&mut pm, cid, pid, "2026-02-01", "2026-03-01").await;
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0]["slot_at"].as_i64(), runs[0]["created_at"].as_i64()), (Some(ats[0]), Some(ats[0])));
    assert_eq!(runs[0]["cells"], 4);
    for t in [at(2026, 2, 13, 15, 0), at(2026, 2, 14, 15, 0), at(2026, 2, 16, 9, 0), at(2026, 2, 24, 9, 0)] {
        s.set_now(t);
        pass(&s).await;
    }
    let mut pm = s.login("pm.chen").await;
    let runs = runs_of(&mut pm, cid, pid, "2026-02-01", "2026-03-01").await;
    let got: Vec<i64> = runs.iter().map(|r| r["slot_at"].as_i64().unwrap()).collect();
    assert_eq!(got, expected[..7].to_vec(), "nothing during the festival, the make-up Saturday included");
    let states: Vec<&str> = runs.iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["missed", "missed", "missed", "missed", "missed", "missed", "open"]);

    let v = ok(
        &mut pm,
        Method::GET,
        &format!("/api/v1/contracts/{cid}/inspection-compliance?from=2026-02-12&to=2026-02-25"),
        None,
    )
    .await;
    let c = v["plans"].as_array().unwrap().iter().find(|p| p["plan_id"] == pid).unwrap()["compliance"].clone();
    assert_eq!(
        (c["required"].as_u64(), c["done"].as_u64(), c["late"].as_u64(), c["missed"].as_u64(), c["open"].as_u64()),
        (Some(7), Some(0), Some(0), Some(6), Some(1))
    );
}
both_engines!(scheduling_follows_the_calendar_and_holidays);

/// Done on time, late, missed and open runs, and the compliance figures they make; the records
/// as Excel; readings rolled up hourly after their retention and charted.
async fn runs_are_done_late_or_missed_and_counted(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    s.member("client.liu", cid, ContractRole::ClientSupervisor).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut pm = s.login("pm.chen").await;
    let plan = create_plan(&mut pm, cid, env_plan()).await;
    let pid = plan["id"].as_i64().unwrap();
    let room = "room:1号机房";

    // Day 1: the temperature at 09:30, the door forgotten; signed at 09:40 → done, one item missing.
    s.set_now(at(2026, 3, 2, 9, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 2, 9, 40));
    let mut eng = s.login("eng.wang").await;
    let r1 = latest_run(&mut eng, cid, pid).await;
    let r = submit(
        &mut eng,
        cid,
        json!([{ "client_op_id": "d1-temp-0001", "run_id": r1, "target": room, "item": "temp", "value": 22.0,
                 "recorded_at": at(2026, 3, 2, 9, 30) }]),
    )
    .await;
    assert_eq!(statuses(&r), vec!["applied"], "{}", r.body);
    let v =
        ok(&mut eng, Method::POST, &format!("/api/v1/contracts/{cid}/inspection-runs/{r1}/sign-off"), Some(json!({})))
            .await;
    assert_eq!(
        (v["state"].as_str(), v["finished_at"].as_i64(), v["missing"].as_i64()),
        (Some("done"), Some(at(2026, 3, 2, 9, 30)), Some(1))
    );
    let again = call(
        &mut eng,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/inspection-runs/{r1}/sign-off"),
        Some(json!({})),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Day 2: everything at 12:00, after the 11:00 due time → late.
    s.set_now(at(2026, 3, 3, 9, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 3, 12, 0));
    let mut eng = s.login("eng.wang").await;
    let r2 = latest_run(&mut eng, cid, pid).await;
    let r = submit(
        &mut eng,
        cid,
        json!([
            { "client_op_id": "d2-temp-0001", "run_id": r2, "target": room, "item": "temp", "value": 25.0 },
            { "client_op_id": "d2-door-0001", "run_id": r2, "target": room, "item": "door", "ok": true }
        ]),
    )
    .await;
    assert_eq!(statuses(&r), vec!["applied", "applied"]);
    let v = ok(
        &mut eng,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/inspection-runs/{r2}/sign-off"),
        Some(json!({ "note": "系统升级后补巡" })),
    )
    .await;
    assert_eq!(v["state"], "late");

    // Day 3: nobody came; at 15:00 the run is missed and closed.
    s.set_now(at(2026, 3, 4, 9, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 4, 15, 0));
    pass(&s).await;
    let mut eng = s.login("eng.wang").await;
    let r3 = latest_run(&mut eng, cid, pid).await;
    assert_eq!(run_detail(&mut eng, cid, r3).await["run"]["state"], "missed");
    let late = submit(
        &mut eng,
        cid,
        json!([{ "client_op_id": "d3-temp-0001", "run_id": r3, "target": room, "item": "temp", "value": 21.0 }]),
    )
    .await;
    assert_eq!(statuses(&late), vec!["rejected"], "kept in the history, not applied");
    let d = run_detail(&mut eng, cid, r3).await;
    assert_eq!((d["ops"].as_array().unwrap().len(), d["run"]["results"].as_i64()), (1, Some(0)));
    let r = call(
        &mut eng,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/inspection-runs/{r3}/sign-off"),
        Some(json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Day 4: due, not yet done.
    s.set_now(at(2026, 3, 5, 9, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 5, 10, 0));
    let mut client = s.login("client.liu").await;
    let v = ok(
        &mut client,
        Method::GET,
        &format!("/api/v1/contracts/{cid}/inspection-compliance?from=2026-03-02&to=2026-03-06"),
        None,
    )
    .await;
    let c = &v["plans"][0]["compliance"];
    assert_eq!(
        (
            c["required"].as_u64(),
            c["done"].as_u64(),
            c["late"].as_u64(),
            c["missed"].as_u64(),
            c["open"].as_u64(),
            c["missing_items"].as_u64()
        ),
        (Some(4), Some(1), Some(1), Some(1), Some(1), Some(1))
    );
    assert_eq!(v["total"]["required"], 4);
    let states: Vec<&str> = c["slots"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["done", "late", "missed", "open"]);

    // Who may do what.
    let mut user = s.login("user.zhou").await;
    let r = call(&mut user, Method::GET, &format!("/api/v1/contracts/{cid}/inspection-compliance"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut desk = s.login("desk.li").await;
    let r4 = latest_run(&mut desk, cid, pid).await;
    let r = submit(
        &mut desk,
        cid,
        json!([{ "client_op_id": "desk-0000001", "run_id": r4, "target": room, "item": "door", "ok": true }]),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The records for the client: the daily sheet and the monthly statistics as workbooks.
    for path in ["inspection-sheet.xlsx?date=2026-03-02", "inspection-summary.xlsx?month=2026-03"] {
        let r = client.get(&format!("/api/v1/contracts/{cid}/{path}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.headers["content-type"].to_str().unwrap().contains("spreadsheetml"));
    }

    // History: raw readings, then hourly roll-ups once past the retention; the same as a chart.
    let hist = format!(
        "/api/v1/contracts/{cid}/inspection-plans/{pid}/history?target={}&item=temp&from=2026-03-01&to=2026-03-06",
        crate::harness::urlencode(room)
    );
    let v = ok(&mut client, Method::GET, &hist, None).await;
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0]["avg"].as_f64(), points[0]["hourly"].as_bool()),
        (Some(22.0), Some(true)),
        "hourly beyond 3 days"
    );
    let rolled = yunwei_storage::inspections::roll_up(&s.state.db, at(2026, 5, 1, 0, 0)).await.unwrap();
    assert_eq!(rolled, 3, "the readings of March (two temperatures, one door) are past 31 days");
    let v = ok(&mut client, Method::GET, &hist, None).await;
    let p: Vec<(i64, f64, f64, f64)> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["at"].as_i64().unwrap(),
                p["min"].as_f64().unwrap(),
                p["avg"].as_f64().unwrap(),
                p["max"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(p, vec![(at(2026, 3, 2, 9, 0), 22.0, 22.0, 22.0), (at(2026, 3, 3, 12, 0), 25.0, 25.0, 25.0)]);
    let r = client.get(&hist.replace("/history?", "/history.svg?")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.starts_with("<svg") && r.body.contains("1号机房") && !r.body.contains("<script"));
}
both_engines!(runs_are_done_late_or_missed_and_counted);

/// The offline sync: a replayed batch changes nothing, a reading taken later wins whatever the
/// order of arrival, nothing sent is lost, bad input anywhere refuses the whole batch; another
/// contract's people cannot reach any of it.
async fn offline_sync_neither_duplicates_nor_loses_readings(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    let other_cid = s.contract("OTHER").await;
    s.member("other.eng", other_cid, ContractRole::Engineer).await;
    let mut pm = s.login("pm.chen").await;
    let plan = create_plan(&mut pm, cid, env_plan()).await;
    let pid = plan["id"].as_i64().unwrap();
    s.set_now(at(2026, 3, 2, 9, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 2, 9, 20));
    let mut eng = s.login("eng.wang").await;
    let rid = latest_run(&mut eng, cid, pid).await;
    let room = "room:1号机房";
    let op = |id: &str, item: &str, value: Value, minute: i64| {
        let mut v = json!({ "client_op_id": id, "run_id": rid, "target": room, "item": item,
                            "recorded_at": at(2026, 3, 2, 9, minute) });
        if item == "door" {
            v["ok"] = value;
        } else {
            v["value"] = value;
        }
        v
    };

    let batch = json!([op("op-temp-0001", "temp", json!(22.0), 5), op("op-door-0001", "door", json!(true), 6)]);
    assert_eq!(statuses(&submit(&mut eng, cid, batch.clone()).await), vec!["applied", "applied"]);
    assert_eq!(
        statuses(&submit(&mut eng, cid, batch).await),
        vec!["duplicate", "duplicate"],
        "a replay changes nothing"
    );
    let d = run_detail(&mut eng, cid, rid).await;
    assert_eq!((d["ops"].as_array().unwrap().len(), d["run"]["results"].as_i64()), (2, Some(2)));

    // Out of order: the 09:15 reading arrives before the 09:10 one; the later reading wins.
    assert_eq!(
        statuses(&submit(&mut eng, cid, json!([op("op-temp-0003", "temp", json!(25.0), 15)])).await),
        vec!["applied"]
    );
    assert_eq!(
        statuses(&submit(&mut eng, cid, json!([op("op-temp-0002", "temp", json!(23.0), 10)])).await),
        vec!["stale"]
    );
    // The same op twice in one batch, and a correction of the door.
    let r = submit(
        &mut eng,
        cid,
        json!([op("op-door-0002", "door", json!(false), 16), op("op-door-0002", "door", json!(false), 16)]),
    )
    .await;
    assert_eq!(statuses(&r), vec!["applied", "duplicate"]);
    let d = run_detail(&mut eng, cid, rid).await;
    let temp = d["cells"].as_array().unwrap().iter().find(|c| c["item_key"] == "temp").unwrap();
    assert_eq!((temp["result"]["value"].as_f64(), temp["result"]["revisions"].as_i64()), (Some(25.0), Some(2)));
    let door = d["cells"].as_array().unwrap().iter().find(|c| c["item_key"] == "door").unwrap();
    assert_eq!(door["result"]["ok"], false);
    let ops: Vec<(String, String)> = d["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["client_op_id"].as_str().unwrap().to_string(), o["disposition"].as_str().unwrap().to_string()))
        .collect();
    let expect = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        ops,
        vec![
            expect("op-temp-0001", "superseded"),
            expect("op-door-0001", "superseded"),
            expect("op-temp-0003", "current"),
            expect("op-temp-0002", "stale"),
            expect("op-door-0002", "current"),
        ],
        "every reading sent is kept exactly once"
    );

    // Bad input: 4xx with the field, and nothing changes (not even the good results beside it).
    let good = op("op-good-0001", "temp", json!(24.0), 19);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "client_op_id": "op-bad-00001", "run_id": rid, "target": room, "item": "humidity", "value": 1 }),
            "results[1].item",
        ),
        (op("op-bad-00002", "temp", json!("22"), 19), "results[1].value"),
        (
            json!({ "client_op_id": "op-bad-00003", "run_id": rid, "target": room, "item": "temp", "value": 22, "recorded_at": at(2026, 3, 2, 10, 30) }),
            "results[1].recorded_at",
        ),
        (
            json!({ "client_op_id": "op-bad-00004", "run_id": rid, "target": room, "item": "temp", "value": 22, "note": "很".repeat(100 * 1024 / 3) }),
            "results[1].note",
        ),
        (op("short", "temp", json!(22.0), 19), "results[1].client_op_id"),
        (
            json!({ "client_op_id": "op-bad-00005", "run_id": rid, "target": "room:2号机房", "item": "temp", "value": 1 }),
            "results[1].target",
        ),
        (
            json!({ "client_op_id": "op-bad-00006", "run_id": rid + 1000, "target": room, "item": "temp", "value": 1 }),
            "results[1].run_id",
        ),
        (json!({ "client_op_id": "op-bad-00007", "run_id": rid, "target": room, "item": "door" }), "results[1].ok"),
        (
            json!({ "client_op_id": "op-bad-00009", "run_id": rid, "target": room, "item": "door", "ok": true, "colour": 1 }),
            "results[1]",
        ),
        (
            json!({ "client_op_id": "op-bad-00010", "run_id": "7", "target": room, "item": "door", "ok": true }),
            "results[1]",
        ),
    ];
    for (bad, field) in cases {
        let r = submit(&mut eng, cid, json!([good.clone(), bad])).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], field, "{}", r.body);
    }
    let r = submit(&mut eng, cid, json!([op("op-bad-00008", "temp", json!(22.0), 19)]).to_string().into()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a string instead of a list: {}", r.body);
    assert_eq!(run_detail(&mut eng, cid, rid).await["ops"].as_array().unwrap().len(), 5, "nothing changed");
    assert_eq!(statuses(&submit(&mut eng, cid, json!([good])).await), vec!["applied"], "the good one was never stored");

    // A photo: uploaded once however often it is sent (its client_op_id), images only, then
    // attached to a reading of the same run.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let photos = format!("/api/v1/contracts/{cid}/inspection-runs/{rid}/photos");
    let mut ids = Vec::new();
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let csrf = eng.csrf.clone().unwrap();
        let rb = eng
            .request(Method::POST, &format!("{photos}?name=door.png&client_op_id=photo-000001"))
            .header("x-csrf-token", csrf)
            .body(png.clone());
        let r = eng.send(rb).await;
        assert_eq!(r.status, expected, "{}", r.body);
        ids.push(r.json()["id"].as_i64().unwrap());
    }
    assert_eq!(ids[0], ids[1], "the same photo");
    let csrf = eng.csrf.clone().unwrap();
    let rb = eng.request(Method::POST, &format!("{photos}?name=x.txt")).header("x-csrf-token", csrf).body("just text");
    assert_eq!(eng.send(rb).await.status, StatusCode::UNPROCESSABLE_ENTITY, "not an image");
    let mut with_photo = op("op-door-0003", "door", json!(true), 19);
    with_photo["photo_ids"] = json!([ids[0]]);
    assert_eq!(statuses(&submit(&mut eng, cid, json!([with_photo])).await), vec!["applied"]);
    let mut bad_photo = op("op-door-0004", "door", json!(true), 19);
    bad_photo["photo_ids"] = json!([ids[0] + 99]);
    let r = submit(&mut eng, cid, json!([bad_photo])).await;
    assert_eq!(r.json()["error"]["field"], "results[0].photo_ids[0]");
    let d = run_detail(&mut eng, cid, rid).await;
    assert_eq!(d["photos"].as_array().unwrap().len(), 1);
    let door = d["cells"].as_array().unwrap().iter().find(|c| c["item_key"] == "door").unwrap().clone();
    assert_eq!(door["result"]["photo_ids"], json!([ids[0]]));
    let r = eng.get(&format!("{photos}/{}", ids[0])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "image/png");

    // Another contract's engineer: the run does not exist for them.
    let mut other = s.login("other.eng").await;
    let r = submit(&mut other, other_cid, json!([op("op-other-001", "temp", json!(1.0), 19)])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["field"], "results[0].run_id");
    for path in [
        format!("/api/v1/contracts/{cid}/inspection-runs/{rid}"),
        format!("/api/v1/contracts/{cid}/inspection-plans/{pid}"),
        format!("/api/v1/contracts/{cid}/inspection-compliance"),
    ] {
        assert_eq!(call(&mut other, Method::GET, &path, None).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = submit(&mut other, cid, json!([op("op-other-002", "temp", json!(1.0), 19)])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(run_detail(&mut eng, cid, rid).await["ops"].as_array().unwrap().len(), 7);
}
both_engines!(offline_sync_neither_duplicates_nor_loses_readings);

async fn ticket_comments(b: &mut Browser, cid: i64, tid: i64) -> Vec<String> {
    let d = ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    d["comments"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap().to_string()).collect()
}

async fn ticket_count(b: &mut Browser, cid: i64) -> usize {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/tickets?limit=100"), None).await["rows"]
        .as_array()
        .unwrap()
        .len()
}

/// A failed item opens one ticket per target and item at the plan's level; a repeat is commented
/// on; passing again adds one recovery note. Probe items do the same on their own: a closed local
/// port fails, the same port listening recovers; the test server's /healthz passes.
async fn failed_items_become_one_ticket_and_recover(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    let mut pm = s.login("pm.chen").await;
    let mut manual = env_plan();
    manual["tickets"] = json!({ "level": "L3", "incident_class": "一般" });
    let pid = create_plan(&mut pm, cid, manual).await["id"].as_i64().unwrap();
    let room = "room:1号机房";

    // Day 1: the door is broken → a new L3 ticket raised in the engineer's name.
    s.set_now(at(2026, 3, 2, 9, 0));
    pass(&s).await;
    let mut eng = s.login("eng.wang").await;
    let r1 = latest_run(&mut eng, cid, pid).await;
    let r = submit(
        &mut eng,
        cid,
        json!([{ "client_op_id": "t1-door-0001", "run_id": r1, "target": room, "item": "door",
                                            "ok": false, "note": "门禁读卡器无响应" }]),
    )
    .await;
    assert_eq!(r.json()["results"][0]["ok"], false);
    let d = run_detail(&mut eng, cid, r1).await;
    let a = &d["anomalies"][0];
    assert_eq!(a["opened_ticket"], true);
    let tid = a["ticket_id"].as_i64().unwrap();
    let t = ok(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{tid}"), None).await;
    assert_eq!((t["ticket"]["level"].as_str(), t["ticket"]["channel"].as_str()), (Some("L3"), Some("inspection")));
    assert!(t["ticket"]["description"].as_str().unwrap().contains("门禁读卡器无响应"));
    assert_eq!(ticket_count(&mut eng, cid).await, 1);

    // Day 2: still broken → no second ticket, a comment on the open one.
    s.set_now(at(2026, 3, 3, 9, 0));
    pass(&s).await;
    let mut eng = s.login("eng.wang").await;
    let r2 = latest_run(&mut eng, cid, pid).await;
    submit(
        &mut eng,
        cid,
        json!([{ "client_op_id": "t2-door-0001", "run_id": r2, "target": room, "item": "door", "ok": false }]),
    )
    .await;
    assert_eq!(ticket_count(&mut eng, cid).await, 1);
    let d = run_detail(&mut eng, cid, r2).await;
    assert_eq!(
        (d["anomalies"][0]["ticket_id"].as_i64(), d["anomalies"][0]["opened_ticket"].as_bool()),
        (Some(tid), Some(false))
    );
    let comments = ticket_comments(&mut eng, cid, tid).await;
    assert_eq!(comments.iter().filter(|c| c.contains("再次发生")).count(), 1, "{comments:?}");

    // Day 3: fixed → one recovery note; day 4: still fine → no second note.
    for (day, op) in [(4, "t3-door-0001"), (5, "t4-door-0001")] {
        s.set_now(at(2026, 3, day, 9, 0));
        pass(&s).await;
        let mut eng = s.login("eng.wang").await;
        let rid = latest_run(&mut eng, cid, pid).await;
        submit(
            &mut eng,
            cid,
            json!([{ "client_op_id": op, "run_id": rid, "target": room, "item": "door", "ok": true }]),
        )
        .await;
    }
    let mut eng = s.login("eng.wang").await;
    let comments = ticket_comments(&mut eng, cid, tid).await;
    let notes: Vec<&String> = comments.iter().filter(|c| c.contains("已恢复 / Recovered at")).collect();
    assert_eq!(notes.len(), 1, "{comments:?}");
    assert!(notes[0].contains("2026-03-04 09:00"), "{}", notes[0]);
    assert_eq!(ticket_count(&mut eng, cid).await, 1);

    // Probes against a port that nothing listens on (yet) and the test server itself.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let probe_plan = json!({
        "name": "平台自检", "frequency": "daily at 10:00", "calendar": "hotline",
        "targets": [{ "kind": "system", "ref": "yunwei", "label": "运维台" }],
        "items": [
            { "key": "port", "label": "服务端口", "kind": "probe", "timeout_s": 3,
              "probe": { "kind": "tcp", "host": "127.0.0.1", "port": port } },
            { "key": "health", "label": "健康检查", "kind": "probe", "timeout_s": 5, "reading": "status",
              "expected": { "range": { "min": 200, "max": 299 } },
              "probe": { "kind": "http", "url": format!("{}/healthz", s.base), "body_contains": "ok" } }
        ],
        "tickets": { "level": "L4" }
    });
    s.set_now(at(2026, 3, 5, 9, 30));
    let mut pm = s.login("pm.chen").await;
    let probe_pid = create_plan(&mut pm, cid, probe_plan).await["id"].as_i64().unwrap();
    // Probes, day 1: the port is closed → an L4 ticket raised by the platform; the health check
    // passes; a probe-only run finishes by itself.
    s.set_now(at(2026, 3, 5, 10, 0));
    pass(&s).await;
    let mut eng = s.login("eng.wang").await;
    let p1 = latest_run(&mut eng, cid, probe_pid).await;
    let d = run_detail(&mut eng, cid, p1).await;
    assert_eq!(d["run"]["state"], "done", "{d}");
    let cell =
        |d: &Value, item: &str| d["cells"].as_array().unwrap().iter().find(|c| c["item_key"] == item).unwrap().clone();
    assert_eq!(cell(&d, "port")["result"]["ok"], false);
    assert_eq!(cell(&d, "health")["result"]["ok"], true, "{}", cell(&d, "health"));
    assert_eq!(cell(&d, "health")["result"]["value"], 200.0);
    let ptid = d["anomalies"][0]["ticket_id"].as_i64().unwrap();
    assert_ne!(ptid, tid);
    let t = ok(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{ptid}"), None).await;
    assert_eq!(t["ticket"]["level"], "L4");
    assert_eq!(t["ticket"]["system_name"], "yunwei");

    // Day 2: the service listens again → recovered, noted on the ticket.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    s.set_now(at(2026, 3, 6, 10, 0));
    pass(&s).await;
    drop(listener);
    let mut eng = s.login("eng.wang").await;
    let p2 = latest_run(&mut eng, cid, probe_pid).await;
    assert_eq!(cell(&run_detail(&mut eng, cid, p2).await, "port")["result"]["ok"], true);
    let comments = ticket_comments(&mut eng, cid, ptid).await;
    assert_eq!(comments.iter().filter(|c| c.contains("已恢复 / Recovered at")).count(), 1, "{comments:?}");
    assert_eq!(ticket_count(&mut eng, cid).await, 2);
}
both_engines!(failed_items_become_one_ticket_and_recover);

/// The pages: the day's runs, the plan editor (TOML or JSON, every problem shown with its field),
/// the checklist answered without scripts, sign-off, the printable record, the compliance table
/// and the daily sheet; scripts only from files (no inline script), the nav entry per role.
async fn pages_work_without_scripts(s: TestServer) {
    s.set_now(at(2026, 3, 2, 8, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut pm = s.login("pm.chen").await;
    let home = pm.get(&format!("/c/{cid}/inspections")).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let nav = &home.body[home.body.find("<nav class=\"main\">").unwrap()..];
    // minijinja writes '/' in attribute values as &#x2f;.
    let link = format!("&#x2f;c&#x2f;{cid}&#x2f;inspections\"");
    assert!(nav[..nav.find("</nav>").unwrap()].contains(&link), "the nav entry: {nav}");

    // The editor: a TOML plan with an unknown field, then one with a bad range, then a good one.
    pm.get(&format!("/c/{cid}/inspections/plans/new")).await;
    let r =
        pm.post_form(&format!("/c/{cid}/inspections/plans/new"), &[("definition", "name = \"x\"\ncolour = 1\n")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("line 2") && r.body.contains("colour"), "{}", r.body);
    let bad = "name = \"机房\"\nfrequency = \"daily at 09:00\"\n[[targets]]\nkind = \"room\"\nref = \"A\"\n\
               [[items]]\nkey = \"t\"\nlabel = \"温度\"\nexpected = { range = { min = 30, max = 20 } }\n";
    let r = pm.post_form(&format!("/c/{cid}/inspections/plans/new"), &[("definition", bad)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("items[0].expected.range.min"), "{}", r.body);
    let good = serde_json::to_string_pretty(&env_plan()).unwrap();
    let r = pm.post_form(&format!("/c/{cid}/inspections/plans/new"), &[("definition", &good)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let plan_page = r.location().to_string();
    let r = pm.get(&plan_page).await;
    assert!(r.body.contains("history.svg?target=room%3A1%E5%8F%B7%E6%9C%BA%E6%88%BF&amp;item=temp"), "{}", r.body);

    s.set_now(at(2026, 3, 2, 9, 0));
    pass(&s).await;
    s.set_now(at(2026, 3, 2, 9, 10));
    let mut eng = s.login("eng.wang").await;
    let pid: i64 = plan_page.rsplit('/').next().unwrap().parse().unwrap();
    let rid = latest_run(&mut eng, cid, pid).await;
    let run = eng.get(&format!("/c/{cid}/inspections/runs/{rid}")).await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(run.body.contains("src=\"/assets/inspection.js\"") && run.body.contains("data-cell-form"));
    assert!(!run.body.contains("<script>") && !run.body.contains("onclick"), "no inline script");
    let js = eng.get("/assets/inspection.js").await;
    assert!(
        js.headers["content-type"].to_str().unwrap().starts_with("text/javascript") && js.body.contains("client_op_id")
    );

    // Without scripts: each item posts its own form.
    let cells = format!("/c/{cid}/inspections/runs/{rid}/cells");
    let r =
        eng.post_form(&cells, &[("target", "room:1号机房"), ("item", "temp"), ("value", "31"), ("ok", "true")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = eng.post_form(&cells, &[("target", "room:1号机房"), ("item", "temp"), ("value", "abc")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r =
        eng.post_form(&cells, &[("target", "room:1号机房"), ("item", "door"), ("ok", "true"), ("note", "正常")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    eng.get(&format!("/c/{cid}/inspections/runs/{rid}")).await;
    let r = eng.post_form(&format!("/c/{cid}/inspections/runs/{rid}/sign-off"), &[("note", "已完成")]).await;
    assert_eq!(r.location(), format!("/c/{cid}/inspections/runs/{rid}/record"));
    let record = eng.get(r.location()).await;
    assert_eq!(record.status, StatusCode::OK);
    for text in ["巡检记录", "1号机房", "31", "已完成", "发现的问题", "eng.wang"] {
        assert!(record.body.contains(text), "{text} missing from the record");
    }
    let d = run_detail(&mut eng, cid, rid).await;
    assert_eq!(
        (d["run"]["state"].as_str(), d["run"]["failed"].as_i64()),
        (Some("done"), Some(1)),
        "31 ℃ is out of range"
    );

    for path in [
        format!("/c/{cid}/inspections?date=2026-03-02"),
        format!("/c/{cid}/inspections/compliance?month=2026-03"),
        format!("/c/{cid}/inspections/sheet?date=2026-03-02"),
        format!("/c/{cid}/inspections/plans/{pid}"),
    ] {
        let r = eng.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(r.body.contains("机房环境巡检"), "{path}");
    }
    let r = eng.get(&format!("/c/{cid}/inspections/compliance?month=2026-03")).await;
    assert!(r.body.contains("100.0%"), "one required, one done: {}", r.body);

    // End users have no inspection pages.
    let mut user = s.login("user.zhou").await;
    let home = user.get("/").await;
    assert!(!home.body.contains(&link) && home.body.contains("&#x2f;tickets"), "no nav entry for end users");
    assert_eq!(user.get(&format!("/c/{cid}/inspections")).await.status, StatusCode::FORBIDDEN);
}
both_engines!(pages_work_without_scripts);
