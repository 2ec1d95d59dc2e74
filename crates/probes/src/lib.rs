//! Automatic inspection probes (BRIEF IN1–IN7, BK1).
//!
//! A [`Probe`] is data: it comes from an inspection plan (the contract's duties, an operator's
//! checklist) as JSON or TOML, never from code. [`run`] executes one probe within its time-out and
//! always returns an [`Outcome`]: an unreachable host, a hanging server or a 2 GB body is a failed
//! item with a bilingual reason, never an error that stops the caller. Credentials are not part of
//! a probe (plans are stored and shown); the caller resolves them from the encrypted store and
//! passes a [`Secret`].
//!
//! Every probe kind is tested against a real server on loopback (`tests/`), not a mock.

use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use yunwei_core::ledger::Message;

pub mod backup;
pub mod dns;
pub mod engine;
pub mod http;
pub mod icmp;
pub mod mysql;
pub mod node;
pub mod postgres;
pub mod redis;
pub mod snmp;
pub mod ssh;
pub mod tcp;

/// One check of one target, as stored in a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    Http(http::HttpProbe),
    Tcp(tcp::TcpProbe),
    Icmp(icmp::IcmpProbe),
    Dns(dns::DnsProbe),
    Postgres(postgres::PostgresProbe),
    Mysql(mysql::MysqlProbe),
    Redis(redis::RedisProbe),
    NodeExporter(node::NodeExporterProbe),
    Ssh(ssh::SshProbe),
    Snmp(snmp::SnmpProbe),
    BackupFile(backup::BackupFileProbe),
}

impl Probe {
    /// The stable name of the kind (`http`, `tcp`, …), as in the stored JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Icmp(_) => "icmp",
            Probe::Dns(_) => "dns",
            Probe::Postgres(_) => "postgres",
            Probe::Mysql(_) => "mysql",
            Probe::Redis(_) => "redis",
            Probe::NodeExporter(_) => "node_exporter",
            Probe::Ssh(_) => "ssh",
            Probe::Snmp(_) => "snmp",
            Probe::BackupFile(_) => "backup_file",
        }
    }
}

/// Credentials for a probe, resolved by the caller from the encrypted store. Never serialised,
/// never printed.
#[derive(Clone, Default)]
pub struct Secret {
    pub username: Option<String>,
    pub password: Option<String>,
    /// An OpenSSH private key (PEM) for SSH probes.
    pub private_key: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("private_key", &self.private_key.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A measured value of an item: numbers for charts and thresholds, text for versions and roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Num(f64),
    Bool(bool),
    Text(String),
}

/// One named reading (`status`, `latency_ms`, `cert_days_left`, `disk./.used_pct`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub key: String,
    pub value: Value,
}

impl Reading {
    pub fn num(key: impl Into<String>, v: f64) -> Reading {
        Reading { key: key.into(), value: Value::Num(v) }
    }
    pub fn text(key: impl Into<String>, v: impl Into<String>) -> Reading {
        Reading { key: key.into(), value: Value::Text(v.into()) }
    }
    pub fn flag(key: impl Into<String>, v: bool) -> Reading {
        Reading { key: key.into(), value: Value::Bool(v) }
    }
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    /// Why it failed (or a warning worth showing when it passed), Chinese and English.
    pub reason: Option<Message>,
    /// Wall time of the whole probe.
    pub elapsed_ms: f64,
    pub readings: Vec<Reading>,
}

impl Outcome {
    pub fn pass(elapsed: Duration, readings: Vec<Reading>) -> Outcome {
        Outcome { ok: true, reason: None, elapsed_ms: ms(elapsed), readings }
    }
    pub fn fail(elapsed: Duration, reason: Message, readings: Vec<Reading>) -> Outcome {
        Outcome { ok: false, reason: Some(reason), elapsed_ms: ms(elapsed), readings }
    }
    /// The reading with this key, if measured.
    pub fn reading(&self, key: &str) -> Option<&Value> {
        self.readings.iter().find(|r| r.key == key).map(|r| &r.value)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The default time-out of a probe when its plan gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one probe. The time-out bounds the whole probe (connect, handshake, request, reading);
/// a probe that runs out of time fails with the reason "timed out after N ms".
pub async fn run(probe: &Probe, secret: Option<&Secret>, timeout: Duration) -> Outcome {
    let started = std::time::Instant::now();
    let work = async {
        match probe {
            Probe::Http(p) => http::run(p, secret).await,
            Probe::Tcp(p) => tcp::run(p).await,
            Probe::Icmp(p) => icmp::run(p).await,
            Probe::Dns(p) => dns::run(p).await,
            Probe::Postgres(p) => postgres::run(p, secret).await,
            Probe::Mysql(p) => mysql::run(p, secret).await,
            Probe::Redis(p) => redis::run(p, secret).await,
            Probe::NodeExporter(p) => node::run(p).await,
            Probe::Ssh(p) => ssh::run(p, secret).await,
            Probe::Snmp(p) => snmp::run(p, secret).await,
            Probe::BackupFile(p) => backup::run(p, secret).await,
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::fail(
            started.elapsed(),
            Message::new(
                format!("超时：{} 毫秒内未完成", timeout.as_millis()),
                format!("timed out after {} ms", timeout.as_millis()),
            ),
            vec![],
        ),
    }
}

impl Probe {
    /// Checks a definition before it is stored: the reason names the field and the fix, in
    /// Chinese and English. [`run`] checks again, so an invalid stored probe fails, never panics.
    pub fn validate(&self) -> Result<(), Message> {
        match self {
            Probe::Http(p) => p.validate(),
            Probe::Tcp(p) => p.validate(),
            Probe::Icmp(p) => p.validate(),
            Probe::Dns(p) => p.validate(),
            Probe::Postgres(p) => p.validate(),
            Probe::Mysql(p) => p.validate(),
            Probe::Redis(p) => p.validate(),
            Probe::NodeExporter(p) => p.validate(),
            Probe::Ssh(p) => p.validate(),
            Probe::Snmp(p) => p.validate(),
            Probe::BackupFile(p) => p.validate(),
        }
    }
}
