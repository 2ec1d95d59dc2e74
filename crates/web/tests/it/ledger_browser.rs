//! The reconciliation round in headless Chromium on a phone-sized screen, as an engineer works it in
//! the machine room: open the round, find an item, tap "found", record a move with its new room;
//! the page never scrolls sideways and the buttons are big enough to tap.

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::{Method, StatusCode};
use serde_json::json;
use yunwei_core::authz::ContractRole;

use crate::chrome::{DESKTOP, browser, chromedriver, text};
use crate::harness::{PASSWORD, TestServer};

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.unwrap();
}

/// Nothing on the page is wider than the screen: wide content scrolls inside its card.
async fn fits_phone(c: &Client, what: &str) {
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1 \
             && document.body.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, serde_json::Value::Bool(true), "{what} scrolls sideways on a 390 px screen");
}

/// Waits for an element, or fails with what the page says instead.
async fn wait_for(c: &Client, l: Locator<'_>, what: &str) {
    if let Err(e) = c.wait().at_most(Duration::from_secs(15)).for_element(l).await {
        panic!("no {what} ({e}); the page says:\n{}", text(c).await);
    }
}

/// Waits for the confirmation after a mark, or fails with what the page says instead.
async fn wait_marked(c: &Client, name: &str) {
    let xpath = format!("//div[contains(@class, 'flash') and contains(@class, 'ok') and contains(., '{name}')]");
    if let Err(e) = c.wait().at_most(Duration::from_secs(15)).for_element(Locator::XPath(&xpath)).await {
        panic!("no confirmation for {name} ({e}); the page says:\n{}", text(c).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engineer_marks_a_round_on_a_phone() {
    let Some(driver) = chromedriver() else { return };
    let s = TestServer::start(crate::harness::Engine::Sqlite).await.unwrap();
    let cid = s.contract("LB1").await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    // The ledger and the round, through the API.
    let mut api = s.login("eng.wang").await;
    let r = api
        .api(
            Method::POST,
            &format!("/api/v1/contracts/{cid}/sites"),
            Some(json!({ "name": "一号机房", "kind": "machine_room" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let site = r.json()["id"].as_i64().unwrap();
    let mut ids = Vec::new();
    for (kind, name, no) in [
        ("network", "核心交换机", "ZC-2022-0001-NETWORK-CORE-SWITCH-A"),
        ("security", "下一代防火墙", "ZC-2022-0002"),
        ("environment", "精密空调（机房北侧，带很长的型号说明以测试换行）", "ZC-2022-0003"),
    ] {
        let body = json!({ "kind": kind, "name": name, "asset_no": no, "site_id": site, "room": "301", "rack": "A-03",
                           "model": "S12708-X-LONG-MODEL-NAME-WITHOUT-SPACES-1234567890" });
        let r = api.api(Method::POST, &format!("/api/v1/contracts/{cid}/assets"), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(r.json()["id"].as_i64().unwrap());
    }
    let r = api
        .api(Method::POST, &format!("/api/v1/contracts/{cid}/reconciliations"), Some(json!({ "period": "2026-03" })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let rid = r.json()["id"].as_i64().unwrap();

    let base = s.base.clone();
    let c = browser(&driver, DESKTOP).await;
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys("eng.wang").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    click(&c, "form[action='/login'] button[type=submit]").await;
    c.wait().for_element(Locator::Css("form[action='/logout']")).await.unwrap();

    // From the navigation to the round.
    click(&c, &format!("nav.main a[href='/c/{cid}/assets/rounds']")).await;
    c.wait().for_element(Locator::Css("a.round-link")).await.unwrap();
    fits_phone(&c, "the rounds page").await;
    click(&c, "a.round-link").await;
    c.wait().for_element(Locator::Css("ul.round-items")).await.unwrap();
    fits_phone(&c, "the round page").await;
    assert!(text(&c).await.contains("已清查 0 / 3"), "{}", text(&c).await);
    // Big tap targets: each mark button at least 44 px high and 60 px wide.
    let sizes = c
        .execute(
            "return Array.from(document.querySelectorAll('form.mark button')).map(function (b) { \
               var r = b.getBoundingClientRect(); return [r.width, r.height]; })",
            vec![],
        )
        .await
        .unwrap();
    let sizes = sizes.as_array().unwrap();
    assert_eq!(sizes.len(), 12, "four buttons per item");
    for s in sizes {
        let (w, h) = (s[0].as_f64().unwrap(), s[1].as_f64().unwrap());
        assert!(w >= 60.0 && h >= 44.0, "a mark button is {w}×{h} px");
    }

    // The switch is found.
    click(&c, &format!("#item-{} button.m-found", ids[0])).await;
    wait_marked(&c, "核心交换机").await;
    fits_phone(&c, "the round page after a mark").await;
    assert!(c.find(Locator::Css(&format!("#item-{}", ids[0]))).await.is_err(), "the pending view drops a checked item");
    assert!(text(&c).await.contains("已清查 1 / 3"));

    // The search box finds the firewall; "moved" first opens the details, then records the new room.
    let q = c.find(Locator::Css("form.round-search input[name=q]")).await.unwrap();
    q.send_keys("防火墙").await.unwrap();
    click(&c, "form.round-search button[type=submit]").await;
    c.wait().for_element(Locator::Css(&format!("#item-{}", ids[1]))).await.unwrap();
    assert!(c.find(Locator::Css(&format!("#item-{}", ids[2]))).await.is_err(), "the search narrows the list");
    let item = format!("#item-{}", ids[1]);
    click(&c, &format!("{item} button.m-moved")).await;
    let open =
        c.execute(&format!("return document.querySelector('{item} details.mark-detail').open"), vec![]).await.unwrap();
    assert_eq!(open, serde_json::Value::Bool(true), "the first tap on moved opens the details");
    let room = c.find(Locator::Css(&format!("{item} input[name=room]"))).await.unwrap();
    room.clear().await.unwrap();
    room.send_keys("305").await.unwrap();
    click(&c, &format!("{item} button.m-moved")).await;
    wait_marked(&c, "下一代防火墙").await;
    fits_phone(&c, "the round page after a move").await;

    // The ledger followed the move.
    let r = api.api(Method::GET, &format!("/api/v1/contracts/{cid}/assets/{}", ids[1]), None).await;
    assert_eq!(r.json()["room"], "305");
    let r = api.api(Method::GET, &format!("/api/v1/contracts/{cid}/reconciliations/{rid}"), None).await;
    assert_eq!(r.json()["counts"]["found"], 1);
    assert_eq!(r.json()["counts"]["moved"], 1);
    // The asset page and the report fit the phone too.
    for path in [
        format!("/c/{cid}/assets/{}", ids[1]),
        format!("/c/{cid}/assets/rounds/{rid}/report"),
        format!("/c/{cid}/assets"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        c.wait().for_element(Locator::Css("main")).await.unwrap();
        fits_phone(&c, &path).await;
    }
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_page_checks_first_then_commits() {
    let Some(driver) = chromedriver() else { return };
    let s = TestServer::start(crate::harness::Engine::Sqlite).await.unwrap();
    let cid = s.contract("LB2").await;
    s.member("eng.wang", cid, ContractRole::Engineer).await;
    let dir = std::env::temp_dir().join(format!("yunwei-import-{}", yunwei_storage::random_token(4)));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "设备名称,品牌型号,数量\n核心交换机,S12708,1\n跳线,,abc\n").unwrap();
    let good = dir.join("good.csv");
    std::fs::write(&good, "设备名称,品牌型号,数量\n核心交换机,S12708,1\n超五类跳线,,4000\n").unwrap();

    let base = s.base.clone();
    let c = browser(&driver, DESKTOP).await;
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys("eng.wang").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    click(&c, "form[action='/login'] button[type=submit]").await;
    c.wait().for_element(Locator::Css("form[action='/logout']")).await.unwrap();
    c.goto(&format!("{base}/c/{cid}/assets/import")).await.unwrap();

    // A bad row: the report names it, no commit is offered.
    c.find(Locator::Css("input[type=file]")).await.unwrap().send_keys(bad.to_str().unwrap()).await.unwrap();
    click(&c, "button.check-button").await;
    wait_for(&c, Locator::Css("table.import-problems td"), "the table of problems").await;
    let report = c.find(Locator::Css(".import-report")).await.unwrap().text().await.unwrap();
    assert!(report.contains('3'), "row 3 is named: {report}");
    let hidden = c.execute("return document.querySelector('button.commit-button').hidden", vec![]).await.unwrap();
    assert_eq!(hidden, serde_json::Value::Bool(true));

    // A clean file: the dry run passes, the commit writes both rows.
    let input = c.find(Locator::Css("input[type=file]")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(good.to_str().unwrap()).await.unwrap();
    click(&c, "button.check-button").await;
    wait_for(&c, Locator::Css("button.commit-button:not([hidden])"), "a commit button").await;
    click(&c, "button.commit-button").await;
    let done = "//p[contains(@class, 'upload-status') and contains(., '已导入 2')]";
    wait_for(&c, Locator::XPath(done), "the import confirmation").await;
    c.goto(&format!("{base}/c/{cid}/assets")).await.unwrap();
    let body = text(&c).await;
    assert!(body.contains("超五类跳线") && body.contains("核心交换机"), "{body}");
    c.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
