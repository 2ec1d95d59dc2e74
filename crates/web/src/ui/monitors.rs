//! Monitor pages (持续监控): the contract's monitors with their state (filtered by status, a page
//! at a time) and a form for a new one (JSON); a monitor's page with its charts (the inspections'
//! SVG chart, drawn by the API), its incidents and tickets, and its editor. Same storage calls
//! as `api::monitors`; templates and texts live here, like the inspection pages'.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::ContractPermission;
use yunwei_core::inspection::Problem;
use yunwei_storage::ContractScope;
use yunwei_storage::inspections::InspectionError;
use yunwei_storage::monitors::{self as store, Filter, Monitor};

use super::{Page, UiForm, form_error, page_in};
use crate::AppState;
use crate::api::inspections::probe_check;
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::Lang;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{cid}/monitors", get(list_page).post(create))
        .route("/c/{cid}/monitors/{id}", get(monitor_page).post(update))
        .route("/c/{cid}/monitors/{id}/delete", post(delete))
}

/// (key, 中文, English)
const TEXTS: super::ModuleTexts = &[
    ("title", "持续监控", "Monitors"),
    ("all", "全部", "All"),
    ("status.up", "正常", "Up"),
    ("status.down", "中断", "Down"),
    ("status.unknown", "未检测", "Not run yet"),
    ("status.paused", "已暂停", "Paused"),
    ("name", "名称", "Name"),
    ("kind", "类型", "Kind"),
    ("every", "间隔", "Every"),
    ("state", "状态", "State"),
    ("since", "起始", "Since"),
    ("last", "最近一次", "Last run"),
    ("failures", "连续失败", "Failures in a row"),
    ("chart", "趋势图", "Chart"),
    ("search", "名称包含", "Name contains"),
    ("show", "查看", "Show"),
    ("next_page", "下一页", "Next page"),
    ("none", "无", "None"),
    ("new", "新建监控", "New monitor"),
    ("edit", "编辑监控", "Edit monitor"),
    ("definition", "监控定义（JSON）", "Definition (JSON)"),
    (
        "definition_help",
        "字段：name、probe（探测定义，同巡检计划）、interval_s（10–86400 秒，默认 60）、timeout_s、credential（已保存的探测凭据名称）、asset_id、system_id、enabled、down_after、reading、expected（{min, max}）、unit、tickets（{level, incident_class}）、retain_raw_days。批量创建：POST /api/v1/contracts/{cid}/monitors/bulk。",
        "Fields: name, probe (as in inspection plans), interval_s (10–86,400 s, default 60), timeout_s, credential (a stored probe credential's name), asset_id, system_id, enabled, down_after, reading, expected ({min, max}), unit, tickets ({level, incident_class}), retain_raw_days. Bulk create: POST /api/v1/contracts/{cid}/monitors/bulk.",
    ),
    ("save", "保存", "Save"),
    ("delete", "删除监控", "Delete monitor"),
    ("problems", "监控定义有以下问题", "The definition has these problems"),
    ("charts", "趋势", "History"),
    ("day", "近 24 小时", "Last 24 hours"),
    ("week", "近 7 天", "Last 7 days"),
    ("incidents", "中断记录", "Incidents"),
    ("opened", "中断时间", "Down at"),
    ("recovered", "恢复时间", "Recovered at"),
    ("reason", "原因", "Reason"),
    ("ticket", "工单", "Ticket"),
    ("ongoing", "持续中", "Ongoing"),
    ("runs", "检测次数", "Runs"),
    ("value", "读数", "Reading"),
    ("seconds", "秒", "s"),
];

fn tr(lang: Lang, key: &str) -> String {
    super::module_text(TEXTS, lang, key)
}

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    super::module_environment(
        &[
            ("monitors.html", include_str!("../../templates/monitors.html")),
            ("monitor.html", include_str!("../../templates/monitor.html")),
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
    page_in(state, ui, &format!("/c/{cid}/monitors"), Some(cid)).await
}

#[derive(Serialize)]
struct Row {
    id: i64,
    name: String,
    kind: String,
    interval_s: i64,
    status: &'static str,
    status_label: String,
    since: Option<i64>,
    last_at: Option<i64>,
    last: String,
    failures: i64,
}

fn last_text(lang: Lang, m: &Monitor) -> String {
    let Some(s) = &m.state else { return String::new() };
    match (&s.last_reason, s.last_value) {
        (Some(r), _) => {
            if lang == Lang::Zh {
                r.zh.clone()
            } else {
                r.en.clone()
            }
        }
        (None, Some(v)) => {
            let unit = if m.definition.unit.is_empty() && m.definition.reading.is_none() {
                "ms"
            } else {
                m.definition.unit.as_str()
            };
            format!("{:.1} {unit}", v)
        }
        (None, None) => format!("{:.1} ms", s.last_elapsed_ms),
    }
}

fn row(lang: Lang, m: &Monitor) -> Row {
    Row {
        id: m.id,
        name: m.name.clone(),
        kind: m.kind.clone(),
        interval_s: m.definition.interval_s,
        status: m.status,
        status_label: tr(lang, &format!("status.{}", m.status)),
        since: m.state.as_ref().map(|s| s.since),
        last_at: m.state.as_ref().map(|s| s.last_at),
        last: last_text(lang, m),
        failures: m.state.as_ref().map(|s| s.failures).unwrap_or(0),
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

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

const EXAMPLE: &str = r#"{
  "name": "门户网站首页",
  "probe": { "kind": "http", "url": "https://www.example.gov.cn/", "expect_status": [200] },
  "interval_s": 60,
  "timeout_s": 10,
  "down_after": 2,
  "tickets": { "level": "L3" }
}"#;

#[allow(clippy::too_many_arguments)]
async fn list_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    q: ListQuery,
    text: String,
    problems: Vec<ProblemView>,
    flash: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let after_id = yunwei_storage::cursor::decode(q.cursor.trim());
    let status_filter = if store::STATUSES.contains(&q.status.as_str()) { q.status.clone() } else { String::new() };
    let f = Filter { status: status_filter.clone(), q: q.q.clone(), after_id, limit: 100 };
    let list = match store::list(&state.db, scope, &f).await {
        Ok(l) => l,
        // A search text the list refuses (too long, control characters) shows as nothing found.
        Err(yunwei_storage::StoreError::Invalid { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let next = if list.len() == 100 { list.last().map(|m| yunwei_storage::cursor::encode(m.id)) } else { None };
    let rows: Vec<Row> = list.iter().map(|m| row(lang, m)).collect();
    let counts = store::counts(&state.db, scope).await?;
    let tabs: Vec<serde_json::Value> = std::iter::once(("", tr(lang, "all"), counts.total))
        .chain(store::STATUSES.iter().map(|s| {
            let n = match *s {
                "up" => counts.up,
                "down" => counts.down,
                "unknown" => counts.unknown,
                _ => counts.paused,
            };
            (*s, tr(lang, &format!("status.{s}")), n)
        }))
        .map(
            |(key, label, n)| serde_json::json!({ "key": key, "label": label, "n": n, "active": key == status_filter }),
        )
        .collect();
    let mut p = layout(state, ui, cid).await?;
    if let Some(f) = flash {
        p = p.flash("error", f);
    }
    let can_manage = scope.permits(ContractPermission::InspectionPlan);
    let mut resp = render(
        lang,
        "monitors.html",
        &p,
        crate::view! { cid, rows, tabs, next, text, problems, can_manage, status => status_filter, q => q.q },
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
    list_view(&state, &ui, &scope, q, EXAMPLE.into(), Vec::new(), None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct DefForm {
    definition: String,
    #[serde(default)]
    version: Option<i64>,
}

/// The definition as typed, or where it is wrong.
fn parse_text(text: &str) -> Result<store::MonitorDef, Vec<Problem>> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        vec![Problem {
            field: format!("line {}", e.line()),
            message: yunwei_core::ledger::Message::new(format!("JSON 格式错误：{e}"), format!("malformed JSON: {e}")),
        }]
    })?;
    store::parse_def(&v, "")
}

/// The status of a page shown again with a storage refusal above it.
fn refusal_status(e: &yunwei_storage::StoreError) -> StatusCode {
    match e {
        yunwei_storage::StoreError::Conflict(_) => StatusCode::CONFLICT,
        yunwei_storage::StoreError::Forbidden => StatusCode::FORBIDDEN,
        yunwei_storage::StoreError::NotFound => StatusCode::NOT_FOUND,
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
    let problems = match parse_text(&form.definition) {
        Ok(def) => match store::create(&state.db, &scope, &def, &probe_check, state.now_ms()).await {
            Ok(m) => return Ok(Redirect::to(&format!("/c/{cid}/monitors/{}", m.id)).into_response()),
            Err(InspectionError::Invalid(p)) => p,
            Err(InspectionError::Store(e)) => {
                let code = refusal_status(&e);
                let msg = form_error(lang, e)?;
                return list_view(
                    &state,
                    &ui,
                    &scope,
                    ListQuery::default(),
                    form.definition,
                    Vec::new(),
                    Some(msg),
                    code,
                )
                .await;
            }
        },
        Err(p) => p,
    };
    let problems = problem_views(lang, &problems);
    list_view(
        &state,
        &ui,
        &scope,
        ListQuery::default(),
        form.definition,
        problems,
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

#[derive(Serialize)]
struct IncidentRow {
    opened_at: i64,
    recovered_at: Option<i64>,
    reason: String,
    ticket_id: Option<i64>,
    ticket_number: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn monitor_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    m: Monitor,
    text: String,
    problems: Vec<ProblemView>,
    flash: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let incidents: Vec<IncidentRow> = store::incidents(&state.db, scope, m.id, 20)
        .await?
        .into_iter()
        .map(|i| IncidentRow {
            opened_at: i.opened_at,
            recovered_at: i.recovered_at,
            reason: i.reason.map(|r| if lang == Lang::Zh { r.zh } else { r.en }).unwrap_or_default(),
            ticket_id: i.ticket_id,
            ticket_number: i.ticket_number,
        })
        .collect();
    let charts = [("day", 24), ("week", 168)]
        .map(|(key, hours)| {
            serde_json::json!({
                "src": format!("/api/v1/contracts/{cid}/monitors/{}/history.svg?hours={hours}", m.id),
                "label": tr(lang, key),
            })
        })
        .to_vec();
    let info = serde_json::json!({
        "id": m.id, "name": m.name, "kind": m.kind, "interval_s": m.definition.interval_s,
        "status": m.status, "status_label": tr(lang, &format!("status.{}", m.status)),
        "since": m.state.as_ref().map(|s| s.since), "last_at": m.state.as_ref().map(|s| s.last_at),
        "last": last_text(lang, &m), "failures": m.state.as_ref().map(|s| s.failures).unwrap_or(0),
        "runs": m.state.as_ref().map(|s| s.runs).unwrap_or(0), "version": m.version,
    });
    let mut p = layout(state, ui, cid).await?;
    if let Some(f) = flash {
        p = p.flash("error", f);
    }
    let can_manage = scope.permits(ContractPermission::InspectionPlan);
    let mut resp = render(
        lang,
        "monitor.html",
        &p,
        crate::view! { cid, monitor => info, incidents, charts, text, problems, can_manage },
    )?
    .into_response();
    *resp.status_mut() = status;
    Ok(resp)
}

async fn monitor_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let m = store::get(&state.db, &scope, id).await?;
    let text = serde_json::to_string_pretty(&m.definition).unwrap_or_default();
    monitor_view(&state, &ui, &scope, m, text, Vec::new(), None, StatusCode::OK).await
}

async fn update(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(form): UiForm<DefForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let m = store::get(&state.db, &scope, id).await?;
    let version = form.version.unwrap_or(m.version);
    let problems = match parse_text(&form.definition) {
        Ok(def) => match store::update(&state.db, &scope, id, version, &def, &probe_check, state.now_ms()).await {
            Ok(_) => return Ok(Redirect::to(&format!("/c/{cid}/monitors/{id}")).into_response()),
            Err(InspectionError::Invalid(p)) => p,
            Err(InspectionError::Store(e)) => {
                let code = refusal_status(&e);
                let msg = form_error(lang, e)?;
                return monitor_view(&state, &ui, &scope, m, form.definition, Vec::new(), Some(msg), code).await;
            }
        },
        Err(p) => p,
    };
    let problems = problem_views(lang, &problems);
    monitor_view(&state, &ui, &scope, m, form.definition, problems, None, StatusCode::UNPROCESSABLE_ENTITY).await
}

async fn delete(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    store::delete(&state.db, &scope, id, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/c/{cid}/monitors")).into_response())
}
