//! Continuous monitors (持续监控): create (one, or up to 1,000 at once), list with their state,
//! edit with optimistic concurrency (pausing is `enabled: false`), delete, a monitor's incidents,
//! its history as JSON and as the inspections' SVG chart; and, for the system administrator, the
//! figures of the engine on this node. The engine itself is `crate::monitors`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use yunwei_core::Msg;
use yunwei_core::authz::AdminPermission;
use yunwei_core::inspection::Problem;
use yunwei_storage::ContractScope;
use yunwei_storage::inspections::InspectionError;
use yunwei_storage::monitors::{self as store, Filter, MonitorDef};

use super::inspections::{chart_svg, probe_check, problems_response};
use super::{ApiJson, ErrorBody};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/monitors", get(list).post(create))
        .route("/contracts/{cid}/monitors/bulk", axum::routing::post(bulk_create))
        .route("/contracts/{cid}/monitors/summary", get(summary))
        .route("/contracts/{cid}/monitors/{id}", get(detail).put(update).delete(delete))
        .route("/contracts/{cid}/monitors/{id}/history", get(history))
        .route("/contracts/{cid}/monitors/{id}/history.svg", get(history_svg))
        .route("/admin/monitor-engine", get(engine_stats))
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

fn json<T: serde::Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

fn error(e: InspectionError) -> Response {
    match e {
        InspectionError::Invalid(p) => problems_response(&p),
        InspectionError::Store(e) => AppError::from(e).into_response(),
    }
}

fn bad_param(field: &'static str, zh: &'static str, en: &'static str) -> AppError {
    AppError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid",
        message: Msg::new(zh, en),
        field: Some(field),
    }
}

fn parse(v: &serde_json::Value, at: &str) -> Result<MonitorDef, Vec<Problem>> {
    store::parse_def(v, at)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// up, down, unknown (not run yet), paused.
    pub status: Option<String>,
    /// Part of the name.
    pub q: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The contract's monitors in id order, each with its state (`status`: up, down, unknown,
/// paused), 50 a page by default (at most 500); `next_cursor` fetches the next page.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/monitors", tag = "monitors",
    params(("cid" = i64, Path), ("status" = Option<String>, Query), ("q" = Option<String>, Query), ("limit" = Option<i64>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let limit = match q.limit.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        None => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| bad_param("limit", "limit 应为 1 到 500", "limit is 1 to 500"))?,
    };
    let after_id = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            yunwei_storage::cursor::decode(c)
                .ok_or_else(|| AppError::bad_request(Msg::new("分页游标无效", "Invalid cursor")))?,
        ),
    };
    let f = Filter { status: q.status.unwrap_or_default(), q: q.q.unwrap_or_default(), after_id, limit };
    let items = store::list(&state.db, &s, &f).await?;
    let next_cursor =
        if items.len() as i64 == limit { items.last().map(|m| yunwei_storage::cursor::encode(m.id)) } else { None };
    Ok(json(serde_json::json!({ "items": items, "next_cursor": next_cursor })))
}

/// How many of the contract's monitors are up, down, not run yet and paused.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/monitors/summary", tag = "monitors", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::counts(&state.db, &s).await?))
}

/// Creates a monitor. The body is its definition: `name`, `probe` (a probe as in inspection
/// plans), `interval_s` (10–86,400, default 60), `timeout_s` (1–120, default 10), `credential`
/// (a stored probe credential's name), `asset_id`, `system_id`, `enabled`, `down_after` (failed
/// runs before down, 1–10), `reading` and `expected` (`{min, max}`), `unit`, `tickets` (`{level,
/// incident_class}`: going down raises a ticket), `retain_raw_days` (1–366, default 7). An invalid
/// one answers 422 with every problem and its field.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/monitors", tag = "monitors", params(("cid" = i64, Path)),
    request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse(&body, "") {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::create(&state.db, &s, &def, &probe_check, state.now_ms()).await {
        Ok(m) => (StatusCode::CREATED, axum::Json(m)).into_response(),
        Err(e) => error(e),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// Monitor definitions, read one by one so that a malformed one is named by its index.
    pub monitors: Vec<serde_json::Value>,
}

/// Creates up to 1,000 monitors in one transaction, all or none: 201 with their ids in order, or
/// 422 with every problem (`monitors[3].probe`).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/monitors/bulk", tag = "monitors", params(("cid" = i64, Path)),
    request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn bulk_create(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let mut defs = Vec::with_capacity(body.monitors.len());
    let mut problems = Vec::new();
    for (i, v) in body.monitors.iter().enumerate() {
        match parse(v, &format!("monitors[{i}]")) {
            Ok(d) => defs.push(d),
            Err(p) => problems.extend(p),
        }
    }
    if !problems.is_empty() {
        return Ok(problems_response(&problems));
    }
    Ok(
        match store::create_many(&state.db, &s, &defs, |i| format!("monitors[{i}]"), &probe_check, state.now_ms()).await
        {
            Ok(ids) => (StatusCode::CREATED, axum::Json(serde_json::json!({ "created": ids.len(), "ids": ids })))
                .into_response(),
            Err(e) => error(e),
        },
    )
}

/// A monitor with its state and its latest incidents (with their tickets).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/monitors/{id}", tag = "monitors", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let monitor = store::get(&state.db, &s, id).await?;
    let incidents = store::incidents(&state.db, &s, id, 20).await?;
    Ok(json(serde_json::json!({ "monitor": monitor, "incidents": incidents })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// The monitor's version as read; a stale one answers 409.
    pub version: i64,
    pub definition: serde_json::Value,
}

/// Replaces a monitor's definition; the engine uses it from the monitor's next run.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/monitors/{id}", tag = "monitors", params(("cid" = i64, Path), ("id" = i64, Path)),
    request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse(&body.definition, "definition") {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::update(&state.db, &s, id, body.version, &def, &probe_check, state.now_ms()).await {
        Ok(m) => json(m),
        Err(e) => error(e),
    })
}

/// Deletes a monitor: it stops running; its history, incidents and tickets stay.
#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/monitors/{id}", tag = "monitors", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    store::delete(&state.db, &s, id, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// Epoch milliseconds; default: `to` minus `hours`.
    pub from: Option<String>,
    /// Epoch milliseconds; default: now.
    pub to: Option<String>,
    /// The period's length when `from` is left out (default 24).
    pub hours: Option<String>,
}

impl PeriodQuery {
    fn range(&self, now: i64) -> Result<(i64, i64), AppError> {
        let num = |v: &Option<String>, field: &'static str| -> Result<Option<i64>, AppError> {
            match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v.parse::<i64>().map(Some).map_err(|_| match field {
                    "hours" => bad_param("hours", "hours 应为整数", "hours is a whole number"),
                    "from" => bad_param("from", "from 应为毫秒时间戳", "from is epoch milliseconds"),
                    _ => bad_param("to", "to 应为毫秒时间戳", "to is epoch milliseconds"),
                }),
            }
        };
        let to = num(&self.to, "to")?.unwrap_or(now);
        let hours = num(&self.hours, "hours")?.unwrap_or(24);
        if !(1..=9_600).contains(&hours) {
            return Err(bad_param("hours", "hours 应为 1 到 9600", "hours is 1 to 9,600"));
        }
        let from = num(&self.from, "from")?.unwrap_or(to - hours * 3_600_000);
        if to <= from {
            return Err(bad_param("to", "结束时间须晚于开始时间", "to must be after from"));
        }
        Ok((from, to))
    }
}

/// A monitor's values over time (its reading, by default the probe's time in ms): raw results up
/// to a day, hourly beyond and for rolled-up history.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/monitors/{id}/history", tag = "monitors",
    params(("cid" = i64, Path), ("id" = i64, Path), ("from" = Option<i64>, Query), ("to" = Option<i64>, Query), ("hours" = Option<i64>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (from, to) = q.range(state.now_ms())?;
    let points = store::history(&state.db, &s, id, from, to).await?;
    Ok(json(serde_json::json!({ "from": from, "to": to, "points": points })))
}

/// The same history as the inspections' SVG chart (min–max band, average line, failures in red,
/// the expected range dashed), drawn by the server.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/monitors/{id}/history.svg", tag = "monitors",
    params(("cid" = i64, Path), ("id" = i64, Path), ("from" = Option<i64>, Query), ("to" = Option<i64>, Query), ("hours" = Option<i64>, Query)),
    responses((status = 200), (status = 404, body = ErrorBody)))]
pub async fn history_svg(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (from, to) = q.range(state.now_ms())?;
    let m = store::get(&state.db, &s, id).await?;
    let points = store::history(&state.db, &s, id, from, to).await?;
    let d = &m.definition;
    let unit = if !d.unit.is_empty() {
        d.unit.clone()
    } else if d.reading.is_none() {
        "ms".to_string()
    } else {
        String::new()
    };
    let label = format!("{} · {}", m.name, d.reading.as_deref().unwrap_or("elapsed_ms"));
    let range = d.expected.map(|b| (b.min, b.max)).unwrap_or((None, None));
    let svg = chart_svg(&label, &unit, &points, from, to, range);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok((headers, svg).into_response())
}

/// The monitor engine on the node that answers (system administrator): whether it runs here,
/// monitors, runs, late runs (> 1 s after their slot), lateness p50/p99/max, skipped slots, the
/// result writer's batches, and which node holds the lease.
#[utoipa::path(get, path = "/api/v1/admin/monitor-engine", tag = "admin",
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn engine_stats(State(state): State<AppState>, caller: ApiCaller) -> Result<Response, AppError> {
    caller.principal.admin_scope(AdminPermission::ConfigManage)?;
    let holder = store::engine_holder(&state.db).await?;
    let (holder, expires_at) = match holder {
        Some((h, e)) => (Some(h), Some(e)),
        None => (None, None),
    };
    Ok(json(serde_json::json!({
        "this_node": state.monitors.stats(),
        "lease_holder": holder,
        "lease_expires_at": expires_at,
    })))
}
