//! Browser tests in headless Chromium (Debian's `chromium` and `chromium-driver`), driven over
//! WebDriver: what a person sees and does, including on a phone-sized screen.

use fantoccini::Locator;
use yunwei_core::authz::{AdminPermission, ContractRole};

use crate::chrome::{DESKTOP, browser, chromedriver, text};
use crate::harness::{Engine, PASSWORD, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_manager_logs_in_and_reads_the_contract() {
    let Some(driver) = chromedriver() else { return };
    let s = TestServer::start(Engine::Sqlite).await.unwrap();
    let admin = s.operator().admin_scope(AdminPermission::ContractManage).unwrap();
    let file = include_str!("../../../../contracts/004-chengdu-dcm.toml");
    let cid = yunwei_storage::contract_files::import(&s.state.db, &admin, file.as_bytes(), s.now())
        .await
        .unwrap()
        .contract_id;
    s.member("pm", cid, ContractRole::ProjectManager).await;
    let c = browser(&driver, DESKTOP).await;

    c.goto(&format!("{}/login", s.base)).await.unwrap();
    c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys("pm").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait()
        .for_element(Locator::LinkText("成都市数字化城市管理信息系统年度运维服务"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("table")).await.unwrap();
    let body = text(&c).await;
    for needle in ["服务等级与时限", "10 分钟", "3 小时", "驻场服务时间", "升级矩阵", "成都市电子政务云计算中心机房"]
    {
        assert!(body.contains(needle), "the contract page shows {needle}");
    }
    // The month view of a calendar opens from the page.
    c.find(Locator::Css("a[href*='calendar?name=onsite']")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("table.month")).await.unwrap();
    assert!(text(&c).await.contains("h"), "hours per day are listed");
    c.back().await.unwrap();
    // English at one click, Chinese again at the next.
    c.find(Locator::Css("a.lang")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::XPath("//*[contains(text(), 'Service levels and deadlines')]")).await.unwrap();
    c.find(Locator::Css("a.lang")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::XPath("//*[contains(text(), '服务等级与时限')]")).await.unwrap();
    // A phone-sized screen: nothing wider than the screen (wide tables scroll inside their card).
    c.set_window_size(390, 844).await.unwrap();
    for path in ["/", &format!("/c/{cid}")] {
        c.goto(&format!("{}{path}", s.base)).await.unwrap();
        let fits =
            c.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1", vec![]).await.unwrap();
        assert_eq!(fits, serde_json::Value::Bool(true), "{path} overflows a 390 px screen");
    }
    // Logging out ends the session: the contract page sends the browser back to the login form.
    c.find(Locator::Css("form[action='/logout'] button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
    c.goto(&format!("{}/c/{cid}", s.base)).await.unwrap();
    c.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_shows_a_message_and_the_form_again() {
    let Some(driver) = chromedriver() else { return };
    let s = TestServer::start(Engine::Sqlite).await.unwrap();
    let cid = s.contract("A").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    let c = browser(&driver, DESKTOP).await;
    c.goto(&format!("{}/login", s.base)).await.unwrap();
    c.find(Locator::Css("input[name=login]")).await.unwrap().send_keys("eng").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("Wrong#Pass123").await.unwrap();
    c.find(Locator::Css("form[action='/login'] button[type=submit]")).await.unwrap().click().await.unwrap();
    let alert = c.wait().for_element(Locator::Css(".flash.error")).await.unwrap();
    assert_eq!(alert.text().await.unwrap(), "登录名或密码错误");
    // The login name is kept; the password is not.
    let login = c.find(Locator::Css("input[name=login]")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(login.as_deref(), Some("eng"));
    c.close().await.unwrap();
}
