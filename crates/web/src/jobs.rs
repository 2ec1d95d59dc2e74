//! Background work of a server node: the desk scheduler, notification delivery, the backup of
//! network device configurations, and inspections (runs, missed runs, probes, roll-ups). Every node runs the loops; a lease in the database lets one node
//! at a time do each kind of work, so stateless nodes can be added and removed freely.

use std::sync::Arc;
use std::time::Duration;

use yunwei_storage::device_configs::{self, PullRecord, PullTarget};
use yunwei_storage::inspections::{self, ProbeOutcome, ProbeTask};
use yunwei_storage::notifications::{self, Channel};
use yunwei_storage::{ContractScope, desk_jobs};

use crate::AppState;

/// How often a node looks for due work. Notices are due at minute precision in every contract, so a
/// second is ample; the pass itself reads only an index range when nothing is due.
const TICK: Duration = Duration::from_secs(1);
const LEASE_MS: i64 = 15_000;

/// Device configurations are pulled at most daily each; a minute is precise enough to find them.
const DEVICE_TICK: Duration = Duration::from_secs(60);
/// Held while a pass pulls (renewed between batches).
const DEVICE_LEASE_MS: i64 = 5 * 60_000;
/// One pull, connection to last byte. Below the HTTP layer's 30 s, so "pull now" answers in time.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(25);
/// Devices pulled at once by one node.
const PULL_CONCURRENCY: usize = 4;
/// Targets claimed per batch (the lease is renewed between batches).
const PULL_BATCH: i64 = 16;

/// Inspections: runs are created, missed and probed within seconds of their time.
const INSPECTION_TICK: Duration = Duration::from_secs(5);
/// Held while a pass probes (renewed between batches).
const INSPECTION_LEASE_MS: i64 = 3 * 60_000;
/// Probes running at once on one node, and runs claimed per batch.
const PROBE_CONCURRENCY: usize = 8;
const PROBE_RUNS_PER_BATCH: i64 = 16;
/// Raw readings past their retention are rolled up hourly.
const ROLLUP_EVERY: Duration = Duration::from_secs(3600);

/// Starts the loops; they run until the runtime shuts down. The scheduler and the deliveries run
/// apart, so that a mail server that never answers cannot delay a breach notice.
pub fn spawn(state: AppState, channels: Vec<Arc<dyn Channel>>) {
    let node = format!("node-{}", yunwei_storage::random_token(8));
    if channels.iter().any(|c| c.name() == "email") {
        state.db.enable_email(true);
    }
    let scheduler_state = state.clone();
    let scheduler_node = node.clone();
    tokio::spawn(async move {
        every_tick(|| async {
            if let Err(e) = run_scheduler(&scheduler_state, &scheduler_node).await {
                tracing::warn!(error = %e, "desk scheduler pass failed");
            }
        })
        .await
    });
    let device_state = state.clone();
    let device_node = node.clone();
    tokio::spawn(async move {
        every(DEVICE_TICK, || async {
            if let Err(e) = run_device_configs(&device_state, &device_node).await {
                tracing::warn!(error = %e, "device configuration pass failed");
            }
        })
        .await
    });
    // Continuous monitors: their own loop and lease (crate::monitors).
    crate::monitors::spawn_detached(state.clone(), node.clone());
    let inspection_state = state.clone();
    let inspection_node = node.clone();
    tokio::spawn(async move {
        let mut last_rollup: Option<std::time::Instant> = None;
        every(INSPECTION_TICK, || {
            let due_rollup = last_rollup.is_none_or(|t| t.elapsed() >= ROLLUP_EVERY);
            if due_rollup {
                last_rollup = Some(std::time::Instant::now());
            }
            let (state, node) = (&inspection_state, &inspection_node);
            async move {
                if let Err(e) = run_inspections(state, node).await {
                    tracing::warn!(error = %e, "inspection pass failed");
                }
                if let Err(e) = crate::interface_checks::run_interfaces(state, node).await {
                    tracing::warn!(error = %e, "interface pass failed");
                }
                if due_rollup
                    && desk_jobs::try_lease(&state.db, "inspections", node, state.now_ms(), INSPECTION_LEASE_MS)
                        .await
                        .unwrap_or(false)
                    && let Err(e) = inspections::roll_up(&state.db, state.now_ms()).await
                {
                    tracing::warn!(error = %e, "inspection roll-up failed");
                }
            }
        })
        .await
    });
    if !channels.is_empty() {
        tokio::spawn(async move {
            every_tick(|| async {
                if let Err(e) = run_deliveries(&state, &node, &channels).await {
                    tracing::warn!(error = %e, "notification delivery pass failed");
                }
            })
            .await
        });
    }
}

async fn every_tick<F, Fut>(pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    every(TICK, pass).await
}

async fn every<F, Fut>(period: Duration, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pass().await;
    }
}

/// One scheduler pass over everything due now, if this node holds the desk lease.
pub async fn run_scheduler(state: &AppState, node: &str) -> yunwei_storage::StoreResult<()> {
    let now = state.now_ms();
    if !desk_jobs::try_lease(&state.db, "desk", node, now, LEASE_MS).await? {
        return Ok(());
    }
    loop {
        let r = desk_jobs::run_due(&state.db, now, 500).await?;
        if r.notices > 0 || r.auto_closed > 0 {
            tracing::info!(
                tickets = r.tickets,
                notices = r.notices,
                auto_closed = r.auto_closed,
                "desk scheduler pass"
            );
        }
        if r.tickets < 500 {
            return Ok(());
        }
    }
}

/// One delivery pass through every channel, if this node holds the delivery lease.
pub async fn run_deliveries(
    state: &AppState,
    node: &str,
    channels: &[Arc<dyn Channel>],
) -> yunwei_storage::StoreResult<()> {
    let now = state.now_ms();
    if !desk_jobs::try_lease(&state.db, "delivery", node, now, LEASE_MS).await? {
        return Ok(());
    }
    for ch in channels {
        notifications::deliver(&state.db, ch.as_ref(), now).await?;
    }
    Ok(())
}

/// The scheduler, then the deliveries: what the loops do, in one call. Tests drive time with the
/// test clock and call this.
pub async fn run_once(state: &AppState, node: &str, channels: &[Arc<dyn Channel>]) -> yunwei_storage::StoreResult<()> {
    run_scheduler(state, node).await?;
    run_inspections(state, node).await?;
    crate::interface_checks::run_interfaces(state, node).await?;
    run_deliveries(state, node, channels).await
}

/// What one inspection pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InspectionPassReport {
    pub created: usize,
    pub missed: usize,
    pub probed_runs: usize,
    pub probes: usize,
}

/// One inspection pass, if this node holds the lease: the runs of slots that came due are
/// created, runs out of time marked missed, then the probe items of due runs are run (a few at
/// once, each within its item's time-out) and their results recorded, raising or recovering
/// tickets.
pub async fn run_inspections(state: &AppState, node: &str) -> yunwei_storage::StoreResult<InspectionPassReport> {
    let mut report = InspectionPassReport::default();
    if !desk_jobs::try_lease(&state.db, "inspections", node, state.now_ms(), INSPECTION_LEASE_MS).await? {
        return Ok(report);
    }
    report.created = inspections::create_due_runs(&state.db, state.now_ms()).await?;
    report.missed = inspections::mark_missed(&state.db, state.now_ms()).await?;
    loop {
        let work = inspections::claim_probe_work(&state.db, state.now_ms(), PROBE_RUNS_PER_BATCH).await?;
        if work.is_empty() {
            break;
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(PROBE_CONCURRENCY));
        let mut running = tokio::task::JoinSet::new();
        for (index, w) in work.iter().enumerate() {
            for task in w.tasks.iter().cloned() {
                let limit = limit.clone();
                running.spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    (index, probe_one(task).await)
                });
            }
        }
        let mut outcomes: Vec<Vec<ProbeOutcome>> = vec![Vec::new(); work.len()];
        while let Some(done) = running.join_next().await {
            match done {
                Ok((index, o)) => outcomes[index].push(o),
                Err(e) => tracing::warn!(error = %e, "an inspection probe panicked"),
            }
        }
        for (w, outcomes) in work.iter().zip(outcomes) {
            report.probes += outcomes.len();
            report.probed_runs += 1;
            if let Err(e) =
                inspections::record_probe_results(&state.db, w.contract_id, w.run_id, &outcomes, state.now_ms()).await
            {
                tracing::warn!(run = w.run_id, error = %e, "could not record inspection probe results");
            }
        }
        if !desk_jobs::try_lease(&state.db, "inspections", node, state.now_ms(), INSPECTION_LEASE_MS).await? {
            break;
        }
    }
    if report != InspectionPassReport::default() {
        tracing::info!(
            created = report.created,
            missed = report.missed,
            probed_runs = report.probed_runs,
            probes = report.probes,
            "inspection pass"
        );
    }
    Ok(report)
}

/// Runs one probe item; every failure (a bad stored definition, a credential that does not open,
/// a hang) is a failed outcome with its reason, never an error.
async fn probe_one(task: ProbeTask) -> ProbeOutcome {
    let fail = |reason: yunwei_core::ledger::Message| ProbeOutcome {
        target_key: task.target_key.clone(),
        item_key: task.item_key.clone(),
        ok: false,
        reason: Some(reason),
        elapsed_ms: 0.0,
        readings: serde_json::Value::Array(Vec::new()),
    };
    if let Some(m) = &task.secret_error {
        return fail(m.clone());
    }
    let probe: yunwei_probes::Probe = match serde_json::from_value(task.probe.clone()) {
        Ok(p) => p,
        Err(e) => {
            return fail(yunwei_core::ledger::Message::new(
                format!("探测定义无效：{e}"),
                format!("invalid probe definition: {e}"),
            ));
        }
    };
    let secret = task.secret.as_ref().map(|s| yunwei_probes::Secret {
        username: s.username.clone(),
        password: s.password.clone(),
        private_key: s.private_key.clone(),
    });
    let timeout = Duration::from_secs(u64::from(task.timeout_s.clamp(1, 120)));
    // The probe bounds itself; this guards against one that does not.
    let outcome = match tokio::time::timeout(
        timeout + Duration::from_secs(5),
        yunwei_probes::run(&probe, secret.as_ref(), timeout),
    )
    .await
    {
        Ok(o) => o,
        Err(_) => {
            return fail(yunwei_core::ledger::Message::new(
                format!("超时：{} 秒内未完成", timeout.as_secs()),
                format!("timed out after {} s", timeout.as_secs()),
            ));
        }
    };
    ProbeOutcome {
        target_key: task.target_key,
        item_key: task.item_key,
        ok: outcome.ok,
        reason: outcome.reason,
        elapsed_ms: outcome.elapsed_ms,
        readings: serde_json::to_value(&outcome.readings).unwrap_or(serde_json::Value::Null),
    }
}

/// What one device-configuration pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DevicePassReport {
    pub stored: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub alerts: usize,
}

/// What one pull came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    Stored { version_id: i64 },
    Unchanged { version_id: i64 },
    Failed { error: String },
}

/// One pass over the device configurations due, if this node holds the lease: every target not
/// tried for a day is pulled (a few at once), then overdue targets are alerted.
pub async fn run_device_configs(state: &AppState, node: &str) -> yunwei_storage::StoreResult<DevicePassReport> {
    run_device_configs_with(state, node, PULL_TIMEOUT).await
}

/// [`run_device_configs`] with another timeout per pull (tests).
pub async fn run_device_configs_with(
    state: &AppState,
    node: &str,
    timeout: Duration,
) -> yunwei_storage::StoreResult<DevicePassReport> {
    let mut report = DevicePassReport::default();
    if !desk_jobs::try_lease(&state.db, "device_configs", node, state.now_ms(), DEVICE_LEASE_MS).await? {
        return Ok(report);
    }
    loop {
        let batch = device_configs::claim_due(&state.db, state.now_ms(), PULL_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(PULL_CONCURRENCY));
        let mut running = tokio::task::JoinSet::new();
        for target in batch {
            let (state, limit) = (state.clone(), limit.clone());
            running.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let asset_id = target.asset_id;
                (asset_id, pull_and_record(&state, None, target, timeout).await)
            });
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok((_, Ok(PullOutcome::Stored { .. }))) => report.stored += 1,
                Ok((_, Ok(PullOutcome::Unchanged { .. }))) => report.unchanged += 1,
                Ok((_, Ok(PullOutcome::Failed { .. }))) => report.failed += 1,
                Ok((asset_id, Err(e))) => {
                    report.failed += 1;
                    tracing::warn!(asset = asset_id, error = %e, "could not record a device configuration pull");
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(error = %e, "a device configuration pull panicked");
                }
            }
        }
        if !desk_jobs::try_lease(&state.db, "device_configs", node, state.now_ms(), DEVICE_LEASE_MS).await? {
            return Ok(report);
        }
    }
    report.alerts = device_configs::overdue_alerts(&state.db, state.now_ms()).await?;
    if report != DevicePassReport::default() {
        tracing::info!(
            stored = report.stored,
            unchanged = report.unchanged,
            failed = report.failed,
            alerts = report.alerts,
            "device configuration pass"
        );
    }
    Ok(report)
}

/// Pulls one device's configuration over SSH and records the result (a new version, unchanged,
/// or the failure with its message). `scope` is the person who asked for it ("pull now"), `None`
/// for the scheduled job.
pub async fn pull_and_record(
    state: &AppState,
    scope: Option<&ContractScope>,
    target: PullTarget,
    timeout: Duration,
) -> yunwei_storage::StoreResult<PullOutcome> {
    let asset_id = target.asset_id;
    match pull(&target, timeout).await {
        Ok(pulled) => match device_configs::record_pull(&state.db, scope, asset_id, &pulled, state.now_ms()).await? {
            PullRecord::Stored { version_id } => Ok(PullOutcome::Stored { version_id }),
            PullRecord::Unchanged { version_id } => Ok(PullOutcome::Unchanged { version_id }),
        },
        Err(error) => {
            device_configs::record_failure(&state.db, scope, asset_id, &error, state.now_ms()).await?;
            Ok(PullOutcome::Failed { error })
        }
    }
}

#[cfg(feature = "netconf")]
async fn pull(target: &PullTarget, timeout: Duration) -> Result<device_configs::PulledConfig, String> {
    let commands =
        yunwei_netconf::vendor(&target.vendor).ok_or_else(|| format!("unknown device vendor {:?}", target.vendor))?;
    let t = yunwei_netconf::Target {
        host: target.host.clone(),
        port: target.port,
        username: target.username.clone(),
        password: target.password.clone(),
        host_key_sha256: target.host_key_sha256.clone(),
    };
    let p = yunwei_netconf::pull(&t, commands, timeout).await?;
    let saved_differs = p.saved.as_deref().is_some_and(|s| yunwei_netconf::differs_ignoring_volatile(&p.running, s));
    Ok(device_configs::PulledConfig {
        running: p.running,
        saved: p.saved,
        saved_differs,
        host_key_sha256: p.host_key_sha256,
    })
}

#[cfg(not(feature = "netconf"))]
async fn pull(_target: &PullTarget, _timeout: Duration) -> Result<device_configs::PulledConfig, String> {
    Err("this yunwei server was built without SSH support (cargo feature `netconf`)".into())
}
