//! TCP port check: connect, optionally send a line and expect a banner (`SSH-`, `+PONG`, `220 `),
//! optionally over TLS with the certificate's remaining days.
//!
//! Readings: `connect_ms` (from the first SYN to the established connection, name resolution not
//! included), `banner` (the first line read, at most 200 characters) when something was read,
//! `tls_ms` and `cert_days_left` / `cert_not_after` with `tls`.
//!
//! The probe opens a fresh connection every run and closes it at once: it checks the target, it
//! does not keep anything open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::node::{check_host, check_port, connect_failure, host_port};
use crate::{Message, Outcome, Reading};

/// Connect to `host:port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// Host name or IP address (IPv6 bare, without brackets).
    pub host: String,
    pub port: u16,
    /// Text to send once connected (and after the TLS handshake), e.g. `"PING\r\n"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// The server's first bytes must contain this text, e.g. `"SSH-"`; read until it appears, the
    /// server closes the connection or 64 KiB arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Fail when connecting takes longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connect_ms: Option<f64>,
    /// Speak TLS after connecting (LDAPS, SMTPS, a TLS database port…).
    #[serde(default)]
    pub tls: bool,
    /// Fail when the certificate expires in fewer days than this (with `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_min_days: Option<f64>,
    /// Accept any certificate (with `tls`); its dates are still reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Extra trusted CA certificates (PEM), beside the system's: a site's private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The name the certificate must carry (and the SNI sent) when it differs from `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// The most a banner read keeps.
const MAX_BANNER: usize = 64 * 1024;

impl TcpProbe {
    pub fn validate(&self) -> Result<(), Message> {
        check_host(&self.host)?;
        check_port(self.port)?;
        if self.expect.as_deref().is_some_and(str::is_empty) {
            return Err(Message::new("expect 不能为空字符串", "expect cannot be an empty string"));
        }
        if let Some(ms) = self.max_connect_ms
            && (!ms.is_finite() || ms <= 0.0)
        {
            return Err(Message::new("max_connect_ms 须为正数", "max_connect_ms must be a positive number"));
        }
        self.tls().validate()
    }

    fn tls(&self) -> crate::http::tls::Settings<'_> {
        crate::http::tls::Settings {
            min_days: self.tls_min_days,
            skip_verify: self.insecure_skip_verify,
            ca_pem: self.ca_pem.as_deref(),
            server_name: self.server_name.as_deref(),
        }
    }
}

pub async fn run(p: &TcpProbe) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let mut readings = Vec::new();
    let (stream, connect) = match connect(&p.host, p.port).await {
        Ok(c) => c,
        Err(m) => return Outcome::fail(started.elapsed(), m, readings),
    };
    readings.push(Reading::num("connect_ms", round2(ms(connect))));
    let mut problems = Vec::new();
    if let Some(max) = p.max_connect_ms
        && ms(connect) > max
    {
        problems.push(Message::new(
            format!("连接耗时 {:.1} 毫秒，超过上限 {max} 毫秒", ms(connect)),
            format!("connecting took {:.1} ms, more than the limit of {max} ms", ms(connect)),
        ));
    }
    let talked = if p.tls {
        let name = p.server_name.as_deref().unwrap_or(&p.host);
        let tls_started = Instant::now();
        match crate::http::tls::connect(stream, name, &p.tls()).await {
            Ok((tls, cert)) => {
                readings.push(Reading::num("tls_ms", round2(ms(tls_started.elapsed()))));
                if let Some(c) = &cert {
                    c.push_readings(&mut readings);
                    if let Some(m) = c.check_min_days(p.tls_min_days) {
                        problems.push(m);
                    }
                }
                talk(tls, p).await
            }
            Err(f) => {
                if let Some(c) = &f.cert {
                    c.push_readings(&mut readings);
                }
                return Outcome::fail(started.elapsed(), f.reason, readings);
            }
        }
    } else {
        talk(stream, p).await
    };
    match talked {
        Ok(banner) => {
            if let Some(b) = banner {
                readings.push(Reading::text("banner", b));
            }
        }
        Err((m, banner)) => {
            if let Some(b) = banner {
                readings.push(Reading::text("banner", b));
            }
            problems.push(m);
        }
    }
    crate::http::finish(started, problems, readings)
}

/// Sends `send`, then reads until `expect` shows up. Returns the first line read, if any.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    p: &TcpProbe,
) -> Result<Option<String>, (Message, Option<String>)> {
    let target = host_port(&p.host, p.port);
    if let Some(text) = &p.send {
        let written = async {
            s.write_all(text.as_bytes()).await?;
            s.flush().await
        };
        if let Err(e) = written.await {
            return Err((connect_failure(&target, &e), None));
        }
    }
    let Some(expect) = &p.expect else {
        let _ = s.shutdown().await;
        return Ok(None);
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if contains(&buf, expect.as_bytes()) {
            let _ = s.shutdown().await;
            return Ok(Some(first_line(&buf)));
        }
        if buf.len() >= MAX_BANNER {
            break;
        }
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n.min(MAX_BANNER - buf.len())]),
            Err(e) if buf.is_empty() => return Err((connect_failure(&target, &e), None)),
            Err(_) => break,
        }
    }
    let banner = (!buf.is_empty()).then(|| first_line(&buf));
    let m = match &banner {
        None => Message::new(
            format!("{target} 未发送任何数据就关闭了连接（期望包含 {expect:?}）"),
            format!("{target} closed the connection without sending anything (expected {expect:?})"),
        ),
        Some(b) => Message::new(
            format!("{target} 的应答中没有 {expect:?}（收到：{b:?}）"),
            format!("the answer of {target} does not contain {expect:?} (received: {b:?})"),
        ),
    };
    Err((m, banner))
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The first line of what was read, lossy UTF-8, at most 200 characters.
fn first_line(buf: &[u8]) -> String {
    let text = String::from_utf8_lossy(buf);
    let line = text.split(['\r', '\n']).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().take(200).collect()
}

/// Resolves `host` (no lookup for an IP address) and connects to the first address that answers.
/// Returns the stream and the time the successful connect took.
pub(crate) async fn connect(host: &str, port: u16) -> Result<(TcpStream, Duration), Message> {
    let host = host.trim();
    let target = host_port(host, port);
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::net::lookup_host((host, port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(Message::new(
                    format!("无法解析主机名 {host}：{e}"),
                    format!("cannot resolve the host name {host}: {e}"),
                ));
            }
        },
    };
    let mut last = None;
    for addr in &addrs {
        let t = Instant::now();
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let took = t.elapsed();
                let _ = s.set_nodelay(true);
                return Ok((s, took));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => connect_failure(&target, &e),
        None => Message::new(
            format!("主机名 {host} 没有解析出地址"),
            format!("the host name {host} resolved to no address"),
        ),
    })
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
