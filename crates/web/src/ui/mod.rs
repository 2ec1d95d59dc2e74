//! Server-rendered pages. Each handler gathers view data through storage with a scope and renders
//! one template; forms post back with the session's CSRF token.

mod admin;
pub(crate) mod assets;
mod audit;
mod contracts;
mod inspections;
mod interfaces;
mod ledger;
mod login;
mod monitors;
pub(crate) mod tickets;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::response::Html;
use serde::Serialize;
use serde::de::DeserializeOwned;
use yunwei_core::Msg;
use yunwei_core::authz::{AdminPermission, AdminRole, ContractPermission};
use yunwei_storage::{contracts as store_contracts, notifications};

use crate::auth::UiUser;
use crate::error::AppError;
use crate::{AppState, i18n::Lang, i18n::t};

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(login::routes())
        .merge(contracts::routes())
        .merge(admin::routes())
        .merge(audit::routes())
        .merge(tickets::routes())
        .merge(ledger::routes())
        .merge(assets::routes())
        .merge(inspections::routes())
        .merge(monitors::routes())
        .merge(interfaces::routes())
}

#[derive(Serialize)]
struct NavItem {
    href: String,
    /// A catalog key, or a label already in the page's language (the layout's `t()` shows text
    /// that is not a key as it is): the inbox entry carries its unread count that way.
    key: String,
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
    page_in(state, ui, current, None).await
}

/// The layout for a page of one contract: the contract's entries (tickets, statistics) point at
/// `contract` rather than at the session's active contract.
pub(crate) async fn page_in(
    state: &AppState,
    ui: &UiUser,
    current: &str,
    contract: Option<i64>,
) -> Result<Page, AppError> {
    let lang = ui.ctx.lang;
    let user = &ui.session.user;
    let principal = ui.principal();
    let mut nav = Vec::new();
    let mut push = |href: String, key: String| {
        let active = href == current;
        nav.push(NavItem { href, key, active })
    };
    let mut contracts = Vec::new();
    let mut active_contract_id = None;
    match user.admin_role {
        Some(role) => {
            for (perm, href, key) in ADMIN_LINKS {
                if role.permits(*perm) {
                    push(href.to_string(), key.to_string());
                }
            }
        }
        None => {
            push("/".into(), "nav.home".into());
            contracts = store_contracts::list_mine(&state.db, &principal, None, 500)
                .await?
                .into_iter()
                .map(|m| ContractOption { id: m.contract.id, name: m.contract.name })
                .collect::<Vec<_>>();
            active_contract_id = contract
                .or(ui.session.active_contract_id)
                .filter(|c| contracts.iter().any(|o| o.id == *c))
                .or(contracts.first().map(|c| c.id));
            let role = active_contract_id
                .and_then(|cid| ui.session.memberships.iter().find(|(c, _)| *c == cid).map(|(c, r)| (*c, *r)));
            if let Some((cid, role)) = role {
                if role.permits(ContractPermission::TicketRead) {
                    push(format!("/c/{cid}/tickets"), "nav.tickets".into());
                }
                if role.permits(ContractPermission::TicketCreate) {
                    // The client's people report problems; the vendor's staff record them.
                    let key = if role.is_client_side() { "nav.report" } else { "nav.ticket_new" };
                    push(format!("/c/{cid}/tickets/new"), key.into());
                }
                if role.permits(ContractPermission::TicketReport) {
                    push(format!("/c/{cid}/tickets/stats"), "nav.ticket_stats".into());
                }
                if role.permits(ContractPermission::AssetRead) {
                    push(format!("/c/{cid}/assets"), "nav.assets".into());
                    push(format!("/c/{cid}/assets/rounds"), "nav.rounds".into());
                }
                if role.permits(ContractPermission::AssetRead) {
                    push(format!("/c/{cid}/systems"), "nav.systems".into());
                    push(format!("/c/{cid}/suppliers"), "nav.suppliers".into());
                    push(format!("/c/{cid}/topology"), "nav.topology".into());
                }
                if role.permits(ContractPermission::VisitRequest) {
                    push(format!("/c/{cid}/visits"), "nav.visits".into());
                }
                if role.permits(ContractPermission::InspectionRead) {
                    push(format!("/c/{cid}/inspections"), lang.pick(Msg::new("巡检", "Inspections")).into());
                    push(format!("/c/{cid}/monitors"), lang.pick(Msg::new("持续监控", "Monitors")).into());
                    push(format!("/c/{cid}/interfaces"), lang.pick(Msg::new("数据接口", "Interfaces")).into());
                }
            }
            if !contracts.is_empty() {
                let unread = notifications::unread_count(&state.db, &principal).await?;
                let key = if unread > 0 { format!("{} ({unread})", t(lang, "nav.inbox")) } else { "nav.inbox".into() };
                push("/inbox".into(), key);
            }
        }
    }
    push("/api/docs".into(), "nav.api_docs".into());
    let role_label = user.admin_role.map(|r| lang.pick(r.label()).to_string()).unwrap_or_default();
    Ok(Page {
        user: Some(PageUser { login: user.login.clone(), display_name: user.display_name.clone(), role_label }),
        csrf: ui.session.csrf_token.clone(),
        nav,
        active_contract_id,
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
    render_in(&state.templates, name, lang, page, ctx)
}

/// [`render`] with a page module's own environment (see [`module_environment`]).
pub(crate) fn render_in(
    env: &minijinja::Environment<'static>,
    name: &str,
    lang: Lang,
    page: &Page,
    ctx: minijinja::Value,
) -> Result<Html<String>, AppError> {
    let full = minijinja::context! { lang => lang.as_str(), page => minijinja::Value::from(minijinja::value::Serde(page)), ..ctx };
    env.get_template(name).and_then(|t| t.render(full)).map(Html).map_err(|e| {
        tracing::error!(template = name, error = %e, "template failed to render");
        AppError::internal()
    })
}

/// A page module's own texts: (key, Chinese, English).
pub(crate) type ModuleTexts = &'static [(&'static str, &'static str, &'static str)];

/// A key of the module's texts in `lang`, else the shared translation of the key.
pub(crate) fn module_text(texts: ModuleTexts, lang: Lang, key: &str) -> String {
    match texts.iter().find(|(k, _, _)| *k == key) {
        Some((_, zh, en)) => if lang == Lang::Zh { zh } else { en }.to_string(),
        None => t(lang, key),
    }
}

/// The crate's templates and filters plus a page module's templates and a `tr()` function over
/// its texts ([`module_text`]).
pub(crate) fn module_environment(
    templates: &[(&'static str, &'static str)],
    texts: ModuleTexts,
) -> minijinja::Environment<'static> {
    let mut env = crate::templates::environment();
    for (name, source) in templates {
        env.add_template(name, source).unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
    }
    env.add_function("tr", move |state: &minijinja::State, key: String| -> String {
        module_text(texts, crate::templates::lang_of(state), &key)
    });
    env
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
