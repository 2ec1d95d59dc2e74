//! Storage for yunwei over SQLite (the embedded default) and PostgreSQL.
//!
//! Architecture invariants:
//! - One SQL dialect subset for both engines: `$N` placeholders, BIGINT epoch-ms UTC timestamps,
//!   BIGINT 0/1 booleans, `RETURNING`. The few statements that differ live in [`db`].
//! - Domain data is reachable only through a [`ContractScope`], which only [`Principal::contract_scope`]
//!   creates after checking the caller's membership; administrator data only through an
//!   [`AdminScope`]. Neither has a public constructor, so forgetting the tenancy check does not compile.
//! - Every write runs in a [`WriteTx`] that appends its audit record in the same transaction: a change
//!   without its audit record cannot be committed, and a failed change leaves no audit record.

pub mod assets;
pub mod attachments;
pub mod audit;
pub mod contract_files;
pub mod contracts;
mod db;
pub mod desk_jobs;
pub mod device_configs;
mod error;
pub mod holidays;
pub mod inspections;
pub mod interfaces;
pub mod mail;
pub mod monitors;
pub mod notifications;
mod principal;
pub mod reconciliation;
pub mod relations;
pub mod rules;
pub mod saved_filters;
pub mod secrets;
mod series;
pub mod sessions;
pub mod settings;
pub mod sites;
pub mod suppliers;
pub mod systems;
pub mod ticket_stats;
pub mod tickets;
pub mod tokens;
pub mod users;
pub mod visits;

pub use db::{Backend, Db, SCHEMA_VERSION, WriteTx, redact_url};
pub use error::{StoreError, StoreResult};
pub use principal::{Actor, AdminScope, ContractScope, Principal};

/// Current wall-clock time in UTC epoch milliseconds, shifted by an offset that tests may move
/// forward to exercise timeouts without sleeping.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: std::sync::atomic::AtomicI64,
    /// When non-zero, the clock stands still at this instant (tests asserting exact due times).
    frozen_ms: std::sync::atomic::AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        let frozen = self.frozen_ms.load(std::sync::atomic::Ordering::Relaxed);
        if frozen != 0 {
            return frozen;
        }
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves this clock forward (tests only need this; production never calls it).
    pub fn advance_ms(&self, ms: i64) {
        let frozen = self.frozen_ms.load(std::sync::atomic::Ordering::Relaxed);
        if frozen != 0 {
            self.frozen_ms.store(frozen + ms, std::sync::atomic::Ordering::Relaxed);
        }
        self.offset_ms.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops this clock at an instant (tests only).
    pub fn freeze_at(&self, ms: i64) {
        self.frozen_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

/// argon2id runs on the blocking pool: at ~20–50 ms of CPU per hash it would otherwise stall every
/// other request scheduled on the same async worker.
pub(crate) mod kdf {
    use crate::error::{StoreError, StoreResult};

    pub async fn hash(password: &str) -> StoreResult<String> {
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || yunwei_core::password::hash_password(&pw))
            .await
            .map_err(|_| StoreError::Crypto("hashing task failed"))?
            .map_err(|_| StoreError::Crypto("hash"))
    }

    /// A real argon2id hash of a random string, used to equalise timing for unknown logins.
    static DUMMY_HASH: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| yunwei_core::password::hash_password(&crate::random_token(16)).unwrap_or_default());

    /// Spends the time of one verification, so that unknown logins answer as slowly as known ones.
    pub async fn verify_against_dummy(password: &str) {
        let pw = password.to_string();
        let _ = tokio::task::spawn_blocking(move || yunwei_core::password::verify_password(&pw, &DUMMY_HASH)).await;
    }

    pub async fn verify(password: &str, phc: &str) -> bool {
        let (pw, phc) = (password.to_string(), phc.to_string());
        tokio::task::spawn_blocking(move || yunwei_core::password::verify_password(&pw, &phc)).await.unwrap_or(false)
    }
}

/// A `LIKE` pattern matching `q` anywhere, lower-cased, with `%`, `_` and `\` escaped (statements
/// declare `ESCAPE '\'`). Substring search, because Chinese has no spaces between words.
pub(crate) fn like_contains(q: &str) -> String {
    let mut out = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Random bytes from the operating system, hex-encoded.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    hex::encode(buf)
}

/// SHA-256 of a bearer secret (session or API token). Only this digest is stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()))
}

/// Opaque pagination cursor over ascending or descending ids.
pub mod cursor {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    pub fn encode(id: i64) -> String {
        URL_SAFE_NO_PAD.encode(format!("id:{id}"))
    }

    pub fn decode(cursor: &str) -> Option<i64> {
        let raw = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok()?;
        let s = std::str::from_utf8(&raw).ok()?;
        s.strip_prefix("id:")?.parse().ok()
    }
}
