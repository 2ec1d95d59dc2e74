//! Contracts (合同/项目) and memberships: the tenancy boundary of yunwei.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::{AdminPermission, ContractPermission, ContractRole};
use yunwei_core::text::single_line;

use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::{AdminScope, ContractScope, Principal};

#[derive(Debug, Clone, Serialize)]
pub struct Contract {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub client_name: String,
    pub vendor_name: String,
    pub starts_on: String,
    pub ends_on: String,
    pub status: String,
    pub version: i64,
}

fn contract_from_row(row: &AnyRow) -> StoreResult<Contract> {
    Ok(Contract {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        client_name: row.try_get("client_name")?,
        vendor_name: row.try_get("vendor_name")?,
        starts_on: row.try_get("starts_on")?,
        ends_on: row.try_get("ends_on")?,
        status: row.try_get("status")?,
        version: row.try_get("version")?,
    })
}

pub(crate) async fn get_contract_row(db: &Db, id: i64) -> StoreResult<Contract> {
    let row = sqlx::query("SELECT * FROM contract WHERE id = $1").bind(id).fetch_optional(&db.pool).await?;
    contract_from_row(&row.ok_or(StoreError::NotFound)?)
}

/// The contract a scope is for.
pub async fn get(db: &Db, scope: &ContractScope) -> StoreResult<Contract> {
    scope.require(ContractPermission::ContractRead)?;
    get_contract_row(db, scope.contract_id()).await
}

/// A contract seen by administrators (they manage contracts without being members of them).
pub async fn get_admin(db: &Db, scope: &AdminScope, id: i64) -> StoreResult<Contract> {
    if !matches!(
        scope.permission(),
        AdminPermission::ContractManage | AdminPermission::RoleGrant | AdminPermission::TokenManage
    ) {
        return Err(StoreError::Forbidden);
    }
    get_contract_row(db, id).await
}

/// A contract by its code (`CD-DCM-2022`), for administrators and the console (`yunwei asset
/// import --contract CODE`), who then take the contract's scope by its id. `NotFound` when no
/// contract has that code.
pub async fn find_by_code(db: &Db, scope: &AdminScope, code: &str) -> StoreResult<Contract> {
    if !matches!(
        scope.permission(),
        AdminPermission::ContractManage | AdminPermission::RoleGrant | AdminPermission::TokenManage
    ) {
        return Err(StoreError::Forbidden);
    }
    let row = sqlx::query("SELECT * FROM contract WHERE code = $1")
        .bind(code.trim().to_string())
        .fetch_optional(&db.pool)
        .await?;
    contract_from_row(&row.ok_or(StoreError::NotFound)?)
}

/// A contract the caller belongs to, with the caller's role in it.
#[derive(Debug, Clone, Serialize)]
pub struct MyContract {
    pub contract: Contract,
    pub role: ContractRole,
}

/// The contracts of the caller, ordered by id, after `after_id`, at most `limit`.
pub async fn list_mine(
    db: &Db,
    principal: &Principal,
    after_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<MyContract>> {
    let Some(user_id) = principal.user_id() else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT c.*, m.role AS member_role FROM contract c JOIN membership m ON m.contract_id = c.id \
         WHERE m.user_id = $1 AND c.id > $2 ORDER BY c.id LIMIT $3",
    )
    .bind(user_id)
    .bind(after_id.unwrap_or(0))
    .bind(limit.clamp(1, 500))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get("member_role")?;
            Ok(MyContract {
                contract: contract_from_row(r)?,
                role: ContractRole::parse(&role).ok_or(StoreError::NotFound)?,
            })
        })
        .collect()
}

/// All contracts (administrators).
pub async fn list_all(db: &Db, scope: &AdminScope) -> StoreResult<Vec<Contract>> {
    if !matches!(
        scope.permission(),
        AdminPermission::ContractManage | AdminPermission::RoleGrant | AdminPermission::TokenManage
    ) {
        return Err(StoreError::Forbidden);
    }
    let rows = sqlx::query("SELECT * FROM contract ORDER BY id").fetch_all(&db.pool).await?;
    rows.iter().map(contract_from_row).collect()
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ContractInput {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub client_name: String,
    #[serde(default)]
    pub vendor_name: String,
    pub starts_on: String,
    pub ends_on: String,
}

/// A real `YYYY-MM-DD` date in a plausible contract range.
fn valid_date(s: &str) -> bool {
    yunwei_core::calendar::parse_date(s)
        .is_some_and(|d| (1990..=2200).contains(&yunwei_core::calendar::civil_from_days(d).0))
}

fn validate(input: &ContractInput) -> StoreResult<ContractInput> {
    let code = single_line(&input.code, 40, true).map_err(|m| StoreError::invalid("code", m))?;
    if !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(StoreError::invalid(
            "code",
            Msg::new("编号只能包含字母、数字、- 和 _", "Codes use letters, digits, '-' and '_' only"),
        ));
    }
    let out = ContractInput {
        code,
        name: single_line(&input.name, 200, true).map_err(|m| StoreError::invalid("name", m))?,
        client_name: single_line(&input.client_name, 200, false).map_err(|m| StoreError::invalid("client_name", m))?,
        vendor_name: single_line(&input.vendor_name, 200, false).map_err(|m| StoreError::invalid("vendor_name", m))?,
        starts_on: input.starts_on.trim().to_string(),
        ends_on: input.ends_on.trim().to_string(),
    };
    for (field, v) in [("starts_on", &out.starts_on), ("ends_on", &out.ends_on)] {
        if !valid_date(v) {
            return Err(StoreError::invalid(
                field,
                Msg::new("日期格式应为 YYYY-MM-DD", "Dates are written YYYY-MM-DD"),
            ));
        }
    }
    if out.ends_on < out.starts_on {
        return Err(StoreError::invalid(
            "ends_on",
            Msg::new("结束日期早于开始日期", "The end date is before the start date"),
        ));
    }
    Ok(out)
}

/// Creates a contract (system admin).
pub async fn create(db: &Db, scope: &AdminScope, input: &ContractInput, now_ms: i64) -> StoreResult<i64> {
    scope.expect(AdminPermission::ContractManage)?;
    let c = validate(input)?;
    let mut tx = db.begin_write(now_ms).await?;
    let id: i64 = sqlx::query(
        "INSERT INTO contract (code, name, client_name, vendor_name, starts_on, ends_on, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7) RETURNING id",
    )
    .bind(c.code.clone())
    .bind(c.name.clone())
    .bind(c.client_name)
    .bind(c.vendor_name)
    .bind(c.starts_on)
    .bind(c.ends_on)
    .bind(now_ms)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(Msg::new("合同编号已存在", "A contract with this code exists")))?
    .try_get("id")?;
    tx.audit(
        AuditEntry::new(scope.actor(), "contract.create", format!("contract:{id}"))
            .contract(id)
            .detail(format!("code={} name={}", c.code, c.name)),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Changes a contract's header (system admin), with optimistic concurrency on `version`.
pub async fn update(
    db: &Db,
    scope: &AdminScope,
    id: i64,
    input: &ContractInput,
    status: &str,
    version: i64,
    now_ms: i64,
) -> StoreResult<()> {
    scope.expect(AdminPermission::ContractManage)?;
    let c = validate(input)?;
    if !matches!(status, "draft" | "active" | "closed") {
        return Err(StoreError::invalid("status", Msg::new("状态无效", "Unknown status")));
    }
    let before = get_contract_row(db, id).await?;
    let mut tx = db.begin_write(now_ms).await?;
    let n = sqlx::query(
        "UPDATE contract SET code = $1, name = $2, client_name = $3, vendor_name = $4, starts_on = $5, ends_on = $6, \
         status = $7, updated_at = $8, version = version + 1 WHERE id = $9 AND version = $10",
    )
    .bind(c.code.clone())
    .bind(c.name.clone())
    .bind(c.client_name.clone())
    .bind(c.vendor_name.clone())
    .bind(c.starts_on.clone())
    .bind(c.ends_on.clone())
    .bind(status.to_string())
    .bind(now_ms)
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(Msg::new("合同编号已存在", "A contract with this code exists")))?
    .rows_affected();
    if n != 1 {
        return Err(StoreError::Conflict(Msg::new(
            "合同已被他人修改，请刷新后重试",
            "The contract was changed by someone else; reload and retry",
        )));
    }
    tx.audit(AuditEntry::new(scope.actor(), "contract.update", format!("contract:{id}")).contract(id).detail(format!(
        "before=code={} name={} status={} after=code={} name={} status={status}",
        before.code, before.name, before.status, c.code, c.name
    )))
    .await?;
    tx.commit().await
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user_id: i64,
    pub login: String,
    pub display_name: String,
    pub role: ContractRole,
}

async fn members_of(db: &Db, contract_id: i64) -> StoreResult<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT u.id, u.login, u.display_name, m.role FROM membership m JOIN app_user u ON u.id = m.user_id \
         WHERE m.contract_id = $1 ORDER BY u.login",
    )
    .bind(contract_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            Ok(Member {
                user_id: r.try_get("id")?,
                login: r.try_get("login")?,
                display_name: r.try_get("display_name")?,
                role: ContractRole::parse(&role).ok_or(StoreError::NotFound)?,
            })
        })
        .collect()
}

/// Members of the scope's contract.
pub async fn members(db: &Db, scope: &ContractScope) -> StoreResult<Vec<Member>> {
    scope.require(ContractPermission::MemberRead)?;
    members_of(db, scope.contract_id()).await
}

/// Members of any contract (security admin, for role grants).
pub async fn members_admin(db: &Db, scope: &AdminScope, contract_id: i64) -> StoreResult<Vec<Member>> {
    scope.expect(AdminPermission::RoleGrant)?;
    get_contract_row(db, contract_id).await?;
    members_of(db, contract_id).await
}

/// Grants (or changes) a user's role in a contract (security admin). Administrator accounts cannot
/// be members: the three admin roles stay separate from contract work.
pub async fn grant(
    db: &Db,
    scope: &AdminScope,
    contract_id: i64,
    user_id: i64,
    role: ContractRole,
    now_ms: i64,
) -> StoreResult<()> {
    scope.expect(AdminPermission::RoleGrant)?;
    get_contract_row(db, contract_id).await?;
    let user = crate::users::get(db, user_id).await?;
    if user.admin_role.is_some() {
        return Err(StoreError::Conflict(Msg::new(
            "管理员账号不能成为合同成员（三权分立）",
            "Administrator accounts cannot be contract members (separation of duties)",
        )));
    }
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query(
        "INSERT INTO membership (contract_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (contract_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(contract_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now_ms)
    .execute(tx.conn().await?)
    .await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "membership.grant", format!("user:{user_id}"))
            .contract(contract_id)
            .detail(format!("login={} role={}", user.login, role.as_str())),
    )
    .await?;
    tx.commit().await
}

/// Removes a user from a contract (security admin).
pub async fn revoke(db: &Db, scope: &AdminScope, contract_id: i64, user_id: i64, now_ms: i64) -> StoreResult<()> {
    scope.expect(AdminPermission::RoleGrant)?;
    let mut tx = db.begin_write(now_ms).await?;
    let n = sqlx::query("DELETE FROM membership WHERE contract_id = $1 AND user_id = $2")
        .bind(contract_id)
        .bind(user_id)
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.audit(AuditEntry::new(scope.actor(), "membership.revoke", format!("user:{user_id}")).contract(contract_id))
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert!(super::valid_date("2026-02-28"));
        assert!(!super::valid_date("2026-02-29"));
        assert!(super::valid_date("2024-02-29"));
        assert!(!super::valid_date("2026-13-01"));
        assert!(!super::valid_date("26-1-1"));
        assert!(!super::valid_date("２０２６-01-01"));
    }
}
