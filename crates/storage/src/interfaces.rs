//! Data-exchange interfaces (数据对接接口, IN5; seed 004 tables 3-6 … 3-12): their definitions,
//! the pushes their jobs report through a heartbeat URL, and the push windows decided by the
//! checker — ok, no push, source and target counts that differ, counts that could not be read —
//! with the one ticket per interface an anomaly raises. The rules (frequencies, windows, judging)
//! are [`yunwei_core::exchange`]'s; the count queries run in the web crate's job through
//! `yunwei-probes`, which hands their results to [`record_due`].
//!
//! Invariants:
//! - A definition is checked in full before it is stored (every problem with its field path).
//! - The heartbeat token is random, shown once, and stored only as its SHA-256; an unknown token
//!   is a plain 404. A heartbeat is recorded with the server's time, never the caller's.
//! - One decided window per interface and window start (`UNIQUE (interface_id, window_start)`):
//!   the checker may run twice. Windows are decided only once closed (end plus grace).
//! - An anomaly raises one ticket (`source_key = iface:{id}`); further bad windows are told on
//!   that ticket (at most hourly, with the number of windows since), a closed ticket gives way
//!   to a new one, and the first good window adds one recovery note. Ticket calls run after the
//!   check's own transaction (a `WriteTx` is never nested).
//! - Count queries name stored probe credentials (sealed with the server key, like every probe
//!   secret); definitions never hold a password.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::exchange::{
    self as rules_of, CountQuery, Counts, InterfaceContext, InterfaceDef, Outcome, PushFrequency, PushSchedule,
    PushWindow,
};
use yunwei_core::inspection::Problem;
use yunwei_core::ledger::Message;
use yunwei_core::text::single_line;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::inspections::{InspResult, InspectionError, ProbeCheck, ProbeSecret, contract_terms, local_time};
use crate::principal::{Actor, ContractScope};
use crate::tickets::{self, NewTicket};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// After this server was down, windows at most this old are still decided.
const CATCH_UP_MS: i64 = 2 * DAY_MS;
/// Windows decided for one interface in one pass at most.
const MAX_WINDOWS: usize = 500;
/// A claimed interface whose pass died is looked at again after this long.
const RETRY_MS: i64 = 10 * 60_000;
/// Further bad windows of an open anomaly are told on its ticket at most this often (a push every
/// 10 minutes that stopped would otherwise comment six times an hour).
const TELL_REPEATS_EVERY_MS: i64 = HOUR_MS;
/// Heartbeats of one interface closer together than this are refused (429): a job stuck in a
/// loop must not fill the database and the audit log.
pub const HEARTBEAT_MIN_SPACING_MS: i64 = 1_000;
/// Heartbeat tokens: this prefix and 64 hexadecimal digits (32 random bytes).
pub const TOKEN_PREFIX: &str = "ywh_";
pub const MAX_HISTORY: i64 = 500;

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Schema(format!("cannot encode: {e}")))
}

fn parse_def(text: &str) -> StoreResult<InterfaceDef> {
    serde_json::from_str(text).map_err(|e| StoreError::Schema(format!("stored interface does not parse: {e}")))
}

fn schedule(def: &InterfaceDef) -> StoreResult<PushSchedule> {
    rules_of::schedule_of(def).map_err(|p| {
        StoreError::Schema(format!(
            "stored interface {} no longer resolves: {}",
            def.code,
            p.first().map(|p| p.message.to_string()).unwrap_or_default()
        ))
    })
}

fn detail_text(m: &Message) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

fn detail_of(text: &str) -> Message {
    serde_json::from_str(text).unwrap_or_else(|_| Message::new(text, text))
}

fn invalid(field: &str, zh: impl Into<String>, en: impl Into<String>) -> InspectionError {
    InspectionError::Invalid(vec![Problem { field: field.into(), message: Message::new(zh, en) }])
}

fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", crate::random_token(32))
}

// ---------------------------------------------------------------------------------------------
// Views

/// An interface with the state of its checks.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    pub id: i64,
    pub contract_id: i64,
    pub code: String,
    pub name: String,
    pub definition: InterfaceDef,
    /// The frequency in the canonical grammar, and as people read it.
    pub frequency: String,
    pub frequency_label: Message,
    pub grace_ms: i64,
    pub heartbeat: bool,
    pub count_check: bool,
    pub active: bool,
    /// `pending` (no window decided yet), `ok`, `missing`, `mismatch` or `error`.
    pub status: String,
    pub status_at: Option<i64>,
    pub status_detail: Option<Message>,
    pub last_push_at: Option<i64>,
    pub last_records: Option<i64>,
    pub last_batch: String,
    pub last_source_count: Option<i64>,
    pub last_target_count: Option<i64>,
    /// When the next window closes and is decided.
    pub next_check_at: Option<i64>,
    pub anomaly_since: Option<i64>,
    pub anomaly_ticket_id: Option<i64>,
    pub anomaly_ticket_number: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub version: i64,
}

const SELECT: &str = "SELECT i.*, t.number AS ticket_number FROM exchange_interface i \
     LEFT JOIN ticket t ON t.id = i.anomaly_ticket_id AND t.contract_id = i.contract_id";

fn from_row(r: &AnyRow) -> StoreResult<Interface> {
    let definition = parse_def(&r.try_get::<String, _>("definition")?)?;
    let (frequency, frequency_label, grace_ms) = match rules_of::schedule_of(&definition) {
        Ok(s) => (s.frequency.canonical(), s.frequency.label(), s.grace_ms),
        Err(_) => (r.try_get("frequency")?, Message::new("", ""), 0),
    };
    let detail: String = r.try_get("status_detail")?;
    Ok(Interface {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        code: r.try_get("code")?,
        name: r.try_get("name")?,
        heartbeat: definition.heartbeat,
        count_check: definition.count_check.is_some(),
        definition,
        frequency,
        frequency_label,
        grace_ms,
        active: r.try_get::<i64, _>("active")? != 0,
        status: r.try_get("status")?,
        status_at: r.try_get("status_at")?,
        status_detail: (!detail.is_empty()).then(|| detail_of(&detail)),
        last_push_at: r.try_get("last_push_at")?,
        last_records: r.try_get("last_records")?,
        last_batch: r.try_get("last_batch")?,
        last_source_count: r.try_get("last_source_count")?,
        last_target_count: r.try_get("last_target_count")?,
        next_check_at: r.try_get("next_check_at")?,
        anomaly_since: r.try_get("anomaly_since")?,
        anomaly_ticket_id: r.try_get("anomaly_ticket_id")?,
        anomaly_ticket_number: r.try_get("ticket_number")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

/// The contract's interfaces in service, by code.
pub async fn list(db: &Db, scope: &ContractScope) -> StoreResult<Vec<Interface>> {
    scope.require(ContractPermission::InspectionRead)?;
    let sql = format!("{SELECT} WHERE i.contract_id = $1 AND i.retired_at IS NULL ORDER BY i.code");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(scope.contract_id()).fetch_all(&db.pool).await?;
    rows.iter().map(from_row).collect()
}

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Interface> {
    scope.require(ContractPermission::InspectionRead)?;
    let sql = format!("{SELECT} WHERE i.contract_id = $1 AND i.id = $2 AND i.retired_at IS NULL");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

// ---------------------------------------------------------------------------------------------
// Definitions

/// An interface as saved, with its heartbeat token in clear when one was just issued (shown
/// once: only its digest is kept).
#[derive(Debug, Clone, Serialize)]
pub struct Saved {
    pub interface: Interface,
    pub heartbeat_token: Option<String>,
}

/// Checks a definition against the contract (levels, incident classes, credentials) and the probe
/// checker.
pub async fn check_interface(
    db: &Db,
    scope: &ContractScope,
    def: &InterfaceDef,
    probe_check: ProbeCheck<'_>,
) -> InspResult<PushSchedule> {
    scope.require(ContractPermission::InspectionPlan)?;
    let terms = contract_terms(db, scope.contract_id()).await?;
    let credentials = crate::inspections::credential_names(db, scope.contract_id()).await?;
    let ctx = InterfaceContext {
        levels: &terms.levels,
        classes: &terms.classes,
        credentials: &credentials,
        probe_check: &|v| probe_check(v),
    };
    rules_of::check(def, &ctx).map_err(InspectionError::Invalid)
}

fn code_taken(code: &str) -> InspectionError {
    invalid(
        "code",
        format!("接口编号 {code:?} 已被本合同的另一个接口使用"),
        format!("interface code {code:?} is already used by another interface of this contract"),
    )
}

/// Stores a new interface; its windows start with the first one after now.
pub async fn create(
    db: &Db,
    scope: &ContractScope,
    def: &InterfaceDef,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Saved> {
    let def = rules_of::normalised(def);
    let schedule = check_interface(db, scope, &def, probe_check).await?;
    let token = def.heartbeat.then(new_token);
    let json = to_json(&def)?;
    let next = schedule.first_window_from(now, now).map(|w| w.closes_at);
    let mut tx = db.begin_write(now).await?;
    let taken =
        sqlx::query("SELECT id FROM exchange_interface WHERE contract_id = $1 AND code = $2 AND retired_at IS NULL")
            .bind(scope.contract_id())
            .bind(def.code.clone())
            .fetch_optional(tx.conn().await?)
            .await?;
    if taken.is_some() {
        return Err(code_taken(&def.code));
    }
    let row = sqlx::query(
        "INSERT INTO exchange_interface (contract_id, code, name, definition, frequency, heartbeat_digest, active, \
         anchor_at, checked_until, next_check_at, created_at, created_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $8, $7, $9, $7) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(def.code.clone())
    .bind(def.name.clone())
    .bind(json)
    .bind(schedule.frequency.canonical())
    .bind(token.as_deref().map(crate::token_digest))
    .bind(now)
    .bind(next)
    .bind(scope.actor().name.clone())
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(Msg::new("接口编号已被使用", "The interface code is already used")))?;
    let id: i64 = row.try_get("id")?;
    tx.audit(
        AuditEntry::new(scope.actor(), "interface.create", format!("exchange_interface:{id}"))
            .contract(scope.contract_id())
            .detail(format!(
                "{} {} frequency={:?} grace_ms={} heartbeat={} count_check={}",
                def.code,
                def.name,
                schedule.frequency.canonical(),
                schedule.grace_ms,
                def.heartbeat,
                def.count_check.is_some()
            )),
    )
    .await?;
    tx.commit().await?;
    Ok(Saved { interface: get(db, scope, id).await?, heartbeat_token: token })
}

fn stale() -> StoreError {
    StoreError::Conflict(Msg::new(
        "该接口已被他人修改，请刷新后重试",
        "Someone else changed this interface; reload and retry",
    ))
}

/// Replaces a definition. A changed frequency or grace applies to the windows that start after
/// now; turning the heartbeat on issues a token (returned once), turning it off revokes it.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    def: &InterfaceDef,
    version: i64,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Saved> {
    let current = get(db, scope, id).await?;
    let def = rules_of::normalised(def);
    let schedule = check_interface(db, scope, &def, probe_check).await?;
    let json = to_json(&def)?;
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "SELECT version, active, anchor_at, checked_until, heartbeat_digest, status FROM exchange_interface \
         WHERE contract_id = $1 AND id = $2 AND retired_at IS NULL",
    )
    .bind(scope.contract_id())
    .bind(id)
    .fetch_optional(tx.conn().await?)
    .await?
    .ok_or(StoreError::NotFound)?;
    if row.try_get::<i64, _>("version")? != version {
        return Err(stale().into());
    }
    if def.code != current.code {
        let taken = sqlx::query(
            "SELECT id FROM exchange_interface WHERE contract_id = $1 AND code = $2 AND retired_at IS NULL AND id <> $3",
        )
        .bind(scope.contract_id())
        .bind(def.code.clone())
        .bind(id)
        .fetch_optional(tx.conn().await?)
        .await?;
        if taken.is_some() {
            return Err(code_taken(&def.code));
        }
    }
    let old = schedule_of_current(&current);
    let (mut anchor, mut checked_until): (i64, i64) = (row.try_get("anchor_at")?, row.try_get("checked_until")?);
    if old != Some(schedule) {
        // The old windows up to now stay as decided; the new rhythm starts with the next window.
        checked_until = checked_until.max(now);
        if row.try_get::<String, _>("status")? == "pending" {
            anchor = now;
        }
    }
    let digest: Option<String> = row.try_get("heartbeat_digest")?;
    let token = (def.heartbeat && digest.is_none()).then(new_token);
    let digest = match (&token, def.heartbeat) {
        (Some(t), _) => Some(crate::token_digest(t)),
        (None, true) => digest,
        (None, false) => None,
    };
    let active = row.try_get::<i64, _>("active")? != 0;
    let next = if active { schedule.first_window_from(anchor, checked_until).map(|w| w.closes_at) } else { None };
    sqlx::query(
        "UPDATE exchange_interface SET code = $1, name = $2, definition = $3, frequency = $4, heartbeat_digest = $5, \
         anchor_at = $6, checked_until = $7, next_check_at = $8, updated_at = $9, version = version + 1 \
         WHERE contract_id = $10 AND id = $11",
    )
    .bind(def.code.clone())
    .bind(def.name.clone())
    .bind(json)
    .bind(schedule.frequency.canonical())
    .bind(digest)
    .bind(anchor)
    .bind(checked_until)
    .bind(next)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(Msg::new("接口编号已被使用", "The interface code is already used")))?;
    tx.audit(
        AuditEntry::new(scope.actor(), "interface.update", format!("exchange_interface:{id}"))
            .contract(scope.contract_id())
            .detail(format!(
                "{} → {}; frequency {:?} → {:?}; heartbeat {} → {}{}; count_check {} → {}",
                current.code,
                def.code,
                current.frequency,
                schedule.frequency.canonical(),
                current.heartbeat,
                def.heartbeat,
                if token.is_some() { " (token issued)" } else { "" },
                current.count_check,
                def.count_check.is_some()
            )),
    )
    .await?;
    tx.commit().await?;
    Ok(Saved { interface: get(db, scope, id).await?, heartbeat_token: token })
}

fn schedule_of_current(i: &Interface) -> Option<PushSchedule> {
    rules_of::schedule_of(&i.definition).ok()
}

/// Pauses (no windows are decided; heartbeats are still recorded) or resumes an interface; a
/// resumed interface is judged from the next window on.
pub async fn set_active(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    active: bool,
    version: i64,
    now: i64,
) -> StoreResult<Interface> {
    scope.require(ContractPermission::InspectionPlan)?;
    let current = get(db, scope, id).await?;
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "SELECT version, anchor_at, checked_until, status FROM exchange_interface \
         WHERE contract_id = $1 AND id = $2 AND retired_at IS NULL",
    )
    .bind(scope.contract_id())
    .bind(id)
    .fetch_optional(tx.conn().await?)
    .await?
    .ok_or(StoreError::NotFound)?;
    if row.try_get::<i64, _>("version")? != version {
        return Err(stale());
    }
    let mut anchor: i64 = row.try_get("anchor_at")?;
    let mut checked_until: i64 = row.try_get("checked_until")?;
    let mut next = None;
    if active {
        checked_until = checked_until.max(now);
        if row.try_get::<String, _>("status")? == "pending" {
            anchor = anchor.max(now);
        }
        next = schedule(&current.definition)?.first_window_from(anchor, checked_until).map(|w| w.closes_at);
    }
    sqlx::query(
        "UPDATE exchange_interface SET active = $1, anchor_at = $2, checked_until = $3, next_check_at = $4, \
         updated_at = $5, version = version + 1 WHERE contract_id = $6 AND id = $7",
    )
    .bind(i64::from(active))
    .bind(anchor)
    .bind(checked_until)
    .bind(next)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    tx.audit(
        AuditEntry::new(
            scope.actor(),
            if active { "interface.resume" } else { "interface.pause" },
            format!("exchange_interface:{id}"),
        )
        .contract(scope.contract_id())
        .detail(current.code.clone()),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Issues a new heartbeat token (returned once); the old one stops working at once.
pub async fn rotate_token(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<Saved> {
    scope.require(ContractPermission::InspectionPlan)?;
    let current = get(db, scope, id).await?;
    if !current.heartbeat {
        return Err(StoreError::Conflict(Msg::new(
            "该接口未启用心跳（heartbeat），没有心跳地址",
            "This interface has no heartbeat, so it has no heartbeat URL",
        )));
    }
    let token = new_token();
    let mut tx = db.begin_write(now).await?;
    let n = sqlx::query(
        "UPDATE exchange_interface SET heartbeat_digest = $1, updated_at = $2, version = version + 1 \
         WHERE contract_id = $3 AND id = $4 AND retired_at IS NULL",
    )
    .bind(crate::token_digest(&token))
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "interface.token_rotate", format!("exchange_interface:{id}"))
            .contract(scope.contract_id())
            .detail(current.code.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(Saved { interface: get(db, scope, id).await?, heartbeat_token: Some(token) })
}

/// Takes an interface out of service: its token stops working, no window is decided any more;
/// its history stays (the audit and the client's evidence), and its code may be used again.
pub async fn retire(db: &Db, scope: &ContractScope, id: i64, version: i64, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::InspectionPlan)?;
    let current = get(db, scope, id).await?;
    if current.version != version {
        return Err(stale());
    }
    let mut tx = db.begin_write(now).await?;
    let n = sqlx::query(
        "UPDATE exchange_interface SET retired_at = $1, heartbeat_digest = NULL, active = 0, next_check_at = NULL, \
         updated_at = $1, version = version + 1 WHERE contract_id = $2 AND id = $3 AND retired_at IS NULL AND version = $4",
    )
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(stale());
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "interface.retire", format!("exchange_interface:{id}"))
            .contract(scope.contract_id())
            .detail(format!("{} {}", current.code, current.name)),
    )
    .await?;
    tx.commit().await
}

// ---------------------------------------------------------------------------------------------
// Heartbeats

/// What a pushing job may report with its heartbeat.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatInput {
    /// Records pushed in this batch.
    #[serde(default)]
    pub records: Option<i64>,
    /// The job's own batch identifier.
    #[serde(default)]
    pub batch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatAck {
    Recorded {
        received_at: i64,
    },
    /// The previous heartbeat of this interface was less than a second ago.
    TooSoon,
}

/// Whether a text has the shape of a heartbeat token (checked before any database access).
pub fn token_shape(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Records one push, identified by the interface's heartbeat token alone. An unknown token is
/// `NotFound` and nothing else (the caller learns nothing about interfaces or contracts).
pub async fn heartbeat(
    db: &Db,
    token: &str,
    input: &HeartbeatInput,
    source_ip: &str,
    now: i64,
) -> StoreResult<HeartbeatAck> {
    if !token_shape(token) {
        return Err(StoreError::NotFound);
    }
    let row = sqlx::query(
        "SELECT id, contract_id, code, last_push_at FROM exchange_interface \
         WHERE heartbeat_digest = $1 AND retired_at IS NULL",
    )
    .bind(crate::token_digest(token))
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    if let Some(r) = input.records
        && !(0..=1_000_000_000_000_000).contains(&r)
    {
        return Err(StoreError::invalid(
            "records",
            Msg::new("记录数应为非负整数", "records must be a non-negative integer"),
        ));
    }
    let batch =
        single_line(input.batch.as_deref().unwrap_or(""), 100, false).map_err(|m| StoreError::invalid("batch", m))?;
    let (id, cid, code): (i64, i64, String) = (row.try_get("id")?, row.try_get("contract_id")?, row.try_get("code")?);
    if row.try_get::<Option<i64>, _>("last_push_at")?.is_some_and(|t| now - t < HEARTBEAT_MIN_SPACING_MS) {
        return Ok(HeartbeatAck::TooSoon);
    }
    let mut tx = db.begin_write(now).await?;
    // Decided again under the writer lock: two heartbeats racing, one is refused.
    let n = sqlx::query(
        "UPDATE exchange_interface SET last_push_at = $1, last_records = $2, last_batch = $3 \
         WHERE id = $4 AND (last_push_at IS NULL OR last_push_at <= $5)",
    )
    .bind(now)
    .bind(input.records)
    .bind(batch.clone())
    .bind(id)
    .bind(now - HEARTBEAT_MIN_SPACING_MS)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(HeartbeatAck::TooSoon);
    }
    tx.defer(
        "INSERT INTO exchange_heartbeat (contract_id, interface_id, received_at, records, batch, source_ip) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![cid.into(), id.into(), now.into(), input.records.into(), batch.clone().into(), source_ip.into()],
    );
    let actor = Actor { user_id: None, name: format!("heartbeat:{code}"), source_ip: source_ip.to_string() };
    tx.audit(
        AuditEntry::new(&actor, "interface.heartbeat", format!("exchange_interface:{id}"))
            .contract(cid)
            .detail(format!("records={:?} batch={batch:?}", input.records)),
    )
    .await?;
    tx.commit().await?;
    Ok(HeartbeatAck::Recorded { received_at: now })
}

// ---------------------------------------------------------------------------------------------
// History and compliance

/// One decided window.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub window_start: i64,
    pub window_end: i64,
    pub closes_at: i64,
    pub outcome: Outcome,
    pub pushes: i64,
    pub records: Option<i64>,
    pub source_count: Option<i64>,
    pub target_count: Option<i64>,
    pub detail: Message,
    pub ticket_id: Option<i64>,
    pub ticket_number: Option<String>,
    pub checked_at: i64,
}

/// One push reported.
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatRow {
    pub received_at: i64,
    pub records: Option<i64>,
    pub batch: String,
    pub source_ip: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub checks: Vec<CheckRow>,
    pub heartbeats: Vec<HeartbeatRow>,
}

/// The latest decided windows and pushes of an interface, newest first.
pub async fn history(db: &Db, scope: &ContractScope, id: i64, limit: i64) -> StoreResult<History> {
    let i = get(db, scope, id).await?;
    let limit = limit.clamp(1, MAX_HISTORY);
    let rows = sqlx::query(
        "SELECT c.*, t.number AS ticket_number FROM exchange_check c \
         LEFT JOIN ticket t ON t.id = c.ticket_id AND t.contract_id = c.contract_id \
         WHERE c.contract_id = $1 AND c.interface_id = $2 ORDER BY c.window_start DESC LIMIT $3",
    )
    .bind(scope.contract_id())
    .bind(i.id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let checks = rows
        .iter()
        .map(|r| {
            Ok(CheckRow {
                window_start: r.try_get("window_start")?,
                window_end: r.try_get("window_end")?,
                closes_at: r.try_get("closes_at")?,
                outcome: Outcome::parse(&r.try_get::<String, _>("outcome")?)
                    .ok_or_else(|| StoreError::Schema("unknown interface outcome".into()))?,
                pushes: r.try_get("pushes")?,
                records: r.try_get("records")?,
                source_count: r.try_get("source_count")?,
                target_count: r.try_get("target_count")?,
                detail: detail_of(&r.try_get::<String, _>("detail")?),
                ticket_id: r.try_get("ticket_id")?,
                ticket_number: r.try_get("ticket_number")?,
                checked_at: r.try_get("checked_at")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let rows = sqlx::query(
        "SELECT received_at, records, batch, source_ip FROM exchange_heartbeat \
         WHERE contract_id = $1 AND interface_id = $2 ORDER BY received_at DESC, id DESC LIMIT $3",
    )
    .bind(scope.contract_id())
    .bind(i.id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let heartbeats = rows
        .iter()
        .map(|r| {
            Ok(HeartbeatRow {
                received_at: r.try_get("received_at")?,
                records: r.try_get("records")?,
                batch: r.try_get("batch")?,
                source_ip: r.try_get("source_ip")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(History { checks, heartbeats })
}

/// How an interface's windows went over a period: the evidence of IN5 for the client.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComplianceRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub frequency: String,
    /// Windows decided (their start within the period).
    pub decided: i64,
    pub ok: i64,
    pub missing: i64,
    pub mismatch: i64,
    pub error: i64,
}

/// Per interface in service, the windows starting in `[from, to)` by outcome.
pub async fn compliance(db: &Db, scope: &ContractScope, from: i64, to: i64) -> StoreResult<Vec<ComplianceRow>> {
    let interfaces = list(db, scope).await?;
    let rows = sqlx::query(
        "SELECT interface_id, outcome, COUNT(*) AS n FROM exchange_check \
         WHERE contract_id = $1 AND window_start >= $2 AND window_start < $3 GROUP BY interface_id, outcome",
    )
    .bind(scope.contract_id())
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    let mut out: Vec<ComplianceRow> = interfaces
        .iter()
        .map(|i| ComplianceRow {
            id: i.id,
            code: i.code.clone(),
            name: i.name.clone(),
            frequency: i.frequency.clone(),
            ..Default::default()
        })
        .collect();
    for r in rows {
        let id: i64 = r.try_get("interface_id")?;
        let n: i64 = r.try_get("n")?;
        let Some(c) = out.iter_mut().find(|c| c.id == id) else { continue };
        c.decided += n;
        match Outcome::parse(&r.try_get::<String, _>("outcome")?) {
            Some(Outcome::Ok) => c.ok += n,
            Some(Outcome::Missing) => c.missing += n,
            Some(Outcome::Mismatch) => c.mismatch += n,
            Some(Outcome::Error) | None => c.error += n,
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The checker

/// One count query, ready to run.
#[derive(Debug, Clone)]
pub struct CountTask {
    /// The probe with the window's bounds in its query.
    pub probe: serde_json::Value,
    pub secret: Option<ProbeSecret>,
    /// Why the credential could not be used (the count then fails with this reason, unrun).
    pub secret_error: Option<Message>,
    pub timeout_s: u32,
}

/// An interface whose next window has closed.
#[derive(Debug, Clone)]
pub struct DueCheck {
    pub contract_id: i64,
    pub interface_id: i64,
    /// The instant the windows are decided at (the claim's `now`).
    pub decided_at: i64,
    /// The latest closed window, the one the counts are read for.
    pub window: Option<PushWindow>,
    pub source: Option<CountTask>,
    pub target: Option<CountTask>,
}

struct Row0 {
    def: InterfaceDef,
    anchor: i64,
    checked_until: i64,
    active: bool,
    retired: bool,
}

async fn load_row(db: &Db, cid: i64, id: i64) -> StoreResult<Option<Row0>> {
    let row = sqlx::query(
        "SELECT definition, anchor_at, checked_until, active, retired_at FROM exchange_interface \
         WHERE contract_id = $1 AND id = $2",
    )
    .bind(cid)
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Row0 {
        def: parse_def(&r.try_get::<String, _>("definition")?)?,
        anchor: r.try_get("anchor_at")?,
        checked_until: r.try_get("checked_until")?,
        active: r.try_get::<i64, _>("active")? != 0,
        retired: r.try_get::<Option<i64>, _>("retired_at")?.is_some(),
    }))
}

fn windows_due(s: &PushSchedule, r: &Row0, now: i64) -> Vec<PushWindow> {
    let mut w = s.closed_windows(r.anchor, r.checked_until.max(now - CATCH_UP_MS), now, MAX_WINDOWS);
    if !r.def.heartbeat && w.len() > 1 {
        // Counts are read as they are now: only the latest window can be judged by them.
        w.drain(..w.len() - 1);
    }
    w
}

async fn count_task(db: &Db, cid: i64, q: &CountQuery, w: &PushWindow) -> CountTask {
    let (secret, secret_error) = match &q.credential {
        None => (None, None),
        Some(name) => match crate::inspections::load_secret(db, cid, name).await {
            Ok(s) => (Some(s), None),
            Err(m) => (None, Some(m)),
        },
    };
    CountTask {
        probe: rules_of::probe_for_window(&q.probe, w),
        secret,
        secret_error,
        timeout_s: q.timeout_s.unwrap_or(rules_of::DEFAULT_QUERY_TIMEOUT_S),
    }
}

/// Claims up to `limit` interfaces whose next window has closed (each once: a claimed interface
/// is not handed out again until its result is recorded, or after a while if it never is).
/// The one cross-contract read of interfaces; each is then handled in its own contract.
pub async fn claim_due(db: &Db, now: i64, limit: i64) -> StoreResult<Vec<DueCheck>> {
    let rows = sqlx::query(
        "SELECT id, contract_id, next_check_at FROM exchange_interface \
         WHERE next_check_at IS NOT NULL AND next_check_at <= $1 ORDER BY next_check_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let (id, cid, at): (i64, i64, i64) = (r.try_get("id")?, r.try_get("contract_id")?, r.try_get("next_check_at")?);
        // Bookkeeping, not a change of data: which pass decides the interface.
        let claimed =
            sqlx::query("UPDATE exchange_interface SET next_check_at = $1 WHERE id = $2 AND next_check_at = $3")
                .bind(now + RETRY_MS)
                .bind(id)
                .bind(at)
                .execute(&db.pool)
                .await?
                .rows_affected();
        if claimed == 0 {
            continue;
        }
        let Some(row) = load_row(db, cid, id).await? else { continue };
        let mut due =
            DueCheck { contract_id: cid, interface_id: id, decided_at: now, window: None, source: None, target: None };
        if row.active && !row.retired {
            match rules_of::schedule_of(&row.def) {
                Ok(s) => {
                    due.window = windows_due(&s, &row, now).last().copied();
                    if let (Some(c), Some(w)) = (&row.def.count_check, &due.window) {
                        due.source = Some(count_task(db, cid, &c.source, w).await);
                        due.target = Some(count_task(db, cid, &c.target, w).await);
                    }
                }
                Err(_) => tracing::warn!(interface = id, "stored interface no longer resolves; retried later"),
            }
        }
        out.push(due);
    }
    Ok(out)
}

/// One decided window, as the follow-up sees it.
#[derive(Debug, Clone)]
pub struct Decided {
    pub window: PushWindow,
    pub outcome: Outcome,
    pub detail: Message,
}

/// Decides every window of the interface that closed by `due.decided_at` (the counts, when the
/// interface has a count check, belong to the latest), stores them, then raises, tells or
/// recovers the interface's anomaly ticket. Returns the windows decided.
pub async fn record_due(db: &Db, due: &DueCheck, counts: Option<&Counts>, now: i64) -> StoreResult<Vec<Decided>> {
    let (cid, id) = (due.contract_id, due.interface_id);
    let scope = ContractScope::platform(cid);
    let Some(row) = load_row(db, cid, id).await? else { return Ok(Vec::new()) };
    if row.retired || !row.active {
        sqlx::query("UPDATE exchange_interface SET next_check_at = NULL WHERE id = $1")
            .bind(id)
            .execute(&db.pool)
            .await?;
        return Ok(Vec::new());
    }
    let s = schedule(&row.def)?;
    let windows = windows_due(&s, &row, due.decided_at);
    let Some(last) = windows.last().copied() else {
        let next = s.first_window_from(row.anchor, row.checked_until).map(|w| w.closes_at);
        sqlx::query("UPDATE exchange_interface SET next_check_at = $1 WHERE id = $2")
            .bind(next)
            .bind(id)
            .execute(&db.pool)
            .await?;
        return Ok(Vec::new());
    };
    let first = windows[0];
    let pushes = sqlx::query(
        "SELECT received_at, records FROM exchange_heartbeat WHERE contract_id = $1 AND interface_id = $2 \
         AND received_at >= $3 AND received_at < $4 ORDER BY received_at",
    )
    .bind(cid)
    .bind(id)
    .bind(first.start)
    .bind(last.closes_at)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get::<i64, _>("received_at")?, r.try_get::<Option<i64>, _>("records")?)))
    .collect::<StoreResult<Vec<_>>>()?;
    let tolerance = row.def.count_check.as_ref().map(|c| c.tolerance()).unwrap_or_default();
    // Counts read for another window than the latest (a window closed between claim and record)
    // are not used.
    let counts = counts.filter(|_| due.window == Some(last) && row.def.count_check.is_some());
    let mut decided = Vec::new();
    let mut tx = db.begin_write(now).await?;
    let (mut src, mut tgt) = (None, None);
    for w in &windows {
        let mine: Vec<&(i64, Option<i64>)> = pushes.iter().filter(|(t, _)| w.accepts(*t)).collect();
        let records: Option<i64> =
            mine.iter().filter_map(|(_, r)| *r).fold(None, |acc, r| Some(acc.unwrap_or(0).saturating_add(r)));
        let c = if *w == last { counts } else { None };
        let (outcome, detail) = rules_of::judge(row.def.heartbeat, mine.len() as u32, c, &tolerance);
        (src, tgt) = match c {
            Some(Counts::Measured { source, target }) => (Some(source.round() as i64), Some(target.round() as i64)),
            _ => (None, None),
        };
        tx.defer(
            "INSERT INTO exchange_check (contract_id, interface_id, window_start, window_end, closes_at, outcome, pushes, \
             records, source_count, target_count, detail, checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (interface_id, window_start) DO NOTHING",
            vec![
                cid.into(),
                id.into(),
                w.start.into(),
                w.end.into(),
                w.closes_at.into(),
                outcome.as_str().into(),
                (mine.len() as i64).into(),
                records.into(),
                src.into(),
                tgt.into(),
                detail_text(&detail).into(),
                now.into(),
            ],
        );
        decided.push(Decided { window: *w, outcome, detail });
    }
    let next = s.next_window(row.anchor, &last).map(|w| w.closes_at);
    let final_ = decided.last().map(|d| (d.outcome, detail_text(&d.detail))).unwrap_or((Outcome::Ok, String::new()));
    tx.defer(
        "UPDATE exchange_interface SET checked_until = $1, next_check_at = $2, status = $3, status_at = $4, \
         status_detail = $5, last_source_count = $6, last_target_count = $7 WHERE contract_id = $8 AND id = $9",
        vec![
            (last.start + 1).into(),
            next.into(),
            final_.0.as_str().into(),
            now.into(),
            final_.1.into(),
            src.into(),
            tgt.into(),
            cid.into(),
            id.into(),
        ],
    );
    let mut summary: Vec<String> = decided
        .iter()
        .rev()
        .take(20)
        .map(|d| format!("{} {}", local_time(d.window.start), d.outcome.as_str()))
        .collect();
    summary.reverse();
    if decided.len() > 20 {
        summary.insert(0, format!("… {} earlier", decided.len() - 20));
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "interface.checked", format!("exchange_interface:{id}"))
            .contract(cid)
            .detail(format!("{}: {}", row.def.code, summary.join(", "))),
    )
    .await?;
    tx.commit().await?;
    if let Err(e) = follow_up(db, &scope, id, &row.def, &s.frequency, &decided, now).await {
        tracing::warn!(interface = id, error = %e, "interface ticket follow-up failed");
    }
    Ok(decided)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AnomalyState {
    since: Option<i64>,
    ticket: Option<i64>,
    repeats: i64,
    told_at: Option<i64>,
}

fn window_text(w: &PushWindow) -> String {
    format!("{} – {}（宽限至 / grace until {}）", local_time(w.start), local_time(w.end), local_time(w.closes_at))
}

fn ticket_input(
    def: &InterfaceDef,
    freq: &PushFrequency,
    cid: i64,
    id: i64,
    run: &[&Decided],
    lead: &str,
) -> Option<NewTicket> {
    let rule = def.tickets.as_ref()?;
    let last = run.last()?;
    let label = last.outcome.label();
    let title: String =
        format!("数据接口异常 / Interface anomaly: {} {} · {} / {}", def.code, def.name, label.zh, label.en)
            .chars()
            .take(200)
            .collect();
    let windows = if run.len() > 1 {
        format!(
            "{} 个时段 / {} windows, {} … {}",
            run.len(),
            run.len(),
            window_text(&run[0].window),
            window_text(&last.window)
        )
    } else {
        window_text(&last.window)
    };
    let f = freq.label();
    let description = format!(
        "{lead}接口 / Interface: {} {}\n源系统 → 目标系统 / Source → target: {} → {}\n推送频率 / Frequency: {} / {}\n\
         时段 / Window: {windows}\n{}\n{}\n接口页面 / Interface page: /c/{cid}/interfaces/{id}",
        def.code, def.name, def.source_system, def.target_system, f.zh, f.en, last.detail.zh, last.detail.en
    );
    Some(NewTicket {
        kind: "fault".into(),
        level: rule.level.clone(),
        incident_class: rule.incident_class.clone(),
        title,
        description,
        channel: "inspection".into(),
        reporter_user_id: None,
        reporter_name: "数据接口检查 / Interface check".into(),
        reporter_contact: String::new(),
        system_name: def.source_system.chars().take(200).collect(),
        asset_ref: String::new(),
        received_at: None,
        source_key: Some(rules_of::ticket_key(id)),
    })
}

async fn ticket_open(db: &Db, cid: i64, ticket: Option<i64>) -> StoreResult<bool> {
    let Some(t) = ticket else { return Ok(false) };
    let row = sqlx::query("SELECT is_open FROM ticket WHERE contract_id = $1 AND id = $2")
        .bind(cid)
        .bind(t)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>("is_open")).transpose()?.unwrap_or(0) != 0)
}

/// Raises, tells or recovers the interface's anomaly after windows were decided, then stores the
/// anomaly's state (one transaction, after the ticket calls).
async fn follow_up(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    def: &InterfaceDef,
    freq: &PushFrequency,
    decided: &[Decided],
    now: i64,
) -> StoreResult<()> {
    let cid = scope.contract_id();
    let r = sqlx::query(
        "SELECT anomaly_since, anomaly_ticket_id, anomaly_repeats, anomaly_told_at FROM exchange_interface \
         WHERE contract_id = $1 AND id = $2",
    )
    .bind(cid)
    .bind(id)
    .fetch_one(&db.pool)
    .await?;
    let before = AnomalyState {
        since: r.try_get("anomaly_since")?,
        ticket: r.try_get("anomaly_ticket_id")?,
        repeats: r.try_get("anomaly_repeats")?,
        told_at: r.try_get("anomaly_told_at")?,
    };
    let mut st = before;
    let mut events: Vec<String> = Vec::new();
    // Bad windows that a ticket now covers (their rows get its id).
    let mut covered: Vec<(i64, i64)> = Vec::new();
    let mut last_bad: Vec<&Decided> = Vec::new();
    let mut i = 0;
    while i < decided.len() {
        let bad = !decided[i].outcome.is_ok();
        let mut j = i;
        while j < decided.len() && decided[j].outcome.is_ok() == decided[i].outcome.is_ok() {
            j += 1;
        }
        let run: Vec<&Decided> = decided[i..j].iter().collect();
        if bad {
            if st.since.is_none() {
                st = AnomalyState { since: Some(now), ticket: None, repeats: 0, told_at: Some(now) };
                if let Some(input) = ticket_input(def, freq, cid, id, &run, "") {
                    let intake = tickets::create(db, scope, &input, now).await?;
                    st.ticket = Some(intake.ticket.id);
                    events.push(format!(
                        "ticket={} {}",
                        intake.ticket.number,
                        if intake.created { "opened" } else { "repeat" }
                    ));
                    covered.extend(run.iter().map(|d| (d.window.start, intake.ticket.id)));
                } else {
                    events.push("anomaly (no ticket rule)".into());
                }
            } else {
                st.repeats += run.len() as i64;
                last_bad = run;
            }
        } else if st.since.is_some() {
            let first = run[0];
            if ticket_open(db, cid, st.ticket).await?
                && let Some(tid) = st.ticket
            {
                let body = format!(
                    "已恢复 / Recovered at {}: {} {}\n时段 / Window: {}\n{}\n{}",
                    local_time(now),
                    def.code,
                    def.name,
                    window_text(&first.window),
                    first.detail.zh,
                    first.detail.en
                );
                tickets::comment(db, scope, tid, &body, false, "inspection", now).await?;
            }
            events.push(format!("recovered ticket={:?}", st.ticket));
            st = AnomalyState { since: None, ticket: None, repeats: 0, told_at: None };
        }
        i = j;
    }
    if st.since.is_some() && st.repeats > 0 && !last_bad.is_empty() {
        let open = ticket_open(db, cid, st.ticket).await?;
        let due = st.told_at.is_none_or(|t| now - t >= TELL_REPEATS_EVERY_MS);
        // A closed ticket gives way to a new one at once; an open one hears of repeats hourly.
        if !open || due {
            let lead = format!(
                "自上次报告以来又有 {} 个时段异常 / {} more abnormal window(s) since last reported\n",
                st.repeats, st.repeats
            );
            if let Some(input) = ticket_input(def, freq, cid, id, &last_bad, &lead) {
                let intake = tickets::create(db, scope, &input, now).await?;
                events.push(format!(
                    "ticket={} {} (+{})",
                    intake.ticket.number,
                    if intake.created { "opened" } else { "told" },
                    st.repeats
                ));
                covered.extend(last_bad.iter().map(|d| (d.window.start, intake.ticket.id)));
                st.ticket = Some(intake.ticket.id);
                st.repeats = 0;
                st.told_at = Some(now);
            }
        }
    }
    if st == before && covered.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin_write(now).await?;
    tx.defer(
        "UPDATE exchange_interface SET anomaly_since = $1, anomaly_ticket_id = $2, anomaly_repeats = $3, \
         anomaly_told_at = $4 WHERE contract_id = $5 AND id = $6",
        vec![st.since.into(), st.ticket.into(), st.repeats.into(), st.told_at.into(), cid.into(), id.into()],
    );
    for (start, tid) in &covered {
        tx.defer(
            "UPDATE exchange_check SET ticket_id = $1 WHERE contract_id = $2 AND interface_id = $3 AND window_start = $4",
            vec![(*tid).into(), cid.into(), id.into(), (*start).into()],
        );
    }
    if events.is_empty() {
        events.push(format!("{} more abnormal window(s)", st.repeats));
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "interface.anomaly", format!("exchange_interface:{id}"))
            .contract(cid)
            .detail(format!("{} {}", def.code, events.join("; "))),
    )
    .await?;
    tx.commit().await
}
