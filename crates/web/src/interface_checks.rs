//! The checker of data-exchange interfaces (IN5): one pass under a database lease decides every
//! push window that has closed. For an interface with a count check it first reads the source and
//! target counts with `yunwei-probes` (both sides at once, a few interfaces at once, each query
//! within its time-out); storage then judges the windows and raises, tells or recovers the
//! interface's ticket ([`yunwei_storage::interfaces::record_due`]).

use std::sync::Arc;
use std::time::Duration;

use yunwei_core::exchange::Counts;
use yunwei_core::ledger::Message;
use yunwei_storage::desk_jobs;
use yunwei_storage::interfaces::{self, CountTask};

use crate::AppState;

/// Held while a pass runs (renewed between batches).
const LEASE_MS: i64 = 3 * 60_000;
/// Interfaces claimed per batch, and count checks running at once on one node.
const BATCH: i64 = 32;
const CONCURRENCY: usize = 8;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InterfacePassReport {
    pub interfaces: usize,
    pub windows: usize,
    pub anomalies: usize,
    pub counts_read: usize,
}

/// One pass over the interfaces whose next window has closed, if this node holds the lease.
pub async fn run_interfaces(state: &AppState, node: &str) -> yunwei_storage::StoreResult<InterfacePassReport> {
    let mut report = InterfacePassReport::default();
    if !desk_jobs::try_lease(&state.db, "interfaces", node, state.now_ms(), LEASE_MS).await? {
        return Ok(report);
    }
    loop {
        let due = interfaces::claim_due(&state.db, state.now_ms(), BATCH).await?;
        if due.is_empty() {
            break;
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut running = tokio::task::JoinSet::new();
        for (index, d) in due.iter().enumerate() {
            if let (Some(source), Some(target)) = (d.source.clone(), d.target.clone()) {
                let limit = limit.clone();
                running.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    (index, read_counts(source, target).await)
                });
            }
        }
        let mut counts: Vec<Option<Counts>> = vec![None; due.len()];
        while let Some(done) = running.join_next().await {
            match done {
                Ok((index, c)) => counts[index] = Some(c),
                Err(e) => tracing::warn!(error = %e, "an interface count check panicked"),
            }
        }
        for (d, c) in due.iter().zip(counts) {
            report.interfaces += 1;
            report.counts_read += usize::from(c.is_some());
            match interfaces::record_due(&state.db, d, c.as_ref(), state.now_ms()).await {
                Ok(decided) => {
                    report.windows += decided.len();
                    report.anomalies += decided.iter().filter(|w| !w.outcome.is_ok()).count();
                }
                Err(e) => tracing::warn!(interface = d.interface_id, error = %e, "could not record interface checks"),
            }
        }
        if !desk_jobs::try_lease(&state.db, "interfaces", node, state.now_ms(), LEASE_MS).await? {
            break;
        }
    }
    if report != InterfacePassReport::default() {
        tracing::info!(
            interfaces = report.interfaces,
            windows = report.windows,
            anomalies = report.anomalies,
            counts_read = report.counts_read,
            "interface pass"
        );
    }
    Ok(report)
}

/// Reads both counts at once; either failing makes the comparison fail with its side named.
async fn read_counts(source: CountTask, target: CountTask) -> Counts {
    let (s, t) = tokio::join!(read_count(source), read_count(target));
    let side = |zh: &str, en: &str, m: Message| Message::new(format!("{zh}：{}", m.zh), format!("{en}: {}", m.en));
    match (s, t) {
        (Ok(source), Ok(target)) => Counts::Measured { source, target },
        (Err(a), Ok(_)) => Counts::Failed(side("源端", "source", a)),
        (Ok(_), Err(b)) => Counts::Failed(side("目标端", "target", b)),
        (Err(a), Err(b)) => {
            let (a, b) = (side("源端", "source", a), side("目标端", "target", b));
            Counts::Failed(Message::new(format!("{}；{}", a.zh, b.zh), format!("{}; {}", a.en, b.en)))
        }
    }
}

/// Runs one count query; the number is the first column of its first row.
async fn read_count(task: CountTask) -> Result<f64, Message> {
    if let Some(m) = task.secret_error {
        return Err(m);
    }
    let probe: yunwei_probes::Probe = serde_json::from_value(task.probe)
        .map_err(|e| Message::new(format!("查询定义无效：{e}"), format!("invalid query definition: {e}")))?;
    let secret = task.secret.as_ref().map(|s| yunwei_probes::Secret {
        username: s.username.clone(),
        password: s.password.clone(),
        private_key: s.private_key.clone(),
    });
    let timeout = Duration::from_secs(u64::from(task.timeout_s.clamp(1, 120)));
    // The probe bounds itself; this guards against one that does not.
    let outcome =
        tokio::time::timeout(timeout + Duration::from_secs(5), yunwei_probes::run(&probe, secret.as_ref(), timeout))
            .await
            .map_err(|_| {
                Message::new(
                    format!("超时：{} 秒内未完成", timeout.as_secs()),
                    format!("timed out after {} s", timeout.as_secs()),
                )
            })?;
    if !outcome.ok {
        return Err(outcome.reason.unwrap_or_else(|| Message::new("查询失败", "the query failed")));
    }
    match outcome.reading("result") {
        Some(yunwei_probes::Value::Num(n)) if n.is_finite() => Ok(*n),
        Some(other) => Err(Message::new(
            format!("计数查询的结果不是数字：{other:?}"),
            format!("the count query did not return a number: {other:?}"),
        )),
        None => Err(Message::new("计数查询没有返回结果（或结果为 NULL）", "the count query returned no row (or NULL)")),
    }
}
