//! Numeric readings over time, shared by inspections (a plan's target × item) and monitors: raw
//! samples for a retention period, then hourly roll-ups (count, passing, with a number, min, max,
//! sum), and the merge of both into the points a chart draws.
//!
//! A sample table has the series key columns, `at`, `contract_id`, `ok` (0/1) and `value` (a
//! nullable float); its roll-up table the same keys, `hour_at`, `contract_id`, `n`, `n_ok`,
//! `n_value`, `min_value`, `max_value`, `sum_value`, with the keys and `hour_at` as primary key.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Backend;
use crate::error::StoreResult;

/// One point of a history: a raw reading (n = 1) or an hour's roll-up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    pub at: i64,
    /// Readings in the point, of them passing, of them with a number.
    pub n: i64,
    pub n_ok: i64,
    pub min: Option<f64>,
    pub avg: Option<f64>,
    pub max: Option<f64>,
    /// Hourly (rolled up or aggregated), not one raw reading.
    pub hourly: bool,
}

/// SUM on PostgreSQL is NUMERIC for BIGINT input, which the `Any` driver does not decode: every
/// such sum is CAST to BIGINT, except those over CASE that SQLite answers as INTEGER and
/// PostgreSQL as BIGINT; this reads either.
pub(crate) fn cast_i64(row: &AnyRow, col: &str) -> StoreResult<i64> {
    Ok(row.try_get::<i64, _>(col).or_else(|_| row.try_get::<f64, _>(col).map(|v| v as i64))?)
}

/// Points being merged from raw and rolled-up rows, by instant.
#[derive(Default)]
pub(crate) struct Points(BTreeMap<i64, Acc>);

#[derive(Default)]
struct Acc {
    n: i64,
    n_ok: i64,
    n_value: i64,
    min: Option<f64>,
    max: Option<f64>,
    sum: f64,
    hourly: bool,
}

impl Points {
    /// Adds rows with the columns `at, n, n_ok, n_value, min_value, max_value, sum_value`. An hour
    /// may hold both rolled-up and raw readings around the retention edge: they are merged.
    pub(crate) fn add(&mut self, rows: &[AnyRow], hourly: bool) -> StoreResult<()> {
        for r in rows {
            let a = self.0.entry(r.try_get("at")?).or_default();
            a.n += cast_i64(r, "n")?;
            a.n_ok += cast_i64(r, "n_ok")?;
            a.n_value += cast_i64(r, "n_value")?;
            a.hourly |= hourly;
            let (min, max, sum): (Option<f64>, Option<f64>, Option<f64>) =
                (r.try_get("min_value")?, r.try_get("max_value")?, r.try_get("sum_value")?);
            a.min = min.map(|v| a.min.map_or(v, |m| m.min(v))).or(a.min);
            a.max = max.map(|v| a.max.map_or(v, |m| m.max(v))).or(a.max);
            a.sum += sum.unwrap_or(0.0);
        }
        Ok(())
    }

    pub(crate) fn into_points(self) -> Vec<Point> {
        self.0
            .into_iter()
            .map(|(at, a)| Point {
                at,
                n: a.n,
                n_ok: a.n_ok,
                min: a.min,
                avg: (a.n_value > 0).then(|| a.sum / a.n_value as f64),
                max: a.max,
                hourly: a.hourly,
            })
            .collect()
    }
}

/// The columns of raw samples as points (`at, n, …`): one per sample, or aggregated per hour.
pub(crate) fn raw_columns(backend: Backend, hourly: bool) -> &'static str {
    match (hourly, backend) {
        (false, _) => {
            "at, 1 AS n, ok AS n_ok, CASE WHEN value IS NULL THEN 0 ELSE 1 END AS n_value, value AS min_value, \
             value AS max_value, value AS sum_value"
        }
        (true, Backend::Sqlite) => {
            "(at / 3600000) * 3600000 AS at, COUNT(*) AS n, SUM(ok) AS n_ok, COUNT(value) AS n_value, \
             MIN(value) AS min_value, MAX(value) AS max_value, SUM(value) AS sum_value"
        }
        (true, Backend::Postgres) => {
            "(at / 3600000) * 3600000 AS at, COUNT(*) AS n, CAST(SUM(ok) AS BIGINT) AS n_ok, \
             COUNT(value) AS n_value, MIN(value) AS min_value, MAX(value) AS max_value, SUM(value) AS sum_value"
        }
    }
}

/// The columns of a roll-up table as points.
pub(crate) const ROLLUP_COLUMNS: &str = "hour_at AS at, n, n_ok, n_value, min_value, max_value, sum_value";

/// `INSERT … SELECT … ON CONFLICT` adding the raw samples selected by `filter` (placeholders
/// allowed; never user text) into the hourly roll-ups, merging with rows already there. `keys`
/// are the series key columns (`plan_id, target_key, item_key`).
pub(crate) fn rollup_sql(backend: Backend, rollup: &str, sample: &str, keys: &str, filter: &str) -> String {
    let hour = "(at / 3600000) * 3600000";
    let (n_ok, min, max) = match backend {
        Backend::Sqlite => (
            "SUM(ok)",
            format!(
                "MIN(COALESCE({rollup}.min_value, excluded.min_value), COALESCE(excluded.min_value, {rollup}.min_value))"
            ),
            format!(
                "MAX(COALESCE({rollup}.max_value, excluded.max_value), COALESCE(excluded.max_value, {rollup}.max_value))"
            ),
        ),
        Backend::Postgres => (
            "CAST(SUM(ok) AS BIGINT)",
            format!("LEAST({rollup}.min_value, excluded.min_value)"),
            format!("GREATEST({rollup}.max_value, excluded.max_value)"),
        ),
    };
    format!(
        "INSERT INTO {rollup} ({keys}, hour_at, contract_id, n, n_ok, n_value, min_value, max_value, sum_value) \
         SELECT {keys}, {hour}, MIN(contract_id), COUNT(*), {n_ok}, COUNT(value), MIN(value), MAX(value), SUM(value) \
         FROM {sample} WHERE {filter} GROUP BY {keys}, {hour} \
         ON CONFLICT ({keys}, hour_at) DO UPDATE SET n = {rollup}.n + excluded.n, \
         n_ok = {rollup}.n_ok + excluded.n_ok, n_value = {rollup}.n_value + excluded.n_value, \
         min_value = {min}, max_value = {max}, \
         sum_value = COALESCE({rollup}.sum_value, 0) + COALESCE(excluded.sum_value, 0)"
    )
}
