//! The audit log: every write leaves a record; the SM3 chain exposes an edited row.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;
use yunwei_core::authz::{AdminRole, ContractRole};

use crate::both_engines;
use crate::harness::{Engine, TestServer};

async fn raw(s: &TestServer) -> sqlx::AnyConnection {
    sqlx::AnyConnection::connect(&s.db.url).await.unwrap()
}

async fn audit_chain_detects_an_edited_row(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let (_, aud) = s.admin("aud", AdminRole::AuditAdmin).await;
    let mut eng = s.login("eng").await;
    eng.get("/").await;
    let r = eng
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/sites"),
            Some(json!({"name": "一号机房", "kind": "machine_room"})),
        )
        .await;
    let site = r.json()["id"].as_i64().unwrap();

    let mut a = s.login_admin("aud", &aud).await;
    let v = a.api(Method::GET, "/api/v1/audit/verify", None).await.json();
    assert_eq!(v["intact"], true, "{v}");
    let checked = v["checked"].as_i64().unwrap();
    assert!(checked > 5);
    // The site creation is recorded with who, where from, which contract, what.
    let log = a.api(Method::GET, "/api/v1/audit?action_prefix=site.", None).await.json();
    let rec = &log["items"][0];
    assert_eq!(rec["action"], "site.create");
    assert_eq!(rec["username"], "eng");
    assert_eq!(rec["source_ip"], "127.0.0.1");
    assert_eq!(rec["contract_id"], cid);
    assert_eq!(rec["object"], format!("site:{site}"));
    let seq = rec["seq"].as_i64().unwrap();

    // The product has no path to change the log, and the database refuses too.
    let mut c = raw(&s).await;
    let direct = sqlx::query("UPDATE audit_log SET detail = 'x' WHERE seq = $1").bind(seq).execute(&mut c).await;
    assert!(direct.is_err(), "append-only trigger must refuse updates");
    assert!(sqlx::query("DELETE FROM audit_log WHERE seq = $1").bind(seq).execute(&mut c).await.is_err());

    // Someone with database access removes the guard and edits the row: verification names it.
    match s.engine {
        Engine::Sqlite => {
            sqlx::query("DROP TRIGGER audit_log_no_update").execute(&mut c).await.unwrap();
        }
        Engine::Postgres => {
            sqlx::query("DROP TRIGGER audit_log_no_update ON audit_log").execute(&mut c).await.unwrap();
        }
    }
    sqlx::query("UPDATE audit_log SET username = 'someone_else' WHERE seq = $1")
        .bind(seq)
        .execute(&mut c)
        .await
        .unwrap();
    let v = a.api(Method::GET, "/api/v1/audit/verify", None).await.json();
    assert_eq!(v["intact"], false);
    assert_eq!(v["first_broken_seq"], seq, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("altered"));
    // The page says so too.
    a.get("/audit").await;
    let page = a.post_form("/audit/verify", &[]).await;
    assert!(page.body.contains(&format!("第 {seq} 条记录校验失败")), "{}", page.body);
}
both_engines!(audit_chain_detects_an_edited_row);

async fn audit_chain_detects_removed_tail(s: TestServer) {
    let (_, aud) = s.admin("aud", AdminRole::AuditAdmin).await;
    let report = yunwei_storage::audit::verify(&s.state.db).await.unwrap();
    assert!(report.first_broken.is_none());
    let mut c = raw(&s).await;
    match s.engine {
        Engine::Sqlite => sqlx::query("DROP TRIGGER audit_log_no_delete").execute(&mut c).await.unwrap(),
        Engine::Postgres => sqlx::query("DROP TRIGGER audit_log_no_update ON audit_log").execute(&mut c).await.unwrap(),
    };
    sqlx::query("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)").execute(&mut c).await.unwrap();
    let report = yunwei_storage::audit::verify(&s.state.db).await.unwrap();
    let (seq, why) = report.first_broken.expect("a removed last record is detected");
    assert_eq!(seq, report.checked + 1);
    assert!(why.contains("removed"), "{why}");
    let _ = aud;
}
both_engines!(audit_chain_detects_removed_tail);

async fn audit_admin_filters_and_exports(s: TestServer) {
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let (_, aud) = s.admin("aud", AdminRole::AuditAdmin).await;
    let mut eng = s.client();
    eng.login("eng", "Wrong#Pass123").await;
    let mut a = s.login_admin("aud", &aud).await;
    let page = a.get("/audit?username=eng&result=failed").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("auth.login"));
    assert!(!page.body.contains("contract.create"), "filter by user applied");
    let csv = a.get("/audit/export.csv?username=eng").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert!(csv.body.starts_with('\u{feff}'), "BOM for Excel");
    assert!(csv.body.contains("auth.login") && csv.body.contains("wrong password"));
    // Exporting is itself audited.
    let log = a.api(Method::GET, "/api/v1/audit?action_prefix=audit.export", None).await.json();
    assert_eq!(log["items"].as_array().unwrap().len(), 1);
    // Pagination by sequence number.
    let first = a.api(Method::GET, "/api/v1/audit?limit=2", None).await.json();
    let before = first["next_before"].as_i64().unwrap();
    let second = a.api(Method::GET, &format!("/api/v1/audit?limit=2&before={before}"), None).await.json();
    assert!(second["items"][0]["seq"].as_i64().unwrap() < before);
}
both_engines!(audit_admin_filters_and_exports);
