//! Redis: `AUTH` (password, or ACL user and password), `PING` (must answer `+PONG`) and `INFO`,
//! spoken directly in RESP over TCP: no driver.
//!
//! Readings: `ping_ms`, `version`, `role` (`master`/`slave`), `used_memory` (bytes),
//! `used_memory_mb`, `maxmemory_mb` and `used_memory_pct` when a `maxmemory` is set,
//! `connected_clients`, `connected_slaves`, `master_link_status` (`up`/`down`, on a replica),
//! `uptime_h`.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::node::{check_host, check_port, host_port, joined, round2};
use crate::{Message, Outcome, Reading, Secret};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisProbe {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// `master` or `slave` (alias `replica`): fail if the server has the other role. On a
    /// replica, a `master_link_status` other than `up` fails whatever the role asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RedisRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_used_memory_mb: Option<f64>,
    /// Largest acceptable `used_memory` / `maxmemory` in percent (ignored without `maxmemory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_used_memory_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connected_clients: Option<u64>,
    /// On a master: fail with fewer connected replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_connected_slaves: Option<u64>,
}

fn default_port() -> u16 {
    6379
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisRole {
    #[serde(alias = "primary")]
    Master,
    #[serde(alias = "replica")]
    Slave,
}

/// A bulk reply larger than this is refused (INFO is a few KiB).
const MAX_BULK: usize = 4 * 1024 * 1024;

impl RedisProbe {
    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        check_port(self.port)?;
        for (name, v) in
            [("max_used_memory_mb", self.max_used_memory_mb), ("max_used_memory_pct", self.max_used_memory_pct)]
        {
            if let Some(v) = v
                && (!v.is_finite() || v <= 0.0)
            {
                return Err(Message::new(format!("{name} 须为正数"), format!("{name} must be a positive number")));
            }
        }
        if self.role == Some(RedisRole::Slave) && self.min_connected_slaves.is_some_and(|n| n > 0) {
            return Err(Message::new(
                "min_connected_slaves 只用于主节点（role 为 slave）",
                "min_connected_slaves applies to a master, but role is slave",
            ));
        }
        Ok(())
    }
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(usize),
}

struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    async fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut buf = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&buf).await?;
        self.reply().await
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.io).take(64 * 1024).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        if !line.ends_with(b"\r\n") {
            return Err(not_redis());
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| not_redis())
    }

    async fn reply(&mut self) -> std::io::Result<Reply> {
        let line = self.line().await?;
        let (kind, rest) = line.split_at_checked(1).ok_or_else(not_redis)?;
        match kind {
            "+" => Ok(Reply::Simple(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => rest.parse().map(Reply::Int).map_err(|_| not_redis()),
            "*" => Ok(Reply::Array(rest.parse::<i64>().map_err(|_| not_redis())?.max(0) as usize)),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| not_redis())?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = n as usize;
                if n > MAX_BULK {
                    return Err(std::io::Error::other(format!("reply larger than {} MiB", MAX_BULK >> 20)));
                }
                let mut data = vec![0; n + 2];
                self.io.read_exact(&mut data).await?;
                data.truncate(n);
                Ok(Reply::Bulk(Some(data)))
            }
            _ => Err(not_redis()),
        }
    }
}

fn not_redis() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "not a Redis reply")
}

/// `key:value` lines of INFO.
fn parse_info(text: &str) -> Vec<(&str, &str)> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.trim_end_matches('\r').split_once(':')).collect()
}

pub async fn run(p: &RedisProbe, secret: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let target = host_port(&p.host, p.port);
    let io_fail = |e: std::io::Error, step_zh: &str, step_en: &str| {
        let why = e.to_string();
        if e.kind() == std::io::ErrorKind::InvalidData {
            Message::new(
                format!("{target} 在{step_zh}时的回答不是 Redis 协议（端口上是别的服务？）"),
                format!("{target} did not answer {step_en} in the Redis protocol (another service on the port?)"),
            )
        } else {
            Message::new(
                format!("{target} 在{step_zh}时出错：{why}"),
                format!("{target} failed during {step_en}: {why}"),
            )
        }
    };
    let stream = match TcpStream::connect((p.host.trim(), p.port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(started.elapsed(), crate::node::connect_failure(&target, &e), vec![]),
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn { io: BufReader::new(stream) };

    if let Some(pw) = secret.and_then(|s| s.password.as_deref()) {
        let args: Vec<&str> = match secret.and_then(|s| s.username.as_deref()) {
            Some(user) => vec!["AUTH", user, pw],
            None => vec!["AUTH", pw],
        };
        match conn.command(&args).await {
            Ok(Reply::Simple(s)) if s == "OK" => {}
            Ok(Reply::Error(e)) => {
                let (zh, en) = if e.contains("without any password configured") || e.contains("no password is set") {
                    (
                        "服务器未设置密码，却提供了密码".to_string(),
                        "a password was given but the server has none configured".to_string(),
                    )
                } else {
                    ("用户名或密码错误".to_string(), "wrong user name or password".to_string())
                };
                return Outcome::fail(
                    started.elapsed(),
                    Message::new(
                        format!("{target} 拒绝认证：{zh}（{e}）"),
                        format!("{target} refused authentication: {en} ({e})"),
                    ),
                    vec![],
                );
            }
            Ok(other) => {
                return Outcome::fail(
                    started.elapsed(),
                    io_fail(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")), "认证", "AUTH"),
                    vec![],
                );
            }
            Err(e) => return Outcome::fail(started.elapsed(), io_fail(e, "认证", "AUTH"), vec![]),
        }
    }

    let t = Instant::now();
    match conn.command(&["PING"]).await {
        Ok(Reply::Simple(s)) if s == "PONG" => {}
        Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => {
            return Outcome::fail(
                started.elapsed(),
                Message::new(
                    format!("{target} 需要密码（NOAUTH），但未提供凭据"),
                    format!("{target} requires a password (NOAUTH) and no credentials were given"),
                ),
                vec![],
            );
        }
        Ok(other) => {
            let got = match other {
                Reply::Error(e) => e,
                o => format!("{o:?}"),
            };
            return Outcome::fail(
                started.elapsed(),
                Message::new(format!("PING 的回答不是 PONG：{got}"), format!("PING did not answer PONG: {got}")),
                vec![],
            );
        }
        Err(e) => return Outcome::fail(started.elapsed(), io_fail(e, "PING", "PING"), vec![]),
    }
    let mut readings = vec![Reading::num("ping_ms", round2(t.elapsed().as_secs_f64() * 1000.0))];

    let info = match conn.command(&["INFO"]).await {
        Ok(Reply::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
        Ok(Reply::Error(e)) => {
            // INFO can be renamed or forbidden by ACL; PING answered, so the service is up.
            return Outcome::fail(
                started.elapsed(),
                Message::new(format!("INFO 被拒绝：{e}"), format!("INFO was refused: {e}")),
                readings,
            );
        }
        Ok(other) => {
            return Outcome::fail(
                started.elapsed(),
                io_fail(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")), "INFO", "INFO"),
                readings,
            );
        }
        Err(e) => return Outcome::fail(started.elapsed(), io_fail(e, "INFO", "INFO"), readings),
    };
    let _ = conn.command(&["QUIT"]).await;
    let fields = parse_info(&info);
    let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| v.trim());
    let num = |k: &str| get(k).and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = get("redis_version") {
        readings.push(Reading::text("version", v));
    }
    let role = get("role").unwrap_or("").to_string();
    if !role.is_empty() {
        readings.push(Reading::text("role", role.clone()));
    }
    let used = num("used_memory");
    if let Some(u) = used {
        readings.push(Reading::num("used_memory", u));
        readings.push(Reading::num("used_memory_mb", round2(u / 1_048_576.0)));
    }
    let maxmemory = num("maxmemory").filter(|m| *m > 0.0);
    if let Some(m) = maxmemory {
        readings.push(Reading::num("maxmemory_mb", round2(m / 1_048_576.0)));
        if let Some(u) = used {
            readings.push(Reading::num("used_memory_pct", round2(u / m * 100.0)));
        }
    }
    for k in ["connected_clients", "connected_slaves"] {
        if let Some(v) = num(k) {
            readings.push(Reading::num(k, v));
        }
    }
    if let Some(v) = get("master_link_status") {
        readings.push(Reading::text("master_link_status", v));
    }
    if let Some(v) = num("uptime_in_seconds") {
        readings.push(Reading::num("uptime_h", round2(v / 3600.0)));
    }

    let mut problems = Vec::new();
    match p.role {
        Some(RedisRole::Master) if role != "master" => problems.push(Message::new(
            format!("应为主节点，实际角色为 {role}"),
            format!("expected a master, the role is {role}"),
        )),
        Some(RedisRole::Slave) if role != "slave" => problems.push(Message::new(
            format!("应为从节点，实际角色为 {role}"),
            format!("expected a replica (slave), the role is {role}"),
        )),
        _ => {}
    }
    if role == "slave"
        && let Some(link) = get("master_link_status")
        && link != "up"
    {
        let master = format!("{}:{}", get("master_host").unwrap_or("?"), get("master_port").unwrap_or("?"));
        problems.push(Message::new(
            format!("与主节点 {master} 的复制连接为 {link}"),
            format!("the replication link to master {master} is {link}"),
        ));
    }
    if let (Some(max), Some(u)) = (p.max_used_memory_mb, used) {
        let mb = round2(u / 1_048_576.0);
        if mb > max {
            problems.push(Message::new(
                format!("已用内存 {mb} MB，超过上限 {max} MB"),
                format!("used memory {mb} MB, above the maximum {max} MB"),
            ));
        }
    }
    if let (Some(max), Some(m), Some(u)) = (p.max_used_memory_pct, maxmemory, used) {
        let pct = round2(u / m * 100.0);
        if pct > max {
            problems.push(Message::new(
                format!("内存使用率 {pct}%（maxmemory 的），超过上限 {max}%"),
                format!("memory use {pct}% of maxmemory, above the maximum {max}%"),
            ));
        }
    }
    if let (Some(max), Some(c)) = (p.max_connected_clients, num("connected_clients"))
        && c > max as f64
    {
        problems.push(Message::new(
            format!("客户端连接数 {c}，超过上限 {max}"),
            format!("{c} clients connected, above the maximum {max}"),
        ));
    }
    if let Some(min) = p.min_connected_slaves {
        let n = num("connected_slaves").unwrap_or(0.0);
        if n < min as f64 {
            problems.push(Message::new(
                format!("已连接的从节点 {n} 个，少于要求的 {min} 个"),
                format!("{n} replica(s) connected, fewer than the required {min}"),
            ));
        }
    }
    match joined(problems) {
        None => Outcome::pass(started.elapsed(), readings),
        Some(m) => Outcome::fail(started.elapsed(), m, readings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_parsed() {
        let f = parse_info("# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\nused_memory:1024\r\n");
        assert_eq!(f, vec![("redis_version", "7.0.15"), ("role", "master"), ("used_memory", "1024")]);
    }

    #[test]
    fn definitions() {
        let p: RedisProbe = serde_json::from_value(serde_json::json!({"host": "10.0.0.9", "role": "replica"})).unwrap();
        assert_eq!((p.port, p.role), (6379, Some(RedisRole::Slave)));
        assert!(p.validate().is_ok());
        let mut q = p.clone();
        q.min_connected_slaves = Some(1);
        assert!(q.validate().is_err());
        let mut q = p.clone();
        q.max_used_memory_mb = Some(0.0);
        assert!(q.validate().unwrap_err().en.contains("positive"));
        assert!(serde_json::from_value::<RedisProbe>(serde_json::json!({"host": "h", "password": "x"})).is_err());
    }
}
