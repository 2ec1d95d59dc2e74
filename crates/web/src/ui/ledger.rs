//! The ledger pages besides assets: business systems with their components, relations and history;
//! the topology drawn by the server with the port-to-port and cabling register; suppliers with
//! their evaluations and supported assets; the machine-room access register, made for a phone at
//! the machine-room door (request, approve or reject, enter, exit).
//!
//! Every page calls the same storage functions as `api::ledger`, so pages and API share their
//! permissions. A storage refusal is shown above the same page; a concurrent change (409) asks to
//! reload.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_storage::assets::{self, AssetFilter, HistoryEntry};
use yunwei_storage::relations::{self, Relation, RelationInput};
use yunwei_storage::suppliers::{self, EvaluationInput, SupplierInput};
use yunwei_storage::systems::{self, Component, SystemInput};
use yunwei_storage::visits::{self, Visit, VisitAction, VisitFilter, VisitInput};
use yunwei_storage::{ContractScope, StoreError, sites};

use super::{UiForm, form_error, page_in, render};
use crate::AppState;
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::{Lang, t};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{cid}/systems", get(systems_page).post(create_system))
        .route("/c/{cid}/systems/import", post(import_systems))
        .route("/c/{cid}/systems/{id}", get(system_page).post(update_system))
        .route("/c/{cid}/systems/{id}/delete", post(delete_system))
        .route("/c/{cid}/relations", post(create_relation))
        .route("/c/{cid}/relations/{rid}/delete", post(delete_relation))
        .route("/c/{cid}/topology", get(topology_page))
        .route("/c/{cid}/suppliers", get(suppliers_page).post(create_supplier))
        .route("/c/{cid}/suppliers/{id}", get(supplier_page).post(update_supplier))
        .route("/c/{cid}/suppliers/{id}/delete", post(delete_supplier))
        .route("/c/{cid}/suppliers/{id}/evaluations", post(evaluate_supplier))
        .route("/c/{cid}/visits", get(visits_page).post(request_visit))
        .route("/c/{cid}/visits/{id}/act", post(act_visit))
}

/// History actions shown with a label `ledger.action.<action>`.
pub(crate) const HISTORY_ACTIONS: [&str; 12] = [
    "create", "update", "delete", "import", "relate", "unrelate", "evaluate", "request", "approve", "reject", "enter",
    "exit",
];
/// Visit list views (`visit.view.<view>`).
pub(crate) const VISIT_VIEWS: [&str; 7] =
    ["all", "requested", "approved", "in_room", "never_closed", "closed", "rejected"];
/// Component kind aliases a person may type in the components box.
const COMPONENT_ALIASES: [(&str, &str); 8] = [
    ("os", "os"),
    ("操作系统", "os"),
    ("middleware", "middleware"),
    ("中间件", "middleware"),
    ("database", "database"),
    ("数据库", "database"),
    ("service", "service"),
    ("服务", "service"),
];

async fn scope_of(state: &AppState, ui: &UiUser, cid: i64) -> Result<ContractScope, AppError> {
    Ok(ui.principal().contract_scope(&state.db, cid).await?)
}

/// Remembers the contract as the session's active one, so that the navigation follows it.
async fn remember_contract(state: &AppState, ui: &UiUser, cid: i64) -> Result<(), AppError> {
    if ui.session.active_contract_id != Some(cid) {
        yunwei_storage::sessions::set_active_contract(&state.db, &ui.session.token_hash, Some(cid)).await?;
    }
    Ok(())
}

fn status_of(e: &StoreError) -> StatusCode {
    match e {
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Forbidden => StatusCode::FORBIDDEN,
        StoreError::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// A refusal to show above the page, and the status to answer with.
fn refusal(lang: Lang, e: StoreError) -> Result<(String, StatusCode), AppError> {
    let status = status_of(&e);
    if matches!(e, StoreError::NotFound | StoreError::Forbidden) {
        return Err(e.into());
    }
    Ok((form_error(lang, e)?, status))
}

fn with_status(status: StatusCode, html: axum::response::Html<String>) -> Response {
    (status, html).into_response()
}

// ---------------------------------------------------------------------------------------------
// Shared views: history and relations

#[derive(Serialize)]
struct Change {
    field: String,
    before: String,
    after: String,
}

#[derive(Serialize)]
struct HistoryRow {
    at: i64,
    actor: String,
    action: String,
    changes: Vec<Change>,
}

fn show_value(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 300 { format!("{}…", s.chars().take(300).collect::<String>()) } else { s }
}

fn history_rows(lang: Lang, entries: Vec<HistoryEntry>) -> Vec<HistoryRow> {
    entries
        .into_iter()
        .rev()
        .map(|e| {
            let mut fields: Vec<String> = Vec::new();
            for side in [&e.before, &e.after] {
                if let Some(o) = side.as_object() {
                    for k in o.keys() {
                        if !fields.contains(k) {
                            fields.push(k.clone());
                        }
                    }
                }
            }
            let changes = fields
                .into_iter()
                .map(|f| Change {
                    before: show_value(e.before.get(&f).unwrap_or(&serde_json::Value::Null)),
                    after: show_value(e.after.get(&f).unwrap_or(&serde_json::Value::Null)),
                    field: f,
                })
                .collect();
            let action = if HISTORY_ACTIONS.contains(&e.action.as_str()) {
                t(lang, &format!("ledger.action.{}", e.action))
            } else {
                e.action.clone()
            };
            HistoryRow { at: e.at, actor: e.actor, action, changes }
        })
        .collect()
}

#[derive(Serialize)]
struct RelationRow {
    id: i64,
    from_ref: String,
    from_label: String,
    from_href: String,
    relation: String,
    to_ref: String,
    to_label: String,
    to_href: String,
    from_port: String,
    to_port: String,
    cable_label: String,
}

fn href_of(cid: i64, record: &str) -> String {
    match relations::RecordRef::parse(record) {
        Some(relations::RecordRef::System(id)) => format!("/c/{cid}/systems/{id}"),
        Some(relations::RecordRef::Asset(id)) => format!("/c/{cid}/assets/{id}"),
        None => String::new(),
    }
}

fn relation_rows(cid: i64, rels: Vec<Relation>) -> Vec<RelationRow> {
    rels.into_iter()
        .map(|r| RelationRow {
            id: r.id,
            from_href: href_of(cid, &r.from_ref),
            to_href: href_of(cid, &r.to_ref),
            from_label: if r.from_label.is_empty() { r.from_ref.clone() } else { r.from_label },
            to_label: if r.to_label.is_empty() { r.to_ref.clone() } else { r.to_label },
            from_ref: r.from_ref,
            to_ref: r.to_ref,
            relation: r.relation,
            from_port: r.from_port,
            to_port: r.to_port,
            cable_label: r.cable_label,
        })
        .collect()
}

#[derive(Serialize)]
struct RefOption {
    value: String,
    label: String,
}

/// Records a relation form can name: the systems and the first assets, for the form's datalist.
async fn ref_options(state: &AppState, scope: &ContractScope) -> Result<Vec<RefOption>, AppError> {
    let mut out: Vec<RefOption> = systems::list(&state.db, scope, None, 500)
        .await?
        .into_iter()
        .map(|s| RefOption { value: format!("system:{}", s.id), label: s.name })
        .collect();
    let page = assets::list(&state.db, scope, &AssetFilter { limit: Some(500), ..Default::default() }).await?;
    out.extend(page.items.into_iter().map(|a| RefOption {
        value: format!("asset:{}", a.id),
        label: if a.asset_no.is_empty() { a.name } else { format!("{} ({})", a.name, a.asset_no) },
    }));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Business systems

#[derive(Serialize)]
struct SystemRow {
    id: i64,
    name: String,
    group: String,
    owner: String,
    components: usize,
    function_points: i64,
}

#[derive(Deserialize, Default)]
struct SystemsQuery {
    #[serde(default)]
    imported: Option<usize>,
}

async fn systems_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<SystemsQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    let notice = q.imported.map(|n| t(ui.ctx.lang, "system.imported").replace("{n}", &n.to_string()));
    systems_view(&state, &ui, &scope, SystemForm::default(), notice, None, StatusCode::OK).await
}

async fn systems_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    form: SystemForm,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let lang = ui.ctx.lang;
    let items: Vec<SystemRow> = systems::list(&state.db, scope, None, 500)
        .await?
        .into_iter()
        .map(|s| SystemRow {
            id: s.id,
            components: s.components.len(),
            name: s.name,
            group: s.group,
            owner: s.owner,
            function_points: s.function_points,
        })
        .collect();
    let total_points: i64 = items.iter().map(|s| s.function_points).sum();
    let mut p = page_in(state, ui, &format!("/c/{cid}/systems"), Some(cid)).await?;
    if let Some(n) = notice {
        p = p.flash("ok", n);
    }
    let html = render(
        state,
        "systems.html",
        lang,
        &p,
        crate::view! {
            cid,
            items,
            total_points,
            form,
            error,
            component_kinds => systems::COMPONENT_KINDS,
            can_write => scope.permits(ContractPermission::AssetWrite),
        },
    )?;
    Ok(with_status(status, html))
}

/// The system form as typed: components one per line, `kind | name | version | port`.
#[derive(Deserialize, Serialize, Default, Clone)]
struct SystemForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    components: String,
    #[serde(default)]
    function_points: String,
}

fn components_text(c: &[Component]) -> String {
    c.iter()
        .map(|c| {
            let mut parts = vec![c.kind.as_str(), c.name.as_str(), c.version.as_str(), c.port.as_str()];
            while parts.len() > 2 && parts.last().is_some_and(|p| p.is_empty()) {
                parts.pop();
            }
            parts.join(" | ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse_components(text: &str) -> Result<Vec<Component>, StoreError> {
    let bad = || {
        StoreError::invalid(
            "components",
            Msg::new("每行一个组件：类型 | 名称 | 版本 | 端口", "One component per line: kind | name | version | port"),
        )
    };
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split(['|', '｜']).map(str::trim).collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(bad());
        }
        let kind = COMPONENT_ALIASES
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(parts[0]))
            .map(|(_, k)| k.to_string())
            .unwrap_or_else(|| parts[0].to_string());
        out.push(Component {
            kind,
            name: parts[1].to_string(),
            version: parts.get(2).map(|s| s.to_string()).unwrap_or_default(),
            port: parts.get(3).map(|s| s.to_string()).unwrap_or_default(),
        });
    }
    Ok(out)
}

fn system_input(f: &SystemForm) -> Result<SystemInput, StoreError> {
    let function_points = match f.function_points.trim() {
        "" => 0,
        s => s.parse().map_err(|_| {
            StoreError::invalid("function_points", Msg::new("功能点数应为整数", "Function points are a whole number"))
        })?,
    };
    Ok(SystemInput {
        name: f.name.clone(),
        group: f.group.clone(),
        description: f.description.clone(),
        owner: f.owner.clone(),
        components: parse_components(&f.components)?,
        function_points,
    })
}

async fn create_system(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<SystemForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = match system_input(&form) {
        Ok(input) => systems::create(&state.db, &scope, &input, state.now_ms()).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(s) => Ok(Redirect::to(&format!("/c/{cid}/systems/{}", s.id)).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            systems_view(&state, &ui, &scope, form, None, Some(msg), status).await
        }
    }
}

async fn import_systems(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match systems::import_from_contract(&state.db, &scope, state.now_ms()).await {
        Ok(summary) => {
            Ok(Redirect::to(&format!("/c/{cid}/systems?imported={}", summary.created.len())).into_response())
        }
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            systems_view(&state, &ui, &scope, SystemForm::default(), None, Some(msg), status).await
        }
    }
}

async fn system_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    system_view(&state, &ui, &scope, id, None, StatusCode::OK).await
}

async fn system_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    id: i64,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let lang = ui.ctx.lang;
    let system = systems::get(&state.db, scope, id).await?;
    let record = format!("system:{id}");
    let rels = relation_rows(cid, relations::list(&state.db, scope, Some(&record)).await?);
    let history = history_rows(lang, assets::history(&state.db, scope, &record).await?);
    let can_write = scope.permits(ContractPermission::AssetWrite);
    let refs = if can_write { ref_options(state, scope).await? } else { Vec::new() };
    let form = SystemForm {
        version: system.version,
        name: system.name.clone(),
        group: system.group.clone(),
        description: system.description.clone(),
        owner: system.owner.clone(),
        components: components_text(&system.components),
        function_points: system.function_points.to_string(),
    };
    let p = page_in(state, ui, &format!("/c/{cid}/systems"), Some(cid)).await?;
    let html = render(
        state,
        "system.html",
        lang,
        &p,
        crate::view! {
            cid,
            system,
            record,
            form,
            relations => rels,
            history,
            refs,
            error,
            can_write,
            relation_kinds => relations::RELATIONS,
        },
    )?;
    Ok(with_status(status, html))
}

async fn update_system(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(form): UiForm<SystemForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = match system_input(&form) {
        Ok(input) => systems::update(&state.db, &scope, id, form.version, &input, state.now_ms()).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/systems/{id}")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            system_view(&state, &ui, &scope, id, Some(msg), status).await
        }
    }
}

async fn delete_system(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match systems::delete(&state.db, &scope, id, state.now_ms()).await {
        Ok(()) => Ok(Redirect::to(&format!("/c/{cid}/systems")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            system_view(&state, &ui, &scope, id, Some(msg), status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Relations and the topology

/// A relation form: `back` names the page it came from (`topology` or `system:ID`).
#[derive(Deserialize, Default)]
struct RelationForm {
    #[serde(default)]
    back: String,
    #[serde(default)]
    from_ref: String,
    #[serde(default)]
    relation: String,
    #[serde(default)]
    to_ref: String,
    #[serde(default)]
    from_port: String,
    #[serde(default)]
    to_port: String,
    #[serde(default)]
    cable_label: String,
}

#[derive(Deserialize, Default)]
struct BackForm {
    #[serde(default)]
    back: String,
}

/// Back to the page a relation form was on, or that page again with the refusal above it.
async fn relation_done(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    back: &str,
    result: Result<(), StoreError>,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let system = match relations::RecordRef::parse(back) {
        Some(relations::RecordRef::System(id)) => Some(id),
        _ => None,
    };
    match result {
        Ok(()) => Ok(Redirect::to(&match system {
            Some(id) => format!("/c/{cid}/systems/{id}"),
            None => format!("/c/{cid}/topology"),
        })
        .into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            match system {
                Some(id) => system_view(state, ui, scope, id, Some(msg), status).await,
                None => topology_view(state, ui, scope, Some(msg), status).await,
            }
        }
    }
}

async fn create_relation(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(f): UiForm<RelationForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let input = RelationInput {
        from_ref: f.from_ref,
        relation: f.relation,
        to_ref: f.to_ref,
        from_port: f.from_port,
        to_port: f.to_port,
        cable_label: f.cable_label,
    };
    let r = relations::create(&state.db, &scope, &input, state.now_ms()).await.map(|_| ());
    relation_done(&state, &ui, &scope, &f.back, r).await
}

async fn delete_relation(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
    UiForm(f): UiForm<BackForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = relations::delete(&state.db, &scope, rid, state.now_ms()).await;
    relation_done(&state, &ui, &scope, &f.back, r).await
}

async fn topology_page(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    topology_view(&state, &ui, &scope, None, StatusCode::OK).await
}

async fn topology_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let lang = ui.ctx.lang;
    let graph = relations::graph(&state.db, scope).await?;
    // Server-drawn, every text XML-escaped, no script or style: safe to place as markup.
    let svg = crate::topology::render(&graph, lang);
    let truncated = graph.truncated;
    let rels = relation_rows(cid, relations::list(&state.db, scope, None).await?);
    let can_write = scope.permits(ContractPermission::AssetWrite);
    let refs = if can_write { ref_options(state, scope).await? } else { Vec::new() };
    let p = page_in(state, ui, &format!("/c/{cid}/topology"), Some(cid)).await?;
    let html = render(
        state,
        "topology.html",
        lang,
        &p,
        crate::view! {
            cid,
            svg,
            truncated,
            relations => rels,
            refs,
            error,
            can_write,
            relation_kinds => relations::RELATIONS,
        },
    )?;
    Ok(with_status(status, html))
}

// ---------------------------------------------------------------------------------------------
// Suppliers

#[derive(Serialize)]
struct SupplierRow {
    id: i64,
    name: String,
    contacts: String,
    scope: String,
    sla_promise: String,
}

#[derive(Deserialize, Serialize, Default, Clone)]
struct SupplierForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    contacts: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    sla_promise: String,
    #[serde(default)]
    certifications: String,
    #[serde(default)]
    trainings: String,
    #[serde(default)]
    notes: String,
}

impl SupplierForm {
    fn input(&self) -> SupplierInput {
        SupplierInput {
            name: self.name.clone(),
            contacts: self.contacts.clone(),
            scope: self.scope.clone(),
            sla_promise: self.sla_promise.clone(),
            certifications: self.certifications.clone(),
            trainings: self.trainings.clone(),
            notes: self.notes.clone(),
        }
    }
}

async fn suppliers_page(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    suppliers_view(&state, &ui, &scope, SupplierForm::default(), None, StatusCode::OK).await
}

async fn suppliers_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    form: SupplierForm,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let items: Vec<SupplierRow> = suppliers::list(&state.db, scope, None, 500)
        .await?
        .into_iter()
        .map(|s| SupplierRow {
            id: s.id,
            name: s.name,
            contacts: s.contacts,
            scope: s.scope,
            sla_promise: s.sla_promise,
        })
        .collect();
    let p = page_in(state, ui, &format!("/c/{cid}/suppliers"), Some(cid)).await?;
    let html = render(
        state,
        "suppliers.html",
        ui.ctx.lang,
        &p,
        crate::view! { cid, items, form, error, can_write => scope.permits(ContractPermission::AssetWrite) },
    )?;
    Ok(with_status(status, html))
}

async fn create_supplier(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<SupplierForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match suppliers::create(&state.db, &scope, &form.input(), state.now_ms()).await {
        Ok(s) => Ok(Redirect::to(&format!("/c/{cid}/suppliers/{}", s.id)).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            suppliers_view(&state, &ui, &scope, form, Some(msg), status).await
        }
    }
}

#[derive(Serialize)]
struct SupportedAsset {
    id: i64,
    name: String,
    kind: String,
    model: String,
    asset_no: String,
    status: String,
}

async fn supplier_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    supplier_view(&state, &ui, &scope, id, None, StatusCode::OK).await
}

async fn supplier_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    id: i64,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let lang = ui.ctx.lang;
    let supplier = suppliers::get(&state.db, scope, id).await?;
    let evaluations = suppliers::evaluations(&state.db, scope, id).await?;
    let average = if evaluations.is_empty() {
        None
    } else {
        Some(format!("{:.1}", evaluations.iter().map(|e| e.score as f64).sum::<f64>() / evaluations.len() as f64))
    };
    let page =
        assets::list(&state.db, scope, &AssetFilter { supplier_id: Some(id), limit: Some(500), ..Default::default() })
            .await?;
    let more_assets = page.next_after.is_some();
    let supported: Vec<SupportedAsset> = page
        .items
        .into_iter()
        .map(|a| SupportedAsset {
            kind: yunwei_core::ledger::KINDS
                .iter()
                .find(|(k, _, _)| *k == a.kind)
                .map(|(_, zh, en)| if lang == Lang::En { *en } else { *zh }.to_string())
                .unwrap_or(a.kind),
            status: yunwei_core::ledger::STATUSES
                .iter()
                .find(|(k, _, _)| *k == a.status)
                .map(|(_, zh, en)| if lang == Lang::En { *en } else { *zh }.to_string())
                .unwrap_or(a.status),
            id: a.id,
            name: a.name,
            model: a.model,
            asset_no: a.asset_no,
        })
        .collect();
    let history = history_rows(lang, assets::history(&state.db, scope, &format!("supplier:{id}")).await?);
    let form = SupplierForm {
        version: supplier.version,
        name: supplier.name.clone(),
        contacts: supplier.contacts.clone(),
        scope: supplier.scope.clone(),
        sla_promise: supplier.sla_promise.clone(),
        certifications: supplier.certifications.clone(),
        trainings: supplier.trainings.clone(),
        notes: supplier.notes.clone(),
    };
    let p = page_in(state, ui, &format!("/c/{cid}/suppliers"), Some(cid)).await?;
    let html = render(
        state,
        "supplier.html",
        lang,
        &p,
        crate::view! {
            cid,
            supplier,
            form,
            evaluations,
            average,
            assets => supported,
            more_assets,
            history,
            error,
            can_write => scope.permits(ContractPermission::AssetWrite),
        },
    )?;
    Ok(with_status(status, html))
}

async fn update_supplier(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(form): UiForm<SupplierForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match suppliers::update(&state.db, &scope, id, form.version, &form.input(), state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/suppliers/{id}")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            supplier_view(&state, &ui, &scope, id, Some(msg), status).await
        }
    }
}

async fn delete_supplier(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match suppliers::delete(&state.db, &scope, id, state.now_ms()).await {
        Ok(()) => Ok(Redirect::to(&format!("/c/{cid}/suppliers")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            supplier_view(&state, &ui, &scope, id, Some(msg), status).await
        }
    }
}

#[derive(Deserialize)]
struct EvaluationForm {
    #[serde(default)]
    period: String,
    #[serde(default)]
    score: String,
    #[serde(default)]
    comments: String,
    #[serde(default)]
    evaluated_by: String,
}

async fn evaluate_supplier(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<EvaluationForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = match f.score.trim().parse::<i64>() {
        Ok(score) => {
            let input = EvaluationInput { period: f.period, score, comments: f.comments, evaluated_by: f.evaluated_by };
            suppliers::evaluate(&state.db, &scope, id, &input, state.now_ms()).await.map(|_| ())
        }
        Err(_) => Err(StoreError::invalid("score", Msg::new("评分应为 0 到 100", "The score is 0 to 100"))),
    };
    match r {
        Ok(()) => Ok(Redirect::to(&format!("/c/{cid}/suppliers/{id}#evaluations")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            supplier_view(&state, &ui, &scope, id, Some(msg), status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The machine-room access register

#[derive(Serialize)]
struct VisitCard {
    #[serde(flatten)]
    v: Visit,
    state_label: String,
    can_decide: bool,
    own: bool,
    can_enter: bool,
    can_exit: bool,
}

#[derive(Serialize)]
struct Tab {
    view: &'static str,
    active: bool,
}

#[derive(Deserialize, Default)]
struct VisitsQuery {
    #[serde(default)]
    view: String,
}

#[derive(Deserialize, Serialize, Default, Clone)]
struct VisitForm {
    #[serde(default)]
    site_id: String,
    #[serde(default)]
    visitor: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    planned_on: String,
}

async fn visits_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<VisitsQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    visits_view(&state, &ui, &scope, &q.view, VisitForm::default(), None, StatusCode::OK).await
}

async fn visits_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    view: &str,
    form: VisitForm,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let cid = scope.contract_id();
    let lang = ui.ctx.lang;
    let now = state.now_ms();
    let view = if VISIT_VIEWS.contains(&view) { view } else { "all" };
    let filter = match view {
        "all" => VisitFilter::default(),
        "never_closed" => VisitFilter { never_closed: true, ..Default::default() },
        s => VisitFilter { state: Some(s.to_string()), ..Default::default() },
    };
    let filter = VisitFilter { limit: Some(200), ..filter };
    let me = scope.actor().name.clone();
    let may_approve = scope.permits(ContractPermission::VisitApprove);
    let may_request = scope.permits(ContractPermission::VisitRequest);
    let cards: Vec<VisitCard> = visits::list(&state.db, scope, &filter, now)
        .await?
        .into_iter()
        .map(|v| VisitCard {
            state_label: t(lang, &format!("visit.state.{}", v.state)),
            own: v.requested_by == me,
            can_decide: may_approve && v.state == "requested" && v.requested_by != me,
            can_enter: may_request && v.state == "approved",
            can_exit: may_request && v.state == "in_room",
            v,
        })
        .collect();
    let never_closed = visits::list(
        &state.db,
        scope,
        &VisitFilter { never_closed: true, limit: Some(500), ..Default::default() },
        now,
    )
    .await?
    .len();
    let rooms = sites::list(&state.db, scope, None, 500).await?;
    let tabs: Vec<Tab> = VISIT_VIEWS.iter().map(|v| Tab { view: v, active: *v == view }).collect();
    let today = crate::templates::format_ms(Some(now), "[year]-[month]-[day]");
    let limit_hours = visits::OPEN_VISIT_LIMIT_MS / 3_600_000;
    let p = page_in(state, ui, &format!("/c/{cid}/visits"), Some(cid)).await?;
    let html = render(
        state,
        "visits.html",
        lang,
        &p,
        crate::view! {
            cid,
            view,
            tabs,
            visits => cards,
            never_closed,
            limit_hours,
            rooms,
            form,
            today,
            error,
            can_request => may_request,
        },
    )?;
    Ok(with_status(status, html))
}

async fn request_visit(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<VisitForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let input = VisitInput {
        site_id: form.site_id.trim().parse().unwrap_or(0),
        visitor: form.visitor.clone(),
        organisation: form.organisation.clone(),
        purpose: form.purpose.clone(),
        planned_on: form.planned_on.clone(),
    };
    match visits::request(&state.db, &scope, &input, state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/visits")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            visits_view(&state, &ui, &scope, "all", form, Some(msg), status).await
        }
    }
}

#[derive(Deserialize)]
struct VisitActForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    action: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    escort: String,
    #[serde(default)]
    work_done: String,
    /// Local time of the entry or exit (`YYYY-MM-DDTHH:MM`); now when empty.
    #[serde(default)]
    at: String,
    #[serde(default)]
    view: String,
}

async fn act_visit(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<VisitActForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let at_ms = match f.at.trim() {
        "" => Ok(None),
        s => crate::ui::tickets::parse_local_datetime(s).map(Some).ok_or_else(|| {
            StoreError::invalid(
                "at_ms",
                Msg::new("时间格式应为 YYYY-MM-DD HH:MM", "Write the time as YYYY-MM-DD HH:MM"),
            )
        }),
    };
    let r = match at_ms {
        Ok(at_ms) => {
            let a = VisitAction {
                action: f.action,
                version: f.version,
                note: f.note,
                escort: f.escort,
                work_done: f.work_done,
                at_ms,
            };
            visits::act(&state.db, &scope, id, &a, state.now_ms()).await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    let view = if VISIT_VIEWS.contains(&f.view.as_str()) { f.view } else { "all".to_string() };
    match r {
        Ok(()) => Ok(Redirect::to(&format!("/c/{cid}/visits?view={view}#visit-{id}")).into_response()),
        Err(e) => {
            let (msg, status) = refusal(ui.ctx.lang, e)?;
            visits_view(&state, &ui, &scope, &view, VisitForm::default(), Some(msg), status).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_keys_exist() {
        let mut keys: Vec<String> = Vec::new();
        keys.extend(HISTORY_ACTIONS.iter().map(|a| format!("ledger.action.{a}")));
        keys.extend(VISIT_VIEWS.iter().map(|v| format!("visit.view.{v}")));
        keys.extend(visits::STATES.iter().map(|s| format!("visit.state.{s}")));
        keys.extend(relations::RELATIONS.iter().map(|r| format!("relation.{r}")));
        keys.extend(systems::COMPONENT_KINDS.iter().map(|k| format!("system.component.{k}")));
        keys.extend(crate::topology::LAYERS.iter().map(|l| format!("topology.layer.{l}")));
        for key in keys {
            assert_ne!(t(Lang::Zh, &key), key, "missing translation key {key}");
        }
    }

    #[test]
    fn components_box() {
        let c = parse_components("数据库 | Oracle | 11g | 1521\n\nos | 麒麟 V10\n").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].kind, "database");
        assert_eq!(c[0].port, "1521");
        assert_eq!(c[1].kind, "os");
        assert_eq!(components_text(&c), "database | Oracle | 11g | 1521\nos | 麒麟 V10");
        assert!(parse_components("just a name").is_err());
        assert!(parse_components("a|b|c|d|e").is_err());
    }
}
