//! The desk scheduler: fires the notices [`yunwei_core::desk::plan`] says are due — reminders
//! before breach, breach notices, per-level progress reports (SD4), the reporter's progress notice
//! (SD5), the escalation matrix (SD11) — and closes tickets nobody confirmed in time.
//!
//! Each ticket carries `next_check_at`; a pass looks only at tickets whose time has come (an index
//! range), so its cost follows the work due, not the number of tickets. Several nodes may run
//! passes: [`try_lease`] lets one node at a time do it, and the `ticket_notice` key makes a notice
//! fire once even if two passes overlap.

use sqlx::Row;
use yunwei_core::authz::ContractRole;
use yunwei_core::desk::{self, Audience, Notice, NoticeKind};
use yunwei_core::sla::Event;
use yunwei_core::ticket::State;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::db::{Arg, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::notifications::{self, Recipients};
use crate::principal::ContractScope;
use crate::rules::{self, Rules};
use crate::tickets::{self, ActionInput};

/// Takes or renews the lease on a background job for `ttl_ms`. True when this holder has it.
pub async fn try_lease(db: &Db, job: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool> {
    let r = sqlx::query(
        "INSERT INTO job_lease (name, holder, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
         WHERE job_lease.expires_at < $4 OR job_lease.holder = excluded.holder",
    )
    .bind(job.to_string())
    .bind(holder.to_string())
    .bind(now + ttl_ms)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub tickets: usize,
    pub notices: usize,
    pub auto_closed: usize,
}

/// One scheduler pass over the tickets due at `now` (at most `limit` of them).
pub async fn run_due(db: &Db, now: i64, limit: i64) -> StoreResult<PassReport> {
    // The one cross-contract read: which tickets are due. Each is then handled in its own
    // contract's scope.
    let rows = sqlx::query(
        "SELECT id, contract_id FROM ticket WHERE next_check_at IS NOT NULL AND next_check_at <= $1 \
         ORDER BY next_check_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut report = PassReport::default();
    for r in rows {
        let (id, contract_id): (i64, i64) = (r.try_get("id")?, r.try_get("contract_id")?);
        let scope = ContractScope::platform(contract_id);
        match check_ticket(db, &scope, id, now).await {
            Ok((notices, closed)) => {
                report.tickets += 1;
                report.notices += notices;
                report.auto_closed += usize::from(closed);
            }
            // Someone changed the ticket meanwhile; its own change re-planned it.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(ticket = id, error = %e, "desk scheduler could not handle a ticket");
                // Look again later rather than spinning on it.
                sqlx::query("UPDATE ticket SET next_check_at = $1 WHERE id = $2")
                    .bind(now + 60_000)
                    .bind(id)
                    .execute(&db.pool)
                    .await?;
            }
        }
    }
    Ok(report)
}

fn notice_kind_name(k: &NoticeKind) -> &'static str {
    match k {
        NoticeKind::Reminder { .. } => "reminder",
        NoticeKind::Breach { .. } => "breach",
        NoticeKind::Progress { .. } => "progress",
        NoticeKind::LevelNotifyStart => "level_start",
        NoticeKind::LevelNotifyEnd => "level_end",
        NoticeKind::ReporterProgress { .. } => "reporter_progress",
        NoticeKind::Escalation { .. } => "escalation",
        NoticeKind::AutoClose => "auto_close",
    }
}

fn local_time(ms: i64) -> String {
    let day = yunwei_core::calendar::local_day(ms);
    let (y, m, d) = yunwei_core::calendar::civil_from_days(day);
    let secs = (ms - yunwei_core::calendar::day_start_utc(day)) / 1000;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", secs / 3600, secs / 60 % 60)
}

fn notice_text(t: &tickets::Ticket, k: &NoticeKind, at: i64, notify: &[String]) -> (String, String) {
    let n = &t.number;
    let title = match k {
        NoticeKind::Reminder { clock, .. } => format!("[{n}] 时限将到：{clock} / Due soon: {clock}"),
        NoticeKind::Breach { clock, .. } => format!("[{n}] 已超时：{clock} / Breached: {clock}"),
        NoticeKind::Progress { n: i } => format!("[{n}] 第 {i} 次进度通报 / Progress report {i}"),
        NoticeKind::LevelNotifyStart => format!("[{n}] 故障通知 / Incident notice"),
        NoticeKind::LevelNotifyEnd => format!("[{n}] 故障处置完毕 / Incident resolved"),
        NoticeKind::ReporterProgress { .. } => format!("[{n}] 处理进度告知 / Progress of your report"),
        NoticeKind::Escalation { class, to, .. } => {
            let role = to.label();
            format!("[{n}] {class}事件升级至{} / Escalated to {}", role.zh, role.en)
        }
        NoticeKind::AutoClose => format!("[{n}] 已自动结案 / Closed automatically"),
    };
    let mut body =
        format!("{}\n级别 Level: {}  状态 State: {}\n时间 At: {}", t.title, t.level, t.state, local_time(at));
    if !notify.is_empty()
        && matches!(k, NoticeKind::LevelNotifyStart | NoticeKind::LevelNotifyEnd | NoticeKind::Progress { .. })
    {
        body.push_str(&format!("\n通知范围 To be told: {}", notify.join("、")));
    }
    (title, body)
}

/// Fires the notices that are due, once each: records the key, then tells the audience. Runs
/// inside the caller's write transaction — the scheduler's, or the ticket change that made the
/// notice due (a new ticket's start notice goes out with the ticket itself). Returns the keys fired.
/// `new_ticket`: the ticket was inserted in this transaction, so none of its notices can have
/// fired before and their rows need not be read back.
pub(crate) async fn fire(
    tx: &mut WriteTx,
    scope: &ContractScope,
    t: &tickets::Ticket,
    rules: &Rules,
    due: &[Notice],
    now: i64,
    new_ticket: bool,
) -> StoreResult<Vec<String>> {
    let notify = rules
        .compiled
        .file
        .levels
        .iter()
        .find(|l| l.name.get_ref() == &t.level)
        .map(|l| l.notify.as_slice())
        .unwrap_or(&[]);
    let mut fired = Vec::new();
    for notice in due {
        const INSERT_NOTICE: &str = "INSERT INTO ticket_notice (ticket_id, notice_key, contract_id, due_at, fired_at, kind) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (ticket_id, notice_key) DO NOTHING";
        let args: Vec<Arg> = vec![
            t.id.into(),
            notice.key.clone().into(),
            scope.contract_id().into(),
            notice.at.into(),
            now.into(),
            notice_kind_name(&notice.kind).into(),
        ];
        if new_ticket {
            tx.defer(INSERT_NOTICE, args);
        } else if tx.execute(INSERT_NOTICE, args).await? == 0 {
            // Fired before (by another node's scheduler, or an earlier change): once only.
            continue;
        }
        let (title, body) = notice_text(t, &notice.kind, notice.at, notify);
        for a in &notice.audience {
            let to = match a {
                Audience::Assignee => match t.assignee_user_id {
                    Some(uid) => Recipients::User(uid),
                    None => Recipients::Role(ContractRole::ServiceDesk),
                },
                Audience::Reporter => {
                    match (t.reporter_user_id, notifications::looks_like_email(&t.reporter_contact)) {
                        (Some(uid), _) => Recipients::User(uid),
                        (None, true) => Recipients::Address(t.reporter_contact.clone()),
                        (None, false) => continue,
                    }
                }
                Audience::Role(r) => Recipients::Role(*r),
            };
            notifications::send(
                tx,
                scope.contract_id(),
                Some(t.id),
                &to,
                notice_kind_name(&notice.kind),
                &title,
                &body,
            )
            .await?;
        }
        fired.push(notice.key.clone());
    }
    Ok(fired)
}

async fn check_ticket(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<(usize, bool)> {
    let mut t = tickets::get(db, scope, id).await?;
    let rules = rules::version(db, t.contract_id, t.contract_version).await?;
    let holidays = rules::holidays(db).await?;
    let mut events = load_events(db, id).await?;
    let mut plan = tickets::plan_of(&rules, &holidays, &t, &events, now);
    let mut closed = false;
    if plan.due.iter().any(|n| n.kind == NoticeKind::AutoClose) && t.state() == State::AwaitingConfirmation {
        let input = ActionInput { action: "auto_close".into(), version: t.version, ..Default::default() };
        tickets::act(db, scope, id, &input, now).await?;
        closed = true;
        t = tickets::get(db, scope, id).await?;
        events = load_events(db, id).await?;
        let after = tickets::plan_of(&rules, &holidays, &t, &events, now);
        // Keep the auto-close itself so that its notice is recorded below.
        let auto: Vec<_> = plan.due.into_iter().filter(|n| n.kind == NoticeKind::AutoClose).collect();
        plan = desk::Plan { due: auto.into_iter().chain(after.due).collect(), next_at: after.next_at };
    }
    let mut tx = db.begin_write(now).await?;
    let fired = fire(&mut tx, scope, &t, &rules, &plan.due, now, false).await?;
    // Only if nobody changed the ticket since it was read: a change re-plans it itself, and its
    // next_check_at must not be overwritten with this pass's older plan.
    sqlx::query("UPDATE ticket SET next_check_at = $1 WHERE id = $2 AND contract_id = $3 AND version = $4")
        .bind(plan.next_at)
        .bind(id)
        .bind(scope.contract_id())
        .bind(t.version)
        .execute(tx.conn().await?)
        .await?;
    if fired.is_empty() {
        tx.commit_bookkeeping().await?;
    } else {
        tx.audit(
            AuditEntry::new(scope.actor(), "ticket.notice", format!("ticket:{id}"))
                .contract(scope.contract_id())
                .detail(fired.join(" ")),
        )
        .await?;
        tx.commit().await?;
    }
    Ok((fired.len(), closed))
}

async fn load_events(db: &Db, id: i64) -> StoreResult<Vec<Event>> {
    let mut conn = db.pool.acquire().await?;
    tickets::sla_events(&mut conn, id).await
}
