//! Holiday years imported at run time (`yunwei calendar import FILE`): next year's State Council
//! notice is loaded without a new release. They override the years embedded in the binary.

use sqlx::Row;
use yunwei_core::Msg;
use yunwei_core::authz::AdminPermission;
use yunwei_core::calendar::HolidayTable;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::AdminScope;

/// The embedded table with every imported year laid over it.
pub async fn table(db: &Db) -> StoreResult<HolidayTable> {
    let mut t = HolidayTable::embedded();
    let rows = sqlx::query("SELECT source FROM holiday_year ORDER BY year").fetch_all(&db.pool).await?;
    for row in rows {
        let text: String = row.try_get("source")?;
        // Stored files were validated on import; a failure here means the row was edited by hand.
        if let Err(e) = t.add_year_json(&text) {
            tracing::warn!(error = %e, "ignoring an unreadable imported holiday year");
        }
    }
    Ok(t)
}

/// Validates and stores one year's file (system admin). Returns the year.
pub async fn import_year(db: &Db, scope: &AdminScope, text: &str, now_ms: i64) -> StoreResult<i32> {
    scope.expect(AdminPermission::ConfigManage)?;
    let mut probe = HolidayTable::default();
    let year = probe.add_year_json(text).map_err(|e| {
        tracing::info!(error = %e, "holiday file refused");
        StoreError::invalid(
            "file",
            Msg::new("节假日文件格式不正确（应为 holiday-cn 格式）", "Not a holiday file in the holiday-cn format"),
        )
    })?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query(
        "INSERT INTO holiday_year (year, source, imported_at, imported_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (year) DO UPDATE SET source = excluded.source, imported_at = excluded.imported_at, imported_by = excluded.imported_by",
    )
    .bind(i64::from(year))
    .bind(text.to_string())
    .bind(now_ms)
    .bind(scope.actor().name.clone())
    .execute(tx.conn().await?)
    .await?;
    tx.audit(AuditEntry::new(scope.actor(), "calendar.import", format!("holiday_year:{year}"))).await?;
    tx.commit().await?;
    db.rules_cache.forget_holidays();
    Ok(year)
}
