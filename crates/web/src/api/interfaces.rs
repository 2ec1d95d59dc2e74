//! Data-exchange interfaces (数据对接接口, IN5): definitions (checked in full, every problem with its
//! field), pause and resume, the heartbeat token (shown once, rotated on demand), the history of
//! decided windows and reported pushes, the month's figures per interface, and the heartbeat
//! endpoint the pushing jobs call (`POST /api/v1/heartbeat/{token}`: no session, no cookie, the
//! token alone identifies the interface).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::Msg;
use yunwei_core::exchange::InterfaceDef;
use yunwei_core::inspection::Problem;
use yunwei_core::ledger::Message;
use yunwei_storage::ContractScope;
use yunwei_storage::inspections::InspectionError;
use yunwei_storage::interfaces::{self as store, HeartbeatAck, HeartbeatInput, Saved};

use super::inspections::{month_range, parse_month, probe_check, problems_response};
use super::{ApiJson, ErrorBody};
use crate::AppState;
use crate::auth::{ApiCaller, RequestCtx};
use crate::error::AppError;

/// Largest heartbeat body: a record count and a batch name.
const HEARTBEAT_BODY_LIMIT: usize = 4 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/interfaces", get(list).post(create))
        .route("/contracts/{cid}/interfaces/check", post(check))
        .route("/contracts/{cid}/interfaces/{iid}", get(detail).put(update).delete(retire))
        .route("/contracts/{cid}/interfaces/{iid}/active", post(set_active))
        .route("/contracts/{cid}/interfaces/{iid}/token", post(rotate_token))
        .route("/contracts/{cid}/interfaces/{iid}/history", get(history))
        .route("/contracts/{cid}/interface-compliance", get(compliance))
        .route("/heartbeat/{token}", post(heartbeat))
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

fn json<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

fn insp_error(e: InspectionError) -> Response {
    match e {
        InspectionError::Invalid(p) => problems_response(&p),
        InspectionError::Store(e) => AppError::from(e).into_response(),
    }
}

/// The path a pushing job posts to.
pub(crate) fn heartbeat_path(token: &str) -> String {
    format!("/api/v1/heartbeat/{token}")
}

/// A saved interface with its token and heartbeat path, when one was just issued.
fn saved_json(s: Saved) -> serde_json::Value {
    let path = s.heartbeat_token.as_deref().map(heartbeat_path);
    serde_json::json!({ "interface": s.interface, "heartbeat_token": s.heartbeat_token, "heartbeat_path": path })
}

const FIELDS: &[&str] = &[
    "code",
    "name",
    "content",
    "source_system",
    "target_system",
    "frequency",
    "grace",
    "heartbeat",
    "count_check",
    "tickets",
];

fn problem(field: impl Into<String>, zh: impl Into<String>, en: impl Into<String>) -> Problem {
    Problem { field: field.into(), message: Message::new(zh, en) }
}

/// A definition from JSON, or where and why it does not fit the format.
pub(crate) fn parse_def(v: serde_json::Value) -> Result<InterfaceDef, Vec<Problem>> {
    fn shape(field: &str, e: serde_json::Error) -> Problem {
        problem(field, format!("格式错误：{e}"), format!("malformed: {e}"))
    }
    let Some(obj) = v.as_object() else {
        return Err(vec![problem("", "接口定义须为 JSON 对象", "an interface definition is a JSON object")]);
    };
    let mut out = Vec::new();
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            out.push(problem(
                k.clone(),
                format!("未知字段 {k:?}（可用：{}）", FIELDS.join("、")),
                format!("unknown field {k:?} (known: {})", FIELDS.join(", ")),
            ));
        }
    }
    for k in ["code", "name", "source_system", "target_system", "frequency"] {
        match obj.get(k) {
            None => out.push(problem(k, format!("缺少 {k}"), format!("{k} is missing"))),
            Some(serde_json::Value::String(_)) => {}
            Some(_) => out.push(problem(k, format!("{k} 须为文本"), format!("{k} must be a string"))),
        }
    }
    if let Some(c) = obj.get("count_check").filter(|c| !c.is_null()) {
        match c.as_object() {
            None => out.push(problem("count_check", "count_check 须为对象", "count_check must be an object")),
            Some(co) => {
                for side in ["source", "target"] {
                    match co.get(side) {
                        None => out.push(problem(
                            format!("count_check.{side}"),
                            format!("缺少 count_check.{side}"),
                            format!("count_check.{side} is missing"),
                        )),
                        Some(q) => {
                            if let Err(e) = serde_json::from_value::<yunwei_core::exchange::CountQuery>(q.clone()) {
                                out.push(shape(&format!("count_check.{side}"), e));
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(t) = obj.get("tickets").filter(|t| !t.is_null())
        && let Err(e) = serde_json::from_value::<yunwei_core::inspection::TicketRule>(t.clone())
    {
        out.push(shape("tickets", e));
    }
    if !out.is_empty() {
        return Err(out);
    }
    serde_json::from_value(v).map_err(|e| vec![shape("", e)])
}

// ---------------------------------------------------------------------------------------------

/// The contract's interfaces with their last push, status and next check.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/interfaces", tag = "interfaces", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::list(&state.db, &s).await?))
}

/// Creates an interface. The body is its definition (code, name, content, source_system,
/// target_system, frequency, grace, heartbeat, count_check, tickets); an invalid one answers 422
/// with every problem and its field. The answer holds the heartbeat token, shown this once.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/interfaces", tag = "interfaces", params(("cid" = i64, Path)),
    request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse_def(body) {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::create(&state.db, &s, &def, &probe_check, state.now_ms()).await {
        Ok(saved) => (StatusCode::CREATED, axum::Json(saved_json(saved))).into_response(),
        Err(e) => insp_error(e),
    })
}

/// Checks a definition without storing it: 200 with the resolved schedule, or 422.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/interfaces/check", tag = "interfaces", params(("cid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 422, body = ErrorBody)))]
pub async fn check(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse_def(body) {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::check_interface(&state.db, &s, &def, &probe_check).await {
        Ok(sch) => json(serde_json::json!({
            "ok": true,
            "frequency": sch.frequency.canonical(),
            "frequency_label": sch.frequency.label(),
            "grace_ms": sch.grace_ms,
            "first_window": sch.frequency.period_ms().and_then(|_| sch.first_window_from(state.now_ms(), state.now_ms())),
        })),
        Err(e) => insp_error(e),
    })
}

#[utoipa::path(get, path = "/api/v1/contracts/{cid}/interfaces/{iid}", tag = "interfaces", params(("cid" = i64, Path), ("iid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, iid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::get(&state.db, &s, iid).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// The interface's version as read; a stale one answers 409.
    pub version: i64,
    pub definition: serde_json::Value,
}

/// Replaces a definition. A changed frequency or grace applies from the next window; turning the
/// heartbeat on issues a token (in the answer, once), turning it off revokes it.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/interfaces/{iid}", tag = "interfaces", params(("cid" = i64, Path), ("iid" = i64, Path)),
    request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, iid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let def = match parse_def(body.definition) {
        Ok(d) => d,
        Err(p) => return Ok(problems_response(&p)),
    };
    Ok(match store::update(&state.db, &s, iid, &def, body.version, &probe_check, state.now_ms()).await {
        Ok(saved) => json(saved_json(saved)),
        Err(e) => insp_error(e),
    })
}

/// Takes an interface out of service (`?version=N`): its token stops working, its history stays.
#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/interfaces/{iid}", tag = "interfaces", params(("cid" = i64, Path), ("iid" = i64, Path), ("version" = i64, Query)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retire(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, iid)): Path<(i64, i64)>,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct V {
        version: i64,
    }
    let v: V = serde_urlencoded::from_str(q.as_deref().unwrap_or("")).map_err(|_| AppError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid",
        message: Msg::new("请在查询参数中给出接口的版本号（?version=N）", "Give the interface's version (?version=N)"),
        field: Some("version"),
    })?;
    store::retire(&state.db, &s, iid, v.version, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveBody {
    pub active: bool,
    pub version: i64,
}

/// Pauses (`active: false`) or resumes an interface. Paused, no window is decided; pushes are
/// still recorded.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/interfaces/{iid}/active", tag = "interfaces", params(("cid" = i64, Path), ("iid" = i64, Path)),
    request_body = Object, responses((status = 200, body = Object), (status = 409, body = ErrorBody)))]
pub async fn set_active(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, iid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<ActiveBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(store::set_active(&state.db, &s, iid, body.active, body.version, state.now_ms()).await?))
}

/// Issues a new heartbeat token (in the answer, once); the old one stops working at once.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/interfaces/{iid}/token", tag = "interfaces", params(("cid" = i64, Path), ("iid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rotate_token(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, iid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(saved_json(store::rotate_token(&state.db, &s, iid, state.now_ms()).await?)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MonthQuery {
    #[serde(default)]
    month: Option<String>,
}

fn bad_query(zh: &'static str, en: &'static str) -> AppError {
    AppError::bad_request(Msg::new(zh, en))
}

/// The latest decided windows and reported pushes, newest first (`limit`, 1–500, default 100).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/interfaces/{iid}/history", tag = "interfaces", params(("cid" = i64, Path), ("iid" = i64, Path), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, iid)): Path<(i64, i64)>,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let q: LimitQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|_| bad_query("查询参数无效（只有 limit）", "Invalid query parameters (only limit)"))?;
    Ok(json(store::history(&state.db, &s, iid, q.limit.unwrap_or(100)).await?))
}

/// Per interface, the windows of a month (`month=YYYY-MM`, default this month) by outcome: the
/// evidence of IN5 for the client.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/interface-compliance", tag = "interfaces", params(("cid" = i64, Path), ("month" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn compliance(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    RawQuery(q): RawQuery,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let q: MonthQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|_| bad_query("查询参数无效（只有 month）", "Invalid query parameters (only month)"))?;
    let (y, m) = match q.month.as_deref() {
        Some(t) => parse_month(t).ok_or_else(|| bad_query("月份应为 YYYY-MM", "month is YYYY-MM"))?,
        None => {
            let (y, m, _) = yunwei_core::calendar::civil_from_days(yunwei_core::calendar::local_day(state.now_ms()));
            (y, m)
        }
    };
    let (from, to) = month_range(y, m);
    let rows = store::compliance(&state.db, &s, from, to).await?;
    Ok(json(serde_json::json!({ "month": format!("{y:04}-{m:02}"), "from": from, "to": to, "interfaces": rows })))
}

/// A pushing job reports one push. No session and no API token: the token in the path alone
/// names the interface (an unknown one is a plain 404). The optional body `{"records": 120,
/// "batch": "20260302"}` (or the same as query parameters) is kept with the server's time.
///
/// Not in the OpenAPI document, which lists the API that needs a session or a token; the
/// interface page shows this URL with the token when it is issued.
pub async fn heartbeat(
    State(state): State<AppState>,
    ctx: RequestCtx,
    Path(token): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, AppError> {
    if !store::token_shape(&token) {
        return Err(AppError::not_found());
    }
    if body.len() > HEARTBEAT_BODY_LIMIT {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Msg::new("心跳内容过大（至多 4 KiB）", "The heartbeat body is too large (at most 4 KiB)"),
        ));
    }
    let input: HeartbeatInput = if body.iter().all(u8::is_ascii_whitespace) {
        serde_urlencoded::from_str(q.as_deref().unwrap_or("")).map_err(|_| {
            bad_query("查询参数无效（可用 records、batch）", "Invalid query parameters (records and batch are known)")
        })?
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                Msg::new(
                    "心跳内容应为 JSON：{\"records\": 记录数, \"batch\": \"批次\"}",
                    "The heartbeat body is JSON: {\"records\": count, \"batch\": \"name\"}",
                ),
            )
        })?
    };
    match store::heartbeat(&state.db, &token, &input, &ctx.ip, state.now_ms()).await? {
        HeartbeatAck::Recorded { received_at } => {
            Ok(json(serde_json::json!({ "ok": true, "received_at": received_at })))
        }
        HeartbeatAck::TooSoon => {
            let mut r = AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                Msg::new(
                    "心跳过于频繁：同一接口每秒至多一次",
                    "Too many heartbeats: at most one a second per interface",
                ),
            )
            .into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(r)
        }
    }
}
