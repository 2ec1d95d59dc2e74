//! The service desk in headless Chromium: the desk logs a phone call and dispatches it in one form,
//! the engineer takes it up, writes the fault analysis and solves it, the reporter confirms it with
//! a rating; along the way the list search, saved filters, the inbox count, an attachment upload
//! and a phone-sized screen.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use reqwest::{Method, StatusCode};
use yunwei_core::authz::ContractRole;

use crate::chrome::{DESKTOP, browser, chromedriver, text};
use crate::harness::{Browser, Engine, PASSWORD, TestServer};

/// 2022-03-01 10:00 in Shanghai: inside the 004 contract's year.
const T0: i64 = 1_646_100_000_000;

async fn login(c: &Client, base: &str, who: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys(who).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/logout']")).await.unwrap();
}

async fn logout(c: &Client) {
    c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.unwrap();
}

async fn fill(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).send_keys(value).await.unwrap();
}

async fn choose(c: &Client, css: &str, value: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("{css} has no option {value}: {e}"));
}

/// Waits until the ticket page shows the state, or fails with what the page says instead.
async fn wait_state(c: &Client, label: &str) {
    let xpath = format!("//span[@id='ticket-state' and normalize-space()='{label}']");
    if let Err(e) = c.wait().at_most(Duration::from_secs(15)).for_element(Locator::XPath(&xpath)).await {
        panic!("the ticket page never showed the state {label} ({e}); the page says:\n{}", text(c).await);
    }
}

async fn fits_phone(c: &Client, base: &str, path: &str) {
    c.goto(&format!("{base}{path}")).await.unwrap();
    c.wait().for_element(Locator::Css("main")).await.unwrap();
    let fits = c.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1", vec![]).await.unwrap();
    assert_eq!(fits, serde_json::Value::Bool(true), "{path} overflows a 390 px screen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_logs_and_dispatches_a_call_engineer_solves_reporter_confirms() {
    let Some(driver) = chromedriver() else { return };
    let s = TestServer::start(Engine::Sqlite).await.unwrap();
    // Into the contract year before any user or session exists.
    s.set_now(T0);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    let zhou = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    let base = s.base.clone();
    let c = browser(&driver, DESKTOP).await;

    // --- The desk takes the call and dispatches it in one submit (SD1, SD2).
    login(&c, &base, "desk.li").await;
    let started = Instant::now();
    click(&c, "nav.main a[href$='/tickets/new']").await;
    c.wait().for_element(Locator::Css("form.intake")).await.unwrap();
    choose(&c, "select[name=kind]", "fault").await;
    choose(&c, "select[name=channel]", "phone").await;
    choose(&c, "select[name=level]", "L3").await;
    fill(&c, "input[name=title]", "业务数据库主从同步失败").await;
    fill(&c, "textarea[name=description]", "从库复制中断，统计数据未更新").await;
    choose(&c, "select[name=reporter_user_id]", &zhou.to_string()).await;
    fill(&c, "input[name=reporter_contact]", "028-12345678").await;
    choose(&c, "select[name=system_name]", "数据交换子系统").await;
    choose(&c, "select[name=dispatch_to]", &eng.to_string()).await;
    click(&c, "form.intake button[type=submit]").await;
    wait_state(&c, "已交办").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "logging and dispatching took {took:?}");
    let page = text(&c).await;
    for needle in
        ["业务数据库主从同步失败", "用户user.zhou", "用户eng.wang", "028-12345678", "数据交换子系统", "L3", "电话"]
    {
        assert!(page.contains(needle), "the ticket page shows {needle}:\n{page}");
    }
    // The SLA timeline: the dispatch clock met, the response and resolution clocks running.
    for needle in ["服务时限", "响应", "20 分钟", "4 小时", "计时中", "已达标"] {
        assert!(page.contains(needle), "the SLA timeline shows {needle}:\n{page}");
    }
    let url = c.current_url().await.unwrap();
    let id: i64 = url.path().rsplit('/').next().unwrap().parse().unwrap();

    // An attachment through the page's script (raw body to the API with the CSRF header).
    let log = std::env::temp_dir().join(format!("yunwei-{}-同步日志.txt", yunwei_storage::random_token(4)));
    std::fs::write(&log, "2022-03-01 09:55 Slave_SQL_Running: No\n").unwrap();
    fill(&c, "form.upload input[type=file]", log.to_str().unwrap()).await;
    click(&c, "form.upload button[type=submit]").await;
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!("a[href^='/c/{cid}/tickets/{id}/files/']")))
        .await
        .unwrap_or_else(|e| panic!("the upload is not listed ({e})"));
    let _ = std::fs::remove_file(&log);

    // The list finds it by a word inside the title (Chinese has no spaces between words).
    c.goto(&format!("{base}/c/{cid}/tickets")).await.unwrap();
    fill(&c, "form.filters input[name=q]", "数据库").await;
    click(&c, "form.filters button[type=submit]").await;
    c.wait().for_element(Locator::LinkText("业务数据库主从同步失败")).await.unwrap();
    // … and keeps the search as a saved filter that opens the same list.
    fill(&c, "form[action$='/tickets/filters'] input[name=name]", "数据库问题").await;
    click(&c, "form[action$='/tickets/filters'] button[type=submit]").await;
    c.wait().for_element(Locator::LinkText("数据库问题")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::LinkText("业务数据库主从同步失败")).await.unwrap();
    // A word that is not there finds nothing.
    c.goto(&format!("{base}/c/{cid}/tickets?q=%E6%89%93%E5%8D%B0%E6%9C%BA")).await.unwrap();
    c.wait().for_element(Locator::Css("table.tickets")).await.unwrap();
    assert!(c.find(Locator::LinkText("业务数据库主从同步失败")).await.is_err(), "打印机 does not match");

    // English at one click, and the desk's pages fit a phone.
    c.goto(&format!("{base}/c/{cid}/tickets/{id}")).await.unwrap();
    click(&c, "a.lang").await;
    wait_state(&c, "Dispatched").await;
    click(&c, "a.lang").await;
    wait_state(&c, "已交办").await;
    c.set_window_size(390, 844).await.unwrap();
    for path in [
        format!("/c/{cid}/tickets"),
        format!("/c/{cid}/tickets/{id}"),
        format!("/c/{cid}/tickets/new"),
        format!("/c/{cid}/tickets/stats?month=2022-03"),
        "/inbox".to_string(),
    ] {
        fits_phone(&c, &base, &path).await;
    }
    c.set_window_size(1280, 900).await.unwrap();
    logout(&c).await;

    // --- The engineer: told in the inbox, takes it up, writes the analysis, solves (SD7).
    login(&c, &base, "eng.wang").await;
    let nav = c.find(Locator::Css("nav.main")).await.unwrap().text().await.unwrap();
    assert!(nav.contains("通知 (1)"), "the dispatch is counted in the navigation: {nav}");
    click(&c, "nav.main a[href='/inbox']").await;
    c.wait().for_element(Locator::XPath("//*[contains(text(), '新派单')]")).await.unwrap();
    click(&c, "form[action='/inbox/read'] input[name=open] ~ button").await;
    wait_state(&c, "已交办").await;
    let nav = c.find(Locator::Css("nav.main")).await.unwrap().text().await.unwrap();
    assert!(!nav.contains("通知 ("), "opening it marked it read: {nav}");
    click(&c, "button[name=action][value=accept]").await;
    wait_state(&c, "处理中").await;
    assert!(
        c.find(Locator::Css("button[name=action][value=solve]")).await.is_err(),
        "004 requires the fault analysis before solving"
    );
    fill(&c, "#analysis textarea[name=cause]", "主库磁盘写满导致复制线程中断").await;
    fill(&c, "#analysis textarea[name=process]", "清理归档日志，重建复制并校验数据").await;
    fill(&c, "#analysis textarea[name=impact]", "统计报表延迟两小时").await;
    fill(&c, "#analysis textarea[name=recommendation]", "增加磁盘容量告警").await;
    click(&c, "#analysis button[type=submit]").await;
    // Recorded: now the step is offered.
    c.wait().for_element(Locator::Css("button[name=action][value=solve]")).await.unwrap();
    fill(&c, "form.others textarea[name=comment]", "复制已恢复，数据已校验").await;
    click(&c, "button[name=action][value=solve]").await;
    wait_state(&c, "待确认").await;
    logout(&c).await;

    // --- The reporter sees it in their own list and confirms with a rating (SD6).
    login(&c, &base, "user.zhou").await;
    assert!(
        c.find(Locator::Css("nav.main a[href$='/tickets/stats']")).await.is_err(),
        "end users have no statistics entry"
    );
    click(&c, "nav.main a[href$='/tickets']").await;
    c.wait().for_element(Locator::LinkText("业务数据库主从同步失败")).await.unwrap().click().await.unwrap();
    wait_state(&c, "待确认").await;
    let page = text(&c).await;
    assert!(page.contains("复制已恢复，数据已校验"), "the engineer's note reaches the reporter:\n{page}");
    assert!(!page.contains("已发出的通知"), "fired notices are the vendor's business");
    click(&c, "form.confirm input[name=rating][value='5']").await;
    fill(&c, "form.confirm textarea[name=rating_comment]", "处理及时").await;
    click(&c, "form.confirm button[type=submit]").await;
    wait_state(&c, "已结案").await;
    assert!(text(&c).await.contains("5/5"), "the rating is shown");
    c.close().await.unwrap();

    // --- The same through the API and storage.
    let mut desk = s.login("desk.li").await;
    let r = desk.api(Method::GET, &format!("/api/v1/contracts/{cid}/tickets/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = r.json();
    assert_eq!(d["ticket"]["state"], "closed");
    assert_eq!(d["ticket"]["rating"], 5);
    assert_eq!(d["ticket"]["level"], "L3");
    assert_eq!(d["ticket"]["channel"], "phone");
    assert_eq!(d["ticket"]["reporter_user_id"], zhou);
    assert_eq!(d["ticket"]["assignee_user_id"], eng);
    assert_eq!(d["ticket"]["analysis"]["cause"], "主库磁盘写满导致复制线程中断");
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let t = yunwei_storage::tickets::get(&s.state.db, &scope, id).await.unwrap();
    assert_eq!((t.state.as_str(), t.is_open, t.rating), ("closed", false, Some(5)));
    // The attachment's page address serves it as a download with its protective headers.
    let aid = d["attachments"][0]["id"].as_i64().unwrap();
    let r = desk.get(&format!("/c/{cid}/tickets/{id}/files/{aid}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert!(r.body.contains("Slave_SQL_Running"));
}

/// The same pages over plain HTTP on both engines: the portal form, refusals shown on the page,
/// who sees what, saved filters being personal, statistics for reporting roles only.
async fn desk_pages_permissions_and_saved_filters(s: TestServer) {
    s.set_now(T0);
    let cid = s.seed_contract("004-chengdu-dcm.toml").await;
    let other_cid = s.contract("OTHER").await;
    s.member("desk.li", cid, ContractRole::ServiceDesk).await;
    let eng = s.member("eng.wang", cid, ContractRole::Engineer).await;
    let zhou = s.member("user.zhou", cid, ContractRole::ClientEndUser).await;
    s.member("user.wu", cid, ContractRole::ClientEndUser).await;
    s.member("stranger", other_cid, ContractRole::ServiceDesk).await;
    let mut desk = s.login("desk.li").await;

    // The desk's form: refusals come back on the same form with what was typed.
    let r = desk.get(&format!("/c/{cid}/tickets/new")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("name=\"dispatch_to\"") && r.body.contains("L3 三级"), "{}", r.body);
    let r = desk
        .post_form(
            &format!("/c/{cid}/tickets"),
            &[("kind", "fault"), ("level", "L3"), ("title", ""), ("channel", "phone"), ("reporter_name", "王先生")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("flash error") && r.body.contains("王先生"), "{}", r.body);
    let r = desk
        .post_form(
            &format!("/c/{cid}/tickets"),
            &[
                ("kind", "fault"),
                ("level", "L3"),
                ("title", "打印机卡纸"),
                ("channel", "phone"),
                ("reporter_name", "王先生"),
                ("received_at", "2022-03-02T10:00"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "a time in the future is refused");
    assert!(r.body.contains("受理时间不能晚于当前时间"), "{}", r.body);
    let r = desk
        .post_form(
            &format!("/c/{cid}/tickets"),
            &[
                ("kind", "fault"),
                ("level", "L2"),
                ("title", "打印机卡纸"),
                ("channel", "phone"),
                ("reporter_user_id", &zhou.to_string()),
                ("received_at", "2022-03-01T09:58"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let ticket_page = r.location().to_string();
    let id: i64 = ticket_page.rsplit('/').next().unwrap().parse().unwrap();
    let r = desk.get(&ticket_page).await;
    assert!(r.body.contains("已受理") && r.body.contains("2022-03-01 09:58:00"), "{}", r.body);
    let version = |body: &str| -> String {
        let i = body.find("name=\"version\" value=\"").unwrap() + 22;
        body[i..i + body[i..].find('"').unwrap()].to_string()
    };
    let v = version(&r.body);
    // Dispatch from the ticket page, then the same stale form again: 409, reload.
    let r = desk
        .post_form(
            &format!("/c/{cid}/tickets/{id}/act"),
            &[("action", "dispatch"), ("version", &v), ("assignee_user_id", &eng.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = desk.post_form(&format!("/c/{cid}/tickets/{id}/act"), &[("action", "cancel"), ("version", &v)]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("刷新"), "a conflict says to reload: {}", r.body);
    assert!(r.body.contains("已交办"), "the page shows the current state");
    // Time spent and an internal comment.
    let r = desk.post_form(&format!("/c/{cid}/tickets/{id}/work"), &[("minutes", "15"), ("note", "电话指导")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = desk
        .post_form(&format!("/c/{cid}/tickets/{id}/comment"), &[("body", "内部：备件已申请"), ("internal", "1")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // The portal: an end user reports for themselves, on the web, at the contract's last level.
    let mut zhou_b = s.login("user.zhou").await;
    let r = zhou_b.get(&format!("/c/{cid}/tickets/new")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("报告问题") && !r.body.contains("name=\"level\""), "{}", r.body);
    let r =
        zhou_b.post_form(&format!("/c/{cid}/tickets"), &[("title", "系统登录慢"), ("reporter_contact", "139")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let portal_id: i64 = r.location().rsplit('/').next().unwrap().parse().unwrap();
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let t = yunwei_storage::tickets::get(&s.state.db, &scope, portal_id).await.unwrap();
    assert_eq!((t.channel.as_str(), t.level.as_str(), t.reporter_user_id), ("web", "L4", Some(zhou)));
    // Their list: their own reports only, without the internal comment on the ticket page.
    let r = zhou_b.get(&format!("/c/{cid}/tickets")).await;
    assert!(r.body.contains("系统登录慢") && r.body.contains("打印机卡纸"), "{}", r.body);
    assert!(!r.body.contains("导出 Excel"), "no export for end users");
    let r = zhou_b.get(&ticket_page).await;
    assert!(!r.body.contains("备件已申请") && !r.body.contains("登记工时"), "{}", r.body);
    assert_eq!(zhou_b.get(&format!("/c/{cid}/tickets/stats")).await.status, StatusCode::FORBIDDEN);
    // Another end user of the same contract sees neither.
    let mut wu = s.login("user.wu").await;
    assert_eq!(wu.get(&ticket_page).await.status, StatusCode::NOT_FOUND);
    let r = wu.get(&format!("/c/{cid}/tickets")).await;
    assert!(!r.body.contains("打印机卡纸") && !r.body.contains("系统登录慢"));
    // A member of another contract learns nothing.
    let mut stranger = s.login("stranger").await;
    assert_eq!(stranger.get(&format!("/c/{cid}/tickets")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(stranger.get(&ticket_page).await.status, StatusCode::NOT_FOUND);

    // Saved filters belong to one person.
    let r = desk
        .post_form(
            &format!("/c/{cid}/tickets/filters"),
            &[("name", "打印机"), ("query", "view=all&q=%E6%89%93%E5%8D%B0")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Saving under the same name replaces the query.
    let r = desk
        .post_form(
            &format!("/c/{cid}/tickets/filters"),
            &[("name", "打印机"), ("query", "view=open&q=%E6%89%93%E5%8D%B0")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let mine = yunwei_storage::saved_filters::list(&s.state.db, &scope_of(&s, &desk, cid).await).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].query, "view=open&q=%E6%89%93%E5%8D%B0");
    let r = desk.get(&format!("/c/{cid}/tickets?{}", mine[0].query)).await;
    assert!(r.body.contains("打印机卡纸") && !r.body.contains("系统登录慢"), "{}", r.body);
    let mut engb = s.login("eng.wang").await;
    let r = engb.get(&format!("/c/{cid}/tickets")).await;
    assert!(!r.body.contains("/tickets/filters/"), "another person's filters are not listed");
    let r = engb.post_form(&format!("/c/{cid}/tickets/filters/{}/delete", mine[0].id), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "nor deletable");
    let r = desk.post_form(&format!("/c/{cid}/tickets/filters/{}/delete", mine[0].id), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        yunwei_storage::saved_filters::list(&s.state.db, &scope_of(&s, &desk, cid).await).await.unwrap().is_empty()
    );

    // Statistics of the month for the desk.
    let r = desk.get(&format!("/c/{cid}/tickets/stats?month=2022-03")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("人员绩效") && r.body.contains("用户eng.wang"), "{}", r.body);
    let r = desk.get(&format!("/c/{cid}/tickets/stats?month=2022-13")).await;
    assert!(r.body.contains("月份格式应为 YYYY-MM"), "{}", r.body);

    // The inbox: the engineer was told of the dispatch; all read at once.
    let r = engb.get("/inbox").await;
    assert!(r.body.contains("新派单") && r.body.contains("通知 (1)"), "{}", r.body);
    let r = engb.post_form("/inbox/read", &[]).await;
    assert_eq!(r.location(), "/inbox");
    let r = engb.get("/inbox").await;
    assert!(!r.body.contains("通知 ("), "{}", r.body);
}

/// The contract scope of a logged-in browser's session, for reading back what the pages stored.
async fn scope_of(s: &TestServer, b: &Browser, cid: i64) -> yunwei_storage::ContractScope {
    let token = &b.cookies["yw_session"];
    let session = yunwei_storage::sessions::lookup(&s.state.db, token, "test", s.now()).await.unwrap().unwrap();
    session.principal("test").contract_scope(&s.state.db, cid).await.unwrap()
}

crate::both_engines!(desk_pages_permissions_and_saved_filters);
