//! The ledger's records besides assets, through the HTTP API and the pages: business systems
//! imported from the contract file and edited with history; relations with ports and cable labels
//! and the server-drawn topology; suppliers and their evaluations; the machine-room access register
//! with its bad inputs and the never-closed flag; isolation between contracts and the denials of a
//! role without ledger access.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;
use yunwei_core::calendar::{day_start_utc, days_from_civil};
use yunwei_storage::assets::{self, AssetInput};

use crate::both_engines;
use crate::harness::{Browser, Resp, TestServer};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Shanghai wall time → UTC epoch ms.
fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> i64 {
    day_start_utc(days_from_civil(y, m, d)) + h * HOUR + min * MIN
}

async fn call(b: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Resp {
    b.api(method, path, body).await
}

async fn ok(b: &mut Browser, method: Method, path: &str, body: Option<Value>, want: StatusCode) -> Value {
    let r = b.api(method.clone(), path, body).await;
    assert_eq!(r.status, want, "{method} {path}: {}", r.body);
    if r.body.is_empty() { Value::Null } else { r.json() }
}

/// A 4xx with a message in both languages (and the field, when named).
fn refused(r: &Resp, status: StatusCode, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    let e = &r.json()["error"];
    assert!(!e["message_zh"].as_str().unwrap_or("").is_empty(), "{}", r.body);
    assert!(!e["message_en"].as_str().unwrap_or("").is_empty(), "{}", r.body);
    if let Some(f) = field {
        assert_eq!(e["field"], f, "{}", r.body);
    }
}

async fn asset(s: &TestServer, cid: i64, kind: &str, name: &str, supplier_id: Option<i64>) -> i64 {
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let input = AssetInput { kind: kind.into(), name: name.into(), supplier_id, ..Default::default() };
    assets::create(&s.state.db, &scope, &input, s.now()).await.unwrap().id
}

/// A navigation link as the layout writes it (minijinja escapes the slashes of values).
fn nav_href(path: &str) -> String {
    format!("href=\"{}\"", path.replace('/', "&#x2f;"))
}

fn actions(history: &Value) -> Vec<String> {
    history.as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap().to_string()).collect()
}

/// Systems: the 22 of contract 004 imported from its file (twice: idempotent), then created,
/// changed and deleted through the API and the pages, with the before/after of each change.
async fn systems_import_crud_and_history(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm", cid, ContractRole::ProjectManager).await;
    s.member("sup", cid, ContractRole::ClientSupervisor).await;
    let mut pm = s.login("pm").await;
    let base = format!("/api/v1/contracts/{cid}/systems");

    let r = ok(&mut pm, Method::POST, &format!("{base}/import"), None, StatusCode::OK).await;
    assert_eq!(r["created"].as_array().unwrap().len(), 22, "{r}");
    assert_eq!(r["existing"], 0);
    let r = ok(&mut pm, Method::POST, &format!("{base}/import"), None, StatusCode::OK).await;
    assert_eq!(r["created"].as_array().unwrap().len(), 0, "idempotent: {r}");
    assert_eq!(r["existing"], 22);
    let list = ok(&mut pm, Method::GET, &format!("{base}?limit=500"), None, StatusCode::OK).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 22);
    let call_center = items.iter().find(|i| i["name"] == "呼叫受理子系统").unwrap();
    assert_eq!(call_center["group"], "基础子系统（每天 2 次巡检）");
    let page1 = ok(&mut pm, Method::GET, &format!("{base}?limit=10"), None, StatusCode::OK).await;
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = ok(&mut pm, Method::GET, &format!("{base}?limit=10&cursor={cursor}"), None, StatusCode::OK).await;
    assert_ne!(page1["items"][0]["id"], page2["items"][0]["id"]);

    // Create, with components (a port as a number or as text).
    let body = json!({
        "name": "城管数据中心", "group": "扩展", "owner": "张工", "description": "数据汇聚",
        "components": [
            {"kind": "os", "name": "麒麟", "version": "V10"},
            {"kind": "database", "name": "Oracle", "version": "11g", "port": 1521},
            {"kind": "service", "name": "web", "port": "80,443"}
        ],
        "function_points": 210
    });
    let sys = ok(&mut pm, Method::POST, &base, Some(body.clone()), StatusCode::CREATED).await;
    let id = sys["id"].as_i64().unwrap();
    assert_eq!(sys["components"][1]["port"], "1521");
    assert_eq!(sys["function_points"], 210);
    assert_eq!(sys["version"], 1);
    refused(&call(&mut pm, Method::POST, &base, Some(body.clone())).await, StatusCode::CONFLICT, None);
    let mut bad = body.clone();
    bad["name"] = json!("另一个");
    bad["components"][0]["kind"] = json!("cache");
    refused(
        &call(&mut pm, Method::POST, &base, Some(bad.clone())).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("components"),
    );
    bad["components"][0]["kind"] = json!("os");
    bad["components"][0]["port"] = json!(70000);
    refused(
        &call(&mut pm, Method::POST, &base, Some(bad.clone())).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("components"),
    );
    bad["components"] = json!([]);
    bad["function_points"] = json!(-1);
    refused(
        &call(&mut pm, Method::POST, &base, Some(bad.clone())).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("function_points"),
    );
    refused(
        &call(&mut pm, Method::POST, &base, Some(json!({"name": "x", "colour": "red"}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
    );
    refused(
        &call(&mut pm, Method::POST, &base, Some(json!({"name": "  "}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
    );

    // Update: the version is required and must be current.
    let mut upd = body.clone();
    upd["owner"] = json!("李工");
    refused(
        &call(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(upd.clone())).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("version"),
    );
    upd["version"] = json!(7);
    refused(&call(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(upd.clone())).await, StatusCode::CONFLICT, None);
    upd["version"] = json!(1);
    let after = ok(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(upd.clone()), StatusCode::OK).await;
    assert_eq!(after["owner"], "李工");
    assert_eq!(after["version"], 2);
    refused(&call(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(upd.clone())).await, StatusCode::CONFLICT, None);

    // History: who, when, what before and after.
    let d = ok(&mut pm, Method::GET, &format!("{base}/{id}"), None, StatusCode::OK).await;
    assert_eq!(d["system"]["name"], "城管数据中心");
    let h = &d["history"];
    assert_eq!(actions(h), ["create", "update"]);
    assert_eq!(h[0]["actor"], "pm");
    assert_eq!(h[0]["before"], Value::Null);
    assert_eq!(h[0]["after"]["name"], "城管数据中心");
    assert_eq!(h[1]["before"], json!({"owner": "张工"}));
    assert_eq!(h[1]["after"], json!({"owner": "李工"}));
    let imported = ok(&mut pm, Method::GET, &format!("{base}/{}", call_center["id"]), None, StatusCode::OK).await;
    assert_eq!(actions(&imported["history"]), ["import"]);

    // The client's supervisor reads the ledger and changes nothing.
    let mut sup = s.login("sup").await;
    ok(&mut sup, Method::GET, &format!("{base}/{id}"), None, StatusCode::OK).await;
    refused(&call(&mut sup, Method::POST, &base, Some(json!({"name": "x"}))).await, StatusCode::FORBIDDEN, None);
    refused(&call(&mut sup, Method::POST, &format!("{base}/import"), None).await, StatusCode::FORBIDDEN, None);
    refused(&call(&mut sup, Method::DELETE, &format!("{base}/{id}"), None).await, StatusCode::FORBIDDEN, None);

    // The pages: list, record with its history, create and update by form.
    let r = pm.get(&format!("/c/{cid}/systems")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("呼叫受理子系统") && r.body.contains("城管数据中心"));
    assert!(r.body.contains(&nav_href(&format!("/c/{cid}/systems"))), "navigation entry");
    let r = pm.get(&format!("/c/{cid}/systems/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("张工") && r.body.contains("李工") && r.body.contains("Oracle"));
    let r = pm
        .post_form(
            &format!("/c/{cid}/systems"),
            &[
                ("name", "视频联网"),
                ("components", "数据库 | MySQL | 8.0 | 3306\nos | 麒麟"),
                ("function_points", "12"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let new_id: i64 = r.location().rsplit('/').next().unwrap().parse().unwrap();
    let d = ok(&mut pm, Method::GET, &format!("{base}/{new_id}"), None, StatusCode::OK).await;
    assert_eq!(
        d["system"]["components"][0],
        json!({"kind": "database", "name": "MySQL", "version": "8.0", "port": "3306"})
    );
    let r = pm.post_form(&format!("/c/{cid}/systems"), &[("name", "坏组件"), ("components", "只有一列")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("每行一个组件"));
    let r = pm
        .post_form(
            &format!("/c/{cid}/systems/{new_id}"),
            &[("version", "1"), ("name", "视频联网"), ("owner", "赵工"), ("components", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = pm.post_form(&format!("/c/{cid}/systems/{new_id}"), &[("version", "1"), ("name", "视频联网")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a stale form");
    let r = pm.post_form(&format!("/c/{cid}/systems/import"), &[]).await;
    assert_eq!(r.location(), format!("/c/{cid}/systems?imported=0"));

    // Delete (the history keeps the record).
    ok(&mut pm, Method::DELETE, &format!("{base}/{id}"), None, StatusCode::NO_CONTENT).await;
    refused(&call(&mut pm, Method::GET, &format!("{base}/{id}"), None).await, StatusCode::NOT_FOUND, None);
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let h = assets::history(&s.state.db, &scope, &format!("system:{id}")).await.unwrap();
    assert_eq!(h.last().unwrap().action, "delete");
    assert_eq!(h.last().unwrap().before["owner"], "李工");

    // A contract without a contract file has nothing to import.
    let plain = s.contract("PLAIN-1").await;
    s.member("pm2", plain, ContractRole::ProjectManager).await;
    let mut pm2 = s.login("pm2").await;
    refused(
        &call(&mut pm2, Method::POST, &format!("/api/v1/contracts/{plain}/systems/import"), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("contract"),
    );
}
both_engines!(systems_import_crud_and_history);

/// Relations with ports and cable labels, their checks (both ends in the contract, no relation to
/// itself, known kinds, no duplicates), both-direction lists, history on both ends, and the SVG.
async fn relations_and_topology(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    let other = s.contract("OTHER-1").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut eng = s.login("eng").await;
    ok(&mut eng, Method::POST, &format!("/api/v1/contracts/{cid}/systems/import"), None, StatusCode::OK).await;
    let systems =
        ok(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/systems?limit=500"), None, StatusCode::OK).await;
    let sys = systems["items"][0]["id"].as_i64().unwrap();
    let sys2 = systems["items"][1]["id"].as_i64().unwrap();
    let host = asset(&s, cid, "host", "应用服务器<script>alert(1)</script>", None).await;
    let switch = asset(&s, cid, "network", "核心交换机 & 汇聚", None).await;
    let ups = asset(&s, cid, "environment", "UPS-1", None).await;
    let foreign = asset(&s, other, "host", "别的合同的服务器", None).await;
    let base = format!("/api/v1/contracts/{cid}/relations");

    let rel = |from: String, relation: &str, to: String| json!({"from_ref": from, "relation": relation, "to_ref": to});
    let runs = ok(
        &mut eng,
        Method::POST,
        &base,
        Some(rel(format!("system:{sys}"), "runs_on", format!("asset:{host}"))),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(runs["from_label"], systems["items"][0]["name"]);
    assert_eq!(runs["to_kind"], "host");
    let cable = json!({
        "from_ref": format!("asset:{host}"), "relation": "connects_to", "to_ref": format!("asset:{switch}"),
        "from_port": "eth0", "to_port": "GE0/0/1", "cable_label": "A-01-01"
    });
    let link = ok(&mut eng, Method::POST, &base, Some(cable.clone()), StatusCode::CREATED).await;
    assert_eq!(link["cable_label"], "A-01-01");
    ok(
        &mut eng,
        Method::POST,
        &base,
        Some(rel(format!("asset:{switch}"), "powered_by", format!("asset:{ups}"))),
        StatusCode::CREATED,
    )
    .await;
    ok(
        &mut eng,
        Method::POST,
        &base,
        Some(rel(format!("system:{sys2}"), "runs_on", format!("asset:{host}"))),
        StatusCode::CREATED,
    )
    .await;

    // Refusals, each in both languages.
    refused(&call(&mut eng, Method::POST, &base, Some(cable.clone())).await, StatusCode::CONFLICT, None);
    refused(
        &call(
            &mut eng,
            Method::POST,
            &base,
            Some(rel(format!("asset:{host}"), "connects_to", format!("asset:{host}"))),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("to_ref"),
    );
    refused(
        &call(&mut eng, Method::POST, &base, Some(rel(format!("asset:{host}"), "likes", format!("asset:{ups}")))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("relation"),
    );
    refused(
        &call(&mut eng, Method::POST, &base, Some(rel("host:1".into(), "runs_on", format!("asset:{ups}")))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("from_ref"),
    );
    refused(
        &call(&mut eng, Method::POST, &base, Some(rel(format!("system:{sys}"), "runs_on", format!("asset:{foreign}"))))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("to_ref"),
    );
    refused(
        &call(
            &mut eng,
            Method::POST,
            &base,
            Some(rel(format!("asset:{foreign}"), "powered_by", format!("asset:{ups}"))),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("from_ref"),
    );
    refused(
        &call(&mut eng, Method::POST, &base, Some(rel(format!("system:{sys}"), "runs_on", "asset:999999".into())))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("to_ref"),
    );

    // Both directions of one record.
    let of_host = ok(&mut eng, Method::GET, &format!("{base}?record=asset:{host}"), None, StatusCode::OK).await;
    assert_eq!(of_host["items"].as_array().unwrap().len(), 3);
    let all = ok(&mut eng, Method::GET, &base, None, StatusCode::OK).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    refused(
        &call(&mut eng, Method::GET, &format!("{base}?record=nonsense"), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("record"),
    );

    // The topology: every system and every related asset, names escaped, its own tight CSP.
    let r = eng.get(&format!("/api/v1/contracts/{cid}/topology.svg")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("image/svg+xml"));
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(r.body.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(r.body.matches("<g class=\"node\"").count(), 22 + 3);
    assert_eq!(r.body.matches("<g class=\"edge\"").count(), 4);
    assert!(!r.body.contains("<script"));
    assert!(r.body.contains("&lt;script&gt;") && r.body.contains("核心交换机 &amp; 汇聚"));
    assert!(r.body.contains("eth0→GE0/0/1") && r.body.contains("[A-01-01]"));
    assert!(!r.body.contains(&format!("asset:{foreign}")));
    let again = eng.get(&format!("/api/v1/contracts/{cid}/topology.svg")).await;
    assert_eq!(again.body, r.body, "the drawing is deterministic");
    let page = eng.get(&format!("/c/{cid}/topology")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<svg xmlns") && !page.body.contains("<script>alert"));
    assert!(page.body.contains("A-01-01") && page.body.contains("GE0/0/1"), "the cabling register");

    // The page forms: add a relation and delete one, back to the topology.
    let r = eng
        .post_form(
            &format!("/c/{cid}/relations"),
            &[
                ("back", "topology"),
                ("from_ref", &format!("asset:{host}")),
                ("relation", "backs_up_to"),
                ("to_ref", &format!("asset:{ups}")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), format!("/c/{cid}/topology"));
    let r = eng
        .post_form(
            &format!("/c/{cid}/relations"),
            &[
                ("back", &format!("system:{sys}")),
                ("from_ref", &format!("system:{sys}")),
                ("relation", "runs_on"),
                ("to_ref", &format!("asset:{foreign}")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "shown on the system page");
    assert!(r.body.contains("记录不存在或不属于本合同"));
    let lid = link["id"].as_i64().unwrap();
    let r = eng.post_form(&format!("/c/{cid}/relations/{lid}/delete"), &[("back", "topology")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    refused(&call(&mut eng, Method::DELETE, &format!("{base}/{lid}"), None).await, StatusCode::NOT_FOUND, None);

    // Both ends' history holds the relation and its removal.
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let h = assets::history(&s.state.db, &scope, &format!("asset:{switch}")).await.unwrap();
    let acts: Vec<&str> = h.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(acts, ["create", "relate", "relate", "unrelate"]);
    assert_eq!(h[3].before["cable_label"], "A-01-01");
    let d = ok(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/systems/{sys}"), None, StatusCode::OK).await;
    assert_eq!(d["relations"].as_array().unwrap().len(), 1);
    assert_eq!(actions(&d["history"]), ["import", "relate"]);
    let page = eng.get(&format!("/c/{cid}/systems/{sys}")).await;
    assert!(page.body.contains("&lt;script&gt;") && !page.body.contains("<script>alert"));

    // Deleting a system deletes its relations, noted on the other end.
    ok(&mut eng, Method::DELETE, &format!("/api/v1/contracts/{cid}/systems/{sys2}"), None, StatusCode::NO_CONTENT)
        .await;
    let of_host = ok(&mut eng, Method::GET, &format!("{base}?record=asset:{host}"), None, StatusCode::OK).await;
    assert!(of_host["items"].as_array().unwrap().iter().all(|r| r["from_ref"] != format!("system:{sys2}")));
    let h = assets::history(&s.state.db, &scope, &format!("asset:{host}")).await.unwrap();
    assert_eq!(h.last().unwrap().action, "unrelate");
}
both_engines!(relations_and_topology);

/// Suppliers with their evaluations and supported assets, history, and the delete rule.
async fn suppliers_and_evaluations(s: TestServer) {
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("pm", cid, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm").await;
    let base = format!("/api/v1/contracts/{cid}/suppliers");
    let body = json!({
        "name": "华为技术有限公司", "contacts": "李经理 138-0000-0000", "scope": "网络设备",
        "sla_promise": "7×24 小时，4 小时到场", "certifications": "ISO 9001", "trainings": "HCIE 两名"
    });
    let sup = ok(&mut pm, Method::POST, &base, Some(body.clone()), StatusCode::CREATED).await;
    let id = sup["id"].as_i64().unwrap();
    refused(&call(&mut pm, Method::POST, &base, Some(body.clone())).await, StatusCode::CONFLICT, None);
    refused(
        &call(&mut pm, Method::POST, &base, Some(json!({"name": ""}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("name"),
    );
    let mut upd = body.clone();
    upd["sla_promise"] = json!("7×24 小时，2 小时到场");
    upd["version"] = json!(1);
    let s2 = ok(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(upd.clone()), StatusCode::OK).await;
    assert_eq!(s2["version"], 2);
    refused(&call(&mut pm, Method::PUT, &format!("{base}/{id}"), Some(upd)).await, StatusCode::CONFLICT, None);

    // Evaluations: one per period, score 0–100, a known period form.
    let ev = format!("{base}/{id}/evaluations");
    let e = ok(
        &mut pm,
        Method::POST,
        &ev,
        Some(json!({"period": "2026-q1", "score": 85, "comments": "响应及时"})),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(e["period"], "2026-Q1");
    assert_eq!(e["evaluated_by"], "pm");
    ok(
        &mut pm,
        Method::POST,
        &ev,
        Some(json!({"period": "2026-Q2", "score": 92, "evaluated_by": "项目组"})),
        StatusCode::CREATED,
    )
    .await;
    refused(
        &call(&mut pm, Method::POST, &ev, Some(json!({"period": "2026-Q1", "score": 60}))).await,
        StatusCode::CONFLICT,
        None,
    );
    refused(
        &call(&mut pm, Method::POST, &ev, Some(json!({"period": "2026-Q3", "score": 101}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("score"),
    );
    refused(
        &call(&mut pm, Method::POST, &ev, Some(json!({"period": "第一季度", "score": 80}))).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("period"),
    );
    let list = ok(&mut pm, Method::GET, &ev, None, StatusCode::OK).await;
    let periods: Vec<&str> = list["items"].as_array().unwrap().iter().map(|e| e["period"].as_str().unwrap()).collect();
    assert_eq!(periods, ["2026-Q2", "2026-Q1"]);

    // The assets it supports.
    let a1 = asset(&s, cid, "network", "核心交换机", Some(id)).await;
    asset(&s, cid, "host", "无关的服务器", None).await;
    let d = ok(&mut pm, Method::GET, &format!("{base}/{id}"), None, StatusCode::OK).await;
    assert_eq!(d["supplier"]["sla_promise"], "7×24 小时，2 小时到场");
    assert_eq!(d["evaluations"].as_array().unwrap().len(), 2);
    let supported: Vec<i64> = d["assets"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert_eq!(supported, [a1]);
    assert_eq!(actions(&d["history"]), ["create", "update", "evaluate", "evaluate"]);
    assert_eq!(d["history"][1]["before"], json!({"sla_promise": "7×24 小时，4 小时到场"}));
    assert_eq!(d["history"][1]["after"], json!({"sla_promise": "7×24 小时，2 小时到场"}));

    // Pages.
    let r = pm.get(&format!("/c/{cid}/suppliers")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("华为技术有限公司"));
    let r = pm.get(&format!("/c/{cid}/suppliers/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("响应及时") && r.body.contains("核心交换机") && r.body.contains("88.5"),
        "average of 85 and 92"
    );
    let r = pm
        .post_form(
            &format!("/c/{cid}/suppliers/{id}/evaluations"),
            &[("period", "2026-Q3"), ("score", "77"), ("comments", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = pm
        .post_form(&format!("/c/{cid}/suppliers/{id}/evaluations"), &[("period", "2026-Q4"), ("score", "很好")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = pm.post_form(&format!("/c/{cid}/suppliers"), &[("name", "浪潮"), ("scope", "服务器")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let other_id: i64 = r.location().rsplit('/').next().unwrap().parse().unwrap();

    // A supplier that still supports assets stays; one that supports none goes with its evaluations.
    refused(&call(&mut pm, Method::DELETE, &format!("{base}/{id}"), None).await, StatusCode::CONFLICT, None);
    ok(
        &mut pm,
        Method::POST,
        &format!("{base}/{other_id}/evaluations"),
        Some(json!({"period": "2026", "score": 70})),
        StatusCode::CREATED,
    )
    .await;
    let r = pm.post_form(&format!("/c/{cid}/suppliers/{other_id}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    refused(&call(&mut pm, Method::GET, &format!("{base}/{other_id}"), None).await, StatusCode::NOT_FOUND, None);
    refused(
        &call(&mut pm, Method::GET, &format!("{base}/{other_id}/evaluations"), None).await,
        StatusCode::NOT_FOUND,
        None,
    );
}
both_engines!(suppliers_and_evaluations);

async fn visit_step(b: &mut Browser, cid: i64, id: i64, body: Value) -> Resp {
    let d = ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/visits/{id}"), None, StatusCode::OK).await;
    let mut body = body;
    if body.get("version").is_none() {
        body["version"] = d["visit"]["version"].clone();
    }
    b.api(Method::POST, &format!("/api/v1/contracts/{cid}/visits/{id}/actions"), Some(body)).await
}

/// The access register from request to exit, its bad inputs, and the flag on a visit that entered
/// more than 12 hours ago and never left.
async fn machine_room_visits(s: TestServer) {
    let t0 = at(2026, 3, 2, 9, 0);
    s.set_now(t0);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    let other = s.contract("OTHER-1").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    s.member("sup", cid, ContractRole::ClientSupervisor).await;
    s.member("sup2", cid, ContractRole::ClientSupervisor).await;
    s.member("pm_other", other, ContractRole::ProjectManager).await;
    let mut eng = s.login("eng").await;
    let mut sup = s.login("sup").await;
    let mut pmo = s.login("pm_other").await;
    let sites = ok(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/sites"), None, StatusCode::OK).await;
    let room = sites["items"][0]["id"].as_i64().unwrap();
    let foreign_room = ok(
        &mut pmo,
        Method::POST,
        &format!("/api/v1/contracts/{other}/sites"),
        Some(json!({"name": "别的机房", "kind": "machine_room"})),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let base = format!("/api/v1/contracts/{cid}/visits");
    let req = json!({"site_id": room, "visitor": "王工", "organisation": "服务商", "purpose": "更换硬盘", "planned_on": "2026-03-02"});

    // Bad requests.
    let mut bad = req.clone();
    bad["site_id"] = json!(foreign_room);
    refused(&call(&mut eng, Method::POST, &base, Some(bad)).await, StatusCode::UNPROCESSABLE_ENTITY, Some("site_id"));
    let mut bad = req.clone();
    bad["planned_on"] = json!("2026/03/02");
    refused(
        &call(&mut eng, Method::POST, &base, Some(bad)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("planned_on"),
    );
    let mut bad = req.clone();
    bad["purpose"] = json!("");
    refused(&call(&mut eng, Method::POST, &base, Some(bad)).await, StatusCode::UNPROCESSABLE_ENTITY, Some("purpose"));

    let v = ok(&mut eng, Method::POST, &base, Some(req.clone()), StatusCode::CREATED).await;
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["state"], "requested");
    assert_eq!(v["requested_by"], "eng");

    // Out of order, or by the wrong person.
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "enter", "escort": "刘工"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("state"),
    );
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "exit", "work_done": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("state"),
    );
    refused(&visit_step(&mut eng, cid, id, json!({"action": "approve"})).await, StatusCode::FORBIDDEN, None);
    refused(
        &visit_step(&mut sup, cid, id, json!({"action": "approve", "version": 9})).await,
        StatusCode::CONFLICT,
        None,
    );
    refused(
        &visit_step(&mut sup, cid, id, json!({"action": "reject"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("note"),
    );
    refused(
        &visit_step(&mut sup, cid, id, json!({"action": "open_sesame"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("action"),
    );

    s.set_now(t0 + 10 * MIN);
    let v = visit_step(&mut sup, cid, id, json!({"action": "approve", "note": "同意，需陪同"})).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.json()["state"], "approved");
    assert_eq!(v.json()["decided_by"], "sup");
    refused(
        &visit_step(&mut sup, cid, id, json!({"action": "reject", "note": "改主意"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("state"),
    );

    // The supervisor's own request needs another supervisor.
    let own = ok(&mut sup, Method::POST, &base, Some(req.clone()), StatusCode::CREATED).await["id"].as_i64().unwrap();
    refused(
        &visit_step(&mut sup, cid, own, json!({"action": "approve"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("requested_by"),
    );
    let mut sup2 = s.login("sup2").await;
    let r = visit_step(&mut sup2, cid, own, json!({"action": "reject", "note": "当天机房封闭"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    refused(
        &visit_step(&mut sup, cid, own, json!({"action": "enter", "escort": "x"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("state"),
    );

    // Entry: after the approval, with an escort; exit: after the entry, with the work done.
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "enter", "escort": "刘工", "at_ms": t0})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("at_ms"),
    );
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "enter", "escort": ""})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("escort"),
    );
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "enter", "escort": "刘工", "at_ms": t0 + 5 * HOUR})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("at_ms"),
    );
    s.set_now(t0 + 20 * MIN);
    let r = visit_step(&mut eng, cid, id, json!({"action": "enter", "escort": "刘工"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["entered_at"], t0 + 20 * MIN);
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "exit", "work_done": "换盘", "at_ms": t0 + 15 * MIN})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("at_ms"),
    );
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "exit", "work_done": " "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("work_done"),
    );
    s.set_now(t0 + 25 * MIN);
    let r = visit_step(&mut eng, cid, id, json!({"action": "exit", "work_done": "更换 3 号盘，阵列重建完成"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["state"], "closed");
    refused(
        &visit_step(&mut eng, cid, id, json!({"action": "exit", "work_done": "again"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("state"),
    );
    let d = ok(&mut eng, Method::GET, &format!("{base}/{id}"), None, StatusCode::OK).await;
    assert_eq!(actions(&d["history"]), ["request", "approve", "enter", "exit"]);
    assert_eq!(d["history"][1]["after"]["state"], "approved");
    assert_eq!(d["history"][1]["actor"], "sup");

    // The same flow on the pages, as on a phone at the door.
    let r = eng
        .post_form(
            &format!("/c/{cid}/visits"),
            &[
                ("site_id", &room.to_string()),
                ("visitor", "陈工"),
                ("organisation", "华为"),
                ("purpose", "巡检"),
                ("planned_on", "2026-03-02"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = eng
        .post_form(
            &format!("/c/{cid}/visits"),
            &[("site_id", &room.to_string()), ("visitor", "陈工"), ("purpose", "巡检"), ("planned_on", "明天")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("YYYY-MM-DD") && r.body.contains("陈工"),
        "the refusal above the form, with what was typed"
    );
    let list = ok(&mut eng, Method::GET, &format!("{base}?state=requested"), None, StatusCode::OK).await;
    let pid = list["items"][0]["id"].as_i64().unwrap();
    let page = sup.get(&format!("/c/{cid}/visits?view=requested")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"action\" value=\"approve\""));
    assert!(page.body.contains("width=device-width") && !page.body.contains("<table"), "cards, not a wide table");
    let r = sup
        .post_form(&format!("/c/{cid}/visits/{pid}/act"), &[("action", "approve"), ("version", "1"), ("note", "")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = sup.post_form(&format!("/c/{cid}/visits/{pid}/act"), &[("action", "approve"), ("version", "2")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = eng
        .post_form(
            &format!("/c/{cid}/visits/{pid}/act"),
            &[("action", "enter"), ("version", "2"), ("escort", "刘工"), ("at", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = eng
        .post_form(
            &format!("/c/{cid}/visits/{pid}/act"),
            &[("action", "exit"), ("version", "3"), ("work_done", "完成"), ("at", "2026-03-02 08:00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "an exit before the entry");
    assert!(r.body.contains("离开时间不能早于进入时间"));

    // 13 hours later that visit is still in the room: flagged, in the list and on the page.
    s.set_now(t0 + 13 * HOUR + 30 * MIN);
    let mut eng = s.login("eng").await;
    let flagged = ok(&mut eng, Method::GET, &format!("{base}?never_closed=true"), None, StatusCode::OK).await;
    let flagged: Vec<(i64, bool)> = flagged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_i64().unwrap(), v["never_closed"].as_bool().unwrap()))
        .collect();
    assert_eq!(flagged, [(pid, true)]);
    let all = ok(&mut eng, Method::GET, &base, None, StatusCode::OK).await;
    let closed = all["items"].as_array().unwrap().iter().find(|v| v["id"] == id).unwrap();
    assert_eq!(closed["never_closed"], false);
    let page = eng.get(&format!("/c/{cid}/visits")).await;
    assert!(page.body.contains("never-closed-warning") && page.body.contains("超过 12 小时"));
    let r = eng
        .post_form(
            &format!("/c/{cid}/visits/{pid}/act"),
            &[("action", "exit"), ("version", "3"), ("work_done", "补登离开")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let flagged = ok(&mut eng, Method::GET, &format!("{base}?never_closed=true"), None, StatusCode::OK).await;
    assert!(flagged["items"].as_array().unwrap().is_empty());
    refused(
        &call(&mut eng, Method::GET, &format!("{base}?state=gone"), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("state"),
    );
}
both_engines!(machine_room_visits);

/// Every record type is invisible from another contract (404 for each id, through that contract's
/// routes and through the owner's), and a client end user gets 403 on every ledger read.
async fn ledger_isolation_and_denials(s: TestServer) {
    let a = s.seed_contract("004-chengdu-dcm.toml").await;
    let b = s.contract("B-1").await;
    s.member("pm_a", a, ContractRole::ProjectManager).await;
    s.member("sup_a", a, ContractRole::ClientSupervisor).await;
    s.member("user_a", a, ContractRole::ClientEndUser).await;
    s.member("pm_b", b, ContractRole::ProjectManager).await;
    let mut pm = s.login("pm_a").await;
    let sys = ok(
        &mut pm,
        Method::POST,
        &format!("/api/v1/contracts/{a}/systems"),
        Some(json!({"name": "A 系统"})),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let host = asset(&s, a, "host", "A 主机", None).await;
    let rel = ok(
        &mut pm,
        Method::POST,
        &format!("/api/v1/contracts/{a}/relations"),
        Some(json!({"from_ref": format!("system:{sys}"), "relation": "runs_on", "to_ref": format!("asset:{host}")})),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let sup = ok(
        &mut pm,
        Method::POST,
        &format!("/api/v1/contracts/{a}/suppliers"),
        Some(json!({"name": "A 供应商"})),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    ok(
        &mut pm,
        Method::POST,
        &format!("/api/v1/contracts/{a}/suppliers/{sup}/evaluations"),
        Some(json!({"period": "2026-Q1", "score": 90})),
        StatusCode::CREATED,
    )
    .await;
    let sites = ok(&mut pm, Method::GET, &format!("/api/v1/contracts/{a}/sites"), None, StatusCode::OK).await;
    let room = sites["items"][0]["id"].as_i64().unwrap();
    let visit = ok(
        &mut pm,
        Method::POST,
        &format!("/api/v1/contracts/{a}/visits"),
        Some(json!({"site_id": room, "visitor": "王工", "purpose": "巡检", "planned_on": "2026-03-02"})),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();

    // The other contract's member: 404 for every record, by either contract's routes.
    let mut other = s.login("pm_b").await;
    for cid in [a, b] {
        let api = format!("/api/v1/contracts/{cid}");
        for (method, path, body) in [
            (Method::GET, format!("{api}/systems/{sys}"), None),
            (Method::PUT, format!("{api}/systems/{sys}"), Some(json!({"name": "x", "version": 1}))),
            (Method::DELETE, format!("{api}/systems/{sys}"), None),
            (Method::DELETE, format!("{api}/relations/{rel}"), None),
            (Method::GET, format!("{api}/suppliers/{sup}"), None),
            (Method::PUT, format!("{api}/suppliers/{sup}"), Some(json!({"name": "x", "version": 1}))),
            (Method::DELETE, format!("{api}/suppliers/{sup}"), None),
            (Method::GET, format!("{api}/suppliers/{sup}/evaluations"), None),
            (
                Method::POST,
                format!("{api}/suppliers/{sup}/evaluations"),
                Some(json!({"period": "2026-Q2", "score": 1})),
            ),
            (Method::GET, format!("{api}/visits/{visit}"), None),
            (
                Method::POST,
                format!("{api}/visits/{visit}/actions"),
                Some(json!({"action": "enter", "version": 1, "escort": "x"})),
            ),
        ] {
            let r = call(&mut other, method.clone(), &path, body).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {path}: {}", r.body);
        }
        for page in [format!("/c/{cid}/systems/{sys}"), format!("/c/{cid}/suppliers/{sup}")] {
            assert_eq!(other.get(&page).await.status, StatusCode::NOT_FOUND, "{page}");
        }
    }
    // Contract A's lists answer 404 to a non-member; contract B's own lists show nothing of A's.
    for path in ["systems", "relations", "suppliers", "visits", "topology.svg"] {
        let r = call(&mut other, Method::GET, &format!("/api/v1/contracts/{a}/{path}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = call(
        &mut other,
        Method::POST,
        &format!("/api/v1/contracts/{b}/relations"),
        Some(json!({"from_ref": format!("system:{sys}"), "relation": "runs_on", "to_ref": format!("asset:{host}")})),
    )
    .await;
    refused(&r, StatusCode::UNPROCESSABLE_ENTITY, Some("from_ref"));
    let svg = other.get(&format!("/api/v1/contracts/{b}/topology.svg")).await;
    assert_eq!(svg.status, StatusCode::OK);
    assert_eq!(svg.body.matches("<g class=\"node\"").count(), 0);
    for path in ["systems", "suppliers", "visits"] {
        let r = ok(&mut other, Method::GET, &format!("/api/v1/contracts/{b}/{path}"), None, StatusCode::OK).await;
        assert!(r["items"].as_array().unwrap().is_empty(), "{path}: {r}");
    }
    for page in ["systems", "suppliers", "visits", "topology"] {
        assert_eq!(other.get(&format!("/c/{a}/{page}")).await.status, StatusCode::NOT_FOUND, "{page}");
    }

    // A client end user: 403 on every ledger read, no navigation entries.
    let mut user = s.login("user_a").await;
    for path in [
        "systems".into(),
        format!("systems/{sys}"),
        "relations".into(),
        "topology.svg".into(),
        "suppliers".into(),
        format!("suppliers/{sup}"),
        format!("suppliers/{sup}/evaluations"),
        "visits".into(),
        format!("visits/{visit}"),
    ] {
        let r = call(&mut user, Method::GET, &format!("/api/v1/contracts/{a}/{path}"), None).await;
        refused(&r, StatusCode::FORBIDDEN, None);
    }
    let r = call(
        &mut user,
        Method::POST,
        &format!("/api/v1/contracts/{a}/visits"),
        Some(json!({"site_id": room, "visitor": "我", "purpose": "看看", "planned_on": "2026-03-02"})),
    )
    .await;
    refused(&r, StatusCode::FORBIDDEN, None);
    for page in [
        format!("/c/{a}/systems"),
        format!("/c/{a}/systems/{sys}"),
        format!("/c/{a}/suppliers"),
        format!("/c/{a}/visits"),
        format!("/c/{a}/topology"),
    ] {
        assert_eq!(user.get(&page).await.status, StatusCode::FORBIDDEN, "{page}");
    }
    let home = user.get(&format!("/c/{a}")).await;
    assert!(
        !home.body.contains(&nav_href(&format!("/c/{a}/systems")))
            && !home.body.contains(&nav_href(&format!("/c/{a}/visits")))
    );

    // The supervisor reads everything and writes only visits' decisions.
    let mut sv = s.login("sup_a").await;
    for page in ["systems", "suppliers", "visits", "topology"] {
        let r = sv.get(&format!("/c/{a}/{page}")).await;
        assert_eq!(r.status, StatusCode::OK, "{page}");
        assert!(r.body.contains(&nav_href(&format!("/c/{a}/visits"))), "navigation on {page}");
    }
    refused(
        &call(&mut sv, Method::POST, &format!("/api/v1/contracts/{a}/suppliers"), Some(json!({"name": "x"}))).await,
        StatusCode::FORBIDDEN,
        None,
    );
    refused(
        &call(&mut sv, Method::DELETE, &format!("/api/v1/contracts/{a}/relations/{rel}"), None).await,
        StatusCode::FORBIDDEN,
        None,
    );

    // Every route is in the OpenAPI document.
    let doc = ok(&mut pm, Method::GET, "/api/v1/openapi.json", None, StatusCode::OK).await;
    for p in [
        "/api/v1/contracts/{cid}/systems",
        "/api/v1/contracts/{cid}/systems/import",
        "/api/v1/contracts/{cid}/systems/{id}",
        "/api/v1/contracts/{cid}/relations",
        "/api/v1/contracts/{cid}/relations/{id}",
        "/api/v1/contracts/{cid}/topology.svg",
        "/api/v1/contracts/{cid}/suppliers",
        "/api/v1/contracts/{cid}/suppliers/{id}",
        "/api/v1/contracts/{cid}/suppliers/{id}/evaluations",
        "/api/v1/contracts/{cid}/visits",
        "/api/v1/contracts/{cid}/visits/{id}",
        "/api/v1/contracts/{cid}/visits/{id}/actions",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} is not documented");
    }
}
both_engines!(ledger_isolation_and_denials);
