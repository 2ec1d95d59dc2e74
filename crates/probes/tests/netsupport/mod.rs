//! Real servers for the network probe tests, on loopback, private to each test and stopped when
//! dropped: nginx (Debian's `/usr/sbin/nginx`) with HTTP and three HTTPS ports whose certificates
//! are made at test time (one signed by a test CA with 10 days left, one expired, one
//! self-signed), plain TCP servers (one that never answers, one with a banner, one that counts
//! concurrent connections) and a tiny authoritative DNS server built on hickory-proto.
//!
//! A missing nginx fails the test and says which package to install: these tests never skip.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

pub const NGINX: &str = "/usr/sbin/nginx";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A directory under the system temp dir (readable by nginx's worker user), removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "yw-net-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
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

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(p: &Path, data: impl AsRef<[u8]>) {
    std::fs::write(p, data).unwrap();
    set_mode(p, 0o644);
}

/// Certificates made for one test run.
pub struct Certs {
    pub ca_pem: String,
    /// Leaf for `localhost` and 127.0.0.1, signed by the CA, 10 days left: (chain PEM, key PEM).
    pub short: (String, String),
    /// Leaf signed by the CA, expired two days ago.
    pub expired: (String, String),
    /// Self-signed leaf, valid for a year.
    pub self_signed: (String, String),
}

fn leaf_params(not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.not_before = not_before;
    p.not_after = not_after;
    p
}

impl Certs {
    pub fn generate() -> Certs {
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "yunwei test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.not_before = now - day;
        ca.not_after = now + day * 3650;
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca, ca_key);

        let signed = |nb, na| {
            let key = KeyPair::generate().unwrap();
            let cert = leaf_params(nb, na).signed_by(&key, &issuer).unwrap();
            (format!("{}{}", cert.pem(), ca_pem), key.serialize_pem())
        };
        let short = signed(now - day, now + day * 10);
        let expired = signed(now - day * 30, now - day * 2);
        let self_key = KeyPair::generate().unwrap();
        let self_cert = leaf_params(now - day, now + day * 365).self_signed(&self_key).unwrap();
        Certs { ca_pem, short, expired, self_signed: (self_cert.pem(), self_key.serialize_pem()) }
    }
}

/// The JSON document served at `/status.json`.
pub const STATUS_JSON: &str =
    r#"{"status": "up", "version": "1.2.3", "data": {"items": [{"ok": true, "n": 7}, {"ok": false}]}}"#;
/// Text in `/index.html`.
pub const PAGE_TEXT: &str = "yunwei probe target page";
/// Size of `/big.bin`, a sparse file.
pub const BIG: u64 = 2 << 30;

/// A private nginx: single process (`master_process off`, so killing it leaves no workers).
pub struct Nginx {
    child: Child,
    pub dir: TempDir,
    pub http: u16,
    pub https_short: u16,
    pub https_expired: u16,
    pub https_self: u16,
    pub certs: Certs,
    pub index_len: usize,
}

impl Nginx {
    pub fn start() -> Nginx {
        assert!(Path::new(NGINX).exists(), "{NGINX} is missing: these tests need nginx (apt-get install -y nginx)");
        let dir = TempDir::new("nginx");
        let d = dir.path().to_path_buf();
        let html = d.join("html");
        std::fs::create_dir_all(&html).unwrap();
        set_mode(&html, 0o755);
        let index = format!("<!doctype html><title>probe</title><p>{PAGE_TEXT}</p>\n{}", "<p>filler</p>\n".repeat(50));
        write(&html.join("index.html"), &index);
        write(&html.join("status.json"), STATUS_JSON);
        let big = std::fs::File::create(html.join("big.bin")).unwrap();
        big.set_len(BIG).unwrap();
        drop(big);
        set_mode(&html.join("big.bin"), 0o644);
        std::fs::create_dir_all(html.join("private")).unwrap();
        set_mode(&html.join("private"), 0o755);
        write(&html.join("private/secret.txt"), "secret page\n");
        // {PLAIN} is an nginx htpasswd scheme: no crypt needed.
        write(&d.join("htpasswd"), "probe:{PLAIN}s3cret\n");

        let certs = Certs::generate();
        for (name, (chain, key)) in [("short", &certs.short), ("expired", &certs.expired), ("self", &certs.self_signed)]
        {
            write(&d.join(format!("{name}.crt")), chain);
            write(&d.join(format!("{name}.key")), key);
        }
        let (http, https_short, https_expired, https_self) = (free_port(), free_port(), free_port(), free_port());
        let dd = d.display();
        let tls_server = |port: u16, name: &str| {
            format!(
                "  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {dd}/{name}.crt;\n    \
                 ssl_certificate_key {dd}/{name}.key;\n    root {dd}/html;\n  }}\n"
            )
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dd}/nginx.pid;\nerror_log {dd}/error.log warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dd}/tmp; proxy_temp_path {dd}/tmp; \
             fastcgi_temp_path {dd}/tmp; uwsgi_temp_path {dd}/tmp; scgi_temp_path {dd}/tmp;\n  \
             types {{ text/html html; application/json json; application/octet-stream bin; }}\n  \
             server {{\n    listen 127.0.0.1:{http};\n    root {dd}/html;\n    \
             location = /redirect {{ return 302 /index.html; }}\n    \
             location = /redirect-abs {{ return 301 http://127.0.0.1:{http}/status.json; }}\n    \
             location = /loop {{ return 302 /loop; }}\n    \
             location /private/ {{ auth_basic \"probe\"; auth_basic_user_file {dd}/htpasswd; }}\n  \
             }}\n{}{}{}}}\n",
            tls_server(https_short, "short"),
            tls_server(https_expired, "expired"),
            tls_server(https_self, "self"),
        );
        write(&d.join("nginx.conf"), conf);
        let log = std::fs::File::create(d.join("stdout.log")).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {NGINX}: {e}"));
        let mut n = Nginx { child, dir, http, https_short, https_expired, https_self, certs, index_len: index.len() };
        n.wait_ready();
        n
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = [self.http, self.https_short, self.https_expired, self.https_self]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}): {}{}", self.read("error.log"), self.read("stdout.log"));
            }
            assert!(Instant::now() < deadline, "nginx did not start: {}", self.read("error.log"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server that accepts connections and never sends a byte (they stay open until dropped).
pub struct Silent {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    pub async fn start() -> Silent {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
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

/// A TCP server that greets with `banner` after `delay`, then closes; it records the most
/// connections it ever had open at once.
pub struct Greeter {
    pub port: u16,
    pub max_open: Arc<AtomicUsize>,
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Greeter {
    pub async fn start(banner: &'static str, delay: Duration) -> Greeter {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (o, m, a) = (open.clone(), max_open.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(banner.as_bytes()).await;
                    let _ = s.shutdown().await;
                    drop(s);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Greeter { port, max_open, accepted, task }
    }
}

impl Drop for Greeter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A one-zone authoritative DNS server on UDP: `probe.yunwei.test` A 192.0.2.10 and TXT,
/// `mail.yunwei.test` MX, anything else under `yunwei.test` NXDOMAIN, and `silent.yunwei.test`
/// never answered.
pub struct Dns {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    pub async fn start() -> Dns {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::{A, MX, TXT};
        use hickory_proto::rr::{Name, RData, Record, RecordType};

        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let q = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else { return };
                q.fetch_add(1, Ordering::SeqCst);
                let Ok(req) = Message::from_vec(&buf[..n]) else { continue };
                let Some(query) = req.queries.first().cloned() else { continue };
                let name = query.name().to_ascii().to_lowercase();
                if name == "silent.yunwei.test." {
                    continue;
                }
                let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.authoritative = true;
                resp.add_query(query.clone());
                let owner = Name::from_ascii(&name).unwrap();
                match (name.as_str(), query.query_type()) {
                    ("probe.yunwei.test.", RecordType::A) => {
                        resp.add_answer(Record::from_rdata(owner.clone(), 300, RData::A(A::new(192, 0, 2, 10))));
                        resp.add_answer(Record::from_rdata(owner, 60, RData::A(A::new(192, 0, 2, 11))));
                    }
                    ("probe.yunwei.test.", RecordType::TXT) => {
                        resp.add_answer(Record::from_rdata(
                            owner,
                            300,
                            RData::TXT(TXT::new(vec!["v=yunwei1 build=42".to_string()])),
                        ));
                    }
                    ("mail.yunwei.test.", RecordType::MX) => {
                        let exchange = Name::from_ascii("mx1.yunwei.test.").unwrap();
                        resp.add_answer(Record::from_rdata(owner, 300, RData::MX(MX::new(10, exchange))));
                    }
                    ("probe.yunwei.test." | "mail.yunwei.test.", _) => {}
                    _ => resp.metadata.response_code = ResponseCode::NXDomain,
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        Dns { addr, queries, task }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether this process may open an unprivileged ICMP socket (a group of it in
/// `net.ipv4.ping_group_range`) or a raw one (CAP_NET_RAW effective).
pub fn icmp_allowed() -> (bool, bool) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let mut it = range.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
    let (lo, hi) = (it.next().unwrap_or(1), it.next().unwrap_or(0));
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |key: &str| status.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string());
    let mut groups: Vec<u64> =
        field("Groups:").unwrap_or_default().split_whitespace().filter_map(|g| g.parse().ok()).collect();
    if let Some(g) = field("Gid:").and_then(|g| g.split_whitespace().nth(1).and_then(|x| x.parse().ok())) {
        groups.push(g);
    }
    let unprivileged = groups.iter().any(|g| (lo..=hi).contains(g));
    let cap_eff = field("CapEff:").and_then(|c| u64::from_str_radix(&c, 16).ok()).unwrap_or(0);
    let net_raw = cap_eff & (1 << 13) != 0;
    (unprivileged, net_raw)
}
