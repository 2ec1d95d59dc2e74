//! HTTP load generator for BENCHMARKS.md: closed-loop workers, latency percentiles, one JSON line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::{Args, Parser, Subcommand};
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, HeaderName, HeaderValue, SET_COOKIE};
use reqwest::{Client, StatusCode, redirect};

/// HTTP load generator for yunwei benchmarks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Accept any TLS certificate (for servers with a self-signed certificate).
    #[arg(long, global = true)]
    insecure: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Loop GET requests on one URL.
    Get(GetArgs),
    /// Loop the form login: GET /login, then POST /login (only the POST is timed).
    Login(LoginArgs),
    /// Loop POST requests with a JSON body (e.g. ticket creation), each body made distinct.
    Create(CreateArgs),
}

#[derive(Args)]
struct GetArgs {
    #[arg(long)]
    url: String,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Stop after this many measured requests (besides the duration bound).
    #[arg(long)]
    requests: Option<u64>,
}

#[derive(Args)]
struct CreateArgs {
    /// The collection to POST to, e.g. http://127.0.0.1:8080/api/v1/contracts/1/tickets
    #[arg(long)]
    url: String,
    /// Extra request header, `Name: value`; repeatable (session cookie, X-CSRF-Token, Bearer token).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// JSON body template. Placeholders: `{n}` the request's sequence number (unique within the
    /// run), `{level}` the next of --levels, `{title}` and `{system}` picked from built-in lists
    /// of realistic service-desk wording, `{tag}` the --tag value. Default: a yunwei fault ticket.
    #[arg(long)]
    body: Option<String>,
    /// Levels cycled through by `{level}`.
    #[arg(long, default_value = "L1,L2,L3,L4", value_delimiter = ',')]
    levels: Vec<String>,
    /// Marks the bodies of this run (e.g. `c8r2`), so runs are told apart in the data.
    #[arg(long, default_value = "bench")]
    tag: String,
    /// Status that counts as success.
    #[arg(long, default_value_t = 201)]
    expect_status: u16,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Stop after this many measured requests (besides the duration bound).
    #[arg(long)]
    requests: Option<u64>,
}

/// A yunwei ticket as the service desk records a phone report.
const DEFAULT_TICKET_BODY: &str = r#"{"kind":"fault","level":"{level}","title":"{title} #{n} ({tag})","description":"用户来电反映：{title}。影响范围待确认，已请用户提供截图。\nReported by phone; scope to be confirmed.","channel":"phone","reporter_name":"城管委值班员{n}","system_name":"{system}"}"#;

const TITLES: &[&str] = &[
    "数字城管平台登录缓慢",
    "视频监控平台部分摄像头离线",
    "数据库主从同步延迟",
    "案件受理子系统无法提交",
    "核心交换机端口告警",
    "机房精密空调温度告警",
    "存储阵列磁盘预警",
    "地理信息服务地图加载失败",
    "短信网关发送失败",
    "移动采集终端无法同步",
    "负载均衡健康检查异常",
    "备份作业未按时完成",
];

const SYSTEMS: &[&str] =
    &["数字城管平台", "视频监控平台", "地理信息系统", "数据交换平台", "机房基础设施", "移动采集系统"];

#[derive(Args)]
struct LoginArgs {
    /// Base URL of the server, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    #[arg(long)]
    login: String,
    #[arg(long)]
    password: String,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
}

/// What one iteration does; shared read-only by all workers.
enum Workload {
    Get {
        url: String,
    },
    /// `form_prefix` holds the urlencoded login and password; each iteration adds its CSRF token.
    Login {
        base: String,
        form_prefix: String,
    },
    /// `body` is the template; `seq` numbers the requests of the run across workers.
    Create {
        url: String,
        body: String,
        levels: Vec<String>,
        tag: String,
        expect: StatusCode,
        seq: AtomicU64,
    },
}

impl Workload {
    /// Runs one iteration and returns its timed latency.
    async fn run_once(&self, client: &Client) -> anyhow::Result<Duration> {
        match self {
            Workload::Get { url } => get_once(client, url).await,
            Workload::Login { base, form_prefix } => login_once(client, base, form_prefix).await,
            Workload::Create { url, body, levels, tag, expect, seq } => {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let body = fill_template(body, n, levels, tag);
                post_json_once(client, url, body, *expect).await
            }
        }
    }
}

/// The body of request `n`: every placeholder replaced (JSON-safe values only).
fn fill_template(template: &str, n: u64, levels: &[String], tag: &str) -> String {
    let i = n as usize;
    let level = levels.get(i % levels.len().max(1)).map_or("L3", String::as_str);
    // Different strides, so titles and systems do not move in lockstep.
    let title = TITLES[(i * 7 + i / TITLES.len()) % TITLES.len()];
    let system = SYSTEMS[(i * 5 + 3) % SYSTEMS.len()];
    template
        .replace("{n}", &n.to_string())
        .replace("{level}", level)
        .replace("{title}", title)
        .replace("{system}", system)
        .replace("{tag}", tag)
}

async fn post_json_once(client: &Client, url: &str, body: String, expect: StatusCode) -> anyhow::Result<Duration> {
    let request = client.post(url).header(CONTENT_TYPE, "application/json").body(body);
    let start = Instant::now();
    let resp = request.send().await?;
    let status = resp.status();
    // The whole answer (the created ticket as JSON) is part of the timing, as for `get`.
    let answer = resp.bytes().await?;
    let elapsed = start.elapsed();
    ensure!(status == expect, "HTTP {status} (expected {expect}): {}", String::from_utf8_lossy(&answer));
    Ok(elapsed)
}

async fn get_once(client: &Client, url: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let resp = client.get(url).send().await?;
    let status = resp.status();
    // Read the whole body so the timing includes it and the connection can be reused.
    let body = resp.bytes().await?;
    let elapsed = start.elapsed();
    ensure!(status.is_success(), "HTTP {status}: {}", String::from_utf8_lossy(&body));
    Ok(elapsed)
}

async fn login_once(client: &Client, base: &str, form_prefix: &str) -> anyhow::Result<Duration> {
    let page = client.get(format!("{base}/login")).send().await?;
    let pre_cookie = set_cookie(page.headers(), "yw_pre");
    let html = page.text().await?;
    let mut form = form_prefix.to_string();
    if let Some(token) = csrf_token(&html) {
        form.push_str(&format!("&_csrf={}", url_encode(&token)));
    }
    let mut request =
        client.post(format!("{base}/login")).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form);
    // No cookie store: the double-submit cookie goes back by hand.
    if let Some(value) = pre_cookie {
        request = request.header(COOKIE, format!("yw_pre={value}"));
    }
    let start = Instant::now();
    let resp = request.send().await?;
    let status = resp.status();
    // An empty value would be a cookie being cleared, not a session being granted.
    let has_session = set_cookie(resp.headers(), "yw_session").is_some_and(|v| !v.is_empty());
    let body = resp.text().await?;
    let elapsed = start.elapsed();
    let redirected = status == StatusCode::SEE_OTHER || status == StatusCode::FOUND;
    ensure!(redirected && has_session, "HTTP {status}, yw_session: {has_session}: {body}");
    Ok(elapsed)
}

/// The value of the first `Set-Cookie` named `wanted`, without its attributes.
fn set_cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
}

/// The value of the `<input ... name="_csrf" value="...">` tag, whatever the attribute order.
fn csrf_token(html: &str) -> Option<String> {
    let at = html.find(r#"name="_csrf""#)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value_start = tag.find(r#"value=""#)? + r#"value=""#.len();
    let value_len = tag[value_start..].find('"')?;
    Some(html_unescape(&tag[value_start..value_start + value_len]))
}

/// Undoes the attribute escaping that can touch a token: minijinja escapes `/` as `&#x2f;`.
fn html_unescape(s: &str) -> String {
    s.replace("&#x2f;", "/").replace("&amp;", "&")
}

/// Form encoding by hand: the workspace builds reqwest without its `form` feature.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        match byte {
            b if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn parse_headers(raw: &[String]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in raw {
        let (name, value) = line.split_once(':').with_context(|| format!("bad header {line:?}"))?;
        map.append(HeaderName::try_from(name.trim())?, HeaderValue::try_from(value.trim())?);
    }
    Ok(map)
}

/// How many workers, and for how long they run after the warm-up.
struct Load {
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    /// Bound on measured iterations (warm-up iterations are not counted).
    max_requests: Option<u64>,
}

/// Set by the first failure, so its message is printed once rather than per request.
static ERROR_SHOWN: AtomicBool = AtomicBool::new(false);

/// Runs the workload with `load.concurrency` closed-loop workers and prints the report.
async fn run(kind: &str, client: Client, workload: Workload, load: &Load) -> anyhow::Result<()> {
    let workload = Arc::new(workload);
    let measure_from = Instant::now() + load.warmup;
    let stop_at = measure_from + load.duration;
    // Measured iterations claimed so far, against `max_requests`.
    let claimed = Arc::new(AtomicU64::new(0));
    let max_requests = load.max_requests.unwrap_or(u64::MAX);
    let mut workers = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency {
        let (client, workload, claimed) = (client.clone(), Arc::clone(&workload), Arc::clone(&claimed));
        workers.push(tokio::spawn(async move {
            // Latencies (µs) of successful iterations and the count of failed ones.
            let (mut samples, mut errors) = (Vec::new(), 0u64);
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                if started >= measure_from && claimed.fetch_add(1, Ordering::Relaxed) >= max_requests {
                    break;
                }
                let outcome = workload.run_once(&client).await;
                // Print one failure even from the warm-up: a misconfigured run should say why at once.
                if let Err(e) = &outcome
                    && !ERROR_SHOWN.swap(true, Ordering::Relaxed)
                {
                    eprintln!("first error: {e:#}");
                }
                // Attribute each iteration to the phase it started in; warm-up results are discarded.
                match outcome {
                    _ if started < measure_from => {}
                    Ok(t) => samples.push(u32::try_from(t.as_micros()).unwrap_or(u32::MAX)),
                    Err(_) => errors += 1,
                }
            }
            (samples, errors)
        }));
    }
    let (mut all_samples, mut all_errors) = (Vec::new(), 0);
    for worker in workers {
        let (samples, errors) = worker.await.context("worker panicked")?;
        all_samples.extend(samples);
        all_errors += errors;
    }
    // Iterations started just before the stop finish after it: divide by the real measured span.
    report(kind, load, all_samples, all_errors, measure_from.elapsed());
    Ok(())
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[u32], pct: f64) -> f64 {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).map_or(0.0, |&us| f64::from(us) / 1000.0)
}

fn report(kind: &str, load: &Load, mut samples: Vec<u32>, errors: u64, elapsed: Duration) {
    samples.sort_unstable();
    let requests = samples.len() as u64 + errors;
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    let rps = samples.len() as f64 / secs;
    let [p50, p90, p99, max] = [50.0, 90.0, 99.0, 100.0].map(|pct| percentile_ms(&samples, pct));
    let concurrency = load.concurrency;
    println!(
        "{kind}: {requests} requests ({errors} errors) in {secs:.1}s with {concurrency} workers: \
         {rps:.1} ok/s, p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
    );
    let json = serde_json::json!({
        "kind": kind, "concurrency": concurrency, "requests": requests, "errors": errors,
        "rps": (rps * 10.0).round() / 10.0, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max,
    });
    println!("{json}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The workspace builds rustls with only the ring provider, so reqwest needs it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // One client shared by all workers, so connections are kept alive and reused; the timeout
    // stops a stalled server from hanging the run.
    let builder = Client::builder().timeout(Duration::from_secs(30)).tls_danger_accept_invalid_certs(cli.insecure);
    let load = |concurrency, warmup_secs, duration_secs, max_requests| Load {
        concurrency,
        warmup: Duration::from_secs(warmup_secs),
        duration: Duration::from_secs(duration_secs),
        max_requests,
    };
    let (kind, client, workload, load) = match cli.command {
        Command::Get(args) => {
            let headers = parse_headers(&args.headers)?;
            let client = builder.default_headers(headers).build()?;
            let load = load(args.concurrency, args.warmup_secs, args.duration_secs, args.requests);
            ("get", client, Workload::Get { url: args.url }, load)
        }
        Command::Login(args) => {
            // No redirects: the 303 and its Set-Cookie are the result being measured.
            let client = builder.redirect(redirect::Policy::none()).build()?;
            let base = args.url.trim_end_matches('/').to_string();
            let (login, password) = (url_encode(&args.login), url_encode(&args.password));
            let form_prefix = format!("login={login}&password={password}");
            let load = load(args.concurrency, args.warmup_secs, args.duration_secs, None);
            ("login", client, Workload::Login { base, form_prefix }, load)
        }
        Command::Create(args) => {
            let headers = parse_headers(&args.headers)?;
            // No redirects: an answer other than the expected status is an error to report.
            let client = builder.default_headers(headers).redirect(redirect::Policy::none()).build()?;
            let body = args.body.unwrap_or_else(|| DEFAULT_TICKET_BODY.to_string());
            // Fail before the run if the template does not yield JSON.
            serde_json::from_str::<serde_json::Value>(&fill_template(&body, 0, &args.levels, &args.tag))
                .context("--body does not give valid JSON")?;
            let expect = StatusCode::from_u16(args.expect_status)?;
            let load = load(args.concurrency, args.warmup_secs, args.duration_secs, args.requests);
            let workload = Workload::Create {
                url: args.url,
                body,
                levels: args.levels,
                tag: args.tag,
                expect,
                seq: AtomicU64::new(0),
            };
            ("create", client, workload, load)
        }
    };
    run(kind, client, workload, &load).await
}
