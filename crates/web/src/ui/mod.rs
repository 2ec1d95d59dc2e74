//! Server-rendered pages. Each handler gathers view data through storage with a scope and renders
//! one template; forms post back with the session's CSRF token.

mod admin;
mod audit;
mod contracts;
mod login;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::response::Html;
use serde::Serialize;
use serde::de::DeserializeOwned;
use yunwei_core::Msg;
use yunwei_core::authz::{AdminPermission, AdminRole};
use yunwei_storage::contracts as store_contracts;

use crate::auth::UiUser;
use crate::error::AppError;
use crate::{AppState, i18n::Lang};

pub fn routes() -> Router<AppState> {
    Router::new().merge(login::routes()).merge(contracts::routes()).merge(admin::routes()).merge(audit::routes())
}

#[derive(Serialize)]
struct NavItem {
    href: &'static str,
    key: &'static str,
    active: bool,
}

#[derive(Serialize)]
struct PageUser {
    login: String,
    display_name: String,
    role_label: String,
}

#[derive(Serialize)]
struct ContractOption {
    id: i64,
    name: String,
}

/// What the layout needs on every page.
#[derive(Serialize, Default)]
pub(crate) struct Page {
    user: Option<PageUser>,
    csrf: String,
    nav: Vec<NavItem>,
    contracts: Vec<ContractOption>,
    active_contract_id: Option<i64>,
    flash: Option<String>,
    flash_kind: &'static str,
}

impl Page {
    pub(crate) fn flash(mut self, kind: &'static str, text: impl Into<String>) -> Self {
        self.flash = Some(text.into());
        self.flash_kind = kind;
        self
    }
}

/// Builds the layout for a logged-in user. `current` is the href of the active navigation item.
pub(crate) async fn page(state: &AppState, ui: &UiUser, current: &str) -> Result<Page, AppError> {
    let lang = ui.ctx.lang;
    let user = &ui.session.user;
    let principal = ui.principal();
    let mut nav = Vec::new();
    let mut push = |href: &'static str, key: &'static str| nav.push(NavItem { href, key, active: href == current });
    let mut contracts = Vec::new();
    match user.admin_role {
        Some(role) => {
            for (perm, href, key) in ADMIN_LINKS {
                if role.permits(*perm) {
                    push(href, key);
                }
            }
        }
        None => {
            push("/", "nav.home");
            contracts = store_contracts::list_mine(&state.db, &principal, None, 500)
                .await?
                .into_iter()
                .map(|m| ContractOption { id: m.contract.id, name: m.contract.name })
                .collect();
        }
    }
    push("/api/docs", "nav.api_docs");
    let role_label = user.admin_role.map(|r| lang.pick(r.label()).to_string()).unwrap_or_default();
    Ok(Page {
        user: Some(PageUser { login: user.login.clone(), display_name: user.display_name.clone(), role_label }),
        csrf: ui.session.csrf_token.clone(),
        nav,
        active_contract_id: ui.session.active_contract_id.or(contracts.first().map(|c| c.id)),
        contracts,
        flash: None,
        flash_kind: "",
    })
}

/// Administrator navigation: which permission shows which page.
pub(crate) const ADMIN_LINKS: &[(AdminPermission, &str, &str)] = &[
    (AdminPermission::UserManage, "/admin/users", "nav.users"),
    (AdminPermission::ContractManage, "/admin/contracts", "nav.admin_contracts"),
    (AdminPermission::LockoutManage, "/admin/users", "nav.users"),
    (AdminPermission::RoleGrant, "/admin/memberships", "nav.memberships"),
    (AdminPermission::PolicyManage, "/admin/policy", "nav.policy"),
    (AdminPermission::TokenManage, "/admin/tokens", "nav.tokens"),
    (AdminPermission::AuditRead, "/audit", "nav.audit"),
];

/// Renders a template with the layout's `page` and `lang` added.
pub(crate) fn render(
    state: &AppState,
    name: &str,
    lang: Lang,
    page: &Page,
    ctx: minijinja::Value,
) -> Result<Html<String>, AppError> {
    let full = minijinja::context! { lang => lang.as_str(), page => minijinja::Value::from(minijinja::value::Serde(page)), ..ctx };
    state.templates.get_template(name).and_then(|t| t.render(full)).map(Html).map_err(|e| {
        tracing::error!(template = name, error = %e, "template failed to render");
        AppError::internal()
    })
}

/// A urlencoded form whose parse errors become a clear 400 instead of axum's plain-text answer.
pub(crate) struct UiForm<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequest<S> for UiForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(UiForm(v)),
            Err(_) => Err(AppError::bad_request(Msg::new("表单内容无效", "The form content is invalid"))),
        }
    }
}

/// Label of an admin role or of "none", in the page's language.
pub(crate) fn admin_role_label(lang: Lang, role: Option<AdminRole>) -> String {
    role.map(|r| lang.pick(r.label()).to_string()).unwrap_or_default()
}

/// Message of a storage error for showing next to a form, or the error itself when it is not the
/// user's to fix.
pub(crate) fn form_error(lang: Lang, e: yunwei_storage::StoreError) -> Result<String, AppError> {
    match AppError::from(e) {
        AppError { status, message, field, .. } if status.is_client_error() => {
            let field = field.map(|f| format!("{f}: ")).unwrap_or_default();
            Ok(format!("{field}{}", lang.pick(message)))
        }
        other => Err(other),
    }
}
