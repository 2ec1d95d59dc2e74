//! Browser tests in headless Chromium (Debian's `chromium` and `chromium-driver`), driven over
//! WebDriver: what a person sees and does, including on a phone-sized screen.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use yunwei_core::authz::{AdminPermission, ContractRole};

use crate::harness::{Engine, PASSWORD, TestServer};

struct ChromeDriver {
    child: Child,
    port: u16,
    profile: std::path::PathBuf,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Starts chromedriver on a free port, or says why not (a failure under CI=true).
fn chromedriver() -> Option<ChromeDriver> {
    let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    if !std::path::Path::new(&bin).exists() || !std::path::Path::new("/usr/bin/chromium").exists() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but chromium/chromedriver are not installed (.ci/run installs them)");
        }
        eprintln!("SKIPPED: browser tests need Debian's chromium and chromium-driver");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child =
        Command::new(bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = std::env::temp_dir().join(format!("yunwei-chrome-{}", yunwei_storage::random_token(6)));
    Some(ChromeDriver { child, port, profile })
}

async fn browser(driver: &ChromeDriver) -> Client {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
                format!("--user-data-dir={}", driver.profile.display()), "--window-size=1280,900"
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session")
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

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
    let c = browser(&driver).await;

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
    let c = browser(&driver).await;
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
