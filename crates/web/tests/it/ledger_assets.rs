//! The asset ledger over HTTP: records with their checks and history, custom fields, a monthly
//! reconciliation round from start to report, onboarding and retirement with an approver, and who
//! may see and change what.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;

use crate::both_engines;
use crate::harness::{Browser, Resp, TestServer};

async fn call(b: &mut Browser, method: Method, path: &str, body: Option<Value>) -> Resp {
    b.api(method, path, body).await
}

async fn ok(b: &mut Browser, method: Method, path: &str, body: Option<Value>, want: StatusCode) -> Value {
    let r = call(b, method.clone(), path, body).await;
    assert_eq!(r.status, want, "{method} {path}: {}", r.body);
    r.json()
}

async fn site(b: &mut Browser, cid: i64, name: &str) -> i64 {
    let v = ok(
        b,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/sites"),
        Some(json!({ "name": name, "kind": "machine_room" })),
        StatusCode::CREATED,
    )
    .await;
    v["id"].as_i64().unwrap()
}

async fn create(b: &mut Browser, cid: i64, body: Value) -> Value {
    ok(b, Method::POST, &format!("/api/v1/contracts/{cid}/assets"), Some(body), StatusCode::CREATED).await
}

async fn get(b: &mut Browser, cid: i64, id: i64) -> Value {
    ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/assets/{id}"), None, StatusCode::OK).await
}

async fn history(b: &mut Browser, cid: i64, id: i64) -> Vec<Value> {
    let v = ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/assets/{id}/history"), None, StatusCode::OK).await;
    v["items"].as_array().unwrap().clone()
}

async fn names(b: &mut Browser, cid: i64, query: &str) -> Vec<String> {
    let v = ok(b, Method::GET, &format!("/api/v1/contracts/{cid}/assets?{query}"), None, StatusCode::OK).await;
    v["items"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()).collect()
}

/// The writable fields of an asset as read, plus its version: the body of a PUT.
fn put_body(a: &Value, change: Value) -> Value {
    let keys = [
        "kind",
        "name",
        "model",
        "brand",
        "manufacturer",
        "unit",
        "quantity",
        "serial",
        "manufactured_on",
        "installed_on",
        "site_id",
        "room",
        "rack",
        "u_position",
        "department",
        "category",
        "asset_no",
        "dimensions",
        "weight",
        "accessories",
        "parameters",
        "status",
        "owner",
        "supplier_id",
        "warranty_end",
        "ips",
        "ports",
        "notes",
        "version",
    ];
    let mut o = serde_json::Map::new();
    for k in keys {
        o.insert(k.into(), a[k].clone());
    }
    o.insert("custom".into(), a["custom"].clone());
    for (k, v) in change.as_object().unwrap() {
        o.insert(k.clone(), v.clone());
    }
    Value::Object(o)
}

/// A page's text with the slashes the templates escape put back.
fn plain(html: &str) -> String {
    html.replace("&#x2f;", "/")
}

fn url(q: &str) -> String {
    q.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

both_engines!(records_search_and_bad_input);
async fn records_search_and_bad_input(s: TestServer) {
    let cid = s.contract("LA1").await;
    let other = s.contract("LA2").await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("eng.zhao", other, ContractRole::Engineer).await;
    let mut eng = s.login("eng.wang").await;
    let mut zhao = s.login("eng.zhao").await;
    let room1 = site(&mut eng, cid, "一号机房").await;
    let room2 = site(&mut eng, cid, "二号机房").await;
    let foreign = site(&mut zhao, other, "外单位机房").await;

    let sw = create(
        &mut eng,
        cid,
        json!({
            "kind": "network", "name": "核心交换机", "model": "S12708", "brand": "华为", "manufacturer": "华为技术有限公司",
            "serial": "2102351931DMH1000123", "manufactured_on": "2020-11", "installed_on": "2021-06-01",
            "site_id": room1, "room": "301", "rack": "A-03", "u_position": "20-30", "department": "信息中心",
            "category": "网络设备", "asset_no": "ZC-001", "dimensions": "442×489×1067 mm", "weight": "150 kg",
            "accessories": "电源模块 ×4", "parameters": "8 个业务槽位", "owner": "王工", "warranty_end": "2026-06-30",
            "ips": "10.1.0.1", "ports": "22, 443"
        }),
    )
    .await;
    assert_eq!(sw["status"], "in_service", "{sw}");
    assert_eq!(sw["site_name"], "一号机房");
    assert_eq!(sw["version"], 1);
    let sw_id = sw["id"].as_i64().unwrap();
    let cords = create(
        &mut eng,
        cid,
        json!({ "kind": "terminal", "name": "超五类跳线", "unit": "根", "quantity": 4000, "site_id": room2, "asset_no": "ZC-002" }),
    )
    .await;
    assert_eq!(cords["quantity"], 4000);
    let cords_id = cords["id"].as_i64().unwrap();
    create(
        &mut eng,
        cid,
        json!({ "kind": "security", "name": "下一代防火墙", "model": "USG6650", "status": "in_stock" }),
    )
    .await;

    // Search by a Chinese substring, filters, paging.
    assert_eq!(names(&mut eng, cid, &format!("q={}", url("交换"))).await, ["核心交换机"]);
    assert_eq!(names(&mut eng, cid, &format!("q={}", url("2102351931"))).await, ["核心交换机"]);
    assert_eq!(names(&mut eng, cid, "q=s12708").await, ["核心交换机"]);
    assert_eq!(names(&mut eng, cid, "kind=terminal").await, ["超五类跳线"]);
    assert_eq!(names(&mut eng, cid, "status=in_stock").await, ["下一代防火墙"]);
    assert_eq!(names(&mut eng, cid, &format!("site_id={room2}")).await, ["超五类跳线"]);
    assert!(names(&mut eng, cid, &format!("q={}", url("路由器"))).await.is_empty());
    let p1 = ok(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/assets?limit=2"), None, StatusCode::OK).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_string();
    let p2 = ok(
        &mut eng,
        Method::GET,
        &format!("/api/v1/contracts/{cid}/assets?limit=2&cursor={cursor}"),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(p2["items"][0]["name"], "下一代防火墙");
    assert!(p2["next_cursor"].is_null());
    for bad in ["kind=printer", "status=lost", "cursor=zzz", "colour=red"] {
        let r = call(&mut eng, Method::GET, &format!("/api/v1/contracts/{cid}/assets?{bad}"), None).await;
        assert!(r.status.is_client_error(), "{bad}: {} {}", r.status, r.body);
    }

    // An update, then bad input that must change nothing.
    let upd = ok(
        &mut eng,
        Method::PUT,
        &format!("/api/v1/contracts/{cid}/assets/{sw_id}"),
        Some(put_body(&sw, json!({ "room": "302" }))),
        StatusCode::OK,
    )
    .await;
    assert_eq!((upd["room"].as_str(), upd["version"].as_i64()), (Some("302"), Some(2)));
    let before = get(&mut eng, cid, sw_id).await;
    let cords_before = get(&mut eng, cid, cords_id).await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({ "kind": "printer" }), StatusCode::UNPROCESSABLE_ENTITY, "kind"),
        (json!({ "status": "lost" }), StatusCode::UNPROCESSABLE_ENTITY, "status"),
        (json!({ "installed_on": "2021-13-01" }), StatusCode::UNPROCESSABLE_ENTITY, "installed_on"),
        (json!({ "manufactured_on": "2021/06/01" }), StatusCode::UNPROCESSABLE_ENTITY, "manufactured_on"),
        (json!({ "warranty_end": "明年" }), StatusCode::UNPROCESSABLE_ENTITY, "warranty_end"),
        (json!({ "quantity": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "quantity"),
        (json!({ "quantity": -5 }), StatusCode::UNPROCESSABLE_ENTITY, "quantity"),
        (json!({ "site_id": foreign }), StatusCode::UNPROCESSABLE_ENTITY, "site_id"),
        (json!({ "name": "" }), StatusCode::UNPROCESSABLE_ENTITY, "name"),
        (json!({ "name": "a\u{0007}b" }), StatusCode::UNPROCESSABLE_ENTITY, "name"),
        (json!({ "asset_no": "ZC-002" }), StatusCode::CONFLICT, ""),
        (json!({ "version": 1, "room": "303" }), StatusCode::CONFLICT, ""),
    ];
    for (change, want, field) in &cases {
        let body = put_body(&before, change.clone());
        let r = call(&mut eng, Method::PUT, &format!("/api/v1/contracts/{cid}/assets/{sw_id}"), Some(body)).await;
        assert_eq!(r.status, *want, "{change}: {}", r.body);
        if !field.is_empty() {
            assert_eq!(r.json()["error"]["field"], *field, "{change}: {}", r.body);
        }
        assert!(r.json()["error"]["message_zh"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    }
    // Malformed bodies.
    let mut no_version = put_body(&before, json!({}));
    no_version.as_object_mut().unwrap().remove("version");
    for body in [no_version, put_body(&before, json!({ "colour": "red" })), json!([1, 2])] {
        let r = call(&mut eng, Method::PUT, &format!("/api/v1/contracts/{cid}/assets/{sw_id}"), Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    }
    assert_eq!(get(&mut eng, cid, sw_id).await, before, "refused updates changed the record");
    // The same refusals on creation, and a duplicate asset number.
    for (change, want) in [
        (json!({ "asset_no": "ZC-001" }), StatusCode::CONFLICT),
        (json!({ "kind": "printer" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "quantity": 0 }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "installed_on": "2021-02-30" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "site_id": foreign }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "serial": 12 }), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let mut body = json!({ "kind": "host", "name": "应用服务器" });
        body.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
        let r = call(&mut eng, Method::POST, &format!("/api/v1/contracts/{cid}/assets"), Some(body)).await;
        assert_eq!(r.status, want, "{change}: {}", r.body);
    }
    assert_eq!(names(&mut eng, cid, "").await.len(), 3, "a refused creation stored something");
    assert_eq!(get(&mut eng, cid, cords_id).await, cords_before);

    // History: who, when, what changed before → after.
    let h = history(&mut eng, cid, sw_id).await;
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["action"], "create");
    assert_eq!(h[0]["actor"], "eng.wang");
    assert_eq!(h[1]["action"], "update");
    assert_eq!(h[1]["before"], json!({ "room": "301" }));
    assert_eq!(h[1]["after"], json!({ "room": "302" }));
    assert!(h[1]["at"].as_i64().unwrap() > 0);

    // The pages: the list finds by a Chinese substring, the record shows every field and history.
    let r = eng.get(&format!("/c/{cid}/assets?q={}", url("交换"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("核心交换机") && !r.body.contains("超五类跳线"), "{}", r.body);
    assert!(plain(&r.body).contains(&format!("/api/v1/contracts/{cid}/assets/export.xlsx")));
    let r = eng.get(&format!("/c/{cid}/assets?kind=terminal")).await;
    assert!(r.body.contains("超五类跳线") && r.body.contains("4000 根"), "{}", r.body);
    let r = eng.get(&format!("/c/{cid}/assets/{sw_id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = plain(&r.body);
    for text in [
        "核心交换机",
        "S12708",
        "2102351931DMH1000123",
        "一号机房",
        "A-03",
        "20-30",
        "信息中心",
        "150 kg",
        "8 个业务槽位",
        "2026-06-30",
        "10.1.0.1",
        "机房/房间",
        "变更历史",
        "eng.wang",
    ] {
        assert!(body.contains(text), "the record page lacks {text}");
    }
    let hist = &body[body.find("id=\"history\"").unwrap()..];
    assert!(hist.find("302").unwrap() < hist.rfind("301").unwrap(), "newest change first, before → after");
    // Paging on the page.
    let r = eng.get(&format!("/c/{cid}/assets?after={sw_id}")).await;
    assert!(r.body.contains("超五类跳线") && !r.body.contains(">核心交换机<"), "{}", r.body);

    // Create and edit through the forms.
    let r = eng.get(&format!("/c/{cid}/assets/new")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets"),
            &[
                ("kind", "storage"),
                ("name", "磁盘阵列"),
                ("quantity", "1"),
                ("site_id", &room1.to_string()),
                ("installed_on", "2022-13"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("磁盘阵列"), "the form keeps what was typed");
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets"),
            &[
                ("kind", "storage"),
                ("name", "磁盘阵列"),
                ("quantity", "1"),
                ("site_id", &room1.to_string()),
                ("installed_on", "2022-12"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = r.location().to_string();
    let id: i64 = page.rsplit('/').next().unwrap().parse().unwrap();
    let a = get(&mut eng, cid, id).await;
    assert_eq!((a["installed_on"].as_str(), a["site_id"].as_i64()), (Some("2022-12"), Some(room1)));
    let r = eng.get(&format!("/c/{cid}/assets/{id}/edit")).await;
    assert!(r.body.contains("磁盘阵列"));
    // A supplier chosen on the form: named on the record, a filter of the list.
    let sup = ok(
        &mut eng,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/suppliers"),
        Some(json!({ "name": "华存科技" })),
        StatusCode::CREATED,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets/{id}/edit"),
            &[("version", "1"), ("kind", "storage"), ("name", "磁盘阵列"), ("supplier_id", &sup.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(eng.get(&format!("/c/{cid}/assets/{id}")).await.body.contains("华存科技"));
    assert_eq!(names(&mut eng, cid, &format!("supplier_id={sup}")).await, ["磁盘阵列"]);
    let r = eng.get(&format!("/c/{cid}/assets?supplier={sup}")).await;
    assert!(r.body.contains(">磁盘阵列<") && !r.body.contains(">核心交换机<"));
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets/{id}/edit"),
            &[("version", "2"), ("kind", "storage"), ("name", "磁盘阵列"), ("room", "302")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets/{id}/edit"),
            &[("version", "2"), ("kind", "storage"), ("name", "旧值"), ("room", "309")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a stale form is refused");
    let a = get(&mut eng, cid, id).await;
    assert_eq!((a["name"].as_str(), a["room"].as_str(), a["site_id"].as_i64()), (Some("磁盘阵列"), Some("302"), None));
}

both_engines!(custom_fields);
async fn custom_fields(s: TestServer) {
    let cid = s.contract("LF1").await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("client.liu", cid, ContractRole::ClientSupervisor).await;
    let mut eng = s.login("eng.wang").await;
    let fields = format!("/api/v1/contracts/{cid}/asset-fields");
    let d = ok(
        &mut eng,
        Method::POST,
        &format!("{fields}?kind=cloud"),
        Some(json!({ "field_key": "vcpu", "label": "vCPU 核数", "value_type": "number", "required": true })),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!((d["kind"].as_str(), d["required"].as_bool()), (Some("cloud"), Some(true)));
    ok(
        &mut eng,
        Method::POST,
        &fields,
        Some(
            json!({ "kind": "cloud", "field_key": "expires", "label": "到期日", "value_type": "date", "position": 2 }),
        ),
        StatusCode::CREATED,
    )
    .await;
    for (body, want) in [
        (json!({ "kind": "cloud", "field_key": "VCPU!", "label": "x" }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "kind": "cloud", "field_key": "mem", "label": "内存", "value_type": "bool" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "kind": "printer", "field_key": "mem", "label": "内存" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "kind": "cloud", "field_key": "mem", "label": "" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "field_key": "mem", "label": "内存" }), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = call(&mut eng, Method::POST, &fields, Some(body.clone())).await;
        assert_eq!(r.status, want, "{body}: {}", r.body);
    }
    let list = ok(&mut eng, Method::GET, &format!("{fields}?kind=cloud"), None, StatusCode::OK).await;
    let keys: Vec<&str> = list["items"].as_array().unwrap().iter().map(|f| f["field_key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["vcpu", "expires"]);
    let all = ok(&mut eng, Method::GET, &fields, None, StatusCode::OK).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);

    let assets = format!("/api/v1/contracts/{cid}/assets");
    for (custom, why) in [
        (json!({}), "required missing"),
        (json!({ "vcpu": "" }), "required empty"),
        (json!({ "vcpu": "abc" }), "not a number"),
        (json!({ "vcpu": "8", "expires": "下个月" }), "not a date"),
        (json!({ "vcpu": "8", "colour": "red" }), "no such field"),
    ] {
        let r = call(
            &mut eng,
            Method::POST,
            &assets,
            Some(json!({ "kind": "cloud", "name": "政务云主机", "custom": custom })),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "custom");
    }
    assert!(names(&mut eng, cid, "").await.is_empty());
    let vm = create(
        &mut eng,
        cid,
        json!({ "kind": "cloud", "name": "政务云主机", "custom": { "vcpu": "8", "expires": "2027-01" } }),
    )
    .await;
    assert_eq!(vm["custom"], json!({ "vcpu": "8", "expires": "2027-01" }));
    let id = vm["id"].as_i64().unwrap();
    // An update that breaks a custom value changes nothing; a good one shows in the history.
    let r = call(
        &mut eng,
        Method::PUT,
        &format!("{assets}/{id}"),
        Some(put_body(&vm, json!({ "custom": { "vcpu": "很多" } }))),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(get(&mut eng, cid, id).await, vm);
    ok(
        &mut eng,
        Method::PUT,
        &format!("{assets}/{id}"),
        Some(put_body(&vm, json!({ "custom": { "vcpu": "16", "expires": "2027-01" } }))),
        StatusCode::OK,
    )
    .await;
    let h = history(&mut eng, cid, id).await;
    assert_eq!(h[1]["before"]["custom"]["vcpu"], "8");
    assert_eq!(h[1]["after"]["custom"]["vcpu"], "16");

    // Other kinds have no custom fields; the form of a cloud server asks for them.
    create(&mut eng, cid, json!({ "kind": "host", "name": "数据库服务器" })).await;
    let r = eng.get(&format!("/c/{cid}/assets/new?kind=cloud")).await;
    assert!(r.body.contains("vCPU 核数") && r.body.contains("name=\"custom.vcpu\""), "{}", r.body);
    let r = eng
        .post_form(&format!("/c/{cid}/assets"), &[("kind", "cloud"), ("name", "云主机 2"), ("custom.vcpu", "abc")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = eng
        .post_form(&format!("/c/{cid}/assets"), &[("kind", "cloud"), ("name", "云主机 2"), ("custom.vcpu", "4")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = eng.get(r.location()).await;
    assert!(r.body.contains("vCPU 核数") && r.body.contains(">4<"), "{}", r.body);
    // The definitions page, and a definition through it.
    let r = eng.get(&format!("/c/{cid}/assets/fields")).await;
    assert!(r.body.contains("vcpu") && r.body.contains("到期日"));
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets/fields"),
            &[("kind", "environment"), ("field_key", "capacity_kva"), ("label", "容量 kVA"), ("value_type", "number")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("capacity_kva"));
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets/fields"),
            &[("kind", "environment"), ("field_key", "Bad Key"), ("label", "x"), ("value_type", "text")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The client's supervisor reads but does not define.
    let mut client = s.login("client.liu").await;
    ok(&mut client, Method::GET, &fields, None, StatusCode::OK).await;
    let r = call(
        &mut client,
        Method::POST,
        &fields,
        Some(json!({ "kind": "host", "field_key": "os", "label": "操作系统" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

both_engines!(reconciliation_round_onboarding_and_retirement);
async fn reconciliation_round_onboarding_and_retirement(s: TestServer) {
    let cid = s.contract("LR1").await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("client.liu", cid, ContractRole::ClientSupervisor).await;
    let mut eng = s.login("eng.wang").await;
    let mut pm = s.login("pm.chen").await;
    let room1 = site(&mut eng, cid, "一号机房").await;
    let room2 = site(&mut eng, cid, "二号机房").await;
    let sw = create(
        &mut eng,
        cid,
        json!({ "kind": "network", "name": "核心交换机", "site_id": room1, "room": "301", "asset_no": "ZC-001" }),
    )
    .await;
    let fw =
        create(&mut eng, cid, json!({ "kind": "security", "name": "下一代防火墙", "site_id": room1, "room": "301" }))
            .await;
    let ups =
        create(&mut eng, cid, json!({ "kind": "environment", "name": "UPS 电源", "site_id": room1, "room": "UPS 间" }))
            .await;
    let old =
        create(&mut eng, cid, json!({ "kind": "terminal", "name": "旧显示屏", "quantity": 92, "unit": "台" })).await;
    let (sw_id, fw_id, ups_id, old_id) = (
        sw["id"].as_i64().unwrap(),
        fw["id"].as_i64().unwrap(),
        ups["id"].as_i64().unwrap(),
        old["id"].as_i64().unwrap(),
    );

    // Retirement with an approver and a reason.
    let retire = format!("/api/v1/contracts/{cid}/assets/{old_id}/retire");
    for (body, want) in [
        (json!({ "version": 1, "approver": "", "reason": "老化" }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "version": 1, "approver": "李处长", "reason": "  " }), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({ "version": 7, "approver": "李处长", "reason": "老化" }), StatusCode::CONFLICT),
        (json!({ "version": 1, "approver": "李处长" }), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = call(&mut pm, Method::POST, &retire, Some(body.clone())).await;
        assert_eq!(r.status, want, "{body}: {}", r.body);
    }
    assert_eq!(get(&mut pm, cid, old_id).await, old, "refused retirements changed the asset");
    let retired = ok(
        &mut pm,
        Method::POST,
        &retire,
        Some(json!({ "version": 1, "approver": "李处长", "reason": "屏幕老化，已无法使用" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(retired["status"], "retired");
    let r = call(&mut pm, Method::POST, &retire, Some(json!({ "version": 2, "approver": "李处长", "reason": "再次" })))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "retired twice: {}", r.body);
    let h = history(&mut pm, cid, old_id).await;
    let last = h.last().unwrap();
    assert_eq!((last["action"].as_str(), last["actor"].as_str()), (Some("retire"), Some("pm.chen")));
    assert_eq!(last["before"]["status"], "in_service");
    assert_eq!(last["after"]["status"], "retired");
    assert_eq!(last["after"]["approver"], "李处长");
    assert_eq!(last["after"]["reason"], "屏幕老化，已无法使用");
    let page = eng.get(&format!("/c/{cid}/assets/{old_id}")).await.body;
    assert!(page.contains("报废（经审批）") && page.contains("李处长"), "{page}");

    // Onboarding with an approver.
    let onboard = format!("/api/v1/contracts/{cid}/assets/onboard");
    let r = call(
        &mut eng,
        Method::POST,
        &onboard,
        Some(json!({ "asset": { "kind": "host", "name": "新服务器" }, "approver": "" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = call(
        &mut eng,
        Method::POST,
        &onboard,
        Some(json!({ "asset": { "kind": "host", "name": "", }, "approver": "王科长" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(names(&mut eng, cid, "kind=host").await.len(), 0, "a refused onboarding stored something");
    let srv = ok(
        &mut eng,
        Method::POST,
        &onboard,
        Some(json!({ "asset": { "kind": "host", "name": "新服务器", "site_id": room2, "room": "201" }, "approver": "王科长", "note": "项目采购" })),
        StatusCode::CREATED,
    )
    .await;
    let srv_id = srv["id"].as_i64().unwrap();
    let h = history(&mut eng, cid, srv_id).await;
    let actions: Vec<&str> = h.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "onboard"]);
    assert_eq!(h[1]["after"]["approver"], "王科长");
    // Through the form, an approver makes it an onboarding too.
    let r = eng
        .post_form(&format!("/c/{cid}/assets"), &[("kind", "host"), ("name", "备用服务器"), ("approver", "王科长")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let spare: i64 = r.location().rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(history(&mut eng, cid, spare).await.last().unwrap()["action"], "onboard");

    // Start the round of March 2026: every asset but the retired one.
    let rounds = format!("/api/v1/contracts/{cid}/reconciliations");
    for (period, want) in [
        ("2026-13", StatusCode::UNPROCESSABLE_ENTITY),
        ("26-03", StatusCode::UNPROCESSABLE_ENTITY),
        ("", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = call(&mut eng, Method::POST, &rounds, Some(json!({ "period": period }))).await;
        assert_eq!(r.status, want, "{period}: {}", r.body);
    }
    let round = ok(&mut eng, Method::POST, &rounds, Some(json!({ "period": "2026-03" })), StatusCode::CREATED).await;
    let rid = round["id"].as_i64().unwrap();
    assert_eq!(round["counts"]["total"], 5, "{round}");
    assert_eq!(round["counts"]["pending"], 5);
    let r = call(&mut eng, Method::POST, &rounds, Some(json!({ "period": "2026-03" }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "one round per period: {}", r.body);
    let r = call(&mut client_of(&s).await, Method::POST, &rounds, Some(json!({ "period": "2026-04" }))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the client's supervisor does not start rounds");
    let round_url = format!("{rounds}/{rid}");
    let items = ok(&mut eng, Method::GET, &format!("{round_url}/items?outcome=pending"), None, StatusCode::OK).await;
    let ids: Vec<i64> = items["items"].as_array().unwrap().iter().map(|i| i["asset_id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    assert!(!ids.contains(&old_id), "a retired asset is not reconciled");
    let found = ok(&mut eng, Method::GET, &format!("{round_url}/items?q={}", url("交换")), None, StatusCode::OK).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["name"], "核心交换机");

    // The switch is where it should be: marked on the phone page.
    let r = eng.get(&format!("/c/{cid}/assets/rounds/{rid}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("核心交换机") && r.body.contains("value=\"found\""), "{}", r.body);
    let r = eng
        .post_form(
            &format!("/c/{cid}/assets/rounds/{rid}/items/{sw_id}"),
            &[("outcome", "found"), ("show", "pending"), ("room", "301")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().contains("marked="), "{}", r.location());
    let r = eng.get(r.location()).await;
    assert!(
        r.body.contains("已记录") && !r.body.contains(&format!("id=\"item-{sw_id}\"")),
        "the pending view drops a checked item"
    );

    let mark = |aid: i64| format!("{round_url}/items/{aid}");
    // Refusals that leave the item pending and the asset as it was.
    for (aid, body, want) in [
        (fw_id, json!({ "outcome": "moved" }), StatusCode::UNPROCESSABLE_ENTITY),
        (fw_id, json!({ "outcome": "lost" }), StatusCode::UNPROCESSABLE_ENTITY),
        (fw_id, json!({ "outcome": "found", "room": "999" }), StatusCode::UNPROCESSABLE_ENTITY),
        (fw_id, json!({ "outcome": "changed", "status": "retired" }), StatusCode::UNPROCESSABLE_ENTITY),
        (fw_id, json!({ "outcome": "moved", "site_id": 999_999 }), StatusCode::UNPROCESSABLE_ENTITY),
        (old_id, json!({ "outcome": "found" }), StatusCode::NOT_FOUND),
    ] {
        let r = call(&mut eng, Method::POST, &mark(aid), Some(body.clone())).await;
        assert_eq!(r.status, want, "{body}: {}", r.body);
    }
    assert_eq!(get(&mut eng, cid, fw_id).await, fw);
    // The firewall was moved to room 305 of the second site: the ledger follows, with history.
    let item = ok(
        &mut eng,
        Method::POST,
        &mark(fw_id),
        Some(json!({ "outcome": "moved", "room": "305", "site_id": room2, "note": "机房改造搬迁" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!((item["outcome"].as_str(), item["room"].as_str()), (Some("moved"), Some("305")));
    assert!(item["note"].as_str().unwrap().contains("机房改造搬迁") && item["note"].as_str().unwrap().contains("305"));
    let fw_now = get(&mut eng, cid, fw_id).await;
    assert_eq!((fw_now["room"].as_str(), fw_now["site_id"].as_i64()), (Some("305"), Some(room2)));
    let h = history(&mut eng, cid, fw_id).await;
    let last = h.last().unwrap();
    assert_eq!(last["before"]["room"], "301");
    assert_eq!(last["after"]["room"], "305");
    assert_eq!(last["after"]["site_id"], room2);
    let page = eng.get(&format!("/c/{cid}/assets/{fw_id}")).await.body;
    let hist = &page[page.find("id=\"history\"").unwrap()..];
    assert!(hist.contains("301") && hist.contains("305") && hist.contains("二号机房"), "{hist}");
    // The UPS is under repair: a change of status.
    ok(
        &mut eng,
        Method::POST,
        &mark(ups_id),
        Some(json!({ "outcome": "changed", "status": "under_repair", "note": "电池鼓包" })),
        StatusCode::OK,
    )
    .await;
    assert_eq!(get(&mut eng, cid, ups_id).await["status"], "under_repair");
    // Marking again while open replaces the outcome.
    ok(&mut eng, Method::POST, &mark(srv_id), Some(json!({ "outcome": "missing" })), StatusCode::OK).await;
    ok(
        &mut eng,
        Method::POST,
        &mark(srv_id),
        Some(json!({ "outcome": "found", "note": "在 201 机柜后部" })),
        StatusCode::OK,
    )
    .await;

    // Progress, then a close that is refused while one item is pending.
    let r = ok(&mut eng, Method::GET, &round_url, None, StatusCode::OK).await;
    assert_eq!(r["counts"], json!({ "total": 5, "pending": 1, "found": 2, "missing": 0, "moved": 1, "changed": 1 }));
    let r = call(&mut eng, Method::POST, &format!("{round_url}/close"), Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = eng.post_form(&format!("/c/{cid}/assets/rounds/{rid}/close"), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("还有未清查的资产"), "{}", r.body);
    let r = ok(&mut eng, Method::GET, &round_url, None, StatusCode::OK).await;
    assert!(r["closed_at"].is_null());
    // Forced: the spare server that nobody checked becomes missing.
    let r = eng.post_form(&format!("/c/{cid}/assets/rounds/{rid}/close"), &[("force", "1")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), format!("/c/{cid}/assets/rounds/{rid}/report"));
    let rep = ok(&mut eng, Method::GET, &format!("{round_url}/report"), None, StatusCode::OK).await;
    assert_eq!(
        rep["round"]["counts"],
        json!({ "total": 5, "pending": 0, "found": 2, "missing": 1, "moved": 1, "changed": 1 })
    );
    assert_eq!(rep["round"]["closed_by"], "eng.wang");
    assert_eq!(rep["missing"][0]["asset_id"], spare);
    assert!(rep["missing"][0]["note"].as_str().unwrap().contains("未清查"));
    assert_eq!(rep["moved"][0]["asset_id"], fw_id);
    assert_eq!(rep["changed"][0]["note"].as_str().unwrap().lines().next(), Some("电池鼓包"));
    let page = eng.get(&format!("/c/{cid}/assets/rounds/{rid}/report")).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in ["备用服务器", "下一代防火墙", "机房改造搬迁", "UPS 电源", "电池鼓包"] {
        assert!(page.body.contains(text), "the report lacks {text}");
    }
    assert!(!page.body.contains(">核心交换机<"), "a found item is not a difference");
    // A closed round changes no more.
    let r = call(&mut eng, Method::POST, &mark(sw_id), Some(json!({ "outcome": "missing" }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = call(&mut eng, Method::POST, &format!("{round_url}/close"), Some(json!({ "force": true }))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let list = ok(&mut eng, Method::GET, &rounds, None, StatusCode::OK).await;
    assert_eq!(list["items"][0]["period"], "2026-03");
    let page = eng.get(&format!("/c/{cid}/assets/rounds")).await;
    assert!(page.body.contains("2026-03") && page.body.contains("已结束"));
    // A round with nothing pending closes without force.
    let r2 = ok(&mut eng, Method::POST, &rounds, Some(json!({ "period": "2026-04" })), StatusCode::CREATED).await;
    let r2_url = format!("{rounds}/{}", r2["id"]);
    let items = ok(&mut eng, Method::GET, &format!("{r2_url}/items"), None, StatusCode::OK).await;
    for i in items["items"].as_array().unwrap() {
        ok(
            &mut eng,
            Method::POST,
            &format!("{r2_url}/items/{}", i["asset_id"]),
            Some(json!({ "outcome": "found" })),
            StatusCode::OK,
        )
        .await;
    }
    let rep = ok(&mut eng, Method::POST, &format!("{r2_url}/close"), Some(json!({})), StatusCode::OK).await;
    assert_eq!(rep["round"]["counts"]["found"], 5);
    assert!(rep["missing"].as_array().unwrap().is_empty());
}

async fn client_of(s: &TestServer) -> Browser {
    s.login("client.liu").await
}

both_engines!(who_may_see_and_change_the_ledger);
async fn who_may_see_and_change_the_ledger(s: TestServer) {
    let cid = s.contract("LX1").await;
    let other = s.contract("LX2").await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    s.member("client.liu", cid, ContractRole::ClientSupervisor).await;
    s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    s.member("eng.zhao", other, ContractRole::Engineer).await;
    let mut eng = s.login("eng.wang").await;
    let a = create(&mut eng, cid, json!({ "kind": "host", "name": "应用服务器" })).await;
    let id = a["id"].as_i64().unwrap();
    let round = ok(
        &mut eng,
        Method::POST,
        &format!("/api/v1/contracts/{cid}/reconciliations"),
        Some(json!({ "period": "2026-05" })),
        StatusCode::CREATED,
    )
    .await;
    let rid = round["id"].as_i64().unwrap();
    let api = format!("/api/v1/contracts/{cid}");
    let home = plain(&eng.get("/").await.body);
    assert!(home.contains(&format!("/c/{cid}/assets")), "an engineer's navigation has the ledger");

    let reads = [
        format!("{api}/assets"),
        format!("{api}/assets/{id}"),
        format!("{api}/assets/{id}/history"),
        format!("{api}/asset-fields"),
        format!("{api}/reconciliations"),
        format!("{api}/reconciliations/{rid}"),
        format!("{api}/reconciliations/{rid}/items"),
        format!("{api}/reconciliations/{rid}/report"),
    ];
    let writes: Vec<(Method, String, Value)> = vec![
        (Method::POST, format!("{api}/assets"), json!({ "kind": "host", "name": "x" })),
        (Method::PUT, format!("{api}/assets/{id}"), put_body(&a, json!({ "name": "改名" }))),
        (Method::POST, format!("{api}/assets/{id}/retire"), json!({ "version": 1, "approver": "某人", "reason": "x" })),
        (
            Method::POST,
            format!("{api}/assets/onboard"),
            json!({ "asset": { "kind": "host", "name": "x" }, "approver": "某人" }),
        ),
        (Method::POST, format!("{api}/asset-fields"), json!({ "kind": "host", "field_key": "os", "label": "OS" })),
        (Method::POST, format!("{api}/reconciliations"), json!({ "period": "2026-06" })),
        (Method::POST, format!("{api}/reconciliations/{rid}/items/{id}"), json!({ "outcome": "found" })),
        (Method::POST, format!("{api}/reconciliations/{rid}/close"), json!({ "force": true })),
    ];
    let pages = [
        format!("/c/{cid}/assets"),
        format!("/c/{cid}/assets/{id}"),
        format!("/c/{cid}/assets/fields"),
        format!("/c/{cid}/assets/rounds"),
        format!("/c/{cid}/assets/rounds/{rid}"),
        format!("/c/{cid}/assets/rounds/{rid}/report"),
    ];

    // The client's end user: no ledger at all.
    let mut zhou = s.login("user.zhou").await;
    assert!(
        !plain(&zhou.get("/").await.body).contains(&format!("/c/{cid}/assets")),
        "no ledger in an end user's navigation"
    );
    for path in &reads {
        let r = call(&mut zhou, Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
    }
    for (m, path, body) in &writes {
        let r = call(&mut zhou, m.clone(), path, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.body);
    }
    for path in &pages {
        assert_eq!(zhou.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = zhou.post_form(&format!("/c/{cid}/assets/rounds/{rid}/items/{id}"), &[("outcome", "found")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The client's supervisor reads everything and changes nothing.
    let mut liu = s.login("client.liu").await;
    for path in &reads {
        ok(&mut liu, Method::GET, path, None, StatusCode::OK).await;
    }
    for (m, path, body) in &writes {
        let r = call(&mut liu, m.clone(), path, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.body);
    }
    for path in &pages {
        assert_eq!(liu.get(path).await.status, StatusCode::OK, "{path}");
    }
    assert!(
        !liu.get(&format!("/c/{cid}/assets/rounds/{rid}")).await.body.contains("value=\"found\""),
        "no mark buttons"
    );
    assert_eq!(liu.get(&format!("/c/{cid}/assets/new")).await.status, StatusCode::FORBIDDEN);

    // Another contract's engineer: none of it exists.
    let mut zhao = s.login("eng.zhao").await;
    for path in &reads {
        let r = call(&mut zhao, Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
    }
    for (m, path, body) in &writes {
        let r = call(&mut zhao, m.clone(), path, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}: {}", r.body);
    }
    for path in &pages {
        assert_eq!(zhao.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Nor through their own contract's paths.
    let theirs = format!("/api/v1/contracts/{other}");
    for path in [
        format!("{theirs}/assets/{id}"),
        format!("{theirs}/assets/{id}/history"),
        format!("{theirs}/reconciliations/{rid}"),
    ] {
        let r = call(&mut zhao, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
    }
    let r = call(&mut zhao, Method::PUT, &format!("{theirs}/assets/{id}"), Some(put_body(&a, json!({})))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(names(&mut zhao, other, "").await.is_empty());

    // Nothing above changed the ledger or the round.
    assert_eq!(get(&mut eng, cid, id).await, a);
    let r = ok(&mut eng, Method::GET, &format!("{api}/reconciliations/{rid}"), None, StatusCode::OK).await;
    assert_eq!((r["counts"]["pending"].as_i64(), r["closed_at"].is_null()), (Some(1), true));
}
