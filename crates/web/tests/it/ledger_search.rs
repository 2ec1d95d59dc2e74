//! Ledger search through the search index (SQLite: the FTS5 trigram index and its term list;
//! PostgreSQL: pg_trgm, chosen by the planner) against the scan it stands in for: for rare, common,
//! one- and two-character, Chinese, mixed-case and special-character terms, alone and with a
//! filter, page by page, after an import and after edits, the pages hold exactly the contract's
//! assets whose `search_text LIKE '%term%'`, in id order.

use sqlx::{AnyConnection, Connection, Row};
use yunwei_core::ledger::CellValue;
use yunwei_storage::assets::{self, AssetFilter, AssetInput};
use yunwei_storage::{ContractScope, Db};

use crate::both_engines;
use crate::harness::{Engine, TestServer};

/// More matches than the index is asked for (1000), so that common terms take the other paths.
const COMMON: usize = 1100;

/// The ids of the contract's assets whose search text holds `q`, by reading every row with LIKE:
/// the semantics the index must keep.
async fn scan(c: &mut AnyConnection, cid: i64, q: &str, kind: &str) -> Vec<i64> {
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
         AND ($3 = '' OR kind = $3) ORDER BY id",
    )
    .bind(cid)
    .bind(pattern)
    .bind(kind.to_string())
    .fetch_all(&mut *c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<i64, _>("id").unwrap())
    .collect()
}

/// Every page of a search, `limit` at a time, following the cursor.
async fn search(db: &Db, scope: &ContractScope, q: &str, kind: &str, limit: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let f = AssetFilter {
            q: Some(q.into()),
            kind: (!kind.is_empty()).then(|| kind.to_string()),
            after,
            limit: Some(limit),
            ..Default::default()
        };
        let page = assets::list(db, scope, &f).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        ids.extend(page.items.iter().map(|a| a.id));
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    ids
}

async fn import(s: &TestServer, scope: &ContractScope, rows: Vec<[&str; 7]>) {
    let headers: Vec<String> = ["类型", "设备名称", "品牌型号", "资产编号", "房间", "负责人", "设备类别"]
        .iter()
        .map(|h| h.to_string())
        .collect();
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

/// The terms compared, with a kind filter or none.
const TERMS: &[(&str, &str)] = &[
    ("交换机", ""),     // common (more than the index is asked for)
    ("交换机", "host"), // common, but the filter leaves few
    ("交换", ""),       // two characters, common
    ("交", "network"),  // one character
    ("机房", ""),       // two Chinese characters, common in the other contract
    ("机房", "host"),
    ("房", ""),          // at the very end of a search text
    ("尾房", ""),        // two characters at the very end
    ("末尾房", ""),      // three, at the end
    ("zc-000777", ""),   // rare
    ("ZC-000777", ""),   // upper case finds lower
    ("zc-001100", ""),   // the last of the common ones
    ("zc-0", "network"), // every network asset of A
    ("zc-0", "host"),    // none
    ("s12708", ""),
    ("r740 fw", ""), // across two fields
    ("hx-77", ""),   // rare here, common in the other contract
    ("hx", ""),      // two characters, common in the other contract only
    ("50%", ""),     // LIKE's wildcards are literal
    ("%", ""),
    ("_", ""),
    ("a_b", ""),
    ("a%b", ""),
    ("\\", ""),
    ("c\\d", ""),
    ("\"", ""),
    ("\"x\"", ""),
    ("引号\"x", ""),
    ("mixed", ""),
    ("MIXED CASE", ""),
    ("äö", ""),
    ("ÄÖ", ""),
    ("Ω", ""),
    ("ω", ""),
    ("王伟", ""), // two Chinese characters, rare
    ("王", "host"),
    ("不存在的词", ""),
    ("qq", ""),
    ("1", "host"),
    ("c2", ""),
    ("  交换机  ", "host"), // trimmed
    ("xyz", ""),            // only after the edits
    ("阵列", ""),
    ("服务器5", ""),
];

async fn compare(s: &TestServer, c: &mut AnyConnection, scope: &ContractScope, cid: i64, when: &str) {
    for (q, kind) in TERMS {
        let want = scan(c, cid, q, kind).await;
        for limit in [13, 500] {
            let got = search(&s.state.db, scope, q, kind, limit).await;
            assert_eq!(got, want, "{when}: q={q:?} kind={kind:?} limit={limit}");
        }
    }
}

async fn index_matches_scan(s: TestServer) {
    let a = s.contract("CG-SEARCH-A").await;
    let b = s.contract("CG-SEARCH-B").await;
    let scope_a = s.operator().contract_scope(&s.state.db, a).await.unwrap();
    let scope_b = s.operator().contract_scope(&s.state.db, b).await.unwrap();
    // The other contract first, so that its assets hold the low ids.
    let b_rows: Vec<(String, String)> = (1..=COMMON).map(|i| (format!("交换机B{i}"), format!("HB-{i:06}"))).collect();
    import(
        &s,
        &scope_b,
        b_rows.iter().map(|(name, no)| ["network", name.as_str(), "HX-77", no.as_str(), "机房", "", ""]).collect(),
    )
    .await;
    let common: Vec<(String, String)> =
        (1..=COMMON).map(|i| (format!("核心交换机{i}"), format!("ZC-{i:06}"))).collect();
    let hosts: Vec<(String, String, String)> =
        (1..=60).map(|i| (format!("服务器{i}"), format!("FW-{i}"), format!("机房{}", i % 3))).collect();
    let mut rows: Vec<[&str; 7]> = Vec::new();
    // Hosts between the switches: matches of a common term are not all at the start.
    for (i, (name, no)) in common.iter().enumerate() {
        rows.push(["network", name, "S12708", no, "", "", ""]);
        if i % 20 == 0 {
            let (hname, hno, room) = &hosts[i / 20];
            rows.push(["host", hname, "R740", hno, room, if i % 40 == 0 { "王伟" } else { "" }, ""]);
        }
    }
    rows.extend([
        ["host", "HX-77 计算节点", "", "", "", "", ""],
        ["other", "另一台", "hx-77", "", "", "", ""],
        ["environment", "50%负载", "", "", "", "", ""],
        ["network", "a_b 交换机", "", "", "", "", ""],
        ["network", "a%b 交换机", "", "", "", "", ""],
        ["other", "c\\d", "", "", "", "", ""],
        ["other", "引号\"x\"", "", "", "", "", ""],
        ["other", "MiXeD Case ÄÖ", "", "", "", "", ""],
        ["other", "欧姆Ω", "", "", "", "", ""],
        ["other", "末尾", "", "", "", "", "末尾房"],
        ["host", "房", "", "", "", "", ""],
    ]);
    import(&s, &scope_a, rows).await;

    let mut c = AnyConnection::connect(&s.db.url).await.unwrap();
    compare(&s, &mut c, &scope_a, a, "after import").await;

    // Edits: one host is renamed (its old words go, new ones come), another becomes a switch.
    let page = assets::list(
        &s.state.db,
        &scope_a,
        &AssetFilter { kind: Some("host".into()), limit: Some(500), ..Default::default() },
    )
    .await
    .unwrap();
    let host = |name: &str| page.items.iter().find(|x| x.name == name).unwrap().clone();
    for (old, name) in [("服务器5", "存储阵列XYZ"), ("服务器7", "备用交换机")] {
        let h = host(old);
        let input = AssetInput {
            kind: h.kind.clone(),
            name: name.into(),
            model: h.model.clone(),
            asset_no: h.asset_no.clone(),
            room: h.room.clone(),
            owner: h.owner.clone(),
            status: h.status.clone(),
            quantity: Some(h.quantity),
            ..Default::default()
        };
        assets::update(&s.state.db, &scope_a, h.id, h.version, &input, s.now()).await.unwrap();
    }
    assert_eq!(search(&s.state.db, &scope_a, "xyz", "", 50).await.len(), 1);
    assert!(search(&s.state.db, &scope_a, "服务器5", "", 50).await.iter().all(|id| *id != host("服务器5").id));
    compare(&s, &mut c, &scope_a, a, "after edits").await;
    // The other contract sees its own assets only.
    assert_eq!(search(&s.state.db, &scope_b, "hx-77", "", 500).await, scan(&mut c, b, "hx-77", "").await);
    assert_eq!(scan(&mut c, b, "hx-77", "").await.len(), COMMON);

    match s.engine {
        // The index's own consistency after inserts and edits.
        Engine::Sqlite => {
            sqlx::query("INSERT INTO asset_search (asset_search) VALUES ('integrity-check')")
                .execute(&mut c)
                .await
                .unwrap();
        }
        // The test server may create pg_trgm (as CI's may): migration 0006 made the index.
        Engine::Postgres => {
            let n = sqlx::query("SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'asset_search_trgm'")
                .fetch_one(&mut c)
                .await
                .unwrap()
                .try_get::<i64, _>("n")
                .unwrap();
            assert_eq!(n, 1);
        }
    }
    c.close().await.unwrap();
}
both_engines!(index_matches_scan);
