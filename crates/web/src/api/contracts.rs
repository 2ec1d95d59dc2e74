//! Contract-scoped API: contracts, members, sites.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunwei_storage::sites::{self, Site, SiteInput};
use yunwei_storage::{ContractScope, contracts as store};

use super::{ApiJson, ErrorBody, PageQuery, Paged};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts", get(list_contracts))
        .route("/contracts/{cid}", get(get_contract))
        .route("/contracts/{cid}/members", get(list_members))
        .route("/contracts/{cid}/sites", get(list_sites).post(create_site))
        .route("/contracts/{cid}/sites/{id}", get(get_site).put(update_site).delete(delete_site))
}

#[derive(Serialize, ToSchema)]
pub struct ContractView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub client_name: String,
    pub vendor_name: String,
    pub starts_on: String,
    pub ends_on: String,
    pub status: String,
    /// The caller's role in this contract.
    pub role: String,
}

fn contract_view(c: store::Contract, role: &str) -> ContractView {
    ContractView {
        id: c.id,
        code: c.code,
        name: c.name,
        client_name: c.client_name,
        vendor_name: c.vendor_name,
        starts_on: c.starts_on,
        ends_on: c.ends_on,
        status: c.status,
        role: role.to_string(),
    }
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

/// Contracts the caller is a member of.
#[utoipa::path(get, path = "/api/v1/contracts", tag = "contracts", params(PageQuery),
    responses((status = 200, body = Paged<ContractView>), (status = 401, body = ErrorBody)))]
pub async fn list_contracts(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Paged<ContractView>>, AppError> {
    let limit = q.limit();
    let items: Vec<ContractView> = if let Some((cid, role)) = caller.principal.token_contract() {
        let s = scope(&state, &caller, cid).await?;
        if q.after_id()?.unwrap_or(0) < cid {
            vec![contract_view(store::get(&state.db, &s).await?, role.as_str())]
        } else {
            Vec::new()
        }
    } else {
        store::list_mine(&state.db, &caller.principal, q.after_id()?, limit)
            .await?
            .into_iter()
            .map(|m| contract_view(m.contract, m.role.as_str()))
            .collect()
    };
    Ok(axum::Json(Paged::new(items, limit, |c| c.id)))
}

/// One contract (404 when the caller is not a member).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}", tag = "contracts", params(("cid" = i64, Path)),
    responses((status = 200, body = ContractView), (status = 404, body = ErrorBody)))]
pub async fn get_contract(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<axum::Json<ContractView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(axum::Json(contract_view(store::get(&state.db, &s).await?, s.role().as_str())))
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: i64,
    pub login: String,
    pub display_name: String,
    pub role: String,
}

/// Members of a contract and their roles.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/members", tag = "contracts", params(("cid" = i64, Path)),
    responses((status = 200, body = Vec<MemberView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_members(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<axum::Json<Vec<MemberView>>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let members = store::members(&state.db, &s).await?;
    Ok(axum::Json(
        members
            .into_iter()
            .map(|m| MemberView {
                user_id: m.user_id,
                login: m.login,
                display_name: m.display_name,
                role: m.role.as_str().into(),
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SiteView {
    pub id: i64,
    pub contract_id: i64,
    pub name: String,
    /// machine_room, weak_current_room, control_room, office, other
    pub kind: String,
    pub address: String,
    pub notes: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Send back on update: a stale version answers 409.
    pub version: i64,
}

impl From<Site> for SiteView {
    fn from(s: Site) -> Self {
        SiteView {
            id: s.id,
            contract_id: s.contract_id,
            name: s.name,
            kind: s.kind,
            address: s.address,
            notes: s.notes,
            created_at_ms: s.created_at,
            updated_at_ms: s.updated_at,
            version: s.version,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteCreate {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub notes: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteUpdate {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub notes: String,
    pub version: i64,
}

/// Sites and machine rooms of a contract.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/sites", tag = "sites", params(("cid" = i64, Path), PageQuery),
    responses((status = 200, body = Paged<SiteView>), (status = 404, body = ErrorBody)))]
pub async fn list_sites(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Paged<SiteView>>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let limit = q.limit();
    let items: Vec<SiteView> =
        sites::list(&state.db, &s, q.after_id()?, limit).await?.into_iter().map(SiteView::from).collect();
    Ok(axum::Json(Paged::new(items, limit, |v| v.id)))
}

/// Creates a site.
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/sites", tag = "sites", params(("cid" = i64, Path)), request_body = SiteCreate,
    responses((status = 201, body = SiteView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_site(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    ApiJson(body): ApiJson<SiteCreate>,
) -> Result<Response, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let input = SiteInput { name: body.name, kind: body.kind, address: body.address, notes: body.notes };
    let site = sites::create(&state.db, &s, &input, state.now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(SiteView::from(site))).into_response())
}

/// One site.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/sites/{id}", tag = "sites", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = SiteView), (status = 404, body = ErrorBody)))]
pub async fn get_site(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<axum::Json<SiteView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(axum::Json(sites::get(&state.db, &s, id).await?.into()))
}

/// Replaces a site's fields if `version` is current.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/sites/{id}", tag = "sites", params(("cid" = i64, Path), ("id" = i64, Path)), request_body = SiteUpdate,
    responses((status = 200, body = SiteView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_site(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<SiteUpdate>,
) -> Result<axum::Json<SiteView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let input = SiteInput { name: body.name, kind: body.kind, address: body.address, notes: body.notes };
    Ok(axum::Json(sites::update(&state.db, &s, id, body.version, &input, state.now_ms()).await?.into()))
}

/// Deletes a site.
#[utoipa::path(delete, path = "/api/v1/contracts/{cid}/sites/{id}", tag = "sites", params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_site(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<StatusCode, AppError> {
    let s = scope(&state, &caller, cid).await?;
    sites::delete(&state.db, &s, id, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}
