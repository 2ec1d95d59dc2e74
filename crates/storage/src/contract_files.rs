//! Contract files imported as data: each import of a changed file is a new numbered version, kept
//! with its source text, so that earlier tickets keep the version they were opened under.

use serde::Serialize;
use sqlx::Row;
use yunwei_core::authz::{AdminPermission, ContractPermission};
use yunwei_core::contract::{self, CompiledContract};

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::{AdminScope, ContractScope};

#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub contract_id: i64,
    pub version: i64,
    pub created: bool,
    /// The file was identical to the current version: nothing was stored.
    pub unchanged: bool,
    /// "- old line" / "+ new line" in the words of [`contract::summary_lines`].
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: i64,
    pub imported_at: i64,
    pub imported_by: String,
    pub summary: String,
}

fn sm3(text: &str) -> String {
    yunwei_core::audit::sm3_hex(text.as_bytes())
}

/// Checks and imports a contract file (system admin): creates the contract, or records a new version
/// of the one with the same code. Sites named in the file that the contract lacks are added; sites
/// are never removed by an import (they are ledger records the team keeps).
pub async fn import(db: &Db, scope: &AdminScope, bytes: &[u8], now_ms: i64) -> StoreResult<ImportOutcome> {
    scope.expect(AdminPermission::ContractManage)?;
    let compiled = contract::check(bytes).map_err(StoreError::ContractFile)?;
    let source = String::from_utf8_lossy(bytes).into_owned();
    let lines = contract::summary_lines(&compiled);
    let h = &compiled.file.contract;
    let code = h.code.get_ref().clone();
    let existing =
        sqlx::query("SELECT id FROM contract WHERE code = $1").bind(code.clone()).fetch_optional(&db.pool).await?;
    let (contract_id, previous) = match existing {
        Some(row) => {
            let id: i64 = row.try_get("id")?;
            let prev = sqlx::query("SELECT version, source, source_sm3 FROM contract_version WHERE contract_id = $1 ORDER BY version DESC LIMIT 1")
                .bind(id)
                .fetch_optional(&db.pool)
                .await?;
            (Some(id), prev)
        }
        None => (None, None),
    };
    let (prev_version, prev_lines) = match &previous {
        Some(row) => {
            let v: i64 = row.try_get("version")?;
            if row.try_get::<String, _>("source_sm3")? == sm3(&source) {
                return Ok(ImportOutcome {
                    contract_id: contract_id.unwrap_or(0),
                    version: v,
                    created: false,
                    unchanged: true,
                    changes: Vec::new(),
                });
            }
            let old: String = row.try_get("source")?;
            let old_lines = contract::check(old.as_bytes()).map(|c| contract::summary_lines(&c)).unwrap_or_default();
            (v, old_lines)
        }
        None => (0, Vec::new()),
    };
    let changes = contract::changes(&prev_lines, &lines);
    let version = prev_version + 1;
    let mut tx = db.begin_write(now_ms).await?;
    let id = match contract_id {
        Some(id) => {
            sqlx::query(
                "UPDATE contract SET name = $1, client_name = $2, vendor_name = $3, starts_on = $4, ends_on = $5, \
                 updated_at = $6, version = version + 1 WHERE id = $7",
            )
            .bind(h.name.clone())
            .bind(h.client.clone())
            .bind(h.vendor.clone())
            .bind(h.starts_on.get_ref().clone())
            .bind(h.ends_on.get_ref().clone())
            .bind(now_ms)
            .bind(id)
            .execute(tx.conn().await?)
            .await?;
            id
        }
        None => sqlx::query(
            "INSERT INTO contract (code, name, client_name, vendor_name, starts_on, ends_on, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7) RETURNING id",
        )
        .bind(code.clone())
        .bind(h.name.clone())
        .bind(h.client.clone())
        .bind(h.vendor.clone())
        .bind(h.starts_on.get_ref().clone())
        .bind(h.ends_on.get_ref().clone())
        .bind(now_ms)
        .fetch_one(tx.conn().await?)
        .await?
        .try_get("id")?,
    };
    add_missing_sites(&mut tx, id, &compiled, now_ms).await?;
    sqlx::query(
        "INSERT INTO contract_version (contract_id, version, source, source_sm3, summary, imported_at, imported_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(version)
    .bind(source.clone())
    .bind(sm3(&source))
    .bind(lines.join("\n"))
    .bind(now_ms)
    .bind(scope.actor().name.clone())
    .execute(tx.conn().await?)
    .await?;
    let detail: String = changes.join("\n").chars().take(4000).collect();
    tx.audit(
        AuditEntry::new(scope.actor(), "contract.import", format!("contract:{id}"))
            .contract(id)
            .detail(format!("version={version}\n{detail}")),
    )
    .await?;
    tx.commit().await?;
    db.rules_cache.forget_current(id);
    Ok(ImportOutcome { contract_id: id, version, created: contract_id.is_none(), unchanged: false, changes })
}

async fn add_missing_sites(
    tx: &mut crate::WriteTx,
    contract_id: i64,
    c: &CompiledContract,
    now_ms: i64,
) -> StoreResult<()> {
    for s in &c.file.sites {
        let kind = if crate::sites::KINDS.contains(&s.kind.as_str()) { s.kind.clone() } else { "other".to_string() };
        sqlx::query(
            "INSERT INTO site (contract_id, name, kind, address, notes, created_at, updated_at) VALUES ($1, $2, $3, $4, '', $5, $5) \
             ON CONFLICT (contract_id, name) DO NOTHING",
        )
        .bind(contract_id)
        .bind(s.name.clone())
        .bind(kind)
        .bind(s.address.clone())
        .bind(now_ms)
        .execute(tx.conn().await?)
        .await?;
    }
    Ok(())
}

/// The current version's source text and number, if the contract was imported from a file.
pub async fn current(db: &Db, scope: &ContractScope) -> StoreResult<Option<(i64, String)>> {
    scope.require(ContractPermission::ContractRead)?;
    let row = sqlx::query(
        "SELECT version, source FROM contract_version WHERE contract_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(scope.contract_id())
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| Ok((r.try_get("version")?, r.try_get("source")?))).transpose()
}

/// The source of the current version, by contract code (system admin: `yunwei contract export`).
pub async fn export(db: &Db, scope: &AdminScope, code: &str) -> StoreResult<String> {
    scope.expect(AdminPermission::ContractManage)?;
    let row = sqlx::query(
        "SELECT v.source FROM contract_version v JOIN contract c ON c.id = v.contract_id WHERE c.code = $1 ORDER BY v.version DESC LIMIT 1",
    )
    .bind(code.to_string())
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(row.try_get("source")?)
}

pub async fn versions(db: &Db, scope: &ContractScope) -> StoreResult<Vec<VersionInfo>> {
    scope.require(ContractPermission::ContractRead)?;
    let rows = sqlx::query("SELECT version, imported_at, imported_by, summary FROM contract_version WHERE contract_id = $1 ORDER BY version DESC")
        .bind(scope.contract_id())
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(VersionInfo {
                version: r.try_get("version")?,
                imported_at: r.try_get("imported_at")?,
                imported_by: r.try_get("imported_by")?,
                summary: r.try_get("summary")?,
            })
        })
        .collect()
}
