//! Sites and machine rooms (机房、弱电间、监控室) of a contract: the first contract-owned record.
//! Later ledgers (assets, systems) follow the same pattern: every function takes a
//! [`ContractScope`] and every statement filters on its contract id.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::text::{multi_line, single_line};

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

pub const KINDS: [&str; 5] = ["machine_room", "weak_current_room", "control_room", "office", "other"];

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: i64,
    pub contract_id: i64,
    pub name: String,
    pub kind: String,
    pub address: String,
    pub notes: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

fn site_from_row(row: &AnyRow) -> StoreResult<Site> {
    Ok(Site {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        address: row.try_get("address")?,
        notes: row.try_get("notes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct SiteInput {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub notes: String,
}

fn validate(input: &SiteInput) -> StoreResult<SiteInput> {
    let kind = input.kind.trim().to_string();
    if !KINDS.contains(&kind.as_str()) {
        return Err(StoreError::invalid("kind", Msg::new("类型无效", "Unknown kind")));
    }
    Ok(SiteInput {
        name: single_line(&input.name, 100, true).map_err(|m| StoreError::invalid("name", m))?,
        kind,
        address: single_line(&input.address, 200, false).map_err(|m| StoreError::invalid("address", m))?,
        notes: multi_line(&input.notes, 2000).map_err(|m| StoreError::invalid("notes", m))?,
    })
}

const DUPLICATE: Msg = Msg::new("本合同已有同名站点", "This contract already has a site with that name");

pub async fn list(db: &Db, scope: &ContractScope, after_id: Option<i64>, limit: i64) -> StoreResult<Vec<Site>> {
    scope.require(ContractPermission::SiteRead)?;
    let rows = sqlx::query("SELECT * FROM site WHERE contract_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(scope.contract_id())
        .bind(after_id.unwrap_or(0))
        .bind(limit.clamp(1, 500))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(site_from_row).collect()
}

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Site> {
    scope.require(ContractPermission::SiteRead)?;
    let row = sqlx::query("SELECT * FROM site WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    site_from_row(&row.ok_or(StoreError::NotFound)?)
}

pub async fn create(db: &Db, scope: &ContractScope, input: &SiteInput, now_ms: i64) -> StoreResult<Site> {
    scope.require(ContractPermission::SiteWrite)?;
    let s = validate(input)?;
    let mut tx = db.begin_write(now_ms).await?;
    let row = sqlx::query(
        "INSERT INTO site (contract_id, name, kind, address, notes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
    )
    .bind(scope.contract_id())
    .bind(s.name.clone())
    .bind(s.kind.clone())
    .bind(s.address.clone())
    .bind(s.notes.clone())
    .bind(now_ms)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    let site = site_from_row(&row)?;
    tx.audit(
        AuditEntry::new(scope.actor(), "site.create", format!("site:{}", site.id))
            .contract(scope.contract_id())
            .detail(format!("name={} kind={}", site.name, site.kind)),
    )
    .await?;
    tx.commit().await?;
    Ok(site)
}

/// Updates a site if nobody changed it since `version` was read (optimistic concurrency).
pub async fn update(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    input: &SiteInput,
    now_ms: i64,
) -> StoreResult<Site> {
    scope.require(ContractPermission::SiteWrite)?;
    let s = validate(input)?;
    let before = get(db, scope, id).await?;
    let mut tx = db.begin_write(now_ms).await?;
    let row = sqlx::query(
        "UPDATE site SET name = $1, kind = $2, address = $3, notes = $4, updated_at = $5, version = version + 1 \
         WHERE contract_id = $6 AND id = $7 AND version = $8 RETURNING *",
    )
    .bind(s.name.clone())
    .bind(s.kind.clone())
    .bind(s.address.clone())
    .bind(s.notes.clone())
    .bind(now_ms)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .fetch_optional(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    let Some(row) = row else {
        return Err(StoreError::Conflict(Msg::new(
            "记录已被他人修改，请刷新后重试",
            "The record was changed by someone else; reload and retry",
        )));
    };
    let site = site_from_row(&row)?;
    tx.audit(AuditEntry::new(scope.actor(), "site.update", format!("site:{id}")).contract(scope.contract_id()).detail(
        format!(
            "before=name={} kind={} address={} after=name={} kind={} address={}",
            before.name, before.kind, before.address, site.name, site.kind, site.address
        ),
    ))
    .await?;
    tx.commit().await?;
    Ok(site)
}

pub async fn delete(db: &Db, scope: &ContractScope, id: i64, now_ms: i64) -> StoreResult<()> {
    scope.require(ContractPermission::SiteWrite)?;
    let before = get(db, scope, id).await?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("DELETE FROM site WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "site.delete", format!("site:{id}"))
            .contract(scope.contract_id())
            .detail(format!("name={} kind={}", before.name, before.kind)),
    )
    .await?;
    tx.commit().await
}
