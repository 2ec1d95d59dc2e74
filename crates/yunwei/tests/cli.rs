//! The binary as an operator uses it: first start, demo, refusal of plain HTTP on the network,
//! console user management, backup/restore and audit verification, graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_yunwei"));
    c.env_remove("YUNWEI_DATABASE_URL").env("YUNWEI_LOG", "warn");
    c
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("yunwei-cli-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts `yunwei serve` on a free port and returns the child, its base URL and its stdout lines.
fn start(data: &Path, extra: &[&str]) -> (Child, String, Vec<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = bin()
        .args(["--data-dir", data.to_str().unwrap(), "serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            panic!("server did not start: {lines:?}");
        }
        let done = line.contains("listening on");
        lines.push(line.trim_end().to_string());
        if done {
            break;
        }
    }
    (child, format!("http://127.0.0.1:{port}"), lines)
}

fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn first_start_demo_and_graceful_stop() {
    let data = temp_dir("demo");
    let (child, base, lines) = start(&data, &["--demo"]);
    let text = lines.join("\n");
    for login in ["sysadmin", "secadmin", "auditadmin", "eng.wang", "client.liu"] {
        assert!(text.contains(login), "{login} missing from first-start output:\n{text}");
    }
    // One-time passwords are generated, never a fixed default.
    let pw_line = lines.iter().find(|l| l.trim_start().starts_with("sysadmin")).unwrap();
    let pw = pw_line.split_whitespace().nth(1).unwrap();
    assert_eq!(pw.len(), 16);
    assert!(http_get(&base, "/healthz").ends_with("ok"));
    assert!(http_get(&base, "/login").contains("运维台"));
    assert!(stop(child).success(), "SIGTERM is a clean exit");
    // The secret key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("secret.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "secret.key must not be readable by others");
    // Second start: nothing new to print, the other password is unchanged.
    let (child, _, lines) = start(&data, &["--demo"]);
    assert!(!lines.join("\n").contains("sysadmin"), "{lines:?}");
    assert!(stop(child).success());
    let _ = std::fs::remove_dir_all(data);
}

/// `secret_cipher`: an unknown name is refused before the database is touched, in both
/// languages; `sm4-gcm` is accepted (the sealing itself is tested in the storage tests).
#[test]
fn secret_cipher_setting() {
    let data = temp_dir("cipher");
    let dir = data.to_str().unwrap();
    let out = bin().env("YUNWEI_SECRET_CIPHER", "sm4").args(["--data-dir", dir, "migrate"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sm4-gcm") && err.contains("只能是"), "{err}");
    assert!(!data.join("yunwei.db").exists(), "nothing was created");
    let out = bin().env("YUNWEI_SECRET_CIPHER", "sm4-gcm").args(["--data-dir", dir, "migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn plain_http_on_a_network_address_is_refused() {
    let data = temp_dir("refuse");
    let out = bin().args(["--data-dir", data.to_str().unwrap(), "serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve plain HTTP") && err.contains("明文"), "{err}");
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn console_users_backup_restore_and_audit_verify() {
    let data = temp_dir("backup");
    let d = data.to_str().unwrap();
    let out =
        bin().args(["--data-dir", d, "user", "add", "--login", "ops.zhang", "--name", "张运维"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("one-time password"));
    let dup = bin().args(["--data-dir", d, "user", "add", "--login", "ops.zhang", "--name", "x"]).output().unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("登录名已存在"));
    let out = bin().args(["--data-dir", d, "user", "reset-password", "--login", "ops.zhang"]).output().unwrap();
    assert!(out.status.success());

    let verify = bin().args(["--data-dir", d, "audit", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    let backup = data.join("snap.db");
    let out = bin().args(["--data-dir", d, "backup", backup.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A second backup to the same name is refused rather than overwriting.
    assert!(!bin().args(["--data-dir", d, "backup", backup.to_str().unwrap()]).output().unwrap().status.success());

    // Change something after the backup, then restore: the change is gone.
    let out =
        bin().args(["--data-dir", d, "user", "add", "--login", "after.backup", "--name", "后来者"]).output().unwrap();
    assert!(out.status.success());
    let out = bin().args(["--data-dir", d, "restore", backup.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again =
        bin().args(["--data-dir", d, "user", "add", "--login", "after.backup", "--name", "后来者"]).output().unwrap();
    assert!(again.status.success(), "the account created after the backup must be gone after restore");
    assert!(bin().args(["--data-dir", d, "audit", "verify"]).output().unwrap().status.success());

    // A file that is not a yunwei backup is refused and the database is left as it was.
    let junk = data.join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let out = bin().args(["--data-dir", d, "restore", junk.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(bin().args(["--data-dir", d, "audit", "verify"]).output().unwrap().status.success());
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn contract_check_reports_positions_and_summarises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/004-chengdu-dcm.toml");
    let out = bin().args(["contract", "check", root.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("L2: 响应 10 分钟 / response 10 min (hotline); 解决 3 小时 / resolution 3 h"), "{stdout}");
    let dir = temp_dir("contract");
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(&root).unwrap().replacen("resolution = \"2h\"", "resolution = \"soon\"", 1);
    std::fs::write(&bad, &text).unwrap();
    let out = bin().args(["contract", "check", bad.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let line = text.lines().position(|l| l.contains("\"soon\"")).unwrap() + 1;
    assert!(
        stdout.contains(&format!("bad.toml:{line}:")) && stdout.contains("not a duration") && stdout.contains("hint:"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn contract_import_export_and_calendar_import() {
    let data = temp_dir("import");
    let d = data.to_str().unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/004-chengdu-dcm.toml");
    let out = bin().args(["--data-dir", d, "contract", "import", file.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("version 1"), "{stdout}");
    let out = bin().args(["--data-dir", d, "contract", "import", file.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));
    let changed = data.join("changed.toml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&file).unwrap().replacen("response = \"5m\"", "response = \"6m\"", 1),
    )
    .unwrap();
    let out = bin().args(["--data-dir", d, "contract", "import", changed.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("version 2")
            && stdout.contains("- L1 响应 response: 5 分钟")
            && stdout.contains("+ L1 响应 response: 6 分钟"),
        "{stdout}"
    );
    let out = bin().args(["--data-dir", d, "contract", "export", "CD-DCM-2022"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("response = \"6m\""));
    let year = data.join("2028.json");
    std::fs::write(&year, r#"{"year": 2028, "days": [{"name": "元旦", "date": "2028-01-03", "isOffDay": true}]}"#)
        .unwrap();
    let out = bin().args(["--data-dir", d, "calendar", "import", year.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("2028"));
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn asset_import_dry_run_then_for_real_and_export() {
    let data = temp_dir("asset");
    let d = data.to_str().unwrap();
    let contract = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/001-chenggong-service-center.toml");
    let out = bin().args(["--data-dir", d, "contract", "import", contract.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = data.join("设备.csv");
    std::fs::write(
        &csv,
        "序号,设备名称,品牌型号,品牌,单位,数量,资产编号\n\
         1,UPS主机,NX60KVA,艾默生,台,1,CG-001\n\
         2,精密空调,P1040DA13,艾默生,台,2,CG-002\n\
         \n\
         3,六类跳线,CAT6,,根,\"4,000\",\n",
    )
    .unwrap();
    let asset = |args: &[&str]| {
        let out = bin().args(["--data-dir", d, "asset"]).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = csv.to_str().unwrap();

    let (code, stdout, stderr) = asset(&["import", file, "--contract", "CG-ZWFW-2026", "--dry-run"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("3 row(s), 1 blank") && stdout.contains("dry run"), "{stdout}");
    assert!(!stderr.contains('█') && !stderr.contains("reading"), "no progress bar without a terminal: {stderr}");

    let (code, stdout, _) = asset(&["import", file, "--contract", "CG-ZWFW-2026"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("imported 3 asset(s)"), "{stdout}");

    // The same file again: its asset numbers are taken now; every such row is named, exit 1.
    let (code, stdout, _) = asset(&["import", file, "--contract", "CG-ZWFW-2026"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "row 2 [资产编号]: 资产编号“CG-001”已在台账中 / Asset number \"CG-001\" is already in the ledger"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("row 3 [资产编号]") && stdout.contains("nothing imported"), "{stdout}");

    // A bad sheet (GBK, as Chinese Excel saves CSV): each bad row, nothing written.
    let bad = data.join("bad.csv");
    let gbk: Vec<u8> = [
        b"\xC9\xE8\xB1\xB8\xC3\xFB\xB3\xC6,\xCA\xFD\xC1\xBF\n".as_slice(), // 设备名称,数量
        b"\xBD\xBB\xBB\xBB\xBB\xFA,\xC1\xBD\xCC\xA8\n",                    // 交换机,两台
        b",1\n",
    ]
    .concat();
    std::fs::write(&bad, gbk).unwrap();
    let (code, stdout, _) = asset(&["import", bad.to_str().unwrap(), "--contract", "CG-ZWFW-2026", "--dry-run"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("CSV, GB18030"), "{stdout}");
    assert!(stdout.contains("row 2 [数量]: 数量应为 1 到 1000000 的整数 / Quantity is a whole number"), "{stdout}");
    assert!(stdout.contains("row 3 [设备名称]: 设备名称为空 / The name is empty"), "{stdout}");

    // Not a sheet at all.
    let broken = data.join("broken.xlsx");
    std::fs::write(&broken, b"PK\x03\x04 not a zip").unwrap();
    let (code, stdout, _) = asset(&["import", broken.to_str().unwrap(), "--contract", "CG-ZWFW-2026"]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("损坏") && stdout.contains("damaged"), "{stdout}");

    let xlsx = data.join("台账.xlsx");
    let (code, stdout, _) = asset(&["export", "--contract", "CG-ZWFW-2026", "--out", xlsx.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("exported 3 asset(s)"), "{stdout}");
    assert!(std::fs::read(&xlsx).unwrap().starts_with(b"PK\x03\x04"));

    let (code, _, stderr) = asset(&["import", file, "--contract", "NO-SUCH"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no contract with code NO-SUCH"), "{stderr}");
    let _ = std::fs::remove_dir_all(data);
}
