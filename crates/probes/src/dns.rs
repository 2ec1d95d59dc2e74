//! DNS check: resolve one name for one record type, at a given server or through the system's
//! resolver configuration (`/etc/resolv.conf`), and optionally expect an answer.
//!
//! The name is taken as fully qualified (no search domains), nothing is cached between runs and
//! the hosts file is not consulted: the check is of the DNS, each time. Plain DNS over UDP (and
//! TCP for truncated answers) only: no DNSSEC, DoT or DoH.
//!
//! Readings: `query_ms`, `answer_count`, `answers` (the records' data, `, `-separated, at most
//! 500 characters) and `ttl_min` (the smallest TTL among them).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::{Resolver, TokioResolver};
use serde::{Deserialize, Serialize};

use crate::tcp::{ms, round2};
use crate::{Message, Outcome, Reading};

/// Resolve `name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsProbe {
    /// The name to resolve, e.g. `www.example.gov.cn` (a final dot is optional).
    pub name: String,
    #[serde(default)]
    pub record_type: DnsRecordType,
    /// The server to ask, `10.0.0.53`, `10.0.0.53:5353` or `[fd00::53]:53`; default: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// One of the answers must contain this text (case-insensitive), e.g. an address or `mail.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// How long to wait for the server's answer (one retry on UDP loss).
    #[serde(default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Fail when resolving takes longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    #[default]
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
}

impl DnsRecordType {
    fn to_hickory(self) -> RecordType {
        match self {
            DnsRecordType::A => RecordType::A,
            DnsRecordType::Aaaa => RecordType::AAAA,
            DnsRecordType::Cname => RecordType::CNAME,
            DnsRecordType::Mx => RecordType::MX,
            DnsRecordType::Txt => RecordType::TXT,
            DnsRecordType::Ns => RecordType::NS,
        }
    }
}

fn default_query_timeout_ms() -> u64 {
    2000
}

const MAX_QUERY_TIMEOUT_MS: u64 = 30_000;

impl DnsProbe {
    pub fn validate(&self) -> Result<(), Message> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 253 || name.contains(char::is_whitespace) || name.contains("..") {
            return Err(Message::new(
                format!("域名无效：{:?}", self.name),
                format!("invalid domain name: {:?}", self.name),
            ));
        }
        hickory_resolver::proto::rr::Name::from_utf8(fqdn(name)).map_err(|e| {
            Message::new(
                format!("域名无效：{:?}（{e}）", self.name),
                format!("invalid domain name: {:?} ({e})", self.name),
            )
        })?;
        if let Some(s) = &self.server {
            parse_server(s)?;
        }
        if self.expect.as_deref().is_some_and(|e| e.trim().is_empty()) {
            return Err(Message::new("expect 不能为空", "expect cannot be empty"));
        }
        if self.query_timeout_ms == 0 || self.query_timeout_ms > MAX_QUERY_TIMEOUT_MS {
            return Err(Message::new(
                format!("query_timeout_ms 须在 1 到 {MAX_QUERY_TIMEOUT_MS} 之间"),
                format!("query_timeout_ms must be between 1 and {MAX_QUERY_TIMEOUT_MS}"),
            ));
        }
        if let Some(ms) = self.max_latency_ms
            && (!ms.is_finite() || ms <= 0.0)
        {
            return Err(Message::new("max_latency_ms 须为正数", "max_latency_ms must be a positive number"));
        }
        Ok(())
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// `ip`, `ip:port`, `[v6]:port` or a bare IPv6 address.
fn parse_server(s: &str) -> Result<SocketAddr, Message> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(Message::new(
        format!("DNS 服务器应为 IP 地址或 IP:端口：{s:?}"),
        format!("the DNS server must be an IP address or IP:port: {s:?}"),
    ))
}

fn resolver(p: &DnsProbe) -> Result<(TokioResolver, String), Message> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_millis(p.query_timeout_ms);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ndots = 0;
    opts.preserve_intermediates = true;
    opts.num_concurrent_reqs = 1;
    let (builder, server) = match &p.server {
        Some(s) => {
            let addr = parse_server(s)?;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            let cfg = ResolverConfig::from_name_servers(vec![ns]);
            (Resolver::builder_with_config(cfg, TokioRuntimeProvider::default()), addr.to_string())
        }
        None => {
            let (cfg, _) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
                Message::new(
                    format!("无法读取系统 DNS 配置（/etc/resolv.conf）：{e}"),
                    format!("cannot read the system DNS configuration (/etc/resolv.conf): {e}"),
                )
            })?;
            let servers: Vec<String> = cfg.name_servers().iter().map(|n| n.ip.to_string()).collect();
            let shown = if servers.is_empty() { "system resolver".into() } else { servers.join(", ") };
            (Resolver::builder_with_config(cfg, TokioRuntimeProvider::default()), shown)
        }
    };
    let r = builder.with_options(opts).build().map_err(|e| {
        Message::new(format!("无法建立 DNS 解析器：{e}"), format!("cannot set up the DNS resolver: {e}"))
    })?;
    Ok((r, server))
}

pub async fn run(p: &DnsProbe) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let (resolver, server) = match resolver(p) {
        Ok(r) => r,
        Err(m) => return Outcome::fail(started.elapsed(), m, vec![]),
    };
    let name = fqdn(p.name.trim());
    let shown = name.trim_end_matches('.').to_string();
    let rtype = p.record_type.to_hickory();
    let asked = Instant::now();
    // hickory bounds each attempt; this bounds the whole lookup (UDP, then TCP on truncation).
    let budget = Duration::from_millis(p.query_timeout_ms.saturating_mul(2));
    let result = tokio::time::timeout(budget, resolver.lookup(name.as_str(), rtype)).await;
    let took = asked.elapsed();
    let mut readings = vec![Reading::num("query_ms", round2(ms(took)))];
    let lookup = match result {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return Outcome::fail(started.elapsed(), failure(&e, &shown, rtype, &server, p), readings),
        Err(_) => {
            return Outcome::fail(started.elapsed(), no_answer(&server, p.query_timeout_ms), readings);
        }
    };
    let wanted: Vec<_> = lookup.answers().iter().filter(|r| r.record_type() == rtype).collect();
    let answers: Vec<String> = wanted.iter().map(|r| r.data.to_string()).collect();
    readings.push(Reading::num("answer_count", answers.len() as f64));
    if !answers.is_empty() {
        let joined = answers.join(", ");
        readings.push(Reading::text("answers", joined.chars().take(500).collect::<String>()));
        if let Some(ttl) = wanted.iter().map(|r| r.ttl).min() {
            readings.push(Reading::num("ttl_min", f64::from(ttl)));
        }
    }
    let mut problems = Vec::new();
    if answers.is_empty() {
        problems.push(Message::new(format!("{shown} 没有 {rtype} 记录"), format!("{shown} has no {rtype} record")));
    } else if let Some(want) = &p.expect {
        let w = want.trim().to_lowercase();
        if !answers.iter().any(|a| a.to_lowercase().contains(&w)) {
            let got = answers.join(", ");
            problems.push(Message::new(
                format!("{shown} 的 {rtype} 记录中没有 {want:?}（得到：{got}）"),
                format!("no {rtype} record of {shown} contains {want:?} (got: {got})"),
            ));
        }
    }
    if let Some(max) = p.max_latency_ms
        && ms(took) > max
    {
        problems.push(Message::new(
            format!("解析耗时 {:.1} 毫秒，超过上限 {max} 毫秒", ms(took)),
            format!("resolving took {:.1} ms, more than the limit of {max} ms", ms(took)),
        ));
    }
    crate::http::finish(started, problems, readings)
}

fn no_answer(server: &str, timeout_ms: u64) -> Message {
    Message::new(
        format!("DNS 服务器 {server} 在 {timeout_ms} 毫秒内没有应答"),
        format!("no answer from the DNS server {server} within {timeout_ms} ms"),
    )
}

fn failure(e: &NetError, shown: &str, rtype: RecordType, server: &str, p: &DnsProbe) -> Message {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) if nr.response_code == ResponseCode::NXDomain => Message::new(
            format!("域名 {shown} 不存在（NXDOMAIN，服务器 {server}）"),
            format!("the name {shown} does not exist (NXDOMAIN from {server})"),
        ),
        NetError::Dns(DnsError::NoRecordsFound(_)) => Message::new(
            format!("{shown} 没有 {rtype} 记录（服务器 {server}）"),
            format!("{shown} has no {rtype} record (server {server})"),
        ),
        NetError::Dns(DnsError::ResponseCode(code)) => Message::new(
            format!("DNS 服务器 {server} 回答错误：{code}"),
            format!("the DNS server {server} answered with an error: {code}"),
        ),
        NetError::Timeout => no_answer(server, p.query_timeout_ms),
        NetError::Io(io) => Message::new(
            format!("无法询问 DNS 服务器 {server}：{io}"),
            format!("cannot query the DNS server {server}: {io}"),
        ),
        other => Message::new(
            format!("解析 {shown} 失败（服务器 {server}）：{other}"),
            format!("resolving {shown} failed (server {server}): {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        let p: DnsProbe = serde_json::from_value(serde_json::json!({"name": "example.org"})).unwrap();
        assert_eq!((p.record_type, p.query_timeout_ms), (DnsRecordType::A, 2000));
        assert!(p.validate().is_ok());
        let mx: DnsProbe = serde_json::from_value(
            serde_json::json!({"name": "example.org.", "record_type": "MX", "server": "10.0.0.53"}),
        )
        .unwrap();
        assert_eq!(mx.record_type, DnsRecordType::Mx);
        assert!(mx.validate().is_ok());
        assert_eq!(parse_server("10.0.0.53").unwrap().port(), 53);
        assert_eq!(parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("[::1]:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("fd00::53").unwrap().port(), 53);
        assert!(parse_server("dns.example.org").is_err());
        for bad in ["", "a b", "a..b"] {
            let mut q = p.clone();
            q.name = bad.into();
            assert!(q.validate().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_value::<DnsProbe>(serde_json::json!({"name": "x", "record_type": "SRV"})).is_err());
    }
}
