//! Inspection plans (巡检, BRIEF IN1–IN7, BK1): what is checked (targets × a checklist), when
//! (slots expanded from the contract's frequency and calendar), how a run is judged (done on time,
//! late, missed) and what a period adds up to for the client's scoring (required, done, late,
//! missed, missing items).
//!
//! A plan is data ([`PlanDef`], JSON or TOML, unknown fields refused). [`check`] reports every
//! problem with the path of the field (`items[2].expected.range.min`) and a Chinese and English
//! message; it returns the resolved [`Schedule`] that [`Schedule::slots`] expands.
//!
//! Probe items carry their probe as JSON: this crate does not know the probe kinds (they live in
//! `yunwei-probes`, which does I/O). The caller validates each probe through
//! [`PlanContext::probe_check`].
//!
//! # Slots
//!
//! A slot has three instants: `at` (the run comes due and is created), `due_by` (finished by then:
//! on time) and `missed_at` (not finished by then: missed; between the two: late). Slots fall only
//! on days the plan's calendar serves (a `working_days` calendar: Monday–Friday minus public
//! holidays plus make-up workdays 补班, from the [`HolidayTable`]).
//!
//! | frequency | `at` | `due_by` unless `window.on_time` is set |
//! | --- | --- | --- |
//! | `daily at 09:00, 15:00` | each time, each serving day | `at` + 2 h |
//! | `daily by 23:00` | 00:00 of each serving day | 23:00 |
//! | `daily` | 00:00 of each serving day | the end of that day |
//! | `weekly xN` | the serving days of each week split into N runs of consecutive days (5 working days, x2: Mon–Wed, Thu–Fri); `at` is the first day's 00:00 | the end of the group's last day |
//! | `weekly`, `every N weeks` | the first serving day of the (N-)week (weeks start on Monday; N-week blocks are counted from Monday 1970-01-05) | the end of its last serving day |
//! | `monthly on D`, `monthly first monday` | that day, or the next serving day when it is not one | the end of that day |
//! | `monthly`, `quarterly`, `yearly` | the first serving day of the period | the end of its last serving day |
//!
//! `window.on_time` replaces the due time by `at + on_time`; `missed_after` sets `missed_at` to
//! `at + missed_after` (never before `due_by`); by default a run is missed 24 h after it was due.
//! A week with fewer serving days than `weekly xN` asks for one run per serving day.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, HolidayTable, MS_PER_DAY, MS_PER_MIN, Span, civil_from_days, day_start_utc};
use crate::calendar::{days_from_civil, local_day, weekday};
use crate::contract::parse_duration;
use crate::ledger::Message;
use crate::schedule::{Frequency, MonthDay};

pub const MAX_TARGETS: usize = 200;
pub const MAX_ITEMS: usize = 100;
/// Targets × items of one run.
pub const MAX_CELLS: usize = 2_000;
/// `daily at …`: a run is on time within this long after its slot unless the plan says otherwise.
pub const DEFAULT_ON_TIME_MS: i64 = 2 * 3_600_000;
/// After it was due, a run is late for this long, then missed.
pub const DEFAULT_GRACE_MS: i64 = 24 * 3_600_000;
/// Raw probe readings are kept this many days, then rolled up into hourly min/avg/max.
pub const DEFAULT_RETAIN_RAW_DAYS: u32 = 31;
/// Longest probe time-out a plan may ask for.
pub const MAX_PROBE_TIMEOUT_S: u32 = 120;
/// Monday 1970-01-05, day 4: the origin of `every N weeks` blocks.
const WEEK_ORIGIN: i64 = 4;

/// One inspection plan as stored, edited and exchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDef {
    pub name: String,
    /// A contract duty (`inspect.core`): its frequency and calendar are the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<String>,
    /// See [`Frequency`]; default: the duty's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<String>,
    /// A calendar of the contract; default: the duty's, else every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    #[serde(default, skip_serializing_if = "Window::is_default")]
    pub window: Window,
    pub targets: Vec<Target>,
    pub items: Vec<Item>,
    /// Failed items become tickets at this rule's level; absent: failures are recorded only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tickets: Option<TicketRule>,
    /// The member new runs are assigned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_user_id: Option<i64>,
    /// Raw readings are kept this many days (1–366, default 31), then hourly roll-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_raw_days: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// A run finished within this long after its slot is on time ("2h", "1d").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_time: Option<String>,
    /// A run not finished this long after its slot is missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_after: Option<String>,
}

impl Window {
    fn is_default(&self) -> bool {
        *self == Window::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    System,
    Asset,
    Interface,
    Room,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::System => "system",
            TargetKind::Asset => "asset",
            TargetKind::Interface => "interface",
            TargetKind::Room => "room",
        }
    }

    pub fn label(self) -> crate::Msg {
        use crate::Msg;
        match self {
            TargetKind::System => Msg::new("系统", "System"),
            TargetKind::Asset => Msg::new("设备", "Asset"),
            TargetKind::Interface => Msg::new("接口", "Interface"),
            TargetKind::Room => Msg::new("机房", "Room"),
        }
    }
}

/// What is inspected: a business system, an asset of the ledger, a data interface, a machine room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    /// The system's name, the asset's tag, the interface's code, the room's name.
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
}

impl Target {
    /// `kind:ref`, the target's key in results and ticket keys.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.reference.trim())
    }

    pub fn display(&self) -> &str {
        if self.label.trim().is_empty() { self.reference.trim() } else { self.label.trim() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// Filled in by a person (on a phone in the machine room).
    #[default]
    Manual,
    /// Run by the server with a probe.
    Probe,
}

/// What a manual item's answer must be (or, for a probe item, the range its reading must lie in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expected {
    /// 正常 / 异常.
    PassFail,
    /// A number without limits (a reading); the person says whether it is normal.
    Number,
    /// Free text (a version, a log excerpt); the person says whether it is normal.
    Text,
    /// A number within `[min, max]` (either may be left out).
    Range {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    /// A text that must equal this (case and surrounding spaces ignored).
    Equals(String),
}

/// One line of the checklist, applied to every target (or to `targets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Stable key: lower-case letters, digits, '_', '-', '.' (1–64).
    pub key: String,
    pub label: String,
    #[serde(default)]
    pub kind: ItemKind,
    /// Manual items: default pass/fail. Probe items: an optional range for `reading`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Expected>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// Probe items: the probe (`yunwei-probes` JSON, tag `kind`). `{target}` in any string is
    /// replaced by the target's `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<serde_json::Value>,
    /// Probe items: the name of a stored credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Probe items: seconds (1–120, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// Probe items: the reading that is the item's value (charted, judged by `expected`); default:
    /// the probe's elapsed time in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<String>,
    /// The ticket level for this item's failures (default: the plan's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Target keys (`system:…`) this item applies to; default: every target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
}

impl Item {
    pub fn expected(&self) -> Expected {
        self.expected.clone().unwrap_or(Expected::PassFail)
    }

    pub fn applies_to(&self, target_key: &str) -> bool {
        self.targets.as_ref().is_none_or(|t| t.iter().any(|k| k == target_key))
    }
}

/// Which ticket a failed item raises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRule {
    /// A level of the contract (`L3`).
    pub level: String,
    /// An incident class of the contract's escalation matrix (`一般`), or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub incident_class: String,
}

/// One problem of a plan definition: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `name`, `items[2].expected.range.min`, `targets[0].ref`.
    pub field: String,
    pub message: Message,
}

fn problem(out: &mut Vec<Problem>, field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) {
    out.push(Problem { field: field.into(), message: Message::new(zh, en) });
}

/// A contract duty as a plan sees it.
#[derive(Debug, Clone)]
pub struct DutyRef {
    pub id: String,
    pub name: String,
    pub frequency: String,
    pub calendar: Option<String>,
}

/// What a plan is checked against: the contract and the platform's probe checker.
pub struct PlanContext<'a> {
    pub duties: &'a [DutyRef],
    pub calendars: &'a BTreeMap<String, Calendar>,
    /// The contract's ticket levels (`L1` …).
    pub levels: &'a [String],
    /// The contract's incident classes (`重大` …).
    pub classes: &'a [String],
    /// Names of the contract's stored probe credentials.
    pub credentials: &'a [String],
    /// Validates one probe (after `{target}` substitution).
    pub probe_check: &'a dyn Fn(&serde_json::Value) -> Result<(), Message>,
}

/// A plan's schedule, resolved from the plan and its duty.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub frequency: Frequency,
    /// The frequency as written.
    pub frequency_text: String,
    pub calendar: Calendar,
    /// `None`: every day.
    pub calendar_name: Option<String>,
    pub on_time: Option<i64>,
    pub missed_after: Option<i64>,
}

/// One due run of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Slot {
    pub at: i64,
    pub due_by: i64,
    pub missed_at: i64,
}

fn is_key(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

fn text_problem(out: &mut Vec<Problem>, field: String, value: &str, max: usize, required: bool) {
    if let Err(m) = crate::text::single_line(value, max, required) {
        problem(out, field, format!("{}（至多 {max} 个字）", m.zh), format!("{} (at most {max} characters)", m.en));
    }
}

/// Replaces `{target}` in every string of a probe definition by the target's ref.
pub fn probe_for(probe: &serde_json::Value, target: &Target) -> serde_json::Value {
    use serde_json::Value;
    match probe {
        Value::String(s) => Value::String(s.replace("{target}", target.reference.trim())),
        Value::Array(a) => Value::Array(a.iter().map(|v| probe_for(v, target)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), probe_for(v, target))).collect()),
        other => other.clone(),
    }
}

/// A plan written in TOML (the editor accepts JSON or TOML); a format error names its line.
pub fn parse_toml(text: &str) -> Result<PlanDef, Problem> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map(|l| format!("line {l}")).unwrap_or_default();
        Problem {
            field: at.clone(),
            message: Message::new(
                format!("TOML 格式错误：{}", e.message()),
                format!("malformed TOML: {}", e.message()),
            ),
        }
    })
}

/// Checks a plan against its contract. Returns every problem, not just the first.
pub fn check(def: &PlanDef, ctx: &PlanContext<'_>) -> Result<Schedule, Vec<Problem>> {
    let mut out = Vec::new();
    text_problem(&mut out, "name".into(), &def.name, 200, true);
    let schedule = match schedule_of(def, ctx.duties, ctx.calendars) {
        Ok(s) => Some(s),
        Err(p) => {
            out.extend(p);
            None
        }
    };

    // Targets.
    if def.targets.is_empty() {
        problem(&mut out, "targets", "至少需要一个巡检对象", "at least one target is required");
    }
    if def.targets.len() > MAX_TARGETS {
        problem(
            &mut out,
            "targets",
            format!("巡检对象至多 {MAX_TARGETS} 个"),
            format!("at most {MAX_TARGETS} targets"),
        );
    }
    let mut target_keys = BTreeSet::new();
    for (i, t) in def.targets.iter().enumerate() {
        text_problem(&mut out, format!("targets[{i}].ref"), &t.reference, 100, true);
        text_problem(&mut out, format!("targets[{i}].label"), &t.label, 200, false);
        if !t.reference.trim().is_empty() && !target_keys.insert(t.key()) {
            problem(
                &mut out,
                format!("targets[{i}].ref"),
                format!("巡检对象 {} 重复", t.key()),
                format!("target {} is listed twice", t.key()),
            );
        }
    }

    // Items.
    if def.items.is_empty() {
        problem(&mut out, "items", "检查单至少需要一项", "the checklist needs at least one item");
    }
    if def.items.len() > MAX_ITEMS {
        problem(&mut out, "items", format!("检查项至多 {MAX_ITEMS} 项"), format!("at most {MAX_ITEMS} items"));
    }
    let mut item_keys = BTreeSet::new();
    let mut cells = 0usize;
    for (i, item) in def.items.iter().enumerate() {
        let f = |s: &str| format!("items[{i}].{s}");
        if !is_key(&item.key) {
            problem(
                &mut out,
                f("key"),
                format!("检查项键 {:?} 无效：1–64 个小写字母、数字、_、-、.", item.key),
                format!("item key {:?} is invalid: 1–64 lower-case letters, digits, '_', '-', '.'", item.key),
            );
        } else if !item_keys.insert(item.key.clone()) {
            problem(
                &mut out,
                f("key"),
                format!("检查项键 {:?} 重复", item.key),
                format!("item key {:?} is used twice", item.key),
            );
        }
        text_problem(&mut out, f("label"), &item.label, 200, true);
        text_problem(&mut out, f("unit"), &item.unit, 20, false);
        let applies: Vec<&Target> = match &item.targets {
            None => def.targets.iter().collect(),
            Some(keys) => {
                if keys.is_empty() {
                    problem(&mut out, f("targets"), "适用对象不能为空列表", "targets must not be an empty list");
                }
                for (j, k) in keys.iter().enumerate() {
                    if !target_keys.contains(k) {
                        problem(
                            &mut out,
                            format!("items[{i}].targets[{j}]"),
                            format!("没有巡检对象 {k:?}（写作 种类:标识，如 system:呼叫受理子系统）"),
                            format!("no target {k:?} (write kind:ref, e.g. system:呼叫受理子系统)"),
                        );
                    }
                }
                def.targets.iter().filter(|t| keys.contains(&t.key())).collect()
            }
        };
        cells += applies.len();
        match &item.expected {
            Some(Expected::Range { min, max }) => {
                if min.is_none() && max.is_none() {
                    problem(&mut out, f("expected.range"), "范围至少需要 min 或 max", "a range needs min, max or both");
                }
                for (name, v) in [("min", min), ("max", max)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        problem(
                            &mut out,
                            f(&format!("expected.range.{name}")),
                            "不是有限数值",
                            "is not a finite number",
                        );
                    }
                }
                if let (Some(a), Some(b)) = (min, max)
                    && a > b
                {
                    problem(
                        &mut out,
                        f("expected.range.min"),
                        format!("下限 {a} 大于上限 {b}"),
                        format!("min {a} is greater than max {b}"),
                    );
                }
            }
            Some(Expected::Equals(s)) => text_problem(&mut out, f("expected.equals"), s, 200, true),
            _ => {}
        }
        if let Some(level) = &item.level {
            if def.tickets.is_none() {
                problem(
                    &mut out,
                    f("level"),
                    "计划没有工单规则（tickets），检查项不能单独指定级别",
                    "the plan has no ticket rule (tickets); an item cannot set a level",
                );
            } else if !ctx.levels.contains(level) {
                problem(
                    &mut out,
                    f("level"),
                    format!("合同中没有级别 {level:?}（已定义：{}）", ctx.levels.join("、")),
                    format!("the contract has no level {level:?} (defined: {})", ctx.levels.join(", ")),
                );
            }
        }
        match item.kind {
            ItemKind::Manual => {
                for (name, present) in [
                    ("probe", item.probe.is_some()),
                    ("credential", item.credential.is_some()),
                    ("timeout_s", item.timeout_s.is_some()),
                    ("reading", item.reading.is_some()),
                ] {
                    if present {
                        problem(
                            &mut out,
                            f(name),
                            format!("人工检查项不能设置 {name}（仅 kind = \"probe\" 的检查项可以）"),
                            format!("a manual item cannot set {name} (only items of kind \"probe\")"),
                        );
                    }
                }
            }
            ItemKind::Probe => {
                match &item.probe {
                    None => problem(&mut out, f("probe"), "自动检查项缺少 probe 定义", "a probe item needs a probe"),
                    Some(p) => {
                        let mut seen = BTreeSet::new();
                        for t in &applies {
                            if let Err(m) = (ctx.probe_check)(&probe_for(p, t))
                                && seen.insert((m.zh.clone(), m.en.clone()))
                            {
                                out.push(Problem { field: f("probe"), message: m });
                            }
                        }
                        if applies.is_empty()
                            && let Err(m) = (ctx.probe_check)(p)
                        {
                            out.push(Problem { field: f("probe"), message: m });
                        }
                    }
                }
                if let Some(c) = &item.credential
                    && !ctx.credentials.contains(c)
                {
                    problem(
                        &mut out,
                        f("credential"),
                        format!("没有名为 {c:?} 的巡检凭据，请先保存凭据"),
                        format!("no probe credential named {c:?}; store it first"),
                    );
                }
                if let Some(t) = item.timeout_s
                    && !(1..=MAX_PROBE_TIMEOUT_S).contains(&t)
                {
                    problem(
                        &mut out,
                        f("timeout_s"),
                        format!("超时应为 1 到 {MAX_PROBE_TIMEOUT_S} 秒"),
                        format!("timeout_s is 1 to {MAX_PROBE_TIMEOUT_S} seconds"),
                    );
                }
                if let Some(r) = &item.reading {
                    text_problem(&mut out, f("reading"), r, 100, true);
                }
                match &item.expected {
                    None => {}
                    Some(Expected::Range { .. }) if item.reading.is_some() => {}
                    Some(Expected::Range { .. }) => problem(
                        &mut out,
                        f("reading"),
                        "自动检查项的范围要求需要指定 reading（如 latency_ms）",
                        "a range on a probe item needs `reading` (e.g. latency_ms)",
                    ),
                    Some(_) => problem(
                        &mut out,
                        f("expected"),
                        "自动检查项只能设置数值范围（range）",
                        "a probe item can only expect a range",
                    ),
                }
            }
        }
    }
    if cells > MAX_CELLS {
        problem(
            &mut out,
            "items",
            format!("每次巡检至多 {MAX_CELLS} 个对象×检查项，当前 {cells}"),
            format!("a run has at most {MAX_CELLS} target × item cells, this plan has {cells}"),
        );
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
    match schedule {
        Some(s) if out.is_empty() => Ok(s),
        _ => Err(out),
    }
}

/// The schedule of a plan: its frequency, calendar and window, resolved through its duty. The
/// scheduler uses this alone (a plan stored earlier keeps running when, say, a credential it
/// names was deleted since).
pub fn schedule_of(
    def: &PlanDef,
    duties: &[DutyRef],
    calendars: &BTreeMap<String, Calendar>,
) -> Result<Schedule, Vec<Problem>> {
    let mut out = Vec::new();
    let duty = match &def.duty {
        Some(id) => {
            let d = duties.iter().find(|d| d.id == id.trim());
            if d.is_none() {
                let known: Vec<&str> = duties.iter().map(|d| d.id.as_str()).collect();
                problem(
                    &mut out,
                    "duty",
                    format!("合同中没有职责 {id:?}（已定义：{}）", known.join("、")),
                    format!("the contract has no duty {id:?} (defined: {})", known.join(", ")),
                );
            }
            d
        }
        None => None,
    };
    let frequency_text = def.frequency.clone().or_else(|| duty.map(|d| d.frequency.clone()));
    let frequency = match &frequency_text {
        None => {
            problem(
                &mut out,
                "frequency",
                "缺少频率：请填写频率，或关联合同职责",
                "no frequency: give one or link a contract duty",
            );
            None
        }
        Some(text) => match Frequency::parse(text) {
            Ok(f) => Some(f),
            Err(e) => {
                problem(
                    &mut out,
                    "frequency",
                    format!(
                        "无法识别的频率 {text:?}：可写 daily at 09:00, 15:00 / daily by 23:00 / daily / weekly x2 / every 2 weeks / monthly on 10 / monthly first monday / quarterly / yearly"
                    ),
                    format!(
                        "{e}; write e.g. \"daily at 09:00, 15:00\", \"daily by 23:00\", \"weekly x2\", \"monthly on 10\", \"monthly first monday\", \"quarterly\""
                    ),
                );
                None
            }
        },
    };
    let calendar_name = def.calendar.clone().or_else(|| duty.and_then(|d| d.calendar.clone()));
    let calendar = match &calendar_name {
        None => Some(Calendar::always()),
        Some(name) => {
            let c = calendars.get(name.trim()).cloned();
            if c.is_none() {
                let known: Vec<&str> = calendars.keys().map(String::as_str).collect();
                problem(
                    &mut out,
                    "calendar",
                    format!("合同中没有日历 {name:?}（已定义：{}）", known.join("、")),
                    format!("the contract has no calendar {name:?} (defined: {})", known.join(", ")),
                );
            }
            c
        }
    };
    let duration = |out: &mut Vec<Problem>, field: &str, v: &Option<String>| -> Option<i64> {
        let text = v.as_deref()?;
        let d = parse_duration(text);
        if d.is_none() {
            problem(
                out,
                field,
                format!("无法识别的时长 {text:?}：如 30m、2h、1d，至多 366 天"),
                format!("not a duration: {text:?}; write e.g. 30m, 2h, 1d (at most 366 days)"),
            );
        }
        d
    };
    let on_time = duration(&mut out, "window.on_time", &def.window.on_time);
    let missed_after = duration(&mut out, "window.missed_after", &def.window.missed_after);
    if let (Some(a), Some(b)) = (on_time, missed_after)
        && b < a
    {
        problem(
            &mut out,
            "window.missed_after",
            "判定错过的时长不能短于按时完成的时长",
            "missed_after must not be shorter than on_time",
        );
    }
    if let Some(d) = def.retain_raw_days
        && !(1..=366).contains(&d)
    {
        problem(&mut out, "retain_raw_days", "原始数据保留天数应为 1 到 366", "retain_raw_days is 1 to 366");
    }

    match (out.is_empty(), frequency, calendar, frequency_text) {
        (true, Some(frequency), Some(calendar), Some(frequency_text)) => Ok(Schedule {
            frequency,
            frequency_text,
            calendar,
            calendar_name: calendar_name.map(|c| c.trim().to_string()),
            on_time,
            missed_after,
        }),
        _ => Err(out),
    }
}

/// The (target key, item key) pairs of one run, in checklist order.
pub fn cells(def: &PlanDef) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in &def.targets {
        let tk = t.key();
        for i in &def.items {
            if i.applies_to(&tk) {
                out.push((tk.clone(), i.key.clone()));
            }
        }
    }
    out
}

/// A person's answer to a manual item.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    pub ok: Option<bool>,
    pub value: Option<f64>,
    pub text: Option<&'a str>,
}

/// Whether a manual answer passes, or why it does not fit the item.
pub fn judge(item: &Item, a: &Answer<'_>) -> Result<bool, Message> {
    let text = a.text.map(str::trim).filter(|t| !t.is_empty());
    if a.value.is_some_and(|v| !v.is_finite()) {
        return Err(Message::new("数值无效", "the value is not a finite number"));
    }
    match item.expected() {
        Expected::PassFail => a.ok.ok_or(Message::new("请选择正常或异常（ok）", "say whether it passed (ok)")),
        Expected::Number => {
            a.value.ok_or(Message::new("该项需要数值读数（value）", "this item needs a numeric reading (value)"))?;
            Ok(a.ok.unwrap_or(true))
        }
        Expected::Text => {
            text.ok_or(Message::new("该项需要填写文字（text）", "this item needs a text (text)"))?;
            Ok(a.ok.unwrap_or(true))
        }
        Expected::Range { min, max } => {
            let v = a
                .value
                .ok_or(Message::new("该项需要数值读数（value）", "this item needs a numeric reading (value)"))?;
            Ok(min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
        }
        Expected::Equals(want) => {
            let t = text.ok_or(Message::new("该项需要填写文字（text）", "this item needs a text (text)"))?;
            Ok(t.to_lowercase() == want.trim().to_lowercase())
        }
    }
}

/// Whether a probe item passes: the probe passed and its reading lies within the expected range.
pub fn judge_probe(item: &Item, probe_ok: bool, reading: Option<f64>) -> bool {
    match item.expected() {
        Expected::Range { min, max } => {
            probe_ok && reading.is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
        }
        _ => probe_ok,
    }
}

fn serves(cal: &Calendar, holidays: &HolidayTable, day: i64, span: &mut Span) -> bool {
    let a = day_start_utc(day);
    cal.business_between(a, a + MS_PER_DAY, holidays, span) > 0
}

/// (year, month) → the first day of that month.
fn month_start(y: i32, m: u32) -> i64 {
    days_from_civil(y, m, 1)
}

fn add_months(y: i32, m: u32, k: i32) -> (i32, u32) {
    let idx = y * 12 + (m as i32 - 1) + k;
    (idx.div_euclid(12), (idx.rem_euclid(12) + 1) as u32)
}

impl Schedule {
    fn window(&self, at: i64, natural_due: i64) -> Slot {
        let due_by = self.on_time.map(|d| at + d).unwrap_or(natural_due).max(at + MS_PER_MIN);
        let missed_at = self.missed_after.map(|d| (at + d).max(due_by)).unwrap_or(due_by + DEFAULT_GRACE_MS);
        Slot { at, due_by, missed_at }
    }

    /// A run for a group of consecutive serving days: from the first day's start to the last day's end.
    fn span_slot(&self, days: &[i64]) -> Option<Slot> {
        let (first, last) = (*days.first()?, *days.last()?);
        Some(self.window(day_start_utc(first), day_start_utc(last + 1)))
    }

    fn serving_days(&self, holidays: &HolidayTable, from_day: i64, to_day: i64, span: &mut Span) -> Vec<i64> {
        (from_day..to_day).filter(|&d| serves(&self.calendar, holidays, d, span)).collect()
    }

    /// The first serving day at or after `day` (searching up to 62 days).
    fn next_serving(&self, holidays: &HolidayTable, day: i64, span: &mut Span) -> Option<i64> {
        (day..day + 62).find(|&d| serves(&self.calendar, holidays, d, span))
    }

    /// The slots whose `at` lies in `[from, to)`, sorted. Years without holiday data are added to
    /// `span` (they are treated as ordinary weeks).
    pub fn slots(&self, holidays: &HolidayTable, from: i64, to: i64, span: &mut Span) -> Vec<Slot> {
        let mut out = Vec::new();
        if to <= from {
            return out;
        }
        let (first, last) = (local_day(from), local_day(to - 1));
        match &self.frequency {
            Frequency::Daily { at, by } => {
                for day in first..=last {
                    if !serves(&self.calendar, holidays, day, span) {
                        continue;
                    }
                    let start = day_start_utc(day);
                    if !at.is_empty() {
                        for &t in at {
                            let a = start + i64::from(t) * MS_PER_MIN;
                            out.push(self.window(a, a + DEFAULT_ON_TIME_MS));
                        }
                    } else {
                        let due = match by {
                            Some(t) if *t > 0 => start + i64::from(*t) * MS_PER_MIN,
                            _ => start + MS_PER_DAY,
                        };
                        out.push(self.window(start, due));
                    }
                }
            }
            Frequency::Weekly { times } => {
                let mut monday = first - i64::from(weekday(first));
                while monday <= last {
                    let days = self.serving_days(holidays, monday, monday + 7, span);
                    let n = (*times as usize).min(days.len());
                    let mut i = 0;
                    for g in 0..n {
                        let size = days.len() / n + usize::from(g < days.len() % n);
                        out.extend(self.span_slot(&days[i..i + size]));
                        i += size;
                    }
                    monday += 7;
                }
            }
            Frequency::EveryWeeks(n) => {
                let block = 7 * i64::from(*n);
                let mut start = WEEK_ORIGIN + (first - WEEK_ORIGIN).div_euclid(block) * block;
                while start <= last {
                    out.extend(self.span_slot(&self.serving_days(holidays, start, start + block, span)));
                    start += block;
                }
            }
            Frequency::Monthly(md) => {
                let (y0, m0, _) = civil_from_days(first);
                let (y1, m1, _) = civil_from_days(last);
                // From the month before: "the 30th, else the next serving day" may move into this one.
                let (mut y, mut m) = add_months(y0, m0, -1);
                while (y, m) <= (y1, m1) {
                    let start = month_start(y, m);
                    let (ny, nm) = add_months(y, m, 1);
                    let end = month_start(ny, nm);
                    match md {
                        MonthDay::Any => out.extend(self.span_slot(&self.serving_days(holidays, start, end, span))),
                        MonthDay::Day(d) => {
                            if let Some(day) = self.next_serving(holidays, days_from_civil(y, m, *d), span) {
                                out.push(self.window(day_start_utc(day), day_start_utc(day + 1)));
                            }
                        }
                        MonthDay::FirstWeekday(w) => {
                            let offset = (i64::from(*w) - i64::from(weekday(start))).rem_euclid(7);
                            if let Some(day) = self.next_serving(holidays, start + offset, span) {
                                out.push(self.window(day_start_utc(day), day_start_utc(day + 1)));
                            }
                        }
                    }
                    (y, m) = (ny, nm);
                }
            }
            Frequency::Quarterly | Frequency::Yearly => {
                let months = if self.frequency == Frequency::Quarterly { 3 } else { 12 };
                let (y0, m0, _) = civil_from_days(first);
                let (y1, m1, _) = civil_from_days(last);
                let align = |y: i32, m: u32| (y, m - (m - 1) % months);
                let (mut y, mut m) = align(y0, m0);
                while (y, m) <= (y1, m1) {
                    let (ny, nm) = add_months(y, m, months as i32);
                    let days = self.serving_days(holidays, month_start(y, m), month_start(ny, nm), span);
                    out.extend(self.span_slot(&days));
                    (y, m) = (ny, nm);
                }
            }
        }
        out.retain(|s| s.at >= from && s.at < to);
        out.sort();
        out.dedup_by_key(|s| s.at);
        out
    }

    /// The first slot whose `at` is after `t` (within two years), for the scheduler's index.
    pub fn next_slot_after(&self, holidays: &HolidayTable, t: i64) -> Option<Slot> {
        let mut span = Span::default();
        for days in [3, 40, 120, 400, 800] {
            if let Some(s) = self.slots(holidays, t + 1, t + 1 + days * MS_PER_DAY, &mut span).first() {
                return Some(*s);
            }
        }
        None
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Not finished, not yet missed.
    Open,
    /// Finished by its due time.
    Done,
    /// Finished after its due time but before it was missed.
    Late,
    /// Not finished in time.
    Missed,
}

impl RunState {
    pub const ALL: [RunState; 4] = [RunState::Open, RunState::Done, RunState::Late, RunState::Missed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Open => "open",
            RunState::Done => "done",
            RunState::Late => "late",
            RunState::Missed => "missed",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn label(self) -> crate::Msg {
        use crate::Msg;
        match self {
            RunState::Open => Msg::new("待完成", "Open"),
            RunState::Done => Msg::new("按时完成", "Done"),
            RunState::Late => Msg::new("逾期完成", "Late"),
            RunState::Missed => Msg::new("错过", "Missed"),
        }
    }
}

/// How a run stands at `now`, from when it finished (the time its last reading was taken).
pub fn classify(slot: &Slot, finished_at: Option<i64>, now: i64) -> RunState {
    match finished_at {
        Some(f) if f <= slot.due_by => RunState::Done,
        Some(f) if f <= slot.missed_at => RunState::Late,
        Some(_) => RunState::Missed,
        None if now >= slot.missed_at => RunState::Missed,
        None => RunState::Open,
    }
}

/// What storage knows of one run, for compliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFacts {
    pub slot_at: i64,
    pub finished_at: Option<i64>,
    /// Target × item cells without a result when the run finished.
    pub missing_items: u32,
}

/// One required slot and how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotOutcome {
    pub slot: Slot,
    pub state: RunState,
    /// Whether a run was created for the slot (a slot can be missed without one, e.g. while the
    /// server was down).
    pub has_run: bool,
    pub missing_items: u32,
}

/// Required vs done vs late vs missed over a period: the evidence of the quarterly scoring.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Compliance {
    /// Slots that have come due (`at <= now`).
    pub required: u32,
    pub done: u32,
    pub late: u32,
    pub missed: u32,
    /// Due, not finished, not yet missed.
    pub open: u32,
    /// Items left out of finished (done or late) runs.
    pub missing_items: u32,
    pub slots: Vec<SlotOutcome>,
}

/// Judges each slot that has come due by its run (matched on `slot_at`).
pub fn compliance(slots: &[Slot], runs: &[RunFacts], now: i64) -> Compliance {
    let by_at: BTreeMap<i64, &RunFacts> = runs.iter().map(|r| (r.slot_at, r)).collect();
    let mut c = Compliance::default();
    for s in slots.iter().filter(|s| s.at <= now) {
        let run = by_at.get(&s.at);
        let state = classify(s, run.and_then(|r| r.finished_at), now);
        let missing = match state {
            RunState::Done | RunState::Late => run.map(|r| r.missing_items).unwrap_or(0),
            _ => 0,
        };
        c.required += 1;
        match state {
            RunState::Done => c.done += 1,
            RunState::Late => c.late += 1,
            RunState::Missed => c.missed += 1,
            RunState::Open => c.open += 1,
        }
        c.missing_items += missing;
        c.slots.push(SlotOutcome { slot: *s, state, has_run: run.is_some(), missing_items: missing });
    }
    c
}

/// The source key of the ticket a failed item raises: one open ticket per plan, target and item.
pub fn ticket_key(plan_id: i64, target_key: &str, item_key: &str) -> String {
    format!("insp:{plan_id}:{target_key}:{item_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{Days, parse_date};
    use proptest::prelude::*;

    const H: i64 = 3_600_000;

    fn at(date: &str, hh: i64, mm: i64) -> i64 {
        day_start_utc(parse_date(date).unwrap()) + hh * H + mm * MS_PER_MIN
    }

    fn calendars() -> BTreeMap<String, Calendar> {
        let mut m = BTreeMap::new();
        m.insert("working".to_string(), Calendar { days: Days::WorkingDays, seasons: vec![] });
        m.insert("hotline".to_string(), Calendar::always());
        m
    }

    fn with_ctx<T>(f: impl FnOnce(&PlanContext<'_>) -> T) -> T {
        let duties = vec![DutyRef {
            id: "inspect.core".into(),
            name: "9 大基础子系统巡检".into(),
            frequency: "daily at 09:00, 15:00".into(),
            calendar: Some("working".into()),
        }];
        let cals = calendars();
        let levels = vec!["L1".to_string(), "L2".to_string(), "L3".to_string()];
        let classes = vec!["一般".to_string()];
        let creds = vec!["yunwei-api".to_string()];
        let check = |v: &serde_json::Value| {
            if v.get("kind").and_then(|k| k.as_str()) == Some("http")
                && v.get("url").and_then(|u| u.as_str()).is_some_and(|u| u.starts_with("http"))
            {
                Ok(())
            } else {
                Err(Message::new("probe 无效", "invalid probe"))
            }
        };
        let ctx = PlanContext {
            duties: &duties,
            calendars: &cals,
            levels: &levels,
            classes: &classes,
            credentials: &creds,
            probe_check: &check,
        };
        f(&ctx)
    }

    fn plan(json: serde_json::Value) -> PlanDef {
        serde_json::from_value(json).unwrap()
    }

    fn basic() -> serde_json::Value {
        serde_json::json!({
            "name": "基础子系统巡检",
            "duty": "inspect.core",
            "targets": [{"kind": "system", "ref": "呼叫受理子系统"}, {"kind": "room", "ref": "1号机房", "label": "一号机房"}],
            "items": [
                {"key": "login", "label": "登录正常"},
                {"key": "temp", "label": "温度", "expected": {"range": {"min": 18, "max": 27}}, "unit": "℃", "targets": ["room:1号机房"]},
                {"key": "api", "label": "接口", "kind": "probe", "probe": {"kind": "http", "url": "http://{target}/healthz"},
                 "credential": "yunwei-api", "reading": "latency_ms", "expected": {"range": {"max": 500}}, "targets": ["system:呼叫受理子系统"]}
            ],
            "tickets": {"level": "L3", "incident_class": "一般"}
        })
    }

    #[test]
    fn a_good_plan_resolves_its_duty() {
        let s = with_ctx(|ctx| check(&plan(basic()), ctx)).unwrap();
        assert_eq!(s.frequency, Frequency::Daily { at: vec![540, 900], by: None });
        assert_eq!(s.calendar_name.as_deref(), Some("working"));
        let p = plan(basic());
        assert_eq!(
            cells(&p),
            vec![
                ("system:呼叫受理子系统".to_string(), "login".to_string()),
                ("system:呼叫受理子系统".to_string(), "api".to_string()),
                ("room:1号机房".to_string(), "login".to_string()),
                ("room:1号机房".to_string(), "temp".to_string()),
            ]
        );
        assert_eq!(
            probe_for(p.items[2].probe.as_ref().unwrap(), &p.targets[0])["url"],
            "http://呼叫受理子系统/healthz"
        );
        // TOML works as well as JSON.
        let toml_plan: PlanDef = toml::from_str(
            r#"
            name = "机房环境"
            frequency = "weekly x2"
            [[targets]]
            kind = "room"
            ref = "A"
            [[items]]
            key = "humidity"
            label = "湿度"
            expected = { range = { min = 40, max = 70 } }
            "#,
        )
        .unwrap();
        with_ctx(|ctx| check(&toml_plan, ctx)).unwrap();
        let bad = parse_toml("name = \"x\"\nfrequency = \"daily\"\ncolour = 1\n").unwrap_err();
        assert_eq!(bad.field, "line 3");
        assert!(bad.message.en.contains("colour"), "{bad:?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut j = basic();
        j["name"] = "".into();
        j["duty"] = "inspect.nope".into();
        j["calendar"] = "night".into();
        j["window"] = serde_json::json!({"on_time": "3h", "missed_after": "1h"});
        j["targets"][1]["kind"] = "system".into();
        j["targets"][1]["ref"] = "呼叫受理子系统".into();
        j["items"][0]["key"] = "Login!".into();
        j["items"][1]["expected"] = serde_json::json!({"range": {"min": 30, "max": 20}});
        j["items"][2]["probe"] = serde_json::json!({"kind": "ftp"});
        j["items"][2]["credential"] = "nobody".into();
        j["items"][2]["timeout_s"] = 500.into();
        j["tickets"]["level"] = "L9".into();
        let problems = with_ctx(|ctx| check(&plan(j), ctx)).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "name",
            "duty",
            "frequency",
            "calendar",
            "window.missed_after",
            "targets[1].ref",
            "items[0].key",
            "items[1].expected.range.min",
            "items[1].targets[0]",
            "items[2].probe",
            "items[2].credential",
            "items[2].timeout_s",
            "tickets.level",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let p = problems.iter().find(|p| p.field == "tickets.level").unwrap();
        assert!(p.message.en.contains("L9") && p.message.zh.contains("L9"), "{p:?}");
        // Manual items cannot carry probe settings; a probe range needs a reading.
        let mut j = basic();
        j["items"][0]["timeout_s"] = 5.into();
        j["items"][2].as_object_mut().unwrap().remove("reading");
        let problems = with_ctx(|ctx| check(&plan(j), ctx)).unwrap_err();
        assert!(problems.iter().any(|p| p.field == "items[0].timeout_s"));
        assert!(problems.iter().any(|p| p.field == "items[2].reading"));
    }

    #[test]
    fn unknown_fields_and_bad_frequencies_are_refused() {
        let mut j = basic();
        j["colour"] = "red".into();
        assert!(serde_json::from_value::<PlanDef>(j).is_err());
        let mut j = basic();
        j["items"][0]["expected"] = serde_json::json!({"range": {"min": 1, "mx": 2}});
        assert!(serde_json::from_value::<PlanDef>(j).is_err());
        let mut j = basic();
        j.as_object_mut().unwrap().remove("duty");
        let problems = with_ctx(|ctx| check(&plan(j.clone()), ctx)).unwrap_err();
        assert_eq!(problems[0].field, "frequency");
        j["frequency"] = "hourly".into();
        let problems = with_ctx(|ctx| check(&plan(j), ctx)).unwrap_err();
        assert_eq!(problems[0].field, "frequency");
        assert!(problems[0].message.en.contains("hourly"));
    }

    #[test]
    fn manual_answers_are_judged() {
        let p = plan(basic());
        let (pass_fail, temp) = (&p.items[0], &p.items[1]);
        assert_eq!(judge(pass_fail, &Answer { ok: Some(false), ..Default::default() }), Ok(false));
        assert!(judge(pass_fail, &Answer::default()).is_err());
        assert_eq!(judge(temp, &Answer { value: Some(22.5), ..Default::default() }), Ok(true));
        assert_eq!(judge(temp, &Answer { value: Some(31.0), ok: Some(true), ..Default::default() }), Ok(false));
        assert!(judge(temp, &Answer { text: Some("22"), ..Default::default() }).is_err());
        assert!(judge(temp, &Answer { value: Some(f64::NAN), ..Default::default() }).is_err());
        let eq = Item { expected: Some(Expected::Equals("正常".into())), ..pass_fail.clone() };
        assert_eq!(judge(&eq, &Answer { text: Some(" 正常 "), ..Default::default() }), Ok(true));
        assert!(judge_probe(&p.items[2], true, Some(120.0)));
        assert!(!judge_probe(&p.items[2], true, Some(900.0)));
        assert!(!judge_probe(&p.items[2], false, Some(1.0)));
    }

    fn schedule(freq: &str, calendar: Option<&str>) -> Schedule {
        let cals = calendars();
        Schedule {
            frequency: Frequency::parse(freq).unwrap(),
            frequency_text: freq.into(),
            calendar: calendar.map(|c| cals[c].clone()).unwrap_or_else(Calendar::always),
            calendar_name: calendar.map(str::to_string),
            on_time: None,
            missed_after: None,
        }
    }

    fn ats(s: &Schedule, from: i64, to: i64) -> Vec<i64> {
        s.slots(&HolidayTable::embedded(), from, to, &mut Span::default()).iter().map(|s| s.at).collect()
    }

    #[test]
    fn twice_daily_on_working_days_skips_spring_festival_and_keeps_the_make_up_saturday() {
        // 2026: the festival runs Sun 15 – Mon 23 Feb; Sat 14 Feb and Sat 28 Feb are make-up days.
        let s = schedule("daily at 09:00, 15:00", Some("working"));
        let got = ats(&s, at("2026-02-12", 0, 0), at("2026-02-25", 0, 0));
        assert_eq!(
            got,
            vec![
                at("2026-02-12", 9, 0),
                at("2026-02-12", 15, 0),
                at("2026-02-13", 9, 0),
                at("2026-02-13", 15, 0),
                at("2026-02-14", 9, 0),
                at("2026-02-14", 15, 0),
                at("2026-02-24", 9, 0),
                at("2026-02-24", 15, 0),
            ]
        );
        let slot =
            s.slots(&HolidayTable::embedded(), at("2026-02-24", 9, 0), at("2026-02-24", 9, 1), &mut Span::default())[0];
        assert_eq!(slot.due_by, at("2026-02-24", 11, 0));
        assert_eq!(slot.missed_at, at("2026-02-25", 11, 0));
        // Every day on the hotline calendar: the holiday is no exception.
        assert_eq!(
            ats(&schedule("daily at 09:00, 15:00", Some("hotline")), at("2026-02-16", 0, 0), at("2026-02-17", 0, 0))
                .len(),
            2
        );
    }

    #[test]
    fn daily_by_and_plain_daily() {
        let s = schedule("daily by 23:00", None);
        let slots =
            s.slots(&HolidayTable::embedded(), at("2026-03-02", 0, 0), at("2026-03-03", 0, 0), &mut Span::default());
        assert_eq!(
            slots,
            vec![Slot {
                at: at("2026-03-02", 0, 0),
                due_by: at("2026-03-02", 23, 0),
                missed_at: at("2026-03-03", 23, 0)
            }]
        );
        let s = Schedule { on_time: Some(4 * H), missed_after: Some(6 * H), ..schedule("daily", None) };
        let slots =
            s.slots(&HolidayTable::embedded(), at("2026-03-02", 0, 0), at("2026-03-03", 0, 0), &mut Span::default());
        assert_eq!(
            slots,
            vec![Slot {
                at: at("2026-03-02", 0, 0),
                due_by: at("2026-03-02", 4, 0),
                missed_at: at("2026-03-02", 6, 0)
            }]
        );
    }

    #[test]
    fn weekly_runs_are_spread_over_the_working_days() {
        // Week of Mon 2026-03-02: Mon–Wed and Thu–Fri.
        let s = schedule("weekly x2", Some("working"));
        let slots =
            s.slots(&HolidayTable::embedded(), at("2026-03-02", 0, 0), at("2026-03-09", 0, 0), &mut Span::default());
        assert_eq!(
            slots.iter().map(|s| s.at).collect::<Vec<_>>(),
            vec![at("2026-03-02", 0, 0), at("2026-03-05", 0, 0)]
        );
        assert_eq!(slots[0].due_by, at("2026-03-05", 0, 0));
        assert_eq!(slots[1].due_by, at("2026-03-07", 0, 0));
        // Spring festival week 2026-02-16: no working day, no run; the week before has six
        // (the make-up Saturday): Mon–Wed, Thu–Sat.
        assert!(ats(&s, at("2026-02-16", 0, 0), at("2026-02-23", 0, 0)).is_empty());
        assert_eq!(
            ats(&s, at("2026-02-09", 0, 0), at("2026-02-16", 0, 0)),
            vec![at("2026-02-09", 0, 0), at("2026-02-12", 0, 0)]
        );
        // Weekly: the week's first working day; after National Day 2026 (Oct 1–7) that is Thu 8th.
        let w = schedule("weekly", Some("working"));
        assert_eq!(ats(&w, at("2026-10-05", 0, 0), at("2026-10-12", 0, 0)), vec![at("2026-10-08", 0, 0)]);
        // Every 2 weeks: blocks counted from Monday 1970-01-05.
        let e = schedule("every 2 weeks", None);
        let got = ats(&e, at("2026-01-01", 0, 0), at("2026-03-01", 0, 0));
        assert_eq!(got.len(), 4);
        assert!(got.windows(2).all(|w| w[1] - w[0] == 14 * MS_PER_DAY));
    }

    #[test]
    fn monthly_days_move_to_the_next_serving_day() {
        // 2026-01-10 is a Saturday: the next working day is Monday the 12th. 2026-10-10 is a
        // Saturday that is a make-up workday: it stays.
        let s = schedule("monthly on 10", Some("working"));
        let got = ats(&s, at("2026-01-01", 0, 0), at("2026-12-31", 0, 0));
        assert_eq!(got.len(), 12);
        assert_eq!(got[0], at("2026-01-12", 0, 0));
        assert_eq!(got[9], at("2026-10-10", 0, 0));
        let every_day = schedule("monthly on 10", None);
        assert_eq!(ats(&every_day, at("2026-01-01", 0, 0), at("2026-02-01", 0, 0)), vec![at("2026-01-10", 0, 0)]);
        // First Monday: 2026-02-02; in June 2026 the 1st is a Monday.
        let fm = schedule("monthly first monday", Some("working"));
        assert_eq!(ats(&fm, at("2026-02-01", 0, 0), at("2026-03-01", 0, 0)), vec![at("2026-02-02", 0, 0)]);
        assert_eq!(ats(&fm, at("2026-06-01", 0, 0), at("2026-07-01", 0, 0)), vec![at("2026-06-01", 0, 0)]);
        // Monthly / quarterly / yearly span their period; January 2026 starts with New Year.
        let m = schedule("monthly", Some("working"));
        let slot =
            m.slots(&HolidayTable::embedded(), at("2026-01-01", 0, 0), at("2026-02-01", 0, 0), &mut Span::default())[0];
        assert_eq!(slot.at, at("2026-01-04", 0, 0), "Sunday 4 Jan 2026 is a make-up workday");
        assert_eq!(slot.due_by, at("2026-01-31", 0, 0), "the last working day is Friday the 30th");
        let q = schedule("quarterly", None);
        assert_eq!(
            ats(&q, at("2026-01-01", 0, 0), at("2027-01-01", 0, 0)),
            vec![at("2026-01-01", 0, 0), at("2026-04-01", 0, 0), at("2026-07-01", 0, 0), at("2026-10-01", 0, 0)]
        );
        let y = schedule("yearly", Some("working"));
        assert_eq!(ats(&y, at("2026-01-01", 0, 0), at("2027-01-01", 0, 0)), vec![at("2026-01-04", 0, 0)]);
        assert_eq!(
            y.next_slot_after(&HolidayTable::embedded(), at("2025-06-01", 0, 0)).unwrap().at,
            at("2026-01-04", 0, 0)
        );
    }

    #[test]
    fn runs_are_classified_and_counted() {
        let s = Slot { at: 0, due_by: 10, missed_at: 20 };
        assert_eq!(classify(&s, Some(10), 100), RunState::Done);
        assert_eq!(classify(&s, Some(11), 100), RunState::Late);
        assert_eq!(classify(&s, None, 19), RunState::Open);
        assert_eq!(classify(&s, None, 20), RunState::Missed);
        let slots: Vec<Slot> =
            (0..5).map(|i| Slot { at: i * 100, due_by: i * 100 + 10, missed_at: i * 100 + 50 }).collect();
        let runs = vec![
            RunFacts { slot_at: 0, finished_at: Some(5), missing_items: 2 },
            RunFacts { slot_at: 100, finished_at: Some(130), missing_items: 0 },
            RunFacts { slot_at: 200, finished_at: None, missing_items: 0 },
            RunFacts { slot_at: 400, finished_at: None, missing_items: 0 },
        ];
        let c = compliance(&slots, &runs, 420);
        assert_eq!((c.required, c.done, c.late, c.missed, c.open, c.missing_items), (5, 1, 1, 2, 1, 2));
        assert!(!c.slots[3].has_run, "slot 300 had no run and is missed");
    }

    fn any_schedule() -> impl Strategy<Value = Schedule> {
        let freqs = prop_oneof![
            Just("daily"),
            Just("daily at 09:00, 15:00"),
            Just("daily by 23:00"),
            Just("weekly"),
            Just("weekly x2"),
            Just("weekly x7"),
            Just("every 3 weeks"),
            Just("monthly"),
            Just("monthly on 10"),
            Just("monthly on 28"),
            Just("monthly first monday"),
            Just("quarterly"),
            Just("yearly"),
        ];
        (
            freqs,
            prop_oneof![Just(None), Just(Some("working"))],
            proptest::option::of(1i64..48),
            proptest::option::of(1i64..96),
        )
            .prop_map(|(f, c, on, missed)| Schedule {
                on_time: on.map(|h| h * H),
                missed_after: missed.map(|h| h * H),
                ..schedule(f, c)
            })
    }

    proptest! {
        #[test]
        fn slots_are_sorted_in_range_and_on_serving_days(s in any_schedule(), from in 1_735_000_000_000i64..1_790_000_000_000, len in 0i64..400 * MS_PER_DAY) {
            let h = HolidayTable::embedded();
            let to = from + len;
            let slots = s.slots(&h, from, to, &mut Span::default());
            prop_assert!(slots.windows(2).all(|w| w[0].at < w[1].at), "sorted, distinct");
            for sl in &slots {
                prop_assert!(sl.at >= from && sl.at < to);
                prop_assert!(sl.at < sl.due_by && sl.due_by <= sl.missed_at);
                prop_assert!(serves(&s.calendar, &h, local_day(sl.at), &mut Span::default()), "on a serving day");
            }
            // Splitting the range changes nothing.
            let mid = from + len / 2;
            let mut halves = s.slots(&h, from, mid, &mut Span::default());
            halves.extend(s.slots(&h, mid, to, &mut Span::default()));
            prop_assert_eq!(halves, slots);
        }

        #[test]
        fn compliance_counts_add_up(finished in proptest::collection::vec(proptest::option::of(0i64..200), 0..40), missing in 0u32..5, now in 0i64..5_000) {
            let slots: Vec<Slot> = (0..finished.len() as i64).map(|i| Slot { at: i * 100, due_by: i * 100 + 30, missed_at: i * 100 + 90 }).collect();
            let runs: Vec<RunFacts> = finished.iter().enumerate().filter(|(i, _)| i % 3 != 2)
                .map(|(i, f)| RunFacts { slot_at: i as i64 * 100, finished_at: f.map(|f| i as i64 * 100 + f), missing_items: missing }).collect();
            let c = compliance(&slots, &runs, now);
            prop_assert_eq!(c.required, c.done + c.late + c.missed + c.open);
            prop_assert_eq!(c.required as usize, slots.iter().filter(|s| s.at <= now).count());
            prop_assert_eq!(c.missing_items, (c.done + c.late) * missing);
        }
    }
}
