//! Inspections (巡检, IN1–IN7, BK1): plans and their versions, runs created per slot, item
//! results entered on a phone (offline, synced later) or measured by probes, photos, the probes'
//! sealed credentials, readings over time with hourly roll-ups, the tickets failed items raise,
//! and compliance per plan and period. The rules (slots, judging, compliance) are
//! [`yunwei_core::inspection`]'s; the probes themselves run in the web crate's job, which hands
//! their outcomes to [`record_probe_results`].
//!
//! Invariants:
//! - A plan is checked in full before it is stored (every problem with its field path); each
//!   change is a new version with the instant it took effect, and compliance judges each part of
//!   a period by the version then in force.
//! - One run per plan and slot (`UNIQUE (plan_id, slot_at)`): the scheduler may run twice.
//! - Every submitted result is logged once in `inspection_op` (`client_op_id` unique per
//!   contract): a replayed sync is answered "duplicate" and changes nothing; of two readings of
//!   the same cell the one taken later wins whatever order they arrive in, and the other stays in
//!   the log. A run accepts results while it is open; afterwards they are logged as rejected.
//! - A failed cell raises (or comments on) the one open ticket of its key
//!   ([`yunwei_core::inspection::ticket_key`]); when the cell passes again while that ticket is
//!   open, one recovery note is added. Ticket calls run after the result's own transaction has
//!   committed (a `WriteTx` is never nested).
//! - Probe passwords and keys are sealed with the server key and leave this module only in a
//!   [`ProbeSecret`] (no `Serialize`, redacted `Debug`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::calendar::{Calendar, Span, civil_from_days, day_start_utc, local_day};
use yunwei_core::inspection::{
    self as rules_of, Answer, Compliance, DutyRef, Expected, ItemKind, PlanContext, PlanDef, Problem, RunFacts,
    RunState, Schedule, Slot,
};
use yunwei_core::ledger::Message;
use yunwei_core::text::{multi_line, single_line};

use crate::audit::AuditEntry;
use crate::db::{Db, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;
use crate::rules;
pub use crate::series::Point;
use crate::series::{self, Points, cast_i64};
use crate::tickets::{self, NewTicket};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Clock skew tolerated between a phone and the server.
const FUTURE_TOLERANCE_MS: i64 = 60_000;
/// A reading may be taken this long before its run's slot (a phone's clock running behind).
const EARLY_TOLERANCE_MS: i64 = 5 * 60_000;
/// After downtime the scheduler creates the runs of slots at most this old.
const CATCH_UP_MS: i64 = 31 * DAY_MS;
pub const MAX_BATCH: usize = 500;
pub const MAX_NOTE_CHARS: usize = 2_000;
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
const CREDENTIAL_PURPOSE: &str = "inspection-credential";
/// What views show in place of a stored secret.
pub const MASK: &str = "••••";

/// Validates one probe definition (the web crate passes `yunwei_probes::Probe::validate`).
pub type ProbeCheck<'a> = &'a (dyn Fn(&serde_json::Value) -> Result<(), Message> + Send + Sync);

/// Why an inspection call failed: bad input (every problem with its field path), or storage.
#[derive(Debug)]
pub enum InspectionError {
    Invalid(Vec<Problem>),
    Store(StoreError),
}

impl From<StoreError> for InspectionError {
    fn from(e: StoreError) -> Self {
        InspectionError::Store(e)
    }
}

impl From<sqlx::Error> for InspectionError {
    fn from(e: sqlx::Error) -> Self {
        InspectionError::Store(e.into())
    }
}

impl std::fmt::Display for InspectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectionError::Invalid(p) => {
                write!(f, "invalid: ")?;
                for (i, p) in p.iter().enumerate() {
                    write!(f, "{}{}: {}", if i > 0 { "; " } else { "" }, p.field, p.message)?;
                }
                Ok(())
            }
            InspectionError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InspectionError {}

pub type InspResult<T> = Result<T, InspectionError>;

fn bad(field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> InspectionError {
    InspectionError::Invalid(vec![Problem { field: field.into(), message: Message::new(zh, en) }])
}

fn conflict(zh: &'static str, en: &'static str) -> StoreError {
    StoreError::Conflict(Msg::new(zh, en))
}

fn parse_def(text: &str) -> StoreResult<PlanDef> {
    serde_json::from_str(text).map_err(|e| StoreError::Schema(format!("stored inspection plan does not parse: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Schema(format!("cannot encode: {e}")))
}

/// Shanghai wall time of an instant, `YYYY-MM-DD HH:MM`.
pub fn local_time(ms: i64) -> String {
    let day = local_day(ms);
    let (y, m, d) = civil_from_days(day);
    let secs = (ms - day_start_utc(day)) / 1000;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", secs / 3600, secs / 60 % 60)
}

// ---------------------------------------------------------------------------------------------
// The contract as plans see it

/// A contract's duties, calendars, levels and incident classes (empty without a contract file).
#[derive(Debug, Default)]
pub struct ContractTerms {
    pub duties: Vec<DutyRef>,
    pub calendars: BTreeMap<String, Calendar>,
    pub levels: Vec<String>,
    pub classes: Vec<String>,
}

pub async fn contract_terms(db: &Db, contract_id: i64) -> StoreResult<ContractTerms> {
    let Some(r) = rules::current(db, contract_id).await? else {
        return Ok(ContractTerms::default());
    };
    let f = &r.compiled.file;
    let mut classes: Vec<String> = Vec::new();
    for s in &f.escalation {
        if !classes.contains(&s.class) {
            classes.push(s.class.clone());
        }
    }
    Ok(ContractTerms {
        duties: f
            .duties
            .iter()
            .map(|d| DutyRef {
                id: d.id.get_ref().clone(),
                name: d.name.clone(),
                frequency: d.frequency.get_ref().clone(),
                calendar: d.calendar.as_ref().map(|c| c.get_ref().clone()),
            })
            .collect(),
        calendars: r.compiled.calendars.clone(),
        levels: f.levels.iter().map(|l| l.name.get_ref().clone()).collect(),
        classes,
    })
}

// ---------------------------------------------------------------------------------------------
// Plans

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub id: i64,
    pub contract_id: i64,
    pub name: String,
    pub duty_id: String,
    pub definition: PlanDef,
    pub active: bool,
    /// The frequency in force (the plan's or its duty's); empty when it no longer resolves.
    pub frequency: String,
    /// The calendar in force; `None`: every day.
    pub calendar: Option<String>,
    /// Why the schedule does not resolve any more (the contract file changed since).
    pub schedule_problem: Option<Message>,
    pub next_slot_at: Option<i64>,
    pub cells: usize,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub version: i64,
}

fn plan_from_row(r: &AnyRow, terms: &ContractTerms) -> StoreResult<Plan> {
    let definition = parse_def(&r.try_get::<String, _>("definition")?)?;
    let (frequency, calendar, schedule_problem) =
        match rules_of::schedule_of(&definition, &terms.duties, &terms.calendars) {
            Ok(s) => (s.frequency_text, s.calendar_name, None),
            Err(p) => (String::new(), None, p.into_iter().next().map(|p| p.message)),
        };
    Ok(Plan {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        name: r.try_get("name")?,
        duty_id: r.try_get("duty_id")?,
        cells: rules_of::cells(&definition).len(),
        definition,
        active: r.try_get::<i64, _>("active")? != 0,
        frequency,
        calendar,
        schedule_problem,
        next_slot_at: r.try_get("next_slot_at")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

pub(crate) async fn credential_names(db: &Db, contract_id: i64) -> StoreResult<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM inspection_credential WHERE contract_id = $1 ORDER BY name")
        .bind(contract_id)
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
}

/// Checks a plan against the contract (duties, calendars, levels, credentials) and the probe
/// checker; the assignee must be a member who may carry out runs.
pub async fn check_plan(
    db: &Db,
    scope: &ContractScope,
    def: &PlanDef,
    probe_check: ProbeCheck<'_>,
) -> InspResult<Schedule> {
    scope.require(ContractPermission::InspectionPlan)?;
    let terms = contract_terms(db, scope.contract_id()).await?;
    let credentials = credential_names(db, scope.contract_id()).await?;
    let mut problems = Vec::new();
    if let Some(uid) = def.assignee_user_id {
        let row = sqlx::query("SELECT role FROM membership WHERE contract_id = $1 AND user_id = $2")
            .bind(scope.contract_id())
            .bind(uid)
            .fetch_optional(&db.pool)
            .await?;
        let may_run = row
            .and_then(|r| r.try_get::<String, _>("role").ok())
            .and_then(|r| yunwei_core::authz::ContractRole::parse(&r))
            .is_some_and(|r| r.permits(ContractPermission::InspectionRun));
        if !may_run {
            problems.push(Problem {
                field: "assignee_user_id".into(),
                message: Message::new(
                    "指派对象须为本合同中可执行巡检的成员",
                    "the assignee must be a member of this contract who may carry out inspections",
                ),
            });
        }
    }
    let result = {
        let ctx = PlanContext {
            duties: &terms.duties,
            calendars: &terms.calendars,
            levels: &terms.levels,
            classes: &terms.classes,
            credentials: &credentials,
            probe_check: &|v| probe_check(v),
        };
        rules_of::check(def, &ctx)
    };
    match result {
        Ok(s) if problems.is_empty() => Ok(s),
        Ok(_) => Err(InspectionError::Invalid(problems)),
        Err(p) => {
            problems.extend(p);
            Err(InspectionError::Invalid(problems))
        }
    }
}

fn normalised(def: &PlanDef) -> PlanDef {
    let mut d = def.clone();
    d.name = d.name.trim().to_string();
    d.duty = d.duty.map(|s| s.trim().to_string());
    for t in &mut d.targets {
        t.reference = t.reference.trim().to_string();
        t.label = t.label.trim().to_string();
    }
    for i in &mut d.items {
        i.label = i.label.trim().to_string();
        i.unit = i.unit.trim().to_string();
    }
    d
}

/// Stores a new plan; its runs start with the first slot from now.
pub async fn create_plan(
    db: &Db,
    scope: &ContractScope,
    def: &PlanDef,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Plan> {
    let def = normalised(def);
    let schedule = check_plan(db, scope, &def, probe_check).await?;
    let holidays = rules::holidays(db).await?;
    let next = schedule.next_slot_after(&holidays, now - 1).map(|s| s.at);
    let json = to_json(&def)?;
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "INSERT INTO inspection_plan (contract_id, name, duty_id, definition, active, scheduled_until, next_slot_at, \
         created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $5, $7, $5) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(def.name.clone())
    .bind(def.duty.clone().unwrap_or_default())
    .bind(json.clone())
    .bind(now)
    .bind(next)
    .bind(scope.actor().name.clone())
    .fetch_one(tx.conn().await?)
    .await?;
    let id: i64 = row.try_get("id")?;
    insert_version(&mut tx, scope, id, 1, &json, true, now).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.plan_create", format!("inspection_plan:{id}"))
            .contract(scope.contract_id())
            .detail(format!(
                "{} frequency={:?} calendar={:?}",
                def.name, schedule.frequency_text, schedule.calendar_name
            )),
    )
    .await?;
    tx.commit().await?;
    Ok(get_plan(db, scope, id).await?)
}

async fn insert_version(
    tx: &mut WriteTx,
    scope: &ContractScope,
    plan_id: i64,
    version: i64,
    json: &str,
    active: bool,
    now: i64,
) -> StoreResult<()> {
    tx.defer(
        "INSERT INTO inspection_plan_version (plan_id, version, contract_id, definition, active, valid_from, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            plan_id.into(),
            version.into(),
            scope.contract_id().into(),
            json.into(),
            i64::from(active).into(),
            now.into(),
            scope.actor().name.clone().into(),
        ],
    );
    Ok(())
}

fn stale_plan() -> StoreError {
    conflict("该巡检计划已被他人修改，请刷新后重试", "Someone else changed this plan; reload and retry")
}

/// Replaces a plan's definition (a new version, in force from now). Open runs keep the checklist
/// they were created with.
pub async fn update_plan(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    def: &PlanDef,
    version: i64,
    probe_check: ProbeCheck<'_>,
    now: i64,
) -> InspResult<Plan> {
    let current = get_plan(db, scope, id).await?;
    let def = normalised(def);
    let schedule = check_plan(db, scope, &def, probe_check).await?;
    let holidays = rules::holidays(db).await?;
    let json = to_json(&def)?;
    let mut tx = db.begin_write(now).await?;
    let row =
        sqlx::query("SELECT version, active, scheduled_until FROM inspection_plan WHERE contract_id = $1 AND id = $2")
            .bind(scope.contract_id())
            .bind(id)
            .fetch_optional(tx.conn().await?)
            .await?
            .ok_or(StoreError::NotFound)?;
    let stored: i64 = row.try_get("version")?;
    if stored != version {
        return Err(stale_plan().into());
    }
    let active = row.try_get::<i64, _>("active")? != 0;
    let from: i64 = row.try_get("scheduled_until")?;
    let next = if active { schedule.next_slot_after(&holidays, from.max(now) - 1).map(|s| s.at) } else { None };
    sqlx::query(
        "UPDATE inspection_plan SET name = $1, duty_id = $2, definition = $3, next_slot_at = $4, updated_at = $5, \
         version = version + 1 WHERE contract_id = $6 AND id = $7",
    )
    .bind(def.name.clone())
    .bind(def.duty.clone().unwrap_or_default())
    .bind(json.clone())
    .bind(next)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    insert_version(&mut tx, scope, id, version + 1, &json, active, now).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.plan_update", format!("inspection_plan:{id}"))
            .contract(scope.contract_id())
            .detail(format!(
                "{} → {} frequency={:?} calendar={:?} v{}",
                current.name,
                def.name,
                schedule.frequency_text,
                schedule.calendar_name,
                version + 1
            )),
    )
    .await?;
    tx.commit().await?;
    Ok(get_plan(db, scope, id).await?)
}

/// Pauses or resumes a plan. A resumed plan's runs start with the first slot from now.
pub async fn set_plan_active(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    active: bool,
    version: i64,
    now: i64,
) -> StoreResult<Plan> {
    scope.require(ContractPermission::InspectionPlan)?;
    let plan = get_plan(db, scope, id).await?;
    let terms = contract_terms(db, scope.contract_id()).await?;
    let holidays = rules::holidays(db).await?;
    let next = if active {
        rules_of::schedule_of(&plan.definition, &terms.duties, &terms.calendars)
            .ok()
            .and_then(|s| s.next_slot_after(&holidays, now - 1))
            .map(|s| s.at)
    } else {
        None
    };
    let json = to_json(&plan.definition)?;
    let mut tx = db.begin_write(now).await?;
    let n = sqlx::query(
        "UPDATE inspection_plan SET active = $1, next_slot_at = $2, scheduled_until = $3, updated_at = $3, \
         version = version + 1 WHERE contract_id = $4 AND id = $5 AND version = $6",
    )
    .bind(i64::from(active))
    .bind(next)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(stale_plan());
    }
    insert_version(&mut tx, scope, id, version + 1, &json, active, now).await?;
    tx.audit(
        AuditEntry::new(
            scope.actor(),
            if active { "inspection.plan_resume" } else { "inspection.plan_pause" },
            format!("inspection_plan:{id}"),
        )
        .contract(scope.contract_id())
        .detail(plan.name.clone()),
    )
    .await?;
    tx.commit().await?;
    get_plan(db, scope, id).await
}

pub async fn list_plans(db: &Db, scope: &ContractScope) -> StoreResult<Vec<Plan>> {
    scope.require(ContractPermission::InspectionRead)?;
    let terms = contract_terms(db, scope.contract_id()).await?;
    let rows = sqlx::query("SELECT * FROM inspection_plan WHERE contract_id = $1 ORDER BY id")
        .bind(scope.contract_id())
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| plan_from_row(r, &terms)).collect()
}

pub async fn get_plan(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Plan> {
    scope.require(ContractPermission::InspectionRead)?;
    let row = sqlx::query("SELECT * FROM inspection_plan WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let terms = contract_terms(db, scope.contract_id()).await?;
    plan_from_row(&row, &terms)
}

/// A plan's slots in `[from, to)` under its current definition, and the years whose holiday data
/// was missing (treated as ordinary weeks).
pub async fn plan_slots(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    from: i64,
    to: i64,
) -> StoreResult<(Vec<Slot>, Vec<i32>)> {
    let plan = get_plan(db, scope, id).await?;
    if to <= from || to - from > 400 * DAY_MS {
        return Err(StoreError::invalid("to", Msg::new("时间范围应为 1 到 400 天", "The range is 1 to 400 days")));
    }
    let terms = contract_terms(db, scope.contract_id()).await?;
    let holidays = rules::holidays(db).await?;
    let schedule = rules_of::schedule_of(&plan.definition, &terms.duties, &terms.calendars).map_err(|_| {
        StoreError::Conflict(Msg::new(
            "该计划的频率或日历已无法解析",
            "The plan's frequency or calendar no longer resolves",
        ))
    })?;
    let mut span = Span::default();
    let slots = schedule.slots(&holidays, from, to, &mut span);
    Ok((slots, span.missing_years.into_iter().collect()))
}

// ---------------------------------------------------------------------------------------------
// Runs

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub contract_id: i64,
    pub plan_id: i64,
    pub plan_name: String,
    pub plan_version: i64,
    pub slot_at: i64,
    pub due_by: i64,
    pub missed_at: i64,
    pub state: RunState,
    /// Open and past its due time.
    pub overdue: bool,
    pub assignee_user_id: Option<i64>,
    pub assignee_name: Option<String>,
    pub cells: i64,
    pub manual_cells: i64,
    pub results: i64,
    pub failed: i64,
    /// Cells without a result (of a finished run: the items it left out).
    pub missing: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub signed_by: String,
    pub signed_at: Option<i64>,
    pub sign_note: String,
    pub created_at: i64,
    pub version: i64,
}

const RUN_SELECT: &str = "SELECT r.*, p.name AS plan_name, u.display_name AS assignee_name FROM inspection_run r \
     JOIN inspection_plan p ON p.id = r.plan_id LEFT JOIN app_user u ON u.id = r.assignee_user_id";

fn run_from_row(r: &AnyRow, now: i64) -> StoreResult<RunRow> {
    let state: String = r.try_get("state")?;
    let state = RunState::parse(&state).ok_or_else(|| StoreError::Schema(format!("unknown run state {state}")))?;
    let due_by: i64 = r.try_get("due_by")?;
    let cells: i64 = r.try_get("cells")?;
    let results: i64 = r.try_get("results")?;
    Ok(RunRow {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        plan_id: r.try_get("plan_id")?,
        plan_name: r.try_get("plan_name")?,
        plan_version: r.try_get("plan_version")?,
        slot_at: r.try_get("slot_at")?,
        due_by,
        missed_at: r.try_get("missed_at")?,
        state,
        overdue: state == RunState::Open && now > due_by,
        assignee_user_id: r.try_get("assignee_user_id")?,
        assignee_name: r.try_get("assignee_name")?,
        cells,
        manual_cells: r.try_get("manual_cells")?,
        results,
        failed: r.try_get("failed")?,
        missing: cells - results,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        signed_by: r.try_get("signed_by")?,
        signed_at: r.try_get("signed_at")?,
        sign_note: r.try_get("sign_note")?,
        created_at: r.try_get("created_at")?,
        version: r.try_get("version")?,
    })
}

/// Which runs to list: slots in `[from, to)`, optionally of one plan or in one state.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub plan_id: Option<i64>,
    pub state: Option<RunState>,
    pub limit: i64,
}

pub async fn list_runs(db: &Db, scope: &ContractScope, f: &RunFilter, now: i64) -> StoreResult<Vec<RunRow>> {
    scope.require(ContractPermission::InspectionRead)?;
    let sql = format!(
        "{RUN_SELECT} WHERE r.contract_id = $1 AND r.slot_at >= $2 AND r.slot_at < $3 AND ($4 = 0 OR r.plan_id = $4) \
         AND ($5 = '' OR r.state = $5) ORDER BY r.slot_at, r.id LIMIT $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope.contract_id())
        .bind(f.from.unwrap_or(0))
        .bind(f.to.unwrap_or(i64::MAX))
        .bind(f.plan_id.unwrap_or(0))
        .bind(f.state.map(|s| s.as_str()).unwrap_or("").to_string())
        .bind(f.limit.clamp(1, 1000))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(|r| run_from_row(r, now)).collect()
}

pub async fn get_run(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<RunRow> {
    scope.require(ContractPermission::InspectionRead)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{RUN_SELECT} WHERE r.contract_id = $1 AND r.id = $2")))
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    run_from_row(&row, now)
}

async fn version_def(db: &Db, contract_id: i64, plan_id: i64, version: i64) -> StoreResult<PlanDef> {
    let row = sqlx::query(
        "SELECT definition FROM inspection_plan_version WHERE contract_id = $1 AND plan_id = $2 AND version = $3",
    )
    .bind(contract_id)
    .bind(plan_id)
    .bind(version)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    parse_def(&row.try_get::<String, _>("definition")?)
}

/// The current result of a cell, as people see it.
#[derive(Debug, Clone, Serialize)]
pub struct ResultView {
    pub ok: bool,
    pub value: Option<f64>,
    pub text: String,
    pub note: String,
    pub photo_ids: Vec<i64>,
    /// Probe readings (`[{"key", "value"}]`).
    pub readings: serde_json::Value,
    pub source: String,
    pub recorded_at: i64,
    pub recorded_by: String,
    /// How many readings of this cell became current (1: never corrected).
    pub revisions: i64,
    pub client_op_id: Option<String>,
}

/// One target × item of a run's checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub target_key: String,
    pub target_label: String,
    pub item_key: String,
    pub item_label: String,
    pub kind: ItemKind,
    pub expected: Expected,
    pub unit: String,
    pub result: Option<ResultView>,
    /// The ticket this cell's failure raised or commented on (in this run).
    pub ticket_id: Option<i64>,
    pub ticket_number: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Photo {
    pub id: i64,
    pub run_id: i64,
    pub file_name: String,
    pub mime: String,
    pub size_bytes: i64,
    pub uploaded_by: String,
    pub created_at: i64,
    pub client_op_id: Option<String>,
    #[serde(skip)]
    storage_name: String,
}

fn photo_from_row(r: &AnyRow) -> StoreResult<Photo> {
    Ok(Photo {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        file_name: r.try_get("file_name")?,
        mime: r.try_get("mime")?,
        size_bytes: r.try_get("size_bytes")?,
        uploaded_by: r.try_get("uploaded_by")?,
        created_at: r.try_get("created_at")?,
        client_op_id: r.try_get("client_op_id")?,
        storage_name: r.try_get("storage_name")?,
    })
}

/// A ticket raised or commented on by a failed cell of a run.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyView {
    pub target_key: String,
    pub item_key: String,
    pub ticket_id: Option<i64>,
    pub ticket_number: Option<String>,
    pub ticket_state: Option<String>,
    /// This failure opened the ticket (otherwise it was a repeat of an open one).
    pub opened_ticket: bool,
    pub opened_at: i64,
    pub recovered_at: Option<i64>,
}

/// A run with its checklist, results, photos and tickets: the written record of an inspection.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub plan: PlanDef,
    pub cells: Vec<Cell>,
    pub photos: Vec<Photo>,
    pub anomalies: Vec<AnomalyView>,
    /// Every submission of this run in the order received, current or not (corrections, readings
    /// that arrived after a later one, readings sent after the run closed): nothing is lost.
    pub ops: Vec<OpView>,
}

/// One submitted result as logged.
#[derive(Debug, Clone, Serialize)]
pub struct OpView {
    pub id: i64,
    pub client_op_id: Option<String>,
    pub target_key: String,
    pub item_key: String,
    pub source: String,
    pub ok: bool,
    pub value: Option<f64>,
    pub text: String,
    pub note: String,
    pub recorded_at: i64,
    pub recorded_by: String,
    pub received_at: i64,
    /// current, superseded, stale, rejected
    pub disposition: String,
}

pub async fn run_detail(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<RunDetail> {
    let run = get_run(db, scope, id, now).await?;
    let plan = version_def(db, scope.contract_id(), run.plan_id, run.plan_version).await?;
    let rows = sqlx::query(
        "SELECT res.target_key, res.item_key, res.revisions, o.ok, o.value, o.text_value, o.note, o.photo_ids, \
         o.readings, o.source, o.recorded_at, o.recorded_by, o.client_op_id FROM inspection_result res \
         JOIN inspection_op o ON o.id = res.op_id WHERE res.contract_id = $1 AND res.run_id = $2",
    )
    .bind(scope.contract_id())
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    let mut results: HashMap<(String, String), ResultView> = HashMap::new();
    for r in &rows {
        let photo_ids: String = r.try_get("photo_ids")?;
        let readings: String = r.try_get("readings")?;
        results.insert(
            (r.try_get("target_key")?, r.try_get("item_key")?),
            ResultView {
                ok: r.try_get::<i64, _>("ok")? != 0,
                value: r.try_get("value")?,
                text: r.try_get("text_value")?,
                note: r.try_get("note")?,
                photo_ids: serde_json::from_str(&photo_ids).unwrap_or_default(),
                readings: serde_json::from_str(&readings).unwrap_or(serde_json::Value::Null),
                source: r.try_get("source")?,
                recorded_at: r.try_get("recorded_at")?,
                recorded_by: r.try_get("recorded_by")?,
                revisions: r.try_get("revisions")?,
                client_op_id: r.try_get("client_op_id")?,
            },
        );
    }
    let anomaly_rows = sqlx::query(
        "SELECT a.target_key, a.item_key, a.ticket_id, a.opened_ticket, a.opened_at, a.recovered_at, t.number, t.state \
         FROM inspection_anomaly a LEFT JOIN ticket t ON t.id = a.ticket_id \
         WHERE a.contract_id = $1 AND a.run_id = $2 ORDER BY a.id",
    )
    .bind(scope.contract_id())
    .bind(id)
    .fetch_all(&db.pool)
    .await?;
    let mut anomalies = Vec::new();
    for r in &anomaly_rows {
        anomalies.push(AnomalyView {
            target_key: r.try_get("target_key")?,
            item_key: r.try_get("item_key")?,
            ticket_id: r.try_get("ticket_id")?,
            ticket_number: r.try_get("number")?,
            ticket_state: r.try_get("state")?,
            opened_ticket: r.try_get::<i64, _>("opened_ticket")? != 0,
            opened_at: r.try_get("opened_at")?,
            recovered_at: r.try_get("recovered_at")?,
        });
    }
    let mut cells = Vec::new();
    for t in &plan.targets {
        let tk = t.key();
        for item in plan.items.iter().filter(|i| i.applies_to(&tk)) {
            let ticket = anomalies.iter().rev().find(|a| a.target_key == tk && a.item_key == item.key);
            cells.push(Cell {
                target_key: tk.clone(),
                target_label: t.display().to_string(),
                item_key: item.key.clone(),
                item_label: item.label.clone(),
                kind: item.kind,
                expected: item.expected(),
                unit: item.unit.clone(),
                result: results.remove(&(tk.clone(), item.key.clone())),
                ticket_id: ticket.and_then(|a| a.ticket_id),
                ticket_number: ticket.and_then(|a| a.ticket_number.clone()),
            });
        }
    }
    let photos = sqlx::query("SELECT * FROM inspection_photo WHERE contract_id = $1 AND run_id = $2 ORDER BY id")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(photo_from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let ops = sqlx::query(
        "SELECT id, client_op_id, target_key, item_key, source, ok, value, text_value, note, recorded_at, recorded_by, \
         received_at, disposition FROM inspection_op WHERE contract_id = $1 AND run_id = $2 ORDER BY id",
    )
    .bind(scope.contract_id())
    .bind(id)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(OpView {
            id: r.try_get("id")?,
            client_op_id: r.try_get("client_op_id")?,
            target_key: r.try_get("target_key")?,
            item_key: r.try_get("item_key")?,
            source: r.try_get("source")?,
            ok: r.try_get::<i64, _>("ok")? != 0,
            value: r.try_get("value")?,
            text: r.try_get("text_value")?,
            note: r.try_get("note")?,
            recorded_at: r.try_get("recorded_at")?,
            recorded_by: r.try_get("recorded_by")?,
            received_at: r.try_get("received_at")?,
            disposition: r.try_get("disposition")?,
        })
    })
    .collect::<StoreResult<Vec<_>>>()?;
    Ok(RunDetail { run, plan, cells, photos, anomalies, ops })
}

/// Assigns a run to a member who may carry out inspections (or to nobody).
pub async fn assign_run(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    assignee: Option<i64>,
    now: i64,
) -> StoreResult<RunRow> {
    scope.require(ContractPermission::InspectionRun)?;
    let run = get_run(db, scope, id, now).await?;
    if run.state != RunState::Open {
        return Err(conflict("巡检已结束，不能再指派", "The run is over and cannot be reassigned"));
    }
    if let Some(uid) = assignee {
        let role = sqlx::query("SELECT role FROM membership WHERE contract_id = $1 AND user_id = $2")
            .bind(scope.contract_id())
            .bind(uid)
            .fetch_optional(&db.pool)
            .await?
            .and_then(|r| r.try_get::<String, _>("role").ok())
            .and_then(|r| yunwei_core::authz::ContractRole::parse(&r));
        if !role.is_some_and(|r| r.permits(ContractPermission::InspectionRun)) {
            return Err(StoreError::invalid(
                "assignee_user_id",
                Msg::new(
                    "指派对象须为本合同中可执行巡检的成员",
                    "The assignee must be a member who may carry out inspections",
                ),
            ));
        }
    }
    let mut tx = db.begin_write(now).await?;
    sqlx::query(
        "UPDATE inspection_run SET assignee_user_id = $1, version = version + 1 WHERE contract_id = $2 AND id = $3",
    )
    .bind(assignee)
    .bind(scope.contract_id())
    .bind(id)
    .execute(tx.conn().await?)
    .await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.assign", format!("inspection_run:{id}"))
            .contract(scope.contract_id())
            .detail(format!("assignee={assignee:?}")),
    )
    .await?;
    tx.commit().await?;
    get_run(db, scope, id, now).await
}

/// Signs a run off: its record is then final. The run counts as finished when its last reading
/// was taken (on time or late); a run already missed cannot be signed.
pub async fn sign_off(db: &Db, scope: &ContractScope, id: i64, note: &str, now: i64) -> StoreResult<RunRow> {
    scope.require(ContractPermission::InspectionRun)?;
    let note = multi_line(note, MAX_NOTE_CHARS).map_err(|m| StoreError::invalid("note", m))?;
    let run = get_run(db, scope, id, now).await?;
    match run.state {
        RunState::Open if now < run.missed_at => {}
        RunState::Open | RunState::Missed => {
            return Err(conflict("该巡检已错过，不能签字确认", "The run was missed and cannot be signed off"));
        }
        RunState::Done | RunState::Late => {
            return Err(conflict("该巡检已签字确认", "The run has already been signed off"));
        }
    }
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MAX(res.recorded_at) AS last, \
         COALESCE(SUM(CASE WHEN o.source = 'manual' THEN 1 ELSE 0 END), 0) AS manual \
         FROM inspection_result res JOIN inspection_op o ON o.id = res.op_id WHERE res.contract_id = $1 AND res.run_id = $2",
    )
    .bind(scope.contract_id())
    .bind(id)
    .fetch_one(tx.conn().await?)
    .await?;
    let n: i64 = row.try_get("n")?;
    let manual: i64 = cast_i64(&row, "manual")?;
    if n == 0 || (run.manual_cells > 0 && manual == 0) {
        return Err(StoreError::invalid(
            "results",
            Msg::new("尚未填写任何检查结果，不能签字", "No results have been entered yet; nothing to sign off"),
        ));
    }
    let last: i64 = row.try_get::<Option<i64>, _>("last")?.unwrap_or(now);
    let slot = Slot { at: run.slot_at, due_by: run.due_by, missed_at: run.missed_at };
    let state = rules_of::classify(&slot, Some(last), now);
    let changed = sqlx::query(
        "UPDATE inspection_run SET state = $1, finished_at = $2, signed_by_user_id = $3, signed_by = $4, signed_at = $5, \
         sign_note = $6, version = version + 1 WHERE contract_id = $7 AND id = $8 AND state = 'open'",
    )
    .bind(state.as_str())
    .bind(last)
    .bind(scope.actor().user_id)
    .bind(scope.actor().name.clone())
    .bind(now)
    .bind(note)
    .bind(scope.contract_id())
    .bind(id)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(conflict("该巡检已签字确认", "The run has already been signed off"));
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.sign_off", format!("inspection_run:{id}"))
            .contract(scope.contract_id())
            .detail(format!(
                "{} slot={} state={} finished={} results={n}/{} failed={}",
                run.plan_name,
                local_time(run.slot_at),
                state.as_str(),
                local_time(last),
                run.cells,
                run.failed
            )),
    )
    .await?;
    tx.commit().await?;
    get_run(db, scope, id, now).await
}

// ---------------------------------------------------------------------------------------------
// Results (the offline sync)

/// One result as a phone sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultInput {
    /// Chosen by the client once per reading (8–100 of A–Z a–z 0–9 . _ : -); a replay with the same
    /// id is a duplicate.
    pub client_op_id: String,
    pub run_id: i64,
    /// `kind:ref`, as in the run's checklist.
    pub target: String,
    pub item: String,
    #[serde(default)]
    pub ok: Option<bool>,
    /// A number for range and number items (any JSON is accepted here so that a wrong type gets a
    /// precise message).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub photo_ids: Vec<i64>,
    /// When the reading was taken (epoch ms); default: now. Not in the future, not before the run.
    #[serde(default)]
    pub recorded_at: Option<i64>,
}

/// What became of one submitted result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpOutcome {
    pub client_op_id: String,
    /// applied (the cell's value now), stale (a later reading of the cell is already stored; kept
    /// in the history), duplicate (received before; nothing changed), rejected (the run was
    /// closed; kept in the history).
    pub status: &'static str,
    pub ok: Option<bool>,
    pub message: Option<Message>,
}

struct RunInfo {
    contract_id: i64,
    plan_id: i64,
    plan: PlanDef,
    slot_at: i64,
}

struct Checked {
    client_op_id: String,
    run_id: i64,
    target: String,
    item: String,
    ok: bool,
    value: Option<f64>,
    text: String,
    note: String,
    photo_ids: Vec<i64>,
    recorded_at: i64,
}

fn valid_op_id(s: &str) -> bool {
    (8..=100).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

async fn load_run_info(db: &Db, contract_id: i64, run_id: i64) -> StoreResult<Option<RunInfo>> {
    let Some(r) =
        sqlx::query("SELECT plan_id, plan_version, slot_at FROM inspection_run WHERE contract_id = $1 AND id = $2")
            .bind(contract_id)
            .bind(run_id)
            .fetch_optional(&db.pool)
            .await?
    else {
        return Ok(None);
    };
    let plan_id: i64 = r.try_get("plan_id")?;
    let plan = version_def(db, contract_id, plan_id, r.try_get("plan_version")?).await?;
    Ok(Some(RunInfo { contract_id, plan_id, plan, slot_at: r.try_get("slot_at")? }))
}

/// Applies a batch of results (the offline sync). Bad input anywhere refuses the whole batch
/// with every problem (`results[3].value`) and changes nothing; otherwise each result is applied,
/// stale, duplicate or rejected (see [`OpOutcome`]). Failed cells then raise tickets.
pub async fn submit_results(
    db: &Db,
    scope: &ContractScope,
    inputs: &[ResultInput],
    now: i64,
) -> InspResult<Vec<OpOutcome>> {
    scope.require(ContractPermission::InspectionRun)?;
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(bad(
            "results",
            format!("每批 1 到 {MAX_BATCH} 条结果"),
            format!("a batch holds 1 to {MAX_BATCH} results"),
        ));
    }
    let mut runs: HashMap<i64, Option<RunInfo>> = HashMap::new();
    for i in inputs {
        if let std::collections::hash_map::Entry::Vacant(e) = runs.entry(i.run_id) {
            e.insert(load_run_info(db, scope.contract_id(), i.run_id).await?);
        }
    }
    let mut problems = Vec::new();
    let mut checked = Vec::with_capacity(inputs.len());
    for (n, i) in inputs.iter().enumerate() {
        let f = |s: &str| format!("results[{n}].{s}");
        let mut p =
            |field: String, zh: String, en: String| problems.push(Problem { field, message: Message::new(zh, en) });
        if !valid_op_id(&i.client_op_id) {
            p(
                f("client_op_id"),
                "client_op_id 须为 8–100 个字母、数字或 . _ : -".into(),
                "client_op_id is 8–100 letters, digits, '.', '_', ':' or '-'".into(),
            );
        }
        let Some(Some(run)) = runs.get(&i.run_id) else {
            p(f("run_id"), format!("没有编号为 {} 的巡检", i.run_id), format!("no inspection run {}", i.run_id));
            continue;
        };
        let Some(target) = run.plan.targets.iter().find(|t| t.key() == i.target) else {
            p(f("target"), format!("该巡检没有对象 {:?}", i.target), format!("the run has no target {:?}", i.target));
            continue;
        };
        let Some(item) = run.plan.items.iter().find(|it| it.key == i.item && it.applies_to(&target.key())) else {
            p(
                f("item"),
                format!("该巡检对象没有检查项 {:?}", i.item),
                format!("the target has no checklist item {:?}", i.item),
            );
            continue;
        };
        if item.kind == ItemKind::Probe {
            p(
                f("item"),
                format!("检查项 {:?} 由系统自动检测，不能人工填写", i.item),
                format!("item {:?} is measured by a probe and cannot be entered", i.item),
            );
            continue;
        }
        let value = match &i.value {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(v)) => v.as_f64(),
            Some(other) => {
                let kind = match other {
                    serde_json::Value::String(_) => "a string",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Array(_) => "an array",
                    _ => "an object",
                };
                p(f("value"), "读数（value）须为数字".into(), format!("value must be a number, not {kind}"));
                continue;
            }
        };
        let text = match single_line(i.text.as_deref().unwrap_or(""), MAX_NOTE_CHARS, false) {
            Ok(t) => t,
            Err(m) => {
                p(
                    f("text"),
                    format!("{}（至多 {MAX_NOTE_CHARS} 字）", m.zh),
                    format!("{} (at most {MAX_NOTE_CHARS} characters)", m.en),
                );
                continue;
            }
        };
        let note = match multi_line(i.note.as_deref().unwrap_or(""), MAX_NOTE_CHARS) {
            Ok(t) => t,
            Err(m) => {
                p(
                    f("note"),
                    format!("{}（至多 {MAX_NOTE_CHARS} 字）", m.zh),
                    format!("{} (at most {MAX_NOTE_CHARS} characters)", m.en),
                );
                continue;
            }
        };
        if i.photo_ids.len() > 10 {
            p(f("photo_ids"), "每项至多 10 张照片".into(), "at most 10 photos per item".into());
            continue;
        }
        let recorded_at = i.recorded_at.unwrap_or(now);
        if recorded_at > now + FUTURE_TOLERANCE_MS {
            p(
                f("recorded_at"),
                format!("记录时间 {} 晚于当前时间", local_time(recorded_at)),
                format!("recorded_at {} is in the future", local_time(recorded_at)),
            );
            continue;
        }
        if recorded_at < run.slot_at - EARLY_TOLERANCE_MS {
            p(
                f("recorded_at"),
                format!("记录时间 {} 早于本次巡检开始（{}）", local_time(recorded_at), local_time(run.slot_at)),
                format!(
                    "recorded_at {} is before the run began ({})",
                    local_time(recorded_at),
                    local_time(run.slot_at)
                ),
            );
            continue;
        }
        let answer = Answer { ok: i.ok, value, text: Some(text.as_str()) };
        let ok = match rules_of::judge(item, &answer) {
            Ok(ok) => ok,
            Err(m) => {
                let field = match item.expected() {
                    Expected::PassFail => "ok",
                    Expected::Text | Expected::Equals(_) => "text",
                    _ => "value",
                };
                problems.push(Problem { field: f(field), message: m });
                continue;
            }
        };
        checked.push(Checked {
            client_op_id: i.client_op_id.clone(),
            run_id: i.run_id,
            target: i.target.clone(),
            item: i.item.clone(),
            ok,
            value,
            text,
            note,
            photo_ids: i.photo_ids.clone(),
            recorded_at,
        });
    }
    // Photos must belong to the run they are attached in.
    for (n, (c, i)) in checked.iter().zip(inputs).enumerate() {
        for (k, pid) in i.photo_ids.iter().enumerate() {
            let found =
                sqlx::query("SELECT id FROM inspection_photo WHERE contract_id = $1 AND run_id = $2 AND id = $3")
                    .bind(scope.contract_id())
                    .bind(c.run_id)
                    .bind(*pid)
                    .fetch_optional(&db.pool)
                    .await?;
            if found.is_none() {
                problems.push(Problem {
                    field: format!("results[{n}].photo_ids[{k}]"),
                    message: Message::new(format!("本次巡检没有照片 {pid}"), format!("the run has no photo {pid}")),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(InspectionError::Invalid(problems));
    }

    let mut tx = db.begin_write(now).await?;
    let mut outcomes = Vec::with_capacity(checked.len());
    let mut follow = Vec::new();
    let mut touched: Vec<i64> = Vec::new();
    let (mut applied, mut stale, mut dup, mut rejected) = (0, 0, 0, 0);
    for c in &checked {
        let run = runs.get(&c.run_id).and_then(|r| r.as_ref()).ok_or(StoreError::NotFound)?;
        // The run's state as of this transaction (the scheduler may have closed it meanwhile).
        let st = sqlx::query("SELECT state, missed_at FROM inspection_run WHERE contract_id = $1 AND id = $2")
            .bind(scope.contract_id())
            .bind(c.run_id)
            .fetch_one(tx.conn().await?)
            .await?;
        let open = st.try_get::<String, _>("state")? == "open" && now < st.try_get::<i64, _>("missed_at")?;
        let current = sqlx::query(
            "SELECT op_id, recorded_at FROM inspection_result WHERE run_id = $1 AND target_key = $2 AND item_key = $3",
        )
        .bind(c.run_id)
        .bind(c.target.clone())
        .bind(c.item.clone())
        .fetch_optional(tx.conn().await?)
        .await?;
        let current: Option<(i64, i64)> = match current {
            Some(r) => Some((r.try_get("op_id")?, r.try_get("recorded_at")?)),
            None => None,
        };
        let disposition = if !open {
            "rejected"
        } else if current.is_some_and(|(_, at)| at > c.recorded_at) {
            "stale"
        } else {
            "current"
        };
        let inserted = sqlx::query(
            "INSERT INTO inspection_op (contract_id, run_id, target_key, item_key, client_op_id, source, ok, value, \
             text_value, readings, note, photo_ids, recorded_at, recorded_by_user_id, recorded_by, received_at, disposition) \
             VALUES ($1, $2, $3, $4, $5, 'manual', $6, CASE WHEN $16 = 1 THEN $7 END, $8, '[]', $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (contract_id, client_op_id) DO NOTHING RETURNING id",
        )
        .bind(scope.contract_id())
        .bind(c.run_id)
        .bind(c.target.clone())
        .bind(c.item.clone())
        .bind(c.client_op_id.clone())
        .bind(i64::from(c.ok))
        .bind(c.value.unwrap_or(0.0))
        .bind(c.text.clone())
        .bind(c.note.clone())
        .bind(to_json(&c.photo_ids)?)
        .bind(c.recorded_at)
        .bind(scope.actor().user_id)
        .bind(scope.actor().name.clone())
        .bind(now)
        .bind(disposition)
        .bind(i64::from(c.value.is_some()))
        .fetch_optional(tx.conn().await?)
        .await?;
        let Some(inserted) = inserted else {
            dup += 1;
            outcomes.push(OpOutcome {
                client_op_id: c.client_op_id.clone(),
                status: "duplicate",
                ok: None,
                message: None,
            });
            continue;
        };
        let op_id: i64 = inserted.try_get("id")?;
        match disposition {
            "rejected" => {
                rejected += 1;
                outcomes.push(OpOutcome {
                    client_op_id: c.client_op_id.clone(),
                    status: "rejected",
                    ok: Some(c.ok),
                    message: Some(Message::new(
                        "该巡检已结束（已签字或已错过），此结果仅留档",
                        "the run is over (signed off or missed); the result is kept in its history only",
                    )),
                });
            }
            "stale" => {
                stale += 1;
                outcomes.push(OpOutcome {
                    client_op_id: c.client_op_id.clone(),
                    status: "stale",
                    ok: Some(c.ok),
                    message: None,
                });
            }
            _ => {
                applied += 1;
                set_current(
                    &mut tx,
                    scope.contract_id(),
                    run.plan_id,
                    c.run_id,
                    &c.target,
                    &c.item,
                    op_id,
                    c.ok,
                    c.value,
                    c.recorded_at,
                    current.map(|c| c.0),
                )
                .await?;
                if !touched.contains(&c.run_id) {
                    touched.push(c.run_id);
                }
                follow.push((
                    c.run_id,
                    c.target.clone(),
                    c.item.clone(),
                    op_id,
                    c.ok,
                    c.value,
                    c.text.clone(),
                    c.note.clone(),
                ));
                outcomes.push(OpOutcome {
                    client_op_id: c.client_op_id.clone(),
                    status: "applied",
                    ok: Some(c.ok),
                    message: None,
                });
            }
        }
    }
    for run_id in &touched {
        refresh_counts(&mut tx, *run_id).await?;
    }
    if applied + stale + rejected > 0 {
        tx.audit(
            AuditEntry::new(scope.actor(), "inspection.results", format!("inspection_runs:{touched:?}"))
                .contract(scope.contract_id())
                .detail(format!("applied={applied} stale={stale} rejected={rejected} duplicate={dup}")),
        )
        .await?;
        tx.commit().await?;
    }
    // Tickets, after the results are safely stored (their own transactions).
    for (run_id, target, item, op_id, ok, value, text, note) in follow {
        let run = runs.get(&run_id).and_then(|r| r.as_ref()).ok_or(StoreError::NotFound)?;
        let detail = describe(value, &text, &note);
        if let Err(e) = follow_up(db, scope, run, run_id, &target, &item, op_id, ok, &detail, now).await {
            tracing::warn!(run = run_id, target, item, error = %e, "inspection ticket follow-up failed");
        }
    }
    Ok(outcomes)
}

fn describe(value: Option<f64>, text: &str, note: &str) -> String {
    let mut parts = Vec::new();
    if let Some(v) = value {
        parts.push(format!("读数 / reading: {v}"));
    }
    if !text.is_empty() {
        parts.push(text.to_string());
    }
    if !note.is_empty() {
        parts.push(format!("备注 / note: {note}"));
    }
    parts.join("\n")
}

/// Makes an op the cell's current value: the previous one is superseded, the numeric sample of
/// the cell follows.
#[allow(clippy::too_many_arguments)]
async fn set_current(
    tx: &mut WriteTx,
    contract_id: i64,
    plan_id: i64,
    run_id: i64,
    target: &str,
    item: &str,
    op_id: i64,
    ok: bool,
    value: Option<f64>,
    recorded_at: i64,
    previous: Option<i64>,
) -> StoreResult<()> {
    if let Some(prev) = previous {
        tx.defer("UPDATE inspection_op SET disposition = 'superseded' WHERE id = $1", vec![prev.into()]);
    }
    tx.defer(
        "INSERT INTO inspection_result (run_id, target_key, item_key, contract_id, op_id, ok, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, target_key, item_key) DO UPDATE SET \
         op_id = excluded.op_id, ok = excluded.ok, recorded_at = excluded.recorded_at, \
         revisions = inspection_result.revisions + 1",
        vec![
            run_id.into(),
            target.into(),
            item.into(),
            contract_id.into(),
            op_id.into(),
            i64::from(ok).into(),
            recorded_at.into(),
        ],
    );
    // The sample carries a float: bound here rather than deferred. A float is never bound as NULL
    // (sqlx 0.9's `Any` binds a NULL f64 as PostgreSQL float4, and the cached statement then
    // refuses a real f64): the value and whether there is one go separately.
    sqlx::query(
        "INSERT INTO inspection_sample (contract_id, plan_id, run_id, target_key, item_key, at, ok, value) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $9 = 1 THEN $8 END) ON CONFLICT (run_id, target_key, item_key) \
         DO UPDATE SET at = excluded.at, ok = excluded.ok, value = excluded.value",
    )
    .bind(contract_id)
    .bind(plan_id)
    .bind(run_id)
    .bind(target.to_string())
    .bind(item.to_string())
    .bind(recorded_at)
    .bind(i64::from(ok))
    .bind(value.unwrap_or(0.0))
    .bind(i64::from(value.is_some()))
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

async fn refresh_counts(tx: &mut WriteTx, run_id: i64) -> StoreResult<()> {
    tx.defer(
        "UPDATE inspection_run SET \
         results = (SELECT COUNT(*) FROM inspection_result WHERE run_id = $1), \
         failed = (SELECT COUNT(*) FROM inspection_result WHERE run_id = $1 AND ok = 0), \
         started_at = (SELECT MIN(recorded_at) FROM inspection_result WHERE run_id = $1), \
         version = version + 1 WHERE id = $1",
        vec![run_id.into()],
    );
    Ok(())
}

/// Raises or comments on the cell's ticket when it failed; notes the recovery once when it passed
/// while its ticket is open.
#[allow(clippy::too_many_arguments)]
async fn follow_up(
    db: &Db,
    scope: &ContractScope,
    run: &RunInfo,
    run_id: i64,
    target_key: &str,
    item_key: &str,
    op_id: i64,
    ok: bool,
    detail: &str,
    now: i64,
) -> StoreResult<()> {
    let cid = run.contract_id;
    let key = rules_of::ticket_key(run.plan_id, target_key, item_key);
    let target = run.plan.targets.iter().find(|t| t.key() == target_key);
    let item = run.plan.items.iter().find(|i| i.key == item_key);
    let (Some(target), Some(item)) = (target, item) else {
        return Ok(());
    };
    if !ok {
        let Some(rule) = &run.plan.tickets else {
            return Ok(());
        };
        let level = item.level.clone().unwrap_or_else(|| rule.level.clone());
        let title: String =
            format!("巡检异常 / Inspection anomaly: {} · {} · {}", run.plan.name, target.display(), item.label)
                .chars()
                .take(200)
                .collect();
        let description = format!(
            "巡检计划 / Plan: {}\n对象 / Target: {} ({})\n检查项 / Item: {} ({})\n{}\n巡检记录 / Run: /c/{cid}/inspections/runs/{run_id}",
            run.plan.name,
            target.display(),
            target_key,
            item.label,
            item_key,
            detail
        );
        let input = NewTicket {
            kind: "fault".into(),
            level,
            incident_class: rule.incident_class.clone(),
            title,
            description,
            channel: "inspection".into(),
            reporter_user_id: None,
            reporter_name: format!("巡检 / Inspection: {}", run.plan.name).chars().take(100).collect(),
            reporter_contact: String::new(),
            system_name: if target.kind == rules_of::TargetKind::System {
                target.reference.chars().take(200).collect()
            } else {
                String::new()
            },
            asset_ref: if target.kind == rules_of::TargetKind::Asset {
                target.reference.chars().take(200).collect()
            } else {
                String::new()
            },
            received_at: None,
            source_key: Some(key.clone()),
        };
        // Platform-raised for probes; a person's failing reading is raised in their name.
        let intake = tickets::create(db, scope, &input, now).await?;
        let mut tx = db.begin_write(now).await?;
        tx.defer(
            "INSERT INTO inspection_anomaly (contract_id, plan_id, run_id, target_key, item_key, op_id, source_key, \
             ticket_id, opened_ticket, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (op_id) DO NOTHING",
            vec![
                cid.into(),
                run.plan_id.into(),
                run_id.into(),
                target_key.into(),
                item_key.into(),
                op_id.into(),
                key.clone().into(),
                intake.ticket.id.into(),
                i64::from(intake.created).into(),
                now.into(),
            ],
        );
        tx.audit(
            AuditEntry::new(scope.actor(), "inspection.anomaly", format!("inspection_run:{run_id}"))
                .contract(cid)
                .detail(format!(
                    "{key} ticket={} {}",
                    intake.ticket.number,
                    if intake.created { "opened" } else { "repeat" }
                )),
        )
        .await?;
        tx.commit().await?;
        return Ok(());
    }
    // Passed: claim the open anomalies of the key first, so that the note is added once.
    let open = sqlx::query(
        "SELECT a.ticket_id, t.is_open FROM inspection_anomaly a LEFT JOIN ticket t ON t.id = a.ticket_id \
         WHERE a.contract_id = $1 AND a.source_key = $2 AND a.recovered_at IS NULL ORDER BY a.id DESC",
    )
    .bind(cid)
    .bind(key.clone())
    .fetch_all(&db.pool)
    .await?;
    if open.is_empty() {
        return Ok(());
    }
    let ticket: Option<i64> = open[0].try_get("ticket_id")?;
    let ticket_open = open[0].try_get::<Option<i64>, _>("is_open")?.unwrap_or(0) != 0;
    let mut tx = db.begin_write(now).await?;
    let claimed = sqlx::query(
        "UPDATE inspection_anomaly SET recovered_at = $1 WHERE contract_id = $2 AND source_key = $3 AND recovered_at IS NULL",
    )
    .bind(now)
    .bind(cid)
    .bind(key.clone())
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(());
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.recovered", format!("inspection_run:{run_id}"))
            .contract(cid)
            .detail(format!("{key} ticket={ticket:?}")),
    )
    .await?;
    tx.commit().await?;
    if let (Some(tid), true) = (ticket, ticket_open) {
        let body = format!(
            "已恢复 / Recovered at {}: {} · {} · {}\n巡检记录 / Run: /c/{cid}/inspections/runs/{run_id}",
            local_time(now),
            run.plan.name,
            target.display(),
            item.label
        );
        tickets::comment(db, scope, tid, &body, false, "inspection", now).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Photos

// Stored like ticket attachments: under two-character folders, written 0600 via a synced
// temporary file.
use crate::attachments::{path_of, write_private};

/// Stores a photo of an open run (an image, decided by its bytes). With a `client_op_id`, a
/// repeated upload answers the photo stored the first time (`false`).
#[allow(clippy::too_many_arguments)]
pub async fn save_photo(
    db: &Db,
    scope: &ContractScope,
    dir: &Path,
    run_id: i64,
    client_op_id: Option<&str>,
    original_name: &str,
    bytes: &[u8],
    now: i64,
) -> StoreResult<(Photo, bool)> {
    scope.require(ContractPermission::InspectionRun)?;
    let run = get_run(db, scope, run_id, now).await?;
    if let Some(op) = client_op_id {
        if !valid_op_id(op) {
            return Err(StoreError::invalid(
                "client_op_id",
                Msg::new(
                    "client_op_id 须为 8–100 个字母、数字或 . _ : -",
                    "client_op_id is 8–100 letters, digits, '.', '_', ':' or '-'",
                ),
            ));
        }
        let found = sqlx::query("SELECT * FROM inspection_photo WHERE contract_id = $1 AND client_op_id = $2")
            .bind(scope.contract_id())
            .bind(op.to_string())
            .fetch_optional(&db.pool)
            .await?;
        if let Some(r) = found {
            let p = photo_from_row(&r)?;
            if p.run_id != run_id {
                return Err(conflict("该 client_op_id 已用于另一次巡检", "This client_op_id was used for another run"));
            }
            return Ok((p, false));
        }
    }
    if run.state != RunState::Open || now >= run.missed_at {
        return Err(conflict("该巡检已结束，不能再上传照片", "The run is over; photos can no longer be added"));
    }
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(StoreError::invalid("file", Msg::new("照片不能超过 10 MB", "A photo is at most 10 MB")));
    }
    let kind = yunwei_core::filetype::sniff(bytes).map_err(|m| StoreError::invalid("file", m))?;
    if !kind.mime.starts_with("image/") {
        return Err(StoreError::invalid(
            "file",
            Msg::new("只能上传图片（JPEG、PNG 等）", "Only images (JPEG, PNG, …) can be uploaded"),
        ));
    }
    let name = yunwei_core::filetype::safe_download_name(original_name, &kind);
    let storage_name = crate::random_token(24);
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    let path = path_of(dir, &storage_name);
    write_private(&path, bytes).map_err(|e| {
        tracing::error!(error = %e, "cannot store an inspection photo");
        StoreError::Schema(format!("photo store not writable: {e}"))
    })?;
    let result = async {
        let mut tx = db.begin_write(now).await?;
        let row = sqlx::query(
            "INSERT INTO inspection_photo (contract_id, run_id, client_op_id, file_name, mime, size_bytes, sha256, \
             storage_name, uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        )
        .bind(scope.contract_id())
        .bind(run_id)
        .bind(client_op_id.map(str::to_string))
        .bind(name.clone())
        .bind(kind.mime)
        .bind(bytes.len() as i64)
        .bind(sha.clone())
        .bind(storage_name.clone())
        .bind(scope.actor().name.clone())
        .bind(now)
        .fetch_one(tx.conn().await?)
        .await
        .map_err(|e| StoreError::from(e).unique_as(Msg::new("重复上传", "Uploaded twice")))?;
        let p = photo_from_row(&row)?;
        tx.audit(
            AuditEntry::new(scope.actor(), "inspection.photo", format!("inspection_run:{run_id}"))
                .contract(scope.contract_id())
                .detail(format!("photo:{} {name} {} bytes sha256={sha}", p.id, bytes.len())),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, StoreError>(p)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    Ok((result?, true))
}

pub async fn open_photo(
    db: &Db,
    scope: &ContractScope,
    dir: &Path,
    run_id: i64,
    id: i64,
) -> StoreResult<(Photo, Vec<u8>)> {
    scope.require(ContractPermission::InspectionRead)?;
    let row = sqlx::query("SELECT * FROM inspection_photo WHERE contract_id = $1 AND run_id = $2 AND id = $3")
        .bind(scope.contract_id())
        .bind(run_id)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let p = photo_from_row(&row)?;
    let bytes = std::fs::read(path_of(dir, &p.storage_name)).map_err(|e| {
        tracing::error!(error = %e, photo = p.id, "inspection photo file missing");
        StoreError::NotFound
    })?;
    Ok((p, bytes))
}

// ---------------------------------------------------------------------------------------------
// Probe credentials

/// A stored credential as people see it: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    pub name: String,
    pub username: String,
    /// Always [`MASK`] when set.
    pub password: Option<String>,
    pub has_private_key: bool,
    pub updated_at: i64,
    pub version: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialInput {
    pub username: String,
    /// Left out: the stored one is kept.
    pub password: Option<String>,
    /// An OpenSSH private key (PEM); left out: the stored one is kept.
    pub private_key: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct SealedSecret {
    password: Option<String>,
    private_key: Option<String>,
}

fn credential_from_row(r: &AnyRow) -> StoreResult<CredentialView> {
    Ok(CredentialView {
        name: r.try_get("name")?,
        username: r.try_get("username")?,
        password: (r.try_get::<i64, _>("has_password")? != 0).then(|| MASK.to_string()),
        has_private_key: r.try_get::<i64, _>("has_private_key")? != 0,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

pub async fn list_credentials(db: &Db, scope: &ContractScope) -> StoreResult<Vec<CredentialView>> {
    scope.require(ContractPermission::InspectionPlan)?;
    let rows = sqlx::query("SELECT * FROM inspection_credential WHERE contract_id = $1 ORDER BY name")
        .bind(scope.contract_id())
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(credential_from_row).collect()
}

/// Creates or replaces a named credential; the password and key are sealed with the server key.
pub async fn set_credential(
    db: &Db,
    scope: &ContractScope,
    name: &str,
    input: &CredentialInput,
    now: i64,
) -> StoreResult<CredentialView> {
    scope.require(ContractPermission::InspectionPlan)?;
    let name = single_line(name, 64, true).map_err(|m| StoreError::invalid("name", m))?;
    let username = single_line(&input.username, 128, false).map_err(|m| StoreError::invalid("username", m))?;
    for (field, v, max) in [("password", &input.password, 256), ("private_key", &input.private_key, 16_384)] {
        if let Some(v) = v
            && (v.chars().count() > max || v.chars().any(|c| c.is_control() && c != '\n' && c != '\r'))
        {
            return Err(StoreError::invalid(
                field,
                Msg::new("内容过长或含控制字符", "Too long or has control characters"),
            ));
        }
    }
    let mut tx = db.begin_write(now).await?;
    let existing = sqlx::query("SELECT secret_enc FROM inspection_credential WHERE contract_id = $1 AND name = $2")
        .bind(scope.contract_id())
        .bind(name.clone())
        .fetch_optional(tx.conn().await?)
        .await?;
    let mut secret = match &existing {
        Some(r) => serde_json::from_str(&db.secrets.open(CREDENTIAL_PURPOSE, &r.try_get::<String, _>("secret_enc")?)?)
            .unwrap_or_default(),
        None => SealedSecret::default(),
    };
    if let Some(p) = &input.password {
        secret.password = (!p.is_empty()).then(|| p.clone());
    }
    if let Some(k) = &input.private_key {
        secret.private_key = (!k.trim().is_empty()).then(|| k.clone());
    }
    let sealed = db.secrets.seal(CREDENTIAL_PURPOSE, &to_json(&secret)?)?;
    sqlx::query(
        "INSERT INTO inspection_credential (contract_id, name, username, secret_enc, has_password, has_private_key, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (contract_id, name) DO UPDATE SET username = excluded.username, secret_enc = excluded.secret_enc, \
         has_password = excluded.has_password, has_private_key = excluded.has_private_key, \
         updated_at = excluded.updated_at, version = inspection_credential.version + 1",
    )
    .bind(scope.contract_id())
    .bind(name.clone())
    .bind(username.clone())
    .bind(sealed)
    .bind(i64::from(secret.password.is_some()))
    .bind(i64::from(secret.private_key.is_some()))
    .bind(now)
    .execute(tx.conn().await?)
    .await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.credential_set", format!("inspection_credential:{name}"))
            .contract(scope.contract_id())
            .detail(format!(
                "username={username} password={} private_key={}",
                if input.password.is_some() { "set" } else { "kept" },
                if input.private_key.is_some() { "set" } else { "kept" }
            )),
    )
    .await?;
    tx.commit().await?;
    let row = sqlx::query("SELECT * FROM inspection_credential WHERE contract_id = $1 AND name = $2")
        .bind(scope.contract_id())
        .bind(name)
        .fetch_one(&db.pool)
        .await?;
    credential_from_row(&row)
}

pub async fn delete_credential(db: &Db, scope: &ContractScope, name: &str, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::InspectionPlan)?;
    let mut tx = db.begin_write(now).await?;
    let n = sqlx::query("DELETE FROM inspection_credential WHERE contract_id = $1 AND name = $2")
        .bind(scope.contract_id())
        .bind(name.to_string())
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.credential_delete", format!("inspection_credential:{name}"))
            .contract(scope.contract_id()),
    )
    .await?;
    tx.commit().await
}

/// A probe's credential in clear, for the probe run only. Never serialised; `Debug` hides it.
#[derive(Clone, Default)]
pub struct ProbeSecret {
    pub username: Option<String>,
    pub password: Option<String>,
    pub private_key: Option<String>,
}

impl std::fmt::Debug for ProbeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeSecret")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("private_key", &self.private_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler: runs, missed runs, probes, roll-ups

/// Creates the runs of every slot that has come due (idempotent: one run per plan and slot).
/// The one cross-contract read of plans; each plan is then handled in its own contract.
pub async fn create_due_runs(db: &Db, now: i64) -> StoreResult<usize> {
    let rows = sqlx::query(
        "SELECT id, contract_id FROM inspection_plan WHERE next_slot_at IS NOT NULL AND next_slot_at <= $1 \
         ORDER BY next_slot_at LIMIT 200",
    )
    .bind(now)
    .fetch_all(&db.pool)
    .await?;
    let holidays = rules::holidays(db).await?;
    let mut created = 0;
    for r in rows {
        let (id, cid): (i64, i64) = (r.try_get("id")?, r.try_get("contract_id")?);
        match create_plan_runs(db, &holidays, cid, id, now).await {
            Ok(n) => created += n,
            Err(e) => {
                tracing::warn!(plan = id, error = %e, "inspection runs could not be created");
                sqlx::query("UPDATE inspection_plan SET next_slot_at = $1 WHERE id = $2")
                    .bind(now + HOUR_MS)
                    .bind(id)
                    .execute(&db.pool)
                    .await?;
            }
        }
    }
    Ok(created)
}

async fn create_plan_runs(
    db: &Db,
    holidays: &yunwei_core::calendar::HolidayTable,
    cid: i64,
    id: i64,
    now: i64,
) -> StoreResult<usize> {
    let terms = contract_terms(db, cid).await?;
    let scope = ContractScope::platform(cid);
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "SELECT name, definition, version, active, scheduled_until FROM inspection_plan WHERE contract_id = $1 AND id = $2",
    )
    .bind(cid)
    .bind(id)
    .fetch_one(tx.conn().await?)
    .await?;
    let def = parse_def(&row.try_get::<String, _>("definition")?)?;
    let version: i64 = row.try_get("version")?;
    let from: i64 = row.try_get("scheduled_until")?;
    if row.try_get::<i64, _>("active")? == 0 {
        sqlx::query("UPDATE inspection_plan SET next_slot_at = NULL WHERE id = $1")
            .bind(id)
            .execute(tx.conn().await?)
            .await?;
        tx.commit_bookkeeping().await?;
        return Ok(0);
    }
    let schedule = rules_of::schedule_of(&def, &terms.duties, &terms.calendars).map_err(|p| {
        StoreError::Schema(format!(
            "plan {id} no longer resolves: {}",
            p.first().map(|p| p.message.to_string()).unwrap_or_default()
        ))
    })?;
    let slots = schedule.slots(holidays, from.max(now - CATCH_UP_MS), now + 1, &mut Span::default());
    let cells = rules_of::cells(&def);
    let probe_items: Vec<&str> =
        def.items.iter().filter(|i| i.kind == ItemKind::Probe).map(|i| i.key.as_str()).collect();
    let probe_cells = cells.iter().filter(|(_, i)| probe_items.contains(&i.as_str())).count() as i64;
    let manual_cells = cells.len() as i64 - probe_cells;
    let mut made = Vec::new();
    for s in &slots {
        let r = sqlx::query(
            "INSERT INTO inspection_run (contract_id, plan_id, plan_version, slot_at, due_by, missed_at, state, \
             assignee_user_id, cells, manual_cells, probes_pending, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $11) ON CONFLICT (plan_id, slot_at) DO NOTHING",
        )
        .bind(cid)
        .bind(id)
        .bind(version)
        .bind(s.at)
        .bind(s.due_by)
        .bind(s.missed_at)
        .bind(def.assignee_user_id)
        .bind(cells.len() as i64)
        .bind(manual_cells)
        .bind(i64::from(probe_cells > 0))
        .bind(now)
        .execute(tx.conn().await?)
        .await?;
        if r.rows_affected() == 1 {
            made.push(local_time(s.at));
        }
    }
    let next = schedule.next_slot_after(holidays, now).map(|s| s.at);
    sqlx::query("UPDATE inspection_plan SET scheduled_until = $1, next_slot_at = $2 WHERE id = $3")
        .bind(now + 1)
        .bind(next)
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    if made.is_empty() {
        tx.commit_bookkeeping().await?;
        return Ok(0);
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.runs_created", format!("inspection_plan:{id}"))
            .contract(cid)
            .detail(format!("{}: {}", row.try_get::<String, _>("name")?, made.join(", "))),
    )
    .await?;
    tx.commit().await?;
    Ok(made.len())
}

/// Marks every open run whose time has run out as missed.
pub async fn mark_missed(db: &Db, now: i64) -> StoreResult<usize> {
    let rows = sqlx::query("SELECT DISTINCT contract_id FROM inspection_run WHERE state = 'open' AND missed_at <= $1")
        .bind(now)
        .fetch_all(&db.pool)
        .await?;
    let mut total = 0;
    for r in rows {
        let cid: i64 = r.try_get("contract_id")?;
        let scope = ContractScope::platform(cid);
        let mut tx = db.begin_write(now).await?;
        let ids = sqlx::query(
            "SELECT id FROM inspection_run WHERE contract_id = $1 AND state = 'open' AND missed_at <= $2 ORDER BY id",
        )
        .bind(cid)
        .bind(now)
        .fetch_all(tx.conn().await?)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            continue;
        }
        sqlx::query(
            "UPDATE inspection_run SET state = 'missed', probes_pending = 0, version = version + 1 \
             WHERE contract_id = $1 AND state = 'open' AND missed_at <= $2",
        )
        .bind(cid)
        .bind(now)
        .execute(tx.conn().await?)
        .await?;
        tx.audit(
            AuditEntry::new(scope.actor(), "inspection.missed", format!("inspection_runs:{ids:?}"))
                .contract(cid)
                .detail(format!("{} run(s) missed", ids.len())),
        )
        .await?;
        tx.commit().await?;
        total += ids.len();
    }
    Ok(total)
}

/// One probe of one cell of a run, ready to run.
#[derive(Debug, Clone)]
pub struct ProbeTask {
    pub target_key: String,
    pub item_key: String,
    /// The item's probe with `{target}` replaced.
    pub probe: serde_json::Value,
    pub secret: Option<ProbeSecret>,
    /// Why the credential could not be used (the probe is then recorded as failed, not run).
    pub secret_error: Option<Message>,
    pub timeout_s: u32,
}

/// A run's probes.
#[derive(Debug, Clone)]
pub struct ProbeWork {
    pub contract_id: i64,
    pub run_id: i64,
    pub tasks: Vec<ProbeTask>,
}

/// Claims the probe work of up to `limit` open runs that came due (each run once: a claimed run
/// is not handed out again).
pub async fn claim_probe_work(db: &Db, now: i64, limit: i64) -> StoreResult<Vec<ProbeWork>> {
    let rows = sqlx::query(
        "SELECT id, contract_id, plan_id, plan_version FROM inspection_run \
         WHERE probes_pending = 1 AND state = 'open' AND slot_at <= $1 ORDER BY slot_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let (run_id, cid): (i64, i64) = (r.try_get("id")?, r.try_get("contract_id")?);
        // Bookkeeping, not a change of data: which node runs the probes.
        let claimed = sqlx::query("UPDATE inspection_run SET probes_pending = 0 WHERE id = $1 AND probes_pending = 1")
            .bind(run_id)
            .execute(&db.pool)
            .await?
            .rows_affected();
        if claimed == 0 {
            continue;
        }
        let def = version_def(db, cid, r.try_get("plan_id")?, r.try_get("plan_version")?).await?;
        let mut secrets: HashMap<String, Result<ProbeSecret, Message>> = HashMap::new();
        let mut tasks = Vec::new();
        for t in &def.targets {
            let tk = t.key();
            for item in def.items.iter().filter(|i| i.kind == ItemKind::Probe && i.applies_to(&tk)) {
                let Some(probe) = &item.probe else { continue };
                let (secret, secret_error) = match &item.credential {
                    None => (None, None),
                    Some(name) => {
                        if let std::collections::hash_map::Entry::Vacant(e) = secrets.entry(name.clone()) {
                            e.insert(load_secret(db, cid, name).await);
                        }
                        match &secrets[name] {
                            Ok(s) => (Some(s.clone()), None),
                            Err(m) => (None, Some(m.clone())),
                        }
                    }
                };
                tasks.push(ProbeTask {
                    target_key: tk.clone(),
                    item_key: item.key.clone(),
                    probe: rules_of::probe_for(probe, t),
                    secret,
                    secret_error,
                    timeout_s: item.timeout_s.unwrap_or(10),
                });
            }
        }
        out.push(ProbeWork { contract_id: cid, run_id, tasks });
    }
    Ok(out)
}

/// A stored credential opened for a probe run (plan items and monitors), or why it cannot be used.
pub async fn load_secret(db: &Db, cid: i64, name: &str) -> Result<ProbeSecret, Message> {
    let row =
        sqlx::query("SELECT username, secret_enc FROM inspection_credential WHERE contract_id = $1 AND name = $2")
            .bind(cid)
            .bind(name.to_string())
            .fetch_optional(&db.pool)
            .await
            .map_err(|_| Message::new("读取凭据失败", "could not read the credential"))?
            .ok_or_else(|| {
                Message::new(format!("凭据 {name:?} 已被删除"), format!("credential {name:?} was deleted"))
            })?;
    let username: String = row.try_get("username").unwrap_or_default();
    let sealed: String = row.try_get("secret_enc").unwrap_or_default();
    let opened = db.secrets.open(CREDENTIAL_PURPOSE, &sealed).map_err(|_| {
        Message::new(
            "凭据无法用本服务器密钥解密（密钥是否更换过？），请重新保存凭据",
            "the credential does not open with this server's key (was it changed?); store it again",
        )
    })?;
    let s: SealedSecret = serde_json::from_str(&opened).unwrap_or_default();
    Ok(ProbeSecret {
        username: (!username.is_empty()).then_some(username),
        password: s.password,
        private_key: s.private_key,
    })
}

/// What a probe measured, as the job hands it over.
#[derive(Debug, Clone)]
pub struct ProbeOutcome {
    pub target_key: String,
    pub item_key: String,
    pub ok: bool,
    pub reason: Option<Message>,
    pub elapsed_ms: f64,
    /// `[{"key", "value"}]` as the probe reported them.
    pub readings: serde_json::Value,
}

/// Records a run's probe outcomes (judged by the item's expected range), finishes a run that has
/// no manual items once every cell has a result, and raises or recovers tickets.
pub async fn record_probe_results(
    db: &Db,
    contract_id: i64,
    run_id: i64,
    outcomes: &[ProbeOutcome],
    now: i64,
) -> StoreResult<()> {
    let scope = ContractScope::platform(contract_id);
    let Some(run) = load_run_info(db, contract_id, run_id).await? else {
        return Err(StoreError::NotFound);
    };
    let mut tx = db.begin_write(now).await?;
    let st =
        sqlx::query("SELECT state, missed_at, cells, manual_cells, slot_at, due_by FROM inspection_run WHERE id = $1")
            .bind(run_id)
            .fetch_one(tx.conn().await?)
            .await?;
    let open = st.try_get::<String, _>("state")? == "open" && now < st.try_get::<i64, _>("missed_at")?;
    let mut follow = Vec::new();
    let mut summary = Vec::new();
    for o in outcomes {
        let Some(item) = run.plan.items.iter().find(|i| i.key == o.item_key) else { continue };
        let reading = match &item.reading {
            Some(k) => o
                .readings
                .as_array()
                .and_then(|a| a.iter().find(|r| r.get("key").and_then(|v| v.as_str()) == Some(k.as_str())))
                .and_then(|r| r.get("value"))
                .and_then(|v| v.as_f64().or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))),
            None => Some(o.elapsed_ms),
        };
        let ok = rules_of::judge_probe(item, o.ok, reading);
        let text = match (&o.reason, ok, o.ok) {
            (Some(r), _, _) => r.to_string(),
            (None, false, true) => format!(
                "读数 {} 超出范围 / reading {} out of range",
                reading.map(|v| v.to_string()).unwrap_or("-".into()),
                reading.map(|v| v.to_string()).unwrap_or("-".into())
            ),
            _ => String::new(),
        };
        let previous =
            sqlx::query("SELECT op_id FROM inspection_result WHERE run_id = $1 AND target_key = $2 AND item_key = $3")
                .bind(run_id)
                .bind(o.target_key.clone())
                .bind(o.item_key.clone())
                .fetch_optional(tx.conn().await?)
                .await?
                .map(|r| r.try_get::<i64, _>("op_id"))
                .transpose()?;
        let row = sqlx::query(
            "INSERT INTO inspection_op (contract_id, run_id, target_key, item_key, client_op_id, source, ok, value, \
             text_value, readings, note, photo_ids, recorded_at, recorded_by_user_id, recorded_by, received_at, disposition) \
             VALUES ($1, $2, $3, $4, NULL, 'probe', $5, CASE WHEN $11 = 1 THEN $6 END, $7, $8, '', '[]', $9, NULL, 'platform', \
             $9, $10) RETURNING id",
        )
        .bind(contract_id)
        .bind(run_id)
        .bind(o.target_key.clone())
        .bind(o.item_key.clone())
        .bind(i64::from(ok))
        .bind(reading.unwrap_or(0.0))
        .bind(text.chars().take(MAX_NOTE_CHARS).collect::<String>())
        .bind(to_json(&o.readings)?)
        .bind(now)
        .bind(if open { "current" } else { "rejected" })
        .bind(i64::from(reading.is_some()))
        .fetch_one(tx.conn().await?)
        .await?;
        let op_id: i64 = row.try_get("id")?;
        summary.push(format!("{}/{}={}", o.target_key, o.item_key, if ok { "ok" } else { "failed" }));
        if open {
            set_current(
                &mut tx,
                contract_id,
                run.plan_id,
                run_id,
                &o.target_key,
                &o.item_key,
                op_id,
                ok,
                reading,
                now,
                previous,
            )
            .await?;
            follow.push((o.target_key.clone(), o.item_key.clone(), op_id, ok, text));
        }
    }
    refresh_counts(&mut tx, run_id).await?;
    if open && st.try_get::<i64, _>("manual_cells")? == 0 {
        // Probe-only runs finish by themselves once every cell has a result.
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM inspection_result WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(tx.conn().await?)
            .await?
            .try_get("n")?;
        if n >= st.try_get::<i64, _>("cells")? {
            let slot =
                Slot { at: st.try_get("slot_at")?, due_by: st.try_get("due_by")?, missed_at: st.try_get("missed_at")? };
            let state = rules_of::classify(&slot, Some(now), now);
            tx.defer(
                "UPDATE inspection_run SET state = $1, finished_at = $2, signed_by = 'platform', signed_at = $2 \
                 WHERE id = $3 AND state = 'open'",
                vec![state.as_str().into(), now.into(), run_id.into()],
            );
            summary.push(format!("finished:{}", state.as_str()));
        }
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "inspection.probe_results", format!("inspection_run:{run_id}"))
            .contract(contract_id)
            .detail(summary.join(" ")),
    )
    .await?;
    tx.commit().await?;
    for (target, item, op_id, ok, text) in follow {
        if let Err(e) = follow_up(db, &scope, &run, run_id, &target, &item, op_id, ok, &text, now).await {
            tracing::warn!(run = run_id, target, item, error = %e, "inspection ticket follow-up failed");
        }
    }
    Ok(())
}

/// Rolls raw readings older than each plan's retention up into hourly min/avg/max and deletes
/// them. Returns the raw rows rolled up.
pub async fn roll_up(db: &Db, now: i64) -> StoreResult<usize> {
    let plans =
        sqlx::query("SELECT id, contract_id, definition FROM inspection_plan ORDER BY id").fetch_all(&db.pool).await?;
    let upsert = series::rollup_sql(
        db.backend(),
        "inspection_rollup",
        "inspection_sample",
        "plan_id, target_key, item_key",
        "plan_id = $1 AND at < $2",
    );
    let mut total = 0;
    for p in plans {
        let (id, cid): (i64, i64) = (p.try_get("id")?, p.try_get("contract_id")?);
        let days = parse_def(&p.try_get::<String, _>("definition")?)
            .ok()
            .and_then(|d| d.retain_raw_days)
            .unwrap_or(rules_of::DEFAULT_RETAIN_RAW_DAYS);
        let cutoff = (now - i64::from(days) * DAY_MS).div_euclid(HOUR_MS) * HOUR_MS;
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM inspection_sample WHERE plan_id = $1 AND at < $2")
            .bind(id)
            .bind(cutoff)
            .fetch_one(&db.pool)
            .await?
            .try_get("n")?;
        if n == 0 {
            continue;
        }
        let mut tx = db.begin_write(now).await?;
        sqlx::query(sqlx::AssertSqlSafe(upsert.clone())).bind(id).bind(cutoff).execute(tx.conn().await?).await?;
        sqlx::query("DELETE FROM inspection_sample WHERE plan_id = $1 AND at < $2")
            .bind(id)
            .bind(cutoff)
            .execute(tx.conn().await?)
            .await?;
        tx.audit(
            AuditEntry::new(ContractScope::platform(cid).actor(), "inspection.rollup", format!("inspection_plan:{id}"))
                .contract(cid)
                .detail(format!("{n} raw reading(s) before {} rolled up hourly", local_time(cutoff))),
        )
        .await?;
        tx.commit().await?;
        total += n as usize;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// History and compliance

/// The readings of one cell of a plan in `[from, to)`: raw readings for ranges up to three days
/// (aggregated hourly beyond), and the hourly roll-ups of older ones.
pub async fn history(
    db: &Db,
    scope: &ContractScope,
    plan_id: i64,
    target: &str,
    item: &str,
    from: i64,
    to: i64,
) -> StoreResult<Vec<Point>> {
    get_plan(db, scope, plan_id).await?;
    if to <= from || to - from > 400 * DAY_MS {
        return Err(StoreError::invalid("to", Msg::new("时间范围应为 1 到 400 天", "The range is 1 to 400 days")));
    }
    let hourly = to - from > 3 * DAY_MS;
    let group = if hourly { " GROUP BY (at / 3600000) * 3600000" } else { "" };
    let raw_sql = format!(
        "SELECT {} FROM inspection_sample WHERE contract_id = $1 AND plan_id = $2 AND target_key = $3 \
         AND item_key = $4 AND at >= $5 AND at < $6{group}",
        series::raw_columns(db.backend(), hourly)
    );
    let rollup_sql = format!(
        "SELECT {} FROM inspection_rollup WHERE contract_id = $1 AND plan_id = $2 AND target_key = $3 \
         AND item_key = $4 AND hour_at >= $5 AND hour_at < $6",
        series::ROLLUP_COLUMNS
    );
    let mut points = Points::default();
    for (sql, is_hourly) in [(raw_sql, hourly), (rollup_sql, true)] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.contract_id())
            .bind(plan_id)
            .bind(target.to_string())
            .bind(item.to_string())
            .bind(from)
            .bind(to)
            .fetch_all(&db.pool)
            .await?;
        points.add(&rows, is_hourly)?;
    }
    Ok(points.into_points())
}

/// One plan's compliance over a period, with each required slot and its run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanCompliance {
    pub plan_id: i64,
    pub name: String,
    pub duty_id: String,
    pub frequency: String,
    pub calendar: Option<String>,
    pub active: bool,
    pub compliance: Compliance,
    /// slot_at → run id, for the slots that have a run.
    pub run_ids: BTreeMap<i64, i64>,
    /// Years whose holiday data was missing (treated as ordinary weeks).
    pub missing_years: Vec<i32>,
    /// Why parts of the period could not be judged (a version whose schedule no longer resolves).
    pub notes: Vec<Message>,
}

/// Required vs done vs late vs missed per plan over `[from, to)`, judged by the plan version in
/// force at each slot. Slots after `now` are not yet required.
pub async fn compliance(
    db: &Db,
    scope: &ContractScope,
    from: i64,
    to: i64,
    now: i64,
) -> StoreResult<Vec<PlanCompliance>> {
    scope.require(ContractPermission::InspectionRead)?;
    if to <= from || to - from > 400 * DAY_MS {
        return Err(StoreError::invalid("to", Msg::new("时间范围应为 1 到 400 天", "The range is 1 to 400 days")));
    }
    let cid = scope.contract_id();
    let terms = contract_terms(db, cid).await?;
    let holidays = rules::holidays(db).await?;
    let plans = list_plans(db, scope).await?;
    let versions = sqlx::query(
        "SELECT plan_id, version, definition, active, valid_from FROM inspection_plan_version WHERE contract_id = $1 \
         ORDER BY plan_id, version",
    )
    .bind(cid)
    .fetch_all(&db.pool)
    .await?;
    let mut by_plan: HashMap<i64, Vec<(i64, bool, String)>> = HashMap::new();
    for v in &versions {
        by_plan.entry(v.try_get("plan_id")?).or_default().push((
            v.try_get("valid_from")?,
            v.try_get::<i64, _>("active")? != 0,
            v.try_get("definition")?,
        ));
    }
    let runs = sqlx::query(
        "SELECT id, plan_id, slot_at, finished_at, cells, results FROM inspection_run \
         WHERE contract_id = $1 AND slot_at >= $2 AND slot_at < $3",
    )
    .bind(cid)
    .bind(from)
    .bind(to)
    .fetch_all(&db.pool)
    .await?;
    let mut run_facts: HashMap<i64, Vec<(i64, RunFacts)>> = HashMap::new();
    for r in &runs {
        let finished: Option<i64> = r.try_get("finished_at")?;
        let missing = (r.try_get::<i64, _>("cells")? - r.try_get::<i64, _>("results")?).max(0) as u32;
        run_facts.entry(r.try_get("plan_id")?).or_default().push((
            r.try_get("id")?,
            RunFacts { slot_at: r.try_get("slot_at")?, finished_at: finished, missing_items: missing },
        ));
    }
    let mut out = Vec::new();
    for p in plans {
        let mut span = Span::default();
        let mut slots = Vec::new();
        let mut notes = Vec::new();
        let vs = by_plan.remove(&p.id).unwrap_or_default();
        for (i, (valid_from, active, def)) in vs.iter().enumerate() {
            let valid_to = vs.get(i + 1).map(|v| v.0).unwrap_or(i64::MAX);
            let (a, b) = (from.max(*valid_from), to.min(valid_to));
            if !active || a >= b {
                continue;
            }
            match parse_def(def).map(|d| rules_of::schedule_of(&d, &terms.duties, &terms.calendars)) {
                Ok(Ok(s)) => slots.extend(s.slots(&holidays, a, b, &mut span)),
                _ => notes.push(Message::new(
                    format!("{} 起的计划版本频率或日历无法解析，该段未计入", local_time(*valid_from)),
                    format!(
                        "the plan version from {} no longer resolves; that part is not counted",
                        local_time(*valid_from)
                    ),
                )),
            }
        }
        let facts = run_facts.remove(&p.id).unwrap_or_default();
        let run_ids = facts.iter().map(|(id, f)| (f.slot_at, *id)).collect();
        let facts: Vec<RunFacts> = facts.into_iter().map(|(_, f)| f).collect();
        out.push(PlanCompliance {
            plan_id: p.id,
            name: p.name,
            duty_id: p.duty_id,
            frequency: p.frequency,
            calendar: p.calendar,
            active: p.active,
            compliance: rules_of::compliance(&slots, &facts, now),
            run_ids,
            missing_years: span.missing_years.into_iter().collect(),
            notes,
        });
    }
    Ok(out)
}
