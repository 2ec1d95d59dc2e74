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
