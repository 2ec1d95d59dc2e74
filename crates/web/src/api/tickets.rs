//! The service desk API: tickets, their lifecycle, comments, attachments, analysis, links, lists,
//! statistics and Excel export, mail ingest, and the caller's notification inbox.
//!
//! The same storage calls serve the pages; the JSON shapes are storage's serialised types.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use yunwei_core::Msg;
use yunwei_storage::tickets::{self, ActionInput, AnalysisInput, NewTicket, TicketEdit, TicketFilter};
use yunwei_storage::{ContractScope, attachments, notifications, ticket_stats};

use super::{ApiJson, ErrorBody};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/tickets", get(list).post(create))
        .route("/contracts/{cid}/tickets/export.xlsx", get(export))
        .route("/contracts/{cid}/tickets/stats", get(stats))
        .route("/contracts/{cid}/tickets/{id}", get(detail).patch(edit))
        .route("/contracts/{cid}/tickets/{id}/actions", post(act))
        .route("/contracts/{cid}/tickets/{id}/comments", post(comment))
        .route("/contracts/{cid}/tickets/{id}/analysis", post(analysis))
        .route("/contracts/{cid}/tickets/{id}/summary", post(summary))
        .route("/contracts/{cid}/tickets/{id}/work", post(work))
        .route("/contracts/{cid}/tickets/{id}/links", post(link))
        .route("/contracts/{cid}/tickets/{id}/merge", post(merge))
        .route("/contracts/{cid}/tickets/{id}/suggestions", get(suggestions))
        .route("/contracts/{cid}/tickets/{id}/attachments", post(upload).layer(DefaultBodyLimit::disable()))
        .route("/contracts/{cid}/tickets/{id}/attachments/{aid}", get(download))
        .route("/contracts/{cid}/mail", post(ingest_mail))
        .route("/notifications", get(inbox))
        .route("/notifications/read", post(mark_read))
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

fn json<T: serde::Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

/// Tickets of a contract: `view` (open, all, mine, reported, breaching, awaiting_confirmation,
/// awaiting_approval, closed), filters, `q` (substring search in title, description and number),
/// `sort` (time_left, newest, oldest) and a `cursor`.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/tickets", tag = "tickets", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(f): Query<TicketFilter>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::list(&state.db, &s, &f, state.now_ms()).await?))
}

/// Records a ticket. A repeated inspection or alert finding (`source_key` of an open ticket) is
/// added to that ticket as a comment instead (200 with `created: false`).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets", tag = "tickets", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<NewTicket>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let intake = tickets::create(&state.db, &s, &body, state.now_ms()).await?;
    let status = if intake.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(intake)).into_response())
}

/// One ticket with its SLA clocks, history, comments, attachments, time spent, links, fired
/// notices and the steps the caller may take.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/tickets/{id}", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::detail(&state.db, &s, id, state.now_ms()).await?))
}

/// Changes title, description, level (re-targets the clocks), incident class, system or asset.
#[utoipa::path(patch, path = "/api/v1/contracts/{cid}/tickets/{id}", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<TicketEdit>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::edit(&state.db, &s, id, &body, state.now_ms()).await?))
}

/// One lifecycle step: approve, reject_request, dispatch, accept, arrive, suspend, resume, solve,
/// confirm (with an optional 1–5 rating), reject_solution, reopen, cancel.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/actions", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn act(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<ActionInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::act(&state.db, &s, id, &body, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub body: String,
    #[serde(default)]
    pub internal: bool,
}

/// Adds a comment (internal ones are hidden from the client).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/comments", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 422, body = ErrorBody)))]
pub async fn comment(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<CommentBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let c = tickets::comment(&state.db, &s, id, &body.body, body.internal, "web", state.now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(c)).into_response())
}

/// Writes the fault analysis: cause, process, impact, recommendation (all required).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/analysis", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn analysis(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<AnalysisInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::record_analysis(&state.db, &s, id, &body, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryBody {
    pub version: i64,
    pub summary: String,
}

/// Submits the major-incident summary report (stops the contract's summary clock).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/summary", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<SummaryBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::submit_summary(&state.db, &s, id, body.version, &body.summary, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkBody {
    pub minutes: i64,
    #[serde(default)]
    pub note: String,
}

/// Records time spent.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/work", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 204), (status = 422, body = ErrorBody)))]
pub async fn work(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<WorkBody>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    tickets::log_work(&state.db, &s, id, body.minutes, &body.note, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    pub other: i64,
    /// parent, related, explains
    pub relation: String,
}

/// Links the ticket to another one.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/links", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn link(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    tickets::link(&state.db, &s, id, body.other, &body.relation, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    pub into: i64,
}

/// Merges this ticket (a duplicate) into another one.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/merge", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 409, body = ErrorBody)))]
pub async fn merge(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<MergeBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::merge(&state.db, &s, id, body.into, state.now_ms()).await?))
}

/// Who to dispatch to: people who know the ticket's system first, then the least loaded.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/tickets/{id}/suggestions", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
pub async fn suggestions(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(tickets::suggestions(&state.db, &s, id, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub name: String,
    #[serde(default)]
    pub internal: bool,
}

pub(crate) fn attachments_dir(state: &AppState) -> Result<&std::path::Path, AppError> {
    state.config.attachments_dir.as_deref().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            Msg::new("附件存储未配置", "Attachment storage is not configured"),
        )
    })
}

/// Uploads an attachment: the raw file is the body, its name the `name` parameter. The type is
/// decided by the content; HTML, SVG, scripts and executables are refused.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/tickets/{id}/attachments", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path), ("name" = String, Query)),
    responses((status = 201, body = Object), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    Query(q): Query<UploadQuery>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let body: Bytes = axum::body::to_bytes(request.into_body(), attachments::MAX_BYTES + 1).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Msg::new("附件不能超过 20 MB", "An attachment is at most 20 MB"),
        )
    })?;
    if body.len() > attachments::MAX_BYTES {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            Msg::new("附件不能超过 20 MB", "An attachment is at most 20 MB"),
        ));
    }
    let dir = attachments_dir(&state)?;
    let a = attachments::save(&state.db, &s, dir, id, &q.name, &body, q.internal, state.now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(a)).into_response())
}

/// Downloads an attachment, always as a download (never rendered by the browser).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/tickets/{id}/attachments/{aid}", tag = "tickets", params(("cid" = i64, Path), ("id" = i64, Path), ("aid" = i64, Path)),
    responses((status = 200), (status = 404, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id, aid)): Path<(i64, i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let dir = attachments_dir(&state)?;
    let (a, bytes) = attachments::open(&state.db, &s, dir, id, aid).await?;
    Ok(attachment_response(&a.file_name, &a.mime, bytes))
}

/// The headers every attachment is served with: a download, of the sniffed type, not sniffable,
/// sandboxed should anything still try to render it.
pub(crate) fn attachment_response(file_name: &str, mime: &str, bytes: Vec<u8>) -> Response {
    let mut headers = HeaderMap::new();
    let ascii: String =
        file_name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
    let encoded: String = file_name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    if let Ok(v) = disposition.parse() {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = mime.parse() {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static("sandbox; default-src 'none'"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("private, no-store"));
    (headers, bytes).into_response()
}

/// The list as an Excel workbook (same filters as the list; at most 100,000 rows).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/tickets/export.xlsx", tag = "tickets", params(("cid" = i64, Path)),
    responses((status = 200), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(f): Query<TicketFilter>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let bytes = crate::export::tickets_xlsx(&state, &s, f).await?;
    Ok(crate::export::xlsx_response("tickets.xlsx", bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// YYYY-MM
    pub month: String,
}

/// Monthly figures: frequent faults by type and system (SD9), per-engineer counts, response and
/// resolution times, SLA attainment, ratings and time spent (SD10).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/tickets/stats", tag = "tickets", params(("cid" = i64, Path), ("month" = String, Query)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stats(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(ticket_stats::month(&state.db, &s, &q.month, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailBody {
    pub from: String,
    pub subject: String,
    #[serde(default)]
    pub body: String,
}

/// Mail ingest (a mail gateway posts each message here): a reply whose subject quotes a ticket
/// number becomes a comment on that ticket; any other message becomes a new ticket.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/mail", tag = "tickets", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 200, body = Object), (status = 422, body = ErrorBody)))]
pub async fn ingest_mail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<MailBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let out =
        yunwei_storage::mail::ingest(&state.db, &s, &body.from, &body.subject, &body.body, state.now_ms()).await?;
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(out)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    #[serde(default)]
    pub unread: bool,
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn inbox(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<InboxQuery>,
) -> Result<Response, AppError> {
    let items = notifications::inbox(&state.db, &caller.principal, q.unread, q.before, q.limit.unwrap_or(50)).await?;
    let unread = notifications::unread_count(&state.db, &caller.principal).await?;
    Ok(json(serde_json::json!({ "items": items, "unread": unread })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadBody {
    /// One notification; all when absent.
    pub id: Option<i64>,
}

/// Marks notifications read.
#[utoipa::path(post, path = "/api/v1/notifications/read", tag = "notifications", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<ReadBody>,
) -> Result<Response, AppError> {
    let n = notifications::mark_read(&state.db, &caller.principal, body.id, state.now_ms()).await?;
    Ok(json(serde_json::json!({ "marked": n })))
}
