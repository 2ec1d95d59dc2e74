//! Reading a sheet for import: .xlsx and legacy .xls through calamine, .csv in UTF-8 or GBK.
//!
//! The format is decided by the bytes, never by the file's name (a CSV renamed to .xlsx is still
//! read): a zip archive is an .xlsx workbook, an OLE compound file an .xls workbook (or an
//! encrypted .xlsx, which Office stores in an OLE file), anything else CSV.
//!
//! What the import sees is one [`Sheet`]: the first worksheet that holds anything, its first
//! non-blank row as the header, and every row after it as cells
//! ([`yunwei_core::ledger::CellValue`]). A merged range counts as its top-left value in every cell
//! it covers; formulas count as the value Excel cached when it last saved the file (an error such
//! as `#REF!` is [`CellValue::Error`]); date-formatted cells are Excel serial dates.
//!
//! Untrusted input: a password-protected, damaged or hostile file is a [`ReadError`] with a Chinese
//! and an English message, never a panic, a hang or unbounded memory. Zip archives are unpacked once
//! to count their real size before the workbook is parsed (zip bombs), OLE files have their sector
//! chains checked for loops first, and whatever calamine might still panic on is caught.

use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use calamine::{Data, DataRef, Dimensions, Reader, SheetType, SheetVisible, Xls, Xlsx, XlsxError};
use yunwei_core::ledger::{CellValue, is_blank};

/// At most this many data rows (non-blank rows below the header).
pub const MAX_ROWS: usize = 200_000;
/// At most this many columns.
pub const MAX_COLUMNS: usize = 100;
/// An .xlsx archive may unpack to at most this many bytes (a 200,000-row sheet is far below).
pub const MAX_UNPACKED_BYTES: u64 = 1 << 30;

/// The sheet an import reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    pub headers: Vec<String>,
    /// The rows below the header, blank ones included (so that positions stay the sheet's) up to the
    /// last row that holds anything. Rows are as long as their last filled cell.
    pub rows: Vec<Vec<CellValue>>,
    /// The worksheet's name (empty for CSV).
    pub sheet_name: String,
    /// The header's row number in the file (1-based): `rows[i]` is row `header_row + 1 + i`.
    /// Usually 1; larger when the sheet starts with blank rows.
    pub header_row: usize,
    /// What the bytes were: "xlsx", "xls" or "csv".
    pub format: &'static str,
    /// For CSV: the encoding it was in ("UTF-8", "GB18030", "UTF-16LE", …).
    pub encoding: Option<&'static str>,
}

/// Why a file could not be read. Every variant has a Chinese and an English message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Nothing in the file.
    EmptyFile,
    /// Encrypted with a password (an Office "Encrypt with password" file, or a protected .xls).
    Encrypted,
    /// Damaged, or not a workbook although it looks like one. `detail` is for the log.
    Corrupt { format: &'static str, detail: String },
    /// Binary data that is none of .xlsx, .xls or CSV.
    NotASpreadsheet,
    /// A CSV in neither UTF-8 nor GBK/GB18030.
    UnknownEncoding,
    /// No worksheet holds any cell.
    NoData,
    /// More than [`MAX_ROWS`] data rows; `found` is how many were counted (or at least).
    TooManyRows { found: usize },
    /// More than [`MAX_COLUMNS`] columns.
    TooManyColumns { found: usize },
    /// The .xlsx archive unpacks to more than [`MAX_UNPACKED_BYTES`].
    TooLarge,
}

impl ReadError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReadError::EmptyFile => "empty_file",
            ReadError::Encrypted => "encrypted",
            ReadError::Corrupt { .. } => "corrupt",
            ReadError::NotASpreadsheet => "not_a_spreadsheet",
            ReadError::UnknownEncoding => "unknown_encoding",
            ReadError::NoData => "no_data",
            ReadError::TooManyRows { .. } => "too_many_rows",
            ReadError::TooManyColumns { .. } => "too_many_columns",
            ReadError::TooLarge => "too_large",
        }
    }

    pub fn zh(&self) -> String {
        match self {
            ReadError::EmptyFile => "文件为空".into(),
            ReadError::Encrypted => {
                "文件已加密（设置了打开密码），无法读取：请在 Excel 中取消密码（文件 → 信息 → 保护工作簿 → 用密码进行加密，清空密码）后另存再导入".into()
            }
            ReadError::Corrupt { format, .. } => {
                format!("无法读取该 {format} 文件：文件已损坏或不是有效的工作簿，请在 Excel 中打开后另存为 .xlsx 再导入")
            }
            ReadError::NotASpreadsheet => "不是表格文件：请上传 .xlsx、.xls 或 .csv 文件".into(),
            ReadError::UnknownEncoding => "无法识别 CSV 文件的编码：请另存为“CSV UTF-8”或 GBK 编码".into(),
            ReadError::NoData => "工作簿中没有任何数据".into(),
            ReadError::TooManyRows { found } => {
                format!("数据行过多（{found} 行）：一次最多导入 {MAX_ROWS} 行，请拆分后分批导入")
            }
            ReadError::TooManyColumns { found } => {
                format!("列数过多（{found} 列）：最多 {MAX_COLUMNS} 列，请删除无关的列")
            }
            ReadError::TooLarge => "文件解压后过大（超过 1 GiB）：请拆分后分批导入".into(),
        }
    }

    pub fn en(&self) -> String {
        match self {
            ReadError::EmptyFile => "The file is empty".into(),
            ReadError::Encrypted => "The file is encrypted with a password and cannot be read: remove the password in Excel (File → Info → Protect Workbook → Encrypt with Password, clear it), save, and import again".into(),
            ReadError::Corrupt { format, .. } => format!(
                "This {format} file cannot be read: it is damaged or not a valid workbook; open it in Excel, save it as .xlsx and import again"
            ),
            ReadError::NotASpreadsheet => "Not a spreadsheet: upload an .xlsx, .xls or .csv file".into(),
            ReadError::UnknownEncoding => {
                "The CSV file's encoding is not recognised: save it as \"CSV UTF-8\" or in GBK".into()
            }
            ReadError::NoData => "The workbook holds no data".into(),
            ReadError::TooManyRows { found } => {
                format!("Too many rows ({found}): at most {MAX_ROWS} rows per import; split the sheet")
            }
            ReadError::TooManyColumns { found } => {
                format!("Too many columns ({found}): at most {MAX_COLUMNS}; remove the columns not needed")
            }
            ReadError::TooLarge => "The file unpacks to more than 1 GiB: split it and import in parts".into(),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}", self.zh(), self.en())
    }
}

impl std::error::Error for ReadError {}

/// Reads the sheet to import from a file's bytes. `file_name` is only for messages in the log.
pub fn read_sheet(bytes: &[u8], file_name: &str) -> Result<Sheet, ReadError> {
    read_sheet_with_progress(bytes, file_name, &mut |_, _| {})
}

/// [`read_sheet`], calling `progress(done, total)` now and then while reading (rows for workbooks,
/// bytes for CSV; `total` is an estimate and `done` may not reach it).
pub fn read_sheet_with_progress(
    bytes: &[u8],
    file_name: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Sheet, ReadError> {
    if bytes.is_empty() {
        return Err(ReadError::EmptyFile);
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            read_xlsx(bytes, progress)
        } else if bytes.starts_with(&OLE_MAGIC) {
            read_ole(bytes)
        } else {
            read_csv(bytes, progress)
        }
    }));
    match result {
        Ok(r) => r,
        // calamine is not supposed to panic, but it parses hostile input: a panic means a damaged file.
        Err(_) => {
            Err(ReadError::Corrupt { format: guess_format(bytes), detail: format!("{file_name}: parser panicked") })
        }
    }
}

fn guess_format(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"PK") {
        "xlsx"
    } else if bytes.starts_with(&OLE_MAGIC) {
        "xls"
    } else {
        "csv"
    }
}

/// The ledger as a workbook in the layout the import reads: one sheet, the header in row 1, every
/// value as text (never a formula) except the quantity, a number. Exporting and importing again
/// is a round trip.
pub fn ledger_xlsx(headers: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>, String> {
    let quantity = headers.iter().position(|h| *h == yunwei_core::ledger::Field::Quantity.header());
    let rows = rows
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, v)| match v.parse::<i64>() {
                    Ok(q) if Some(i) == quantity => crate::Cell::Int(q),
                    _ if v.is_empty() => crate::Cell::Empty,
                    _ => crate::Cell::Text(v.clone()),
                })
                .collect()
        })
        .collect();
    let table = crate::Table {
        sheet: "台账".into(),
        title: None,
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows,
    };
    crate::xlsx(&[table])
}

// ---------------------------------------------------------------------------------------------
// Cells

/// Cells as read, with absolute positions (row, column), before the grid is laid out.
struct Cells {
    cells: Vec<(u32, u32, CellValue)>,
    min_row: u32,
    min_col: u32,
}

impl Cells {
    fn new() -> Self {
        Cells { cells: Vec::new(), min_row: u32::MAX, min_col: u32::MAX }
    }

    /// Adds a cell; refuses as soon as the sheet is certainly too large, before memory grows.
    fn push(&mut self, row: u32, col: u32, value: CellValue) -> Result<(), ReadError> {
        self.min_row = self.min_row.min(row);
        self.min_col = self.min_col.min(col);
        // A row span of twice the limit cannot hold fewer than MAX_ROWS rows unless it is mostly
        // blank rows, which are no better.
        let span = (row - self.min_row) as usize;
        if span > 2 * MAX_ROWS + 1 {
            return Err(ReadError::TooManyRows { found: span });
        }
        let width = (col - self.min_col) as usize + 1;
        if width > MAX_COLUMNS {
            return Err(ReadError::TooManyColumns { found: width });
        }
        self.cells.push((row, col, value));
        Ok(())
    }
}

fn from_data(d: &Data, is_1904: bool) -> CellValue {
    match d {
        Data::Int(i) => CellValue::Number(*i as f64),
        Data::Float(f) => CellValue::Number(*f),
        Data::String(s) => text(s),
        Data::Bool(b) => CellValue::Bool(*b),
        Data::DateTime(dt) => date(dt, is_1904),
        Data::DateTimeIso(s) => iso_date(s),
        Data::DurationIso(s) => text(s),
        Data::Error(e) => CellValue::Error(e.to_string()),
        Data::Empty => CellValue::Empty,
    }
}

fn from_data_ref(d: DataRef<'_>, is_1904: bool) -> CellValue {
    match d {
        DataRef::Int(i) => CellValue::Number(i as f64),
        DataRef::Float(f) => CellValue::Number(f),
        DataRef::String(s) => text(&s),
        DataRef::SharedString(s) => text(s),
        DataRef::Bool(b) => CellValue::Bool(b),
        DataRef::DateTime(dt) => date(&dt, is_1904),
        DataRef::DateTimeIso(s) => iso_date(&s),
        DataRef::DurationIso(s) => text(&s),
        DataRef::Error(e) => CellValue::Error(e.to_string()),
        DataRef::Empty => CellValue::Empty,
    }
}

fn text(s: &str) -> CellValue {
    if s.is_empty() { CellValue::Empty } else { CellValue::Text(s.to_string()) }
}

/// Days between Excel's 1904 epoch and its 1900 one: serials here are always 1900-based.
const EPOCH_1904_OFFSET: f64 = 1462.0;

fn date(dt: &calamine::ExcelDateTime, is_1904: bool) -> CellValue {
    if dt.is_duration() {
        return CellValue::Number(dt.as_f64());
    }
    CellValue::Date(if is_1904 { dt.as_f64() + EPOCH_1904_OFFSET } else { dt.as_f64() })
}

/// An ISO 8601 date cell (`t="d"`): its date part as text, which the ledger parses.
fn iso_date(s: &str) -> CellValue {
    text(s.split('T').next().unwrap_or(s))
}

/// Lays the cells out in rows, applies merged ranges, finds the header. `None` when the sheet holds
/// nothing but blank cells.
fn into_sheet(
    mut cells: Cells,
    merges: &[Dimensions],
    sheet_name: &str,
    format: &'static str,
) -> Result<Option<Sheet>, ReadError> {
    if cells.cells.is_empty() {
        return Ok(None);
    }
    // Streams are nearly always in order already; the sort is then a single pass.
    cells.cells.sort_by_key(|(r, c, _)| (*r, *c));
    let (min_row, min_col) = (cells.min_row, cells.min_col);
    let max_row = cells.cells.last().map_or(min_row, |(r, _, _)| *r);
    let max_col = cells.cells.iter().map(|(_, c, _)| *c).max().unwrap_or(min_col);
    let mut grid: Vec<Vec<CellValue>> = vec![Vec::new(); (max_row - min_row) as usize + 1];
    for (r, c, v) in cells.cells {
        let row = &mut grid[(r - min_row) as usize];
        let c = (c - min_col) as usize;
        if row.len() <= c {
            row.resize(c + 1, CellValue::Empty);
        }
        row[c] = v;
    }
    // A merged range's value is its top-left cell's; the others are empty in the file. Ranges are
    // cut to the cells that hold data, so a merged title across 16,384 columns costs nothing.
    // Merged ranges do not overlap in a sound file, so together they cover at most the grid.
    let mut budget = grid.len() as u64 * MAX_COLUMNS as u64;
    for m in merges {
        let (top, left) = m.start;
        let (bottom, right) = (m.end.0.min(max_row), m.end.1.min(max_col));
        if top < min_row || left < min_col || top > bottom || left > right {
            continue;
        }
        let value = grid[(top - min_row) as usize].get((left - min_col) as usize).cloned().unwrap_or(CellValue::Empty);
        if value == CellValue::Empty {
            continue;
        }
        let area = u64::from(bottom - top + 1) * u64::from(right - left + 1);
        budget = budget.checked_sub(area).ok_or_else(|| corrupt(format, "overlapping merged ranges"))?;
        for r in top..=bottom {
            let row = &mut grid[(r - min_row) as usize];
            for c in left..=right {
                let c = (c - min_col) as usize;
                if row.len() <= c {
                    row.resize(c + 1, CellValue::Empty);
                }
                if row[c] == CellValue::Empty {
                    row[c] = value.clone();
                }
            }
        }
    }
    let Some(header_index) = grid.iter().position(|r| !is_blank(r)) else {
        return Ok(None);
    };
    let last = grid.iter().rposition(|r| !is_blank(r)).unwrap_or(header_index);
    grid.truncate(last + 1);
    let mut rows = grid.split_off(header_index + 1);
    let header = grid.pop().unwrap_or_default();
    let data_rows = rows.iter().filter(|r| !is_blank(r)).count();
    if data_rows > MAX_ROWS {
        return Err(ReadError::TooManyRows { found: data_rows });
    }
    for row in &mut rows {
        while row.last() == Some(&CellValue::Empty) {
            row.pop();
        }
    }
    Ok(Some(Sheet {
        headers: header.iter().map(header_text).collect(),
        rows,
        sheet_name: sheet_name.to_string(),
        header_row: (min_row as usize) + header_index + 1,
        format,
        encoding: None,
    }))
}

fn header_text(c: &CellValue) -> String {
    match c {
        CellValue::Empty => String::new(),
        CellValue::Text(s) => s.trim().to_string(),
        CellValue::Number(n) | CellValue::Date(n) => {
            if n.fract() == 0.0 && n.abs() < 1e15 {
                format!("{}", *n as i64)
            } else {
                n.to_string()
            }
        }
        CellValue::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        CellValue::Error(e) => e.clone(),
    }
}

/// Worksheets in the order to try: visible ones first, then hidden ones.
fn worksheet_order(sheets: &[calamine::Sheet]) -> Vec<String> {
    let worksheets = sheets.iter().filter(|s| s.typ == SheetType::WorkSheet);
    let (visible, hidden): (Vec<_>, Vec<_>) = worksheets.partition(|s| s.visible == SheetVisible::Visible);
    visible.into_iter().chain(hidden).map(|s| s.name.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// .xlsx

fn corrupt(format: &'static str, e: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt { format, detail: e.to_string() }
}

/// Unpacks every member once, counting: refuses archives that unpack beyond the limit (whatever
/// sizes their directory claims), damaged members (CRC) and encrypted ones.
fn check_zip(bytes: &[u8], limit: u64) -> Result<(), ReadError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt("xlsx", e))?;
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..archive.len() {
        let mut member = match archive.by_index(i) {
            Ok(m) => m,
            Err(zip::result::ZipError::UnsupportedArchive(msg)) if msg.to_lowercase().contains("password") => {
                return Err(ReadError::Encrypted);
            }
            Err(e) => return Err(corrupt("xlsx", e)),
        };
        if member.encrypted() {
            return Err(ReadError::Encrypted);
        }
        loop {
            let n = member.read(&mut buf).map_err(|e| corrupt("xlsx", e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return Err(ReadError::TooLarge);
            }
        }
    }
    Ok(())
}

fn read_xlsx(bytes: &[u8], progress: &mut dyn FnMut(u64, u64)) -> Result<Sheet, ReadError> {
    check_zip(bytes, MAX_UNPACKED_BYTES)?;
    let mut book = Xlsx::new(Cursor::new(bytes)).map_err(|e| match e {
        XlsxError::Password => ReadError::Encrypted,
        e => corrupt("xlsx", e),
    })?;
    let is_1904 = book.has_1904_epoch();
    for name in worksheet_order(book.sheets_metadata()) {
        let mut cells = Cells::new();
        {
            let mut reader = book.worksheet_cells_reader(&name).map_err(|e| corrupt("xlsx", e))?;
            // The declared dimensions give the bar a length; they are not trusted for anything else.
            let declared = reader.dimensions();
            let total = u64::from(declared.end.0.saturating_sub(declared.start.0)).min(2 * MAX_ROWS as u64) + 1;
            let mut count = 0u64;
            while let Some(cell) = reader.next_cell().map_err(|e| corrupt("xlsx", e))? {
                let (row, col) = cell.get_position();
                let value = from_data_ref(cell.get_value().clone(), is_1904);
                if value != CellValue::Empty {
                    cells.push(row, col, value)?;
                }
                count += 1;
                if count.is_multiple_of(4096) {
                    progress(u64::from(row.saturating_sub(declared.start.0)), total);
                }
            }
            progress(total, total);
        }
        let merges = book.merge_cells_by_sheet_name(&name).map_err(|e| corrupt("xlsx", e))?;
        if let Some(sheet) = into_sheet(cells, &merges, &name, "xlsx")? {
            return Ok(sheet);
        }
    }
    Err(ReadError::NoData)
}

// ---------------------------------------------------------------------------------------------
// .xls (and encrypted .xlsx, which is an OLE file too)

const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

fn read_ole(bytes: &[u8]) -> Result<Sheet, ReadError> {
    let streams = check_ole(bytes)?;
    // Office's "Encrypt with password" puts the encrypted .xlsx in these streams.
    if streams.iter().any(|s| s.eq_ignore_ascii_case("EncryptedPackage") || s.eq_ignore_ascii_case("EncryptionInfo")) {
        return Err(ReadError::Encrypted);
    }
    if !streams.iter().any(|s| s.eq_ignore_ascii_case("Workbook") || s.eq_ignore_ascii_case("Book")) {
        // A Word document, an .msg, a .doc: OLE but not a workbook.
        return Err(ReadError::NotASpreadsheet);
    }
    let mut book = Xls::new(Cursor::new(bytes)).map_err(|e| match e {
        calamine::XlsError::Password => ReadError::Encrypted,
        e => corrupt("xls", e),
    })?;
    let is_1904 = book.has_1904_epoch();
    for name in worksheet_order(book.sheets_metadata()) {
        let range = book.worksheet_range(&name).map_err(|e| corrupt("xls", e))?;
        let mut cells = Cells::new();
        if let Some((r0, c0)) = range.start() {
            for (r, c, d) in range.used_cells() {
                let value = from_data(d, is_1904);
                if value != CellValue::Empty {
                    cells.push(r0 + r as u32, c0 + c as u32, value)?;
                }
            }
        }
        let merges = book.merge_cells_by_sheet_name(&name).map_err(|e| corrupt("xls", e))?;
        if let Some(sheet) = into_sheet(cells, &merges, &name, "xls")? {
            return Ok(sheet);
        }
    }
    Err(ReadError::NoData)
}

const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
const FREESECT: u32 = 0xFFFF_FFFF;
/// Sector ids from here on are markers, not sectors.
const MAXREGSECT: u32 = 0xFFFF_FFFA;

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Checks the structure of an OLE compound file (MS-CFB) before calamine walks it: every sector
/// chain must stay inside the file and end without a loop (a looping chain would make a reader spin
/// or grow without bound). Returns the names of the streams and storages.
fn check_ole(bytes: &[u8]) -> Result<Vec<String>, ReadError> {
    let bad = |why: &str| corrupt("xls", format!("OLE structure: {why}"));
    if bytes.len() < 512 {
        return Err(bad("shorter than its header"));
    }
    let shift = u16::from_le_bytes([bytes[30], bytes[31]]);
    let sector_size: usize = match shift {
        9 => 512,
        12 => 4096,
        _ => return Err(bad("sector size")),
    };
    if u16::from_le_bytes([bytes[32], bytes[33]]) != 6 {
        return Err(bad("mini sector size"));
    }
    let header = le32;
    let n_sectors = (bytes.len().saturating_sub(sector_size) / sector_size) as u32;
    let sector = |id: u32| -> Option<&[u8]> {
        let start = (id as usize + 1) * sector_size;
        bytes.get(start..start + sector_size)
    };
    let dir_start = header(bytes, 48).ok_or_else(|| bad("header"))?;
    let minifat_start = header(bytes, 60).ok_or_else(|| bad("header"))?;
    let minifat_len = header(bytes, 64).ok_or_else(|| bad("header"))?;
    let mut difat_next = header(bytes, 68).ok_or_else(|| bad("header"))?;
    let mut fat_sectors: Vec<u32> = (0..109).filter_map(|i| le32(bytes, 76 + 4 * i)).collect();
    let per_sector = sector_size / 4;
    let mut hops = 0;
    while difat_next < MAXREGSECT {
        hops += 1;
        if hops > n_sectors as usize + 1 {
            return Err(bad("DIFAT chain loops"));
        }
        let s = sector(difat_next).ok_or_else(|| bad("DIFAT sector outside the file"))?;
        fat_sectors.extend((0..per_sector - 1).filter_map(|i| le32(s, 4 * i)));
        difat_next = le32(s, sector_size - 4).ok_or_else(|| bad("DIFAT"))?;
    }
    let mut fat: Vec<u32> = Vec::new();
    for id in fat_sectors.into_iter().filter(|id| *id < MAXREGSECT) {
        let s = sector(id).ok_or_else(|| bad("FAT sector outside the file"))?;
        fat.extend((0..per_sector).filter_map(|i| le32(s, 4 * i)));
    }
    // Follows a chain; each sector at most once, each inside the table and (for the FAT) the file.
    let walk = |start: u32, table: &[u32], limit: u32| -> Result<Vec<u32>, ReadError> {
        let mut out = Vec::new();
        let mut id = start;
        while id != ENDOFCHAIN {
            if id >= limit || id as usize >= table.len() {
                return Err(bad("chain leaves the file"));
            }
            if out.len() > table.len() {
                return Err(bad("chain loops"));
            }
            out.push(id);
            id = table[id as usize];
            if id == FREESECT || (id >= MAXREGSECT && id != ENDOFCHAIN) {
                return Err(bad("chain ends in a free sector"));
            }
        }
        Ok(out)
    };
    let dir_chain = walk(dir_start, &fat, n_sectors)?;
    let mut entries: Vec<(String, u8, u32, u64)> = Vec::new();
    for id in &dir_chain {
        let s = sector(*id).ok_or_else(|| bad("directory sector outside the file"))?;
        for e in s.chunks_exact(128) {
            let name_len = (u16::from_le_bytes([e[64], e[65]]) as usize).min(64);
            let units: Vec<u16> = e[..name_len]
                .chunks_exact(2)
                .map(|u| u16::from_le_bytes([u[0], u[1]]))
                .take_while(|u| *u != 0)
                .collect();
            let name = String::from_utf16_lossy(&units);
            let kind = e[66];
            let start = le32(e, 116).unwrap_or(ENDOFCHAIN);
            let size = if sector_size == 512 {
                u64::from(le32(e, 120).unwrap_or(0))
            } else {
                u64::from(le32(e, 120).unwrap_or(0)) | (u64::from(le32(e, 124).unwrap_or(0)) << 32)
            };
            entries.push((name, kind, start, size));
        }
    }
    let Some(root) = entries.first().cloned() else {
        return Err(bad("no root entry"));
    };
    let mut minifat: Vec<u32> = Vec::new();
    let mut mini_sectors = 0u32;
    if minifat_len > 0 {
        for id in walk(minifat_start, &fat, n_sectors)? {
            let s = sector(id).ok_or_else(|| bad("mini FAT outside the file"))?;
            minifat.extend((0..per_sector).filter_map(|i| le32(s, 4 * i)));
        }
        let ministream = walk(root.2, &fat, n_sectors)?;
        mini_sectors = (ministream.len() * sector_size / 64) as u32;
    }
    for (_, kind, start, size) in entries.iter().skip(1) {
        // Streams only (type 2); storages and unused entries hold no chain.
        if *kind != 2 || *size == 0 {
            continue;
        }
        let (chain, unit) = if *size < 4096 {
            (walk(*start, &minifat, mini_sectors)?, 64)
        } else {
            if *size > bytes.len() as u64 {
                return Err(bad("a stream is larger than the file"));
            }
            (walk(*start, &fat, n_sectors)?, sector_size)
        };
        if ((chain.len() * unit) as u64) < *size {
            return Err(bad("a stream is shorter than its size"));
        }
    }
    Ok(entries.into_iter().filter(|e| e.1 == 1 || e.1 == 2).map(|e| e.0).collect())
}

// ---------------------------------------------------------------------------------------------
// .csv

/// Decodes a CSV file: UTF-8 (with or without BOM), UTF-16 with BOM (Excel's "Unicode text"), else
/// GB18030 (a superset of GBK and GB2312, what Chinese Excel writes for "CSV").
fn decode(bytes: &[u8]) -> Result<(String, &'static str), ReadError> {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        if had_errors {
            return Err(ReadError::UnknownEncoding);
        }
        return Ok((text.into_owned(), enc.name()));
    }
    if bytes.contains(&0) {
        // Text files hold no NUL bytes; images, archives and executables do.
        return Err(ReadError::NotASpreadsheet);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok((s.to_string(), "UTF-8"));
    }
    match encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(s) => Ok((s.into_owned(), "GB18030")),
        None => Err(ReadError::UnknownEncoding),
    }
}

/// Comma, unless the first line has more tabs than commas (Excel's "Unicode text" is tab-separated).
fn delimiter(text: &str) -> u8 {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let tabs = first.matches('\t').count();
    if tabs > first.matches(',').count() { b'\t' } else { b',' }
}

fn read_csv(bytes: &[u8], progress: &mut dyn FnMut(u64, u64)) -> Result<Sheet, ReadError> {
    let (text, encoding) = decode(bytes)?;
    let total = text.len() as u64;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter(&text))
        .from_reader(text.as_bytes());
    let mut cells = Cells::new();
    let mut record = csv::StringRecord::new();
    // The csv reader skips blank lines; a spreadsheet shows each as a row. A record's row is the
    // number of line breaks before its first byte, less those inside earlier quoted fields.
    let bytes = text.as_bytes();
    let (mut scanned, mut breaks_before, mut breaks_in_fields) = (0usize, 0u64, 0u64);
    let mut count: u64 = 0;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(corrupt("csv", e)),
        }
        // The position is where the reader stood before the record, blank lines not yet skipped.
        let mut start = record.position().map_or(scanned, |p| p.byte() as usize).max(scanned);
        while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        breaks_before += bytes[scanned..start.min(bytes.len())].iter().filter(|b| **b == b'\n').count() as u64;
        scanned = start.min(bytes.len());
        let row = u32::try_from(breaks_before - breaks_in_fields).unwrap_or(u32::MAX);
        for (col, field) in record.iter().enumerate() {
            if !field.is_empty() {
                cells.push(row, u32::try_from(col).unwrap_or(u32::MAX), CellValue::Text(field.to_string()))?;
                breaks_in_fields += field.matches('\n').count() as u64;
            }
        }
        count += 1;
        if count.is_multiple_of(4096) {
            progress(record.position().map_or(0, |p| p.byte()), total);
        }
    }
    progress(total, total);
    // Rows are numbered by record (a quoted field may span lines), as a spreadsheet shows them.
    let mut sheet = into_sheet(cells, &[], "", "csv")?.ok_or(ReadError::NoData)?;
    sheet.encoding = Some(encoding);
    Ok(sheet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
    use yunwei_core::ledger::check_sheet;

    fn t(s: &str) -> CellValue {
        CellValue::Text(s.to_string())
    }

    fn n(x: f64) -> CellValue {
        CellValue::Number(x)
    }

    /// The 001 table's layout, with the columns that bad sheets get wrong: merged cells, empty
    /// rows, formulas (cached value and error), a date cell, a date typed as text, duplicates.
    fn messy_workbook() -> Vec<u8> {
        let mut book = Workbook::new();
        // An empty first sheet is passed over.
        book.add_worksheet().set_name("封面").unwrap();
        let ws = book.add_worksheet();
        ws.set_name("设备清单").unwrap();
        let date = Format::new().set_num_format("yyyy-mm-dd");
        let plain = Format::new();
        for (c, h) in
            ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量", "安装日期", "站点", "资产编号"].iter().enumerate()
        {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        // Row 2: a date cell, 站点 merged down over rows 2–4.
        ws.write_number(1, 0, 1).unwrap();
        ws.write_string(1, 1, "UPS主机").unwrap();
        ws.write_string(1, 2, "NX60KVA").unwrap();
        ws.write_string(1, 3, "艾默生").unwrap();
        ws.write_string(1, 4, "台").unwrap();
        ws.write_number(1, 5, 1).unwrap();
        ws.write_datetime_with_format(1, 6, ExcelDateTime::from_ymd(2021, 1, 1).unwrap(), &date).unwrap();
        ws.merge_range(1, 7, 3, 7, "市民服务中心", &plain).unwrap();
        ws.write_string(1, 8, "ZC-001").unwrap();
        // Row 3: quantity is a formula with its cached value; the date typed as text.
        ws.write_number(2, 0, 2).unwrap();
        ws.write_string(2, 1, "精密空调").unwrap();
        ws.write_formula(2, 5, Formula::new("=1+1").set_result("2")).unwrap();
        ws.write_string(2, 6, "2022年6月").unwrap();
        ws.write_string(2, 8, "ZC-002").unwrap();
        // Row 4: a formula error; the date as a plain number (a serial without date format).
        ws.write_number(3, 0, 3).unwrap();
        ws.write_string(3, 1, "核心交换机").unwrap();
        ws.write_formula(3, 5, Formula::new("=#REF!+1").set_result("#REF!")).unwrap();
        ws.write_number(3, 6, 44_197).unwrap();
        ws.write_string(3, 8, "ZC-001").unwrap();
        // Row 5 blank but for spaces; row 6: 品牌型号 and 品牌 merged across.
        ws.write_number(5, 0, 4).unwrap();
        ws.write_string(5, 1, "防火墙").unwrap();
        ws.merge_range(5, 2, 5, 3, "USG6000", &plain).unwrap();
        ws.write_string(4, 1, "   ").unwrap();
        // Trailing formatted-but-empty cells count for nothing.
        ws.write_blank(20, 0, &date).unwrap();
        book.save_to_buffer().unwrap()
    }

    #[test]
    fn xlsx_merged_cells_formulas_dates_and_blank_rows() {
        let sheet = read_sheet(&messy_workbook(), "台账.xlsx").unwrap();
        assert_eq!(sheet.sheet_name, "设备清单");
        assert_eq!(sheet.format, "xlsx");
        assert_eq!(sheet.header_row, 1);
        assert_eq!(
            sheet.headers,
            ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量", "安装日期", "站点", "资产编号"]
        );
        assert_eq!(sheet.rows.len(), 5, "rows 2–6: blank ones kept, trailing ones dropped: {:?}", sheet.rows);
        let serial_2021 = 44_197.0;
        assert_eq!(
            sheet.rows[0],
            [
                n(1.0),
                t("UPS主机"),
                t("NX60KVA"),
                t("艾默生"),
                t("台"),
                n(1.0),
                CellValue::Date(serial_2021),
                t("市民服务中心"),
                t("ZC-001")
            ]
        );
        assert_eq!(sheet.rows[1][5], n(2.0), "a formula counts as its cached value");
        assert_eq!(sheet.rows[1][6], t("2022年6月"));
        assert_eq!(sheet.rows[1][7], t("市民服务中心"), "the merged 站点 applies to every row it covers");
        assert_eq!(sheet.rows[2][5], CellValue::Error("#REF!".into()));
        assert_eq!(sheet.rows[2][6], n(serial_2021));
        assert_eq!(sheet.rows[2][7], t("市民服务中心"));
        assert!(is_blank(&sheet.rows[3]), "row 5 is blank: {:?}", sheet.rows[3]);
        assert_eq!(sheet.rows[4][2..4], [t("USG6000"), t("USG6000")], "a merge across columns too");
        assert_eq!(sheet.rows[4].len(), 4);

        // The ledger's check then names each bad row by its number in the sheet.
        let check = check_sheet(&sheet.headers, &sheet.rows).unwrap();
        let problems: Vec<(usize, String)> = check.problems.iter().map(|p| (p.row, p.message.en.clone())).collect();
        assert!(problems.iter().any(|(r, m)| *r == 4 && m.contains("formula error #REF!")), "{problems:?}");
        assert!(problems.iter().any(|(r, m)| *r == 4 && m.contains("repeats row 2")), "{problems:?}");
        assert_eq!(check.blank_rows, 1);
        let good: Vec<usize> = check.rows.iter().map(|(r, _)| *r).collect();
        assert_eq!(good, [2, 3, 6]);
        let installed: Vec<&str> =
            check.rows.iter().map(|(_, r)| r.get(yunwei_core::ledger::Field::InstalledOn)).collect();
        assert_eq!(installed, ["2021-01-01", "2022-06", ""]);
    }

    #[test]
    fn ledger_export_reads_back_the_same() {
        let headers = ["设备名称", "数量", "资产编号", "备注"];
        let rows = vec![
            vec!["UPS主机".to_string(), "2".into(), "00123".into(), "=1+1".into()],
            vec!["跳线".to_string(), "4000".into(), String::new(), String::new()],
        ];
        let sheet = read_sheet(&ledger_xlsx(&headers, &rows).unwrap(), "台账.xlsx").unwrap();
        assert_eq!(sheet.sheet_name, "台账");
        assert_eq!(sheet.headers, headers);
        assert_eq!(sheet.rows[0], [t("UPS主机"), n(2.0), t("00123"), t("=1+1")], "text stays text");
        assert_eq!(sheet.rows[1], [t("跳线"), n(4000.0)]);
    }

    #[test]
    fn header_below_blank_rows_and_right_of_empty_columns() {
        let mut book = Workbook::new();
        let ws = book.add_worksheet();
        ws.write_string(2, 1, "设备名称").unwrap();
        ws.write_string(2, 2, "数量").unwrap();
        ws.write_string(3, 1, "交换机").unwrap();
        ws.write_number(3, 2, 3).unwrap();
        ws.write_boolean(4, 1, true).unwrap();
        let sheet = read_sheet(&book.save_to_buffer().unwrap(), "x.xlsx").unwrap();
        assert_eq!(sheet.header_row, 3);
        assert_eq!(sheet.headers, ["设备名称", "数量"]);
        assert_eq!(sheet.rows, vec![vec![t("交换机"), n(3.0)], vec![CellValue::Bool(true)]]);
    }

    #[test]
    fn hidden_and_chart_sheets_come_last() {
        let mut book = Workbook::new();
        let hidden = book.add_worksheet();
        hidden.set_name("配置").unwrap();
        hidden.write_string(0, 0, "内部").unwrap();
        hidden.set_hidden(true);
        let ws = book.add_worksheet();
        ws.set_name("台账").unwrap();
        ws.write_string(0, 0, "设备名称").unwrap();
        ws.set_active(true);
        let sheet = read_sheet(&book.save_to_buffer().unwrap(), "x.xlsx").unwrap();
        assert_eq!(sheet.sheet_name, "台账");
        assert!(sheet.rows.is_empty());

        let mut book = Workbook::new();
        book.add_worksheet();
        assert_eq!(read_sheet(&book.save_to_buffer().unwrap(), "x.xlsx"), Err(ReadError::NoData));
    }

    #[test]
    fn legacy_xls_with_merged_cells_and_dates() {
        // testdata/make_ledger_xls.py wrote it (xlwt): an empty first sheet, then the ledger.
        let sheet = read_sheet(include_bytes!("../testdata/ledger.xls"), "旧台账.xls").unwrap();
        assert_eq!(sheet.format, "xls");
        assert_eq!(sheet.sheet_name, "设备清单");
        assert_eq!(sheet.headers, ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量", "安装日期", "站点"]);
        assert_eq!(sheet.rows.len(), 3);
        assert_eq!(sheet.rows[0][1], t("UPS主机"));
        assert_eq!(sheet.rows[0][6], CellValue::Date(44_197.0));
        assert_eq!(sheet.rows[1][5], n(2.0));
        for row in &sheet.rows {
            assert_eq!(row[7], t("市民服务中心"), "{row:?}");
        }
        assert_eq!(sheet.rows[2][6], CellValue::Empty);
        let check = check_sheet(&sheet.headers, &sheet.rows).unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
    }

    #[test]
    fn csv_in_gbk_utf8_with_bom_and_utf16() {
        let text = "序号,设备名称,品牌型号,品牌,单位,数量\r\n1,UPS主机,NX60KVA,艾默生,台,1\r\n,,,,,\r\n2,\"跳线, 六类\",\"多行\n说明\",,根,\"4,000\"\r\n";
        let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&gbk).is_err(), "really not UTF-8");
        let sheet = read_sheet(&gbk, "设备.csv").unwrap();
        assert_eq!(sheet.format, "csv");
        assert_eq!(sheet.encoding, Some("GB18030"));
        assert_eq!(sheet.headers, ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量"]);
        assert_eq!(sheet.rows.len(), 3, "{:?}", sheet.rows);
        assert_eq!(sheet.rows[0], [t("1"), t("UPS主机"), t("NX60KVA"), t("艾默生"), t("台"), t("1")]);
        assert!(sheet.rows[1].is_empty());
        assert_eq!(sheet.rows[2][1], t("跳线, 六类"));
        assert_eq!(sheet.rows[2][2], t("多行\n说明"));
        let check = check_sheet(&sheet.headers, &sheet.rows).unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!(check.rows[1].1.quantity, 4000);

        let mut utf8 = b"\xEF\xBB\xBF".to_vec();
        utf8.extend_from_slice(text.as_bytes());
        let sheet = read_sheet(&utf8, "设备.csv").unwrap();
        assert_eq!(sheet.encoding, Some("UTF-8"));
        assert_eq!(sheet.headers[0], "序号", "the BOM is not part of the first header");
        assert_eq!(read_sheet(text.as_bytes(), "x.csv").unwrap().rows, sheet.rows);

        // Excel's "Unicode text": UTF-16LE with BOM, tab-separated.
        let tabbed = "设备名称\t数量\r\n交换机\t2\r\n";
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(tabbed.encode_utf16().flat_map(u16::to_le_bytes));
        let sheet = read_sheet(&utf16, "x.txt").unwrap();
        assert_eq!(sheet.encoding, Some("UTF-16LE"));
        assert_eq!(sheet.rows, vec![vec![t("交换机"), t("2")]]);
    }

    #[test]
    fn csv_rows_are_numbered_as_a_spreadsheet_shows_them() {
        // Blank lines are rows; a quoted field over two lines is one row.
        let text = "\n设备名称,说明\n交换机,\"两行\n说明\"\n\n\n路由器,\n,\n";
        let sheet = read_sheet(text.as_bytes(), "a.csv").unwrap();
        assert_eq!(sheet.header_row, 2);
        assert_eq!(sheet.rows.len(), 4, "{:?}", sheet.rows);
        assert_eq!(sheet.rows[0], [t("交换机"), t("两行\n说明")]);
        assert!(sheet.rows[1].is_empty() && sheet.rows[2].is_empty());
        assert_eq!(sheet.rows[3], [t("路由器")], "row 6 in a spreadsheet");
    }

    #[test]
    fn the_name_does_not_decide_the_format() {
        let sheet = read_sheet("设备名称\n交换机\n".as_bytes(), "看起来像.xlsx").unwrap();
        assert_eq!(sheet.format, "csv");
        let sheet = read_sheet(&messy_workbook(), "export.csv").unwrap();
        assert_eq!(sheet.format, "xlsx");
    }

    #[test]
    fn files_that_are_not_sheets() {
        assert_eq!(read_sheet(b"", "a.csv"), Err(ReadError::EmptyFile));
        assert_eq!(read_sheet(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "a.csv"), Err(ReadError::NotASpreadsheet));
        assert_eq!(read_sheet(b"\xFF\xFF\xFF\xFE\xFF abc", "a.csv"), Err(ReadError::UnknownEncoding));
        assert_eq!(read_sheet(b"\n , \n\n", "a.csv"), Err(ReadError::NoData));
        // Zip, but damaged: the real workbook cut short, and a zip header over garbage.
        let good = messy_workbook();
        for bad in [&good[..good.len() / 2], b"PK\x03\x04\x14\x00garbage garbage garbage".as_slice()] {
            let e = read_sheet(bad, "坏.xlsx").unwrap_err();
            assert_eq!(e.code(), "corrupt", "{e:?}");
            assert!(e.zh().contains("损坏") && e.en().contains("damaged"), "{e}");
        }
        // A zip that is not a workbook.
        let mut other = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        other.start_file("readme.txt", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut other, b"hello").unwrap();
        let other = other.finish().unwrap().into_inner();
        assert_eq!(read_sheet(&other, "a.xlsx").unwrap_err().code(), "corrupt");
    }

    /// A compound file (MS-CFB, version 3) holding the named empty streams, the way Office wraps
    /// a password-encrypted .xlsx ("EncryptionInfo", "EncryptedPackage").
    fn compound_file(streams: &[&str]) -> Vec<u8> {
        let mut header = vec![0u8; 512];
        header[..8].copy_from_slice(&OLE_MAGIC);
        let put16 = |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut header, 24, 0x3E);
        put16(&mut header, 26, 3);
        put16(&mut header, 28, 0xFFFE);
        put16(&mut header, 30, 9);
        put16(&mut header, 32, 6);
        put32(&mut header, 44, 1); // one FAT sector
        put32(&mut header, 48, 1); // the directory in sector 1
        put32(&mut header, 56, 4096);
        put32(&mut header, 60, ENDOFCHAIN);
        put32(&mut header, 68, ENDOFCHAIN);
        for i in 0..109 {
            put32(&mut header, 76 + 4 * i, if i == 0 { 0 } else { FREESECT });
        }
        let mut fat = vec![0xFFu8; 512];
        put32(&mut fat, 0, 0xFFFF_FFFD); // the FAT itself
        put32(&mut fat, 4, ENDOFCHAIN); // the directory: one sector
        let mut dir = vec![0u8; 512];
        for (i, name) in ["Root Entry"].iter().chain(streams).enumerate().take(4) {
            let e = &mut dir[i * 128..(i + 1) * 128];
            let units: Vec<u8> = name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
            e[..units.len()].copy_from_slice(&units);
            e[64..66].copy_from_slice(&(units.len() as u16).to_le_bytes());
            e[66] = if i == 0 { 5 } else { 2 };
            e[68..80].fill(0xFF);
            e[116..120].copy_from_slice(&ENDOFCHAIN.to_le_bytes());
        }
        [header, fat, dir].concat()
    }

    #[test]
    fn encrypted_and_damaged_ole_files() {
        let encrypted = compound_file(&["EncryptionInfo", "EncryptedPackage"]);
        let e = read_sheet(&encrypted, "加密.xlsx").unwrap_err();
        assert_eq!(e, ReadError::Encrypted);
        assert!(e.zh().contains("密码") && e.en().contains("password"), "{e}");
        assert_eq!(read_sheet(&compound_file(&["WordDocument"]), "a.doc"), Err(ReadError::NotASpreadsheet));
        // An empty "Workbook" stream holds no sheet; one whose sectors are missing is damaged.
        assert_eq!(read_sheet(&compound_file(&["Workbook"]), "a.xls"), Err(ReadError::NoData));
        let mut short = compound_file(&["Workbook"]);
        short[1024 + 128 + 120..1024 + 128 + 124].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(read_sheet(&short, "a.xls").unwrap_err().code(), "corrupt");
        // An OLE header over garbage.
        let mut garbage = OLE_MAGIC.to_vec();
        garbage.extend((0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        assert_eq!(read_sheet(&garbage, "a.xls").unwrap_err().code(), "corrupt");
        assert_eq!(read_sheet(&OLE_MAGIC, "a.xls").unwrap_err().code(), "corrupt");
        // A directory chain that loops (sector 1 → 1) must not spin.
        let mut looping = compound_file(&["Workbook"]);
        looping[512 + 4..512 + 8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(read_sheet(&looping, "a.xls").unwrap_err().code(), "corrupt");
    }

    #[test]
    fn mutated_files_are_refused_cleanly() {
        // Flip bytes all over real workbooks: every outcome is a sheet or an error, never a panic or
        // a hang (a panic in calamine is caught, but none of these should even reach one).
        let xls = include_bytes!("../testdata/ledger.xls").to_vec();
        let xlsx = messy_workbook();
        let mut seed: u32 = 12_345;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for base in [&xls, &xlsx] {
            for _ in 0..150 {
                let mut bytes = base.clone();
                for _ in 0..1 + next() % 8 {
                    let at = next() as usize % bytes.len();
                    bytes[at] = next() as u8;
                }
                let _ = read_sheet(&bytes, "mutated");
            }
        }
    }

    #[test]
    fn limits_on_rows_and_columns() {
        let wide: String = (0..=MAX_COLUMNS).map(|i| format!("列{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(
            read_sheet(format!("{wide}\n").as_bytes(), "a.csv"),
            Err(ReadError::TooManyColumns { found: MAX_COLUMNS + 1 })
        );
        let mut book = Workbook::new();
        let ws = book.add_worksheet();
        ws.write_string(0, 0, "设备名称").unwrap();
        ws.write_string(5, MAX_COLUMNS as u16, "太远").unwrap();
        assert_eq!(
            read_sheet(&book.save_to_buffer().unwrap(), "a.xlsx"),
            Err(ReadError::TooManyColumns { found: 101 })
        );

        let mut tall = String::from("设备名称\n");
        for i in 0..MAX_ROWS {
            tall.push_str(&format!("交换机{i}\n"));
        }
        assert_eq!(read_sheet(tall.as_bytes(), "a.csv").unwrap().rows.len(), MAX_ROWS);
        tall.push_str("多一行\n");
        assert_eq!(read_sheet(tall.as_bytes(), "a.csv"), Err(ReadError::TooManyRows { found: MAX_ROWS + 1 }));
    }

    #[test]
    fn a_zip_bomb_is_refused_before_parsing() {
        // The real limit is 1 GiB; the same check with 16 MiB keeps the test quick. 20 MiB of
        // spaces compress to about 20 KiB, and the archive's directory may claim any size: the
        // check counts what really comes out.
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("xl/sharedStrings.xml", opts).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..20 {
            std::io::Write::write_all(&mut z, &chunk).unwrap();
        }
        let bytes = z.finish().unwrap().into_inner();
        assert!(bytes.len() < 100 << 10, "{}", bytes.len());
        assert_eq!(check_zip(&bytes, 16 << 20), Err(ReadError::TooLarge));
        assert_eq!(check_zip(&bytes, 32 << 20), Ok(()));
        assert_eq!(check_zip(&messy_workbook(), MAX_UNPACKED_BYTES), Ok(()));
    }

    /// 100,000 rows of the 001 layout (2.2 MB). Reading takes about 0.7 s in the test profile (the
    /// reading crates are optimised even there, see the workspace Cargo.toml), 0.3 s in release.
    #[test]
    fn a_100000_row_sheet() {
        let mut book = Workbook::new();
        let ws = book.add_worksheet();
        for (c, h) in ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量"].iter().enumerate() {
            ws.write_string(0, c as u16, *h).unwrap();
        }
        for r in 1..=100_000u32 {
            ws.write_number(r, 0, r).unwrap();
            ws.write_string(r, 1, "信息发布屏").unwrap();
            ws.write_string(r, 2, format!("LED-{}", r % 97)).unwrap();
            ws.write_string(r, 3, "洲明").unwrap();
            ws.write_string(r, 4, "台").unwrap();
            ws.write_number(r, 5, 1).unwrap();
        }
        let bytes = book.save_to_buffer().unwrap();
        let started = std::time::Instant::now();
        let mut calls = 0;
        let sheet = read_sheet_with_progress(&bytes, "big.xlsx", &mut |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
        eprintln!("read 100,000 rows ({} KiB) in {:?}", bytes.len() / 1024, started.elapsed());
        assert_eq!(sheet.rows.len(), 100_000);
        assert_eq!(sheet.rows[99_999][0], n(100_000.0));
        assert!(calls > 10, "progress is reported while reading: {calls}");
    }
}
