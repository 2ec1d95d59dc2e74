//! Saved ticket-list filters: a person keeps the queries they run often under a name, per contract.
//!
//! Each filter belongs to one person in one contract: every statement filters on the scope's
//! contract id and the caller's own user id, so nobody sees or deletes another person's filters.
//! The query is the list page's query string; it is stored as data and only ever appended to the
//! list page's own path.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::text::single_line;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

/// Most filters one person keeps in one contract.
pub const MAX_PER_USER: i64 = 50;

#[derive(Debug, Clone, Serialize)]
pub struct SavedFilter {
    pub id: i64,
    pub name: String,
    /// The list's query string, without the leading `?`.
    pub query: String,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> StoreResult<SavedFilter> {
    Ok(SavedFilter {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        query: r.try_get("query")?,
        created_at: r.try_get("created_at")?,
    })
}

/// The caller's user id: saved filters belong to people, not to API tokens.
fn owner(scope: &ContractScope) -> StoreResult<i64> {
    scope.require(ContractPermission::TicketRead)?;
    scope.actor().user_id.ok_or(StoreError::Forbidden)
}

/// The caller's filters in the scope's contract, by name.
pub async fn list(db: &Db, scope: &ContractScope) -> StoreResult<Vec<SavedFilter>> {
    let uid = owner(scope)?;
    let rows = sqlx::query(
        "SELECT id, name, query, created_at FROM saved_filter WHERE contract_id = $1 AND user_id = $2 ORDER BY name, id",
    )
    .bind(scope.contract_id())
    .bind(uid)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

fn check_query(query: &str) -> StoreResult<String> {
    let q = single_line(query.trim_start_matches('?'), 2000, false).map_err(|m| StoreError::invalid("query", m))?;
    // A query string only: no path, no scheme, nothing a link could be turned into.
    if q.chars().any(|c| c.is_whitespace() || matches!(c, '/' | '\\' | '?' | '#' | '<' | '>' | '"' | '\'')) {
        return Err(StoreError::invalid("query", Msg::new("筛选条件无效", "The filter is invalid")));
    }
    Ok(q)
}

/// Saves the query under a name; saving again under the same name replaces the query.
pub async fn save(db: &Db, scope: &ContractScope, name: &str, query: &str, now: i64) -> StoreResult<SavedFilter> {
    let uid = owner(scope)?;
    let name = single_line(name, 100, true).map_err(|m| StoreError::invalid("name", m))?;
    let query = check_query(query)?;
    let mut tx = db.begin_write(now).await?;
    let row =
        sqlx::query("SELECT COUNT(*) AS n FROM saved_filter WHERE contract_id = $1 AND user_id = $2 AND name <> $3")
            .bind(scope.contract_id())
            .bind(uid)
            .bind(name.clone())
            .fetch_one(tx.conn().await?)
            .await?;
    if row.try_get::<i64, _>("n")? >= MAX_PER_USER {
        return Err(StoreError::invalid(
            "name",
            Msg::new("保存的筛选条件已达 50 个，请先删除一些", "You already keep 50 filters; delete some first"),
        ));
    }
    let row = sqlx::query(
        "INSERT INTO saved_filter (contract_id, user_id, name, query, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (contract_id, user_id, name) DO UPDATE SET query = EXCLUDED.query \
         RETURNING id, name, query, created_at",
    )
    .bind(scope.contract_id())
    .bind(uid)
    .bind(name.clone())
    .bind(query.clone())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await?;
    let saved = from_row(&row)?;
    tx.audit(
        AuditEntry::new(scope.actor(), "saved_filter.save", format!("saved_filter:{}", saved.id))
            .contract(scope.contract_id())
            .detail(format!("name={name} query={query}")),
    )
    .await?;
    tx.commit().await?;
    Ok(saved)
}

/// Deletes one of the caller's filters (another person's is `NotFound`).
pub async fn delete(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<()> {
    let uid = owner(scope)?;
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "DELETE FROM saved_filter WHERE contract_id = $1 AND user_id = $2 AND id = $3 RETURNING name, query",
    )
    .bind(scope.contract_id())
    .bind(uid)
    .bind(id)
    .fetch_optional(tx.conn().await?)
    .await?
    .ok_or(StoreError::NotFound)?;
    let (name, query): (String, String) = (row.try_get("name")?, row.try_get("query")?);
    tx.audit(
        AuditEntry::new(scope.actor(), "saved_filter.delete", format!("saved_filter:{id}"))
            .contract(scope.contract_id())
            .detail(format!("name={name} query={query}")),
    )
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_query_strings_are_kept() {
        assert_eq!(super::check_query("?view=open&q=%E6%95%B0").unwrap(), "view=open&q=%E6%95%B0");
        assert!(super::check_query("//evil.example/x").is_err());
        assert!(super::check_query("a=b c").is_err());
        assert!(super::check_query("a=\"><script>").is_err());
    }
}
