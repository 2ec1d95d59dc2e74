//! Runtime settings edited in the UI, starting with the security policy.

use sqlx::Row;
use yunwei_core::authz::AdminPermission;
use yunwei_core::password::SecurityPolicy;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::AdminScope;

const POLICY_KEY: &str = "security_policy";

const POLICY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The policy in force: the stored one, or the defaults when none was saved.
pub async fn security_policy(db: &Db) -> StoreResult<SecurityPolicy> {
    if let Ok(cache) = db.policy_cache.lock()
        && let Some((at, policy)) = cache.as_ref()
        && at.elapsed() < POLICY_CACHE_TTL
    {
        return Ok(policy.clone());
    }
    let policy = load_policy(db).await?;
    if let Ok(mut cache) = db.policy_cache.lock() {
        *cache = Some((std::time::Instant::now(), policy.clone()));
    }
    Ok(policy)
}

async fn load_policy(db: &Db) -> StoreResult<SecurityPolicy> {
    let row = sqlx::query("SELECT value FROM setting WHERE key = $1").bind(POLICY_KEY).fetch_optional(&db.pool).await?;
    match row {
        Some(row) => {
            let text: String = row.try_get("value")?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Schema(format!("stored security policy is unreadable: {e}")))
        }
        None => Ok(SecurityPolicy::default()),
    }
}

/// Saves a policy (security admin). The old and new values go into the audit record.
pub async fn set_security_policy(db: &Db, scope: &AdminScope, policy: &SecurityPolicy, now_ms: i64) -> StoreResult<()> {
    scope.expect(AdminPermission::PolicyManage)?;
    policy.validate().map_err(|m| StoreError::invalid("policy", m))?;
    let before = load_policy(db).await?;
    let value = serde_json::to_string(policy).map_err(|e| StoreError::Schema(e.to_string()))?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query(
        "INSERT INTO setting (key, value, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(POLICY_KEY)
    .bind(value.clone())
    .bind(now_ms)
    .execute(tx.conn().await?)
    .await?;
    let before = serde_json::to_string(&before).unwrap_or_default();
    tx.audit(
        AuditEntry::new(scope.actor(), "policy.update", "setting:security_policy")
            .detail(format!("before={before} after={value}")),
    )
    .await?;
    tx.commit().await?;
    if let Ok(mut cache) = db.policy_cache.lock() {
        *cache = Some((std::time::Instant::now(), policy.clone()));
    }
    Ok(())
}
