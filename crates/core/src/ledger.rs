//! The asset ledger's pure rules: kinds and statuses, and the import of a sheet — which column is
//! which field (by header, Chinese or English), and what each cell must look like — decided without
//! I/O so that a dry run and the real import judge every row the same way.
//!
//! An import is all-or-nothing: [`check_sheet`] returns every bad row with its number and reason;
//! only a sheet with none is committed.

use std::collections::{BTreeMap, HashMap};

/// A message about one import problem, Chinese first; unlike [`crate::Msg`] it can quote the cell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub zh: String,
    pub en: String,
}

impl Message {
    pub fn new(zh: impl Into<String>, en: impl Into<String>) -> Self {
        Message { zh: zh.into(), en: en.into() }
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}", self.zh, self.en)
    }
}

/// The kinds of AS3.
pub const KINDS: [(&str, &str, &str); 9] = [
    ("network", "网络设备", "Network"),
    ("security", "安全设备", "Security"),
    ("host", "主机", "Host"),
    ("storage", "存储设备", "Storage"),
    ("terminal", "终端", "Terminal"),
    ("environment", "环境设备", "Environment"),
    ("software", "软件", "Software"),
    ("cloud", "云服务器", "Cloud server"),
    ("other", "其他", "Other"),
];

pub const STATUSES: [(&str, &str, &str); 4] = [
    ("in_stock", "库存", "In stock"),
    ("in_service", "在用", "In service"),
    ("under_repair", "维修中", "Under repair"),
    ("retired", "已报废", "Retired"),
];

/// A ledger field an import column can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Kind,
    Name,
    Model,
    Brand,
    Manufacturer,
    Unit,
    Quantity,
    Serial,
    ManufacturedOn,
    InstalledOn,
    Site,
    Room,
    Rack,
    UPosition,
    Department,
    Category,
    AssetNo,
    Dimensions,
    Weight,
    Accessories,
    Parameters,
    Status,
    Owner,
    Supplier,
    WarrantyEnd,
    Ips,
    Ports,
    Notes,
}

impl Field {
    pub const ALL: [Field; 28] = [
        Field::Kind,
        Field::Name,
        Field::Model,
        Field::Brand,
        Field::Manufacturer,
        Field::Unit,
        Field::Quantity,
        Field::Serial,
        Field::ManufacturedOn,
        Field::InstalledOn,
        Field::Site,
        Field::Room,
        Field::Rack,
        Field::UPosition,
        Field::Department,
        Field::Category,
        Field::AssetNo,
        Field::Dimensions,
        Field::Weight,
        Field::Accessories,
        Field::Parameters,
        Field::Status,
        Field::Owner,
        Field::Supplier,
        Field::WarrantyEnd,
        Field::Ips,
        Field::Ports,
        Field::Notes,
    ];

    /// The column key in storage and in the API.
    pub fn key(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Name => "name",
            Field::Model => "model",
            Field::Brand => "brand",
            Field::Manufacturer => "manufacturer",
            Field::Unit => "unit",
            Field::Quantity => "quantity",
            Field::Serial => "serial",
            Field::ManufacturedOn => "manufactured_on",
            Field::InstalledOn => "installed_on",
            Field::Site => "site",
            Field::Room => "room",
            Field::Rack => "rack",
            Field::UPosition => "u_position",
            Field::Department => "department",
            Field::Category => "category",
            Field::AssetNo => "asset_no",
            Field::Dimensions => "dimensions",
            Field::Weight => "weight",
            Field::Accessories => "accessories",
            Field::Parameters => "parameters",
            Field::Status => "status",
            Field::Owner => "owner",
            Field::Supplier => "supplier",
            Field::WarrantyEnd => "warranty_end",
            Field::Ips => "ips",
            Field::Ports => "ports",
            Field::Notes => "notes",
        }
    }

    /// The header written on export (and the first one recognised on import).
    pub fn header(self) -> &'static str {
        self.headers()[0]
    }

    /// Headers recognised on import: Chinese as the seed tables write them, and English.
    pub fn headers(self) -> &'static [&'static str] {
        match self {
            Field::Kind => &["类型", "设备类型", "资产类型", "kind", "type"],
            Field::Name => &["设备名称", "名称", "资产名称", "服务器名称", "name"],
            Field::Model => &["品牌型号", "型号", "规格型号", "型号或规格", "model"],
            Field::Brand => &["品牌", "brand"],
            Field::Manufacturer => &["制造厂家", "生产厂家", "厂家", "manufacturer"],
            Field::Unit => &["单位", "unit"],
            Field::Quantity => &["数量", "quantity", "qty"],
            Field::Serial => &["出厂序列号", "序列号", "serial", "sn"],
            Field::ManufacturedOn => &["出厂年月", "出厂日期", "生产日期", "manufactured"],
            Field::InstalledOn => &["安装年月", "安装日期", "installed"],
            Field::Site => &["站点", "机房", "安装地点", "site"],
            Field::Room => &["房间", "位置", "room", "location"],
            Field::Rack => &["机柜", "rack"],
            Field::UPosition => &["U位", "u位", "u_position"],
            Field::Department => &["使用部门", "部门", "department"],
            Field::Category => &["设备类别", "类别", "category"],
            Field::AssetNo => &["资产编号", "资产号", "asset_no", "asset number"],
            Field::Dimensions => &["外形尺寸", "尺寸", "dimensions", "size"],
            Field::Weight => &["重量", "weight"],
            Field::Accessories => &["配套装置", "附件", "配件", "accessories"],
            Field::Parameters => &["主要参数", "参数", "说明", "parameters"],
            Field::Status => &["状态", "status"],
            Field::Owner => &["负责人", "责任人", "owner"],
            Field::Supplier => &["供应商", "supplier"],
            Field::WarrantyEnd => &["保修截止", "保修到期", "维保到期", "warranty_end", "warranty"],
            Field::Ips => &["IP", "ip", "IP地址", "服务器 ip", "服务器ip", "ips"],
            Field::Ports => &["端口", "服务端口", "ports"],
            Field::Notes => &["备注", "notes"],
        }
    }

    fn max_chars(self) -> usize {
        match self {
            Field::Name => 200,
            Field::Parameters | Field::Accessories | Field::Notes => 2000,
            Field::Ips | Field::Ports => 1000,
            _ => 200,
        }
    }
}

/// Header text as compared: no spaces of any width, no line breaks, lower-case.
fn normalise_header(h: &str) -> String {
    h.chars().filter(|c| !c.is_whitespace() && *c != '*').collect::<String>().to_lowercase()
}

/// Which field each column fills; unrecognised columns are reported and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    pub columns: Vec<Option<Field>>,
    pub ignored: Vec<String>,
}

/// Maps a header row. Errors: no name column, or one field named by two columns.
pub fn map_headers(headers: &[String]) -> Result<ColumnMap, Message> {
    let mut by_header: HashMap<String, Field> = HashMap::new();
    for f in Field::ALL {
        for h in f.headers() {
            by_header.entry(normalise_header(h)).or_insert(f);
        }
    }
    let mut columns = Vec::with_capacity(headers.len());
    let mut ignored = Vec::new();
    let mut seen: BTreeMap<Field, usize> = BTreeMap::new();
    for (i, h) in headers.iter().enumerate() {
        let n = normalise_header(h);
        // 序号 (row numbers) and empty headers carry nothing to keep.
        if n.is_empty() || n == "序号" || n == "no" || n == "no." {
            columns.push(None);
            continue;
        }
        match by_header.get(&n) {
            Some(f) => {
                if seen.insert(*f, i).is_some() {
                    return Err(Message::new(
                        format!("两列都对应“{}”字段：请删除其中一列", f.header()),
                        format!("Two columns fill the field \"{}\"; remove one", f.key()),
                    ));
                }
                columns.push(Some(*f));
            }
            None => {
                ignored.push(h.trim().to_string());
                columns.push(None);
            }
        }
    }
    if !seen.contains_key(&Field::Name) {
        return Err(Message::new(
            "找不到“设备名称”列：请确认第一行是表头",
            "No \"设备名称\" (name) column: is the first row the header?",
        ));
    }
    Ok(ColumnMap { columns, ignored })
}

/// One cell as read from a sheet.
#[derive(Debug, Clone, PartialEq)]
pub enum CellValue {
    Empty,
    Text(String),
    Number(f64),
    /// Excel's serial date (days since 1899-12-30), when the cell is formatted as a date.
    Date(f64),
    Bool(bool),
    /// A formula's cached error (#N/A, #REF!).
    Error(String),
}

/// A checked row, ready to store: field key → value ("" when absent). Quantity is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    pub values: BTreeMap<&'static str, String>,
    pub quantity: i64,
}

impl AssetRow {
    pub fn get(&self, f: Field) -> &str {
        self.values.get(f.key()).map(String::as_str).unwrap_or("")
    }
}

/// A bad row: its number in the sheet (1-based, the header is row 1) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub row: usize,
    pub column: Option<String>,
    pub message: Message,
}

fn excel_serial_to_date(serial: f64) -> Option<String> {
    if !(1.0..2_958_466.0).contains(&serial) {
        return None;
    }
    // Serial 25569 is 1970-01-01; Excel's 1900 leap-year bug is behind serial 60, long before any asset.
    let days = serial.floor() as i64 - 25_569;
    let (y, m, d) = crate::calendar::civil_from_days(days);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

/// A date as people write it in ledgers: 2022-01-05, 2022/1/5, 2022.1.5, 2022年1月5日, or only the
/// month (2022-01, 2022年1月, as 出厂年月 columns do). Returns YYYY-MM-DD or YYYY-MM.
pub fn parse_ledger_date(s: &str) -> Option<String> {
    let t = s.trim().replace(['年', '/', '.'], "-").replace('月', "-").replace('日', "");
    let t = t.trim_end_matches('-');
    let parts: Vec<&str> = t.split('-').map(str::trim).collect();
    let num = |p: &str| p.parse::<u32>().ok();
    match parts.as_slice() {
        [y, m] => {
            let (y, m) = (num(y)?, num(m)?);
            ((1950..=2100).contains(&y) && (1..=12).contains(&m)).then(|| format!("{y:04}-{m:02}"))
        }
        [y, m, d] => {
            let (y, m, d) = (num(y)?, num(m)?, num(d)?);
            let iso = format!("{y:04}-{m:02}-{d:02}");
            ((1950..=2100).contains(&y) && crate::calendar::parse_date(&iso).is_some()).then_some(iso)
        }
        _ => None,
    }
}

fn kind_of(s: &str) -> Option<&'static str> {
    let t = s.trim();
    KINDS.iter().find(|(k, zh, en)| t == *k || t == *zh || t.eq_ignore_ascii_case(en)).map(|(k, _, _)| *k)
}

fn status_of(s: &str) -> Option<&'static str> {
    let t = s.trim();
    STATUSES.iter().find(|(k, zh, en)| t == *k || t == *zh || t.eq_ignore_ascii_case(en)).map(|(k, _, _)| *k)
}

/// Guesses the kind from the name when the sheet has no kind column (the 001 tables do not).
pub fn guess_kind(name: &str) -> &'static str {
    let n = name.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&["ups", "空调", "温湿度", "环境", "配电", "消防", "动环"]) {
        "environment"
    } else if has(&["防火墙", "ids", "ips", "waf", "堡垒机", "安全", "vpn", "审计"]) {
        "security"
    } else if has(&["交换机", "路由器", "switch", "router", "光纤", "跳线", "网线", "ac控制器", "无线"])
    {
        "network"
    } else if has(&["存储", "磁盘阵列", "nas", "san", "磁带"]) {
        "storage"
    } else if has(&["云服务器", "虚拟机", "ecs"]) {
        "cloud"
    } else if has(&["服务器", "server", "主机"]) {
        "host"
    } else if has(&["软件", "系统", "平台", "license", "授权"]) {
        "software"
    } else if has(&["显示", "电脑", "终端", "打印", "屏", "一体机", "摄像", "大屏", "叫号", "pc"]) {
        "terminal"
    } else {
        "other"
    }
}

fn cell_text(c: &CellValue, f: Field) -> Result<String, Message> {
    match c {
        CellValue::Empty => Ok(String::new()),
        CellValue::Text(s) => Ok(s.trim().to_string()),
        CellValue::Bool(b) => Ok(if *b { "是".into() } else { "否".into() }),
        CellValue::Error(e) => {
            Err(Message::new(format!("单元格是公式错误 {e}"), format!("The cell holds a formula error {e}")))
        }
        CellValue::Number(n) | CellValue::Date(n)
            if matches!(f, Field::ManufacturedOn | Field::InstalledOn | Field::WarrantyEnd) =>
        {
            // Dates typed into a number-formatted cell arrive as serials too.
            excel_serial_to_date(*n).ok_or(Message::new("日期无效", "Invalid date"))
        }
        CellValue::Date(n) => excel_serial_to_date(*n).ok_or(Message::new("日期无效", "Invalid date")),
        CellValue::Number(n) => {
            // Whole numbers as whole numbers (serials, asset numbers), others as written.
            if n.fract() == 0.0 && n.abs() < 1e15 { Ok(format!("{}", *n as i64)) } else { Ok(format!("{n}")) }
        }
    }
}

/// Checks one data row. `row` is its 1-based number in the sheet, for the report.
pub fn check_row(map: &ColumnMap, cells: &[CellValue], row: usize) -> Result<AssetRow, Vec<RowProblem>> {
    let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut quantity = 1i64;
    for (i, col) in map.columns.iter().enumerate() {
        let Some(f) = col else { continue };
        let cell = cells.get(i).unwrap_or(&CellValue::Empty);
        let problem = |m: Message| RowProblem { row, column: Some(f.header().to_string()), message: m };
        let text = match cell_text(cell, *f) {
            Ok(t) => t,
            Err(m) => {
                problems.push(problem(m));
                continue;
            }
        };
        if text.chars().count() > f.max_chars() || text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            problems.push(problem(Message::new(
                format!("内容过长（最多 {} 字）或含控制字符", f.max_chars()),
                format!("Too long (at most {} characters) or contains control characters", f.max_chars()),
            )));
            continue;
        }
        let value = match f {
            Field::Quantity if !text.is_empty() => match text.replace(',', "").parse::<f64>() {
                Ok(q) if q.fract() == 0.0 && (1.0..=1_000_000.0).contains(&q) => {
                    quantity = q as i64;
                    text
                }
                _ => {
                    problems.push(problem(Message::new(
                        "数量应为 1 到 1000000 的整数",
                        "Quantity is a whole number from 1 to 1000000",
                    )));
                    continue;
                }
            },
            Field::ManufacturedOn | Field::InstalledOn | Field::WarrantyEnd if !text.is_empty() => {
                match parse_ledger_date(&text) {
                    Some(d) => d,
                    None => {
                        problems.push(problem(Message::new(
                            format!("日期“{text}”无法识别（如 2022-01-05 或 2022年1月）"),
                            format!("Unrecognised date \"{text}\" (e.g. 2022-01-05 or 2022-01)"),
                        )));
                        continue;
                    }
                }
            }
            Field::Kind if !text.is_empty() => match kind_of(&text) {
                Some(k) => k.to_string(),
                None => {
                    problems
                        .push(problem(Message::new(format!("未知类型“{text}”"), format!("Unknown kind \"{text}\""))));
                    continue;
                }
            },
            Field::Status if !text.is_empty() => match status_of(&text) {
                Some(s) => s.to_string(),
                None => {
                    problems
                        .push(problem(Message::new(format!("未知状态“{text}”"), format!("Unknown status \"{text}\""))));
                    continue;
                }
            },
            _ => text,
        };
        values.insert(f.key(), value);
    }
    if values.get("name").is_none_or(|n| n.is_empty()) && problems.is_empty() {
        problems.push(RowProblem {
            row,
            column: Some(Field::Name.header().into()),
            message: Message::new("设备名称为空", "The name is empty"),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if values.get("kind").is_none_or(|k| k.is_empty()) {
        let guess = guess_kind(values.get("name").map(String::as_str).unwrap_or(""));
        values.insert("kind", guess.to_string());
    }
    if values.get("status").is_none_or(|s| s.is_empty()) {
        values.insert("status", "in_service".into());
    }
    Ok(AssetRow { values, quantity })
}

/// Whether a row is blank (skipped, not an error: sheets end with empty rows).
pub fn is_blank(cells: &[CellValue]) -> bool {
    cells.iter().all(|c| match c {
        CellValue::Empty => true,
        CellValue::Text(s) => s.trim().is_empty(),
        _ => false,
    })
}

/// The outcome of checking a whole sheet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SheetCheck {
    pub rows: Vec<(usize, AssetRow)>,
    pub problems: Vec<RowProblem>,
    pub blank_rows: usize,
    pub ignored_columns: Vec<String>,
}

/// Checks every data row of a sheet (the first row is the header); duplicate asset numbers within
/// the sheet are problems of every row after the first.
pub fn check_sheet(headers: &[String], rows: &[Vec<CellValue>]) -> Result<SheetCheck, Message> {
    let map = map_headers(headers)?;
    let mut out =
        SheetCheck { rows: Vec::new(), problems: Vec::new(), blank_rows: 0, ignored_columns: map.ignored.clone() };
    // Asset numbers are compared across every row, valid or not, so that fixing one bad row does
    // not reveal a duplicate only at the next attempt.
    let no_column = map.columns.iter().position(|c| *c == Some(Field::AssetNo));
    let mut numbers: HashMap<String, usize> = HashMap::new();
    for (i, cells) in rows.iter().enumerate() {
        let row = i + 2;
        if is_blank(cells) {
            out.blank_rows += 1;
            continue;
        }
        let checked = check_row(&map, cells, row);
        let no =
            no_column.and_then(|c| cells.get(c)).and_then(|c| cell_text(c, Field::AssetNo).ok()).unwrap_or_default();
        let mut duplicate = false;
        if !no.is_empty() {
            match numbers.get(&no) {
                Some(first) => {
                    duplicate = true;
                    out.problems.push(RowProblem {
                        row,
                        column: Some(Field::AssetNo.header().into()),
                        message: Message::new(
                            format!("资产编号“{no}”与第 {first} 行重复"),
                            format!("Asset number \"{no}\" repeats row {first}"),
                        ),
                    });
                }
                None => {
                    numbers.insert(no, row);
                }
            }
        }
        match checked {
            Ok(r) if !duplicate => out.rows.push((row, r)),
            Ok(_) => {}
            Err(p) => out.problems.extend(p),
        }
    }
    out.problems.sort_by_key(|p| p.row);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> CellValue {
        CellValue::Text(s.into())
    }

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_001_table_headers_map() {
        let m = map_headers(&headers(&["序号", "设备名称", "品牌型号", "品牌", "单位", "数量"])).unwrap();
        assert_eq!(
            m.columns,
            vec![
                None,
                Some(Field::Name),
                Some(Field::Model),
                Some(Field::Brand),
                Some(Field::Unit),
                Some(Field::Quantity)
            ]
        );
        assert!(m.ignored.is_empty());
        let m = map_headers(&headers(&["设备 名称", "颜色"])).unwrap();
        assert_eq!(m.columns[0], Some(Field::Name));
        assert_eq!(m.ignored, ["颜色"]);
        assert!(map_headers(&headers(&["品牌", "数量"])).unwrap_err().zh.contains("设备名称"));
        assert!(map_headers(&headers(&["名称", "设备名称"])).is_err(), "two columns for one field");
    }

    #[test]
    fn rows_of_the_001_table() {
        let h = headers(&["序号", "设备名称", "品牌型号", "品牌", "单位", "数量"]);
        let rows = vec![
            vec![CellValue::Number(1.0), t("UPS主机"), t("NX60KVA"), t("艾默生"), t("台"), CellValue::Number(1.0)],
            vec![
                CellValue::Number(2.0),
                t("精密空调（基础运维）"),
                t("P1040DA13FHL12E1D000PA000+LSF32"),
                t("艾默生"),
                t("台"),
                CellValue::Number(2.0),
            ],
            vec![CellValue::Empty, t(""), CellValue::Empty],
            vec![CellValue::Number(3.0), t("跳线"), t("六类"), t(""), t("根"), t("4,000")],
        ];
        let c = check_sheet(&h, &rows).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.blank_rows, 1);
        assert_eq!(c.rows.len(), 3);
        assert_eq!(c.rows[0].1.get(Field::Kind), "environment");
        assert_eq!(c.rows[1].1.quantity, 2);
        assert_eq!(c.rows[2].0, 5, "row numbers count the header and blank rows");
        assert_eq!(c.rows[2].1.quantity, 4000);
        assert_eq!(c.rows[2].1.get(Field::Kind), "network");
    }

    #[test]
    fn bad_rows_are_reported_with_row_and_reason() {
        let h = headers(&["设备名称", "数量", "出厂年月", "资产编号", "类型"]);
        let rows = vec![
            vec![t("交换机"), t("两台"), t("2020年13月"), t("A-1"), t("网络设备")],
            vec![t(""), CellValue::Number(1.0)],
            vec![t("防火墙"), CellValue::Number(1.5), CellValue::Error("#REF!".into()), t("A-1"), t("火箭")],
            vec![t("服务器"), CellValue::Number(1.0), CellValue::Date(44_197.0), t("A-1"), t("主机")],
        ];
        let c = check_sheet(&h, &rows).unwrap();
        let rows_with_problems: Vec<usize> = c.problems.iter().map(|p| p.row).collect();
        assert_eq!(rows_with_problems, [2, 2, 3, 4, 4, 4, 4, 5]);
        assert!(c.problems.iter().any(|p| p.message.zh.contains("数量")));
        assert!(c.problems.iter().any(|p| p.message.en.contains("formula error #REF!")));
        assert!(c.problems.iter().any(|p| p.message.zh.contains("与第 2 行重复")), "{:?}", c.problems);
        assert!(c.rows.is_empty());
    }

    #[test]
    fn dates_in_every_usual_spelling() {
        for (s, want) in [
            ("2022-01-05", Some("2022-01-05")),
            ("2022/1/5", Some("2022-01-05")),
            ("2022.1.5", Some("2022-01-05")),
            ("2022年1月5日", Some("2022-01-05")),
            ("2022年1月", Some("2022-01")),
            ("2022-02-30", None),
            ("去年", None),
        ] {
            assert_eq!(parse_ledger_date(s).as_deref(), want, "{s}");
        }
        assert_eq!(excel_serial_to_date(44_197.0).as_deref(), Some("2021-01-01"));
        let m = map_headers(&headers(&["设备名称", "安装日期"])).unwrap();
        let r = check_row(&m, &[t("UPS"), CellValue::Number(44_197.0)], 2).unwrap();
        assert_eq!(r.get(Field::InstalledOn), "2021-01-01", "a date typed into a number cell");
    }
}
