//! Probe engine load generator (issue 6, BENCHMARKS.md "Probes (issue 6)"). Not a test: run in
//! release mode, usually through `bench/probes.sh`, beside Prometheus blackbox_exporter.
//!
//!   probe_load rate --kind http|tcp --rate 500 --duration 20 [--client engine|reqwest]
//!   probe_load schedule --monitors 20000 --interval-s 60 --duration-s 180
//!   probe_load sched --design heap|tasks --monitors 20000 --interval-ms 1000 --duration 20
//!
//! `rate`: `rate` monitors at a 1 s interval through the engine against one local target (the
//! peers' nginx by default), so `rate` probes per second; after a warm-up, CPU seconds of this
//! whole process (from /proc, like the exporter's) per 1,000 probes, probe latency (the probe's
//! own wall time) and start lateness. `--client reqwest` swaps the HTTP probe for a shared reqwest
//! client without pooling, to compare the two client stacks.
//! `schedule`: many monitors at a long interval; lateness of every run and CPU.
//! `sched`: the scheduler alone (a probe that does nothing): the engine's one timer task with a
//! heap against one sleeping task per monitor.
//!
//! Each run prints one JSON line (and appends it to `--out`).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use yunwei_probes::engine::{Engine, EngineConfig, Executor, Monitor, ProbeExecutor, Report, phase_ms};
use yunwei_probes::http::HttpProbe;
use yunwei_probes::tcp::TcpProbe;
use yunwei_probes::{Message, Outcome, Probe, Reading};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
    /// Append the JSON line to this file.
    #[arg(long, global = true)]
    out: Option<String>,
    /// tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// nginx master pid file, to report the target's CPU beside ours.
    #[arg(long, global = true, default_value = "/tmp/peers/nginx.pid")]
    nginx_pid_file: String,
}

#[derive(Subcommand)]
enum Cmd {
    Rate {
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        rate: usize,
        #[arg(long, default_value_t = 20)]
        duration: u64,
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        #[arg(long, default_value = "http://127.0.0.1:18081/")]
        url: String,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 18081)]
        port: u16,
        #[arg(long, value_enum, default_value_t = Client::Engine)]
        client: Client,
    },
    Schedule {
        #[arg(long, default_value_t = 20_000)]
        monitors: usize,
        #[arg(long, default_value_t = 60)]
        interval_s: u64,
        #[arg(long, default_value_t = 180)]
        duration_s: u64,
        #[arg(long, default_value = "http://127.0.0.1:18081/")]
        url: String,
    },
    Sched {
        #[arg(long, value_enum)]
        design: Design,
        #[arg(long, default_value_t = 20_000)]
        monitors: usize,
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        #[arg(long, default_value_t = 20)]
        duration: u64,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Kind {
    Http,
    Tcp,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Client {
    /// yunwei's HTTP probe (hyper client connection, fresh socket).
    Engine,
    /// A shared reqwest::Client with no idle connections kept.
    Reqwest,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Design {
    /// yunwei's engine: one timer task, a heap of next slots, a task per run.
    Heap,
    /// One task per monitor sleeping until its next slot.
    Tasks,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t);
    }
    let rt = rt.build()?;
    let line = rt.block_on(async {
        match &args.cmd {
            Cmd::Rate { kind, rate, duration, warmup, url, host, port, client } => {
                rate_run(&args, *kind, *rate, *duration, *warmup, url, host, *port, *client).await
            }
            Cmd::Schedule { monitors, interval_s, duration_s, url } => {
                schedule_run(&args, *monitors, *interval_s, *duration_s, url).await
            }
            Cmd::Sched { design, monitors, interval_ms, duration } => {
                sched_run(*design, *monitors, *interval_ms, *duration).await
            }
        }
    })?;
    let text = line.to_string();
    println!("{text}");
    if let Some(path) = &args.out {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{text}")?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------ /proc readings

const CLK_TCK: f64 = 100.0;

fn proc_cpu_s(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 2..].split_whitespace().collect();
    let f = |i: usize| rest.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime; children's cutime, cstime.
    Some(((f(11) + f(12)) / CLK_TCK, (f(13) + f(14)) / CLK_TCK))
}

fn self_cpu_s() -> f64 {
    proc_cpu_s(std::process::id()).map(|(own, _)| own).unwrap_or(0.0)
}

/// CPU seconds of a process tree (root incl. reaped children, plus live descendants).
fn tree_cpu_s(root: u32) -> f64 {
    let mut kids: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some(rp) = s.rfind(')') else { continue };
            let ppid = s[rp + 2..].split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
            kids.entry(ppid).or_default().push(pid);
        }
    }
    let mut total = 0.0;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some((own, reaped)) = proc_cpu_s(p) {
            total += own + if p == root { reaped } else { 0.0 };
        }
        stack.extend(kids.get(&p).cloned().unwrap_or_default());
    }
    total
}

/// (busy, total) jiffies of the whole machine.
fn system_jiffies() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> =
        s.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|x| x.parse::<f64>().ok()))
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

fn nginx_pid(file: &str) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// CPU of this process, of nginx and of the machine over a window.
struct Window {
    t0: Instant,
    cpu0: f64,
    ngx: Option<(u32, f64)>,
    sys0: (f64, f64),
}

impl Window {
    fn start(nginx_pid_file: &str) -> Window {
        let ngx = nginx_pid(nginx_pid_file).map(|p| (p, tree_cpu_s(p)));
        Window { t0: Instant::now(), cpu0: self_cpu_s(), ngx, sys0: system_jiffies() }
    }

    fn end(&self) -> serde_json::Value {
        let wall = self.t0.elapsed().as_secs_f64();
        let cpu = self_cpu_s() - self.cpu0;
        let ngx = self.ngx.map(|(p, c0)| tree_cpu_s(p) - c0);
        let sys1 = system_jiffies();
        let (busy, total) = (sys1.0 - self.sys0.0, sys1.1 - self.sys0.1);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let busy_cores = if total > 0.0 { busy / total * cores } else { 0.0 };
        let other = busy_cores - (cpu + ngx.unwrap_or(0.0)) / wall.max(1e-9);
        json!({
            "wall_s": r3(wall),
            "cpu_s": r3(cpu),
            "nginx_cpu_s": ngx.map(r3),
            "system_busy_cores": r3(busy_cores),
            "other_cpu_cores": r3(other),
        })
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = (sorted.len() - 1) as f64 * p / 100.0;
    let (f, c) = (k.floor() as usize, (k.ceil() as usize).min(sorted.len() - 1));
    Some(r3(sorted[f] + (sorted[c] - sorted[f]) * (k - f as f64)))
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn ts() -> String {
    let secs = unix_ms() / 1000;
    format!("unix:{secs}")
}

// ------------------------------------------------------------------------------- executors

/// The alternative HTTP client: one shared reqwest::Client, no idle connections kept (a fresh
/// connection per probe, as the engine's probe does).
struct ReqwestExecutor {
    client: reqwest::Client,
    url: String,
}

impl Executor for ReqwestExecutor {
    async fn execute(&self, m: &Monitor) -> Outcome {
        let started = Instant::now();
        let work = async {
            let resp = self.client.get(&self.url).send().await?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, body.len()))
        };
        match tokio::time::timeout(m.timeout, work).await {
            Ok(Ok((status, n))) if (200..400).contains(&status) => Outcome::pass(
                started.elapsed(),
                vec![Reading::num("status", f64::from(status)), Reading::num("bytes", n as f64)],
            ),
            Ok(Ok((status, _))) => {
                Outcome::fail(started.elapsed(), Message::new("状态码", format!("status {status}")), vec![])
            }
            Ok(Err(e)) => Outcome::fail(started.elapsed(), Message::new("错误", e.to_string()), vec![]),
            Err(_) => Outcome::fail(started.elapsed(), Message::new("超时", "timed out"), vec![]),
        }
    }
}

/// Does nothing: measures the scheduler alone.
struct Noop;

impl Executor for Noop {
    async fn execute(&self, _m: &Monitor) -> Outcome {
        Outcome::pass(Duration::ZERO, vec![])
    }
}

// ------------------------------------------------------------------------------------ rate

fn monitor(id: String, probe: Probe, interval: Duration) -> Monitor {
    Monitor { id, probe, interval, timeout: Duration::from_secs(10).min(interval), secret: None }
}

/// Collects (started unix ms, probe ms, ok, lateness ms) until the channel closes.
fn collector(mut rx: mpsc::Receiver<Report>) -> tokio::task::JoinHandle<Vec<(i64, f64, bool, f64)>> {
    tokio::spawn(async move {
        let mut out = Vec::with_capacity(1 << 16);
        while let Some(r) = rx.recv().await {
            out.push((r.started_unix_ms, r.outcome.elapsed_ms, r.outcome.ok, r.lateness.as_secs_f64() * 1000.0));
        }
        out
    })
}

#[allow(clippy::too_many_arguments)]
async fn rate_run(
    args: &Args,
    kind: Kind,
    rate: usize,
    duration: u64,
    warmup: u64,
    url: &str,
    host: &str,
    port: u16,
    client: Client,
) -> anyhow::Result<serde_json::Value> {
    let interval = Duration::from_secs(1);
    let probe = match kind {
        Kind::Http => Probe::Http(HttpProbe::get(url)),
        Kind::Tcp => Probe::Tcp(serde_json::from_value::<TcpProbe>(json!({"host": host, "port": port}))?),
    };
    let monitors: Vec<Monitor> = (0..rate).map(|i| monitor(format!("load-{i}"), probe.clone(), interval)).collect();
    let (tx, rx) = mpsc::channel(1 << 16);
    let collected = collector(rx);
    let engine = match (kind, client) {
        (Kind::Http, Client::Reqwest) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build()?;
            Engine::start(EngineConfig::default(), ReqwestExecutor { client, url: url.to_string() }, tx)
        }
        _ => {
            // the `Engine` type is not generic: both arms return the same type
            Engine::start(EngineConfig::default(), ProbeExecutor, tx)
        }
    };
    engine.set_monitors(monitors);
    // The first slots spread over one interval; then a warm-up.
    tokio::time::sleep(interval + Duration::from_secs(warmup)).await;
    engine.reset_stats();
    let t0 = unix_ms();
    let w = Window::start(&args.nginx_pid_file);
    tokio::time::sleep(Duration::from_secs(duration)).await;
    let stats = engine.stats();
    let win = w.end();
    let t1 = unix_ms();
    let _ = engine.stop(Duration::from_secs(12)).await;
    let all = collected.await?;
    let in_window: Vec<_> = all.iter().filter(|r| r.0 >= t0 && r.0 < t1).collect();
    let ok = in_window.iter().filter(|r| r.2).count();
    let mut lat: Vec<f64> = in_window.iter().filter(|r| r.2).map(|r| r.1).collect();
    lat.sort_by(f64::total_cmp);
    let probes = stats.runs as f64;
    let cpu = win["cpu_s"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "test": "yunwei_probe",
        "kind": match kind { Kind::Http => "http", Kind::Tcp => "tcp" },
        "client": match client { Client::Engine => "engine", Client::Reqwest => "reqwest" },
        "target_rate_per_s": rate,
        "duration_s": duration,
        "probes": stats.runs,
        "probes_ok": ok,
        "probes_failed": in_window.len() - ok,
        "achieved_rate_per_s": r3(probes / duration as f64),
        "cpu_s_per_1000_probes": if probes > 0.0 { Some(r3(cpu * 1000.0 / probes * 1000.0) / 1000.0) } else { None },
        "lat_median_ms": pct(&lat, 50.0),
        "lat_p90_ms": pct(&lat, 90.0),
        "lat_p99_ms": pct(&lat, 99.0),
        "lat_max_ms": lat.last().copied(),
        "late_runs": stats.late_runs,
        "lateness_p99_ms": stats.p99_lateness.as_millis() as u64,
        "lateness_max_ms": r3(stats.max_lateness.as_secs_f64() * 1000.0),
        "skipped": stats.skipped,
        "peak_rss_mib": peak_rss_mib(),
        "window": win,
        "ts": ts(),
    }))
}

// -------------------------------------------------------------------------------- schedule

async fn schedule_run(
    args: &Args,
    monitors: usize,
    interval_s: u64,
    duration_s: u64,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let interval = Duration::from_secs(interval_s);
    let probe = Probe::Http(HttpProbe::get(url));
    let set: Vec<Monitor> = (0..monitors).map(|i| monitor(format!("site-{i:05}"), probe.clone(), interval)).collect();
    let (tx, rx) = mpsc::channel(1 << 16);
    let collected = collector(rx);
    let w = Window::start(&args.nginx_pid_file);
    let engine = Engine::start(EngineConfig::default(), ProbeExecutor, tx);
    engine.set_monitors(set);
    tokio::time::sleep(Duration::from_secs(duration_s)).await;
    let stats = engine.stats();
    let win = w.end();
    let final_stats = engine.stop(Duration::from_secs(12)).await;
    let all = collected.await?;
    let ok = all.iter().filter(|r| r.2).count();
    let mut late: Vec<f64> = all.iter().map(|r| r.3).collect();
    late.sort_by(f64::total_cmp);
    let mut lat: Vec<f64> = all.iter().filter(|r| r.2).map(|r| r.1).collect();
    lat.sort_by(f64::total_cmp);
    let cpu = win["cpu_s"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "test": "yunwei_schedule",
        "monitors": monitors,
        "interval_s": interval_s,
        "duration_s": duration_s,
        "runs": stats.runs,
        "runs_reported": all.len(),
        "runs_ok": ok,
        "expected_runs": (monitors as u64 * duration_s) / interval_s,
        "late_runs_over_1s": stats.late_runs,
        "lateness_median_ms": pct(&late, 50.0),
        "lateness_p99_ms": pct(&late, 99.0),
        "lateness_max_ms": r3(stats.max_lateness.as_secs_f64() * 1000.0),
        "skipped": final_stats.skipped,
        "every_run_within_1s": stats.late_runs == 0 && final_stats.late_runs == 0,
        "lat_median_ms": pct(&lat, 50.0),
        "lat_p99_ms": pct(&lat, 99.0),
        "cpu_s": cpu,
        "cpu_s_per_1000_probes": if stats.runs > 0 { Some(r3(cpu * 1000.0 / stats.runs as f64)) } else { None },
        "cpu_util_cores": r3(cpu / duration_s as f64),
        "peak_rss_mib": peak_rss_mib(),
        "window": win,
        "ts": ts(),
    }))
}

// ---------------------------------------------------------------------------------- sched

async fn sched_run(
    design: Design,
    monitors: usize,
    interval_ms: u64,
    duration: u64,
) -> anyhow::Result<serde_json::Value> {
    let interval = Duration::from_millis(interval_ms);
    let probe = Probe::Tcp(serde_json::from_value::<TcpProbe>(json!({"host": "127.0.0.1", "port": 9}))?);
    let set: Vec<Monitor> = (0..monitors).map(|i| monitor(format!("m-{i:05}"), probe.clone(), interval)).collect();
    let (tx, rx) = mpsc::channel(1 << 16);
    let collected = collector(rx);
    let warm = interval + Duration::from_secs(1);
    let (stats_runs, win, stopper): (Option<u64>, _, Box<dyn FnOnce() + Send>) = match design {
        Design::Heap => {
            let engine = Engine::start(EngineConfig::default(), Noop, tx);
            engine.set_monitors(set);
            tokio::time::sleep(warm).await;
            let w = Window::start("/nonexistent");
            let r0 = engine.stats().runs;
            tokio::time::sleep(Duration::from_secs(duration)).await;
            let runs = engine.stats().runs - r0;
            let win = w.end();
            (Some(runs), win, Box::new(move || drop(engine)))
        }
        Design::Tasks => {
            let permits = Arc::new(Semaphore::new(512));
            let exec = Arc::new(Noop);
            let base = tokio::time::Instant::now();
            let base_ms = unix_ms();
            let mut handles = Vec::with_capacity(monitors);
            for m in set {
                let (permits, exec, tx) = (permits.clone(), exec.clone(), tx.clone());
                let iv = interval_ms as i64;
                let phase = phase_ms(&m.id, interval) as i64;
                let k = (base_ms - phase).div_euclid(iv);
                let mut slot = k * iv + phase;
                if slot < base_ms {
                    slot += iv;
                }
                let m = Arc::new(m);
                handles.push(tokio::spawn(async move {
                    let id: Arc<str> = Arc::from(m.id.as_str());
                    loop {
                        let at = base + Duration::from_millis((slot - base_ms).max(0) as u64);
                        tokio::time::sleep_until(at).await;
                        let Ok(permit) = permits.acquire().await else { return };
                        let started = tokio::time::Instant::now();
                        let outcome = exec.execute(&m).await;
                        drop(permit);
                        let report = Report {
                            monitor_id: id.clone(),
                            slot_unix_ms: slot,
                            started_unix_ms: base_ms + started.duration_since(base).as_millis() as i64,
                            lateness: started.saturating_duration_since(at),
                            outcome,
                        };
                        if tx.send(report).await.is_err() {
                            return;
                        }
                        slot += iv;
                    }
                }));
            }
            drop(tx);
            tokio::time::sleep(warm).await;
            let w = Window::start("/nonexistent");
            tokio::time::sleep(Duration::from_secs(duration)).await;
            let win = w.end();
            (None, win, Box::new(move || handles.iter().for_each(|h| h.abort())))
        }
    };
    let t1 = unix_ms();
    stopper();
    let all = collected.await?;
    let t0 = t1 - (duration * 1000) as i64;
    let mut late: Vec<f64> = all.iter().filter(|r| r.0 >= t0 && r.0 < t1).map(|r| r.3).collect();
    late.sort_by(f64::total_cmp);
    let runs = stats_runs.unwrap_or(late.len() as u64) as f64;
    let cpu = win["cpu_s"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "test": "scheduler_overhead",
        "design": match design { Design::Heap => "heap", Design::Tasks => "tasks" },
        "monitors": monitors,
        "interval_ms": interval_ms,
        "duration_s": duration,
        "runs": runs,
        "cpu_s": cpu,
        "cpu_s_per_1000_runs": if runs > 0.0 { Some(r3(cpu * 1000.0 / runs * 1000.0) / 1000.0) } else { None },
        "lateness_median_ms": pct(&late, 50.0),
        "lateness_p99_ms": pct(&late, 99.0),
        "lateness_max_ms": late.last().copied(),
        "peak_rss_mib": peak_rss_mib(),
        "window": win,
        "ts": ts(),
    }))
}
