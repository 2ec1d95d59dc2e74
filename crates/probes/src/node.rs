//! Host metrics from a Prometheus node_exporter (`/metrics` over HTTP), and the pieces the other
//! service probes share: per-reading [`Limit`]s, target checks and message helpers.
//!
//! The readings are the same whether they come from node_exporter or from the SSH host-metrics
//! command ([`crate::ssh`]), so one checklist item can move between the two:
//!
//! | key | meaning |
//! | --- | --- |
//! | `cpu.busy_pct` | share of CPU time not idle (nor waiting for I/O) between two samples |
//! | `cpu.cores` | logical CPUs |
//! | `load.1`, `load.5`, `load.15` | load averages; `load.per_core` = `load.1` / cores |
//! | `mem.total_mb`, `mem.used_pct` | memory; used = 1 − MemAvailable / MemTotal |
//! | `swap.used_pct` | swap in use (absent without swap) |
//! | `disk.<mount>.used_pct`, `disk.<mount>.avail_gb` | per mounted file system, as `df` computes it |
//! | `uptime_h` | time since boot |
//!
//! Pseudo and memory file systems (tmpfs, overlay except `/`, squashfs, …) are left out.
//!
//! Limits are keyed by reading, with `*` matching any text: `{"disk.*.used_pct": {"max": 90}}`.
//! A limit on a reading that was not measured fails (a `disk./data.used_pct` limit on a host where
//! `/data` is not mounted is worth knowing), unless its key has a `*`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Message, Outcome, Reading, Value};

/// Scrape a node_exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeExporterProbe {
    /// The metrics page, e.g. `http://10.1.2.3:9100/metrics`.
    pub url: String,
    /// Interval between the two scrapes that measure CPU busy time; 0 scrapes once and reports no
    /// `cpu.busy_pct`.
    #[serde(default = "default_cpu_sample_ms")]
    pub cpu_sample_ms: u64,
    /// Report only these mount points (empty: every real file system).
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Limits per reading key (`*` matches any text).
    #[serde(default)]
    pub limits: BTreeMap<String, Limit>,
}

pub(crate) fn default_cpu_sample_ms() -> u64 {
    1000
}

/// The CPU sample interval is capped: it is spent inside the probe's time-out.
pub(crate) const MAX_CPU_SAMPLE_MS: u64 = 10_000;

/// A metrics page larger than this is refused (node_exporter's is a few hundred KiB).
const MAX_BODY: usize = 32 * 1024 * 1024;

impl NodeExporterProbe {
    pub fn validate(&self) -> Result<(), Message> {
        let url = reqwest::Url::parse(self.url.trim()).map_err(|e| {
            Message::new(
                format!("地址不是有效的 URL：{}（{e}）", self.url),
                format!("not a valid URL: {} ({e})", self.url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Message::new(
                format!("node_exporter 地址须以 http:// 或 https:// 开头：{}", self.url),
                format!("the node_exporter URL must start with http:// or https://: {}", self.url),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Message::new(
                format!("地址缺少主机：{}", self.url),
                format!("the URL has no host: {}", self.url),
            ));
        }
        check_cpu_sample(self.cpu_sample_ms)?;
        check_mounts(&self.mounts)?;
        check_limits_spec(&self.limits)
    }
}

pub(crate) fn check_cpu_sample(ms: u64) -> Result<(), Message> {
    if ms > MAX_CPU_SAMPLE_MS {
        return Err(Message::new(
            format!("CPU 采样间隔 {ms} 毫秒过长（最多 {MAX_CPU_SAMPLE_MS} 毫秒）"),
            format!("CPU sample interval of {ms} ms is too long (at most {MAX_CPU_SAMPLE_MS} ms)"),
        ));
    }
    Ok(())
}

pub(crate) fn check_mounts(mounts: &[String]) -> Result<(), Message> {
    for m in mounts {
        if !m.starts_with('/') {
            return Err(Message::new(
                format!("挂载点须为绝对路径：{m:?}"),
                format!("a mount point must be an absolute path: {m:?}"),
            ));
        }
    }
    Ok(())
}

pub async fn run(p: &NodeExporterProbe) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    // reqwest is built without a default crypto provider and panics without one: install ring,
    // as the binary does at start-up (a no-op when a provider is already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::fail(
                started.elapsed(),
                Message::new(format!("无法创建 HTTP 客户端：{e}"), format!("cannot create the HTTP client: {e}")),
                vec![],
            );
        }
    };
    let url = p.url.trim();
    let first = match scrape(&client, url).await {
        Ok(t) => t,
        Err(m) => return Outcome::fail(started.elapsed(), m, vec![]),
    };
    let scrape_ms = started.elapsed().as_secs_f64() * 1000.0;
    let samples = parse_exposition(&first);
    if !samples.iter().any(|s| s.name.starts_with("node_")) {
        return Outcome::fail(
            started.elapsed(),
            Message::new(
                format!("{url} 不是 node_exporter 的指标页（没有 node_ 指标）"),
                format!("{url} is not a node_exporter metrics page (no node_ metrics)"),
            ),
            vec![],
        );
    }
    let mut metrics = host_metrics_from_samples(&samples);
    if p.cpu_sample_ms > 0 {
        tokio::time::sleep(Duration::from_millis(p.cpu_sample_ms)).await;
        match scrape(&client, url).await {
            Ok(second) => {
                let later = host_metrics_from_samples(&parse_exposition(&second));
                metrics.cpu_busy_pct = cpu_busy_pct(metrics.cpu_times, later.cpu_times);
                metrics.cpu_times = later.cpu_times;
            }
            Err(m) => return Outcome::fail(started.elapsed(), m, vec![]),
        }
    }
    let mut readings = vec![Reading::num("scrape_ms", round2(scrape_ms))];
    readings.extend(metrics.readings(&p.mounts));
    finish(started, readings, &p.limits, vec![])
}

async fn scrape(client: &reqwest::Client, url: &str) -> Result<String, Message> {
    let mut resp = client.get(url).header("Accept", "text/plain").send().await.map_err(|e| {
        let why = reqwest_reason(&e);
        Message::new(format!("无法获取 {url}：{why}"), format!("cannot fetch {url}: {why}"))
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Message::new(
            format!("{url} 返回 HTTP {}", status.as_u16()),
            format!("{url} answered HTTP {}", status.as_u16()),
        ));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_BODY {
                    return Err(Message::new(
                        format!("{url} 的指标页超过 {} MiB", MAX_BODY >> 20),
                        format!("the metrics page at {url} is larger than {} MiB", MAX_BODY >> 20),
                    ));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                let why = reqwest_reason(&e);
                return Err(Message::new(format!("读取 {url} 失败：{why}"), format!("reading {url} failed: {why}")));
            }
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The innermost cause of a reqwest error ("connection refused" rather than "error sending request").
fn reqwest_reason(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    if e.is_connect() && !last.contains("refused") && !last.contains("connect") {
        format!("connection failed: {last}")
    } else {
        last
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition format

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format (version 0.0.4): `name{label="value",…} value [timestamp]`.
/// Comments, blank and malformed lines are skipped.
pub(crate) fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            // Skip separators.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(start, c) = chars.peek()?;
            if c == '}' {
                rest = &after[start + 1..];
                break;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let key = after[start..key_end].trim().to_string();
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key, value));
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_string(), labels, value })
}

// ---------------------------------------------------------------------------------------------
// Host metrics, from node_exporter or from /proc over SSH

/// Cumulative CPU time (any unit): all modes, and idle + iowait.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTimes {
    pub total: f64,
    pub idle: f64,
}

/// Busy share of CPU time between two cumulative samples.
pub(crate) fn cpu_busy_pct(a: Option<CpuTimes>, b: Option<CpuTimes>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let total = b.total - a.total;
    let idle = b.idle - a.idle;
    (total > 0.0).then(|| ((total - idle) / total * 100.0).clamp(0.0, 100.0))
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Disk {
    pub mount: String,
    pub fstype: String,
    /// Bytes.
    pub used: f64,
    pub avail: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HostMetrics {
    pub cpu_times: Option<CpuTimes>,
    pub cpu_busy_pct: Option<f64>,
    pub cores: Option<f64>,
    pub load: Option<[f64; 3]>,
    /// Bytes.
    pub mem_total: Option<f64>,
    pub mem_available: Option<f64>,
    pub swap_total: Option<f64>,
    pub swap_free: Option<f64>,
    pub disks: Vec<Disk>,
    pub uptime_s: Option<f64>,
}

/// File systems that hold no data worth a limit.
pub(crate) fn pseudo_fs(fstype: &str, mount: &str) -> bool {
    const SKIP: &[&str] = &[
        "tmpfs",
        "devtmpfs",
        "ramfs",
        "squashfs",
        "autofs",
        "proc",
        "sysfs",
        "devpts",
        "nsfs",
        "cgroup",
        "cgroup2",
        "securityfs",
        "pstore",
        "bpf",
        "tracefs",
        "debugfs",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "efivarfs",
        "binfmt_misc",
        "rpc_pipefs",
        "iso9660",
        "fuse.lxcfs",
        "fuse.gvfsd-fuse",
        "fuse.portal",
        "none",
    ];
    SKIP.contains(&fstype)
        || (fstype == "overlay" && mount != "/")
        || ["/proc", "/sys", "/dev", "/run/", "/snap/", "/var/lib/docker/", "/var/lib/containers/"]
            .iter()
            .any(|p| mount.starts_with(p))
}

pub(crate) fn host_metrics_from_samples(samples: &[Sample]) -> HostMetrics {
    let mut m = HostMetrics::default();
    let one = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let mut cpus = std::collections::BTreeSet::new();
    let mut times = CpuTimes::default();
    let mut any_cpu = false;
    for s in samples.iter().filter(|s| s.name == "node_cpu_seconds_total") {
        any_cpu = true;
        if let Some(c) = s.label("cpu") {
            cpus.insert(c.to_string());
        }
        times.total += s.value;
        if matches!(s.label("mode"), Some("idle" | "iowait")) {
            times.idle += s.value;
        }
    }
    if any_cpu {
        m.cpu_times = Some(times);
        m.cores = Some(cpus.len() as f64);
    }
    if let (Some(a), Some(b), Some(c)) = (one("node_load1"), one("node_load5"), one("node_load15")) {
        m.load = Some([a, b, c]);
    }
    m.mem_total = one("node_memory_MemTotal_bytes");
    m.mem_available = one("node_memory_MemAvailable_bytes");
    m.swap_total = one("node_memory_SwapTotal_bytes");
    m.swap_free = one("node_memory_SwapFree_bytes");
    if let (Some(boot), Some(now)) = (one("node_boot_time_seconds"), one("node_time_seconds")) {
        m.uptime_s = Some(now - boot);
    }
    // File systems: size, free (for used) and avail (for non-root users), per mount point.
    let fs = |metric: &str, mount: &str| {
        samples.iter().find(|s| s.name == metric && s.label("mountpoint") == Some(mount)).map(|s| s.value)
    };
    for s in samples.iter().filter(|s| s.name == "node_filesystem_size_bytes") {
        let (Some(mount), fstype) = (s.label("mountpoint"), s.label("fstype").unwrap_or("")) else { continue };
        if pseudo_fs(fstype, mount) || s.value <= 0.0 || m.disks.iter().any(|d| d.mount == mount) {
            continue;
        }
        let (Some(free), Some(avail)) =
            (fs("node_filesystem_free_bytes", mount), fs("node_filesystem_avail_bytes", mount))
        else {
            continue;
        };
        m.disks.push(Disk { mount: mount.to_string(), fstype: fstype.to_string(), used: s.value - free, avail });
    }
    m
}

impl HostMetrics {
    pub(crate) fn readings(&self, mounts: &[String]) -> Vec<Reading> {
        let mut r = Vec::new();
        if let Some(v) = self.cpu_busy_pct {
            r.push(Reading::num("cpu.busy_pct", round2(v)));
        }
        if let Some(c) = self.cores {
            r.push(Reading::num("cpu.cores", c));
        }
        if let Some([a, b, c]) = self.load {
            r.push(Reading::num("load.1", a));
            r.push(Reading::num("load.5", b));
            r.push(Reading::num("load.15", c));
            if let Some(cores) = self.cores.filter(|c| *c > 0.0) {
                r.push(Reading::num("load.per_core", round2(a / cores)));
            }
        }
        if let Some(total) = self.mem_total.filter(|t| *t > 0.0) {
            r.push(Reading::num("mem.total_mb", (total / 1_048_576.0).round()));
            if let Some(avail) = self.mem_available {
                r.push(Reading::num("mem.used_pct", round2((1.0 - avail / total) * 100.0)));
            }
        }
        if let (Some(total), Some(free)) = (self.swap_total.filter(|t| *t > 0.0), self.swap_free) {
            r.push(Reading::num("swap.used_pct", round2((1.0 - free / total) * 100.0)));
        }
        for d in &self.disks {
            if !mounts.is_empty() && !mounts.iter().any(|m| m == &d.mount) {
                continue;
            }
            // As df: used / (used + available to non-root users).
            let denom = d.used + d.avail;
            let pct = if denom > 0.0 { d.used / denom * 100.0 } else { 0.0 };
            r.push(Reading::num(format!("disk.{}.used_pct", d.mount), round2(pct)));
            r.push(Reading::num(format!("disk.{}.avail_gb", d.mount), round2(d.avail / 1_073_741_824.0)));
        }
        if let Some(u) = self.uptime_s {
            r.push(Reading::num("uptime_h", round2(u / 3600.0)));
        }
        r
    }
}

pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------------
// Shared by the service probes: limits, checks of definitions, messages

/// Bounds for one numeric reading; either may be absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl Limit {
    pub(crate) fn validate(&self, key: &str) -> Result<(), Message> {
        if self.min.is_none() && self.max.is_none() {
            return Err(Message::new(
                format!("阈值 {key} 既无下限也无上限（min/max）"),
                format!("limit {key} has neither min nor max"),
            ));
        }
        if self.min.is_some_and(|v| !v.is_finite()) || self.max.is_some_and(|v| !v.is_finite()) {
            return Err(Message::new(format!("阈值 {key} 不是有限数"), format!("limit {key} is not a finite number")));
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max)
            && lo > hi
        {
            return Err(Message::new(
                format!("阈值 {key} 的下限 {lo} 大于上限 {hi}"),
                format!("limit {key}: min {lo} is greater than max {hi}"),
            ));
        }
        Ok(())
    }

    /// The violation, if the value is out of bounds.
    pub(crate) fn violation(&self, key: &str, v: f64) -> Option<Message> {
        if let Some(max) = self.max
            && v > max
        {
            return Some(Message::new(
                format!("{key} = {v}，超过上限 {max}"),
                format!("{key} = {v}, above the maximum {max}"),
            ));
        }
        if let Some(min) = self.min
            && v < min
        {
            return Some(Message::new(
                format!("{key} = {v}，低于下限 {min}"),
                format!("{key} = {v}, below the minimum {min}"),
            ));
        }
        None
    }
}

pub(crate) fn check_limits_spec(limits: &BTreeMap<String, Limit>) -> Result<(), Message> {
    for (k, l) in limits {
        if k.trim().is_empty() {
            return Err(Message::new("阈值的读数名为空", "a limit has an empty reading key"));
        }
        l.validate(k)?;
    }
    Ok(())
}

/// `*` matches any run of characters (including `.` and `/`); everything else literally.
pub(crate) fn key_matches(pattern: &str, key: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == key;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !key.starts_with(first) || key.len() < first.len() + last.len() || !key.ends_with(last) {
        return false;
    }
    let mut rest = &key[first.len()..key.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Every limit violated by the readings, and every exact limit whose reading is missing.
pub(crate) fn check_limits(readings: &[Reading], limits: &BTreeMap<String, Limit>) -> Vec<Message> {
    let mut out = Vec::new();
    for (pattern, limit) in limits {
        let mut seen = false;
        for r in readings.iter().filter(|r| key_matches(pattern, &r.key)) {
            seen = true;
            match r.value {
                Value::Num(v) => out.extend(limit.violation(&r.key, v)),
                _ => out.push(Message::new(
                    format!("读数 {} 不是数值，无法比较阈值", r.key),
                    format!("reading {} is not a number, cannot apply a limit", r.key),
                )),
            }
        }
        if !seen && !pattern.contains('*') {
            out.push(Message::new(format!("未测得读数 {pattern}"), format!("reading {pattern} was not measured")));
        }
    }
    out
}

/// Several problems as one message.
pub(crate) fn joined(msgs: Vec<Message>) -> Option<Message> {
    if msgs.is_empty() {
        return None;
    }
    let zh = msgs.iter().map(|m| m.zh.as_str()).collect::<Vec<_>>().join("；");
    let en = msgs.iter().map(|m| m.en.as_str()).collect::<Vec<_>>().join("; ");
    Some(Message::new(zh, en))
}

/// Pass, or fail with every problem found (earlier ones, then limit violations).
pub(crate) fn finish(
    started: Instant,
    readings: Vec<Reading>,
    limits: &BTreeMap<String, Limit>,
    mut problems: Vec<Message>,
) -> Outcome {
    problems.extend(check_limits(&readings, limits));
    match joined(problems) {
        None => Outcome::pass(started.elapsed(), readings),
        Some(m) => Outcome::fail(started.elapsed(), m, readings),
    }
}

/// A host name or address in a definition: non-empty, no spaces, no scheme, no port.
pub(crate) fn check_host(host: &str) -> Result<(), Message> {
    let h = host.trim();
    if h.is_empty() {
        return Err(Message::new("主机为空", "the host is empty"));
    }
    if h.contains("://") || h.contains('/') || h.chars().any(char::is_whitespace) {
        return Err(Message::new(
            format!("主机应为主机名或 IP 地址，不含协议、路径或空格：{host:?}"),
            format!("the host must be a host name or an IP address, without scheme, path or spaces: {host:?}"),
        ));
    }
    // An IPv6 address is written bare (`::1`), a host name has at most one kind of colon.
    if h.contains(':') && h.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(Message::new(
            format!("主机中不要写端口（端口单独填写）：{host:?}"),
            format!("write the port separately, not in the host: {host:?}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_port(port: u16) -> Result<(), Message> {
    if port == 0 {
        return Err(Message::new("端口不能为 0", "the port cannot be 0"));
    }
    Ok(())
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    let h = host.trim();
    if h.contains(':') { format!("[{h}]:{port}") } else { format!("{h}:{port}") }
}

/// An I/O failure to reach `host:port`, in words an operator can act on.
pub(crate) fn connect_failure(target: &str, e: &std::io::Error) -> Message {
    use std::io::ErrorKind as K;
    let (zh, en) = match e.kind() {
        K::ConnectionRefused => {
            ("连接被拒绝（端口未监听）".to_string(), "connection refused (nothing listens on the port)".to_string())
        }
        K::TimedOut => ("连接超时".to_string(), "connection timed out".to_string()),
        K::HostUnreachable => ("主机不可达".to_string(), "host unreachable".to_string()),
        K::NetworkUnreachable => ("网络不可达".to_string(), "network unreachable".to_string()),
        K::ConnectionReset => ("连接被重置".to_string(), "connection reset".to_string()),
        K::UnexpectedEof => ("对方关闭了连接".to_string(), "the server closed the connection".to_string()),
        _ => (e.to_string(), e.to_string()),
    };
    Message::new(format!("无法连接 {target}：{zh}"), format!("cannot connect to {target}: {en}"))
}

/// The failure a probe reports when its kind was left out of this build.
#[allow(dead_code)]
pub(crate) fn not_built(started: Instant, feature: &str) -> Outcome {
    Outcome::fail(
        started.elapsed(),
        Message::new(
            format!("此版本未包含该探测（编译特性 {feature} 未启用）"),
            format!("this build does not include this probe (cargo feature {feature} is off)"),
        ),
        vec![],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100
node_cpu_seconds_total{cpu="0",mode="iowait"} 10
node_cpu_seconds_total{cpu="0",mode="user"} 30
node_cpu_seconds_total{cpu="1",mode="idle"} 100
node_cpu_seconds_total{cpu="1",mode="system"} 10
node_load1 0.5
node_load5 0.25
node_load15 1e-1
node_memory_MemTotal_bytes 8.589934592e+09
node_memory_MemAvailable_bytes 2.147483648e+09
node_filesystem_size_bytes{device="/dev/vda1",fstype="ext4",mountpoint="/"} 1000
node_filesystem_free_bytes{device="/dev/vda1",fstype="ext4",mountpoint="/"} 300
node_filesystem_avail_bytes{device="/dev/vda1",fstype="ext4",mountpoint="/"} 200
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1000
node_filesystem_size_bytes{device="数据",fstype="xfs",mountpoint="/data \"x\""} 100
node_filesystem_free_bytes{device="数据",fstype="xfs",mountpoint="/data \"x\""} 100
node_filesystem_avail_bytes{device="数据",fstype="xfs",mountpoint="/data \"x\""} 100
node_boot_time_seconds 1000
node_time_seconds 8200 1712000000000
weird_inf +Inf
"#;

    #[test]
    fn parses_the_exposition_format() {
        let s = parse_exposition(PAGE);
        assert_eq!(s.len(), 20);
        assert_eq!(s[0].name, "node_cpu_seconds_total");
        assert_eq!(s[0].label("mode"), Some("idle"));
        assert_eq!(s[0].value, 100.0);
        let data = s.iter().find(|x| x.label("device") == Some("数据")).unwrap();
        assert_eq!(data.label("mountpoint"), Some("/data \"x\""));
        assert_eq!(s.iter().find(|x| x.name == "node_time_seconds").unwrap().value, 8200.0);
        assert!(s.last().unwrap().value.is_infinite());
        assert!(parse_line("broken{a=\"x} 1").is_none());
        assert!(parse_line("no_value").is_none());
    }

    #[test]
    fn host_metrics_and_readings() {
        let m = host_metrics_from_samples(&parse_exposition(PAGE));
        assert_eq!(m.cores, Some(2.0));
        assert_eq!(m.cpu_times, Some(CpuTimes { total: 250.0, idle: 210.0 }));
        assert_eq!(m.disks.len(), 2, "tmpfs skipped: {:?}", m.disks);
        let r = m.readings(&[]);
        let get = |k: &str| r.iter().find(|x| x.key == k).map(|x| x.value.clone());
        assert_eq!(get("mem.used_pct"), Some(Value::Num(75.0)));
        assert_eq!(get("disk./.used_pct"), Some(Value::Num(77.78)), "df: 700 / (700 + 200)");
        assert_eq!(get("load.per_core"), Some(Value::Num(0.25)));
        assert_eq!(get("uptime_h"), Some(Value::Num(2.0)));
        assert_eq!(get("cpu.busy_pct"), None, "needs two samples");
        let only_root = m.readings(&["/".to_string()]);
        assert!(!only_root.iter().any(|x| x.key.starts_with("disk./data")));
        let a = CpuTimes { total: 100.0, idle: 80.0 };
        let b = CpuTimes { total: 200.0, idle: 130.0 };
        assert_eq!(cpu_busy_pct(Some(a), Some(b)), Some(50.0));
        assert_eq!(cpu_busy_pct(Some(a), Some(a)), None);
    }

    #[test]
    fn limits_match_patterns_and_report_missing_readings() {
        assert!(key_matches("disk.*.used_pct", "disk./var/log.used_pct"));
        assert!(!key_matches("disk.*.used_pct", "disk./.avail_gb"));
        assert!(key_matches("*", "anything"));
        assert!(key_matches("a*b*c", "a-b-c"));
        assert!(!key_matches("a*b*c", "a-c"));
        let readings = vec![Reading::num("disk./.used_pct", 95.0), Reading::num("disk./home.used_pct", 10.0)];
        let mut limits = BTreeMap::new();
        limits.insert("disk.*.used_pct".to_string(), Limit { min: None, max: Some(90.0) });
        limits.insert("disk./data.used_pct".to_string(), Limit { min: None, max: Some(90.0) });
        let v = check_limits(&readings, &limits);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v.iter().any(|m| m.en == "disk./.used_pct = 95, above the maximum 90"), "{v:?}");
        assert!(v.iter().any(|m| m.en == "reading disk./data.used_pct was not measured"), "{v:?}");
        assert!(Limit { min: Some(2.0), max: Some(1.0) }.validate("x").is_err());
        assert!(Limit::default().validate("x").is_err());
    }

    #[test]
    fn definitions_are_checked() {
        let p = |url: &str| NodeExporterProbe {
            url: url.into(),
            cpu_sample_ms: 1000,
            mounts: vec![],
            limits: BTreeMap::new(),
        };
        assert!(p("http://10.0.0.1:9100/metrics").validate().is_ok());
        assert!(p("ftp://10.0.0.1/metrics").validate().unwrap_err().en.contains("http://"));
        assert!(p("10.0.0.1:9100").validate().is_err());
        let mut q = p("http://h:9100/metrics");
        q.mounts = vec!["data".into()];
        assert!(q.validate().unwrap_err().en.contains("absolute"));
        assert!(check_host("10.0.0.1").is_ok());
        assert!(check_host("::1").is_ok());
        assert!(check_host("db.example.cn").is_ok());
        assert!(check_host("db:5432").is_err());
        assert!(check_host("").is_err());
        assert!(check_host("http://x").is_err());
        assert!(check_port(0).is_err());
        assert_eq!(host_port("::1", 22), "[::1]:22");
    }
}
