//! MySQL and MariaDB: connect, an optional query with an expected result, the role and replication.
//!
//! One connection per run (sqlx's `MySqlConnection`, cargo feature `mysql`), read-only session
//! (`SET SESSION TRANSACTION READ ONLY`), statements limited to 60 s on the server, over the text
//! protocol so every value arrives as text. MySQL 8's `caching_sha2_password` works over plain TCP (RSA key exchange).
//!
//! Readings: `connect_ms`, `version`, `read_only`; `replicas` (binlog dump threads: replicas
//! connected to this server, needs the PROCESS privilege); when this server replicates from
//! another (`SHOW REPLICA STATUS`, or `SHOW SLAVE STATUS` on older servers): `replica` = true,
//! `replica_io_running`, `replica_sql_running` (`Yes`/`No`/`Connecting`), `lag_s`
//! (`Seconds_Behind_Master`/`_Source`, the worst channel) and `replica_error`; with a query
//! `query_ms` and `result`. A replica whose IO or SQL thread is not running fails even without a
//! limit: replication that is configured and stopped is a finding.
//!
//! TLS: like the PostgreSQL probe, no TLS in this build: `prefer` connects in plain text.

// Parts used only by the feature-gated client stay compiled (and tested) without it.
#![cfg_attr(not(feature = "mysql"), allow(dead_code))]

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::node::{check_host, check_port};
use crate::postgres::{Expect, Role, SslMode, check_lag, check_query};
use crate::{Message, Outcome, Secret};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlProbe {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The default database of the session (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The user when the credentials name none (default `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default)]
    pub sslmode: SslMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// `primary`: must not be read-only; `standby` (or `replica`): must replicate from a source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Fail with fewer replicas connected to this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Largest acceptable `Seconds_Behind_Master` on a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_s: Option<f64>,
}

fn default_port() -> u16 {
    3306
}

impl MysqlProbe {
    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        check_port(self.port)?;
        if let Some(db) = &self.database
            && db.trim().is_empty()
        {
            return Err(Message::new(
                "数据库名为空（不需要时请省略）",
                "the database name is empty (omit it if not needed)",
            ));
        }
        check_query(&self.query, &self.expect)?;
        check_lag(self.max_lag_s, None)
    }
}

#[cfg(not(feature = "mysql"))]
pub async fn run(p: &MysqlProbe, _secret: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    crate::node::not_built(started, "mysql")
}

#[cfg(feature = "mysql")]
pub async fn run(p: &MysqlProbe, secret: Option<&Secret>) -> Outcome {
    imp::run(p, secret, Instant::now()).await
}

#[cfg(feature = "mysql")]
mod imp {
    use std::time::Instant;

    use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
    use sqlx::{Connection as _, Row as _};

    use super::MysqlProbe;
    use crate::node::{host_port, joined};
    use crate::postgres::{Role, SslMode, check_replication, db_error_text, db_failure, ms_since, result_reading};
    use crate::{Message, Outcome, Reading, Secret};

    async fn rows(conn: &mut MySqlConnection, sql: String) -> Result<Vec<MySqlRow>, sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn).await
    }

    fn text(row: &MySqlRow, col: &str) -> Option<String> {
        row.try_get_unchecked::<Option<String>, _>(col).ok().flatten()
    }

    /// The first of several column names the row has (MySQL 8.0.22 renamed Master → Source,
    /// Slave → Replica; MariaDB kept the old names).
    fn text_any(row: &MySqlRow, cols: &[&str]) -> Option<String> {
        cols.iter().find_map(|c| text(row, c))
    }

    pub(super) async fn run(p: &MysqlProbe, secret: Option<&Secret>, started: Instant) -> Outcome {
        if let Err(m) = p.validate() {
            return Outcome::fail(started.elapsed(), m, vec![]);
        }
        let target = host_port(&p.host, p.port);
        let user = secret
            .and_then(|s| s.username.clone())
            .or_else(|| p.username.clone())
            .unwrap_or_else(|| "root".to_string());
        let mut opts = MySqlConnectOptions::new()
            .host(p.host.trim())
            .port(p.port)
            .username(&user)
            .charset("utf8mb4")
            .statement_cache_capacity(0)
            .ssl_mode(match p.sslmode {
                SslMode::Disable => MySqlSslMode::Disabled,
                SslMode::Prefer => MySqlSslMode::Preferred,
            });
        if let Some(pw) = secret.and_then(|s| s.password.as_deref()) {
            opts = opts.password(pw);
        }
        if let Some(db) = &p.database {
            opts = opts.database(db);
        }
        let mut conn = match MySqlConnection::connect_with(&opts).await {
            Ok(c) => c,
            Err(e) => {
                let db = p.database.as_deref().unwrap_or("");
                return Outcome::fail(started.elapsed(), db_failure(&target, &user, db, &e), vec![]);
            }
        };
        let mut readings = vec![Reading::num("connect_ms", ms_since(started))];
        let mut problems = Vec::new();
        // Best effort: servers before MySQL 5.6.5 do not know it.
        let _ = rows(&mut conn, "SET SESSION TRANSACTION READ ONLY".into()).await;
        // A query abandoned by the probe's time-out must not run on: 60 s on the server
        // (MariaDB: any statement; MySQL: SELECT only). Each server knows one of the two.
        let _ = rows(&mut conn, "SET SESSION max_statement_time = 60".into()).await;
        let _ = rows(&mut conn, "SET SESSION max_execution_time = 60000".into()).await;

        match rows(&mut conn, "SELECT VERSION(), @@read_only".into()).await {
            Ok(r) => {
                if let Some(row) = r.first() {
                    if let Some(v) = row.try_get_unchecked::<Option<String>, _>(0).ok().flatten() {
                        readings.push(Reading::text("version", v));
                    }
                    let ro = row.try_get_unchecked::<Option<String>, _>(1).ok().flatten().as_deref() == Some("1");
                    readings.push(Reading::flag("read_only", ro));
                    if p.role == Some(Role::Primary) && ro {
                        problems.push(Message::new(
                            "应为主库，但服务器是只读的（read_only = 1）",
                            "expected a primary, but the server is read-only (read_only = 1)",
                        ));
                    }
                }
            }
            Err(e) => problems.push(Message::new(
                format!("查询服务器状态失败：{}", db_error_text(&e)),
                format!("reading the server status failed: {}", db_error_text(&e)),
            )),
        }

        let dumps = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE COMMAND IN ('Binlog Dump', 'Binlog Dump GTID')";
        if let Ok(r) = rows(&mut conn, dumps.into()).await
            && let Some(n) = r.first().and_then(|row| row.try_get_unchecked::<Option<String>, _>(0).ok().flatten())
            && let Ok(n) = n.parse::<f64>()
        {
            readings.push(Reading::num("replicas", n));
        }

        let status = match rows(&mut conn, "SHOW REPLICA STATUS".into()).await {
            Ok(r) => Ok(r),
            Err(_) => rows(&mut conn, "SHOW SLAVE STATUS".into()).await,
        };
        match status {
            Ok(channels) if channels.is_empty() => {
                readings.push(Reading::flag("replica", false));
                if p.role == Some(Role::Standby) {
                    problems.push(Message::new(
                        "应为从库，但服务器没有配置复制（SHOW REPLICA STATUS 为空）",
                        "expected a replica, but the server replicates from nobody (SHOW REPLICA STATUS is empty)",
                    ));
                }
            }
            Ok(channels) => {
                readings.push(Reading::flag("replica", true));
                let mut worst_lag: Option<f64> = None;
                let mut lag_unknown = false;
                let (mut io_all, mut sql_all, mut errors) = (Vec::new(), Vec::new(), Vec::new());
                for row in &channels {
                    let io = text_any(row, &["Replica_IO_Running", "Slave_IO_Running"]).unwrap_or_default();
                    let sql = text_any(row, &["Replica_SQL_Running", "Slave_SQL_Running"]).unwrap_or_default();
                    match text_any(row, &["Seconds_Behind_Source", "Seconds_Behind_Master"])
                        .and_then(|s| s.parse::<f64>().ok())
                    {
                        Some(l) => worst_lag = Some(worst_lag.map_or(l, |w: f64| w.max(l))),
                        None => lag_unknown = true,
                    }
                    for col in ["Last_IO_Error", "Last_SQL_Error"] {
                        if let Some(e) = text(row, col).filter(|e| !e.trim().is_empty()) {
                            errors.push(e);
                        }
                    }
                    let channel =
                        text(row, "Channel_Name").or_else(|| text(row, "Connection_name")).unwrap_or_default();
                    let name = if channel.is_empty() { String::new() } else { format!("[{channel}] ") };
                    if io != "Yes" || sql != "Yes" {
                        problems.push(Message::new(
                            format!("{name}复制未在运行：IO 线程 {io}，SQL 线程 {sql}"),
                            format!("{name}replication is not running: IO thread {io}, SQL thread {sql}"),
                        ));
                    }
                    io_all.push(io);
                    sql_all.push(sql);
                }
                readings.push(Reading::text("replica_io_running", io_all.join(",")));
                readings.push(Reading::text("replica_sql_running", sql_all.join(",")));
                // A stopped SQL thread shows NULL lag: the lag is unknown, not zero.
                if let (Some(l), false) = (worst_lag, lag_unknown) {
                    readings.push(Reading::num("lag_s", l));
                }
                if !errors.is_empty() {
                    let e: String = errors.join(" | ").chars().take(500).collect();
                    readings.push(Reading::text("replica_error", e));
                }
            }
            Err(e) => {
                if p.role == Some(Role::Standby) || p.max_lag_s.is_some() {
                    problems.push(Message::new(
                        format!("无法读取复制状态（账号需要 REPLICATION CLIENT 权限）：{}", db_error_text(&e)),
                        format!(
                            "cannot read the replication status (the account needs REPLICATION CLIENT): {}",
                            db_error_text(&e)
                        ),
                    ));
                }
            }
        }
        let replicating = readings.iter().any(|r| r.key == "replica" && r.value == crate::Value::Bool(true));
        check_replication(&readings, replicating, p.min_replicas, p.max_lag_s, None, &mut problems);

        if let Some(q) = &p.query {
            let t = Instant::now();
            match rows(&mut conn, q.clone()).await {
                Ok(r) => {
                    readings.push(Reading::num("query_ms", ms_since(t)));
                    let first = r.first().and_then(|row| row.try_get_unchecked::<Option<String>, _>(0).ok().flatten());
                    if let Some(v) = &first {
                        readings.push(result_reading(v));
                    }
                    if let Some(e) = &p.expect {
                        if r.is_empty() {
                            problems.push(Message::new("查询没有返回任何行", "the query returned no row"));
                        } else if let Err(m) = e.check(first.as_deref()) {
                            problems.push(m);
                        }
                    }
                }
                Err(e) => problems.push(Message::new(
                    format!("查询失败：{}", db_error_text(&e)),
                    format!("the query failed: {}", db_error_text(&e)),
                )),
            }
        }
        let _ = conn.close().await;
        match joined(problems) {
            None => Outcome::pass(started.elapsed(), readings),
            Some(m) => Outcome::fail(started.elapsed(), m, readings),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        let p: MysqlProbe = serde_json::from_value(serde_json::json!({"host": "db1", "role": "replica"})).unwrap();
        assert_eq!((p.port, p.role), (3306, Some(Role::Standby)));
        assert!(p.validate().is_ok());
        let bad: MysqlProbe = serde_json::from_value(serde_json::json!({"host": "db1", "database": " "})).unwrap();
        assert!(bad.validate().unwrap_err().en.contains("database name is empty"));
        assert!(serde_json::from_value::<MysqlProbe>(serde_json::json!({"host": "db1", "lag": 1})).is_err());
    }
}
