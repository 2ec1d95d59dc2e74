//! Home, the contract switcher, the contract overview and its sites.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::ContractPermission;
use yunwei_storage::sites::{self, SiteInput};
use yunwei_storage::{ContractScope, contracts as store};

use super::{ADMIN_LINKS, UiForm, page, render};
use crate::AppState;
use crate::auth::UiUser;
use crate::error::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/contracts/switch", post(switch))
        .route("/c/{cid}", get(overview))
        .route("/c/{cid}/calendar", get(calendar_month))
        .route("/c/{cid}/sites/new", get(new_site))
        .route("/c/{cid}/sites", post(create_site))
        .route("/c/{cid}/sites/{id}", get(edit_site).post(update_site))
        .route("/c/{cid}/sites/{id}/delete", post(delete_site))
}

#[derive(Serialize)]
struct ContractRow {
    id: i64,
    code: String,
    name: String,
    client_name: String,
    starts_on: String,
    ends_on: String,
    role_label: String,
}

#[derive(Serialize)]
struct Link {
    href: &'static str,
    key: &'static str,
}

async fn home(State(state): State<AppState>, ui: UiUser) -> Result<Response, AppError> {
    let p = page(&state, &ui, "/").await?;
    let lang = ui.ctx.lang;
    let admin_links: Vec<Link> = match ui.session.user.admin_role {
        Some(role) => {
            let mut seen = Vec::new();
            ADMIN_LINKS
                .iter()
                .filter(|(perm, href, _)| {
                    role.permits(*perm) && !seen.contains(href) && {
                        seen.push(*href);
                        true
                    }
                })
                .map(|(_, href, key)| Link { href, key })
                .collect()
        }
        None => Vec::new(),
    };
    let contracts: Vec<ContractRow> = store::list_mine(&state.db, &ui.principal(), None, 500)
        .await?
        .into_iter()
        .map(|m| ContractRow {
            id: m.contract.id,
            code: m.contract.code,
            name: m.contract.name,
            client_name: m.contract.client_name,
            starts_on: m.contract.starts_on,
            ends_on: m.contract.ends_on,
            role_label: lang.pick(m.role.label()).to_string(),
        })
        .collect();
    Ok(render(&state, "home.html", lang, &p, crate::view! { contracts, admin_links })?.into_response())
}

#[derive(Deserialize)]
struct SwitchForm {
    contract_id: i64,
}

async fn switch(
    State(state): State<AppState>,
    ui: UiUser,
    UiForm(form): UiForm<SwitchForm>,
) -> Result<Response, AppError> {
    // Membership is checked before the choice is remembered.
    let scope = ui.principal().contract_scope(&state.db, form.contract_id).await?;
    yunwei_storage::sessions::set_active_contract(&state.db, &ui.session.token_hash, Some(scope.contract_id())).await?;
    Ok(Redirect::to(&format!("/c/{}", scope.contract_id())).into_response())
}

#[derive(Serialize)]
struct MemberRow {
    login: String,
    display_name: String,
    role_label: String,
}

async fn scope_of(state: &AppState, ui: &UiUser, cid: i64) -> Result<ContractScope, AppError> {
    Ok(ui.principal().contract_scope(&state.db, cid).await?)
}

async fn overview(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    if ui.session.active_contract_id != Some(cid) {
        yunwei_storage::sessions::set_active_contract(&state.db, &ui.session.token_hash, Some(cid)).await?;
    }
    let lang = ui.ctx.lang;
    let contract = store::get(&state.db, &scope).await?;
    let sites = if scope.permits(ContractPermission::SiteRead) {
        Some(sites::list(&state.db, &scope, None, 500).await?)
    } else {
        None
    };
    let members = if scope.permits(ContractPermission::MemberRead) {
        Some(
            store::members(&state.db, &scope)
                .await?
                .into_iter()
                .map(|m| MemberRow {
                    login: m.login,
                    display_name: m.display_name,
                    role_label: lang.pick(m.role.label()).to_string(),
                })
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let sla = sla_view(&state, &scope, lang).await?;
    let versions = yunwei_storage::contract_files::versions(&state.db, &scope).await?;
    let mut p = page(&state, &ui, "").await?;
    p.active_contract_id = Some(cid);
    Ok(render(
        &state,
        "contract.html",
        lang,
        &p,
        crate::view! {
            contract,
            sites,
            members,
            role_label => lang.pick(scope.role().label()),
            can_write_sites => scope.permits(ContractPermission::SiteWrite),
            sla,
            versions,
        },
    )?
    .into_response())
}

#[derive(Serialize)]
struct SlaView {
    version: i64,
    clocks: Vec<ClockHead>,
    levels: Vec<LevelRow>,
    calendars: Vec<CalendarRow>,
    escalation: Vec<String>,
}

#[derive(Serialize)]
struct ClockHead {
    label: String,
    calendar: String,
    pausable: bool,
}

#[derive(Serialize)]
struct LevelRow {
    name: String,
    description: String,
    targets: Vec<String>,
    progress: String,
}

#[derive(Serialize)]
struct CalendarRow {
    name: String,
    description: String,
    hours: String,
}

/// The contract's service levels, clocks and calendars in plain words, from its current file.
async fn sla_view(
    state: &AppState,
    scope: &ContractScope,
    lang: crate::i18n::Lang,
) -> Result<Option<SlaView>, AppError> {
    use yunwei_core::contract::{check, human_duration, parse_duration, summary_lines};
    let Some((version, source)) = yunwei_storage::contract_files::current(&state.db, scope).await? else {
        return Ok(None);
    };
    let Ok(c) = check(source.as_bytes()) else {
        tracing::warn!(contract = scope.contract_id(), "stored contract file no longer checks");
        return Ok(None);
    };
    let human = |ms: i64| {
        let (zh, en) = human_duration(ms);
        if lang == crate::i18n::Lang::En { en } else { zh }
    };
    let clocks: Vec<ClockHead> = c
        .clocks
        .iter()
        .map(|(rule, cal)| {
            let def = c.file.clocks.iter().find(|d| d.name.get_ref() == &rule.name);
            let zh = def.map(|d| d.description.clone()).filter(|d| !d.is_empty()).unwrap_or_else(|| rule.name.clone());
            let label = if lang == crate::i18n::Lang::En { rule.name.replace('_', " ") } else { zh };
            ClockHead { label, calendar: cal.clone(), pausable: rule.pausable }
        })
        .collect();
    let levels = c
        .file
        .levels
        .iter()
        .map(|l| {
            let name = l.name.get_ref().clone();
            LevelRow {
                targets: c
                    .clocks
                    .iter()
                    .map(|(rule, _)| rule.targets.get(&name).map(|ms| human(*ms)).unwrap_or_else(|| "—".into()))
                    .collect(),
                progress: l
                    .progress_every
                    .as_ref()
                    .and_then(|p| parse_duration(p.get_ref()))
                    .map(human)
                    .unwrap_or_default(),
                description: l.description.clone(),
                name,
            }
        })
        .collect();
    let lines = summary_lines(&c);
    let calendars = c
        .file
        .calendars
        .iter()
        .map(|(name, def)| CalendarRow {
            name: name.clone(),
            description: def.get_ref().description.clone(),
            hours: lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("日历 calendar {name}: ")).map(str::to_string))
                .unwrap_or_default(),
        })
        .collect();
    let escalation = lines.iter().filter_map(|l| l.strip_prefix("升级 escalation ").map(str::to_string)).collect();
    Ok(Some(SlaView { version, clocks, levels, calendars, escalation }))
}

#[derive(Deserialize)]
struct MonthQuery {
    name: Option<String>,
    /// YYYY-MM
    month: Option<String>,
}

#[derive(Serialize)]
struct DayCell {
    day: u32,
    hours: String,
    holiday: Option<String>,
    working: bool,
}

/// A month of one service calendar: how many hours each day is served, with holidays and make-up
/// workdays named.
async fn calendar_month(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    Query(q): Query<MonthQuery>,
) -> Result<Response, AppError> {
    use yunwei_core::calendar::{DayKind, Span, civil_from_days, day_start_utc, days_from_civil, weekday};
    let scope = scope_of(&state, &ui, cid).await?;
    let Some((_, source)) = yunwei_storage::contract_files::current(&state.db, &scope).await? else {
        return Err(AppError::not_found());
    };
    let c = yunwei_core::contract::check(source.as_bytes()).map_err(|_| AppError::not_found())?;
    let names: Vec<String> = c.calendars.keys().cloned().collect();
    let name = q
        .name
        .filter(|n| c.calendars.contains_key(n))
        .or_else(|| names.first().cloned())
        .ok_or_else(AppError::not_found)?;
    let cal = &c.calendars[&name];
    let today = civil_from_days(yunwei_core::calendar::local_day(state.now_ms()));
    let (year, month) = q
        .month
        .as_deref()
        .and_then(|m| {
            let (y, mo) = m.split_once('-')?;
            let (y, mo): (i32, u32) = (y.parse().ok()?, mo.parse().ok()?);
            ((1990..=2200).contains(&y) && (1..=12).contains(&mo)).then_some((y, mo))
        })
        .unwrap_or((today.0, today.1));
    let holidays = yunwei_storage::holidays::table(&state.db).await?;
    let first = days_from_civil(year, month, 1);
    let next = if month == 12 { days_from_civil(year + 1, 1, 1) } else { days_from_civil(year, month + 1, 1) };
    let mut span = Span::default();
    let mut weeks: Vec<Vec<Option<DayCell>>> = Vec::new();
    let mut week: Vec<Option<DayCell>> = (0..weekday(first)).map(|_| None).collect();
    for d in first..next {
        let start = day_start_utc(d);
        let ms = cal.business_between(start, start + yunwei_core::calendar::MS_PER_DAY, &holidays, &mut span);
        let (kind, _) = holidays.day_kind(d);
        week.push(Some(DayCell {
            day: civil_from_days(d).2,
            hours: if ms == 0 { String::new() } else { format!("{:.1} h", ms as f64 / 3_600_000.0) },
            holiday: holidays.name(d).map(str::to_string),
            working: kind == DayKind::Working,
        }));
        if week.len() == 7 {
            weeks.push(std::mem::take(&mut week));
        }
    }
    if !week.is_empty() {
        week.resize_with(7, || None);
        weeks.push(week);
    }
    if !holidays.has_year(year) {
        span.missing_years.insert(year);
    }
    let prev = if month == 1 { format!("{}-12", year - 1) } else { format!("{year}-{:02}", month - 1) };
    let next_m = if month == 12 { format!("{}-01", year + 1) } else { format!("{year}-{:02}", month + 1) };
    let p = page(&state, &ui, "").await?;
    Ok(render(
        &state,
        "calendar_month.html",
        ui.ctx.lang,
        &p,
        crate::view! {
            contract_id => cid,
            name,
            names,
            title => format!("{year}-{month:02}"),
            prev,
            next => next_m,
            weeks,
            missing => span.missing_years.into_iter().collect::<Vec<_>>(),
        },
    )?
    .into_response())
}

#[derive(Serialize, Default)]
struct SiteView {
    id: Option<i64>,
    name: String,
    kind: String,
    address: String,
    notes: String,
    version: i64,
}

async fn site_form(
    state: &AppState,
    ui: &UiUser,
    cid: i64,
    site: SiteView,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let p = page(state, ui, "").await?;
    let html = render(
        state,
        "site_form.html",
        ui.ctx.lang,
        &p,
        crate::view! { contract_id => cid, site, kinds => sites::KINDS, error, csrf => ui.session.csrf_token.clone() },
    )?;
    Ok((status, html).into_response())
}

async fn new_site(State(state): State<AppState>, ui: UiUser, Path(cid): Path<i64>) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::SiteWrite)?;
    site_form(&state, &ui, cid, SiteView { kind: "machine_room".into(), ..Default::default() }, None, StatusCode::OK)
        .await
}

#[derive(Deserialize)]
struct SiteForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    version: i64,
}

impl SiteForm {
    fn input(&self) -> SiteInput {
        SiteInput {
            name: self.name.clone(),
            kind: self.kind.clone(),
            address: self.address.clone(),
            notes: self.notes.clone(),
        }
    }

    fn view(&self, id: Option<i64>) -> SiteView {
        SiteView {
            id,
            name: self.name.clone(),
            kind: self.kind.clone(),
            address: self.address.clone(),
            notes: self.notes.clone(),
            version: self.version,
        }
    }
}

async fn create_site(
    State(state): State<AppState>,
    ui: UiUser,
    Path(cid): Path<i64>,
    UiForm(form): UiForm<SiteForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match sites::create(&state.db, &scope, &form.input(), state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}")).into_response()),
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            site_form(&state, &ui, cid, form.view(None), Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

async fn edit_site(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    scope.require(ContractPermission::SiteWrite)?;
    let s = sites::get(&state.db, &scope, id).await?;
    let view =
        SiteView { id: Some(s.id), name: s.name, kind: s.kind, address: s.address, notes: s.notes, version: s.version };
    site_form(&state, &ui, cid, view, None, StatusCode::OK).await
}

async fn update_site(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
    UiForm(form): UiForm<SiteForm>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    match sites::update(&state.db, &scope, id, form.version, &form.input(), state.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/c/{cid}")).into_response()),
        Err(yunwei_storage::StoreError::NotFound) => Err(AppError::not_found()),
        Err(e) => {
            let msg = super::form_error(ui.ctx.lang, e)?;
            site_form(&state, &ui, cid, form.view(Some(id)), Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await
        }
    }
}

async fn delete_site(
    State(state): State<AppState>,
    ui: UiUser,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<Response, AppError> {
    let scope = scope_of(&state, &ui, cid).await?;
    sites::delete(&state.db, &scope, id, state.now_ms()).await?;
    Ok(Redirect::to(&format!("/c/{cid}")).into_response())
}
