//! The contract file: one TOML file describes one contract; this module parses it, checks it and
//! turns its service calendars and SLA clocks into the engine's types.
//!
//! Every error carries the line and column it refers to and a hint, so that `yunwei contract check`
//! can print `FILE:LINE:COL: message (hint)`. This first version covers the header, sites, calendars,
//! clocks, levels with their targets and progress notifications, and the escalation matrix; the
//! service catalog, staffing, assessment and money rules follow in the next format version.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::calendar::{Calendar, Days, Season};
use crate::sla::{ClockRule, EventKind};

/// Files larger than this are refused before parsing (a contract is a few kilobytes).
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractFile {
    #[schemars(with = "u32")]
    pub format: Spanned<u32>,
    pub contract: Header,
    #[serde(default)]
    pub sites: Vec<SiteDef>,
    /// The managed business systems (AS4); the asset ledger holds their components.
    #[serde(default)]
    pub systems: Vec<SystemDef>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, CalendarDef>")]
    pub calendars: BTreeMap<String, Spanned<CalendarDef>>,
    #[serde(default)]
    pub clocks: Vec<ClockDef>,
    #[serde(default)]
    pub levels: Vec<LevelDef>,
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
    /// KP1: the periodic scorecard.
    #[serde(default)]
    pub assessment: Option<Assessment>,
    /// KP2: what points and breaches cost.
    #[serde(default)]
    pub money: Option<Money>,
    /// The service catalog: recurring duties (inspection plan templates) …
    #[serde(default)]
    pub duties: Vec<Duty>,
    /// … and the deliverables the client receives.
    #[serde(default)]
    pub deliverables: Vec<Deliverable>,
    /// Staffing requirements (EM4).
    #[serde(default)]
    pub staffing: Vec<StaffingWindow>,
    /// Limits on changing the on-site team (EM5).
    #[serde(default)]
    pub staffing_limits: Option<StaffingLimits>,
    /// Budget lines (000 §4: cycle, count, minutes per run, person-months, unit price).
    #[serde(default)]
    pub budget: Vec<BudgetLine>,
    /// The payment schedule.
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// How the service desk handles tickets (SD5, SD7, SD8, auto-close); absent: the defaults.
    #[serde(default)]
    pub desk: Option<DeskDef>,
}

/// `[desk]`: the service desk's rules. Every field is optional; an absent field takes its default.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeskDef {
    /// A ticket waiting for the reporter's confirmation closes by itself after this many Chinese
    /// working days (holidays excluded, make-up workdays included); 0: never. Default 3, at most 30.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(max = 30), extend("default" = 3))]
    pub auto_close_working_days: Option<Spanned<u32>>,
    /// SD5: a ticket not resolved this many working days after it was received is reported to its
    /// reporter, and again every further this many working days; 0: off. Default 3, at most 30.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(max = 30), extend("default" = 3))]
    pub progress_notice_working_days: Option<Spanned<u32>>,
    /// The assignee is reminded when this share of a running clock's target is used. Default 80,
    /// 1 to 99.
    #[serde(default)]
    #[schemars(with = "Option<u32>", range(min = 1, max = 99), extend("default" = 80))]
    pub reminder_at_percent: Option<Spanned<u32>>,
    /// SD7: a fault needs its analysis record (cause, handling, impact, recommendations) before it
    /// can be solved. Default false.
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub fault_analysis_required: Option<bool>,
    /// SD8: service requests wait for the client supervisor's approval. Default false.
    #[serde(default)]
    #[schemars(extend("default" = false))]
    pub requests_need_approval: Option<bool>,
    /// The clock that measures dispatching (SD2); it must exist in `[[clocks]]` and stop at the
    /// milestone "dispatched".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub dispatch_clock: Option<Spanned<String>>,
}

/// The desk's rules with every default resolved (`[desk]` in the contract file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskRules {
    /// 0: never closes automatically.
    pub auto_close_working_days: u32,
    /// 0: no progress notices to the reporter.
    pub progress_notice_working_days: u32,
    /// 1 to 99.
    pub reminder_at_percent: u32,
    pub fault_analysis_required: bool,
    pub requests_need_approval: bool,
    pub dispatch_clock: Option<String>,
}

/// Largest `auto_close_working_days` and `progress_notice_working_days`.
pub const MAX_DESK_WORKING_DAYS: u32 = 30;

/// The milestone that stops the `dispatch_clock`.
pub const DISPATCHED: &str = "dispatched";

impl Default for DeskRules {
    fn default() -> Self {
        DeskRules {
            auto_close_working_days: 3,
            progress_notice_working_days: 3,
            reminder_at_percent: 80,
            fault_analysis_required: false,
            requests_need_approval: false,
            dispatch_clock: None,
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Duty {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub name: String,
    /// What is checked or done, in the contract's words.
    #[serde(default)]
    pub scope: String,
    /// See [`crate::schedule::Frequency`].
    #[schemars(with = "String")]
    pub frequency: Spanned<String>,
    /// Runs fall only on days this calendar serves (e.g. working days); default: every day.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub calendar: Option<Spanned<String>>,
    /// The deliverable the runs feed.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub deliverable: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deliverable {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub name: String,
    /// See [`crate::schedule::Frequency`]; `by`/`on` give the due time.
    #[schemars(with = "String")]
    pub due: Spanned<String>,
    #[serde(default)]
    pub to: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffingWindow {
    /// "all", "working_days" or "non_working_days" (weekends and holidays).
    #[schemars(with = "String")]
    pub days: Spanned<String>,
    /// Optional season ("MM-DD"), as in calendars.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub to: Option<Spanned<String>>,
    /// "HH:MM-HH:MM"
    #[schemars(with = "String")]
    pub hours: Spanned<String>,
    pub min_people: u32,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffingLimits {
    /// Changes of on-site staff allowed per assessment period without penalty.
    pub max_changes_per_period: u32,
    #[serde(default)]
    pub changes_need_approval: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLine {
    pub task: String,
    #[serde(default)]
    pub description: String,
    #[schemars(with = "String")]
    pub cycle: Spanned<String>,
    /// Runs per cycle.
    pub count: u32,
    #[serde(default)]
    pub minutes_per_run: Option<u32>,
    #[serde(default)]
    pub person_months: Option<f64>,
    /// Price per person-month, or per unit when `units` is given.
    #[serde(default)]
    pub unit_price_yuan: Option<f64>,
    /// Priced per device ("2台", "5台") instead of per person-month.
    #[serde(default)]
    pub units: Option<u32>,
    /// The line's amount as the contract states it.
    pub subtotal_yuan: f64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    pub name: String,
    pub share_percent: f64,
    /// When it falls due, in the contract's words.
    pub condition: String,
}

/// KP1: how the client scores the vendor each period (004 §(八)).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assessment {
    /// "quarter" or "month".
    #[schemars(with = "String")]
    pub period: Spanned<String>,
    pub base_points: f64,
    pub pass_mark: f64,
    /// Bonus points never exceed deduction points (004 §(八)2(1)).
    #[serde(default)]
    pub bonus_limited_by_deductions: bool,
    /// "mean_of_periods": the annual result is the mean of the periods (KP3).
    #[schemars(with = "String")]
    pub annual: Spanned<String>,
    pub rules: Vec<AssessmentRule>,
}

/// One line of a scorecard: which evidence, how many points per what, within which limits.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentRule {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// The item and sub-item as the contract names them.
    pub item: String,
    /// The contract's own words.
    pub criterion: String,
    /// Where the platform finds the occurrences (one of [`EVIDENCE`]).
    #[schemars(with = "String")]
    pub evidence: Spanned<String>,
    /// Narrows the evidence, e.g. `{ clock = "response", level = "L1" }`.
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// Negative: a deduction; positive: a bonus.
    #[schemars(with = "f64")]
    pub points: Spanned<f64>,
    /// What one `points` is for (one of [`PER`]).
    #[schemars(with = "String")]
    pub per: Spanned<String>,
    /// The measured duration must exceed this (e.g. downtime "30m") …
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub above: Option<Spanned<String>>,
    /// … and be at most this.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub up_to: Option<Spanned<String>>,
    /// For percentages: points per point below this mark (satisfaction below 90 %).
    #[serde(default)]
    pub below_percent: Option<f64>,
    /// Largest total of this rule in one period, in points (absent: no limit, "扣完为止").
    #[serde(default)]
    pub max_points: Option<f64>,
    /// The client decides the points case by case, up to `points` ("可酌情加 1-10 分").
    #[serde(default)]
    pub discretionary: bool,
}

/// KP2: money rules (004 §(八)2(3) and 商务要求 违约责任).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Each deducted point costs this much of the period's fee.
    pub per_point_yuan: f64,
    /// The share of the contract fee paid per period (0.25 for quarterly payment).
    pub period_fee_share: f64,
    /// Deductions reaching this percentage of the contract fee allow termination.
    #[serde(default)]
    pub termination_at_percent: Option<f64>,
    #[serde(default)]
    pub rules: Vec<MoneyRule>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyRule {
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub criterion: String,
    #[schemars(with = "String")]
    pub evidence: Spanned<String>,
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// A fixed sum per `per` …
    #[serde(default)]
    pub amount_yuan: Option<f64>,
    /// … or a percentage of `of` per `per`.
    #[serde(default)]
    pub percent: Option<f64>,
    /// "period_fee" or "contract_fee".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub of: Option<Spanned<String>>,
    #[schemars(with = "String")]
    pub per: Spanned<String>,
    /// At most this percentage of `of` …
    #[serde(default)]
    pub cap_percent: Option<f64>,
    /// … per "occurrence" or per "period".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cap_per: Option<Spanned<String>>,
}

/// Evidence sources the platform records (or the client enters, `manual`).
pub const EVIDENCE: &[&str] = &[
    "manual",
    "scope_unfinished",
    "inspection_missed",
    "inspection_item_missing",
    "ticket_handling_late",
    "clock_breached",
    "report_missing",
    "report_late",
    "plan_missing",
    "plan_late",
    "duty_missed",
    "duty_shortfall",
    "duty_mistake",
    "security_incident",
    "downtime",
    "event_failure",
    "role_design_missing",
    "staff_unqualified",
    "staff_change",
    "satisfaction",
    "complaint",
    "praise",
    "overtime",
    "suggestion_adopted",
    "document_written",
    "major_support",
    "rectification_late",
];

/// What one unit of points or money is counted per.
pub const PER: &[&str] =
    &["occurrence", "item", "half_hour", "hour", "day", "percent_point", "percent_unfinished", "period"];

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    #[schemars(with = "String")]
    pub code: Spanned<String>,
    pub name: String,
    pub client: String,
    pub vendor: String,
    #[schemars(with = "String")]
    pub starts_on: Spanned<String>,
    #[schemars(with = "String")]
    pub ends_on: Spanned<String>,
    #[serde(default)]
    pub fee_yuan: Option<f64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteDef {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub address: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemDef {
    pub name: String,
    /// A free grouping the contract uses ("基础子系统", "扩展子系统").
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarDef {
    #[serde(default)]
    pub description: String,
    /// "all" or "working_days".
    #[schemars(with = "String")]
    pub days: Spanned<String>,
    #[serde(default)]
    pub seasons: Vec<SeasonDef>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeasonDef {
    /// "MM-DD"
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    /// "HH:MM-HH:MM", in order
    #[schemars(with = "Vec<String>")]
    pub hours: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockDef {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[schemars(with = "String")]
    pub calendar: Spanned<String>,
    #[schemars(with = "String")]
    pub start: Spanned<String>,
    #[schemars(with = "String")]
    pub stop: Spanned<String>,
    #[serde(default)]
    pub pausable: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelDef {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// Clock name → target duration ("5m", "2h", "1w").
    #[schemars(with = "BTreeMap<String, String>")]
    pub targets: BTreeMap<String, Spanned<String>>,
    /// Progress report cadence to the client (SD4), e.g. "1h".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub progress_every: Option<Spanned<String>>,
    /// Who is told at start and end (SD4), as free text roles or departments.
    #[serde(default)]
    pub notify: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// The incident class the step applies to (004 table 3.9: 重大, 严重, 一般, 轻微).
    pub class: String,
    /// Time since the ticket was created, e.g. "4h".
    #[schemars(with = "String")]
    pub after: Spanned<String>,
    /// A contract role: service_desk, engineer, backline_expert, project_manager.
    #[schemars(with = "String")]
    pub to: Spanned<String>,
}

/// One problem in a contract file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (hint: {})", self.hint)?;
        }
        Ok(())
    }
}

/// Line and column (1-based, columns in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

struct Checker<'a> {
    text: &'a str,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let (line, column) = position(self.text, span.start);
        self.out.push(Diagnostic { line, column, message: message.into(), hint: hint.into() });
    }
}

/// A duration such as "30m", "2h", "1h30m", "24h", "1w" or "0.5h" in milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms = match unit {
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "w" => 7.0 * 86_400_000.0,
            _ => return None,
        };
        total += value * ms;
    }
    (total.is_finite() && total > 0.0 && total <= 366.0 * 86_400_000.0).then_some(total.round() as i64)
}

/// "07:30-22:30" → minutes after midnight.
fn parse_window(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('-')?;
    let hm = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    Some((hm(a)?, hm(b)?))
}

/// "05-01" → (5, 1).
fn parse_month_day(s: &str) -> Option<(u32, u32)> {
    let (m, d) = s.trim().split_once('-')?;
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    let max = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31].get(m.checked_sub(1)? as usize).copied()?;
    (d >= 1 && d <= max).then_some((m, d))
}

const EVENTS: &[&str] = &["created", "responded", "arrived", "resolved", "confirmed"];
const ROLES: &[&str] = &["service_desk", "engineer", "backline_expert", "project_manager"];

fn event_kind(s: &str) -> EventKind {
    match s {
        "created" => EventKind::Created,
        "responded" => EventKind::Responded,
        "arrived" => EventKind::Arrived,
        "resolved" => EventKind::Resolved,
        "confirmed" => EventKind::Confirmed,
        other => EventKind::Custom(other.to_string()),
    }
}

/// A checked contract: its SLA in the engine's terms.
#[derive(Debug)]
pub struct CompiledContract {
    pub file: ContractFile,
    pub calendars: BTreeMap<String, Calendar>,
    /// Each clock's rule with the name of its calendar.
    pub clocks: Vec<(ClockRule, String)>,
    /// The desk's rules (`[desk]`, defaults filled in).
    pub desk: DeskRules,
}

impl CompiledContract {
    /// The contract's duty of backing up device configurations (an id ending in `config_backup`,
    /// e.g. 001's `network.config_backup`, "quarterly") and the days a device may go without a
    /// backup under it: the default of a device's backup period (AS6).
    pub fn config_backup_days(&self) -> Option<(&str, i64)> {
        self.file.duties.iter().find_map(|d| {
            let id = d.id.get_ref().as_str();
            if !id.ends_with("config_backup") {
                return None;
            }
            let f = crate::schedule::Frequency::parse(d.frequency.get_ref()).ok()?;
            Some((id, f.longest_gap_days()))
        })
    }
}

/// Parses and checks a contract file. Returns every problem found, not just the first.
pub fn check(bytes: &[u8]) -> Result<CompiledContract, Vec<Diagnostic>> {
    let one = |message: String, hint: &str| vec![Diagnostic { line: 1, column: 1, message, hint: hint.into() }];
    if bytes.len() > MAX_FILE_BYTES {
        return Err(one(
            format!("the file is {} bytes; a contract file is at most {MAX_FILE_BYTES}", bytes.len()),
            "is this the right file? contract files are small text files",
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = position(&String::from_utf8_lossy(&bytes[..e.valid_up_to()]), e.valid_up_to());
            return Err(vec![Diagnostic {
                line,
                column,
                message: "the file is not valid UTF-8".into(),
                hint: "save it as UTF-8 (files from some Windows editors are GBK)".into(),
            }]);
        }
    };
    let file: ContractFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let (line, column) = e.span().map(|s| position(text, s.start)).unwrap_or((1, 1));
            return Err(vec![Diagnostic {
                line,
                column,
                message: e.message().to_string(),
                hint: "see contracts/README.md for the format".into(),
            }]);
        }
    };
    let mut c = Checker { text, out: Vec::new() };
    if *file.format.get_ref() != FORMAT_VERSION {
        c.at(
            file.format.span(),
            format!("unsupported format version {}", file.format.get_ref()),
            format!("this yunwei reads format = {FORMAT_VERSION}"),
        );
    }
    let h = &file.contract;
    if h.code.get_ref().trim().is_empty()
        || !h.code.get_ref().chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        c.at(h.code.span(), "the contract code must be letters, digits, '-' or '_'", "e.g. \"CD-DCM-2022\"");
    }
    for (what, value) in [("name", &h.name), ("client", &h.client), ("vendor", &h.vendor)] {
        // The same limits as a contract entered through the pages.
        if let Err(m) = crate::text::single_line(value, 200, what == "name") {
            c.at(h.code.span(), format!("contract {what} {}", m.en), "one line of at most 200 characters");
        }
    }
    if h.code.get_ref().chars().count() > 40 {
        c.at(h.code.span(), "the contract code is longer than 40 characters", "a short code such as \"CD-DCM-2022\"");
    }
    let start = crate::calendar::parse_date(h.starts_on.get_ref());
    let end = crate::calendar::parse_date(h.ends_on.get_ref());
    if start.is_none() {
        c.at(h.starts_on.span(), "not a date", "write dates as YYYY-MM-DD");
    }
    if end.is_none() {
        c.at(h.ends_on.span(), "not a date", "write dates as YYYY-MM-DD");
    }
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        c.at(h.ends_on.span(), "the contract ends before it starts", "check starts_on and ends_on");
    }

    let mut system_names = BTreeSet::new();
    for s in &file.systems {
        if s.name.trim().is_empty() || !system_names.insert(s.name.trim()) {
            c.at(0..0, format!("system name {:?} is empty or listed twice", s.name), "list every business system once");
        }
    }

    let mut calendars = BTreeMap::new();
    for (name, def) in &file.calendars {
        let span = def.span();
        let def = def.get_ref();
        let days = match def.days.get_ref().as_str() {
            "all" => Days::All,
            "working_days" => Days::WorkingDays,
            other => {
                c.at(def.days.span(), format!("unknown days {other:?}"), "use \"all\" or \"working_days\"");
                continue;
            }
        };
        let mut seasons = Vec::new();
        for s in &def.seasons {
            let from = parse_month_day(s.from.get_ref());
            let to = parse_month_day(s.to.get_ref());
            if from.is_none() {
                c.at(s.from.span(), "not a month and day", "write \"MM-DD\", e.g. \"05-01\"");
            }
            if to.is_none() {
                c.at(s.to.span(), "not a month and day", "write \"MM-DD\", e.g. \"10-31\"");
            }
            let mut windows = Vec::new();
            for w in &s.hours {
                match parse_window(w.get_ref()) {
                    Some(win) => windows.push(win),
                    None => c.at(
                        w.span(),
                        format!("not a time window: {:?}", w.get_ref()),
                        "write \"HH:MM-HH:MM\", e.g. \"07:30-22:30\"",
                    ),
                }
            }
            if let (Some(from), Some(to)) = (from, to) {
                seasons.push(Season { from, to, windows });
            }
        }
        let cal = Calendar { days, seasons };
        match cal.validate() {
            Ok(()) => {
                calendars.insert(name.clone(), cal);
            }
            Err(e) => c.at(
                span,
                format!("calendar {name:?}: {e}"),
                "windows must be non-empty, ordered and within one day; seasons must not overlap",
            ),
        }
    }

    let mut clocks = Vec::new();
    let mut clock_names = BTreeSet::new();
    for def in &file.clocks {
        let name = def.name.get_ref().trim().to_string();
        if name.is_empty() || !clock_names.insert(name.clone()) {
            c.at(
                def.name.span(),
                format!("clock name {name:?} is empty or used twice"),
                "give every clock its own name",
            );
        }
        if !file.calendars.contains_key(def.calendar.get_ref()) {
            let known: Vec<&str> = file.calendars.keys().map(String::as_str).collect();
            c.at(
                def.calendar.span(),
                format!("unknown calendar {:?}", def.calendar.get_ref()),
                format!("defined calendars: {}", known.join(", ")),
            );
        }
        if def.start.get_ref().trim().is_empty() {
            c.at(
                def.start.span(),
                "the clock has no start event",
                format!("one of {} or a milestone name", EVENTS.join(", ")),
            );
        }
        if def.stop.get_ref().trim().is_empty() || def.stop.get_ref() == def.start.get_ref() {
            c.at(
                def.stop.span(),
                "the clock needs a stop event different from its start",
                format!("one of {}", EVENTS.join(", ")),
            );
        }
        clocks.push((
            ClockRule {
                name,
                start: event_kind(def.start.get_ref().trim()),
                stop: event_kind(def.stop.get_ref().trim()),
                pausable: def.pausable,
                targets: BTreeMap::new(),
            },
            def.calendar.get_ref().clone(),
        ));
    }

    let mut level_names = BTreeSet::new();
    if file.levels.is_empty() && !file.clocks.is_empty() {
        c.at(0..0, "clocks are defined but no levels give them targets", "add [[levels]] with targets");
    }
    for level in &file.levels {
        let name = level.name.get_ref().trim().to_string();
        if name.is_empty() || !level_names.insert(name.clone()) {
            c.at(
                level.name.span(),
                format!("level name {name:?} is empty or used twice"),
                "level names are unique, e.g. L1 … L4",
            );
        }
        for (clock, target) in &level.targets {
            let Some((rule, _)) = clocks.iter_mut().find(|(r, _)| &r.name == clock) else {
                c.at(
                    target.span(),
                    format!("level {name}: unknown clock {clock:?}"),
                    format!("clocks: {}", clock_names.iter().cloned().collect::<Vec<_>>().join(", ")),
                );
                continue;
            };
            match parse_duration(target.get_ref()) {
                Some(ms) => {
                    rule.targets.insert(name.clone(), ms);
                }
                None => c.at(
                    target.span(),
                    format!("not a duration: {:?}", target.get_ref()),
                    "a positive duration up to one year, e.g. \"10m\", \"3h\", \"1w\"",
                ),
            }
        }
        if let Some(p) = &level.progress_every
            && parse_duration(p.get_ref()).is_none()
        {
            c.at(p.span(), format!("not a duration: {:?}", p.get_ref()), "e.g. \"1h\"");
        }
    }
    let mut last_after: BTreeMap<&str, i64> = BTreeMap::new();
    for step in &file.escalation {
        let last = last_after.entry(step.class.as_str()).or_insert(0);
        match parse_duration(step.after.get_ref()) {
            Some(ms) if ms > *last => *last = ms,
            Some(_) => c.at(
                step.after.span(),
                "escalation steps of one class must come in increasing time",
                "order the steps by `after`",
            ),
            None => c.at(step.after.span(), format!("not a duration: {:?}", step.after.get_ref()), "e.g. \"4h\""),
        }
        if !ROLES.contains(&step.to.get_ref().as_str()) {
            c.at(
                step.to.span(),
                format!("unknown role {:?}", step.to.get_ref()),
                format!("one of {}", ROLES.join(", ")),
            );
        }
    }
    if let Some(a) = &file.assessment {
        check_assessment(&mut c, a);
    }
    if let Some(m) = &file.money {
        check_money(&mut c, m);
    }
    check_catalog(&mut c, &file);
    let desk = file.desk.as_ref().map(|d| check_desk(&mut c, d, &file.clocks)).unwrap_or_default();
    if c.out.is_empty() {
        Ok(CompiledContract { file, calendars, clocks, desk })
    } else {
        c.out.sort_by_key(|d| (d.line, d.column));
        Err(c.out)
    }
}

fn check_desk(c: &mut Checker<'_>, d: &DeskDef, clocks: &[ClockDef]) -> DeskRules {
    let mut rules = DeskRules::default();
    for (value, slot, what, hint) in [
        (
            &d.auto_close_working_days,
            &mut rules.auto_close_working_days,
            "auto_close_working_days",
            "0 (never) to 30 working days, e.g. 3",
        ),
        (
            &d.progress_notice_working_days,
            &mut rules.progress_notice_working_days,
            "progress_notice_working_days",
            "0 (off) to 30 working days, e.g. 3",
        ),
    ] {
        if let Some(v) = value {
            if *v.get_ref() > MAX_DESK_WORKING_DAYS {
                c.at(v.span(), format!("{what} = {} is more than {MAX_DESK_WORKING_DAYS}", v.get_ref()), hint);
            } else {
                *slot = *v.get_ref();
            }
        }
    }
    if let Some(p) = &d.reminder_at_percent {
        if (1..=99).contains(p.get_ref()) {
            rules.reminder_at_percent = *p.get_ref();
        } else {
            c.at(p.span(), format!("reminder_at_percent = {} is not 1 to 99", p.get_ref()), "e.g. 80");
        }
    }
    rules.fault_analysis_required = d.fault_analysis_required.unwrap_or(false);
    rules.requests_need_approval = d.requests_need_approval.unwrap_or(false);
    if let Some(name) = &d.dispatch_clock {
        match clocks.iter().find(|k| k.name.get_ref().trim() == name.get_ref().trim()) {
            None => {
                let known: Vec<&str> = clocks.iter().map(|k| k.name.get_ref().as_str()).collect();
                c.at(
                    name.span(),
                    format!("dispatch_clock: unknown clock {:?}", name.get_ref()),
                    format!("clocks: {}", known.join(", ")),
                );
            }
            Some(k) if k.stop.get_ref().trim() != DISPATCHED => c.at(
                name.span(),
                format!("dispatch_clock {:?} stops at {:?}, not at \"{DISPATCHED}\"", name.get_ref(), k.stop.get_ref()),
                format!("give that clock stop = \"{DISPATCHED}\""),
            ),
            Some(_) => rules.dispatch_clock = Some(name.get_ref().trim().to_string()),
        }
    }
    rules
}

fn check_known(c: &mut Checker<'_>, value: &Spanned<String>, known: &[&str], what: &str) {
    if !known.contains(&value.get_ref().as_str()) {
        c.at(value.span(), format!("unknown {what} {:?}", value.get_ref()), format!("one of {}", known.join(", ")));
    }
}

fn check_assessment(c: &mut Checker<'_>, a: &Assessment) {
    check_known(c, &a.period, &["quarter", "month"], "period");
    check_known(c, &a.annual, &["mean_of_periods"], "annual rule");
    let sane = a.base_points > 0.0 && a.base_points <= 1000.0 && (0.0..=a.base_points).contains(&a.pass_mark);
    if !sane {
        c.at(
            a.period.span(),
            "base_points must be positive and pass_mark between 0 and base_points",
            "e.g. base_points = 100, pass_mark = 60",
        );
    }
    let mut ids = BTreeSet::new();
    for r in &a.rules {
        if !ids.insert(r.id.get_ref().clone()) || r.id.get_ref().trim().is_empty() {
            c.at(
                r.id.span(),
                format!("rule id {:?} is empty or used twice", r.id.get_ref()),
                "give every rule its own id",
            );
        }
        check_known(c, &r.evidence, EVIDENCE, "evidence");
        check_known(c, &r.per, PER, "unit");
        let p = *r.points.get_ref();
        if p == 0.0 || !p.is_finite() || p.abs() > 100.0 {
            c.at(
                r.points.span(),
                format!("points {p} out of range"),
                "a deduction is negative, a bonus positive, at most 100 either way",
            );
        }
        for d in [&r.above, &r.up_to].into_iter().flatten() {
            if parse_duration(d.get_ref()).is_none() {
                c.at(d.span(), format!("not a duration: {:?}", d.get_ref()), "e.g. \"30m\"");
            }
        }
        if let (Some(lo), Some(hi)) = (&r.above, &r.up_to)
            && parse_duration(lo.get_ref()) >= parse_duration(hi.get_ref())
        {
            c.at(hi.span(), "up_to must be longer than above", "e.g. above = \"30m\", up_to = \"1h\"");
        }
        if r.below_percent.is_some_and(|b| !(0.0..=100.0).contains(&b)) {
            c.at(r.id.span(), "below_percent must be between 0 and 100", "e.g. 90");
        }
        if r.max_points.is_some_and(|m| m <= 0.0) {
            c.at(r.id.span(), "max_points must be positive", "the largest total of this rule in one period");
        }
    }
}

fn check_money(c: &mut Checker<'_>, m: &Money) {
    let mut ids = BTreeSet::new();
    for r in &m.rules {
        if !ids.insert(r.id.get_ref().clone()) || r.id.get_ref().trim().is_empty() {
            c.at(
                r.id.span(),
                format!("rule id {:?} is empty or used twice", r.id.get_ref()),
                "give every rule its own id",
            );
        }
        check_known(c, &r.evidence, EVIDENCE, "evidence");
        check_known(c, &r.per, PER, "unit");
        match (r.amount_yuan, r.percent, &r.of) {
            (Some(a), None, None) if a > 0.0 => {}
            (None, Some(p), Some(of)) if p > 0.0 && p <= 100.0 => {
                check_known(c, of, &["period_fee", "contract_fee"], "base")
            }
            _ => c.at(
                r.id.span(),
                "a money rule has either amount_yuan, or percent with of",
                "e.g. percent = 0.5, of = \"period_fee\"",
            ),
        }
        if let Some(cp) = &r.cap_per {
            check_known(c, cp, &["occurrence", "period"], "cap scope");
        }
    }
    if !(m.period_fee_share > 0.0 && m.period_fee_share <= 1.0) || m.per_point_yuan < 0.0 {
        let span = m.rules.first().map(|r| r.id.span()).unwrap_or(0..0);
        c.at(
            span,
            "period_fee_share must be in (0, 1] and per_point_yuan not negative",
            "quarterly payment: period_fee_share = 0.25",
        );
    }
}

fn check_catalog(c: &mut Checker<'_>, file: &ContractFile) {
    use crate::schedule::Frequency;
    let mut ids = BTreeSet::new();
    for d in &file.deliverables {
        if !ids.insert(d.id.get_ref().clone()) {
            c.at(
                d.id.span(),
                format!("deliverable id {:?} used twice", d.id.get_ref()),
                "give every deliverable its own id",
            );
        }
        if let Err(e) = Frequency::parse(d.due.get_ref()) {
            c.at(d.due.span(), e, "e.g. \"daily by 23:00\", \"monthly on 5\", \"quarterly\"");
        }
    }
    let mut duty_ids = BTreeSet::new();
    for d in &file.duties {
        if !duty_ids.insert(d.id.get_ref().clone()) {
            c.at(d.id.span(), format!("duty id {:?} used twice", d.id.get_ref()), "give every duty its own id");
        }
        if let Err(e) = Frequency::parse(d.frequency.get_ref()) {
            c.at(d.frequency.span(), e, "e.g. \"daily at 09:00, 15:00\", \"weekly x2\", \"monthly first monday\"");
        }
        if let Some(cal) = &d.calendar
            && !file.calendars.contains_key(cal.get_ref())
        {
            c.at(cal.span(), format!("unknown calendar {:?}", cal.get_ref()), "name a calendar defined in this file");
        }
        if let Some(del) = &d.deliverable
            && !ids.contains(del.get_ref())
        {
            c.at(del.span(), format!("unknown deliverable {:?}", del.get_ref()), "name a [[deliverables]] id");
        }
    }
    for w in &file.staffing {
        if !["all", "working_days", "non_working_days"].contains(&w.days.get_ref().as_str()) {
            c.at(
                w.days.span(),
                format!("unknown days {:?}", w.days.get_ref()),
                "all, working_days or non_working_days",
            );
        }
        match parse_window(w.hours.get_ref()) {
            Some((a, b)) if a < b => {}
            _ => c.at(w.hours.span(), format!("not a time window: {:?}", w.hours.get_ref()), "write \"HH:MM-HH:MM\""),
        }
        for md in [&w.from, &w.to].into_iter().flatten() {
            if parse_month_day(md.get_ref()).is_none() {
                c.at(md.span(), "not a month and day", "write \"MM-DD\"");
            }
        }
        if w.from.is_some() != w.to.is_some() {
            c.at(w.hours.span(), "a season needs both from and to", "give both, or neither for the whole year");
        }
        if w.min_people == 0 || w.min_people > 1000 {
            c.at(w.hours.span(), "min_people must be 1 to 1000", "");
        }
    }
    for b in &file.budget {
        if let Err(e) = Frequency::parse(b.cycle.get_ref()) {
            c.at(b.cycle.span(), e, "e.g. \"monthly\"");
        }
        if !(b.subtotal_yuan.is_finite() && b.subtotal_yuan >= 0.0) {
            c.at(b.cycle.span(), "subtotal_yuan must be a non-negative amount", "");
        }
    }
    let budget: f64 = file.budget.iter().map(|b| b.subtotal_yuan).sum();
    if let Some(fee) = file.contract.fee_yuan
        && !file.budget.is_empty()
        && (budget - fee).abs() > 0.5
    {
        c.at(
            0..0,
            format!("budget lines add up to ¥{budget:.2}, the fee is ¥{fee:.2}"),
            "check [[budget]] subtotal_yuan and fee_yuan",
        );
    }
    let total: f64 = file.payments.iter().map(|p| p.share_percent).sum();
    if !file.payments.is_empty() && (total - 100.0).abs() > 0.01 {
        c.at(0..0, format!("payment shares add up to {total}%, not 100%"), "check [[payments]] share_percent");
    }
}

/// The contract in plain, stable lines ("L1 响应 response: 5 分钟 / 5 min (hotline)"): shown on
/// pages and compared line by line to describe what an import changes.
pub fn summary_lines(c: &CompiledContract) -> Vec<String> {
    let h = &c.file.contract;
    let mut out = vec![
        format!("合同 contract: {} {}", h.code.get_ref(), h.name),
        format!("采购人 client: {}", h.client),
        format!("服务商 vendor: {}", h.vendor),
        format!("服务期 period: {} – {}", h.starts_on.get_ref(), h.ends_on.get_ref()),
    ];
    if let Some(fee) = h.fee_yuan {
        out.push(format!("费用 fee: ¥{fee:.2}"));
    }
    for s in &c.file.sites {
        out.push(format!("站点 site: {} ({})", s.name, s.kind));
    }
    for s in &c.file.systems {
        out.push(format!("系统 system: {} [{}]", s.name, s.group));
    }
    for (name, cal) in &c.calendars {
        let days = match cal.days {
            Days::All => "每天 every day",
            Days::WorkingDays => "工作日 working days",
        };
        let hours = if cal.seasons.is_empty() {
            "00:00–24:00".to_string()
        } else {
            cal.seasons
                .iter()
                .map(|s| {
                    let w: Vec<String> = s
                        .windows
                        .iter()
                        .map(|(a, b)| format!("{:02}:{:02}–{:02}:{:02}", a / 60, a % 60, b / 60, b % 60))
                        .collect();
                    format!("{:02}-{:02}…{:02}-{:02} {}", s.from.0, s.from.1, s.to.0, s.to.1, w.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        out.push(format!("日历 calendar {name}: {days}, {hours}"));
    }
    for level in &c.file.levels {
        let name = level.name.get_ref();
        for (rule, cal) in &c.clocks {
            if let Some(ms) = rule.targets.get(name) {
                let (zh, en) = human_duration(*ms);
                let pause = if rule.pausable { ", 挂起暂停 pauses when suspended" } else { "" };
                out.push(format!("{name} {} {}: {zh} / {en} ({cal}{pause})", clock_label(c, &rule.name), rule.name));
            }
        }
        if let Some(p) = &level.progress_every
            && let Some(ms) = parse_duration(p.get_ref())
        {
            let (zh, en) = human_duration(ms);
            out.push(format!("{name} 进展通报 progress report: 每 {zh} / every {en}"));
        }
    }
    for e in &c.file.escalation {
        out.push(format!("升级 escalation {}: {} → {}", e.class, e.after.get_ref(), e.to.get_ref()));
    }
    out.extend(desk_lines(&c.desk));
    for d in &c.file.duties {
        out.push(format!("职责 duty {}: {} — {}", d.id.get_ref(), d.name, d.frequency.get_ref()));
    }
    for d in &c.file.deliverables {
        out.push(format!("交付 deliverable {}: {} — {}", d.id.get_ref(), d.name, d.due.get_ref()));
    }
    for w in &c.file.staffing {
        let season = match (&w.from, &w.to) {
            (Some(f), Some(t)) => format!(" {}…{}", f.get_ref(), t.get_ref()),
            _ => String::new(),
        };
        out.push(format!(
            "驻场 staffing {}{season} {}: ≥ {} 人 people",
            w.days.get_ref(),
            w.hours.get_ref(),
            w.min_people
        ));
    }
    if let Some(l) = &c.file.staffing_limits {
        out.push(format!("人员变更 staff changes: ≤ {} per period", l.max_changes_per_period));
    }
    for b in &c.file.budget {
        out.push(format!("预算 budget {}: {} ×{}, ¥{:.0}", b.task, b.cycle.get_ref(), b.count, b.subtotal_yuan));
    }
    for p in &c.file.payments {
        out.push(format!("付款 payment {}: {}% ({})", p.name, p.share_percent, p.condition));
    }
    if let Some(a) = &c.file.assessment {
        out.push(format!(
            "考核 assessment: {} {} points, pass {}{}",
            a.period.get_ref(),
            a.base_points,
            a.pass_mark,
            if a.bonus_limited_by_deductions { ", bonus ≤ deductions" } else { "" }
        ));
        for r in &a.rules {
            let cap = r.max_points.map(|m| format!(", max {m}")).unwrap_or_default();
            out.push(format!(
                "考核 {}: {:+} per {} [{}]{cap}",
                r.id.get_ref(),
                r.points.get_ref(),
                r.per.get_ref(),
                r.evidence.get_ref()
            ));
        }
    }
    if let Some(m) = &c.file.money {
        out.push(format!("扣款 money: ¥{} per point, period fee share {}", m.per_point_yuan, m.period_fee_share));
        for r in &m.rules {
            let what = match (r.amount_yuan, r.percent, &r.of) {
                (Some(a), _, _) => format!("¥{a}"),
                (_, Some(p), Some(of)) => format!("{p}% of {}", of.get_ref()),
                _ => String::new(),
            };
            let cap = r
                .cap_percent
                .map(|p| {
                    format!(
                        ", cap {p}% per {}",
                        r.cap_per.as_ref().map(|c| c.get_ref().as_str()).unwrap_or("occurrence")
                    )
                })
                .unwrap_or_default();
            out.push(format!("扣款 {}: {what} per {}{cap}", r.id.get_ref(), r.per.get_ref()));
        }
    }
    out
}

/// The desk's rules in plain words, one line each, defaults included (they apply all the same).
fn desk_lines(d: &DeskRules) -> Vec<String> {
    let days = |n: u32| if n == 1 { "1 working day".to_string() } else { format!("{n} working days") };
    let mut out = vec![
        match d.auto_close_working_days {
            0 => "服务台 desk 自动结案 auto-close: 不自动结案 / never".to_string(),
            n => format!(
                "服务台 desk 自动结案 auto-close: 待确认 {n} 个工作日后 / after {} awaiting confirmation",
                days(n)
            ),
        },
        match d.progress_notice_working_days {
            0 => "服务台 desk 进度告知 progress notice: 不告知 / off".to_string(),
            n => format!(
                "服务台 desk 进度告知 progress notice: 未解决每 {n} 个工作日告知报告人 / reporter told every {} until resolved",
                days(n)
            ),
        },
        format!(
            "服务台 desk 时限提醒 reminder: 用去 {p}% 时提醒处理人 / assignee reminded at {p}% of a target",
            p = d.reminder_at_percent
        ),
        if d.fault_analysis_required {
            "服务台 desk 故障分析 fault analysis: 解决前必须填写 / required before solving".to_string()
        } else {
            "服务台 desk 故障分析 fault analysis: 不要求 / not required".to_string()
        },
        if d.requests_need_approval {
            "服务台 desk 服务请求审批 request approval: 须业主负责人审批 / by the client supervisor".to_string()
        } else {
            "服务台 desk 服务请求审批 request approval: 不需要 / not needed".to_string()
        },
    ];
    if let Some(clock) = &d.dispatch_clock {
        out.push(format!("服务台 desk 交办时限 dispatch clock: {clock}"));
    }
    out
}

fn clock_label(c: &CompiledContract, name: &str) -> String {
    c.file.clocks.iter().find(|d| d.name.get_ref() == name).map(|d| d.description.clone()).unwrap_or_default()
}

/// Lines only in `old` ("- …") and only in `new` ("+ …"), in their original order.
pub fn changes(old: &[String], new: &[String]) -> Vec<String> {
    let removed = old.iter().filter(|l| !new.contains(l)).map(|l| format!("- {l}"));
    let added = new.iter().filter(|l| !old.contains(l)).map(|l| format!("+ {l}"));
    removed.chain(added).collect()
}

/// The JSON Schema of the contract file format, for editors (TOML language servers read JSON Schema).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ContractFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// A duration in human terms, Chinese and English: "5 分钟 / 5 min", "1 周 / 1 week".
pub fn human_duration(ms: i64) -> (String, String) {
    const UNITS: &[(i64, &str, &str)] =
        &[(7 * 86_400_000, "周", "week"), (86_400_000, "天", "day"), (3_600_000, "小时", "h"), (60_000, "分钟", "min")];
    for &(size, zh, en) in UNITS {
        if ms % size == 0 {
            let n = ms / size;
            let en = if n > 1 && (en == "week" || en == "day") { format!("{n} {en}s") } else { format!("{n} {en}") };
            return (format!("{n} {zh}"), en);
        }
    }
    (format!("{} 秒", ms / 1000), format!("{} s", ms / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../contracts/004-chengdu-dcm.toml");

    #[test]
    fn the_004_contract_checks_and_drives_the_engine() {
        let c = check(SAMPLE.as_bytes()).unwrap_or_else(|d| panic!("{d:#?}"));
        assert_eq!(c.file.contract.code.get_ref(), "CD-DCM-2022");
        assert_eq!(c.file.levels.len(), 4);
        let (resolution, cal) = c.clocks.iter().find(|(r, _)| r.name == "resolution").unwrap();
        assert_eq!(resolution.targets["L1"], 2 * 3_600_000);
        assert_eq!(resolution.targets["L4"], 5 * 3_600_000);
        assert_eq!(c.clocks.iter().find(|(r, _)| r.name == "response").unwrap().0.targets["L2"], 10 * 60_000);
        // A level-2 fault at 21:00 on a winter Friday, on the contract's own calendar.
        let h = crate::calendar::HolidayTable::embedded();
        let t0 = crate::calendar::day_start_utc(crate::calendar::parse_date("2026-02-13").unwrap()) + 21 * 3_600_000;
        let events = vec![
            crate::sla::Event { at: t0, kind: EventKind::Created },
            crate::sla::Event { at: t0, kind: EventKind::LevelSet("L2".into()) },
        ];
        let s = crate::sla::evaluate(resolution, &c.calendars[cal], &h, &events, t0);
        assert!(s.due_at.is_some());
    }

    fn errors(text: &str) -> Vec<String> {
        check(text.as_bytes()).err().unwrap_or_default().iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn precise_errors_with_positions() {
        let bad = SAMPLE.replacen("calendar = \"hotline\"", "calendar = \"nosuch\"", 1);
        let e = errors(&bad);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("unknown calendar \"nosuch\""), "{e:?}");
        let line = bad.lines().position(|l| l.contains("\"nosuch\"")).unwrap() + 1;
        assert!(e[0].starts_with(&format!("{line}:")), "{e:?}");

        let e = errors(&SAMPLE.replacen("resolution = \"2h\"", "resolution = \"-2h\"", 1));
        assert!(e[0].contains("not a duration"), "{e:?}");
        let e = errors(&SAMPLE.replacen("resolution = \"2h\"", "resolution = \"900w\"", 1));
        assert!(e[0].contains("not a duration"), "absurd targets are refused: {e:?}");
        let e = errors(&SAMPLE.replacen("name = \"L2\"", "name = \"L1\"", 1));
        assert!(e.iter().any(|m| m.contains("used twice")), "{e:?}");
        let e = errors(&SAMPLE.replacen("\"07:30-21:30\"", "\"21:30-07:30\"", 1));
        assert!(e.iter().any(|m| m.contains("empty or runs past midnight")), "{e:?}");
        let e = errors(&SAMPLE.replacen("from = \"11-01\"", "from = \"10-01\"", 1));
        assert!(e.iter().any(|m| m.contains("covered by two seasons")), "{e:?}");
        let e = errors(&SAMPLE.replacen("start = \"created\"", "start = \"\"", 1));
        assert!(e.iter().any(|m| m.contains("no start event")), "{e:?}");
        let e = errors(&SAMPLE.replacen("format = 1", "format = 1\nsurprise = true", 1));
        assert!(e[0].contains("unknown field"), "{e:?}");
        let e = errors(&SAMPLE.replacen(
            "name = \"成都市数字化城市管理信息系统年度运维服务\"",
            &format!("name = \"{}\"", "长".repeat(201)),
            1,
        ));
        assert!(e[0].contains("contract name is too long"), "{e:?}");
        let e = errors("format = [");
        assert!(e[0].starts_with("1:"), "{e:?}");
        let mut gbk = SAMPLE.as_bytes().to_vec();
        gbk.extend_from_slice(&[0xc4, 0xe3]);
        let d = check(&gbk).unwrap_err();
        assert!(d[0].message.contains("UTF-8"));
        let huge = vec![b'#'; MAX_FILE_BYTES + 1];
        assert!(check(&huge).unwrap_err()[0].message.contains("at most"));
    }

    #[test]
    fn assessment_and_money_rules_of_004() {
        let c = check(SAMPLE.as_bytes()).unwrap();
        let a = c.file.assessment.as_ref().unwrap();
        assert_eq!((a.base_points, a.pass_mark), (100.0, 60.0));
        assert!(a.bonus_limited_by_deductions);
        let rule = |id: &str| a.rules.iter().find(|r| r.id.get_ref() == id).unwrap_or_else(|| panic!("{id}"));
        assert_eq!(*rule("fault.L1.response").points.get_ref(), -3.0);
        assert_eq!(rule("desk.late").per.get_ref(), "half_hour");
        assert_eq!(rule("satisfaction").below_percent, Some(90.0));
        assert!(rule("major_support").discretionary);
        let m = c.file.money.as_ref().unwrap();
        assert_eq!((m.per_point_yuan, m.period_fee_share, m.termination_at_percent), (100.0, 0.25, Some(15.0)));
        let late = m.rules.iter().find(|r| r.id.get_ref() == "late_fix").unwrap();
        assert_eq!((late.percent, late.cap_percent), (Some(0.5), Some(8.0)));
        let lines = summary_lines(&c);
        assert!(
            lines.contains(&"考核 fault.L1.response: -3 per occurrence [clock_breached]".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"扣款 late_fix: 0.5% of period_fee per hour, cap 8% per occurrence".to_string()),
            "{lines:#?}"
        );
    }

    #[test]
    fn service_catalog_staffing_and_payments_of_004() {
        use crate::schedule::Frequency;
        let c = check(SAMPLE.as_bytes()).unwrap();
        let core = c.file.duties.iter().find(|d| d.id.get_ref() == "inspect.core").unwrap();
        assert_eq!(Frequency::parse(core.frequency.get_ref()), Ok(Frequency::Daily { at: vec![540, 900], by: None }));
        assert_eq!(c.file.deliverables.len(), 4);
        assert_eq!(c.file.systems.len(), 22, "004 names 22 subsystems");
        assert_eq!(c.file.staffing.iter().filter(|w| w.min_people == 2).count(), 1);
        assert_eq!(c.file.payments.iter().map(|p| p.share_percent).sum::<f64>(), 100.0);
        let lines = summary_lines(&c);
        assert!(
            lines.contains(&"职责 duty inspect.core: 9 大基础子系统巡检 — daily at 09:00, 15:00".to_string()),
            "{lines:#?}"
        );
        assert!(lines.contains(&"驻场 staffing working_days 09:00-17:00: ≥ 2 人 people".to_string()), "{lines:#?}");
    }

    #[test]
    fn budget_lines_of_000_add_up_to_its_fee() {
        let text = include_str!("../../../contracts/000-enping-machine-rooms.toml");
        let c = check(text.as_bytes()).unwrap();
        assert_eq!(c.file.budget.len(), 13);
        let total: f64 = c.file.budget.iter().map(|b| b.subtotal_yuan).sum();
        assert_eq!(total, 485_700.0);
        let e = errors(&text.replacen("subtotal_yuan = 26000.0", "subtotal_yuan = 27000.0", 1));
        assert!(e[0].contains("budget lines add up to ¥486700.00"), "{e:?}");
    }

    #[test]
    fn bad_catalog_entries() {
        let e = errors(&SAMPLE.replacen("frequency = \"weekly x2\"", "frequency = \"sometimes\"", 1));
        assert!(e[0].contains("not a frequency") && e[0].contains("hint:"), "{e:?}");
        let e = errors(&SAMPLE.replacen("deliverable = \"daily_inspection\"", "deliverable = \"nosuch\"", 1));
        assert!(e[0].contains("unknown deliverable"), "{e:?}");
        let e = errors(&SAMPLE.replacen("share_percent = 25.0", "share_percent = 30.0", 1));
        assert!(e[0].contains("add up to 105"), "{e:?}");
        let e = errors(&SAMPLE.replacen("hours = \"09:00-17:00\"", "hours = \"17:00-09:00\"", 1));
        assert!(e[0].contains("not a time window"), "{e:?}");
    }

    #[test]
    fn bad_assessment_and_money_rules() {
        let e = errors(&SAMPLE.replacen("evidence = \"inspection_missed\"", "evidence = \"gut_feeling\"", 1));
        assert!(e[0].contains("unknown evidence \"gut_feeling\"") && e[0].contains("hint: one of manual"), "{e:?}");
        let e =
            errors(&SAMPLE.replacen("points = -2.0\nper = \"occurrence\"", "points = 0.0\nper = \"occurrence\"", 1));
        assert!(e[0].contains("out of range"), "{e:?}");
        let e = errors(&SAMPLE.replacen("amount_yuan = 2000.0", "amount_yuan = 2000.0\npercent = 1.0", 1));
        assert!(e[0].contains("either amount_yuan"), "{e:?}");
        let e = errors(&SAMPLE.replacen("id = \"praise\"", "id = \"complaint\"", 1));
        assert!(e[0].contains("used twice"), "{e:?}");
        let e = errors(&SAMPLE.replacen("up_to = \"1h\"", "up_to = \"10m\"", 1));
        assert!(e[0].contains("up_to must be longer"), "{e:?}");
    }

    #[test]
    fn desk_rules_are_checked_with_positions_and_summarised() {
        let c = check(SAMPLE.as_bytes()).unwrap();
        assert!(c.desk.fault_analysis_required && c.desk.requests_need_approval);
        assert_eq!(c.desk.dispatch_clock.as_deref(), Some("dispatch"));
        let lines = summary_lines(&c);
        for want in [
            "服务台 desk 自动结案 auto-close: 待确认 3 个工作日后 / after 3 working days awaiting confirmation",
            "服务台 desk 进度告知 progress notice: 未解决每 3 个工作日告知报告人 / reporter told every 3 working days until resolved",
            "服务台 desk 时限提醒 reminder: 用去 80% 时提醒处理人 / assignee reminded at 80% of a target",
            "服务台 desk 故障分析 fault analysis: 解决前必须填写 / required before solving",
            "服务台 desk 服务请求审批 request approval: 须业主负责人审批 / by the client supervisor",
            "服务台 desk 交办时限 dispatch clock: dispatch",
        ] {
            assert!(lines.contains(&want.to_string()), "{want}\n{lines:#?}");
        }
        let changed =
            check(SAMPLE.replacen("auto_close_working_days = 3", "auto_close_working_days = 0", 1).as_bytes());
        assert_eq!(
            changes(&lines, &summary_lines(&changed.unwrap())),
            vec![
                "- 服务台 desk 自动结案 auto-close: 待确认 3 个工作日后 / after 3 working days awaiting confirmation",
                "+ 服务台 desk 自动结案 auto-close: 不自动结案 / never",
            ]
        );

        let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        for (from, to, message) in [
            (
                "auto_close_working_days = 3",
                "auto_close_working_days = 31",
                "auto_close_working_days = 31 is more than 30",
            ),
            (
                "progress_notice_working_days = 3",
                "progress_notice_working_days = 99",
                "progress_notice_working_days = 99 is more than 30",
            ),
            ("reminder_at_percent = 80", "reminder_at_percent = 100", "reminder_at_percent = 100 is not 1 to 99"),
            ("reminder_at_percent = 80", "reminder_at_percent = 0", "reminder_at_percent = 0 is not 1 to 99"),
            (
                "dispatch_clock = \"dispatch\"",
                "dispatch_clock = \"nosuch\"",
                "dispatch_clock: unknown clock \"nosuch\"",
            ),
            (
                "dispatch_clock = \"dispatch\"",
                "dispatch_clock = \"response\"",
                "dispatch_clock \"response\" stops at \"responded\", not at \"dispatched\"",
            ),
        ] {
            let bad = SAMPLE.replacen(from, to, 1);
            let e = errors(&bad);
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(e[0].contains(message) && e[0].contains("hint:"), "{e:?}");
            assert!(e[0].starts_with(&format!("{}:", line_of(&bad, to))), "{e:?}");
        }
        let e = errors(&SAMPLE.replacen("reminder_at_percent = 80", "reminder_at_percent = 80\nsnooze = true", 1));
        assert!(e[0].contains("unknown field `snooze`"), "{e:?}");
        let e = errors(&SAMPLE.replacen("auto_close_working_days = 3", "auto_close_working_days = -1", 1));
        assert!(e[0].starts_with(&format!("{}:", line_of(SAMPLE, "auto_close_working_days = 3"))), "{e:?}");
        let e = errors(&SAMPLE.replacen("fault_analysis_required = true", "fault_analysis_required = \"yes\"", 1));
        assert!(!e.is_empty());
    }

    #[test]
    fn summary_and_changes() {
        let old = check(SAMPLE.as_bytes()).unwrap();
        let new = check(SAMPLE.replacen("resolution = \"3h\"", "resolution = \"4h\"", 1).as_bytes()).unwrap();
        let lines = summary_lines(&old);
        assert!(
            lines.contains(&"L2 解决 resolution: 3 小时 / 3 h (hotline, 挂起暂停 pauses when suspended)".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("日历 calendar onsite: 每天 every day, 05-01…10-31 07:30–22:30")),
            "{lines:#?}"
        );
        let diff = changes(&lines, &summary_lines(&new));
        assert_eq!(
            diff,
            vec![
                "- L2 解决 resolution: 3 小时 / 3 h (hotline, 挂起暂停 pauses when suspended)".to_string(),
                "+ L2 解决 resolution: 4 小时 / 4 h (hotline, 挂起暂停 pauses when suspended)".to_string()
            ]
        );
        assert!(changes(&lines, &lines).is_empty());
    }

    #[test]
    fn published_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/contract.schema.json");
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == json_schema(),
            "contracts/contract.schema.json is out of date: cargo run -q -p yunwei -- contract schema > contracts/contract.schema.json"
        );
        let v: serde_json::Value = serde_json::from_str(&published).unwrap();
        assert!(v["properties"]["levels"].is_object() && v["properties"]["assessment"].is_object());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("0.5h"), Some(1_800_000));
        assert_eq!(parse_duration("1w"), Some(7 * 86_400_000));
        for bad in ["", "5", "h", "-1h", "1y", "0m", "400d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(human_duration(300_000), ("5 分钟".into(), "5 min".into()));
        assert_eq!(human_duration(7 * 86_400_000), ("1 周".into(), "1 week".into()));
    }
}

#[cfg(test)]
mod seed_files {
    /// Every contract file shipped in `contracts/` checks cleanly.
    #[test]
    fn all_seed_contracts_check() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let bytes = std::fs::read(&path).unwrap();
                if let Err(d) = super::check(&bytes) {
                    panic!("{}: {:#?}", path.display(), d);
                }
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    const SAMPLE: &str = include_str!("../../../contracts/004-chengdu-dcm.toml");

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Mutated contract files never panic the checker, and whatever it accepts drives the engine
        /// without panicking either.
        #[test]
        fn mutated_files_never_panic(edits in proptest::collection::vec((0usize..6000, 0u8..3, any::<u8>()), 1..8)) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            for (pos, op, b) in edits {
                let pos = pos % (bytes.len() + 1);
                match op {
                    0 if pos < bytes.len() => { bytes.remove(pos); }
                    1 => bytes.insert(pos, b),
                    _ if pos < bytes.len() => bytes[pos] = b,
                    _ => {}
                }
            }
            if let Ok(c) = super::check(&bytes) {
                let h = crate::calendar::HolidayTable::embedded();
                for (rule, cal) in &c.clocks {
                    let events = [crate::sla::Event { at: 1_767_225_600_000, kind: crate::sla::EventKind::Created }];
                    let _ = crate::sla::evaluate(rule, &c.calendars[cal], &h, &events, 1_767_312_000_000);
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = super::check(text.as_bytes());
            let _ = super::parse_duration(&text);
        }
    }
}

#[cfg(test)]
mod corpus {
    /// The kept fuzz corpus (`crates/core/fuzz-corpus/contract/`): malformed files found or written
    /// while hardening the checker. Each must be refused with positions inside the file, never panic.
    #[test]
    fn corpus_files_are_refused_cleanly() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz-corpus/contract");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let diagnostics = super::check(&bytes).expect_err(&format!("{} must be refused", path.display()));
            let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
            for d in &diagnostics {
                assert!(d.line >= 1 && d.line <= lines && d.column >= 1, "{}: {d}", path.display());
                assert!(!d.message.is_empty());
            }
            n += 1;
        }
        assert!(n >= 8);
    }
}
