//! The service desk pages: ticket lists with views, filters and saved filters; the fast intake form
//! of the desk (and the portal form of the client's users); the ticket page with its SLA clocks,
//! lifecycle steps and records; the notification inbox; the monthly statistics.
//!
//! Every page calls the same storage functions as `api::tickets`, so pages and API share their
//! permissions. Forms post back here with the session's CSRF token and the ticket `version` they
//! were rendered with; a storage refusal is shown above the same page, a concurrent change (409)
//! asks to reload.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::{ContractPermission, ContractRole};
use yunwei_core::contract::human_duration;
use yunwei_core::ticket::{Action, Kind, State as TicketState};
use yunwei_storage::tickets::{self, ActionInput, AnalysisInput, NewTicket, Ticket, TicketEdit, TicketFilter};
use yunwei_storage::{ContractScope, StoreError, contracts, notifications, rules, saved_filters, ticket_stats};

use super::{UiForm, form_error, page, page_in, render};
use crate::AppState;
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::{Lang, t};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/c/{cid}/tickets", get(list_page).post(create))
        .route("/c/{cid}/tickets/new", get(new_form))
        .route("/c/{cid}/tickets/stats", get(stats_page))
        .route("/c/{cid}/tickets/filters", post(save_filter))
        .route("/c/{cid}/tickets/filters/{fid}/delete", post(delete_filter))
        .route("/c/{cid}/tickets/{id}", get(ticket_page))
        .route("/c/{cid}/tickets/{id}/act", post(act))
        .route("/c/{cid}/tickets/{id}/edit", post(edit))
        .route("/c/{cid}/tickets/{id}/comment", post(comment))
        .route("/c/{cid}/tickets/{id}/analysis", post(analysis))
        .route("/c/{cid}/tickets/{id}/summary", post(summary))
        .route("/c/{cid}/tickets/{id}/work", post(work))
        .route("/c/{cid}/tickets/{id}/link", post(link))
        .route("/c/{cid}/tickets/{id}/merge", post(merge))
        .route("/c/{cid}/tickets/{id}/files/{aid}", get(file))
        .route("/inbox", get(inbox_page))
        .route("/inbox/read", post(mark_read))
}

/// List views in tab order (storage's `view` values).
pub(crate) const VIEWS: [&str; 8] =
    ["open", "mine", "breaching", "awaiting_confirmation", "awaiting_approval", "closed", "all", "reported"];
pub(crate) const SORTS: [&str; 3] = ["time_left", "newest", "oldest"];
/// SLA clock phases as storage names them (`ClockView::phase`).
pub(crate) const PHASES: [&str; 6] = ["not_started", "no_target", "running", "paused", "met", "breached"];
/// Notice kinds the scheduler records (`ticket_notice.kind`).
pub(crate) const NOTICE_KINDS: [&str; 8] =
    ["reminder", "breach", "progress", "level_start", "level_end", "reporter_progress", "escalation", "auto_close"];
/// History entries that are not lifecycle actions.
pub(crate) const EVENT_KINDS: [&str; 8] = ["create", "level", "rate", "analysis", "summary", "link", "merge", "merged"];
/// Link kinds as shown (`tickets::Link::relation`) and as entered (`parent`, `related`, `explains`).
pub(crate) const RELATIONS: [&str; 7] =
    ["parent", "child", "duplicate_of", "duplicate", "related", "explains", "explained_by"];
const LINKABLE: [&str; 3] = ["parent", "related", "explains"];

const PAGE_SIZE: i64 = 50;
const MIN_MS: i64 = 60_000;

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
}

fn choice(value: impl Into<String>, label: impl Into<String>) -> Choice {
    Choice { value: value.into(), label: label.into() }
}

fn kind_label(lang: Lang, kind: &str) -> String {
    Kind::parse(kind).map(|k| lang.pick(k.label()).to_string()).unwrap_or_else(|| kind.to_string())
}

fn state_label(lang: Lang, state: &str) -> String {
    TicketState::parse(state).map(|s| lang.pick(s.label()).to_string()).unwrap_or_else(|| state.to_string())
}

fn channel_label(lang: Lang, channel: &str) -> String {
    t(lang, &format!("ticket.channel.{channel}"))
}

fn kinds(lang: Lang) -> Vec<Choice> {
    Kind::ALL.iter().map(|k| choice(k.as_str(), lang.pick(k.label()))).collect()
}

fn channels(lang: Lang) -> Vec<Choice> {
    tickets::CHANNELS.iter().map(|c| choice(*c, channel_label(lang, c))).collect()
}

/// "1小时05分" / "1 h 05 min"; whole days as "2天3小时" / "2 d 3 h".
pub(crate) fn human_span(lang: Lang, ms: i64) -> String {
    let total_min = ms.abs() / MIN_MS;
    let (days, hours, mins) = (total_min / 1440, (total_min % 1440) / 60, total_min % 60);
    match lang {
        Lang::Zh if days > 0 => format!("{days}天{hours}小时"),
        Lang::Zh if hours > 0 => format!("{hours}小时{mins:02}分"),
        Lang::Zh => format!("{mins}分"),
        Lang::En if days > 0 => format!("{days} d {hours} h"),
        Lang::En if hours > 0 => format!("{hours} h {mins:02} min"),
        Lang::En => format!("{mins} min"),
    }
}

/// Time left on a clock, or how far past its due time it is.
pub(crate) fn time_left(lang: Lang, left_ms: i64, breached: bool) -> String {
    if breached || left_ms < 0 {
        format!("{} {}", t(lang, "ticket.overdue"), human_span(lang, left_ms))
    } else {
        human_span(lang, left_ms)
    }
}

fn duration_label(lang: Lang, ms: i64) -> String {
    let (zh, en) = human_duration(ms);
    if lang == Lang::En { en } else { zh }
}

/// "2022-03-01T09:58" (Shanghai, as a datetime-local field sends it) → UTC epoch ms.
pub(crate) fn parse_local_datetime(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once('T').or_else(|| s.trim().split_once(' '))?;
    let day = yunwei_core::calendar::parse_date(date)?;
    let mut parts = time.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    Some(yunwei_core::calendar::day_start_utc(day) + h * 3_600_000 + m * MIN_MS)
}

async fn scope_of(state: &AppState, ui: &UiUser, cid: i64) -> Result<ContractScope, AppError> {
    Ok(ui.principal().contract_scope(&state.db, cid).await?)
}

/// Remembers the contract as the session's active one (as the contract page does), so that the
/// navigation follows the contract being worked in.
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

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

// ---------------------------------------------------------------------------------------------
// The list

/// The list's query as typed in the form and carried in links.
#[derive(Deserialize, Serialize, Default, Clone)]
pub(crate) struct ListQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    view: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    level: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    system: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    channel: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    q: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sort: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    cursor: String,
}

impl ListQuery {
    fn filter(&self) -> TicketFilter {
        TicketFilter {
            view: opt(&self.view),
            level: opt(&self.level),
            kind: opt(&self.kind),
            state: opt(&self.state),
            system: opt(&self.system),
            channel: opt(&self.channel),
            from: opt(&self.from),
            to: opt(&self.to),
            q: opt(&self.q),
            sort: opt(&self.sort),
            cursor: opt(&self.cursor),
            limit: Some(PAGE_SIZE),
            ..Default::default()
        }
    }

    /// The query without the page cursor (for the next page, the export and saved filters).
    fn query_string(&self) -> String {
        serde_urlencoded::to_string(ListQuery { cursor: String::new(), ..self.clone() }).unwrap_or_default()
    }

    fn with(&self, change: impl FnOnce(&mut ListQuery)) -> String {
        let mut q = ListQuery { cursor: String::new(), ..self.clone() };
        change(&mut q);
        serde_urlencoded::to_string(q).unwrap_or_default()
    }
}

/// Which views a role sees: end users their own reports only; the client's supervisor is never an
/// assignee, so "mine" is left out.
fn views_for(role: ContractRole) -> Vec<&'static str> {
    match role {
        ContractRole::ClientEndUser => vec!["reported"],
        ContractRole::ClientSupervisor => VIEWS.iter().copied().filter(|v| *v != "mine").collect(),
        _ => VIEWS.to_vec(),
    }
}

#[derive(Serialize)]
struct Tab {
    label: String,
    count: Option<i64>,
    href: String,
    active: bool,
}

#[derive(Serialize)]
struct Row {
    id: i64,
    number: String,
    title: String,
    level: String,
    kind_label: String,
    state: String,
    state_label: String,
    assignee: String,
    left: String,
    /// "breached", "paused" or "".
    left_class: &'static str,
    clock: String,
    received_at: i64,
}

#[derive(Serialize)]
struct SavedView {
    id: i64,
    name: String,
    href: String,
}

/// Level names, incident classes (deduplicated) and system names of the contract's current file.
async fn contract_lists(state: &AppState, cid: i64) -> Result<Option<ContractLists>, AppError> {
    let Some(r) = rules::current(&state.db, cid).await? else { return Ok(None) };
    let file = &r.compiled.file;
    let mut classes: Vec<String> = Vec::new();
    for step in &file.escalation {
        if !classes.contains(&step.class) {
            classes.push(step.class.clone());
        }
    }
    Ok(Some(ContractLists {
        levels: file
            .levels
            .iter()
            .map(|l| {
                // "一级：关键设备…" → "L1 一级": the name and the description's first words.
                let short: String = l.description.split(['：', ':']).next().unwrap_or("").chars().take(12).collect();
                choice(l.name.get_ref().clone(), format!("{} {short}", l.name.get_ref()).trim().to_string())
            })
            .collect(),
        classes,
        systems: file.systems.iter().map(|s| s.name.clone()).collect(),
    }))
}

#[derive(Serialize, Default)]
struct ContractLists {
    levels: Vec<Choice>,
    classes: Vec<String>,
    systems: Vec<String>,
}

async fn list_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::TicketRead)?;
    remember_contract(&state, &ui, cid).await?;
    list_view(&state, &ui, &scope, q, None, StatusCode::OK).await
}

async fn list_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    mut q: ListQuery,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let views = views_for(scope.role());
    if !views.contains(&q.view.as_str()) {
        q.view = views[0].to_string();
    }
    let mut p = page_in(state, ui, &format!("/c/{cid}/tickets"), Some(cid)).await?;
    if let Some(e) = error {
        p = p.flash("error", e);
    }
    let (rows, next_href) = match tickets::list(&state.db, scope, &q.filter(), state.now_ms()).await {
        Ok(page) => {
            let rows: Vec<Row> = page
                .rows
                .into_iter()
                .map(|r| {
                    let left = match r.left_ms {
                        Some(ms) => time_left(lang, ms, r.breached),
                        None => String::new(),
                    };
                    let left_class = if r.breached {
                        "breached"
                    } else if r.paused {
                        "paused"
                    } else {
                        ""
                    };
                    Row {
                        id: r.ticket.id,
                        number: r.ticket.number,
                        title: r.ticket.title,
                        level: r.ticket.level,
                        kind_label: kind_label(lang, &r.ticket.kind),
                        state_label: state_label(lang, &r.ticket.state),
                        state: r.ticket.state,
                        assignee: r.ticket.assignee_name.unwrap_or_default(),
                        left,
                        left_class,
                        clock: r.next_clock.unwrap_or_default(),
                        received_at: r.ticket.received_at,
                    }
                })
                .collect();
            let next = page.next_cursor.map(|c| format!("/c/{cid}/tickets?{}", q.with(|n| n.cursor = c)));
            (rows, next)
        }
        Err(e) => {
            p = p.flash("error", form_error(lang, e)?);
            (Vec::new(), None)
        }
    };
    let counts = tickets::counts(&state.db, scope).await?;
    let tabs: Vec<Tab> = views
        .iter()
        .map(|v| Tab {
            label: t(lang, &format!("ticket.view.{v}")),
            count: counts.get(v).copied(),
            href: format!("/c/{cid}/tickets?{}", q.with(|n| n.view = v.to_string())),
            active: q.view == *v,
        })
        .collect();
    let lists = contract_lists(state, cid).await?.unwrap_or_default();
    let query = q.query_string();
    let saved = saved_filters::list(&state.db, scope)
        .await?
        .into_iter()
        .map(|f| SavedView { id: f.id, href: format!("/c/{cid}/tickets?{}", f.query), name: f.name })
        .collect::<Vec<_>>();
    let export_href = scope
        .permits(ContractPermission::TicketReport)
        .then(|| format!("/api/v1/contracts/{cid}/tickets/export.xlsx?{query}"));
    let default_sort = if ["all", "reported", "closed"].contains(&q.view.as_str()) { "newest" } else { "time_left" };
    let sort = if q.sort.is_empty() { default_sort.to_string() } else { q.sort.clone() };
    let sorts: Vec<Choice> = SORTS.iter().map(|s| choice(*s, t(lang, &format!("ticket.sort.{s}")))).collect();
    let states: Vec<Choice> = TicketState::ALL.iter().map(|s| choice(s.as_str(), lang.pick(s.label()))).collect();
    let html = render(
        state,
        "tickets.html",
        lang,
        &p,
        crate::view! {
            cid,
            tabs,
            f => &q,
            sort,
            sorts,
            rows,
            next_href,
            export_href,
            query,
            saved,
            levels => lists.levels,
            systems => lists.systems,
            kinds => kinds(lang),
            states,
            channels => channels(lang),
            can_create => scope.permits(ContractPermission::TicketCreate),
            end_user => scope.role() == ContractRole::ClientEndUser,
        },
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
struct SaveFilterForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    query: String,
}

async fn save_filter(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<SaveFilterForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    // Only the list's own fields are kept, re-encoded.
    let parsed: ListQuery = serde_urlencoded::from_str(form.query.trim_start_matches('?')).unwrap_or_default();
    let query = parsed.query_string();
    match saved_filters::save(&state.db, &scope, &form.name, &query, state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}/tickets?{query}")).into_response()),
        Err(e) => {
            let status = status_of(&e);
            let msg = form_error(ui.ctx.lang, e)?;
            list_view(&state, &ui, &scope, parsed, Some(msg), status).await
        }
    }
}

async fn delete_filter(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, fid)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    saved_filters::delete(&state.db, &scope, fid, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/c/{cid}/tickets")).into_response())
}

// ---------------------------------------------------------------------------------------------
// Intake

/// The intake form as typed (the desk's full form; the portal form uses a part of it).
#[derive(Deserialize, Serialize, Default, Clone)]
struct NewForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    incident_class: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    reporter_user_id: String,
    #[serde(default)]
    reporter_name: String,
    #[serde(default)]
    reporter_contact: String,
    #[serde(default)]
    system_name: String,
    #[serde(default)]
    asset_ref: String,
    #[serde(default)]
    received_at: String,
    #[serde(default)]
    dispatch_to: String,
}

#[derive(Serialize)]
struct MemberOption {
    id: i64,
    label: String,
}

async fn new_form(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::TicketCreate)?;
    let form = NewForm { kind: "fault".into(), channel: "phone".into(), ..Default::default() };
    intake_form(&state, &ui, &scope, form, None, StatusCode::OK).await
}

async fn intake_form(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    mut form: NewForm,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let portal = scope.role().is_client_side();
    let lists = contract_lists(state, cid).await?;
    let no_rules = lists.is_none();
    let lists = lists.unwrap_or_default();
    if form.level.is_empty() {
        form.level = lists.levels.last().map(|l| l.value.clone()).unwrap_or_default();
    }
    let (members, vendors) = if !portal && scope.permits(ContractPermission::MemberRead) {
        let all = contracts::members(&state.db, scope).await?;
        let label = |m: &contracts::Member| format!("{} · {}", m.display_name, lang.pick(m.role.label()));
        // Callers are usually the client's people: list them first.
        let mut members: Vec<&contracts::Member> = all.iter().collect();
        members.sort_by_key(|m| !m.role.is_client_side());
        (
            members.iter().map(|m| MemberOption { id: m.user_id, label: label(m) }).collect::<Vec<_>>(),
            all.iter()
                .filter(|m| !m.role.is_client_side())
                .map(|m| MemberOption { id: m.user_id, label: label(m) })
                .collect::<Vec<_>>(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let may_dispatch =
        matches!(scope.role(), ContractRole::ServiceDesk | ContractRole::ProjectManager | ContractRole::BacklineExpert);
    let mut p = page_in(state, ui, &format!("/c/{cid}/tickets/new"), Some(cid)).await?;
    if let Some(e) = error {
        p = p.flash("error", e);
    } else if no_rules {
        p = p.flash("warn", t(lang, "ticket.no_rules"));
    }
    let html = render(
        state,
        "ticket_new.html",
        lang,
        &p,
        crate::view! {
            cid,
            f => form,
            portal,
            no_rules,
            levels => lists.levels,
            classes => lists.classes,
            systems => lists.systems,
            kinds => kinds(lang),
            channels => channels(lang),
            members,
            vendors => if may_dispatch { vendors } else { Vec::new() },
        },
    )?;
    Ok((status, html).into_response())
}

async fn create(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<NewForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::TicketCreate)?;
    let lang = ui.ctx.lang;
    let now = state.now_ms();
    let portal = scope.role().is_client_side();
    let received_at = match form.received_at.trim() {
        "" => None,
        s => match parse_local_datetime(s) {
            Some(ms) => Some(ms),
            None => {
                let msg = t(lang, "ticket.bad_time");
                return intake_form(&state, &ui, &scope, form, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await;
            }
        },
    };
    let input = if portal {
        // The portal: a fault at the contract's least urgent level, reported on the web by the
        // caller (storage records an end user as their own reporter).
        let level = contract_lists(&state, cid)
            .await?
            .and_then(|l| l.levels.last().map(|c| c.value.clone()))
            .unwrap_or_default();
        NewTicket {
            kind: "fault".into(),
            level,
            title: form.title.clone(),
            description: form.description.clone(),
            channel: "web".into(),
            reporter_contact: form.reporter_contact.clone(),
            system_name: form.system_name.clone(),
            received_at: None,
            ..Default::default()
        }
    } else {
        NewTicket {
            kind: form.kind.clone(),
            level: form.level.clone(),
            incident_class: form.incident_class.clone(),
            title: form.title.clone(),
            description: form.description.clone(),
            channel: form.channel.clone(),
            reporter_user_id: form.reporter_user_id.trim().parse().ok(),
            reporter_name: form.reporter_name.clone(),
            reporter_contact: form.reporter_contact.clone(),
            system_name: form.system_name.clone(),
            asset_ref: form.asset_ref.clone(),
            received_at,
            source_key: None,
        }
    };
    let intake = match tickets::create(&state.db, &scope, &input, now).await {
        Ok(i) => i,
        Err(e) => {
            let status = status_of(&e);
            let msg = form_error(lang, e)?;
            return intake_form(&state, &ui, &scope, form, Some(msg), status).await;
        }
    };
    let id = intake.ticket.id;
    // Logged and dispatched in one submit (SD2: record and dispatch within 10 minutes).
    if !portal && let Ok(assignee) = form.dispatch_to.trim().parse::<i64>() {
        let step = ActionInput {
            action: "dispatch".into(),
            version: intake.ticket.version,
            assignee_user_id: Some(assignee),
            ..Default::default()
        };
        if let Err(e) = tickets::act(&state.db, &scope, id, &step, now).await {
            let msg = format!("{}{}", t(lang, "ticket.created_not_dispatched"), form_error(lang, e)?);
            return ticket_view(&state, &ui, &scope, id, Some(msg), StatusCode::OK).await;
        }
    }
    Ok(Redirect::to(&format!("/c/{cid}/tickets/{id}")).into_response())
}

// ---------------------------------------------------------------------------------------------
// The ticket page

#[derive(Serialize)]
struct ClockRow {
    label: String,
    phase: &'static str,
    phase_label: String,
    target: String,
    started_at: Option<i64>,
    stopped_at: Option<i64>,
    due_at: Option<i64>,
    used: String,
    left: String,
    paused: Vec<PauseRow>,
}

#[derive(Serialize)]
struct PauseRow {
    from: i64,
    to: Option<i64>,
}

#[derive(Serialize)]
struct ActionButton {
    action: &'static str,
    label: String,
    confirm: Option<String>,
}

#[derive(Serialize)]
struct EventRow {
    at: i64,
    actor: String,
    label: String,
    detail: String,
}

#[derive(Serialize)]
struct NoticeRow {
    key: String,
    label: String,
    due_at: i64,
    fired_at: i64,
}

#[derive(Serialize)]
struct LinkRow {
    ticket_id: i64,
    number: String,
    title: String,
    state_label: String,
    relation: String,
}

fn event_label(lang: Lang, action: &str) -> String {
    match Action::parse(action) {
        Some(a) => lang.pick(a.label()).to_string(),
        None if EVENT_KINDS.contains(&action) => t(lang, &format!("ticket.event.{action}")),
        None => action.to_string(),
    }
}

async fn ticket_view(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    id: i64,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let lang = ui.ctx.lang;
    let cid = scope.contract_id();
    let now = state.now_ms();
    let d = tickets::detail(&state.db, scope, id, now).await?;
    let tk: &Ticket = &d.ticket;
    let can_work = scope.permits(ContractPermission::TicketWork);
    let vendor = !scope.role().is_client_side();
    let clocks: Vec<ClockRow> = d
        .clocks
        .iter()
        // A clock that has not started and has no target for this level says nothing yet.
        .filter(|c| !(c.phase == "not_started" && c.target_ms.is_none()))
        .map(|c| {
            let label = if lang == Lang::En || c.description.is_empty() {
                c.name.replace('_', " ")
            } else {
                c.description.clone()
            };
            let left = match (c.phase, c.left_ms, c.breached_by_ms) {
                ("breached", _, Some(by)) => time_left(lang, -by, true),
                ("met", _, _) => String::new(),
                (_, Some(ms), _) => time_left(lang, ms, false),
                _ => String::new(),
            };
            ClockRow {
                label,
                phase: c.phase,
                phase_label: if PHASES.contains(&c.phase) {
                    t(lang, &format!("ticket.phase.{}", c.phase))
                } else {
                    c.phase.to_string()
                },
                target: c.target_ms.map(|ms| duration_label(lang, ms)).unwrap_or_default(),
                started_at: c.started_at,
                stopped_at: c.stopped_at,
                due_at: c.due_at,
                used: human_span(lang, c.used_ms),
                left,
                paused: c.paused.iter().map(|(from, to)| PauseRow { from: *from, to: *to }).collect(),
            }
        })
        .collect();
    let mut actions = Vec::new();
    let (mut dispatch, mut confirm) = (false, false);
    for a in &d.actions {
        match *a {
            "dispatch" => dispatch = true,
            "confirm" => confirm = true,
            other => {
                let Some(action) = Action::parse(other) else { continue };
                let confirm = matches!(action, Action::Cancel | Action::RejectRequest)
                    .then(|| t(lang, "ticket.confirm_step").replace("{step}", lang.pick(action.label())));
                actions.push(ActionButton {
                    action: action.as_str(),
                    label: lang.pick(action.label()).into(),
                    confirm,
                });
            }
        }
    }
    let suggestions: Vec<MemberOption> = if dispatch && can_work {
        tickets::suggestions(&state.db, scope, id, now)
            .await?
            .into_iter()
            .map(|s| {
                let role = ContractRole::parse(&s.role).map(|r| lang.pick(r.label())).unwrap_or_default();
                let load = t(lang, "ticket.suggestion")
                    .replace("{same}", &s.same_system.to_string())
                    .replace("{open}", &s.open.to_string());
                MemberOption { id: s.user_id, label: format!("{} · {role} {load}", s.name) }
            })
            .collect()
    } else {
        Vec::new()
    };
    let lists = if can_work && tk.is_open { contract_lists(state, cid).await? } else { None };
    let (levels, classes, mut systems) = match lists {
        Some(l) => (l.levels, l.classes, l.systems),
        None => Default::default(),
    };
    if !tk.system_name.is_empty() && !systems.contains(&tk.system_name) {
        systems.insert(0, tk.system_name.clone());
    }
    let events: Vec<EventRow> = d
        .events
        .iter()
        .map(|e| EventRow {
            at: e.at,
            actor: e.actor_name.clone(),
            label: event_label(lang, &e.action),
            detail: e.detail.clone(),
        })
        .collect();
    let notices: Vec<NoticeRow> = d
        .notices
        .iter()
        .map(|n| NoticeRow {
            key: n.key.clone(),
            label: if NOTICE_KINDS.contains(&n.kind.as_str()) {
                t(lang, &format!("ticket.notice.{}", n.kind))
            } else {
                n.kind.clone()
            },
            due_at: n.due_at,
            fired_at: n.fired_at,
        })
        .collect();
    let links: Vec<LinkRow> = d
        .links
        .iter()
        .map(|l| LinkRow {
            ticket_id: l.ticket_id,
            number: l.number.clone(),
            title: l.title.clone(),
            state_label: state_label(lang, &l.state),
            relation: if RELATIONS.contains(&l.relation.as_str()) {
                t(lang, &format!("ticket.relation.{}", l.relation))
            } else {
                l.relation.clone()
            },
        })
        .collect();
    let relations: Vec<Choice> =
        LINKABLE.iter().map(|r| choice(*r, t(lang, &format!("ticket.relation.{r}")))).collect();
    let show_analysis_form = can_work && tk.is_open && (d.analysis_required || tk.kind() == Kind::Fault);
    let show_summary_form = can_work && d.summary_due && tk.summary_at.is_none();
    let analysis_missing = d.analysis_required && tk.analysis_at.is_none();
    let mut p = page_in(state, ui, &format!("/c/{cid}/tickets"), Some(cid)).await?;
    if let Some(e) = error {
        p = p.flash("error", e);
    }
    let html = render(
        state,
        "ticket.html",
        lang,
        &p,
        crate::view! {
            cid,
            tk,
            kind_label => kind_label(lang, &tk.kind),
            state_label => state_label(lang, &tk.state),
            channel_label => channel_label(lang, &tk.channel),
            clocks,
            actions,
            dispatch,
            confirm,
            suggestions,
            can_work,
            vendor,
            levels,
            classes,
            systems,
            events,
            notices,
            comments => &d.comments,
            attachments => &d.attachments,
            work => &d.work,
            links,
            relations,
            show_analysis_form,
            show_summary_form,
            analysis_missing,
            upload_url => format!("/api/v1/contracts/{cid}/tickets/{id}/attachments"),
            ratings => [5, 4, 3, 2, 1],
        },
    )?;
    Ok((status, html).into_response())
}

async fn ticket_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    remember_contract(&state, &ui, cid).await?;
    ticket_view(&state, &ui, &scope, id, None, StatusCode::OK).await
}

/// After a form on the ticket page: back to the page, or the page again with the refusal above it.
async fn done<T>(
    state: &AppState,
    ui: &UiUser,
    scope: &ContractScope,
    id: i64,
    result: Result<T, StoreError>,
) -> Result<Response, AppError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/c/{}/tickets/{id}", scope.contract_id())).into_response()),
        Err(e) => {
            let status = status_of(&e);
            let msg = form_error(ui.ctx.lang, e)?;
            ticket_view(state, ui, scope, id, Some(msg), status).await
        }
    }
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    action: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    internal: Option<String>,
    #[serde(default)]
    assignee_user_id: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    rating: String,
    #[serde(default)]
    rating_comment: String,
}

async fn act(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<ActForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let input = ActionInput {
        action: f.action,
        version: f.version,
        assignee_user_id: f.assignee_user_id.trim().parse().ok(),
        team: opt(&f.team),
        comment: f.comment,
        internal: f.internal.is_some(),
        rating: f.rating.trim().parse().ok(),
        rating_comment: f.rating_comment,
    };
    let r = tickets::act(&state.db, &scope, id, &input, state.now_ms()).await;
    done(&state, &ui, &scope, id, r).await
}

#[derive(Deserialize)]
struct EditForm {
    #[serde(default)]
    version: i64,
    title: Option<String>,
    level: Option<String>,
    incident_class: Option<String>,
    system_name: Option<String>,
}

async fn edit(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<EditForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let e = TicketEdit {
        version: f.version,
        title: f.title,
        level: f.level,
        incident_class: f.incident_class,
        system_name: f.system_name,
        ..Default::default()
    };
    let r = tickets::edit(&state.db, &scope, id, &e, state.now_ms()).await;
    done(&state, &ui, &scope, id, r).await
}

#[derive(Deserialize)]
struct CommentForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    internal: Option<String>,
}

async fn comment(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<CommentForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = tickets::comment(&state.db, &scope, id, &f.body, f.internal.is_some(), "web", state.now_ms()).await;
    done(&state, &ui, &scope, id, r).await
}

#[derive(Deserialize)]
struct AnalysisForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    process: String,
    #[serde(default)]
    impact: String,
    #[serde(default)]
    recommendation: String,
}

async fn analysis(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<AnalysisForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let input = AnalysisInput {
        version: f.version,
        analysis: tickets::Analysis {
            cause: f.cause,
            process: f.process,
            impact: f.impact,
            recommendation: f.recommendation,
        },
    };
    let r = tickets::record_analysis(&state.db, &scope, id, &input, state.now_ms()).await;
    done(&state, &ui, &scope, id, r).await
}

#[derive(Deserialize)]
struct SummaryForm {
    #[serde(default)]
    version: i64,
    #[serde(default)]
    summary: String,
}

async fn summary(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<SummaryForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = tickets::submit_summary(&state.db, &scope, id, f.version, &f.summary, state.now_ms()).await;
    done(&state, &ui, &scope, id, r).await
}

#[derive(Deserialize)]
struct WorkForm {
    #[serde(default)]
    minutes: String,
    #[serde(default)]
    note: String,
}

async fn work(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<WorkForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    // A non-number is refused by storage's range check like any other wrong value.
    let minutes = f.minutes.trim().parse().unwrap_or(0);
    let r = tickets::log_work(&state.db, &scope, id, minutes, &f.note, state.now_ms()).await;
    done(&state, &ui, &scope, id, r).await
}

/// Another ticket named by its number ("CD-DCM-2022-000002") or its id.
async fn other_ticket(state: &AppState, scope: &ContractScope, s: &str) -> Result<i64, StoreError> {
    let s = s.trim();
    match tickets::get_by_number(&state.db, scope, s).await {
        Ok(t) => Ok(t.id),
        Err(StoreError::NotFound) => match s.parse::<i64>() {
            Ok(id) => Ok(tickets::get(&state.db, scope, id).await?.id),
            Err(_) => Err(StoreError::NotFound),
        },
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    other: String,
    #[serde(default)]
    relation: String,
}

async fn link(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<LinkForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = match other_ticket(&state, &scope, &f.other).await {
        Ok(other) => tickets::link(&state.db, &scope, id, other, &f.relation, state.now_ms()).await,
        Err(e) => Err(e),
    };
    done(&state, &ui, &scope, id, r).await
}

#[derive(Deserialize)]
struct MergeForm {
    #[serde(default)]
    into: String,
}

async fn merge(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(f): UiForm<MergeForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let r = match other_ticket(&state, &scope, &f.into).await {
        Ok(into) => tickets::merge(&state.db, &scope, id, into, state.now_ms()).await,
        Err(e) => Err(e),
    };
    match r {
        // The surviving ticket is where the work goes on.
        Ok(into) => Ok(Redirect::to(&format!("/c/{cid}/tickets/{}", into.id)).into_response()),
        Err(e) => done::<()>(&state, &ui, &scope, id, Err(e)).await,
    }
}

/// A page address for an attachment: the API's download (same session, same checks, and the
/// download headers of `api::tickets::attachment_response`: attachment disposition, nosniff, a
/// sandboxing CSP).
async fn file(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id, aid)): Path<(i64, i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    let dir = crate::api::tickets::attachments_dir(&state)?;
    let (a, bytes) = yunwei_storage::attachments::open(&state.db, &scope, dir, id, aid).await?;
    Ok(crate::api::tickets::attachment_response(&a.file_name, &a.mime, bytes))
}

// ---------------------------------------------------------------------------------------------
// Inbox

#[derive(Deserialize)]
struct InboxQuery {
    before: Option<i64>,
    #[serde(default)]
    unread: Option<String>,
}

#[derive(Serialize)]
struct InboxItem {
    id: i64,
    title: String,
    body: String,
    created_at: i64,
    read: bool,
    href: Option<String>,
    contract: String,
}

const INBOX_PAGE: i64 = 50;

async fn inbox_page(
    State(state): State<AppState>,
    ui: UiUser,
    Query(q): Query<InboxQuery>,
) -> Result<Response, AppError> {
    let principal = ui.principal();
    let unread_only = q.unread.as_deref().is_some_and(|v| !v.is_empty() && v != "0");
    let items = notifications::inbox(&state.db, &principal, unread_only, q.before, INBOX_PAGE).await?;
    let p = page(&state, &ui, "/inbox").await?;
    let names: std::collections::HashMap<i64, String> = p.contracts.iter().map(|c| (c.id, c.name.clone())).collect();
    let next_before = if items.len() as i64 == INBOX_PAGE { items.last().map(|n| n.id) } else { None };
    let items: Vec<InboxItem> = items
        .into_iter()
        .map(|n| InboxItem {
            id: n.id,
            href: n.ticket_id.map(|t| format!("/c/{}/tickets/{t}", n.contract_id)),
            contract: names.get(&n.contract_id).cloned().unwrap_or_default(),
            title: n.title,
            body: n.body,
            created_at: n.created_at,
            read: n.read_at.is_some(),
        })
        .collect();
    let unread = notifications::unread_count(&state.db, &principal).await?;
    let html = render(&state, "inbox.html", ui.ctx.lang, &p, crate::view! { items, unread, unread_only, next_before })?;
    Ok(html.into_response())
}

#[derive(Deserialize)]
struct ReadForm {
    #[serde(default)]
    id: Option<String>,
    /// Where to go afterwards: the notification's ticket, or back to the inbox.
    #[serde(default)]
    open: Option<String>,
}

async fn mark_read(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(f): UiForm<ReadForm>,
) -> Result<Response, AppError> {
    let id = f.id.as_deref().and_then(|v| v.trim().parse::<i64>().ok());
    notifications::mark_read(&state.db, &ui.principal(), id, state.now_ms()).await?;
    // Only our own ticket pages are followed, never any other address from the form.
    let next = f.open.filter(|o| is_ticket_path(o)).unwrap_or_else(|| "/inbox".into());
    Ok(Redirect::to(&next).into_response())
}

/// "/c/{cid}/tickets/{id}" and nothing else.
fn is_ticket_path(o: &str) -> bool {
    let parts: Vec<&str> = o.split('/').collect();
    parts.len() == 5
        && parts[0].is_empty()
        && parts[1] == "c"
        && parts[3] == "tickets"
        && parts[2].parse::<i64>().is_ok()
        && parts[4].parse::<i64>().is_ok()
}

// ---------------------------------------------------------------------------------------------
// Monthly statistics

#[derive(Deserialize)]
struct StatsQuery {
    #[serde(default)]
    month: String,
}

#[derive(Serialize)]
struct KindSystemRow {
    kind: String,
    system: String,
    count: i64,
}

fn month_shift(month: &str, by: i32) -> Option<String> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, i32) = (y.parse().ok()?, m.parse().ok()?);
    let n = y * 12 + (m - 1) + by;
    Some(format!("{}-{:02}", n.div_euclid(12), n.rem_euclid(12) + 1))
}

async fn stats_page(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::TicketReport)?;
    let lang = ui.ctx.lang;
    let month = if q.month.trim().is_empty() {
        let (y, m, _) = yunwei_core::calendar::civil_from_days(yunwei_core::calendar::local_day(state.now_ms()));
        format!("{y}-{m:02}")
    } else {
        q.month.trim().to_string()
    };
    let mut p = page_in(&state, &ui, &format!("/c/{cid}/tickets/stats"), Some(cid)).await?;
    let stats = match ticket_stats::month(&state.db, &scope, &month, state.now_ms()).await {
        Ok(s) => Some(s),
        Err(e) => {
            p = p.flash("error", form_error(lang, e)?);
            None
        }
    };
    let by_kind_system: Vec<KindSystemRow> = stats
        .as_ref()
        .map(|s| {
            s.by_kind_system
                .iter()
                .map(|r| KindSystemRow { kind: kind_label(lang, &r.kind), system: r.system.clone(), count: r.count })
                .collect()
        })
        .unwrap_or_default();
    let html = render(
        &state,
        "desk_stats.html",
        lang,
        &p,
        crate::view! {
            cid,
            prev => month_shift(&month, -1),
            next => month_shift(&month, 1),
            month,
            stats,
            by_kind_system,
        },
    )?;
    Ok(html.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_a_clock() {
        assert_eq!(human_span(Lang::Zh, 65 * MIN_MS), "1小时05分");
        assert_eq!(time_left(Lang::Zh, -12 * MIN_MS, true), "超时 12分");
        assert_eq!(human_span(Lang::En, 65 * MIN_MS + 30_000), "1 h 05 min");
        assert_eq!(human_span(Lang::Zh, (27 * 60) * MIN_MS), "1天3小时");
        assert_eq!(time_left(Lang::En, -5 * MIN_MS, true), "overdue 5 min");
    }

    #[test]
    fn datetime_local_is_shanghai_time() {
        // 2022-03-01 10:00 in Shanghai is 02:00 UTC.
        assert_eq!(parse_local_datetime("2022-03-01T10:00"), Some(1_646_100_000_000));
        assert_eq!(parse_local_datetime("2022-03-01T24:00"), None);
        assert_eq!(parse_local_datetime("yesterday"), None);
    }

    #[test]
    fn months_roll_over_years() {
        assert_eq!(month_shift("2022-01", -1).as_deref(), Some("2021-12"));
        assert_eq!(month_shift("2022-12", 1).as_deref(), Some("2023-01"));
    }

    #[test]
    fn only_ticket_pages_are_followed() {
        assert!(is_ticket_path("/c/1/tickets/2"));
        assert!(!is_ticket_path("//evil.example/c/1/tickets/2"));
        assert!(!is_ticket_path("/c/1/tickets/2/../../x"));
        assert!(!is_ticket_path("https://evil.example/"));
    }

    #[test]
    fn list_queries_keep_only_what_is_set() {
        let q = ListQuery { view: "open".into(), q: "数据库".into(), cursor: "5".into(), ..Default::default() };
        assert_eq!(q.query_string(), "view=open&q=%E6%95%B0%E6%8D%AE%E5%BA%93");
    }
}
