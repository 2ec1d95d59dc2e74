//! API tokens for integrations: scoped to one contract and one role, expiring, hashed at rest.

use serde::Serialize;
use sqlx::Row;
use yunwei_core::Msg;
use yunwei_core::authz::{AdminPermission, ContractRole};
use yunwei_core::text::single_line;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::{AdminScope, Principal};

/// Visible prefix so that leaked tokens are easy to find in logs and repositories.
pub const PREFIX: &str = "ywt_";

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub contract_id: i64,
    pub role: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// Creates a token and returns it once, in clear, with its id.
pub async fn create(
    db: &Db,
    scope: &AdminScope,
    name: &str,
    contract_id: i64,
    role: ContractRole,
    expires_at_ms: i64,
    now_ms: i64,
) -> StoreResult<(i64, String)> {
    scope.expect(AdminPermission::TokenManage)?;
    let name = single_line(name, 100, true).map_err(|m| StoreError::invalid("name", m))?;
    if expires_at_ms <= now_ms || expires_at_ms > now_ms + 366 * 86_400_000 {
        return Err(StoreError::invalid("expires_at", Msg::new("有效期须在一年以内", "Tokens expire within one year")));
    }
    crate::contracts::get_contract_row(db, contract_id).await?;
    let created_by = scope.actor().user_id.ok_or(StoreError::Forbidden)?;
    let secret = format!("{PREFIX}{}", crate::random_token(32));
    let mut tx = db.begin_write(now_ms).await?;
    let id: i64 = sqlx::query(
        "INSERT INTO api_token (name, token_hash, contract_id, role, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(name.clone())
    .bind(crate::token_digest(&secret))
    .bind(contract_id)
    .bind(role.as_str())
    .bind(created_by)
    .bind(now_ms)
    .bind(expires_at_ms)
    .fetch_one(tx.conn().await?)
    .await?
    .try_get("id")?;
    tx.audit(
        AuditEntry::new(scope.actor(), "token.create", format!("token:{id}"))
            .contract(contract_id)
            .detail(format!("name={name} role={}", role.as_str())),
    )
    .await?;
    tx.commit().await?;
    Ok((id, secret))
}

pub async fn list(db: &Db, scope: &AdminScope) -> StoreResult<Vec<ApiToken>> {
    scope.expect(AdminPermission::TokenManage)?;
    let rows = sqlx::query("SELECT * FROM api_token ORDER BY id DESC").fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| {
            Ok(ApiToken {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                contract_id: r.try_get("contract_id")?,
                role: r.try_get("role")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                revoked_at: r.try_get("revoked_at")?,
                last_used_at: r.try_get("last_used_at")?,
            })
        })
        .collect()
}

pub async fn revoke(db: &Db, scope: &AdminScope, id: i64, now_ms: i64) -> StoreResult<()> {
    scope.expect(AdminPermission::TokenManage)?;
    let mut tx = db.begin_write(now_ms).await?;
    let n = sqlx::query("UPDATE api_token SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms)
        .bind(id)
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.audit(AuditEntry::new(scope.actor(), "token.revoke", format!("token:{id}"))).await?;
    tx.commit().await
}

/// The principal behind a bearer token, if it is known, unrevoked and unexpired.
pub async fn authenticate(db: &Db, secret: &str, source_ip: &str, now_ms: i64) -> StoreResult<Option<Principal>> {
    if !secret.starts_with(PREFIX) || secret.len() != PREFIX.len() + 64 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT * FROM api_token WHERE token_hash = $1")
        .bind(crate::token_digest(secret))
        .fetch_optional(&db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    let expires_at: i64 = row.try_get("expires_at")?;
    if revoked.is_some() || expires_at <= now_ms {
        return Ok(None);
    }
    let id: i64 = row.try_get("id")?;
    let last_used: Option<i64> = row.try_get("last_used_at")?;
    // Bookkeeping only, and at most once a minute, so a busy integration does not turn reads into writes.
    if last_used.is_none_or(|t| now_ms - t > 60_000) {
        sqlx::query("UPDATE api_token SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&db.pool)
            .await?;
    }
    let role: String = row.try_get("role")?;
    let name: String = row.try_get("name")?;
    let Some(role) = ContractRole::parse(&role) else { return Ok(None) };
    Ok(Some(Principal::token(id, &name, row.try_get("contract_id")?, role, source_ip.to_string())))
}
