//! Report files for yunwei: Excel workbooks (.xlsx) built in memory from plain tables; and, in
//! [`read_sheet`], the other way: a sheet (.xlsx, .xls, .csv) read for import.
//!
//! Every sheet has an optional title row, a bold header row that stays in view (frozen) and carries
//! an autofilter, and columns sized to their content (Chinese characters count double). Text is
//! always written as text, never as a formula, so a cell such as `=HYPERLINK(…)` or `+1` typed into a
//! ticket cannot run when the workbook is opened (formula injection). Times are epoch milliseconds
//! in UTC and shown in Asia/Shanghai time (UTC+8, no daylight saving).

use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, Worksheet, XlsxError};

mod read;
pub use read::{MAX_COLUMNS, MAX_ROWS, ReadError, Sheet, ledger_xlsx, read_sheet, read_sheet_with_progress};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text, always stored as a string (never a formula). Longer than Excel's 32,767 characters is cut.
    Text(String),
    /// A whole number. Beyond 15 digits Excel would lose precision, so those are written as text.
    Int(i64),
    /// A number; NaN and infinities are written as text.
    Float(f64),
    /// A time as epoch milliseconds UTC, shown as Shanghai local time `yyyy-mm-dd hh:mm`.
    DateTime(i64),
    Empty,
}

/// One worksheet: a name, an optional title above the header row, headers and rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// The sheet's name; made to fit Excel's rules (at most 31 characters, none of `[]:*?/\`).
    pub sheet: String,
    pub title: Option<String>,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

const SHANGHAI_OFFSET_SECONDS: i64 = 8 * 3600;
const DATETIME_FORMAT: &str = "yyyy-mm-dd hh:mm";
/// Excel keeps 15 significant digits of a number.
const MAX_EXACT_INT: i64 = 999_999_999_999_999;
/// Excel's limit on the characters in a cell, counted in UTF-16 units.
const MAX_CELL_UTF16: usize = 32_767;
const MAX_COLUMN_WIDTH: usize = 60;
const MIN_COLUMN_WIDTH: usize = 6;

/// Writes the tables as one workbook, one sheet each, and returns the bytes of the .xlsx file.
pub fn xlsx(tables: &[Table]) -> Result<Vec<u8>, String> {
    let mut workbook = Workbook::new();
    let title_format = Format::new().set_bold().set_font_size(14);
    let header_format = Format::new().set_bold();
    let datetime_format = Format::new().set_num_format(DATETIME_FORMAT);
    let mut used_names: Vec<String> = Vec::new();

    for (index, table) in tables.iter().enumerate() {
        let name = unique_sheet_name(&sheet_name(&table.sheet, index + 1), &used_names);
        let sheet = workbook.add_worksheet();
        sheet.set_name(name.as_str()).map_err(|e| fail(&name, e))?;
        write_table(sheet, table, &title_format, &header_format, &datetime_format).map_err(|e| fail(&name, e))?;
        used_names.push(name);
    }
    workbook.save_to_buffer().map_err(|e| format!("写入 Excel 失败 / writing the workbook failed: {e}"))
}

fn fail(sheet: &str, e: XlsxError) -> String {
    format!("工作表“{sheet}”写入失败 / writing sheet '{sheet}' failed: {e}")
}

fn write_table(
    sheet: &mut Worksheet,
    table: &Table,
    title_format: &Format,
    header_format: &Format,
    datetime_format: &Format,
) -> Result<(), XlsxError> {
    let columns = table.rows.iter().map(Vec::len).chain([table.headers.len()]).max().unwrap_or(0);
    let mut widths = vec![MIN_COLUMN_WIDTH; columns];
    let mut row: u32 = 0;

    if let Some(title) = &table.title {
        let title = excel_text(title);
        if columns > 1 {
            sheet.merge_range(0, 0, 0, col(columns - 1)?, &title, title_format)?;
        } else {
            sheet.write_string_with_format(0, 0, title, title_format)?;
        }
        row += 1;
    }

    let header_row = row;
    for (c, header) in table.headers.iter().enumerate() {
        let header = excel_text(header);
        // Bold text is a little wider.
        widen(&mut widths[c], text_width(&header) + 1);
        sheet.write_string_with_format(header_row, col(c)?, header, header_format)?;
    }
    if !table.headers.is_empty() {
        row += 1;
    }

    for cells in &table.rows {
        for (c, cell) in cells.iter().enumerate() {
            let column = col(c)?;
            let width = match cell {
                Cell::Text(text) => {
                    let text = excel_text(text);
                    let w = text_width(&text);
                    sheet.write_string(row, column, text)?;
                    w
                }
                Cell::Int(n) if (-MAX_EXACT_INT..=MAX_EXACT_INT).contains(n) => {
                    sheet.write_number(row, column, *n as f64)?;
                    digits(*n)
                }
                Cell::Int(n) => {
                    let text = n.to_string();
                    sheet.write_string(row, column, text.as_str())?;
                    text.len()
                }
                Cell::Float(x) => {
                    sheet.write_number(row, column, *x)?;
                    // Excel's General format shows about 11 characters.
                    x.to_string().len().min(12)
                }
                Cell::DateTime(ms) => {
                    let local = ms.div_euclid(1000) + SHANGHAI_OFFSET_SECONDS;
                    let when = ExcelDateTime::from_timestamp(local)?;
                    sheet.write_datetime_with_format(row, column, &when, datetime_format)?;
                    DATETIME_FORMAT.len()
                }
                Cell::Empty => 0,
            };
            widen(&mut widths[c], width);
        }
        row = row.checked_add(1).ok_or(XlsxError::RowColumnLimitError)?;
    }

    for (c, width) in widths.iter().enumerate() {
        // Room for the autofilter button and a margin.
        let width = (width + 2).min(MAX_COLUMN_WIDTH);
        sheet.set_column_width(col(c)?, width as f64)?;
    }
    if !table.headers.is_empty() {
        sheet.set_freeze_panes(header_row + 1, 0)?;
        let last_row = (row - 1).max(header_row);
        sheet.autofilter(header_row, 0, last_row, col(columns - 1)?)?;
    }
    Ok(())
}

fn col(c: usize) -> Result<u16, XlsxError> {
    u16::try_from(c).map_err(|_| XlsxError::RowColumnLimitError)
}

fn widen(width: &mut usize, content: usize) {
    *width = (*width).max(content.min(MAX_COLUMN_WIDTH));
}

fn digits(n: i64) -> usize {
    n.unsigned_abs().checked_ilog10().map_or(1, |d| d as usize + 1) + usize::from(n < 0)
}

/// Text cut to what one Excel cell holds.
fn excel_text(text: &str) -> String {
    let mut units = 0;
    let end = text
        .char_indices()
        .find(|(_, c)| {
            units += c.len_utf16();
            units > MAX_CELL_UTF16
        })
        .map_or(text.len(), |(i, _)| i);
    text[..end].to_string()
}

/// The width of the longest line, with East Asian wide characters counting two.
fn text_width(text: &str) -> usize {
    text.lines().map(|line| line.chars().map(char_width).sum::<usize>()).max().unwrap_or(0)
}

fn char_width(c: char) -> usize {
    let wide = matches!(c,
        '\u{1100}'..='\u{115F}'      // Hangul Jamo
        | '\u{2E80}'..='\u{303E}'    // CJK radicals, punctuation
        | '\u{3041}'..='\u{33FF}'    // kana, bopomofo, CJK compatibility
        | '\u{3400}'..='\u{4DBF}'    // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'    // CJK unified ideographs
        | '\u{A000}'..='\u{A4CF}'    // Yi
        | '\u{AC00}'..='\u{D7A3}'    // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'    // CJK compatibility ideographs
        | '\u{FE30}'..='\u{FE4F}'    // CJK compatibility forms
        | '\u{FF00}'..='\u{FF60}'    // full-width forms
        | '\u{FFE0}'..='\u{FFE6}'
        | '\u{1F300}'..='\u{1F64F}'  // emoji
        | '\u{1F900}'..='\u{1F9FF}'
        | '\u{20000}'..='\u{3FFFD}'); // CJK extensions B–G
    if wide { 2 } else { 1 }
}

/// A sheet name Excel accepts: the characters `[]:*?/\` and control characters replaced by `_`,
/// no apostrophe at either end, at most 31 UTF-16 units, not blank and not the reserved "History".
fn sheet_name(raw: &str, position: usize) -> String {
    let replaced: String = raw
        .chars()
        .map(|c| if matches!(c, '[' | ']' | ':' | '*' | '?' | '/' | '\\') || c.is_control() { '_' } else { c })
        .collect();
    let trimmed = replaced.trim().trim_matches('\'').trim();
    let name = truncate_utf16(trimmed, 31).trim_end().trim_end_matches('\'').to_string();
    if name.is_empty() || name.eq_ignore_ascii_case("history") { format!("Sheet{position}") } else { name }
}

/// Adds " (2)", " (3)" … when Excel would see the name as taken (names compare case-insensitively).
fn unique_sheet_name(name: &str, used: &[String]) -> String {
    let taken = |n: &str| used.iter().any(|u| u.to_lowercase() == n.to_lowercase());
    if !taken(name) {
        return name.to_string();
    }
    (2..)
        .map(|i| {
            let suffix = format!(" ({i})");
            format!("{}{suffix}", truncate_utf16(name, 31 - suffix.len()).trim_end())
        })
        .find(|n| !taken(n))
        .unwrap_or_default()
}

fn truncate_utf16(s: &str, max_units: usize) -> &str {
    let mut units = 0;
    let end = s
        .char_indices()
        .find(|(_, c)| {
            units += c.len_utf16();
            units > max_units
        })
        .map_or(s.len(), |(i, _)| i);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_xlsxwriter::IntoExcelDateTime;
    use std::io::Read;

    fn text(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }

    /// The named parts of an .xlsx file, uncompressed.
    fn part(bytes: &[u8], name: &str) -> String {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
        let mut file = archive.by_name(name).unwrap_or_else(|_| panic!("{name} in the workbook"));
        let mut out = String::new();
        file.read_to_string(&mut out).unwrap();
        out
    }

    fn sample() -> Table {
        Table {
            sheet: "工单/2026:11".into(),
            title: Some("成都市数字城管运维工单月报（2026年11月）".into()),
            headers: vec![
                "工单编号".into(),
                "标题".into(),
                "处理时长（分钟）".into(),
                "满意度".into(),
                "创建时间".into(),
            ],
            rows: vec![
                vec![
                    text("GD-2026-0001"),
                    text("核心交换机端口故障"),
                    Cell::Int(45),
                    Cell::Float(4.5),
                    // 2026-11-02 01:30 UTC = 09:30 in Shanghai.
                    Cell::DateTime(1_793_583_000_000),
                ],
                vec![text("GD-2026-0002"), text("=1+1"), Cell::Int(-7), Cell::Empty, Cell::DateTime(0)],
                vec![
                    text("GD-2026-0003"),
                    text("@SUM(A1:A2) +cmd|' /C calc'!A0 -2"),
                    Cell::Int(1_234_567_890_123_456_789),
                    Cell::Float(f64::NAN),
                    Cell::Empty,
                ],
            ],
        }
    }

    #[test]
    fn workbook_holds_chinese_text_and_no_formulas() {
        let bytes = xlsx(&[sample()]).unwrap();
        assert!(bytes.starts_with(b"PK\x03\x04"));

        let workbook = part(&bytes, "xl/workbook.xml");
        assert!(workbook.contains(r#"name="工单_2026_11""#), "{workbook}");

        let strings = part(&bytes, "xl/sharedStrings.xml");
        for s in
            ["成都市数字城管运维工单月报（2026年11月）", "工单编号", "处理时长（分钟）", "核心交换机端口故障", "=1+1"]
        {
            assert!(strings.contains(s), "{s} missing from the shared strings");
        }
        assert!(
            strings.contains("@SUM(A1:A2) +cmd|&apos; /C calc&apos;!A0 -2")
                || strings.contains("@SUM(A1:A2) +cmd|' /C calc'!A0 -2")
        );
        // A 19-digit number keeps every digit as text.
        assert!(strings.contains("1234567890123456789"));

        let sheet = part(&bytes, "xl/worksheets/sheet1.xml");
        assert!(!sheet.contains("<f>") && !sheet.contains("<f "), "no formula may be written: {sheet}");
        // Header frozen below the title, autofilter over header and rows, widths set.
        assert!(
            sheet.contains(r#"<pane ySplit="2" topLeftCell="A3" activePane="bottomLeft" state="frozen"/>"#),
            "{sheet}"
        );
        assert!(sheet.contains(r#"<autoFilter ref="A2:E5"/>"#), "{sheet}");
        assert!(sheet.contains(r#"<mergeCell ref="A1:E1"/>"#), "{sheet}");
        assert!(sheet.contains("<cols>"), "{sheet}");
        // 2026-11-02 09:30 Shanghai as an Excel serial number; 1970-01-01 08:00 for epoch 0.
        let serial = ExcelDateTime::parse_from_str("2026-11-02 09:30").unwrap().to_excel_serial_date();
        assert!(sheet.contains(&format!("<v>{serial}</v>")), "{serial} missing: {sheet}");
        let epoch = ExcelDateTime::parse_from_str("1970-01-01 08:00").unwrap().to_excel_serial_date();
        assert!(sheet.contains(&format!("<v>{epoch}</v>")), "{epoch} missing: {sheet}");

        let styles = part(&bytes, "xl/styles.xml");
        assert!(styles.contains(r#"formatCode="yyyy-mm-dd hh:mm""#), "{styles}");
        assert!(styles.contains("<b/>"), "{styles}");
    }

    #[test]
    fn column_widths_count_chinese_double_and_stop_at_60() {
        assert_eq!(text_width("abc"), 3);
        assert_eq!(text_width("工单编号"), 8);
        assert_eq!(text_width("（分钟）"), 8);
        assert_eq!(text_width("短\n长一点的行"), 10);
        let table = Table {
            sheet: "宽度".into(),
            title: None,
            headers: vec!["名称".into(), "说明".into()],
            rows: vec![vec![text("交换机"), text(&"很长的说明".repeat(40))]],
        };
        let sheet = part(&xlsx(&[table]).unwrap(), "xl/worksheets/sheet1.xml");
        // Column A: "交换机" is 6 wide, +2 margin = 8; column B capped at 60.
        assert!(sheet.contains(r#"<col min="1" max="1" width="8.7109375" customWidth="1"/>"#), "{sheet}");
        assert!(sheet.contains(r#"<col min="2" max="2" width="60.7109375" customWidth="1"/>"#), "{sheet}");
        // No title: the header is the first row.
        assert!(
            sheet.contains(r#"<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>"#),
            "{sheet}"
        );
        assert!(sheet.contains(r#"<autoFilter ref="A1:B2"/>"#), "{sheet}");
    }

    #[test]
    fn sheet_names_follow_excels_rules() {
        assert_eq!(sheet_name("a[b]c:d*e?f/g\\h", 1), "a_b_c_d_e_f_g_h");
        assert_eq!(sheet_name("", 3), "Sheet3");
        assert_eq!(sheet_name("  ''  ", 2), "Sheet2");
        assert_eq!(sheet_name("History", 1), "Sheet1");
        assert_eq!(sheet_name("'季度'", 1), "季度");
        let long = sheet_name(&"运维".repeat(40), 1);
        assert_eq!(long.encode_utf16().count(), 31);
        // Characters outside the BMP take two units and are never split.
        let emoji = sheet_name(&"𠀀".repeat(20), 1);
        assert_eq!(emoji.encode_utf16().count(), 30);
        for name in [sheet_name("a[b]c", 1), long, emoji] {
            rust_xlsxwriter::utility::check_sheet_name(&name).unwrap();
        }
        let used = vec!["月报".to_string(), "Sheet1".to_string()];
        assert_eq!(unique_sheet_name("月报", &used), "月报 (2)");
        assert_eq!(unique_sheet_name("SHEET1", &used), "SHEET1 (2)");
        assert_eq!(unique_sheet_name("新表", &used), "新表");
    }

    #[test]
    fn several_tables_make_several_sheets() {
        let mut second = sample();
        second.title = None;
        let empty = Table { sheet: "工单/2026:11".into(), ..Table::default() };
        let bytes = xlsx(&[sample(), second, empty]).unwrap();
        let workbook = part(&bytes, "xl/workbook.xml");
        assert!(workbook.contains(r#"name="工单_2026_11 (2)""#), "{workbook}");
        assert!(workbook.contains(r#"name="工单_2026_11 (3)""#), "{workbook}");
        part(&bytes, "xl/worksheets/sheet3.xml");
        // No tables at all still make a valid workbook.
        assert!(xlsx(&[]).unwrap().starts_with(b"PK"));
    }

    #[test]
    fn one_column_title_and_long_text() {
        let table = Table {
            sheet: "x".into(),
            title: Some("标题".into()),
            headers: vec!["备注".into()],
            rows: vec![vec![text(&"字".repeat(40_000))]],
        };
        let bytes = xlsx(&[table]).unwrap();
        let strings = part(&bytes, "xl/sharedStrings.xml");
        assert!(strings.contains(&"字".repeat(MAX_CELL_UTF16)) && !strings.contains(&"字".repeat(MAX_CELL_UTF16 + 1)));
    }

    #[test]
    fn out_of_range_time_is_an_error() {
        let table = Table { sheet: "t".into(), rows: vec![vec![Cell::DateTime(i64::MAX)]], ..Table::default() };
        let err = xlsx(&[table]).unwrap_err();
        assert!(err.contains("写入失败") && err.contains("writing sheet 't' failed"), "{err}");
    }

    #[test]
    fn digits_of_integers() {
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(-100), 4);
        assert_eq!(digits(i64::MIN), 20);
    }

    /// About 8 s in a debug build (zlib-rs compresses unoptimised), about 1 s in release:
    /// `cargo test -p yunwei-reports --release -- --ignored --nocapture`.
    #[test]
    #[ignore = "slow in debug builds: 100,000 rows × 8 columns take about 8 s"]
    fn hundred_thousand_rows() {
        let started = std::time::Instant::now();
        let rows: Vec<Vec<Cell>> = (0..100_000i64)
            .map(|i| {
                vec![
                    Cell::Text(format!("GD-2026-{i:06}")),
                    Cell::Text(format!("第 {i} 号巡检：机房温度正常")),
                    Cell::Text(["一级", "二级", "三级"][(i % 3) as usize].to_string()),
                    Cell::Int(i),
                    Cell::Float(i as f64 / 7.0),
                    Cell::DateTime(1_793_583_000_000 + i * 60_000),
                    Cell::Text("张三".to_string()),
                    Cell::Empty,
                ]
            })
            .collect();
        let headers = ["编号", "标题", "级别", "序号", "得分", "时间", "处理人", "备注"].map(String::from).to_vec();
        let table = Table { sheet: "大表".into(), title: Some("十万行".into()), headers, rows };
        let built = started.elapsed();
        let bytes = xlsx(&[table]).unwrap();
        println!("100,000 × 8: data {built:?}, xlsx {:?}, {} bytes", started.elapsed() - built, bytes.len());
        assert!(bytes.starts_with(b"PK"));
    }
}
