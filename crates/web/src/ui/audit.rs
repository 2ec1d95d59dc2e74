//! The audit admin's pages: filter, page through, verify and export the log.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use yunwei_core::authz::AdminPermission;
use yunwei_storage::audit::{self, AuditFilter, AuditRecord};
use yunwei_storage::{AdminScope, audit::AuditEntry};

use super::{page, render};
use crate::AppState;
use crate::auth::UiUser;
use crate::error::AppError;
use crate::i18n::{Lang, t};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/audit/verify", post(verify))
        .route("/audit/export.csv", get(export))
}

const PAGE_SIZE: i64 = 100;

/// Filter fields as typed in the form (dates are Shanghai calendar days).
#[derive(Deserialize, Serialize, Default, Clone)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    before: Option<i64>,
}

/// Start of a Shanghai calendar day in UTC epoch ms.
fn day_start_ms(date: &str) -> Option<i64> {
    yunwei_core::calendar::parse_date(date.trim()).map(yunwei_core::calendar::day_start_utc)
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            from_ms: day_start_ms(&self.from),
            // "to" is inclusive: up to the start of the next day.
            to_ms: day_start_ms(&self.to).map(|ms| ms + 86_400_000),
            username: Some(self.username.clone()),
            action_prefix: Some(self.action.clone()),
            contract_id: None,
            result: Some(self.result.clone()),
        }
    }

    fn query_string(&self) -> String {
        let without_page = AuditQuery { before: None, ..self.clone() };
        serde_urlencoded::to_string(&without_page).unwrap_or_default()
    }
}

fn scope(ui: &UiUser, p: AdminPermission) -> Result<AdminScope, AppError> {
    Ok(ui.principal().admin_scope(p)?)
}

#[derive(Serialize)]
struct VerifyView {
    ok: bool,
    message: String,
}

async fn audit_page(
    State(state): State<AppState>,
    ui: UiUser,
    Query(q): Query<AuditQuery>,
) -> Result<Response, AppError> {
    render_page(&state, &ui, q, None).await
}

async fn render_page(
    state: &AppState,
    ui: &UiUser,
    q: AuditQuery,
    verify: Option<VerifyView>,
) -> Result<Response, AppError> {
    let s = scope(ui, AdminPermission::AuditRead)?;
    let records = audit::list(&state.db, &s, &q.filter(), q.before, PAGE_SIZE).await?;
    let next_before = if records.len() as i64 == PAGE_SIZE { records.last().map(|r| r.seq) } else { None };
    let p = page(state, ui, "/audit").await?;
    let html = render(
        state,
        "audit.html",
        ui.ctx.lang,
        &p,
        crate::view! { records, next_before, query => q.query_string(), f => q, verify, csrf => ui.session.csrf_token.clone() },
    )?;
    Ok(html.into_response())
}

fn verify_message(lang: Lang, report: &audit::VerifyReport) -> VerifyView {
    match &report.first_broken {
        None => {
            VerifyView { ok: true, message: t(lang, "audit.verify_ok").replace("{n}", &report.checked.to_string()) }
        }
        Some((seq, why)) => VerifyView {
            ok: false,
            message: format!("{}: {why}", t(lang, "audit.verify_broken").replace("{seq}", &seq.to_string())),
        },
    }
}

async fn verify(State(state): State<AppState>, ui: UiUser) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::AuditVerify)?;
    let report = audit::verify(&state.db).await?;
    let result = if report.first_broken.is_none() {
        yunwei_storage::audit::AuditResult::Ok
    } else {
        yunwei_storage::audit::AuditResult::Failed
    };
    state
        .db
        .audit_event(
            state.now_ms(),
            AuditEntry::new(s.actor(), "audit.verify", "audit_log")
                .result(result)
                .detail(format!("checked={}", report.checked)),
        )
        .await?;
    let v = verify_message(ui.ctx.lang, &report);
    render_page(&state, &ui, AuditQuery::default(), Some(v)).await
}

/// CSV with a UTF-8 byte-order mark so that Excel opens the Chinese text correctly. Cells that a
/// spreadsheet would read as a formula are prefixed with an apostrophe (CSV injection).
pub(crate) fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::from(
        "\u{feff}seq,time_utc_ms,time_shanghai,username,source_ip,contract_id,action,object,result,detail,prev_hash,hash\r\n",
    );
    for r in records {
        let cells = [
            r.seq.to_string(),
            r.at_ms.to_string(),
            crate::templates::format_ms(Some(r.at_ms), "[year]-[month]-[day] [hour]:[minute]:[second]"),
            r.username.clone(),
            r.source_ip.clone(),
            r.contract_id.map(|c| c.to_string()).unwrap_or_default(),
            r.action.clone(),
            r.object.clone(),
            r.result.clone(),
            r.detail.clone(),
            r.prev_hash.clone(),
            r.hash.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

async fn export(State(state): State<AppState>, ui: UiUser, Query(q): Query<AuditQuery>) -> Result<Response, AppError> {
    let s = scope(&ui, AdminPermission::AuditExport)?;
    let records = audit::list(&state.db, &s, &q.filter(), None, 10_000).await?;
    state
        .db
        .audit_event(
            state.now_ms(),
            AuditEntry::new(s.actor(), "audit.export", "audit_log").detail(format!(
                "records={} filter={}",
                records.len(),
                q.query_string()
            )),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"yunwei-audit.csv\""),
        ],
        to_csv(&records),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_neutralises_formulas_and_quotes() {
        assert_eq!(super::csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(super::csv_cell("a,b"), "\"a,b\"");
        assert_eq!(super::csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::csv_cell("x\"y,z"), "\"x\"\"y,z\"");
        assert_eq!(super::day_start_ms("2026-01-01"), Some(1_767_196_800_000));
    }
}
