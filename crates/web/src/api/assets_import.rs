//! Ledger import and export as sheets: the raw file is the request body (.xlsx, .xls or .csv, up to
//! 50 MB, the format decided by its bytes), read on a blocking thread by `yunwei_reports::read_sheet`
//! and checked and stored by `yunwei_storage::assets::import` (all rows or none). The export is a
//! workbook in the same layout, so exporting and importing again is a round trip.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_reports::{ReadError, Sheet};
use yunwei_storage::assets::{self, ImportReport};

use super::ErrorBody;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;

/// Largest file accepted (the 1 MiB limit of forms and JSON does not apply here).
pub const MAX_FILE_BYTES: usize = 50 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contracts/{cid}/assets/import", post(import).layer(DefaultBodyLimit::disable()))
        .route("/contracts/{cid}/assets/export.xlsx", get(export))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The file's name, for the report and the log (the format is decided by the content).
    #[serde(default)]
    pub name: String,
    /// Check every row and report, writing nothing. Default false: import when every row is good.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a dry run or an import found.
#[derive(Serialize, ToSchema)]
pub struct ImportReportView {
    pub file_name: String,
    /// xlsx, xls or csv.
    pub format: String,
    /// For CSV: the encoding it was read in (UTF-8, GB18030, UTF-16LE, …).
    pub encoding: Option<String>,
    pub sheet_name: String,
    /// The header's row number in the sheet (1-based).
    pub header_row: usize,
    pub dry_run: bool,
    /// Data rows in the sheet (below the header, blank rows not counted).
    pub rows_read: usize,
    /// Rows that passed every check (all of `rows_read` when there is no problem).
    pub rows: usize,
    pub blank_rows: usize,
    /// Columns whose header names no ledger field: ignored.
    pub ignored_columns: Vec<String>,
    /// Every bad row with its number in the sheet and the reason; empty when all are good.
    pub problems: Vec<ImportProblemView>,
    /// How many assets were written (absent for a dry run and for a refused import).
    pub imported: Option<usize>,
    /// Present when the import was refused because of the problems (status 422).
    pub error: Option<RejectedView>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportProblemView {
    /// The row's number in the sheet, as Excel shows it.
    pub row: usize,
    /// The column's header, when one cell is at fault.
    pub column: Option<String>,
    /// "中文 / English"
    pub message: String,
    pub message_zh: String,
    pub message_en: String,
}

#[derive(Serialize, ToSchema)]
pub struct RejectedView {
    pub code: String,
    pub message: String,
    pub message_zh: String,
    pub message_en: String,
}

fn report_view(file_name: &str, sheet: &Sheet, report: ImportReport, dry_run: bool) -> ImportReportView {
    // Storage numbers rows as if the header were row 1; the sheet may start lower.
    let offset = sheet.header_row.saturating_sub(1);
    ImportReportView {
        file_name: file_name.to_string(),
        format: sheet.format.to_string(),
        encoding: sheet.encoding.map(str::to_string),
        sheet_name: sheet.sheet_name.clone(),
        header_row: sheet.header_row,
        dry_run,
        rows_read: sheet.rows.iter().filter(|r| !yunwei_core::ledger::is_blank(r)).count(),
        rows: report.rows,
        blank_rows: report.blank_rows,
        ignored_columns: report.ignored_columns,
        problems: report
            .problems
            .into_iter()
            .map(|p| ImportProblemView {
                row: p.row + offset,
                column: p.column,
                message: p.message.to_string(),
                message_zh: p.message.zh,
                message_en: p.message.en,
            })
            .collect(),
        imported: report.imported,
        error: None,
    }
}

fn too_large() -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        Msg::new("文件不能超过 50 MB：请拆分后分批导入", "A file is at most 50 MB: split it and import in parts"),
    )
}

/// A file that cannot be read at all (encrypted, damaged, not a sheet, over the limits): 422 in the
/// API's error format, `field` = "file", `reason` = the reader's code (encrypted, corrupt, …).
fn unreadable(e: &ReadError) -> Response {
    let body = serde_json::json!({
        "error": {
            "code": "invalid",
            "reason": e.code(),
            "message": e.to_string(),
            "message_zh": e.zh(),
            "message_en": e.en(),
            "field": "file",
        }
    });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// Imports assets from a sheet (the raw .xlsx, .xls or .csv file is the body; at most 50 MB,
/// 200,000 rows, 100 columns). Columns are matched by their headers (设备名称, 品牌型号, 品牌, 单位,
/// 数量, 资产编号, … or the English keys). With `dry_run=true` every row is checked and the report
/// returned (200), nothing written. Otherwise the rows are written in one transaction when none has
/// a problem (200 with `imported`), and none is written when any has (422 with the same report).
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/assets/import", tag = "assets",
    params(("cid" = i64, Path), ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ImportReportView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ImportReportView)))]
pub async fn import(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
    Query(q): Query<ImportQuery>,
    request: axum::extract::Request,
) -> Result<Response, AppError> {
    let scope = caller.principal.contract_scope(&state.db, cid).await?;
    // Refuse before reading a large body the caller may not import anyway.
    scope.require(ContractPermission::AssetWrite)?;
    let body: Bytes = axum::body::to_bytes(request.into_body(), MAX_FILE_BYTES + 1).await.map_err(|_| too_large())?;
    if body.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let name = q.name.clone();
    let read = tokio::task::spawn_blocking(move || yunwei_reports::read_sheet(&body, &name)).await.map_err(|e| {
        tracing::error!(error = %e, "sheet reader failed");
        AppError::internal()
    })?;
    let sheet = match read {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(file = %q.name, reason = e.code(), detail = ?e, "sheet refused");
            return Ok(unreadable(&e));
        }
    };
    let report = assets::import(&state.db, &scope, &sheet.headers, &sheet.rows, q.dry_run, state.now_ms()).await?;
    let mut view = report_view(&q.name, &sheet, report, q.dry_run);
    if !q.dry_run && !view.problems.is_empty() {
        let m = Msg::new(
            "表格有错误，未导入任何数据：请按报告逐行修改后重新导入",
            "The sheet has problems and nothing was imported: fix each row in the report and import again",
        );
        view.error = Some(RejectedView {
            code: "invalid".into(),
            message: m.to_string(),
            message_zh: m.zh.into(),
            message_en: m.en.into(),
        });
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(view)).into_response());
    }
    Ok(axum::Json(view).into_response())
}

/// The contract's whole ledger as an Excel workbook in the import's layout (headers in row 1).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/export.xlsx", tag = "assets", params(("cid" = i64, Path)),
    responses((status = 200, content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<Response, AppError> {
    let scope = caller.principal.contract_scope(&state.db, cid).await?;
    let (headers, rows) = assets::export_rows(&state.db, &scope).await?;
    let bytes = tokio::task::spawn_blocking(move || yunwei_reports::ledger_xlsx(&headers, &rows))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| {
            tracing::error!(error = %e, "ledger export failed");
            AppError::internal()
        })?;
    Ok(crate::export::xlsx_response(&format!("assets-{cid}.xlsx"), bytes))
}
