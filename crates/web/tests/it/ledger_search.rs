//! Ledger search through the search indexes (SQLite: the FTS5 trigram index with a mark per
//! contract and filter value, and its term list; PostgreSQL: the trigram index of the filters and
//! text, and the index of the text's one- and two-character substrings, chosen by the planner)
//! against the scan they stand in for: for rare, common, one- and two-character, Chinese,
//! mixed-case and special-character terms, alone and under kind, status, site and supplier filters,
//! page by page, after an import and after edits that change the text, kind, status, site and
//! supplier, the pages hold exactly the contract's assets that meet the filters and whose
//! `search_text LIKE '%term%'`, in id order; and another contract's assets never.

use sqlx::{AnyConnection, Connection, Row};
use yunwei_core::ledger::CellValue;
use yunwei_storage::assets::{self, AssetFilter, AssetInput};
use yunwei_storage::{ContractScope, Db, reconciliation, sites, suppliers};

use crate::both_engines;
use crate::harness::{Engine, TestServer};

/// More matches than the index is asked for at most (1000), so that common terms take the other
/// paths.
const COMMON: usize = 1100;

/// The conditions of a list besides the term: kind and status as stored ("" for none), site and
/// supplier ids (0 for none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Filter {
    kind: &'static str,
    status: &'static str,
    site: i64,
    supplier: i64,
}

/// The ids of the contract's assets that meet `f` and whose search text holds `q`, by reading
/// every row with LIKE: the semantics the indexes must keep.
async fn scan(c: &mut AnyConnection, cid: i64, q: &str, f: Filter) -> Vec<i64> {
    let mut pattern = String::from("%");
    for ch in q.trim().to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    sqlx::query(
        "SELECT id FROM asset WHERE contract_id = $1 AND search_text LIKE $2 ESCAPE '\\' \
         AND ($3 = '' OR kind = $3) AND ($4 = '' OR status = $4) AND ($5 = 0 OR site_id = $5) \
         AND ($6 = 0 OR supplier_id = $6) ORDER BY id",
    )
    .bind(cid)
    .bind(pattern)
    .bind(f.kind.to_string())
    .bind(f.status.to_string())
    .bind(f.site)
    .bind(f.supplier)
    .fetch_all(&mut *c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<i64, _>("id").unwrap())
    .collect()
}

/// Every page of a search, `limit` at a time, following the cursor.
async fn search(db: &Db, scope: &ContractScope, q: &str, f: Filter, limit: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = None;
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let id = |v: i64| (v != 0).then_some(v);
    loop {
        let filter = AssetFilter {
            q: Some(q.into()),
            kind: text(f.kind),
            status: text(f.status),
            site_id: id(f.site),
            supplier_id: id(f.supplier),
            after,
            limit: Some(limit),
        };
        let page = assets::list(db, scope, &filter).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        ids.extend(page.items.iter().map(|a| a.id));
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    ids
}

/// The columns of the sheets imported here.
const HEADERS: [&str; 10] =
    ["类型", "设备名称", "品牌型号", "资产编号", "房间", "负责人", "设备类别", "状态", "站点", "供应商"];

async fn import(s: &TestServer, scope: &ContractScope, rows: Vec<[&str; 10]>) {
    let headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    let cells: Vec<Vec<CellValue>> = rows
        .iter()
        .map(|r| {
            r.iter().map(|v| if v.is_empty() { CellValue::Empty } else { CellValue::Text(v.to_string()) }).collect()
        })
        .collect();
    let report = assets::import(&s.state.db, scope, &headers, &cells, false, s.now()).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.imported, Some(rows.len()));
}

async fn site(s: &TestServer, scope: &ContractScope, name: &str) -> i64 {
    let input = sites::SiteInput {
        name: name.into(),
        kind: "machine_room".into(),
        address: String::new(),
        notes: String::new(),
    };
    sites::create(&s.state.db, scope, &input, s.now()).await.unwrap().id
}

async fn supplier(s: &TestServer, scope: &ContractScope, name: &str) -> i64 {
    let input = suppliers::SupplierInput { name: name.into(), ..Default::default() };
    suppliers::create(&s.state.db, scope, &input, s.now()).await.unwrap().id
}

/// Sites and suppliers of the filters by number (1, 2), 0 for none.
const NO: (u8, u8) = (0, 0);

/// The terms compared, with a kind, a status, and a site and supplier by number.
const TERMS: &[(&str, &str, &str, (u8, u8))] = &[
    ("交换机", "", "", NO),     // common (more than the index is asked for)
    ("交换机", "host", "", NO), // common, but the filter leaves few
    ("交换机", "", "retired", NO),
    ("交换机", "", "in_stock", NO),
    ("交换机", "", "", (2, 0)), // site 2 holds hosts only
    ("交换机", "", "", (1, 0)),
    ("交换机", "", "", (0, 1)),
    ("交换机", "", "", (0, 2)),
    ("交换机1", "", "retired", NO),
    ("交换机12", "", "", (2, 0)),
    ("交换机13", "", "", (0, 2)),
    ("交换", "", "retired", NO),
    ("服务器", "host", "", NO),
    ("服务器", "security", "", NO),
    ("服务", "security", "", NO),
    ("交换机", "network", "in_service", (1, 1)),
    ("交换机", "network", "in_stock", (0, 2)),
    ("服务器", "", "", (2, 0)),
    ("服务器", "host", "in_service", (2, 0)),
    ("核心交换机1", "", "in_stock", NO),
    ("交换", "", "", NO),     // two characters, common
    ("交换", "host", "", NO), // two characters, common, the filter leaves few
    ("交换", "", "", (2, 0)),
    ("交", "network", "", NO), // one character
    ("交", "", "under_repair", NO),
    ("机房", "", "", NO), // two Chinese characters, common in the other contract
    ("机房", "host", "", NO),
    ("机房", "", "", (2, 0)),
    ("机房", "", "", (1, 1)),
    ("机", "", "in_stock", NO),
    ("房", "", "", NO),        // at the very end of a search text
    ("尾房", "", "", NO),      // two characters at the very end
    ("末尾房", "", "", NO),    // three, at the end
    ("zc-000777", "", "", NO), // rare
    ("ZC-000777", "", "", NO), // upper case finds lower
    ("zc-000777", "network", "in_service", NO),
    ("zc-000777", "host", "", NO),
    ("zc-001100", "", "", NO),   // the last of the common ones
    ("zc-0", "network", "", NO), // every network asset of A
    ("zc-0", "host", "", NO),    // none
    ("zc-0", "", "in_stock", (0, 1)),
    ("s12708", "", "", NO),
    ("s12708", "", "", (1, 0)),
    ("r740 fw", "", "", NO), // across two fields
    ("hx-77", "", "", NO),   // rare here, common in the other contract
    ("hx-77", "host", "", NO),
    ("hx", "", "", NO), // two characters, common in the other contract only
    ("hx", "other", "", NO),
    ("50%", "", "", NO), // LIKE's wildcards are literal
    ("%", "", "", NO),
    ("_", "", "", NO),
    ("_", "", "in_stock", NO),
    ("a_b", "", "", NO),
    ("a%b", "", "", NO),
    ("\\", "", "", NO),
    ("c\\d", "", "", NO),
    ("\"", "", "", NO),
    ("\"x\"", "", "", NO),
    ("引号\"x", "", "", NO),
    ("mixed", "", "", NO),
    ("MIXED CASE", "", "", NO),
    ("äö", "", "", NO),
    ("ÄÖ", "", "", NO),
    ("Ω", "", "", NO),
    ("ω", "", "", NO),
    ("王伟", "", "", NO), // two Chinese characters, rare
    ("王", "host", "", NO),
    ("不存在的词", "", "", NO),
    ("qq", "", "", NO),
    ("1", "host", "", NO),
    ("1", "", "", (2, 0)),
    ("c2", "", "", NO),
    ("  交换机  ", "host", "", NO), // trimmed
    ("xyz", "", "", NO),            // only after the edits
    ("阵列", "", "", NO),
    ("阵列", "storage", "", (1, 0)),
    ("服务器5", "", "", NO),
];

struct Ledger {
    sites: [i64; 2],
    suppliers: [i64; 2],
}

impl Ledger {
    fn filter(&self, kind: &'static str, status: &'static str, (site, supplier): (u8, u8)) -> Filter {
        let pick = |ids: &[i64; 2], n: u8| if n == 0 { 0 } else { ids[usize::from(n) - 1] };
        Filter { kind, status, site: pick(&self.sites, site), supplier: pick(&self.suppliers, supplier) }
    }
}

async fn compare(s: &TestServer, c: &mut AnyConnection, scope: &ContractScope, cid: i64, l: &Ledger, when: &str) {
    for (q, kind, status, by) in TERMS {
        let f = l.filter(kind, status, *by);
        let want = scan(c, cid, q, f).await;
        for limit in [13, 500] {
            let got = search(&s.state.db, scope, q, f, limit).await;
            assert_eq!(got, want, "{when}: q={q:?} {f:?} limit={limit}");
        }
    }
}

async fn index_matches_scan(s: TestServer) {
    let a = s.contract("CG-SEARCH-A").await;
    let b = s.contract("CG-SEARCH-B").await;
    let scope_a = s.operator().contract_scope(&s.state.db, a).await.unwrap();
    let scope_b = s.operator().contract_scope(&s.state.db, b).await.unwrap();
    // The other contract first, so that its assets hold the low ids; its site and supplier have
    // the same names as A's first ones.
    let site_b = site(&s, &scope_b, "一号机房").await;
    let supplier_b = supplier(&s, &scope_b, "甲公司").await;
    let b_rows: Vec<(String, String)> = (1..=COMMON).map(|i| (format!("交换机B{i}"), format!("HB-{i:06}"))).collect();
    import(
        &s,
        &scope_b,
        b_rows
            .iter()
            .map(|(name, no)| {
                ["network", name.as_str(), "HX-77", no.as_str(), "机房", "", "", "在用", "一号机房", "甲公司"]
            })
            .collect(),
    )
    .await;
    let l = Ledger {
        sites: [site(&s, &scope_a, "一号机房").await, site(&s, &scope_a, "二号机房").await],
        suppliers: [supplier(&s, &scope_a, "甲公司").await, supplier(&s, &scope_a, "乙公司").await],
    };
    let common: Vec<(String, String)> =
        (1..=COMMON).map(|i| (format!("核心交换机{i}"), format!("ZC-{i:06}"))).collect();
    let hosts: Vec<(String, String, String)> =
        (1..=60).map(|i| (format!("服务器{i}"), format!("FW-{i}"), format!("机房{}", i % 3))).collect();
    let mut rows: Vec<[&str; 10]> = Vec::new();
    // Hosts between the switches: matches of a common term are not all at the start. Switches
    // are in service or in stock, at site 1 or none, from either supplier or none; hosts are at
    // site 2 only.
    for (i, (name, no)) in common.iter().enumerate() {
        let status = if i % 7 == 3 { "库存" } else { "在用" };
        let site = if i % 2 == 0 { "一号机房" } else { "" };
        let supplier = ["甲公司", "乙公司", ""][i % 3];
        rows.push(["network", name, "S12708", no, "", "", "", status, site, supplier]);
        if i % 20 == 0 {
            let (hname, hno, room) = &hosts[i / 20];
            let owner = if i % 40 == 0 { "王伟" } else { "" };
            rows.push(["host", hname, "R740", hno, room, owner, "", "在用", "二号机房", ""]);
        }
    }
    rows.extend([
        ["host", "HX-77 计算节点", "", "", "", "", "", "维修中", "", ""],
        ["other", "另一台", "hx-77", "", "", "", "", "", "", "乙公司"],
        ["environment", "50%负载", "", "", "", "", "", "", "", ""],
        ["network", "a_b 交换机", "", "", "", "", "", "库存", "", ""],
        ["network", "a%b 交换机", "", "", "", "", "", "", "", ""],
        ["other", "c\\d", "", "", "", "", "", "", "", ""],
        ["other", "引号\"x\"", "", "", "", "", "", "", "", ""],
        ["other", "MiXeD Case ÄÖ", "", "", "", "", "", "", "", ""],
        ["other", "欧姆Ω", "", "", "", "", "", "", "", ""],
        ["other", "末尾", "", "", "", "", "末尾房", "", "", ""],
        ["host", "房", "", "", "", "", "", "已报废", "", ""],
    ]);
    let imported = rows.len();
    import(&s, &scope_a, rows).await;

    let mut c = AnyConnection::connect(&s.db.url).await.unwrap();
    imported_history_is_each_assets_own(&mut c, a, imported).await;
    compare(&s, &mut c, &scope_a, a, &l, "after import").await;

    // Edits, each changing what it names and keeping the rest: a host renamed (its old words go,
    // new ones come) that becomes storage at site 1; a host renamed into a switch under repair
    // from supplier 2; then one change alone each, so that every column the index marks is seen
    // to move it: a switch's site (none → 2), another's supplier (1 → 2), a host's kind (→
    // security), and a switch's status (in stock → retired) by a retirement.
    let every = |kind: &str| AssetFilter { kind: Some(kind.into()), limit: Some(500), ..Default::default() };
    let hosts_page = assets::list(&s.state.db, &scope_a, &every("host")).await.unwrap();
    let switches = assets::list(&s.state.db, &scope_a, &every("network")).await.unwrap();
    let find = |name: &str| hosts_page.items.iter().chain(&switches.items).find(|x| x.name == name).unwrap().clone();
    #[derive(Default)]
    struct Edit {
        name: Option<&'static str>,
        kind: Option<&'static str>,
        status: Option<&'static str>,
        site: Option<Option<i64>>,
        supplier: Option<Option<i64>>,
    }
    let edits = [
        (
            "服务器5",
            Edit {
                name: Some("存储阵列XYZ"),
                kind: Some("storage"),
                site: Some(Some(l.sites[0])),
                ..Default::default()
            },
        ),
        (
            "服务器7",
            Edit {
                name: Some("备用交换机"),
                kind: Some("network"),
                status: Some("under_repair"),
                site: Some(None),
                supplier: Some(Some(l.suppliers[1])),
            },
        ),
        ("核心交换机12", Edit { site: Some(Some(l.sites[1])), ..Default::default() }),
        ("核心交换机13", Edit { supplier: Some(Some(l.suppliers[1])), ..Default::default() }),
        ("服务器9", Edit { kind: Some("security"), ..Default::default() }),
    ];
    for (old, e) in edits {
        let h = find(old);
        let input = AssetInput {
            kind: e.kind.unwrap_or(&h.kind).into(),
            name: e.name.unwrap_or(&h.name).into(),
            model: h.model.clone(),
            asset_no: h.asset_no.clone(),
            room: h.room.clone(),
            owner: h.owner.clone(),
            status: e.status.unwrap_or(&h.status).into(),
            site_id: e.site.unwrap_or(h.site_id),
            supplier_id: e.supplier.unwrap_or(h.supplier_id),
            quantity: Some(h.quantity),
            ..Default::default()
        };
        assets::update(&s.state.db, &scope_a, h.id, h.version, &input, s.now()).await.unwrap();
    }
    // The status alone, by the retirement's own statement (which sets no other column).
    let h = find("核心交换机11");
    reconciliation::retire(&s.state.db, &scope_a, h.id, h.version, "张主任", "雷击损坏", s.now()).await.unwrap();
    // The edits are what the terms below look for (in the state the import left, they find
    // nothing or other rows).
    assert_eq!(find("核心交换机11").status, "in_stock");
    assert_eq!((find("核心交换机12").site_id, find("核心交换机13").supplier_id), (None, Some(l.suppliers[0])));
    assert_eq!(search(&s.state.db, &scope_a, "xyz", Filter::default(), 50).await.len(), 1);
    assert!(
        search(&s.state.db, &scope_a, "服务器5", Filter::default(), 50)
            .await
            .iter()
            .all(|id| *id != find("服务器5").id)
    );
    let retired = Filter { status: "retired", ..Filter::default() };
    assert_eq!(search(&s.state.db, &scope_a, "交换机11", retired, 50).await, [find("核心交换机11").id]);
    let storage_at_1 = l.filter("storage", "", (1, 0));
    assert_eq!(search(&s.state.db, &scope_a, "阵列", storage_at_1, 50).await, [find("服务器5").id]);
    compare(&s, &mut c, &scope_a, a, &l, "after edits").await;

    // The other contract sees its own assets only, under its own site and supplier too; A's
    // site and supplier ids find nothing there, and B's nothing in A.
    for f in [Filter::default(), Filter { site: site_b, supplier: supplier_b, ..Filter::default() }] {
        for q in ["hx-77", "hx", "交换机", "机房", "b1"] {
            let want = scan(&mut c, b, q, f).await;
            assert_eq!(search(&s.state.db, &scope_b, q, f, 500).await, want, "B: q={q:?} {f:?}");
        }
    }
    assert_eq!(scan(&mut c, b, "hx-77", Filter::default()).await.len(), COMMON);
    for q in ["交换机", "机房", "hx"] {
        let a_site = Filter { site: l.sites[0], ..Filter::default() };
        assert!(search(&s.state.db, &scope_b, q, a_site, 500).await.is_empty());
        let b_site = Filter { site: site_b, supplier: supplier_b, ..Filter::default() };
        assert!(search(&s.state.db, &scope_a, q, b_site, 500).await.is_empty());
    }

    match s.engine {
        // The index's own consistency after inserts and edits.
        Engine::Sqlite => {
            sqlx::query("INSERT INTO asset_search (asset_search) VALUES ('integrity-check')")
                .execute(&mut c)
                .await
                .unwrap();
            // The import's pause of the insert trigger ended with it.
            let paused = sqlx::query("SELECT count(*) AS n FROM asset_search_pause").fetch_one(&mut c).await.unwrap();
            assert_eq!(paused.try_get::<i64, _>("n").unwrap(), 0);
        }
        // The test server may create pg_trgm (as CI's may): migration 0008 made both indexes and
        // dropped the one of 0006 on the text alone.
        Engine::Postgres => {
            let rows = sqlx::query(
                "SELECT indexname::text AS indexname FROM pg_indexes WHERE indexname LIKE 'asset_search%' ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            let names: Vec<String> = rows.iter().map(|r| r.try_get("indexname").unwrap()).collect();
            assert_eq!(names, ["asset_search_gram", "asset_search_key_trgm"]);
        }
    }
    c.close().await.unwrap();
}
both_engines!(index_matches_scan);

/// The import writes its assets and their history entries many rows per statement: each
/// imported asset of the contract has exactly one `import` entry, and that entry describes it.
async fn imported_history_is_each_assets_own(c: &mut AnyConnection, cid: i64, imported: usize) {
    let rows = sqlx::query(
        "SELECT a.id, a.name, a.asset_no, a.kind, h.after_json FROM asset a \
         JOIN ledger_history h ON h.contract_id = a.contract_id AND h.record_ref = 'asset:' || a.id \
         WHERE a.contract_id = $1 AND h.action = 'import' ORDER BY a.id",
    )
    .bind(cid)
    .fetch_all(&mut *c)
    .await
    .unwrap();
    assert_eq!(rows.len(), imported);
    let mut ids = Vec::new();
    for r in &rows {
        let after: serde_json::Value = serde_json::from_str(&r.try_get::<String, _>("after_json").unwrap()).unwrap();
        let id: i64 = r.try_get("id").unwrap();
        assert_eq!(after["name"], r.try_get::<String, _>("name").unwrap(), "asset {id}");
        assert_eq!(after["asset_no"], r.try_get::<String, _>("asset_no").unwrap(), "asset {id}");
        assert_eq!(after["kind"], r.try_get::<String, _>("kind").unwrap(), "asset {id}");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), imported, "one entry per asset");
}
