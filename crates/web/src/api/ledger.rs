//! The ledger's records besides assets: business systems (AS4), relations and the topology drawn as
//! SVG (AS5, AS9), suppliers and their evaluations (AS7), the machine-room access register (AS8).
//!
//! The same storage calls serve the pages (`ui::ledger`); the JSON shapes are storage's serialised
//! types. Updates carry the `version` they were read at (409 when stale).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::Msg;
use yunwei_storage::assets::{self, AssetFilter};
use yunwei_storage::relations::{self, RelationInput};
use yunwei_storage::suppliers::{self, EvaluationInput, SupplierInput};
use yunwei_storage::systems::{self, SystemInput};
use yunwei_storage::visits::{self, VisitAction, VisitFilter, VisitInput};
use yunwei_storage::{ContractScope, cursor};

use super::{ApiJson, ErrorBody, PageQuery};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/systems", get(list_systems).post(create_system))
        .route("/contracts/{cid}/systems/import", post(import_systems))
        .route("/contracts/{cid}/systems/{id}", get(system_detail).put(update_system).delete(delete_system))
        .route("/contracts/{cid}/relations", get(list_relations).post(create_relation))
        .route("/contracts/{cid}/relations/{id}", delete(delete_relation))
        .route("/contracts/{cid}/topology.svg", get(topology_svg))
        .route("/contracts/{cid}/suppliers", get(list_suppliers).post(create_supplier))
        .route("/contracts/{cid}/suppliers/{id}", get(supplier_detail).put(update_supplier).delete(delete_supplier))
        .route("/contracts/{cid}/suppliers/{id}/evaluations", get(list_evaluations).post(evaluate_supplier))
        .route("/contracts/{cid}/visits", get(list_visits).post(request_visit))
        .route("/contracts/{cid}/visits/{id}", get(visit_detail))
        .route("/contracts/{cid}/visits/{id}/actions", post(act_visit))
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

/// Splits `version` off an update body and decodes the rest as the record's fields.
fn with_version<T: serde::de::DeserializeOwned>(body: serde_json::Value) -> Result<(i64, T), AppError> {
    let serde_json::Value::Object(mut fields) = body else { return Err(bad_body()) };
    let version = fields.remove("version").and_then(|v| v.as_i64()).ok_or_else(|| AppError {
        field: Some("version"),
        ..AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Msg::new("缺少记录版本 version", "The record's version is missing"),
        )
    })?;
    let input = serde_json::from_value(serde_json::Value::Object(fields)).map_err(|_| bad_body())?;
    Ok((version, input))
}

#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

fn paged<T>(items: Vec<T>, limit: i64, id_of: impl Fn(&T) -> i64) -> Page<T> {
    let next_cursor = if items.len() as i64 == limit { items.last().map(|i| cursor::encode(id_of(i))) } else { None };
    Page { items, next_cursor }
}

// ---------------------------------------------------------------------------------------------
// Business systems

/// Business systems of a contract in id order.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/systems", tag = "ledger", params(("cid" = i64, Path), PageQuery),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_systems(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let limit = q.limit();
    let items = systems::list(&state.db, &s, q.after_id()?, limit).await?;
    Ok(json(paged(items, limit, |x| x.id)))
}

/// Records a business system: name, group, description, owner, components
/// (`[{kind: os|middleware|database|service, name, version, port}]`), function_points.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/systems", tag = "ledger", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_system(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<SystemInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(systems::create(&state.db, &s, &body, state.now_ms()).await?))
}

/// Creates the systems the contract file lists that the ledger lacks (idempotent).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/systems/import", tag = "ledger", params(("cid" = i64, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_systems(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(systems::import_from_contract(&state.db, &s, state.now_ms()).await?))
}

/// One system with its relations (both directions) and its history (before/after of each change).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/systems/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn system_detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let system = systems::get(&state.db, &s, id).await?;
    let record = format!("system:{id}");
    let relations = relations::list(&state.db, &s, Some(&record)).await?;
    let history = assets::history(&state.db, &s, &record).await?;
    Ok(json(serde_json::json!({ "system": system, "relations": relations, "history": history })))
}

/// Replaces a system's fields; the body is the fields plus the `version` read.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/systems/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_system(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (version, input): (i64, SystemInput) = with_version(body)?;
    Ok(json(systems::update(&state.db, &s, id, version, &input, state.now_ms()).await?))
}

/// Deletes a system and its relations.
#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/systems/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_system(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    systems::delete(&state.db, &s, id, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Relations and topology

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RelationQuery {
    /// Only the relations of this record (`asset:12`, `system:3`), in both directions.
    pub record: Option<String>,
}

/// Relations of the contract, or of one record.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/relations", tag = "ledger", params(("cid" = i64, Path), RelationQuery),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_relations(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<RelationQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let items = relations::list(&state.db, &s, q.record.as_deref().filter(|r| !r.is_empty())).await?;
    Ok(json(serde_json::json!({ "items": items })))
}

/// Relates two records of the contract: `{from_ref: "system:3", relation: runs_on|connects_to|
/// powered_by|backs_up_to, to_ref: "asset:7", from_port, to_port, cable_label}`.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/relations", tag = "ledger", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_relation(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<RelationInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(relations::create(&state.db, &s, &body, state.now_ms()).await?))
}

/// Deletes a relation (recorded on both ends' history).
#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/relations/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_relation(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    relations::delete(&state.db, &s, id, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The topology as an SVG image drawn by the server (systems, hosts, network, environment).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/topology.svg", tag = "ledger", params(("cid" = i64, Path)),
    responses((status = 200, content_type = "image/svg+xml"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn topology_svg(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let graph = relations::graph(&state.db, &s).await?;
    let svg = crate::topology::render(&graph, caller.ctx.lang);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok((headers, svg).into_response())
}

// ---------------------------------------------------------------------------------------------
// Suppliers

/// Suppliers of a contract in id order.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/suppliers", tag = "ledger", params(("cid" = i64, Path), PageQuery),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_suppliers(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let limit = q.limit();
    let items = suppliers::list(&state.db, &s, q.after_id()?, limit).await?;
    Ok(json(paged(items, limit, |x| x.id)))
}

/// Records a supplier: name, contacts, scope, sla_promise, certifications, trainings, notes.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/suppliers", tag = "ledger", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_supplier(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<SupplierInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(suppliers::create(&state.db, &s, &body, state.now_ms()).await?))
}

/// One supplier with its evaluations, the assets it supports (first 500) and its history.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/suppliers/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn supplier_detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let supplier = suppliers::get(&state.db, &s, id).await?;
    let evaluations = suppliers::evaluations(&state.db, &s, id).await?;
    let supported =
        assets::list(&state.db, &s, &AssetFilter { supplier_id: Some(id), limit: Some(500), ..Default::default() })
            .await?;
    let history = assets::history(&state.db, &s, &format!("supplier:{id}")).await?;
    Ok(json(serde_json::json!({
        "supplier": supplier,
        "evaluations": evaluations,
        "assets": supported.items,
        "history": history,
    })))
}

/// Replaces a supplier's fields; the body is the fields plus the `version` read.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/suppliers/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_supplier(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (version, input): (i64, SupplierInput) = with_version(body)?;
    Ok(json(suppliers::update(&state.db, &s, id, version, &input, state.now_ms()).await?))
}

/// Deletes a supplier that supports no asset (409 otherwise), with its evaluations.
#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/suppliers/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_supplier(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    suppliers::delete(&state.db, &s, id, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A supplier's evaluations, latest period first.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/suppliers/{id}/evaluations", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn list_evaluations(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    suppliers::get(&state.db, &s, id).await?;
    Ok(json(serde_json::json!({ "items": suppliers::evaluations(&state.db, &s, id).await? })))
}

/// Evaluates a supplier for a period: `{period: "2026-Q1", score: 0–100, comments, evaluated_by}`.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/suppliers/{id}/evaluations", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn evaluate_supplier(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<EvaluationInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(suppliers::evaluate(&state.db, &s, id, &body, state.now_ms()).await?))
}

// ---------------------------------------------------------------------------------------------
// Machine-room access register

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VisitQuery {
    /// requested, approved, rejected, in_room, closed
    pub state: Option<String>,
    /// Only the visits still in the room 12 hours after entry.
    #[serde(default)]
    pub never_closed: bool,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Visits, newest first; `never_closed` flags visits in the room for more than 12 hours.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/visits", tag = "ledger", params(("cid" = i64, Path), VisitQuery),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_visits(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<VisitQuery>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let page = PageQuery { limit: q.limit, cursor: q.cursor };
    let limit = page.limit();
    let f = VisitFilter { state: q.state, never_closed: q.never_closed, before: page.after_id()?, limit: Some(limit) };
    let items = visits::list(&state.db, &s, &f, state.now_ms()).await?;
    Ok(json(paged(items, limit, |v| v.id)))
}

/// Asks to visit a machine room: `{site_id, visitor, organisation, purpose, planned_on: YYYY-MM-DD}`.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/visits", tag = "ledger", params(("cid" = i64, Path)), request_body = Object,
    responses((status = 201, body = Object), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn request_visit(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<VisitInput>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(created(visits::request(&state.db, &s, &body, state.now_ms()).await?))
}

/// One visit with the history of its steps.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/visits/{id}", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn visit_detail(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let visit = visits::get(&state.db, &s, id, state.now_ms()).await?;
    let history = visits::history(&state.db, &s, id).await?;
    Ok(json(serde_json::json!({ "visit": visit, "history": history })))
}

/// One step: `{action: approve|reject (the client's supervisor, with a note; not one's own request)
/// | enter (escort) | exit (work_done), version, at_ms?}`.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/visits/{id}/actions", tag = "ledger", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn act_visit(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<VisitAction>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(json(visits::act(&state.db, &s, id, &body, state.now_ms()).await?))
}
