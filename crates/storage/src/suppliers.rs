//! The supplier register (供应商, AS7): contacts, scope of supply, SLA promises, certifications and
//! trainings, notes; the periodic evaluations (period, score 0–100, comments, who evaluated); the
//! assets each supports are the assets whose `supplier_id` names it.
//!
//! Invariants:
//! - Every change writes its `ledger_history` row (`supplier:ID`) and its audit record in the same
//!   transaction; an update carries the `version` it was read at (409 when stale).
//! - A supplier that still supports assets is not deleted (409); its evaluations go with it, kept
//!   in the deletion's history entry.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::text::{multi_line, single_line};

use crate::assets::record_history;
use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;
use crate::systems::{CHANGED, diff};

const DUPLICATE: Msg = Msg::new("本合同已有同名供应商", "This contract already has a supplier with that name");

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Supplier {
    pub id: i64,
    pub contract_id: i64,
    pub name: String,
    pub contacts: String,
    pub scope: String,
    pub sla_promise: String,
    pub certifications: String,
    pub trainings: String,
    pub notes: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

fn from_row(r: &AnyRow) -> StoreResult<Supplier> {
    Ok(Supplier {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        name: r.try_get("name")?,
        contacts: r.try_get("contacts")?,
        scope: r.try_get("scope")?,
        sla_promise: r.try_get("sla_promise")?,
        certifications: r.try_get("certifications")?,
        trainings: r.try_get("trainings")?,
        notes: r.try_get("notes")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

/// The writable fields of a supplier.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SupplierInput {
    pub name: String,
    pub contacts: String,
    pub scope: String,
    pub sla_promise: String,
    pub certifications: String,
    pub trainings: String,
    pub notes: String,
}

fn check(i: &SupplierInput) -> StoreResult<SupplierInput> {
    let text = |v: &str, field: &'static str| multi_line(v, 2000).map_err(|m| StoreError::invalid(field, m));
    Ok(SupplierInput {
        name: single_line(&i.name, 200, true).map_err(|m| StoreError::invalid("name", m))?,
        contacts: text(&i.contacts, "contacts")?,
        scope: text(&i.scope, "scope")?,
        sla_promise: text(&i.sla_promise, "sla_promise")?,
        certifications: text(&i.certifications, "certifications")?,
        trainings: text(&i.trainings, "trainings")?,
        notes: text(&i.notes, "notes")?,
    })
}

fn as_input(s: &Supplier) -> SupplierInput {
    SupplierInput {
        name: s.name.clone(),
        contacts: s.contacts.clone(),
        scope: s.scope.clone(),
        sla_promise: s.sla_promise.clone(),
        certifications: s.certifications.clone(),
        trainings: s.trainings.clone(),
        notes: s.notes.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Supplier> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query("SELECT * FROM supplier WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(db: &Db, scope: &ContractScope, after_id: Option<i64>, limit: i64) -> StoreResult<Vec<Supplier>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = sqlx::query("SELECT * FROM supplier WHERE contract_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(scope.contract_id())
        .bind(after_id.unwrap_or(0))
        .bind(limit.clamp(1, 500))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

/// How many assets of the contract name this supplier.
pub async fn asset_count(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<i64> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM asset WHERE contract_id = $1 AND supplier_id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get("n")?)
}

// ---------------------------------------------------------------------------------------------
// Writing

pub async fn create(db: &Db, scope: &ContractScope, input: &SupplierInput, now: i64) -> StoreResult<Supplier> {
    scope.require(ContractPermission::AssetWrite)?;
    let s = check(input)?;
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "INSERT INTO supplier (contract_id, name, contacts, scope, sla_promise, certifications, trainings, notes, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(s.name.clone())
    .bind(s.contacts.clone())
    .bind(s.scope.clone())
    .bind(s.sla_promise.clone())
    .bind(s.certifications.clone())
    .bind(s.trainings.clone())
    .bind(s.notes.clone())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    let id: i64 = row.try_get("id")?;
    let after = serde_json::to_value(&s).unwrap_or_default();
    record_history(&mut tx, scope, &format!("supplier:{id}"), "create", None, Some(&after)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "supplier.create", format!("supplier:{id}"))
            .contract(scope.contract_id())
            .detail(format!("name={}", s.name)),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

pub async fn update(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    input: &SupplierInput,
    now: i64,
) -> StoreResult<Supplier> {
    scope.require(ContractPermission::AssetWrite)?;
    let before = get(db, scope, id).await?;
    let s = check(input)?;
    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query(
        "UPDATE supplier SET name = $1, contacts = $2, scope = $3, sla_promise = $4, certifications = $5, trainings = $6, \
         notes = $7, updated_at = $8, version = version + 1 WHERE contract_id = $9 AND id = $10 AND version = $11",
    )
    .bind(s.name.clone())
    .bind(s.contacts.clone())
    .bind(s.scope.clone())
    .bind(s.sla_promise.clone())
    .bind(s.certifications.clone())
    .bind(s.trainings.clone())
    .bind(s.notes.clone())
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    let (b, a) = diff(
        &serde_json::to_value(as_input(&before)).unwrap_or_default(),
        &serde_json::to_value(&s).unwrap_or_default(),
    );
    record_history(&mut tx, scope, &format!("supplier:{id}"), "update", Some(&b), Some(&a)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "supplier.update", format!("supplier:{id}"))
            .contract(scope.contract_id())
            .detail(format!("before={b} after={a}")),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

pub async fn delete(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::AssetWrite)?;
    let before = get(db, scope, id).await?;
    let evaluations = evaluations(db, scope, id).await?;
    let mut tx = db.begin_write(now).await?;
    let used = sqlx::query("SELECT COUNT(*) AS n FROM asset WHERE contract_id = $1 AND supplier_id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_one(tx.conn().await?)
        .await?;
    if used.try_get::<i64, _>("n")? > 0 {
        return Err(StoreError::Conflict(Msg::new(
            "该供应商仍支持台账中的资产，请先修改这些资产",
            "This supplier still supports assets in the ledger; change those assets first",
        )));
    }
    sqlx::query("DELETE FROM supplier_evaluation WHERE contract_id = $1 AND supplier_id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    sqlx::query("DELETE FROM supplier WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    let mut b = serde_json::to_value(as_input(&before)).unwrap_or_default();
    if let Some(o) = b.as_object_mut() {
        o.insert("evaluations".into(), serde_json::to_value(&evaluations).unwrap_or_default());
    }
    record_history(&mut tx, scope, &format!("supplier:{id}"), "delete", Some(&b), None).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "supplier.delete", format!("supplier:{id}"))
            .contract(scope.contract_id())
            .detail(format!("name={} evaluations={}", before.name, evaluations.len())),
    )
    .await?;
    tx.commit().await
}

// ---------------------------------------------------------------------------------------------
// Evaluations

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    pub id: i64,
    pub supplier_id: i64,
    pub period: String,
    pub score: i64,
    pub comments: String,
    pub evaluated_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationInput {
    /// `2026`, `2026-H1`, `2026-Q1` or `2026-03`.
    pub period: String,
    pub score: i64,
    pub comments: String,
    /// Who evaluated; the caller when empty.
    pub evaluated_by: String,
}

/// Whether `p` names a period: a year, a half (`2026-H1`), a quarter (`2026-Q1`) or a month.
pub fn valid_period(p: &str) -> bool {
    let (y, rest) = match p.split_once('-') {
        Some((y, r)) => (y, Some(r)),
        None => (p, None),
    };
    let year_ok = y.len() == 4 && y.parse::<u32>().is_ok_and(|y| (2000..=2100).contains(&y));
    year_ok
        && match rest {
            None => true,
            Some(r) => {
                matches!(r, "H1" | "H2" | "Q1" | "Q2" | "Q3" | "Q4")
                    || (r.len() == 2 && r.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m)))
            }
        }
}

pub async fn evaluations(db: &Db, scope: &ContractScope, supplier_id: i64) -> StoreResult<Vec<Evaluation>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = sqlx::query(
        "SELECT * FROM supplier_evaluation WHERE contract_id = $1 AND supplier_id = $2 ORDER BY period DESC, id DESC",
    )
    .bind(scope.contract_id())
    .bind(supplier_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Evaluation {
                id: r.try_get("id")?,
                supplier_id: r.try_get("supplier_id")?,
                period: r.try_get("period")?,
                score: r.try_get("score")?,
                comments: r.try_get("comments")?,
                evaluated_by: r.try_get("evaluated_by")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Records one period's evaluation of a supplier (one per period).
pub async fn evaluate(
    db: &Db,
    scope: &ContractScope,
    supplier_id: i64,
    input: &EvaluationInput,
    now: i64,
) -> StoreResult<Evaluation> {
    scope.require(ContractPermission::AssetWrite)?;
    let supplier = get(db, scope, supplier_id).await?;
    let period = input.period.trim().to_uppercase();
    if !valid_period(&period) {
        return Err(StoreError::invalid(
            "period",
            Msg::new(
                "考核期应写作 2026、2026-H1、2026-Q1 或 2026-03",
                "Write the period as 2026, 2026-H1, 2026-Q1 or 2026-03",
            ),
        ));
    }
    if !(0..=100).contains(&input.score) {
        return Err(StoreError::invalid("score", Msg::new("评分应为 0 到 100", "The score is 0 to 100")));
    }
    let comments = multi_line(&input.comments, 2000).map_err(|m| StoreError::invalid("comments", m))?;
    let by = single_line(&input.evaluated_by, 100, false).map_err(|m| StoreError::invalid("evaluated_by", m))?;
    let by = if by.is_empty() { scope.actor().name.clone() } else { by };
    let mut tx = db.begin_write(now).await?;
    let dup =
        sqlx::query("SELECT id FROM supplier_evaluation WHERE contract_id = $1 AND supplier_id = $2 AND period = $3")
            .bind(scope.contract_id())
            .bind(supplier_id)
            .bind(period.clone())
            .fetch_optional(tx.conn().await?)
            .await?;
    if dup.is_some() {
        return Err(StoreError::Conflict(Msg::new("该考核期已有评价", "This period has already been evaluated")));
    }
    let row = sqlx::query(
        "INSERT INTO supplier_evaluation (contract_id, supplier_id, period, score, comments, evaluated_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(supplier_id)
    .bind(period.clone())
    .bind(input.score)
    .bind(comments.clone())
    .bind(by.clone())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await?;
    let id: i64 = row.try_get("id")?;
    let e = Evaluation { id, supplier_id, period, score: input.score, comments, evaluated_by: by, created_at: now };
    let after = serde_json::json!({"evaluation": {"period": e.period, "score": e.score, "comments": e.comments, "evaluated_by": e.evaluated_by}});
    record_history(&mut tx, scope, &format!("supplier:{supplier_id}"), "evaluate", None, Some(&after)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "supplier.evaluate", format!("supplier:{supplier_id}"))
            .contract(scope.contract_id())
            .detail(format!("name={} period={} score={}", supplier.name, e.period, e.score)),
    )
    .await?;
    tx.commit().await?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        for ok in ["2026", "2026-Q1", "2026-Q4", "2026-H2", "2026-03", "2026-12"] {
            assert!(valid_period(ok), "{ok}");
        }
        for bad in ["", "26", "2026-Q5", "2026-13", "2026-3", "2026-", "Q1", "1999", "2026-Q1-x"] {
            assert!(!valid_period(bad), "{bad}");
        }
    }
}
