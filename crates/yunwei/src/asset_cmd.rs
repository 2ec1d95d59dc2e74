//! `yunwei asset import|export`: the asset ledger as sheets, from the console, acting as the local
//! operator in the contract named by its code.
//!
//! An import reads the file (progress by rows or bytes), checks every row against the ledger (a
//! dry run of the storage import: site and supplier names, asset numbers already used), prints each
//! problem as `row N [column]: 中文 / English` and exits 1 when there is any; otherwise, unless
//! `--dry-run`, it writes every row in one transaction. Progress bars go to stderr and only when it
//! is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use yunwei_core::authz::AdminPermission;
use yunwei_storage::assets::ImportReport;
use yunwei_storage::{ContractScope, Db, Principal, StoreError};

#[derive(Subcommand)]
pub enum AssetCommand {
    /// Import assets from a sheet (.xlsx, .xls or .csv in UTF-8 or GBK): every bad row is reported
    /// with its number and reason (exit 1) and nothing is written unless every row is good.
    Import {
        file: PathBuf,
        /// The contract's code, e.g. CD-DCM-2022.
        #[arg(long)]
        contract: String,
        /// Check and report only; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export the contract's ledger as an .xlsx workbook in the import's layout.
    Export {
        #[arg(long)]
        contract: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(db: &Db, command: AssetCommand, os_user: &str, now_ms: i64) -> Result<i32> {
    match command {
        AssetCommand::Import { file, contract, dry_run } => {
            import(db, &file, &contract, dry_run, os_user, now_ms).await
        }
        AssetCommand::Export { contract, out } => export(db, &contract, &out, os_user).await,
    }
}

/// The local operator's scope in the contract with this code.
async fn scope_by_code(db: &Db, code: &str, os_user: &str) -> Result<ContractScope> {
    let operator = Principal::local_operator(os_user);
    let admin = operator.admin_scope(AdminPermission::ContractManage)?;
    let contract = match yunwei_storage::contracts::find_by_code(db, &admin, code).await {
        Err(StoreError::NotFound) => anyhow::bail!("no contract with code {code} / 没有编号为 {code} 的合同"),
        other => other?,
    };
    Ok(operator.contract_scope(db, contract.id).await?)
}

fn bar(len: u64, phase: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:14} [{bar:40}] {percent:>3}% {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(phase.to_string());
    bar
}

fn spinner(phase: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::new_spinner();
    s.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    s.set_message(phase.to_string());
    s.enable_steady_tick(Duration::from_millis(100));
    s
}

async fn import(db: &Db, file: &std::path::Path, code: &str, dry_run: bool, os_user: &str, now_ms: i64) -> Result<i32> {
    let scope = scope_by_code(db, code, os_user).await?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let reading = bar(1, "reading 读取");
    let progress = reading.clone();
    let read = tokio::task::spawn_blocking(move || {
        yunwei_reports::read_sheet_with_progress(&bytes, &name, &mut |done, total| {
            progress.set_length(total.max(1));
            progress.set_position(done);
        })
    })
    .await?;
    reading.finish_and_clear();
    let sheet = match read {
        Ok(s) => s,
        Err(e) => {
            println!("{}: {e}", file.display());
            println!("not imported / 未导入");
            return Ok(1);
        }
    };
    let offset = sheet.header_row.saturating_sub(1);

    // Checking is the storage import's dry run: the same checks the real import makes.
    let checking = spinner("checking 检查");
    let report = yunwei_storage::assets::import(db, &scope, &sheet.headers, &sheet.rows, true, now_ms).await;
    checking.finish_and_clear();
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows_read = sheet.rows.iter().filter(|r| !yunwei_core::ledger::is_blank(r)).count();
    print_header(file, &sheet, &report, rows_read);
    if !report.problems.is_empty() {
        print_problems(&report, offset);
        let bad = rows_read - report.rows;
        println!(
            "{} problem(s) in {bad} of {rows_read} row(s); nothing imported / {rows_read} 行中 {bad} 行有问题（共 {} 处），未导入任何数据",
            report.problems.len(),
            report.problems.len()
        );
        return Ok(1);
    }
    if dry_run {
        println!(
            "dry run: all {} row(s) are good, nothing written / 试导入：{} 行全部无误，未写入",
            report.rows, report.rows
        );
        return Ok(0);
    }

    let writing = spinner("writing 写入");
    let written = yunwei_storage::assets::import(db, &scope, &sheet.headers, &sheet.rows, false, now_ms).await;
    writing.finish_and_clear();
    let written = written.map_err(|e| anyhow::anyhow!("{e}"))?;
    if !written.problems.is_empty() {
        // The ledger changed between the check and the write (someone else imported meanwhile).
        print_problems(&written, offset);
        println!("{} problem(s); nothing imported / 未导入任何数据", written.problems.len());
        return Ok(1);
    }
    let n = written.imported.unwrap_or(0);
    println!("imported {n} asset(s) into {code} / 已导入 {n} 条资产");
    Ok(0)
}

fn print_header(file: &std::path::Path, sheet: &yunwei_reports::Sheet, report: &ImportReport, rows_read: usize) {
    let what = match (sheet.format, sheet.encoding) {
        ("csv", Some(enc)) => format!("CSV, {enc}"),
        (format, _) => format!("{format}, sheet \"{}\"", sheet.sheet_name),
    };
    println!(
        "{} ({what}): {rows_read} row(s), {} blank / {rows_read} 行，空行 {} 行",
        file.display(),
        report.blank_rows,
        report.blank_rows
    );
    if !report.ignored_columns.is_empty() {
        println!(
            "ignored columns / 未识别的列（忽略）: {}",
            report.ignored_columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
        );
    }
}

fn print_problems(report: &ImportReport, offset: usize) {
    for p in &report.problems {
        let row = p.row + offset;
        match &p.column {
            Some(c) => println!("row {row} [{c}]: {} / {}", p.message.zh, p.message.en),
            None => println!("row {row}: {} / {}", p.message.zh, p.message.en),
        }
    }
}

async fn export(db: &Db, code: &str, out: &std::path::Path, os_user: &str) -> Result<i32> {
    let scope = scope_by_code(db, code, os_user).await?;
    let (headers, rows) = yunwei_storage::assets::export_rows(db, &scope).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let n = rows.len();
    let bytes = tokio::task::spawn_blocking(move || yunwei_reports::ledger_xlsx(&headers, &rows))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("exported {n} asset(s) of {code} to {} / 已导出 {n} 条资产", out.display());
    Ok(0)
}
