//! ICMP echo ("ping"): `count` echo requests, one after the other, `interval_ms` apart.
//!
//! On Linux the probe uses an unprivileged ICMP datagram socket, which the kernel allows only to
//! the groups listed in the sysctl `net.ipv4.ping_group_range` (it covers ICMPv6 too); without
//! that it falls back to a raw socket, which needs CAP_NET_RAW. When both are refused the probe
//! fails with a reason naming the sysctl and its current value, never a panic.
//!
//! Each run opens its own socket (the kernel hands a datagram socket only its own replies, and no
//! socket outlives its runtime). Readings: `address`, `sent`, `received`, `loss_pct`, and when
//! anything came back `rtt_min_ms`, `rtt_avg_ms`, `rtt_max_ms`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use surge_ping::{Client, Config, ICMP, PingIdentifier, PingSequence, SurgeError};

use crate::node::check_host;
use crate::tcp::{ms, round2};
use crate::{Message, Outcome, Reading};

/// Ping `host`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpProbe {
    /// Host name or IP address.
    pub host: String,
    /// Echo requests sent (1–100).
    #[serde(default = "default_count")]
    pub count: u16,
    /// Time between two requests.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// How long to wait for each reply.
    #[serde(default = "default_packet_timeout_ms")]
    pub packet_timeout_ms: u64,
    /// Payload size in bytes (as `ping -s`).
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: u16,
    /// Fail when more than this share of the requests is lost; default: fail only when all are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_loss_pct: Option<f64>,
    /// Fail when the average round trip is longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rtt_ms: Option<f64>,
}

fn default_count() -> u16 {
    3
}
fn default_interval_ms() -> u64 {
    200
}
fn default_packet_timeout_ms() -> u64 {
    1000
}
fn default_payload_bytes() -> u16 {
    56
}

impl IcmpProbe {
    /// Three pings of `host` with every option at its default.
    pub fn new(host: impl Into<String>) -> IcmpProbe {
        IcmpProbe {
            host: host.into(),
            count: default_count(),
            interval_ms: default_interval_ms(),
            packet_timeout_ms: default_packet_timeout_ms(),
            payload_bytes: default_payload_bytes(),
            max_loss_pct: None,
            max_rtt_ms: None,
        }
    }

    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        if !(1..=100).contains(&self.count) {
            return Err(Message::new("count 须在 1 到 100 之间", "count must be between 1 and 100"));
        }
        if self.interval_ms > 10_000 {
            return Err(Message::new("interval_ms 最多 10000", "interval_ms is at most 10000"));
        }
        if !(1..=30_000).contains(&self.packet_timeout_ms) {
            return Err(Message::new(
                "packet_timeout_ms 须在 1 到 30000 之间",
                "packet_timeout_ms must be between 1 and 30000",
            ));
        }
        if self.payload_bytes > 1472 {
            return Err(Message::new("payload_bytes 最多 1472", "payload_bytes is at most 1472"));
        }
        if let Some(l) = self.max_loss_pct
            && !(0.0..=100.0).contains(&l)
        {
            return Err(Message::new("max_loss_pct 须在 0 到 100 之间", "max_loss_pct must be between 0 and 100"));
        }
        if let Some(r) = self.max_rtt_ms
            && (!r.is_finite() || r <= 0.0)
        {
            return Err(Message::new("max_rtt_ms 须为正数", "max_rtt_ms must be a positive number"));
        }
        Ok(())
    }
}

/// Identifiers for raw sockets, where the kernel does not separate concurrent pingers.
fn next_ident() -> PingIdentifier {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    PingIdentifier(seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
}

async fn resolve(host: &str) -> Result<IpAddr, Message> {
    let host = host.trim();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<_> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| {
            Message::new(format!("无法解析主机名 {host}：{e}"), format!("cannot resolve the host name {host}: {e}"))
        })?
        .map(|a| a.ip())
        .collect();
    addrs.iter().find(|ip| ip.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| {
        Message::new(format!("主机名 {host} 没有解析出地址"), format!("the host name {host} resolved to no address"))
    })
}

/// Why the kernel would not give us an ICMP socket, naming the sysctl that allows it.
fn refused(e: &std::io::Error) -> Message {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    let gid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Gid:")).map(|l| l.split_whitespace().nth(2).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into());
    let first = e.to_string().lines().next().unwrap_or_default().to_string();
    Message::new(
        format!(
            "内核拒绝创建 ICMP 套接字（{first}）：请把运行 yunwei 的用户组（gid {gid}）加入 sysctl \
             net.ipv4.ping_group_range（当前为 \"{range}\"，例如 sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"），\
             或授予 CAP_NET_RAW"
        ),
        format!(
            "the kernel refused an ICMP socket ({first}): add the group yunwei runs as (gid {gid}) to the sysctl \
             net.ipv4.ping_group_range (now \"{range}\"; e.g. sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"), \
             or grant CAP_NET_RAW"
        ),
    )
}

pub async fn run(p: &IcmpProbe) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let ip = match resolve(&p.host).await {
        Ok(ip) => ip,
        Err(m) => return Outcome::fail(started.elapsed(), m, vec![]),
    };
    let mut readings = vec![Reading::text("address", ip.to_string())];
    let kind = if ip.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    let client = match Client::new(&Config::builder().kind(kind).build()) {
        Ok(c) => c,
        Err(e) => {
            let m = match e.kind() {
                std::io::ErrorKind::PermissionDenied => refused(&e),
                _ if matches!(e.raw_os_error(), Some(1 | 13)) => refused(&e),
                _ => Message::new(format!("无法创建 ICMP 套接字：{e}"), format!("cannot open an ICMP socket: {e}")),
            };
            return Outcome::fail(started.elapsed(), m, readings);
        }
    };
    let mut pinger = client.pinger(ip, next_ident()).await;
    pinger.timeout(Duration::from_millis(p.packet_timeout_ms));
    let payload = vec![0u8; usize::from(p.payload_bytes)];
    let interval = Duration::from_millis(p.interval_ms);
    let mut rtts: Vec<f64> = Vec::with_capacity(usize::from(p.count));
    let mut last_error: Option<String> = None;
    for seq in 0..p.count {
        let sent = Instant::now();
        match pinger.ping(PingSequence(seq), &payload).await {
            Ok((_, rtt)) => rtts.push(ms(rtt)),
            Err(SurgeError::Timeout { .. }) => {}
            Err(SurgeError::IOError(e)) if matches!(e.kind(), std::io::ErrorKind::PermissionDenied) => {
                return Outcome::fail(started.elapsed(), refused(&e), readings);
            }
            Err(e) => last_error = Some(e.to_string()),
        }
        if seq + 1 < p.count {
            let next = sent + interval;
            if next > Instant::now() {
                tokio::time::sleep_until(next.into()).await;
            }
        }
    }
    let sent = f64::from(p.count);
    let received = rtts.len() as f64;
    let loss = round2((sent - received) / sent * 100.0);
    readings.push(Reading::num("sent", sent));
    readings.push(Reading::num("received", received));
    readings.push(Reading::num("loss_pct", loss));
    let mut problems = Vec::new();
    if rtts.is_empty() {
        let why = last_error.map(|e| format!(": {e}")).unwrap_or_default();
        problems.push(Message::new(
            format!("{ip} 没有回应（{} 个请求全部丢失，每个等待 {} 毫秒）{why}", p.count, p.packet_timeout_ms),
            format!("no reply from {ip} ({} requests lost, {} ms wait each){why}", p.count, p.packet_timeout_ms),
        ));
    } else {
        let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / received;
        readings.push(Reading::num("rtt_min_ms", round3(min)));
        readings.push(Reading::num("rtt_avg_ms", round3(avg)));
        readings.push(Reading::num("rtt_max_ms", round3(max)));
        if let Some(max_loss) = p.max_loss_pct
            && loss > max_loss
        {
            problems.push(Message::new(
                format!("丢包率 {loss}%，超过上限 {max_loss}%"),
                format!("{loss}% packet loss, more than the limit of {max_loss}%"),
            ));
        }
        if let Some(limit) = p.max_rtt_ms
            && avg > limit
        {
            problems.push(Message::new(
                format!("平均往返 {avg:.2} 毫秒，超过上限 {limit} 毫秒"),
                format!("average round trip {avg:.2} ms, more than the limit of {limit} ms"),
            ));
        }
    }
    crate::http::finish(started, problems, readings)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        let p: IcmpProbe = serde_json::from_value(serde_json::json!({"host": "10.0.0.1"})).unwrap();
        assert_eq!(p, IcmpProbe::new("10.0.0.1"));
        assert!(p.validate().is_ok());
        for bad in [
            serde_json::json!({"host": "10.0.0.1", "count": 0}),
            serde_json::json!({"host": "10.0.0.1", "max_loss_pct": 101}),
            serde_json::json!({"host": "http://x/"}),
            serde_json::json!({"host": "x", "payload_bytes": 9000}),
        ] {
            let q: IcmpProbe = serde_json::from_value(bad.clone()).unwrap();
            assert!(q.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn refusal_names_the_sysctl() {
        let m = refused(&std::io::Error::from_raw_os_error(13));
        assert!(m.en.contains("net.ipv4.ping_group_range") && m.zh.contains("net.ipv4.ping_group_range"));
        assert!(m.en.contains("CAP_NET_RAW"));
    }
}
