//! The demo contract loaded by `yunwei serve --demo`: the Chengdu digital city management O&M
//! contract (seed 004) with one user per contract role and the sites the seed names.

use yunwei_core::authz::AdminPermission;
use yunwei_core::authz::ContractRole;
use yunwei_storage::{Db, Principal, StoreError, contract_files, contracts, users};

pub const DEMO_CODE: &str = "CD-DCM-2022";
const DEMO_CONTRACT: &str = include_str!("../../../contracts/004-chengdu-dcm.toml");
/// The second demo contract, whose device tables make a demo ledger (contracts/ledger/README.md).
const SECOND_CONTRACT: &str = include_str!("../../../contracts/001-chenggong-service-center.toml");
const LEDGER_004: &[u8] = include_bytes!("../../../contracts/ledger/004-chengdu-servers.csv");
const LEDGER_001: &[u8] = include_bytes!("../../../contracts/ledger/001-chenggong-devices.csv");

/// (login, name, role)
const DEMO_USERS: &[(&str, &str, ContractRole)] = &[
    ("desk.li", "李服务台", ContractRole::ServiceDesk),
    ("eng.wang", "王工程师", ContractRole::Engineer),
    ("expert.zhao", "赵专家", ContractRole::BacklineExpert),
    ("pm.chen", "陈项目经理", ContractRole::ProjectManager),
    ("client.liu", "刘主任（业主）", ContractRole::ClientSupervisor),
    ("user.zhou", "周业务员", ContractRole::ClientEndUser),
];

/// Loads the demo once. Returns the demo users' one-time passwords, or an empty list when the
/// demo contract already exists.
pub async fn load(db: &Db, now_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
    let operator = Principal::local_operator("demo");
    let contract_admin = operator.admin_scope(AdminPermission::ContractManage)?;
    if contracts::list_all(db, &contract_admin).await?.iter().any(|c| c.code == DEMO_CODE) {
        return Ok(Vec::new());
    }
    // The contract, its SLA and its sites come from the seed contract file.
    let cid = contract_files::import(db, &contract_admin, DEMO_CONTRACT.as_bytes(), now_ms).await?.contract_id;
    let second = contract_files::import(db, &contract_admin, SECOND_CONTRACT.as_bytes(), now_ms).await?.contract_id;
    let user_admin = operator.admin_scope(AdminPermission::UserManage)?;
    let role_admin = operator.admin_scope(AdminPermission::RoleGrant)?;
    let mut passwords = Vec::new();
    for (login, name, role) in DEMO_USERS {
        let pw = yunwei_core::password::initial_password_for(login);
        let new = users::NewUser { login: (*login).into(), display_name: (*name).into(), email: String::new() };
        let uid = users::create(db, &user_admin, new, &pw, now_ms).await?;
        contracts::grant(db, &role_admin, cid, uid, *role, now_ms).await?;
        // The vendor's people work on the second contract too (the contract switcher shows both).
        if !role.is_client_side() {
            contracts::grant(db, &role_admin, second, uid, *role, now_ms).await?;
        }
        passwords.push(((*login).to_string(), pw));
    }
    load_ledger(db, &operator, cid, LEDGER_004, "004-chengdu-servers.csv", now_ms).await?;
    load_ledger(db, &operator, second, LEDGER_001, "001-chenggong-devices.csv", now_ms).await?;
    Ok(passwords)
}

/// Imports a demo ledger sheet through the same checks as any import; a sheet that no longer
/// imports cleanly is a bug in the demo data, reported and skipped rather than fatal.
async fn load_ledger(
    db: &Db,
    operator: &Principal,
    contract_id: i64,
    bytes: &[u8],
    name: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let scope = operator.contract_scope(db, contract_id).await?;
    let sheet = match yunwei_reports::read_sheet(bytes, name) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(file = name, error = %e, "demo ledger unreadable");
            return Ok(());
        }
    };
    let report = yunwei_storage::assets::import(db, &scope, &sheet.headers, &sheet.rows, false, now_ms).await?;
    if !report.problems.is_empty() {
        tracing::warn!(file = name, problems = report.problems.len(), "demo ledger has bad rows; not loaded");
    }
    Ok(())
}

/// Inspection plans for the demo contract's `inspect.*` duties (IN1): the twice-daily core
/// subsystems, the extended subsystems twice and once a week, and the daily server check, whose
/// one probe item asks this server's `/healthz`. Loaded once (when the contract has no plan yet);
/// a plan the checks refuse is a bug in the demo data, reported and skipped.
pub async fn load_inspections(db: &Db, listen: std::net::SocketAddr, tls: bool, now_ms: i64) -> Result<(), StoreError> {
    use yunwei_storage::inspections;
    let operator = Principal::local_operator("demo");
    let contract_admin = operator.admin_scope(AdminPermission::ContractManage)?;
    let Some(contract) = contracts::list_all(db, &contract_admin).await?.into_iter().find(|c| c.code == DEMO_CODE)
    else {
        return Ok(());
    };
    let scope = operator.contract_scope(db, contract.id).await?;
    if !inspections::list_plans(db, &scope).await?.is_empty() {
        return Ok(());
    }
    let systems: Vec<(String, String)> = match yunwei_storage::rules::current(db, contract.id).await? {
        Some(r) => r.compiled.file.systems.iter().map(|s| (s.name.clone(), s.group.clone())).collect(),
        None => Vec::new(),
    };
    // TOML [[targets]] for the systems of one inspection group of the contract file.
    let group = |prefix: &str| -> String {
        systems
            .iter()
            .filter(|(_, g)| g.contains(prefix))
            .map(|(n, _)| format!("[[targets]]\nkind = \"system\"\nref = {n:?}\n"))
            .collect()
    };
    // The server as seen from itself: a wildcard listen address is reached on loopback.
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("{}://{host}:{}/healthz", if tls { "https" } else { "http" }, listen.port());
    let plans = [
        format!(
            "name = \"9 大基础子系统巡检\"\nduty = \"inspect.core\"\n\
             tickets = {{ level = \"L3\", incident_class = \"一般\" }}\n{}\
             [[items]]\nkey = \"login\"\nlabel = \"登录正常\"\n\
             [[items]]\nkey = \"functions\"\nlabel = \"主要功能模块正常\"\n\
             [[items]]\nkey = \"response_s\"\nlabel = \"页面响应时间\"\nunit = \"s\"\nexpected = {{ range = {{ max = 3 }} }}\n\
             [[items]]\nkey = \"errors\"\nlabel = \"错误日志\"\nexpected = {{ equals = \"无\" }}\n",
            group("每天 2 次")
        ),
        format!(
            "name = \"扩展子系统巡检（每周不少于 2 次）\"\nduty = \"inspect.extended_a\"\n\
             tickets = {{ level = \"L4\", incident_class = \"轻微\" }}\n{}\
             [[items]]\nkey = \"functions\"\nlabel = \"功能正常\"\n",
            group("每周不少于 2 次")
        ),
        format!(
            "name = \"扩展子系统功能巡检（每周不少于 1 次）\"\nduty = \"inspect.extended_b\"\n{}\
             [[items]]\nkey = \"functions\"\nlabel = \"功能正常\"\n",
            group("每周不少于 1 次")
        ),
        format!(
            "name = \"服务器资源监控\"\nduty = \"inspect.server_resources\"\n\
             tickets = {{ level = \"L4\", incident_class = \"轻微\" }}\n\
             [[targets]]\nkind = \"system\"\nref = \"运维台\"\nlabel = \"运维台服务器\"\n\
             [[items]]\nkey = \"cpu\"\nlabel = \"CPU 使用率\"\nunit = \"%\"\nexpected = {{ range = {{ max = 80 }} }}\n\
             [[items]]\nkey = \"memory\"\nlabel = \"内存使用率\"\nunit = \"%\"\nexpected = {{ range = {{ max = 85 }} }}\n\
             [[items]]\nkey = \"disk\"\nlabel = \"存储使用率\"\nunit = \"%\"\nexpected = {{ range = {{ max = 85 }} }}\n\
             [[items]]\nkey = \"healthz\"\nlabel = \"运维台健康检查\"\nkind = \"probe\"\ntimeout_s = 5\n\
             reading = \"latency_ms\"\nunit = \"ms\"\nexpected = {{ range = {{ max = 2000 }} }}\n\
             probe = {{ kind = \"http\", url = {url:?}, body_contains = \"ok\", insecure_skip_verify = {tls} }}\n"
        ),
    ];
    for text in plans {
        let def = match yunwei_core::inspection::parse_toml(&text) {
            Ok(d) => d,
            Err(p) => {
                tracing::warn!(field = p.field, error = %p.message, "demo inspection plan does not parse");
                continue;
            }
        };
        if let Err(e) = inspections::create_plan(db, &scope, &def, &yunwei_web::inspection_probe_check, now_ms).await {
            tracing::warn!(plan = def.name, error = %e, "demo inspection plan refused");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_demo_has_a_plan_for_each_inspection_duty() {
        let dir = std::env::temp_dir().join(format!("yunwei-demo-{}", yunwei_storage::random_token(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("d.db").display());
        let key = yunwei_storage::secrets::SecretBox::generate_base64();
        let db = yunwei_storage::Db::connect(&url, yunwei_storage::secrets::SecretBox::from_base64(&key).unwrap())
            .await
            .unwrap();
        let now = 1_772_409_600_000; // 2026-03-02 08:00 Shanghai
        super::load(&db, now).await.unwrap();
        let listen: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
        super::load_inspections(&db, listen, false, now).await.unwrap();
        super::load_inspections(&db, listen, false, now).await.unwrap();
        let operator = yunwei_storage::Principal::local_operator("test");
        let admin = operator.admin_scope(yunwei_core::authz::AdminPermission::ContractManage).unwrap();
        let cid = yunwei_storage::contracts::list_all(&db, &admin)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.code == super::DEMO_CODE)
            .unwrap()
            .id;
        let scope = operator.contract_scope(&db, cid).await.unwrap();
        let plans = yunwei_storage::inspections::list_plans(&db, &scope).await.unwrap();
        let got: Vec<(&str, &str, usize)> =
            plans.iter().map(|p| (p.duty_id.as_str(), p.frequency.as_str(), p.definition.targets.len())).collect();
        assert_eq!(
            got,
            vec![
                ("inspect.core", "daily at 09:00, 15:00", 9),
                ("inspect.extended_a", "weekly x2", 8),
                ("inspect.extended_b", "weekly", 5),
                ("inspect.server_resources", "daily", 1),
            ],
            "loaded once, one plan per duty"
        );
        let probe = &plans[3].definition.items[3];
        assert_eq!(probe.probe.as_ref().unwrap()["url"], "http://127.0.0.1:8080/healthz");
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
