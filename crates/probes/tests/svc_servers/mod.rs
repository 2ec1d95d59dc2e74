//! Real servers for the service probe tests, each started privately on a free loopback port and
//! stopped when dropped: redis-server, OpenSSH's sshd (with a dedicated local account), Net-SNMP's
//! snmpd and Prometheus' node_exporter; plus a TCP server that accepts and never answers.
//!
//! PostgreSQL and MariaDB are the machine's services (127.0.0.1:5432 and :3306, `.ci/run` starts
//! them). A missing binary fails the test with the Debian package to install: these tests must be
//! able to fail, never skip silently.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Panics naming the Debian package when a server binary is missing.
pub fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "yw-probe-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A child process, killed when dropped.
pub struct Proc {
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the port accepts TCP connections; panics with the log if the process died.
    fn wait_tcp(&mut self, port: u16, what: &str) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{what} exited ({status}) before listening:\n{}", self.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{what} did not listen on {port}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&mut self, needle: &str, what: &str) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{what} exited ({status}):\n{}", self.log_text());
            }
            if self.log_text().contains(needle) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "{what} did not start:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Proc {
    /// Asks the server to shut down cleanly (`INT`, `TERM`, …) and waits for it a few seconds;
    /// dropping it afterwards kills what is left.
    pub fn stop(&mut self, signal: &str) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).output();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------

/// A TCP server that accepts connections and never sends a byte.
pub struct Silent {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        Silent { port, task }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that answers every connection with a fixed HTTP response (`status`: `200 OK`).
pub struct HttpOnce {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl HttpOnce {
    pub async fn start(status: &'static str, body: &'static str) -> HttpOnce {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        HttpOnce { port, task }
    }
}

impl Drop for HttpOnce {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------

pub struct Redis {
    pub port: u16,
    _dir: TempDir,
    proc: Proc,
}

impl Redis {
    /// `redis-server` without persistence; `extra` adds arguments (`--replicaof …`).
    pub fn start(password: Option<&str>, extra: &[&str]) -> Redis {
        need("/usr/bin/redis-server", "redis-server");
        let dir = TempDir::new("redis");
        let port = free_tcp_port();
        let mut cmd = Command::new("/usr/bin/redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
            .arg(dir.path());
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        cmd.args(extra);
        let mut proc = Proc::spawn(&mut cmd, dir.path().join("redis.log"));
        proc.wait_tcp(port, "redis-server");
        Redis { port, _dir: dir, proc }
    }
}

// ---------------------------------------------------------------------------------------------

pub const SSH_USER: &str = "yw-probe-test";

/// The account outlives the tests, so its password is no constant in the repository: derived
/// from this machine's id, the same in every test process.
pub fn ssh_password() -> String {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_else(|_| "no-machine-id".into());
    let d = ring::digest::digest(&ring::digest::SHA256, format!("yw-probe-test:{}", id.trim()).as_bytes());
    let hex: String = d.as_ref().iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("Yw#{hex}!p")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// The local account sshd authenticates, created once per process (needs root).
fn ensure_user() {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    assert!(is_root(), "the SSH tests create the local account {SSH_USER}: run them as root (CI does)");
    let exists = Command::new("id")
        .arg(SSH_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        // useradd may race with another test process creating the same account.
        let _ = Command::new("useradd").args(["-M", "-d", "/", "-s", "/bin/sh", SSH_USER]).output();
    }
    let mut child = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("chpasswd");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(format!("{SSH_USER}:{}\n", ssh_password()).as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd failed");
    std::fs::create_dir_all("/run/sshd").unwrap();
    *done = true;
}

/// A loopback sshd with password and public key authentication for [`SSH_USER`].
pub struct Sshd {
    pub port: u16,
    pub dir: TempDir,
    /// The client's private key (OpenSSH format, no passphrase) and one protected by `key-pass`.
    pub client_key: String,
    pub client_key_encrypted: String,
    proc: Proc,
}

impl Sshd {
    pub fn start() -> Sshd {
        need("/usr/sbin/sshd", "openssh-server");
        need("/usr/bin/ssh-keygen", "openssh-client");
        ensure_user();
        let dir = TempDir::new("sshd");
        let d = dir.path().to_path_buf();
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("host_key")));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "yw", "-f"]).arg(d.join("client")));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "key-pass", "-C", "yw2", "-f"])
            .arg(d.join("client2")));
        let mut keys = std::fs::read_to_string(d.join("client.pub")).unwrap();
        keys.push_str(&std::fs::read_to_string(d.join("client2.pub")).unwrap());
        std::fs::write(d.join("authorized_keys"), keys).unwrap();
        set_mode(&d.join("authorized_keys"), 0o644);
        let port = free_tcp_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\nUsePAM no\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin no\nAllowUsers {SSH_USER}\n\
             StrictModes no\nMaxAuthTries 6\nLoginGraceTime 20\nX11Forwarding no\nAllowTcpForwarding no\n\
             PrintMotd no\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let mut proc = Proc::spawn(
            Command::new("/usr/sbin/sshd").args(["-D", "-e", "-f"]).arg(d.join("sshd_config")),
            d.join("sshd.log"),
        );
        proc.wait_tcp(port, "sshd");
        let client_key = std::fs::read_to_string(d.join("client")).unwrap();
        let client_key_encrypted = std::fs::read_to_string(d.join("client2")).unwrap();
        Sshd { port, dir, client_key, client_key_encrypted, proc }
    }

    /// `SHA256:…` of the host key, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let out = run(Command::new("ssh-keygen").arg("-lf").arg(self.dir.path().join("host_key.pub")));
        out.split_whitespace().nth(1).unwrap().to_string()
    }

    pub fn log(&self) -> String {
        self.proc.log_text()
    }
}

// ---------------------------------------------------------------------------------------------

pub const COMMUNITY: &str = "yw-test-community";
pub const V3_USER: &str = "ywv3user";
pub const V3_AUTH: &str = "ywv3-auth-pass";
pub const V3_PRIV: &str = "ywv3-priv-pass";

/// Net-SNMP's agent with a v2c community, a v3 authPriv user (SHA/AES) and a fixed UPS battery
/// charge at 1.3.6.1.2.1.33.1.2.4.0 (UPS-MIB upsEstimatedChargeRemaining).
pub struct Snmpd {
    pub port: u16,
    _dir: TempDir,
    proc: Proc,
}

impl Snmpd {
    pub fn start() -> Snmpd {
        need("/usr/sbin/snmpd", "snmpd");
        let dir = TempDir::new("snmpd");
        let d = dir.path();
        let port = free_udp_port();
        let conf = format!(
            "rocommunity {COMMUNITY} 127.0.0.1\n\
             createUser {V3_USER} SHA \"{V3_AUTH}\" AES \"{V3_PRIV}\"\n\
             rouser {V3_USER} priv\n\
             sysLocation 二楼机房\n\
             sysName yw-probe-snmpd\n\
             override 1.3.6.1.2.1.33.1.2.4.0 integer 87\n"
        );
        std::fs::write(d.join("snmpd.conf"), conf).unwrap();
        let mut cmd = Command::new("/usr/sbin/snmpd");
        cmd.env("SNMP_PERSISTENT_DIR", d.join("persist"))
            .env("MIBS", "")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(d.join("snmpd.conf"))
            .arg("-p")
            .arg(d.join("snmpd.pid"))
            .arg(format!("udp:127.0.0.1:{port}"));
        let mut proc = Proc::spawn(&mut cmd, d.join("snmpd.log"));
        proc.wait_log("NET-SNMP version", "snmpd");
        Snmpd { port, _dir: dir, proc }
    }
}

// ---------------------------------------------------------------------------------------------

pub struct NodeExporter {
    pub port: u16,
    _dir: TempDir,
    proc: Proc,
}

impl NodeExporter {
    pub fn start() -> NodeExporter {
        need("/usr/bin/prometheus-node-exporter", "prometheus-node-exporter");
        let dir = TempDir::new("node");
        let port = free_tcp_port();
        let mut cmd = Command::new("/usr/bin/prometheus-node-exporter");
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}")).args([
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.meminfo",
            "--collector.filesystem",
            "--collector.loadavg",
            "--collector.stat",
            "--collector.time",
        ]);
        let mut proc = Proc::spawn(&mut cmd, dir.path().join("node.log"));
        proc.wait_tcp(port, "prometheus-node-exporter");
        NodeExporter { port, _dir: dir, proc }
    }
}

// ---------------------------------------------------------------------------------------------

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |flag: &str| run(Command::new("id").arg(flag).arg(user)).trim().parse::<u32>().unwrap();
    (id("-u"), id("-g"))
}

fn chown(p: &Path, user: &str) {
    let (u, g) = uid_gid(user);
    std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
}

/// A command run as `user` (setpriv execs, so killing the child kills the server itself).
fn as_user(user: &str, program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--"]).arg(program);
    c
}

/// The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/N/bin).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    versions.sort_unstable();
    let v =
        versions.last().unwrap_or_else(|| panic!("no /usr/lib/postgresql/N: install the Debian package `postgresql`"));
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
    need(bin.join("initdb").to_str().unwrap(), "postgresql");
    need(bin.join("pg_basebackup").to_str().unwrap(), "postgresql");
    bin
}

/// A private PostgreSQL primary and a streaming standby made from it with pg_basebackup (trust
/// authentication, loopback only, fsync off).
pub struct PgPair {
    pub primary: u16,
    pub standby: u16,
    standby_proc: Proc,
    primary_proc: Proc,
    _dir: TempDir,
}

impl PgPair {
    pub fn start() -> PgPair {
        assert!(is_root(), "the replication tests start PostgreSQL as the postgres user: run them as root (CI does)");
        let bin = pg_bin();
        let dir = TempDir::new("pg");
        let d = dir.path().to_path_buf();
        chown(&d, "postgres");
        let out = as_user("postgres", &bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(d.join("p"))
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let server = |data: &str, port: u16| {
            let mut c = as_user("postgres", &bin.join("postgres"));
            c.arg("-D").arg(d.join(data)).args(["-p", &port.to_string(), "-k"]).arg(&d).args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "wal_receiver_status_interval=1",
            ]);
            c
        };
        let primary = free_tcp_port();
        let mut primary_proc = Proc::spawn(&mut server("p", primary), d.join("primary.log"));
        primary_proc.wait_tcp(primary, "postgres (primary)");
        // The port opens before the server accepts logins: retry the base backup briefly.
        let started = Instant::now();
        loop {
            let out = as_user("postgres", &bin.join("pg_basebackup"))
                .args(["-h", "127.0.0.1", "-p", &primary.to_string(), "-U", "postgres", "-R", "-X", "stream", "-D"])
                .arg(d.join("s"))
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            let _ = std::fs::remove_dir_all(d.join("s"));
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "pg_basebackup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let standby = free_tcp_port();
        let mut standby_proc = Proc::spawn(&mut server("s", standby), d.join("standby.log"));
        standby_proc.wait_tcp(standby, "postgres (standby)");
        PgPair { primary, standby, standby_proc, primary_proc, _dir: dir }
    }
}

/// PostgreSQL killed outright would leave its shared memory behind: fast shutdown instead.
impl Drop for PgPair {
    fn drop(&mut self) {
        self.standby_proc.stop("INT");
        self.primary_proc.stop("INT");
    }
}

impl Drop for MariaPair {
    fn drop(&mut self) {
        self.replica_proc.stop("TERM");
        self.primary_proc.stop("TERM");
    }
}

/// A private MariaDB primary (binary log on) and a replica of it (GTID), both with an account
/// `yw` (no password, all privileges) reachable over loopback TCP.
pub struct MariaPair {
    pub primary: u16,
    pub replica: u16,
    dir: TempDir,
    replica_proc: Proc,
    primary_proc: Proc,
}

impl MariaPair {
    pub fn start() -> MariaPair {
        assert!(is_root(), "the replication tests start MariaDB as the mysql user: run them as root (CI does)");
        need("/usr/bin/mariadb-install-db", "mariadb-server");
        need("/usr/sbin/mariadbd", "mariadb-server");
        need("/usr/bin/mysql", "mariadb-client");
        let dir = TempDir::new("mariadb");
        let d = dir.path().to_path_buf();
        chown(&d, "mysql");
        run(Command::new("/usr/bin/mariadb-install-db")
            .args(["--no-defaults", "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--datadir={}", d.join("p").display())));
        run(Command::new("cp").arg("-a").arg(d.join("p")).arg(d.join("r")));
        let server = |name: &str, port: u16, id: u32, extra: &[&str]| {
            let mut c = Command::new("/usr/sbin/mariadbd");
            c.arg("--no-defaults")
                .arg(format!("--datadir={}", d.join(name).display()))
                .arg(format!("--socket={}", d.join(format!("{name}.sock")).display()))
                .arg(format!("--pid-file={}", d.join(format!("{name}.pid")).display()))
                .arg(format!("--port={port}"))
                .arg(format!("--server-id={id}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--user=mysql",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=16M",
                ])
                .args(extra);
            c
        };
        let primary = free_tcp_port();
        let mut primary_proc =
            Proc::spawn(&mut server("p", primary, 1, &["--log-bin=mysql-bin"]), d.join("primary.log"));
        let replica = free_tcp_port();
        let mut replica_proc = Proc::spawn(&mut server("r", replica, 2, &["--read-only"]), d.join("replica.log"));
        primary_proc.wait_tcp(primary, "mariadbd (primary)");
        replica_proc.wait_tcp(replica, "mariadbd (replica)");
        let pair = MariaPair { primary, replica, dir, replica_proc, primary_proc };
        let account = "SET SESSION sql_log_bin = 0; CREATE USER 'yw'@'%'; GRANT ALL ON *.* TO 'yw'@'%';";
        pair.sql("p", account);
        pair.sql("r", account);
        pair.sql(
            "r",
            &format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary}, MASTER_USER='yw', \
                 MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; START SLAVE;"
            ),
        );
        pair
    }

    /// Runs statements as root over the server's socket (`p` primary, `r` replica).
    pub fn sql(&self, server: &str, statements: &str) {
        let sock = self.dir.path().join(format!("{server}.sock"));
        run(Command::new("/usr/bin/mysql")
            .arg(format!("--socket={}", sock.display()))
            .args(["-uroot", "-e", statements]));
    }
}
