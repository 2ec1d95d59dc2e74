//! Continuous monitors (持续监控, issue 6): a probe of `yunwei-probes` run on its own interval
//! (10 s to a day) by the engine of the node that holds the `monitors` lease, its current state
//! (up or down, since when, the last result, consecutive failures), raw results for a retention
//! period then hourly roll-ups (the shape of inspection readings, [`crate::series`]), and the
//! incidents a monitor going down raises as tickets.
//!
//! Invariants:
//! - A definition is checked in full before it is stored (every problem with its field path,
//!   `monitors[3].probe` in a bulk create); the probe through the checker the web crate passes
//!   (`yunwei_probes::Probe::validate`), a credential by name among the contract's sealed probe
//!   credentials (those of inspections: secrets never enter a definition).
//! - Every change of a monitor takes the next `change_seq` under the writer lock: the engine reads
//!   the rows changed since the last it saw ([`changes_since`]), so edits on any node reach it.
//!   Monitors are never removed, only marked deleted.
//! - Results are written in batches, one transaction per batch ([`record_results`]): a narrow
//!   state row per monitor and one raw row per result. A batch that changes some monitor's state
//!   (up ↔ down) is audited with those transitions; a batch of results that change nothing is
//!   measurement bookkeeping, committed without an audit record (333 results a second at the
//!   target scale would otherwise add an audit record every second).
//! - Going down opens an incident in the batch's transaction; its ticket is raised afterwards
//!   ([`follow_up`], never inside another write transaction) through the desk's `source_key`
//!   deduplication (`mon:{id}`: one open ticket per monitor; going down again while it is open
//!   comments on it). While down, the ticket gets a "still down" comment at most once per
//!   [`REPEAT_COMMENT_MS`]; recovering adds one note.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::inspection::{Problem, TicketRule};
use yunwei_core::ledger::Message;
use yunwei_core::text::single_line;

use crate::audit::AuditEntry;
use crate::db::{Arg, Db, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::inspections::{self, InspResult, InspectionError, ProbeCheck, local_time};
use crate::principal::ContractScope;
pub use crate::series::Point;
use crate::series::{self, Points};
use crate::tickets::{self, NewTicket};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
pub const MIN_INTERVAL_S: i64 = 10;
pub const MAX_INTERVAL_S: i64 = 86_400;
pub const DEFAULT_INTERVAL_S: i64 = 60;
pub const DEFAULT_TIMEOUT_S: i64 = 10;
pub const MAX_TIMEOUT_S: i64 = yunwei_core::inspection::MAX_PROBE_TIMEOUT_S as i64;
/// Raw results are kept this many days by default (a result a minute is 1,440 rows a day per
/// monitor), then hourly roll-ups.
pub const DEFAULT_RETAIN_RAW_DAYS: i64 = 7;
/// Monitors in one bulk create.
pub const MAX_BULK: usize = 1_000;
/// A ticket of a monitor that stays down is commented on at most this often.
pub const REPEAT_COMMENT_MS: i64 = HOUR_MS;
pub const MAX_NAME_CHARS: usize = 200;

fn bad(field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> Problem {
    Problem { field: field.into(), message: Message::new(zh, en) }
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Schema(format!("cannot encode: {e}")))
}

/// The ticket source key of a monitor: one open ticket per monitor.
pub fn ticket_key(monitor_id: i64) -> String {
    format!("mon:{monitor_id}")
}

// ---------------------------------------------------------------------------------------------
// Definitions

/// What a monitor checks and how, as stored, edited and exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorDef {
    pub name: String,
    /// A `yunwei-probes` probe (JSON, tag `kind`).
    pub probe: serde_json::Value,
    /// Seconds between runs (10 – 86,400, default 60).
    #[serde(default = "default_interval")]
    pub interval_s: i64,
    /// Seconds a run may take (1 – 120 and at most the interval; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<i64>,
    /// The name of a stored probe credential of the contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The asset of the ledger it watches (its number goes on tickets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<i64>,
    /// The business system it watches (its name goes on tickets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<i64>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive failed runs before the monitor counts as down (1 – 10, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_after: Option<i64>,
    /// The reading that is the monitor's value (charted, judged by `expected`); default: the
    /// probe's elapsed time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// The range the value must lie in (either bound may be left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Bounds>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// Going down raises a ticket at this rule's level; absent: recorded only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<TicketRule>,
    /// Raw results are kept this many days (1 – 366, default 7), then hourly roll-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_raw_days: Option<i64>,
}

fn default_interval() -> i64 {
    DEFAULT_INTERVAL_S
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Bounds {
    fn contains(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

impl MonitorDef {
    pub fn timeout(&self) -> i64 {
        self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S).min(self.interval_s)
    }

    pub fn kind(&self) -> &str {
        self.probe.get("kind").and_then(|k| k.as_str()).unwrap_or("")
    }

    fn retain_days(&self) -> i64 {
        self.retain_raw_days.unwrap_or(DEFAULT_RETAIN_RAW_DAYS)
    }
}

const FIELDS: &[&str] = &[
    "name",
    "probe",
    "interval_s",
    "timeout_s",
    "credential",
    "asset_id",
    "system_id",
    "enabled",
    "down_after",
    "reading",
    "expected",
    "unit",
    "tickets",
    "retain_raw_days",
];

/// A definition from JSON, or every field that does not fit the format, named with `at` in front
/// (`monitors[3].interval_s`); serde's own message alone does not say which field was wrong.
pub fn parse_def(v: &serde_json::Value, at: &str) -> Result<MonitorDef, Vec<Problem>> {
    let path = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    let Some(obj) = v.as_object() else {
        return Err(vec![bad(at, "监控定义须为 JSON 对象", "a monitor is a JSON object")]);
    };
    let mut out = Vec::new();
    for (k, v) in obj {
        let shape = match k.as_str() {
            "name" | "credential" | "reading" | "unit" => serde_json::from_value::<Option<String>>(v.clone()).map(drop),
            "interval_s" | "timeout_s" | "down_after" | "retain_raw_days" | "asset_id" | "system_id" => {
                serde_json::from_value::<Option<i64>>(v.clone()).map(drop)
            }
            "enabled" => serde_json::from_value::<bool>(v.clone()).map(drop),
            "expected" => serde_json::from_value::<Option<Bounds>>(v.clone()).map(drop),
            "tickets" => serde_json::from_value::<Option<TicketRule>>(v.clone()).map(drop),
            "probe" => {
                if v.is_object() {
                    Ok(())
                } else {
                    out.push(bad(path(k), "probe 须为 JSON 对象", "probe must be a JSON object"));
                    continue;
                }
            }
            _ => {
                out.push(bad(
                    path(k),
                    format!("未知字段 {k:?}（可用：{}）", FIELDS.join("、")),
                    format!("unknown field {k:?} (known: {})", FIELDS.join(", ")),
                ));
                continue;
            }
        };
        if let Err(e) = shape {
            out.push(bad(path(k), format!("格式错误：{e}"), format!("malformed: {e}")));
        }
    }
    for required in ["name", "probe"] {
        if !obj.contains_key(required) {
            out.push(bad(path(required), format!("缺少 {required}"), format!("{required} is missing")));
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    serde_json::from_value(v.clone()).map_err(|e| vec![bad(at, format!("格式错误：{e}"), format!("malformed: {e}"))])
}

fn normalised(def: &MonitorDef) -> MonitorDef {
    let mut d = def.clone();
    d.name = d.name.trim().to_string();
    d.unit = d.unit.trim().to_string();
    d.credential = d.credential.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    d.reading = d.reading.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    d
}

/// What definitions are checked against: the contract's levels, classes, credentials and the
/// ledger records they link to.
struct Context {
    levels: Vec<String>,
    classes: Vec<String>,
    credentials: Vec<String>,
    assets: HashSet<i64>,
    systems: HashSet<i64>,
}

async fn context(db: &Db, scope: &ContractScope, defs: &[MonitorDef]) -> StoreResult<Context> {
    let cid = scope.contract_id();
    let terms = inspections::contract_terms(db, cid).await?;
    let credentials = inspections::credential_names(db, cid).await?;
    let mut assets = HashSet::new();
    let mut systems = HashSet::new();
    let wanted_assets: HashSet<i64> = defs.iter().filter_map(|d| d.asset_id).collect();
    let wanted_systems: HashSet<i64> = defs.iter().filter_map(|d| d.system_id).collect();
    for id in wanted_assets {
        let found = sqlx::query("SELECT id FROM asset WHERE contract_id = $1 AND id = $2")
            .bind(cid)
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
        if found.is_some() {
            assets.insert(id);
        }
    }
    for id in wanted_systems {
        let found = sqlx::query("SELECT id FROM business_system WHERE contract_id = $1 AND id = $2")
            .bind(cid)
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
        if found.is_some() {
            systems.insert(id);
        }
    }
    Ok(Context { levels: terms.levels, classes: terms.classes, credentials, assets, systems })
}

fn check_def(def: &MonitorDef, at: &str, ctx: &Context, probe_check: ProbeCheck<'_>, out: &mut Vec<Problem>) {
    let path = |k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    if let Err(m) = single_line(&def.name, MAX_NAME_CHARS, true) {
        out.push(bad(
            path("name"),
            format!("名称{}（至多 {MAX_NAME_CHARS} 字）", m.zh),
            format!("name {} (at most {MAX_NAME_CHARS} characters)", m.en),
        ));
    }
    if let Err(m) = probe_check(&def.probe) {
        out.push(Problem { field: path("probe"), message: m });
    }
    if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&def.interval_s) {
        out.push(bad(
            path("interval_s"),
            format!("检测间隔应为 {MIN_INTERVAL_S} 到 {MAX_INTERVAL_S} 秒"),
            format!("interval_s is {MIN_INTERVAL_S} to {MAX_INTERVAL_S} seconds"),
        ));
    }
    if let Some(t) = def.timeout_s
        && (!(1..=MAX_TIMEOUT_S).contains(&t) || t > def.interval_s)
    {
        out.push(bad(
            path("timeout_s"),
            format!("超时应为 1 到 {MAX_TIMEOUT_S} 秒，且不超过检测间隔"),
            format!("timeout_s is 1 to {MAX_TIMEOUT_S} seconds and at most interval_s"),
        ));
    }
    if let Some(c) = &def.credential
        && !ctx.credentials.contains(c)
    {
        out.push(bad(
            path("credential"),
            format!("没有名为 {c:?} 的探测凭据（先在巡检凭据中保存）"),
            format!("no probe credential named {c:?} (store it among the inspection credentials first)"),
        ));
    }
    if let Some(id) = def.asset_id
        && !ctx.assets.contains(&id)
    {
        out.push(bad(path("asset_id"), format!("本合同没有设备 {id}"), format!("the contract has no asset {id}")));
    }
    if let Some(id) = def.system_id
        && !ctx.systems.contains(&id)
    {
        out.push(bad(path("system_id"), format!("本合同没有系统 {id}"), format!("the contract has no system {id}")));
    }
    if let Some(n) = def.down_after
        && !(1..=10).contains(&n)
    {
        out.push(bad(path("down_after"), "连续失败次数应为 1 到 10", "down_after is 1 to 10 consecutive failures"));
    }
    if let Some(r) = &def.reading
        && (r.len() > 64 || r.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        out.push(bad(
            path("reading"),
            "读数名至多 64 个字符，不含空白",
            "reading is at most 64 characters without spaces",
        ));
    }
    if let Some(b) = &def.expected {
        let finite = b.min.is_none_or(f64::is_finite) && b.max.is_none_or(f64::is_finite);
        if !finite || b.min.zip(b.max).is_some_and(|(a, z)| a > z) || (b.min.is_none() && b.max.is_none()) {
            out.push(bad(
                path("expected"),
                "范围须给出 min 或 max，且 min 不大于 max",
                "expected needs min or max, with min not above max",
            ));
        }
    }
    if let Err(m) = single_line(&def.unit, 16, false) {
        out.push(bad(path("unit"), format!("单位{}（至多 16 字）", m.zh), format!("unit {} (at most 16)", m.en)));
    }
    if let Some(t) = &def.tickets {
        if !ctx.levels.contains(&t.level) {
            out.push(bad(
                path("tickets.level"),
                format!("合同中没有级别 {:?}（可用：{}）", t.level, ctx.levels.join("、")),
                format!("the contract has no level {:?} (known: {})", t.level, ctx.levels.join(", ")),
            ));
        }
        if !t.incident_class.is_empty() && !ctx.classes.contains(&t.incident_class) {
            out.push(bad(
                path("tickets.incident_class"),
                format!("合同中没有事件等级 {:?}", t.incident_class),
                format!("the contract has no incident class {:?}", t.incident_class),
            ));
        }
    }
    if let Some(d) = def.retain_raw_days
        && !(1..=366).contains(&d)
    {
        out.push(bad(path("retain_raw_days"), "原始数据保留天数应为 1 到 366", "retain_raw_days is 1 to 366"));
    }
}

/// Checks definitions without storing them; `at(i)` names the i-th in problems.
async fn check_all(
    db: &Db,
    scope: &ContractScope,
    defs: &[MonitorDef],
    at: impl Fn(usize) -> String,
    probe_check: ProbeCheck<'_>,
) -> InspResult<()> {
    scope.require(ContractPermission::InspectionPlan)?;
    let ctx = context(db, scope, defs).await?;
    let mut problems = Vec::new();
    for (i, d) in defs.iter().enumerate() {
        check_def(d, &at(i), &ctx, probe_check, &mut problems);
    }
    if problems.is_empty() { Ok(()) } else { Err(InspectionError::Invalid(problems)) }
}

// ---------------------------------------------------------------------------------------------
// Views

/// A monitor as people see it.
#[derive(Debug, Clone, Serialize)]
pub struct Monitor {
    pub id: i64,
    pub contract_id: i64,
    pub name: String,
    pub kind: String,
    pub definition: MonitorDef,
    pub enabled: bool,
    /// up, down, unknown (not run yet) or paused (disabled).
    pub status: &'static str,
    pub state: Option<MonitorState>,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub version: i64,
}

/// The current state of a monitor that has run.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorState {
    /// up or down.
    pub status: String,
    pub since: i64,
    pub last_at: i64,
    pub last_ok: bool,
    pub last_value: Option<f64>,
    pub last_elapsed_ms: f64,
    pub last_reason: Option<Message>,
    /// Consecutive failed runs.
    pub failures: i64,
    pub runs: i64,
}

const SELECT: &str = "SELECT m.id, m.contract_id, m.name, m.kind, m.definition, m.enabled, m.created_at, m.created_by, \
     m.updated_at, m.version, s.status, s.since, s.last_at, s.last_ok, s.last_value, s.last_elapsed_ms, s.last_reason, \
     s.failures, s.runs FROM monitor m LEFT JOIN monitor_state s ON s.monitor_id = m.id";

fn parse_stored(text: &str) -> StoreResult<MonitorDef> {
    serde_json::from_str(text).map_err(|e| StoreError::Schema(format!("stored monitor does not parse: {e}")))
}

fn reason_of(text: &str) -> Option<Message> {
    if text.is_empty() { None } else { serde_json::from_str(text).ok() }
}

fn monitor_from_row(r: &AnyRow) -> StoreResult<Monitor> {
    let enabled = r.try_get::<i64, _>("enabled")? != 0;
    let status: Option<String> = r.try_get("status")?;
    let state = match &status {
        Some(s) => Some(MonitorState {
            status: s.clone(),
            since: r.try_get("since")?,
            last_at: r.try_get("last_at")?,
            last_ok: r.try_get::<i64, _>("last_ok")? != 0,
            last_value: r.try_get("last_value")?,
            last_elapsed_ms: r.try_get("last_elapsed_ms")?,
            last_reason: reason_of(&r.try_get::<String, _>("last_reason")?),
            failures: r.try_get("failures")?,
            runs: r.try_get("runs")?,
        }),
        None => None,
    };
    Ok(Monitor {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        definition: parse_stored(&r.try_get::<String, _>("definition")?)?,
        enabled,
        status: match (enabled, status.as_deref()) {
            (false, _) => "paused",
            (true, Some("up")) => "up",
            (true, Some("down")) => "down",
            _ => "unknown",
        },
        state,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Monitor> {
    scope.require(ContractPermission::InspectionRead)?;
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("{SELECT} WHERE m.contract_id = $1 AND m.id = $2 AND m.deleted = 0")))
            .bind(scope.contract_id())
            .bind(id)
            .fetch_optional(&db.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
    monitor_from_row(&row)
}

/// Which monitors to list: after a cursor, in one status, names containing a text.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// up, down, unknown, paused; empty: all.
    pub status: String,
    pub q: String,
    pub after_id: Option<i64>,
    pub limit: i64,
}

pub const STATUSES: [&str; 4] = ["up", "down", "unknown", "paused"];

/// A page of the contract's monitors in id order with their state.
pub async fn list(db: &Db, scope: &ContractScope, f: &Filter) -> StoreResult<Vec<Monitor>> {
    scope.require(ContractPermission::InspectionRead)?;
    let status = f.status.trim();
    if !status.is_empty() && !STATUSES.contains(&status) {
        return Err(StoreError::invalid(
            "status",
            Msg::new("状态应为 up、down、unknown 或 paused", "status is up, down, unknown or paused"),
        ));
    }
    let q = single_line(&f.q, 100, false).map_err(|m| StoreError::invalid("q", m))?;
    let like = if q.is_empty() { String::new() } else { crate::like_contains(&q) };
    // Up and down are found through the state's index (a contract may hold 20,000 monitors of
    // which a few are down); the others walk the monitors in id order.
    let sql = if status == "up" || status == "down" {
        "SELECT m.id, m.contract_id, m.name, m.kind, m.definition, m.enabled, m.created_at, m.created_by, \
         m.updated_at, m.version, s.status, s.since, s.last_at, s.last_ok, s.last_value, s.last_elapsed_ms, \
         s.last_reason, s.failures, s.runs FROM monitor_state s JOIN monitor m ON m.id = s.monitor_id \
         WHERE s.contract_id = $1 AND s.status = $2 AND s.monitor_id > $3 AND m.contract_id = $1 AND m.deleted = 0 \
         AND m.enabled = 1 AND ($4 = '' OR lower(m.name) LIKE $4 ESCAPE '\\') ORDER BY s.monitor_id LIMIT $5"
            .to_string()
    } else {
        format!(
            "{SELECT} WHERE m.contract_id = $1 AND m.deleted = 0 AND m.id > $3 \
             AND ($2 = '' OR ($2 = 'paused' AND m.enabled = 0) OR ($2 = 'unknown' AND m.enabled = 1 AND s.status IS NULL)) \
             AND ($4 = '' OR lower(m.name) LIKE $4 ESCAPE '\\') ORDER BY m.id LIMIT $5"
        )
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope.contract_id())
        .bind(status.to_string())
        .bind(f.after_id.unwrap_or(0))
        .bind(like)
        .bind(f.limit.clamp(1, 500))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(monitor_from_row).collect()
}

/// How many of the contract's monitors are in each status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub total: i64,
    pub up: i64,
    pub down: i64,
    pub unknown: i64,
    pub paused: i64,
}

pub async fn counts(db: &Db, scope: &ContractScope) -> StoreResult<Counts> {
    scope.require(ContractPermission::InspectionRead)?;
    let rows = sqlx::query(
        "SELECT CASE WHEN m.enabled = 0 THEN 'paused' ELSE COALESCE(s.status, 'unknown') END AS st, COUNT(*) AS n \
         FROM monitor m LEFT JOIN monitor_state s ON s.monitor_id = m.id WHERE m.contract_id = $1 AND m.deleted = 0 \
         GROUP BY CASE WHEN m.enabled = 0 THEN 'paused' ELSE COALESCE(s.status, 'unknown') END",
    )
    .bind(scope.contract_id())
    .fetch_all(&db.pool)
    .await?;
    let mut c = Counts::default();
    for r in rows {
        let n: i64 = r.try_get("n")?;
        c.total += n;
        match r.try_get::<String, _>("st")?.as_str() {
            "up" => c.up = n,
            "down" => c.down = n,
            "paused" => c.paused = n,
            _ => c.unknown += n,
        }
    }
    Ok(c)
}

/// A period of a monitor being down, and its ticket.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub opened_at: i64,
    pub reason: Option<Message>,
    pub recovered_at: Option<i64>,
    pub ticket_id: Option<i64>,
    pub ticket_number: Option<String>,
    pub opened_ticket: bool,
    pub comments: i64,
}

/// The monitor's latest incidents, newest first.
pub async fn incidents(db: &Db, scope: &ContractScope, id: i64, limit: i64) -> StoreResult<Vec<Incident>> {
    get(db, scope, id).await?;
    let rows = sqlx::query(
        "SELECT i.id, i.opened_at, i.reason, i.recovered_at, i.ticket_id, i.opened_ticket, i.comments, t.number \
         FROM monitor_incident i LEFT JOIN ticket t ON t.id = i.ticket_id \
         WHERE i.contract_id = $1 AND i.monitor_id = $2 ORDER BY i.id DESC LIMIT $3",
    )
    .bind(scope.contract_id())
    .bind(id)
    .bind(limit.clamp(1, 200))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Incident {
                id: r.try_get("id")?,
                opened_at: r.try_get("opened_at")?,
                reason: reason_of(&r.try_get::<String, _>("reason")?),
                recovered_at: r.try_get("recovered_at")?,
                ticket_id: r.try_get("ticket_id")?,
                ticket_number: r.try_get("number")?,
                opened_ticket: r.try_get::<i64, _>("opened_ticket")? != 0,
                comments: r.try_get("comments")?,
            })
        })
        .collect()
}

/// A monitor's values in `[from, to)`: raw results for ranges up to a day (hourly beyond), and
/// the hourly roll-ups of older ones.
pub async fn history(db: &Db, scope: &ContractScope, id: i64, from: i64, to: i64) -> StoreResult<Vec<Point>> {
    get(db, scope, id).await?;
    if to <= from || to - from > 400 * DAY_MS {
        return Err(StoreError::invalid("to", Msg::new("时间范围应为 1 到 400 天", "The range is 1 to 400 days")));
    }
    let hourly = to - from > DAY_MS;
    let group = if hourly { " GROUP BY (at / 3600000) * 3600000" } else { "" };
    let raw = format!(
        "SELECT {} FROM monitor_sample WHERE contract_id = $1 AND monitor_id = $2 AND at >= $3 AND at < $4{group}",
        series::raw_columns(db.backend(), hourly)
    );
    let rolled = format!(
        "SELECT {} FROM monitor_rollup WHERE contract_id = $1 AND monitor_id = $2 AND hour_at >= $3 AND hour_at < $4",
        series::ROLLUP_COLUMNS
    );
    let mut points = Points::default();
    for (sql, is_hourly) in [(raw, hourly), (rolled, true)] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.contract_id())
            .bind(id)
            .bind(from)
            .bind(to)
            .fetch_all(&db.pool)
            .await?;
        points.add(&rows, is_hourly)?;
    }
    Ok(points.into_points())
}

// ---------------------------------------------------------------------------------------------
// Changes

/// The next change sequence numbers; read under the writer lock, so no other change interleaves.
async fn next_seq(tx: &mut WriteTx) -> StoreResult<i64> {
    let row = tx.fetch_one("SELECT COALESCE(MAX(change_seq), 0) AS s FROM monitor", Vec::new()).await?;
    Ok(row.try_get::<i64, _>("s")? + 1)
}

fn insert_args(scope: &ContractScope, def: &MonitorDef, json: String, seq: i64, now: i64) -> Vec<Arg> {
    vec![
        scope.contract_id().into(),
        def.name.clone().into(),
        def.kind().to_string().into(),
        json.into(),
        def.interval_s.into(),
        i64::from(def.enabled).into(),
        def.asset_id.into(),
        def.system_id.into(),
        seq.into(),
        now.into(),
        scope.actor().name.clone().into(),
    ]
}

const INSERT: &str = "INSERT INTO monitor (contract_id, name, kind, definition, interval_s, enabled, asset_id, system_id, \
     change_seq, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $10)";

/// Stores a new monitor; the engine picks it up within a second or two.
pub async fn create(
    db: &Db,
    scope: &ContractScope,
    def: &MonitorDef,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Monitor> {
    let ids = create_many(db, scope, std::slice::from_ref(def), |_| String::new(), probe_check, now).await?;
    let id = ids.first().copied().ok_or(StoreError::NotFound)?;
    Ok(get(db, scope, id).await?)
}

/// Stores up to [`MAX_BULK`] monitors at once, all or none (every problem named with `at(i)`).
/// Returns their ids in order.
pub async fn create_many(
    db: &Db,
    scope: &ContractScope,
    defs: &[MonitorDef],
    at: impl Fn(usize) -> String,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Vec<i64>> {
    scope.require(ContractPermission::InspectionPlan)?;
    if defs.is_empty() || defs.len() > MAX_BULK {
        return Err(InspectionError::Invalid(vec![bad(
            "monitors",
            format!("每次 1 到 {MAX_BULK} 个监控"),
            format!("1 to {MAX_BULK} monitors at a time"),
        )]));
    }
    let defs: Vec<MonitorDef> = defs.iter().map(normalised).collect();
    check_all(db, scope, &defs, at, probe_check).await?;
    let mut tx = db.begin_write(now).await?;
    let first = next_seq(&mut tx).await?;
    for (i, d) in defs.iter().enumerate() {
        tx.defer(INSERT, insert_args(scope, d, to_json(d)?, first + i as i64, now));
    }
    let last = first + defs.len() as i64 - 1;
    let rows = tx
        .fetch_all(
            "SELECT id FROM monitor WHERE contract_id = $1 AND change_seq >= $2 AND change_seq <= $3 ORDER BY change_seq",
            vec![scope.contract_id().into(), first.into(), last.into()],
        )
        .await?;
    let ids =
        rows.iter().map(|r| r.try_get::<i64, _>("id")).collect::<Result<Vec<_>, _>>().map_err(StoreError::from)?;
    let detail = if defs.len() == 1 {
        format!("{} {} every {} s", defs[0].name, defs[0].kind(), defs[0].interval_s)
    } else {
        format!("{} monitors, ids {}–{}", defs.len(), ids.first().unwrap_or(&0), ids.last().unwrap_or(&0))
    };
    let object = match ids.as_slice() {
        [one] => format!("monitor:{one}"),
        _ => "monitors".to_string(),
    };
    tx.audit(
        AuditEntry::new(scope.actor(), if defs.len() == 1 { "monitor.create" } else { "monitor.bulk_create" }, object)
            .contract(scope.contract_id())
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    Ok(ids)
}

fn stale() -> StoreError {
    StoreError::Conflict(Msg::new(
        "该监控已被他人修改，请刷新后重试",
        "Someone else changed this monitor; reload and retry",
    ))
}

/// Replaces a monitor's definition (pausing it is `enabled: false`). Its state and history stay.
pub async fn update(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    def: &MonitorDef,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Monitor> {
    let current = get(db, scope, id).await?;
    let def = normalised(def);
    check_all(db, scope, std::slice::from_ref(&def), |_| String::new(), probe_check).await?;
    if current.version != version {
        return Err(stale().into());
    }
    let mut tx = db.begin_write(now).await?;
    let seq = next_seq(&mut tx).await?;
    let n = tx
        .execute(
            "UPDATE monitor SET name = $1, kind = $2, definition = $3, interval_s = $4, enabled = $5, asset_id = $6, \
             system_id = $7, change_seq = $8, updated_at = $9, version = version + 1 \
             WHERE contract_id = $10 AND id = $11 AND version = $12 AND deleted = 0",
            vec![
                def.name.clone().into(),
                def.kind().to_string().into(),
                to_json(&def)?.into(),
                def.interval_s.into(),
                i64::from(def.enabled).into(),
                def.asset_id.into(),
                def.system_id.into(),
                seq.into(),
                now.into(),
                scope.contract_id().into(),
                id.into(),
                version.into(),
            ],
        )
        .await?;
    if n == 0 {
        return Err(stale().into());
    }
    let mut changes = Vec::new();
    let old = &current.definition;
    if old.name != def.name {
        changes.push(format!("name {:?} → {:?}", old.name, def.name));
    }
    if old.probe != def.probe {
        changes.push("probe".to_string());
    }
    if old.interval_s != def.interval_s {
        changes.push(format!("interval {} → {} s", old.interval_s, def.interval_s));
    }
    if old.enabled != def.enabled {
        changes.push(if def.enabled { "enabled" } else { "paused" }.to_string());
    }
    if old.tickets != def.tickets {
        changes.push(format!("tickets {:?}", def.tickets.as_ref().map(|t| t.level.clone())));
    }
    if changes.is_empty() {
        changes.push("settings".to_string());
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "monitor.update", format!("monitor:{id}"))
            .contract(scope.contract_id())
            .detail(format!("{} v{}: {}", def.name, version + 1, changes.join(", "))),
    )
    .await?;
    tx.commit().await?;
    Ok(get(db, scope, id).await?)
}

/// Deletes a monitor: it stops running; its results, incidents and tickets stay.
pub async fn delete(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::InspectionPlan)?;
    let current = get(db, scope, id).await?;
    let mut tx = db.begin_write(now).await?;
    let seq = next_seq(&mut tx).await?;
    let n = tx
        .execute(
            "UPDATE monitor SET deleted = 1, enabled = 0, change_seq = $1, updated_at = $2, version = version + 1 \
             WHERE contract_id = $3 AND id = $4 AND deleted = 0",
            vec![seq.into(), now.into(), scope.contract_id().into(), id.into()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.defer("DELETE FROM monitor_state WHERE monitor_id = $1", vec![id.into()]);
    tx.audit(
        AuditEntry::new(scope.actor(), "monitor.delete", format!("monitor:{id}"))
            .contract(scope.contract_id())
            .detail(current.name),
    )
    .await?;
    tx.commit().await
}

// ---------------------------------------------------------------------------------------------
// The engine's side (the node holding the `monitors` lease; cross-contract, as platform)

/// A monitor as the engine runs it.
#[derive(Debug, Clone)]
pub struct EngineMonitor {
    pub id: i64,
    pub contract_id: i64,
    /// Enabled and not deleted: run it; otherwise stop running it.
    pub active: bool,
    pub probe: serde_json::Value,
    pub interval_s: i64,
    pub timeout_s: i64,
    pub credential: Option<String>,
    pub change_seq: i64,
}

/// The monitors of every contract changed after `after` (all of them from 0), oldest change
/// first, at most `limit`.
pub async fn changes_since(db: &Db, after: i64, limit: i64) -> StoreResult<Vec<EngineMonitor>> {
    let rows = sqlx::query(
        "SELECT id, contract_id, definition, enabled, deleted, change_seq FROM monitor WHERE change_seq > $1 \
         ORDER BY change_seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let def = parse_stored(&r.try_get::<String, _>("definition")?)?;
        out.push(EngineMonitor {
            id: r.try_get("id")?,
            contract_id: r.try_get("contract_id")?,
            active: r.try_get::<i64, _>("enabled")? != 0 && r.try_get::<i64, _>("deleted")? == 0,
            interval_s: def.interval_s,
            timeout_s: def.timeout(),
            credential: def.credential,
            probe: def.probe,
            change_seq: r.try_get("change_seq")?,
        });
    }
    Ok(out)
}

/// The node holding the monitors' lease and until when, if any.
pub async fn engine_holder(db: &Db) -> StoreResult<Option<(String, i64)>> {
    let row = sqlx::query("SELECT holder, expires_at FROM job_lease WHERE name = 'monitors'")
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get("holder")?, r.try_get("expires_at")?)),
        None => None,
    })
}

/// Gives the monitors' lease up (a node shutting down), so that another node takes over at its
/// next tick instead of when the lease runs out.
pub async fn release_lease(db: &Db, holder: &str) -> StoreResult<()> {
    sqlx::query("UPDATE job_lease SET expires_at = 0 WHERE name = 'monitors' AND holder = $1")
        .bind(holder.to_string())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// One run of a monitor as the engine reports it.
#[derive(Debug, Clone)]
pub struct MonitorReport {
    pub monitor_id: i64,
    /// When the run started (server time).
    pub at: i64,
    pub ok: bool,
    pub elapsed_ms: f64,
    pub reason: Option<Message>,
    /// The numeric readings (booleans as 0/1).
    pub readings: Vec<(String, f64)>,
}

/// What a batch of results asks to be done with tickets, after its transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUp {
    /// Went down: raise (or comment on) the monitor's ticket.
    Down { contract_id: i64, monitor_id: i64, incident_id: i64 },
    /// Still down an hour after the last word on the ticket.
    StillDown { contract_id: i64, monitor_id: i64, incident_id: i64, failures: i64 },
    /// Back up: note it on the ticket.
    Up { contract_id: i64, monitor_id: i64, incident_id: i64 },
}

/// What [`record_results`] did.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub stored: usize,
    /// Results of monitors deleted meanwhile.
    pub ignored: usize,
    pub transitions: usize,
    pub follow_ups: Vec<FollowUp>,
    /// Reading the monitors' definitions and state (outside the transaction), then the write
    /// transaction from asking for the writer lock to the commit.
    pub read: std::time::Duration,
    pub write: std::time::Duration,
}

/// Monitors' state as a batch finds it and leaves it.
struct Current {
    contract_id: i64,
    deleted: bool,
    def: Option<MonitorDef>,
    status: Option<&'static str>,
    since: i64,
    failures: i64,
    runs: i64,
    incident_id: Option<i64>,
    last_comment_at: Option<i64>,
    last: Option<(i64, bool, Option<f64>, f64, String)>,
    /// The monitor had a state row before this batch (its insert sets status and since, a
    /// transition of an existing row needs its own update).
    existed: bool,
    /// The status changed in this batch.
    moved: bool,
}

/// Ids read per query: a fixed number of placeholders (padded by repeating an id), so that
/// PostgreSQL sees one statement text however big the batch.
const ID_CHUNK: usize = 128;

static META_SQL: LazyLock<String> = LazyLock::new(|| {
    let list: Vec<String> = (1..=ID_CHUNK).map(|i| format!("${i}")).collect();
    format!(
        "SELECT m.id, m.contract_id, m.definition, m.deleted, s.status, s.since, s.failures, s.runs, s.incident_id, \
         s.last_comment_at FROM monitor m LEFT JOIN monitor_state s ON s.monitor_id = m.id WHERE m.id IN ({})",
        list.join(", ")
    )
});

/// Multi-row statements are sent in these sizes (greedy), so that PostgreSQL prepares a handful
/// of statement texts instead of one per batch size.
const ROW_CHUNKS: [usize; 4] = [64, 16, 4, 1];

fn values(rows: usize, per_row: usize, row: impl Fn(usize) -> String) -> String {
    (0..rows).map(|r| row(r * per_row)).collect::<Vec<_>>().join(", ")
}

static SAMPLE_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    ROW_CHUNKS
        .iter()
        .map(|&n| {
            format!(
                "INSERT INTO monitor_sample (monitor_id, at, contract_id, ok, value) VALUES {} \
                 ON CONFLICT (monitor_id, at) DO NOTHING",
                values(n, 6, |o| format!(
                    "(${}, ${}, ${}, ${}, CASE WHEN ${} = 1 THEN ${} END)",
                    o + 1,
                    o + 2,
                    o + 3,
                    o + 4,
                    o + 6,
                    o + 5
                ))
            )
        })
        .collect()
});

static STATE_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    ROW_CHUNKS
        .iter()
        .map(|&n| {
            // status and since are set on insert only (a transition updates them on its own), so
            // that the status index is not rewritten by every result.
            format!(
                "INSERT INTO monitor_state (monitor_id, contract_id, status, since, last_at, last_ok, last_value, \
                 last_elapsed_ms, last_reason, failures, runs, incident_id, last_comment_at) VALUES {} \
                 ON CONFLICT (monitor_id) DO UPDATE SET last_at = excluded.last_at, last_ok = excluded.last_ok, \
                 last_value = excluded.last_value, last_elapsed_ms = excluded.last_elapsed_ms, \
                 last_reason = excluded.last_reason, failures = excluded.failures, runs = excluded.runs, \
                 incident_id = excluded.incident_id, last_comment_at = excluded.last_comment_at",
                values(n, 14, |o| {
                    let p = |i: usize| format!("${}", o + i);
                    format!(
                        "({}, {}, {}, {}, {}, {}, CASE WHEN {} = 1 THEN {} END, {}, {}, {}, {}, {}, {})",
                        p(1),
                        p(2),
                        p(3),
                        p(4),
                        p(5),
                        p(6),
                        p(8),
                        p(7),
                        p(9),
                        p(10),
                        p(11),
                        p(12),
                        p(13),
                        p(14)
                    )
                })
            )
        })
        .collect()
});

/// Sends `rows` through the multi-row statement `sql[k]` in [`ROW_CHUNKS`] sizes.
fn defer_rows(tx: &mut WriteTx, sql: &'static [String], rows: Vec<Vec<Arg>>) {
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        let Some(k) = ROW_CHUNKS.iter().position(|&n| n <= rest.len()) else { break };
        let (chunk, tail) = rest.split_at(ROW_CHUNKS[k]);
        tx.defer(&sql[k], chunk.iter().flatten().cloned().collect());
        rest = tail;
    }
}

fn judge(def: &MonitorDef, r: &MonitorReport) -> (bool, Option<f64>, Option<Message>) {
    let value = match &def.reading {
        Some(k) => r.readings.iter().find(|(key, _)| key == k).map(|(_, v)| *v),
        None => Some(r.elapsed_ms),
    };
    let in_range = def.expected.is_none_or(|b| value.is_some_and(|v| b.contains(v)));
    let ok = r.ok && in_range;
    let reason = match (&r.reason, r.ok, in_range) {
        (Some(m), _, _) => Some(m.clone()),
        (None, true, false) => {
            let v = value.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let key = def.reading.as_deref().unwrap_or("elapsed_ms");
            Some(Message::new(format!("读数 {key} = {v} 超出范围"), format!("reading {key} = {v} is out of range")))
        }
        _ => None,
    };
    (ok, value, reason)
}

/// Stores a batch of results in one transaction: a raw row each, the state of each monitor,
/// incidents opened and closed. Returns what tickets need.
pub async fn record_results(db: &Db, reports: &[MonitorReport], now: i64) -> StoreResult<Recorded> {
    let mut out = Recorded::default();
    if reports.is_empty() {
        return Ok(out);
    }
    let started = std::time::Instant::now();
    let mut ids: Vec<i64> = reports.iter().map(|r| r.monitor_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut cur: BTreeMap<i64, Current> = BTreeMap::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let mut q = sqlx::query(META_SQL.as_str());
        for i in 0..ID_CHUNK {
            q = q.bind(chunk.get(i).copied().unwrap_or(chunk[0]));
        }
        for r in q.fetch_all(&db.pool).await? {
            let status: Option<String> = r.try_get("status")?;
            cur.insert(
                r.try_get("id")?,
                Current {
                    contract_id: r.try_get("contract_id")?,
                    deleted: r.try_get::<i64, _>("deleted")? != 0,
                    def: parse_stored(&r.try_get::<String, _>("definition")?).ok(),
                    status: match status.as_deref() {
                        Some("up") => Some("up"),
                        Some("down") => Some("down"),
                        _ => None,
                    },
                    since: r.try_get::<Option<i64>, _>("since")?.unwrap_or(0),
                    failures: r.try_get::<Option<i64>, _>("failures")?.unwrap_or(0),
                    runs: r.try_get::<Option<i64>, _>("runs")?.unwrap_or(0),
                    incident_id: r.try_get("incident_id")?,
                    last_comment_at: r.try_get("last_comment_at")?,
                    last: None,
                    existed: status.is_some(),
                    moved: false,
                },
            );
        }
    }
    let mut order: Vec<&MonitorReport> = reports.iter().collect();
    order.sort_by_key(|r| (r.monitor_id, r.at));
    out.read = started.elapsed();

    let started = std::time::Instant::now();
    let mut tx = db.begin_write(now).await?;
    let mut samples: Vec<Vec<Arg>> = Vec::new();
    // Transitions per contract, for its audit record.
    let mut moves: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for r in order {
        let Some(c) = cur.get_mut(&r.monitor_id) else {
            out.ignored += 1;
            continue;
        };
        let Some(def) = c.def.as_ref().filter(|_| !c.deleted) else {
            out.ignored += 1;
            continue;
        };
        let (ok, value, reason) = judge(def, r);
        let has_rule = def.tickets.is_some();
        let down_after = def.down_after.unwrap_or(1).max(1);
        samples.push(vec![
            r.monitor_id.into(),
            r.at.into(),
            c.contract_id.into(),
            i64::from(ok).into(),
            value.unwrap_or(0.0).into(),
            i64::from(value.is_some()).into(),
        ]);
        out.stored += 1;
        c.runs += 1;
        let reason_json = match &reason {
            Some(m) => to_json(m)?,
            None => String::new(),
        };
        if ok {
            c.failures = 0;
            if c.status != Some("up") {
                if let Some(incident) = c.incident_id.take() {
                    tx.defer(
                        "UPDATE monitor_incident SET recovered_at = $1 WHERE id = $2 AND recovered_at IS NULL",
                        vec![r.at.into(), incident.into()],
                    );
                    if has_rule {
                        out.follow_ups.push(FollowUp::Up {
                            contract_id: c.contract_id,
                            monitor_id: r.monitor_id,
                            incident_id: incident,
                        });
                    }
                }
                // The first result of a monitor is not a change worth an audit record.
                if c.status.is_some() {
                    moves.entry(c.contract_id).or_default().push(format!("monitor:{} up", r.monitor_id));
                }
                c.status = Some("up");
                c.since = r.at;
                c.moved = true;
                c.last_comment_at = None;
            }
        } else {
            c.failures += 1;
            if c.status != Some("down") && c.failures >= down_after {
                let row = tx
                    .fetch_one(
                        "INSERT INTO monitor_incident (contract_id, monitor_id, opened_at, reason) VALUES ($1, $2, $3, $4) \
                         RETURNING id",
                        vec![c.contract_id.into(), r.monitor_id.into(), r.at.into(), reason_json.clone().into()],
                    )
                    .await?;
                let incident: i64 = row.try_get("id")?;
                if has_rule {
                    out.follow_ups.push(FollowUp::Down {
                        contract_id: c.contract_id,
                        monitor_id: r.monitor_id,
                        incident_id: incident,
                    });
                }
                moves.entry(c.contract_id).or_default().push(format!(
                    "monitor:{} down ({})",
                    r.monitor_id,
                    reason.as_ref().map(|m| m.en.as_str()).unwrap_or("")
                ));
                c.status = Some("down");
                c.since = r.at;
                c.moved = true;
                c.incident_id = Some(incident);
                c.last_comment_at = Some(now);
            } else if c.status == Some("down")
                && let Some(incident) = c.incident_id
                && c.last_comment_at.is_none_or(|t| now - t >= REPEAT_COMMENT_MS)
            {
                c.last_comment_at = Some(now);
                tx.defer("UPDATE monitor_incident SET comments = comments + 1 WHERE id = $1", vec![incident.into()]);
                if has_rule {
                    out.follow_ups.push(FollowUp::StillDown {
                        contract_id: c.contract_id,
                        monitor_id: r.monitor_id,
                        incident_id: incident,
                        failures: c.failures,
                    });
                }
            }
        }
        c.last = Some((r.at, ok, value, r.elapsed_ms, reason_json));
    }
    defer_rows(&mut tx, &SAMPLE_SQL, samples);
    let mut states: Vec<Vec<Arg>> = Vec::new();
    for (id, c) in &cur {
        let Some((at, ok, value, elapsed, reason)) = &c.last else { continue };
        // A monitor whose first results all failed fewer times than it takes to be down has no
        // status yet: it counts as up until then.
        let status = c.status.unwrap_or("up");
        states.push(vec![
            (*id).into(),
            c.contract_id.into(),
            status.into(),
            (if c.status.is_some() { c.since } else { *at }).into(),
            (*at).into(),
            i64::from(*ok).into(),
            value.unwrap_or(0.0).into(),
            i64::from(value.is_some()).into(),
            (*elapsed).into(),
            reason.clone().into(),
            c.failures.into(),
            c.runs.into(),
            c.incident_id.into(),
            c.last_comment_at.into(),
        ]);
    }
    defer_rows(&mut tx, &STATE_SQL, states);
    for (id, c) in &cur {
        if c.moved
            && c.existed
            && let Some(status) = c.status
        {
            tx.defer(
                "UPDATE monitor_state SET status = $1, since = $2 WHERE monitor_id = $3",
                vec![status.into(), c.since.into(), (*id).into()],
            );
        }
    }
    out.transitions = moves.values().map(Vec::len).sum();
    if moves.is_empty() {
        tx.commit_bookkeeping().await?;
    } else {
        for (cid, list) in moves {
            let shown: Vec<&str> = list.iter().take(50).map(String::as_str).collect();
            let more =
                if list.len() > shown.len() { format!(" (+{} more)", list.len() - shown.len()) } else { String::new() };
            tx.audit(
                AuditEntry::new(ContractScope::platform(cid).actor(), "monitor.state", "monitors")
                    .contract(cid)
                    .detail(format!("{}{more}", shown.join("; "))),
            )
            .await?;
        }
        tx.commit().await?;
    }
    out.write = started.elapsed();
    Ok(out)
}

/// Carries out one follow-up of a batch: raises or comments on the monitor's ticket. Runs after
/// the batch's transaction, in its own.
pub async fn follow_up(db: &Db, f: &FollowUp, now: i64) -> StoreResult<()> {
    let (cid, mid, iid) = match *f {
        FollowUp::Down { contract_id, monitor_id, incident_id }
        | FollowUp::StillDown { contract_id, monitor_id, incident_id, .. }
        | FollowUp::Up { contract_id, monitor_id, incident_id } => (contract_id, monitor_id, incident_id),
    };
    let scope = ContractScope::platform(cid);
    let m = sqlx::query(
        "SELECT m.name, m.definition, a.name AS asset_name, a.asset_no, sys.name AS system_name FROM monitor m \
         LEFT JOIN asset a ON a.id = m.asset_id LEFT JOIN business_system sys ON sys.id = m.system_id \
         WHERE m.contract_id = $1 AND m.id = $2",
    )
    .bind(cid)
    .bind(mid)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    let name: String = m.try_get("name")?;
    let def = parse_stored(&m.try_get::<String, _>("definition")?)?;
    let inc = sqlx::query(
        "SELECT i.opened_at, i.reason, i.ticket_id, t.is_open FROM monitor_incident i LEFT JOIN ticket t ON t.id = i.ticket_id \
         WHERE i.contract_id = $1 AND i.id = $2",
    )
    .bind(cid)
    .bind(iid)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    let opened_at: i64 = inc.try_get("opened_at")?;
    let reason = reason_of(&inc.try_get::<String, _>("reason")?).map(|m| m.to_string()).unwrap_or_default();
    let ticket: Option<i64> = inc.try_get("ticket_id")?;
    let ticket_open = inc.try_get::<Option<i64>, _>("is_open")?.unwrap_or(0) != 0;
    let link = format!("/c/{cid}/monitors/{mid}");
    match f {
        FollowUp::Down { .. } => {
            let Some(rule) = &def.tickets else { return Ok(()) };
            let system: Option<String> = m.try_get("system_name")?;
            let asset = m
                .try_get::<Option<String>, _>("asset_no")?
                .filter(|n| !n.is_empty())
                .or(m.try_get::<Option<String>, _>("asset_name")?);
            let input = NewTicket {
                kind: "fault".into(),
                level: rule.level.clone(),
                incident_class: rule.incident_class.clone(),
                title: format!("监控告警 / Monitor down: {name}").chars().take(200).collect(),
                description: format!(
                    "监控 / Monitor: {name} ({kind}, 每 {every} 秒 / every {every} s)\n\
                     发生时间 / Down since: {since}\n原因 / Reason: {reason}\n监控页面 / Monitor: {link}",
                    kind = def.kind(),
                    every = def.interval_s,
                    since = local_time(opened_at),
                ),
                channel: "alert".into(),
                reporter_user_id: None,
                reporter_name: format!("监控 / Monitor: {name}").chars().take(100).collect(),
                reporter_contact: String::new(),
                system_name: system.unwrap_or_default().chars().take(200).collect(),
                asset_ref: asset.unwrap_or_default().chars().take(200).collect(),
                received_at: None,
                source_key: Some(ticket_key(mid)),
            };
            let intake = tickets::create(db, &scope, &input, now).await?;
            let mut tx = db.begin_write(now).await?;
            tx.defer(
                "UPDATE monitor_incident SET ticket_id = $1, opened_ticket = $2 WHERE contract_id = $3 AND id = $4",
                vec![intake.ticket.id.into(), i64::from(intake.created).into(), cid.into(), iid.into()],
            );
            tx.audit(AuditEntry::new(scope.actor(), "monitor.anomaly", format!("monitor:{mid}")).contract(cid).detail(
                format!(
                    "{} ticket={} {}",
                    ticket_key(mid),
                    intake.ticket.number,
                    if intake.created { "opened" } else { "repeat" }
                ),
            ))
            .await?;
            tx.commit().await
        }
        FollowUp::StillDown { failures, .. } => {
            let (Some(tid), true) = (ticket, ticket_open) else { return Ok(()) };
            let body = format!(
                "仍未恢复 / Still down since {}（连续失败 {failures} 次 / {failures} failed runs in a row）: {name}\n{reason}\n监控页面 / Monitor: {link}",
                local_time(opened_at)
            );
            tickets::comment(db, &scope, tid, &body, false, "monitor", now).await.map(drop)
        }
        FollowUp::Up { .. } => {
            let (Some(tid), true) = (ticket, ticket_open) else { return Ok(()) };
            let mins = (now - opened_at).max(0) / 60_000;
            let body = format!(
                "已恢复 / Recovered at {}（中断约 {mins} 分钟 / down for about {mins} min）: {name}\n监控页面 / Monitor: {link}",
                local_time(now)
            );
            tickets::comment(db, &scope, tid, &body, false, "monitor", now).await.map(drop)
        }
    }
}

/// Rolls raw results older than each monitor's retention up into hourly min/avg/max and deletes
/// them, a few monitors per transaction so that the writer is never held long. Returns the raw
/// rows rolled up.
pub async fn roll_up(db: &Db, now: i64) -> StoreResult<usize> {
    let rows = sqlx::query("SELECT id, contract_id, definition FROM monitor ORDER BY id").fetch_all(&db.pool).await?;
    // (cutoff, contract) → monitors: one chunk never mixes contracts or retentions.
    let mut groups: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for r in rows {
        let days = parse_stored(&r.try_get::<String, _>("definition")?)
            .map(|d| d.retain_days())
            .unwrap_or(DEFAULT_RETAIN_RAW_DAYS);
        let cutoff = (now - days * DAY_MS).div_euclid(HOUR_MS) * HOUR_MS;
        groups.entry((cutoff, r.try_get("contract_id")?)).or_default().push(r.try_get("id")?);
    }
    let list: Vec<String> = (1..=ID_CHUNK).map(|i| format!("${i}")).collect();
    let filter = format!("monitor_id IN ({}) AND at < ${}", list.join(", "), ID_CHUNK + 1);
    let upsert = series::rollup_sql(db.backend(), "monitor_rollup", "monitor_sample", "monitor_id", &filter);
    let delete = format!("DELETE FROM monitor_sample WHERE {filter}");
    let probe = format!("SELECT COUNT(*) AS n FROM monitor_sample WHERE {filter}");
    let mut total = 0;
    for ((cutoff, cid), ids) in groups {
        for chunk in ids.chunks(ID_CHUNK) {
            let bind = |sql: &str| {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
                for i in 0..ID_CHUNK {
                    q = q.bind(chunk.get(i).copied().unwrap_or(chunk[0]));
                }
                q.bind(cutoff)
            };
            let n: i64 = bind(&probe).fetch_one(&db.pool).await?.try_get("n")?;
            if n == 0 {
                continue;
            }
            let mut tx = db.begin_write(now).await?;
            bind(&upsert).execute(tx.conn().await?).await?;
            bind(&delete).execute(tx.conn().await?).await?;
            tx.audit(
                AuditEntry::new(ContractScope::platform(cid).actor(), "monitor.rollup", "monitors")
                    .contract(cid)
                    .detail(format!(
                        "{n} raw result(s) of monitors {}–{} before {} rolled up hourly",
                        chunk[0],
                        chunk[chunk.len() - 1],
                        local_time(cutoff)
                    )),
            )
            .await?;
            tx.commit().await?;
            total += n as usize;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_errors_name_the_field() {
        let v = serde_json::json!({ "name": "x", "probe": { "kind": "tcp" }, "interval_s": "60", "colour": 1 });
        let p = parse_def(&v, "monitors[2]").unwrap_err();
        let mut fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(fields, vec!["monitors[2].colour", "monitors[2].interval_s"]);
        let p = parse_def(&serde_json::json!({ "probe": 1 }), "").unwrap_err();
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["probe", "name"]);
        let d = parse_def(&serde_json::json!({ "name": "web", "probe": { "kind": "tcp" } }), "").unwrap();
        assert_eq!((d.interval_s, d.timeout(), d.enabled), (60, 10, true));
    }

    #[test]
    fn statements_have_fixed_shapes() {
        for (sql, per_row) in [(&*SAMPLE_SQL, 6), (&*STATE_SQL, 14)] {
            for (k, n) in ROW_CHUNKS.iter().enumerate() {
                let last = format!("${}", n * per_row);
                assert!(sql[k].contains(&last) && !sql[k].contains(&format!("${}", n * per_row + 1)), "{}", sql[k]);
            }
        }
        assert!(META_SQL.contains("$128)"));
    }

    #[test]
    fn results_are_judged_by_the_reading() {
        let mut def = parse_def(&serde_json::json!({ "name": "web", "probe": { "kind": "http" } }), "").unwrap();
        let r = MonitorReport {
            monitor_id: 1,
            at: 0,
            ok: true,
            elapsed_ms: 12.5,
            reason: None,
            readings: vec![("status".into(), 503.0)],
        };
        assert_eq!(judge(&def, &r), (true, Some(12.5), None));
        def.reading = Some("status".into());
        def.expected = Some(Bounds { min: Some(200.0), max: Some(299.0) });
        let (ok, v, why) = judge(&def, &r);
        assert_eq!((ok, v), (false, Some(503.0)));
        assert!(why.unwrap().en.contains("status = 503"));
        def.reading = Some("absent".into());
        assert!(!judge(&def, &r).0, "a missing reading with a range fails");
    }
}
