//! Ledger import and export over HTTP (issue 5, "Bad input"): a good workbook in the 001 layout,
//! a sheet with every usual mistake, a GBK CSV, damaged and password-protected files, a
//! 100,000-row dry run, and who may import or export.
//!
//! Every refused import leaves the ledger as it was: the tests count the assets after each one.

use reqwest::{Method, StatusCode};
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
use serde_json::Value;
use yunwei_core::authz::ContractRole;

use crate::both_engines;
use crate::harness::urlencode;
use crate::harness::{Browser, Resp, TestServer};

const SEED: &str = "001-chenggong-service-center.toml";

/// The import request: the raw file as the body, the session's CSRF token in the header.
fn import_request(b: &Browser, cid: i64, name: &str, dry_run: bool, bytes: Vec<u8>) -> reqwest::RequestBuilder {
    let path = format!("/api/v1/contracts/{cid}/assets/import?name={}&dry_run={dry_run}", urlencode(name));
    let mut rb = b.request(Method::POST, &path).header("content-type", "application/octet-stream").body(bytes);
    if let Some(c) = &b.csrf {
        rb = rb.header("x-csrf-token", c.clone());
    }
    rb
}

async fn import(b: &mut Browser, cid: i64, name: &str, dry_run: bool, bytes: Vec<u8>) -> Resp {
    let rb = import_request(b, cid, name, dry_run, bytes);
    b.send(rb).await
}

/// The number of assets in the contract's ledger, read by the operator.
async fn ledger_count(s: &TestServer, cid: i64) -> usize {
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    yunwei_storage::assets::export_rows(&s.state.db, &scope).await.unwrap().1.len()
}

/// (row, message_en) of each problem in a report.
fn problems(report: &Value) -> Vec<(u64, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["row"].as_u64().unwrap(), p["message_en"].as_str().unwrap().to_string()))
        .collect()
}

/// The 001 device table (序号/设备名称/品牌型号/品牌/单位/数量) with asset numbers and a site.
fn good_workbook() -> Vec<u8> {
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name("设备清单").unwrap();
    let headers = ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量", "资产编号", "站点"];
    for (c, h) in headers.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    let rows = [
        ("UPS主机", "NX60KVA", "艾默生", "台", 1, "CG-001", "UPS控制间"),
        ("精密空调（基础运维）", "P1040DA13FHL12E1D000PA000+LSF32", "艾默生", "台", 2, "CG-002", "政务中心核心机房"),
        ("服务器", "WS-SERVER-02", "金鹏正", "台", 1, "CG-003", ""),
        ("信息发布终端", "XP-55", "西派", "台", 92, "CG-004", ""),
        ("六类跳线", "CAT6-3M", "", "根", 4000, "CG-005", ""),
    ];
    for (i, (name, model, brand, unit, qty, no, site)) in rows.iter().enumerate() {
        let r = i as u32 + 1;
        ws.write_number(r, 0, r).unwrap();
        ws.write_string(r, 1, *name).unwrap();
        ws.write_string(r, 2, *model).unwrap();
        ws.write_string(r, 3, *brand).unwrap();
        ws.write_string(r, 4, *unit).unwrap();
        ws.write_number(r, 5, *qty).unwrap();
        ws.write_string(r, 6, *no).unwrap();
        ws.write_string(r, 7, *site).unwrap();
    }
    book.save_to_buffer().unwrap()
}

/// A good import, then export → the same layout → re-importing it finds every asset number taken.
async fn good_import_export_and_reimport(s: TestServer) {
    let cid = s.seed_contract(SEED).await;
    s.member("eng.zhao", cid, ContractRole::Engineer).await;
    let mut eng = s.login("eng.zhao").await;

    let r = import(&mut eng, cid, "设备清单.xlsx", true, good_workbook()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = r.json();
    assert_eq!(report["rows"], 5);
    assert_eq!(report["rows_read"], 5);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["format"], "xlsx");
    assert_eq!(report["sheet_name"], "设备清单");
    assert!(report["problems"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["imported"].is_null());
    assert_eq!(ledger_count(&s, cid).await, 0, "a dry run writes nothing");

    let r = import(&mut eng, cid, "设备清单.xlsx", false, good_workbook()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["imported"], 5);
    assert_eq!(ledger_count(&s, cid).await, 5);

    let resp = eng.request(Method::GET, &format!("/api/v1/contracts/{cid}/assets/export.xlsx")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    let exported = resp.bytes().await.unwrap().to_vec();
    let sheet = yunwei_reports::read_sheet(&exported, "export.xlsx").unwrap();
    assert_eq!(sheet.header_row, 1);
    assert_eq!(sheet.rows.len(), 5);
    let name_col = sheet.headers.iter().position(|h| h == "设备名称").unwrap();
    let site_col = sheet.headers.iter().position(|h| h == "站点").unwrap();
    let qty_col = sheet.headers.iter().position(|h| h == "数量").unwrap();
    use yunwei_core::ledger::CellValue;
    assert_eq!(sheet.rows[1][name_col], CellValue::Text("精密空调（基础运维）".into()));
    assert_eq!(sheet.rows[1][site_col], CellValue::Text("政务中心核心机房".into()));
    assert_eq!(sheet.rows[4][qty_col], CellValue::Number(4000.0));

    // The export is the import's layout: a dry run of it reads every row and finds each one's
    // asset number already in the ledger.
    let r = import(&mut eng, cid, "export.xlsx", true, exported.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = r.json();
    assert_eq!(report["rows_read"], 5);
    assert!(report["ignored_columns"].as_array().unwrap().is_empty(), "{report}");
    let found = problems(&report);
    assert_eq!(found.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 3, 4, 5, 6], "{report}");
    assert!(found.iter().all(|p| p.1.contains("already in the ledger")), "{found:?}");
    assert_eq!(report["problems"][0]["column"], "资产编号");
    assert!(report["problems"][0]["message_zh"].as_str().unwrap().contains("CG-001"));
    let r = import(&mut eng, cid, "export.xlsx", false, exported).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(ledger_count(&s, cid).await, 5);
}
both_engines!(good_import_export_and_reimport);

/// Merged cells, empty rows, formulas (a cached value and an error), dates as date cells, as
/// numbers and as text, duplicate asset numbers, a row without a name.
fn bad_workbook() -> Vec<u8> {
    let mut book = Workbook::new();
    let ws = book.add_worksheet();
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let plain = Format::new();
    for (c, h) in ["序号", "设备名称", "品牌", "数量", "安装日期", "站点", "资产编号"].iter().enumerate()
    {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    // Row 2: good; a date cell; 站点 merged over rows 2–4.
    ws.write_number(1, 0, 1).unwrap();
    ws.write_string(1, 1, "UPS主机").unwrap();
    ws.write_number(1, 3, 1).unwrap();
    ws.write_datetime_with_format(1, 4, ExcelDateTime::from_ymd(2021, 1, 1).unwrap(), &date).unwrap();
    ws.merge_range(1, 5, 3, 5, "政务中心核心机房", &plain).unwrap();
    ws.write_string(1, 6, "ZC-1").unwrap();
    // Row 3: good; quantity a formula with its cached value, the date as text.
    ws.write_number(2, 0, 2).unwrap();
    ws.write_string(2, 1, "精密空调").unwrap();
    ws.write_formula(2, 3, Formula::new("=1+1").set_result("2")).unwrap();
    ws.write_string(2, 4, "2022年6月").unwrap();
    ws.write_string(2, 6, "ZC-2").unwrap();
    // Row 4: a formula error; the date as a plain number (a serial).
    ws.write_number(3, 0, 3).unwrap();
    ws.write_string(3, 1, "核心交换机").unwrap();
    ws.write_formula(3, 3, Formula::new("=#REF!*2").set_result("#REF!")).unwrap();
    ws.write_number(3, 4, 44_197).unwrap();
    ws.write_string(3, 6, "ZC-3").unwrap();
    // Row 5 empty. Row 6: a date that does not exist, typed as text.
    ws.write_number(5, 0, 4).unwrap();
    ws.write_string(5, 1, "防火墙").unwrap();
    ws.write_string(5, 4, "2022年13月").unwrap();
    // Row 7: the asset number of row 2 again. Row 8: no name.
    ws.write_number(6, 0, 5).unwrap();
    ws.write_string(6, 1, "服务器").unwrap();
    ws.write_string(6, 6, "ZC-1").unwrap();
    ws.write_number(7, 0, 6).unwrap();
    ws.write_string(7, 2, "华为").unwrap();
    book.save_to_buffer().unwrap()
}

async fn bad_sheet_is_reported_and_nothing_written(s: TestServer) {
    let cid = s.seed_contract(SEED).await;
    s.member("eng.zhao", cid, ContractRole::Engineer).await;
    let mut eng = s.login("eng.zhao").await;

    let r = import(&mut eng, cid, "台账.xlsx", true, bad_workbook()).await;
    assert_eq!(r.status, StatusCode::OK, "a dry run reports: {}", r.body);
    let report = r.json();
    assert_eq!(report["rows_read"], 6);
    assert_eq!(report["rows"], 2, "rows that passed");
    assert_eq!(report["blank_rows"], 1);
    let found = problems(&report);
    let rows: Vec<u64> = found.iter().map(|p| p.0).collect();
    assert_eq!(rows, [4, 6, 7, 8], "rows 2 and 3 are good (merged site, cached formula, dates): {found:?}");
    let reason = |row: u64| found.iter().find(|p| p.0 == row).map(|p| p.1.clone()).unwrap();
    assert!(reason(4).contains("formula error #REF!"), "{found:?}");
    assert!(reason(6).contains("Unrecognised date"), "{found:?}");
    assert!(reason(7).contains("repeats row 2"), "{found:?}");
    assert!(reason(8).contains("name is empty"), "{found:?}");
    for p in report["problems"].as_array().unwrap() {
        assert!(!p["message_zh"].as_str().unwrap().is_empty());
        assert_eq!(
            p["message"],
            format!("{} / {}", p["message_zh"].as_str().unwrap(), p["message_en"].as_str().unwrap())
        );
    }
    assert_eq!(ledger_count(&s, cid).await, 0);

    let r = import(&mut eng, cid, "台账.xlsx", false, bad_workbook()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let report = r.json();
    assert_eq!(problems(&report).len(), found.len());
    assert_eq!(report["error"]["code"], "invalid");
    assert!(report["error"]["message_zh"].as_str().unwrap().contains("未导入"));
    assert!(report["imported"].is_null());
    assert_eq!(ledger_count(&s, cid).await, 0, "all or nothing: the good rows were not written either");
}
both_engines!(bad_sheet_is_reported_and_nothing_written);

async fn gbk_csv_keeps_its_chinese(s: TestServer) {
    let cid = s.seed_contract(SEED).await;
    s.member("eng.zhao", cid, ContractRole::Engineer).await;
    let mut eng = s.login("eng.zhao").await;
    let text = "序号,设备名称,品牌型号,品牌,单位,数量,备注\r\n\
                1,UPS主机,NX60KVA,艾默生,台,1,机房（一楼）\r\n\
                2,叫号机,\"QM-100, 触摸款\",齐安,台,12,大厅\r\n\
                3,六类跳线,,,根,\"4,000\",\r\n";
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
    let gbk = gbk.into_owned();
    assert!(!unmappable && std::str::from_utf8(&gbk).is_err());
    let r = import(&mut eng, cid, "设备.csv", false, gbk).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = r.json();
    assert_eq!(report["format"], "csv");
    assert_eq!(report["encoding"], "GB18030");
    assert_eq!(report["imported"], 3);
    let scope = s.operator().contract_scope(&s.state.db, cid).await.unwrap();
    let (headers, rows) = yunwei_storage::assets::export_rows(&s.state.db, &scope).await.unwrap();
    let col = |h: &str| headers.iter().position(|x| *x == h).unwrap();
    assert_eq!(rows[0][col("设备名称")], "UPS主机");
    assert_eq!(rows[0][col("品牌")], "艾默生");
    assert_eq!(rows[0][col("备注")], "机房（一楼）");
    assert_eq!(rows[1][col("品牌型号")], "QM-100, 触摸款");
    assert_eq!(rows[2][col("数量")], "4000");
}
both_engines!(gbk_csv_keeps_its_chinese);

/// A compound file (MS-CFB v3) with the streams Office's "Encrypt with password" writes around an
/// encrypted .xlsx.
fn password_protected_xlsx() -> Vec<u8> {
    const END: u32 = 0xFFFF_FFFE;
    let mut header = vec![0u8; 512];
    header[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    let put = |b: &mut Vec<u8>, at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(&mut header, 24, &0x3Eu16.to_le_bytes());
    put(&mut header, 26, &3u16.to_le_bytes());
    put(&mut header, 28, &0xFFFEu16.to_le_bytes());
    put(&mut header, 30, &9u16.to_le_bytes());
    put(&mut header, 32, &6u16.to_le_bytes());
    put(&mut header, 44, &1u32.to_le_bytes());
    put(&mut header, 48, &1u32.to_le_bytes());
    put(&mut header, 56, &4096u32.to_le_bytes());
    put(&mut header, 60, &END.to_le_bytes());
    put(&mut header, 68, &END.to_le_bytes());
    header[76..].fill(0xFF);
    put(&mut header, 76, &0u32.to_le_bytes());
    let mut fat = vec![0xFFu8; 512];
    put(&mut fat, 0, &0xFFFF_FFFDu32.to_le_bytes());
    put(&mut fat, 4, &END.to_le_bytes());
    let mut dir = vec![0u8; 512];
    for (i, name) in ["Root Entry", "EncryptionInfo", "EncryptedPackage"].iter().enumerate() {
        let e = &mut dir[i * 128..(i + 1) * 128];
        let units: Vec<u8> = name.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
        e[..units.len()].copy_from_slice(&units);
        e[64..66].copy_from_slice(&(units.len() as u16).to_le_bytes());
        e[66] = if i == 0 { 5 } else { 2 };
        e[68..80].fill(0xFF);
        e[116..120].copy_from_slice(&END.to_le_bytes());
    }
    [header, fat, dir].concat()
}

async fn unreadable_files_are_refused_clearly(s: TestServer) {
    let cid = s.seed_contract(SEED).await;
    s.member("eng.zhao", cid, ContractRole::Engineer).await;
    let mut eng = s.login("eng.zhao").await;
    let good = good_workbook();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("加密.xlsx", password_protected_xlsx(), "encrypted", "密码"),
        ("坏.xlsx", good[..good.len() / 2].to_vec(), "corrupt", "损坏"),
        ("坏2.xlsx", b"PK\x03\x04 this is not really a zip archive".to_vec(), "corrupt", "损坏"),
        ("图片.xlsx", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0".to_vec(), "not_a_spreadsheet", "不是表格文件"),
        ("空.csv", Vec::new(), "empty_file", "文件为空"),
    ];
    for dry_run in [true, false] {
        for (name, bytes, reason, zh) in &cases {
            let r = import(&mut eng, cid, name, dry_run, bytes.clone()).await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {}", r.body);
            let e = &r.json()["error"];
            assert_eq!(e["reason"], *reason, "{name}: {e}");
            assert_eq!(e["field"], "file");
            assert!(e["message_zh"].as_str().unwrap().contains(zh), "{name}: {e}");
            assert!(!e["message_en"].as_str().unwrap().is_empty());
        }
    }
    let r = import(&mut eng, cid, "加密.xlsx", false, password_protected_xlsx()).await;
    assert!(r.json()["error"]["message_en"].as_str().unwrap().contains("password"), "{}", r.body);
    assert_eq!(ledger_count(&s, cid).await, 0);

    // Over 50 MB: 413, or the connection closed mid-body when the server stops reading first.
    let too_big = vec![b'a'; 50 * 1024 * 1024 + 1];
    match import_request(&eng, cid, "big.csv", true, too_big).send().await {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    eng.reconnect();
    // Writes without the CSRF token are refused before the file is read.
    let rb =
        eng.request(Method::POST, &format!("/api/v1/contracts/{cid}/assets/import?name=a.xlsx")).body(good_workbook());
    let r = eng.send(rb).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(ledger_count(&s, cid).await, 0);
}
both_engines!(unreadable_files_are_refused_clearly);

/// 100,000 rows (2 MB of .xlsx): the dry run reads and checks them all within the request
/// timeout. Written by yunwei-reports (optimised even in test builds) to keep the test quick.
async fn a_100000_row_dry_run(s: TestServer) {
    let cid = s.seed_contract(SEED).await;
    s.member("eng.zhao", cid, ContractRole::Engineer).await;
    let mut eng = s.login("eng.zhao").await;
    let headers = ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量", "资产编号"];
    let rows: Vec<Vec<String>> = (1..=100_000)
        .map(|i| {
            vec![
                i.to_string(),
                "信息发布屏".into(),
                format!("LED-{}", i % 97),
                "洲明".into(),
                "台".into(),
                "1".into(),
                format!("ZC-{i:06}"),
            ]
        })
        .collect();
    let bytes = yunwei_reports::ledger_xlsx(&headers, &rows).unwrap();
    let started = std::time::Instant::now();
    let r = import(&mut eng, cid, "十万行.xlsx", true, bytes).await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", &r.body[..r.body.len().min(500)]);
    let report = r.json();
    assert_eq!(report["rows"], 100_000);
    assert_eq!(report["rows_read"], 100_000);
    assert!(report["problems"].as_array().unwrap().is_empty());
    eprintln!("100,000-row dry run over HTTP ({:?}): {took:?}", s.engine);
    assert_eq!(ledger_count(&s, cid).await, 0);
}
both_engines!(a_100000_row_dry_run);

async fn who_may_import_and_export(s: TestServer) {
    let cid = s.seed_contract(SEED).await;
    let other = s.seed_contract("004-chengdu-dcm.toml").await;
    s.member("eng.zhao", cid, ContractRole::Engineer).await;
    s.member("user.li", cid, ContractRole::ClientEndUser).await;
    s.member("sup.wang", cid, ContractRole::ClientSupervisor).await;
    s.member("eng.he", other, ContractRole::Engineer).await;
    let export = format!("/api/v1/contracts/{cid}/assets/export.xlsx");

    let mut user = s.login("user.li").await;
    let r = import(&mut user, cid, "a.xlsx", true, good_workbook()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an end user may not import: {}", r.body);
    assert_eq!(user.get(&export).await.status, StatusCode::FORBIDDEN, "nor see the ledger");

    let mut sup = s.login("sup.wang").await;
    let r = import(&mut sup, cid, "a.xlsx", false, good_workbook()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the supervisor reads the ledger but does not change it");
    let resp = sup.request(Method::GET, &export).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let mut he = s.login("eng.he").await;
    let r = import(&mut he, cid, "a.xlsx", false, good_workbook()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another contract's engineer: {}", r.body);
    assert_eq!(he.get(&export).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ledger_count(&s, cid).await, 0);

    let mut eng = s.login("eng.zhao").await;
    let r = import(&mut eng, cid, "a.xlsx", false, good_workbook()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ledger_count(&s, cid).await, 5);
    assert_eq!(ledger_count(&s, other).await, 0);
}
both_engines!(who_may_import_and_export);
