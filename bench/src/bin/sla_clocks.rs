//! SLA clock benchmark (issue 3): due-time computation for 1,000,000 clocks over mixed calendars,
//! each with a few pauses, on one core. Not a test: run in release mode and record in BENCHMARKS.md.
//!
//!   cargo run --release -p yunwei-bench --bin sla_clocks -- [clocks] [runs]

use std::time::Instant;

use yunwei_core::calendar::{Calendar, Days, HolidayTable, Season};
use yunwei_core::sla::{ClockRule, Event, EventKind, Phase, evaluate};

const H: i64 = 3_600_000;

/// A small deterministic generator, so every run computes the same clocks.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clocks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let holidays = HolidayTable::embedded();
    let calendars = [
        Calendar::always(),
        Calendar {
            days: Days::WorkingDays,
            seasons: vec![Season { from: (1, 1), to: (12, 31), windows: vec![(510, 720), (840, 1050)] }],
        },
        Calendar {
            days: Days::All,
            seasons: vec![
                Season { from: (5, 1), to: (10, 31), windows: vec![(450, 1350)] },
                Season { from: (11, 1), to: (4, 30), windows: vec![(450, 1290)] },
            ],
        },
        Calendar { days: Days::WorkingDays, seasons: Vec::new() },
    ];
    let levels = ["L1", "L2", "L3", "L4"];
    let rule = ClockRule {
        name: "resolution".into(),
        start: EventKind::Created,
        stop: EventKind::Resolved,
        pausable: true,
        targets: [("L1", 2 * H), ("L2", 3 * H), ("L3", 4 * H), ("L4", 5 * H * 24)]
            .iter()
            .map(|(l, t)| (l.to_string(), *t))
            .collect(),
    };
    // 10,000 distinct histories over 2025–2027 (holidays, make-up days, both seasons), each with
    // 0–3 suspensions and, for half of them, a resolution.
    let mut rng = Lcg(42);
    let histories: Vec<(usize, Vec<Event>, i64)> = (0..10_000)
        .map(|_| {
            let t0 = 1_735_689_600_000 + rng.next(3 * 365 * 24) as i64 * H;
            let mut events = vec![
                Event { at: t0, kind: EventKind::Created },
                Event { at: t0, kind: EventKind::LevelSet(levels[rng.next(4) as usize].into()) },
            ];
            let mut t = t0;
            for _ in 0..rng.next(4) {
                t += rng.next(6 * H as u64) as i64 + 60_000;
                events.push(Event { at: t, kind: EventKind::Suspended });
                t += rng.next(12 * H as u64) as i64 + 60_000;
                events.push(Event { at: t, kind: EventKind::Resumed });
            }
            if rng.next(2) == 0 {
                t += rng.next(8 * H as u64) as i64;
                events.push(Event { at: t, kind: EventKind::Resolved });
            }
            (rng.next(calendars.len() as u64) as usize, events, t + rng.next(48 * H as u64) as i64)
        })
        .collect();
    let mut times = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let (mut breached, mut due_sum) = (0usize, 0i64);
        for i in 0..clocks {
            let (cal, events, now) = &histories[i % histories.len()];
            let s = evaluate(&rule, &calendars[*cal], &holidays, events, *now + (i / histories.len()) as i64);
            if matches!(s.phase, Phase::Breached { .. }) {
                breached += 1;
            }
            due_sum = due_sum.wrapping_add(s.due_at.unwrap_or(0));
        }
        let secs = started.elapsed().as_secs_f64();
        times.push(secs);
        println!(
            "{{\"kind\":\"sla_clocks\",\"run\":{run},\"clocks\":{clocks},\"seconds\":{secs:.3},\"clocks_per_sec\":{:.0},\"breached\":{breached},\"checksum\":{due_sum}}}",
            clocks as f64 / secs
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "median {:.3} s (min {:.3}, max {:.3}) for {clocks} clocks on one thread",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
