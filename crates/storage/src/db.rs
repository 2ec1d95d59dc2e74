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
    Migration {
        version: 6,
        name: "asset_search",
        sqlite: include_str!("../migrations/sqlite/0006_asset_search.sql"),
        postgres: include_str!("../migrations/postgres/0006_asset_search.sql"),
    },
    Migration {
        version: 7,
        name: "inspections",
        sqlite: include_str!("../migrations/sqlite/0007_inspections.sql"),
        postgres: include_str!("../migrations/postgres/0007_inspections.sql"),
    },
    Migration {
        version: 8,
        name: "asset_search_filters",
        sqlite: include_str!("../migrations/sqlite/0008_asset_search_filters.sql"),
        postgres: include_str!("../migrations/postgres/0008_asset_search_filters.sql"),
    },
    Migration {
        version: 9,
        name: "monitors",
        sqlite: include_str!("../migrations/sqlite/0009_monitors.sql"),
        postgres: include_str!("../migrations/postgres/0009_monitors.sql"),
    },
    Migration {
        version: 10,
        name: "exchange_interfaces",
        sqlite: include_str!("../migrations/sqlite/0010_exchange_interfaces.sql"),
        postgres: include_str!("../migrations/postgres/0010_exchange_interfaces.sql"),
    },
    Migration {
        version: 11,
        name: "asset_search_key_letters",
        sqlite: include_str!("../migrations/sqlite/0011_asset_search_key_letters.sql"),
        postgres: include_str!("../migrations/postgres/0011_asset_search_key_letters.sql"),
    },
];

/// The schema version this binary expects.
pub const SCHEMA_VERSION: i64 = 11;

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
    /// SQLite only: the queue of this process's writers and their one connection (see
    /// [`Db::begin_write`]).
    sqlite_writer: Option<SqliteWriter>,
}

#[derive(Clone)]
struct SqliteWriter {
    options: AnyConnectOptions,
    connection: Arc<tokio::sync::Mutex<Option<AnyConnection>>>,
    /// Commits so far, for the checkpointer.
    commits: Arc<std::sync::atomic::AtomicU64>,
}

/// Set on every SQLite connection. WAL lets readers run beside the one writer; busy_timeout makes
/// writers of other processes wait for each other instead of failing; NORMAL is durable in WAL mode
/// except on power loss of the last transaction, the usual trade-off for an embedded server
/// database; mmap: pages are read from the mapping instead of a pread call each time another
/// connection's write invalidated a connection's cache.
/// The WAL is checkpointed by a background task (see [`checkpointer`]), not by the committing
/// writer: an automatic checkpoint copies pages and syncs the files inside the commit that crossed
/// the threshold, which set the create p99 (BENCHMARKS.md). The high threshold stays as a safety
/// net should the task fall behind.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 20000;";

/// Checkpoints the WAL of an SQLite database in the background while any of this process's writes
/// happened since the last time; stops when the pool closes. PASSIVE: it never waits for or blocks
/// the writer or readers.
async fn checkpointer(pool: AnyPool, commits: Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::Ordering;
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if pool.is_closed() {
            return;
        }
        let now = commits.load(Ordering::Relaxed);
        if now == seen {
            continue;
        }
        seen = now;
        if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
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
            // No ping before handing out an embedded connection: it cannot have been dropped by a
            // server, and the ping is a round trip to the connection's worker thread.
            pool_options.test_before_acquire(false).after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
        } else {
            pool_options
        };
        let pool = pool_options.connect_with(options.clone()).await?;
        let sqlite_writer = (backend == Backend::Sqlite).then(|| SqliteWriter {
            options,
            connection: Arc::new(tokio::sync::Mutex::new(None)),
            commits: Arc::default(),
        });
        if let Some(w) = &sqlite_writer
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(checkpointer(pool.clone(), w.commits.clone()));
        }
        let db = Db {
            pool,
            backend,
            secrets: Arc::new(secrets),
            policy_cache: Arc::default(),
            rules_cache: Arc::default(),
            email_enabled: Arc::default(),
            sqlite_writer,
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
        if let Some(w) = &self.sqlite_writer
            && let Some(conn) = w.connection.lock().await.take()
        {
            let _ = conn.close().await;
        }
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
        let conn = match (&self.backend, &self.sqlite_writer) {
            (Backend::Sqlite, Some(w)) => {
                // Writers of this process queue here instead of in SQLite's busy handler, which
                // sleeps in growing steps between retries: under concurrent writes that sleeping,
                // not the writing, set the latency. `BEGIN IMMEDIATE` still guards against other
                // processes (the command line) writing at the same time. The queue holds the
                // one writer connection, so that no other writer invalidates its page cache and
                // no pool hands it out or pings it.
                let mut guard = w.connection.clone().lock_owned().await;
                if guard.is_none() {
                    *guard = Some(AnyConnection::connect_with(&w.options).await?);
                    if let Some(conn) = guard.as_mut() {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                }
                TxConn::Sqlite { writer: Some(guard), begun: false, head: None, commits: w.commits.clone() }
            }
            _ => {
                let mut tx = self.pool.begin().await?;
                // The row lock that orders writers on the audit chain across nodes.
                sqlx::query("UPDATE audit_head SET touched_at = $1 WHERE id = 1")
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                TxConn::Postgres(tx)
            }
        };
        Ok(WriteTx { conn, now_ms, audited: 0, pending: Vec::new(), email_enabled: self.email_enabled.clone() })
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

/// A bound value of a deferred statement (see [`WriteTx::defer`]).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    /// Never NULL: sqlx's `Any` binds a NULL f64 as PostgreSQL float4 (bind a value and a has-flag).
    Float(f64),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::OptInt(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::OptText(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::OptText(v.map(str::to_string))
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::Float(v)
    }
}

/// A statement waiting in a [`WriteTx`] until the next flush.
struct Deferred {
    sql: std::borrow::Cow<'static, str>,
    args: Vec<Arg>,
}

/// `sql` with every placeholder `$N` renumbered to `$N+offset`, so that several statements can
/// share one argument list. Only for this crate's own statements, which have no `$` in literals.
fn shift_placeholders(sql: &str, offset: usize, out: &mut String) {
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let n: usize = rest[..digits].parse().unwrap_or(0);
            out.push_str(&(n + offset).to_string());
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Float(v) => q.bind(v),
        };
    }
    q
}

/// A write transaction. It must append at least one audit record before it may commit.
///
/// Statements whose results the transaction does not need (history rows, notices, the audit
/// record itself) are deferred: on SQLite they go to the database as one multi-statement batch
/// with the next statement that is needed now, or with `COMMIT`. Every statement sent separately
/// is a round trip to SQLite's worker thread, and those hand-offs, not SQLite, were most of the
/// cost of a write (BENCHMARKS.md, service desk): a new ticket is now two batches. On SQLite
/// `BEGIN IMMEDIATE` and a read of the audit chain's head also go with the first batch; while
/// the transaction holds the write lock only its own `audit` calls move the head. Every statement
/// that reads runs after the ones deferred before it, so the order of effects is the order of calls.
pub struct WriteTx {
    conn: TxConn,
    now_ms: i64,
    audited: u32,
    pending: Vec<Deferred>,
    pub(crate) email_enabled: Arc<std::sync::atomic::AtomicBool>,
}

enum TxConn {
    /// This process's one SQLite writer connection, held through the writer queue's guard.
    Sqlite {
        writer: Option<tokio::sync::OwnedMutexGuard<Option<AnyConnection>>>,
        /// `BEGIN IMMEDIATE` has been sent (and not yet committed or rolled back).
        begun: bool,
        /// The audit chain's head as this transaction leaves it.
        head: Option<(i64, String)>,
        commits: Arc<std::sync::atomic::AtomicU64>,
    },
    Postgres(sqlx::Transaction<'static, Any>),
    /// Committed (PostgreSQL).
    Finished,
}

const HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";

/// The longest SQLite batch kept prepared in the writer connection's statement cache (sqlx keeps
/// the last 100 texts, each with every statement of the batch compiled). A batch is one text, so
/// one whose shape follows its data — a second of monitor results in multi-row inserts, an
/// import chunk — is a new entry almost every time: with 20,000 monitors SQLite's memory grew to
/// 86 MiB in four minutes, nearly all compiled statements of about 26 KiB each (5.5 MiB with this
/// limit; server RSS 190–204 → 90–116 MiB), and the ticket writes' batches were pushed out.
/// Such batches are long, and compiling one costs little beside running it; the short, repeating
/// ones (a ticket's creation, a comment) are where reusing the compiled statements pays
/// (BENCHMARKS.md, service desk).
const CACHED_BATCH_MAX_BYTES: usize = 16 * 1024;

fn head_of(row: &sqlx::any::AnyRow) -> StoreResult<(i64, String)> {
    Ok((row.try_get("seq")?, row.try_get("hash")?))
}

impl WriteTx {
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Sends the deferred statements, then `last` (whose rows are returned), and `COMMIT` when
    /// `commit`: on SQLite in one batch, on PostgreSQL one statement after another.
    async fn run(
        &mut self,
        last: Option<(std::borrow::Cow<'static, str>, Vec<Arg>)>,
        commit: bool,
    ) -> StoreResult<Vec<sqlx::any::AnyRow>> {
        let pending = std::mem::take(&mut self.pending);
        match &mut self.conn {
            TxConn::Sqlite { writer, begun, head, commits } => {
                let conn = writer.as_mut().and_then(|g| g.as_mut()).ok_or_else(writer_gone)?;
                let opening = !*begun;
                let mut sql = String::new();
                let mut args = Vec::new();
                if opening {
                    sql.push_str("BEGIN IMMEDIATE;\n");
                    sql.push_str(HEAD_SQL);
                    sql.push_str(";\n");
                }
                for d in pending {
                    shift_placeholders(&d.sql, args.len(), &mut sql);
                    sql.push_str(";\n");
                    args.extend(d.args);
                }
                if let Some((q, a)) = last {
                    shift_placeholders(&q, args.len(), &mut sql);
                    sql.push_str(";\n");
                    args.extend(a);
                }
                if commit {
                    sql.push_str("COMMIT;");
                }
                if sql.is_empty() {
                    return Ok(Vec::new());
                }
                // From here an error leaves a transaction to roll back (see `Drop`).
                *begun = true;
                let persistent = sql.len() <= CACHED_BATCH_MAX_BYTES;
                let query = bind_all(sqlx::query(AssertSqlSafe(sql)), args).persistent(persistent);
                let mut rows = query.fetch_all(&mut *conn).await?;
                if opening {
                    // Deferred statements return no rows: the first row is the head.
                    let first = rows.first().ok_or(StoreError::Schema("the audit chain head row is missing".into()))?;
                    *head = Some(head_of(first)?);
                    rows.remove(0);
                }
                if commit {
                    *begun = false;
                    commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(rows)
            }
            TxConn::Postgres(tx) => {
                for d in pending {
                    bind_all(sqlx::query(AssertSqlSafe(d.sql)), d.args).execute(&mut **tx).await?;
                }
                let rows = match last {
                    Some((q, a)) => bind_all(sqlx::query(AssertSqlSafe(q)), a).fetch_all(&mut **tx).await?,
                    None => Vec::new(),
                };
                if commit {
                    // Taken out: a transaction is consumed by its commit.
                    if let TxConn::Postgres(tx) = std::mem::replace(&mut self.conn, TxConn::Finished) {
                        tx.commit().await?;
                    }
                }
                Ok(rows)
            }
            TxConn::Finished => Err(ended()),
        }
    }

    /// The connection, for a statement built elsewhere whose result is needed now; deferred
    /// statements (and on SQLite the `BEGIN`) run first.
    pub(crate) async fn conn(&mut self) -> StoreResult<&mut AnyConnection> {
        self.run(None, false).await?;
        match &mut self.conn {
            TxConn::Sqlite { writer, .. } => writer.as_mut().and_then(|g| g.as_mut()).ok_or_else(writer_gone),
            TxConn::Postgres(tx) => Ok(&mut **tx),
            TxConn::Finished => Err(ended()),
        }
    }

    /// Queues a statement whose result this transaction does not need; it runs with the next
    /// statement that is needed now, in call order.
    pub(crate) fn defer(&mut self, sql: &'static str, args: Vec<Arg>) {
        self.pending.push(Deferred { sql: sql.into(), args });
    }

    /// Runs `sql` after the deferred statements (on SQLite in the same round trip) and returns
    /// its rows.
    pub(crate) async fn fetch_all(
        &mut self,
        sql: impl Into<std::borrow::Cow<'static, str>>,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<sqlx::any::AnyRow>> {
        self.run(Some((sql.into(), args)), false).await
    }

    /// Like [`WriteTx::fetch_all`] for a statement that returns exactly one row.
    pub(crate) async fn fetch_one(
        &mut self,
        sql: impl Into<std::borrow::Cow<'static, str>>,
        args: Vec<Arg>,
    ) -> StoreResult<sqlx::any::AnyRow> {
        self.fetch_all(sql, args).await?.into_iter().next().ok_or(StoreError::NotFound)
    }

    /// Runs one statement now (after the deferred ones) and returns the rows it changed.
    pub(crate) async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> StoreResult<u64> {
        let conn = self.conn().await?;
        Ok(bind_all(sqlx::query(sql), args).execute(conn).await?.rows_affected())
    }

    /// Appends one record to the hash chain inside this transaction. The record and the new head
    /// are deferred; on SQLite the head itself was read with the transaction's first batch.
    pub async fn audit(&mut self, e: AuditEntry) -> StoreResult<()> {
        let (prev_seq, prev_hash) = match &self.conn {
            TxConn::Sqlite { head: Some(h), .. } => h.clone(),
            TxConn::Sqlite { .. } => {
                self.run(None, false).await?;
                match &self.conn {
                    TxConn::Sqlite { head: Some(h), .. } => h.clone(),
                    _ => return Err(StoreError::Schema("the audit chain head was not read".into())),
                }
            }
            _ => head_of(&self.fetch_one(HEAD_SQL, Vec::new()).await?)?,
        };
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
        if let TxConn::Sqlite { head, .. } = &mut self.conn {
            *head = Some((seq, hash.clone()));
        }
        let now_ms = self.now_ms;
        self.defer(
            "INSERT INTO audit_log (seq, at_ms, user_id, username, source_ip, contract_id, action, object, result, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            vec![
                seq.into(),
                now_ms.into(),
                e.user_id.into(),
                e.username.into(),
                e.source_ip.into(),
                e.contract_id.into(),
                e.action.into(),
                e.object.into(),
                e.result.as_str().into(),
                e.detail.into(),
                prev_hash.into(),
                hash.clone().into(),
            ],
        );
        self.defer("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", vec![seq.into(), hash.into()]);
        self.audited += 1;
        Ok(())
    }

    /// Commits a transaction that changed only derived bookkeeping no person asked for (when the
    /// scheduler must look at a ticket next). Anything a person or a rule changes uses [`commit`].
    pub(crate) async fn commit_bookkeeping(mut self) -> StoreResult<()> {
        self.run(None, true).await.map(drop)
    }

    pub async fn commit(mut self) -> StoreResult<()> {
        if self.audited == 0 {
            // A programming error, not a user error: refuse to commit an unaudited change (the
            // transaction is rolled back when dropped).
            return Err(StoreError::Schema("write transaction committed without an audit record".into()));
        }
        self.run(None, true).await.map(drop)
    }
}

fn ended() -> StoreError {
    StoreError::Schema("write transaction used after it ended".into())
}

fn writer_gone() -> StoreError {
    StoreError::Schema("the SQLite writer connection is closed".into())
}

impl Drop for WriteTx {
    /// An unfinished SQLite transaction (an error, a refused change, a cancelled request) is rolled
    /// back before the next writer gets the connection: the queue's guard goes with the rollback.
    /// (sqlx rolls back a PostgreSQL transaction dropped unfinished.)
    fn drop(&mut self) {
        if let TxConn::Sqlite { writer, begun: true, .. } = &mut self.conn
            && let Some(mut guard) = writer.take()
        {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let failed = match guard.as_mut() {
                            Some(conn) => sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.is_err(),
                            None => false,
                        };
                        if failed {
                            // Not knowing the connection's state, start the next writer afresh.
                            *guard = None;
                        }
                    });
                }
                // No runtime (shutting down): closing the connection rolls the transaction back.
                Err(_) => *guard = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_shifted_past_earlier_statements() {
        let mut out = String::new();
        shift_placeholders("INSERT INTO t (a, b) VALUES ($1, $2)", 0, &mut out);
        out.push_str("; ");
        shift_placeholders("UPDATE t SET a = $2 WHERE b = $1 AND c = $10", 3, &mut out);
        assert_eq!(out, "INSERT INTO t (a, b) VALUES ($1, $2); UPDATE t SET a = $5 WHERE b = $4 AND c = $13");
        let mut out = String::new();
        shift_placeholders("SELECT '$' || $1, $", 2, &mut out);
        assert_eq!(out, "SELECT '$' || $3, $");
    }

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
