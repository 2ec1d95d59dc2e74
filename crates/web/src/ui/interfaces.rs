//! Data-exchange interface pages (数据对接接口, IN5): the list with each interface's last push,
//! status, next check and the month's figures, a new interface typed as TOML or JSON (every
//! problem listed with its field); an interface's page with its state, the decided windows and
//! the pushes received, its editor, pause and resume, a new heartbeat token (shown once, on the
//! page answering the request, never in a URL) and retirement.
//!
//! The pages call the same storage functions as `api::interfaces`. Their templates and texts live
//! here, like the inspection pages': the crate's template environment is extended with this
//! module's templates and a `tr()` function over [`TEXTS`].

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::ContractPermission;
use yunwei_core::calendar::{civil_from_days, local_day};
use yunwei_core::exchange::{InterfaceDef, Outcome};
use yunwei_core::inspection::Problem;
use yunwei_storage::ContractScope;
use yunwei_storage::inspections::InspectionError;
use yunwei_storage::interfaces::{self as store, Interface};

use super::{Page, UiForm, form_error, page_in};
use crate::AppState;
use crate::api::inspections::{month_range, parse_month, probe_check};
use crate::api::interfaces::{heartbeat_path, parse_def};
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::Lang;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{cid}/interfaces", get(list_page).post(create))
        .route("/c/{cid}/interfaces/{iid}", get(detail_page).post(update))
        .route("/c/{cid}/interfaces/{iid}/active", post(set_active))
        .route("/c/{cid}/interfaces/{iid}/token", post(rotate_token))
        .route("/c/{cid}/interfaces/{iid}/retire", post(retire))
}

/// (key, 中文, English)
const TEXTS: super::ModuleTexts = &[
    ("title", "数据对接接口", "Data-exchange interfaces"),
    (
        "intro",
        "每个接口按约定频率推送数据：推送任务每次推送后调用心跳地址，或由平台比对源端与目标端的记录数。未推送或记录数不一致即为异常，按规则自动建单。",
        "Each interface pushes on its agreed frequency: the pushing job calls its heartbeat URL after every push, or the platform compares the record counts of source and target. A push that did not happen, or counts that differ, is an anomaly and raises a ticket by the interface's rule.",
    ),
    ("code", "编号", "Code"),
    ("name", "数据资源", "Data resource"),
    ("route", "源系统 → 目标系统", "Source → target"),
    ("frequency", "推送频率", "Frequency"),
    ("grace", "宽限", "Grace"),
    ("observe", "观测方式", "Observed by"),
    ("heartbeat", "心跳", "Heartbeat"),
    ("count_check", "记录数核对", "Count check"),
    ("last_push", "最近推送", "Last push"),
    ("records", "记录数", "Records"),
    ("status", "状态", "Status"),
    ("next_check", "下次判定", "Next check"),
    ("ticket", "工单", "Ticket"),
    ("month", "月份", "Month"),
    ("show", "查看", "Show"),
    ("decided", "已判定时段", "Windows"),
    ("ok", "正常", "OK"),
    ("missing", "未推送", "Missing"),
    ("mismatch", "不一致", "Mismatch"),
    ("error", "核对失败", "Failed"),
    ("pending", "待判定", "Pending"),
    ("paused", "已暂停", "Paused"),
    ("active", "监测中", "Watched"),
    ("pause", "暂停监测", "Pause"),
    ("resume", "恢复监测", "Resume"),
    ("new", "新建接口", "New interface"),
    ("edit", "编辑接口", "Edit interface"),
    ("definition", "接口定义（TOML 或 JSON）", "Definition (TOML or JSON)"),
    (
        "definition_help",
        "字段：code、name、content、source_system、target_system、frequency（如 every 10 min、hourly、daily after 23:00、once，或合同原文）、grace、heartbeat、count_check、tickets。",
        "Fields: code, name, content, source_system, target_system, frequency (e.g. every 10 min, hourly, daily after 23:00, once, or the contract's wording), grace, heartbeat, count_check, tickets.",
    ),
    ("check", "检查", "Check"),
    ("save", "保存", "Save"),
    ("checked_ok", "定义无误", "The definition is valid"),
    ("problems", "接口定义有以下问题", "The definition has these problems"),
    ("token_title", "心跳地址（仅显示这一次）", "Heartbeat URL (shown this once)"),
    (
        "token_help",
        "推送任务每次推送完成后以 POST 调用此地址，可附 JSON：{\"records\": 记录数, \"batch\": \"批次\"}。请妥善保存，平台只保存其摘要。",
        "The pushing job POSTs to this URL after each push, optionally with JSON {\"records\": count, \"batch\": \"name\"}. Keep it safe: the platform keeps only its digest.",
    ),
    ("rotate", "重新生成心跳地址", "New heartbeat URL"),
    ("rotate_help", "旧地址立即失效。", "The old URL stops working at once."),
    ("retire", "停用并移除", "Retire"),
    (
        "retire_help",
        "停用后不再判定，心跳地址失效，历史记录保留。",
        "Retired: no more checks, the heartbeat URL stops working, the history stays.",
    ),
    ("windows", "判定记录", "Decided windows"),
    ("window", "时段", "Window"),
    ("pushes", "推送次数", "Pushes"),
    ("source", "源端", "Source"),
    ("target", "目标端", "Target"),
    ("detail", "说明", "Detail"),
    ("heartbeats", "收到的推送", "Pushes received"),
    ("received_at", "收到时间", "Received"),
    ("batch", "批次", "Batch"),
    ("from", "来源地址", "From"),
    ("anomaly", "异常未恢复", "Open anomaly"),
    ("since", "自", "since"),
    ("none", "无", "None"),
    ("back", "数据对接接口", "Interfaces"),
    ("content", "数据内容", "Content"),
    ("tickets_rule", "建单规则", "Ticket rule"),
    ("no_tickets", "仅记录，不建单", "Recorded only, no ticket"),
];

fn tr(lang: Lang, key: &str) -> String {
    super::module_text(TEXTS, lang, key)
}

/// The crate's templates and filters plus this module's templates and `tr()`.
static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    super::module_environment(
        &[
            ("interfaces.html", include_str!("../../templates/interfaces.html")),
            ("interface.html", include_str!("../../templates/interface.html")),
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
    page_in(state, ui, &format!("/c/{cid}/interfaces"), Some(cid)).await
}

fn pick(lang: Lang, m: &yunwei_core::ledger::Message) -> String {
    if lang == Lang::Zh { m.zh.clone() } else { m.en.clone() }
}

fn status_class(status: &str) -> &'static str {
    match status {
        "ok" => "r-done",
        "missing" | "mismatch" => "r-missed",
        "error" => "r-late",
        _ => "",
    }
}

#[derive(Serialize)]
struct Row {
    id: i64,
    code: String,
    name: String,
    route: String,
    frequency: String,
    observe: String,
    active: bool,
    status: String,
    status_label: String,
    status_class: &'static str,
    status_detail: String,
    last_push_at: Option<i64>,
    last_records: Option<i64>,
    next_check_at: Option<i64>,
    anomaly_since: Option<i64>,
    ticket_id: Option<i64>,
    ticket_number: Option<String>,
    decided: i64,
    ok: i64,
    missing: i64,
    mismatch: i64,
    error: i64,
}

fn row(lang: Lang, i: &Interface) -> Row {
    let mut observe = Vec::new();
    if i.heartbeat {
        observe.push(tr(lang, "heartbeat"));
    }
    if i.count_check {
        observe.push(tr(lang, "count_check"));
    }
    let status_label = match Outcome::parse(&i.status) {
        Some(o) => lang.pick(o.label()).to_string(),
        None => tr(lang, "pending"),
    };
    Row {
        id: i.id,
        code: i.code.clone(),
        name: i.name.clone(),
        route: format!("{} → {}", i.definition.source_system, i.definition.target_system),
        frequency: pick(lang, &i.frequency_label),
        observe: observe.join(" + "),
        active: i.active,
        status: i.status.clone(),
        status_label,
        status_class: status_class(&i.status),
        status_detail: i.status_detail.as_ref().map(|m| pick(lang, m)).unwrap_or_default(),
        last_push_at: i.last_push_at,
        last_records: i.last_records,
        next_check_at: i.next_check_at,
        anomaly_since: i.anomaly_since,
        ticket_id: i.anomaly_ticket_id,
        ticket_number: i.anomaly_ticket_number.clone(),
        decided: 0,
        ok: 0,
        missing: 0,
        mismatch: 0,
        error: 0,
    }
}

#[derive(Serialize)]
struct ProblemView {
    field: String,
    message: String,
}

fn problem_views(lang: Lang, problems: &[Problem]) -> Vec<ProblemView> {
    problems.iter().map(|p| ProblemView { field: p.field.clone(), message: pick(lang, &p.message) }).collect()
}

/// The definition as typed: JSON when it starts with `{`, TOML otherwise.
fn parse_text(text: &str) -> Result<InterfaceDef, Vec<Problem>> {
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
        parse_def(v)
    } else {
        yunwei_core::exchange::parse_toml(t).map_err(|p| vec![p])
    }
}

/// The definition as it is edited: TOML, like the example.
fn as_toml(def: &InterfaceDef) -> String {
    yunwei_core::exchange::to_toml(def).unwrap_or_else(|| serde_json::to_string_pretty(def).unwrap_or_default())
}

const EXAMPLE: &str = r#"code = "3-6.12"
name = "路灯当日信息"
content = "当日路灯案件 ID（已立案未结案）、案件上报时间、案件存档时间"
source_system = "数字化城管平台"
target_system = "市网络理政中心"
frequency = "每 1 小时推送一次"   # or: every 10 min, hourly, daily after 23:00, once
# grace = "30m"                  # a push still counts this long after its window (default: half the period)
heartbeat = true                 # the pushing job calls its heartbeat URL

# [count_check]                  # and/or compare record counts (credentials: 巡检凭据)
# tolerance = 0
# source = { credential = "src-db", probe = { kind = "postgres", host = "10.1.1.5", database = "dcm", query = "SELECT count(*) FROM lamp_case WHERE push_at >= {window_start}" } }
# target = { probe = { kind = "mysql", host = "10.2.1.8", database = "gov", query = "SELECT count(*) FROM lamp_case WHERE push_at >= {window_start}" } }

[tickets]
level = "L4"
incident_class = "轻微"
"#;

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    month: String,
}

#[allow(clippy::too_many_arguments)]
async fn list_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    month: &str,
    text: String,
    problems: Vec<ProblemView>,
    flash: Option<(&'static str, String)>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let now = state.now_ms();
    let (y, m) = parse_month(month).unwrap_or_else(|| {
        let (y, m, _) = civil_from_days(local_day(now));
        (y, m)
    });
    let (from, to) = month_range(y, m);
    let figures = store::compliance(&state.db, scope, from, to).await?;
    let rows: Vec<Row> = store::list(&state.db, scope)
        .await?
        .iter()
        .map(|i| {
            let mut r = row(lang, i);
            if let Some(f) = figures.iter().find(|f| f.id == i.id) {
                (r.decided, r.ok, r.missing, r.mismatch, r.error) = (f.decided, f.ok, f.missing, f.mismatch, f.error);
            }
            r
        })
        .collect();
    let mut p = layout(state, ui, cid).await?;
    if let Some((kind, text)) = flash {
        p = p.flash(kind, text);
    }
    let can_plan = scope.permits(ContractPermission::InspectionPlan);
    let mut resp = render(
        lang,
        "interfaces.html",
        &p,
        crate::view! { cid, rows, text, problems, can_plan, month => format!("{y:04}-{m:02}") },
    )?
    .into_response();
    *resp.status_mut() = status;
    Ok(resp)
}

async fn list_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    list_view(&state, &ui, &scope, &q.month, EXAMPLE.into(), Vec::new(), None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct DefForm {
    definition: String,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    check_only: Option<String>,
}

/// The status of a page shown again with a storage refusal above it.
fn refusal_status(e: &yunwei_storage::StoreError) -> StatusCode {
    match e {
        yunwei_storage::StoreError::Conflict(_) => StatusCode::CONFLICT,
        yunwei_storage::StoreError::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

async fn create(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<DefForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::InspectionPlan)?;
    let invalid = |p: Vec<Problem>| problem_views(lang, &p);
    let def = match parse_text(&form.definition) {
        Ok(d) => d,
        Err(p) => {
            return list_view(
                &state,
                &ui,
                &scope,
                "",
                form.definition,
                invalid(p),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    if form.check_only.is_some() {
        return match store::check_interface(&state.db, &scope, &def, &probe_check).await {
            Ok(_) => {
                let flash = Some(("ok", tr(lang, "checked_ok")));
                list_view(&state, &ui, &scope, "", form.definition, Vec::new(), flash, StatusCode::OK).await
            }
            Err(e) => failure(&state, &ui, &scope, None, form.definition, e).await,
        };
    }
    match store::create(&state.db, &scope, &def, &probe_check, state.now_ms()).await {
        // The token is shown on this answer only: no redirect (it would have to travel in a URL).
        Ok(saved) => {
            let x = Extras { token: saved.heartbeat_token, ..Default::default() };
            detail_view(&state, &ui, &scope, saved.interface, x, StatusCode::CREATED).await
        }
        Err(e) => failure(&state, &ui, &scope, None, form.definition, e).await,
    }
}

/// A refused definition: the list (new) or the interface's page (edit), with every problem.
async fn failure(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    current: Option<Interface>,
    text: String,
    e: InspectionError,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let (problems, flash, status) = match e {
        InspectionError::Invalid(p) => (problem_views(lang, &p), None, StatusCode::UNPROCESSABLE_ENTITY),
        InspectionError::Store(e) => {
            let code = refusal_status(&e);
            (Vec::new(), Some(form_error(lang, e)?), code)
        }
    };
    match current {
        None => list_view(state, ui, scope, "", text, problems, flash.map(|f| ("error", f)), status).await,
        Some(i) => {
            detail_view(state, ui, scope, i, Extras { text: Some(text), problems, token: None, flash }, status).await
        }
    }
}

#[derive(Serialize)]
struct CheckView {
    window: String,
    outcome: &'static str,
    outcome_label: String,
    outcome_class: &'static str,
    pushes: i64,
    records: Option<i64>,
    source_count: Option<i64>,
    target_count: Option<i64>,
    detail: String,
    ticket_id: Option<i64>,
    ticket_number: Option<String>,
}

#[derive(Serialize)]
struct PushView {
    received_at: i64,
    records: Option<i64>,
    batch: String,
    source_ip: String,
}

/// What an interface's page shows besides the interface: the editor's text as typed, its
/// problems, a token just issued, a refusal.
#[derive(Default)]
struct Extras {
    text: Option<String>,
    problems: Vec<ProblemView>,
    token: Option<String>,
    flash: Option<String>,
}

async fn detail_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    i: Interface,
    x: Extras,
    status: StatusCode,
) -> Result<Response, AppError> {
    let Extras { text, problems, token, flash } = x;
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let h = store::history(&state.db, scope, i.id, 200).await?;
    let fmt = |ms: i64| crate::templates::format_ms(Some(ms), "[year]-[month]-[day] [hour]:[minute]");
    let checks: Vec<CheckView> = h
        .checks
        .iter()
        .map(|c| CheckView {
            window: format!("{} – {}", fmt(c.window_start), fmt(c.window_end)),
            outcome: c.outcome.as_str(),
            outcome_label: lang.pick(c.outcome.label()).to_string(),
            outcome_class: status_class(c.outcome.as_str()),
            pushes: c.pushes,
            records: c.records,
            source_count: c.source_count,
            target_count: c.target_count,
            detail: pick(lang, &c.detail),
            ticket_id: c.ticket_id,
            ticket_number: c.ticket_number.clone(),
        })
        .collect();
    let pushes: Vec<PushView> = h
        .heartbeats
        .iter()
        .map(|p| PushView {
            received_at: p.received_at,
            records: p.records,
            batch: p.batch.clone(),
            source_ip: p.source_ip.clone(),
        })
        .collect();
    let text = text.unwrap_or_else(|| as_toml(&i.definition));
    let tickets_rule =
        i.definition
            .tickets
            .as_ref()
            .map(|t| {
                if t.incident_class.is_empty() {
                    t.level.clone()
                } else {
                    format!("{} · {}", t.level, t.incident_class)
                }
            })
            .unwrap_or_else(|| tr(lang, "no_tickets"));
    let grace = if i.grace_ms % 3_600_000 == 0 {
        format!("{} h", i.grace_ms / 3_600_000)
    } else {
        format!("{} min", i.grace_ms / 60_000)
    };
    let info = serde_json::json!({
        "id": i.id, "version": i.version, "content": i.definition.content, "grace": grace,
        "tickets_rule": tickets_rule, "heartbeat": i.heartbeat, "count_check": i.count_check,
        "last_batch": i.last_batch, "last_source_count": i.last_source_count, "last_target_count": i.last_target_count,
    });
    let r = row(lang, &i);
    let token_url = token.as_deref().map(heartbeat_path);
    let mut p = layout(state, ui, cid).await?;
    if let Some(f) = flash {
        p = p.flash("error", f);
    }
    let can_plan = scope.permits(ContractPermission::InspectionPlan);
    let mut resp = render(
        lang,
        "interface.html",
        &p,
        crate::view! { cid, i => r, info, checks, pushes, text, problems, token_url, can_plan },
    )?
    .into_response();
    *resp.status_mut() = status;
    Ok(resp)
}

async fn detail_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, iid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let i = store::get(&state.db, &scope, iid).await?;
    detail_view(&state, &ui, &scope, i, Extras::default(), StatusCode::OK).await
}

async fn update(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, iid)): Path<(i64, i64)>,
    UiForm(form): UiForm<DefForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::InspectionPlan)?;
    let current = store::get(&state.db, &scope, iid).await?;
    let def = match parse_text(&form.definition) {
        Ok(d) => d,
        Err(p) => {
            let problems = problem_views(lang, &p);
            let x = Extras { text: Some(form.definition), problems, ..Default::default() };
            return detail_view(&state, &ui, &scope, current, x, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let version = form.version.unwrap_or(current.version);
    match store::update(&state.db, &scope, iid, &def, version, &probe_check, state.now_ms()).await {
        Ok(saved) if saved.heartbeat_token.is_some() => {
            let x = Extras { token: saved.heartbeat_token, ..Default::default() };
            detail_view(&state, &ui, &scope, saved.interface, x, StatusCode::OK).await
        }
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/interfaces/{iid}")).into_response()),
        Err(e) => failure(&state, &ui, &scope, Some(current), form.definition, e).await,
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
    Path((cid, iid)): Path<(i64, i64)>,
    UiForm(form): UiForm<ActiveForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    store::set_active(&state.db, &scope, iid, form.active == "1", form.version, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/c/{cid}/interfaces/{iid}")).into_response())
}

async fn rotate_token(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, iid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let saved = store::rotate_token(&state.db, &scope, iid, state.now_ms()).await?;
    let x = Extras { token: saved.heartbeat_token, ..Default::default() };
    detail_view(&state, &ui, &scope, saved.interface, x, StatusCode::OK).await
}

#[derive(Deserialize)]
struct VersionForm {
    version: i64,
}

async fn retire(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, iid)): Path<(i64, i64)>,
    UiForm(form): UiForm<VersionForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    store::retire(&state.db, &scope, iid, form.version, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/c/{cid}/interfaces")).into_response())
}
