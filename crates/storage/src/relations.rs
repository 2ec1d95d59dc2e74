//! Relations between ledger records (AS5, AS9): `system:4 runs_on asset:7`, `asset:5 connects_to
//! asset:9` from port `GE0/0/1` to port `eth0` over the cable labelled `A-03-17`, `asset:7
//! powered_by asset:2` (a UPS), `asset:7 backs_up_to asset:11`. Together they are the topology the
//! server draws, and the port-to-port and cabling register.
//!
//! Invariants:
//! - Both ends exist in the scope's contract (checked in the writing transaction); a record never
//!   relates to itself.
//! - Creating or deleting a relation is recorded on the history of both ends.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::text::single_line;

use crate::assets::record_history;
use crate::audit::AuditEntry;
use crate::db::{Db, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

pub const RELATIONS: [&str; 4] = ["runs_on", "connects_to", "powered_by", "backs_up_to"];
/// The most relations [`list`] and [`graph`] return.
pub const MAX_LISTED: i64 = 5000;
/// The most nodes [`graph`] draws.
pub const MAX_NODES: usize = 600;

const DUPLICATE: Msg = Msg::new("该关系已存在", "This relation already exists");

/// A ledger record as relations name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordRef {
    System(i64),
    Asset(i64),
}

impl RecordRef {
    /// `asset:12` or `system:3`.
    pub fn parse(s: &str) -> Option<RecordRef> {
        let (kind, id) = s.trim().split_once(':')?;
        let id: i64 = id.trim().parse().ok().filter(|n| *n > 0)?;
        match kind.trim() {
            "asset" => Some(RecordRef::Asset(id)),
            "system" => Some(RecordRef::System(id)),
            _ => None,
        }
    }

    pub fn id(self) -> i64 {
        match self {
            RecordRef::System(id) | RecordRef::Asset(id) => id,
        }
    }
}

impl std::fmt::Display for RecordRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordRef::Asset(id) => write!(f, "asset:{id}"),
            RecordRef::System(id) => write!(f, "system:{id}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Relation {
    pub id: i64,
    pub from_ref: String,
    pub relation: String,
    pub to_ref: String,
    pub from_port: String,
    pub to_port: String,
    pub cable_label: String,
    pub created_at: i64,
    /// Names of both ends (empty when an end has gone).
    pub from_label: String,
    pub to_label: String,
    /// `system`, or the asset's kind.
    pub from_kind: String,
    pub to_kind: String,
}

fn from_row(r: &AnyRow) -> StoreResult<Relation> {
    Ok(Relation {
        id: r.try_get("id")?,
        from_ref: r.try_get("from_ref")?,
        relation: r.try_get("relation")?,
        to_ref: r.try_get("to_ref")?,
        from_port: r.try_get("from_port")?,
        to_port: r.try_get("to_port")?,
        cable_label: r.try_get("cable_label")?,
        created_at: r.try_get("created_at")?,
        from_label: String::new(),
        to_label: String::new(),
        from_kind: String::new(),
        to_kind: String::new(),
    })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelationInput {
    pub from_ref: String,
    pub relation: String,
    pub to_ref: String,
    pub from_port: String,
    pub to_port: String,
    pub cable_label: String,
}

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

/// The name and kind of each record, for the ones of this contract among `refs`. Records of other
/// contracts, and records that do not exist, are absent from the answer.
async fn describe(
    conn: &mut sqlx::AnyConnection,
    contract_id: i64,
    refs: &[RecordRef],
) -> StoreResult<HashMap<RecordRef, (String, String)>> {
    let mut out = HashMap::new();
    let assets: Vec<i64> = refs.iter().filter(|r| matches!(r, RecordRef::Asset(_))).map(|r| r.id()).collect();
    let systems: Vec<i64> = refs.iter().filter(|r| matches!(r, RecordRef::System(_))).map(|r| r.id()).collect();
    for (table, ids, is_asset) in [("asset", assets, true), ("business_system", systems, false)] {
        for chunk in ids.chunks(200) {
            // Only placeholders are generated; every value is bound.
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let cols = if is_asset { "id, name, kind" } else { "id, name" };
            let sql = format!("SELECT {cols} FROM {table} WHERE contract_id = $1 AND id IN ({})", marks.join(", "));
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(contract_id);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *conn).await? {
                let id: i64 = r.try_get("id")?;
                let name: String = r.try_get("name")?;
                if is_asset {
                    out.insert(RecordRef::Asset(id), (name, r.try_get("kind")?));
                } else {
                    out.insert(RecordRef::System(id), (name, "system".to_string()));
                }
            }
        }
    }
    Ok(out)
}

async fn label(db: &Db, contract_id: i64, mut rels: Vec<Relation>) -> StoreResult<Vec<Relation>> {
    let mut refs: Vec<RecordRef> =
        rels.iter().flat_map(|r| [RecordRef::parse(&r.from_ref), RecordRef::parse(&r.to_ref)]).flatten().collect();
    refs.sort();
    refs.dedup();
    let mut conn = db.pool.acquire().await?;
    let names = describe(&mut conn, contract_id, &refs).await?;
    drop(conn);
    let get = |s: &str| RecordRef::parse(s).and_then(|r| names.get(&r)).cloned().unwrap_or_default();
    for r in &mut rels {
        (r.from_label, r.from_kind) = get(&r.from_ref);
        (r.to_label, r.to_kind) = get(&r.to_ref);
    }
    Ok(rels)
}

// ---------------------------------------------------------------------------------------------
// Reading

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Relation> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query("SELECT * FROM ledger_relation WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let rel = from_row(&row)?;
    Ok(label(db, scope.contract_id(), vec![rel]).await?.remove(0))
}

/// The relations of one record (`asset:12`), in both directions, or all of the contract's.
pub async fn list(db: &Db, scope: &ContractScope, record: Option<&str>) -> StoreResult<Vec<Relation>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = match record {
        Some(r) => {
            let r = RecordRef::parse(r).ok_or_else(|| {
                invalid("record", "记录应写作 asset:ID 或 system:ID", "Write a record as asset:ID or system:ID")
            })?;
            sqlx::query(
                "SELECT * FROM ledger_relation WHERE contract_id = $1 AND (from_ref = $2 OR to_ref = $2) ORDER BY id LIMIT $3",
            )
            .bind(scope.contract_id())
            .bind(r.to_string())
            .bind(MAX_LISTED)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query("SELECT * FROM ledger_relation WHERE contract_id = $1 ORDER BY id LIMIT $2")
                .bind(scope.contract_id())
                .bind(MAX_LISTED)
                .fetch_all(&db.pool)
                .await?
        }
    };
    let rels = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    label(db, scope.contract_id(), rels).await
}

/// A node of the topology.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphNode {
    /// `system:3`, `asset:12`
    pub record: String,
    /// `system`, or the asset's kind (network, security, host, cloud, environment, …).
    pub kind: String,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// Systems first, then assets, each in id order.
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<Relation>,
    /// Set when there were more nodes than [`MAX_NODES`] (the rest are left out).
    pub truncated: bool,
}

/// What the topology shows: every business system, every asset that takes part in a relation, and
/// the relations between them.
pub async fn graph(db: &Db, scope: &ContractScope) -> StoreResult<Graph> {
    scope.require(ContractPermission::AssetRead)?;
    let edges = list(db, scope, None).await?;
    let systems = sqlx::query("SELECT id, name FROM business_system WHERE contract_id = $1 ORDER BY id LIMIT $2")
        .bind(scope.contract_id())
        .bind(MAX_NODES as i64 + 1)
        .fetch_all(&db.pool)
        .await?;
    let mut nodes: Vec<(RecordRef, GraphNode)> = Vec::new();
    for r in &systems {
        let id: i64 = r.try_get("id")?;
        let rf = RecordRef::System(id);
        nodes.push((rf, GraphNode { record: rf.to_string(), kind: "system".into(), label: r.try_get("name")? }));
    }
    let mut assets: Vec<(RecordRef, GraphNode)> = Vec::new();
    for e in &edges {
        for (s, label, kind) in [(&e.from_ref, &e.from_label, &e.from_kind), (&e.to_ref, &e.to_label, &e.to_kind)] {
            if let Some(rf @ RecordRef::Asset(_)) = RecordRef::parse(s)
                && !kind.is_empty()
                && !assets.iter().any(|(r, _)| *r == rf)
            {
                assets.push((rf, GraphNode { record: s.clone(), kind: kind.clone(), label: label.clone() }));
            }
        }
    }
    assets.sort_by_key(|(r, _)| *r);
    nodes.extend(assets);
    let truncated = nodes.len() > MAX_NODES;
    nodes.truncate(MAX_NODES);
    let kept: std::collections::HashSet<&str> = nodes.iter().map(|(_, n)| n.record.as_str()).collect();
    let edges: Vec<Relation> = edges
        .iter()
        .filter(|e| kept.contains(e.from_ref.as_str()) && kept.contains(e.to_ref.as_str()))
        .cloned()
        .collect();
    Ok(Graph { nodes: nodes.into_iter().map(|(_, n)| n).collect(), edges, truncated })
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Checked {
    from: RecordRef,
    to: RecordRef,
    relation: String,
    from_port: String,
    to_port: String,
    cable_label: String,
}

fn check(input: &RelationInput) -> StoreResult<Checked> {
    let bad_ref = |field| invalid(field, "记录应写作 asset:ID 或 system:ID", "Write a record as asset:ID or system:ID");
    let from = RecordRef::parse(&input.from_ref).ok_or_else(|| bad_ref("from_ref"))?;
    let to = RecordRef::parse(&input.to_ref).ok_or_else(|| bad_ref("to_ref"))?;
    if from == to {
        return Err(invalid("to_ref", "记录不能与自身建立关系", "A record cannot relate to itself"));
    }
    let relation = input.relation.trim();
    if !RELATIONS.contains(&relation) {
        return Err(invalid(
            "relation",
            "关系应为 runs_on、connects_to、powered_by 或 backs_up_to",
            "The relation is runs_on, connects_to, powered_by or backs_up_to",
        ));
    }
    let line = |v: &str, field: &'static str| single_line(v, 100, false).map_err(|m| StoreError::invalid(field, m));
    Ok(Checked {
        from,
        to,
        relation: relation.to_string(),
        from_port: line(&input.from_port, "from_port")?,
        to_port: line(&input.to_port, "to_port")?,
        cable_label: line(&input.cable_label, "cable_label")?,
    })
}

fn history_value(r: &Relation) -> serde_json::Value {
    serde_json::json!({
        "relation_id": r.id,
        "from": r.from_ref,
        "relation": r.relation,
        "to": r.to_ref,
        "from_port": r.from_port,
        "to_port": r.to_port,
        "cable_label": r.cable_label,
    })
}

pub async fn create(db: &Db, scope: &ContractScope, input: &RelationInput, now: i64) -> StoreResult<Relation> {
    scope.require(ContractPermission::AssetWrite)?;
    let c = check(input)?;
    let mut tx = db.begin_write(now).await?;
    // Checked under the writer lock: an end deleted meanwhile cannot slip through.
    let found = describe(tx.conn().await?, scope.contract_id(), &[c.from, c.to]).await?;
    for (r, field) in [(c.from, "from_ref"), (c.to, "to_ref")] {
        if !found.contains_key(&r) {
            return Err(invalid(field, "记录不存在或不属于本合同", "The record does not exist in this contract"));
        }
    }
    let row = sqlx::query(
        "INSERT INTO ledger_relation (contract_id, from_ref, relation, to_ref, from_port, to_port, cable_label, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(scope.contract_id())
    .bind(c.from.to_string())
    .bind(c.relation.clone())
    .bind(c.to.to_string())
    .bind(c.from_port.clone())
    .bind(c.to_port.clone())
    .bind(c.cable_label.clone())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE))?;
    let rel = from_row(&row)?;
    let v = history_value(&rel);
    for end in [&rel.from_ref, &rel.to_ref] {
        record_history(&mut tx, scope, end, "relate", None, Some(&v)).await?;
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "relation.create", format!("relation:{}", rel.id))
            .contract(scope.contract_id())
            .detail(v.to_string()),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, rel.id).await
}

pub async fn delete(db: &Db, scope: &ContractScope, id: i64, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::AssetWrite)?;
    let rel = get(db, scope, id).await?;
    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query("DELETE FROM ledger_relation WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .execute(tx.conn().await?)
        .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let v = history_value(&rel);
    for end in [&rel.from_ref, &rel.to_ref] {
        record_history(&mut tx, scope, end, "unrelate", Some(&v), None).await?;
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "relation.delete", format!("relation:{id}"))
            .contract(scope.contract_id())
            .detail(v.to_string()),
    )
    .await?;
    tx.commit().await
}

/// Deletes every relation of `record` inside a write that removes the record itself, recording
/// each on the other end's history.
pub(crate) async fn delete_all_of(tx: &mut WriteTx, scope: &ContractScope, record: &str) -> StoreResult<usize> {
    let rows = sqlx::query("SELECT * FROM ledger_relation WHERE contract_id = $1 AND (from_ref = $2 OR to_ref = $2)")
        .bind(scope.contract_id())
        .bind(record.to_string())
        .fetch_all(tx.conn().await?)
        .await?;
    let rels = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    sqlx::query("DELETE FROM ledger_relation WHERE contract_id = $1 AND (from_ref = $2 OR to_ref = $2)")
        .bind(scope.contract_id())
        .bind(record.to_string())
        .execute(tx.conn().await?)
        .await?;
    for rel in &rels {
        let other = if rel.from_ref == record { &rel.to_ref } else { &rel.from_ref };
        record_history(tx, scope, other, "unrelate", Some(&history_value(rel)), None).await?;
    }
    Ok(rels.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert_eq!(RecordRef::parse("asset:12"), Some(RecordRef::Asset(12)));
        assert_eq!(RecordRef::parse(" system:3 "), Some(RecordRef::System(3)));
        for bad in ["asset:", "asset:0", "asset:-1", "host:3", "system:x", "3", "site:1"] {
            assert_eq!(RecordRef::parse(bad), None, "{bad}");
        }
        assert_eq!(RecordRef::Asset(5).to_string(), "asset:5");
    }

    #[test]
    fn no_self_relation() {
        let i = RelationInput {
            from_ref: "asset:1".into(),
            relation: "runs_on".into(),
            to_ref: "asset:1".into(),
            ..Default::default()
        };
        assert!(check(&i).is_err());
        let i = RelationInput { to_ref: "asset:2".into(), ..i };
        assert!(check(&i).is_ok());
        let i = RelationInput { relation: "likes".into(), ..i };
        assert!(check(&i).is_err());
    }
}
