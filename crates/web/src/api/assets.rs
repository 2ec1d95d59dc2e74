//! The asset ledger API: assets with their history and per-kind custom fields, onboarding and
//! retirement with an approver, and the monthly reconciliation rounds (清查).
//!
//! The same storage calls serve the pages (`ui::assets`); the JSON shapes are storage's serialised
//! types. Import and export of sheets live in `api::assets_import`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::Msg;
use yunwei_core::ledger;
use yunwei_storage::assets::{self, AssetFilter, AssetInput, CustomField};
use yunwei_storage::reconciliation::{self, ItemFilter, MarkInput};
use yunwei_storage::{ContractScope, cursor};

use super::{ApiJson, ErrorBody};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/assets", get(list).post(create))
        .route("/contracts/{cid}/assets/onboard", post(onboard))
        .route("/contracts/{cid}/assets/{id}", get(detail).put(update))
        .route("/contracts/{cid}/assets/{id}/history", get(history))
        .route("/contracts/{cid}/assets/{id}/retire", post(retire))
        .route("/contracts/{cid}/asset-fields", get(list_fields).post(define_field))
        .route("/contracts/{cid}/reconciliations", get(list_rounds).post(start_round))
        .route("/contracts/{cid}/reconciliations/{rid}", get(round))
        .route("/contracts/{cid}/reconciliations/{rid}/items", get(round_items))
        .route("/contracts/{cid}/reconciliations/{rid}/items/{aid}", post(mark_item))
        .route("/contracts/{cid}/reconciliations/{rid}/close", post(close_round))
        .route("/contracts/{cid}/reconciliations/{rid}/report", get(round_report))
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

fn json<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn bad_body() -> AppError {
    AppError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        Msg::new("字段缺失、类型错误或包含未知字段", "A field is missing, has the wrong type, or is unknown"),
    )
}

fn bad_cursor() -> AppError {
    AppError::bad_request(Msg::new("分页游标无效", "Invalid cursor"))
}

// ---------------------------------------------------------------------------------------------
// Assets

/// The list's query: filters, a search and the page cursor.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// network, security, host, storage, terminal, environment, software, cloud, other
    pub kind: Option<String>,
    /// in_stock, in_service, under_repair, retired
    pub status: Option<String>,
    pub site_id: Option<i64>,
    pub supplier_id: Option<i64>,
    /// Substring of name, model, brand, serial, asset number, IPs, room, department, owner, category.
    pub q: Option<String>,
    pub cursor: Option<String>,
    /// 1–500, default 50
    pub limit: Option<i64>,
}

#[derive(Serialize)]
struct AssetList {
    items: Vec<assets::Asset>,
    next_cursor: Option<String>,
}

/// Assets of a contract in ledger order, filtered by kind, status, site, supplier and a search.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets", tag = "assets", params(("cid" = i64, Path), ListQuery),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(cursor::decode(c).ok_or_else(bad_cursor)?),
    };
    let f = AssetFilter {
        kind: q.kind,
        status: q.status,
        site_id: q.site_id,
        supplier_id: q.supplier_id,
        q: q.q,
        after,
        limit: q.limit,
    };
    let page = assets::list(&state.db, &s, &f).await?;
    Ok(json(AssetList { items: page.items, next_cursor: page.next_after.map(cursor::encode) }))
}

/// Records an asset (AS1 fields; `custom` holds the values of the kind's custom fields).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/assets", tag = "assets", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<AssetInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(assets::create(&state.db, &s, &body, state.now_ms()).await?))
}

/// One asset.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/{id}", tag = "assets", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(assets::get(&state.db, &s, id).await?))
}

/// Replaces an asset's fields: the body is the asset's fields (as for creation) plus the `version`
/// it was read at; a stale version is a 409 and changes nothing.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/assets/{id}", tag = "assets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let serde_json::Value::Object(mut fields) = body else { return Err(bad_body()) };
    let version = fields.remove("version").and_then(|v| v.as_i64()).ok_or_else(|| AppError {
        field: Some("version"),
        ..AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Msg::new("缺少记录版本 version", "The record's version is missing"),
        )
    })?;
    let input: AssetInput = serde_json::from_value(serde_json::Value::Object(fields)).map_err(|_| bad_body())?;
    Ok(json(assets::update(&state.db, &s, id, version, &input, state.now_ms()).await?))
}

/// Every change of the asset: who, when, the action, and the fields before and after.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/{id}/history", tag = "assets", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    assets::get(&state.db, &s, id).await?;
    let items = assets::history(&state.db, &s, &format!("asset:{id}")).await?;
    Ok(json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardBody {
    pub asset: AssetInput,
    /// Who approved taking the asset into the ledger.
    pub approver: String,
    #[serde(default)]
    pub note: String,
}

/// Onboarding (入库): records the asset and the approved onboarding event in its history.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/assets/onboard", tag = "assets", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn onboard(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<OnboardBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let a = reconciliation::onboard(&state.db, &s, &body.asset, &body.approver, &body.note, state.now_ms()).await?;
    Ok(created(a))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireBody {
    pub version: i64,
    /// Who approved the retirement.
    pub approver: String,
    pub reason: String,
}

/// Retirement (报废): the asset becomes retired; its history records the approver and the reason.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/assets/{id}/retire", tag = "assets", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn retire(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<RetireBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let a =
        reconciliation::retire(&state.db, &s, id, body.version, &body.approver, &body.reason, state.now_ms()).await?;
    Ok(json(a))
}

// ---------------------------------------------------------------------------------------------
// Custom fields

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KindQuery {
    /// One kind; every kind when absent.
    pub kind: Option<String>,
}

/// The custom fields defined for one kind of asset, or for every kind.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/asset-fields", tag = "assets", params(("cid" = i64, Path), KindQuery),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_fields(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<KindQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let mut items = Vec::new();
    match q.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(kind) => {
            if !ledger::KINDS.iter().any(|(k, _, _)| *k == kind) {
                return Err(AppError {
                    field: Some("kind"),
                    ..AppError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        Msg::new("资产类型无效", "Unknown asset kind"),
                    )
                });
            }
            items = assets::fields(&state.db, &s, kind).await?;
        }
        None => {
            for (kind, _, _) in ledger::KINDS {
                items.extend(assets::fields(&state.db, &s, kind).await?);
            }
        }
    }
    Ok(json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldBody {
    /// The kind (or the `kind` query parameter).
    #[serde(default)]
    pub kind: Option<String>,
    /// Lower-case letters, digits and _.
    pub field_key: String,
    pub label: String,
    /// text, number, date
    #[serde(default = "text_type")]
    pub value_type: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub position: i64,
}

fn text_type() -> String {
    "text".into()
}

/// Adds a custom field to a kind, or changes the field with that key (no code change needed).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/asset-fields", tag = "assets", params(("cid" = i64, Path), KindQuery), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn define_field(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<KindQuery>,
    ApiJson(body): ApiJson<FieldBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let kind = match (body.kind.filter(|k| !k.is_empty()), q.kind.filter(|k| !k.is_empty())) {
        (Some(a), Some(b)) if a != b => {
            return Err(AppError::bad_request(Msg::new(
                "请求体与查询参数的 kind 不一致",
                "The body and the query name different kinds",
            )));
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => String::new(),
    };
    let f = CustomField {
        kind: kind.clone(),
        field_key: body.field_key.trim().to_string(),
        label: body.label,
        value_type: body.value_type,
        required: body.required,
        position: body.position,
    };
    assets::define_field(&state.db, &s, &f, state.now_ms()).await?;
    let saved = assets::fields(&state.db, &s, &kind).await?.into_iter().find(|d| d.field_key == f.field_key);
    Ok(created(saved))
}

// ---------------------------------------------------------------------------------------------
// Reconciliation rounds

/// The contract's reconciliation rounds, newest period first, each with its counts.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/reconciliations", tag = "assets", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_rounds(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(serde_json::json!({ "items": reconciliation::list(&state.db, &s).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// YYYY-MM; one round per period.
    pub period: String,
}

/// Starts the round of a period: every asset not retired becomes a pending item.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/reconciliations", tag = "assets", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_round(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(reconciliation::start(&state.db, &s, &body.period, state.now_ms()).await?))
}

/// One round with its counts by outcome.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/reconciliations/{rid}", tag = "assets", params(("cid" = i64, Path), ("rid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn round(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(reconciliation::get(&state.db, &s, rid).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ItemsQuery {
    /// pending, found, missing, moved, changed; all when absent.
    pub outcome: Option<String>,
    /// Substring of the asset's name, model, serial, number, IPs, room…
    pub q: Option<String>,
    pub cursor: Option<String>,
    /// 1–500, default 100
    pub limit: Option<i64>,
}

/// The items of a round in asset order.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/reconciliations/{rid}/items", tag = "assets", params(("cid" = i64, Path), ("rid" = i64, Path), ItemsQuery),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn round_items(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
    Query(q): Query<ItemsQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(cursor::decode(c).ok_or_else(bad_cursor)?),
    };
    let f = ItemFilter { outcome: q.outcome, q: q.q, after, limit: q.limit };
    let page = reconciliation::items(&state.db, &s, rid, &f).await?;
    Ok(json(serde_json::json!({ "items": page.items, "next_cursor": page.next_after.map(cursor::encode) })))
}

/// Marks one item found, missing, moved or changed with a note. A move or change may carry the
/// asset's new `room`, `site_id` or `status`: they are written to the asset (and its history).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/reconciliations/{rid}/items/{aid}", tag = "assets", params(("cid" = i64, Path), ("rid" = i64, Path), ("aid" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn mark_item(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid, aid)): Path<(i64, i64, i64)>,
    ApiJson(body): ApiJson<MarkInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(reconciliation::mark(&state.db, &s, rid, aid, &body, state.now_ms()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Close although items are pending: they are recorded as missing.
    #[serde(default)]
    pub force: bool,
}

/// Closes a round (refused while items are pending, unless `force`) and answers its report.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/reconciliations/{rid}/close", tag = "assets", params(("cid" = i64, Path), ("rid" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn close_round(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<CloseBody>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(reconciliation::close(&state.db, &s, rid, body.force, state.now_ms()).await?))
}

/// The report of differences: counts, and the missing, moved and changed items with their notes
/// (a draft while the round is open).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/reconciliations/{rid}/report", tag = "assets", params(("cid" = i64, Path), ("rid" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn round_report(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, rid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(reconciliation::report(&state.db, &s, rid).await?))
}
