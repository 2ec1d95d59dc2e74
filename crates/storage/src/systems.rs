//! Business systems (业务系统, AS4): what the contract keeps running — name, group, owner, the
//! components (operating systems, middleware, databases, services with their ports) and the count
//! of function points. The servers a system runs on are [`crate::relations`] (`system:3 runs_on
//! asset:7`), not a column here.
//!
//! Invariants:
//! - Every change writes its `ledger_history` row (`system:ID`) and its audit record in the same
//!   transaction; an update carries the `version` it was read at (409 when stale).
//! - Deleting a system deletes its relations in the same transaction, each recorded on the other
//!   end's history too.

use serde::{Deserialize, Deserializer, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::text::{multi_line, single_line};

use crate::assets::record_history;
use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

/// Kinds of component a system is built from.
pub const COMPONENT_KINDS: [&str; 4] = ["os", "middleware", "database", "service"];
/// At most this many components per system.
pub const MAX_COMPONENTS: usize = 50;
/// Upper bound of the function point count (004 table 2-1 lists about 210).
pub const MAX_FUNCTION_POINTS: i64 = 100_000;

pub(crate) const CHANGED: Msg =
    Msg::new("记录已被他人修改，请刷新后重试", "The record was changed by someone else; reload and retry");
const DUPLICATE: Msg = Msg::new("本合同已有同名业务系统", "This contract already has a system with that name");

/// One component of a system: `{kind: os|middleware|database|service, name, version, port}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// One port or several ("8080", "80,443", "1521/tcp"); a number is accepted too.
    #[serde(default, deserialize_with = "port_text")]
    pub port: String,
}

fn port_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum P {
        N(u64),
        S(String),
    }
    Ok(match Option::<P>::deserialize(d)? {
        None => String::new(),
        Some(P::N(n)) => n.to_string(),
        Some(P::S(s)) => s,
    })
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BusinessSystem {
    pub id: i64,
    pub contract_id: i64,
    pub name: String,
    pub group: String,
    pub description: String,
    pub owner: String,
    pub components: Vec<Component>,
    pub function_points: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

fn from_row(r: &AnyRow) -> StoreResult<BusinessSystem> {
    let components: String = r.try_get("components")?;
    Ok(BusinessSystem {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        name: r.try_get("name")?,
        group: r.try_get("group_name")?,
        description: r.try_get("description")?,
        owner: r.try_get("owner")?,
        components: serde_json::from_str(&components).unwrap_or_default(),
        function_points: r.try_get("function_points")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

/// The writable fields of a system.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemInput {
    pub name: String,
    pub group: String,
    pub description: String,
    pub owner: String,
    pub components: Vec<Component>,
    pub function_points: i64,
}

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

/// Whether `s` is empty or a list of ports 1–65535 (`80`, `80,443`, `1521/tcp`).
pub fn valid_ports(s: &str) -> bool {
    let s = s.trim();
    s.is_empty()
        || s.split([',', '，', ' ']).filter(|p| !p.is_empty()).all(|p| {
            let p = p.strip_suffix("/tcp").or_else(|| p.strip_suffix("/udp")).unwrap_or(p);
            let range = p.split_once('-').map(|(a, b)| (a, Some(b))).unwrap_or((p, None));
            let ok = |x: &str| x.parse::<u16>().is_ok_and(|n| n > 0);
            ok(range.0) && range.1.is_none_or(ok)
        })
}

fn check(input: &SystemInput) -> StoreResult<SystemInput> {
    let line = |v: &str, field: &'static str, max: usize, required: bool| {
        single_line(v, max, required).map_err(|m| StoreError::invalid(field, m))
    };
    if input.components.len() > MAX_COMPONENTS {
        return Err(invalid("components", "组件不能超过 50 个", "At most 50 components"));
    }
    let mut components = Vec::with_capacity(input.components.len());
    for c in &input.components {
        let kind = c.kind.trim();
        if !COMPONENT_KINDS.contains(&kind) {
            return Err(invalid(
                "components",
                "组件类型应为 os、middleware、database 或 service",
                "A component's kind is os, middleware, database or service",
            ));
        }
        if !valid_ports(&c.port) {
            return Err(invalid("components", "端口应为 1–65535 的数字", "Ports are numbers from 1 to 65535"));
        }
        components.push(Component {
            kind: kind.to_string(),
            name: line(&c.name, "components", 100, true)?,
            version: line(&c.version, "components", 50, false)?,
            port: line(&c.port, "components", 100, false)?,
        });
    }
    if !(0..=MAX_FUNCTION_POINTS).contains(&input.function_points) {
        return Err(invalid("function_points", "功能点数应为 0 到 100000", "Function points are 0 to 100000"));
    }
    Ok(SystemInput {
        name: line(&input.name, "name", 200, true)?,
        group: line(&input.group, "group", 100, false)?,
        description: multi_line(&input.description, 2000).map_err(|m| StoreError::invalid("description", m))?,
        owner: line(&input.owner, "owner", 100, false)?,
        components,
        function_points: input.function_points,
    })
}

/// Only the fields that differ, so that a history entry reads as a change, not two records.
pub(crate) fn diff(before: &serde_json::Value, after: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let (mut b, mut a) = (serde_json::Map::new(), serde_json::Map::new());
    if let (Some(bo), Some(ao)) = (before.as_object(), after.as_object()) {
        for (k, av) in ao {
            if matches!(k.as_str(), "id" | "contract_id" | "created_at" | "updated_at" | "version") {
                continue;
            }
            let bv = bo.get(k).cloned().unwrap_or(serde_json::Value::Null);
            if &bv != av {
                b.insert(k.clone(), bv);
                a.insert(k.clone(), av.clone());
            }
        }
    }
    (serde_json::Value::Object(b), serde_json::Value::Object(a))
}

fn as_input(s: &BusinessSystem) -> SystemInput {
    SystemInput {
        name: s.name.clone(),
        group: s.group.clone(),
        description: s.description.clone(),
        owner: s.owner.clone(),
        components: s.components.clone(),
        function_points: s.function_points,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<BusinessSystem> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query("SELECT * FROM business_system WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

/// Systems in id order, a page at a time (`after_id` is the last id of the previous page).
pub async fn list(
    db: &Db,
    scope: &ContractScope,
    after_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<BusinessSystem>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = sqlx::query("SELECT * FROM business_system WHERE contract_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(scope.contract_id())
        .bind(after_id.unwrap_or(0))
        .bind(limit.clamp(1, 500))
        .fetch_all(&db.pool)
        .await?;
    rows.iter().map(from_row).collect()
}

// ---------------------------------------------------------------------------------------------
// Writing

pub async fn create(db: &Db, scope: &ContractScope, input: &SystemInput, now: i64) -> StoreResult<BusinessSystem> {
    scope.require(ContractPermission::AssetWrite)?;
    let s = check(input)?;
    let mut tx = db.begin_write(now).await?;
    let id = insert(&mut tx, scope, &s, now).await?;
    let after = serde_json::to_value(&s).unwrap_or_default();
    record_history(&mut tx, scope, &format!("system:{id}"), "create", None, Some(&after)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "system.create", format!("system:{id}"))
            .contract(scope.contract_id())
            .detail(format!("name={} group={}", s.name, s.group)),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

async fn insert(tx: &mut crate::db::WriteTx, scope: &ContractScope, s: &SystemInput, now: i64) -> StoreResult<i64> {
    let row = sqlx::query(
        "INSERT INTO business_system (contract_id, name, group_name, description, owner, components, function_points, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(s.name.clone())
    .bind(s.group.clone())
    .bind(s.description.clone())
    .bind(s.owner.clone())
    .bind(serde_json::to_string(&s.components).unwrap_or_else(|_| "[]".into()))
    .bind(s.function_points)
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    Ok(row.try_get("id")?)
}

/// Replaces a system's fields if `version` is current; the history keeps what changed.
pub async fn update(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    input: &SystemInput,
    now: i64,
) -> StoreResult<BusinessSystem> {
    scope.require(ContractPermission::AssetWrite)?;
    let before = get(db, scope, id).await?;
    let s = check(input)?;
    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query(
        "UPDATE business_system SET name = $1, group_name = $2, description = $3, owner = $4, components = $5, \
         function_points = $6, updated_at = $7, version = version + 1 WHERE contract_id = $8 AND id = $9 AND version = $10",
    )
    .bind(s.name.clone())
    .bind(s.group.clone())
    .bind(s.description.clone())
    .bind(s.owner.clone())
    .bind(serde_json::to_string(&s.components).unwrap_or_else(|_| "[]".into()))
    .bind(s.function_points)
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    let (b, a) = diff(
        &serde_json::to_value(as_input(&before)).unwrap_or_default(),
        &serde_json::to_value(&s).unwrap_or_default(),
    );
    record_history(&mut tx, scope, &format!("system:{id}"), "update", Some(&b), Some(&a)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "system.update", format!("system:{id}"))
            .contract(scope.contract_id())
            .detail(format!("before={b} after={a}")),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Deletes a system and its relations.
pub async fn delete(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::AssetWrite)?;
    let before = get(db, scope, id).await?;
    let mut tx = db.begin_write(now).await?;
    let record = format!("system:{id}");
    crate::relations::delete_all_of(&mut tx, scope, &record).await?;
    sqlx::query("DELETE FROM business_system WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    let b = serde_json::to_value(as_input(&before)).unwrap_or_default();
    record_history(&mut tx, scope, &record, "delete", Some(&b), None).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "system.delete", record.clone())
            .contract(scope.contract_id())
            .detail(format!("name={}", before.name)),
    )
    .await?;
    tx.commit().await
}

/// What [`import_from_contract`] did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ImportSummary {
    /// Names of the systems created now.
    pub created: Vec<String>,
    /// Systems of the file the ledger already had (by name).
    pub existing: usize,
}

/// Creates the systems the current contract file lists (`[[systems]]`: name, group, description)
/// that the ledger lacks. Idempotent: running it again creates nothing and writes nothing.
pub async fn import_from_contract(db: &Db, scope: &ContractScope, now: i64) -> StoreResult<ImportSummary> {
    scope.require(ContractPermission::AssetWrite)?;
    let Some(rules) = crate::rules::current(db, scope.contract_id()).await? else {
        return Err(invalid(
            "contract",
            "本合同尚未导入合同文件，没有可导入的业务系统",
            "This contract has no contract file, so there are no systems to import",
        ));
    };
    let have: std::collections::HashSet<String> =
        sqlx::query("SELECT name FROM business_system WHERE contract_id = $1")
            .bind(scope.contract_id())
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
    let mut summary = ImportSummary::default();
    let mut todo = Vec::new();
    for def in &rules.compiled.file.systems {
        let input = SystemInput {
            name: def.name.clone(),
            group: def.group.clone(),
            description: def.description.clone(),
            ..Default::default()
        };
        let s = check(&input)?;
        if have.contains(&s.name) || todo.iter().any(|t: &SystemInput| t.name == s.name) {
            summary.existing += 1;
        } else {
            todo.push(s);
        }
    }
    if todo.is_empty() {
        return Ok(summary);
    }
    let mut tx = db.begin_write(now).await?;
    for s in &todo {
        let id = insert(&mut tx, scope, s, now).await?;
        let after = serde_json::to_value(s).unwrap_or_default();
        record_history(&mut tx, scope, &format!("system:{id}"), "import", None, Some(&after)).await?;
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "system.import", format!("contract:{}", scope.contract_id()))
            .contract(scope.contract_id())
            .detail(format!("created={} existing={} version={}", todo.len(), summary.existing, rules.version)),
    )
    .await?;
    tx.commit().await?;
    summary.created = todo.into_iter().map(|s| s.name).collect();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        for ok in ["", "80", "80,443", "1521/tcp", "8000-8100", "53/udp, 53/tcp"] {
            assert!(valid_ports(ok), "{ok}");
        }
        for bad in ["0", "65536", "http", "80;443", "-1", "80-"] {
            assert!(!valid_ports(bad), "{bad}");
        }
    }

    #[test]
    fn components_are_checked() {
        let mut i = SystemInput { name: "呼叫受理子系统".into(), ..Default::default() };
        i.components.push(Component {
            kind: "database".into(),
            name: "Oracle".into(),
            version: "11g".into(),
            port: "1521".into(),
        });
        assert!(check(&i).is_ok());
        i.components[0].kind = "cache".into();
        assert!(check(&i).is_err());
        i.components[0].kind = "os".into();
        i.components[0].port = "99999".into();
        assert!(check(&i).is_err());
        let parsed: Component = serde_json::from_str(r#"{"kind":"service","name":"web","port":8080}"#).unwrap();
        assert_eq!(parsed.port, "8080");
        assert!(serde_json::from_str::<Component>(r#"{"kind":"os","name":"x","extra":1}"#).is_err());
    }

    #[test]
    fn diff_keeps_only_changes() {
        let (b, a) = diff(
            &serde_json::json!({"name": "a", "owner": "x", "version": 1}),
            &serde_json::json!({"name": "a", "owner": "y", "version": 2}),
        );
        assert_eq!(b, serde_json::json!({"owner": "x"}));
        assert_eq!(a, serde_json::json!({"owner": "y"}));
    }
}
