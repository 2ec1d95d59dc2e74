//! The machine-room access register (机房出入登记, AS8): someone who works on the contract asks to
//! visit a machine room (who, from which organisation, why, on which day); the client's supervisor
//! approves or rejects it with a note — never their own request; the entry is recorded with its
//! time and escort, the exit with its time and the work done, which closes the visit.
//!
//! ```text
//! requested ──approve──▶ approved ──enter──▶ in_room ──exit──▶ closed
//!     └──────reject────▶ rejected
//! ```
//!
//! Invariants:
//! - Each step carries the `version` it was shown at (409 when stale) and writes its audit record
//!   and `ledger_history` row (`visit:ID`) in the same transaction.
//! - Entry needs an approval and happens after it; exit needs an entry and happens after it.
//! - A visit still in the room [`OPEN_VISIT_LIMIT_MS`] after its entry is flagged `never_closed`.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::text::{multi_line, single_line};

use crate::assets::record_history;
use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;
use crate::systems::CHANGED;

/// A visit still in the room this long after its entry is flagged as never closed.
pub const OPEN_VISIT_LIMIT_MS: i64 = 12 * 60 * 60 * 1000;
/// How far ahead of the server's clock a recorded entry or exit time may lie (clock skew).
pub const FUTURE_TOLERANCE_MS: i64 = 5 * 60 * 1000;

pub const STATES: [&str; 5] = ["requested", "approved", "rejected", "in_room", "closed"];
pub const ACTIONS: [&str; 4] = ["approve", "reject", "enter", "exit"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Visit {
    pub id: i64,
    pub contract_id: i64,
    pub site_id: i64,
    pub site_name: String,
    pub visitor: String,
    pub organisation: String,
    pub purpose: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub planned_on: String,
    pub state: String,
    pub decided_by: String,
    pub decided_at: Option<i64>,
    pub decision_note: String,
    pub escort: String,
    pub entered_at: Option<i64>,
    pub exited_at: Option<i64>,
    pub work_done: String,
    pub version: i64,
    /// In the room for longer than [`OPEN_VISIT_LIMIT_MS`] without an exit.
    pub never_closed: bool,
}

const SELECT: &str = "SELECT v.*, s.name AS site_name FROM room_visit v JOIN site s ON s.id = v.site_id";

fn from_row(r: &AnyRow, now: i64) -> StoreResult<Visit> {
    let state: String = r.try_get("state")?;
    let entered_at: Option<i64> = r.try_get("entered_at")?;
    Ok(Visit {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        site_id: r.try_get("site_id")?,
        site_name: r.try_get("site_name")?,
        visitor: r.try_get("visitor")?,
        organisation: r.try_get("organisation")?,
        purpose: r.try_get("purpose")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("requested_at")?,
        planned_on: r.try_get("planned_on")?,
        never_closed: never_closed(&state, entered_at, now),
        state,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        decision_note: r.try_get("decision_note")?,
        escort: r.try_get("escort")?,
        entered_at,
        exited_at: r.try_get("exited_at")?,
        work_done: r.try_get("work_done")?,
        version: r.try_get("version")?,
    })
}

/// Whether a visit in `state`, entered at `entered_at`, is an open visit that was never closed.
pub fn never_closed(state: &str, entered_at: Option<i64>, now: i64) -> bool {
    state == "in_room" && entered_at.is_some_and(|t| now - t > OPEN_VISIT_LIMIT_MS)
}

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

// ---------------------------------------------------------------------------------------------
// Reading

pub async fn get(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<Visit> {
    scope.require(ContractPermission::VisitRequest)?;
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE v.contract_id = $1 AND v.id = $2")))
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row, now)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VisitFilter {
    pub state: Option<String>,
    /// Only visits flagged as never closed.
    pub never_closed: bool,
    /// Newest first: the page starts below this id.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// Visits newest first.
pub async fn list(db: &Db, scope: &ContractScope, f: &VisitFilter, now: i64) -> StoreResult<Vec<Visit>> {
    scope.require(ContractPermission::VisitRequest)?;
    let state = f.state.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = state
        && !STATES.contains(&s)
    {
        return Err(invalid("state", "状态无效", "Unknown state"));
    }
    let limit = f.limit.unwrap_or(50).clamp(1, 500);
    // The same statement for every filter; an absent filter binds a value that matches all.
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{SELECT} WHERE v.contract_id = $1 AND v.id < $2 AND ($3 = '' OR v.state = $3) \
         AND ($4 = 0 OR (v.state = 'in_room' AND v.entered_at < $5)) ORDER BY v.id DESC LIMIT $6"
    )))
    .bind(scope.contract_id())
    .bind(f.before.unwrap_or(i64::MAX))
    .bind(state.unwrap_or("").to_string())
    .bind(i64::from(f.never_closed))
    .bind(now - OPEN_VISIT_LIMIT_MS)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| from_row(r, now)).collect()
}

// ---------------------------------------------------------------------------------------------
// Writing

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VisitInput {
    pub site_id: i64,
    pub visitor: String,
    pub organisation: String,
    pub purpose: String,
    /// YYYY-MM-DD
    pub planned_on: String,
}

fn snapshot(v: &Visit) -> serde_json::Value {
    serde_json::json!({
        "state": v.state,
        "decided_by": v.decided_by,
        "decision_note": v.decision_note,
        "escort": v.escort,
        "entered_at": v.entered_at,
        "exited_at": v.exited_at,
        "work_done": v.work_done,
    })
}

/// Asks for a visit to a site of the contract.
pub async fn request(db: &Db, scope: &ContractScope, input: &VisitInput, now: i64) -> StoreResult<Visit> {
    scope.require(ContractPermission::VisitRequest)?;
    let line = |v: &str, field: &'static str, max: usize, required: bool| {
        single_line(v, max, required).map_err(|m| StoreError::invalid(field, m))
    };
    let visitor = line(&input.visitor, "visitor", 200, true)?;
    let organisation = line(&input.organisation, "organisation", 200, false)?;
    let purpose = multi_line(&input.purpose, 2000).map_err(|m| StoreError::invalid("purpose", m))?;
    if purpose.is_empty() {
        return Err(invalid("purpose", "请填写来访事由", "Give the purpose of the visit"));
    }
    let planned_on = input.planned_on.trim().to_string();
    if yunwei_core::calendar::parse_date(&planned_on).is_none() || planned_on.len() != 10 {
        return Err(invalid("planned_on", "计划日期格式应为 YYYY-MM-DD", "The planned date is written YYYY-MM-DD"));
    }
    let mut tx = db.begin_write(now).await?;
    let site = sqlx::query("SELECT name FROM site WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(input.site_id)
        .fetch_optional(tx.conn().await?)
        .await?;
    let Some(site) = site else {
        return Err(invalid("site_id", "机房不存在或不属于本合同", "The room does not exist in this contract"));
    };
    let site_name: String = site.try_get("name")?;
    let row = sqlx::query(
        "INSERT INTO room_visit (contract_id, site_id, visitor, organisation, purpose, requested_by, requested_at, \
         planned_on, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested') RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(input.site_id)
    .bind(visitor.clone())
    .bind(organisation.clone())
    .bind(purpose.clone())
    .bind(scope.actor().name.clone())
    .bind(now)
    .bind(planned_on.clone())
    .fetch_one(tx.conn().await?)
    .await?;
    let id: i64 = row.try_get("id")?;
    let after = serde_json::json!({
        "state": "requested", "site": site_name, "visitor": visitor, "organisation": organisation,
        "purpose": purpose, "planned_on": planned_on,
    });
    record_history(&mut tx, scope, &format!("visit:{id}"), "request", None, Some(&after)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "visit.request", format!("visit:{id}"))
            .contract(scope.contract_id())
            .detail(format!("site={site_name} visitor={visitor} planned_on={planned_on}")),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id, now).await
}

/// One step of a visit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VisitAction {
    /// approve, reject, enter, exit
    pub action: String,
    pub version: i64,
    /// The approval's or rejection's note (required to reject).
    pub note: String,
    /// Who accompanies the visitor (required to enter).
    pub escort: String,
    /// What was done (required to exit).
    pub work_done: String,
    /// When the entry or exit happened (epoch ms); now when absent.
    pub at_ms: Option<i64>,
}

pub async fn act(db: &Db, scope: &ContractScope, id: i64, a: &VisitAction, now: i64) -> StoreResult<Visit> {
    let action = a.action.trim();
    let permission = match action {
        "approve" | "reject" => ContractPermission::VisitApprove,
        "enter" | "exit" => ContractPermission::VisitRequest,
        _ => {
            return Err(invalid(
                "action",
                "操作应为 approve、reject、enter 或 exit",
                "The action is approve, reject, enter or exit",
            ));
        }
    };
    scope.require(permission)?;
    let before = get(db, scope, id, now).await?;
    let note = multi_line(&a.note, 2000).map_err(|m| StoreError::invalid("note", m))?;
    let at = a.at_ms.unwrap_or(now);
    if at > now + FUTURE_TOLERANCE_MS {
        return Err(invalid("at_ms", "时间不能晚于当前时间", "The time cannot be in the future"));
    }
    let wrong_state = |zh, en| StoreError::invalid("state", Msg::new(zh, en));
    let mut v = before.clone();
    match action {
        "approve" | "reject" => {
            if before.state != "requested" {
                return Err(wrong_state("该申请已处理", "This request has already been decided"));
            }
            if before.requested_by == scope.actor().name {
                return Err(invalid(
                    "requested_by",
                    "不能审批自己提交的进入申请",
                    "You cannot decide on your own access request",
                ));
            }
            if action == "reject" && note.is_empty() {
                return Err(invalid("note", "驳回时请填写原因", "Give the reason for the rejection"));
            }
            v.state = if action == "approve" { "approved" } else { "rejected" }.into();
            v.decided_by = scope.actor().name.clone();
            v.decided_at = Some(now);
            v.decision_note = note;
        }
        "enter" => {
            if before.state != "approved" {
                return Err(wrong_state(
                    "未经审批的申请不能登记进入",
                    "Only an approved request can be recorded as entered",
                ));
            }
            if before.decided_at.is_some_and(|d| at < d) {
                return Err(invalid("at_ms", "进入时间不能早于审批时间", "The entry cannot be before the approval"));
            }
            v.escort = single_line(&a.escort, 100, true).map_err(|m| StoreError::invalid("escort", m))?;
            v.state = "in_room".into();
            v.entered_at = Some(at);
        }
        _ => {
            if before.state != "in_room" {
                return Err(wrong_state("尚未登记进入，不能登记离开", "The visit has no entry, so it cannot exit"));
            }
            if before.entered_at.is_some_and(|e| at < e) {
                return Err(invalid("at_ms", "离开时间不能早于进入时间", "The exit cannot be before the entry"));
            }
            let work = multi_line(&a.work_done, 2000).map_err(|m| StoreError::invalid("work_done", m))?;
            if work.is_empty() {
                return Err(invalid("work_done", "请填写完成的工作", "Describe the work done"));
            }
            v.work_done = work;
            v.state = "closed".into();
            v.exited_at = Some(at);
        }
    }
    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query(
        "UPDATE room_visit SET state = $1, decided_by = $2, decided_at = $3, decision_note = $4, escort = $5, \
         entered_at = $6, exited_at = $7, work_done = $8, version = version + 1 \
         WHERE contract_id = $9 AND id = $10 AND version = $11",
    )
    .bind(v.state.clone())
    .bind(v.decided_by.clone())
    .bind(v.decided_at)
    .bind(v.decision_note.clone())
    .bind(v.escort.clone())
    .bind(v.entered_at)
    .bind(v.exited_at)
    .bind(v.work_done.clone())
    .bind(scope.contract_id())
    .bind(id)
    .bind(a.version)
    .execute(tx.conn().await?)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    let (b, af) = crate::systems::diff(&snapshot(&before), &snapshot(&v));
    record_history(&mut tx, scope, &format!("visit:{id}"), action, Some(&b), Some(&af)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), &format!("visit.{action}"), format!("visit:{id}"))
            .contract(scope.contract_id())
            .detail(format!("before={b} after={af}")),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id, now).await
}

/// The history of one visit (who did which step, when).
pub async fn history(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Vec<crate::assets::HistoryEntry>> {
    scope.require(ContractPermission::VisitRequest)?;
    let rows = sqlx::query(
        "SELECT at, actor, action, before_json, after_json FROM ledger_history WHERE contract_id = $1 AND record_ref = $2 ORDER BY id",
    )
    .bind(scope.contract_id())
    .bind(format!("visit:{id}"))
    .fetch_all(&db.pool)
    .await?;
    let parse = |s: String| serde_json::from_str(&s).unwrap_or(serde_json::Value::Null);
    rows.into_iter()
        .map(|r| {
            Ok(crate::assets::HistoryEntry {
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                before: parse(r.try_get("before_json")?),
                after: parse(r.try_get("after_json")?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_closed_flag() {
        let h = 60 * 60 * 1000;
        assert!(!never_closed("in_room", Some(0), 12 * h));
        assert!(never_closed("in_room", Some(0), 12 * h + 1));
        assert!(!never_closed("closed", Some(0), 100 * h));
        assert!(!never_closed("approved", None, 100 * h));
    }
}
