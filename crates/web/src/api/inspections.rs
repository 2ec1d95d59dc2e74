//! Inspections (巡检): plans (checked in full, every problem with its field), the runs of each
//! slot, the offline sync of item results, photos, sign-off, compliance per period, the history
//! of a cell as JSON or as an SVG chart drawn here, the probes' credentials (never returned), and
//! the daily inspection sheet (日巡检表) and monthly summary as Excel workbooks.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use yunwei_core::Msg;
use yunwei_core::calendar::{civil_from_days, day_start_utc, days_from_civil, local_day, parse_date};
use yunwei_core::inspection::{Expected, PlanDef, Problem, RunState};
use yunwei_core::ledger::Message;
use yunwei_reports::{Cell as XCell, Table};
use yunwei_storage::ContractScope;
use yunwei_storage::inspections::{self as store, CredentialInput, InspectionError, ResultInput, RunFilter};

use super::{ApiJson, ErrorBody};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/inspection-plans", get(list_plans).post(create_plan))
        .route("/contracts/{cid}/inspection-plans/check", post(check_plan))
        .route("/contracts/{cid}/inspection-plans/{pid}", get(get_plan).put(update_plan))
        .route("/contracts/{cid}/inspection-plans/{pid}/active", post(set_active))
        .route("/contracts/{cid}/inspection-plans/{pid}/slots", get(slots))
        .route("/contracts/{cid}/inspection-plans/{pid}/history", get(history))
        .route("/contracts/{cid}/inspection-plans/{pid}/history.svg", get(history_svg))
        .route("/contracts/{cid}/inspection-runs", get(list_runs))
        .route("/contracts/{cid}/inspection-runs/{rid}", get(run_detail))
        .route("/contracts/{cid}/inspection-runs/{rid}/assign", post(assign))
        .route("/contracts/{cid}/inspection-runs/{rid}/sign-off", post(sign_off))
        .route("/contracts/{cid}/inspection-runs/{rid}/photos", post(upload_photo).layer(DefaultBodyLimit::disable()))
        .route("/contracts/{cid}/inspection-runs/{rid}/photos/{id}", get(photo))
        .route("/contracts/{cid}/inspection-results", post(submit_results))
        .route("/contracts/{cid}/inspection-compliance", get(compliance))
        .route("/contracts/{cid}/inspection-credentials", get(list_credentials))
        .route("/contracts/{cid}/inspection-credentials/{name}", put(set_credential).delete(delete_credential))
        .route("/contracts/{cid}/inspection-sheet.xlsx", get(day_sheet_xlsx))
        .route("/contracts/{cid}/inspection-summary.xlsx", get(month_summary_xlsx))
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

fn json<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

/// Checks a probe definition with `yunwei-probes` (the check plans and storage call).
pub fn probe_check(v: &serde_json::Value) -> Result<(), Message> {
    let probe: yunwei_probes::Probe = serde_json::from_value(v.clone())
        .map_err(|e| Message::new(format!("探测定义无效：{e}"), format!("invalid probe definition: {e}")))?;
    probe.validate()
}

/// 422 with every problem: `{"error": {"code": "invalid", "message", "field", "problems": [...]}}`.
pub(crate) fn problems_response(problems: &[Problem]) -> Response {
    let first = problems.first();
    let (zh, en) =
        first.map(|p| (p.message.zh.as_str(), p.message.en.as_str())).unwrap_or(("输入无效", "invalid input"));
    let body = serde_json::json!({
        "error": {
            "code": "invalid",
            "message": format!("{zh} / {en}"),
            "message_zh": zh,
            "message_en": en,
            "field": first.map(|p| p.field.clone()),
            "problems": problems.iter().map(|p| serde_json::json!({
                "field": p.field, "message_zh": p.message.zh, "message_en": p.message.en,
            })).collect::<Vec<_>>(),
        }
    });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

fn insp_error(e: InspectionError) -> Response {
    match e {
        InspectionError::Invalid(p) => problems_response(&p),
        InspectionError::Store(e) => AppError::from(e).into_response(),
    }
}

const PLAN_FIELDS: &[&str] = &[
    "name",
    "duty",
    "frequency",
    "calendar",
    "window",
    "targets",
    "items",
    "tickets",
    "assignee_user_id",
    "retain_raw_days",
];

fn problem(field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> Problem {
    Problem { field: field.into(), message: Message::new(zh, en) }
}

/// A plan definition from JSON, or where and why it does not fit the format (serde's message
/// alone does not say which element of which list was wrong).
pub(crate) fn parse_plan(v: serde_json::Value) -> Result<PlanDef, Vec<Problem>> {
    fn shape(field: String, e: serde_json::Error) -> Problem {
        problem(field, format!("格式错误：{e}"), format!("malformed: {e}"))
    }
    let Some(obj) = v.as_object() else {
        return Err(vec![problem("", "计划须为 JSON 对象", "a plan is a JSON object")]);
    };
    let mut out = Vec::new();
    for k in obj.keys() {
        if !PLAN_FIELDS.contains(&k.as_str()) {
            out.push(problem(
                k.clone(),
                format!("未知字段 {k:?}（可用：{}）", PLAN_FIELDS.join("、")),
                format!("unknown field {k:?} (known: {})", PLAN_FIELDS.join(", ")),
            ));
        }
    }
    for (list, is_item) in [("targets", false), ("items", true)] {
        match obj.get(list) {
            None => out.push(problem(list, format!("缺少 {list}"), format!("{list} is missing"))),
            Some(serde_json::Value::Array(a)) => {
                for (i, el) in a.iter().enumerate() {
                    let r = if is_item {
                        serde_json::from_value::<yunwei_core::inspection::Item>(el.clone()).map(drop)
                    } else {
                        serde_json::from_value::<yunwei_core::inspection::Target>(el.clone()).map(drop)
                    };
                    if let Err(e) = r {
                        out.push(shape(format!("{list}[{i}]"), e));
                    }
                }
            }
            Some(_) => out.push(problem(list, format!("{list} 须为数组"), format!("{list} must be an array"))),
        }
    }
    if let Some(w) = obj.get("window")
        && let Err(e) = serde_json::from_value::<yunwei_core::inspection::Window>(w.clone())
    {
        out.push(shape("window".into(), e));
    }
    if let Some(t) = obj.get("tickets").filter(|t| !t.is_null())
        && let Err(e) = serde_json::from_value::<yunwei_core::inspection::TicketRule>(t.clone())
    {
        out.push(shape("tickets".into(), e));
    }
    if !out.is_empty() {
        return Err(out);
    }
    serde_json::from_value(v).map_err(|e| vec![shape(String::new(), e)])
}

// ---------------------------------------------------------------------------------------------
// Plans

/// The contract's inspection plans, each with the frequency and calendar in force.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-plans", tag = "inspections", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_plans(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::list_plans(&state.db, &s).await?))
}

/// Creates a plan. The body is the plan definition (name, duty, frequency, calendar, window,
/// targets, items, tickets, assignee_user_id, retain_raw_days); an invalid one answers 422 with
/// every problem and its field path.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-plans", tag = "inspections", params(("cid" = i64, Path)),
    request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_plan(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse_plan(body) {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::create_plan(&state.db, &s, &def, &probe_check, state.now_ms()).await {
        Ok(p) => (StatusCode::CREATED, axum::Json(p)).into_response(),
        Err(e) => insp_error(e),
    })
}

/// Checks a plan definition without storing it: 200 with the resolved schedule, or 422.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-plans/check", tag = "inspections", params(("cid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 422, body = ErrorBody)))]
pub async fn check_plan(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse_plan(body) {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::check_plan(&state.db, &s, &def, &probe_check).await {
        Ok(sch) => json(serde_json::json!({
            "ok": true,
            "frequency": sch.frequency_text,
            "calendar": sch.calendar_name,
            "cells": yunwei_core::inspection::cells(&def).len(),
        })),
        Err(e) => insp_error(e),
    })
}

#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-plans/{pid}", tag = "inspections", params(("cid" = i64, Path), ("pid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_plan(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, pid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::get_plan(&state.db, &s, pid).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanUpdate {
    /// The plan's version as read; a stale one answers 409.
    pub version: i64,
    pub definition: serde_json::Value,
}

/// Replaces a plan's definition (a new version, in force from now; open runs keep theirs).
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/inspection-plans/{pid}", tag = "inspections", params(("cid" = i64, Path), ("pid" = i64, Path)),
    request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_plan(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, pid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<PlanUpdate>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse_plan(body.definition) {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::update_plan(&state.db, &s, pid, &def, body.version, &probe_check, state.now_ms()).await {
        Ok(p) => json(p),
        Err(e) => insp_error(e),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveBody {
    pub active: bool,
    pub version: i64,
}

/// Pauses (`active: false`) or resumes a plan.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-plans/{pid}/active", tag = "inspections", params(("cid" = i64, Path), ("pid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 409, body = ErrorBody)))]
pub async fn set_active(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, pid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<ActiveBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::set_plan_active(&state.db, &s, pid, body.active, body.version, state.now_ms()).await?))
}

/// A period: `from`/`to` as dates (`YYYY-MM-DD`, Shanghai; `to` excluded) or epoch ms, or a
/// `month` (`YYYY-MM`), or a `date` (one day).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub month: Option<String>,
    pub date: Option<String>,
    pub target: Option<String>,
    pub item: Option<String>,
    pub plan_id: Option<i64>,
    pub state: Option<String>,
    pub limit: Option<i64>,
}

fn bad_param(field: &'static str, zh: &'static str, en: &'static str) -> AppError {
    AppError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid",
        message: Msg::new(zh, en),
        field: Some(field),
    }
}

fn instant(field: &'static str, s: &str) -> Result<i64, AppError> {
    if let Some(day) = parse_date(s.trim()) {
        return Ok(day_start_utc(day));
    }
    s.trim()
        .parse::<i64>()
        .map_err(|_| bad_param(field, "时间应为 YYYY-MM-DD 或毫秒时间戳", "Give a date YYYY-MM-DD or epoch ms"))
}

/// `YYYY-MM` → the month's first local day.
pub(crate) fn parse_month(s: &str) -> Option<(i32, u32)> {
    let (y, m) = s.trim().split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    ((1970..=9999).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

pub(crate) fn month_range(y: i32, m: u32) -> (i64, i64) {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (day_start_utc(days_from_civil(y, m, 1)), day_start_utc(days_from_civil(ny, nm, 1)))
}

impl PeriodQuery {
    /// The period asked for, or `default` (a number of days ending with today).
    fn range(&self, now: i64, default_days: i64) -> Result<(i64, i64), AppError> {
        if let Some(m) = &self.month {
            let (y, m) = parse_month(m).ok_or_else(|| bad_param("month", "月份应为 YYYY-MM", "month is YYYY-MM"))?;
            return Ok(month_range(y, m));
        }
        if let Some(d) = &self.date {
            let day =
                parse_date(d.trim()).ok_or_else(|| bad_param("date", "日期应为 YYYY-MM-DD", "date is YYYY-MM-DD"))?;
            return Ok((day_start_utc(day), day_start_utc(day + 1)));
        }
        let today_end = day_start_utc(local_day(now) + 1);
        let to = self.to.as_deref().map(|t| instant("to", t)).transpose()?.unwrap_or(today_end);
        let from =
            self.from.as_deref().map(|f| instant("from", f)).transpose()?.unwrap_or(to - default_days * 86_400_000);
        if to <= from {
            return Err(bad_param("to", "结束时间须晚于开始时间", "to must be after from"));
        }
        Ok((from, to))
    }
}

/// The slots of a plan in a period under its current definition (the schedule preview).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-plans/{pid}/slots", tag = "inspections",
    params(("cid" = i64, Path), ("pid" = i64, Path), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("month" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn slots(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, pid)): Path<(i64, i64)>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (from, to) = q.range(state.now_ms(), 7)?;
    let (slots, missing_years) = store::plan_slots(&state.db, &s, pid, from, to).await?;
    Ok(json(serde_json::json!({ "slots": slots, "missing_years": missing_years })))
}

fn cell_params(q: &PeriodQuery) -> Result<(String, String), AppError> {
    let target = q.target.clone().ok_or_else(|| bad_param("target", "缺少 target", "target is required"))?;
    let item = q.item.clone().ok_or_else(|| bad_param("item", "缺少 item", "item is required"))?;
    Ok((target, item))
}

/// A cell's readings over time: raw points, hourly beyond three days and for rolled-up history.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-plans/{pid}/history", tag = "inspections",
    params(("cid" = i64, Path), ("pid" = i64, Path), ("target" = String, Query), ("item" = String, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, pid)): Path<(i64, i64)>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (from, to) = q.range(state.now_ms(), 7)?;
    let (target, item) = cell_params(&q)?;
    let points = store::history(&state.db, &s, pid, &target, &item, from, to).await?;
    Ok(json(serde_json::json!({ "from": from, "to": to, "target": target, "item": item, "points": points })))
}

/// The same history as an SVG chart (min–max band, average line, failures in red, the expected
/// range dashed), drawn by the server.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-plans/{pid}/history.svg", tag = "inspections",
    params(("cid" = i64, Path), ("pid" = i64, Path), ("target" = String, Query), ("item" = String, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200), (status = 404, body = ErrorBody)))]
pub async fn history_svg(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, pid)): Path<(i64, i64)>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (from, to) = q.range(state.now_ms(), 7)?;
    let (target, item) = cell_params(&q)?;
    let plan = store::get_plan(&state.db, &s, pid).await?;
    let points = store::history(&state.db, &s, pid, &target, &item, from, to).await?;
    let def_item = plan.definition.items.iter().find(|i| i.key == item);
    let label = format!(
        "{} · {} · {}",
        plan.name,
        plan.definition.targets.iter().find(|t| t.key() == target).map(|t| t.display().to_string()).unwrap_or(target),
        def_item.map(|i| i.label.clone()).unwrap_or(item)
    );
    let range = match def_item.map(|i| i.expected()) {
        Some(Expected::Range { min, max }) => (min, max),
        _ => (None, None),
    };
    let unit = def_item.map(|i| i.unit.clone()).unwrap_or_default();
    let svg = chart_svg(&label, &unit, &points, from, to, range);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok((headers, svg).into_response())
}

/// Draws a history as SVG: every label escaped, no script, no external reference.
pub(crate) fn chart_svg(
    title: &str,
    unit: &str,
    points: &[store::Point],
    from: i64,
    to: i64,
    range: (Option<f64>, Option<f64>),
) -> String {
    use crate::topology::xml_escape as esc;
    use std::fmt::Write;
    let (w, h, left, right, top, bottom) = (760.0, 260.0, 56.0, 12.0, 28.0, 34.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in points {
        for v in [p.min, p.max].into_iter().flatten() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    for v in [range.0, range.1].into_iter().flatten() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |t: i64| left + (t - from) as f64 / (to - from).max(1) as f64 * pw;
    let y = |v: f64| top + (hi - v) / (hi - lo) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\
         <title>{}</title><rect width=\"{w}\" height=\"{h}\" fill=\"#fff\"/>\
         <text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
    // Axes and grid: five value lines, day or hour ticks.
    for i in 0..=4 {
        let v = lo + (hi - lo) * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#e5e7eb\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            w - right,
            left - 4.0,
            yy + 4.0,
            esc(&format!("{}{}", trim_num(v), if i == 4 { unit } else { "" }))
        );
    }
    let span_days = (to - from) as f64 / 86_400_000.0;
    let ticks = 6i64;
    for i in 0..=ticks {
        let t = from + (to - from) * i / ticks;
        let day = local_day(t);
        let (_, m, d) = civil_from_days(day);
        let label = if span_days <= 2.0 {
            let mins = (t - day_start_utc(day)) / 60_000;
            format!("{:02}:{:02}", mins / 60, mins % 60)
        } else {
            format!("{m:02}-{d:02}")
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            x(t),
            h - bottom + 16.0,
            esc(&label)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9ca3af\"/>",
        top + ph,
        w - right,
        top + ph
    );
    for v in [range.0, range.1].into_iter().flatten() {
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#d97706\" stroke-dasharray=\"5 4\"/>",
            y(v),
            w - right
        );
    }
    let numeric: Vec<&store::Point> = points.iter().filter(|p| p.avg.is_some()).collect();
    // The min–max band of hourly points.
    if numeric.iter().any(|p| p.hourly) {
        let mut band = String::new();
        for p in &numeric {
            let _ = write!(band, "{:.1},{:.1} ", x(p.at), y(p.max.unwrap_or_default()));
        }
        for p in numeric.iter().rev() {
            let _ = write!(band, "{:.1},{:.1} ", x(p.at), y(p.min.unwrap_or_default()));
        }
        let _ = write!(s, "<polygon points=\"{}\" fill=\"#bfdbfe\" opacity=\"0.7\"/>", band.trim_end());
    }
    if !numeric.is_empty() {
        let line: Vec<String> =
            numeric.iter().map(|p| format!("{:.1},{:.1}", x(p.at), y(p.avg.unwrap_or_default()))).collect();
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\"/>",
            line.join(" ")
        );
    }
    for p in points {
        let failed = p.n_ok < p.n;
        let yy = p.avg.map(y).unwrap_or(top + ph - 4.0);
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{yy:.1}\" r=\"{}\" fill=\"{}\"/>",
            x(p.at),
            if failed { 3.5 } else { 2.0 },
            if failed { "#dc2626" } else { "#2563eb" }
        );
    }
    if points.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">暂无数据 / No data</text>",
            left + pw / 2.0,
            top + ph / 2.0
        );
    }
    s.push_str("</svg>");
    s
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

// ---------------------------------------------------------------------------------------------
// Runs and results

/// Runs whose slot lies in a period (default: the last 7 days), optionally of one plan or state.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-runs", tag = "inspections",
    params(("cid" = i64, Path), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("date" = Option<String>, Query), ("plan_id" = Option<i64>, Query), ("state" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let now = state.now_ms();
    let (from, to) = q.range(now, 7)?;
    let run_state = match q.state.as_deref() {
        None | Some("") => None,
        Some(x) => Some(RunState::parse(x).ok_or_else(|| {
            bad_param("state", "状态应为 open/done/late/missed", "state is open, done, late or missed")
        })?),
    };
    let f = RunFilter {
        from: Some(from),
        to: Some(to),
        plan_id: q.plan_id,
        state: run_state,
        limit: q.limit.unwrap_or(500),
    };
    Ok(json(serde_json::json!({ "items": store::list_runs(&state.db, &s, &f, now).await? })))
}

/// A run with its checklist, current results, photos and the tickets it raised.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-runs/{rid}", tag = "inspections", params(("cid" = i64, Path), ("rid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn run_detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::run_detail(&state.db, &s, rid, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    pub assignee_user_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-runs/{rid}/assign", tag = "inspections", params(("cid" = i64, Path), ("rid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn assign(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::assign_run(&state.db, &s, rid, body.assignee_user_id, state.now_ms()).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SignOffBody {
    #[serde(default)]
    pub note: String,
}

/// Signs a run off: the record becomes final; on time or late by when its last reading was taken.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-runs/{rid}/sign-off", tag = "inspections", params(("cid" = i64, Path), ("rid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn sign_off(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<SignOffBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::sign_off(&state.db, &s, rid, &body.note, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsBody {
    /// Each a result (client_op_id, run_id, target, item, ok, value, text, note, photo_ids,
    /// recorded_at); read one by one so that a malformed one is named by its index.
    pub results: Vec<serde_json::Value>,
}

/// The results of a batch, or every malformed one with its index and serde's reason.
fn parse_results(values: Vec<serde_json::Value>) -> Result<Vec<ResultInput>, Vec<Problem>> {
    let mut out = Vec::with_capacity(values.len());
    let mut problems = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match serde_json::from_value::<ResultInput>(v) {
            Ok(r) => out.push(r),
            Err(e) => {
                problems.push(problem(format!("results[{i}]"), format!("格式错误：{e}"), format!("malformed: {e}")))
            }
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// The offline sync: a batch of item results, each with the client's `client_op_id`. Answers
/// each one's status: applied, stale (a later reading of the cell is stored), duplicate (received
/// before), rejected (the run was closed). Bad input anywhere: 422 with every problem, nothing
/// stored.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-results", tag = "inspections", params(("cid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit_results(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<ResultsBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let results = match parse_results(body.results) {
        Ok(r) => r,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::submit_results(&state.db, &s, &results, state.now_ms()).await {
        Ok(outcomes) => json(serde_json::json!({ "results": outcomes })),
        Err(e) => insp_error(e),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoQuery {
    #[serde(default)]
    pub name: String,
    /// Makes a repeated upload (after a lost answer) return the first one.
    pub client_op_id: Option<String>,
}

/// Uploads a photo for a run: the image is the body (JPEG, PNG, …; decided by its bytes, at most
/// 10 MB). 201 with the photo; 200 with the same photo when `client_op_id` was seen before.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/inspection-runs/{rid}/photos", tag = "inspections",
    params(("cid" = i64, Path), ("rid" = i64, Path), ("name" = Option<String>, Query), ("client_op_id" = Option<String>, Query)),
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_photo(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
    Query(q): Query<PhotoQuery>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let too_large = || {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Msg::new("照片不能超过 10 MB", "A photo is at most 10 MB"),
        )
    };
    let body: Bytes =
        axum::body::to_bytes(request.into_body(), store::MAX_PHOTO_BYTES + 1).await.map_err(|_| too_large())?;
    if body.len() > store::MAX_PHOTO_BYTES {
        return Err(too_large());
    }
    let dir = super::tickets::attachments_dir(&state)?.join("inspection");
    let (photo, created) = store::save_photo(
        &state.db,
        &s,
        &dir,
        rid,
        q.client_op_id.as_deref(),
        if q.name.is_empty() { "photo" } else { &q.name },
        &body,
        state.now_ms(),
    )
    .await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(photo)).into_response())
}

#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-runs/{rid}/photos/{id}", tag = "inspections",
    params(("cid" = i64, Path), ("rid" = i64, Path), ("id" = i64, Path)), responses((status = 200), (status = 404, body = ErrorBody)))]
pub async fn photo(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid, id)): Path<(i64, i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let dir = super::tickets::attachments_dir(&state)?.join("inspection");
    let (p, bytes) = store::open_photo(&state.db, &s, &dir, rid, id).await?;
    let mut resp = super::tickets::attachment_response(&p.file_name, &p.mime, bytes);
    // Shown inline on the record page (an image sniffed at upload; the sandbox CSP stays).
    resp.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("inline"));
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Compliance

/// Per plan: required, done on time, late, missed, open and missing items over a period (default:
/// this month), with each slot and its run: the evidence of the quarterly scoring.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-compliance", tag = "inspections",
    params(("cid" = i64, Path), ("month" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn compliance(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let now = state.now_ms();
    let (from, to) = if q.month.is_none() && q.from.is_none() && q.to.is_none() && q.date.is_none() {
        let (y, m, _) = civil_from_days(local_day(now));
        month_range(y, m)
    } else {
        q.range(now, 30)?
    };
    let plans = store::compliance(&state.db, &s, from, to, now).await?;
    let mut total = yunwei_core::inspection::Compliance::default();
    for p in &plans {
        let c = &p.compliance;
        total.required += c.required;
        total.done += c.done;
        total.late += c.late;
        total.missed += c.missed;
        total.open += c.open;
        total.missing_items += c.missing_items;
    }
    Ok(json(serde_json::json!({ "from": from, "to": to, "total": total, "plans": plans })))
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-credentials", tag = "inspections", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::list_credentials(&state.db, &s).await?))
}

/// Stores a named credential for probe items (username; password and private key sealed, never
/// returned; a left-out secret keeps the stored one).
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/inspection-credentials/{name}", tag = "inspections",
    params(("cid" = i64, Path), ("name" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_credential(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, name)): Path<(i64, String)>,
    ApiJson(body): ApiJson<CredentialInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::set_credential(&state.db, &s, &name, &body, state.now_ms()).await?))
}

#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/inspection-credentials/{name}", tag = "inspections",
    params(("cid" = i64, Path), ("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_credential(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, name)): Path<(i64, String)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    store::delete_credential(&state.db, &s, &name, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Workbooks for the client (IN2)

fn verdict(ok: bool) -> &'static str {
    if ok { "正常" } else { "异常" }
}

/// The daily inspection sheet (日巡检表) of one local day: every run of the day with each target ×
/// item, and a summary sheet of the runs.
pub(crate) async fn day_sheet(state: &AppState, s: &ContractScope, day: i64) -> Result<Vec<u8>, AppError> {
    let now = state.now_ms();
    let contract = yunwei_storage::contracts::get(&state.db, s).await?;
    let f = RunFilter {
        from: Some(day_start_utc(day)),
        to: Some(day_start_utc(day + 1)),
        limit: 1000,
        ..Default::default()
    };
    let runs = store::list_runs(&state.db, s, &f, now).await?;
    let (y, m, d) = civil_from_days(day);
    let mut items = Vec::new();
    let mut summary = Vec::new();
    for r in &runs {
        let detail = store::run_detail(&state.db, s, r.id, now).await?;
        summary.push(vec![
            XCell::Text(r.plan_name.clone()),
            XCell::DateTime(r.slot_at),
            XCell::DateTime(r.due_by),
            XCell::Text(r.state.label().zh.to_string()),
            XCell::Text(r.assignee_name.clone().unwrap_or_default()),
            r.finished_at.map(XCell::DateTime).unwrap_or(XCell::Empty),
            XCell::Text(r.signed_by.clone()),
            XCell::Int(r.cells),
            XCell::Int(r.results),
            XCell::Int(r.failed),
            XCell::Int(r.missing),
            XCell::Text(r.sign_note.clone()),
        ]);
        for c in &detail.cells {
            let res = c.result.as_ref();
            items.push(vec![
                XCell::Text(r.plan_name.clone()),
                XCell::DateTime(r.slot_at),
                XCell::Text(c.target_label.clone()),
                XCell::Text(c.item_label.clone()),
                XCell::Text(res.map(|x| verdict(x.ok).to_string()).unwrap_or_else(|| "未检".into())),
                res.and_then(|x| x.value).map(XCell::Float).unwrap_or(XCell::Empty),
                XCell::Text(c.unit.clone()),
                XCell::Text(res.map(|x| x.text.clone()).unwrap_or_default()),
                XCell::Text(res.map(|x| x.note.clone()).unwrap_or_default()),
                XCell::Text(res.map(|x| x.recorded_by.clone()).unwrap_or_default()),
                res.map(|x| XCell::DateTime(x.recorded_at)).unwrap_or(XCell::Empty),
                XCell::Text(c.ticket_number.clone().unwrap_or_default()),
            ]);
        }
    }
    let heads = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let title = format!("{} 日巡检表 {y:04}-{m:02}-{d:02}", contract.name);
    let tables = [
        Table {
            sheet: "日巡检表".into(),
            title: Some(title.clone()),
            headers: heads(&[
                "巡检计划",
                "时段",
                "对象",
                "检查项",
                "结果",
                "读数",
                "单位",
                "记录",
                "备注",
                "记录人",
                "记录时间",
                "工单",
            ]),
            rows: items,
        },
        Table {
            sheet: "巡检汇总".into(),
            title: Some(title),
            headers: heads(&[
                "巡检计划",
                "时段",
                "按时截止",
                "状态",
                "执行人",
                "完成时间",
                "签字人",
                "检查项",
                "已填",
                "异常",
                "缺项",
                "签字说明",
            ]),
            rows: summary,
        },
    ];
    yunwei_reports::xlsx(&tables).map_err(|e| {
        tracing::error!(error = %e, "inspection sheet failed");
        AppError::internal()
    })
}

/// The monthly inspection statistics: per plan required / on time / late / missed / missing items,
/// and every slot of the month.
pub(crate) async fn month_summary(state: &AppState, s: &ContractScope, y: i32, m: u32) -> Result<Vec<u8>, AppError> {
    let now = state.now_ms();
    let (from, to) = month_range(y, m);
    let contract = yunwei_storage::contracts::get(&state.db, s).await?;
    let plans = store::compliance(&state.db, s, from, to, now).await?;
    let mut per_plan = Vec::new();
    let mut slots = Vec::new();
    for p in &plans {
        let c = &p.compliance;
        let rate = if c.required > 0 { f64::from(c.done + c.late) / f64::from(c.required) } else { 1.0 };
        per_plan.push(vec![
            XCell::Text(p.name.clone()),
            XCell::Text(p.duty_id.clone()),
            XCell::Text(p.frequency.clone()),
            XCell::Text(p.calendar.clone().unwrap_or_else(|| "每天".into())),
            XCell::Int(c.required.into()),
            XCell::Int(c.done.into()),
            XCell::Int(c.late.into()),
            XCell::Int(c.missed.into()),
            XCell::Int(c.open.into()),
            XCell::Int(c.missing_items.into()),
            XCell::Text(format!("{:.1}%", rate * 100.0)),
        ]);
        for o in &c.slots {
            slots.push(vec![
                XCell::Text(p.name.clone()),
                XCell::DateTime(o.slot.at),
                XCell::DateTime(o.slot.due_by),
                XCell::Text(o.state.label().zh.to_string()),
                XCell::Text(if o.has_run { "有" } else { "无" }.into()),
                XCell::Int(o.missing_items.into()),
                p.run_ids.get(&o.slot.at).map(|id| XCell::Int(*id)).unwrap_or(XCell::Empty),
            ]);
        }
    }
    let heads = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let title = format!("{} 巡检月度统计 {y:04}-{m:02}", contract.name);
    let tables = [
        Table {
            sheet: "月度统计".into(),
            title: Some(title.clone()),
            headers: heads(&[
                "巡检计划",
                "合同职责",
                "频率",
                "日历",
                "应巡检",
                "按时完成",
                "逾期完成",
                "错过",
                "进行中",
                "缺项",
                "完成率",
            ]),
            rows: per_plan,
        },
        Table {
            sheet: "各次巡检".into(),
            title: Some(title),
            headers: heads(&["巡检计划", "时段", "按时截止", "状态", "有无记录", "缺项", "记录编号"]),
            rows: slots,
        },
    ];
    yunwei_reports::xlsx(&tables).map_err(|e| {
        tracing::error!(error = %e, "inspection summary failed");
        AppError::internal()
    })
}

/// The daily inspection sheet (日巡检表) of `date` (default today) as .xlsx.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-sheet.xlsx", tag = "inspections",
    params(("cid" = i64, Path), ("date" = Option<String>, Query)), responses((status = 200), (status = 403, body = ErrorBody)))]
pub async fn day_sheet_xlsx(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let day = match q.date.as_deref() {
        Some(d) => {
            parse_date(d.trim()).ok_or_else(|| bad_param("date", "日期应为 YYYY-MM-DD", "date is YYYY-MM-DD"))?
        }
        None => local_day(state.now_ms()),
    };
    let bytes = day_sheet(&state, &s, day).await?;
    let (y, m, d) = civil_from_days(day);
    Ok(crate::export::xlsx_response(&format!("inspection-sheet-{y:04}-{m:02}-{d:02}.xlsx"), bytes))
}

/// The monthly inspection statistics of `month` (default this month) as .xlsx.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/inspection-summary.xlsx", tag = "inspections",
    params(("cid" = i64, Path), ("month" = Option<String>, Query)), responses((status = 200), (status = 403, body = ErrorBody)))]
pub async fn month_summary_xlsx(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (y, m) = match q.month.as_deref() {
        Some(v) => parse_month(v).ok_or_else(|| bad_param("month", "月份应为 YYYY-MM", "month is YYYY-MM"))?,
        None => {
            let (y, m, _) = civil_from_days(local_day(state.now_ms()));
            (y, m)
        }
    };
    let bytes = month_summary(&state, &s, y, m).await?;
    Ok(crate::export::xlsx_response(&format!("inspection-summary-{y:04}-{m:02}.xlsx"), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_format_errors_name_the_element() {
        let v = serde_json::json!({
            "name": "x", "frequency": "daily", "colour": 1,
            "targets": [{"kind": "room", "ref": "A"}, {"kind": "planet", "ref": "B"}],
            "items": [{"key": "a", "label": "A"}, {"key": "b", "label": "B", "expected": {"range": {"mx": 1}}}]
        });
        let p = parse_plan(v).unwrap_err();
        let fields: Vec<&str> = p.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["colour", "targets[1]", "items[1]"]);
        assert!(p[2].message.en.contains("mx"), "{:?}", p[2]);
    }

    #[test]
    fn the_chart_escapes_labels_and_has_no_script() {
        let points = vec![
            store::Point { at: 1_000, n: 1, n_ok: 1, min: Some(1.0), avg: Some(1.0), max: Some(1.0), hourly: false },
            store::Point { at: 2_000, n: 4, n_ok: 3, min: Some(0.5), avg: Some(2.0), max: Some(3.0), hourly: true },
        ];
        let svg = chart_svg("<script>alert(1)</script>", "℃", &points, 0, 3_000, (Some(0.0), Some(2.5)));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("#dc2626"), "a failed point is red");
        let empty = chart_svg("t", "", &[], 0, 1, (None, None));
        assert!(empty.contains("No data"));
    }
}
