//! The asset ledger pages: the ledger list with filters, search and paging, the Excel import (the
//! file goes to the API from `app.js`, dry run first) and export link; the asset record with every
//! AS1 field, custom fields and history; create and edit forms; custom field definitions; and the
//! monthly reconciliation rounds (清查), made for a phone in the machine room, with their report.
//!
//! Every page calls the same storage functions as `api::assets`, so pages and API share their
//! permissions. A storage refusal is shown above the same form with what was typed; a concurrent
//! change (409) asks to reload.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::ContractPermission;
use yunwei_core::ledger;
use yunwei_storage::assets::{self, Asset, AssetFilter, AssetInput, CustomField};
use yunwei_storage::reconciliation::{self, ItemFilter, MarkInput};
use yunwei_storage::{ContractScope, StoreError, sites, suppliers};

use super::{UiForm, form_error, page_in, render};
use crate::AppState;
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::{Lang, t};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{cid}/assets", get(list_page).post(create))
        .route("/c/{cid}/assets/new", get(new_form))
        .route("/c/{cid}/assets/import", get(import_page))
        .route("/c/{cid}/assets/fields", get(fields_page).post(define_field))
        .route("/c/{cid}/assets/rounds", get(rounds_page).post(start_round))
        .route("/c/{cid}/assets/rounds/{rid}", get(round_page))
        .route("/c/{cid}/assets/rounds/{rid}/items/{aid}", post(mark))
        .route("/c/{cid}/assets/rounds/{rid}/close", post(close_round))
        .route("/c/{cid}/assets/rounds/{rid}/report", get(report_page))
        .route("/c/{cid}/assets/{id}", get(asset_page))
        .route("/c/{cid}/assets/{id}/edit", get(edit_form).post(update))
        .route("/c/{cid}/assets/{id}/retire", post(retire))
}

/// Every field of an asset as the API names it, in the order the record page shows them; each
/// has the label `asset.f.<key>`.
pub(crate) const FIELD_KEYS: [&str; 28] = [
    "kind",
    "name",
    "model",
    "brand",
    "manufacturer",
    "category",
    "asset_no",
    "serial",
    "status",
    "quantity",
    "unit",
    "site_id",
    "room",
    "rack",
    "u_position",
    "department",
    "owner",
    "supplier_id",
    "manufactured_on",
    "installed_on",
    "warranty_end",
    "dimensions",
    "weight",
    "ips",
    "ports",
    "accessories",
    "parameters",
    "notes",
];
/// Keys that history entries carry besides the fields (onboarding and retirement).
pub(crate) const EVENT_KEYS: [&str; 4] = ["approver", "reason", "note", "custom"];
/// History actions with a label `asset.action.<action>`.
pub(crate) const ACTIONS: [&str; 5] = ["create", "update", "import", "onboard", "retire"];
/// Round item filters (`round.show.<show>`): an outcome, or all.
pub(crate) const SHOWS: [&str; 6] = ["pending", "all", "found", "missing", "moved", "changed"];
/// Custom field types (`asset.type.<type>`).
pub(crate) const VALUE_TYPES: [&str; 3] = ["text", "number", "date"];

const PAGE_SIZE: i64 = 50;
const ROUND_PAGE: i64 = 100;

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
}

fn kind_label(lang: Lang, kind: &str) -> String {
    ledger::KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, zh, en)| if lang == Lang::En { *en } else { *zh })
        .unwrap_or(kind)
        .to_string()
}

fn status_label(lang: Lang, status: &str) -> String {
    ledger::STATUSES
        .iter()
        .find(|(k, _, _)| *k == status)
        .map(|(_, zh, en)| if lang == Lang::En { *en } else { *zh })
        .unwrap_or(status)
        .to_string()
}

fn kinds(lang: Lang) -> Vec<Choice> {
    ledger::KINDS.iter().map(|(k, zh, en)| Choice { value: k.to_string(), label: pick(lang, zh, en) }).collect()
}

fn statuses(lang: Lang) -> Vec<Choice> {
    ledger::STATUSES.iter().map(|(k, zh, en)| Choice { value: k.to_string(), label: pick(lang, zh, en) }).collect()
}

fn pick(lang: Lang, zh: &str, en: &str) -> String {
    if lang == Lang::En { en.to_string() } else { zh.to_string() }
}

fn outcome_label(lang: Lang, outcome: &str) -> String {
    t(lang, &format!("round.outcome.{outcome}"))
}

async fn site_choices(state: &AppState, scope: &ContractScope) -> Result<Vec<Choice>, AppError> {
    if !scope.permits(ContractPermission::SiteRead) {
        return Ok(Vec::new());
    }
    Ok(sites::list(&state.db, scope, None, 500)
        .await?
        .into_iter()
        .map(|s| Choice { value: s.id.to_string(), label: s.name })
        .collect())
}

async fn supplier_choices(state: &AppState, scope: &ContractScope) -> Result<Vec<Choice>, AppError> {
    Ok(suppliers::list(&state.db, scope, None, 500)
        .await?
        .into_iter()
        .map(|s| Choice { value: s.id.to_string(), label: s.name })
        .collect())
}

async fn scope_of(state: &AppState, ui: &UiUser, cid: i64) -> Result<ContractScope, AppError> {
    let scope = ui.principal().contract_scope(&state.db, cid).await?;
    scope.require(ContractPermission::AssetRead)?;
    if ui.session.active_contract_id != Some(cid) {
        yunwei_storage::sessions::set_active_contract(&state.db, &ui.session.token_hash, Some(cid)).await?;
    }
    Ok(scope)
}

fn status_of(e: &StoreError) -> StatusCode {
    match e {
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Forbidden => StatusCode::FORBIDDEN,
        StoreError::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// A refusal the person can act on, with its status; anything else is the error itself.
fn refusal(lang: Lang, e: StoreError) -> Result<(StatusCode, String), AppError> {
    if matches!(e, StoreError::Forbidden | StoreError::NotFound) {
        return Err(e.into());
    }
    let status = status_of(&e);
    Ok((status, form_error(lang, e)?))
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn qs<T: Serialize>(q: &T) -> String {
    serde_urlencoded::to_string(q).unwrap_or_default()
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_string() } else { format!("{path}?{query}") }
}

// ---------------------------------------------------------------------------------------------
// The ledger list and the import page

#[derive(Deserialize, Serialize, Default, Clone)]
struct ListQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    site: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    supplier: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    after: String,
}

#[derive(Serialize)]
struct Row {
    id: i64,
    name: String,
    asset_no: String,
    kind_label: String,
    model: String,
    brand: String,
    location: String,
    quantity: String,
    status: String,
    status_label: String,
}

fn location(a_site: Option<&str>, room: &str, rack: &str, u: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(s) = a_site.filter(|s| !s.is_empty()) {
        parts.push(s.to_string());
    }
    for p in [room, rack, u] {
        if !p.is_empty() {
            parts.push(p.to_string());
        }
    }
    parts.join(" · ")
}

fn quantity(q: i64, unit: &str) -> String {
    if q == 1 && unit.is_empty() { String::new() } else { format!("{q} {unit}").trim().to_string() }
}

async fn list_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let mut p = page_in(&state, &ui, &format!("/c/{cid}/assets"), Some(cid)).await?;
    // An id that is not a number matches nothing (rather than everything).
    let id_of = |v: &str| match v.trim() {
        "" => None,
        s => s.parse::<i64>().ok().or(Some(-1)),
    };
    let filter = AssetFilter {
        kind: opt(&q.kind),
        status: opt(&q.status),
        site_id: id_of(&q.site),
        supplier_id: id_of(&q.supplier),
        q: opt(&q.q),
        after: q.after.trim().parse().ok(),
        limit: Some(PAGE_SIZE),
    };
    let (rows, next_href) = match assets::list(&state.db, &scope, &filter).await {
        Ok(page) => {
            let rows: Vec<Row> = page
                .items
                .into_iter()
                .map(|a| Row {
                    id: a.id,
                    kind_label: kind_label(lang, &a.kind),
                    location: location(a.site_name.as_deref(), &a.room, &a.rack, &a.u_position),
                    quantity: quantity(a.quantity, &a.unit),
                    status_label: status_label(lang, &a.status),
                    status: a.status,
                    name: a.name,
                    asset_no: a.asset_no,
                    model: a.model,
                    brand: a.brand,
                })
                .collect();
            let next = page.next_after.map(|n| {
                with_query(&format!("/c/{cid}/assets"), &qs(&ListQuery { after: n.to_string(), ..q.clone() }))
            });
            (rows, next)
        }
        Err(e) => {
            let (_, msg) = refusal(lang, e)?;
            p = p.flash("error", msg);
            (Vec::new(), None)
        }
    };
    let html = render(
        &state,
        "assets.html",
        lang,
        &p,
        crate::view! {
            cid,
            mode => "list",
            rows,
            f => &q,
            first_page => q.after.is_empty(),
            first_href => with_query(&format!("/c/{cid}/assets"), &qs(&ListQuery { after: String::new(), ..q.clone() })),
            next_href,
            kinds => kinds(lang),
            statuses => statuses(lang),
            sites => site_choices(&state, &scope).await?,
            suppliers => supplier_choices(&state, &scope).await?,
            can_write => scope.permits(ContractPermission::AssetWrite),
            export_href => format!("/api/v1/contracts/{cid}/assets/export.xlsx"),
        },
    )?;
    Ok(html.into_response())
}

async fn import_page(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::AssetWrite)?;
    let p = page_in(&state, &ui, &format!("/c/{cid}/assets"), Some(cid)).await?;
    let headers: Vec<&str> = ledger::Field::ALL.iter().map(|f| f.header()).collect();
    let html = render(
        &state,
        "assets.html",
        lang,
        &p,
        crate::view! {
            cid,
            mode => "import",
            headers,
            import_url => format!("/api/v1/contracts/{cid}/assets/import"),
            export_href => format!("/api/v1/contracts/{cid}/assets/export.xlsx"),
            can_write => true,
        },
    )?;
    Ok(html.into_response())
}

// ---------------------------------------------------------------------------------------------
// The record page

#[derive(Serialize)]
struct Fact {
    label: String,
    value: String,
    /// Kept as typed (line breaks).
    text: bool,
    /// The record the value names (the supplier).
    href: Option<String>,
}

#[derive(Serialize)]
struct Change {
    label: String,
    before: String,
    after: String,
}

#[derive(Serialize)]
struct HistoryView {
    at: i64,
    actor: String,
    action: String,
    action_label: String,
    changes: Vec<Change>,
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Labels and shows history values the way the record page shows the fields.
struct Labeller<'a> {
    lang: Lang,
    sites: &'a [Choice],
    suppliers: &'a [Choice],
    defs: &'a [CustomField],
}

impl Labeller<'_> {
    fn label(&self, key: &str) -> String {
        if FIELD_KEYS.contains(&key) || EVENT_KEYS.contains(&key) {
            t(self.lang, &format!("asset.f.{key}"))
        } else {
            key.to_string()
        }
    }

    fn value(&self, key: &str, v: &serde_json::Value) -> String {
        let s = value_text(v);
        match key {
            "kind" if !s.is_empty() => kind_label(self.lang, &s),
            "status" if !s.is_empty() => status_label(self.lang, &s),
            "site_id" => self.sites.iter().find(|c| c.value == s).map(|c| c.label.clone()).unwrap_or(s),
            "supplier_id" => self.suppliers.iter().find(|c| c.value == s).map(|c| c.label.clone()).unwrap_or(s),
            _ => s,
        }
    }

    fn custom_label(&self, key: &str) -> String {
        let label = self.defs.iter().find(|d| d.field_key == key).map(|d| d.label.as_str()).unwrap_or(key);
        format!("{} · {label}", t(self.lang, "asset.f.custom"))
    }

    /// One row per field that an entry changed; a creation lists the fields it set.
    fn changes(&self, before: &serde_json::Value, after: &serde_json::Value) -> Vec<Change> {
        let empty = serde_json::Map::new();
        let b = before.as_object().unwrap_or(&empty);
        let a = after.as_object().unwrap_or(&empty);
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort_by_key(|k| {
            FIELD_KEYS
                .iter()
                .position(|f| f == k)
                .or_else(|| EVENT_KEYS.iter().position(|f| f == k).map(|p| 100 + p))
                .unwrap_or(200)
        });
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            let (bv, av) = (b.get(k).unwrap_or(&serde_json::Value::Null), a.get(k).unwrap_or(&serde_json::Value::Null));
            if k == "custom" {
                let (bo, ao) = (bv.as_object().unwrap_or(&empty), av.as_object().unwrap_or(&empty));
                let mut ck: Vec<&String> = ao.keys().chain(bo.keys()).collect();
                ck.sort();
                ck.dedup();
                for c in ck {
                    let (x, y) =
                        (bo.get(c).map(value_text).unwrap_or_default(), ao.get(c).map(value_text).unwrap_or_default());
                    if x != y {
                        out.push(Change { label: self.custom_label(c), before: x, after: y });
                    }
                }
                continue;
            }
            let (x, y) = (self.value(k, bv), self.value(k, av));
            if x == y || (before.is_null() && y.is_empty()) {
                continue;
            }
            out.push(Change { label: self.label(k), before: x, after: y });
        }
        out
    }
}

fn action_label(lang: Lang, action: &str) -> String {
    if ACTIONS.contains(&action) { t(lang, &format!("asset.action.{action}")) } else { action.to_string() }
}

async fn asset_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    asset_view(&state, &ui, &scope, id, None, StatusCode::OK).await
}

async fn asset_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    id: i64,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let a = assets::get(&state.db, scope, id).await?;
    let mut p = page_in(state, ui, &format!("/c/{cid}/assets"), Some(cid)).await?;
    if let Some(e) = error {
        p = p.flash("error", e);
    }
    let defs = assets::fields(&state.db, scope, &a.kind).await?;
    let sites = site_choices(state, scope).await?;
    let suppliers = supplier_choices(state, scope).await?;
    let v = serde_json::to_value(&a).unwrap_or_default();
    let lab = Labeller { lang, sites: &sites, suppliers: &suppliers, defs: &defs };
    let facts: Vec<Fact> = FIELD_KEYS
        .iter()
        .map(|k| {
            let value = match *k {
                "site_id" => a.site_name.clone().unwrap_or_default(),
                _ => lab.value(k, &v[*k]),
            };
            let href = match *k {
                "supplier_id" => a.supplier_id.map(|s| format!("/c/{cid}/suppliers/{s}")),
                _ => None,
            };
            Fact { label: lab.label(k), value, text: matches!(*k, "accessories" | "parameters" | "notes"), href }
        })
        .collect();
    let custom: Vec<Fact> = defs
        .iter()
        .map(|d| Fact {
            label: d.label.clone(),
            value: a.custom.get(&d.field_key).map(value_text).unwrap_or_default(),
            text: false,
            href: None,
        })
        .collect();
    let history: Vec<HistoryView> = assets::history(&state.db, scope, &format!("asset:{id}"))
        .await?
        .into_iter()
        .rev()
        .map(|h| HistoryView {
            changes: lab.changes(&h.before, &h.after),
            action_label: action_label(lang, &h.action),
            action: h.action,
            at: h.at,
            actor: h.actor,
        })
        .collect();
    let html = render(
        state,
        "asset.html",
        lang,
        &p,
        crate::view! {
            cid,
            a => &a,
            kind_label => kind_label(lang, &a.kind),
            status_label => status_label(lang, &a.status),
            facts,
            custom,
            history,
            can_write => scope.permits(ContractPermission::AssetWrite),
        },
    )?;
    Ok((status, html).into_response())
}

// ---------------------------------------------------------------------------------------------
// Create and edit

type FormMap = HashMap<String, String>;

fn form_map(pairs: Vec<(String, String)>) -> FormMap {
    pairs.into_iter().collect()
}

fn field<'a>(f: &'a FormMap, key: &str) -> &'a str {
    f.get(key).map(String::as_str).unwrap_or("")
}

/// The asset's fields as the form shows them.
fn form_of(a: &Asset) -> FormMap {
    let mut f = FormMap::new();
    if let Some(o) = serde_json::to_value(a).ok().as_ref().and_then(|v| v.as_object()) {
        for k in FIELD_KEYS {
            f.insert(k.to_string(), value_text(o.get(k).unwrap_or(&serde_json::Value::Null)));
        }
    }
    if let Some(o) = a.custom.as_object() {
        for (k, v) in o {
            f.insert(format!("custom.{k}"), value_text(v));
        }
    }
    f.insert("version".into(), a.version.to_string());
    f
}

/// What the form says, as storage's input; custom values only for the fields of the chosen kind
/// (switching the kind drops the old kind's values).
fn input_of(f: &FormMap, defs: &[CustomField]) -> AssetInput {
    let s = |k: &str| field(f, k).to_string();
    let int = |k: &str, bad: i64| match field(f, k).trim() {
        "" => None,
        v => Some(v.parse::<i64>().unwrap_or(bad)),
    };
    let custom = defs
        .iter()
        .filter_map(|d| f.get(&format!("custom.{}", d.field_key)).map(|v| (d.field_key.clone(), v.clone())))
        .collect();
    AssetInput {
        kind: s("kind"),
        name: s("name"),
        model: s("model"),
        brand: s("brand"),
        manufacturer: s("manufacturer"),
        unit: s("unit"),
        quantity: int("quantity", 0),
        serial: s("serial"),
        manufactured_on: s("manufactured_on"),
        installed_on: s("installed_on"),
        site_id: int("site_id", -1),
        room: s("room"),
        rack: s("rack"),
        u_position: s("u_position"),
        department: s("department"),
        category: s("category"),
        asset_no: s("asset_no"),
        dimensions: s("dimensions"),
        weight: s("weight"),
        accessories: s("accessories"),
        parameters: s("parameters"),
        status: s("status"),
        owner: s("owner"),
        supplier_id: int("supplier_id", -1),
        warranty_end: s("warranty_end"),
        ips: s("ips"),
        ports: s("ports"),
        custom: Some(custom),
        notes: s("notes"),
    }
}

/// Custom field definitions of a kind; none for a kind that does not exist.
async fn defs_of(state: &AppState, scope: &ContractScope, kind: &str) -> Result<Vec<CustomField>, AppError> {
    if !ledger::KINDS.iter().any(|(k, _, _)| *k == kind) {
        return Ok(Vec::new());
    }
    Ok(assets::fields(&state.db, scope, kind).await?)
}

#[derive(Deserialize, Default)]
struct NewQuery {
    #[serde(default)]
    kind: String,
}

async fn new_form(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<NewQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::AssetWrite)?;
    let mut f = FormMap::new();
    let kind = if ledger::KINDS.iter().any(|(k, _, _)| *k == q.kind) { q.kind } else { "network".into() };
    f.insert("kind".into(), kind);
    f.insert("status".into(), "in_service".into());
    f.insert("quantity".into(), "1".into());
    form_view(&state, &ui, &scope, None, f, None, StatusCode::OK).await
}

async fn edit_form(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    Query(q): Query<NewQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::AssetWrite)?;
    let a = assets::get(&state.db, &scope, id).await?;
    let mut f = form_of(&a);
    if ledger::KINDS.iter().any(|(k, _, _)| *k == q.kind) {
        f.insert("kind".into(), q.kind);
    }
    form_view(&state, &ui, &scope, Some(&a), f, None, StatusCode::OK).await
}

#[derive(Serialize)]
struct CustomInput {
    key: String,
    name: String,
    label: String,
    value_type: String,
    required: bool,
    value: String,
}

async fn form_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    asset: Option<&Asset>,
    f: FormMap,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let mut p = page_in(state, ui, &format!("/c/{cid}/assets"), Some(cid)).await?;
    if let Some(e) = error {
        p = p.flash("error", e);
    }
    let custom: Vec<CustomInput> = defs_of(state, scope, field(&f, "kind"))
        .await?
        .into_iter()
        .map(|d| CustomInput {
            name: format!("custom.{}", d.field_key),
            value: field(&f, &format!("custom.{}", d.field_key)).to_string(),
            key: d.field_key,
            label: d.label,
            value_type: d.value_type,
            required: d.required,
        })
        .collect();
    let action = match asset {
        Some(a) => format!("/c/{cid}/assets/{}/edit", a.id),
        None => format!("/c/{cid}/assets"),
    };
    let labels: HashMap<&str, String> = FIELD_KEYS.iter().map(|k| (*k, t(lang, &format!("asset.f.{k}")))).collect();
    let html = render(
        state,
        "asset_form.html",
        lang,
        &p,
        crate::view! {
            cid,
            f => &f,
            l => labels,
            asset_id => asset.map(|a| a.id),
            asset_name => asset.map(|a| a.name.clone()),
            action,
            custom,
            kinds => kinds(lang),
            statuses => statuses(lang),
            sites => site_choices(state, scope).await?,
            suppliers => supplier_choices(state, scope).await?,
        },
    )?;
    Ok((status, html).into_response())
}

async fn create(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(pairs): UiForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::AssetWrite)?;
    let f = form_map(pairs);
    let defs = defs_of(&state, &scope, field(&f, "kind")).await?;
    let input = input_of(&f, &defs);
    let approver = field(&f, "approver").trim();
    let result = if approver.is_empty() {
        assets::create(&state.db, &scope, &input, state.now_ms()).await
    } else {
        reconciliation::onboard(&state.db, &scope, &input, approver, field(&f, "onboard_note"), state.now_ms()).await
    };
    match result {
        Ok(a) => Ok(Redirect::to(&format!("/c/{cid}/assets/{}", a.id)).into_response()),
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            form_view(&state, &ui, &scope, None, f, Some(msg), status).await
        }
    }
}

async fn update(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(pairs): UiForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::AssetWrite)?;
    let current = assets::get(&state.db, &scope, id).await?;
    let f = form_map(pairs);
    let defs = defs_of(&state, &scope, field(&f, "kind")).await?;
    let input = input_of(&f, &defs);
    let version = field(&f, "version").trim().parse::<i64>().unwrap_or(0);
    match assets::update(&state.db, &scope, id, version, &input, state.now_ms()).await {
        Ok(a) => Ok(Redirect::to(&format!("/c/{cid}/assets/{}", a.id)).into_response()),
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            form_view(&state, &ui, &scope, Some(&current), f, Some(msg), status).await
        }
    }
}

#[derive(Deserialize)]
struct RetireForm {
    #[serde(default)]
    version: String,
    #[serde(default)]
    approver: String,
    #[serde(default)]
    reason: String,
}

async fn retire(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(form): UiForm<RetireForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let version = form.version.trim().parse::<i64>().unwrap_or(0);
    match reconciliation::retire(&state.db, &scope, id, version, &form.approver, &form.reason, state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/assets/{id}")).into_response()),
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            asset_view(&state, &ui, &scope, id, Some(msg), status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Custom field definitions

#[derive(Serialize)]
struct KindFields {
    kind: String,
    label: String,
    fields: Vec<FieldRow>,
}

#[derive(Serialize)]
struct FieldRow {
    key: String,
    label: String,
    type_label: String,
    required: bool,
    position: i64,
}

#[derive(Deserialize, Serialize, Default)]
struct FieldForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    field_key: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    value_type: String,
    #[serde(default)]
    required: Option<String>,
    #[serde(default)]
    position: String,
}

async fn fields_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<NewQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let form = FieldForm { kind: q.kind, value_type: "text".into(), ..Default::default() };
    fields_view(&state, &ui, &scope, form, None, StatusCode::OK).await
}

async fn fields_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    form: FieldForm,
    flash: Option<(&'static str, String)>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let mut p = page_in(state, ui, &format!("/c/{cid}/assets"), Some(cid)).await?;
    if let Some((kind, text)) = flash {
        p = p.flash(kind, text);
    }
    let mut groups = Vec::new();
    for (kind, zh, en) in ledger::KINDS {
        let fields = assets::fields(&state.db, scope, kind)
            .await?
            .into_iter()
            .map(|d| FieldRow {
                type_label: t(lang, &format!("asset.type.{}", d.value_type)),
                key: d.field_key,
                label: d.label,
                required: d.required,
                position: d.position,
            })
            .collect();
        groups.push(KindFields { kind: kind.to_string(), label: pick(lang, zh, en), fields });
    }
    let types: Vec<Choice> = VALUE_TYPES
        .iter()
        .map(|v| Choice { value: v.to_string(), label: t(lang, &format!("asset.type.{v}")) })
        .collect();
    let html = render(
        state,
        "asset_fields.html",
        lang,
        &p,
        crate::view! {
            cid,
            groups,
            f => &form,
            kinds => kinds(lang),
            types,
            can_write => scope.permits(ContractPermission::AssetWrite),
        },
    )?;
    Ok((status, html).into_response())
}

async fn define_field(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<FieldForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let position = match form.position.trim() {
        "" => Ok(0),
        p => p.parse::<i64>(),
    };
    let Ok(position) = position else {
        let msg = t(lang, "asset.bad_position");
        return fields_view(&state, &ui, &scope, form, Some(("error", msg)), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let def = CustomField {
        kind: form.kind.trim().to_string(),
        field_key: form.field_key.trim().to_string(),
        label: form.label.clone(),
        value_type: form.value_type.trim().to_string(),
        required: form.required.is_some(),
        position,
    };
    match assets::define_field(&state.db, &scope, &def, state.now_ms()).await {
        Ok(()) => {
            let msg = format!("{}: {} ({})", t(lang, "asset.field_saved"), def.label.trim(), def.field_key);
            let next = FieldForm { kind: def.kind, value_type: "text".into(), ..Default::default() };
            fields_view(&state, &ui, &scope, next, Some(("ok", msg)), StatusCode::OK).await
        }
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            fields_view(&state, &ui, &scope, form, Some(("error", msg)), status).await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reconciliation rounds

#[derive(Serialize)]
struct RoundRow {
    id: i64,
    period: String,
    open: bool,
    started_by: String,
    started_at: i64,
    closed_by: String,
    closed_at: Option<i64>,
    counts: reconciliation::Counts,
    checked: i64,
}

fn round_row(r: reconciliation::Round) -> RoundRow {
    RoundRow {
        id: r.id,
        open: r.is_open(),
        checked: r.counts.checked(),
        period: r.period,
        started_by: r.started_by,
        started_at: r.started_at,
        closed_by: r.closed_by,
        closed_at: r.closed_at,
        counts: r.counts,
    }
}

/// The current month in Shanghai, "YYYY-MM".
fn this_month(now: i64) -> String {
    let (y, m, _) = yunwei_core::calendar::civil_from_days(yunwei_core::calendar::local_day(now));
    format!("{y:04}-{m:02}")
}

async fn rounds_page(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let period = this_month(state.now_ms());
    rounds_view(&state, &ui, &scope, period, None, StatusCode::OK).await
}

async fn rounds_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    period: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let mut p = page_in(state, ui, &format!("/c/{cid}/assets/rounds"), Some(cid)).await?;
    if let Some(e) = error {
        p = p.flash("error", e);
    }
    let rounds: Vec<RoundRow> = reconciliation::list(&state.db, scope).await?.into_iter().map(round_row).collect();
    let html = render(
        state,
        "rounds.html",
        lang,
        &p,
        crate::view! { cid, rounds, period, can_write => scope.permits(ContractPermission::AssetWrite) },
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    period: String,
}

async fn start_round(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<StartForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    match reconciliation::start(&state.db, &scope, &form.period, state.now_ms()).await {
        Ok(r) => Ok(Redirect::to(&format!("/c/{cid}/assets/rounds/{}", r.id)).into_response()),
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            rounds_view(&state, &ui, &scope, form.period, Some(msg), status).await
        }
    }
}

/// The round page's query: which items, a search, the page, and the item just marked.
#[derive(Deserialize, Serialize, Default, Clone)]
struct RoundQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    show: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    after: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    marked: String,
}

impl RoundQuery {
    /// The filter part only (what links and forms carry on).
    fn base(&self) -> RoundQuery {
        RoundQuery { show: self.show.clone(), q: self.q.clone(), ..Default::default() }
    }
}

#[derive(Serialize)]
struct ItemView {
    asset_id: i64,
    name: String,
    asset_no: String,
    model: String,
    serial: String,
    kind_label: String,
    location: String,
    room: String,
    site_id: String,
    status: String,
    status_label: String,
    quantity: String,
    outcome: String,
    outcome_label: String,
    note: String,
    checked_by: String,
    checked_at: Option<i64>,
}

fn item_view(lang: Lang, i: reconciliation::Item) -> ItemView {
    ItemView {
        asset_id: i.asset_id,
        kind_label: kind_label(lang, &i.kind),
        location: location(i.site_name.as_deref(), &i.room, &i.rack, &i.u_position),
        site_id: i.site_id.map(|s| s.to_string()).unwrap_or_default(),
        status_label: status_label(lang, &i.status),
        quantity: quantity(i.quantity, &i.unit),
        outcome_label: outcome_label(lang, &i.outcome),
        name: i.name,
        asset_no: i.asset_no,
        model: i.model,
        serial: i.serial,
        room: i.room,
        status: i.status,
        outcome: i.outcome,
        note: i.note,
        checked_by: i.checked_by,
        checked_at: i.checked_at,
    }
}

#[derive(Serialize)]
struct Tab {
    label: String,
    href: String,
    active: bool,
    count: Option<i64>,
}

async fn round_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
    Query(q): Query<RoundQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    round_view(&state, &ui, &scope, rid, q, None, StatusCode::OK).await
}

async fn round_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    rid: i64,
    mut q: RoundQuery,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let round = reconciliation::get(&state.db, scope, rid).await?;
    if !SHOWS.contains(&q.show.as_str()) {
        q.show = if round.is_open() { "pending" } else { "all" }.into();
    }
    let mut p = page_in(state, ui, &format!("/c/{cid}/assets/rounds"), Some(cid)).await?;
    // The confirmation of a mark is shown next to the list (the page opens at the list).
    let mut marked = None;
    if let Some(e) = error {
        p = p.flash("error", e);
    } else if let Ok(aid) = q.marked.parse::<i64>()
        && let Ok(i) = reconciliation::item(&state.db, scope, rid, aid).await
    {
        marked = Some(format!("{}: {} → {}", t(lang, "round.marked"), i.name, outcome_label(lang, &i.outcome)));
    }
    let filter = ItemFilter {
        outcome: (q.show != "all").then(|| q.show.clone()),
        q: opt(&q.q),
        after: q.after.trim().parse().ok(),
        limit: Some(ROUND_PAGE),
    };
    let here = format!("/c/{cid}/assets/rounds/{rid}");
    let (items, next_href) = match reconciliation::items(&state.db, scope, rid, &filter).await {
        Ok(page) => {
            let next =
                page.next_after.map(|n| with_query(&here, &qs(&RoundQuery { after: n.to_string(), ..q.base() })));
            (page.items.into_iter().map(|i| item_view(lang, i)).collect::<Vec<_>>(), next)
        }
        Err(e) => {
            let (_, msg) = refusal(lang, e)?;
            p = p.flash("error", msg);
            (Vec::new(), None)
        }
    };
    let c = &round.counts;
    let tabs: Vec<Tab> = SHOWS
        .iter()
        .map(|s| Tab {
            label: t(lang, &format!("round.show.{s}")),
            href: with_query(&here, &qs(&RoundQuery { show: s.to_string(), q: q.q.clone(), ..Default::default() })),
            active: q.show == *s,
            count: Some(match *s {
                "pending" => c.pending,
                "found" => c.found,
                "missing" => c.missing,
                "moved" => c.moved,
                "changed" => c.changed,
                _ => c.total,
            }),
        })
        .collect();
    let percent = if c.total > 0 { c.checked() * 100 / c.total } else { 100 };
    let html = render(
        state,
        "round.html",
        lang,
        &p,
        crate::view! {
            cid,
            report => false,
            r => round_row(round.clone()),
            items,
            tabs,
            f => &q,
            marked,
            next_href,
            percent,
            statuses => statuses(lang).into_iter().filter(|s| s.value != "retired").collect::<Vec<_>>(),
            sites => site_choices(state, scope).await?,
            can_mark => round.is_open() && scope.permits(ContractPermission::AssetWrite),
        },
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize, Default)]
struct MarkForm {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    site_id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    show: String,
    #[serde(default)]
    q: String,
}

async fn mark(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid, aid)): Path<(i64, i64, i64)>,
    UiForm(form): UiForm<MarkForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let applies = matches!(form.outcome.as_str(), "moved" | "changed");
    let input = MarkInput {
        outcome: form.outcome.clone(),
        note: form.note.clone(),
        room: form.room.clone().filter(|_| applies),
        site_id: form.site_id.trim().parse().ok().filter(|_| applies),
        status: opt(&form.status).filter(|_| applies),
    };
    let back = RoundQuery { show: form.show.clone(), q: form.q.clone(), ..Default::default() };
    match reconciliation::mark(&state.db, &scope, rid, aid, &input, state.now_ms()).await {
        Ok(_) => {
            let q = qs(&RoundQuery { marked: aid.to_string(), ..back });
            Ok(Redirect::to(&format!("/c/{cid}/assets/rounds/{rid}?{q}#items")).into_response())
        }
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            round_view(&state, &ui, &scope, rid, back, Some(msg), status).await
        }
    }
}

#[derive(Deserialize)]
struct CloseForm {
    #[serde(default)]
    force: Option<String>,
}

async fn close_round(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
    UiForm(form): UiForm<CloseForm>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    match reconciliation::close(&state.db, &scope, rid, form.force.is_some(), state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/assets/rounds/{rid}/report")).into_response()),
        Err(e) => {
            let (status, msg) = refusal(lang, e)?;
            round_view(&state, &ui, &scope, rid, RoundQuery::default(), Some(msg), status).await
        }
    }
}

async fn report_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, rid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let scope = scope_of(&state, &ui, cid).await?;
    let rep = reconciliation::report(&state.db, &scope, rid).await?;
    let p = page_in(&state, &ui, &format!("/c/{cid}/assets/rounds"), Some(cid)).await?;
    let conv = |v: Vec<reconciliation::Item>| v.into_iter().map(|i| item_view(lang, i)).collect::<Vec<_>>();
    let c = &rep.round.counts;
    let percent = if c.total > 0 { c.checked() * 100 / c.total } else { 100 };
    let html = render(
        &state,
        "round.html",
        lang,
        &p,
        crate::view! {
            cid,
            report => true,
            r => round_row(rep.round.clone()),
            percent,
            missing => conv(rep.missing),
            moved => conv(rep.moved),
            changed => conv(rep.changed),
        },
    )?;
    Ok(html.into_response())
}
