//! Headless Chromium (Debian's `chromium` and `chromium-driver`) for the browser tests, driven over
//! WebDriver: one chromedriver per test, a private profile removed afterwards.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// A desktop screen.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone held upright (the machine-room pages must work on it).
pub const PHONE: (u32, u32) = (390, 844);

pub struct ChromeDriver {
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

/// Starts chromedriver on a free port, or says why not (a failure under CI=true, where `.ci/run`
/// installs both packages).
pub fn chromedriver() -> Option<ChromeDriver> {
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

/// A browser session with the flags the project runs Chromium with (no network of its own, no
/// updates, no first-run pages), on a screen of `size` (width, height).
pub async fn browser(driver: &ChromeDriver, size: (u32, u32)) -> Client {
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
                format!("--user-data-dir={}", driver.profile.display()),
                format!("--window-size={},{}", size.0, size.1)
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

/// The visible text of the page.
pub async fn text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}
