//! The service desk's rules in time: which reminders, breach alerts, progress reports, escalations
//! and automatic closes are due for one ticket, derived from its contract and its SLA event history.
//!
//! [`plan`] is pure. A scheduler calls it with the current time, sends (or performs) what is in
//! [`Plan::due`], remembers each [`Notice::key`] it has handled so that nothing is sent twice, and
//! calls again at [`Plan::next_at`] or after the ticket changes.
//!
//! Rules (the contract's, made explicit):
//! - **Reminder / breach** (SD3): per clock with a target for the ticket's level, evaluated by
//!   [`crate::sla::evaluate`] on the clock's calendar. The assignee is reminded when
//!   `reminder_at_percent` of the target is used while the clock runs (computed exactly on business
//!   time, across earlier pauses); when a running (or suspended) clock passes its due time, the
//!   assignee, the desk and the project manager are told. Both keys carry the due instant, so a
//!   pause that moves the due time, or a reopened ticket, gives new notices.
//! - **Progress** (SD4): a level with `progress_every` reports to the client every that long
//!   (wall-clock time) from receipt while unresolved. Only the latest report is due: a scheduler
//!   that was down sends one report, not a burst.
//! - **Level notify** (SD4): a level with a `notify` list tells those at the start and at the end.
//!   004's L3 asks for both and L4 only for the end, which format 1 cannot tell apart; every level
//!   with a non-empty `notify` list is notified at both.
//! - **Reporter progress** (SD5): unresolved `progress_notice_working_days` Chinese working days
//!   after receipt, and every further that many, the reporter is told; latest only.
//! - **Escalation** (SD11): each step of the matrix for the ticket's incident class, at receipt +
//!   `after` (wall-clock), while unresolved.
//! - **Auto-close**: `auto_close_working_days` working days after the ticket began to wait for the
//!   reporter's confirmation. The storage layer performs the close (`ticket::Action::AutoClose`).
//! - A closed or cancelled ticket has nothing due except the end-of-level notification.
//!
//! Keys are stable: for one event history, a key names the same instant whenever `plan` is called.

use std::borrow::Cow;

use crate::authz::ContractRole;
use crate::calendar::{DayKind, HolidayTable, day_start_utc, local_day};
use crate::contract::{CompiledContract, parse_duration};
use crate::sla::{self, ClockRule, Event, EventKind, Phase};

/// Who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// The person the ticket is assigned to (the desk when nobody is).
    Assignee,
    /// The person who reported the ticket.
    Reporter,
    /// Every member of the contract holding this role.
    Role(ContractRole),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// `reminder_at_percent` of the clock's target is used; the clock still runs and is due at `due_at`.
    Reminder { clock: String, due_at: i64 },
    /// The clock passed its due time while running (or suspended after the due time).
    Breach { clock: String, due_at: i64 },
    /// SD4: the n-th progress report to the client (n = 1, 2, …).
    Progress { n: u32 },
    /// SD4: the level's notify list, at the start …
    LevelNotifyStart,
    /// … and at the end (the resolution in force).
    LevelNotifyEnd,
    /// SD5: the n-th progress notice to the reporter.
    ReporterProgress { n: u32 },
    /// SD11: one step of the escalation matrix.
    Escalation { class: String, after_ms: i64, to: ContractRole },
    /// Close the ticket: the reporter did not answer in time.
    AutoClose,
}

/// One thing to do for a ticket at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Unique per ticket for this firing and stable over time: the scheduler's deduplication key.
    pub key: String,
    /// When it is (or was) due.
    pub at: i64,
    pub kind: NoticeKind,
    pub audience: Vec<Audience>,
}

/// What `plan` needs to know about a ticket.
#[derive(Debug, Clone, Copy)]
pub struct TicketFacts<'a> {
    /// The ticket's current level.
    pub level: &'a str,
    /// The quality incident class of the escalation matrix (004 table 3.9: 重大, 严重, 一般, 轻微).
    pub incident_class: Option<&'a str>,
    /// When the report was received (the `Created` event).
    pub received_at: i64,
    /// The ticket's SLA event history. Without any `LevelSet`, `level` is taken as set at receipt.
    pub events: &'a [Event],
    /// Currently resolved, closed or cancelled: no more progress reports or escalations.
    pub resolved: bool,
    /// Set while the ticket waits for the reporter's confirmation.
    pub awaiting_confirmation_since: Option<i64>,
    pub closed_or_cancelled: bool,
}

/// What is due now and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Notices with `at <= now`, ordered by time, then key.
    pub due: Vec<Notice>,
    /// The earliest instant after `now` at which a notice falls due, if any (without new events).
    pub next_at: Option<i64>,
}

/// The same local (Shanghai) time of day on the `n`-th Chinese working day after the day of `at`
/// (holidays skipped, make-up workdays counted). `n = 0` gives `at`. Years without holiday data
/// count as ordinary weeks.
pub fn add_working_days(at: i64, n: u32, holidays: &HolidayTable) -> i64 {
    /// Gives up after this many days beyond `n` (only a holiday table with no working day does that).
    const MAX_EXTRA_DAYS: i64 = 3 * 366;
    let day = local_day(at);
    let time_of_day = at - day_start_utc(day);
    let mut left = n;
    let mut d = day;
    let limit = day + i64::from(n) + MAX_EXTRA_DAYS;
    while left > 0 && d < limit {
        d += 1;
        if holidays.day_kind(d).0 == DayKind::Working {
            left -= 1;
        }
    }
    day_start_utc(d) + time_of_day
}

/// Collects due notices and the next instant.
struct Planner {
    now: i64,
    due: Vec<Notice>,
    next_at: Option<i64>,
}

impl Planner {
    fn later(&mut self, at: i64) {
        if at > self.now && self.next_at.is_none_or(|n| at < n) {
            self.next_at = Some(at);
        }
    }

    fn add(&mut self, at: i64, key: String, kind: NoticeKind, audience: Vec<Audience>) {
        if at <= self.now {
            self.due.push(Notice { key, at, kind, audience });
        } else {
            self.later(at);
        }
    }
}

const BREACH_AUDIENCE: [Audience; 3] =
    [Audience::Assignee, Audience::Role(ContractRole::ServiceDesk), Audience::Role(ContractRole::ProjectManager)];

/// What is due for one ticket at `now`, and when to look again.
pub fn plan(contract: &CompiledContract, holidays: &HolidayTable, t: &TicketFacts<'_>, now: i64) -> Plan {
    let mut p = Planner { now, due: Vec::new(), next_at: None };
    let events: Cow<'_, [Event]> = if t.events.iter().any(|e| matches!(e.kind, EventKind::LevelSet(_))) {
        Cow::Borrowed(t.events)
    } else {
        let mut v = t.events.to_vec();
        v.push(Event { at: t.received_at, kind: EventKind::LevelSet(t.level.to_string()) });
        Cow::Owned(v)
    };
    let level = contract.file.levels.iter().find(|l| l.name.get_ref().trim() == t.level);
    let notify = level.is_some_and(|l| !l.notify.is_empty());
    let ended = t.resolved || t.closed_or_cancelled;

    if notify
        && ended
        && let Some(at) = resolution_in_force(&events, now)
    {
        p.add(
            at,
            format!("level-end:{at}"),
            NoticeKind::LevelNotifyEnd,
            vec![Audience::Role(ContractRole::ClientSupervisor)],
        );
    }
    if t.closed_or_cancelled {
        return finish(p);
    }

    if notify {
        p.add(
            t.received_at,
            "level-start".into(),
            NoticeKind::LevelNotifyStart,
            vec![Audience::Role(ContractRole::ClientSupervisor)],
        );
    }
    clocks(&mut p, contract, holidays, &events);

    if !t.resolved {
        // SD4: the level's progress reports, wall-clock from receipt.
        if let Some(every) = level.and_then(|l| l.progress_every.as_ref()).and_then(|e| parse_duration(e.get_ref())) {
            let n = if now >= t.received_at { (now - t.received_at) / every } else { 0 };
            if n >= 1 {
                let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                p.add(
                    t.received_at + n * every,
                    format!("progress:{n}"),
                    NoticeKind::Progress { n: n32 },
                    vec![Audience::Role(ContractRole::ClientSupervisor), Audience::Assignee],
                );
            }
            p.later(t.received_at.saturating_add((n + 1).saturating_mul(every)));
        }
        // SD5: the reporter's progress notices, in working days.
        let days = contract.desk.progress_notice_working_days;
        if days > 0 {
            let (mut n, mut at) = (0u32, t.received_at);
            loop {
                let next = add_working_days(at, days, holidays);
                if next > now {
                    p.later(next);
                    break;
                }
                (n, at) = (n + 1, next);
            }
            if n >= 1 {
                p.add(
                    at,
                    format!("reporter-progress:{n}"),
                    NoticeKind::ReporterProgress { n },
                    vec![Audience::Reporter],
                );
            }
        }
        // SD11: the escalation matrix of the ticket's incident class.
        if let Some(class) = t.incident_class {
            for step in contract.file.escalation.iter().filter(|s| s.class == class) {
                let (Some(after_ms), Some(to)) =
                    (parse_duration(step.after.get_ref()), ContractRole::parse(step.to.get_ref()))
                else {
                    continue;
                };
                p.add(
                    t.received_at.saturating_add(after_ms),
                    format!("escalate:{class}:{after_ms}:{}", to.as_str()),
                    NoticeKind::Escalation { class: class.to_string(), after_ms, to },
                    vec![Audience::Role(to)],
                );
            }
        }
    }

    let days = contract.desk.auto_close_working_days;
    if days > 0
        && let Some(since) = t.awaiting_confirmation_since
    {
        p.add(
            add_working_days(since, days, holidays),
            format!("auto-close:{since}"),
            NoticeKind::AutoClose,
            vec![Audience::Reporter],
        );
    }
    finish(p)
}

fn finish(mut p: Planner) -> Plan {
    p.due.sort_by(|a, b| (a.at, &a.key).cmp(&(b.at, &b.key)));
    Plan { due: p.due, next_at: p.next_at }
}

/// Reminders and breaches of every clock the ticket's level has a target for.
fn clocks(p: &mut Planner, contract: &CompiledContract, holidays: &HolidayTable, events: &[Event]) {
    let percent = i64::from(contract.desk.reminder_at_percent);
    for (rule, cal_name) in &contract.clocks {
        let Some(cal) = contract.calendars.get(cal_name) else { continue };
        let s = sla::evaluate(rule, cal, holidays, events, p.now);
        let (Some(due_at), Some(_)) = (s.due_at, s.target_ms) else { continue };
        if s.stopped_at.is_some() {
            continue;
        }
        let clock = &rule.name;
        match s.phase {
            Phase::Running => {
                // The instant the used time reaches the share: the due time of the same clock with
                // the shares as targets, walked by the engine over the same running intervals.
                let share = ClockRule {
                    targets: rule.targets.iter().map(|(l, t)| (l.clone(), (t * percent / 100).max(1))).collect(),
                    ..rule.clone()
                };
                if let Some(at) = sla::evaluate(&share, cal, holidays, events, p.now).due_at
                    && at < due_at
                {
                    p.add(
                        at,
                        format!("remind:{clock}:{due_at}"),
                        NoticeKind::Reminder { clock: clock.clone(), due_at },
                        vec![Audience::Assignee],
                    );
                }
                p.later(due_at);
            }
            Phase::Breached { .. } => p.add(
                due_at,
                format!("breach:{clock}:{due_at}"),
                NoticeKind::Breach { clock: clock.clone(), due_at },
                BREACH_AUDIENCE.to_vec(),
            ),
            _ => {}
        }
    }
}

/// The time of the resolution in force: the first `Resolved` after the last `Reopened` (up to now).
fn resolution_in_force(events: &[Event], now: i64) -> Option<i64> {
    let mut sorted: Vec<&Event> = events.iter().filter(|e| e.at <= now).collect();
    sorted.sort_by_key(|e| e.at);
    let mut current = None;
    for e in sorted {
        match e.kind {
            EventKind::Resolved if current.is_none() => current = Some(e.at),
            EventKind::Reopened => current = None,
            _ => {}
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_date;
    use crate::contract::{DeskRules, check};
    use proptest::prelude::*;

    const SEED_004: &[u8] = include_bytes!("../../../contracts/004-chengdu-dcm.toml");
    const H: i64 = 3_600_000;
    const M: i64 = 60_000;

    fn c004() -> CompiledContract {
        check(SEED_004).unwrap_or_else(|d| panic!("{d:#?}"))
    }

    /// Shanghai local time.
    fn at(date: &str, hh: i64, mm: i64) -> i64 {
        day_start_utc(parse_date(date).unwrap()) + hh * H + mm * M
    }

    fn ev(at: i64, kind: EventKind) -> Event {
        Event { at, kind }
    }

    fn dispatched(at: i64) -> Event {
        ev(at, EventKind::Custom("dispatched".into()))
    }

    fn opened(t0: i64, level: &str) -> Vec<Event> {
        vec![ev(t0, EventKind::Created), ev(t0, EventKind::LevelSet(level.into()))]
    }

    fn facts<'a>(level: &'a str, t0: i64, events: &'a [Event]) -> TicketFacts<'a> {
        TicketFacts {
            level,
            incident_class: None,
            received_at: t0,
            events,
            resolved: false,
            awaiting_confirmation_since: None,
            closed_or_cancelled: false,
        }
    }

    fn keys(p: &Plan) -> Vec<&str> {
        p.due.iter().map(|n| n.key.as_str()).collect()
    }

    fn notice<'a>(p: &'a Plan, key: &str) -> &'a Notice {
        p.due.iter().find(|n| n.key == key).unwrap_or_else(|| panic!("{key} not due: {:#?}", keys(p)))
    }

    #[test]
    fn the_004_desk_rules() {
        let c = c004();
        assert_eq!(
            c.desk,
            DeskRules {
                auto_close_working_days: 3,
                progress_notice_working_days: 3,
                reminder_at_percent: 80,
                fault_analysis_required: true,
                requests_need_approval: true,
                dispatch_clock: Some("dispatch".into()),
            }
        );
        let dispatch = c.clocks.iter().find(|(r, _)| r.name == "dispatch").unwrap();
        assert_eq!(dispatch.1, "hotline");
        assert_eq!(dispatch.0.stop, EventKind::Custom("dispatched".into()));
        for level in ["L1", "L2", "L3", "L4"] {
            assert_eq!(dispatch.0.targets[level], 10 * M, "{level}");
        }
    }

    #[test]
    fn l1_fault_of_004_exact_instants() {
        let c = c004();
        let h = HolidayTable::embedded();
        let t0 = at("2022-03-01", 10, 0);
        let untouched = opened(t0, "L1");
        let f = facts("L1", t0, &untouched);

        // At receipt: the level's notify list is told; the next thing is the response reminder.
        let p = plan(&c, &h, &f, t0);
        assert_eq!(keys(&p), vec!["level-start"]);
        assert_eq!(p.due[0].audience, vec![Audience::Role(ContractRole::ClientSupervisor)]);
        assert_eq!(p.next_at, Some(at("2022-03-01", 10, 4)));

        // Response 5 min: reminded at 80 % = 4 min, due 10:05.
        let p = plan(&c, &h, &f, at("2022-03-01", 10, 4));
        let due = at("2022-03-01", 10, 5);
        let r = notice(&p, &format!("remind:response:{due}"));
        assert_eq!(r.at, at("2022-03-01", 10, 4));
        assert_eq!(r.kind, NoticeKind::Reminder { clock: "response".into(), due_at: due });
        assert_eq!(r.audience, vec![Audience::Assignee]);
        assert_eq!(p.next_at, Some(due));

        // Nobody responds or dispatches: response breached at 10:05; dispatch (10 min) reminded at
        // 10:08 and breached at 10:10.
        let p = plan(&c, &h, &f, at("2022-03-01", 10, 9));
        let b = notice(&p, &format!("breach:response:{due}"));
        assert_eq!(b.at, due);
        assert_eq!(b.audience, BREACH_AUDIENCE.to_vec());
        let dispatch_due = at("2022-03-01", 10, 10);
        assert_eq!(notice(&p, &format!("remind:dispatch:{dispatch_due}")).at, at("2022-03-01", 10, 8));
        assert_eq!(p.next_at, Some(dispatch_due));
        let p = plan(&c, &h, &f, at("2022-03-01", 10, 10));
        assert_eq!(notice(&p, &format!("breach:dispatch:{dispatch_due}")).at, dispatch_due);
        assert!(!keys(&p).iter().any(|k| k.starts_with("remind:dispatch")), "a breached clock is not reminded");

        // The desk dispatches at 10:03 and the engineer responds at 10:04.
        let mut events = untouched.clone();
        events.push(dispatched(t0 + 3 * M));
        events.push(ev(t0 + 4 * M, EventKind::Responded));
        let f = facts("L1", t0, &events);
        let p = plan(&c, &h, &f, at("2022-03-01", 10, 30));
        assert_eq!(keys(&p), vec!["level-start"], "response and dispatch are met");
        // SD4: progress every hour; resolution (2 h) reminded at 96 min = 11:36.
        let p = plan(&c, &h, &f, at("2022-03-01", 11, 0));
        assert_eq!(keys(&p), vec!["level-start", "progress:1"]);
        assert_eq!(notice(&p, "progress:1").at, at("2022-03-01", 11, 0));
        assert_eq!(
            notice(&p, "progress:1").audience,
            vec![Audience::Role(ContractRole::ClientSupervisor), Audience::Assignee]
        );
        assert_eq!(p.next_at, Some(at("2022-03-01", 11, 36)));
        let resolution_due = at("2022-03-01", 12, 0);
        let p = plan(&c, &h, &f, at("2022-03-01", 11, 36));
        assert_eq!(notice(&p, &format!("remind:resolution:{resolution_due}")).at, at("2022-03-01", 11, 36));
        assert_eq!(p.next_at, Some(resolution_due));
        // 12:00: resolution breached, progress 2 (only the latest report is due).
        let p = plan(&c, &h, &f, resolution_due);
        assert_eq!(keys(&p), vec!["level-start", &format!("breach:resolution:{resolution_due}"), "progress:2"]);
        assert_eq!(notice(&p, "progress:2").at, resolution_due);
        assert_eq!(notice(&p, "progress:2").kind, NoticeKind::Progress { n: 2 });
        assert_eq!(p.next_at, Some(at("2022-03-01", 13, 0)));
        // SD5: the reporter hears on the third working day (Fri 4 March) at the time of receipt.
        let p = plan(&c, &h, &f, at("2022-03-04", 10, 0));
        assert_eq!(notice(&p, "reporter-progress:1").at, at("2022-03-04", 10, 0));
        assert_eq!(notice(&p, "reporter-progress:1").audience, vec![Audience::Reporter]);
    }

    #[test]
    fn working_days_skip_national_day_and_count_make_up_days() {
        let h = HolidayTable::embedded();
        let day = |s: &str| parse_date(s).unwrap();
        for d in ["2022-10-01", "2022-10-04", "2022-10-07"] {
            assert_eq!(h.day_kind(day(d)), (DayKind::Off, true), "{d}");
        }
        for d in ["2022-10-08", "2022-10-09"] {
            assert_eq!(h.day_kind(day(d)), (DayKind::Working, true), "make-up day {d}");
        }
        let fri = at("2022-09-30", 16, 0);
        assert_eq!(add_working_days(fri, 0, &h), fri);
        assert_eq!(add_working_days(fri, 1, &h), at("2022-10-08", 16, 0));
        assert_eq!(add_working_days(fri, 2, &h), at("2022-10-09", 16, 0));
        assert_eq!(add_working_days(fri, 3, &h), at("2022-10-10", 16, 0));
        // An ordinary weekend, and a start on a Sunday.
        assert_eq!(add_working_days(at("2022-03-04", 9, 30), 1, &h), at("2022-03-07", 9, 30));
        assert_eq!(add_working_days(at("2022-03-06", 23, 59), 1, &h), at("2022-03-07", 23, 59));
        // The Spring Festival 2026: make-up Saturday 14 Feb, holiday 15–23 Feb.
        assert_eq!(add_working_days(at("2026-02-13", 8, 0), 2, &h), at("2026-02-24", 8, 0));
    }

    #[test]
    fn reporter_progress_across_national_day() {
        let c = c004();
        let h = HolidayTable::embedded();
        let t0 = at("2022-09-30", 16, 0);
        let mut events = opened(t0, "L4");
        events.push(dispatched(t0 + 2 * M));
        events.push(ev(t0 + 10 * M, EventKind::Responded));
        let f = facts("L4", t0, &events);
        let third_working_day = at("2022-10-10", 16, 0);
        let p = plan(&c, &h, &f, third_working_day - 1);
        assert!(!keys(&p).iter().any(|k| k.starts_with("reporter-progress")), "{:?}", keys(&p));
        assert_eq!(p.next_at, Some(third_working_day), "resolution is long breached; nothing else is ahead");
        let p = plan(&c, &h, &f, third_working_day);
        let n = notice(&p, "reporter-progress:1");
        assert_eq!((n.at, &n.kind), (third_working_day, &NoticeKind::ReporterProgress { n: 1 }));
        assert_eq!(p.next_at, Some(at("2022-10-13", 16, 0)));
        // Three working days later only the second notice is due.
        let p = plan(&c, &h, &f, at("2022-10-13", 16, 0));
        assert!(keys(&p).contains(&"reporter-progress:2") && !keys(&p).contains(&"reporter-progress:1"));
        // Resolved: no more notices to the reporter.
        let resolved = TicketFacts { resolved: true, ..f };
        assert!(!keys(&plan(&c, &h, &resolved, at("2022-10-13", 16, 0))).iter().any(|k| k.starts_with("reporter")));
    }

    #[test]
    fn escalation_matrix_for_a_major_incident() {
        let c = c004();
        let h = HolidayTable::embedded();
        let t0 = at("2022-03-01", 10, 0);
        let mut events = opened(t0, "L3");
        events.push(dispatched(t0 + M));
        events.push(ev(t0 + 2 * M, EventKind::Responded));
        let f = TicketFacts { incident_class: Some("重大"), ..facts("L3", t0, &events) };
        let escalations = |p: &Plan| -> Vec<(i64, NoticeKind, Vec<Audience>)> {
            p.due
                .iter()
                .filter(|n| n.key.starts_with("escalate:"))
                .map(|n| (n.at, n.kind.clone(), n.audience.clone()))
                .collect()
        };
        let p = plan(&c, &h, &f, t0 + H - 1);
        assert!(escalations(&p).is_empty());
        assert_eq!(p.next_at, Some(t0 + H));
        let p = plan(&c, &h, &f, t0 + 5 * H);
        assert_eq!(escalations(&p).len(), 2);
        assert_eq!(notice(&p, "escalate:重大:3600000:service_desk").at, t0 + H);
        assert_eq!(notice(&p, "escalate:重大:14400000:engineer").at, t0 + 4 * H);
        let p = plan(&c, &h, &f, t0 + 48 * H);
        use ContractRole::*;
        let want: Vec<(i64, NoticeKind, Vec<Audience>)> =
            [(1, ServiceDesk), (4, Engineer), (24, BacklineExpert), (48, ProjectManager)]
                .into_iter()
                .map(|(hours, to)| {
                    (
                        t0 + hours * H,
                        NoticeKind::Escalation { class: "重大".into(), after_ms: hours * H, to },
                        vec![Audience::Role(to)],
                    )
                })
                .collect();
        assert_eq!(escalations(&p), want);
        // Another class follows its own steps; a resolved ticket escalates no further.
        let minor = TicketFacts { incident_class: Some("轻微"), ..f };
        assert_eq!(keys(&plan(&c, &h, &minor, t0 + 48 * H)).iter().filter(|k| k.starts_with("escalate")).count(), 1);
        let resolved = TicketFacts { resolved: true, ..f };
        assert!(escalations(&plan(&c, &h, &resolved, t0 + 48 * H)).is_empty());
    }

    #[test]
    fn suspension_moves_the_breach_of_a_pausable_clock() {
        let c = c004();
        let h = HolidayTable::embedded();
        let t0 = at("2022-03-01", 10, 0);
        let mut events = opened(t0, "L1");
        events.push(dispatched(t0 + M));
        events.push(ev(t0 + 2 * M, EventKind::Responded));
        events.push(ev(t0 + 30 * M, EventKind::Suspended));
        // While suspended the resolution clock is paused: no reminder, no breach, nothing to wait for.
        let f = facts("L1", t0, &events);
        let p = plan(&c, &h, &f, t0 + 45 * M);
        assert!(!keys(&p).iter().any(|k| k.contains("resolution")));
        assert_eq!(p.next_at, Some(t0 + H), "only the hourly progress report is ahead");
        events.push(ev(t0 + H, EventKind::Resumed));
        let f = facts("L1", t0, &events);
        // 30 min before and 66 min after the pause: the 80 % reminder at 12:06, the breach at 12:30.
        let due = at("2022-03-01", 12, 30);
        let p = plan(&c, &h, &f, at("2022-03-01", 12, 0));
        assert!(!keys(&p).iter().any(|k| k.starts_with("breach:resolution")), "{:?}", keys(&p));
        assert_eq!(p.next_at, Some(at("2022-03-01", 12, 6)));
        let p = plan(&c, &h, &f, at("2022-03-01", 12, 6));
        assert_eq!(notice(&p, &format!("remind:resolution:{due}")).at, at("2022-03-01", 12, 6));
        assert_eq!(p.next_at, Some(due));
        let p = plan(&c, &h, &f, due);
        assert_eq!(notice(&p, &format!("breach:resolution:{due}")).at, due);
        // Suspended again after the breach: the breach stays (the clock has not stopped).
        events.push(ev(due + M, EventKind::Suspended));
        let f = facts("L1", t0, &events);
        assert_eq!(notice(&plan(&c, &h, &f, due + 2 * M), &format!("breach:resolution:{due}")).at, due);
    }

    #[test]
    fn auto_close_after_three_working_days_and_the_end_notice() {
        let c = c004();
        let h = HolidayTable::embedded();
        let t0 = at("2022-03-03", 9, 0);
        let since = at("2022-03-03", 15, 0);
        let mut events = opened(t0, "L3");
        events.push(dispatched(t0 + M));
        events.push(ev(t0 + 2 * M, EventKind::Responded));
        events.push(ev(since, EventKind::Resolved));
        let events = events;
        let f = TicketFacts { resolved: true, awaiting_confirmation_since: Some(since), ..facts("L3", t0, &events) };
        // Thursday 15:00 → Fri, Mon, Tue: Tuesday 8 March 15:00.
        let close_at = at("2022-03-08", 15, 0);
        let p = plan(&c, &h, &f, close_at - 1);
        assert_eq!(keys(&p), vec!["level-start", &format!("level-end:{since}")]);
        assert_eq!(p.next_at, Some(close_at));
        let p = plan(&c, &h, &f, close_at);
        let n = notice(&p, &format!("auto-close:{since}"));
        assert_eq!((n.at, &n.kind, &n.audience), (close_at, &NoticeKind::AutoClose, &vec![Audience::Reporter]));
        assert_eq!(p.next_at, None);
        // Closed: only the end notice remains.
        let closed = TicketFacts { closed_or_cancelled: true, awaiting_confirmation_since: None, ..f };
        let p = plan(&c, &h, &closed, close_at);
        assert_eq!(keys(&p), vec![format!("level-end:{since}")]);
        assert_eq!(p.next_at, None);
        // auto_close_working_days = 0: never.
        let text = std::str::from_utf8(SEED_004).unwrap();
        let never =
            check(text.replacen("auto_close_working_days = 3", "auto_close_working_days = 0", 1).as_bytes()).unwrap();
        assert!(!keys(&plan(&never, &h, &f, close_at + 30 * 24 * H)).iter().any(|k| k.starts_with("auto-close")));
        // Reopened and resolved again: a new end notice.
        let mut again = events.clone();
        again.push(ev(since + H, EventKind::Reopened));
        again.push(ev(since + 2 * H, EventKind::Resolved));
        let again = TicketFacts { events: &again, ..closed };
        assert_eq!(keys(&plan(&c, &h, &again, close_at)), vec![format!("level-end:{}", since + 2 * H)]);
    }

    #[test]
    fn a_level_without_notify_or_progress_and_a_contract_without_desk_section() {
        let h = HolidayTable::embedded();
        let text = std::str::from_utf8(SEED_004).unwrap();
        let start = text.find("\n[desk]").unwrap();
        let end = text[start..].find("\n# -----").unwrap() + start;
        let plain =
            check(format!("{}{}", &text[..start], &text[end..]).as_bytes()).unwrap_or_else(|d| panic!("{d:#?}"));
        assert_eq!(plain.desk, DeskRules::default());
        let t0 = at("2022-03-01", 10, 0);
        let events = opened(t0, "NOSUCH");
        let p = plan(&plain, &h, &facts("NOSUCH", t0, &events), at("2022-03-04", 10, 0));
        // No clock has a target for an unknown level; the default SD5 notice still applies.
        assert_eq!(keys(&p), vec!["reporter-progress:1"]);
        // The level comes from the facts when the history has no LevelSet.
        let bare = [ev(t0, EventKind::Created)];
        let p = plan(&plain, &h, &facts("L2", t0, &bare), t0 + 10 * M);
        assert!(keys(&p).contains(&format!("breach:response:{}", t0 + 10 * M).as_str()), "{:?}", keys(&p));
    }

    fn arb_history() -> impl Strategy<Value = (Vec<Event>, Option<&'static str>)> {
        let kinds = prop_oneof![
            Just(EventKind::Suspended),
            Just(EventKind::Resumed),
            Just(EventKind::Resolved),
            Just(EventKind::Reopened),
            Just(EventKind::Responded),
            Just(EventKind::Custom("dispatched".into())),
            Just(EventKind::Custom("summary_submitted".into())),
            Just(EventKind::LevelSet("L1".into())),
            Just(EventKind::LevelSet("L4".into())),
        ];
        let levels = prop_oneof![Just("L1"), Just("L2"), Just("L3"), Just("L4")];
        let classes =
            prop_oneof![Just(None), Just(Some("重大")), Just(Some("严重")), Just(Some("一般")), Just(Some("轻微"))];
        (
            // 2019-01-01 … 2027-06-30, inside the embedded holiday data.
            1_546_272_000_000i64..1_814_400_000_000,
            levels,
            classes,
            proptest::collection::vec((0i64..30 * H, kinds), 0..10),
        )
            .prop_map(|(t0, level, class, rest)| {
                let mut v = vec![ev(t0, EventKind::Created), ev(t0, EventKind::LevelSet(level.into()))];
                let mut t = t0;
                for (dt, k) in rest {
                    t += dt;
                    v.push(ev(t, k));
                }
                (v, class)
            })
    }

    /// The facts a store would derive from the history up to `now`.
    fn derived<'a>(events: &'a [Event], class: Option<&'a str>, closed: bool) -> TicketFacts<'a> {
        let mut resolved_at = None;
        let mut level = "";
        for e in events {
            match &e.kind {
                EventKind::LevelSet(l) => level = l,
                EventKind::Resolved if resolved_at.is_none() => resolved_at = Some(e.at),
                EventKind::Reopened => resolved_at = None,
                _ => {}
            }
        }
        TicketFacts {
            level,
            incident_class: class,
            received_at: events[0].at,
            events,
            resolved: resolved_at.is_some() || closed,
            awaiting_confirmation_since: if closed { None } else { resolved_at },
            closed_or_cancelled: closed,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Nothing due lies in the future, the next instant lies after now, keys are unique and
        /// stable as time passes, and nothing that falls due later is missed by `next_at`.
        #[test]
        fn plans_are_consistent_over_time(
            (events, class) in arb_history(),
            closed in proptest::bool::weighted(0.2),
            extra in 0i64..100 * H,
            later in 0i64..200 * H,
        ) {
            let c = c004();
            let h = HolidayTable::embedded();
            let f = derived(&events, class, closed);
            let now1 = events.last().unwrap().at + extra;
            let now2 = now1 + later;
            let p1 = plan(&c, &h, &f, now1);
            let p2 = plan(&c, &h, &f, now2);
            for (p, now) in [(&p1, now1), (&p2, now2)] {
                prop_assert!(p.due.iter().all(|n| n.at <= now), "{:?}", p.due);
                prop_assert!(p.next_at.is_none_or(|n| n > now));
                let mut ks: Vec<&str> = keys(p);
                ks.sort_unstable();
                ks.dedup();
                prop_assert_eq!(ks.len(), p.due.len(), "keys are unique");
            }
            for n in &p1.due {
                if let Some(m) = p2.due.iter().find(|m| m.key == n.key) {
                    prop_assert_eq!(m.at, n.at, "{} moved", &n.key);
                    prop_assert_eq!(&m.kind, &n.kind);
                }
            }
            for m in p2.due.iter().filter(|m| m.at > now1) {
                prop_assert!(p1.next_at.is_some_and(|n| n <= m.at), "{} at {} missed: next_at {:?}", &m.key, m.at, p1.next_at);
            }
            // Calling at next_at finds something due at exactly that instant.
            if let Some(next) = p1.next_at {
                let p = plan(&c, &h, &f, next);
                prop_assert!(p.due.iter().any(|n| n.at == next), "nothing at next_at {}: {:?}", next, keys(&p));
            }
        }
    }
}
