//! Service desk lifecycles through the HTTP API, one per seed contract, with time driven by the
//! test clock: the exact due times, notices, escalations and closes each contract implies.

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;
use yunwei_core::calendar::{day_start_utc, days_from_civil};

use crate::both_engines;
use crate::harness::urlencode;
use crate::harness::{Browser, TestServer};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Shanghai wall time → UTC epoch ms.
fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
    day_start_utc(days_from_civil(y, m, d)) + h * HOUR + min * MIN
}

async fn create(b: &mut Browser, cid: i64, body: Value) -> Value {
    let r = b.api(Method::POST, &format!("/api/v1/contracts/{cid}/tickets"), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()["ticket"].clone()
}

async fn detail(b: &mut Browser, cid: i64, id: i64) -> Value {
    let r = b.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

async fn act(b: &mut Browser, cid: i64, id: i64, action: &str, extra: Value) -> crate::harness::Resp {
    let version = detail(b, cid, id).await["ticket"]["version"].as_i64().unwrap();
    let mut body = json!({ "action": action, "version": version });
    if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    b.api(Method::POST, &format!("/api/v1/contracts/{cid}/tickets/{id}/actions"), Some(body)).await
}

async fn act_ok(b: &mut Browser, cid: i64, id: i64, action: &str, extra: Value) -> Value {
    let r = act(b, cid, id, action, extra).await;
    assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
    r.json()
}

fn clock<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["clocks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no clock {name}: {d}"))
}

fn notice_keys(d: &Value) -> Vec<String> {
    d["notices"].as_array().unwrap().iter().map(|n| n["key"].as_str().unwrap().to_string()).collect()
}

async fn inbox_titles(b: &mut Browser) -> Vec<String> {
    let r = b.api(Method::GET, "/api/v1/notifications?limit=200", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["items"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap().to_string()).collect()
}

fn count_containing(titles: &[String], needle: &str) -> usize {
    titles.iter().filter(|t| t.contains(needle)).count()
}

/// 004 Chengdu: an L1 major fault from the phone call to the reporter's confirmation — dispatch
/// within 10 minutes (SD2), response 5 min, resolution 2 h pausable, hourly progress to the client
/// (SD4), the 重大 escalation matrix (SD11), analysis before solving (SD7), the summary report
/// within a week, confirmation and rating (SD6).
async fn chengdu_l1_major_fault(s: TestServer) {
    s.set_now(at(2022, 3, 1, 10, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("client.liu", cid, ContractRole::ClientSupervisor).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut desk = s.login("desk.li").await;
    let mut engb = s.login("eng.wang").await;
    let mut client = s.login("client.liu").await;

    // The call came in at 09:58; the desk enters it at 10:00.
    let t = create(
        &mut desk,
        cid,
        json!({ "kind": "fault", "level": "L1", "incident_class": "重大", "title": "协同工作子系统无法登录",
                "description": "全市派遣员无法登录", "channel": "phone", "reporter_user_id": reporter,
                "system_name": "协同工作子系统", "received_at": at(2022, 3, 1, 9, 58) }),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    assert_eq!(t["number"], "CD-DCM-2022-000001");
    assert_eq!(t["state"], "recorded");
    let d = detail(&mut desk, cid, id).await;
    assert_eq!(clock(&d, "response")["due_at"], at(2022, 3, 1, 10, 3));
    assert_eq!(clock(&d, "dispatch")["due_at"], at(2022, 3, 1, 10, 8));
    assert_eq!(clock(&d, "resolution")["due_at"], at(2022, 3, 1, 11, 58));
    assert_eq!(d["ticket"]["due_sort"], at(2022, 3, 1, 10, 3), "the list orders by the nearest due time");
    // The client is told of the incident at once (L1 notify list).
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut client).await, "故障通知"), 1);

    // 80 % of the 5-minute response target: 10:02 — a reminder to the desk (no assignee yet).
    s.set_now(at(2022, 3, 1, 10, 1));
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut desk).await, "时限将到：response"), 0, "not before 10:02");
    s.set_now(at(2022, 3, 1, 10, 2));
    s.desk_pass().await;
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut desk).await, "时限将到：response"), 1, "once, however many passes");

    // Dispatched at 10:03 (within the 10 minutes); nobody took it up by 10:03: breach notice.
    s.set_now(at(2022, 3, 1, 10, 3));
    act_ok(&mut desk, cid, id, "dispatch", json!({ "assignee_user_id": eng })).await;
    assert_eq!(count_containing(&inbox_titles(&mut engb).await, "新派单"), 1);
    s.set_now(at(2022, 3, 1, 10, 4));
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut engb).await, "已超时：response"), 1);
    assert_eq!(count_containing(&inbox_titles(&mut desk).await, "已超时：response"), 1);
    act_ok(&mut engb, cid, id, "accept", json!({})).await;
    let d = detail(&mut desk, cid, id).await;
    assert_eq!(clock(&d, "response")["phase"], "breached");
    assert_eq!(clock(&d, "response")["breached_by_ms"], MIN);
    assert_eq!(clock(&d, "dispatch")["phase"], "met");

    // Hourly progress to the client from 10:58; the 重大 matrix calls the desk at +1 h.
    s.set_now(at(2022, 3, 1, 10, 58));
    let (mut desk, mut engb, mut client) =
        (s.login("desk.li").await, s.login("eng.wang").await, s.login("client.liu").await);
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut client).await, "第 1 次进度通报"), 1);
    assert_eq!(count_containing(&inbox_titles(&mut desk).await, "重大事件升级至服务台"), 1);

    // Suspended 11:00–11:30: the pausable resolution clock moves to 12:28.
    s.set_now(at(2022, 3, 1, 11, 0));
    act_ok(&mut engb, cid, id, "suspend", json!({ "comment": "等待厂商备件" })).await;
    s.set_now(at(2022, 3, 1, 11, 30));
    let mut engb = s.login("eng.wang").await;
    act_ok(&mut engb, cid, id, "resume", json!({})).await;
    let d = detail(&mut engb, cid, id).await;
    assert_eq!(clock(&d, "resolution")["due_at"], at(2022, 3, 1, 12, 28));
    assert_eq!(clock(&d, "resolution")["paused"], json!([[at(2022, 3, 1, 11, 0), at(2022, 3, 1, 11, 30)]]));

    // SD7: no solving without the analysis; the refusal leaves the ticket as it was.
    s.set_now(at(2022, 3, 1, 12, 0));
    let (mut desk, mut engb, mut client, mut user) =
        (s.login("desk.li").await, s.login("eng.wang").await, s.login("client.liu").await, s.login("user.zhou").await);
    let before = detail(&mut engb, cid, id).await["ticket"].clone();
    let r = act(&mut engb, cid, id, "solve", json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.json()["error"]["message_zh"].as_str().unwrap().contains("故障分析"));
    assert_eq!(detail(&mut engb, cid, id).await["ticket"], before);
    let r = engb
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/tickets/{id}/analysis"),
            Some(json!({ "version": before["version"], "cause": "认证服务证书过期", "process": "更换证书并重启",
                          "impact": "全市派遣员 2 小时无法登录", "recommendation": "证书到期前 30 天告警" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    act_ok(&mut engb, cid, id, "solve", json!({ "comment": "已恢复登录" })).await;
    assert_eq!(count_containing(&inbox_titles(&mut user).await, "已解决，请确认"), 1);
    let d = detail(&mut desk, cid, id).await;
    assert_eq!(clock(&d, "resolution")["phase"], "met");
    assert_eq!(d["summary_due"], true);
    assert_eq!(clock(&d, "summary_report")["due_at"], at(2022, 3, 8, 12, 0), "one week after resolution");
    // The client is told the incident is over; progress reports stop.
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut client).await, "故障处置完毕"), 1);
    s.set_now(at(2022, 3, 1, 13, 30));
    let (mut desk, mut engb, mut client, mut user) =
        (s.login("desk.li").await, s.login("eng.wang").await, s.login("client.liu").await, s.login("user.zhou").await);
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut client).await, "进度通报"), 1, "no progress after resolution");

    // The summary report stops its clock; someone other than the reporter cannot confirm.
    let v = detail(&mut engb, cid, id).await["ticket"]["version"].clone();
    let r = engb
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/tickets/{id}/summary"),
            Some(json!({ "version": v, "summary": "故障处置总结：证书管理纳入巡检" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(clock(&detail(&mut desk, cid, id).await, "summary_report")["phase"], "met");
    let r = act(&mut client, cid, id, "confirm", json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = act(&mut user, cid, id, "confirm", json!({ "rating": 6 })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let done = act_ok(&mut user, cid, id, "confirm", json!({ "rating": 5, "rating_comment": "处理及时" })).await;
    assert_eq!(done["state"], "closed");
    assert_eq!(done["rating"], 5);
    let d = detail(&mut desk, cid, id).await;
    let keys = notice_keys(&d);
    for k in ["level-start", "progress:1", "escalate:重大:3600000:service_desk"] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
    assert!(keys.iter().any(|k| k.starts_with("remind:response:")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("breach:response:")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("escalate:重大:14400000")), "resolved before the 4 h step: {keys:?}");
    // The end user sees the ticket but neither internal notes nor the fired notices.
    let mine = detail(&mut user, cid, id).await;
    assert!(mine["notices"].as_array().unwrap().is_empty());
    assert!(mine["comments"].as_array().unwrap().iter().all(|c| c["internal"] == false));
}
both_engines!(chengdu_l1_major_fault);

/// 004: nobody answers the confirmation request: the ticket closes itself after three working
/// days (counted on the holiday calendar), and the reporter's SD5 progress notice goes out when a
/// ticket is still unresolved three working days after it came in.
async fn chengdu_auto_close_and_reporter_progress(s: TestServer) {
    // Friday before the 2022 National Day holiday (1–7 Oct off, 8–9 Oct worked).
    s.set_now(at(2022, 9, 30, 16, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut desk = s.login("desk.li").await;
    let mut engb = s.login("eng.wang").await;
    let slow = create(
        &mut desk,
        cid,
        json!({ "kind": "consultation", "level": "L4", "title": "地理编码数据更新咨询", "channel": "phone",
                "reporter_user_id": reporter }),
    )
    .await;
    let fault = create(
        &mut desk,
        cid,
        json!({ "kind": "fault", "level": "L4", "title": "短信平台偶发发送失败", "channel": "phone",
                "reporter_user_id": reporter }),
    )
    .await;
    let (slow_id, fault_id) = (slow["id"].as_i64().unwrap(), fault["id"].as_i64().unwrap());
    act_ok(&mut desk, cid, fault_id, "dispatch", json!({ "assignee_user_id": eng })).await;
    act_ok(&mut engb, cid, fault_id, "accept", json!({})).await;
    // The consultation is answered by the desk directly at 16:10.
    s.set_now(at(2022, 9, 30, 16, 10));
    act_ok(&mut desk, cid, slow_id, "solve", json!({ "comment": "已答复" })).await;

    // Holidays do not count: still open on 7 Oct, on 9 Oct (two make-up days worked).
    for day in [(10, 7), (10, 9)] {
        s.set_now(at(2022, day.0, day.1, 17, 0));
        desk = s.login("desk.li").await;
        s.desk_pass().await;
        assert_eq!(detail(&mut desk, cid, slow_id).await["ticket"]["state"], "awaiting_confirmation", "{day:?}");
    }
    let mut user = s.login("user.zhou").await;
    assert_eq!(count_containing(&inbox_titles(&mut user).await, "处理进度告知"), 0);
    // Third working day after the report: Monday 10 Oct, same time of day.
    s.set_now(at(2022, 10, 10, 16, 0));
    let (mut desk, mut user) = (s.login("desk.li").await, s.login("user.zhou").await);
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut user).await, "处理进度告知"), 1, "SD5 notice for the open fault");
    assert_eq!(detail(&mut desk, cid, slow_id).await["ticket"]["state"], "awaiting_confirmation", "16:10 not yet");
    s.set_now(at(2022, 10, 10, 16, 10));
    s.desk_pass().await;
    let d = detail(&mut desk, cid, slow_id).await;
    assert_eq!(d["ticket"]["state"], "closed");
    assert!(
        d["events"].as_array().unwrap().iter().any(|e| e["action"] == "auto_close" && e["actor_name"] == "platform")
    );
    assert_eq!(count_containing(&inbox_titles(&mut user).await, "已自动结案"), 1);
    // The fault stays open and the reporter's notice repeats every three working days.
    s.set_now(at(2022, 10, 13, 16, 0));
    let mut user = s.login("user.zhou").await;
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut user).await, "处理进度告知"), 2);
}
both_engines!(chengdu_auto_close_and_reporter_progress);

/// 003 Foshan: five levels with response, on-site arrival and resolution targets (二(二)6).
async fn foshan_arrival_clock(s: TestServer) {
    s.set_now(at(2022, 6, 6, 9, 0));
    let cid = s.seed_contract("003-foshan-water.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    let mut desk = s.login("desk.li").await;
    let mut engb = s.login("eng.wang").await;
    let t = create(
        &mut desk,
        cid,
        json!({ "kind": "fault", "level": "L3", "title": "廉政风险防控系统报表导出失败", "channel": "phone",
                "reporter_name": "水务局 陈科长", "reporter_contact": "0757-12345678" }),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    let d = detail(&mut desk, cid, id).await;
    assert_eq!(clock(&d, "response")["due_at"], at(2022, 6, 6, 10, 0));
    assert_eq!(clock(&d, "arrival")["due_at"], at(2022, 6, 6, 11, 0));
    assert_eq!(clock(&d, "resolution")["due_at"], at(2022, 6, 7, 9, 0));
    act_ok(&mut desk, cid, id, "dispatch", json!({ "assignee_user_id": eng, "team": "应用组" })).await;
    s.set_now(at(2022, 6, 6, 9, 20));
    act_ok(&mut engb, cid, id, "accept", json!({})).await;
    s.set_now(at(2022, 6, 6, 10, 35));
    let (mut desk, mut engb) = (s.login("desk.li").await, s.login("eng.wang").await);
    act_ok(&mut engb, cid, id, "arrive", json!({})).await;
    let d = detail(&mut desk, cid, id).await;
    assert_eq!(clock(&d, "response")["phase"], "met");
    assert_eq!(clock(&d, "arrival")["phase"], "met");
    assert_eq!(clock(&d, "arrival")["used_ms"], 95 * MIN);
    // Reminder for the resolution clock at 80 % of 24 h: 2022-06-07 04:12.
    s.set_now(at(2022, 6, 7, 4, 11));
    let (mut desk, mut engb) = (s.login("desk.li").await, s.login("eng.wang").await);
    s.desk_pass().await;
    assert!(!notice_keys(&detail(&mut desk, cid, id).await).iter().any(|k| k.starts_with("remind:resolution")));
    s.set_now(at(2022, 6, 7, 4, 12));
    s.desk_pass().await;
    assert_eq!(count_containing(&inbox_titles(&mut engb).await, "时限将到：resolution"), 1);
    // A reporter without an account cannot confirm; the desk closes nothing by itself: it waits.
    act_ok(&mut engb, cid, id, "solve", json!({})).await;
    assert_eq!(detail(&mut desk, cid, id).await["ticket"]["state"], "awaiting_confirmation");
}
both_engines!(foshan_arrival_clock);

/// 000 Enping: the on-site engineer responds within 15 minutes (三(一)7); an end user reports
/// through the portal and sees only their own tickets.
async fn enping_portal_and_response(s: TestServer) {
    s.set_now(at(2022, 4, 11, 8, 30));
    let cid = s.seed_contract("000-enping-machine-rooms.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    s.member("user.wu", cid, ContractRole::ClientEndUser).await;
    let mut desk = s.login("desk.li").await;
    let mut engb = s.login("eng.wang").await;
    let mut zhou = s.login("user.zhou").await;
    let mut wu = s.login("user.wu").await;
    // The portal: the reporter is the caller, whatever the body says.
    let t = create(
        &mut zhou,
        cid,
        json!({ "kind": "fault", "level": "FAULT", "title": "行政服务中心机房空调告警", "channel": "web",
                "reporter_user_id": 999_999 }),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    assert_eq!(t["reporter_name"], "用户user.zhou");
    assert_eq!(clock(&detail(&mut desk, cid, id).await, "response")["due_at"], at(2022, 4, 11, 8, 45));
    let r = wu.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another end user's ticket");
    let list = wu.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets?view=all"), None).await.json();
    assert!(list["rows"].as_array().unwrap().is_empty());
    let list = zhou.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets?view=reported"), None).await.json();
    assert_eq!(list["rows"].as_array().unwrap().len(), 1);
    // End users cannot work tickets.
    let r = act(&mut zhou, cid, id, "dispatch", json!({ "assignee_user_id": eng })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    act_ok(&mut desk, cid, id, "dispatch", json!({ "assignee_user_id": eng })).await;
    s.set_now(at(2022, 4, 11, 8, 44));
    act_ok(&mut engb, cid, id, "accept", json!({})).await;
    assert_eq!(clock(&detail(&mut desk, cid, id).await, "response")["phase"], "met");
    // The end user reads public replies, not internal notes.
    for (body, internal) in [("工程师已到场", false), ("疑似压缩机故障，联系厂家", true)] {
        let r = engb
            .api(
                Method::POST,
                &format!("/api/v1/contracts/{cid}/tickets/{id}/comments"),
                Some(json!({ "body": body, "internal": internal })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let mine = detail(&mut zhou, cid, id).await;
    let bodies: Vec<&str> = mine["comments"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["工程师已到场"]);
    assert_eq!(count_containing(&inbox_titles(&mut zhou).await, "新的回复"), 1, "only the public reply notifies");
}
both_engines!(enping_portal_and_response);

/// 001 Chenggong: service requests need the client's approval before work (SD8); nobody approves
/// their own request; the 48 h restore target of environment faults.
async fn chenggong_request_approval(s: TestServer) {
    s.set_now(at(2026, 5, 12, 9, 0));
    let cid = s.seed_contract("001-chenggong-service-center.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    let boss = s.member("client.liu", cid, ContractRole::ClientSupervisor).await;
    s.member("client.ma", cid, ContractRole::ClientSupervisor).await;
    let mut desk = s.login("desk.li").await;
    let mut liu = s.login("client.liu").await;
    let mut ma = s.login("client.ma").await;
    let req = create(
        &mut liu,
        cid,
        json!({ "kind": "service_request", "level": "OTHER", "title": "为窗口新增 3 个业务账号", "channel": "web" }),
    )
    .await;
    let id = req["id"].as_i64().unwrap();
    assert_eq!(req["state"], "awaiting_approval");
    assert_eq!(req["reporter_user_id"], boss);
    let r = act(&mut desk, cid, id, "dispatch", json!({ "assignee_user_id": eng })).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "no work before approval: {}", r.body);
    let r = act(&mut liu, cid, id, "approve", json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "own request: {}", r.body);
    assert!(r.json()["error"]["message_en"].as_str().unwrap().contains("your own"));
    assert_eq!(count_containing(&inbox_titles(&mut ma).await, "服务请求待审批"), 1);
    act_ok(&mut ma, cid, id, "approve", json!({ "comment": "同意，按申请表开通" })).await;
    assert_eq!(count_containing(&inbox_titles(&mut liu).await, "服务请求已批准"), 1);
    act_ok(&mut desk, cid, id, "dispatch", json!({ "assignee_user_id": eng })).await;

    let env = create(
        &mut desk,
        cid,
        json!({ "kind": "fault", "level": "ENV", "title": "UPS控制间温度过高", "channel": "phone",
                "reporter_name": "大厅值班", "received_at": at(2026, 5, 12, 8, 50) }),
    )
    .await;
    let d = detail(&mut desk, cid, env["id"].as_i64().unwrap()).await;
    assert_eq!(clock(&d, "resolution")["due_at"], at(2026, 5, 14, 8, 50));
    // Breaching soonest first: the ENV fault has a clock, the request none.
    let list = desk.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets?view=open"), None).await.json();
    let order: Vec<i64> = list["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(order, [env["id"].as_i64().unwrap(), id]);
    assert_eq!(list["rows"][0]["next_clock"], "resolution");
    assert_eq!(list["rows"][0]["left_ms"], 48 * HOUR - 10 * MIN);
}
both_engines!(chenggong_request_approval);

/// Bad input: each gets a clear 4xx in both languages and leaves the ticket as it was.
async fn bad_ticket_input(s: TestServer) {
    s.set_now(at(2022, 3, 1, 10, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    let other = s.seed_contract("003-foshan-water.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("eng.he", other, ContractRole::Engineer).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut desk = s.login("desk.li").await;
    let mut engb = s.login("eng.wang").await;
    let mut he = s.login("eng.he").await;
    let base = json!({ "kind": "fault", "level": "L2", "title": "大屏幕监督指挥子系统黑屏", "channel": "phone",
                       "reporter_user_id": reporter });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let url = format!("/api/v1/contracts/{cid}/tickets");
    let cases = [
        (with("level", json!("L9")), "level"),
        (with("kind", json!("incident")), "kind"),
        (with("channel", json!("fax")), "channel"),
        (with("received_at", json!(at(2022, 3, 1, 11, 0))), "received_at"),
        (with("received_at", json!(at(2021, 6, 1, 0, 0))), "received_at"),
        (with("title", json!("长".repeat(100_000))), "title"),
        (with("title", json!("  ")), "title"),
        (with("title", json!("a\u{0}b")), "title"),
        (with("incident_class", json!("特大")), "incident_class"),
        (with("reporter_user_id", json!(eng + 1000)), "reporter_user_id"),
    ];
    for (body, field) in cases {
        let r = desk.api(Method::POST, &url, Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", &r.body[..r.body.len().min(300)]);
        let e = &r.json()["error"];
        assert_eq!(e["field"], field);
        assert!(!e["message_zh"].as_str().unwrap().is_empty() && !e["message_en"].as_str().unwrap().is_empty());
    }
    // Wrong JSON types and unknown fields.
    for body in [with("level", json!(2)), with("colour", json!("red"))] {
        let r = desk.api(Method::POST, &url, Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    }
    let list = desk.api(Method::GET, &format!("{url}?view=all"), None).await.json();
    assert!(list["rows"].as_array().unwrap().is_empty(), "nothing half-written");

    let t = create(&mut desk, cid, base.clone()).await;
    let id = t["id"].as_i64().unwrap();
    // Two desks dispatch the same version: the second gets a conflict and nothing of it is kept.
    let v = t["version"].as_i64().unwrap();
    let first = desk
        .api(
            Method::POST,
            &format!("{url}/{id}/actions"),
            Some(json!({ "action": "dispatch", "version": v, "assignee_user_id": eng })),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = desk
        .api(
            Method::POST,
            &format!("{url}/{id}/actions"),
            Some(json!({ "action": "cancel", "version": v, "comment": "重复" })),
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.body);
    let d = detail(&mut desk, cid, id).await;
    assert_eq!(d["ticket"]["state"], "dispatched");
    assert!(d["comments"].as_array().unwrap().is_empty(), "the refused step's comment is not kept");
    // Unknown actions, ratings out of range, dispatch to a client or to nobody.
    let before = d["ticket"].clone();
    for extra in [
        json!({ "action": "teleport" }),
        json!({ "action": "dispatch", "assignee_user_id": reporter }),
        json!({ "action": "dispatch" }),
        json!({ "action": "solve" }),
    ] {
        let mut body = extra.clone();
        body["version"] = before["version"].clone();
        let r = desk.api(Method::POST, &format!("{url}/{id}/actions"), Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {}", r.body);
    }
    assert_eq!(detail(&mut desk, cid, id).await["ticket"], before);
    // A level change with a stale version, and an unknown level.
    let r = engb.api(Method::PATCH, &format!("{url}/{id}"), Some(json!({ "version": 1, "level": "L1" }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = engb
        .api(Method::PATCH, &format!("{url}/{id}"), Some(json!({ "version": before["version"], "level": "L0" })))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // Raising the level re-targets from the original start: L1's 5-minute response is due at 10:05.
    let r = engb
        .api(Method::PATCH, &format!("{url}/{id}"), Some(json!({ "version": before["version"], "level": "L1" })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(clock(&detail(&mut desk, cid, id).await, "response")["due_at"], at(2022, 3, 1, 10, 5));
    // Another contract's member learns nothing, through either contract id.
    let r = he.api(Method::GET, &format!("{url}/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = he.api(Method::GET, &format!("/api/v1/contracts/{other}/tickets/{id}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = he
        .api(Method::POST, &format!("/api/v1/contracts/{other}/tickets/{id}/comments"), Some(json!({ "body": "x" })))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Bad list parameters.
    for q in ["view=everything", "sort=random", "cursor=zz", "from=2022-13-01", "state=lost"] {
        let r = desk.api(Method::GET, &format!("{url}?{q}"), None).await;
        assert!(
            r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::BAD_REQUEST,
            "{q}: {}",
            r.status
        );
    }
}
both_engines!(bad_ticket_input);

/// Attachments (SE3): the type comes from the content; markup never renders; downloads only for
/// those who may see the ticket, internal files never for the client.
async fn attachments_are_sniffed_and_guarded(s: TestServer) {
    s.set_now(at(2022, 3, 1, 10, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    let other = s.seed_contract("003-foshan-water.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    s.member("user.wu", cid, ContractRole::ClientEndUser).await;
    s.member("eng.he", other, ContractRole::Engineer).await;
    let mut desk = s.login("desk.li").await;
    let mut zhou = s.login("user.zhou").await;
    let mut wu = s.login("user.wu").await;
    let mut he = s.login("eng.he").await;
    let t = create(
        &mut desk,
        cid,
        json!({ "kind": "fault", "level": "L3", "title": "截图附件", "channel": "phone", "reporter_user_id": reporter }),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    let upload = |b: &Browser, name: &str, internal: bool, bytes: Vec<u8>| {
        let path =
            format!("/api/v1/contracts/{cid}/tickets/{id}/attachments?name={}&internal={internal}", urlencode(name));
        let mut rb = b.request(Method::POST, &path).header("content-type", "application/octet-stream").body(bytes);
        if let Some(c) = &b.csrf {
            rb = rb.header("x-csrf-token", c.clone());
        }
        rb
    };
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let r = desk.send(upload(&desk, "屏幕截图.html", false, png.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let a = r.json();
    assert_eq!(a["mime"], "image/png");
    assert_eq!(a["file_name"], "屏幕截图.png", "the sniffed type decides the extension");
    let log = "2022-03-01 10:00 ERROR 主从同步中断\n".as_bytes().to_vec();
    let r = desk.send(upload(&desk, "db.log", true, log)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let internal_id = r.json()["id"].as_i64().unwrap();
    for (name, bytes) in [
        ("report.png", b"<!DOCTYPE html><script>alert(1)</script>".to_vec()),
        ("a.gif", b"GIF89a/*\x01\x00\x01\x00*/=1;<script>alert(1)</script>".to_vec()),
        ("x.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec()),
        ("tool.exe", b"MZ\x90\x00\x03\x00\x00\x00".to_vec()),
        ("empty.txt", Vec::new()),
    ] {
        let r = desk.send(upload(&desk, name, false, bytes)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "file");
    }
    // A 3 MiB log is fine: the 1 MiB limit of forms and JSON does not apply to attachments.
    let big_log = "2022-03-01 10:00:00 INFO 同步进度正常\n".repeat(3 * 1024 * 1024 / 40).into_bytes();
    let r = desk.send(upload(&desk, "sync.log", true, big_log.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", &r.body[..r.body.len().min(300)]);
    assert_eq!(r.json()["size_bytes"], big_log.len());
    // Over the limit: 413, or, when the server stops reading before the client has finished
    // sending, a connection closed mid-body; either way nothing is stored (checked below).
    let too_big = vec![b'a'; 20 * 1024 * 1024 + 1];
    match upload(&desk, "big.txt", false, too_big).send().await {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    desk.reconnect();
    // Downloads: always an attachment, nosniff, sandboxed.
    let aid = a["id"].as_i64().unwrap();
    let r = zhou.get(&format!("/api/v1/contracts/{cid}/tickets/{id}/attachments/{aid}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["content-type"], "image/png");
    assert!(r.headers["content-security-policy"].to_str().unwrap().starts_with("sandbox"));
    let d = detail(&mut zhou, cid, id).await;
    assert_eq!(d["attachments"].as_array().unwrap().len(), 1, "the internal log is hidden from the reporter");
    let r = zhou.get(&format!("/api/v1/contracts/{cid}/tickets/{id}/attachments/{internal_id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = wu.get(&format!("/api/v1/contracts/{cid}/tickets/{id}/attachments/{aid}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another end user");
    let r = he.get(&format!("/api/v1/contracts/{other}/tickets/{id}/attachments/{aid}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another contract");
    // Files are stored under random names, outside anything served.
    let dir = s.state.config.attachments_dir.clone().unwrap();
    let stored: Vec<String> = walk(&dir);
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored.iter().all(|p| !p.contains("屏幕截图") && !p.ends_with(".png") && !p.ends_with(".log")));
}
both_engines!(attachments_are_sniffed_and_guarded);

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Lists: Chinese substring search, the breaching-soonest order across pages, Excel export, the
/// monthly statistics (SD9, SD10), time spent, links and merge.
async fn lists_search_export_and_stats(s: TestServer) {
    s.set_now(at(2022, 5, 9, 9, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    let reporter = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let mut desk = s.login("desk.li").await;
    let mut engb = s.login("eng.wang").await;
    let mut zhou = s.login("user.zhou").await;
    let mut ids = Vec::new();
    for (title, level, system) in [
        ("业务数据库主从同步失败", "L2", "数据交换子系统"),
        ("呼叫受理坐席无法振铃", "L3", "呼叫受理子系统"),
        ("数据交换接口超时", "L1", "数据交换子系统"),
        ("视频监控画面卡顿", "L4", "视频监控子系统"),
        ("100% 的_通配符 标题", "L4", "视频监控子系统"),
    ] {
        let t = create(
            &mut desk,
            cid,
            json!({ "kind": "fault", "level": level, "title": title, "channel": "phone",
                    "reporter_user_id": reporter, "system_name": system }),
        )
        .await;
        ids.push(t["id"].as_i64().unwrap());
    }
    let url = format!("/api/v1/contracts/{cid}/tickets");
    let search = |q: &str| format!("{url}?view=all&q={}", urlencode(q));
    let titles = |v: &Value| -> Vec<String> {
        v["rows"].as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(titles(&desk.api(Method::GET, &search("数据库"), None).await.json()), ["业务数据库主从同步失败"]);
    assert_eq!(titles(&desk.api(Method::GET, &search("数据"), None).await.json()).len(), 2);
    assert_eq!(titles(&desk.api(Method::GET, &search("%"), None).await.json()), ["100% 的_通配符 标题"]);
    assert_eq!(titles(&desk.api(Method::GET, &search("_"), None).await.json()), ["100% 的_通配符 标题"]);
    assert_eq!(
        titles(&desk.api(Method::GET, &search("cd-dcm-2022-000002"), None).await.json()),
        ["呼叫受理坐席无法振铃"]
    );
    // Breaching soonest first, two per page: L1 (response 5 min) before L2 (10 min), then L3, L4s.
    let mut seen = Vec::new();
    let mut next = format!("{url}?view=open&limit=2");
    loop {
        let page = desk.api(Method::GET, &next, None).await.json();
        seen.extend(titles(&page));
        match page["next_cursor"].as_str() {
            Some(c) => next = format!("{url}?view=open&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen[..3], ["数据交换接口超时", "业务数据库主从同步失败", "呼叫受理坐席无法振铃"]);
    assert_eq!(seen.len(), 5);
    // Excel export of the search.
    let r = desk.get(&format!("{url}/export.xlsx?view=all&q={}", urlencode("数据"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    assert!(r.body.as_bytes().starts_with(b"PK"));
    let r = zhou.get(&format!("{url}/export.xlsx")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "end users export nothing");

    // Work the first two: time spent, solve, confirm with ratings.
    for (i, id) in ids.iter().take(2).enumerate() {
        act_ok(&mut desk, cid, *id, "dispatch", json!({ "assignee_user_id": eng })).await;
        s.set_now(at(2022, 5, 9, 9, 4 + i as i64));
        act_ok(&mut engb, cid, *id, "accept", json!({})).await;
        let r =
            engb.api(Method::POST, &format!("{url}/{id}/work"), Some(json!({ "minutes": 45, "note": "排查" }))).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        let d = detail(&mut engb, cid, *id).await;
        let r = engb
            .api(
                Method::POST,
                &format!("{url}/{id}/analysis"),
                Some(json!({ "version": d["ticket"]["version"], "cause": "c", "process": "p", "impact": "i",
                              "recommendation": "r" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        act_ok(&mut engb, cid, *id, "solve", json!({})).await;
        act_ok(&mut zhou, cid, *id, "confirm", json!({ "rating": 4 + i as i64 })).await;
    }
    let r = engb.api(Method::POST, &format!("{url}/{}/work", ids[2]), Some(json!({ "minutes": 0 }))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Merge the duplicate, link a problem.
    let r = desk.api(Method::POST, &format!("{url}/{}/merge", ids[4]), Some(json!({ "into": ids[3] }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = detail(&mut desk, cid, ids[4]).await;
    assert_eq!(d["ticket"]["state"], "cancelled");
    assert_eq!(d["ticket"]["duplicate_of"], ids[3]);
    let problem = create(
        &mut desk,
        cid,
        json!({ "kind": "problem", "level": "L4", "title": "数据交换子系统反复超时", "channel": "onsite",
                "reporter_name": "运维组" }),
    )
    .await;
    let pid = problem["id"].as_i64().unwrap();
    let r = engb
        .api(Method::POST, &format!("{url}/{pid}/links"), Some(json!({ "other": ids[2], "relation": "explains" })))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = engb
        .api(Method::POST, &format!("{url}/{}/links", ids[1]), Some(json!({ "other": ids[2], "relation": "explains" })))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "only problems explain");
    let r = engb
        .api(Method::POST, &format!("{url}/{pid}/links"), Some(json!({ "other": pid, "relation": "related" })))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = detail(&mut desk, cid, ids[2]).await;
    assert_eq!(d["links"][0]["relation"], "explained_by");
    // Dispatch suggestions: the engineer who handled this system comes first.
    let sug = desk.api(Method::GET, &format!("{url}/{}/suggestions", ids[2]), None).await.json();
    assert_eq!(sug[0]["user_id"], eng);
    assert_eq!(sug[0]["same_system"], 1);

    let stats = desk.api(Method::GET, &format!("{url}/stats?month=2022-05"), None).await.json();
    assert_eq!(stats["received"], 6);
    assert_eq!(stats["by_kind_system"][0], json!({ "kind": "fault", "system": "数据交换子系统", "count": 2 }));
    let e = &stats["engineers"][0];
    assert_eq!(e["user_id"], eng);
    assert_eq!(e["assigned"], 2);
    assert_eq!(e["resolved"], 2);
    assert_eq!(e["ratings"], 2);
    assert_eq!(e["avg_rating"], 4.5);
    assert_eq!(e["minutes_spent"], 90);
    // L2's 10-minute response met at 09:04, L3's 20 minutes at 09:05.
    assert_eq!(e["avg_response_min"], 4.5);
    let r = desk.api(Method::GET, &format!("{url}/stats?month=2022-13"), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = zhou.api(Method::GET, &format!("{url}/stats?month=2022-05"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
both_engines!(lists_search_export_and_stats);

/// Inspections and alerts raise tickets through the API with a source key: a repeat finding is a
/// comment on the open ticket, not a second ticket; after closing, a new one opens.
async fn findings_are_deduplicated(s: TestServer) {
    s.set_now(at(2022, 3, 1, 10, 0));
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let mut desk = s.login("desk.li").await;
    let body = json!({ "kind": "fault", "level": "L3", "title": "巡检：磁盘使用率 95%", "channel": "inspection",
                       "reporter_name": "巡检", "source_key": "inspection:plan-3:disk:/data" });
    let first = create(&mut desk, cid, body.clone()).await;
    let r = desk.api(Method::POST, &format!("/api/v1/contracts/{cid}/tickets"), Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["created"], false);
    assert_eq!(r.json()["ticket"]["id"], first["id"]);
    let d = detail(&mut desk, cid, first["id"].as_i64().unwrap()).await;
    assert_eq!(d["comments"].as_array().unwrap().len(), 1);
    act_ok(&mut desk, cid, first["id"].as_i64().unwrap(), "cancel", json!({})).await;
    let again = create(&mut desk, cid, body).await;
    assert_ne!(again["id"], first["id"]);
}
both_engines!(findings_are_deduplicated);
