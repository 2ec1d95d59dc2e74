use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Connection, Executor, Row};
use yunwei_core::audit::{AuditContent, chain_hash};

use crate::audit::AuditEntry;
use crate::error::{StoreError, StoreResult};
use crate::secrets::SecretBox;

/// Which engine a [`Db`] talks to, read from the URL scheme at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> StoreResult<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Schema(format!(
                "unsupported database URL scheme in {:?}: use sqlite:// or postgres://",
                redact_url(url)
            )))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

fn cores() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(2)
}

/// The URL with any password replaced, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Forward-only migrations. Never edit one that has shipped: add the next version instead, in both
/// folders (a test checks that the folders list the same versions).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "platform_core",
        sqlite: include_str!("../migrations/sqlite/0001_platform_core.sql"),
        postgres: include_str!("../migrations/postgres/0001_platform_core.sql"),
    },
    Migration {
        version: 2,
        name: "contract_files",
        sqlite: include_str!("../migrations/sqlite/0002_contract_files.sql"),
        postgres: include_str!("../migrations/postgres/0002_contract_files.sql"),
    },
    Migration {
        version: 3,
        name: "service_desk",
        sqlite: include_str!("../migrations/sqlite/0003_service_desk.sql"),
        postgres: include_str!("../migrations/postgres/0003_service_desk.sql"),
    },
    Migration {
        version: 4,
        name: "asset_ledger",
        sqlite: include_str!("../migrations/sqlite/0004_asset_ledger.sql"),
        postgres: include_str!("../migrations/postgres/0004_asset_ledger.sql"),
    },
    Migration {
        version: 5,
        name: "device_config_alerts",
        sqlite: include_str!("../migrations/sqlite/0005_device_config_alerts.sql"),
        postgres: include_str!("../migrations/postgres/0005_device_config_alerts.sql"),
    },
];

/// The schema version this binary expects.
pub const SCHEMA_VERSION: i64 = 5;

/// A pool on one of the two engines, plus the key that seals secrets at rest.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    backend: Backend,
    pub(crate) secrets: Arc<SecretBox>,
    /// The security policy is read on every request; it changes rarely. Cached for a few seconds
    /// (another node's change takes effect here within that time; this node's at once).
    pub(crate) policy_cache: Arc<std::sync::Mutex<Option<(std::time::Instant, yunwei_core::password::SecurityPolicy)>>>,
    /// Compiled contract files and the holiday table, which every ticket change consults.
    pub(crate) rules_cache: Arc<crate::rules::RulesCache>,
    /// Whether notifications also queue emails (set when SMTP is configured).
    pub(crate) email_enabled: Arc<std::sync::atomic::AtomicBool>,
    /// The queue of this process's SQLite writers (see [`Db::begin_write`]).
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Db {
    /// Connects, applies pending migrations and refuses a schema newer than this binary.
    pub async fn connect(url: &str, secrets: SecretBox) -> StoreResult<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let options: AnyConnectOptions = url.parse().map_err(StoreError::Database)?;
        let pool_options =
            AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10)).max_connections(match backend {
                // One writer at a time and CPU-bound reads: more connections than about twice the
                // cores only add contention (BENCHMARKS.md: 16 was slower than 4 on 2 cores).
                Backend::Sqlite => cores().saturating_mul(2).clamp(4, 16),
                Backend::Postgres => 16,
            });
        let pool_options = if backend == Backend::Sqlite {
            pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; busy_timeout makes writers wait
                    // for each other instead of failing; NORMAL is durable in WAL mode except on power loss
                    // of the last transaction, the usual trade-off for an embedded server database.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
        } else {
            pool_options
        };
        let pool = pool_options.connect_with(options).await?;
        let db = Db {
            pool,
            backend,
            secrets: Arc::new(secrets),
            policy_cache: Arc::default(),
            rules_cache: Arc::default(),
            email_enabled: Arc::default(),
            sqlite_writer: Arc::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// (connections open, idle) for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn schema_version(&self) -> StoreResult<i64> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("v")?)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Several stateless nodes may start at once: one migrates, the others wait.
            sqlx::query("SELECT pg_advisory_lock(7420113)").execute(&mut *conn).await?;
        }
        let result = migrate_on(&mut conn, self.backend).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7420113)").execute(&mut *conn).await?;
        }
        result
    }

    /// Starts a write transaction that holds the writer lock from its first statement, so that the
    /// audit chain it appends to cannot interleave with another writer's.
    pub async fn begin_write(&self, now_ms: i64) -> StoreResult<WriteTx> {
        let (tx, queued) = match self.backend {
            Backend::Sqlite => {
                // Writers of this process queue here instead of in SQLite's busy handler, which
                // sleeps in growing steps between retries: under concurrent writes that sleeping,
                // not the writing, set the latency. `BEGIN IMMEDIATE` still guards against other
                // processes (the command line) writing at the same time.
                let guard = self.sqlite_writer.clone().lock_owned().await;
                (self.pool.begin_with("BEGIN IMMEDIATE").await?, Some(guard))
            }
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                // The row lock that orders writers on the audit chain across nodes.
                sqlx::query("UPDATE audit_head SET touched_at = $1 WHERE id = 1")
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                (tx, None)
            }
        };
        Ok(WriteTx { tx, now_ms, audited: 0, email_enabled: self.email_enabled.clone(), _queued: queued })
    }

    /// Records an event that changes nothing else (a failed login, a denied request).
    pub async fn audit_event(&self, now_ms: i64, entry: AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin_write(now_ms).await?;
        tx.audit(entry).await?;
        tx.commit().await
    }

    /// A consistent online copy of an SQLite database (`VACUUM INTO`).
    pub async fn backup_sqlite(&self, dest: &str) -> StoreResult<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Schema(
                "online backup is built in for SQLite only; back up PostgreSQL with pg_dump".into(),
            ));
        }
        sqlx::query("VACUUM INTO $1").bind(dest.to_string()).execute(&self.pool).await?;
        Ok(())
    }
}

async fn migrate_on(conn: &mut AnyConnection, backend: Backend) -> StoreResult<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version").fetch_one(&mut *conn).await?;
    let current: i64 = row.try_get("v")?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the database schema is version {current}, newer than this yunwei binary understands \
             (version {SCHEMA_VERSION}); run a newer yunwei release against this database \
             / 数据库结构版本 {current} 高于本程序支持的版本 {SCHEMA_VERSION}，请使用更新的 yunwei 版本"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let sql = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        sqlx::query("INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

/// A write transaction. It must append at least one audit record before it may commit.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, Any>,
    now_ms: i64,
    audited: u32,
    pub(crate) email_enabled: Arc<std::sync::atomic::AtomicBool>,
    /// This process's place as the SQLite writer, released with the transaction.
    _queued: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends one record to the hash chain inside this transaction.
    pub async fn audit(&mut self, e: AuditEntry) -> StoreResult<()> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut *self.tx).await?;
        let prev_seq: i64 = row.try_get("seq")?;
        let prev_hash: String = row.try_get("hash")?;
        let seq = prev_seq + 1;
        let content = AuditContent {
            seq,
            at_ms: self.now_ms,
            user_id: e.user_id,
            username: &e.username,
            source_ip: &e.source_ip,
            contract_id: e.contract_id,
            action: &e.action,
            object: &e.object,
            result: e.result.as_str(),
            detail: &e.detail,
        };
        let hash = chain_hash(&prev_hash, &content);
        sqlx::query(
            "INSERT INTO audit_log (seq, at_ms, user_id, username, source_ip, contract_id, action, object, result, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(seq)
        .bind(self.now_ms)
        .bind(e.user_id)
        .bind(e.username.clone())
        .bind(e.source_ip.clone())
        .bind(e.contract_id)
        .bind(e.action.clone())
        .bind(e.object.clone())
        .bind(e.result.as_str())
        .bind(e.detail.clone())
        .bind(prev_hash)
        .bind(hash.clone())
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(hash)
            .execute(&mut *self.tx)
            .await?;
        self.audited += 1;
        Ok(())
    }

    /// Commits a transaction that changed only derived bookkeeping no person asked for (when the
    /// scheduler must look at a ticket next). Anything a person or a rule changes uses [`commit`].
    pub(crate) async fn commit_bookkeeping(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn commit(self) -> StoreResult<()> {
        if self.audited == 0 {
            // A programming error, not a user error: refuse to commit an unaudited change.
            self.tx.rollback().await?;
            return Err(StoreError::Schema("write transaction committed without an audit record".into()));
        }
        self.tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_folders_hold_the_same_versions() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let list = |engine: &str| {
            let mut v: Vec<String> = std::fs::read_dir(format!("{dir}/{engine}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let sqlite = list("sqlite");
        assert_eq!(sqlite, list("postgres"));
        assert_eq!(sqlite.len(), MIGRATIONS.len(), "every migration file must be listed in MIGRATIONS");
        assert_eq!(MIGRATIONS.last().unwrap().version, SCHEMA_VERSION);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(sqlite[i].starts_with(&format!("{:04}_{}", m.version, m.name)), "{}", sqlite[i]);
        }
    }

    #[test]
    fn url_redaction() {
        assert_eq!(redact_url("postgres://yw:s3cret@db:5432/yw"), "postgres://yw:***@db:5432/yw");
        assert_eq!(redact_url("postgres://yw@db/yw"), "postgres://yw@db/yw");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
