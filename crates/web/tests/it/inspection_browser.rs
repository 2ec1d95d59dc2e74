//! The inspection checklist in headless Chromium on a phone-sized screen, losing its connection
//! in the machine room: one answer reaches the server but its reply is lost, the next never leaves
//! the phone; both wait in the browser's storage, survive a reload, and are synced once each.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;

use crate::chrome::{PHONE, browser, chromedriver, text};
use crate::harness::{PASSWORD, TestServer};

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn queued(c: &Client, cid: i64) -> usize {
    let v = js(c, &format!("return JSON.parse(localStorage.getItem('yunwei.inspection.queue.{cid}') || '[]').length"))
        .await;
    v.as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_a_lost_connection_and_sync_once() {
    let Some(driver) = chromedriver() else { return };
    let s = TestServer::start(crate::harness::Engine::Sqlite).await.unwrap();
    let cid = s.contract("IB1").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    let mut pm = s.login("pm.chen").await;
    let r = pm
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/inspection-plans"),
            Some(json!({
                "name": "机房环境巡检", "frequency": "daily",
                "targets": [{ "kind": "room", "ref": "1号机房" }],
                "items": [
                    { "key": "temp", "label": "温度", "expected": { "range": { "min": 18, "max": 27 } }, "unit": "℃" },
                    { "key": "door", "label": "门禁正常" }
                ]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Today's slot (00:00) came before the plan: tomorrow's is the first.
    s.state.clock.advance_ms(86_400_000);
    yunwei_web::jobs::run_inspections(&s.state, "test-node").await.unwrap();
    let mut pm = s.login("pm.chen").await;
    let runs = pm.api(Method::GET, &format!("/api/v1/contracts/{cid}/inspection-runs"), None).await.json();
    let rid = runs["items"][0]["id"].as_i64().unwrap();
    let ops = |d: &Value| d["ops"].as_array().unwrap().len();
    let detail = format!("/api/v1/contracts/{cid}/inspection-runs/{rid}");

    let base = s.base.clone();
    let c = browser(&driver, PHONE).await;
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys("eng.wang").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/logout']")).await.unwrap();
    c.goto(&format!("{base}/c/{cid}/inspections")).await.unwrap();
    c.find(Locator::Css(&format!("a[href='/c/{cid}/inspections/runs/{rid}']"))).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[data-cell-form]")).await.unwrap();
    let wide = js(&c, "return document.documentElement.scrollWidth <= window.innerWidth + 1").await;
    assert_eq!(wide, Value::Bool(true), "the checklist scrolls sideways on a 390 px screen");
    if let Err(e) = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//span[contains(@class,'sync-status') and contains(@class,'ok')]"))
        .await
    {
        panic!("the sync bar never settled ({e}): {}", text(&c).await);
    }

    // The temperature reaches the server, but its answer is lost on the way back.
    js(&c, "window.__fetch = window.fetch; window.fetch = function (u, o) { return window.__fetch(u, o).then(function () { throw new Error('lost'); }); }; return 1").await;
    let temp = c.find(Locator::Css("li.cell[data-item=temp] input[name=value]")).await.unwrap();
    temp.send_keys("22.5").await.unwrap();
    c.find(Locator::Css("li.cell[data-item=temp] button[type=submit]")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ops(&pm.api(Method::GET, &detail, None).await.json()) < 1 {
        assert!(Instant::now() < deadline, "the temperature never reached the server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then the network is gone altogether: the door stays on the phone.
    js(&c, "window.fetch = function () { return Promise.reject(new Error('offline')); }; return 1").await;
    c.find(Locator::Css("li.cell[data-item=door] button[value=true]")).await.unwrap().click().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(queued(&c, cid).await, 2, "both readings wait on the phone");
    assert_eq!(ops(&pm.api(Method::GET, &detail, None).await.json()), 1);
    let pending = js(&c, "return document.querySelectorAll('li.cell.pending').length").await;
    assert_eq!(pending, json!(2));

    // Back online (a reload, as after a browser restart): both are sent again; the server takes the
    // door and recognises the temperature it already has.
    c.refresh().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while queued(&c, cid).await > 0 {
        assert!(Instant::now() < deadline, "the queue never drained: {}", text(&c).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = pm.api(Method::GET, &detail, None).await.json();
    assert_eq!(ops(&d), 2, "each reading stored once: {d}");
    assert_eq!(d["run"]["results"], 2);
    let temp = d["cells"].as_array().unwrap().iter().find(|c| c["item_key"] == "temp").unwrap().clone();
    assert_eq!((temp["result"]["value"].as_f64(), temp["result"]["revisions"].as_i64()), (Some(22.5), Some(1)));
    assert!(temp["result"]["client_op_id"].as_str().unwrap().starts_with("web-"));

    // Sign-off from the page, then the printable record.
    c.find(Locator::Css("form[data-sign-off] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("article.record")).await.unwrap();
    let body = text(&c).await;
    assert!(body.contains("按时完成") && body.contains("22.5"), "{body}");
    c.close().await.unwrap();
}

/// Whether the service worker's cache holds this page.
async fn page_kept(c: &Client) -> bool {
    let script = "var done = arguments[arguments.length - 1]; \
                  caches.open('yunwei-inspection-v1').then(function (k) { return k.match(location.pathname); }) \
                  .then(function (r) { done(!!r); }, function () { done(false); });";
    c.execute_async(script, vec![]).await.unwrap() == Value::Bool(true)
}

async fn wait_js(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while js(c, script).await != Value::Bool(true) {
        assert!(Instant::now() < deadline, "{what}: {}", text(c).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checklist_reloaded_without_a_network_still_opens_and_keeps_readings() {
    let Some(driver) = chromedriver() else { return };
    let mut s = TestServer::start(crate::harness::Engine::Sqlite).await.unwrap();
    let cid = s.contract("IB2").await;
    s.member("pm.chen", cid, ContractRole::ProjectManager).await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    let mut pm = s.login("pm.chen").await;
    let r = pm
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/inspection-plans"),
            Some(json!({
                "name": "UPS 巡检", "frequency": "daily",
                "targets": [{ "kind": "room", "ref": "UPS 室" }],
                "items": [{ "key": "ups", "label": "UPS 运行正常" }]
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    s.state.clock.advance_ms(86_400_000);
    yunwei_web::jobs::run_inspections(&s.state, "test-node").await.unwrap();
    // A day later the session has timed out.
    let mut pm = s.login("pm.chen").await;
    let runs = pm.api(Method::GET, &format!("/api/v1/contracts/{cid}/inspection-runs"), None).await.json();
    let rid = runs["items"][0]["id"].as_i64().unwrap();
    let base = s.base.clone();
    let run_page = format!("{base}/c/{cid}/inspections/runs/{rid}");

    let c = browser(&driver, PHONE).await;
    let login = |c: Client| {
        let base = base.clone();
        async move {
            c.goto(&format!("{base}/login")).await.unwrap();
            c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys("eng.wang").await.unwrap();
            c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
            c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
            c.wait().for_element(Locator::Css("form[action='/logout']")).await.unwrap();
            c
        }
    };
    let c = login(c).await;
    c.goto(&run_page).await.unwrap();
    c.wait().for_element(Locator::Css("form[data-cell-form]")).await.unwrap();
    // The page registers the worker; from the next load on, it answers (and keeps) the page.
    wait_js(&c, "return !!(navigator.serviceWorker && navigator.serviceWorker.controller)", "no service worker").await;
    c.refresh().await.unwrap();
    c.wait().for_element(Locator::Css("form[data-cell-form]")).await.unwrap();
    assert!(page_kept(&c).await, "the run page was not kept for offline use");

    // Logging out drops what was kept: the page is this engineer's.
    c.find(Locator::Css("form[action='/logout'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/login']")).await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    assert!(!page_kept(&c).await, "a logged-out browser still holds the run page");
    let c = login(c).await;
    c.goto(&run_page).await.unwrap();
    c.wait().for_element(Locator::Css("form[data-cell-form]")).await.unwrap();
    assert!(page_kept(&c).await);

    // The server is gone (no network in the machine room): a reload still opens the checklist,
    // from the worker's copy, and a reading taken now waits on the phone.
    s.stop().await;
    c.refresh().await.unwrap();
    if let Err(e) = c.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css("[data-cached='1']")).await {
        panic!("the checklist did not open offline ({e}): {}", text(&c).await);
    }
    c.find(Locator::Css("li.cell[data-item=ups] button[value=true]")).await.unwrap().click().await.unwrap();
    wait_js(
        &c,
        &format!("return JSON.parse(localStorage.getItem('yunwei.inspection.queue.{cid}') || '[]').length === 1"),
        "the offline reading was not kept",
    )
    .await;
    // Its time is on the server's clock (the offset measured online), not the stale page's.
    let at =
        js(&c, &format!("return JSON.parse(localStorage.getItem('yunwei.inspection.queue.{cid}'))[0].recorded_at"))
            .await
            .as_i64()
            .unwrap();
    let server_now = s.state.clock.now_ms();
    assert!((at - server_now).abs() < 60_000, "recorded_at {at} vs the server's clock {server_now}");
    c.close().await.unwrap();
}
