//! PostgreSQL: connect, an optional query with an expected result, the role and replication.
//!
//! One connection per run (sqlx's `PgConnection`, no pool), closed at the end. Every statement
//! goes through the simple-query protocol, so every value arrives as text whatever its type
//! (numeric, interval, …), and the session is read-only (`default_transaction_read_only`): a
//! checklist query cannot change data by mistake. Statements are limited to 60 s on the server
//! (`statement_timeout`), so a query abandoned by the probe's time-out does not run on.
//!
//! Readings: `connect_ms`, `version`, `in_recovery`; on a primary `replicas` (rows of
//! `pg_stat_replication`), `lag_bytes` and `lag_s` (the largest replay lag among them); on a
//! standby `lag_s` (now − `pg_last_xact_replay_timestamp()`, 0 when everything received is
//! replayed); with a query `query_ms` and `result` (first column of the first row). Lag columns
//! need the `pg_monitor` role (or superuser); without it they are absent and a lag limit fails.
//!
//! TLS: this build has no TLS for database probes (sqlx without a TLS backend): `prefer` connects
//! in plain text, which is what `prefer` does against a server without TLS.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::node::{check_host, check_port, host_port, joined};
use crate::{Message, Outcome, Reading, Secret, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresProbe {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_database")]
    pub database: String,
    /// The user when the credentials name none (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default)]
    pub sslmode: SslMode,
    /// A read-only statement; its first column of the first row becomes the `result` reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    /// Fail unless the server is this (a primary that became a standby, or the reverse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// On a primary: fail with fewer connected standbys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    /// Largest acceptable replication lag in seconds (primary: worst standby; standby: itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_s: Option<f64>,
    /// Largest acceptable replay lag in bytes of WAL (primary only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_bytes: Option<f64>,
}

fn default_port() -> u16 {
    5432
}

/// The server-side limit of every statement a database probe sends (PostgreSQL syntax).
pub(crate) const SERVER_STATEMENT_TIMEOUT: &str = "60s";
fn default_database() -> String {
    "postgres".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
}

/// The role a database server must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[serde(alias = "master", alias = "source")]
    Primary,
    #[serde(alias = "replica", alias = "slave")]
    Standby,
}

/// What the query's result must be: `{"op": ">=", "value": 1}`; `op` defaults to `=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub op: Op,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[default]
    #[serde(rename = "=", alias = "==", alias = "eq")]
    Eq,
    #[serde(rename = "!=", alias = "<>", alias = "ne")]
    Ne,
    #[serde(rename = "<", alias = "lt")]
    Lt,
    #[serde(rename = "<=", alias = "le")]
    Le,
    #[serde(rename = ">", alias = "gt")]
    Gt,
    #[serde(rename = ">=", alias = "ge")]
    Ge,
    #[serde(rename = "contains")]
    Contains,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
        }
    }
}

impl Expect {
    pub(crate) fn validate(&self) -> Result<(), Message> {
        match (&self.value, self.op) {
            (Value::Num(v), _) if !v.is_finite() => {
                Err(Message::new("期望值不是有限数", "the expected value is not a finite number"))
            }
            (Value::Num(_), Op::Contains) => {
                Err(Message::new("“包含”只能用于文本期望值", "`contains` needs a text expected value, not a number"))
            }
            (Value::Text(_) | Value::Bool(_), Op::Lt | Op::Le | Op::Gt | Op::Ge) => Err(Message::new(
                "大小比较（<、<=、>、>=）只能用于数值期望值",
                "ordering comparisons (<, <=, >, >=) need a numeric expected value",
            )),
            (Value::Bool(_), Op::Contains) => {
                Err(Message::new("“包含”只能用于文本期望值", "`contains` needs a text expected value"))
            }
            _ => Ok(()),
        }
    }

    /// Checks a result given as text (`None` for SQL NULL); the failure says what was found.
    pub(crate) fn check(&self, got: Option<&str>) -> Result<(), Message> {
        let shown = |v: &Value| match v {
            Value::Num(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Text(t) => format!("{t:?}"),
        };
        let want = format!("{} {}", self.op.symbol(), shown(&self.value));
        let Some(got) = got else {
            return Err(Message::new(
                format!("查询结果为 NULL，期望 {want}"),
                format!("the query returned NULL, expected {want}"),
            ));
        };
        let ok = match &self.value {
            Value::Num(want_n) => {
                let Ok(n) = got.trim().parse::<f64>() else {
                    return Err(Message::new(
                        format!("查询结果 {got:?} 不是数值，期望 {want}"),
                        format!("the query returned {got:?}, not a number; expected {want}"),
                    ));
                };
                match self.op {
                    Op::Eq => n == *want_n,
                    Op::Ne => n != *want_n,
                    Op::Lt => n < *want_n,
                    Op::Le => n <= *want_n,
                    Op::Gt => n > *want_n,
                    Op::Ge => n >= *want_n,
                    Op::Contains => false,
                }
            }
            Value::Bool(b) => {
                let g = matches!(got.trim().to_ascii_lowercase().as_str(), "t" | "true" | "1" | "on" | "yes" | "y");
                match self.op {
                    Op::Ne => g != *b,
                    _ => g == *b,
                }
            }
            Value::Text(t) => match self.op {
                Op::Eq => got == t,
                Op::Ne => got != t,
                Op::Contains => got.contains(t.as_str()),
                _ => false,
            },
        };
        if ok {
            Ok(())
        } else {
            Err(Message::new(
                format!("查询结果为 {got:?}，不满足 {want}"),
                format!("the query returned {got:?}, expected {want}"),
            ))
        }
    }
}

/// Checks a query text from a definition.
pub(crate) fn check_query(query: &Option<String>, expect: &Option<Expect>) -> Result<(), Message> {
    if let Some(q) = query
        && q.trim().is_empty()
    {
        return Err(Message::new("查询语句为空", "the query is empty"));
    }
    if let Some(e) = expect {
        if query.is_none() {
            return Err(Message::new("设置了期望结果却没有查询语句", "an expected result is set but no query"));
        }
        e.validate()?;
    }
    Ok(())
}

pub(crate) fn check_lag(max_lag_s: Option<f64>, max_lag_bytes: Option<f64>) -> Result<(), Message> {
    for (name, v) in [("max_lag_s", max_lag_s), ("max_lag_bytes", max_lag_bytes)] {
        if let Some(v) = v
            && (!v.is_finite() || v < 0.0)
        {
            return Err(Message::new(format!("{name} 须为非负数"), format!("{name} must be a non-negative number")));
        }
    }
    Ok(())
}

impl PostgresProbe {
    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        check_port(self.port)?;
        if self.database.trim().is_empty() {
            return Err(Message::new("数据库名为空", "the database name is empty"));
        }
        check_query(&self.query, &self.expect)?;
        check_lag(self.max_lag_s, self.max_lag_bytes)?;
        if self.role == Some(Role::Standby) && self.min_replicas.is_some_and(|n| n > 0) {
            return Err(Message::new(
                "备库没有下游备库：min_replicas 只用于主库",
                "min_replicas applies to a primary, but role is standby",
            ));
        }
        Ok(())
    }
}

/// The first row of a statement (all statements of it run; the first row any of them returns),
/// every column as text (`None` for NULL); empty without a row.
async fn first_row(conn: &mut sqlx::PgConnection, sql: String) -> Result<Vec<Option<String>>, sqlx::Error> {
    use sqlx::Row as _;
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_optional(&mut *conn).await?;
    Ok(row
        .map(|row| {
            (0..row.columns().len()).map(|i| row.try_get_unchecked::<Option<String>, _>(i).ok().flatten()).collect()
        })
        .unwrap_or_default())
}

pub async fn run(p: &PostgresProbe, secret: Option<&Secret>) -> Outcome {
    use sqlx::Connection as _;
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let target = host_port(&p.host, p.port);
    let user = secret
        .and_then(|s| s.username.clone())
        .or_else(|| p.username.clone())
        .unwrap_or_else(|| "postgres".to_string());
    let mut opts = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host(p.host.trim())
        .port(p.port)
        .username(&user)
        .database(&p.database)
        .application_name("yunwei-probe")
        .statement_cache_capacity(0)
        .ssl_mode(match p.sslmode {
            SslMode::Disable => sqlx::postgres::PgSslMode::Disable,
            SslMode::Prefer => sqlx::postgres::PgSslMode::Prefer,
        })
        // A probe that runs out of time drops the connection, but the server would go on
        // running the statement: bound it on the server side too.
        .options([("default_transaction_read_only", "on"), ("statement_timeout", SERVER_STATEMENT_TIMEOUT)]);
    if let Some(pw) = secret.and_then(|s| s.password.as_deref()) {
        opts = opts.password(pw);
    }
    let mut conn = match sqlx::PgConnection::connect_with(&opts).await {
        Ok(c) => c,
        Err(e) => return Outcome::fail(started.elapsed(), db_failure(&target, &user, &p.database, &e), vec![]),
    };
    let mut readings = vec![Reading::num("connect_ms", ms_since(started))];
    let mut problems = Vec::new();

    match first_row(&mut conn, "SELECT current_setting('server_version'), pg_is_in_recovery()".into()).await {
        Ok(row) => {
            if let Some(Some(v)) = row.first() {
                readings.push(Reading::text("version", v.clone()));
            }
            let in_recovery = row.get(1).cloned().flatten().as_deref() == Some("t");
            readings.push(Reading::flag("in_recovery", in_recovery));
            match (p.role, in_recovery) {
                (Some(Role::Primary), true) => problems.push(Message::new(
                    "应为主库，但服务器处于恢复（备库）状态",
                    "expected a primary, but the server is in recovery (a standby)",
                )),
                (Some(Role::Standby), false) => problems
                    .push(Message::new("应为备库，但服务器是主库", "expected a standby, but the server is a primary")),
                _ => {}
            }
            let lag = if in_recovery { standby_lag(&mut conn).await } else { primary_lag(&mut conn).await };
            match lag {
                Ok(r) => readings.extend(r),
                Err(e) => {
                    if p.max_lag_s.is_some() || p.max_lag_bytes.is_some() || p.min_replicas.is_some() {
                        problems.push(Message::new(
                            format!("无法读取复制状态：{}", db_error_text(&e)),
                            format!("cannot read the replication status: {}", db_error_text(&e)),
                        ));
                    }
                }
            }
        }
        Err(e) => problems.push(Message::new(
            format!("查询服务器状态失败：{}", db_error_text(&e)),
            format!("reading the server status failed: {}", db_error_text(&e)),
        )),
    }
    let flag = |k: &str| readings.iter().any(|r| r.key == k && r.value == Value::Bool(true));
    let replicating = flag("in_recovery")
        || readings.iter().any(|r| r.key == "replicas" && matches!(r.value, Value::Num(n) if n > 0.0));
    check_replication(&readings, replicating, p.min_replicas, p.max_lag_s, p.max_lag_bytes, &mut problems);

    if let Some(q) = &p.query {
        let t = Instant::now();
        match first_row(&mut conn, q.clone()).await {
            Ok(v) => {
                readings.push(Reading::num("query_ms", ms_since(t)));
                let no_row = v.is_empty();
                let v = v.into_iter().next().flatten();
                if let Some(text) = &v {
                    readings.push(result_reading(text));
                }
                if let Some(e) = &p.expect {
                    if no_row {
                        problems.push(Message::new("查询没有返回任何行", "the query returned no row"));
                    } else if let Err(m) = e.check(v.as_deref()) {
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

async fn primary_lag(conn: &mut sqlx::PgConnection) -> Result<Vec<Reading>, sqlx::Error> {
    let row = first_row(
        conn,
        "SELECT count(*), max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), \
         max(extract(epoch FROM replay_lag)) FROM pg_stat_replication"
            .into(),
    )
    .await?;
    let num = |i: usize| row.get(i).cloned().flatten().and_then(|s| s.parse::<f64>().ok());
    let mut r = vec![Reading::num("replicas", num(0).unwrap_or(0.0))];
    if let Some(b) = num(1) {
        r.push(Reading::num("lag_bytes", b));
    }
    match num(2) {
        Some(s) => r.push(Reading::num("lag_s", crate::node::round2(s))),
        // Standbys connected but idle report no replay_lag: nothing to replay.
        None if num(0).unwrap_or(0.0) > 0.0 && num(1) == Some(0.0) => r.push(Reading::num("lag_s", 0.0)),
        None => {}
    }
    Ok(r)
}

async fn standby_lag(conn: &mut sqlx::PgConnection) -> Result<Vec<Reading>, sqlx::Error> {
    let row = first_row(
        conn,
        "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
            .into(),
    )
    .await?;
    Ok(row
        .first()
        .cloned()
        .flatten()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| vec![Reading::num("lag_s", crate::node::round2(s.max(0.0)))])
        .unwrap_or_default())
}

/// Replication limits shared by PostgreSQL and MySQL (readings `replicas`, `lag_s`, `lag_bytes`).
/// `replicating`: the server has replication to measure (a standby, or a primary with standbys);
/// then a lag limit with no lag reading fails, else it has nothing to check.
pub(crate) fn check_replication(
    readings: &[Reading],
    replicating: bool,
    min_replicas: Option<u32>,
    max_lag_s: Option<f64>,
    max_lag_bytes: Option<f64>,
    problems: &mut Vec<Message>,
) {
    let num = |k: &str| match readings.iter().find(|r| r.key == k).map(|r| &r.value) {
        Some(Value::Num(v)) => Some(*v),
        _ => None,
    };
    if let Some(min) = min_replicas {
        match num("replicas") {
            Some(n) if n < f64::from(min) => problems.push(Message::new(
                format!("已连接的备库 {n} 个，少于要求的 {min} 个"),
                format!("{n} standby(s) connected, fewer than the required {min}"),
            )),
            Some(_) => {}
            None => problems.push(Message::new("未能读取备库数量", "the number of connected standbys is unknown")),
        }
    }
    for (key, max, unit_zh, unit_en) in [("lag_s", max_lag_s, "秒", "s"), ("lag_bytes", max_lag_bytes, "字节", "bytes")]
    {
        let Some(max) = max else { continue };
        match num(key) {
            Some(v) if v > max => problems.push(Message::new(
                format!("复制延迟 {v} {unit_zh}，超过上限 {max} {unit_zh}"),
                format!("replication lag {v} {unit_en}, above the maximum {max} {unit_en}"),
            )),
            Some(_) => {}
            None if !replicating => {}
            None => problems.push(Message::new(
                "未能读取复制延迟（没有复制，或账号缺少 pg_monitor / REPLICATION CLIENT 权限）",
                "the replication lag is unknown (no replication, or the account lacks pg_monitor / REPLICATION CLIENT)",
            )),
        }
    }
}

/// `result` as a number when it reads as one.
pub(crate) fn result_reading(text: &str) -> Reading {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Reading::num("result", n),
        _ => Reading::text("result", text.chars().take(1000).collect::<String>()),
    }
}

pub(crate) fn ms_since(t: Instant) -> f64 {
    crate::node::round2(t.elapsed().as_secs_f64() * 1000.0)
}

/// The server's own words for a database error, or the I/O cause.
pub(crate) fn db_error_text(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => match d.code() {
            Some(code) => format!("{} ({code})", d.message()),
            None => d.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// A failed connection in words an operator can act on.
pub(crate) fn db_failure(target: &str, user: &str, database: &str, e: &sqlx::Error) -> Message {
    if let sqlx::Error::Io(io) = e {
        return crate::node::connect_failure(target, io);
    }
    if let sqlx::Error::Database(d) = e {
        let code = d.code().unwrap_or_default().to_string();
        let text = db_error_text(e);
        // PostgreSQL: 28P01 wrong password, 28000 no such role / pg_hba refusal, 3D000 no database.
        // MySQL/MariaDB: 1045 access denied, 1049 unknown database.
        return match code.as_str() {
            "28P01" | "1045" | "28000" => Message::new(
                format!("{target} 拒绝了用户 {user} 的登录（用户名或密码错误，或访问控制不允许）：{text}"),
                format!(
                    "{target} refused the login of user {user} (wrong user name or password, or not allowed): {text}"
                ),
            ),
            "3D000" | "1049" | "42000" if text.contains(database) => Message::new(
                format!("{target} 上没有数据库 {database}：{text}"),
                format!("database {database} does not exist on {target}: {text}"),
            ),
            _ => Message::new(format!("连接 {target} 失败：{text}"), format!("connecting to {target} failed: {text}")),
        };
    }
    let text = db_error_text(e);
    Message::new(format!("连接 {target} 失败：{text}"), format!("connecting to {target} failed: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> PostgresProbe {
        serde_json::from_value(serde_json::json!({"host": "127.0.0.1"})).unwrap()
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let p = probe();
        assert_eq!((p.port, p.database.as_str(), p.sslmode), (5432, "postgres", SslMode::Prefer));
        assert!(p.validate().is_ok());
        assert!(serde_json::from_value::<PostgresProbe>(serde_json::json!({"host": "h", "pasword": "x"})).is_err());
        let e: Expect = serde_json::from_value(serde_json::json!({"op": ">=", "value": 1})).unwrap();
        assert_eq!(e.op, Op::Ge);
        let e: Expect = serde_json::from_value(serde_json::json!({"value": "ok"})).unwrap();
        assert_eq!((e.op, e.value), (Op::Eq, Value::Text("ok".into())));
    }

    #[test]
    fn invalid_definitions_are_explained() {
        let mut p = probe();
        p.port = 0;
        assert_eq!(p.validate().unwrap_err().en, "the port cannot be 0");
        let mut p = probe();
        p.expect = Some(Expect { op: Op::Eq, value: Value::Num(1.0) });
        assert!(p.validate().unwrap_err().en.contains("no query"));
        p.query = Some("SELECT 1".into());
        assert!(p.validate().is_ok());
        p.expect = Some(Expect { op: Op::Gt, value: Value::Text("a".into()) });
        assert!(p.validate().unwrap_err().en.contains("numeric"));
        let mut p = probe();
        p.max_lag_s = Some(-1.0);
        assert!(p.validate().unwrap_err().en.contains("non-negative"));
    }

    #[test]
    fn expectations() {
        let e = |op, v| Expect { op, value: v };
        assert!(e(Op::Ge, Value::Num(1.0)).check(Some("3")).is_ok());
        assert!(e(Op::Ge, Value::Num(1.0)).check(Some("0.5")).is_err());
        assert!(e(Op::Eq, Value::Num(2.0)).check(Some("2.000")).is_ok());
        assert!(e(Op::Eq, Value::Num(2.0)).check(Some("two")).unwrap_err().en.contains("not a number"));
        assert!(e(Op::Eq, Value::Text("ok".into())).check(Some("ok")).is_ok());
        assert!(e(Op::Contains, Value::Text("正常".into())).check(Some("状态正常")).is_ok());
        assert!(e(Op::Eq, Value::Bool(true)).check(Some("t")).is_ok());
        assert!(e(Op::Eq, Value::Bool(true)).check(Some("f")).is_err());
        assert!(e(Op::Eq, Value::Num(1.0)).check(None).unwrap_err().en.contains("NULL"));
    }
}
