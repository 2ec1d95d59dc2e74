//! The SLA clock engine: from a ticket's event history, each clock's due time, time used and left,
//! pauses, met/breached, and the next instant its status changes.
//!
//! Rules (they are the contract's, made explicit):
//! - A clock starts at its start event (usually `Created`: the time the report was *received*, which
//!   the desk may enter later) and stops at its stop event (`Responded`, `Arrived`, `Resolved`, …).
//! - While the ticket is suspended (挂起), a clock whose rule says `pausable` does not run.
//! - A clock stopped by `Resolved`/`Confirmed` runs again from a `Reopened` event; the time between
//!   resolution and reopening does not count.
//! - **Level changes re-target from the original start**: the level in force when the clock is
//!   evaluated (the last `LevelSet` before it stopped, or before now) gives the target for the whole
//!   clock, measured from the original start. Raising a fault to a more urgent level can therefore
//!   make it overdue at once; that is the contract's intent (the fault was that urgent all along).
//! - Business time is counted on the clock's calendar ([`crate::calendar`]).
//!
//! Two derivations exist on purpose: [`ClockState`] folds events one by one (what a running service
//! keeps), [`evaluate`] rebuilds the running intervals from the whole history. Property tests check
//! that they agree.

use std::collections::{BTreeMap, BTreeSet};

use crate::calendar::{Calendar, HolidayTable, Span};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    Created,
    LevelSet(String),
    Responded,
    Arrived,
    Suspended,
    Resumed,
    Resolved,
    Reopened,
    Confirmed,
    /// A contract-specific milestone ("fault_report_submitted", "summary_submitted").
    Custom(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: i64,
    pub kind: EventKind,
}

/// One clock of a contract's SLA, e.g. "resolution: from created to resolved, pausable".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockRule {
    pub name: String,
    pub start: EventKind,
    pub stop: EventKind,
    pub pausable: bool,
    /// Target (business milliseconds) per level name; a level without an entry has no such clock.
    pub targets: BTreeMap<String, i64>,
}

impl ClockRule {
    fn reopenable(&self) -> bool {
        matches!(self.stop, EventKind::Resolved | EventKind::Confirmed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The start event has not happened.
    NotStarted,
    /// The ticket's level has no target for this clock.
    NoTarget,
    Running,
    Paused,
    Met,
    /// Over target by this much business time (still running, or stopped late).
    Breached {
        by_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockStatus {
    pub name: String,
    pub phase: Phase,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub target_ms: Option<i64>,
    /// When the target is (or was) reached; `None` while paused before reaching it.
    pub due_at: Option<i64>,
    pub used_ms: i64,
    /// Negative once breached.
    pub left_ms: Option<i64>,
    /// Suspensions that paused this clock; an open one has no end.
    pub paused: Vec<(i64, Option<i64>)>,
    /// The next instant at which this status changes without a new event (the breach moment).
    pub next_change_at: Option<i64>,
    /// Years crossed without holiday data ("holiday data missing for YYYY").
    pub missing_years: BTreeSet<i32>,
}

/// What both derivations reduce a history to: when the clock ran.
struct Timeline<'a> {
    level: Option<&'a str>,
    started_at: Option<i64>,
    /// Running intervals in order; only the last may be open.
    segments: &'a [(i64, Option<i64>)],
    paused: Vec<(i64, Option<i64>)>,
    /// Set when the clock is stopped for good (no open segment).
    stopped_at: Option<i64>,
}

/// Computes the status from a timeline.
fn status_from_segments(
    rule: &ClockRule,
    cal: &Calendar,
    holidays: &HolidayTable,
    tl: Timeline<'_>,
    now: i64,
) -> ClockStatus {
    let Timeline { level, started_at, segments, paused, stopped_at } = tl;
    let mut span = Span::default();
    let mut status = ClockStatus {
        name: rule.name.clone(),
        phase: Phase::NotStarted,
        started_at,
        stopped_at,
        target_ms: None,
        due_at: None,
        used_ms: 0,
        left_ms: None,
        paused,
        next_change_at: None,
        missing_years: BTreeSet::new(),
    };
    if started_at.is_none() {
        return status;
    }
    let target = level.and_then(|l| rule.targets.get(l)).copied();
    // Used time, and the due instant found by walking the segments in order.
    let mut used = 0i64;
    let mut due = None;
    for &(a, b) in segments {
        let end = b.unwrap_or(now).max(a);
        // Business time of the whole segment, and of the part before `now` (the same for every
        // closed segment, so it is computed once in the hot path).
        let whole = cal.business_between(a, end, holidays, &mut span);
        let chunk = if end <= now { whole } else { cal.business_between(a, now.max(a), holidays, &mut span) };
        if let (Some(t), None) = (target, due) {
            let remaining = t - used;
            // The open segment holds the due time ahead (or at) the point reached so far.
            if b.is_none() || whole >= remaining {
                due = cal.add_business(a, remaining.max(0), holidays, &mut span);
            }
        }
        used += chunk;
    }
    // A clock stopped before its target was reached: the due time it had when it stopped.
    let last_end = segments.last().and_then(|s| s.1);
    if let (Some(t), None, Some(_), Some(end)) = (target, due, stopped_at, last_end) {
        due = cal.add_business(end, (t - used).max(0), holidays, &mut span);
    }
    status.used_ms = used;
    status.missing_years = span.missing_years;
    let Some(target) = target else {
        status.phase = Phase::NoTarget;
        return status;
    };
    status.target_ms = Some(target);
    status.left_ms = Some(target - used);
    status.due_at = due;
    let open = segments.last().is_some_and(|(_, b)| b.is_none());
    status.phase = if stopped_at.is_some() && !open {
        if used <= target { Phase::Met } else { Phase::Breached { by_ms: used - target } }
    } else if used > target || (due.is_some_and(|d| d <= now) && used >= target) {
        Phase::Breached { by_ms: used - target }
    } else if open {
        status.next_change_at = due.filter(|d| *d > now);
        Phase::Running
    } else {
        Phase::Paused
    };
    status
}

/// Full-history derivation: sorts the events and rebuilds the running intervals.
pub fn evaluate(rule: &ClockRule, cal: &Calendar, holidays: &HolidayTable, events: &[Event], now: i64) -> ClockStatus {
    let mut events: Vec<&Event> = events.iter().filter(|e| e.at <= now).collect();
    events.sort_by_key(|e| e.at);
    let level = events.iter().rev().find_map(|e| match &e.kind {
        EventKind::LevelSet(l) => Some(l.as_str()),
        _ => None,
    });
    let start = events.iter().find(|e| e.kind == rule.start).map(|e| e.at);
    let Some(start) = start else {
        let tl = Timeline { level: None, started_at: None, segments: &[], paused: Vec::new(), stopped_at: None };
        return status_from_segments(rule, cal, holidays, tl, now);
    };
    // Intervals when the clock may not run: suspensions (if pausable) and resolved→reopened gaps.
    let mut blocked: Vec<(i64, Option<i64>)> = Vec::new();
    let mut paused: Vec<(i64, Option<i64>)> = Vec::new();
    let mut stopped: Option<i64> = None;
    let mut suspended: Option<i64> = None;
    for e in events.iter().filter(|e| e.at >= start) {
        match &e.kind {
            k if *k == rule.stop && stopped.is_none() => stopped = Some(e.at),
            EventKind::Reopened if rule.reopenable() => {
                if let Some(s) = stopped.take() {
                    blocked.push((s, Some(e.at)));
                }
            }
            EventKind::Suspended if rule.pausable && suspended.is_none() => suspended = Some(e.at),
            EventKind::Resumed if rule.pausable => {
                if let Some(s) = suspended.take() {
                    paused.push((s, Some(e.at)));
                }
            }
            _ => {}
        }
    }
    if let Some(s) = suspended {
        paused.push((s, None));
    }
    // Running = [start, stop or ∞) minus blocked and paused intervals.
    let mut cuts: Vec<(i64, Option<i64>)> = blocked.iter().chain(paused.iter()).copied().collect();
    if let Some(s) = stopped {
        cuts.push((s, None));
    }
    cuts.sort_by_key(|c| c.0);
    let mut segments: Vec<(i64, Option<i64>)> = Vec::new();
    let mut cursor = Some(start);
    for (a, b) in cuts {
        let Some(c) = cursor else { break };
        if a > c {
            segments.push((c, Some(a)));
        }
        cursor = b.map(|b| b.max(c));
    }
    if let Some(c) = cursor {
        segments.push((c, None));
    }
    // Only a clock stopped for good (no open segment) reports its stop time.
    let final_stop = if segments.last().is_some_and(|s| s.1.is_none()) { None } else { stopped };
    let level = level.map(str::to_string);
    let tl = Timeline {
        level: level.as_deref(),
        started_at: Some(start),
        segments: &segments,
        paused,
        stopped_at: final_stop,
    };
    status_from_segments(rule, cal, holidays, tl, now)
}

/// Incremental derivation: what a service keeps per clock, fed one event at a time (in time order).
#[derive(Debug, Clone, Default)]
pub struct ClockState {
    level: Option<String>,
    started_at: Option<i64>,
    segments: Vec<(i64, Option<i64>)>,
    paused: Vec<(i64, Option<i64>)>,
    suspended_since: Option<i64>,
    stopped_at: Option<i64>,
}

impl ClockState {
    fn running(&self) -> bool {
        self.segments.last().is_some_and(|s| s.1.is_none())
    }

    fn close_segment(&mut self, at: i64) {
        if let Some(last) = self.segments.last_mut()
            && last.1.is_none()
        {
            last.1 = Some(at.max(last.0));
        }
    }

    pub fn apply(&mut self, rule: &ClockRule, e: &Event) {
        if let EventKind::LevelSet(l) = &e.kind {
            self.level = Some(l.clone());
        }
        if self.started_at.is_none() {
            if e.kind == rule.start {
                self.started_at = Some(e.at);
                self.segments.push((e.at, None));
            }
            return;
        }
        match &e.kind {
            k if *k == rule.stop && self.stopped_at.is_none() => {
                self.close_segment(e.at);
                self.stopped_at = Some(e.at);
            }
            EventKind::Reopened if rule.reopenable() && self.stopped_at.is_some() => {
                self.stopped_at = None;
                if self.suspended_since.is_none() {
                    self.segments.push((e.at, None));
                }
            }
            EventKind::Suspended if rule.pausable && self.suspended_since.is_none() => {
                self.suspended_since = Some(e.at);
                self.paused.push((e.at, None));
                self.close_segment(e.at);
            }
            EventKind::Resumed if rule.pausable && self.suspended_since.is_some() => {
                self.suspended_since = None;
                if let Some(p) = self.paused.last_mut() {
                    p.1 = Some(e.at);
                }
                if self.stopped_at.is_none() && !self.running() {
                    self.segments.push((e.at, None));
                }
            }
            _ => {}
        }
    }

    pub fn status(&self, rule: &ClockRule, cal: &Calendar, holidays: &HolidayTable, now: i64) -> ClockStatus {
        // Zero-length segments (an event pair at one instant) change nothing; drop them so that both
        // derivations see the same intervals.
        let segments: Vec<(i64, Option<i64>)> =
            self.segments.iter().copied().filter(|(a, b)| b.is_none_or(|b| b > *a)).collect();
        let stopped = if self.running() { None } else { self.stopped_at };
        let tl = Timeline {
            level: self.level.as_deref(),
            started_at: self.started_at,
            segments: &segments,
            paused: self.paused.clone(),
            stopped_at: stopped,
        };
        status_from_segments(rule, cal, holidays, tl, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Days, Season, day_start_utc, parse_date};
    use proptest::prelude::*;

    const H: i64 = 3_600_000;
    const M: i64 = 60_000;

    fn at(date: &str, hh: i64, mm: i64) -> i64 {
        day_start_utc(parse_date(date).unwrap()) + hh * H + mm * M
    }

    fn rule(name: &str, stop: EventKind, pausable: bool, targets: &[(&str, i64)]) -> ClockRule {
        ClockRule {
            name: name.into(),
            start: EventKind::Created,
            stop,
            pausable,
            targets: targets.iter().map(|(l, t)| (l.to_string(), *t)).collect(),
        }
    }

    /// 004 on-site service hours, every day: May 1–Oct 31 07:30–22:30, Nov 1–Apr 30 07:30–21:30.
    fn onsite_004() -> Calendar {
        Calendar {
            days: Days::All,
            seasons: vec![
                Season { from: (5, 1), to: (10, 31), windows: vec![(450, 1350)] },
                Season { from: (11, 1), to: (4, 30), windows: vec![(450, 1290)] },
            ],
        }
    }

    fn ev(at: i64, kind: EventKind) -> Event {
        Event { at, kind }
    }

    #[test]
    fn seed_004_level_2_at_21_00_on_a_winter_friday_before_the_spring_festival() {
        // 004 table 3-? : L2 responds within 10 min, resolves within 3 h. Reported Friday
        // 2026-02-13 21:00; the Spring Festival holiday starts Sunday 15 Feb.
        let h = HolidayTable::embedded();
        let response = rule("response", EventKind::Responded, false, &[("L2", 10 * M)]);
        let resolution = rule("resolution", EventKind::Resolved, true, &[("L2", 3 * H)]);
        let events = vec![
            ev(at("2026-02-13", 21, 0), EventKind::Created),
            ev(at("2026-02-13", 21, 0), EventKind::LevelSet("L2".into())),
        ];
        let now = at("2026-02-13", 21, 5);
        // On the 7×24 hotline the response is due 21:10 the same evening …
        let r = evaluate(&response, &Calendar::always(), &h, &events, now);
        assert_eq!(r.due_at, Some(at("2026-02-13", 21, 10)));
        assert_eq!(r.phase, Phase::Running);
        assert_eq!(r.next_change_at, Some(at("2026-02-13", 21, 10)));
        // … while resolution on the winter on-site hours (closing 21:30) has 30 minutes tonight and
        // 2 h 30 min from 07:30 on Saturday (the service runs on weekends and holidays too): 10:00.
        let s = evaluate(&resolution, &onsite_004(), &h, &events, now);
        assert_eq!(s.due_at, Some(at("2026-02-14", 10, 0)));
        // On a working-day office calendar (08:30–12:00, 14:00–17:30) the same fault would be due on
        // the make-up Saturday 14 Feb at 11:30, and an 8 h target uses all 7 h of that Saturday and
        // runs past the whole holiday to Tuesday 24 Feb 09:30.
        let office = Calendar {
            days: Days::WorkingDays,
            seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![(510, 720), (840, 1050)] }],
        };
        assert_eq!(evaluate(&resolution, &office, &h, &events, now).due_at, Some(at("2026-02-14", 11, 30)));
        let l4 = rule("resolution", EventKind::Resolved, true, &[("L2", 8 * H)]);
        assert_eq!(evaluate(&l4, &office, &h, &events, now).due_at, Some(at("2026-02-24", 9, 30)));
    }

    #[test]
    fn seed_003_general_fault_within_one_week_across_the_spring_festival() {
        // 003 §6: level 5 "一般" is resolved "1周内". Chosen reading: one working week, i.e. five
        // working days counted on the Chinese working-day calendar (whole days), so that holidays
        // extend it and make-up workdays count.
        let h = HolidayTable::embedded();
        let working_days = Calendar { days: Days::WorkingDays, seasons: Vec::new() };
        let rule = rule("resolution", EventKind::Resolved, true, &[("一般", 5 * 24 * H)]);
        let events = vec![
            ev(at("2026-02-12", 10, 0), EventKind::Created),
            ev(at("2026-02-12", 10, 0), EventKind::LevelSet("一般".into())),
        ];
        let s = evaluate(&rule, &working_days, &h, &events, at("2026-02-12", 10, 0));
        // Thu 12 (14 h) + Fri 13 + make-up Sat 14 + (holiday 15–23) + Tue 24 + Wed 25 = 110 h; 10 h of Thu 26.
        assert_eq!(s.due_at, Some(at("2026-02-26", 10, 0)));
        assert!(s.missing_years.is_empty());
    }

    #[test]
    fn suspension_pauses_and_resolution_stops() {
        let h = HolidayTable::embedded();
        let cal = Calendar::always();
        let rule = rule("resolution", EventKind::Resolved, true, &[("L3", 4 * H)]);
        let t0 = at("2026-03-02", 9, 0);
        let events = vec![
            ev(t0, EventKind::Created),
            ev(t0, EventKind::LevelSet("L3".into())),
            ev(t0 + H, EventKind::Suspended),
            ev(t0 + 3 * H, EventKind::Resumed),
            ev(t0 + 5 * H, EventKind::Resolved),
        ];
        let s = evaluate(&rule, &cal, &h, &events, t0 + 10 * H);
        assert_eq!(s.used_ms, 3 * H);
        assert_eq!(s.due_at, Some(t0 + 6 * H), "two hours of suspension push the due time");
        assert_eq!(s.phase, Phase::Met);
        assert_eq!(s.paused, vec![(t0 + H, Some(t0 + 3 * H))]);
        // Paused right now: no due time, time left frozen.
        let s = evaluate(&rule, &cal, &h, &events[..3], t0 + 2 * H);
        assert_eq!(s.phase, Phase::Paused);
        assert_eq!(s.left_ms, Some(3 * H));
        assert_eq!(s.next_change_at, None);
    }

    #[test]
    fn late_fix_is_breached_by_the_overrun_and_level_change_retargets() {
        let h = HolidayTable::embedded();
        let cal = Calendar::always();
        let rule = rule("resolution", EventKind::Resolved, false, &[("L1", 2 * H), ("L4", 5 * H)]);
        let t0 = at("2026-03-02", 9, 0);
        let mut events = vec![ev(t0, EventKind::Created), ev(t0, EventKind::LevelSet("L4".into()))];
        assert_eq!(evaluate(&rule, &cal, &h, &events, t0 + H).due_at, Some(t0 + 5 * H));
        // Raised to L1 after 3 h: re-targeted from the original start, so already 1 h over.
        events.push(ev(t0 + 3 * H, EventKind::LevelSet("L1".into())));
        let s = evaluate(&rule, &cal, &h, &events, t0 + 3 * H);
        assert_eq!(s.due_at, Some(t0 + 2 * H));
        assert_eq!(s.phase, Phase::Breached { by_ms: H });
        events.push(ev(t0 + 4 * H, EventKind::Resolved));
        let s = evaluate(&rule, &cal, &h, &events, t0 + 9 * H);
        assert_eq!(s.phase, Phase::Breached { by_ms: 2 * H });
        assert_eq!(s.stopped_at, Some(t0 + 4 * H));
        // A level without a target for this clock.
        let other = ClockRule { targets: BTreeMap::new(), ..rule.clone() };
        assert_eq!(evaluate(&other, &cal, &h, &events, t0 + 9 * H).phase, Phase::NoTarget);
    }

    #[test]
    fn reopening_resumes_the_resolution_clock() {
        let h = HolidayTable::embedded();
        let cal = Calendar::always();
        let rule = rule("resolution", EventKind::Resolved, false, &[("L3", 4 * H)]);
        let t0 = at("2026-03-02", 9, 0);
        let events = vec![
            ev(t0, EventKind::Created),
            ev(t0, EventKind::LevelSet("L3".into())),
            ev(t0 + H, EventKind::Resolved),
            ev(t0 + 10 * H, EventKind::Reopened),
        ];
        let s = evaluate(&rule, &cal, &h, &events, t0 + 11 * H);
        assert_eq!(s.used_ms, 2 * H);
        assert_eq!(s.due_at, Some(t0 + 13 * H), "3 h left after reopening at +10 h");
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.stopped_at, None);
    }

    fn arb_events() -> impl Strategy<Value = Vec<Event>> {
        let kinds = prop_oneof![
            Just(EventKind::Suspended),
            Just(EventKind::Resumed),
            Just(EventKind::Resolved),
            Just(EventKind::Reopened),
            Just(EventKind::Responded),
            Just(EventKind::LevelSet("L1".into())),
            Just(EventKind::LevelSet("L3".into())),
        ];
        (1_767_225_600_000i64..1_800_000_000_000, proptest::collection::vec((1i64..48 * H, kinds), 0..10)).prop_map(
            |(t0, rest)| {
                let mut v = vec![ev(t0, EventKind::Created), ev(t0, EventKind::LevelSet("L3".into()))];
                let mut t = t0;
                for (dt, k) in rest {
                    t += dt;
                    v.push(ev(t, k));
                }
                v
            },
        )
    }

    fn arb_calendar() -> impl Strategy<Value = Calendar> {
        prop_oneof![
            Just(Calendar::always()),
            Just(onsite_004()),
            Just(Calendar {
                days: Days::WorkingDays,
                seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![(510, 720), (840, 1050)] }]
            }),
        ]
    }

    fn rules() -> Vec<ClockRule> {
        vec![
            rule("response", EventKind::Responded, false, &[("L1", 5 * M), ("L3", 20 * M)]),
            rule("resolution", EventKind::Resolved, true, &[("L1", 2 * H), ("L3", 4 * H)]),
        ]
    }

    proptest! {
        #[test]
        fn incremental_equals_full_history(events in arb_events(), cal in arb_calendar(), extra in 0i64..100 * H) {
            let h = HolidayTable::embedded();
            let now = events.last().unwrap().at + extra;
            for rule in rules() {
                let mut state = ClockState::default();
                for e in &events {
                    state.apply(&rule, e);
                }
                prop_assert_eq!(state.status(&rule, &cal, &h, now), evaluate(&rule, &cal, &h, &events, now));
            }
        }

        #[test]
        fn used_time_never_exceeds_wall_clock(events in arb_events(), cal in arb_calendar(), extra in 0i64..100 * H) {
            let h = HolidayTable::embedded();
            let now = events.last().unwrap().at + extra;
            for rule in rules() {
                let s = evaluate(&rule, &cal, &h, &events, now);
                prop_assert!(s.used_ms >= 0);
                prop_assert!(s.used_ms <= now - s.started_at.unwrap());
            }
        }

        #[test]
        fn adding_a_pause_never_makes_a_due_time_earlier(cal in arb_calendar(), t0 in 1_767_225_600_000i64..1_800_000_000_000, p in 0i64..10 * H, len in 1i64..30 * H) {
            let h = HolidayTable::embedded();
            let rule = &rules()[1];
            let base = vec![ev(t0, EventKind::Created), ev(t0, EventKind::LevelSet("L3".into()))];
            let mut paused = base.clone();
            paused.push(ev(t0 + p, EventKind::Suspended));
            paused.push(ev(t0 + p + len, EventKind::Resumed));
            let now = t0 + p + len;
            let without = evaluate(rule, &cal, &h, &base, now).due_at.unwrap();
            let with = evaluate(rule, &cal, &h, &paused, now);
            // Breached before the pause began: the due time lies before it and is unchanged.
            prop_assert!(with.due_at.unwrap() >= without);
        }
    }
}
