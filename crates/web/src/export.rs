//! Excel exports of lists: the same filters as the list on screen, written by `yunwei-reports`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use yunwei_reports::{Cell, Table};
use yunwei_storage::ContractScope;
use yunwei_storage::tickets::{self, TicketFilter};

use crate::AppState;
use crate::error::AppError;

/// Largest export: beyond this, narrow the filter (the workbook is built in memory).
const MAX_ROWS: usize = 100_000;

pub(crate) async fn tickets_xlsx(
    state: &AppState,
    scope: &ContractScope,
    mut f: TicketFilter,
) -> Result<Vec<u8>, AppError> {
    scope.require(yunwei_core::authz::ContractPermission::TicketReport)?;
    let headers = [
        "工单号",
        "类型",
        "级别",
        "状态",
        "标题",
        "系统",
        "渠道",
        "报告人",
        "受理时间",
        "处理人",
        "剩余时限(分钟)",
        "是否超时",
        "解决时间",
        "结案时间",
        "满意度",
        "工时(分钟)",
    ];
    let mut rows = Vec::new();
    f.limit = Some(500);
    f.cursor = None;
    let now = state.now_ms();
    loop {
        let page = tickets::list(&state.db, scope, &f, now).await?;
        for r in &page.rows {
            let t = &r.ticket;
            let opt_time = |v: Option<i64>| v.map(Cell::DateTime).unwrap_or(Cell::Empty);
            rows.push(vec![
                Cell::Text(t.number.clone()),
                Cell::Text(
                    yunwei_core::ticket::Kind::parse(&t.kind).map(|k| k.label().zh.to_string()).unwrap_or_default(),
                ),
                Cell::Text(t.level.clone()),
                Cell::Text(t.state().label().zh.to_string()),
                Cell::Text(t.title.clone()),
                Cell::Text(t.system_name.clone()),
                Cell::Text(t.channel.clone()),
                Cell::Text(t.reporter_name.clone()),
                Cell::DateTime(t.received_at),
                Cell::Text(t.assignee_name.clone().unwrap_or_default()),
                r.left_ms.map(|ms| Cell::Int(ms / 60_000)).unwrap_or(Cell::Empty),
                Cell::Text(if r.breached { "是".into() } else { String::new() }),
                opt_time(t.resolved_at),
                opt_time(t.closed_at),
                t.rating.map(Cell::Int).unwrap_or(Cell::Empty),
                Cell::Int(t.minutes_spent),
            ]);
        }
        if rows.len() >= MAX_ROWS {
            rows.truncate(MAX_ROWS);
            break;
        }
        match page.next_cursor {
            Some(c) => f.cursor = Some(c),
            None => break,
        }
    }
    let table =
        Table { sheet: "工单".into(), title: None, headers: headers.iter().map(|h| h.to_string()).collect(), rows };
    yunwei_reports::xlsx(&[table]).map_err(|e| {
        tracing::error!(error = %e, "xlsx export failed");
        AppError::internal()
    })
}

pub(crate) fn xlsx_response(file_name: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        bytes,
    )
        .into_response()
}
