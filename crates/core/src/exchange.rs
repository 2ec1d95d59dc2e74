//! Data-exchange interfaces (数据对接接口, BRIEF IN5; seed 004 tables 3-6 … 3-12): what one
//! interface pushes where and how often, the windows in which a push is expected, and how a
//! closed window is judged — a push observed (the pushing job called its heartbeat URL), and the
//! record counts of source and target agreeing within a tolerance.
//!
//! An interface is data ([`InterfaceDef`], JSON or TOML, unknown fields refused). [`check`]
//! reports every problem with its field path and a Chinese and English message, and returns the
//! resolved [`PushSchedule`].
//!
//! # Frequencies and windows
//!
//! The inspection grammar ([`crate::schedule::Frequency`]) counts runs per day at the finest; pushes
//! come every few minutes, so they have their own small grammar. It also reads the seed's own
//! wording, so that a row of table 3-6 can be pasted as it is:
//!
//! | text | also | window (Shanghai time) | default grace |
//! | --- | --- | --- | --- |
//! | `every 10 min`, `every 2 hours`, `hourly` | 每10分钟推送1次, 每半小时推送一次, 每1小时推送一次 | consecutive periods aligned to midnight (the period must divide a day) | half the period |
//! | `daily after 23:00` | 每天1次(23:00后推送) | from that time to midnight | 2 h |
//! | `daily` | 每天推送1次 | the whole day | 2 h |
//! | `once` | 一次性推送, 共对接1次 | from the interface's creation, for the grace period | 1 day |
//!
//! A window is decided when it has closed: at its end plus the grace period. A push counts for
//! every window whose span `[start, end + grace)` holds it, so a job that drifts a little late
//! still covers both neighbours. Automatic pushes run every day: no service calendar applies.
//!
//! # Judging a window
//!
//! [`judge`]: with a heartbeat, no push in the window is `missing`; with a count check, counts that
//! differ beyond the tolerance are `mismatch`, counts that could not be read are `error`; otherwise
//! `ok`. A missing push outranks a count finding (both are told).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::calendar::{MS_PER_DAY, MS_PER_MIN, SHANGHAI_OFFSET_MS, civil_from_days, day_start_utc, local_day};
use crate::contract::parse_duration;
use crate::inspection::{Problem, TicketRule};
use crate::ledger::Message;

/// Longest count query time-out an interface may ask for.
pub const MAX_QUERY_TIMEOUT_S: u32 = 120;
pub const DEFAULT_QUERY_TIMEOUT_S: u32 = 15;

/// How often an interface pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFrequency {
    /// Every N minutes (N divides a day), windows aligned to local midnight.
    Every { minutes: u32 },
    /// Once a day, after this many minutes past local midnight (0: any time of the day).
    DailyAfter { minute: u32 },
    /// One push in all.
    Once,
}

const EXAMPLES_ZH: &str = "every 10 min / every 30 min / hourly / every 2 hours / daily after 23:00 / daily / once，或合同原文如“每10分钟推送1次”“每天1次(23:00后推送)”“一次性推送”";
const EXAMPLES_EN: &str = "write e.g. \"every 10 min\", \"every 30 min\", \"hourly\", \"every 2 hours\", \"daily after 23:00\", \"daily\", \"once\", or the contract's wording (每10分钟推送1次, 每天1次(23:00后推送), 一次性推送)";

fn time_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// The number right after `marker` in `s` (`每10分钟` → 10); `None` when no digit follows.
fn number_after(s: &str, marker: &str) -> Option<u32> {
    let rest = &s[s.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl PushFrequency {
    /// Parses the English grammar or the seed contract's Chinese wording.
    pub fn parse(text: &str) -> Result<PushFrequency, Message> {
        let bad = || {
            Message::new(
                format!("无法识别的推送频率 {text:?}：可写 {EXAMPLES_ZH}"),
                format!("not a push frequency: {text:?}; {EXAMPLES_EN}"),
            )
        };
        let lower = text.trim().to_lowercase();
        if lower.is_empty() {
            return Err(Message::new(
                format!("缺少推送频率：可写 {EXAMPLES_ZH}"),
                format!("the push frequency is missing; {EXAMPLES_EN}"),
            ));
        }
        let f = if lower.is_ascii() {
            let words: Vec<&str> = lower.split_whitespace().collect();
            match words.as_slice() {
                ["once"] => PushFrequency::Once,
                ["hourly"] | ["every", "hour"] => PushFrequency::Every { minutes: 60 },
                ["daily"] => PushFrequency::DailyAfter { minute: 0 },
                ["daily", "after", t] => PushFrequency::DailyAfter { minute: time_of_day(t).ok_or_else(bad)? },
                ["every", n, unit] => {
                    let n: u32 = n.parse().map_err(|_| bad())?;
                    let per = match *unit {
                        "min" | "mins" | "minute" | "minutes" => 1,
                        "hour" | "hours" => 60,
                        _ => return Err(bad()),
                    };
                    PushFrequency::Every { minutes: n.checked_mul(per).ok_or_else(bad)? }
                }
                _ => return Err(bad()),
            }
        } else {
            // The seed's wording: spaces and full-width punctuation vary between rows.
            let s: String = lower
                .chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| match c {
                    '：' => ':',
                    '（' => '(',
                    '）' => ')',
                    c => c,
                })
                .collect();
            if s.contains("一次性") || s.contains("共对接1次") || s.contains("共对接一次") {
                PushFrequency::Once
            } else if s.contains("每半小时") {
                PushFrequency::Every { minutes: 30 }
            } else if s.contains("分钟") && s.contains('每') {
                PushFrequency::Every { minutes: number_after(&s, "每").ok_or_else(bad)? }
            } else if s.contains("小时") && s.contains('每') {
                PushFrequency::Every { minutes: 60 * number_after(&s, "每").unwrap_or(1) }
            } else if s.contains("每天") || s.contains("每日") {
                // "23:00后" / "23:00 后": the time just before 后.
                let minute = match s.find('后') {
                    Some(i) => {
                        let mut t: Vec<char> =
                            s[..i].chars().rev().take_while(|c| c.is_ascii_digit() || *c == ':').collect();
                        t.reverse();
                        time_of_day(&t.into_iter().collect::<String>()).ok_or_else(bad)?
                    }
                    None => 0,
                };
                PushFrequency::DailyAfter { minute }
            } else {
                return Err(bad());
            }
        };
        if let PushFrequency::Every { minutes } = f
            && (minutes == 0 || minutes > 1440 || 1440 % minutes != 0)
        {
            return Err(Message::new(
                format!(
                    "推送间隔 {minutes} 分钟无效：须能整除一天，如 5、10、15、20、30 分钟或 1、2、3、4、6、8、12 小时"
                ),
                format!(
                    "a push every {minutes} minutes does not divide a day; use e.g. 5, 10, 15, 20, 30 min or 1, 2, 3, 4, 6, 8, 12 hours"
                ),
            ));
        }
        Ok(f)
    }

    /// The frequency in the English grammar (what is stored and shown in lists).
    pub fn canonical(&self) -> String {
        match *self {
            PushFrequency::Every { minutes: 60 } => "hourly".into(),
            PushFrequency::Every { minutes } if minutes % 60 == 0 => format!("every {} hours", minutes / 60),
            PushFrequency::Every { minutes } => format!("every {minutes} min"),
            PushFrequency::DailyAfter { minute: 0 } => "daily".into(),
            PushFrequency::DailyAfter { minute } => format!("daily after {:02}:{:02}", minute / 60, minute % 60),
            PushFrequency::Once => "once".into(),
        }
    }

    /// How the frequency reads to people, Chinese and English.
    pub fn label(&self) -> Message {
        match *self {
            PushFrequency::Every { minutes: 30 } => Message::new("每半小时", "every 30 min"),
            PushFrequency::Every { minutes: 60 } => Message::new("每小时", "hourly"),
            PushFrequency::Every { minutes } if minutes % 60 == 0 => {
                Message::new(format!("每 {} 小时", minutes / 60), format!("every {} hours", minutes / 60))
            }
            PushFrequency::Every { minutes } => {
                Message::new(format!("每 {minutes} 分钟"), format!("every {minutes} min"))
            }
            PushFrequency::DailyAfter { minute: 0 } => Message::new("每天 1 次", "daily"),
            PushFrequency::DailyAfter { minute } => {
                let t = format!("{:02}:{:02}", minute / 60, minute % 60);
                Message::new(format!("每天 1 次（{t} 后）"), format!("daily after {t}"))
            }
            PushFrequency::Once => Message::new("一次性", "once"),
        }
    }

    /// The length of one window's own span (without grace); `None` for `once`.
    pub fn period_ms(&self) -> Option<i64> {
        match *self {
            PushFrequency::Every { minutes } => Some(i64::from(minutes) * MS_PER_MIN),
            PushFrequency::DailyAfter { .. } => Some(MS_PER_DAY),
            PushFrequency::Once => None,
        }
    }

    pub fn default_grace_ms(&self) -> i64 {
        match *self {
            PushFrequency::Every { minutes } => (i64::from(minutes) * MS_PER_MIN / 2).max(MS_PER_MIN),
            PushFrequency::DailyAfter { .. } => 2 * 3_600_000,
            PushFrequency::Once => MS_PER_DAY,
        }
    }

    /// The longest grace: beyond one period a push would count for windows it has nothing to do with.
    pub fn max_grace_ms(&self) -> i64 {
        self.period_ms().unwrap_or(366 * MS_PER_DAY)
    }
}

/// When a push is expected: from `start` to `end`, still accepted until `closes_at` (the grace
/// period), when the window is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PushWindow {
    pub start: i64,
    pub end: i64,
    pub closes_at: i64,
}

impl PushWindow {
    /// Whether a push received at `t` counts for this window.
    pub fn accepts(&self, t: i64) -> bool {
        t >= self.start && t < self.closes_at
    }
}

/// An interface's frequency and grace, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushSchedule {
    pub frequency: PushFrequency,
    pub grace_ms: i64,
}

impl PushSchedule {
    fn window_at(&self, start: i64) -> PushWindow {
        match self.frequency {
            PushFrequency::Every { minutes } => {
                let end = start + i64::from(minutes) * MS_PER_MIN;
                PushWindow { start, end, closes_at: end + self.grace_ms }
            }
            PushFrequency::DailyAfter { .. } => {
                let end = day_start_utc(local_day(start) + 1);
                PushWindow { start, end, closes_at: end + self.grace_ms }
            }
            PushFrequency::Once => PushWindow { start, end: start + self.grace_ms, closes_at: start + self.grace_ms },
        }
    }

    /// The first window that starts at or after `t`. `anchor` is when the interface began to be
    /// watched: the one window of a `once` interface starts there.
    pub fn first_window_from(&self, anchor: i64, t: i64) -> Option<PushWindow> {
        match self.frequency {
            PushFrequency::Every { minutes } => {
                // Windows are aligned to local midnight (the period divides a day).
                let p = i64::from(minutes) * MS_PER_MIN;
                let local = t + SHANGHAI_OFFSET_MS;
                let start = local.div_euclid(p) * p + if local.rem_euclid(p) == 0 { 0 } else { p };
                Some(self.window_at(start - SHANGHAI_OFFSET_MS))
            }
            PushFrequency::DailyAfter { minute } => {
                let at = |day: i64| day_start_utc(day) + i64::from(minute) * MS_PER_MIN;
                let day = local_day(t);
                let start = if at(day) >= t { at(day) } else { at(day + 1) };
                Some(self.window_at(start))
            }
            PushFrequency::Once => (t <= anchor).then(|| self.window_at(anchor)),
        }
    }

    /// The window after `w`.
    pub fn next_window(&self, anchor: i64, w: &PushWindow) -> Option<PushWindow> {
        self.first_window_from(anchor, w.start + 1)
    }

    /// The windows that start at or after `from` and have closed by `now`, oldest first; when
    /// more than `max` have, the latest `max` (older ones are left undecided: after a long outage
    /// of this server nobody can tell what happened then).
    pub fn closed_windows(&self, anchor: i64, from: i64, now: i64, max: usize) -> Vec<PushWindow> {
        let mut from = from;
        if let Some(p) = self.frequency.period_ms() {
            // Skip ahead instead of walking windows that would be dropped anyway.
            let earliest = now - self.grace_ms - (max as i64 + 1) * p;
            from = from.max(earliest);
        }
        let mut out = Vec::new();
        let mut w = self.first_window_from(anchor, from);
        while let Some(x) = w {
            if x.closes_at > now {
                break;
            }
            out.push(x);
            w = self.next_window(anchor, &x);
        }
        if out.len() > max {
            out.drain(..out.len() - max);
        }
        out
    }
}

/// How a closed window went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// No push observed.
    Missing,
    /// Source and target counts differ beyond the tolerance.
    Mismatch,
    /// The counts could not be read.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::Missing, Outcome::Mismatch, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Missing => "missing",
            Outcome::Mismatch => "mismatch",
            Outcome::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    pub fn label(self) -> crate::Msg {
        use crate::Msg;
        match self {
            Outcome::Ok => Msg::new("正常", "OK"),
            Outcome::Missing => Msg::new("未推送", "Missing push"),
            Outcome::Mismatch => Msg::new("记录数不一致", "Count mismatch"),
            Outcome::Error => Msg::new("核对失败", "Check failed"),
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

/// The record counts read for a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Counts {
    Measured {
        source: f64,
        target: f64,
    },
    /// Why they could not be read (which side, the database's words).
    Failed(Message),
}

/// How far source and target counts may differ.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tolerance {
    pub absolute: u64,
    /// Percent of the source count.
    pub percent: Option<f64>,
}

impl Tolerance {
    /// The largest difference allowed for this source count.
    pub fn allowed(&self, source: f64) -> f64 {
        let pct = self.percent.map(|p| p / 100.0 * source.abs()).unwrap_or(0.0);
        (self.absolute as f64).max(pct)
    }

    pub fn agrees(&self, source: f64, target: f64) -> bool {
        (source - target).abs() <= self.allowed(source)
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Judges one closed window: `heartbeat` whether pushes are observed, `pushes` how many were,
/// `counts` what the count check read (`None`: no count check for this window).
pub fn judge(heartbeat: bool, pushes: u32, counts: Option<&Counts>, tolerance: &Tolerance) -> (Outcome, Message) {
    let mut zh = Vec::new();
    let mut en = Vec::new();
    let mut outcome = Outcome::Ok;
    if heartbeat {
        if pushes == 0 {
            outcome = Outcome::Missing;
            zh.push("时段内未收到推送（心跳）".to_string());
            en.push("no push (heartbeat) received in the window".to_string());
        } else {
            zh.push(format!("收到 {pushes} 次推送"));
            en.push(format!("{pushes} push(es) received"));
        }
    }
    match counts {
        None => {}
        Some(Counts::Measured { source, target }) => {
            if tolerance.agrees(*source, *target) {
                zh.push(format!("源端 {} 条，目标端 {} 条，一致", num(*source), num(*target)));
                en.push(format!("source {} records, target {}: they agree", num(*source), num(*target)));
            } else {
                if outcome == Outcome::Ok {
                    outcome = Outcome::Mismatch;
                }
                let diff = (source - target).abs();
                zh.push(format!(
                    "源端 {} 条，目标端 {} 条，相差 {}，超出允许的 {}",
                    num(*source),
                    num(*target),
                    num(diff),
                    num(tolerance.allowed(*source))
                ));
                en.push(format!(
                    "source {} records, target {}: they differ by {}, more than the {} allowed",
                    num(*source),
                    num(*target),
                    num(diff),
                    num(tolerance.allowed(*source))
                ));
            }
        }
        Some(Counts::Failed(m)) => {
            if outcome == Outcome::Ok {
                outcome = Outcome::Error;
            }
            zh.push(format!("无法核对记录数：{}", m.zh));
            en.push(format!("the record counts could not be compared: {}", m.en));
        }
    }
    (outcome, Message::new(zh.join("；"), en.join("; ")))
}

// ---------------------------------------------------------------------------------------------
// Definitions

/// One interface as stored, edited and exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDef {
    /// Stable identifier within the contract (`3-6.12`): letters, digits, '.', '_', '-' (1–64).
    pub code: String,
    /// The data resource (`路灯当日信息`).
    pub name: String,
    /// What is pushed (数据内容), free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    pub source_system: String,
    pub target_system: String,
    /// See [`PushFrequency`].
    pub frequency: String,
    /// How long after a window's end a push still counts ("5m", "2h"); default per frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    /// The pushing job calls the interface's heartbeat URL after each push (default true).
    #[serde(default = "yes")]
    pub heartbeat: bool,
    /// Record counts of source and target compared when each window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_check: Option<CountCheck>,
    /// Anomalies become tickets at this rule's level; absent: anomalies are recorded only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<TicketRule>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountCheck {
    pub source: CountQuery,
    pub target: CountQuery,
    /// Largest difference in records that is still agreement (default 0).
    #[serde(default)]
    pub tolerance: u64,
    /// Or this percentage of the source count, whichever is larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_pct: Option<f64>,
}

impl CountCheck {
    pub fn tolerance(&self) -> Tolerance {
        Tolerance { absolute: self.tolerance, percent: self.tolerance_pct }
    }
}

/// A database query giving a count: a `postgres` or `mysql` probe of `yunwei-probes` whose `query`
/// returns the number in its first column. `{window_start}` and `{window_end}` in the query are
/// replaced by the window's bounds as SQL literals in Shanghai time (`'2026-03-02 23:00:00'`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountQuery {
    pub probe: serde_json::Value,
    /// The name of a stored probe credential (the inspection credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Seconds (1–120, default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
}

/// Shanghai wall time as an SQL literal: `'YYYY-MM-DD HH:MM:SS'`.
pub fn sql_time(ms: i64) -> String {
    let day = local_day(ms);
    let (y, m, d) = civil_from_days(day);
    let secs = (ms - day_start_utc(day)) / 1000;
    format!("'{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}'", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The probe with the window's bounds put into its strings.
pub fn probe_for_window(probe: &serde_json::Value, w: &PushWindow) -> serde_json::Value {
    use serde_json::Value;
    match probe {
        Value::String(s) => {
            Value::String(s.replace("{window_start}", &sql_time(w.start)).replace("{window_end}", &sql_time(w.end)))
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| probe_for_window(v, w)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), probe_for_window(v, w))).collect()),
        other => other.clone(),
    }
}

/// The source key of an interface's anomaly ticket: one open ticket per interface.
pub fn ticket_key(interface_id: i64) -> String {
    format!("iface:{interface_id}")
}

/// What a definition is checked against: the contract and the platform's probe checker.
pub struct InterfaceContext<'a> {
    pub levels: &'a [String],
    pub classes: &'a [String],
    /// Names of the contract's stored probe credentials.
    pub credentials: &'a [String],
    pub probe_check: &'a dyn Fn(&serde_json::Value) -> Result<(), Message>,
}

fn problem(out: &mut Vec<Problem>, field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) {
    out.push(Problem { field: field.into(), message: Message::new(zh, en) });
}

fn text_problem(out: &mut Vec<Problem>, field: &str, value: &str, max: usize, required: bool) {
    if let Err(m) = crate::text::single_line(value, max, required) {
        problem(out, field, format!("{}（至多 {max} 个字）", m.zh), format!("{} (at most {max} characters)", m.en));
    }
}

fn is_code(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The schedule of a definition: its frequency and grace.
pub fn schedule_of(def: &InterfaceDef) -> Result<PushSchedule, Vec<Problem>> {
    let mut out = Vec::new();
    let frequency = match PushFrequency::parse(&def.frequency) {
        Ok(f) => Some(f),
        Err(m) => {
            out.push(Problem { field: "frequency".into(), message: m });
            None
        }
    };
    let grace = match &def.grace {
        None => None,
        Some(text) => {
            let g = parse_duration(text);
            if g.is_none() {
                problem(
                    &mut out,
                    "grace",
                    format!("无法识别的时长 {text:?}：如 5m、30m、2h"),
                    format!("not a duration: {text:?}; write e.g. 5m, 30m, 2h"),
                );
            }
            g
        }
    };
    match (frequency, out.is_empty()) {
        (Some(frequency), true) => {
            let grace_ms = grace.unwrap_or_else(|| frequency.default_grace_ms());
            let max = frequency.max_grace_ms();
            if grace_ms < MS_PER_MIN || grace_ms > max {
                let max_text = if max % 3_600_000 == 0 {
                    format!("{}h", max / 3_600_000)
                } else {
                    format!("{}m", max / MS_PER_MIN)
                };
                problem(
                    &mut out,
                    "grace",
                    format!("宽限时长应在 1 分钟到 {max_text} 之间（不超过一个推送周期）"),
                    format!("grace is 1 minute to {max_text} (at most one push period)"),
                );
                return Err(out);
            }
            Ok(PushSchedule { frequency, grace_ms })
        }
        _ => Err(out),
    }
}

/// Checks a definition against its contract. Returns every problem, not just the first.
pub fn check(def: &InterfaceDef, ctx: &InterfaceContext<'_>) -> Result<PushSchedule, Vec<Problem>> {
    let mut out = Vec::new();
    if !is_code(def.code.trim()) {
        problem(
            &mut out,
            "code",
            format!("接口编号 {:?} 无效：1–64 个字母、数字、.、_、-（如 3-6.12）", def.code),
            format!("interface code {:?} is invalid: 1–64 letters, digits, '.', '_', '-' (e.g. 3-6.12)", def.code),
        );
    }
    text_problem(&mut out, "name", &def.name, 200, true);
    if let Err(m) = crate::text::multi_line(&def.content, 2_000) {
        problem(
            &mut out,
            "content",
            format!("{}（至多 2000 个字）", m.zh),
            format!("{} (at most 2000 characters)", m.en),
        );
    }
    text_problem(&mut out, "source_system", &def.source_system, 200, true);
    text_problem(&mut out, "target_system", &def.target_system, 200, true);
    let schedule = match schedule_of(def) {
        Ok(s) => Some(s),
        Err(p) => {
            out.extend(p);
            None
        }
    };
    if !def.heartbeat && def.count_check.is_none() {
        problem(
            &mut out,
            "heartbeat",
            "接口至少需要一种观测方式：心跳（heartbeat = true）或记录数核对（count_check）",
            "an interface needs a way to observe it: a heartbeat (heartbeat = true) or a count check (count_check)",
        );
    }
    if let Some(c) = &def.count_check {
        for (side, q) in [("source", &c.source), ("target", &c.target)] {
            let f = |s: &str| format!("count_check.{side}.{s}");
            let kind = q.probe.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            if !matches!(kind, "postgres" | "mysql") {
                problem(
                    &mut out,
                    f("probe"),
                    format!("记录数核对只支持 postgres 或 mysql 查询（当前 kind = {kind:?}）"),
                    format!("a count check is a postgres or mysql query (kind is {kind:?})"),
                );
            } else {
                let query = q.probe.get("query").and_then(|v| v.as_str()).unwrap_or("");
                if query.trim().is_empty() {
                    problem(
                        &mut out,
                        f("probe.query"),
                        "缺少计数查询（query），如 SELECT count(*) FROM …",
                        "the count query (query) is missing, e.g. SELECT count(*) FROM …",
                    );
                }
                if q.probe.get("expect").is_some() {
                    problem(
                        &mut out,
                        f("probe.expect"),
                        "计数查询不设期望值：源端与目标端的结果相互比较",
                        "a count query has no expected value: source and target are compared with each other",
                    );
                }
                // Checked as it will run: with a window's bounds in place.
                let sample = PushWindow { start: 0, end: 0, closes_at: 0 };
                if let Err(m) = (ctx.probe_check)(&probe_for_window(&q.probe, &sample)) {
                    out.push(Problem { field: f("probe"), message: m });
                }
            }
            if let Some(name) = &q.credential
                && !ctx.credentials.contains(name)
            {
                problem(
                    &mut out,
                    f("credential"),
                    format!("没有名为 {name:?} 的巡检凭据，请先保存凭据"),
                    format!("no probe credential named {name:?}; store it first"),
                );
            }
            if let Some(t) = q.timeout_s
                && !(1..=MAX_QUERY_TIMEOUT_S).contains(&t)
            {
                problem(
                    &mut out,
                    f("timeout_s"),
                    format!("超时应为 1 到 {MAX_QUERY_TIMEOUT_S} 秒"),
                    format!("timeout_s is 1 to {MAX_QUERY_TIMEOUT_S} seconds"),
                );
            }
        }
        if let Some(p) = c.tolerance_pct
            && !(p.is_finite() && (0.0..=100.0).contains(&p))
        {
            problem(&mut out, "count_check.tolerance_pct", "容差百分比应为 0 到 100", "tolerance_pct is 0 to 100");
        }
    }
    if let Some(rule) = &def.tickets {
        if ctx.levels.is_empty() {
            problem(
                &mut out,
                "tickets.level",
                "合同未定义工单级别（请先导入合同文件），不能自动建单",
                "the contract defines no ticket levels (import its contract file first); tickets cannot be raised",
            );
        } else if !ctx.levels.contains(&rule.level) {
            problem(
                &mut out,
                "tickets.level",
                format!("合同中没有级别 {:?}（已定义：{}）", rule.level, ctx.levels.join("、")),
                format!("the contract has no level {:?} (defined: {})", rule.level, ctx.levels.join(", ")),
            );
        }
        if !rule.incident_class.is_empty() && !ctx.classes.contains(&rule.incident_class) {
            problem(
                &mut out,
                "tickets.incident_class",
                format!("合同中没有事件等级 {:?}（已定义：{}）", rule.incident_class, ctx.classes.join("、")),
                format!(
                    "the contract has no incident class {:?} (defined: {})",
                    rule.incident_class,
                    ctx.classes.join(", ")
                ),
            );
        }
    }
    // One message per field is enough (a probe checked twice says the same thing twice).
    let mut seen = BTreeSet::new();
    out.retain(|p| seen.insert((p.field.clone(), p.message.en.clone())));
    match schedule {
        Some(s) if out.is_empty() => Ok(s),
        _ => Err(out),
    }
}

/// The definition with its texts trimmed, as stored.
pub fn normalised(def: &InterfaceDef) -> InterfaceDef {
    let mut d = def.clone();
    d.code = d.code.trim().to_string();
    d.name = d.name.trim().to_string();
    d.content = d.content.trim().to_string();
    d.source_system = d.source_system.trim().to_string();
    d.target_system = d.target_system.trim().to_string();
    d.frequency = d.frequency.trim().to_string();
    d
}

/// A definition written in TOML (the page accepts JSON or TOML); a format error names its line.
pub fn parse_toml(text: &str) -> Result<InterfaceDef, Problem> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        Problem {
            field: line.map(|l| format!("line {l}")).unwrap_or_default(),
            message: Message::new(
                format!("TOML 格式错误：{}", e.message()),
                format!("malformed TOML: {}", e.message()),
            ),
        }
    })
}

/// A definition as TOML, for editing; `None` when a probe holds what TOML cannot (a null).
pub fn to_toml(def: &InterfaceDef) -> Option<String> {
    toml::to_string_pretty(def).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse_date;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;

    fn at(date: &str, hh: i64, mm: i64) -> i64 {
        day_start_utc(parse_date(date).unwrap()) + hh * H + mm * MS_PER_MIN
    }

    fn every(m: u32) -> PushFrequency {
        PushFrequency::Every { minutes: m }
    }

    #[test]
    fn grammar_and_the_seed_wording() {
        for (text, want) in [
            ("every 10 min", every(10)),
            ("Every 30 minutes", every(30)),
            ("hourly", every(60)),
            ("every 2 hours", every(120)),
            ("every hour", every(60)),
            ("daily after 23:00", PushFrequency::DailyAfter { minute: 1380 }),
            ("daily", PushFrequency::DailyAfter { minute: 0 }),
            ("once", PushFrequency::Once),
            // Table 3-6 … 3-12 as written, spaces and full-width brackets included.
            ("每10分钟推送1次", every(10)),
            ("对接数据为实时推送，每 10 分钟推送 1 次", every(10)),
            ("每半小时推送一次", every(30)),
            ("每 1 小时推送一次", every(60)),
            ("每天 1 次(23:00 后推送)", PushFrequency::DailyAfter { minute: 1380 }),
            ("每天1次（23：00后推送）", PushFrequency::DailyAfter { minute: 1380 }),
            ("每天推送 1 次 (23:00 后推送)", PushFrequency::DailyAfter { minute: 1380 }),
            ("一次性推送", PushFrequency::Once),
            ("推送到城管委前置机，共对接 1 次", PushFrequency::Once),
        ] {
            assert_eq!(PushFrequency::parse(text), Ok(want), "{text}");
        }
        for bad in
            ["", "weekly", "every 7 min", "every 0 min", "every 25 hours", "daily after 25:00", "每周一次", "sometimes"]
        {
            let e = PushFrequency::parse(bad).unwrap_err();
            assert!(!e.zh.is_empty() && !e.en.is_empty(), "{bad}");
        }
        assert!(PushFrequency::parse("every 7 min").unwrap_err().en.contains("divide a day"));
        // The canonical text parses back to the same frequency.
        for f in [every(10), every(60), every(180), PushFrequency::DailyAfter { minute: 1380 }, PushFrequency::Once] {
            assert_eq!(PushFrequency::parse(&f.canonical()), Ok(f));
        }
        assert_eq!(every(30).label().zh, "每半小时");
    }

    #[test]
    fn periodic_windows_are_aligned_to_local_midnight() {
        let s = PushSchedule { frequency: every(10), grace_ms: 5 * MS_PER_MIN };
        let w = s.first_window_from(0, at("2026-03-02", 9, 3)).unwrap();
        assert_eq!(
            w,
            PushWindow {
                start: at("2026-03-02", 9, 10),
                end: at("2026-03-02", 9, 20),
                closes_at: at("2026-03-02", 9, 25)
            }
        );
        // A window starting exactly at t is that window.
        assert_eq!(s.first_window_from(0, at("2026-03-02", 9, 10)).unwrap().start, at("2026-03-02", 9, 10));
        let closed = s.closed_windows(0, at("2026-03-02", 9, 3), at("2026-03-02", 9, 44), 100);
        assert_eq!(
            closed.iter().map(|w| w.start).collect::<Vec<_>>(),
            vec![at("2026-03-02", 9, 10), at("2026-03-02", 9, 20)]
        );
        // Two-hour windows start at even local hours.
        let s = PushSchedule { frequency: every(120), grace_ms: H };
        assert_eq!(s.first_window_from(0, at("2026-03-02", 9, 0)).unwrap().start, at("2026-03-02", 10, 0));
        // The cap keeps the latest windows.
        let s = PushSchedule { frequency: every(10), grace_ms: 5 * MS_PER_MIN };
        let many = s.closed_windows(0, at("2026-03-01", 0, 0), at("2026-03-02", 0, 0), 6);
        assert_eq!(many.len(), 6);
        assert_eq!(many.last().unwrap().start, at("2026-03-01", 23, 40));
    }

    #[test]
    fn daily_after_and_once_windows() {
        let s = PushSchedule { frequency: PushFrequency::DailyAfter { minute: 1380 }, grace_ms: 2 * H };
        let w = s.first_window_from(0, at("2026-03-02", 8, 0)).unwrap();
        assert_eq!(
            w,
            PushWindow {
                start: at("2026-03-02", 23, 0),
                end: at("2026-03-03", 0, 0),
                closes_at: at("2026-03-03", 2, 0)
            }
        );
        assert!(w.accepts(at("2026-03-03", 1, 30)) && !w.accepts(at("2026-03-02", 22, 59)) && !w.accepts(w.closes_at));
        assert_eq!(s.next_window(0, &w).unwrap().start, at("2026-03-03", 23, 0));
        let closed = s.closed_windows(0, at("2026-03-02", 8, 0), at("2026-03-05", 1, 0), 10);
        assert_eq!(closed.len(), 2);
        let daily = PushSchedule { frequency: PushFrequency::DailyAfter { minute: 0 }, grace_ms: 2 * H };
        let w = daily.first_window_from(0, at("2026-03-02", 8, 0)).unwrap();
        assert_eq!((w.start, w.end), (at("2026-03-03", 0, 0), at("2026-03-04", 0, 0)));
        let once = PushSchedule { frequency: PushFrequency::Once, grace_ms: MS_PER_DAY };
        let anchor = at("2026-03-02", 8, 0);
        let w = once.first_window_from(anchor, anchor).unwrap();
        assert_eq!((w.start, w.closes_at), (anchor, anchor + MS_PER_DAY));
        assert_eq!(once.next_window(anchor, &w), None);
        assert_eq!(once.closed_windows(anchor, anchor, anchor + 2 * MS_PER_DAY, 10), vec![w]);
        assert!(once.closed_windows(anchor, anchor + 1, anchor + 2 * MS_PER_DAY, 10).is_empty());
    }

    #[test]
    fn windows_are_judged() {
        let tol = Tolerance::default();
        assert_eq!(judge(true, 1, None, &tol).0, Outcome::Ok);
        let (o, m) = judge(true, 0, None, &tol);
        assert_eq!(o, Outcome::Missing);
        assert!(m.zh.contains("未收到推送") && m.en.contains("no push"));
        let same = Counts::Measured { source: 120.0, target: 120.0 };
        let short = Counts::Measured { source: 120.0, target: 117.0 };
        assert_eq!(judge(false, 0, Some(&same), &tol).0, Outcome::Ok);
        let (o, m) = judge(true, 2, Some(&short), &tol);
        assert_eq!(o, Outcome::Mismatch);
        assert!(m.en.contains("differ by 3"), "{m:?}");
        assert_eq!(judge(true, 2, Some(&short), &Tolerance { absolute: 3, percent: None }).0, Outcome::Ok);
        assert_eq!(judge(true, 2, Some(&short), &Tolerance { absolute: 0, percent: Some(2.5) }).0, Outcome::Ok);
        assert_eq!(judge(true, 2, Some(&short), &Tolerance { absolute: 0, percent: Some(2.0) }).0, Outcome::Mismatch);
        let failed = Counts::Failed(Message::new("连接失败", "connecting failed"));
        assert_eq!(judge(true, 1, Some(&failed), &tol).0, Outcome::Error);
        // A missing push outranks the count finding; both are told.
        let (o, m) = judge(true, 0, Some(&short), &tol);
        assert_eq!(o, Outcome::Missing);
        assert!(m.en.contains("no push") && m.en.contains("differ"), "{m:?}");
    }

    fn ctx_check<T>(f: impl FnOnce(&InterfaceContext<'_>) -> T) -> T {
        let levels = vec!["L3".to_string(), "L4".to_string()];
        let classes = vec!["一般".to_string()];
        let creds = vec!["src-db".to_string()];
        let check = |v: &serde_json::Value| {
            if v.get("host").and_then(|h| h.as_str()).is_some_and(|h| !h.is_empty()) {
                Ok(())
            } else {
                Err(Message::new("缺少主机", "the host is missing"))
            }
        };
        f(&InterfaceContext { levels: &levels, classes: &classes, credentials: &creds, probe_check: &check })
    }

    fn def(json: serde_json::Value) -> InterfaceDef {
        serde_json::from_value(json).unwrap()
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "code": "3-6.12", "name": "路灯当日信息", "source_system": "数字化城管平台", "target_system": "市网络理政中心",
            "frequency": "每 1 小时推送一次",
            "count_check": {
                "source": {"probe": {"kind": "postgres", "host": "127.0.0.1", "query": "SELECT count(*) FROM lamp WHERE at >= {window_start}"}, "credential": "src-db"},
                "target": {"probe": {"kind": "mysql", "host": "127.0.0.1", "query": "SELECT count(*) FROM lamp"}},
                "tolerance": 2
            },
            "tickets": {"level": "L4"}
        })
    }

    #[test]
    fn definitions_are_checked_field_by_field() {
        let s = ctx_check(|c| check(&def(good()), c)).unwrap();
        assert_eq!(s, PushSchedule { frequency: every(60), grace_ms: 30 * MS_PER_MIN });
        assert!(def(good()).heartbeat, "heartbeat is on by default");
        let mut j = good();
        j["code"] = "3-6 12".into();
        j["name"] = "".into();
        j["frequency"] = "every 7 min".into();
        j["count_check"]["source"]["probe"]["kind"] = "http".into();
        j["count_check"]["target"]["probe"]["expect"] = serde_json::json!({"value": 1});
        j["count_check"]["target"]["probe"]["host"] = "".into();
        j["count_check"]["target"]["credential"] = "nobody".into();
        j["count_check"]["target"]["timeout_s"] = 500.into();
        j["count_check"]["tolerance_pct"] = 150.0.into();
        j["tickets"] = serde_json::json!({"level": "L9", "incident_class": "重大"});
        let problems = ctx_check(|c| check(&def(j), c)).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "code",
            "name",
            "frequency",
            "count_check.source.probe",
            "count_check.target.probe.expect",
            "count_check.target.probe",
            "count_check.target.credential",
            "count_check.target.timeout_s",
            "count_check.tolerance_pct",
            "tickets.level",
            "tickets.incident_class",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        assert!(problems.iter().all(|p| !p.message.zh.is_empty() && !p.message.en.is_empty()));
        // Nothing observes it; a grace longer than the period.
        let mut j = good();
        j["heartbeat"] = false.into();
        j.as_object_mut().unwrap().remove("count_check");
        j["grace"] = "2h".into();
        let problems = ctx_check(|c| check(&def(j), c)).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["grace", "heartbeat"]);
        // Unknown fields are refused by the format itself; TOML names the line.
        let mut j = good();
        j["colour"] = "red".into();
        assert!(serde_json::from_value::<InterfaceDef>(j).is_err());
        let t = parse_toml("code = \"a\"\nname = \"b\"\nsource_system = \"s\"\ntarget_system = \"t\"\nfrequency = \"once\"\ncolour = 1\n")
            .unwrap_err();
        assert_eq!(t.field, "line 6");
        // What the page shows for editing reads back the same.
        let d = def(good());
        assert_eq!(parse_toml(&to_toml(&d).unwrap()).unwrap(), d);
    }

    #[test]
    fn window_bounds_go_into_the_query() {
        let w = PushWindow { start: at("2026-03-02", 23, 0), end: at("2026-03-03", 0, 0), closes_at: 0 };
        let p = serde_json::json!({"kind": "postgres", "query": "SELECT count(*) FROM t WHERE at >= {window_start} AND at < {window_end}"});
        assert_eq!(
            probe_for_window(&p, &w)["query"],
            "SELECT count(*) FROM t WHERE at >= '2026-03-02 23:00:00' AND at < '2026-03-03 00:00:00'"
        );
        assert_eq!(ticket_key(7), "iface:7");
    }

    fn any_schedule() -> impl Strategy<Value = PushSchedule> {
        prop_oneof![
            (prop_oneof![Just(5u32), Just(10), Just(30), Just(60), Just(120), Just(1440)], 1i64..100).prop_map(
                |(m, g)| {
                    let f = every(m);
                    PushSchedule { frequency: f, grace_ms: (g * f.period_ms().unwrap() / 100).max(MS_PER_MIN) }
                }
            ),
            (0u32..1440, 1i64..24).prop_map(|(m, g)| PushSchedule {
                frequency: PushFrequency::DailyAfter { minute: m },
                grace_ms: g * H
            }),
        ]
    }

    proptest! {
        #[test]
        fn windows_are_consecutive_and_deciding_in_steps_changes_nothing(
            s in any_schedule(), from in 1_735_000_000_000i64..1_790_000_000_000, len in 0i64..3 * MS_PER_DAY, cut in 0i64..3 * MS_PER_DAY
        ) {
            let now = from + len;
            let all = s.closed_windows(0, from, now, 10_000);
            for w in &all {
                prop_assert!(w.start >= from && w.start < w.end && w.end <= w.closes_at && w.closes_at <= now);
            }
            for p in all.windows(2) {
                prop_assert!(p[0].start < p[1].start);
                // Periodic windows tile time; daily ones start at the same minute each day.
                prop_assert_eq!(s.next_window(0, &p[0]), Some(p[1]));
            }
            // Deciding at an earlier instant, then again from just after the last decided window,
            // gives the same windows (what the checker does pass after pass).
            let mid = from + cut.min(len);
            let mut first = s.closed_windows(0, from, mid, 10_000);
            let next_from = first.last().map(|w| w.start + 1).unwrap_or(from);
            first.extend(s.closed_windows(0, next_from, now, 10_000));
            prop_assert_eq!(first, all);
        }

        #[test]
        fn tolerance_is_symmetric_in_the_difference(s in 0u32..100_000, d in 0u32..1_000, abs in 0u64..500, pct in proptest::option::of(0.0f64..100.0)) {
            let t = Tolerance { absolute: abs, percent: pct };
            let (a, b) = (f64::from(s), f64::from(s) + f64::from(d));
            prop_assert_eq!(t.agrees(a, b), f64::from(d) <= t.allowed(a));
            prop_assert!(t.agrees(a, a));
        }
    }
}
