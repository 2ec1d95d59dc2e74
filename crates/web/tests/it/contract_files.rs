//! Contracts as data: import, versions with readable changes, the SLA in plain words on the page,
//! bad files refused with the stored contract unchanged, holiday years loaded at run time.

use reqwest::StatusCode;
use yunwei_core::authz::{AdminPermission, ContractRole};
use yunwei_storage::{StoreError, contract_files, holidays};

use crate::both_engines;
use crate::harness::TestServer;

const FILE: &str = include_str!("../../../../contracts/004-chengdu-dcm.toml");

async fn contract_import_versions_and_page(s: TestServer) {
    let admin = s.operator().admin_scope(AdminPermission::ContractManage).unwrap();
    let first = contract_files::import(&s.state.db, &admin, FILE.as_bytes(), s.now()).await.unwrap();
    assert!(first.created && first.version == 1);
    // Importing the same file again stores nothing.
    let again = contract_files::import(&s.state.db, &admin, FILE.as_bytes(), s.now()).await.unwrap();
    assert!(again.unchanged && again.version == 1);
    // A changed target: a new version with a readable change.
    let changed = FILE.replacen("resolution = \"3h\"", "resolution = \"4h\"", 1);
    let second = contract_files::import(&s.state.db, &admin, changed.as_bytes(), s.now()).await.unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.contract_id, first.contract_id);
    assert!(second.changes.iter().any(|c| c.starts_with("- L2 解决 resolution: 3 小时")), "{:?}", second.changes);
    assert!(second.changes.iter().any(|c| c.starts_with("+ L2 解决 resolution: 4 小时")), "{:?}", second.changes);
    // A broken file is refused with positions, and the stored contract stays at version 2.
    let broken = FILE.replacen("calendar = \"hotline\"", "calendar = \"nosuch\"", 1);
    match contract_files::import(&s.state.db, &admin, broken.as_bytes(), s.now()).await {
        Err(StoreError::ContractFile(d)) => assert!(d[0].message.contains("unknown calendar")),
        other => panic!("{other:?}"),
    }
    s.member("pm", first.contract_id, ContractRole::ProjectManager).await;
    let mut b = s.login("pm").await;
    let page = b.get(&format!("/c/{}", first.contract_id)).await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in [
        "服务等级与时限",
        "v2",
        "10 分钟",
        "4 小时",
        "驻场服务时间",
        "07:30–21:30",
        "成都市电子政务云计算中心机房",
        "升级矩阵",
    ] {
        assert!(page.body.contains(needle), "page lacks {needle}");
    }
    b.get("/lang/en").await;
    let page = b.get(&format!("/c/{}", first.contract_id)).await;
    assert!(page.body.contains("10 min") && page.body.contains("resolution"), "English page");
    // The import is audited with its changes.
    let log = yunwei_storage::audit::list(
        &s.state.db,
        &s.operator().admin_scope(AdminPermission::AuditRead).unwrap(),
        &yunwei_storage::audit::AuditFilter { action_prefix: Some("contract.import".into()), ..Default::default() },
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(log.len(), 2);
    assert!(log[0].detail.contains("+ L2 解决 resolution: 4 小时"));
}
both_engines!(contract_import_versions_and_page);

async fn holiday_years_load_at_run_time(s: TestServer) {
    let scope = s.operator().admin_scope(AdminPermission::ConfigManage).unwrap();
    let before = holidays::table(&s.state.db).await.unwrap();
    assert!(!before.has_year(2028));
    let file = r#"{"year": 2028, "papers": [], "days": [{"name": "元旦", "date": "2028-01-03", "isOffDay": true}]}"#;
    assert_eq!(holidays::import_year(&s.state.db, &scope, file, s.now()).await.unwrap(), 2028);
    let after = holidays::table(&s.state.db).await.unwrap();
    assert!(after.has_year(2028));
    let day = yunwei_core::calendar::parse_date("2028-01-03").unwrap();
    assert_eq!(after.day_kind(day), (yunwei_core::calendar::DayKind::Off, true));
    // Garbage is refused and nothing changes.
    assert!(matches!(
        holidays::import_year(&s.state.db, &scope, "{\"year\": 2029}", s.now()).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(!holidays::table(&s.state.db).await.unwrap().has_year(2029));
    // Only the system admin's permission allows it.
    assert!(
        s.operator()
            .admin_scope(AdminPermission::AuditRead)
            .is_ok_and(|a| a.permission() != AdminPermission::ConfigManage)
    );
}
both_engines!(holiday_years_load_at_run_time);

async fn month_view_of_working_time(s: TestServer) {
    let admin = s.operator().admin_scope(AdminPermission::ContractManage).unwrap();
    let cid = contract_files::import(&s.state.db, &admin, FILE.as_bytes(), s.now()).await.unwrap().contract_id;
    s.member("eng", cid, ContractRole::Engineer).await;
    let mut b = s.login("eng").await;
    let page = b.get(&format!("/c/{cid}/calendar?name=onsite&month=2026-02")).await;
    assert_eq!(page.status, StatusCode::OK);
    // Winter on-site hours 07:30–21:30 every day, the Spring Festival named, the make-up Saturday marked.
    assert_eq!(page.body.matches("14.0 h").count(), 28, "every day of February is served 14 h");
    assert!(page.body.contains("春节"));
    assert!(page.body.contains("补班"));
    let page = b.get(&format!("/c/{cid}/calendar?name=onsite&month=2026-07")).await;
    assert_eq!(page.body.matches("15.0 h").count(), 31, "summer hours 07:30–22:30");
    let page = b.get(&format!("/c/{cid}/calendar?name=hotline&month=2030-03")).await;
    assert!(page.body.contains("24.0 h") && page.body.contains("2030"), "no data for 2030 is said");
    assert!(page.body.contains("缺少以下年份的节假日数据"));
    // Bad query values fall back or are refused; never a 500.
    let r = b.get(&format!("/c/{cid}/calendar?name=nosuch&month=13-99")).await;
    assert_eq!(r.status, StatusCode::OK);
}
both_engines!(month_view_of_working_time);

async fn all_seed_contracts_import_and_show_their_numbers(s: TestServer) {
    let admin = s.operator().admin_scope(AdminPermission::ContractManage).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "one file per seed: {files:?}");
    for (i, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let outcome = contract_files::import(&s.state.db, &admin, &bytes, s.now())
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert!(outcome.created);
        let login = format!("pm{i}");
        s.member(&login, outcome.contract_id, ContractRole::ProjectManager).await;
        let mut b = s.login(&login).await;
        let page = b.get(&format!("/c/{}", outcome.contract_id)).await;
        assert_eq!(page.status, StatusCode::OK);
        // Every target of every level appears on the page in plain words.
        let compiled = yunwei_core::contract::check(&bytes).unwrap();
        for level in &compiled.file.levels {
            assert!(
                page.body.contains(level.name.get_ref().as_str()),
                "{}: level {}",
                path.display(),
                level.name.get_ref()
            );
            for (rule, _) in &compiled.clocks {
                if let Some(ms) = rule.targets.get(level.name.get_ref()) {
                    let (zh, _) = yunwei_core::contract::human_duration(*ms);
                    assert!(page.body.contains(&zh), "{}: {} {} {zh}", path.display(), level.name.get_ref(), rule.name);
                }
            }
        }
    }
}
both_engines!(all_seed_contracts_import_and_show_their_numbers);
