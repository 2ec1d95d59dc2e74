//! Tickets of the service desk: intake, the lifecycle steps decided by [`yunwei_core::ticket`],
//! comments, time spent, links and merge, the fault analysis and the major-incident summary,
//! satisfaction ratings, lists with the SLA clocks of each ticket.
//!
//! Invariants:
//! - Every ticket keeps the contract file version it was opened under; its clocks are that
//!   version's, whatever is imported later.
//! - `ticket_event` is the ticket's whole history; the rows whose `sla` column is set are the SLA
//!   engine's input, and `due_sort`/`next_check_at` are derived from them in the same transaction
//!   that adds them (so lists and the scheduler never see a stale order).
//! - Client end users see their own tickets only, and never internal comments or attachments.
//! - Changes carry the version the caller read; a concurrent change makes the second one a conflict.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use yunwei_core::Msg;
use yunwei_core::authz::{ContractPermission, ContractRole};
use yunwei_core::calendar::HolidayTable;
use yunwei_core::desk;
use yunwei_core::sla::{self, ClockStatus, Event, EventKind};
use yunwei_core::text::{multi_line, single_line};
use yunwei_core::ticket::{self, Action, Kind, State};

use crate::audit::AuditEntry;
use crate::db::{Arg, Backend, Db, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::notifications::{self, Recipients};
use crate::principal::ContractScope;
use crate::rules::{self, Rules};

/// Sort key of a ticket with no running clock: after every due time.
pub const NO_DUE: i64 = 9_000_000_000_000_000;

pub const CHANNELS: [&str; 8] = ["phone", "email", "im", "web", "onsite", "inspection", "alert", "api"];

/// How far in the past a report may be received (entered late from a paper log).
const MAX_BACKDATE_MS: i64 = 90 * 86_400_000;
/// Clock skew tolerated between the desk's watch and the server.
const FUTURE_TOLERANCE_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub id: i64,
    pub contract_id: i64,
    pub number: String,
    pub contract_version: i64,
    pub kind: String,
    pub state: String,
    pub level: String,
    pub incident_class: String,
    pub title: String,
    pub description: String,
    pub channel: String,
    pub reporter_user_id: Option<i64>,
    pub reporter_name: String,
    pub reporter_contact: String,
    pub system_name: String,
    pub asset_ref: String,
    pub received_at: i64,
    pub created_at: i64,
    pub created_by: String,
    pub assignee_user_id: Option<i64>,
    pub assignee_name: Option<String>,
    pub team: String,
    pub is_open: bool,
    /// Earliest due time of a running clock ([`NO_DUE`] when none runs).
    pub due_sort: i64,
    pub analysis: Analysis,
    pub analysis_at: Option<i64>,
    pub summary: String,
    pub summary_at: Option<i64>,
    pub rating: Option<i64>,
    pub rating_comment: String,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub minutes_spent: i64,
    pub parent_id: Option<i64>,
    pub duplicate_of: Option<i64>,
    pub source_key: Option<String>,
    pub updated_at: i64,
    pub version: i64,
}

/// The fault analysis record (SD7): 原因 / 处理过程 / 影响 / 整改建议.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    pub cause: String,
    pub process: String,
    pub impact: String,
    pub recommendation: String,
}

impl Ticket {
    pub fn kind(&self) -> Kind {
        Kind::parse(&self.kind).unwrap_or(Kind::Fault)
    }

    pub fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Recorded)
    }
}

const SELECT: &str =
    "SELECT t.*, u.display_name AS assignee_name FROM ticket t LEFT JOIN app_user u ON u.id = t.assignee_user_id";

fn ticket_from_row(row: &AnyRow) -> StoreResult<Ticket> {
    Ok(Ticket {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        number: row.try_get("number")?,
        contract_version: row.try_get("contract_version")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        level: row.try_get("level")?,
        incident_class: row.try_get("incident_class")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        channel: row.try_get("channel")?,
        reporter_user_id: row.try_get("reporter_user_id")?,
        reporter_name: row.try_get("reporter_name")?,
        reporter_contact: row.try_get("reporter_contact")?,
        system_name: row.try_get("system_name")?,
        asset_ref: row.try_get("asset_ref")?,
        received_at: row.try_get("received_at")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        assignee_user_id: row.try_get("assignee_user_id")?,
        assignee_name: row.try_get("assignee_name").ok().flatten(),
        team: row.try_get("team")?,
        is_open: row.try_get::<i64, _>("is_open")? != 0,
        due_sort: row.try_get("due_sort")?,
        analysis: Analysis {
            cause: row.try_get("analysis_cause")?,
            process: row.try_get("analysis_process")?,
            impact: row.try_get("analysis_impact")?,
            recommendation: row.try_get("analysis_recommendation")?,
        },
        analysis_at: row.try_get("analysis_at")?,
        summary: row.try_get("summary")?,
        summary_at: row.try_get("summary_at")?,
        rating: row.try_get("rating")?,
        rating_comment: row.try_get("rating_comment")?,
        resolved_at: row.try_get("resolved_at")?,
        closed_at: row.try_get("closed_at")?,
        minutes_spent: row.try_get("minutes_spent")?,
        parent_id: row.try_get("parent_id")?,
        duplicate_of: row.try_get("duplicate_of")?,
        source_key: row.try_get("source_key")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

const CHANGED: Msg =
    Msg::new("工单已被他人修改，请刷新后重试", "The ticket was changed by someone else; reload and retry");

// ---------------------------------------------------------------------------------------------
// Intake

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub kind: String,
    pub level: String,
    #[serde(default)]
    pub incident_class: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub channel: String,
    /// A member of the contract who reported it (set by the portal to the caller).
    #[serde(default)]
    pub reporter_user_id: Option<i64>,
    #[serde(default)]
    pub reporter_name: String,
    #[serde(default)]
    pub reporter_contact: String,
    #[serde(default)]
    pub system_name: String,
    #[serde(default)]
    pub asset_ref: String,
    /// When the report reached the desk; may be earlier than now (entered from a phone log).
    #[serde(default)]
    pub received_at: Option<i64>,
    /// Raised by an inspection or an alert: one open ticket per key (a repeat is commented on).
    #[serde(default)]
    pub source_key: Option<String>,
}

/// What intake did: a new ticket, or a comment on the open ticket with the same source key.
#[derive(Debug, Clone, Serialize)]
pub struct Intake {
    pub ticket: Ticket,
    pub created: bool,
}

struct CheckedNew {
    kind: Kind,
    level: String,
    incident_class: String,
    title: String,
    description: String,
    channel: String,
    reporter_user_id: Option<i64>,
    reporter_name: String,
    reporter_contact: String,
    system_name: String,
    asset_ref: String,
    received_at: i64,
    source_key: Option<String>,
}

fn check_level(rules: &Rules, level: &str) -> StoreResult<()> {
    if rules.compiled.file.levels.iter().any(|l| l.name.get_ref() == level) {
        Ok(())
    } else {
        Err(invalid("level", "合同中没有该级别", "The contract has no such level"))
    }
}

fn check_class(rules: &Rules, class: &str) -> StoreResult<()> {
    if class.is_empty() || rules.compiled.file.escalation.iter().any(|s| s.class == class) {
        Ok(())
    } else {
        Err(invalid("incident_class", "合同中没有该事件等级", "The contract has no such incident class"))
    }
}

async fn check_new(
    db: &Db,
    scope: &ContractScope,
    rules: &Rules,
    input: &NewTicket,
    now: i64,
) -> StoreResult<CheckedNew> {
    let kind = Kind::parse(input.kind.trim()).ok_or(invalid("kind", "工单类型无效", "Unknown ticket kind"))?;
    let level = input.level.trim().to_string();
    check_level(rules, &level)?;
    let incident_class = input.incident_class.trim().to_string();
    check_class(rules, &incident_class)?;
    let channel = input.channel.trim().to_string();
    if !CHANNELS.contains(&channel.as_str()) {
        return Err(invalid("channel", "来源渠道无效", "Unknown channel"));
    }
    let received_at = input.received_at.unwrap_or(now);
    if received_at > now + FUTURE_TOLERANCE_MS {
        return Err(invalid("received_at", "受理时间不能晚于当前时间", "The time received cannot be in the future"));
    }
    if received_at < now - MAX_BACKDATE_MS {
        return Err(invalid(
            "received_at",
            "受理时间不能早于 90 天前",
            "The time received cannot be more than 90 days ago",
        ));
    }
    // End users report for themselves only; the client's supervisor for themselves unless they
    // name someone; the vendor's staff enter whoever called.
    let reporter_user_id = match scope.role() {
        ContractRole::ClientEndUser => scope.actor().user_id,
        ContractRole::ClientSupervisor if input.reporter_user_id.is_none() && input.reporter_name.trim().is_empty() => {
            scope.actor().user_id
        }
        _ => input.reporter_user_id,
    };
    let mut reporter_name =
        single_line(&input.reporter_name, 100, false).map_err(|m| StoreError::invalid("reporter_name", m))?;
    if let Some(uid) = reporter_user_id {
        let row = sqlx::query(
            "SELECT u.display_name FROM membership m JOIN app_user u ON u.id = m.user_id WHERE m.contract_id = $1 AND m.user_id = $2",
        )
        .bind(scope.contract_id())
        .bind(uid)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(invalid("reporter_user_id", "报告人不是本合同的成员", "The reporter is not a member of this contract"))?;
        if reporter_name.is_empty() {
            reporter_name = row.try_get("display_name")?;
        }
    }
    if reporter_name.is_empty() {
        return Err(invalid("reporter_name", "请填写报告人", "Enter the reporter"));
    }
    let source_key = match &input.source_key {
        Some(k) => Some(single_line(k, 200, true).map_err(|m| StoreError::invalid("source_key", m))?),
        None => None,
    };
    Ok(CheckedNew {
        kind,
        level,
        incident_class,
        title: single_line(&input.title, 200, true).map_err(|m| StoreError::invalid("title", m))?,
        description: multi_line(&input.description, 20_000).map_err(|m| StoreError::invalid("description", m))?,
        channel,
        reporter_user_id,
        reporter_name,
        reporter_contact: single_line(&input.reporter_contact, 200, false)
            .map_err(|m| StoreError::invalid("reporter_contact", m))?,
        system_name: single_line(&input.system_name, 200, false).map_err(|m| StoreError::invalid("system_name", m))?,
        asset_ref: single_line(&input.asset_ref, 200, false).map_err(|m| StoreError::invalid("asset_ref", m))?,
        received_at,
        source_key,
    })
}

async fn require_rules(db: &Db, scope: &ContractScope) -> StoreResult<Arc<Rules>> {
    rules::current(db, scope.contract_id()).await?.ok_or(StoreError::Conflict(Msg::new(
        "该合同尚未导入合同文件（SLA 条款），不能受理工单",
        "This contract has no contract file (SLA terms) yet; tickets cannot be recorded",
    )))
}

/// Records a new ticket (or, for a repeated inspection/alert finding, comments on the open one).
pub async fn create(db: &Db, scope: &ContractScope, input: &NewTicket, now: i64) -> StoreResult<Intake> {
    scope.require(ContractPermission::TicketCreate)?;
    let rules = require_rules(db, scope).await?;
    let holidays = rules::holidays(db).await?;
    let n = check_new(db, scope, &rules, input, now).await?;
    let needs_approval = n.kind == Kind::ServiceRequest && rules.compiled.desk.requests_need_approval;
    let state = ticket::initial_state(n.kind, needs_approval);
    let mut tx = db.begin_write(now).await?;
    if let Some(key) = &n.source_key {
        let open = sqlx::query("SELECT id FROM ticket WHERE contract_id = $1 AND source_key = $2 AND is_open = 1")
            .bind(scope.contract_id())
            .bind(key.clone())
            .fetch_optional(tx.conn().await?)
            .await?;
        if let Some(row) = open {
            let id: i64 = row.try_get("id")?;
            let body = format!("再次发生 / Happened again: {}\n{}", n.title, n.description);
            insert_comment(&mut tx, scope, id, &body, true, "api", now).await?;
            tx.audit(
                AuditEntry::new(scope.actor(), "ticket.repeat", format!("ticket:{id}")).contract(scope.contract_id()),
            )
            .await?;
            tx.commit().await?;
            return Ok(Intake { ticket: get(db, scope, id).await?, created: false });
        }
    }
    let events = vec![
        Event { at: n.received_at, kind: EventKind::Created },
        Event { at: n.received_at, kind: EventKind::LevelSet(n.level.clone()) },
    ];
    let facts = Facts { state, level: &n.level, incident_class: &n.incident_class, received_at: n.received_at };
    let derived = derive(&rules, &holidays, &facts, &events, now);
    // The next number of the contract is taken inside the insert (the writer lock is held), so
    // that a ticket costs one round trip to the database before its history rows.
    let number_sql = match db.backend() {
        Backend::Sqlite => "printf('%s-%06d', $2, n.s)",
        Backend::Postgres => "$2 || '-' || CASE WHEN n.s < 1000000 THEN lpad(n.s::text, 6, '0') ELSE n.s::text END",
    };
    let sql = format!(
        "INSERT INTO ticket (contract_id, seq, number, contract_version, kind, state, level, incident_class, title, \
         description, channel, reporter_user_id, reporter_name, reporter_contact, system_name, asset_ref, received_at, \
         created_at, created_by, is_open, due_sort, next_check_at, source_key, updated_at) \
         SELECT $1, n.s, {number_sql}, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 1, $19, $20, $21, $17 \
         FROM (SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM ticket WHERE contract_id = $1) n \
         RETURNING *"
    );
    // With the transaction's BEGIN (on SQLite, one round trip).
    let args: Vec<Arg> = vec![
        scope.contract_id().into(),
        rules.code.clone().into(),
        rules.version.into(),
        n.kind.as_str().into(),
        state.as_str().into(),
        n.level.clone().into(),
        n.incident_class.clone().into(),
        n.title.clone().into(),
        n.description.clone().into(),
        n.channel.clone().into(),
        n.reporter_user_id.into(),
        n.reporter_name.clone().into(),
        n.reporter_contact.clone().into(),
        n.system_name.clone().into(),
        n.asset_ref.clone().into(),
        n.received_at.into(),
        now.into(),
        scope.actor().name.clone().into(),
        derived.due_sort.into(),
        derived.next_check_at.into(),
        n.source_key.clone().into(),
    ];
    let row = tx.fetch_one(sql, args).await?;
    // The new row as inserted: nobody is assigned yet, so no join is needed to answer.
    let ticket = ticket_from_row(&row)?;
    let id = ticket.id;
    let number = ticket.number.clone();
    let fired = crate::desk_jobs::fire(&mut tx, scope, &ticket, &rules, &derived.due, now, true).await?;
    let detail = format!("{} {} {} 渠道/channel={}", n.kind.as_str(), n.level, n.title, n.channel);
    insert_event(&mut tx, scope, id, n.received_at, "create", Some("created"), &detail).await?;
    insert_event(&mut tx, scope, id, n.received_at, "level", Some(&format!("level:{}", n.level)), &n.level).await?;
    if state == State::AwaitingApproval {
        notifications::send(
            &mut tx,
            scope.contract_id(),
            Some(id),
            &Recipients::Role(ContractRole::ClientSupervisor),
            "approval",
            &format!("[{number}] 服务请求待审批 / Service request awaiting approval"),
            &n.title,
        )
        .await?;
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.create", format!("ticket:{id}"))
            .contract(scope.contract_id())
            .detail(format!("{number} {detail}{}", notices_fired(&fired))),
    )
    .await?;
    tx.commit().await?;
    Ok(Intake { ticket, created: true })
}

async fn insert_event(
    tx: &mut WriteTx,
    scope: &ContractScope,
    ticket_id: i64,
    at: i64,
    action: &str,
    sla: Option<&str>,
    detail: &str,
) -> StoreResult<()> {
    // Nothing in the transaction needs the row back: it goes with the next batch.
    tx.defer(
        "INSERT INTO ticket_event (contract_id, ticket_id, at, action, sla, actor_user_id, actor_name, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            scope.contract_id().into(),
            ticket_id.into(),
            at.into(),
            action.into(),
            sla.into(),
            scope.actor().user_id.into(),
            scope.actor().name.clone().into(),
            detail.into(),
        ],
    );
    Ok(())
}

async fn insert_comment(
    tx: &mut WriteTx,
    scope: &ContractScope,
    ticket_id: i64,
    body: &str,
    internal: bool,
    via: &str,
    now: i64,
) -> StoreResult<i64> {
    let row = sqlx::query(
        "INSERT INTO ticket_comment (contract_id, ticket_id, author_user_id, author_name, body, internal, via, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(ticket_id)
    .bind(scope.actor().user_id)
    .bind(scope.actor().name.clone())
    .bind(body.to_string())
    .bind(i64::from(internal))
    .bind(via.to_string())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await?;
    Ok(row.try_get("id")?)
}

// ---------------------------------------------------------------------------------------------
// Derived SLA state

struct Facts<'a> {
    state: State,
    level: &'a str,
    incident_class: &'a str,
    received_at: i64,
}

struct Derived {
    due_sort: i64,
    next_check_at: Option<i64>,
    /// Notices due now, fired in the transaction of the change that made them due.
    due: Vec<desk::Notice>,
}

/// What the desk rules need to know of a ticket. The confirmation wait starts at the latest
/// resolution (a reopened and re-solved ticket waits again from the new one).
fn desk_facts<'a>(f: &'a Facts<'a>, events: &'a [Event]) -> desk::TicketFacts<'a> {
    let awaiting_since = (f.state == State::AwaitingConfirmation)
        .then(|| events.iter().rev().find(|e| e.kind == EventKind::Resolved).map(|e| e.at))
        .flatten();
    desk::TicketFacts {
        level: f.level,
        incident_class: (!f.incident_class.is_empty()).then_some(f.incident_class),
        received_at: f.received_at,
        events,
        resolved: matches!(f.state, State::AwaitingConfirmation | State::Closed | State::Cancelled),
        awaiting_confirmation_since: awaiting_since,
        closed_or_cancelled: !f.state.is_open(),
    }
}

/// The desk plan of a stored ticket (the scheduler's view).
pub(crate) fn plan_of(rules: &Rules, holidays: &HolidayTable, t: &Ticket, events: &[Event], now: i64) -> desk::Plan {
    let facts =
        Facts { state: t.state(), level: &t.level, incident_class: &t.incident_class, received_at: t.received_at };
    desk::plan(&rules.compiled, holidays, &desk_facts(&facts, events), now)
}

fn derive(rules: &Rules, holidays: &HolidayTable, f: &Facts<'_>, events: &[Event], now: i64) -> Derived {
    let due_sort = if f.state.is_open() {
        clocks(rules, holidays, events, now)
            .iter()
            .filter(|c| c.stopped_at.is_none() && c.due_at.is_some() && !c.paused.iter().any(|p| p.1.is_none()))
            .filter_map(|c| c.due_at)
            .min()
            .unwrap_or(NO_DUE)
    } else {
        NO_DUE
    };
    let plan = desk::plan(&rules.compiled, holidays, &desk_facts(f, events), now);
    // Closing a ticket is the scheduler's own step (it goes through `act`); everything else that
    // is due goes out with this change.
    let (auto_close, due): (Vec<_>, Vec<_>) = plan.due.into_iter().partition(|n| n.kind == desk::NoticeKind::AutoClose);
    let next_check_at = if auto_close.is_empty() { plan.next_at } else { Some(now) };
    Derived { due_sort, next_check_at, due }
}

/// Every clock of the contract version for this history (clocks without a target for the level
/// are left out).
pub fn clocks(rules: &Rules, holidays: &HolidayTable, events: &[Event], now: i64) -> Vec<ClockStatus> {
    let always = yunwei_core::calendar::Calendar::always();
    rules
        .compiled
        .clocks
        .iter()
        .map(|(rule, cal)| {
            let cal = rules.compiled.calendars.get(cal).unwrap_or(&always);
            sla::evaluate(rule, cal, holidays, events, now)
        })
        .filter(|s| s.phase != sla::Phase::NoTarget)
        .collect()
}

pub(crate) async fn sla_events(conn: &mut sqlx::AnyConnection, ticket_id: i64) -> StoreResult<Vec<Event>> {
    let rows = sqlx::query("SELECT at, sla FROM ticket_event WHERE ticket_id = $1 AND sla IS NOT NULL ORDER BY id")
        .bind(ticket_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| Ok(Event { at: r.try_get("at")?, kind: ticket::parse_sla_event(&r.try_get::<String, _>("sla")?) }))
        .collect()
}

/// Recomputes the derived columns of one ticket inside a write transaction and fires the notices
/// the change made due. Returns the keys fired (for the change's audit record).
async fn refresh(tx: &mut WriteTx, db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<Vec<String>> {
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE t.contract_id = $1 AND t.id = $2")))
        .bind(scope.contract_id())
        .bind(id)
        .fetch_one(tx.conn().await?)
        .await?;
    let t = ticket_from_row(&row)?;
    let rules = rules::version(db, t.contract_id, t.contract_version).await?;
    let holidays = rules::holidays(db).await?;
    let events = sla_events(tx.conn().await?, t.id).await?;
    let facts =
        Facts { state: t.state(), level: &t.level, incident_class: &t.incident_class, received_at: t.received_at };
    let d = derive(&rules, &holidays, &facts, &events, now);
    sqlx::query("UPDATE ticket SET due_sort = $1, next_check_at = $2 WHERE id = $3")
        .bind(d.due_sort)
        .bind(d.next_check_at)
        .bind(t.id)
        .execute(tx.conn().await?)
        .await?;
    crate::desk_jobs::fire(tx, scope, &t, &rules, &d.due, now, false).await
}

fn notices_fired(keys: &[String]) -> String {
    if keys.is_empty() { String::new() } else { format!(" notices={}", keys.join(",")) }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One ticket, if the caller may see it (end users: their own only).
pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Ticket> {
    scope.require(ContractPermission::TicketRead)?;
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE t.contract_id = $1 AND t.id = $2")))
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let t = ticket_from_row(&row)?;
    if !may_see(scope, &t) {
        return Err(StoreError::NotFound);
    }
    Ok(t)
}

/// Finds a ticket by its number (mail replies quote it in the subject).
pub async fn get_by_number(db: &Db, scope: &ContractScope, number: &str) -> StoreResult<Ticket> {
    let row = sqlx::query("SELECT id FROM ticket WHERE contract_id = $1 AND number = $2")
        .bind(scope.contract_id())
        .bind(number.to_string())
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    get(db, scope, row.try_get("id")?).await
}

fn may_see(scope: &ContractScope, t: &Ticket) -> bool {
    scope.role() != ContractRole::ClientEndUser
        || (t.reporter_user_id.is_some() && t.reporter_user_id == scope.actor().user_id)
}

fn sees_internal(scope: &ContractScope) -> bool {
    !scope.role().is_client_side()
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketEvent {
    pub at: i64,
    pub action: String,
    pub sla: Option<String>,
    pub actor_name: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: i64,
    pub author_name: String,
    pub body: String,
    pub internal: bool,
    pub via: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkEntry {
    pub user_name: String,
    pub minutes: i64,
    pub note: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub ticket_id: i64,
    pub number: String,
    pub title: String,
    pub state: String,
    /// parent, child, duplicate_of, duplicate, related, explains, explained_by
    pub relation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub key: String,
    pub kind: String,
    pub due_at: i64,
    pub fired_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClockView {
    pub name: String,
    pub description: String,
    pub phase: &'static str,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub target_ms: Option<i64>,
    pub due_at: Option<i64>,
    pub used_ms: i64,
    pub left_ms: Option<i64>,
    pub breached_by_ms: Option<i64>,
    pub paused: Vec<(i64, Option<i64>)>,
}

fn clock_view(rules: &Rules, s: ClockStatus) -> ClockView {
    let description = rules
        .compiled
        .file
        .clocks
        .iter()
        .find(|c| c.name.get_ref() == &s.name)
        .map(|c| c.description.clone())
        .unwrap_or_default();
    let (phase, breached_by_ms) = match s.phase {
        sla::Phase::NotStarted => ("not_started", None),
        sla::Phase::NoTarget => ("no_target", None),
        sla::Phase::Running => ("running", None),
        sla::Phase::Paused => ("paused", None),
        sla::Phase::Met => ("met", None),
        sla::Phase::Breached { by_ms } => ("breached", Some(by_ms)),
    };
    ClockView {
        name: s.name,
        description,
        phase,
        started_at: s.started_at,
        stopped_at: s.stopped_at,
        target_ms: s.target_ms,
        due_at: s.due_at,
        used_ms: s.used_ms,
        left_ms: s.left_ms,
        breached_by_ms,
        paused: s.paused,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    pub ticket: Ticket,
    pub clocks: Vec<ClockView>,
    pub events: Vec<TicketEvent>,
    pub comments: Vec<Comment>,
    pub attachments: Vec<crate::attachments::Attachment>,
    pub work: Vec<WorkEntry>,
    pub links: Vec<Link>,
    pub notices: Vec<Notice>,
    /// Lifecycle steps the caller may take now.
    pub actions: Vec<&'static str>,
    /// The contract requires the fault analysis before this ticket can be solved.
    pub analysis_required: bool,
    /// The contract has a summary-report clock running for this ticket (major incidents).
    pub summary_due: bool,
}

pub async fn detail(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<TicketDetail> {
    let t = get(db, scope, id).await?;
    let rules = rules::version(db, t.contract_id, t.contract_version).await?;
    let holidays = rules::holidays(db).await?;
    let mut conn = db.pool.acquire().await?;
    let sla_evts = sla_events(&mut conn, id).await?;
    let clock_list = clocks(&rules, &holidays, &sla_evts, now);
    let summary_due = clock_list.iter().any(|c| {
        rules
            .compiled
            .clocks
            .iter()
            .any(|(r, _)| r.name == c.name && r.stop == EventKind::Custom(ticket::SUMMARY_SUBMITTED.into()))
            && c.started_at.is_some()
    });
    let clocks = clock_list.into_iter().map(|c| clock_view(&rules, c)).collect();
    let events = sqlx::query("SELECT at, action, sla, actor_name, detail FROM ticket_event WHERE ticket_id = $1 AND contract_id = $2 ORDER BY id")
        .bind(id)
        .bind(scope.contract_id())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(TicketEvent {
                at: r.try_get("at")?,
                action: r.try_get("action")?,
                sla: r.try_get("sla")?,
                actor_name: r.try_get("actor_name")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let internal_filter = if sees_internal(scope) { "" } else { " AND internal = 0" };
    let comments = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, author_name, body, internal, via, created_at FROM ticket_comment WHERE ticket_id = $1 AND contract_id = $2{internal_filter} ORDER BY id"
    )))
    .bind(id)
    .bind(scope.contract_id())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Comment {
            id: r.try_get("id")?,
            author_name: r.try_get("author_name")?,
            body: r.try_get("body")?,
            internal: r.try_get::<i64, _>("internal")? != 0,
            via: r.try_get("via")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .collect::<StoreResult<Vec<_>>>()?;
    let work = sqlx::query(
        "SELECT user_name, minutes, note, at FROM ticket_worklog WHERE ticket_id = $1 AND contract_id = $2 ORDER BY id",
    )
    .bind(id)
    .bind(scope.contract_id())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(WorkEntry {
            user_name: r.try_get("user_name")?,
            minutes: r.try_get("minutes")?,
            note: r.try_get("note")?,
            at: r.try_get("at")?,
        })
    })
    .collect::<StoreResult<Vec<_>>>()?;
    let notices = if sees_internal(scope) {
        sqlx::query("SELECT notice_key, kind, due_at, fired_at FROM ticket_notice WHERE ticket_id = $1 AND contract_id = $2 ORDER BY due_at, notice_key")
            .bind(id)
            .bind(scope.contract_id())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(Notice {
                    key: r.try_get("notice_key")?,
                    kind: r.try_get("kind")?,
                    due_at: r.try_get("due_at")?,
                    fired_at: r.try_get("fired_at")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?
    } else {
        Vec::new()
    };
    drop(conn);
    let links = links(db, scope, &t).await?;
    let attachments = crate::attachments::list(db, scope, id, sees_internal(scope)).await?;
    let analysis_required = t.kind() == Kind::Fault && rules.compiled.desk.fault_analysis_required;
    let actions = Action::ALL
        .into_iter()
        .filter(|a| *a != Action::AutoClose)
        .filter(|a| ticket::transition(t.state(), *a, &context(scope, &t, analysis_required)).is_ok())
        .map(|a| a.as_str())
        .collect();
    Ok(TicketDetail {
        ticket: t,
        clocks,
        events,
        comments,
        attachments,
        work,
        links,
        notices,
        actions,
        analysis_required,
        summary_due,
    })
}

async fn links(db: &Db, scope: &ContractScope, t: &Ticket) -> StoreResult<Vec<Link>> {
    let rows = sqlx::query(
        "SELECT l.kind, l.from_id, l.to_id, o.id AS other_id, o.number, o.title, o.state FROM ticket_link l \
         JOIN ticket o ON o.id = CASE WHEN l.from_id = $1 THEN l.to_id ELSE l.from_id END \
         WHERE l.contract_id = $2 AND (l.from_id = $1 OR l.to_id = $1) \
         UNION ALL \
         SELECT 'parent', 0, 0, o.id, o.number, o.title, o.state FROM ticket o WHERE o.contract_id = $2 AND o.id = $3 \
         UNION ALL \
         SELECT 'child', 0, 0, o.id, o.number, o.title, o.state FROM ticket o WHERE o.contract_id = $2 AND o.parent_id = $1 \
         UNION ALL \
         SELECT 'duplicate_of', 0, 0, o.id, o.number, o.title, o.state FROM ticket o WHERE o.contract_id = $2 AND o.id = $4 \
         UNION ALL \
         SELECT 'duplicate', 0, 0, o.id, o.number, o.title, o.state FROM ticket o WHERE o.contract_id = $2 AND o.duplicate_of = $1",
    )
    .bind(t.id)
    .bind(scope.contract_id())
    .bind(t.parent_id.unwrap_or(0))
    .bind(t.duplicate_of.unwrap_or(0))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            let from: i64 = r.try_get("from_id")?;
            let relation = match kind.as_str() {
                "explains" if from == t.id => "explains".to_string(),
                "explains" => "explained_by".to_string(),
                other => other.to_string(),
            };
            Ok(Link {
                ticket_id: r.try_get("other_id")?,
                number: r.try_get("number")?,
                title: r.try_get("title")?,
                state: r.try_get("state")?,
                relation,
            })
        })
        .collect()
}

fn context(scope: &ContractScope, t: &Ticket, analysis_required: bool) -> ticket::Context {
    let me = scope.actor().user_id;
    ticket::Context {
        kind: t.kind(),
        role: (!scope.is_platform()).then_some(scope.role()),
        is_reporter: me.is_some() && t.reporter_user_id == me,
        is_assignee: me.is_some() && t.assignee_user_id == me,
        analysis_required,
        analysis_recorded: t.analysis_at.is_some(),
    }
}

// ---------------------------------------------------------------------------------------------
// Lists

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TicketFilter {
    /// open (default), all, mine, reported, breaching, awaiting_confirmation, awaiting_approval, closed
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub assignee: Option<i64>,
    /// Received on or after this day (YYYY-MM-DD, Shanghai).
    #[serde(default)]
    pub from: Option<String>,
    /// Received on or before this day.
    #[serde(default)]
    pub to: Option<String>,
    /// Words in the title, description or number.
    #[serde(default)]
    pub q: Option<String>,
    /// time_left (default for open views), newest, oldest
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketRow {
    #[serde(flatten)]
    pub ticket: Ticket,
    /// The running clock nearest its due time: name and business milliseconds left (negative once breached).
    pub next_clock: Option<String>,
    pub left_ms: Option<i64>,
    pub breached: bool,
    pub paused: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketPage {
    pub rows: Vec<TicketRow>,
    pub next_cursor: Option<String>,
}

enum Bind {
    I(i64),
    S(String),
}

/// Builds the WHERE clause of a list. Every condition is a bound parameter; only fixed SQL text is
/// concatenated.
fn list_where(scope: &ContractScope, f: &TicketFilter) -> StoreResult<(String, Vec<Bind>, &'static str)> {
    let mut sql = String::from(" WHERE t.contract_id = $1");
    let mut binds = vec![Bind::I(scope.contract_id())];
    let push = |cond: &str, b: Bind, sql: &mut String, binds: &mut Vec<Bind>| {
        binds.push(b);
        sql.push_str(&cond.replace('?', &format!("${}", binds.len())));
    };
    let me = scope.actor().user_id.unwrap_or(-1);
    if scope.role() == ContractRole::ClientEndUser {
        push(" AND t.reporter_user_id = ?", Bind::I(me), &mut sql, &mut binds);
    }
    let view = f.view.as_deref().unwrap_or("open");
    let mut default_sort = "time_left";
    match view {
        "open" => sql.push_str(" AND t.is_open = 1"),
        "all" => default_sort = "newest",
        "mine" => {
            sql.push_str(" AND t.is_open = 1");
            push(" AND t.assignee_user_id = ?", Bind::I(me), &mut sql, &mut binds);
        }
        "reported" => {
            default_sort = "newest";
            push(" AND t.reporter_user_id = ?", Bind::I(me), &mut sql, &mut binds);
        }
        "breaching" => {
            // Breached or due within the next four hours.
            sql.push_str(" AND t.is_open = 1");
            push(" AND t.due_sort < ?", Bind::I(NO_DUE - 1), &mut sql, &mut binds);
        }
        "awaiting_confirmation" => sql.push_str(" AND t.is_open = 1 AND t.state = 'awaiting_confirmation'"),
        "awaiting_approval" => sql.push_str(" AND t.is_open = 1 AND t.state = 'awaiting_approval'"),
        "closed" => {
            default_sort = "newest";
            sql.push_str(" AND t.is_open = 0");
        }
        _ => return Err(invalid("view", "列表视图无效", "Unknown list view")),
    }
    if let Some(v) = f.level.as_deref().filter(|v| !v.is_empty()) {
        push(" AND t.level = ?", Bind::S(v.into()), &mut sql, &mut binds);
    }
    if let Some(v) = f.kind.as_deref().filter(|v| !v.is_empty()) {
        Kind::parse(v).ok_or(invalid("kind", "工单类型无效", "Unknown ticket kind"))?;
        push(" AND t.kind = ?", Bind::S(v.into()), &mut sql, &mut binds);
    }
    if let Some(v) = f.state.as_deref().filter(|v| !v.is_empty()) {
        State::parse(v).ok_or(invalid("state", "状态无效", "Unknown state"))?;
        push(" AND t.state = ?", Bind::S(v.into()), &mut sql, &mut binds);
    }
    if let Some(v) = f.system.as_deref().filter(|v| !v.is_empty()) {
        push(" AND t.system_name = ?", Bind::S(v.into()), &mut sql, &mut binds);
    }
    if let Some(v) = f.channel.as_deref().filter(|v| !v.is_empty()) {
        push(" AND t.channel = ?", Bind::S(v.into()), &mut sql, &mut binds);
    }
    if let Some(v) = f.team.as_deref().filter(|v| !v.is_empty()) {
        push(" AND t.team = ?", Bind::S(v.into()), &mut sql, &mut binds);
    }
    if let Some(v) = f.assignee {
        push(" AND t.assignee_user_id = ?", Bind::I(v), &mut sql, &mut binds);
    }
    let day = |s: &str, field: &'static str| {
        yunwei_core::calendar::parse_date(s).map(yunwei_core::calendar::day_start_utc).ok_or(invalid(
            field,
            "日期格式应为 YYYY-MM-DD",
            "Dates are written YYYY-MM-DD",
        ))
    };
    if let Some(v) = f.from.as_deref().filter(|v| !v.is_empty()) {
        push(" AND t.received_at >= ?", Bind::I(day(v, "from")?), &mut sql, &mut binds);
    }
    if let Some(v) = f.to.as_deref().filter(|v| !v.is_empty()) {
        push(" AND t.received_at < ?", Bind::I(day(v, "to")? + 86_400_000), &mut sql, &mut binds);
    }
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        if q.chars().count() > 100 {
            return Err(invalid("q", "搜索词过长", "The search text is too long"));
        }
        // Substring match: Chinese has no spaces between words, so "数据库" must match inside
        // "业务数据库主从同步失败"; LOWER() makes Latin letters match in any case on both engines.
        let n = binds.len() + 1;
        binds.push(Bind::S(crate::like_contains(q)));
        sql.push_str(&format!(
            " AND (LOWER(t.title) LIKE ${n} ESCAPE '\\' OR LOWER(t.description) LIKE ${n} ESCAPE '\\' OR LOWER(t.number) LIKE ${n} ESCAPE '\\')"
        ));
    }
    Ok((sql, binds, default_sort))
}

pub async fn list(db: &Db, scope: &ContractScope, f: &TicketFilter, now: i64) -> StoreResult<TicketPage> {
    scope.require(ContractPermission::TicketRead)?;
    let (mut sql, mut binds, default_sort) = list_where(scope, f)?;
    let sort = f.sort.as_deref().filter(|s| !s.is_empty()).unwrap_or(default_sort);
    let limit = f.limit.unwrap_or(50).clamp(1, 500);
    let bad_cursor = || invalid("cursor", "分页参数无效", "Invalid page cursor");
    let order = match sort {
        "time_left" => {
            if let Some(c) = f.cursor.as_deref().filter(|c| !c.is_empty()) {
                let (d, i) = c.split_once('_').ok_or_else(bad_cursor)?;
                let (d, i): (i64, i64) = (d.parse().map_err(|_| bad_cursor())?, i.parse().map_err(|_| bad_cursor())?);
                let n = binds.len();
                binds.push(Bind::I(d));
                binds.push(Bind::I(i));
                sql.push_str(&format!(
                    " AND (t.due_sort > ${} OR (t.due_sort = ${} AND t.id > ${}))",
                    n + 1,
                    n + 1,
                    n + 2
                ));
            }
            " ORDER BY t.due_sort, t.id"
        }
        "newest" | "oldest" => {
            if let Some(c) = f.cursor.as_deref().filter(|c| !c.is_empty()) {
                let i: i64 = c.parse().map_err(|_| bad_cursor())?;
                binds.push(Bind::I(i));
                sql.push_str(&format!(" AND t.id {} ${}", if sort == "newest" { "<" } else { ">" }, binds.len()));
            }
            if sort == "newest" { " ORDER BY t.id DESC" } else { " ORDER BY t.id" }
        }
        _ => return Err(invalid("sort", "排序方式无效", "Unknown sort order")),
    };
    binds.push(Bind::I(limit + 1));
    let full = format!("{SELECT}{sql}{order} LIMIT ${}", binds.len());
    let mut q = sqlx::query(AssertSqlSafe(full));
    for b in binds {
        q = match b {
            Bind::I(v) => q.bind(v),
            Bind::S(v) => q.bind(v),
        };
    }
    let rows = q.fetch_all(&db.pool).await?;
    let mut tickets = rows.iter().map(ticket_from_row).collect::<StoreResult<Vec<_>>>()?;
    let next_cursor = if tickets.len() as i64 > limit {
        tickets.truncate(limit as usize);
        tickets.last().map(|t| if sort == "time_left" { format!("{}_{}", t.due_sort, t.id) } else { t.id.to_string() })
    } else {
        None
    };
    let rows = with_clocks(db, tickets, now).await?;
    Ok(TicketPage { rows, next_cursor })
}

/// Adds each ticket's nearest running clock, from one query for the whole page.
async fn with_clocks(db: &Db, tickets: Vec<Ticket>, now: i64) -> StoreResult<Vec<TicketRow>> {
    let open: Vec<i64> = tickets.iter().filter(|t| t.is_open).map(|t| t.id).collect();
    let mut events: HashMap<i64, Vec<Event>> = HashMap::new();
    if !open.is_empty() {
        let placeholders: Vec<String> = (1..=open.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT ticket_id, at, sla FROM ticket_event WHERE sla IS NOT NULL AND ticket_id IN ({}) ORDER BY id",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &open {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&db.pool).await? {
            events
                .entry(r.try_get("ticket_id")?)
                .or_default()
                .push(Event { at: r.try_get("at")?, kind: ticket::parse_sla_event(&r.try_get::<String, _>("sla")?) });
        }
    }
    let holidays = rules::holidays(db).await?;
    let mut out = Vec::with_capacity(tickets.len());
    for t in tickets {
        let mut row = TicketRow { next_clock: None, left_ms: None, breached: false, paused: false, ticket: t };
        if let Some(evts) = events.get(&row.ticket.id) {
            let rules = rules::version(db, row.ticket.contract_id, row.ticket.contract_version).await?;
            let statuses = clocks(&rules, &holidays, evts, now);
            let running = statuses
                .iter()
                .filter(|c| c.stopped_at.is_none() && c.left_ms.is_some())
                .min_by_key(|c| c.left_ms.unwrap_or(i64::MAX));
            if let Some(c) = running {
                row.next_clock = Some(c.name.clone());
                row.left_ms = c.left_ms;
                row.breached = matches!(c.phase, sla::Phase::Breached { .. });
                row.paused = c.phase == sla::Phase::Paused;
            }
        }
        out.push(row);
    }
    Ok(out)
}

/// Counts for the list tabs.
pub async fn counts(db: &Db, scope: &ContractScope) -> StoreResult<HashMap<&'static str, i64>> {
    scope.require(ContractPermission::TicketRead)?;
    let mut out = HashMap::new();
    for view in ["open", "mine", "awaiting_confirmation", "awaiting_approval"] {
        let (sql, binds, _) = list_where(scope, &TicketFilter { view: Some(view.into()), ..Default::default() })?;
        let mut q = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM ticket t{sql}")));
        for b in binds {
            q = match b {
                Bind::I(v) => q.bind(v),
                Bind::S(v) => q.bind(v),
            };
        }
        out.insert(view, q.fetch_one(&db.pool).await?.try_get::<i64, _>("n")?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInput {
    pub action: String,
    /// The version the caller read.
    pub version: i64,
    /// Dispatch: the person (a vendor member of the contract) …
    #[serde(default)]
    pub assignee_user_id: Option<i64>,
    /// … and/or the team.
    #[serde(default)]
    pub team: Option<String>,
    /// A note that goes with the step (visible to the reporter unless `internal`).
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub internal: bool,
    /// Confirm: the reporter's satisfaction, 1–5, and remark.
    #[serde(default)]
    pub rating: Option<i64>,
    #[serde(default)]
    pub rating_comment: String,
}

async fn vendor_member(db: &Db, scope: &ContractScope, user_id: i64) -> StoreResult<String> {
    let row = sqlx::query(
        "SELECT m.role, u.display_name FROM membership m JOIN app_user u ON u.id = m.user_id WHERE m.contract_id = $1 AND m.user_id = $2 AND u.disabled = 0",
    )
    .bind(scope.contract_id())
    .bind(user_id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(invalid("assignee_user_id", "被派单人不是本合同的成员", "The assignee is not a member of this contract"))?;
    let role = ContractRole::parse(&row.try_get::<String, _>("role")?);
    if role.is_none_or(|r| r.is_client_side()) {
        return Err(invalid(
            "assignee_user_id",
            "只能派单给运维方人员",
            "Tickets are dispatched to the vendor's staff only",
        ));
    }
    Ok(row.try_get("display_name")?)
}

/// Takes one lifecycle step.
pub async fn act(db: &Db, scope: &ContractScope, id: i64, input: &ActionInput, now: i64) -> StoreResult<Ticket> {
    scope.require(ContractPermission::TicketRead)?;
    let action = Action::parse(input.action.trim()).ok_or(invalid("action", "操作无效", "Unknown action"))?;
    if action == Action::AutoClose && !scope.is_platform() {
        return Err(invalid("action", "自动结案由系统执行", "Automatic closing is done by the platform"));
    }
    let t = get(db, scope, id).await?;
    if t.version != input.version {
        return Err(StoreError::Conflict(CHANGED));
    }
    let rules = rules::version(db, t.contract_id, t.contract_version).await?;
    let analysis_required = t.kind() == Kind::Fault && rules.compiled.desk.fault_analysis_required;
    let outcome = ticket::transition(t.state(), action, &context(scope, &t, analysis_required))
        .map_err(|m| StoreError::invalid("action", m))?;
    let comment = multi_line(&input.comment, 20_000).map_err(|m| StoreError::invalid("comment", m))?;
    let (mut assignee, mut team) = (t.assignee_user_id, t.team.clone());
    let mut detail = String::new();
    if action == Action::Dispatch {
        if input.assignee_user_id.is_none() && input.team.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(invalid("assignee_user_id", "请选择处理人或处理组", "Choose a person or a team"));
        }
        if let Some(uid) = input.assignee_user_id {
            let name = vendor_member(db, scope, uid).await?;
            detail = format!("→ {name}");
            assignee = Some(uid);
        }
        if let Some(tm) = &input.team {
            team = single_line(tm, 100, false).map_err(|m| StoreError::invalid("team", m))?;
            if !team.is_empty() {
                detail.push_str(&format!(" [{team}]"));
            }
        }
    }
    let rating = if action == Action::Confirm {
        match input.rating {
            Some(r) if (1..=5).contains(&r) => Some(r),
            Some(_) => return Err(invalid("rating", "满意度评分应为 1 到 5", "The rating is 1 to 5")),
            None => None,
        }
    } else {
        None
    };
    let rating_comment =
        multi_line(&input.rating_comment, 2000).map_err(|m| StoreError::invalid("rating_comment", m))?;
    let state = outcome.state;
    let mut tx = db.begin_write(now).await?;
    let resolved_at = if outcome.events.contains(&EventKind::Resolved) { Some(now) } else { t.resolved_at };
    let closed_at = if state == State::Closed || state == State::Cancelled { Some(now) } else { None };
    let updated = sqlx::query(
        "UPDATE ticket SET state = $1, is_open = $2, assignee_user_id = $3, team = $4, resolved_at = $5, closed_at = $6, \
         rating = COALESCE($7, rating), rating_comment = CASE WHEN $7 IS NULL THEN rating_comment ELSE $8 END, \
         updated_at = $9, version = version + 1 WHERE contract_id = $10 AND id = $11 AND version = $12",
    )
    .bind(state.as_str())
    .bind(i64::from(state.is_open()))
    .bind(assignee)
    .bind(team.clone())
    .bind(resolved_at)
    .bind(closed_at)
    .bind(rating)
    .bind(rating_comment.clone())
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(input.version)
    .execute(tx.conn().await?)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    if outcome.events.is_empty() {
        insert_event(&mut tx, scope, id, now, action.as_str(), None, &detail).await?;
    }
    for e in &outcome.events {
        insert_event(&mut tx, scope, id, now, action.as_str(), Some(&ticket::sla_event_name(e)), &detail).await?;
    }
    if let Some(r) = rating {
        insert_event(&mut tx, scope, id, now, "rate", None, &format!("{r}/5 {rating_comment}")).await?;
    }
    if !comment.is_empty() {
        insert_comment(&mut tx, scope, id, &comment, input.internal && sees_internal(scope), "web", now).await?;
    }
    let fired = refresh(&mut tx, db, scope, id, now).await?;
    step_notifications(&mut tx, scope, &t, action, assignee, &comment).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), &format!("ticket.{}", action.as_str()), format!("ticket:{id}"))
            .contract(scope.contract_id())
            .detail(format!("{} {} → {} {detail}{}", t.number, t.state, state.as_str(), notices_fired(&fired))),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Who hears of a lifecycle step at once (the timed notices come from the scheduler).
async fn step_notifications(
    tx: &mut WriteTx,
    scope: &ContractScope,
    t: &Ticket,
    action: Action,
    assignee: Option<i64>,
    comment: &str,
) -> StoreResult<()> {
    let n = &t.number;
    let (to, kind, title) = match action {
        Action::Dispatch => match assignee {
            Some(uid) => (Recipients::User(uid), "dispatch", format!("[{n}] 新派单 / Dispatched to you")),
            None => return Ok(()),
        },
        Action::Solve => match t.reporter_user_id {
            Some(uid) => (Recipients::User(uid), "solved", format!("[{n}] 已解决，请确认 / Solved, please confirm")),
            None => return Ok(()),
        },
        Action::RejectSolution | Action::Reopen => match assignee {
            Some(uid) => {
                (Recipients::User(uid), "reopened", format!("[{n}] 报告人反馈未解决 / Reopened by the reporter"))
            }
            None => (
                Recipients::Role(ContractRole::ServiceDesk),
                "reopened",
                format!("[{n}] 工单重新打开 / Ticket reopened"),
            ),
        },
        Action::Approve | Action::RejectRequest => match t.reporter_user_id {
            Some(uid) => (
                Recipients::User(uid),
                "approval",
                if action == Action::Approve {
                    format!("[{n}] 服务请求已批准 / Request approved")
                } else {
                    format!("[{n}] 服务请求被驳回 / Request rejected")
                },
            ),
            None => return Ok(()),
        },
        _ => return Ok(()),
    };
    let body = if comment.is_empty() { t.title.clone() } else { format!("{}\n{comment}", t.title) };
    notifications::send(tx, scope.contract_id(), Some(t.id), &to, kind, &title, &body).await
}

// ---------------------------------------------------------------------------------------------
// Edits, comments, analysis, summary, time, links

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketEdit {
    pub version: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub incident_class: Option<String>,
    #[serde(default)]
    pub system_name: Option<String>,
    #[serde(default)]
    pub asset_ref: Option<String>,
}

/// Changes the ticket's fields; a level change re-targets the clocks from the original start.
pub async fn edit(db: &Db, scope: &ContractScope, id: i64, e: &TicketEdit, now: i64) -> StoreResult<Ticket> {
    scope.require(ContractPermission::TicketWork)?;
    let t = get(db, scope, id).await?;
    if !t.is_open {
        return Err(StoreError::Conflict(Msg::new(
            "工单已结束，不能修改",
            "The ticket is finished and cannot be changed",
        )));
    }
    if t.version != e.version {
        return Err(StoreError::Conflict(CHANGED));
    }
    let rules = rules::version(db, t.contract_id, t.contract_version).await?;
    let title = match &e.title {
        Some(v) => single_line(v, 200, true).map_err(|m| StoreError::invalid("title", m))?,
        None => t.title.clone(),
    };
    let description = match &e.description {
        Some(v) => multi_line(v, 20_000).map_err(|m| StoreError::invalid("description", m))?,
        None => t.description.clone(),
    };
    let level = match &e.level {
        Some(v) => {
            check_level(&rules, v.trim())?;
            v.trim().to_string()
        }
        None => t.level.clone(),
    };
    let class = match &e.incident_class {
        Some(v) => {
            check_class(&rules, v.trim())?;
            v.trim().to_string()
        }
        None => t.incident_class.clone(),
    };
    let system = match &e.system_name {
        Some(v) => single_line(v, 200, false).map_err(|m| StoreError::invalid("system_name", m))?,
        None => t.system_name.clone(),
    };
    let asset = match &e.asset_ref {
        Some(v) => single_line(v, 200, false).map_err(|m| StoreError::invalid("asset_ref", m))?,
        None => t.asset_ref.clone(),
    };
    let mut tx = db.begin_write(now).await?;
    let updated = sqlx::query(
        "UPDATE ticket SET title = $1, description = $2, level = $3, incident_class = $4, system_name = $5, asset_ref = $6, \
         updated_at = $7, version = version + 1 WHERE contract_id = $8 AND id = $9 AND version = $10",
    )
    .bind(title.clone())
    .bind(description)
    .bind(level.clone())
    .bind(class.clone())
    .bind(system)
    .bind(asset)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(e.version)
    .execute(tx.conn().await?)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    if level != t.level {
        insert_event(
            &mut tx,
            scope,
            id,
            now,
            "level",
            Some(&format!("level:{level}")),
            &format!("{} → {level}", t.level),
        )
        .await?;
    }
    let fired = refresh(&mut tx, db, scope, id, now).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.edit", format!("ticket:{id}")).contract(scope.contract_id()).detail(
            format!(
                "before=level={} class={} title={} after=level={level} class={class} title={title}{}",
                t.level,
                t.incident_class,
                t.title,
                notices_fired(&fired)
            ),
        ),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Adds a comment. Client-side users' comments are always visible; the reporter's comment tells
/// the assignee, a vendor's public comment tells the reporter.
pub async fn comment(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    body: &str,
    internal: bool,
    via: &str,
    now: i64,
) -> StoreResult<Comment> {
    let t = get(db, scope, id).await?;
    let body = multi_line(body, 20_000).map_err(|m| StoreError::invalid("body", m))?;
    if body.is_empty() {
        return Err(invalid("body", "请填写内容", "Write something"));
    }
    let internal = internal && sees_internal(scope);
    let mut tx = db.begin_write(now).await?;
    let cid = insert_comment(&mut tx, scope, id, &body, internal, via, now).await?;
    let me = scope.actor().user_id;
    let to = if scope.role().is_client_side() {
        t.assignee_user_id.map(Recipients::User)
    } else if !internal {
        t.reporter_user_id.filter(|r| Some(*r) != me).map(Recipients::User)
    } else {
        None
    };
    if let Some(to) = to {
        notifications::send(
            &mut tx,
            scope.contract_id(),
            Some(id),
            &to,
            "comment",
            &format!("[{}] 新的回复 / New reply", t.number),
            &body,
        )
        .await?;
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.comment", format!("ticket:{id}"))
            .contract(scope.contract_id())
            .detail(format!("comment:{cid} internal={internal} via={via}")),
    )
    .await?;
    tx.commit().await?;
    Ok(Comment { id: cid, author_name: scope.actor().name.clone(), body, internal, via: via.into(), created_at: now })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisInput {
    pub version: i64,
    #[serde(flatten)]
    pub analysis: Analysis,
}

/// Writes the fault analysis record (SD7). All four parts are required.
pub async fn record_analysis(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    a: &AnalysisInput,
    now: i64,
) -> StoreResult<Ticket> {
    scope.require(ContractPermission::TicketWork)?;
    let t = get(db, scope, id).await?;
    if t.version != a.version {
        return Err(StoreError::Conflict(CHANGED));
    }
    let part = |v: &str, field: &'static str| -> StoreResult<String> {
        let v = multi_line(v, 10_000).map_err(|m| StoreError::invalid(field, m))?;
        if v.trim().is_empty() {
            return Err(invalid(
                field,
                "故障分析的四项内容都必须填写",
                "All four parts of the fault analysis are required",
            ));
        }
        Ok(v)
    };
    let cause = part(&a.analysis.cause, "cause")?;
    let process = part(&a.analysis.process, "process")?;
    let impact = part(&a.analysis.impact, "impact")?;
    let rec = part(&a.analysis.recommendation, "recommendation")?;
    let mut tx = db.begin_write(now).await?;
    let updated = sqlx::query(
        "UPDATE ticket SET analysis_cause = $1, analysis_process = $2, analysis_impact = $3, analysis_recommendation = $4, \
         analysis_at = $5, updated_at = $5, version = version + 1 WHERE contract_id = $6 AND id = $7 AND version = $8",
    )
    .bind(cause)
    .bind(process)
    .bind(impact)
    .bind(rec)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(a.version)
    .execute(tx.conn().await?)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    insert_event(&mut tx, scope, id, now, "analysis", None, "").await?;
    tx.audit(AuditEntry::new(scope.actor(), "ticket.analysis", format!("ticket:{id}")).contract(scope.contract_id()))
        .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Submits the major-incident summary report; stops the contract's summary clock (SD7).
pub async fn submit_summary(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    summary: &str,
    now: i64,
) -> StoreResult<Ticket> {
    scope.require(ContractPermission::TicketWork)?;
    let t = get(db, scope, id).await?;
    if t.version != version {
        return Err(StoreError::Conflict(CHANGED));
    }
    if t.resolved_at.is_none() {
        return Err(invalid("summary", "故障解决后才能提交总结报告", "The summary report follows the resolution"));
    }
    let summary = multi_line(summary, 50_000).map_err(|m| StoreError::invalid("summary", m))?;
    if summary.trim().is_empty() {
        return Err(invalid("summary", "请填写总结报告", "Write the summary report"));
    }
    let mut tx = db.begin_write(now).await?;
    let updated = sqlx::query(
        "UPDATE ticket SET summary = $1, summary_at = $2, updated_at = $2, version = version + 1 \
         WHERE contract_id = $3 AND id = $4 AND version = $5",
    )
    .bind(summary)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    insert_event(&mut tx, scope, id, now, "summary", Some(ticket::SUMMARY_SUBMITTED), "").await?;
    let fired = refresh(&mut tx, db, scope, id, now).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.summary", format!("ticket:{id}"))
            .contract(scope.contract_id())
            .detail(notices_fired(&fired)),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Records time spent on a ticket (workload figures, KP4).
pub async fn log_work(db: &Db, scope: &ContractScope, id: i64, minutes: i64, note: &str, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::TicketWork)?;
    get(db, scope, id).await?;
    if !(1..=24 * 60).contains(&minutes) {
        return Err(invalid("minutes", "工时应为 1 到 1440 分钟", "Time spent is 1 to 1440 minutes"));
    }
    let note = single_line(note, 500, false).map_err(|m| StoreError::invalid("note", m))?;
    let mut tx = db.begin_write(now).await?;
    sqlx::query(
        "INSERT INTO ticket_worklog (contract_id, ticket_id, user_id, user_name, minutes, note, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(scope.contract_id())
    .bind(id)
    .bind(scope.actor().user_id)
    .bind(scope.actor().name.clone())
    .bind(minutes)
    .bind(note)
    .bind(now)
    .execute(tx.conn().await?)
    .await?;
    sqlx::query("UPDATE ticket SET minutes_spent = minutes_spent + $1 WHERE contract_id = $2 AND id = $3")
        .bind(minutes)
        .bind(scope.contract_id())
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.work", format!("ticket:{id}"))
            .contract(scope.contract_id())
            .detail(format!("minutes={minutes}")),
    )
    .await?;
    tx.commit().await
}

/// Links two tickets: `parent` (the other is this one's parent), `related`, or `explains` (this
/// problem ticket explains the other incident).
pub async fn link(db: &Db, scope: &ContractScope, id: i64, other: i64, relation: &str, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::TicketWork)?;
    if id == other {
        return Err(invalid("other", "不能关联工单自身", "A ticket cannot be linked to itself"));
    }
    let t = get(db, scope, id).await?;
    let o = get(db, scope, other).await?;
    let mut tx = db.begin_write(now).await?;
    match relation {
        "parent" => {
            // No cycles: the new parent must not descend from this ticket.
            let mut cursor = o.parent_id;
            let mut hops = 0;
            while let Some(p) = cursor {
                if p == id || hops > 100 {
                    return Err(invalid("other", "父子关系不能形成循环", "Parent links cannot form a cycle"));
                }
                let row = sqlx::query("SELECT parent_id FROM ticket WHERE contract_id = $1 AND id = $2")
                    .bind(scope.contract_id())
                    .bind(p)
                    .fetch_one(tx.conn().await?)
                    .await?;
                cursor = row.try_get("parent_id")?;
                hops += 1;
            }
            sqlx::query("UPDATE ticket SET parent_id = $1, version = version + 1, updated_at = $2 WHERE contract_id = $3 AND id = $4")
                .bind(other)
                .bind(now)
                .bind(scope.contract_id())
                .bind(id)
                .execute(tx.conn().await?)
                .await?;
        }
        "related" | "explains" => {
            if relation == "explains" && t.kind() != Kind::Problem {
                return Err(invalid(
                    "relation",
                    "只有问题单可以关联其解释的故障",
                    "Only a problem ticket explains incidents",
                ));
            }
            sqlx::query(
                "INSERT INTO ticket_link (contract_id, from_id, to_id, kind, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(scope.contract_id())
            .bind(id)
            .bind(other)
            .bind(relation.to_string())
            .bind(now)
            .execute(tx.conn().await?)
            .await?;
        }
        _ => return Err(invalid("relation", "关联类型无效", "Unknown link type")),
    }
    insert_event(&mut tx, scope, id, now, "link", None, &format!("{relation} {}", o.number)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.link", format!("ticket:{id}"))
            .contract(scope.contract_id())
            .detail(format!("{relation} ticket:{other}")),
    )
    .await?;
    tx.commit().await
}

/// Merges a duplicate into another ticket: the duplicate's comments are copied over, it is marked
/// as a duplicate and cancelled; the surviving ticket keeps its own clocks.
pub async fn merge(db: &Db, scope: &ContractScope, dup_id: i64, into_id: i64, now: i64) -> StoreResult<Ticket> {
    scope.require(ContractPermission::TicketWork)?;
    if dup_id == into_id {
        return Err(invalid("into", "不能合并到自身", "A ticket cannot be merged into itself"));
    }
    let dup = get(db, scope, dup_id).await?;
    let into = get(db, scope, into_id).await?;
    if !dup.is_open || !into.is_open {
        return Err(StoreError::Conflict(Msg::new("只能合并未结束的工单", "Only open tickets can be merged")));
    }
    let mut tx = db.begin_write(now).await?;
    sqlx::query(
        "UPDATE ticket SET state = 'cancelled', is_open = 0, closed_at = $1, duplicate_of = $2, due_sort = $3, next_check_at = NULL, \
         updated_at = $1, version = version + 1 WHERE contract_id = $4 AND id = $5",
    )
    .bind(now)
    .bind(into_id)
    .bind(NO_DUE)
    .bind(scope.contract_id())
    .bind(dup_id)
    .execute(tx.conn().await?)
    .await?;
    sqlx::query(
        "INSERT INTO ticket_comment (contract_id, ticket_id, author_user_id, author_name, body, internal, via, created_at) \
         SELECT contract_id, $1, author_user_id, author_name, body, internal, via, created_at FROM ticket_comment \
         WHERE contract_id = $2 AND ticket_id = $3 ORDER BY id",
    )
    .bind(into_id)
    .bind(scope.contract_id())
    .bind(dup_id)
    .execute(tx.conn().await?)
    .await?;
    let note = format!("合并自 / Merged from {}: {}\n{}", dup.number, dup.title, dup.description);
    insert_comment(&mut tx, scope, into_id, &note, false, "web", now).await?;
    insert_event(&mut tx, scope, dup_id, now, "merged", None, &format!("→ {}", into.number)).await?;
    insert_event(&mut tx, scope, into_id, now, "merge", None, &format!("← {}", dup.number)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "ticket.merge", format!("ticket:{dup_id}"))
            .contract(scope.contract_id())
            .detail(format!("{} into {}", dup.number, into.number)),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, into_id).await
}

// ---------------------------------------------------------------------------------------------
// Dispatch suggestions

#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    pub user_id: i64,
    pub name: String,
    pub role: String,
    /// Open tickets assigned now.
    pub open: i64,
    /// Tickets of the same system this person handled in the last 180 days.
    pub same_system: i64,
}

/// Vendor staff ranked for a ticket: people who know the system first, then the least loaded.
pub async fn suggestions(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<Vec<Suggestion>> {
    scope.require(ContractPermission::TicketWork)?;
    let t = get(db, scope, id).await?;
    let rows = sqlx::query(
        "SELECT u.id, u.display_name, m.role, \
           (SELECT COUNT(*) FROM ticket o WHERE o.contract_id = $1 AND o.assignee_user_id = u.id AND o.is_open = 1) AS open_n, \
           (SELECT COUNT(*) FROM ticket s WHERE s.contract_id = $1 AND s.assignee_user_id = u.id AND s.system_name = $2 \
              AND $2 <> '' AND s.received_at >= $3) AS same_n \
         FROM membership m JOIN app_user u ON u.id = m.user_id \
         WHERE m.contract_id = $1 AND u.disabled = 0 AND m.role IN ('service_desk', 'engineer', 'backline_expert', 'project_manager')",
    )
    .bind(scope.contract_id())
    .bind(t.system_name.clone())
    .bind(now - 180 * 86_400_000)
    .fetch_all(&db.pool)
    .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(Suggestion {
                user_id: r.try_get("id")?,
                name: r.try_get("display_name")?,
                role: r.try_get("role")?,
                open: r.try_get("open_n")?,
                same_system: r.try_get("same_n")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    // Engineers and experts before the desk and the manager, who dispatch rather than fix.
    let rank = |r: &str| match r {
        "engineer" => 0,
        "backline_expert" => 1,
        "service_desk" => 2,
        _ => 3,
    };
    out.sort_by(|a, b| {
        b.same_system
            .min(1)
            .cmp(&a.same_system.min(1))
            .then(rank(&a.role).cmp(&rank(&b.role)))
            .then(a.open.cmp(&b.open))
            .then(b.same_system.cmp(&a.same_system))
            .then(a.name.cmp(&b.name))
    });
    Ok(out)
}
