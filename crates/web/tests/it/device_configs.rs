//! Network device configuration backups (AS6) against a real SSH server: Debian's OpenSSH `sshd`
//! started by each test on a free loopback port with its own host key, password authentication
//! for a dedicated local account, and a `ForceCommand` script that answers like a Huawei switch.
//!
//! The account needs root to create; outside CI a test without root or without `/usr/sbin/sshd`
//! says it was skipped, under `CI=true` it fails (`.ci/run` installs openssh-server).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use yunwei_core::authz::ContractRole;
use yunwei_storage::assets::{self, AssetInput};
use yunwei_storage::device_configs;

use crate::both_engines;
use crate::harness::{Engine, TestServer};

const USER: &str = "yw-netconf-test";
/// The account outlives the tests, so its password is no constant in the repository: derived from
/// this machine's id, the same in every test process (test runners may run several at once).
static DEVICE_PASSWORD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_else(|_| "no-machine-id".into());
    let digest = yunwei_storage::token_digest(&format!("yw-netconf-test:{}", id.trim()));
    format!("Yw#{}!q", &digest[..20])
});
const DAY: i64 = 86_400_000;

const RUNNING_V1: &str = "!Software Version V200R019C10SPC500\n\
!Last configuration was updated at 2026-03-01 10:12:03+08:00\n\
#\n\
sysname CORE-SW1\n\
#\n\
vlan batch 10 20\n\
#\n\
interface Vlanif10\n\
 description 核心业务\n\
 ip address 10.1.0.1 255.255.255.0\n\
#\n\
interface GigabitEthernet0/0/1\n\
 port link-type trunk\n\
#\n\
return\n";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn skip_or_fail(why: &str) -> Option<Sshd> {
    if ci() {
        panic!("CI=true but the loopback SSH server cannot run: {why}");
    }
    eprintln!("SKIPPED: loopback SSH server unavailable: {why}");
    None
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr))) }
}

/// The local account sshd authenticates, created once per process.
fn ensure_user() -> Result<(), String> {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let exists =
        Command::new("id").arg(USER).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !exists {
        // No home directory (sshd starts the command in /), a shell for ForceCommand.
        run(Command::new("useradd").args(["-M", "-d", "/", "-s", "/bin/sh", USER]))?;
    }
    let mut child = Command::new("chpasswd").stdin(Stdio::piped()).spawn().map_err(|e| format!("chpasswd: {e}"))?;
    use std::io::Write;
    child.stdin.take().unwrap().write_all(format!("{USER}:{}\n", *DEVICE_PASSWORD).as_bytes()).unwrap();
    if !child.wait().map_err(|e| e.to_string())?.success() {
        return Err("chpasswd failed".into());
    }
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
    *done = true;
    Ok(())
}

/// The device's behaviour, read by the forced command on every call.
const SCRIPT: &str = r#"#!/bin/sh
# A Huawei-like device: answers by $SSH_ORIGINAL_COMMAND, with CRLF line ends like the real CLI.
dir="$(dirname "$0")"
mode="$(cat "$dir/mode" 2>/dev/null)"
echo "$SSH_ORIGINAL_COMMAND" >> "$dir/log"
crlf() { sed 's/$/\r/' "$1"; }
case "$SSH_ORIGINAL_COMMAND" in
  "screen-length 0 temporary")
    echo "Info: The configuration takes effect on the current user terminal interface only."
    ;;
  "display current-configuration")
    case "$mode" in
      hang) exec sleep 20 ;;
      paged)
        head -n 6 "$dir/running.txt" | sed 's/$/\r/'
        printf '  ---- More ----'
        # Waits for the space a pager wants (5 s at most, then gives up like a VTY would).
        timeout 5 dd bs=1 count=1 status=none >/dev/null || exit 3
        printf '\033[42D                                          \033[42D'
        tail -n +7 "$dir/running.txt" | sed 's/$/\r/'
        ;;
      *) crlf "$dir/running.txt" ;;
    esac
    ;;
  "display saved-configuration")
    if [ -f "$dir/saved.txt" ]; then crlf "$dir/saved.txt"; else
      echo "Error: The system configuration file does not exist."; exit 1; fi
    ;;
  *)
    echo "Error: Unrecognized command found at '^' position."
    exit 1
    ;;
esac
"#;

/// A loopback sshd for one test, stopped when dropped.
struct Sshd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Sshd {
    fn start() -> Option<Sshd> {
        if !Path::new("/usr/sbin/sshd").exists() {
            return skip_or_fail("/usr/sbin/sshd is missing (apt-get install openssh-server)");
        }
        if !is_root() {
            return skip_or_fail("creating the test account needs root");
        }
        if let Err(e) = ensure_user() {
            return skip_or_fail(&e);
        }
        let dir = std::env::temp_dir().join(format!("yw-sshd-{}", yunwei_storage::random_token(6)));
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        std::fs::write(dir.join("device.sh"), SCRIPT).unwrap();
        set_mode(&dir.join("device.sh"), 0o755);
        std::fs::write(dir.join("log"), "").unwrap();
        set_mode(&dir.join("log"), 0o666);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = Sshd { dir, port, child: None };
        s.set_running(RUNNING_V1);
        s.set_saved(Some(RUNNING_V1));
        s.set_mode("normal");
        s.new_host_key();
        s.launch();
        Some(s)
    }

    fn new_host_key(&self) {
        let key = self.dir.join("host_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(self.dir.join("host_key.pub"));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key)).unwrap();
    }

    fn launch(&mut self) {
        let d = self.dir.display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\nUsePAM no\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication no\n\
             AuthorizedKeysFile none\nPermitRootLogin no\nAllowUsers {USER}\nForceCommand {d}/device.sh\n\
             StrictModes no\nMaxAuthTries 3\nLoginGraceTime 20\nX11Forwarding no\nAllowTcpForwarding no\n\
             PrintMotd no\nLogLevel VERBOSE\n",
            port = self.port
        );
        std::fs::write(self.dir.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(self.dir.join("sshd.log")).unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "sshd exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "sshd did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The same address with another host key (a replaced device, or a man in the middle).
    fn restart_with_new_key(&mut self) {
        self.stop();
        self.new_host_key();
        self.launch();
    }

    fn set_running(&self, text: &str) {
        std::fs::write(self.dir.join("running.txt"), text).unwrap();
        set_mode(&self.dir.join("running.txt"), 0o644);
    }

    fn set_saved(&self, text: Option<&str>) {
        let p = self.dir.join("saved.txt");
        match text {
            Some(t) => {
                std::fs::write(&p, t).unwrap();
                set_mode(&p, 0o644);
            }
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }

    fn set_mode(&self, mode: &str) {
        std::fs::write(self.dir.join("mode"), mode).unwrap();
        set_mode(&self.dir.join("mode"), 0o644);
    }

    /// Commands the device received, in order.
    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default().lines().map(String::from).collect()
    }

    fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen").arg("-lf").arg(self.dir.join("host_key.pub")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A contract with an engineer, a project manager, a supervisor and one switch.
struct Fixture {
    cid: i64,
    asset: i64,
}

async fn fixture(s: &TestServer) -> Fixture {
    let cid = s.contract("NETCONF-1").await;
    s.member("eng", cid, ContractRole::Engineer).await;
    s.member("pm", cid, ContractRole::ProjectManager).await;
    s.member("sup", cid, ContractRole::ClientSupervisor).await;
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let input = AssetInput {
        kind: "network".into(),
        name: "核心交换机 CORE-SW1".into(),
        brand: "华为".into(),
        model: "S5735".into(),
        ips: "127.0.0.1".into(),
        ..Default::default()
    };
    let asset = assets::create(&s.state.db, &scope, &input, s.now()).await.unwrap().id;
    Fixture { cid, asset }
}

fn target_body(port: u16, password: &str) -> Value {
    json!({
        "vendor": "huawei_vrp",
        "host": "127.0.0.1",
        "port": port,
        "username": USER,
        "password": password,
        "max_age_days": 2,
    })
}

async fn pull_now(b: &mut crate::harness::Browser, f: &Fixture) -> Value {
    let r =
        b.api(Method::POST, &format!("/api/v1/contracts/{}/assets/{}/config-target/pull", f.cid, f.asset), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

async fn target(b: &mut crate::harness::Browser, f: &Fixture) -> Value {
    let r = b.api(Method::GET, &format!("/api/v1/contracts/{}/assets/{}/config-target", f.cid, f.asset), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

async fn versions(b: &mut crate::harness::Browser, f: &Fixture) -> Vec<Value> {
    let r = b.api(Method::GET, &format!("/api/v1/contracts/{}/assets/{}/configs", f.cid, f.asset), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()["items"].as_array().unwrap().clone()
}

/// Every text the database holds that could leak a secret: audit details, the target row, the
/// notifications.
async fn all_stored_text(s: &TestServer) -> String {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::AnyConnection::connect(&s.db.url).await.unwrap();
    let mut out = String::new();
    for sql in [
        "SELECT action || ' ' || detail AS t FROM audit_log",
        "SELECT password_enc AS t FROM device_config_target",
        "SELECT username || host || last_error AS t FROM device_config_target",
        "SELECT title || body AS t FROM notification",
    ] {
        for r in sqlx::query(sql).fetch_all(&mut conn).await.unwrap() {
            out.push_str(&r.try_get::<String, _>("t").unwrap());
            out.push('\n');
        }
    }
    let _ = conn.close().await;
    out
}

/// The SQLite database files (main file and write-ahead log) as bytes.
fn sqlite_bytes(s: &TestServer) -> Vec<u8> {
    let path = s.db.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_string();
    let mut bytes = std::fs::read(&path).unwrap();
    for extra in ["-wal", "-journal"] {
        if let Ok(b) = std::fs::read(format!("{path}{extra}")) {
            bytes.extend(b);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

both_engines!(pull_store_diff_and_secrets);
async fn pull_store_diff_and_secrets(s: TestServer) {
    let Some(sshd) = Sshd::start() else { return };
    let f = fixture(&s).await;
    let mut eng = s.login("eng").await;
    let base = format!("/api/v1/contracts/{}/assets/{}", f.cid, f.asset);

    // No target yet.
    let r = eng.api(Method::GET, &format!("{base}/config-target"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // An unknown vendor and a new target without password are refused.
    let mut bad = target_body(sshd.port, &DEVICE_PASSWORD);
    bad["vendor"] = json!("juniper_junos");
    let r = eng.api(Method::PUT, &format!("{base}/config-target"), Some(bad)).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("vendor")));
    let mut no_pw = target_body(sshd.port, "");
    no_pw.as_object_mut().unwrap().remove("password");
    let r = eng.api(Method::PUT, &format!("{base}/config-target"), Some(no_pw)).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("password")));

    let r =
        eng.api(Method::PUT, &format!("{base}/config-target"), Some(target_body(sshd.port, &DEVICE_PASSWORD))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = r.json();
    assert_eq!((t["password"].as_str(), t["username"].as_str()), (Some("••••"), Some(USER)));
    assert!(!r.body.contains(DEVICE_PASSWORD.as_str()));
    assert!(t["host_key_sha256"].is_null());

    // First pull: version 1, the host key trusted on first use, pre command run first.
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "stored", "{p}");
    let v1 = p["version_id"].as_i64().unwrap();
    assert_eq!(
        sshd.commands(),
        ["screen-length 0 temporary", "display current-configuration", "display saved-configuration"]
    );
    let t = target(&mut eng, &f).await;
    assert_eq!(t["host_key_sha256"].as_str(), Some(sshd.fingerprint().as_str()));
    assert_eq!(
        (t["last_error"].as_str(), t["saved_differs"].as_bool(), t["overdue"].as_bool()),
        (Some(""), Some(false), Some(false))
    );
    assert_eq!(t["latest_version_id"].as_i64(), Some(v1));
    let r = eng.api(Method::GET, &format!("{base}/configs/{v1}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    // CRLF normalised; the Chinese description intact.
    assert_eq!(r.json()["running"].as_str(), Some(RUNNING_V1));
    assert_eq!(r.json()["saved"].as_str(), Some(RUNNING_V1));

    // The same configuration again: nothing new.
    let p = pull_now(&mut eng, &f).await;
    assert_eq!((p["outcome"].as_str(), p["version_id"].as_i64()), (Some("unchanged"), Some(v1)));
    assert_eq!(versions(&mut eng, &f).await.len(), 1);

    // A changed running configuration, not saved yet: version 2, flagged, and the diff shows it.
    let running_v2 = RUNNING_V1.replace("vlan batch 10 20", "vlan batch 10 20 30").replace(
        "!Last configuration was updated at 2026-03-01 10:12:03",
        "!Last configuration was updated at 2026-03-02 09:00:00",
    );
    sshd.set_running(&running_v2);
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "stored");
    let v2 = p["version_id"].as_i64().unwrap();
    assert!(v2 > v1);
    let list = versions(&mut eng, &f).await;
    assert_eq!(list.iter().map(|v| v["id"].as_i64().unwrap()).collect::<Vec<_>>(), [v2, v1]);
    assert_eq!((list[0]["saved_differs"].as_bool(), list[1]["saved_differs"].as_bool()), (Some(true), Some(false)));
    assert!(target(&mut eng, &f).await["saved_differs"].as_bool().unwrap());
    let r = eng.api(Method::GET, &format!("{base}/configs/diff?from={v1}&to={v2}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = r.json();
    let changed: Vec<(String, String)> = d["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["tag"] != "equal")
        .map(|l| (l["tag"].as_str().unwrap().to_string(), l["text"].as_str().unwrap().to_string()))
        .collect();
    assert!(changed.contains(&("delete".into(), "vlan batch 10 20".into())), "{changed:?}");
    assert!(changed.contains(&("insert".into(), "vlan batch 10 20 30".into())), "{changed:?}");
    assert_eq!((d["deleted"].as_u64(), d["inserted"].as_u64()), (Some(2), Some(2)));
    let vlan = d["lines"].as_array().unwrap().iter().find(|l| l["text"] == "vlan batch 10 20 30").unwrap();
    assert_eq!(vlan["new_line"].as_u64(), Some(6));

    // Saved again on the device: the running config is unchanged, the flag clears on the target.
    sshd.set_saved(Some(&running_v2.replace("updated at 2026-03-02 09:00:00", "saved at 2026-03-02 09:05:00")));
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "unchanged");
    assert_eq!(target(&mut eng, &f).await["saved_differs"].as_bool(), Some(false));

    // Replacing the target without a password keeps the stored one.
    let mut keep = target_body(sshd.port, "");
    keep.as_object_mut().unwrap().remove("password");
    keep["max_age_days"] = json!(7);
    let r = eng.api(Method::PUT, &format!("{base}/config-target"), Some(keep)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["host_key_sha256"].as_str(), Some(sshd.fingerprint().as_str()), "same host: key kept");
    assert_eq!(pull_now(&mut eng, &f).await["outcome"], "unchanged");

    // The clear password is nowhere in the database: not in any stored text, not in the file.
    let text = all_stored_text(&s).await;
    assert!(text.contains("device_config.pull"), "pulls are audited");
    assert!(!text.contains(DEVICE_PASSWORD.as_str()));
    if s.engine == Engine::Sqlite {
        let bytes = sqlite_bytes(&s);
        assert!(contains(&bytes, b"CORE-SW1"), "the file holds the configurations (sanity check of the search)");
        assert!(!contains(&bytes, DEVICE_PASSWORD.as_bytes()), "the clear password is in the database file");
    }

    // Diffs of versions that do not exist, or of another asset, are 404.
    let r = eng.api(Method::GET, &format!("{base}/configs/diff?from={v1}&to=999999"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

both_engines!(failures_are_clear_and_store_nothing);
async fn failures_are_clear_and_store_nothing(s: TestServer) {
    let Some(mut sshd) = Sshd::start() else { return };
    let f = fixture(&s).await;
    let mut eng = s.login("eng").await;
    let base = format!("/api/v1/contracts/{}/assets/{}", f.cid, f.asset);

    // Wrong password: a clear failure recorded on the target, no version.
    let r =
        eng.api(Method::PUT, &format!("{base}/config-target"), Some(target_body(sshd.port, "not-the-password"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "failed");
    let err = p["error"].as_str().unwrap();
    assert!(err.contains("authentication failed") && err.contains(USER), "{err}");
    let t = target(&mut eng, &f).await;
    assert_eq!(t["last_error"].as_str(), Some(err));
    assert!(t["last_attempt_at_ms"].is_i64());
    assert!(t["last_success_at_ms"].is_null());
    assert!(versions(&mut eng, &f).await.is_empty());

    // The right password: version 1.
    let r =
        eng.api(Method::PUT, &format!("{base}/config-target"), Some(target_body(sshd.port, &DEVICE_PASSWORD))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pull_now(&mut eng, &f).await["outcome"], "stored");
    let key = target(&mut eng, &f).await["host_key_sha256"].as_str().unwrap().to_string();

    // A hanging command fails within the timeout, naming the step.
    sshd.set_mode("hang");
    let scope = s.operator().contract_scope(&s.state.db, f.cid).await.unwrap();
    let t = device_configs::pull_target(&s.state.db, &scope, f.asset).await.unwrap();
    assert!(!format!("{t:?}").contains(DEVICE_PASSWORD.as_str()), "Debug hides the password");
    let started = Instant::now();
    let outcome = yunwei_web::jobs::pull_and_record(&s.state, Some(&scope), t, Duration::from_secs(2)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(5), "{took:?}");
    match outcome {
        yunwei_web::jobs::PullOutcome::Failed { error } => {
            assert_eq!(error, "timed out after 2 s while running `display current-configuration`");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(versions(&mut eng, &f).await.len(), 1);

    // A device that pages despite the pre command: the prompt is answered and removed.
    sshd.set_mode("paged");
    sshd.set_running(&RUNNING_V1.replace("sysname CORE-SW1", "sysname CORE-SW1-PAGED"));
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "stored", "{p}");
    let r = eng.api(Method::GET, &format!("{base}/configs/{}", p["version_id"]), None).await;
    assert_eq!(
        r.json()["running"].as_str(),
        Some(RUNNING_V1.replace("sysname CORE-SW1", "sysname CORE-SW1-PAGED").as_str())
    );
    sshd.set_mode("normal");

    // A device without a saved configuration: nothing to compare, no flag.
    sshd.set_saved(None);
    sshd.set_running(RUNNING_V1);
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "stored");
    let r = eng.api(Method::GET, &format!("{base}/configs/{}", p["version_id"]), None).await;
    assert!(r.json()["saved"].is_null());
    assert_eq!(r.json()["saved_differs"].as_bool(), Some(false));

    // The host key changes: refused before the password is sent, nothing stored.
    sshd.restart_with_new_key();
    let before = versions(&mut eng, &f).await.len();
    sshd.set_running(&RUNNING_V1.replace("CORE-SW1", "EVIL-SW"));
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "failed");
    let err = p["error"].as_str().unwrap();
    assert!(err.starts_with("host key changed"), "{err}");
    assert!(err.contains(&key) && err.contains(&sshd.fingerprint()), "{err}");
    assert_eq!(versions(&mut eng, &f).await.len(), before);
    let t = target(&mut eng, &f).await;
    assert_eq!(t["host_key_sha256"].as_str(), Some(key.as_str()), "the remembered key stays");

    // The operator confirms the device was replaced: the next pull trusts the new key.
    let mut body = target_body(sshd.port, "");
    body.as_object_mut().unwrap().remove("password");
    body["forget_host_key"] = json!(true);
    body["version"] = t["version"].clone();
    let r = eng.api(Method::PUT, &format!("{base}/config-target"), Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.json()["host_key_sha256"].is_null());
    // The version read before is stale now.
    let r = eng.api(Method::PUT, &format!("{base}/config-target"), Some(body)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(pull_now(&mut eng, &f).await["outcome"], "stored");
    assert_eq!(target(&mut eng, &f).await["host_key_sha256"].as_str(), Some(sshd.fingerprint().as_str()));
}

both_engines!(scheduled_pulls_and_overdue_alert);
async fn scheduled_pulls_and_overdue_alert(s: TestServer) {
    let Some(mut sshd) = Sshd::start() else { return };
    let t0 = 1_772_344_800_000; // 2026-03-01 14:00 Shanghai
    s.set_now(t0);
    let f = fixture(&s).await;
    let base = format!("/api/v1/contracts/{}/assets/{}", f.cid, f.asset);
    let r = s
        .login("eng")
        .await
        .api(Method::PUT, &format!("{base}/config-target"), Some(target_body(sshd.port, &DEVICE_PASSWORD)))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let pass = |s: &TestServer| {
        let state = s.state.clone();
        async move { yunwei_web::jobs::run_device_configs_with(&state, "test-node", Duration::from_secs(10)).await.unwrap() }
    };
    // The job pulls a never-tried target at once, then not again within a day.
    let r = pass(&s).await;
    assert_eq!((r.stored, r.unchanged, r.failed, r.alerts), (1, 0, 0, 0));
    s.set_now(t0 + DAY / 2);
    assert_eq!(pass(&s).await, yunwei_web::jobs::DevicePassReport::default());
    s.set_now(t0 + DAY + 60_000);
    assert_eq!(pass(&s).await.unchanged, 1);

    // The device goes away. Backups fail; within max_age_days (2) nobody is alerted.
    sshd.stop();
    s.set_now(t0 + 2 * DAY + 120_000);
    let r = pass(&s).await;
    assert_eq!((r.failed, r.alerts), (1, 0));
    // Sessions expire over days of test time: each check logs in at the new time.
    let t = target(&mut s.login("eng").await, &f).await;
    assert!(t["last_error"].as_str().unwrap().starts_with("cannot connect to 127.0.0.1"), "{t}");
    assert_eq!(t["overdue"].as_bool(), Some(false));

    // Past 2 days since the last success: one alert to engineers and project managers, once a day.
    s.set_now(t0 + 3 * DAY + 180_000);
    let r = pass(&s).await;
    assert_eq!((r.failed, r.alerts), (1, 1));
    assert_eq!(pass(&s).await.alerts, 0, "once per day");
    assert_eq!(device_configs::overdue_alerts(&s.state.db, s.now()).await.unwrap(), 0);
    let mut eng = s.login("eng").await;
    let t = target(&mut eng, &f).await;
    assert_eq!(t["overdue"].as_bool(), Some(true));
    assert!(t["backup_age_ms"].as_i64().unwrap() > 2 * DAY);
    let r = eng.api(Method::GET, &format!("/api/v1/contracts/{}/config-targets", f.cid), None).await;
    assert_eq!(r.json()[0]["overdue"].as_bool(), Some(true));

    let titles = |b: crate::harness::Browser| async move {
        let mut b = b;
        let r = b.api(Method::GET, "/api/v1/notifications?limit=200", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_string())
            .filter(|t| t.starts_with("[配置备份]"))
            .collect::<Vec<_>>()
    };
    let eng_titles = titles(s.login("eng").await).await;
    assert_eq!(eng_titles.len(), 1, "{eng_titles:?}");
    assert!(eng_titles[0].contains("CORE-SW1") && eng_titles[0].contains("not backed up for 2 days"), "{eng_titles:?}");
    assert_eq!(titles(s.login("pm").await).await.len(), 1);
    assert!(titles(s.login("sup").await).await.is_empty(), "the client's supervisor is not alerted");

    // The next day, still overdue: the next alert.
    s.set_now(t0 + 4 * DAY + 240_000);
    assert_eq!(pass(&s).await.alerts, 1);
    assert_eq!(titles(s.login("eng").await).await.len(), 2);

    // The device is back: the job's next pull clears the overdue state, and no more alerts.
    sshd.launch();
    s.set_now(t0 + 5 * DAY + 300_000);
    let r = pass(&s).await;
    assert_eq!((r.unchanged, r.alerts), (1, 0));
    let mut eng = s.login("eng").await;
    let t = target(&mut eng, &f).await;
    assert_eq!((t["overdue"].as_bool(), t["last_error"].as_str()), (Some(false), Some("")));
}

both_engines!(permissions_and_isolation);
async fn permissions_and_isolation(s: TestServer) {
    // No SSH needed: a target on a closed port.
    let f = fixture(&s).await;
    let other = s.contract("NETCONF-2").await;
    s.member("eng2", other, ContractRole::Engineer).await;
    s.member("enduser", f.cid, ContractRole::ClientEndUser).await;
    let base = format!("/api/v1/contracts/{}/assets/{}", f.cid, f.asset);
    let mut eng = s.login("eng").await;
    let r = eng.api(Method::PUT, &format!("{base}/config-target"), Some(target_body(1, "pw-secret-1"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // The supervisor reads (no password), but neither sets nor pulls.
    let mut sup = s.login("sup").await;
    let r = sup.api(Method::GET, &format!("{base}/config-target"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["password"].as_str(), Some("••••"));
    let r = sup.api(Method::PUT, &format!("{base}/config-target"), Some(target_body(1, "x"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sup.api(Method::POST, &format!("{base}/config-target/pull"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sup.api(Method::GET, &format!("{base}/configs"), None).await;
    assert_eq!(r.status, StatusCode::OK);

    // An end user reads nothing of the ledger.
    let mut end = s.login("enduser").await;
    let r = end.api(Method::GET, &format!("{base}/config-target"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Another contract's engineer: 404 everywhere, also with their own contract id in the path.
    let mut eng2 = s.login("eng2").await;
    for (m, p) in [
        (Method::GET, format!("{base}/config-target")),
        (Method::POST, format!("{base}/config-target/pull")),
        (Method::GET, format!("{base}/configs")),
        (Method::GET, format!("/api/v1/contracts/{other}/assets/{}/config-target", f.asset)),
        (Method::GET, format!("/api/v1/contracts/{other}/assets/{}/configs", f.asset)),
    ] {
        let r = eng2.api(m.clone(), &p, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {p}: {}", r.body);
    }
    let r = eng2
        .api(
            Method::PUT,
            &format!("/api/v1/contracts/{other}/assets/{}/config-target", f.asset),
            Some(target_body(1, "x")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another contract's asset");

    // A closed port fails quickly and clearly.
    let p = pull_now(&mut eng, &f).await;
    assert_eq!(p["outcome"], "failed");
    assert!(p["error"].as_str().unwrap().starts_with("cannot connect to 127.0.0.1:1"), "{p}");

    // The vendor list and the OpenAPI document name the routes.
    let r = eng.api(Method::GET, "/api/v1/device-vendors", None).await;
    let names: Vec<String> =
        r.json().as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["cisco_ios", "h3c_comware", "huawei_vrp"]);
    let r = eng.api(Method::GET, "/api/v1/openapi.json", None).await;
    assert!(r.body.contains("/api/v1/contracts/{cid}/assets/{id}/configs/diff"));
}

both_engines!(backup_period_defaults_to_the_contracts_duty);
async fn backup_period_defaults_to_the_contracts_duty(s: TestServer) {
    // 001 backs up core configurations quarterly (`network.config_backup`): a device may go 92 days.
    let seeded = s.seed_contract("001-chenggong-service-center.toml").await;
    s.member("eng001", seeded, ContractRole::Engineer).await;
    let scope = s.operator().contract_scope(&s.state.db, seeded).await.unwrap();
    let input =
        AssetInput {
            kind: "network".into(), name: "汇聚交换机".into(), ips: "127.0.0.1".into(), ..Default::default()
        };
    let asset = assets::create(&s.state.db, &scope, &input, s.now()).await.unwrap().id;
    let mut b = s.login("eng001").await;
    let mut body = target_body(22, "pw-1");
    body.as_object_mut().unwrap().remove("max_age_days");
    let path = format!("/api/v1/contracts/{seeded}/assets/{asset}/config-target");
    let r = b.api(Method::PUT, &path, Some(body.clone())).await;
    assert!(r.status.is_success(), "{}", r.body);
    assert_eq!(b.api(Method::GET, &path, None).await.json()["max_age_days"], 92);
    // Given explicitly, the operator's figure wins.
    body["max_age_days"] = json!(30);
    assert!(b.api(Method::PUT, &path, Some(body)).await.status.is_success());
    assert_eq!(b.api(Method::GET, &path, None).await.json()["max_age_days"], 30);

    // A contract naming no such duty: a month.
    let f = fixture(&s).await;
    let mut eng = s.login("eng").await;
    let mut body = target_body(22, "pw-2");
    body.as_object_mut().unwrap().remove("max_age_days");
    let path = format!("/api/v1/contracts/{}/assets/{}/config-target", f.cid, f.asset);
    assert!(eng.api(Method::PUT, &path, Some(body)).await.status.is_success());
    assert_eq!(eng.api(Method::GET, &path, None).await.json()["max_age_days"], 31);
}
