//! The service probes against real servers on loopback: PostgreSQL and MariaDB (the machine's),
//! and a private redis-server, sshd, snmpd and node_exporter per test (`svc_servers`). Every
//! failure case asserts the reason and that it came within the time-out.

mod svc_servers;

use std::time::{Duration, Instant};

use serde_json::json;
use svc_servers::*;
use yunwei_probes::{Outcome, Probe, Secret, Value};

fn probe(v: serde_json::Value) -> Probe {
    let p: Probe = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
    let back = serde_json::to_value(&p).unwrap();
    assert_eq!(serde_json::from_value::<Probe>(back).unwrap(), p, "definitions survive a round trip");
    p
}

fn secret(user: Option<&str>, password: Option<&str>) -> Secret {
    Secret { username: user.map(Into::into), password: password.map(Into::into), private_key: None }
}

async fn run(p: &Probe, s: Option<&Secret>) -> Outcome {
    yunwei_probes::run(p, s, Duration::from_secs(15)).await
}

#[track_caller]
fn assert_ok(o: &Outcome) {
    assert!(o.ok, "expected a pass, got {:?}\nreadings: {:?}", o.reason, o.readings);
    assert!(o.reason.is_none());
}

/// Fails with an English reason containing `needle` (and a Chinese one).
#[track_caller]
fn assert_fail(o: &Outcome, needle: &str) {
    assert!(!o.ok, "expected a failure mentioning {needle:?}, got a pass: {:?}", o.readings);
    let r = o.reason.as_ref().expect("a failure has a reason");
    assert!(r.en.contains(needle), "reason {:?} does not mention {needle:?}", r.en);
    assert!(!r.zh.is_empty() && r.zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "zh: {:?}", r.zh);
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

fn flag(o: &Outcome, key: &str) -> bool {
    match o.reading(key) {
        Some(Value::Bool(b)) => *b,
        other => panic!("reading {key}: {other:?} in {:?}", o.readings),
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL (127.0.0.1:5432, trust authentication, or YUNWEI_TEST_PG_URL)

struct Pg {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    db: String,
}

fn pg() -> Pg {
    let url =
        std::env::var("YUNWEI_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let u = reqwest::Url::parse(&url).expect("YUNWEI_TEST_PG_URL is a URL");
    Pg {
        host: u.host_str().unwrap_or("127.0.0.1").to_string(),
        port: u.port().unwrap_or(5432),
        user: if u.username().is_empty() { "postgres".into() } else { u.username().to_string() },
        password: u.password().map(String::from),
        db: u.path().trim_start_matches('/').to_string().chars().take(63).collect::<String>(),
    }
}

fn pg_probe(extra: serde_json::Value) -> Probe {
    let c = pg();
    let mut v = json!({"kind": "postgres", "host": c.host, "port": c.port,
        "database": if c.db.is_empty() { "postgres".to_string() } else { c.db.clone() }});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    probe(v)
}

fn pg_secret() -> Secret {
    let c = pg();
    secret(Some(&c.user), c.password.as_deref())
}

#[tokio::test]
async fn postgres_reads_version_role_replication_and_checks_a_query() {
    let p = pg_probe(json!({"query": "SELECT 41 + 1", "expect": {"op": "=", "value": 42}, "role": "primary",
        "max_lag_s": 30}));
    let o = run(&p, Some(&pg_secret())).await;
    assert_ok(&o);
    assert!(num(&o, "connect_ms") > 0.0);
    assert!(text(&o, "version").chars().next().unwrap().is_ascii_digit(), "{:?}", o.reading("version"));
    assert!(!flag(&o, "in_recovery"));
    assert_eq!(num(&o, "replicas"), 0.0, "a lone server has no standby");
    assert_eq!(num(&o, "result"), 42.0);
    assert!(num(&o, "query_ms") >= 0.0);

    // Text results and numeric types that arrive as text (numeric, interval) compare as expected.
    let p = pg_probe(json!({"query": "SELECT 'status: 正常'::text", "expect": {"op": "contains", "value": "正常"}}));
    assert_ok(&run(&p, Some(&pg_secret())).await);
    let p = pg_probe(json!({"query": "SELECT 2.50::numeric", "expect": {"op": ">=", "value": 2.5}}));
    let o = run(&p, Some(&pg_secret())).await;
    assert_ok(&o);
    assert_eq!(num(&o, "result"), 2.5);
    // An abandoned statement is bounded on the server too.
    let p = pg_probe(json!({"query": "SHOW statement_timeout", "expect": {"value": "1min"}}));
    assert_ok(&run(&p, Some(&pg_secret())).await);
}

#[tokio::test]
async fn postgres_failures_are_explained() {
    let s = pg_secret();
    let o = run(&pg_probe(json!({"query": "SELECT 'abc'", "expect": {"value": "xyz"}})), Some(&s)).await;
    assert_fail(&o, r#"the query returned "abc", expected = "xyz""#);
    assert_eq!(text(&o, "result"), "abc", "readings are kept on failure");

    let o = run(&pg_probe(json!({"query": "SELECT 1 WHERE false", "expect": {"value": 1}})), Some(&s)).await;
    assert_fail(&o, "the query returned no row");

    // The session is read-only: a checklist query cannot write.
    let o = run(&pg_probe(json!({"query": "CREATE TABLE yw_probe_must_not_exist (x int)"})), Some(&s)).await;
    assert_fail(&o, "read-only transaction");

    let o = run(&pg_probe(json!({"query": "SELEC 1"})), Some(&s)).await;
    assert_fail(&o, "the query failed: syntax error");

    let o = run(&pg_probe(json!({"role": "standby"})), Some(&s)).await;
    assert_fail(&o, "expected a standby, but the server is a primary");

    let o = run(&pg_probe(json!({"min_replicas": 1})), Some(&s)).await;
    assert_fail(&o, "0 standby(s) connected, fewer than the required 1");

    let o = run(&pg_probe(json!({})), Some(&secret(Some("yw_no_such_role"), Some("x")))).await;
    assert_fail(&o, "refused the login of user yw_no_such_role");

    let o = run(&pg_probe(json!({"database": "yw_no_such_db"})), Some(&s)).await;
    assert_fail(&o, "database yw_no_such_db does not exist");

    let port = free_tcp_port();
    let p = probe(json!({"kind": "postgres", "host": "127.0.0.1", "port": port}));
    let o = run(&p, Some(&s)).await;
    assert_fail(&o, &format!("cannot connect to 127.0.0.1:{port}: connection refused"));
    assert!(o.elapsed_ms < 2000.0);
}

/// Polls a probe until it passes (replication takes a moment to start), returning the last outcome.
async fn until_ok(p: &Probe, s: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    loop {
        let o = run(p, s).await;
        if o.ok || started.elapsed() > Duration::from_secs(20) {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls a probe until it fails with a reason containing `needle`.
async fn until_fail(p: &Probe, s: Option<&Secret>, needle: &str) -> Outcome {
    let started = Instant::now();
    loop {
        let o = run(p, s).await;
        let hit = o.reason.as_ref().is_some_and(|r| r.en.contains(needle));
        if hit || started.elapsed() > Duration::from_secs(20) {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn postgres_primary_and_standby_replication() {
    use sqlx::Connection as _;
    let pair = PgPair::start();
    let s = secret(Some("postgres"), None);
    let on = |port: u16, extra: serde_json::Value| {
        let mut v = json!({"kind": "postgres", "host": "127.0.0.1", "port": port});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        probe(v)
    };
    let primary =
        on(pair.primary, json!({"role": "primary", "min_replicas": 1, "max_lag_s": 60, "max_lag_bytes": 1e9}));
    let o = until_ok(&primary, Some(&s)).await;
    assert_ok(&o);
    assert_eq!(num(&o, "replicas"), 1.0);
    assert!(num(&o, "lag_bytes") >= 0.0);
    let standby = on(pair.standby, json!({"role": "standby", "max_lag_s": 60}));
    let o = run(&standby, Some(&s)).await;
    assert_ok(&o);
    assert!(flag(&o, "in_recovery"));
    assert!(num(&o, "lag_s") >= 0.0);
    assert_fail(
        &run(&on(pair.standby, json!({"role": "primary"})), Some(&s)).await,
        "expected a primary, but the server is in recovery",
    );

    // Replay paused on the standby while the primary writes: the lag grows past a limit.
    let url = |port: u16| format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut w = sqlx::PgConnection::connect(&url(pair.primary)).await.unwrap();
    sqlx::raw_sql("CREATE TABLE yw_lag (x int); INSERT INTO yw_lag VALUES (1)").execute(&mut w).await.unwrap();
    let replayed = on(pair.standby, json!({"query": "SELECT count(*) FROM yw_lag", "expect": {"value": 1}}));
    assert_ok(&until_ok(&replayed, Some(&s)).await);
    let mut r = sqlx::PgConnection::connect(&url(pair.standby)).await.unwrap();
    sqlx::raw_sql("SELECT pg_wal_replay_pause()").execute(&mut r).await.unwrap();
    sqlx::raw_sql("INSERT INTO yw_lag VALUES (2)").execute(&mut w).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let o = run(&on(pair.standby, json!({"max_lag_s": 1})), Some(&s)).await;
    assert_fail(&o, "replication lag ");
    assert_fail(&o, "s, above the maximum 1 s");
    assert!(num(&o, "lag_s") >= 2.0, "{:?}", o.readings);
    let o =
        until_fail(&on(pair.primary, json!({"max_lag_bytes": 0})), Some(&s), "bytes, above the maximum 0 bytes").await;
    assert_fail(&o, "bytes, above the maximum 0 bytes");
    sqlx::raw_sql("SELECT pg_wal_replay_resume()").execute(&mut r).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// MariaDB / MySQL (127.0.0.1:3306, root without password)

fn my_probe(extra: serde_json::Value) -> Probe {
    let mut v = json!({"kind": "mysql", "host": "127.0.0.1", "port": 3306});
    // `port` in `extra` overrides the system server's.
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    probe(v)
}

fn my_secret() -> Secret {
    secret(Some("root"), None)
}

#[tokio::test]
async fn mysql_reads_version_replication_and_checks_a_query() {
    let p = my_probe(json!({"query": "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'mysql'",
        "expect": {"value": 1}, "role": "primary", "database": "mysql"}));
    let o = run(&p, Some(&my_secret())).await;
    assert_ok(&o);
    assert!(num(&o, "connect_ms") > 0.0);
    let version = text(&o, "version");
    assert!(version.chars().next().unwrap().is_ascii_digit(), "{version}");
    assert!(!flag(&o, "read_only"));
    assert!(!flag(&o, "replica"), "the test server replicates from nobody");
    assert_eq!(num(&o, "replicas"), 0.0);
    assert_eq!(num(&o, "result"), 1.0);

    let o = run(
        &my_probe(json!({"query": "SELECT CONCAT('备份', '正常')", "expect": {"value": "备份正常"}})),
        Some(&my_secret()),
    )
    .await;
    assert_ok(&o);
}

#[tokio::test]
async fn mysql_failures_are_explained() {
    let o = run(&my_probe(json!({})), Some(&secret(Some("root"), Some("not-the-password")))).await;
    assert_fail(&o, "refused the login of user root");

    let o = run(&my_probe(json!({"database": "yw_no_such_db"})), Some(&my_secret())).await;
    assert_fail(&o, "database yw_no_such_db does not exist");

    let o = run(&my_probe(json!({"role": "replica"})), Some(&my_secret())).await;
    assert_fail(&o, "expected a replica, but the server replicates from nobody");

    let o = run(&my_probe(json!({"query": "CREATE DATABASE yw_probe_must_not_exist"})), Some(&my_secret())).await;
    assert_fail(&o, "the query failed");
    assert!(o.reason.as_ref().unwrap().en.contains("READ ONLY"), "{:?}", o.reason);

    let o = run(&my_probe(json!({"query": "SELECT 5", "expect": {"op": "<", "value": 3}})), Some(&my_secret())).await;
    assert_fail(&o, r#"the query returned "5", expected < 3"#);
}

#[tokio::test]
async fn mysql_replica_status_and_a_broken_replication() {
    let pair = MariaPair::start();
    let yw = secret(Some("yw"), None);
    let replica = my_probe(json!({"port": pair.replica, "role": "replica", "max_lag_s": 30}));
    let o = until_ok(&replica, Some(&yw)).await;
    assert_ok(&o);
    assert!(flag(&o, "replica"));
    assert!(flag(&o, "read_only"));
    assert_eq!((text(&o, "replica_io_running"), text(&o, "replica_sql_running")), ("Yes".into(), "Yes".into()));
    assert_eq!(num(&o, "lag_s"), 0.0);
    let primary = my_probe(json!({"port": pair.primary, "role": "primary", "min_replicas": 1}));
    let o = until_ok(&primary, Some(&yw)).await;
    assert_ok(&o);
    assert_eq!(num(&o, "replicas"), 1.0);
    assert!(!flag(&o, "replica"));
    let o = run(&my_probe(json!({"port": pair.replica, "role": "primary"})), Some(&yw)).await;
    assert_fail(&o, "expected a primary, but the server is read-only");

    // A row the replica cannot apply (a duplicate key: MariaDB replays conflicting DDL
    // idempotently, not DML) stops its SQL thread: a finding even without limits.
    pair.sql("p", "CREATE DATABASE yw_conflict; CREATE TABLE yw_conflict.t (id INT PRIMARY KEY) ENGINE=InnoDB");
    let created = my_probe(json!({"port": pair.replica, "expect": {"value": 1},
        "query": "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'yw_conflict'"}));
    assert_ok(&until_ok(&created, Some(&yw)).await);
    pair.sql("r", "INSERT INTO yw_conflict.t VALUES (1)");
    pair.sql("p", "INSERT INTO yw_conflict.t VALUES (1)");
    let plain = my_probe(json!({"port": pair.replica}));
    let o = until_fail(&plain, Some(&yw), "replication is not running").await;
    assert_fail(&o, "replication is not running: IO thread Yes, SQL thread No");
    assert!(text(&o, "replica_error").contains("yw_conflict"), "{:?}", o.readings);
    assert!(o.reading("lag_s").is_none(), "a stopped SQL thread has no lag, not zero");
    assert_fail(&run(&replica, Some(&yw)).await, "the replication lag is unknown");
}

// ---------------------------------------------------------------------------------------------
// Redis

#[tokio::test]
async fn redis_auth_ping_info_and_limits() {
    let r = Redis::start(Some("redis-secret"), &[]);
    let p = probe(json!({"kind": "redis", "host": "127.0.0.1", "port": r.port, "role": "master",
        "max_used_memory_mb": 1024}));
    let o = run(&p, Some(&secret(None, Some("redis-secret")))).await;
    assert_ok(&o);
    assert_eq!(text(&o, "role"), "master");
    assert!(num(&o, "used_memory") > 100_000.0);
    assert!(num(&o, "connected_clients") >= 1.0);
    assert_eq!(num(&o, "connected_slaves"), 0.0);
    assert!(text(&o, "version").starts_with(char::is_numeric));

    // ACL form: user `default` with the same password.
    assert_ok(&run(&p, Some(&secret(Some("default"), Some("redis-secret")))).await);

    let tight = probe(json!({"kind": "redis", "host": "127.0.0.1", "port": r.port, "max_used_memory_mb": 0.01,
        "min_connected_slaves": 1}));
    let o = run(&tight, Some(&secret(None, Some("redis-secret")))).await;
    assert_fail(&o, "above the maximum 0.01 MB");
    assert_fail(&o, "0 replica(s) connected, fewer than the required 1");

    let o = run(&p, None).await;
    assert_fail(&o, "requires a password (NOAUTH)");
    let o = run(&p, Some(&secret(None, Some("wrong")))).await;
    assert_fail(&o, "refused authentication: wrong user name or password");
}

#[tokio::test]
async fn redis_replica_link_status() {
    let master = Redis::start(Some("redis-secret"), &[]);
    let port = master.port.to_string();
    let replica = Redis::start(None, &["--replicaof", "127.0.0.1", &port, "--masterauth", "redis-secret"]);
    let p = probe(json!({"kind": "redis", "host": "127.0.0.1", "port": replica.port, "role": "replica"}));
    // The first synchronisation takes a moment.
    let started = Instant::now();
    let o = loop {
        let o = run(&p, None).await;
        if o.ok || started.elapsed() > Duration::from_secs(15) {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ok(&o);
    assert_eq!((text(&o, "role"), text(&o, "master_link_status")), ("slave".into(), "up".into()));
    let on_master =
        probe(json!({"kind": "redis", "host": "127.0.0.1", "port": master.port, "min_connected_slaves": 1}));
    assert_ok(&run(&on_master, Some(&secret(None, Some("redis-secret")))).await);

    // A replica whose master is gone.
    let dead = free_tcp_port().to_string();
    let orphan = Redis::start(None, &["--replicaof", "127.0.0.1", &dead]);
    let p = probe(json!({"kind": "redis", "host": "127.0.0.1", "port": orphan.port}));
    let o = run(&p, None).await;
    assert_fail(&o, &format!("the replication link to master 127.0.0.1:{dead} is down"));
    let p = probe(json!({"kind": "redis", "host": "127.0.0.1", "port": orphan.port, "role": "master"}));
    assert_fail(&run(&p, None).await, "expected a master, the role is slave");
}

#[tokio::test]
async fn redis_wrong_service_is_named() {
    let http = HttpOnce::start("200 OK", "hello").await;
    let p = probe(json!({"kind": "redis", "host": "127.0.0.1", "port": http.port}));
    let o = run(&p, None).await;
    assert_fail(&o, "did not answer PING in the Redis protocol (another service on the port?)");
}

// ---------------------------------------------------------------------------------------------
// SSH

fn ssh_probe(port: u16, extra: serde_json::Value) -> Probe {
    let mut v = json!({"kind": "ssh", "host": "127.0.0.1", "port": port, "username": SSH_USER});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    probe(v)
}

fn ssh_pw() -> Secret {
    secret(None, Some(&ssh_password()))
}

#[tokio::test]
async fn ssh_command_with_password_and_keys() {
    let sshd = Sshd::start();
    let p = ssh_probe(
        sshd.port,
        json!({"command": "echo 巡检正常; echo load=0.42; echo oops >&2; exit 3", "expect_exit": 3,
            "stdout_contains": "巡检正常", "stdout_regex": "load=([0-9.]+)", "limits": {"match": {"max": 1}}}),
    );
    let o = run(&p, Some(&ssh_pw())).await;
    assert_ok(&o);
    assert_eq!(num(&o, "exit_status"), 3.0);
    assert_eq!(num(&o, "match"), 0.42);
    assert_eq!(text(&o, "stdout"), "巡检正常\nload=0.42");
    assert_eq!(text(&o, "host_key"), sshd.fingerprint(), "the host key is reported (trust on first use)");

    // Key authentication, the user name from the credentials.
    let p = probe(json!({"kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "command": "id -un"}));
    let key = Secret { username: Some(SSH_USER.into()), password: None, private_key: Some(sshd.client_key.clone()) };
    let o = run(&p, Some(&key)).await;
    assert_ok(&o);
    assert_eq!(text(&o, "stdout"), SSH_USER);
    // An encrypted key: the secret's password is its passphrase.
    let key2 = Secret {
        username: Some(SSH_USER.into()),
        password: Some("key-pass".into()),
        private_key: Some(sshd.client_key_encrypted.clone()),
    };
    assert_ok(&run(&p, Some(&key2)).await);
    let garbled = Secret { private_key: Some("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n".into()), ..key.clone() };
    assert_fail(&run(&p, Some(&garbled)).await, "cannot read the SSH private key");

    // Pinned host key: the right one passes, another is refused before any credential is sent.
    let pinned = ssh_probe(sshd.port, json!({"command": "true", "host_key_sha256": sshd.fingerprint()}));
    assert_ok(&run(&pinned, Some(&ssh_pw())).await);
    let wrong_fp = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
    let pinned = ssh_probe(sshd.port, json!({"command": "true", "host_key_sha256": wrong_fp}));
    let o = run(&pinned, Some(&secret(None, Some("a-password-that-must-not-be-sent")))).await;
    assert_fail(&o, &format!("presented {}, expected {wrong_fp}; no credentials were sent", sshd.fingerprint()));
    assert_eq!(text(&o, "host_key"), sshd.fingerprint());
}

#[tokio::test]
async fn ssh_failures_are_explained() {
    let sshd = Sshd::start();
    let o = run(&ssh_probe(sshd.port, json!({"command": "true"})), Some(&secret(None, Some("wrong-password")))).await;
    assert_fail(&o, &format!("127.0.0.1:{} refused the password login of user {SSH_USER}", sshd.port));

    let o = run(&ssh_probe(sshd.port, json!({"command": "echo no such thing >&2; exit 2"})), Some(&ssh_pw())).await;
    assert_fail(&o, "the command exited with status 2, expected 0: no such thing");

    let o =
        run(&ssh_probe(sshd.port, json!({"command": "echo fine", "stdout_regex": "^error"})), Some(&ssh_pw())).await;
    assert_fail(&o, "the command output does not match ^error");
    let o =
        run(&ssh_probe(sshd.port, json!({"command": "echo fine", "stdout_contains": "正常"})), Some(&ssh_pw())).await;
    assert_fail(&o, "does not contain \"正常\"");

    let o = run(&ssh_probe(sshd.port, json!({"command": "true"})), None).await;
    assert_fail(&o, "no SSH credentials");

    let port = free_tcp_port();
    let o = run(&ssh_probe(port, json!({"command": "true"})), Some(&ssh_pw())).await;
    assert_fail(&o, &format!("cannot connect to 127.0.0.1:{port}: connection refused"));
}

#[tokio::test]
async fn ssh_hanging_command_fails_within_the_timeout() {
    let sshd = Sshd::start();
    let p = ssh_probe(sshd.port, json!({"command": "sleep 60"}));
    let started = Instant::now();
    let o = yunwei_probes::run(&p, Some(&ssh_pw()), Duration::from_millis(1500)).await;
    assert_fail(&o, "timed out after 1500 ms");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn ssh_host_metrics_match_node_readings() {
    let sshd = Sshd::start();
    let p = ssh_probe(
        sshd.port,
        json!({"host_metrics": true, "cpu_sample_ms": 300,
        "limits": {"mem.used_pct": {"max": 100}, "disk./.used_pct": {"max": 100}}}),
    );
    let o = run(&p, Some(&ssh_pw())).await;
    assert_ok(&o);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(num(&o, "cpu.cores") >= 1.0 && num(&o, "cpu.cores") >= cores.min(1.0));
    let busy = num(&o, "cpu.busy_pct");
    assert!((0.0..=100.0).contains(&busy), "{busy}");
    let mem = num(&o, "mem.used_pct");
    assert!(mem > 0.0 && mem < 100.0, "{mem}");
    assert!(num(&o, "load.1") >= 0.0 && num(&o, "load.15") >= 0.0);
    let root = num(&o, "disk./.used_pct");
    assert!(root > 0.0 && root <= 100.0, "{root}");
    assert!(num(&o, "uptime_h") > 0.0);
    assert!(!o.readings.iter().any(|r| r.key.starts_with("disk./dev")), "pseudo file systems are left out");

    let tight = ssh_probe(
        sshd.port,
        json!({"host_metrics": true, "cpu_sample_ms": 0,
        "limits": {"disk.*.used_pct": {"max": 0.001}, "disk./yw-not-mounted.used_pct": {"max": 90}}}),
    );
    let o = run(&tight, Some(&ssh_pw())).await;
    assert_fail(&o, "disk./.used_pct = ");
    assert_fail(&o, "reading disk./yw-not-mounted.used_pct was not measured");
    assert!(o.reading("cpu.busy_pct").is_none(), "no CPU sample asked");
}

// ---------------------------------------------------------------------------------------------
// SNMP

fn snmp_probe(port: u16, extra: serde_json::Value) -> Probe {
    let mut v = json!({"kind": "snmp", "host": "127.0.0.1", "port": port, "attempt_timeout_ms": 500, "retries": 1,
    "oids": [
        {"oid": "1.3.6.1.2.1.1.5.0", "name": "sys.name"},
        {"oid": ".1.3.6.1.2.1.1.6.0", "name": "sys.location", "equals": "二楼机房"},
        {"oid": "1.3.6.1.2.1.1.3.0", "name": "sys.uptime_s", "scale": 0.01, "min": 0},
        {"oid": "1.3.6.1.2.1.33.1.2.4.0", "name": "ups.battery_charge", "min": 50, "max": 100}
    ]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    probe(v)
}

#[tokio::test]
async fn snmp_v2c_and_v3_get_named_oids() {
    let agent = Snmpd::start();
    let o = run(&snmp_probe(agent.port, json!({})), Some(&secret(None, Some(COMMUNITY)))).await;
    assert_ok(&o);
    assert_eq!(text(&o, "sys.name"), "yw-probe-snmpd");
    assert_eq!(text(&o, "sys.location"), "二楼机房");
    assert_eq!(num(&o, "ups.battery_charge"), 87.0);
    assert!(num(&o, "sys.uptime_s") >= 0.0);

    let v3 =
        Secret { username: Some(V3_USER.into()), password: Some(V3_AUTH.into()), private_key: Some(V3_PRIV.into()) };
    let p = snmp_probe(
        agent.port,
        json!({"version": "v3", "security_level": "auth_priv", "auth_protocol": "sha1",
        "privacy_protocol": "aes128"}),
    );
    let o = run(&p, Some(&v3)).await;
    assert_ok(&o);
    assert_eq!(num(&o, "ups.battery_charge"), 87.0);

    // A threshold the value breaks.
    let p = snmp_probe(
        agent.port,
        json!({"oids": [{"oid": "1.3.6.1.2.1.33.1.2.4.0", "name": "ups.battery_charge",
        "min": 90}]}),
    );
    let o = run(&p, Some(&secret(None, Some(COMMUNITY)))).await;
    assert_fail(&o, "ups.battery_charge = 87, below the minimum 90");
    assert_eq!(num(&o, "ups.battery_charge"), 87.0);
}

#[tokio::test]
async fn snmp_failures_are_explained_within_the_timeout() {
    let agent = Snmpd::start();
    let community = secret(None, Some(COMMUNITY));

    let p = snmp_probe(
        agent.port,
        json!({"oids": [{"oid": "1.3.6.1.2.1.1.5.0"}, {"oid": "1.3.6.1.2.1.1.99.0",
        "name": "missing.object"}, {"oid": "1.3.6.1.2.1.1.5.7"}]}),
    );
    let o = run(&p, Some(&community)).await;
    assert_fail(
        &o,
        &format!("OID 1.3.6.1.2.1.1.99.0 (missing.object) does not exist on 127.0.0.1:{} (noSuchObject)", agent.port),
    );
    assert_fail(&o, "OID 1.3.6.1.2.1.1.5.7 does not exist");
    assert_eq!(text(&o, "1.3.6.1.2.1.1.5.0"), "yw-probe-snmpd", "the OIDs that exist are read");

    // Agents stay silent on a wrong community: two attempts of 500 ms.
    let started = Instant::now();
    let o = run(&snmp_probe(agent.port, json!({})), Some(&secret(None, Some("not-the-community")))).await;
    assert_fail(&o, "no SNMP answer from 127.0.0.1");
    assert_fail(&o, "after 2 attempt(s) of 500 ms: wrong community");
    assert!(started.elapsed() < Duration::from_millis(2500), "{:?}", started.elapsed());

    let wrong = Secret {
        username: Some(V3_USER.into()),
        password: Some("wrong-auth-pass".into()),
        private_key: Some(V3_PRIV.into()),
    };
    let o = run(&snmp_probe(agent.port, json!({"version": "v3"})), Some(&wrong)).await;
    assert_fail(&o, "rejected the SNMPv3 credentials");
    let stranger = Secret { username: Some("nobody-here".into()), ..wrong.clone() };
    assert_fail(&run(&snmp_probe(agent.port, json!({"version": "v3"})), Some(&stranger)).await, "SNMPv3");

    let port = free_udp_port();
    let started = Instant::now();
    let o = run(&snmp_probe(port, json!({})), Some(&community)).await;
    assert!(!o.ok);
    let en = &o.reason.as_ref().unwrap().en;
    assert!(en.contains("port unreachable") || en.contains("no SNMP answer"), "{en}");
    assert!(started.elapsed() < Duration::from_millis(2500));
}

// ---------------------------------------------------------------------------------------------
// node_exporter

#[tokio::test]
async fn node_exporter_host_metrics_and_limits() {
    let ne = NodeExporter::start();
    let url = format!("http://127.0.0.1:{}/metrics", ne.port);
    let p = probe(json!({"kind": "node_exporter", "url": url, "cpu_sample_ms": 500,
        "limits": {"mem.used_pct": {"max": 100}, "disk.*.used_pct": {"max": 100}}}));
    let o = run(&p, None).await;
    assert_ok(&o);
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(num(&o, "cpu.cores") >= cores.min(1.0));
    let busy = num(&o, "cpu.busy_pct");
    assert!((0.0..=100.0).contains(&busy), "{busy}");
    assert!(num(&o, "mem.used_pct") > 0.0);
    assert!(num(&o, "mem.total_mb") > 0.0);
    assert!(num(&o, "load.1") >= 0.0);
    assert!(num(&o, "uptime_h") > 0.0);
    // The root file system as df sees it (give or take what changed in between).
    let df = std::process::Command::new("df").args(["-P", "-k", "/"]).output().unwrap();
    let df = String::from_utf8_lossy(&df.stdout);
    let f: Vec<f64> =
        df.lines().nth(1).unwrap().split_whitespace().skip(2).take(2).map(|x| x.parse().unwrap()).collect();
    let want = f[0] / (f[0] + f[1]) * 100.0;
    let got = num(&o, "disk./.used_pct");
    assert!((got - want).abs() < 2.0, "node_exporter {got} vs df {want}");

    let tight = probe(json!({"kind": "node_exporter", "url": url, "cpu_sample_ms": 0,
        "limits": {"mem.used_pct": {"max": 0.001}, "disk./yw-not-mounted.used_pct": {"max": 90}}}));
    let o = run(&tight, None).await;
    assert_fail(&o, "mem.used_pct = ");
    assert_fail(&o, "above the maximum 0.001");
    assert_fail(&o, "reading disk./yw-not-mounted.used_pct was not measured");
}

#[tokio::test]
async fn node_exporter_failures_are_explained() {
    let ne = NodeExporter::start();
    // node_exporter answers any other path with its landing page.
    let o =
        run(&probe(json!({"kind": "node_exporter", "url": format!("http://127.0.0.1:{}/nope", ne.port)})), None).await;
    assert_fail(&o, "is not a node_exporter metrics page (no node_ metrics)");

    let missing = HttpOnce::start("404 Not Found", "no such page").await;
    let url = format!("http://127.0.0.1:{}/metrics", missing.port);
    assert_fail(&run(&probe(json!({"kind": "node_exporter", "url": url})), None).await, "answered HTTP 404");

    let other = HttpOnce::start("200 OK", "hello, not metrics").await;
    let url = format!("http://127.0.0.1:{}/metrics", other.port);
    let o = run(&probe(json!({"kind": "node_exporter", "url": url})), None).await;
    assert_fail(&o, "is not a node_exporter metrics page");

    let port = free_tcp_port();
    let o =
        run(&probe(json!({"kind": "node_exporter", "url": format!("http://127.0.0.1:{port}/metrics")})), None).await;
    assert_fail(&o, &format!("cannot fetch http://127.0.0.1:{port}/metrics"));
    assert!(o.reason.as_ref().unwrap().en.to_lowercase().contains("refused"), "{:?}", o.reason);
}

// ---------------------------------------------------------------------------------------------
// Backup files

const HOUR: u64 = 3600;

fn write_aged(dir: &std::path::Path, name: &str, body: &[u8], age_s: u64) -> std::path::PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, body).unwrap();
    let t = std::time::SystemTime::now() - Duration::from_secs(age_s);
    std::fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
    p
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn backup_local_newest_file_age_size_and_checksum() {
    let d = TempDir::new("backup");
    write_aged(d.path(), "数据库备份_20260312.dmp", b"old backup", 50 * HOUR);
    write_aged(d.path(), "数据库备份_20260313.dmp", b"yesterday's backup", 2 * HOUR);
    write_aged(d.path(), "notes.txt", b"not a backup, newest", 60);
    let dir = d.path().to_str().unwrap();
    let p = probe(json!({"kind": "backup_file", "dir": dir, "pattern": "数据库备份_*.dmp", "max_age_h": 24,
        "sha256": true, "min_bytes": 5}));
    let o = run(&p, None).await;
    assert_ok(&o);
    assert_eq!(text(&o, "file"), "数据库备份_20260313.dmp");
    assert_eq!(num(&o, "files"), 2.0);
    assert_eq!(num(&o, "size_bytes"), 18.0);
    let age = num(&o, "age_h");
    assert!((1.9..2.1).contains(&age), "{age}");
    assert_eq!(text(&o, "sha256"), sha256_hex(b"yesterday's backup"));
    assert!(text(&o, "mtime").ends_with("+08:00"));

    // Recursive, and `since: today` in a zone where "today" began before the file was written.
    write_aged(d.path(), "月度/数据库备份_202603.dmp", b"monthly", 30);
    let p = probe(json!({"kind": "backup_file", "dir": dir, "pattern": "数据库备份_*.dmp", "recursive": true,
        "since": "yesterday"}));
    let o = run(&p, None).await;
    assert_ok(&o);
    assert_eq!(text(&o, "file"), "月度/数据库备份_202603.dmp");
    assert_eq!(num(&o, "files"), 3.0);
}

#[tokio::test]
async fn backup_local_failures_are_explained() {
    let d = TempDir::new("backup-bad");
    write_aged(d.path(), "db_old.sql.gz", b"stale", 30 * HOUR);
    write_aged(d.path(), "db_empty.sql.gz", b"", 4 * 24 * HOUR);
    let dir = d.path().to_str().unwrap();

    let o = run(&probe(json!({"kind": "backup_file", "dir": dir, "pattern": "db_*.sql.gz"})), None).await;
    assert_fail(&o, "the newest backup db_old.sql.gz is 30 h old");
    assert_fail(&o, "older than 26 h");
    assert_eq!(text(&o, "file"), "db_old.sql.gz");

    let o = run(
        &probe(json!({"kind": "backup_file", "dir": dir, "pattern": "db_*.sql.gz", "since": "today",
        "utc_offset_minutes": 0})),
        None,
    )
    .await;
    // 30 hours ago is before 00:00 today in any zone.
    assert_fail(&o, "before 00:00 today");

    let o =
        run(&probe(json!({"kind": "backup_file", "dir": dir, "pattern": "db_empty*", "max_age_h": 1000})), None).await;
    assert_fail(&o, "the newest backup db_empty.sql.gz has 0 bytes, fewer than 1");

    let o = run(&probe(json!({"kind": "backup_file", "dir": dir, "pattern": "*.dmp"})), None).await;
    assert_fail(&o, &format!("no file matching *.dmp in {dir}"));
    assert_eq!(num(&o, "files"), 0.0);

    let missing = format!("{dir}/不存在的目录");
    let o = run(&probe(json!({"kind": "backup_file", "dir": missing})), None).await;
    assert_fail(&o, &format!("the directory does not exist: {missing}"));
}

#[tokio::test]
async fn backup_over_ssh() {
    let sshd = Sshd::start();
    let d = TempDir::new("backup-remote");
    write_aged(d.path(), "备份 2026-03-12.tar.gz", b"older", 30 * HOUR);
    write_aged(d.path(), "备份 2026-03-13.tar.gz", b"remote backup body", 3 * HOUR);
    let dir = d.path().to_str().unwrap();
    let ssh =
        json!({"host": "127.0.0.1", "port": sshd.port, "username": SSH_USER, "host_key_sha256": sshd.fingerprint()});
    let p = probe(json!({"kind": "backup_file", "dir": dir, "pattern": "备份 *.tar.gz", "ssh": ssh, "sha256": true,
        "since": "yesterday"}));
    let o = run(&p, Some(&ssh_pw())).await;
    assert_ok(&o);
    assert_eq!(text(&o, "file"), "备份 2026-03-13.tar.gz");
    assert_eq!(num(&o, "files"), 2.0);
    assert_eq!(num(&o, "size_bytes"), 18.0);
    assert_eq!(text(&o, "sha256"), sha256_hex(b"remote backup body"));
    assert_eq!(text(&o, "host_key"), sshd.fingerprint());

    let p = probe(json!({"kind": "backup_file", "dir": dir, "pattern": "备份 *.tar.gz", "ssh": ssh, "max_age_h": 1}));
    assert_fail(&run(&p, Some(&ssh_pw())).await, "the newest backup 备份 2026-03-13.tar.gz is 3 h old");

    let p = probe(json!({"kind": "backup_file", "dir": format!("{dir}/missing'; touch /tmp/yw-pwned; '"), "ssh": ssh}));
    let o = run(&p, Some(&ssh_pw())).await;
    assert_fail(&o, "the directory does not exist");
    assert!(!std::path::Path::new("/tmp/yw-pwned").exists(), "names are quoted, never run");

    let p = probe(json!({"kind": "backup_file", "dir": dir, "pattern": "*.bak", "ssh": ssh}));
    assert_fail(&run(&p, Some(&ssh_pw())).await, "no file matching *.bak in 127.0.0.1:");
}

// ---------------------------------------------------------------------------------------------
// Servers that accept and never answer: each probe fails within its time-out, saying so.

#[tokio::test]
async fn silent_servers_time_out_with_a_clear_reason() {
    let silent = Silent::start().await;
    let port = silent.port;
    let probes = [
        json!({"kind": "postgres", "host": "127.0.0.1", "port": port}),
        json!({"kind": "mysql", "host": "127.0.0.1", "port": port}),
        json!({"kind": "redis", "host": "127.0.0.1", "port": port}),
        json!({"kind": "ssh", "host": "127.0.0.1", "port": port, "username": "u", "command": "true"}),
        json!({"kind": "node_exporter", "url": format!("http://127.0.0.1:{port}/metrics")}),
        json!({"kind": "backup_file", "dir": "/tmp", "ssh": {"host": "127.0.0.1", "port": port, "username": "u"}}),
    ];
    let s = secret(Some("u"), Some("p"));
    for v in probes {
        let p = probe(v.clone());
        let started = Instant::now();
        let o = yunwei_probes::run(&p, Some(&s), Duration::from_millis(800)).await;
        assert_fail(&o, "timed out after 800 ms");
        assert!(started.elapsed() < Duration::from_millis(1800), "{v}: {:?}", started.elapsed());
    }
}

#[test]
fn invalid_definitions_are_refused_with_reasons() {
    use yunwei_probes::{backup, mysql, node, postgres, redis, snmp, ssh};
    let cases: Vec<(Result<(), yunwei_probes::Message>, &str)> = vec![
        (
            serde_json::from_value::<postgres::PostgresProbe>(json!({"host": "db", "port": 0})).unwrap().validate(),
            "the port cannot be 0",
        ),
        (
            serde_json::from_value::<mysql::MysqlProbe>(json!({"host": "db:3306"})).unwrap().validate(),
            "write the port separately",
        ),
        (
            serde_json::from_value::<redis::RedisProbe>(json!({"host": "r", "max_used_memory_mb": -1}))
                .unwrap()
                .validate(),
            "must be a positive number",
        ),
        (
            serde_json::from_value::<snmp::SnmpProbe>(json!({"host": "ups", "oids": []})).unwrap().validate(),
            "the OID list is empty",
        ),
        (
            serde_json::from_value::<snmp::SnmpProbe>(json!({"host": "ups", "oids": [{"oid": "1.3.6.1.2.1.x"}]}))
                .unwrap()
                .validate(),
            "bad OID syntax",
        ),
        (serde_json::from_value::<ssh::SshProbe>(json!({"host": "h"})).unwrap().validate(), "set either command"),
        (serde_json::from_value::<node::NodeExporterProbe>(json!({"url": "ftp://h/"})).unwrap().validate(), "http://"),
        (
            serde_json::from_value::<backup::BackupFileProbe>(json!({"dir": "relative/dir"})).unwrap().validate(),
            "absolute",
        ),
    ];
    for (r, needle) in cases {
        let e = r.expect_err(needle);
        assert!(e.en.contains(needle), "{:?} lacks {needle:?}", e.en);
        assert!(!e.zh.is_empty());
    }
    let e = probe(json!({"kind": "snmp", "host": "ups", "oids": []})).validate().unwrap_err();
    assert_eq!((e.zh.as_str(), e.en.as_str()), ("OID 列表为空", "the OID list is empty"));
    assert!(probe(json!({"kind": "backup_file", "dir": "/backup", "pattern": "*.dmp"})).validate().is_ok());
    // Unknown fields are refused, not ignored (a typo in a threshold would silently check nothing).
    assert!(serde_json::from_value::<Probe>(json!({"kind": "redis", "host": "r", "max_memory_mb": 1})).is_err());
}
