//! The contract rules a ticket is judged by: the compiled contract file of a given version and the
//! holiday table. Both are consulted on every ticket change and every scheduler pass, and parsing a
//! contract file costs far more than the change itself, so both are cached per process.
//!
//! A stored version never changes, so compiled versions are cached for good. Which version is
//! *current* is cached for a few seconds: an import on another node takes effect here within that
//! time, an import on this node at once ([`RulesCache::forget_current`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;
use yunwei_core::calendar::HolidayTable;
use yunwei_core::contract::{self, CompiledContract};

use crate::db::Db;
use crate::error::{StoreError, StoreResult};

const CURRENT_TTL: Duration = Duration::from_secs(5);
const HOLIDAYS_TTL: Duration = Duration::from_secs(30);

/// One contract file version, compiled.
#[derive(Debug)]
pub struct Rules {
    pub contract_id: i64,
    pub version: i64,
    /// The contract's code, the prefix of its ticket numbers.
    pub code: String,
    pub compiled: CompiledContract,
}

type CurrentEntry = (Instant, Option<Arc<Rules>>);

#[derive(Default)]
pub struct RulesCache {
    versions: Mutex<HashMap<(i64, i64), Arc<Rules>>>,
    current: Mutex<HashMap<i64, CurrentEntry>>,
    holidays: Mutex<Option<(Instant, Arc<HolidayTable>)>>,
}

impl RulesCache {
    pub(crate) fn forget_current(&self, contract_id: i64) {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).remove(&contract_id);
    }

    pub(crate) fn forget_holidays(&self) {
        *self.holidays.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn compile(contract_id: i64, version: i64, source: &str) -> StoreResult<Rules> {
    let compiled = contract::check(source.as_bytes()).map_err(|d| {
        // Stored files were checked on import; only a hand-edited row gets here.
        StoreError::Schema(format!(
            "stored contract file {contract_id} v{version} no longer compiles: {}",
            d.first().map(|d| d.to_string()).unwrap_or_default()
        ))
    })?;
    let code = compiled.file.contract.code.get_ref().clone();
    Ok(Rules { contract_id, version, code, compiled })
}

/// The rules of one stored version (the version a ticket was opened under).
pub async fn version(db: &Db, contract_id: i64, version: i64) -> StoreResult<Arc<Rules>> {
    if let Some(r) = db.rules_cache.versions.lock().unwrap_or_else(|e| e.into_inner()).get(&(contract_id, version)) {
        return Ok(r.clone());
    }
    let row = sqlx::query("SELECT source FROM contract_version WHERE contract_id = $1 AND version = $2")
        .bind(contract_id)
        .bind(version)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let source: String = row.try_get("source")?;
    let rules = Arc::new(compile(contract_id, version, &source)?);
    db.rules_cache.versions.lock().unwrap_or_else(|e| e.into_inner()).insert((contract_id, version), rules.clone());
    Ok(rules)
}

/// The rules in force now, or `None` for a contract created on the pages without a contract file.
pub async fn current(db: &Db, contract_id: i64) -> StoreResult<Option<Arc<Rules>>> {
    if let Some((at, r)) = db.rules_cache.current.lock().unwrap_or_else(|e| e.into_inner()).get(&contract_id)
        && at.elapsed() < CURRENT_TTL
    {
        return Ok(r.clone());
    }
    let row = sqlx::query("SELECT MAX(version) AS v FROM contract_version WHERE contract_id = $1")
        .bind(contract_id)
        .fetch_one(&db.pool)
        .await?;
    let latest: Option<i64> = row.try_get("v")?;
    let rules = match latest {
        Some(v) => Some(version(db, contract_id, v).await?),
        None => None,
    };
    db.rules_cache
        .current
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(contract_id, (Instant::now(), rules.clone()));
    Ok(rules)
}

/// The embedded holiday table with the imported years laid over it.
pub async fn holidays(db: &Db) -> StoreResult<Arc<HolidayTable>> {
    if let Some((at, t)) = db.rules_cache.holidays.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        && at.elapsed() < HOLIDAYS_TTL
    {
        return Ok(t.clone());
    }
    let table = Arc::new(crate::holidays::table(db).await?);
    *db.rules_cache.holidays.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), table.clone()));
    Ok(table)
}
