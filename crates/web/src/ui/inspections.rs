//! Inspection pages (巡检): the day's runs and the plans; a plan's editor (JSON or TOML, every
//! problem listed with its field) with its schedule preview and charts; a run's checklist made for
//! a phone in the machine room (each item its own small form that works without scripts;
//! `/assets/inspection.js` keeps readings in the browser while offline and syncs them through the
//! API with a `client_op_id` each); the printable run record; the compliance table; the printable
//! daily inspection sheet (日巡检表).
//!
//! The pages call the same storage functions as `api::inspections`. Their templates and texts live
//! here: the crate's template environment is extended with this module's templates and a `tr()`
//! function over [`TEXTS`], and the script and stylesheet are served from this module.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::ContractPermission;
use yunwei_core::calendar::{civil_from_days, day_start_utc, local_day, parse_date};
use yunwei_core::inspection::{Expected, ItemKind, PlanDef, Problem, RunState};
use yunwei_storage::ContractScope;
use yunwei_storage::inspections::{self as store, InspectionError, ResultInput, RunFilter};

use super::{Page, UiForm, form_error, page_in};
use crate::AppState;
use crate::api::inspections::{month_range, parse_month, parse_plan, probe_check};
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::Lang;

const SCRIPT: &str = include_str!("../../assets/inspection.js");
const STYLE: &str = include_str!("../../assets/inspection.css");
const SERVICE_WORKER: &str = include_str!("../../assets/inspection-sw.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{cid}/inspections", get(overview))
        .route("/c/{cid}/inspections/plans/new", get(new_plan_page).post(create_plan))
        .route("/c/{cid}/inspections/plans/{pid}", get(plan_page).post(update_plan))
        .route("/c/{cid}/inspections/plans/{pid}/active", post(set_active))
        .route("/c/{cid}/inspections/runs/{rid}", get(run_page))
        .route("/c/{cid}/inspections/runs/{rid}/cells", post(save_cell))
        .route("/c/{cid}/inspections/runs/{rid}/sign-off", post(sign_off))
        .route("/c/{cid}/inspections/runs/{rid}/record", get(record_page))
        .route("/c/{cid}/inspections/compliance", get(compliance_page))
        .route("/c/{cid}/inspections/sheet", get(sheet_page))
        .route("/assets/inspection.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/assets/inspection.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        // At the root, so that its scope may cover the run pages under /c/; never cached by the
        // browser's HTTP cache, so that a new release's worker replaces the old one at once.
        .route("/inspection-sw.js", get(service_worker))
}

async fn service_worker() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SERVICE_WORKER)
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// (key, 中文, English)
const TEXTS: super::ModuleTexts = &[
    ("nav", "巡检", "Inspections"),
    ("title", "巡检", "Inspections"),
    ("runs_of", "当日巡检", "Runs of the day"),
    ("plans", "巡检计划", "Inspection plans"),
    ("new_plan", "新建计划", "New plan"),
    ("edit_plan", "编辑计划", "Edit plan"),
    ("plan", "计划", "Plan"),
    ("frequency", "频率", "Frequency"),
    ("calendar", "日历", "Calendar"),
    ("every_day", "每天", "Every day"),
    ("cells", "检查项", "Items"),
    ("next_slot", "下次", "Next run"),
    ("active", "启用", "Active"),
    ("paused", "已暂停", "Paused"),
    ("pause", "暂停计划", "Pause plan"),
    ("resume", "恢复计划", "Resume plan"),
    ("slot", "时段", "Slot"),
    ("due_by", "按时截止", "Due by"),
    ("missed_at", "错过判定", "Missed at"),
    ("state", "状态", "State"),
    ("assignee", "执行人", "Assignee"),
    ("progress", "进度", "Progress"),
    ("failed", "异常", "Failed"),
    ("missing", "缺项", "Missing"),
    ("overdue", "已超时", "Overdue"),
    ("open_run", "打开检查单", "Open checklist"),
    ("record", "巡检记录", "Run record"),
    ("compliance", "巡检合规", "Compliance"),
    ("daily_sheet", "日巡检表", "Daily inspection sheet"),
    ("xlsx_sheet", "日巡检表 Excel", "Daily sheet (Excel)"),
    ("xlsx_month", "月度统计 Excel", "Monthly summary (Excel)"),
    ("prev_day", "前一天", "Previous day"),
    ("next_day", "后一天", "Next day"),
    ("none", "无", "None"),
    ("definition", "计划定义（JSON 或 TOML）", "Definition (JSON or TOML)"),
    (
        "definition_help",
        "字段：name、duty（合同职责）、frequency、calendar、window、targets、items、tickets、assignee_user_id、retain_raw_days。",
        "Fields: name, duty (a contract duty), frequency, calendar, window, targets, items, tickets, assignee_user_id, retain_raw_days.",
    ),
    ("check", "检查", "Check"),
    ("save", "保存", "Save"),
    ("problems", "计划有以下问题", "The plan has these problems"),
    ("preview", "未来 7 天的巡检时段", "Slots of the next 7 days"),
    ("charts", "读数趋势（近 30 天）", "Readings (last 30 days)"),
    ("pass", "正常", "Pass"),
    ("fail", "异常", "Fail"),
    ("value", "读数", "Reading"),
    ("text", "记录", "Text"),
    ("note", "备注", "Note"),
    ("photo", "照片", "Photo"),
    ("probe", "自动检测", "Probe"),
    ("not_yet", "未检", "Not yet"),
    ("by", "记录人", "By"),
    ("at", "时间", "At"),
    ("ticket", "工单", "Ticket"),
    ("expected", "要求", "Expected"),
    ("sign_off", "签字确认", "Sign off"),
    ("sign_note", "签字说明", "Sign-off note"),
    (
        "sign_help",
        "确认后巡检记录即定稿，不能再修改。按最后一条读数的时间判定是否按时。",
        "Once signed the record is final. On time or late is judged by when the last reading was taken.",
    ),
    ("signed", "已签字", "Signed"),
    ("sync", "立即同步", "Sync now"),
    ("sync_idle", "所有读数已同步", "All readings are synced"),
    (
        "offline_help",
        "离线时读数保存在本机浏览器中，联网后自动同步，不会重复或丢失。请勿清除浏览器数据。",
        "Offline, readings are kept in this browser and synced when back online, never twice and never lost. Do not clear the browser's data.",
    ),
    ("findings", "发现的问题", "Findings"),
    ("tickets", "已建工单", "Tickets raised"),
    ("history", "修改与补录记录", "Corrections and late readings"),
    ("disposition.current", "当前值", "Current"),
    ("disposition.superseded", "已被更正", "Corrected later"),
    ("disposition.stale", "晚到（已有更新读数）", "Arrived after a later reading"),
    ("disposition.rejected", "巡检结束后提交（仅留档）", "Sent after the run closed (kept only)"),
    ("signature", "巡检人签字", "Engineer's signature"),
    ("client_signature", "采购人确认", "Client's confirmation"),
    ("print", "打印", "Print"),
    ("month", "月份", "Month"),
    ("show", "查看", "Show"),
    ("required", "应巡检", "Required"),
    ("done", "按时完成", "On time"),
    ("late", "逾期完成", "Late"),
    ("missed", "错过", "Missed"),
    ("open", "进行中", "Open"),
    ("rate", "完成率", "Completion"),
    ("total", "合计", "Total"),
    ("missed_list", "错过的巡检", "Missed runs"),
    ("no_run", "未生成记录", "no run"),
    (
        "holiday_missing",
        "缺少以下年份的节假日数据，按普通周计算",
        "Holiday data missing for these years (treated as ordinary weeks)",
    ),
    ("target", "对象", "Target"),
    ("item", "检查项", "Item"),
    ("result", "结果", "Result"),
    ("unit", "单位", "Unit"),
    ("pending_sync", "待同步", "Not synced"),
    ("saved", "已保存", "Saved"),
    ("run_closed", "该巡检已结束", "This run is over"),
    ("photos", "现场照片", "Photos"),
    ("contract", "合同", "Contract"),
];

fn tr(lang: Lang, key: &str) -> String {
    super::module_text(TEXTS, lang, key)
}

/// The crate's templates and filters plus this module's templates and `tr()`.
static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    super::module_environment(
        &[
            ("inspections.html", include_str!("../../templates/inspections.html")),
            ("inspection_plan.html", include_str!("../../templates/inspection_plan.html")),
            ("inspection_run.html", include_str!("../../templates/inspection_run.html")),
            ("inspection_record.html", include_str!("../../templates/inspection_record.html")),
            ("inspection_compliance.html", include_str!("../../templates/inspection_compliance.html")),
            ("inspection_sheet.html", include_str!("../../templates/inspection_sheet.html")),
        ],
        TEXTS,
    )
});

fn render(lang: Lang, name: &str, page: &Page, ctx: minijinja::Value) -> Result<Html<String>, AppError> {
    super::render_in(&TEMPLATES, name, lang, page, ctx)
}

async fn scope_of(state: &AppState, ui: &UiUser, cid: i64) -> Result<ContractScope, AppError> {
    let scope = ui.principal().contract_scope(&state.db, cid).await?;
    scope.require(ContractPermission::InspectionRead)?;
    Ok(scope)
}

async fn layout(state: &AppState, ui: &UiUser, cid: i64) -> Result<Page, AppError> {
    page_in(state, ui, &format!("/c/{cid}/inspections"), Some(cid)).await
}

fn ymd(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn hm(ms: i64) -> String {
    let mins = (ms - day_start_utc(local_day(ms))) / 60_000;
    format!("{:02}:{:02}", mins / 60, mins % 60)
}

fn state_label(lang: Lang, s: RunState) -> &'static str {
    lang.pick(s.label())
}

fn expected_label(lang: Lang, e: &Expected, unit: &str) -> String {
    let zh = lang == Lang::Zh;
    match e {
        Expected::PassFail => if zh { "正常/异常" } else { "pass/fail" }.into(),
        Expected::Number => format!("{}{unit}", if zh { "读数" } else { "reading " }),
        Expected::Text => if zh { "文字记录" } else { "text" }.into(),
        Expected::Range { min, max } => match (min, max) {
            (Some(a), Some(b)) => format!("{a}–{b}{unit}"),
            (Some(a), None) => format!("≥ {a}{unit}"),
            (None, Some(b)) => format!("≤ {b}{unit}"),
            (None, None) => String::new(),
        },
        Expected::Equals(s) => format!("= {s}"),
    }
}

#[derive(Serialize)]
struct RunView {
    id: i64,
    plan_id: i64,
    plan_name: String,
    slot: String,
    slot_at: i64,
    due_by: i64,
    missed_at: i64,
    state: &'static str,
    state_label: &'static str,
    overdue: bool,
    assignee: String,
    cells: i64,
    results: i64,
    failed: i64,
    missing: i64,
    finished_at: Option<i64>,
    signed_by: String,
    signed_at: Option<i64>,
    sign_note: String,
    percent: i64,
}

fn run_view(lang: Lang, r: &store::RunRow) -> RunView {
    RunView {
        id: r.id,
        plan_id: r.plan_id,
        plan_name: r.plan_name.clone(),
        slot: format!("{} {}", ymd(local_day(r.slot_at)), hm(r.slot_at)),
        slot_at: r.slot_at,
        due_by: r.due_by,
        missed_at: r.missed_at,
        state: r.state.as_str(),
        state_label: state_label(lang, r.state),
        overdue: r.overdue,
        assignee: r.assignee_name.clone().unwrap_or_default(),
        cells: r.cells,
        results: r.results,
        failed: r.failed,
        missing: r.missing,
        finished_at: r.finished_at,
        signed_by: r.signed_by.clone(),
        signed_at: r.signed_at,
        sign_note: r.sign_note.clone(),
        percent: if r.cells > 0 { r.results * 100 / r.cells } else { 0 },
    }
}

// ---------------------------------------------------------------------------------------------
// Overview

#[derive(Deserialize, Default)]
struct DayQuery {
    #[serde(default)]
    date: String,
}

#[derive(Serialize)]
struct PlanRow {
    id: i64,
    name: String,
    duty: String,
    frequency: String,
    calendar: String,
    cells: usize,
    active: bool,
    next_slot_at: Option<i64>,
    problem: Option<String>,
}

async fn overview(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<DayQuery>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let now = state.now_ms();
    let day = parse_date(q.date.trim()).unwrap_or_else(|| local_day(now));
    let f = RunFilter {
        from: Some(day_start_utc(day)),
        to: Some(day_start_utc(day + 1)),
        limit: 500,
        ..Default::default()
    };
    let runs: Vec<RunView> =
        store::list_runs(&state.db, &scope, &f, now).await?.iter().map(|r| run_view(lang, r)).collect();
    let plans: Vec<PlanRow> = store::list_plans(&state.db, &scope)
        .await?
        .into_iter()
        .map(|p| PlanRow {
            id: p.id,
            name: p.name,
            duty: p.duty_id,
            frequency: p.frequency,
            calendar: p.calendar.unwrap_or_else(|| tr(lang, "every_day")),
            cells: p.cells,
            active: p.active,
            next_slot_at: p.next_slot_at,
            problem: p.schedule_problem.map(|m| if lang == Lang::Zh { m.zh } else { m.en }),
        })
        .collect();
    let (y, m, _) = civil_from_days(day);
    let p = layout(&state, &ui, cid).await?;
    Ok(render(
        lang,
        "inspections.html",
        &p,
        crate::view! {
            cid, runs, plans,
            date => ymd(day), prev => ymd(day - 1), next => ymd(day + 1), month => format!("{y:04}-{m:02}"),
            can_plan => scope.permits(ContractPermission::InspectionPlan),
            can_run => scope.permits(ContractPermission::InspectionRun),
        },
    )?
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Plans

const EXAMPLE: &str = r#"name = "机房环境巡检"
# duty = "inspect.core"          # a contract duty: its frequency and calendar are the defaults
frequency = "daily at 09:00, 15:00"
calendar = "hotline"
window = { on_time = "2h", missed_after = "24h" }

[[targets]]
kind = "room"                    # system, asset, interface, room
ref = "1号机房"

[[items]]
key = "temp"
label = "温度"
expected = { range = { min = 18, max = 27 } }
unit = "℃"

[[items]]
key = "door"
label = "门禁正常"               # pass/fail by default

# [tickets]
# level = "L3"
"#;

#[derive(Serialize)]
struct ProblemView {
    field: String,
    message: String,
}

fn problem_views(lang: Lang, problems: &[Problem]) -> Vec<ProblemView> {
    problems
        .iter()
        .map(|p| ProblemView {
            field: p.field.clone(),
            message: if lang == Lang::Zh { p.message.zh.clone() } else { p.message.en.clone() },
        })
        .collect()
}

/// The definition as typed: JSON when it starts with `{`, TOML otherwise.
fn parse_text(text: &str) -> Result<PlanDef, Vec<Problem>> {
    let t = text.trim();
    if t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| {
            vec![Problem {
                field: format!("line {}", e.line()),
                message: yunwei_core::ledger::Message::new(
                    format!("JSON 格式错误：{e}"),
                    format!("malformed JSON: {e}"),
                ),
            }]
        })?;
        parse_plan(v)
    } else {
        yunwei_core::inspection::parse_toml(t).map_err(|p| vec![p])
    }
}

#[derive(Serialize)]
struct ChartView {
    src: String,
    label: String,
}

#[allow(clippy::too_many_arguments)]
async fn plan_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    plan: Option<store::Plan>,
    text: String,
    problems: Vec<ProblemView>,
    flash: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let now = state.now_ms();
    let mut slots = Vec::new();
    let mut charts = Vec::new();
    if let Some(p) = &plan {
        if let Ok((s, _)) = store::plan_slots(&state.db, scope, p.id, now, now + 7 * 86_400_000).await {
            slots = s.iter().map(|s| format!("{} {} → {}", ymd(local_day(s.at)), hm(s.at), hm(s.due_by))).collect();
        }
        let from = ymd(local_day(now) - 29);
        let to = ymd(local_day(now) + 1);
        for item in
            p.definition.items.iter().filter(|i| {
                i.kind == ItemKind::Probe || matches!(i.expected(), Expected::Range { .. } | Expected::Number)
            })
        {
            for t in p.definition.targets.iter().filter(|t| item.applies_to(&t.key())).take(4) {
                charts.push(ChartView {
                    src: format!(
                        "/api/v1/contracts/{cid}/inspection-plans/{}/history.svg?target={}&item={}&from={from}&to={to}",
                        p.id,
                        urlencode(&t.key()),
                        urlencode(&item.key)
                    ),
                    label: format!("{} · {}", t.display(), item.label),
                });
            }
        }
    }
    let mut p = layout(state, ui, cid).await?;
    if let Some(f) = flash {
        p = p.flash("error", f);
    }
    let info = plan.as_ref().map(|p| {
        serde_json::json!({
            "id": p.id, "name": p.name, "frequency": p.frequency, "calendar": p.calendar, "active": p.active,
            "version": p.version, "next_slot_at": p.next_slot_at, "cells": p.cells,
        })
    });
    let can_plan = scope.permits(ContractPermission::InspectionPlan);
    let mut resp = render(
        lang,
        "inspection_plan.html",
        &p,
        crate::view! { cid, plan => info, text, problems, slots, charts, can_plan },
    )?
    .into_response();
    *resp.status_mut() = status;
    Ok(resp)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

async fn new_plan_page(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::InspectionPlan)?;
    plan_view(&state, &ui, &scope, None, EXAMPLE.into(), Vec::new(), None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct PlanForm {
    definition: String,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    check_only: Option<String>,
}

async fn create_plan(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<PlanForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let def = match parse_text(&form.definition) {
        Ok(d) => d,
        Err(p) => {
            let problems = problem_views(lang, &p);
            return plan_view(
                &state,
                &ui,
                &scope,
                None,
                form.definition,
                problems,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let result = if form.check_only.is_some() {
        store::check_plan(&state.db, &scope, &def, &probe_check).await.map(|_| None)
    } else {
        store::create_plan(&state.db, &scope, &def, &probe_check, state.now_ms()).await.map(Some)
    };
    match result {
        Ok(Some(p)) => Ok(Redirect::to(&format!("/c/{cid}/inspections/plans/{}", p.id)).into_response()),
        Ok(None) => plan_view(&state, &ui, &scope, None, form.definition, Vec::new(), None, StatusCode::OK).await,
        Err(e) => plan_failure(&state, &ui, &scope, None, form.definition, e).await,
    }
}

async fn plan_failure(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    plan: Option<store::Plan>,
    text: String,
    e: InspectionError,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    match e {
        InspectionError::Invalid(p) => {
            let problems = problem_views(lang, &p);
            plan_view(state, ui, scope, plan, text, problems, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        InspectionError::Store(e) => {
            let code = refusal_status(&e);
            let msg = form_error(lang, e)?;
            plan_view(state, ui, scope, plan, text, Vec::new(), Some(msg), code).await
        }
    }
}

/// The status of a page shown again with a storage refusal above it.
fn refusal_status(e: &yunwei_storage::StoreError) -> StatusCode {
    match e {
        yunwei_storage::StoreError::Conflict(_) => StatusCode::CONFLICT,
        yunwei_storage::StoreError::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn plan_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, pid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let plan = store::get_plan(&state.db, &scope, pid).await?;
    let text = serde_json::to_string_pretty(&plan.definition).unwrap_or_default();
    plan_view(&state, &ui, &scope, Some(plan), text, Vec::new(), None, StatusCode::OK).await
}

async fn update_plan(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, pid)): Path<(i64, i64)>,
    UiForm(form): UiForm<PlanForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let plan = store::get_plan(&state.db, &scope, pid).await?;
    let def = match parse_text(&form.definition) {
        Ok(d) => d,
        Err(p) => {
            let problems = problem_views(lang, &p);
            return plan_view(
                &state,
                &ui,
                &scope,
                Some(plan),
                form.definition,
                problems,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let version = form.version.unwrap_or(plan.version);
    let result = if form.check_only.is_some() {
        store::check_plan(&state.db, &scope, &def, &probe_check).await.map(|_| None)
    } else {
        store::update_plan(&state.db, &scope, pid, &def, version, &probe_check, state.now_ms()).await.map(Some)
    };
    match result {
        Ok(Some(_)) => Ok(Redirect::to(&format!("/c/{cid}/inspections/plans/{pid}")).into_response()),
        Ok(None) => plan_view(&state, &ui, &scope, Some(plan), form.definition, Vec::new(), None, StatusCode::OK).await,
        Err(e) => plan_failure(&state, &ui, &scope, Some(plan), form.definition, e).await,
    }
}

#[derive(Deserialize)]
struct ActiveForm {
    active: String,
    version: i64,
}

async fn set_active(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, pid)): Path<(i64, i64)>,
    UiForm(form): UiForm<ActiveForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    store::set_plan_active(&state.db, &scope, pid, form.active == "1", form.version, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/c/{cid}/inspections/plans/{pid}")).into_response())
}

// ---------------------------------------------------------------------------------------------
// A run: the checklist, the record

#[derive(Serialize)]
struct CellView {
    idx: usize,
    target_key: String,
    target_label: String,
    item_key: String,
    item_label: String,
    probe: bool,
    input: &'static str,
    expected: String,
    unit: String,
    done: bool,
    ok: Option<bool>,
    value: Option<f64>,
    text: String,
    note: String,
    photo_ids: Vec<i64>,
    recorded_by: String,
    recorded_at: Option<i64>,
    revisions: i64,
    ticket_id: Option<i64>,
    ticket_number: Option<String>,
    first_of_target: bool,
}

fn cell_views(lang: Lang, d: &store::RunDetail) -> Vec<CellView> {
    let mut out = Vec::new();
    let mut last_target = String::new();
    for (idx, c) in d.cells.iter().enumerate() {
        let r = c.result.as_ref();
        let input = match (&c.kind, &c.expected) {
            (ItemKind::Probe, _) => "probe",
            (_, Expected::PassFail) => "pass_fail",
            (_, Expected::Range { .. } | Expected::Number) => "number",
            (_, Expected::Text | Expected::Equals(_)) => "text",
        };
        out.push(CellView {
            idx,
            first_of_target: c.target_key != last_target,
            target_key: c.target_key.clone(),
            target_label: c.target_label.clone(),
            item_key: c.item_key.clone(),
            item_label: c.item_label.clone(),
            probe: c.kind == ItemKind::Probe,
            input,
            expected: expected_label(lang, &c.expected, &c.unit),
            unit: c.unit.clone(),
            done: r.is_some(),
            ok: r.map(|r| r.ok),
            value: r.and_then(|r| r.value),
            text: r.map(|r| r.text.clone()).unwrap_or_default(),
            note: r.map(|r| r.note.clone()).unwrap_or_default(),
            photo_ids: r.map(|r| r.photo_ids.clone()).unwrap_or_default(),
            recorded_by: r.map(|r| r.recorded_by.clone()).unwrap_or_default(),
            recorded_at: r.map(|r| r.recorded_at),
            revisions: r.map(|r| r.revisions).unwrap_or(0),
            ticket_id: c.ticket_id,
            ticket_number: c.ticket_number.clone(),
        });
        last_target = c.target_key.clone();
    }
    out
}

#[derive(Serialize)]
struct OpRow {
    target: String,
    item: String,
    ok: bool,
    value: Option<f64>,
    text: String,
    note: String,
    recorded_at: i64,
    recorded_by: String,
    received_at: i64,
    disposition: String,
}

async fn run_view_page(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    rid: i64,
    template: &str,
    flash: Option<(&'static str, String)>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let now = state.now_ms();
    let d = store::run_detail(&state.db, scope, rid, now).await?;
    let run = run_view(lang, &d.run);
    let cells = cell_views(lang, &d);
    let failed_cells: Vec<&CellView> = cells.iter().filter(|c| c.ok == Some(false)).collect();
    let label_of = |tk: &str, ik: &str| {
        d.cells
            .iter()
            .find(|c| c.target_key == tk && c.item_key == ik)
            .map(|c| (c.target_label.clone(), c.item_label.clone()))
            .unwrap_or((tk.to_string(), ik.to_string()))
    };
    let history: Vec<OpRow> = d
        .ops
        .iter()
        .filter(|o| o.disposition != "current")
        .map(|o| {
            let (target, item) = label_of(&o.target_key, &o.item_key);
            OpRow {
                target,
                item,
                ok: o.ok,
                value: o.value,
                text: o.text.clone(),
                note: o.note.clone(),
                recorded_at: o.recorded_at,
                recorded_by: o.recorded_by.clone(),
                received_at: o.received_at,
                disposition: tr(lang, &format!("disposition.{}", o.disposition)),
            }
        })
        .collect();
    let tickets: Vec<serde_json::Value> = d
        .anomalies
        .iter()
        .map(|a| {
            let (target, item) = label_of(&a.target_key, &a.item_key);
            serde_json::json!({
                "target": target, "item": item, "ticket_id": a.ticket_id, "number": a.ticket_number,
                "opened": a.opened_ticket, "recovered_at": a.recovered_at,
            })
        })
        .collect();
    let photos: Vec<serde_json::Value> = d
        .photos
        .iter()
        .map(|p| serde_json::json!({ "id": p.id, "name": p.file_name, "by": p.uploaded_by, "at": p.created_at }))
        .collect();
    let contract = yunwei_storage::contracts::get(&state.db, scope).await?;
    let open = d.run.state == RunState::Open && now < d.run.missed_at;
    let mut p = layout(state, ui, cid).await?;
    if let Some((kind, text)) = flash {
        p = p.flash(kind, text);
    }
    let mut resp = render(
        lang,
        template,
        &p,
        crate::view! {
            cid, run, cells => &cells, history, tickets, photos, open,
            contract_name => contract.name,
            failed_cells,
            can_run => scope.permits(ContractPermission::InspectionRun) && open,
            now,
        },
    )?
    .into_response();
    *resp.status_mut() = status;
    Ok(resp)
}

async fn run_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    run_view_page(&state, &ui, &scope, rid, "inspection_run.html", None, StatusCode::OK).await
}

async fn record_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    run_view_page(&state, &ui, &scope, rid, "inspection_record.html", None, StatusCode::OK).await
}

/// One cell's answer, posted without scripts (with scripts the same goes to the API).
#[derive(Deserialize)]
struct CellForm {
    target: String,
    item: String,
    #[serde(default)]
    ok: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

async fn save_cell(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
    UiForm(form): UiForm<CellForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let value = match form.value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(serde_json::json!(n)),
            _ => Some(serde_json::json!(v)),
        },
    };
    let input = ResultInput {
        client_op_id: format!("form-{}", yunwei_storage::random_token(12)),
        run_id: rid,
        target: form.target.clone(),
        item: form.item.clone(),
        ok: form.ok.as_deref().map(|v| v == "true"),
        value,
        text: form.text.clone(),
        note: form.note.clone(),
        photo_ids: Vec::new(),
        recorded_at: None,
    };
    match store::submit_results(&state.db, &scope, &[input], state.now_ms()).await {
        Ok(outcomes) => {
            if let Some(o) = outcomes.first()
                && o.status == "rejected"
            {
                let msg = tr(lang, "run_closed");
                return run_view_page(
                    &state,
                    &ui,
                    &scope,
                    rid,
                    "inspection_run.html",
                    Some(("warn", msg)),
                    StatusCode::CONFLICT,
                )
                .await;
            }
            Ok(Redirect::to(&format!("/c/{cid}/inspections/runs/{rid}#cell-{}", urlencode(&form.item))).into_response())
        }
        Err(InspectionError::Invalid(p)) => {
            let msg = problem_views(lang, &p).iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("；");
            run_view_page(
                &state,
                &ui,
                &scope,
                rid,
                "inspection_run.html",
                Some(("error", msg)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(InspectionError::Store(e)) => {
            let msg = form_error(lang, e)?;
            run_view_page(
                &state,
                &ui,
                &scope,
                rid,
                "inspection_run.html",
                Some(("error", msg)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct SignForm {
    #[serde(default)]
    note: String,
}

async fn sign_off(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
    UiForm(form): UiForm<SignForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    match store::sign_off(&state.db, &scope, rid, &form.note, state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/inspections/runs/{rid}/record")).into_response()),
        Err(e) => {
            let status = refusal_status(&e);
            let msg = form_error(lang, e)?;
            run_view_page(&state, &ui, &scope, rid, "inspection_run.html", Some(("error", msg)), status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compliance and the daily sheet

#[derive(Deserialize, Default)]
struct MonthQuery {
    #[serde(default)]
    month: String,
}

#[derive(Serialize)]
struct ComplianceRow {
    plan_id: i64,
    name: String,
    duty: String,
    frequency: String,
    calendar: String,
    required: u32,
    done: u32,
    late: u32,
    missed: u32,
    open: u32,
    missing_items: u32,
    rate: String,
    missed_slots: Vec<serde_json::Value>,
    missing_years: Vec<i32>,
}

fn rate(done: u32, late: u32, required: u32) -> String {
    if required == 0 { "—".into() } else { format!("{:.1}%", f64::from(done + late) * 100.0 / f64::from(required)) }
}

async fn compliance_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<MonthQuery>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let now = state.now_ms();
    let (y, m) = parse_month(&q.month).unwrap_or_else(|| {
        let (y, m, _) = civil_from_days(local_day(now));
        (y, m)
    });
    let (from, to) = month_range(y, m);
    let plans = store::compliance(&state.db, &scope, from, to, now).await?;
    let mut total = (0, 0, 0, 0, 0, 0);
    let rows: Vec<ComplianceRow> = plans
        .into_iter()
        .map(|p| {
            let c = &p.compliance;
            total.0 += c.required;
            total.1 += c.done;
            total.2 += c.late;
            total.3 += c.missed;
            total.4 += c.open;
            total.5 += c.missing_items;
            ComplianceRow {
                plan_id: p.plan_id,
                name: p.name.clone(),
                duty: p.duty_id.clone(),
                frequency: p.frequency.clone(),
                calendar: p.calendar.clone().unwrap_or_else(|| tr(lang, "every_day")),
                required: c.required,
                done: c.done,
                late: c.late,
                missed: c.missed,
                open: c.open,
                missing_items: c.missing_items,
                rate: rate(c.done, c.late, c.required),
                missed_slots: c
                    .slots
                    .iter()
                    .filter(|s| s.state == RunState::Missed)
                    .map(|s| {
                        serde_json::json!({
                            "slot": format!("{} {}", ymd(local_day(s.slot.at)), hm(s.slot.at)),
                            "run_id": p.run_ids.get(&s.slot.at),
                        })
                    })
                    .collect(),
                missing_years: p.missing_years.clone(),
            }
        })
        .collect();
    let totals = serde_json::json!({
        "required": total.0, "done": total.1, "late": total.2, "missed": total.3, "open": total.4,
        "missing_items": total.5, "rate": rate(total.1, total.2, total.0),
    });
    let p = layout(&state, &ui, cid).await?;
    Ok(render(
        lang,
        "inspection_compliance.html",
        &p,
        crate::view! { cid, rows, totals, month => format!("{y:04}-{m:02}") },
    )?
    .into_response())
}

async fn sheet_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<DayQuery>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let now = state.now_ms();
    let day = parse_date(q.date.trim()).unwrap_or_else(|| local_day(now));
    let f = RunFilter {
        from: Some(day_start_utc(day)),
        to: Some(day_start_utc(day + 1)),
        limit: 500,
        ..Default::default()
    };
    let mut runs = Vec::new();
    for r in store::list_runs(&state.db, &scope, &f, now).await? {
        let d = store::run_detail(&state.db, &scope, r.id, now).await?;
        runs.push(serde_json::json!({ "run": run_view(lang, &r), "cells": cell_views(lang, &d) }));
    }
    let contract = yunwei_storage::contracts::get(&state.db, &scope).await?;
    let p = layout(&state, &ui, cid).await?;
    let mut resp = render(
        lang,
        "inspection_sheet.html",
        &p,
        crate::view! { cid, runs, date => ymd(day), contract_name => contract.name },
    )?
    .into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_parse_and_every_text_has_both_languages() {
        let _ = &*super::TEMPLATES;
        for (k, zh, en) in super::TEXTS {
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
        }
        let mut keys: Vec<&str> = super::TEXTS.iter().map(|t| t.0).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "keys are unique");
    }

    #[test]
    fn plans_are_read_as_json_or_toml() {
        assert_eq!(super::parse_text(super::EXAMPLE).unwrap().items.len(), 2);
        let p = super::parse_text("{\"name\": 1").unwrap_err();
        assert_eq!(p[0].field, "line 1");
    }
}
