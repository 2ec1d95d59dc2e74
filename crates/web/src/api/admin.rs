//! Administrator API: users, contracts, role grants, the audit log.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunwei_core::Msg;
use yunwei_core::authz::{AdminPermission, ContractRole};
use yunwei_storage::audit::{self, AuditEntry, AuditFilter, AuditResult};
use yunwei_storage::{AdminScope, contracts as store, users};

use super::{ApiJson, ErrorBody};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list_users).post(create_user))
        .route("/admin/contracts", get(list_contracts).post(create_contract))
        .route("/admin/memberships", post(grant_membership))
        .route("/audit", get(list_audit))
        .route("/audit/verify", get(verify_audit))
}

fn scope(caller: &ApiCaller, p: AdminPermission) -> Result<AdminScope, AppError> {
    Ok(caller.principal.admin_scope(p)?)
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub admin_role: Option<String>,
    pub disabled: bool,
    pub locked: bool,
    pub totp_enrolled: bool,
    pub must_change_password: bool,
    pub last_login_at_ms: Option<i64>,
}

/// All accounts (system or security admin).
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<UserView>>, AppError> {
    let s = [AdminPermission::UserManage, AdminPermission::RoleGrant, AdminPermission::LockoutManage]
        .iter()
        .find_map(|p| caller.principal.admin_scope(*p).ok())
        .ok_or_else(AppError::forbidden)?;
    let now = state.now_ms();
    Ok(axum::Json(
        users::list(&state.db, &s)
            .await?
            .into_iter()
            .map(|u| UserView {
                locked: u.is_locked(now),
                id: u.id,
                login: u.login,
                display_name: u.display_name,
                email: u.email,
                admin_role: u.admin_role.map(|r| r.as_str().into()),
                disabled: u.disabled,
                totp_enrolled: u.totp_enrolled,
                must_change_password: u.must_change_password,
                last_login_at_ms: u.last_login_at,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    pub login: String,
    pub display_name: String,
    #[serde(default)]
    pub email: String,
    /// Must satisfy the password policy; the user changes it at first login.
    pub initial_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: i64,
}

/// Creates an account (system admin).
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", request_body = UserCreate,
    responses((status = 201, body = Created), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(body): ApiJson<UserCreate>,
) -> Result<Response, AppError> {
    let s = scope(&caller, AdminPermission::UserManage)?;
    let new = users::NewUser { login: body.login, display_name: body.display_name, email: body.email };
    let id = users::create(&state.db, &s, new, &body.initial_password, state.now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id })).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct AdminContractView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub client_name: String,
    pub vendor_name: String,
    pub starts_on: String,
    pub ends_on: String,
    pub status: String,
    pub version: i64,
}

/// All contracts (system admin, or security admin for grants).
#[utoipa::path(get, path = "/api/v1/admin/contracts", tag = "admin", responses((status = 200, body = Vec<AdminContractView>), (status = 403, body = ErrorBody)))]
pub async fn list_contracts(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<Vec<AdminContractView>>, AppError> {
    let s = [AdminPermission::ContractManage, AdminPermission::RoleGrant, AdminPermission::TokenManage]
        .iter()
        .find_map(|p| caller.principal.admin_scope(*p).ok())
        .ok_or_else(AppError::forbidden)?;
    Ok(axum::Json(
        store::list_all(&state.db, &s)
            .await?
            .into_iter()
            .map(|c| AdminContractView {
                id: c.id,
                code: c.code,
                name: c.name,
                client_name: c.client_name,
                vendor_name: c.vendor_name,
                starts_on: c.starts_on,
                ends_on: c.ends_on,
                status: c.status,
                version: c.version,
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractCreate {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub client_name: String,
    #[serde(default)]
    pub vendor_name: String,
    /// YYYY-MM-DD
    pub starts_on: String,
    /// YYYY-MM-DD
    pub ends_on: String,
}

/// Creates a contract (system admin).
#[utoipa::path(post, path = "/api/v1/admin/contracts", tag = "admin", request_body = ContractCreate,
    responses((status = 201, body = Created), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_contract(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(b): ApiJson<ContractCreate>,
) -> Result<Response, AppError> {
    let s = scope(&caller, AdminPermission::ContractManage)?;
    let input = store::ContractInput {
        code: b.code,
        name: b.name,
        client_name: b.client_name,
        vendor_name: b.vendor_name,
        starts_on: b.starts_on,
        ends_on: b.ends_on,
    };
    let id = store::create(&state.db, &s, &input, state.now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipGrant {
    pub contract_id: i64,
    pub user_id: i64,
    /// service_desk, engineer, backline_expert, project_manager, client_supervisor, client_end_user
    pub role: String,
}

/// Grants a contract role (security admin).
#[utoipa::path(post, path = "/api/v1/admin/memberships", tag = "admin", request_body = MembershipGrant,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn grant_membership(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiJson(b): ApiJson<MembershipGrant>,
) -> Result<StatusCode, AppError> {
    let s = scope(&caller, AdminPermission::RoleGrant)?;
    let role = ContractRole::parse(&b.role).ok_or_else(|| {
        let mut e = AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", Msg::new("角色无效", "Unknown role"));
        e.field = Some("role");
        e
    })?;
    store::grant(&state.db, &s, b.contract_id, b.user_id, role, state.now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub username: Option<String>,
    pub action_prefix: Option<String>,
    pub contract_id: Option<i64>,
    pub result: Option<String>,
    /// Sequence number to continue below (the `next_before` of the previous page).
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditRecordView {
    pub seq: i64,
    pub at_ms: i64,
    pub user_id: Option<i64>,
    pub username: String,
    pub source_ip: String,
    pub contract_id: Option<i64>,
    pub action: String,
    pub object: String,
    pub result: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecordView>,
    pub next_before: Option<i64>,
}

/// The audit log, newest first (audit admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, AppError> {
    let s = scope(&caller, AdminPermission::AuditRead)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AuditFilter {
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        username: q.username,
        action_prefix: q.action_prefix,
        contract_id: q.contract_id,
        result: q.result,
    };
    let records = audit::list(&state.db, &s, &filter, q.before, limit).await?;
    let next_before = if records.len() as i64 == limit { records.last().map(|r| r.seq) } else { None };
    Ok(axum::Json(AuditPage {
        items: records
            .into_iter()
            .map(|r| AuditRecordView {
                seq: r.seq,
                at_ms: r.at_ms,
                user_id: r.user_id,
                username: r.username,
                source_ip: r.source_ip,
                contract_id: r.contract_id,
                action: r.action,
                object: r.object,
                result: r.result,
                detail: r.detail,
                prev_hash: r.prev_hash,
                hash: r.hash,
            })
            .collect(),
        next_before,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct VerifyView {
    pub intact: bool,
    pub checked: i64,
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
}

/// Walks the SM3 hash chain and names the first broken record (audit admin).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", responses((status = 200, body = VerifyView), (status = 403, body = ErrorBody)))]
pub async fn verify_audit(
    State(state): State<AppState>,
    caller: ApiCaller,
) -> Result<axum::Json<VerifyView>, AppError> {
    let s = scope(&caller, AdminPermission::AuditVerify)?;
    let report = audit::verify(&state.db).await?;
    let result = if report.first_broken.is_none() { AuditResult::Ok } else { AuditResult::Failed };
    state
        .db
        .audit_event(
            state.now_ms(),
            AuditEntry::new(s.actor(), "audit.verify", "audit_log")
                .result(result)
                .detail(format!("checked={}", report.checked)),
        )
        .await?;
    Ok(axum::Json(VerifyView {
        intact: report.first_broken.is_none(),
        checked: report.checked,
        first_broken_seq: report.first_broken.as_ref().map(|b| b.0),
        reason: report.first_broken.map(|b| b.1),
    }))
}
