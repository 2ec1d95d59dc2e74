//! The monitor engine inside the server (issue 6): the node that holds the `monitors` lease runs
//! `yunwei_probes::engine` with the enabled monitors of every contract, applies changes made
//! through the API on any node within about a second (it reads the rows changed since the last it
//! saw), writes results in batches and raises tickets; losing the lease stops it.
//!
//! Three tasks while running: the loop ([`run`]: lease, changes, hourly roll-ups), the result
//! writer (reports from the engine's channel, one write transaction per batch of up to
//! [`Settings::batch_max`] results or [`Settings::batch_every`], whichever comes first: at 20,000
//! monitors every 60 s that is one transaction a second, which leaves SQLite's one writer to the
//! people using the API), and the ticket follow-ups, one at a time after their batch committed.
//! A slow ticket never holds up results; a slow write only fills the engine's channel.
//!
//! Secrets are resolved when a run starts (cached for a minute), so a credential changed through
//! the API is used without touching the monitors that name it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use yunwei_core::ledger::Message;
use yunwei_probes::engine::{Engine, EngineConfig, Executor, Monitor, Report};
use yunwei_probes::{Outcome, Probe, Secret, Value};
use yunwei_storage::monitors::{self as store, EngineMonitor, FollowUp, MonitorReport};
use yunwei_storage::{Db, StoreResult, desk_jobs, inspections};

use crate::AppState;

/// The lease's name in `job_lease`.
pub const LEASE: &str = "monitors";

/// How the engine runs on this node; [`Settings::default`] is production's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the lease is renewed and changes are read.
    pub tick: Duration,
    pub lease_ms: i64,
    /// Results written in one transaction at most, and how long the first of them waits.
    pub batch_max: usize,
    pub batch_every: Duration,
    /// Runs in flight at once.
    pub max_concurrency: usize,
    pub rollup_every: Duration,
    /// How long an opened credential is reused.
    pub secret_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tick: Duration::from_secs(1),
            lease_ms: 15_000,
            batch_max: 500,
            batch_every: Duration::from_secs(1),
            max_concurrency: 512,
            rollup_every: Duration::from_secs(3600),
            secret_ttl: Duration::from_secs(60),
        }
    }
}

/// Reports waiting for the writer: a minute of results at the target rate (20,000 monitors every
/// 60 s) fits, so a write that stalls for seconds slows no run.
const CHANNEL: usize = 32_768;
/// Changes read per query.
const PAGE: i64 = 5_000;

/// This node's engine, as the API and the metrics see it.
#[derive(Default)]
pub struct MonitorRuntime {
    live: Mutex<Option<Live>>,
    writer: WriterStats,
}

struct Live {
    engine: Arc<Engine>,
    node: String,
    started_at: i64,
    /// Monitors whose stored probe no longer parses (not run).
    invalid: usize,
}

#[derive(Default)]
struct WriterStats {
    batches: AtomicU64,
    results: AtomicU64,
    ignored: AtomicU64,
    errors: AtomicU64,
    transitions: AtomicU64,
    follow_ups: AtomicU64,
    follow_up_errors: AtomicU64,
    last_batch_us: AtomicU64,
    max_batch_us: AtomicU64,
    last_batch_size: AtomicU64,
}

/// The engine's and the writer's figures on this node.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct EngineStatsView {
    /// This node runs the engine (it holds the lease).
    pub running: bool,
    pub node: Option<String>,
    pub started_at: Option<i64>,
    pub monitors: usize,
    pub invalid: usize,
    /// Runs started, finished, failed since the engine started.
    pub runs: u64,
    pub finished: u64,
    pub failed: u64,
    /// Runs that started more than 1 s after their slot.
    pub late_runs: u64,
    /// Slots not run (the previous run of the monitor still going, or the engine fell behind).
    pub skipped: u64,
    pub in_flight: u64,
    pub max_lateness_ms: f64,
    pub p50_lateness_ms: f64,
    pub p99_lateness_ms: f64,
    /// Result batches written, results stored, results of deleted monitors dropped, failed
    /// batches, state changes (up ↔ down), ticket follow-ups done and failed (since this process
    /// started).
    pub batches: u64,
    pub results_written: u64,
    pub results_ignored: u64,
    pub write_errors: u64,
    pub transitions: u64,
    pub follow_ups: u64,
    pub follow_up_errors: u64,
    pub last_batch_ms: f64,
    pub last_batch_size: u64,
    pub max_batch_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl MonitorRuntime {
    pub fn stats(&self) -> EngineStatsView {
        let w = &self.writer;
        let us = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1000.0;
        let mut v = EngineStatsView {
            batches: w.batches.load(Ordering::Relaxed),
            results_written: w.results.load(Ordering::Relaxed),
            results_ignored: w.ignored.load(Ordering::Relaxed),
            write_errors: w.errors.load(Ordering::Relaxed),
            transitions: w.transitions.load(Ordering::Relaxed),
            follow_ups: w.follow_ups.load(Ordering::Relaxed),
            follow_up_errors: w.follow_up_errors.load(Ordering::Relaxed),
            last_batch_ms: us(&w.last_batch_us),
            last_batch_size: w.last_batch_size.load(Ordering::Relaxed),
            max_batch_ms: us(&w.max_batch_us),
            ..Default::default()
        };
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = live.as_ref() {
            let s = l.engine.stats();
            v.running = true;
            v.node = Some(l.node.clone());
            v.started_at = Some(l.started_at);
            v.monitors = s.monitors;
            v.invalid = l.invalid;
            v.runs = s.runs;
            v.finished = s.finished;
            v.failed = s.failed;
            v.late_runs = s.late_runs;
            v.skipped = s.skipped;
            v.in_flight = s.in_flight;
            v.max_lateness_ms = ms(s.max_lateness);
            v.p50_lateness_ms = ms(s.p50_lateness);
            v.p99_lateness_ms = ms(s.p99_lateness);
        }
        v
    }

    fn set_live(&self, live: Option<Live>) {
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = live;
    }

    fn set_invalid(&self, n: usize) {
        if let Some(l) = self.live.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            l.invalid = n;
        }
    }

    /// Sets the engine's gauges and counters (called by `/metrics` inside its recorder).
    pub(crate) fn export_metrics(&self) {
        let s = self.stats();
        metrics::gauge!("monitor_engine_running").set(if s.running { 1.0 } else { 0.0 });
        metrics::gauge!("monitor_engine_monitors").set(s.monitors as f64);
        metrics::gauge!("monitor_engine_in_flight").set(s.in_flight as f64);
        metrics::gauge!("monitor_engine_lateness_max_seconds").set(s.max_lateness_ms / 1000.0);
        metrics::gauge!("monitor_engine_lateness_p50_seconds").set(s.p50_lateness_ms / 1000.0);
        metrics::gauge!("monitor_engine_lateness_p99_seconds").set(s.p99_lateness_ms / 1000.0);
        for (name, v) in [
            ("monitor_runs_total", s.runs),
            ("monitor_runs_failed_total", s.failed),
            ("monitor_runs_late_total", s.late_runs),
            ("monitor_runs_skipped_total", s.skipped),
            ("monitor_result_batches_total", s.batches),
            ("monitor_results_written_total", s.results_written),
            ("monitor_result_write_errors_total", s.write_errors),
            ("monitor_transitions_total", s.transitions),
            ("monitor_follow_ups_total", s.follow_ups),
            ("monitor_follow_up_errors_total", s.follow_up_errors),
        ] {
            metrics::counter!(name).absolute(v);
        }
    }
}

/// The loop of one node, stopped through [`MonitorService::shutdown`].
pub struct MonitorService {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MonitorService {
    /// Stops the engine (runs in flight finish and are written) and the loop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts the loop of node `node`, to be stopped through the handle (tests, several nodes in one
/// process).
pub fn spawn(state: AppState, node: String, settings: Settings) -> MonitorService {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(state, node, settings, Some(rx)));
    MonitorService { stop, task }
}

/// Starts the loop of node `node` for the life of the process (the server's background jobs).
pub fn spawn_detached(state: AppState, node: String) {
    tokio::spawn(run(state, node, Settings::default(), None));
}

/// Resolves when asked to stop; never without a handle (or once the handle is gone).
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = stop {
        while rx.changed().await.is_ok() {
            if *rx.borrow() {
                return;
            }
        }
    }
    std::future::pending::<()>().await
}

/// Takes or renews the lease every tick; while held, runs the engine and feeds it the changes.
pub async fn run(state: AppState, node: String, settings: Settings, mut stop: Option<watch::Receiver<bool>>) {
    let mut running: Option<Running> = None;
    let mut renewed: Option<Instant> = None;
    let mut last_rollup: Option<Instant> = None;
    let rolling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tick = tokio::time::interval(settings.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => break,
        }
        let held = match desk_jobs::try_lease(&state.db, LEASE, &node, state.now_ms(), settings.lease_ms).await {
            Ok(true) => {
                renewed = Some(Instant::now());
                true
            }
            Ok(false) => false,
            Err(e) => {
                // The database did not answer: keep running only while the lease last renewed is
                // certainly still ours, so that two nodes never run the monitors for long.
                tracing::warn!(error = %e, "could not renew the monitors lease");
                renewed.is_some_and(|t| (t.elapsed().as_millis() as i64) < settings.lease_ms / 2)
            }
        };
        if !held {
            if let Some(r) = running.take() {
                tracing::info!(node, "monitors lease lost: engine stopped");
                r.stop(&state).await;
            }
            continue;
        }
        match running.as_mut() {
            None => match Running::start(&state, &node, &settings).await {
                Ok(r) => running = Some(r),
                Err(e) => tracing::warn!(error = %e, "monitor engine could not start"),
            },
            Some(r) => {
                if let Err(e) = r.sync(&state).await {
                    tracing::warn!(error = %e, "monitor changes could not be read");
                }
            }
        }
        if last_rollup.is_none_or(|t| t.elapsed() >= settings.rollup_every) && !rolling.swap(true, Ordering::AcqRel) {
            last_rollup = Some(Instant::now());
            let (state, rolling) = (state.clone(), rolling.clone());
            tokio::spawn(async move {
                match store::roll_up(&state.db, state.now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "monitor results rolled up hourly"),
                    Err(e) => tracing::warn!(error = %e, "monitor roll-up failed"),
                }
                rolling.store(false, Ordering::Release);
            });
        }
    }
    if let Some(r) = running.take() {
        r.stop(&state).await;
        if let Err(e) = store::release_lease(&state.db, &node).await {
            tracing::warn!(error = %e, "could not give the monitors lease up");
        }
    }
}

struct Running {
    engine: Arc<Engine>,
    exec: ServerExecutor,
    /// The last change read.
    seq: i64,
    writer: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(state: &AppState, node: &str, settings: &Settings) -> StoreResult<Running> {
        let exec = ServerExecutor::new(state.db.clone(), settings.secret_ttl);
        let mut seq = 0;
        let mut all = Vec::new();
        loop {
            let page = store::changes_since(&state.db, seq, PAGE).await?;
            let n = page.len() as i64;
            for m in page {
                seq = m.change_seq;
                if m.active
                    && let Some(em) = exec.admit(&m)
                {
                    all.push(em);
                }
            }
            if n < PAGE {
                break;
            }
        }
        let (tx, rx) = mpsc::channel(CHANNEL);
        let config = EngineConfig { max_concurrency: settings.max_concurrency, late_after: Duration::from_secs(1) };
        let engine = Arc::new(Engine::start(config, exec.clone(), tx));
        tracing::info!(node, monitors = all.len(), invalid = exec.invalid(), "monitor engine started");
        engine.set_monitors(all);
        let writer = tokio::spawn(write_results(state.clone(), rx, settings.clone()));
        state.monitors.set_live(Some(Live {
            engine: engine.clone(),
            node: node.to_string(),
            started_at: state.now_ms(),
            invalid: exec.invalid(),
        }));
        Ok(Running { engine, exec, seq, writer })
    }

    /// Applies the monitors changed since the last call.
    async fn sync(&mut self, state: &AppState) -> StoreResult<()> {
        loop {
            let page = store::changes_since(&state.db, self.seq, PAGE).await?;
            let n = page.len() as i64;
            for m in page {
                self.seq = m.change_seq;
                match m.active.then(|| self.exec.admit(&m)).flatten() {
                    Some(em) => self.engine.upsert(em),
                    None => {
                        self.exec.forget(m.id);
                        self.engine.remove(&m.id.to_string());
                    }
                }
            }
            if n == 0 {
                return Ok(());
            }
            state.monitors.set_invalid(self.exec.invalid());
            if n < PAGE {
                return Ok(());
            }
        }
    }

    async fn stop(self, state: &AppState) {
        state.monitors.set_live(None);
        match Arc::try_unwrap(self.engine) {
            Ok(engine) => {
                engine.stop(Duration::from_secs(2)).await;
            }
            // Dropping it stops the scheduling as well.
            Err(shared) => drop(shared),
        }
        // The writer stores what the last runs delivered and ends with the channel.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.writer).await;
    }
}

/// Runs a monitor's probe with its credential, opened when the run starts.
#[derive(Clone)]
struct ServerExecutor {
    inner: Arc<ExecInner>,
}

type Opened = Result<Secret, Message>;

struct ExecInner {
    db: Db,
    ttl: Duration,
    /// monitor id → (contract, credential name), for the monitors that name one.
    creds: RwLock<HashMap<i64, (i64, String)>>,
    cache: Mutex<HashMap<(i64, String), (Instant, Opened)>>,
    invalid: Mutex<std::collections::HashSet<i64>>,
}

impl ServerExecutor {
    fn new(db: Db, ttl: Duration) -> ServerExecutor {
        ServerExecutor {
            inner: Arc::new(ExecInner {
                db,
                ttl,
                creds: RwLock::default(),
                cache: Mutex::default(),
                invalid: Mutex::default(),
            }),
        }
    }

    /// The engine's monitor for a stored one, or `None` when its probe does not parse (checked
    /// when stored, so only after a change of the probe format).
    fn admit(&self, m: &EngineMonitor) -> Option<Monitor> {
        let probe: Probe = match serde_json::from_value(m.probe.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(monitor = m.id, error = %e, "stored monitor probe does not parse; not run");
                self.inner.invalid.lock().unwrap_or_else(|e| e.into_inner()).insert(m.id);
                return None;
            }
        };
        self.inner.invalid.lock().unwrap_or_else(|e| e.into_inner()).remove(&m.id);
        let mut creds = self.inner.creds.write().unwrap_or_else(|e| e.into_inner());
        match &m.credential {
            Some(c) => creds.insert(m.id, (m.contract_id, c.clone())),
            None => creds.remove(&m.id),
        };
        let secs = |s: i64| Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1));
        Some(Monitor {
            id: m.id.to_string(),
            probe,
            interval: secs(m.interval_s),
            timeout: secs(m.timeout_s),
            secret: None,
        })
    }

    fn forget(&self, id: i64) {
        self.inner.creds.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    fn invalid(&self) -> usize {
        self.inner.invalid.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    async fn secret(&self, cid: i64, name: &str) -> Opened {
        let key = (cid, name.to_string());
        let cached = {
            let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(&key).filter(|(at, _)| at.elapsed() < self.inner.ttl).map(|(_, r)| r.clone())
        };
        if let Some(r) = cached {
            return r;
        }
        let opened = inspections::load_secret(&self.inner.db, cid, name).await.map(|s| Secret {
            username: s.username,
            password: s.password,
            private_key: s.private_key,
        });
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (Instant::now(), opened.clone()));
        opened
    }
}

impl Executor for ServerExecutor {
    async fn execute(&self, m: &Monitor) -> Outcome {
        let id: i64 = m.id.parse().unwrap_or(0);
        let cred = self.inner.creds.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
        let secret = match cred {
            None => None,
            Some((cid, name)) => match self.secret(cid, &name).await {
                Ok(s) => Some(s),
                Err(why) => return Outcome::fail(Duration::ZERO, why, Vec::new()),
            },
        };
        let timeout = m.timeout.min(m.interval);
        // The probe bounds itself; this guards against one that does not.
        let guard = timeout + Duration::from_secs(5);
        match tokio::time::timeout(guard, yunwei_probes::run(&m.probe, secret.as_ref(), timeout)).await {
            Ok(o) => o,
            Err(_) => Outcome::fail(
                guard,
                Message::new(
                    format!("超时：{} 秒内未完成", timeout.as_secs()),
                    format!("timed out after {} s", timeout.as_secs()),
                ),
                Vec::new(),
            ),
        }
    }
}

/// A report as storage takes it; `at` is when the run started, on the server's clock.
fn to_report(r: Report, now: i64) -> Option<MonitorReport> {
    let monitor_id = r.monitor_id.parse().ok()?;
    let o = r.outcome;
    let readings = o
        .readings
        .into_iter()
        .filter_map(|rd| match rd.value {
            Value::Num(v) if v.is_finite() => Some((rd.key, v)),
            Value::Bool(b) => Some((rd.key, f64::from(u8::from(b)))),
            _ => None,
        })
        .collect();
    Some(MonitorReport {
        monitor_id,
        at: now - o.elapsed_ms.max(0.0).round() as i64,
        ok: o.ok,
        elapsed_ms: o.elapsed_ms,
        reason: o.reason,
        readings,
    })
}

async fn write_results(state: AppState, mut rx: mpsc::Receiver<Report>, settings: Settings) {
    let (ftx, frx) = mpsc::unbounded_channel();
    let follow = tokio::spawn(follow_ups(state.clone(), frx));
    let mut batch: Vec<MonitorReport> = Vec::with_capacity(settings.batch_max);
    let mut lateness: Vec<f64> = Vec::with_capacity(settings.batch_max);
    let accept = |r: Report, batch: &mut Vec<MonitorReport>, lateness: &mut Vec<f64>| {
        lateness.push(r.lateness.as_secs_f64());
        if let Some(m) = to_report(r, state.now_ms()) {
            batch.push(m);
        }
    };
    loop {
        let Some(first) = rx.recv().await else { break };
        accept(first, &mut batch, &mut lateness);
        let deadline = tokio::time::Instant::now() + settings.batch_every;
        let mut closed = false;
        while batch.len() < settings.batch_max {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => accept(r, &mut batch, &mut lateness),
                    None => {
                        closed = true;
                        break;
                    }
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        state.metrics.record(|| {
            for l in lateness.drain(..) {
                metrics::histogram!("monitor_run_lateness_seconds").record(l);
            }
        });
        flush(&state, &mut batch, &ftx).await;
        if closed {
            break;
        }
    }
    drop(ftx);
    let _ = follow.await;
}

async fn flush(state: &AppState, batch: &mut Vec<MonitorReport>, ftx: &mpsc::UnboundedSender<FollowUp>) {
    if batch.is_empty() {
        return;
    }
    let w = &state.monitors.writer;
    let started = Instant::now();
    let mut result = store::record_results(&state.db, batch, state.now_ms()).await;
    if let Err(e) = &result {
        // One retry (a busy database, a dropped connection): the batch is one transaction, so
        // nothing of the failed attempt stayed.
        tracing::warn!(results = batch.len(), error = %e, "monitor results could not be stored; retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
        result = store::record_results(&state.db, batch, state.now_ms()).await;
    }
    let took = started.elapsed();
    match result {
        Ok(rec) => {
            w.batches.fetch_add(1, Ordering::Relaxed);
            w.results.fetch_add(rec.stored as u64, Ordering::Relaxed);
            w.ignored.fetch_add(rec.ignored as u64, Ordering::Relaxed);
            w.transitions.fetch_add(rec.transitions as u64, Ordering::Relaxed);
            w.last_batch_us.store(took.as_micros() as u64, Ordering::Relaxed);
            w.max_batch_us.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
            w.last_batch_size.store(batch.len() as u64, Ordering::Relaxed);
            state.metrics.record(|| {
                metrics::histogram!("monitor_result_batch_seconds").record(took.as_secs_f64());
                metrics::histogram!("monitor_result_read_seconds").record(rec.read.as_secs_f64());
                metrics::histogram!("monitor_result_write_seconds").record(rec.write.as_secs_f64());
            });
            for f in rec.follow_ups {
                let _ = ftx.send(f);
            }
        }
        Err(e) => {
            w.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(results = batch.len(), error = %e, "monitor results were not stored");
        }
    }
    batch.clear();
}

async fn follow_ups(state: AppState, mut rx: mpsc::UnboundedReceiver<FollowUp>) {
    while let Some(f) = rx.recv().await {
        let w = &state.monitors.writer;
        match store::follow_up(&state.db, &f, state.now_ms()).await {
            Ok(()) => {
                w.follow_ups.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                w.follow_up_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(follow_up = ?f, error = %e, "monitor ticket follow-up failed");
            }
        }
    }
}
