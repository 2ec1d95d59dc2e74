//! HTTP(S) check: status, body text, a JSON value, latency and the certificate's remaining days.
//!
//! Each run opens a fresh connection (it checks the target, not a pool) and speaks HTTP/1.1 over
//! hyper's client connection directly: no connection pool, no proxy, no compression. The TLS
//! configuration (trust store, verifier, ring provider) is built once per process and shared, so
//! a probe costs one TCP connection, one full TLS handshake (session resumption is off: a resumed
//! session shows no certificate) and one request. The body is read up to `max_body_bytes`
//! (1 MiB by default) and never buffered beyond that: a 2 GB download stops at the cap and the
//! checks judge what was read.
//!
//! Readings: `status`, `latency_ms` (whole probe: connect, TLS, request, body, redirects),
//! `connect_ms`, `tls_ms`, `ttfb_ms` (request sent → response head), `bytes` (body bytes read),
//! `truncated` (the cap was hit), `content_length` (as announced), `redirects` and `final_url`
//! when redirects were followed, `json_value` with `json_path`, and for HTTPS `cert_days_left`
//! and `cert_not_after` (also when verification is skipped, and negative for an expired
//! certificate).
//!
//! Credentials: a [`Secret`] with user name and password is sent as HTTP Basic authentication, a
//! password alone as a Bearer token; never to another host after a redirect.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tcp::{ms, round2};
use crate::{Message, Outcome, Reading, Secret, Value};

/// Fetch a URL and judge the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// `http://…` or `https://…`.
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Acceptable status codes of the final response; empty: 200–399.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// The body (as read, up to `max_body_bytes`) must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// A dotted path into a JSON body: `status`, `data.items.0.ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// The value expected at `json_path`; without it the value must exist and not be null. A
    /// string also matches a number or boolean written the same way (`"1"` matches `1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_equals: Option<serde_json::Value>,
    /// Fail when the whole probe takes longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Fail when the certificate expires in fewer days than this (also with `insecure_skip_verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_min_days: Option<f64>,
    /// Accept any certificate (self-signed, expired, other name); its dates are still reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Extra trusted CA certificates (PEM), beside the system's: a site's private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The name the certificate must carry (and the SNI sent) when it differs from the URL's host,
    /// e.g. when probing one node of a cluster by IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Redirects followed before the final response is judged (0: judge the redirect itself).
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u8,
    /// The most body bytes read; the rest is not downloaded.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

fn default_max_redirects() -> u8 {
    5
}
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY
}

pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// The cap on `max_body_bytes` itself.
pub const MAX_BODY_LIMIT: usize = 64 << 20;
const MAX_REDIRECTS: u8 = 20;
const USER_AGENT: &str = concat!("yunwei-probe/", env!("CARGO_PKG_VERSION"));

impl HttpProbe {
    /// A GET of `url` with every option at its default.
    pub fn get(url: impl Into<String>) -> HttpProbe {
        HttpProbe {
            url: url.into(),
            method: HttpMethod::Get,
            headers: BTreeMap::new(),
            expect_status: vec![],
            body_contains: None,
            json_path: None,
            json_equals: None,
            max_latency_ms: None,
            tls_min_days: None,
            insecure_skip_verify: false,
            ca_pem: None,
            server_name: None,
            max_redirects: default_max_redirects(),
            max_body_bytes: DEFAULT_MAX_BODY,
        }
    }

    pub fn validate(&self) -> Result<(), Message> {
        parse_url(&self.url)?;
        for (k, v) in &self.headers {
            if HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(Message::new(format!("请求头名称无效：{k:?}"), format!("invalid header name: {k:?}")));
            }
            if HeaderValue::from_str(v).is_err() {
                return Err(Message::new(
                    format!("请求头 {k} 的值无效（不能含换行或控制字符）"),
                    format!("invalid value for header {k} (no line breaks or control characters)"),
                ));
            }
        }
        for s in &self.expect_status {
            if !(100..=599).contains(s) {
                return Err(Message::new(
                    format!("期望的状态码 {s} 不在 100–599 之间"),
                    format!("expected status {s} is not between 100 and 599"),
                ));
            }
        }
        if self.body_contains.as_deref().is_some_and(str::is_empty) {
            return Err(Message::new("body_contains 不能为空字符串", "body_contains cannot be an empty string"));
        }
        if let Some(path) = &self.json_path {
            if path.trim().is_empty() || path.split('.').any(str::is_empty) {
                return Err(Message::new(
                    format!("json_path 无效：{path:?}（示例：data.items.0.ok）"),
                    format!("invalid json_path: {path:?} (example: data.items.0.ok)"),
                ));
            }
        } else if self.json_equals.is_some() {
            return Err(Message::new("设置了 json_equals 但没有 json_path", "json_equals is set without json_path"));
        }
        if self.method == HttpMethod::Head && (self.body_contains.is_some() || self.json_path.is_some()) {
            return Err(Message::new(
                "HEAD 请求没有正文，不能检查 body_contains 或 json_path",
                "a HEAD request has no body: body_contains and json_path cannot be checked",
            ));
        }
        if let Some(ms) = self.max_latency_ms
            && (!ms.is_finite() || ms <= 0.0)
        {
            return Err(Message::new("max_latency_ms 须为正数", "max_latency_ms must be a positive number"));
        }
        if self.max_redirects > MAX_REDIRECTS {
            return Err(Message::new(
                format!("max_redirects 最多 {MAX_REDIRECTS}"),
                format!("max_redirects is at most {MAX_REDIRECTS}"),
            ));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_LIMIT {
            return Err(Message::new(
                format!("max_body_bytes 须在 1 到 {} 之间", MAX_BODY_LIMIT),
                format!("max_body_bytes must be between 1 and {}", MAX_BODY_LIMIT),
            ));
        }
        self.tls().validate()
    }

    fn tls(&self) -> tls::Settings<'_> {
        tls::Settings {
            min_days: self.tls_min_days,
            skip_verify: self.insecure_skip_verify,
            ca_pem: self.ca_pem.as_deref(),
            server_name: self.server_name.as_deref(),
        }
    }

    fn keeps_body(&self) -> bool {
        self.body_contains.is_some() || self.json_path.is_some()
    }
}

fn parse_url(raw: &str) -> Result<reqwest::Url, Message> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
        Message::new(format!("地址不是有效的 URL：{raw}（{e}）"), format!("not a valid URL: {raw} ({e})"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Message::new(
            format!("地址须以 http:// 或 https:// 开头：{raw}"),
            format!("the URL must start with http:// or https://: {raw}"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Message::new(format!("地址缺少主机：{raw}"), format!("the URL has no host: {raw}")));
    }
    Ok(url)
}

/// One request/response on its own connection.
struct Hop {
    status: u16,
    location: Option<String>,
    connect: Duration,
    tls: Option<Duration>,
    ttfb: Duration,
    cert: Option<tls::CertInfo>,
    content_length: Option<u64>,
    bytes: usize,
    truncated: bool,
    body: Vec<u8>,
}

pub async fn run(p: &HttpProbe, secret: Option<&Secret>) -> Outcome {
    let started = Instant::now();
    if let Err(m) = p.validate() {
        return Outcome::fail(started.elapsed(), m, vec![]);
    }
    let Ok(first) = parse_url(&p.url) else { unreachable!("validated") };
    let mut url = first.clone();
    let mut redirects = 0u8;
    let mut problems: Vec<Message> = Vec::new();
    let mut last_cert: Option<tls::CertInfo> = None;
    let hop = loop {
        let auth = secret.filter(|_| same_origin(&url, &first));
        let hop = match fetch(p, &url, auth, redirects < p.max_redirects).await {
            Ok(h) => h,
            Err((m, cert)) => {
                let mut readings = Vec::new();
                if let Some(c) = cert.or(last_cert) {
                    c.push_readings(&mut readings);
                }
                if redirects > 0 {
                    readings.push(Reading::num("redirects", f64::from(redirects)));
                    readings.push(Reading::text("final_url", url.as_str()));
                }
                return Outcome::fail(started.elapsed(), m, readings);
            }
        };
        if let Some(c) = &hop.cert {
            if let Some(m) = c.check_min_days(p.tls_min_days)
                && !problems.contains(&m)
            {
                problems.push(m);
            }
            last_cert = Some(c.clone());
        }
        let next = match (&hop.location, is_redirect(hop.status) && redirects < p.max_redirects) {
            (Some(loc), true) => Some(url.join(loc).map_err(|e| {
                Message::new(
                    format!("重定向地址无效：{loc:?}（{e}）"),
                    format!("the redirect points to an invalid address: {loc:?} ({e})"),
                )
            })),
            _ => None,
        };
        match next {
            None => break hop,
            Some(Err(m)) => {
                return Outcome::fail(started.elapsed(), m, vec![Reading::num("status", hop.status.into())]);
            }
            Some(Ok(next)) if !matches!(next.scheme(), "http" | "https") => {
                return Outcome::fail(
                    started.elapsed(),
                    Message::new(
                        format!("重定向到不支持的地址：{next}"),
                        format!("redirected to an unsupported address: {next}"),
                    ),
                    vec![Reading::num("status", hop.status.into())],
                );
            }
            Some(Ok(next)) => {
                redirects += 1;
                url = next;
            }
        }
    };
    let latency = started.elapsed();
    let mut readings = vec![
        Reading::num("status", hop.status.into()),
        Reading::num("latency_ms", round2(ms(latency))),
        Reading::num("connect_ms", round2(ms(hop.connect))),
    ];
    if let Some(t) = hop.tls {
        readings.push(Reading::num("tls_ms", round2(ms(t))));
    }
    readings.push(Reading::num("ttfb_ms", round2(ms(hop.ttfb))));
    readings.push(Reading::num("bytes", hop.bytes as f64));
    if hop.truncated {
        readings.push(Reading::flag("truncated", true));
    }
    if let Some(n) = hop.content_length {
        readings.push(Reading::num("content_length", n as f64));
    }
    if redirects > 0 {
        readings.push(Reading::num("redirects", f64::from(redirects)));
        readings.push(Reading::text("final_url", url.as_str()));
    }
    if let Some(c) = &last_cert {
        c.push_readings(&mut readings);
    }

    let status_ok = if p.expect_status.is_empty() {
        (200..=399).contains(&hop.status)
    } else {
        p.expect_status.contains(&hop.status)
    };
    let redirect_limit = p.max_redirects > 0 && redirects >= p.max_redirects && is_redirect(hop.status);
    if redirect_limit && hop.location.is_some() && !p.expect_status.contains(&hop.status) {
        // Still redirected after the limit: a loop or a chain too long, whatever the status list says.
        problems.insert(
            0,
            Message::new(
                format!("重定向超过 {} 次（仍被重定向到 {}）", p.max_redirects, hop.location.as_deref().unwrap_or("")),
                format!(
                    "more than {} redirects (still redirected to {})",
                    p.max_redirects,
                    hop.location.as_deref().unwrap_or("")
                ),
            ),
        );
    } else if !status_ok {
        let wanted = if p.expect_status.is_empty() {
            "200–399".to_string()
        } else {
            p.expect_status.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
        };
        problems.insert(
            0,
            Message::new(
                format!("HTTP 状态码 {}，期望 {wanted}", hop.status),
                format!("HTTP status {}, expected {wanted}", hop.status),
            ),
        );
    }
    let read_note = || {
        if hop.truncated {
            (format!("只读取了前 {} 字节", hop.bytes), format!("only the first {} bytes were read", hop.bytes))
        } else {
            (format!("正文 {} 字节", hop.bytes), format!("body of {} bytes", hop.bytes))
        }
    };
    if let Some(text) = &p.body_contains
        && !crate::tcp::contains(&hop.body, text.as_bytes())
    {
        let (zh, en) = read_note();
        problems.push(Message::new(
            format!("响应正文中没有 {text:?}（{zh}）"),
            format!("the body does not contain {text:?} ({en})"),
        ));
    }
    if let Some(path) = &p.json_path {
        match serde_json::from_slice::<serde_json::Value>(&hop.body) {
            Err(e) => {
                let (zh, en) = read_note();
                problems.push(Message::new(
                    format!("响应正文不是有效的 JSON（{zh}）：{e}"),
                    format!("the body is not valid JSON ({en}): {e}"),
                ));
            }
            Ok(doc) => match json_at(&doc, path) {
                None => problems
                    .push(Message::new(format!("JSON 中没有 {path}"), format!("the JSON has no value at {path}"))),
                Some(v) => {
                    readings.push(Reading { key: "json_value".into(), value: json_reading(v) });
                    match &p.json_equals {
                        None if v.is_null() => problems.push(Message::new(
                            format!("JSON 中 {path} 为 null"),
                            format!("the JSON value at {path} is null"),
                        )),
                        Some(want) if !json_matches(v, want) => problems.push(Message::new(
                            format!("JSON 中 {path} 为 {v}，期望 {want}"),
                            format!("the JSON value at {path} is {v}, expected {want}"),
                        )),
                        _ => {}
                    }
                }
            },
        }
    }
    if let Some(max) = p.max_latency_ms
        && ms(latency) > max
    {
        problems.push(Message::new(
            format!("耗时 {:.1} 毫秒，超过上限 {max} 毫秒", ms(latency)),
            format!("took {:.1} ms, more than the limit of {max} ms", ms(latency)),
        ));
    }
    finish(started, problems, readings)
}

/// Pass without problems, else fail with all of them, in order.
pub(crate) fn finish(started: Instant, problems: Vec<Message>, readings: Vec<Reading>) -> Outcome {
    if problems.is_empty() {
        return Outcome::pass(started.elapsed(), readings);
    }
    let zh = problems.iter().map(|m| m.zh.as_str()).collect::<Vec<_>>().join("；");
    let en = problems.iter().map(|m| m.en.as_str()).collect::<Vec<_>>().join("; ");
    Outcome::fail(started.elapsed(), Message::new(zh, en), readings)
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// One request on a fresh connection. A failure carries the certificate when one was seen.
async fn fetch(
    p: &HttpProbe,
    url: &reqwest::Url,
    secret: Option<&Secret>,
    may_redirect: bool,
) -> Result<Hop, (Message, Option<tls::CertInfo>)> {
    // An IPv6 host comes bracketed (`[::1]`); connect and verify without the brackets.
    let host = url.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let (stream, connect) = crate::tcp::connect(&host, port).await.map_err(|m| (m, None))?;
    let req = request(p, url, secret).map_err(|m| (m, None))?;
    let keep = p.keeps_body();
    let cap = p.max_body_bytes;
    if url.scheme() == "https" {
        let name = p.server_name.as_deref().unwrap_or(&host);
        let t = Instant::now();
        let (tls, cert) = tls::connect(stream, name, &p.tls()).await.map_err(|f| (f.reason, f.cert))?;
        let tls_took = t.elapsed();
        let mut hop = exchange(tls, req, keep, cap, may_redirect).await.map_err(|m| (m, cert.clone()))?;
        hop.connect = connect;
        hop.tls = Some(tls_took);
        hop.cert = cert;
        Ok(hop)
    } else {
        let mut hop = exchange(stream, req, keep, cap, may_redirect).await.map_err(|m| (m, None))?;
        hop.connect = connect;
        Ok(hop)
    }
}

fn request(
    p: &HttpProbe,
    url: &reqwest::Url,
    secret: Option<&Secret>,
) -> Result<hyper::Request<Empty<Bytes>>, Message> {
    use hyper::header;
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let host_header = match (url.host_str(), url.port()) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (Some(h), None) => h.to_string(),
        (None, _) => String::new(),
    };
    let method = match p.method {
        HttpMethod::Get => hyper::Method::GET,
        HttpMethod::Head => hyper::Method::HEAD,
    };
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header(header::HOST, host_header)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    let has_auth = p.headers.keys().any(|k| k.eq_ignore_ascii_case("authorization"));
    if let Some(s) = secret
        && !has_auth
    {
        use base64::Engine as _;
        match (&s.username, &s.password) {
            (Some(u), pw) => {
                let raw = format!("{u}:{}", pw.as_deref().unwrap_or(""));
                let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
                b = b.header(header::AUTHORIZATION, v);
            }
            (None, Some(token)) => b = b.header(header::AUTHORIZATION, format!("Bearer {token}")),
            (None, None) => {}
        }
    }
    let mut req = b
        .body(Empty::new())
        .map_err(|e| Message::new(format!("无法构造请求：{e}"), format!("cannot build the request: {e}")))?;
    for (k, v) in &p.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            req.headers_mut().insert(k, v);
        }
    }
    Ok(req)
}

/// Sends the request over `io` and reads the answer (up to `cap` body bytes; none for a redirect
/// that will be followed). hyper's connection future is driven here, in the same task: when the
/// probe is dropped (its time-out) everything goes with it.
async fn exchange<T>(
    io: T,
    req: hyper::Request<Empty<Bytes>>,
    keep: bool,
    cap: usize,
    may_redirect: bool,
) -> Result<Hop, Message>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| hyper_failure("", &e))?;
    let work = async move {
        let sent = Instant::now();
        let resp = sender.send_request(req).await.map_err(|e| hyper_failure("", &e))?;
        let ttfb = sent.elapsed();
        let status = resp.status().as_u16();
        let header = |name: hyper::header::HeaderName| resp.headers().get(name).and_then(|v| v.to_str().ok());
        let location = header(hyper::header::LOCATION).map(str::to_string);
        let content_length = header(hyper::header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
        let mut hop = Hop {
            status,
            location,
            connect: Duration::ZERO,
            tls: None,
            ttfb,
            cert: None,
            content_length,
            bytes: 0,
            truncated: false,
            body: Vec::new(),
        };
        if may_redirect && is_redirect(status) && hop.location.is_some() {
            return Ok(hop);
        }
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                let why = hyper_reason(&e);
                Message::new(
                    format!("读取响应正文时出错（已读 {} 字节）：{why}", hop.bytes),
                    format!("reading the body failed after {} bytes: {why}", hop.bytes),
                )
            })?;
            let Ok(data) = frame.into_data() else { continue };
            let take = data.len().min(cap - hop.bytes);
            if keep {
                hop.body.extend_from_slice(&data[..take]);
            }
            hop.bytes += take;
            if hop.bytes >= cap {
                hop.truncated = take < data.len() || !hyper::body::Body::is_end_stream(&body);
                break;
            }
        }
        Ok::<Hop, Message>(hop)
    };
    let mut work = std::pin::pin!(work);
    let mut conn = std::pin::pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

fn hyper_reason(e: &hyper::Error) -> String {
    use std::error::Error as _;
    if e.is_incomplete_message() {
        return "the server closed the connection before the answer was complete".into();
    }
    if e.is_parse() {
        return format!("not a valid HTTP/1.1 answer ({e})");
    }
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

fn hyper_failure(_ctx: &str, e: &hyper::Error) -> Message {
    let why = hyper_reason(e);
    if e.is_incomplete_message() {
        return Message::new("服务器未应答就关闭了连接", "the server closed the connection without answering");
    }
    Message::new(format!("HTTP 请求失败：{why}"), format!("the HTTP request failed: {why}"))
}

/// The value at a dotted path: object keys, and array indexes as numbers.
pub(crate) fn json_at<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = doc;
    for seg in path.trim().split('.') {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(seg)?,
            serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn json_matches(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    if got == want {
        return true;
    }
    match (got, want) {
        (serde_json::Value::Number(a), serde_json::Value::Number(b)) => a.as_f64() == b.as_f64(),
        (serde_json::Value::Number(_) | serde_json::Value::Bool(_), serde_json::Value::String(s)) => {
            let shown = got.to_string();
            shown == s.trim()
        }
        (serde_json::Value::String(s), serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
            let shown = want.to_string();
            s.trim() == shown
        }
        _ => false,
    }
}

fn json_reading(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Number(n) => n.as_f64().map(Value::Num).unwrap_or_else(|| Value::Text(n.to_string())),
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::String(s) => Value::Text(s.chars().take(200).collect()),
        other => Value::Text(other.to_string().chars().take(200).collect()),
    }
}

/// TLS for the HTTP and TCP probes: one shared configuration per trust setting, full handshakes
/// only, certificate dates read from the leaf.
pub(crate) mod tls {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{SystemTime, UNIX_EPOCH};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{Resumption, WebPkiServerVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;

    use crate::tcp::round2;
    use crate::{Message, Reading};

    /// How a peer is verified and judged.
    #[derive(Debug, Clone, Copy, Default)]
    pub(crate) struct Settings<'a> {
        pub min_days: Option<f64>,
        pub skip_verify: bool,
        pub ca_pem: Option<&'a str>,
        pub server_name: Option<&'a str>,
    }

    impl Settings<'_> {
        pub(crate) fn validate(&self) -> Result<(), Message> {
            if let Some(d) = self.min_days
                && (!d.is_finite() || d < 0.0)
            {
                return Err(Message::new("tls_min_days 不能为负数", "tls_min_days cannot be negative"));
            }
            if let Some(pem) = self.ca_pem {
                parse_ca_pem(pem)?;
            }
            if let Some(n) = self.server_name {
                ServerName::try_from(n.trim()).map_err(|_| {
                    Message::new(
                        format!("server_name 不是有效的主机名：{n:?}"),
                        format!("server_name is not a valid host name: {n:?}"),
                    )
                })?;
            }
            Ok(())
        }
    }

    /// The leaf certificate's validity end.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct CertInfo {
        /// Seconds since the epoch.
        pub not_after: i64,
        /// Negative when expired.
        pub days_left: f64,
    }

    impl CertInfo {
        fn new(not_after: i64, now: i64) -> CertInfo {
            CertInfo { not_after, days_left: (not_after - now) as f64 / 86_400.0 }
        }

        fn from_der(der: &[u8]) -> Option<CertInfo> {
            let not_after = leaf_dates(der)?.1;
            Some(CertInfo::new(not_after, now_secs()))
        }

        pub(crate) fn push_readings(&self, r: &mut Vec<Reading>) {
            r.push(Reading::num("cert_days_left", round2(self.days_left)));
            r.push(Reading::text("cert_not_after", rfc3339(self.not_after)));
        }

        pub(crate) fn check_min_days(&self, min: Option<f64>) -> Option<Message> {
            let min = min?;
            if self.days_left >= min {
                return None;
            }
            let day = date(self.not_after);
            Some(if self.days_left < 0.0 {
                Message::new(
                    format!("证书已于 {day} 过期（{:.1} 天前）", -self.days_left),
                    format!("the certificate expired on {day} ({:.1} days ago)", -self.days_left),
                )
            } else {
                Message::new(
                    format!("证书将在 {:.1} 天后（{day}）过期，少于要求的 {min} 天", self.days_left),
                    format!(
                        "the certificate expires in {:.1} days ({day}), fewer than the required {min}",
                        self.days_left
                    ),
                )
            })
        }
    }

    fn now_secs() -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    }

    fn rfc3339(secs: i64) -> String {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default()
    }

    fn date(secs: i64) -> String {
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        time::OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&fmt).ok()).unwrap_or_default()
    }

    /// (not before, not after) in seconds since the epoch.
    pub(crate) fn leaf_dates(der: &[u8]) -> Option<(i64, i64)> {
        use x509_cert::der::Decode;
        let cert = x509_cert::Certificate::from_der(der).ok()?;
        let v = cert.tbs_certificate().validity();
        Some((v.not_before.to_unix_duration().as_secs() as i64, v.not_after.to_unix_duration().as_secs() as i64))
    }

    fn self_signed(der: &[u8]) -> bool {
        use x509_cert::der::Decode;
        x509_cert::Certificate::from_der(der)
            .map(|c| c.tbs_certificate().issuer() == c.tbs_certificate().subject())
            .unwrap_or(false)
    }

    pub(crate) fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, Message> {
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
        match certs {
            Ok(c) if !c.is_empty() => Ok(c),
            Ok(_) => Err(Message::new(
                "ca_pem 中没有证书（需要 -----BEGIN CERTIFICATE----- 块）",
                "ca_pem holds no certificate (a -----BEGIN CERTIFICATE----- block is needed)",
            )),
            Err(e) => Err(Message::new(format!("ca_pem 无法解析：{e}"), format!("cannot parse ca_pem: {e}"))),
        }
    }

    /// A self-signed leaf that did not verify, with its end of validity.
    #[derive(Debug)]
    struct SelfSigned(Option<CertInfo>);

    impl std::fmt::Display for SelfSigned {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("self-signed certificate")
        }
    }

    impl std::error::Error for SelfSigned {}

    /// webpki's verification (or none), telling a self-signed leaf from an unknown issuer.
    #[derive(Debug)]
    struct Verifier {
        webpki: Option<Arc<WebPkiServerVerifier>>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Verifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let Some(v) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
            match v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                // Whatever webpki tripped over first (no issuer, an issuer candidate of the same
                // name with another key type, the dates), a self-signed leaf is the cause to name;
                // a wrong name stays a wrong name.
                Err(rustls::Error::InvalidCertificate(e))
                    if intermediates.is_empty()
                        && !matches!(
                            e,
                            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                        )
                        && self_signed(end_entity) =>
                {
                    let info = CertInfo::from_der(end_entity);
                    Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                        SelfSigned(info),
                    )))))
                }
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
        P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
    }

    /// The system trust store, read once (an unreadable store leaves it empty: then only targets
    /// with `ca_pem` or `insecure_skip_verify` verify).
    fn system_roots() -> &'static RootCertStore {
        static R: OnceLock<RootCertStore> = OnceLock::new();
        R.get_or_init(|| {
            let mut store = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
            if added == 0 {
                tracing::warn!("no system CA certificates found; HTTPS probes verify only against ca_pem");
            }
            store
        })
    }

    fn build(roots: Option<RootCertStore>) -> Result<Arc<ClientConfig>, Message> {
        let provider = provider();
        let webpki = match roots {
            None => None,
            Some(r) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(r), provider.clone()).build().map_err(|e| {
                    Message::new(
                        format!("无法建立证书校验：{e}"),
                        format!("cannot set up certificate verification: {e}"),
                    )
                })?,
            ),
        };
        let verifier = Arc::new(Verifier { webpki, provider: provider.clone() });
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Message::new(format!("TLS 配置错误：{e}"), format!("TLS configuration error: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // A resumed session presents no certificate, and a check should see the full handshake.
        cfg.resumption = Resumption::disabled();
        Ok(Arc::new(cfg))
    }

    /// The shared configuration for these settings.
    fn config(s: &Settings<'_>) -> Result<Arc<ClientConfig>, Message> {
        static VERIFY: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        static SKIP: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        static WITH_CA: OnceLock<Mutex<HashMap<String, Arc<ClientConfig>>>> = OnceLock::new();
        if s.skip_verify {
            if let Some(c) = SKIP.get() {
                return Ok(c.clone());
            }
            let c = build(None)?;
            return Ok(SKIP.get_or_init(|| c).clone());
        }
        let Some(pem) = s.ca_pem else {
            if let Some(c) = VERIFY.get() {
                return Ok(c.clone());
            }
            let c = build(Some(system_roots().clone()))?;
            return Ok(VERIFY.get_or_init(|| c).clone());
        };
        let cache = WITH_CA.get_or_init(Default::default);
        if let Some(c) = cache.lock().ok().and_then(|m| m.get(pem).cloned()) {
            return Ok(c);
        }
        let mut roots = system_roots().clone();
        for cert in parse_ca_pem(pem)? {
            roots.add(cert).map_err(|e| {
                Message::new(
                    format!("ca_pem 中的证书无法使用：{e}"),
                    format!("a certificate in ca_pem is unusable: {e}"),
                )
            })?;
        }
        let c = build(Some(roots))?;
        if let Ok(mut m) = cache.lock() {
            if m.len() >= 256 {
                m.clear();
            }
            m.insert(pem.to_string(), c.clone());
        }
        Ok(c)
    }

    /// A handshake failure, with the certificate's dates when they are known.
    pub(crate) struct Failure {
        pub reason: Message,
        pub cert: Option<CertInfo>,
    }

    /// Runs the TLS handshake over a connected stream.
    pub(crate) async fn connect(
        stream: TcpStream,
        name: &str,
        s: &Settings<'_>,
    ) -> Result<(TlsStream<TcpStream>, Option<CertInfo>), Failure> {
        let fail = |reason| Failure { reason, cert: None };
        let cfg = config(s).map_err(fail)?;
        let name = name.trim();
        let server_name = ServerName::try_from(name.to_string()).map_err(|_| {
            fail(Message::new(format!("无效的 TLS 主机名：{name:?}"), format!("invalid TLS server name: {name:?}")))
        })?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        match connector.connect(server_name, stream).await {
            Ok(tls) => {
                let cert =
                    tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| CertInfo::from_der(c));
                Ok((tls, cert))
            }
            Err(e) => Err(handshake_failure(name, &e)),
        }
    }

    fn handshake_failure(name: &str, e: &std::io::Error) -> Failure {
        let tls_err = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        let Some(err) = tls_err else {
            let why = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                _ => e.to_string(),
            };
            return Failure {
                reason: Message::new(format!("TLS 握手失败：{why}"), format!("the TLS handshake failed: {why}")),
                cert: None,
            };
        };
        let hint_zh = "（若为内部 CA，请在 ca_pem 中填入 CA 证书；或设置 insecure_skip_verify）";
        let hint_en = " (for a private CA put its certificate in ca_pem; or set insecure_skip_verify)";
        let (reason, cert) = match err {
            rustls::Error::InvalidCertificate(ce) => match ce {
                CertificateError::ExpiredContext { time, not_after } => {
                    let c = CertInfo::new(not_after.as_secs() as i64, time.as_secs() as i64);
                    let day = date(c.not_after);
                    (
                        Message::new(
                            format!("证书已于 {day} 过期（{:.1} 天前）", -c.days_left),
                            format!("the certificate expired on {day} ({:.1} days ago)", -c.days_left),
                        ),
                        Some(c),
                    )
                }
                CertificateError::Expired => (Message::new("证书已过期", "the certificate has expired"), None),
                CertificateError::NotValidYetContext { not_before, .. } => {
                    let day = date(not_before.as_secs() as i64);
                    (
                        Message::new(
                            format!("证书尚未生效（生效日期 {day}；请检查服务器或本机时钟）"),
                            format!("the certificate is not valid yet (valid from {day}; check the clocks)"),
                        ),
                        None,
                    )
                }
                CertificateError::NotValidYet => {
                    (Message::new("证书尚未生效", "the certificate is not valid yet"), None)
                }
                CertificateError::UnknownIssuer => (
                    Message::new(
                        format!("证书不是由受信任的 CA 签发{hint_zh}"),
                        format!("the certificate is not issued by a trusted CA{hint_en}"),
                    ),
                    None,
                ),
                CertificateError::Other(o) if o.0.downcast_ref::<SelfSigned>().is_some() => {
                    let info = o.0.downcast_ref::<SelfSigned>().and_then(|s| s.0.clone());
                    let (ezh, een) = match &info {
                        Some(c) if c.days_left < 0.0 => {
                            let day = date(c.not_after);
                            (format!("，且已于 {day} 过期"), format!(", and it expired on {day}"))
                        }
                        _ => (String::new(), String::new()),
                    };
                    (
                        Message::new(
                            format!("证书为自签名证书，不受信任{ezh}{hint_zh}"),
                            format!("the certificate is self-signed and not trusted{een}{hint_en}"),
                        ),
                        info,
                    )
                }
                CertificateError::NotValidForNameContext { presented, .. } => {
                    let names = if presented.is_empty() { "-".to_string() } else { presented.join(", ") };
                    (
                        Message::new(
                            format!("证书不适用于 {name}（证书中的名称：{names}）"),
                            format!("the certificate is not valid for {name} (it names: {names})"),
                        ),
                        None,
                    )
                }
                CertificateError::NotValidForName => (
                    Message::new(format!("证书不适用于 {name}"), format!("the certificate is not valid for {name}")),
                    None,
                ),
                CertificateError::Revoked => (Message::new("证书已被吊销", "the certificate is revoked"), None),
                other => (
                    Message::new(format!("证书被拒绝：{other:?}"), format!("the certificate was rejected: {other:?}")),
                    None,
                ),
            },
            other => {
                (Message::new(format!("TLS 握手失败：{other}"), format!("the TLS handshake failed: {other}")), None)
            }
        };
        Failure { reason, cert }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        let p: HttpProbe = serde_json::from_value(serde_json::json!({"url": "https://example.org/health"})).unwrap();
        assert_eq!(p, HttpProbe::get("https://example.org/health"));
        assert_eq!((p.method, p.max_redirects, p.max_body_bytes), (HttpMethod::Get, 5, 1 << 20));
        assert!(p.validate().is_ok());
        let head: HttpProbe =
            serde_json::from_value(serde_json::json!({"url": "http://h/", "method": "HEAD", "body_contains": "x"}))
                .unwrap();
        assert!(head.validate().unwrap_err().en.contains("HEAD"));
        assert!(serde_json::from_value::<HttpProbe>(serde_json::json!({"url": "http://h/", "bogus": 1})).is_err());
        for bad in ["ftp://h/", "not a url", "http://"] {
            assert!(HttpProbe::get(bad).validate().is_err(), "{bad}");
        }
        let mut p2 = HttpProbe::get("http://h/");
        p2.json_equals = Some(serde_json::json!(1));
        assert!(p2.validate().unwrap_err().en.contains("json_path"));
        p2.json_path = Some("a..b".into());
        assert!(p2.validate().is_err());
        p2.json_path = Some("a.0.b".into());
        assert!(p2.validate().is_ok());
        p2.headers.insert("X-Bad".into(), "a\nb".into());
        assert!(p2.validate().is_err());
        let mut p3 = HttpProbe::get("http://h/");
        p3.ca_pem = Some("garbage".into());
        assert!(p3.validate().unwrap_err().en.contains("ca_pem"));
        let back: HttpProbe = serde_json::from_value(serde_json::to_value(&p2).unwrap()).unwrap();
        assert_eq!(back, p2);
    }

    #[test]
    fn json_paths() {
        let doc = serde_json::json!({"status": "up", "data": {"items": [{"ok": true}, {"ok": false, "n": 3}]}});
        assert_eq!(json_at(&doc, "status"), Some(&serde_json::json!("up")));
        assert_eq!(json_at(&doc, "data.items.0.ok"), Some(&serde_json::json!(true)));
        assert_eq!(json_at(&doc, "data.items.1.n"), Some(&serde_json::json!(3)));
        assert_eq!(json_at(&doc, "data.items.2.ok"), None);
        assert_eq!(json_at(&doc, "status.x"), None);
        assert!(json_matches(&serde_json::json!(3), &serde_json::json!("3")));
        assert!(json_matches(&serde_json::json!(3), &serde_json::json!(3.0)));
        assert!(json_matches(&serde_json::json!(true), &serde_json::json!("true")));
        assert!(!json_matches(&serde_json::json!("up"), &serde_json::json!("down")));
    }

    #[test]
    fn certificate_days() {
        let c = tls::CertInfo { not_after: 1_000_000 + 10 * 86_400, days_left: 10.0 };
        assert!(c.check_min_days(Some(5.0)).is_none());
        assert!(c.check_min_days(None).is_none());
        let m = c.check_min_days(Some(30.0)).unwrap();
        assert!(m.en.contains("expires in 10.0 days"), "{}", m.en);
        let expired = tls::CertInfo { not_after: 0, days_left: -2.5 };
        assert!(expired.check_min_days(Some(0.0)).unwrap().en.contains("expired on 1970-01-01 (2.5 days ago)"));
    }
}
