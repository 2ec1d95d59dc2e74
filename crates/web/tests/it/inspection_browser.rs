//! The inspection checklist in headless Chromium on a phone-sized screen, losing its connection
//! in the machine room: one answer reaches the server but its reply is lost, the next never leaves
//! the phone; both wait in the browser's storage, survive a reload, and are synced once each.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;

use crate::harness::{PASSWORD, TestServer};

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

/// The same start-up as `browser.rs`.
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
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
                format!("--user-data-dir={}", driver.profile.display()), "--window-size=390,844"
            ]
        }
    });
    let Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session")
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

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
    let c = browser(&driver).await;
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
