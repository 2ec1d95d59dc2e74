//! Seeds a yunwei database with a year of service-desk tickets (default: until the demo contract
//! holds 1,000,000), for the "open tickets, breaching soonest first" list benchmark (issue 4).
//!
//!   cargo build --release -p yunwei-bench --bin seed_tickets
//!   target/release/seed_tickets --data-dir DIR [--database-url URL] [--total 1000000]
//!
//! Stop the server first (SQLite: the seeder writes the database file directly).
//!
//! **Seeding bypasses the API on purpose, for speed**: a million tickets through
//! `POST /api/v1/contracts/{cid}/tickets` would take many minutes and measure nothing the create
//! benchmark does not already measure. The rows are written with multi-row `INSERT`s in large
//! transactions straight into `ticket` and `ticket_event`, with the columns
//! `yunwei_storage::tickets::create` writes (crates/storage/src/tickets.rs). The seeding is not a
//! benchmark and its time is reported only for information. What *is* measured afterwards — the
//! first page of `GET /api/v1/contracts/{cid}/tickets?view=open&sort=time_left` — goes through the
//! full API: authentication, contract scope, the list query and each row's clocks from its events.
//!
//! What the rows look like:
//! - `received_at` spread evenly (with jitter) over the year before now, `seq`/`number` in that
//!   order, as the desk would have numbered them; levels L1 2 %, L2 8 %, L3 40 %, L4 50 %; kinds
//!   fault 75 %, service request 15 %, consultation 10 %; channels mixed; Chinese titles.
//! - Open: half of the last 30 days' tickets and 1 % of older ones (a stale backlog), about 5 %
//!   in all; states recorded, dispatched or in progress. Each open ticket gets the history that
//!   state implies, as `ticket_event` rows: `created` and `level:Lx` at receipt, then `dispatched`
//!   (a contract milestone) and `responded` for dispatched / in-progress tickets. `due_sort` is
//!   computed from exactly these events with the contract's compiled clocks
//!   (`yunwei_storage::tickets::clocks`, the same filter as storage's `derive`), so the list order
//!   and the time left the API computes agree.
//! - Closed (95 % of closed) or cancelled: `is_open = 0`, `due_sort` = NO_DUE, resolved/closed
//!   times after receipt. Their history rows are not written (the list never reads them).
//! - `next_check_at` is NULL for every seeded ticket: their reminders and breach notices are
//!   taken as already handled, so the desk scheduler does not spend the benchmark firing a
//!   year's backlog of notices (no `ticket_notice` rows are seeded either).
//! - No audit records: the audit chain records what people did through the product.
//!
//! PostgreSQL: identity sequences are moved past the inserted ids and `VACUUM ANALYZE` runs at the
//! end (what autovacuum would do anyway, done now so it does not run during the measurement).
//! SQLite: the write-ahead log is checkpointed; no `ANALYZE` (the product does not run it).
//!
//! Prints one JSON line: {"kind":"seed", engine, tickets_before, inserted, open, events, secs}.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, AssertSqlSafe, ConnectOptions, Connection, Executor, Row};
use yunwei_core::sla::{Event, EventKind};
use yunwei_storage::secrets::SecretBox;
use yunwei_storage::tickets::{self, NO_DUE};
use yunwei_storage::{Db, rules};

#[derive(Parser)]
struct Cli {
    /// The server's data directory: holds secret.key (and yunwei.db unless --database-url).
    #[arg(long)]
    data_dir: PathBuf,
    /// sqlite://FILE or postgres://… (default: SQLite under the data directory, as the server).
    #[arg(long)]
    database_url: Option<String>,
    /// Code of the contract to fill (the demo contract 004).
    #[arg(long, default_value = "CD-DCM-2022")]
    contract: String,
    /// Tickets the contract should hold at the end (existing ones count).
    #[arg(long, default_value_t = 1_000_000)]
    total: u64,
    /// Rows per INSERT statement.
    #[arg(long, default_value_t = 500)]
    rows_per_insert: usize,
    /// Tickets per transaction.
    #[arg(long, default_value_t = 50_000)]
    tickets_per_tx: usize,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// A small deterministic generator, so every seeding writes the same tickets.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next(items.len() as u64) as usize]
    }
}

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

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
    "申请开通新用户账号",
    "咨询报表导出方法",
    "防火墙策略变更申请",
    "大屏显示系统画面卡顿",
];
const SYSTEMS: &[&str] =
    &["数字城管平台", "视频监控平台", "地理信息系统", "数据交换平台", "机房基础设施", "移动采集系统"];
const CHANNELS: &[&str] = &["phone", "phone", "phone", "email", "im", "web", "onsite", "inspection", "alert"];
const DESCRIPTIONS: &[&str] = &[
    "用户来电反映问题，影响范围待确认，已请用户提供截图和发生时间。",
    "巡检发现异常，已记录现象，待工程师进一步排查原因。",
    "监控告警触发，阈值超限持续 5 分钟以上，已通知值班工程师。",
    "业务科室反映系统使用异常，部分功能不可用，需尽快处理。",
];

/// One seeded ticket, as the columns storage's `create` (and later steps) would have left it.
struct Seeded {
    id: i64,
    seq: i64,
    number: String,
    kind: &'static str,
    state: &'static str,
    level: &'static str,
    title: String,
    description: &'static str,
    channel: &'static str,
    reporter_name: String,
    system_name: &'static str,
    received_at: i64,
    created_at: i64,
    assignee_user_id: Option<i64>,
    is_open: bool,
    due_sort: i64,
    resolved_at: Option<i64>,
    closed_at: Option<i64>,
    minutes_spent: i64,
    updated_at: i64,
    version: i64,
    /// (at, action, sla, detail) history rows; open tickets only.
    events: Vec<(i64, &'static str, String, String)>,
}

const TICKET_COLUMNS: &str = "id, contract_id, seq, number, contract_version, kind, state, level, title, description, \
     channel, reporter_name, system_name, received_at, created_at, created_by, assignee_user_id, is_open, due_sort, \
     next_check_at, resolved_at, closed_at, minutes_spent, updated_at, version";
const EVENT_COLUMNS: &str = "id, contract_id, ticket_id, at, action, sla, actor_user_id, actor_name, detail";

/// Shared, read-only facts of the contract being filled.
struct Target {
    contract_id: i64,
    contract_version: i64,
    desk_user: Option<(i64, String)>,
    engineer: Option<i64>,
}

/// SQL literal of a text value. The seeder writes only its own generated text, never input.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn lit_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

/// Literal multi-row INSERTs: with bound parameters the driver's cost grew with the row count of
/// a statement (500 rows: 20 s for 50,000 tickets; literals: a few seconds).
async fn insert_tickets(conn: &mut AnyConnection, t: &Target, batch: &[Seeded]) -> anyhow::Result<()> {
    let created_by = lit(t.desk_user.as_ref().map_or("李服务台", |(_, n)| n.as_str()));
    let mut sql = String::with_capacity(batch.len() * 400);
    sql.push_str(&format!("INSERT INTO ticket ({TICKET_COLUMNS}) VALUES "));
    for (i, s) in batch.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, {}, {}, {}, {}, {})",
            s.id,
            t.contract_id,
            s.seq,
            lit(&s.number),
            t.contract_version,
            lit(s.kind),
            lit(s.state),
            lit(s.level),
            lit(&s.title),
            lit(s.description),
            lit(s.channel),
            lit(&s.reporter_name),
            lit(s.system_name),
            s.received_at,
            s.created_at,
            created_by,
            lit_opt(s.assignee_user_id),
            i64::from(s.is_open),
            s.due_sort,
            lit_opt(s.resolved_at),
            lit_opt(s.closed_at),
            s.minutes_spent,
            s.updated_at,
            s.version,
        ));
    }
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    Ok(())
}

type EventRow = (i64, i64, i64, &'static str, String, String);

async fn insert_events(conn: &mut AnyConnection, t: &Target, rows: &[EventRow]) -> anyhow::Result<()> {
    let (actor_id, actor_name) = t.desk_user.clone().map_or((None, "李服务台".to_string()), |(i, n)| (Some(i), n));
    let (actor_id, actor_name) = (lit_opt(actor_id), lit(&actor_name));
    let mut sql = String::with_capacity(rows.len() * 200);
    sql.push_str(&format!("INSERT INTO ticket_event ({EVENT_COLUMNS}) VALUES "));
    for (i, (id, ticket_id, at, action, sla, detail)) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({id}, {}, {ticket_id}, {at}, {}, {}, {actor_id}, {actor_name}, {})",
            t.contract_id,
            lit(action),
            lit(sla),
            lit(detail)
        ));
    }
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await?;
    Ok(())
}

fn default_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("yunwei.db").display())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let url = cli.database_url.clone().unwrap_or_else(|| default_url(&cli.data_dir));
    let key_path = cli.data_dir.join("secret.key");
    let key = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let secrets = SecretBox::from_base64(&key).map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
    // Opened as the server opens it (migrations, refusal of a newer schema); its compiled rules and
    // holiday table give the due times.
    let db = Db::connect(&url, secrets).await.map_err(|e| anyhow::anyhow!("opening {url}: {e}"))?;
    let engine = db.backend().as_str();
    let postgres = engine == "postgres";

    sqlx::any::install_default_drivers();
    let options: AnyConnectOptions = url.parse()?;
    let mut conn = options.connect().await?;
    if !postgres {
        // Seeding only: a crash mid-way means seeding again, not data loss.
        conn.execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = OFF; PRAGMA busy_timeout = 5000;").await?;
    } else {
        conn.execute("SET synchronous_commit = off").await?;
    }

    let row = sqlx::query("SELECT id FROM contract WHERE code = $1")
        .bind(cli.contract.clone())
        .fetch_optional(&mut conn)
        .await?
        .with_context(|| format!("no contract {} (start `yunwei serve --demo` once first)", cli.contract))?;
    let contract_id: i64 = row.try_get("id")?;
    let rules = rules::current(&db, contract_id).await?.context("the contract has no contract file")?;
    let holidays = rules::holidays(&db).await?;
    let user = |login: &'static str| sqlx::query("SELECT id, display_name FROM app_user WHERE login = $1").bind(login);
    let desk_user = match user("desk.li").fetch_optional(&mut conn).await? {
        Some(r) => Some((r.try_get::<i64, _>("id")?, r.try_get::<String, _>("display_name")?)),
        None => None,
    };
    let engineer = match user("eng.wang").fetch_optional(&mut conn).await? {
        Some(r) => Some(r.try_get::<i64, _>("id")?),
        None => None,
    };
    let target = Target { contract_id, contract_version: rules.version, desk_user, engineer };

    let row = sqlx::query("SELECT COUNT(*) AS n, COALESCE(MAX(seq), 0) AS s FROM ticket WHERE contract_id = $1")
        .bind(contract_id)
        .fetch_one(&mut conn)
        .await?;
    let (before, max_seq): (i64, i64) = (row.try_get("n")?, row.try_get("s")?);
    let max_id: i64 =
        sqlx::query("SELECT COALESCE(MAX(id), 0) AS m FROM ticket").fetch_one(&mut conn).await?.try_get("m")?;
    let max_event: i64 =
        sqlx::query("SELECT COALESCE(MAX(id), 0) AS m FROM ticket_event").fetch_one(&mut conn).await?.try_get("m")?;
    let to_insert = cli.total.saturating_sub(before as u64) as usize;
    if to_insert == 0 {
        eprintln!("contract {} already holds {before} tickets: nothing to seed", cli.contract);
    }

    let started = Instant::now();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    // Received times: evenly over the year before now (up to a few minutes ago), with jitter.
    let span = 365 * DAY - 10 * MIN;
    let first = now - 365 * DAY;
    let mut rng = Lcg(cli.seed);
    let (mut next_id, mut next_event) = (max_id + 1, max_event + 1);
    let (mut open_count, mut event_count) = (0u64, 0u64);
    let mut tickets_batch: Vec<Seeded> = Vec::with_capacity(cli.rows_per_insert);
    let mut events_batch: Vec<EventRow> = Vec::new();
    let events_per_insert = cli.rows_per_insert * 2;
    let mut in_tx = 0usize;
    conn.execute("BEGIN").await?;
    for i in 0..to_insert {
        let seq = max_seq + 1 + i as i64;
        let slot = first + (span as i128 * i as i128 / to_insert.max(1) as i128) as i64;
        let received_at = (slot + rng.next(10 * MIN as u64) as i64 - 5 * MIN).clamp(first, now - 10 * MIN);
        let level = match rng.next(100) {
            0..2 => "L1",
            2..10 => "L2",
            10..50 => "L3",
            _ => "L4",
        };
        let kind = match rng.next(100) {
            0..75 => "fault",
            75..90 => "service_request",
            _ => "consultation",
        };
        let age = now - received_at;
        let open = if age < 30 * DAY { rng.next(2) == 0 } else { rng.next(100) == 0 };
        let title = format!("{} #{seq}", rng.pick(TITLES));
        let channel = rng.pick(CHANNELS);
        let created_at = received_at + rng.next(5 * MIN as u64) as i64;
        let mut s = Seeded {
            id: next_id,
            seq,
            number: format!("{}-{:06}", rules.code, seq),
            kind,
            state: "closed",
            level,
            title,
            description: rng.pick(DESCRIPTIONS),
            channel,
            reporter_name: format!("报告人{}", rng.next(400)),
            system_name: rng.pick(SYSTEMS),
            received_at,
            created_at,
            assignee_user_id: None,
            is_open: open,
            due_sort: NO_DUE,
            resolved_at: None,
            closed_at: None,
            minutes_spent: 0,
            updated_at: created_at,
            version: 1,
            events: Vec::new(),
        };
        next_id += 1;
        if open {
            open_count += 1;
            let detail = format!("{kind} {level} {} 渠道/channel={channel}", s.title);
            s.events.push((received_at, "create", "created".into(), detail));
            s.events.push((received_at, "level", format!("level:{level}"), level.to_string()));
            let mut sla = vec![
                Event { at: received_at, kind: EventKind::Created },
                Event { at: received_at, kind: EventKind::LevelSet(level.to_string()) },
            ];
            let step = rng.next(10);
            if step >= 4 {
                let at = (created_at + (3 + rng.next(10) as i64) * MIN).min(now);
                s.state = "dispatched";
                s.assignee_user_id = target.engineer;
                s.events.push((at, "dispatch", "dispatched".into(), String::new()));
                sla.push(Event { at, kind: EventKind::Custom("dispatched".into()) });
                s.updated_at = at;
                s.version = 2;
            }
            if step >= 7 {
                let at = (s.updated_at + (1 + rng.next(15) as i64) * MIN).min(now);
                s.state = "in_progress";
                s.events.push((at, "accept", "responded".into(), String::new()));
                sla.push(Event { at, kind: EventKind::Responded });
                s.updated_at = at;
                s.version = 3;
            }
            if s.state == "closed" {
                s.state = "recorded";
            }
            // As storage's `derive`: the earliest due time of a running, unpaused clock.
            s.due_sort = tickets::clocks(&rules, &holidays, &sla, now)
                .iter()
                .filter(|c| c.stopped_at.is_none() && c.due_at.is_some() && !c.paused.iter().any(|p| p.1.is_none()))
                .filter_map(|c| c.due_at)
                .min()
                .unwrap_or(NO_DUE);
        } else {
            s.assignee_user_id = target.engineer;
            if rng.next(100) < 5 {
                s.state = "cancelled";
                s.closed_at = Some((created_at + (10 + rng.next(600) as i64) * MIN).min(now));
                s.version = 2;
            } else {
                let resolved = (created_at + 30 * MIN + rng.next(3 * DAY as u64) as i64).min(now);
                s.resolved_at = Some(resolved);
                s.closed_at = Some((resolved + HOUR + rng.next(3 * DAY as u64) as i64).min(now));
                s.minutes_spent = 10 + rng.next(600) as i64;
                s.version = 6;
            }
            s.updated_at = s.closed_at.unwrap_or(created_at);
        }
        for (at, action, sla, detail) in s.events.drain(..) {
            events_batch.push((next_event, s.id, at, action, sla, detail));
            next_event += 1;
            event_count += 1;
        }
        tickets_batch.push(s);
        if tickets_batch.len() == cli.rows_per_insert {
            insert_tickets(&mut conn, &target, &tickets_batch).await?;
            tickets_batch.clear();
        }
        if events_batch.len() >= events_per_insert {
            // Events reference tickets: write the pending tickets first.
            if !tickets_batch.is_empty() {
                insert_tickets(&mut conn, &target, &tickets_batch).await?;
                tickets_batch.clear();
            }
            insert_events(&mut conn, &target, &events_batch).await?;
            events_batch.clear();
        }
        in_tx += 1;
        if in_tx == cli.tickets_per_tx {
            if !tickets_batch.is_empty() {
                insert_tickets(&mut conn, &target, &tickets_batch).await?;
                tickets_batch.clear();
            }
            if !events_batch.is_empty() {
                insert_events(&mut conn, &target, &events_batch).await?;
                events_batch.clear();
            }
            conn.execute("COMMIT").await?;
            conn.execute("BEGIN").await?;
            in_tx = 0;
            eprint!("\rseeded {}/{to_insert} tickets ({:.0} s)", i + 1, started.elapsed().as_secs_f64());
        }
    }
    if !tickets_batch.is_empty() {
        insert_tickets(&mut conn, &target, &tickets_batch).await?;
    }
    if !events_batch.is_empty() {
        insert_events(&mut conn, &target, &events_batch).await?;
    }
    conn.execute("COMMIT").await?;
    let insert_secs = started.elapsed().as_secs_f64();
    eprintln!("\rseeded {to_insert} tickets in {insert_secs:.1} s; finishing up");
    if postgres {
        // Explicit ids were given: move the identity sequences past them.
        for table in ["ticket", "ticket_event"] {
            conn.execute(AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )))
            .await?;
        }
        conn.execute("VACUUM ANALYZE ticket").await?;
        conn.execute("VACUUM ANALYZE ticket_event").await?;
    } else {
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    }
    conn.close().await?;
    db.close().await;
    let json = serde_json::json!({
        "kind": "seed", "engine": engine, "tickets_before": before, "inserted": to_insert,
        "total": before as u64 + to_insert as u64, "open": open_count, "events": event_count,
        "insert_secs": (insert_secs * 10.0).round() / 10.0,
        "secs": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    println!("{json}");
    Ok(())
}
