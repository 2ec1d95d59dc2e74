//! The demo contract loaded by `yunwei serve --demo`: the Chengdu digital city management O&M
//! contract (seed 004) with one user per contract role and the sites the seed names.

use yunwei_core::authz::AdminPermission;
use yunwei_core::authz::ContractRole;
use yunwei_storage::contracts::{self, ContractInput};
use yunwei_storage::sites::{self, SiteInput};
use yunwei_storage::{Db, Principal, StoreError, users};

pub const DEMO_CODE: &str = "CD-DCM-2022";

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
    let input = ContractInput {
        code: DEMO_CODE.into(),
        // 004: 成都市数字化城市管理信息系统 2021-2022 年度运维服务项目, one-year service period.
        name: "成都市数字化城市管理信息系统年度运维服务".into(),
        client_name: "成都市城市管理数字化监督管理中心".into(),
        vendor_name: "示例运维服务有限公司".into(),
        starts_on: "2022-01-01".into(),
        ends_on: "2022-12-31".into(),
    };
    let cid = contracts::create(db, &contract_admin, &input, now_ms).await?;
    let user_admin = operator.admin_scope(AdminPermission::UserManage)?;
    let role_admin = operator.admin_scope(AdminPermission::RoleGrant)?;
    let mut passwords = Vec::new();
    for (login, name, role) in DEMO_USERS {
        let pw = yunwei_core::password::initial_password_for(login);
        let new = users::NewUser { login: (*login).into(), display_name: (*name).into(), email: String::new() };
        let uid = users::create(db, &user_admin, new, &pw, now_ms).await?;
        contracts::grant(db, &role_admin, cid, uid, *role, now_ms).await?;
        passwords.push(((*login).to_string(), pw));
    }
    let scope = operator.contract_scope(db, cid).await?;
    // 004 §二: the system runs in the Chengdu e-government cloud centre; the resident team works at
    // the client's centre at 科联街 3 号.
    for (name, kind, address) in [
        ("成都市电子政务云计算中心机房", "machine_room", "成都市电子政务云计算中心"),
        ("数字化城市管理监督指挥中心", "control_room", "成都市青羊区科联街 3 号"),
        ("驻场运维办公室", "office", "成都市青羊区科联街 3 号"),
    ] {
        let site = SiteInput { name: name.into(), kind: kind.into(), address: address.into(), notes: String::new() };
        sites::create(db, &scope, &site, now_ms).await?;
    }
    Ok(passwords)
}
