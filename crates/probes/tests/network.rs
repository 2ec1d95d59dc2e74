//! The network probes (HTTP(S), TCP, DNS, ICMP) and the monitor engine against real servers on
//! loopback: a private nginx with certificates made at test time, plain TCP servers and a small
//! authoritative DNS server (`netsupport`). Every failure case asserts the reason and that it
//! came within the time-out.

mod netsupport;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netsupport::*;
use serde_json::json;
use tokio::sync::mpsc;
use yunwei_probes::engine::{Engine, EngineConfig, Monitor, ProbeExecutor, Report, phase_ms};
use yunwei_probes::{Outcome, Probe, Secret, Value};

fn probe(v: serde_json::Value) -> Probe {
    let p: Probe = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
    let back = serde_json::to_value(&p).unwrap();
    assert_eq!(serde_json::from_value::<Probe>(back).unwrap(), p, "definitions survive a round trip");
    p
}

async fn run(p: &Probe) -> Outcome {
    yunwei_probes::run(p, None, Duration::from_secs(10)).await
}

#[track_caller]
fn assert_ok(o: &Outcome) {
    assert!(o.ok, "expected a pass, got {:?}\nreadings: {:?}", o.reason, o.readings);
    assert!(o.reason.is_none());
}

/// Asserts a failure whose English and Chinese reasons contain the given texts.
#[track_caller]
fn assert_fails(o: &Outcome, en: &str, zh: &str) {
    assert!(!o.ok, "expected a failure mentioning {en:?}, got a pass: {:?}", o.readings);
    let r = o.reason.as_ref().expect("a failure has a reason");
    assert!(r.en.contains(en), "reason {:?} should contain {en:?}", r.en);
    assert!(r.zh.contains(zh), "reason {:?} should contain {zh:?}", r.zh);
}

fn num(o: &Outcome, key: &str) -> f64 {
    match o.reading(key) {
        Some(Value::Num(n)) => *n,
        other => panic!("reading {key}: {other:?} in {:?}", o.readings),
    }
}

fn text(o: &Outcome, key: &str) -> String {
    match o.reading(key) {
        Some(Value::Text(t)) => t.clone(),
        other => panic!("reading {key}: {other:?} in {:?}", o.readings),
    }
}

// ---------------------------------------------------------------------------------------- HTTP

#[tokio::test]
async fn http_page_json_and_status() {
    let ngx = Nginx::start();
    let page = probe(json!({"kind": "http", "url": ngx.url("/index.html"), "body_contains": PAGE_TEXT}));
    let o = run(&page).await;
    assert_ok(&o);
    assert_eq!(num(&o, "status"), 200.0);
    assert_eq!(num(&o, "bytes"), ngx.index_len as f64);
    assert_eq!(num(&o, "content_length"), ngx.index_len as f64);
    assert!(num(&o, "latency_ms") > 0.0 && num(&o, "latency_ms") >= num(&o, "ttfb_ms"));
    assert!(o.reading("cert_days_left").is_none() && o.reading("truncated").is_none());

    let o =
        run(&probe(json!({"kind": "http", "url": ngx.url("/index.html"), "body_contains": "not on the page"}))).await;
    assert_fails(&o, "the body does not contain \"not on the page\"", "响应正文中没有");
    assert_eq!(num(&o, "status"), 200.0, "readings are kept on failure");

    let json_ok =
        json!({"kind": "http", "url": ngx.url("/status.json"), "json_path": "data.items.0.ok", "json_equals": true});
    let o = run(&probe(json_ok)).await;
    assert_ok(&o);
    assert_eq!(o.reading("json_value"), Some(&Value::Bool(true)));
    let o = run(&probe(
        json!({"kind": "http", "url": ngx.url("/status.json"), "json_path": "data.items.0.n", "json_equals": "7"}),
    ))
    .await;
    assert_ok(&o);
    let o = run(&probe(
        json!({"kind": "http", "url": ngx.url("/status.json"), "json_path": "data.items.1.ok", "json_equals": true}),
    ))
    .await;
    assert_fails(&o, "the JSON value at data.items.1.ok is false, expected true", "data.items.1.ok 为 false");
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/status.json"), "json_path": "data.nothing"}))).await;
    assert_fails(&o, "the JSON has no value at data.nothing", "JSON 中没有 data.nothing");
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/index.html"), "json_path": "status"}))).await;
    assert_fails(&o, "the body is not valid JSON", "不是有效的 JSON");

    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/missing")}))).await;
    assert_fails(&o, "HTTP status 404, expected 200–399", "HTTP 状态码 404");
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/missing"), "expect_status": [404]}))).await;
    assert_ok(&o);
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/index.html"), "method": "HEAD"}))).await;
    assert_ok(&o);
    assert_eq!(num(&o, "bytes"), 0.0);
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/index.html"), "max_latency_ms": 0.001}))).await;
    assert_fails(&o, "more than the limit of 0.001 ms", "超过上限");
}

#[tokio::test]
async fn http_redirects() {
    let ngx = Nginx::start();
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/redirect"), "body_contains": PAGE_TEXT}))).await;
    assert_ok(&o);
    assert_eq!((num(&o, "status"), num(&o, "redirects")), (200.0, 1.0));
    assert!(text(&o, "final_url").ends_with("/index.html"));
    let o = run(&probe(
        json!({"kind": "http", "url": ngx.url("/redirect-abs"), "json_path": "status", "json_equals": "up"}),
    ))
    .await;
    assert_ok(&o);

    // Not followed: the redirect itself is judged.
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/redirect"), "max_redirects": 0}))).await;
    assert_ok(&o);
    assert_eq!(num(&o, "status"), 302.0);
    let o =
        run(&probe(json!({"kind": "http", "url": ngx.url("/redirect"), "max_redirects": 0, "expect_status": [200]})))
            .await;
    assert_fails(&o, "HTTP status 302, expected 200", "HTTP 状态码 302");

    let started = Instant::now();
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/loop"), "max_redirects": 3}))).await;
    assert_fails(&o, "more than 3 redirects (still redirected to http://127.0.0.1:", "重定向超过 3 次");
    assert_eq!(num(&o, "redirects"), 3.0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn http_huge_body_is_capped() {
    let ngx = Nginx::start();
    let started = Instant::now();
    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/big.bin"), "body_contains": "never there"}))).await;
    assert!(started.elapsed() < Duration::from_secs(5), "a 2 GiB body is not downloaded: {:?}", started.elapsed());
    assert_fails(&o, "only the first 1048576 bytes were read", "只读取了前 1048576 字节");
    assert_eq!(num(&o, "bytes"), (1 << 20) as f64);
    assert_eq!(num(&o, "content_length"), BIG as f64);
    assert_eq!(o.reading("truncated"), Some(&Value::Bool(true)));

    let o = run(&probe(json!({"kind": "http", "url": ngx.url("/big.bin"), "max_body_bytes": 4096}))).await;
    assert_ok(&o);
    assert_eq!(num(&o, "bytes"), 4096.0);
    assert!(o.elapsed_ms < 5000.0);
}

#[tokio::test]
async fn http_basic_auth_from_the_secret() {
    let ngx = Nginx::start();
    let p = probe(json!({"kind": "http", "url": ngx.url("/private/secret.txt"), "body_contains": "secret page"}));
    let o = run(&p).await;
    assert_fails(&o, "HTTP status 401", "HTTP 状态码 401");
    let good = Secret { username: Some("probe".into()), password: Some("s3cret".into()), private_key: None };
    let o = yunwei_probes::run(&p, Some(&good), Duration::from_secs(10)).await;
    assert_ok(&o);
    let bad = Secret { password: Some("wrong".into()), ..good };
    let o = yunwei_probes::run(&p, Some(&bad), Duration::from_secs(10)).await;
    assert_fails(&o, "HTTP status 401", "401");
}

#[tokio::test]
async fn https_certificates() {
    let ngx = Nginx::start();
    let ca = ngx.certs.ca_pem.clone();
    let url = |port: u16| format!("https://127.0.0.1:{port}/index.html");

    // Signed by the test CA, 10 days left.
    let o = run(&probe(json!({"kind": "http", "url": url(ngx.https_short), "ca_pem": ca}))).await;
    assert_ok(&o);
    let days = num(&o, "cert_days_left");
    assert!((9.9..=10.01).contains(&days), "{days}");
    assert!(num(&o, "tls_ms") > 0.0);
    assert!(text(&o, "cert_not_after").ends_with('Z'));
    let o = run(&probe(json!({"kind": "http", "url": url(ngx.https_short), "ca_pem": ca, "tls_min_days": 30}))).await;
    assert_fails(&o, "the certificate expires in 10.0 days", "少于要求的 30 天");
    // Same name via `localhost` and SNI.
    let o =
        run(&probe(json!({"kind": "http", "url": format!("https://localhost:{}/", ngx.https_short), "ca_pem": ca})))
            .await;
    assert_ok(&o);

    // A private CA the machine does not trust.
    let o = run(&probe(json!({"kind": "http", "url": url(ngx.https_short)}))).await;
    assert_fails(&o, "not issued by a trusted CA", "不是由受信任的 CA 签发");

    // Another name than the certificate's.
    let o = run(&probe(
        json!({"kind": "http", "url": url(ngx.https_short), "ca_pem": ca, "server_name": "intranet.example"}),
    ))
    .await;
    assert_fails(&o, "not valid for intranet.example", "证书不适用于 intranet.example");

    // Expired two days ago: a failure with the days, and with skip-verify a pass that still reports them.
    let o = run(&probe(json!({"kind": "http", "url": url(ngx.https_expired), "ca_pem": ca}))).await;
    assert_fails(&o, "the certificate expired on", "证书已于");
    assert!((-2.01..=-1.99).contains(&num(&o, "cert_days_left")), "{:?}", o.readings);
    let o = run(&probe(json!({"kind": "http", "url": url(ngx.https_expired), "insecure_skip_verify": true}))).await;
    assert_ok(&o);
    assert!(num(&o, "cert_days_left") < -1.9);
    let o = run(&probe(
        json!({"kind": "http", "url": url(ngx.https_expired), "insecure_skip_verify": true, "tls_min_days": 7}),
    ))
    .await;
    assert_fails(&o, "the certificate expired on", "过期");

    // Self-signed.
    let o = run(&probe(json!({"kind": "http", "url": url(ngx.https_self)}))).await;
    assert_fails(&o, "self-signed", "自签名");
    let o = run(&probe(
        json!({"kind": "http", "url": url(ngx.https_self), "insecure_skip_verify": true, "body_contains": PAGE_TEXT}),
    ))
    .await;
    assert_ok(&o);
    assert!((364.0..=365.01).contains(&num(&o, "cert_days_left")));

    // Plain HTTP spoken to a TLS port, and TLS to a plain port.
    let o = run(&probe(json!({"kind": "http", "url": format!("http://127.0.0.1:{}/", ngx.https_short)}))).await;
    assert_fails(&o, "HTTP status 400", "400");
    let started = Instant::now();
    let o = run(&probe(json!({"kind": "http", "url": format!("https://127.0.0.1:{}/", ngx.http)}))).await;
    assert_fails(&o, "the TLS handshake failed", "TLS 握手失败");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn http_unreachable_and_hanging() {
    let closed = free_port();
    let started = Instant::now();
    let o = run(&probe(json!({"kind": "http", "url": format!("http://127.0.0.1:{closed}/")}))).await;
    assert_fails(&o, "connection refused", "连接被拒绝");
    assert!(started.elapsed() < Duration::from_secs(2));

    let silent = Silent::start().await;
    let p = probe(json!({"kind": "http", "url": format!("http://127.0.0.1:{}/", silent.port)}));
    let started = Instant::now();
    let o = yunwei_probes::run(&p, None, Duration::from_millis(500)).await;
    let took = started.elapsed();
    assert_fails(&o, "timed out after 500 ms", "超时");
    assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(1500), "{took:?}");

    let o = run(&probe(json!({"kind": "http", "url": "http://name.invalid/"}))).await;
    assert_fails(&o, "cannot resolve the host name name.invalid", "无法解析主机名");
}

// ----------------------------------------------------------------------------------------- TCP

#[tokio::test]
async fn tcp_connect_banner_and_tls() {
    let ngx = Nginx::start();
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": ngx.http}))).await;
    assert_ok(&o);
    assert!(num(&o, "connect_ms") >= 0.0);
    let o = run(&probe(json!({"kind": "tcp", "host": "localhost", "port": ngx.http,
        "send": "HEAD / HTTP/1.0\r\n\r\n", "expect": "HTTP/1.1 200"})))
    .await;
    assert_ok(&o);
    assert_eq!(text(&o, "banner"), "HTTP/1.1 200 OK");
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": ngx.http,
        "send": "HEAD / HTTP/1.0\r\n\r\n", "expect": "SSH-"})))
    .await;
    assert_fails(&o, "does not contain \"SSH-\" (received: \"HTTP/1.1 200 OK\")", "的应答中没有");

    let ssh = Greeter::start("SSH-2.0-OpenSSH_9.2p1 Debian\r\n", Duration::ZERO).await;
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": ssh.port, "expect": "SSH-2.0"}))).await;
    assert_ok(&o);
    assert_eq!(text(&o, "banner"), "SSH-2.0-OpenSSH_9.2p1 Debian");

    // TLS on a TCP port (LDAPS, SMTPS…): certificate days as for HTTPS.
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": ngx.https_short, "tls": true,
        "ca_pem": ngx.certs.ca_pem, "tls_min_days": 5})))
    .await;
    assert_ok(&o);
    assert!((9.9..=10.01).contains(&num(&o, "cert_days_left")));
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": ngx.https_expired, "tls": true,
        "ca_pem": ngx.certs.ca_pem})))
    .await;
    assert_fails(&o, "the certificate expired on", "证书已于");
}

#[tokio::test]
async fn tcp_failures_come_within_the_time_out() {
    let closed = free_port();
    let started = Instant::now();
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": closed}))).await;
    assert_fails(&o, &format!("cannot connect to 127.0.0.1:{closed}: connection refused"), "连接被拒绝");
    assert!(started.elapsed() < Duration::from_secs(2));

    let silent = Silent::start().await;
    let p = probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": silent.port, "expect": "SSH-"}));
    let started = Instant::now();
    let o = yunwei_probes::run(&p, None, Duration::from_millis(300)).await;
    assert_fails(&o, "timed out after 300 ms", "超时");
    assert!(started.elapsed() < Duration::from_millis(1300), "{:?}", started.elapsed());

    let closes = Greeter::start("", Duration::ZERO).await;
    let o = run(&probe(json!({"kind": "tcp", "host": "127.0.0.1", "port": closes.port, "expect": "220 "}))).await;
    assert_fails(&o, "closed the connection without sending anything", "未发送任何数据就关闭了连接");
}

// ----------------------------------------------------------------------------------------- DNS

#[tokio::test]
async fn dns_against_a_local_server() {
    let dns = Dns::start().await;
    let server = dns.addr.to_string();
    let o = run(&probe(json!({"kind": "dns", "name": "probe.yunwei.test", "server": server, "expect": "192.0.2.10"})))
        .await;
    assert_ok(&o);
    assert_eq!(num(&o, "answer_count"), 2.0);
    assert_eq!(text(&o, "answers"), "192.0.2.10, 192.0.2.11");
    assert_eq!(num(&o, "ttl_min"), 60.0);
    let o = run(&probe(json!({"kind": "dns", "name": "probe.yunwei.test.", "record_type": "TXT", "server": server, "expect": "BUILD=42"}))).await;
    assert_ok(&o);
    let o = run(&probe(json!({"kind": "dns", "name": "mail.yunwei.test", "record_type": "MX", "server": server, "expect": "mx1.yunwei.test"}))).await;
    assert_ok(&o);
    assert_eq!(text(&o, "answers"), "10 mx1.yunwei.test.");

    let o =
        run(&probe(json!({"kind": "dns", "name": "probe.yunwei.test", "server": server, "expect": "198.51.100.1"})))
            .await;
    assert_fails(
        &o,
        "no A record of probe.yunwei.test contains \"198.51.100.1\" (got: 192.0.2.10, 192.0.2.11)",
        "没有",
    );
    let o =
        run(&probe(json!({"kind": "dns", "name": "probe.yunwei.test", "record_type": "AAAA", "server": server}))).await;
    assert_fails(&o, "probe.yunwei.test has no AAAA record", "没有 AAAA 记录");

    let started = Instant::now();
    let o = run(&probe(json!({"kind": "dns", "name": "nothing.yunwei.test", "server": server}))).await;
    assert_fails(&o, "the name nothing.yunwei.test does not exist (NXDOMAIN", "不存在（NXDOMAIN");
    assert!(started.elapsed() < Duration::from_secs(2));

    let started = Instant::now();
    let o =
        run(&probe(json!({"kind": "dns", "name": "silent.yunwei.test", "server": server, "query_timeout_ms": 300})))
            .await;
    let took = started.elapsed();
    assert_fails(&o, &format!("no answer from the DNS server {server} within 300 ms"), "没有应答");
    assert!(took >= Duration::from_millis(290) && took < Duration::from_millis(1500), "{took:?}");

    let before = dns.queries.load(Ordering::SeqCst);
    run(&probe(json!({"kind": "dns", "name": "probe.yunwei.test", "server": server}))).await;
    run(&probe(json!({"kind": "dns", "name": "probe.yunwei.test", "server": server}))).await;
    assert_eq!(dns.queries.load(Ordering::SeqCst) - before, 2, "every run asks the server (no cache)");

    let closed = format!("127.0.0.1:{}", free_port());
    let p = probe(json!({"kind": "dns", "name": "probe.yunwei.test", "server": closed, "query_timeout_ms": 300}));
    let started = Instant::now();
    let o = yunwei_probes::run(&p, None, Duration::from_secs(3)).await;
    assert!(!o.ok && started.elapsed() < Duration::from_secs(3), "{:?}", o.reason);
}

#[tokio::test]
async fn dns_through_the_system_configuration() {
    // `localhost` is answered by the resolver itself (RFC 6761), whatever /etc/resolv.conf says.
    let o = run(&probe(json!({"kind": "dns", "name": "localhost", "expect": "127.0.0.1"}))).await;
    assert_ok(&o);
}

// ---------------------------------------------------------------------------------------- ICMP

#[tokio::test]
async fn icmp_loopback() {
    let (unprivileged, net_raw) = icmp_allowed();
    let p = probe(json!({"kind": "icmp", "host": "127.0.0.1", "count": 3, "interval_ms": 50}));
    let started = Instant::now();
    let o = yunwei_probes::run(&p, None, Duration::from_secs(5)).await;
    if unprivileged || net_raw {
        assert_ok(&o);
        assert_eq!((num(&o, "sent"), num(&o, "received"), num(&o, "loss_pct")), (3.0, 3.0, 0.0));
        let (min, avg, max) = (num(&o, "rtt_min_ms"), num(&o, "rtt_avg_ms"), num(&o, "rtt_max_ms"));
        assert!(min > 0.0 && min <= avg && avg <= max && max < 1000.0, "{min} {avg} {max}");
        assert!(started.elapsed() >= Duration::from_millis(100), "three pings 50 ms apart");
    } else {
        assert_fails(&o, "net.ipv4.ping_group_range", "net.ipv4.ping_group_range");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

/// Without CAP_NET_RAW and outside `ping_group_range` the kernel refuses: the probe says which
/// sysctl to change. Run as root, the test re-runs itself under `setpriv` without CAP_NET_RAW.
#[tokio::test]
async fn icmp_refused_names_the_sysctl() {
    let (unprivileged, net_raw) = icmp_allowed();
    let p = probe(json!({"kind": "icmp", "host": "127.0.0.1", "count": 1}));
    if std::env::var_os("YUNWEI_TEST_ICMP_REFUSED").is_some() {
        assert!(!net_raw, "the child runs without CAP_NET_RAW");
        let o = run(&p).await;
        assert_fails(&o, "sysctl net.ipv4.ping_group_range", "sysctl net.ipv4.ping_group_range");
        assert!(o.reason.as_ref().unwrap().en.contains("CAP_NET_RAW"));
        return;
    }
    if unprivileged {
        eprintln!("this group may open ICMP sockets (ping_group_range): nothing is refused here");
        return;
    }
    if !net_raw {
        // This process itself is refused: icmp_loopback asserts the reason.
        let o = run(&p).await;
        assert_fails(&o, "net.ipv4.ping_group_range", "net.ipv4.ping_group_range");
        return;
    }
    assert!(std::path::Path::new("/usr/bin/setpriv").exists(), "setpriv (util-linux) is needed to drop CAP_NET_RAW");
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--"])
        .arg(exe)
        .args(["--exact", "icmp_refused_names_the_sysctl", "--nocapture"])
        .env("YUNWEI_TEST_ICMP_REFUSED", "1")
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child without CAP_NET_RAW failed:\n{log}");
    assert!(log.contains("1 passed"), "the child ran the test:\n{log}");
}

// -------------------------------------------------------------------------------------- Engine

fn tcp_monitor(id: &str, port: u16, interval_ms: u64, timeout_ms: u64, expect: Option<&str>) -> Monitor {
    let mut def = json!({"kind": "tcp", "host": "127.0.0.1", "port": port});
    if let Some(e) = expect {
        def["expect"] = json!(e);
    }
    Monitor {
        id: id.to_string(),
        probe: probe(def),
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        secret: None,
    }
}

async fn collect(rx: &mut mpsc::Receiver<Report>, for_how_long: Duration) -> Vec<Report> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + for_how_long;
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        out.push(r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_slots_are_spread_and_fixed() {
    let target = Greeter::start("OK\n", Duration::ZERO).await;
    let (tx, mut rx) = mpsc::channel(10_000);
    let engine = Engine::start(EngineConfig::default(), ProbeExecutor, tx);
    let interval = 400u64;
    let monitors: Vec<Monitor> =
        (0..40).map(|i| tcp_monitor(&format!("m{i}"), target.port, interval, 300, Some("OK"))).collect();
    engine.set_monitors(monitors);
    let mut reports = collect(&mut rx, Duration::from_millis(2100)).await;
    let stats = engine.stop(Duration::from_secs(2)).await;
    // Runs that started before the stop were delivered by now.
    while let Ok(r) = rx.try_recv() {
        reports.push(r);
    }

    assert!(reports.iter().all(|r| r.outcome.ok), "{:?}", reports.iter().find(|r| !r.outcome.ok));
    let mut by_id: std::collections::HashMap<&str, Vec<&Report>> = Default::default();
    for r in &reports {
        by_id.entry(&r.monitor_id).or_default().push(r);
    }
    assert_eq!(by_id.len(), 40, "every monitor ran");
    let mut phases = Vec::new();
    for (id, runs) in &by_id {
        assert!(runs.len() >= 4, "{id} ran {} times in 2.1 s at 400 ms", runs.len());
        let phase = phase_ms(id, Duration::from_millis(interval)) as i64;
        for w in runs.windows(2) {
            assert_eq!(w[1].slot_unix_ms - w[0].slot_unix_ms, interval as i64, "{id}: consecutive slots, no drift");
        }
        for r in runs {
            assert_eq!(r.slot_unix_ms.rem_euclid(interval as i64), phase, "{id}: slot on its grid");
            assert!(r.lateness < Duration::from_millis(250), "{id} started {:?} late", r.lateness);
            assert_eq!(r.started_unix_ms - r.slot_unix_ms, r.lateness.as_millis() as i64);
        }
        phases.push(phase);
    }
    // 40 phases over 400 ms: no 100 ms quarter holds more than half of them.
    let mut quarters = [0; 4];
    for p in &phases {
        quarters[(*p / 100) as usize] += 1;
    }
    assert!(quarters.iter().all(|q| *q <= 20), "phases bunch up: {quarters:?}");
    assert_eq!(stats.runs as usize, reports.len());
    assert_eq!((stats.late_runs, stats.failed), (0, 0));
    assert!(stats.p99_lateness < Duration::from_millis(250), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_bounds_concurrency() {
    // Each connection is held 300 ms before the answer; 12 monitors at 500 ms with 3 permits.
    let target = Greeter::start("OK\n", Duration::from_millis(300)).await;
    let (tx, mut rx) = mpsc::channel(10_000);
    let engine = Engine::start(EngineConfig { max_concurrency: 3, ..Default::default() }, ProbeExecutor, tx);
    engine.set_monitors((0..12).map(|i| tcp_monitor(&format!("c{i}"), target.port, 500, 450, Some("OK"))).collect());
    let reports = collect(&mut rx, Duration::from_millis(2000)).await;
    let stats = engine.stop(Duration::from_secs(3)).await;
    assert_eq!(target.max_open.load(Ordering::SeqCst), 3, "never more than 3 probes at once, and 3 reached");
    assert!(!reports.is_empty());
    assert!(stats.max_lateness >= Duration::from_millis(250), "waiting for a permit shows as lateness: {stats:?}");
    assert!(stats.skipped > 0, "monitors still waiting at their next slot skip it: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_hanging_target_does_not_delay_others() {
    let silent = Silent::start().await;
    let good = Greeter::start("OK\n", Duration::ZERO).await;
    let (tx, mut rx) = mpsc::channel(10_000);
    let engine = Engine::start(EngineConfig::default(), ProbeExecutor, tx);
    let mut set: Vec<Monitor> =
        (0..10).map(|i| tcp_monitor(&format!("hang{i}"), silent.port, 300, 1000, Some("never"))).collect();
    set.extend((0..10).map(|i| tcp_monitor(&format!("ok{i}"), good.port, 300, 1000, Some("OK"))));
    engine.set_monitors(set);
    let reports = collect(&mut rx, Duration::from_millis(1700)).await;
    let _ = engine.stop(Duration::from_millis(100)).await;
    let ok: Vec<_> = reports.iter().filter(|r| r.monitor_id.starts_with("ok")).collect();
    let hung: Vec<_> = reports.iter().filter(|r| r.monitor_id.starts_with("hang")).collect();
    assert!(ok.len() >= 40, "the healthy monitors kept their 300 ms slots: {} runs", ok.len());
    assert!(ok.iter().all(|r| r.outcome.ok && r.lateness < Duration::from_millis(250)));
    // Time-outs are capped at the interval, so hanging runs end (failed) after 300 ms.
    assert!(!hung.is_empty());
    for r in &hung {
        let reason = r.outcome.reason.as_ref().unwrap();
        assert!(reason.en.contains("timed out after 300 ms"), "{reason:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_monitor_set_updates() {
    let a = Greeter::start("A\n", Duration::ZERO).await;
    let b = Greeter::start("B\n", Duration::ZERO).await;
    let (tx, mut rx) = mpsc::channel(10_000);
    let engine = Arc::new(Engine::start(EngineConfig::default(), ProbeExecutor, tx));
    engine.set_monitors(vec![
        tcp_monitor("keep", a.port, 200, 150, Some("A")),
        tcp_monitor("drop", a.port, 200, 150, Some("A")),
        tcp_monitor("slow", a.port, 200, 150, Some("A")),
    ]);
    let first = collect(&mut rx, Duration::from_millis(700)).await;
    for id in ["keep", "drop", "slow"] {
        assert!(first.iter().any(|r| &*r.monitor_id == id), "{id} ran");
    }
    assert_eq!(engine.stats().monitors, 3);
    // Replace: "drop" goes, "new" comes, "keep" now probes B (same interval: same grid), "slow" goes to 500 ms.
    engine.set_monitors(vec![
        tcp_monitor("keep", b.port, 200, 150, Some("B")),
        tcp_monitor("slow", a.port, 500, 150, Some("A")),
        tcp_monitor("new", b.port, 200, 150, Some("B")),
    ]);
    // Runs already in flight may still report; let them drain.
    let _ = collect(&mut rx, Duration::from_millis(250)).await;
    let second = collect(&mut rx, Duration::from_millis(1600)).await;
    assert!(!second.iter().any(|r| &*r.monitor_id == "drop"), "removed monitors stop");
    assert!(second.iter().any(|r| &*r.monitor_id == "new"), "added monitors run");
    let keep: Vec<_> = second.iter().filter(|r| &*r.monitor_id == "keep").collect();
    assert!(keep.len() >= 5 && keep.iter().all(|r| r.outcome.ok), "keep probes B now");
    let keep_phase = phase_ms("keep", Duration::from_millis(200)) as i64;
    assert!(keep.iter().all(|r| r.slot_unix_ms.rem_euclid(200) == keep_phase));
    let slow: Vec<_> = second.iter().filter(|r| &*r.monitor_id == "slow").collect();
    assert!((2..=4).contains(&slow.len()), "slow runs every 500 ms now: {}", slow.len());
    for w in slow.windows(2) {
        assert_eq!(w[1].slot_unix_ms - w[0].slot_unix_ms, 500);
    }
    engine.remove("new");
    let _ = collect(&mut rx, Duration::from_millis(250)).await;
    let third = collect(&mut rx, Duration::from_millis(600)).await;
    assert!(!third.iter().any(|r| &*r.monitor_id == "new"));
    assert_eq!(engine.stats().monitors, 2);
    assert!(b.accepted.load(Ordering::SeqCst) > 0);
}
