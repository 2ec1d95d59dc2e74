//! Administrator pages: users (system admin), contracts (system admin), role grants, policy,
//! lockouts and API tokens (security admin).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::{AdminPermission, AdminRole, ContractRole};
use yunwei_core::password::SecurityPolicy;
use yunwei_storage::contracts::{self as store, ContractInput};
use yunwei_storage::{AdminScope, settings, tokens, users};

use super::{UiForm, admin_role_label, page, render};
use crate::AppState;
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::{Lang, t};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users_page).post(create_user))
        .route("/admin/users/{id}/reset-password", post(reset_password))
        .route("/admin/users/{id}/disable", post(disable_user))
        .route("/admin/users/{id}/enable", post(enable_user))
        .route("/admin/users/{id}/unlock", post(unlock_user))
        .route("/admin/users/{id}/reset-totp", post(reset_totp))
        .route("/admin/users/{id}/admin-role", post(set_admin_role))
        .route("/admin/contracts", get(contracts_page).post(create_contract))
        .route("/admin/contracts/{id}", get(contract_page).post(update_contract))
        .route("/admin/memberships", get(memberships_page).post(grant))
        .route("/admin/memberships/revoke", post(revoke))
        .route("/admin/policy", get(policy_page).post(save_policy))
        .route("/admin/tokens", get(tokens_page).post(create_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
}

fn scope(ui: &UiUser, p: AdminPermission) -> Result<AdminScope, AppError> {
    Ok(ui.principal().admin_scope(p)?)
}

/// The first of several permissions the caller holds (pages shared by two admin roles).
fn any_scope(ui: &UiUser, perms: &[AdminPermission]) -> Result<AdminScope, AppError> {
    perms.iter().find_map(|p| ui.principal().admin_scope(*p).ok()).ok_or_else(AppError::forbidden)
}

#[derive(Serialize)]
struct UserRow {
    id: i64,
    login: String,
    display_name: String,
    admin_role: String,
    admin_role_label: String,
    disabled: bool,
    locked: bool,
    totp_enrolled: bool,
    last_login_at: Option<i64>,
}

#[derive(Serialize)]
struct Choice {
    value: &'static str,
    label: &'static str,
}

fn admin_role_choices(lang: Lang) -> Vec<Choice> {
    AdminRole::ALL.iter().map(|r| Choice { value: r.as_str(), label: lang.pick(r.label()) }).collect()
}

fn contract_role_choices(lang: Lang) -> Vec<Choice> {
    ContractRole::ALL.iter().map(|r| Choice { value: r.as_str(), label: lang.pick(r.label()) }).collect()
}

/// One-time secret to show after an action (initial password, token).
#[derive(Default)]
struct Shown {
    secret: Option<String>,
    secret_label: String,
    error: Option<String>,
}

async fn users_view(state: &AppState, ui: &UiUser, shown: Shown, status: StatusCode) -> Result<Response, AppError> {
    let s = any_scope(ui, &[AdminPermission::UserManage, AdminPermission::LockoutManage, AdminPermission::RoleGrant])?;
    let lang = ui.ctx.lang;
    let now = state.now_ms();
    let rows: Vec<UserRow> = users::list(&state.db, &s)
        .await?
        .into_iter()
        .map(|u| UserRow {
            id: u.id,
            locked: u.is_locked(now),
            admin_role: u.admin_role.map(|r| r.as_str().to_string()).unwrap_or_default(),
            admin_role_label: admin_role_label(lang, u.admin_role),
            login: u.login,
            display_name: u.display_name,
            disabled: u.disabled,
            totp_enrolled: u.totp_enrolled,
            last_login_at: u.last_login_at,
        })
        .collect();
    let p = page(state, ui, "/admin/users").await?;
    let principal = ui.principal();
    let html = render(
        state,
        "admin_users.html",
        lang,
        &p,
        crate::view! {
            users => rows,
            csrf => ui.session.csrf_token.clone(),
            can_manage_users => principal.has_admin_permission(AdminPermission::UserManage),
            can_manage_lockouts => principal.has_admin_permission(AdminPermission::LockoutManage),
            can_grant_roles => principal.has_admin_permission(AdminPermission::RoleGrant),
            admin_roles => admin_role_choices(lang),
            secret => shown.secret,
            secret_label => shown.secret_label,
            error => shown.error,
        },
    )?;
    Ok((status, html).into_response())
}

async fn users_page(State(state): State<AppState>, ui: UiUser) -> Result<Response, AppError> {
    users_view(&state, &ui, Shown::default(), StatusCode::OK).await
}

#[derive(Deserialize)]
struct NewUserForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    initial_password: String,
}

async fn create_user(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(form): UiForm<NewUserForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::UserManage)?;
    let pw = if form.initial_password.trim().is_empty() {
        yunwei_core::password::initial_password_for(&form.login)
    } else {
        form.initial_password.clone()
    };
    let new = users::NewUser { login: form.login, display_name: form.display_name, email: form.email };
    let lang = ui.ctx.lang;
    match users::create(&state.db, &s, new, &pw, state.now_ms()).await {
        Ok(_) => {
            let shown = Shown { secret: Some(pw), secret_label: t(lang, "users.created"), error: None };
            users_view(&state, &ui, shown, StatusCode::OK).await
        }
        Err(e) => {
            let shown = Shown { error: Some(super::form_error(lang, e)?), ..Default::default() };
            users_view(&state, &ui, shown, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

async fn reset_password(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::UserManage)?;
    let pw = yunwei_core::password::initial_password_for(&users::get(&state.db, id).await?.login);
    users::reset_password(&state.db, &s, id, &pw, state.now_ms()).await?;
    let shown = Shown { secret: Some(pw), secret_label: t(ui.ctx.lang, "users.reset_done"), error: None };
    users_view(&state, &ui, shown, StatusCode::OK).await
}

async fn user_action(
    state: &AppState,
    ui: &UiUser,
    result: Result<(), yunwei_storage::StoreError>,
) -> Result<Response, AppError> {
    match result {
        Ok(()) => Ok(Redirect::to("/admin/users").into_response()),
        Err(yunwei_storage::StoreError::NotFound) => Err(AppError::not_found()),
        Err(yunwei_storage::StoreError::Forbidden) => Err(AppError::forbidden()),
        Err(e) => {
            let shown = Shown { error: Some(super::form_error(ui.ctx.lang, e)?), ..Default::default() };
            users_view(state, ui, shown, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

async fn disable_user(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::UserManage)?;
    let r = users::set_disabled(&state.db, &s, id, true, state.now_ms()).await;
    user_action(&state, &ui, r).await
}

async fn enable_user(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::UserManage)?;
    let r = users::set_disabled(&state.db, &s, id, false, state.now_ms()).await;
    user_action(&state, &ui, r).await
}

async fn unlock_user(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::LockoutManage)?;
    let r = users::unlock(&state.db, &s, id, state.now_ms()).await;
    user_action(&state, &ui, r).await
}

async fn reset_totp(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::LockoutManage)?;
    let r = users::reset_totp(&state.db, &s, id, state.now_ms()).await;
    user_action(&state, &ui, r).await
}

#[derive(Deserialize)]
struct AdminRoleForm {
    #[serde(default)]
    admin_role: String,
}

async fn set_admin_role(
    State(state): State<AppState>,
    ui: UiUser,
    Path(id): Path<i64>,
    UiForm(form): UiForm<AdminRoleForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::RoleGrant)?;
    let role = match form.admin_role.as_str() {
        "" => None,
        other => Some(
            AdminRole::parse(other)
                .ok_or_else(|| AppError::bad_request(yunwei_core::Msg::new("角色无效", "Unknown role")))?,
        ),
    };
    let r = users::set_admin_role(&state.db, &s, id, role, state.now_ms()).await;
    user_action(&state, &ui, r).await
}

#[derive(Deserialize, Serialize, Default)]
struct ContractForm {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_name: String,
    #[serde(default)]
    vendor_name: String,
    #[serde(default)]
    starts_on: String,
    #[serde(default)]
    ends_on: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    version: i64,
}

impl ContractForm {
    fn input(&self) -> ContractInput {
        ContractInput {
            code: self.code.clone(),
            name: self.name.clone(),
            client_name: self.client_name.clone(),
            vendor_name: self.vendor_name.clone(),
            starts_on: self.starts_on.clone(),
            ends_on: self.ends_on.clone(),
        }
    }
}

async fn contracts_view(
    state: &AppState,
    ui: &UiUser,
    form: ContractForm,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let s = scope(ui, AdminPermission::ContractManage)?;
    let contracts = store::list_all(&state.db, &s).await?;
    let p = page(state, ui, "/admin/contracts").await?;
    let html = render(
        state,
        "admin_contracts.html",
        ui.ctx.lang,
        &p,
        crate::view! { contracts, form, error, form_action => "/admin/contracts", csrf => ui.session.csrf_token.clone() },
    )?;
    Ok((status, html).into_response())
}

async fn contracts_page(State(state): State<AppState>, ui: UiUser) -> Result<Response, AppError> {
    contracts_view(&state, &ui, ContractForm::default(), None, StatusCode::OK).await
}

async fn create_contract(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(form): UiForm<ContractForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::ContractManage)?;
    match store::create(&state.db, &s, &form.input(), state.now_ms()).await {
        Ok(_) => Ok(Redirect::to("/admin/contracts").into_response()),
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            contracts_view(&state, &ui, form, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

async fn contract_view(
    state: &AppState,
    ui: &UiUser,
    form: ContractForm,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let p = page(state, ui, "/admin/contracts").await?;
    let action = format!("/admin/contracts/{}", form.id.unwrap_or(0));
    let html = render(
        state,
        "admin_contract_form.html",
        ui.ctx.lang,
        &p,
        crate::view! { form, error, form_action => action, csrf => ui.session.csrf_token.clone() },
    )?;
    Ok((status, html).into_response())
}

async fn contract_page(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::ContractManage)?;
    let c = store::get_admin(&state.db, &s, id).await?;
    let form = ContractForm {
        id: Some(c.id),
        code: c.code,
        name: c.name,
        client_name: c.client_name,
        vendor_name: c.vendor_name,
        starts_on: c.starts_on,
        ends_on: c.ends_on,
        status: c.status,
        version: c.version,
    };
    contract_view(&state, &ui, form, None, StatusCode::OK).await
}

async fn update_contract(
    State(state): State<AppState>,
    ui: UiUser,
    Path(id): Path<i64>,
    UiForm(mut form): UiForm<ContractForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::ContractManage)?;
    form.id = Some(id);
    match store::update(&state.db, &s, id, &form.input(), &form.status, form.version, state.now_ms()).await {
        Ok(()) => Ok(Redirect::to("/admin/contracts").into_response()),
        Err(yunwei_storage::StoreError::NotFound) => Err(AppError::not_found()),
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            contract_view(&state, &ui, form, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

#[derive(Deserialize, Default)]
struct MembershipQuery {
    contract_id: Option<i64>,
}

#[derive(Serialize)]
struct MemberRow {
    user_id: i64,
    login: String,
    display_name: String,
    role_label: String,
}

#[derive(Serialize)]
struct UserOption {
    id: i64,
    login: String,
    display_name: String,
}

async fn memberships_view(
    state: &AppState,
    ui: &UiUser,
    contract_id: Option<i64>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let s = scope(ui, AdminPermission::RoleGrant)?;
    let lang = ui.ctx.lang;
    let contracts = store::list_all(&state.db, &s).await?;
    let contract_id = contract_id.or(contracts.first().map(|c| c.id));
    let members: Vec<MemberRow> = match contract_id {
        Some(cid) => store::members_admin(&state.db, &s, cid)
            .await?
            .into_iter()
            .map(|m| MemberRow {
                user_id: m.user_id,
                login: m.login,
                display_name: m.display_name,
                role_label: lang.pick(m.role.label()).to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    // Only accounts without an administrator role can be granted contract roles.
    let users: Vec<UserOption> = users::list(&state.db, &s)
        .await?
        .into_iter()
        .filter(|u| u.admin_role.is_none() && !u.disabled)
        .map(|u| UserOption { id: u.id, login: u.login, display_name: u.display_name })
        .collect();
    let p = page(state, ui, "/admin/memberships").await?;
    let html = render(
        state,
        "memberships.html",
        lang,
        &p,
        crate::view! { contracts, contract_id, members, users, roles => contract_role_choices(lang), error, csrf => ui.session.csrf_token.clone() },
    )?;
    Ok((status, html).into_response())
}

async fn memberships_page(
    State(state): State<AppState>,
    ui: UiUser,
    Query(q): Query<MembershipQuery>,
) -> Result<Response, AppError> {
    memberships_view(&state, &ui, q.contract_id, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct GrantForm {
    contract_id: i64,
    user_id: i64,
    #[serde(default)]
    role: String,
}

async fn grant(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(form): UiForm<GrantForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::RoleGrant)?;
    let role = ContractRole::parse(&form.role)
        .ok_or_else(|| AppError::bad_request(yunwei_core::Msg::new("角色无效", "Unknown role")))?;
    match store::grant(&state.db, &s, form.contract_id, form.user_id, role, state.now_ms()).await {
        Ok(()) => Ok(Redirect::to(&format!("/admin/memberships?contract_id={}", form.contract_id)).into_response()),
        Err(yunwei_storage::StoreError::NotFound) => Err(AppError::not_found()),
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            memberships_view(&state, &ui, Some(form.contract_id), Some(msg), StatusCode::CONFLICT).await
        }
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    contract_id: i64,
    user_id: i64,
}

async fn revoke(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(form): UiForm<RevokeForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::RoleGrant)?;
    store::revoke(&state.db, &s, form.contract_id, form.user_id, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/admin/memberships?contract_id={}", form.contract_id)).into_response())
}

async fn policy_view(
    state: &AppState,
    ui: &UiUser,
    policy: SecurityPolicy,
    error: Option<String>,
    flash: bool,
    status: StatusCode,
) -> Result<Response, AppError> {
    scope(ui, AdminPermission::PolicyManage)?;
    let mut p = page(state, ui, "/admin/policy").await?;
    if flash {
        p = p.flash("ok", t(ui.ctx.lang, "policy.saved"));
    }
    let html = render(
        state,
        "policy.html",
        ui.ctx.lang,
        &p,
        crate::view! { policy, error, csrf => ui.session.csrf_token.clone() },
    )?;
    Ok((status, html).into_response())
}

async fn policy_page(State(state): State<AppState>, ui: UiUser) -> Result<Response, AppError> {
    let policy = settings::security_policy(&state.db).await?;
    policy_view(&state, &ui, policy, None, false, StatusCode::OK).await
}

#[derive(Deserialize)]
struct PolicyForm {
    min_length: u32,
    expiry_days: u32,
    reuse_history: u32,
    lockout_threshold: u32,
    lockout_minutes: u32,
    idle_timeout_minutes: u32,
    absolute_lifetime_hours: u32,
    #[serde(default)]
    totp_required_for_all: Option<String>,
}

async fn save_policy(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(f): UiForm<PolicyForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::PolicyManage)?;
    let policy = SecurityPolicy {
        min_length: f.min_length,
        expiry_days: f.expiry_days,
        reuse_history: f.reuse_history,
        lockout_threshold: f.lockout_threshold,
        lockout_minutes: f.lockout_minutes,
        idle_timeout_minutes: f.idle_timeout_minutes,
        absolute_lifetime_hours: f.absolute_lifetime_hours,
        totp_required_for_all: f.totp_required_for_all.as_deref() == Some("true"),
    };
    match settings::set_security_policy(&state.db, &s, &policy, state.now_ms()).await {
        Ok(()) => policy_view(&state, &ui, policy, None, true, StatusCode::OK).await,
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            policy_view(&state, &ui, policy, Some(msg), false, StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

#[derive(Serialize)]
struct TokenRow {
    id: i64,
    name: String,
    contract_name: String,
    role_label: String,
    expires_at: i64,
    revoked_at: Option<i64>,
}

async fn tokens_view(
    state: &AppState,
    ui: &UiUser,
    secret: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let s = scope(ui, AdminPermission::TokenManage)?;
    let lang = ui.ctx.lang;
    let contracts = store::list_all(&state.db, &s).await?;
    let rows: Vec<TokenRow> = tokens::list(&state.db, &s)
        .await?
        .into_iter()
        .map(|tk| TokenRow {
            contract_name: contracts
                .iter()
                .find(|c| c.id == tk.contract_id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            role_label: ContractRole::parse(&tk.role).map(|r| lang.pick(r.label()).to_string()).unwrap_or(tk.role),
            id: tk.id,
            name: tk.name,
            expires_at: tk.expires_at,
            revoked_at: tk.revoked_at,
        })
        .collect();
    let p = page(state, ui, "/admin/tokens").await?;
    let html = render(
        state,
        "tokens.html",
        lang,
        &p,
        crate::view! { tokens => rows, contracts, roles => contract_role_choices(lang), secret, error, csrf => ui.session.csrf_token.clone() },
    )?;
    Ok((status, html).into_response())
}

async fn tokens_page(State(state): State<AppState>, ui: UiUser) -> Result<Response, AppError> {
    tokens_view(&state, &ui, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    name: String,
    contract_id: i64,
    #[serde(default)]
    role: String,
    days: i64,
}

async fn create_token(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(f): UiForm<TokenForm>,
) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::TokenManage)?;
    let role = ContractRole::parse(&f.role)
        .ok_or_else(|| AppError::bad_request(yunwei_core::Msg::new("角色无效", "Unknown role")))?;
    let now = state.now_ms();
    let expires = now.saturating_add(f.days.clamp(-1, 10_000).saturating_mul(86_400_000));
    match tokens::create(&state.db, &s, &f.name, f.contract_id, role, expires, now).await {
        Ok((_, secret)) => tokens_view(&state, &ui, Some(secret), None, StatusCode::OK).await,
        Err(yunwei_storage::StoreError::NotFound) => Err(AppError::not_found()),
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            tokens_view(&state, &ui, None, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

async fn revoke_token(State(state): State<AppState>, ui: UiUser, Path(id): Path<i64>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::TokenManage)?;
    tokens::revoke(&state.db, &s, id, state.now_ms()).await?;
    Ok(Redirect::to("/admin/tokens").into_response())
}
