//! The demo contract's data-exchange interfaces (IN5): rows of seed 004's tables 3-6 … 3-12 with
//! their names, contents and frequencies as the seed writes them (the frequency text is the
//! seed's own: the interface grammar reads it). Each is observed by a heartbeat; nobody pushes in
//! the demo, so a window that closes without a push becomes an anomaly, which is what the page is
//! there to show. A new heartbeat URL for trying it is one button on the interface's page.

use yunwei_core::authz::AdminPermission;
use yunwei_core::exchange::InterfaceDef;
use yunwei_core::inspection::TicketRule;
use yunwei_storage::{Db, Principal, StoreError, contracts, interfaces};

use crate::demo::DEMO_CODE;

/// The system every interface pushes from.
const SOURCE: &str = "成都市数字化城市管理信息系统";

/// (table.row, data resource, content, target, frequency as the seed writes it, level, class)
const ROWS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "3-6.8",
        "数字化城管案卷信息",
        "案件时间、案件大类 ID、案件小类 ID、区域 ID、区域名称、上报人员、案件所属万米单元网格 ID、案件所属街道 ID、案件所属责任网格 ID、案件编号 ID、处置部门、当前办理节点、立案时间、专业部门处置时间",
        "市网络理政中心",
        "每天 1 次(23:00 后推送)",
        "L4",
        "轻微",
    ),
    (
        "3-6.12",
        "路灯当日信息",
        "当日路灯案件 ID (已立案未结案)、案件上报时间、案件存档时间",
        "市网络理政中心",
        "每 1 小时推送一次",
        "L4",
        "轻微",
    ),
    (
        "3-6.15",
        "监督员在线信息",
        "在线监督员 ID、所属区域、姓名、所属责任网格名称、所属责任网格 ID、联系方式",
        "市网络理政中心",
        "每半小时推送一次",
        "L4",
        "轻微",
    ),
    (
        "3-7.5",
        "国家住建部数据对接接口 · 案件来源统计",
        "行政区、信息采集员发现案件数、市民反映案件数、智能发现案件数、其他",
        "国家住建部",
        "每天1次(23:00后推送)",
        "L4",
        "轻微",
    ),
    (
        "3-8.1",
        "四川省省厅数据对接接口 · 案件基本信息",
        "问题唯一标识、任务号、问题来源、问题类型、大类、小类、立案条件、部件编码、区/街道/社区名称、单元网格编码、问题状态、位置描述、问题描述、X/Y 坐标、案件建立时间",
        "四川省住建厅",
        "对接数据为实时推送，每 10 分钟推送 1 次",
        "L3",
        "一般",
    ),
    (
        "3-9.3",
        "城管委数据对接接口 · 案件办理经过",
        "案件标识、操作时间、操作名称、案件阶段 id、案件阶段名称、当前阶段处理员、当前阶段处理意见",
        "市城管委",
        "每天 1 次 (23:00 后推送)",
        "L4",
        "轻微",
    ),
    (
        "3-10.2",
        "成华区数据对接接口 · 案件统计信息",
        "案件号、上报数、受理数、立案数、派遣数、核查数、应处置数、处置数、超期处置数、超期未处置数、返工数",
        "成华区",
        "每天 1 次 (23:00 后推送)",
        "L4",
        "轻微",
    ),
];

/// Loads the demo interfaces once (when the demo contract has none yet); one the checks refuse
/// is a bug in the demo data, reported and skipped.
pub async fn load_interfaces(db: &Db, now_ms: i64) -> Result<(), StoreError> {
    let operator = Principal::local_operator("demo");
    let admin = operator.admin_scope(AdminPermission::ContractManage)?;
    let Some(contract) = contracts::list_all(db, &admin).await?.into_iter().find(|c| c.code == DEMO_CODE) else {
        return Ok(());
    };
    let scope = operator.contract_scope(db, contract.id).await?;
    if !interfaces::list(db, &scope).await?.is_empty() {
        return Ok(());
    }
    for (code, name, content, target, frequency, level, class) in ROWS {
        let def = InterfaceDef {
            code: (*code).into(),
            name: (*name).into(),
            content: (*content).into(),
            source_system: SOURCE.into(),
            target_system: (*target).into(),
            frequency: (*frequency).into(),
            grace: None,
            heartbeat: true,
            count_check: None,
            tickets: Some(TicketRule { level: (*level).into(), incident_class: (*class).into() }),
        };
        if let Err(e) = interfaces::create(db, &scope, &def, &yunwei_web::inspection_probe_check, now_ms).await {
            tracing::warn!(interface = code, error = %e, "demo interface refused");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_demo_has_interfaces_from_the_seed_tables() {
        let dir = std::env::temp_dir().join(format!("yunwei-demo-if-{}", yunwei_storage::random_token(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("d.db").display());
        let key = yunwei_storage::secrets::SecretBox::generate_base64();
        let db = yunwei_storage::Db::connect(&url, yunwei_storage::secrets::SecretBox::from_base64(&key).unwrap())
            .await
            .unwrap();
        let now = 1_772_409_600_000; // 2026-03-02 08:00 Shanghai
        crate::demo::load(&db, now).await.unwrap();
        super::load_interfaces(&db, now).await.unwrap();
        super::load_interfaces(&db, now).await.unwrap();
        let operator = yunwei_storage::Principal::local_operator("test");
        let admin = operator.admin_scope(yunwei_core::authz::AdminPermission::ContractManage).unwrap();
        let cid = yunwei_storage::contracts::list_all(&db, &admin)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.code == crate::demo::DEMO_CODE)
            .unwrap()
            .id;
        let scope = operator.contract_scope(&db, cid).await.unwrap();
        let list = yunwei_storage::interfaces::list(&db, &scope).await.unwrap();
        let got: Vec<(&str, &str)> = list.iter().map(|i| (i.code.as_str(), i.frequency.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("3-10.2", "daily after 23:00"),
                ("3-6.12", "hourly"),
                ("3-6.15", "every 30 min"),
                ("3-6.8", "daily after 23:00"),
                ("3-7.5", "daily after 23:00"),
                ("3-8.1", "every 10 min"),
                ("3-9.3", "daily after 23:00"),
            ],
            "every row loaded once, its frequency read from the seed's wording"
        );
        assert!(list.iter().all(|i| i.heartbeat && i.next_check_at.is_some()));
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
