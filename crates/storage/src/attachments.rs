//! Ticket attachments (SE3: a file upload hole was a real finding in this field).
//!
//! - The type is decided by the content ([`yunwei_core::filetype::sniff`]), never by the name; HTML,
//!   SVG, scripts, executables and polyglots are refused.
//! - Files live in a directory outside anything the web server serves, under random names; the
//!   name the user gave is kept only as data and is rewritten for download with the sniffed extension.
//! - Reading goes through the ticket's visibility rules (a client end user sees only their own
//!   tickets and never internal attachments).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::Row;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::filetype;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

/// Largest attachment accepted.
pub const MAX_BYTES: usize = 20 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub id: i64,
    pub ticket_id: i64,
    pub file_name: String,
    pub mime: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub internal: bool,
    pub uploaded_by: String,
    pub created_at: i64,
    #[serde(skip)]
    storage_name: String,
}

fn from_row(r: &sqlx::any::AnyRow) -> StoreResult<Attachment> {
    Ok(Attachment {
        id: r.try_get("id")?,
        ticket_id: r.try_get("ticket_id")?,
        file_name: r.try_get("file_name")?,
        mime: r.try_get("mime")?,
        size_bytes: r.try_get("size_bytes")?,
        sha256: r.try_get("sha256")?,
        internal: r.try_get::<i64, _>("internal")? != 0,
        uploaded_by: r.try_get("uploaded_by")?,
        created_at: r.try_get("created_at")?,
        storage_name: r.try_get("storage_name")?,
    })
}

pub(crate) fn path_of(dir: &Path, storage_name: &str) -> PathBuf {
    // Two-level fan-out keeps directories small.
    dir.join(&storage_name[..2]).join(storage_name)
}

pub(crate) async fn list(
    db: &Db,
    scope: &ContractScope,
    ticket_id: i64,
    internal: bool,
) -> StoreResult<Vec<Attachment>> {
    let filter = if internal { "" } else { " AND internal = 0" };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM ticket_attachment WHERE contract_id = $1 AND ticket_id = $2{filter} ORDER BY id"
    )))
    .bind(scope.contract_id())
    .bind(ticket_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Stores an upload on a ticket the caller may see.
#[allow(clippy::too_many_arguments)]
pub async fn save(
    db: &Db,
    scope: &ContractScope,
    dir: &Path,
    ticket_id: i64,
    original_name: &str,
    bytes: &[u8],
    internal: bool,
    now: i64,
) -> StoreResult<Attachment> {
    let t = crate::tickets::get(db, scope, ticket_id).await?;
    if bytes.len() > MAX_BYTES {
        return Err(StoreError::invalid("file", Msg::new("附件不能超过 20 MB", "An attachment is at most 20 MB")));
    }
    let kind = filetype::sniff(bytes).map_err(|m| StoreError::invalid("file", m))?;
    let name = filetype::safe_download_name(original_name, &kind);
    let internal = internal && !scope.role().is_client_side();
    let storage_name = crate::random_token(24);
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    let path = path_of(dir, &storage_name);
    write_private(&path, bytes).map_err(|e| {
        tracing::error!(error = %e, "cannot store an attachment");
        StoreError::Schema(format!("attachment store not writable: {e}"))
    })?;
    let result = async {
        let mut tx = db.begin_write(now).await?;
        let row = sqlx::query(
            "INSERT INTO ticket_attachment (contract_id, ticket_id, file_name, mime, size_bytes, sha256, storage_name, internal, uploaded_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        )
        .bind(scope.contract_id())
        .bind(ticket_id)
        .bind(name.clone())
        .bind(kind.mime)
        .bind(bytes.len() as i64)
        .bind(sha.clone())
        .bind(storage_name.clone())
        .bind(i64::from(internal))
        .bind(scope.actor().name.clone())
        .bind(now)
        .fetch_one(tx.conn().await?)
        .await?;
        let a = from_row(&row)?;
        tx.audit(
            AuditEntry::new(scope.actor(), "ticket.attach", format!("ticket:{ticket_id}"))
                .contract(scope.contract_id())
                .detail(format!("{} {} {} bytes sha256={sha} {}", t.number, name, bytes.len(), kind.mime)),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, StoreError>(a)
    }
    .await;
    if result.is_err() {
        // Nothing in the database points at the file: do not leave it behind.
        let _ = std::fs::remove_file(&path);
    }
    result
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("part");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The attachment and its bytes, if the caller may see the ticket (and internal files).
pub async fn open(
    db: &Db,
    scope: &ContractScope,
    dir: &Path,
    ticket_id: i64,
    id: i64,
) -> StoreResult<(Attachment, Vec<u8>)> {
    scope.require(ContractPermission::TicketRead)?;
    crate::tickets::get(db, scope, ticket_id).await?;
    let row = sqlx::query("SELECT * FROM ticket_attachment WHERE contract_id = $1 AND ticket_id = $2 AND id = $3")
        .bind(scope.contract_id())
        .bind(ticket_id)
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let a = from_row(&row)?;
    if a.internal && scope.role().is_client_side() {
        return Err(StoreError::NotFound);
    }
    let bytes = std::fs::read(path_of(dir, &a.storage_name)).map_err(|e| {
        tracing::error!(error = %e, attachment = a.id, "attachment file missing");
        StoreError::NotFound
    })?;
    Ok((a, bytes))
}
