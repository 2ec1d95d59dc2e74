//! The asset ledger (台账): assets of every kind with per-kind custom fields, bulk items with a
//! quantity, and the change history of every ledger record (who, when, before and after).
//!
//! Invariants:
//! - Every change of a ledger record writes its `ledger_history` row in the same transaction as the
//!   change and its audit record.
//! - An import is all-or-nothing: [`import`] checks every row first (the same check as the dry
//!   run) and writes nothing when any row is bad.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::ledger::{self, AssetRow, Field, Message, RowProblem};
use yunwei_core::text::{multi_line, single_line};

use crate::audit::AuditEntry;
use crate::db::{Db, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Asset {
    pub id: i64,
    pub contract_id: i64,
    pub kind: String,
    pub name: String,
    pub model: String,
    pub brand: String,
    pub manufacturer: String,
    pub unit: String,
    pub quantity: i64,
    pub serial: String,
    pub manufactured_on: String,
    pub installed_on: String,
    pub site_id: Option<i64>,
    pub site_name: Option<String>,
    pub room: String,
    pub rack: String,
    pub u_position: String,
    pub department: String,
    pub category: String,
    pub asset_no: String,
    pub dimensions: String,
    pub weight: String,
    pub accessories: String,
    pub parameters: String,
    pub status: String,
    pub owner: String,
    pub supplier_id: Option<i64>,
    pub warranty_end: String,
    pub ips: String,
    pub ports: String,
    pub custom: serde_json::Value,
    pub notes: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

const SELECT: &str = "SELECT a.*, s.name AS site_name FROM asset a LEFT JOIN site s ON s.id = a.site_id";

fn from_row(r: &AnyRow) -> StoreResult<Asset> {
    let custom: String = r.try_get("custom")?;
    Ok(Asset {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        model: r.try_get("model")?,
        brand: r.try_get("brand")?,
        manufacturer: r.try_get("manufacturer")?,
        unit: r.try_get("unit")?,
        quantity: r.try_get("quantity")?,
        serial: r.try_get("serial")?,
        manufactured_on: r.try_get("manufactured_on")?,
        installed_on: r.try_get("installed_on")?,
        site_id: r.try_get("site_id")?,
        site_name: r.try_get("site_name").ok().flatten(),
        room: r.try_get("room")?,
        rack: r.try_get("rack")?,
        u_position: r.try_get("u_position")?,
        department: r.try_get("department")?,
        category: r.try_get("category")?,
        asset_no: r.try_get("asset_no")?,
        dimensions: r.try_get("dimensions")?,
        weight: r.try_get("weight")?,
        accessories: r.try_get("accessories")?,
        parameters: r.try_get("parameters")?,
        status: r.try_get("status")?,
        owner: r.try_get("owner")?,
        supplier_id: r.try_get("supplier_id")?,
        warranty_end: r.try_get("warranty_end")?,
        ips: r.try_get("ips")?,
        ports: r.try_get("ports")?,
        custom: serde_json::from_str(&custom).unwrap_or(serde_json::Value::Object(Default::default())),
        notes: r.try_get("notes")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

/// The writable fields of an asset, as the form, the API and the import give them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssetInput {
    pub kind: String,
    pub name: String,
    pub model: String,
    pub brand: String,
    pub manufacturer: String,
    pub unit: String,
    pub quantity: Option<i64>,
    pub serial: String,
    pub manufactured_on: String,
    pub installed_on: String,
    pub site_id: Option<i64>,
    pub room: String,
    pub rack: String,
    pub u_position: String,
    pub department: String,
    pub category: String,
    pub asset_no: String,
    pub dimensions: String,
    pub weight: String,
    pub accessories: String,
    pub parameters: String,
    pub status: String,
    pub owner: String,
    pub supplier_id: Option<i64>,
    pub warranty_end: String,
    pub ips: String,
    pub ports: String,
    pub custom: Option<BTreeMap<String, String>>,
    pub notes: String,
}

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

/// The text `search` matches: lower-case, the fields people look an asset up by.
fn search_text(a: &AssetInput) -> String {
    [&a.name, &a.model, &a.brand, &a.serial, &a.asset_no, &a.ips, &a.room, &a.department, &a.owner, &a.category]
        .iter()
        .map(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

struct Checked {
    a: AssetInput,
    quantity: i64,
    custom: String,
}

async fn check(db: &Db, scope: &ContractScope, input: &AssetInput) -> StoreResult<Checked> {
    let line = |v: &str, field: &'static str, max: usize, required: bool| {
        single_line(v, max, required).map_err(|m| StoreError::invalid(field, m))
    };
    let kind = input.kind.trim();
    if !ledger::KINDS.iter().any(|(k, _, _)| *k == kind) {
        return Err(invalid("kind", "资产类型无效", "Unknown asset kind"));
    }
    let status = if input.status.trim().is_empty() { "in_service" } else { input.status.trim() };
    if !ledger::STATUSES.iter().any(|(k, _, _)| *k == status) {
        return Err(invalid("status", "资产状态无效", "Unknown asset status"));
    }
    let quantity = input.quantity.unwrap_or(1);
    if !(1..=1_000_000).contains(&quantity) {
        return Err(invalid("quantity", "数量应为 1 到 1000000", "Quantity is 1 to 1000000"));
    }
    for (v, field) in [
        (&input.manufactured_on, "manufactured_on"),
        (&input.installed_on, "installed_on"),
        (&input.warranty_end, "warranty_end"),
    ] {
        if !v.trim().is_empty() && ledger::parse_ledger_date(v).as_deref() != Some(v.trim()) {
            return Err(invalid(
                field,
                "日期格式应为 YYYY-MM-DD 或 YYYY-MM",
                "Dates are written YYYY-MM-DD or YYYY-MM",
            ));
        }
    }
    if let Some(site) = input.site_id {
        let found = sqlx::query("SELECT 1 AS x FROM site WHERE contract_id = $1 AND id = $2")
            .bind(scope.contract_id())
            .bind(site)
            .fetch_optional(&db.pool)
            .await?;
        if found.is_none() {
            return Err(invalid("site_id", "站点不属于本合同", "The site is not one of this contract's"));
        }
    }
    if let Some(sup) = input.supplier_id {
        let found = sqlx::query("SELECT 1 AS x FROM supplier WHERE contract_id = $1 AND id = $2")
            .bind(scope.contract_id())
            .bind(sup)
            .fetch_optional(&db.pool)
            .await?;
        if found.is_none() {
            return Err(invalid("supplier_id", "供应商不属于本合同", "The supplier is not one of this contract's"));
        }
    }
    let custom = check_custom(db, scope, kind, input.custom.as_ref()).await?;
    let a = AssetInput {
        kind: kind.to_string(),
        name: line(&input.name, "name", 200, true)?,
        model: line(&input.model, "model", 200, false)?,
        brand: line(&input.brand, "brand", 200, false)?,
        manufacturer: line(&input.manufacturer, "manufacturer", 200, false)?,
        unit: line(&input.unit, "unit", 20, false)?,
        quantity: Some(quantity),
        serial: line(&input.serial, "serial", 200, false)?,
        manufactured_on: input.manufactured_on.trim().to_string(),
        installed_on: input.installed_on.trim().to_string(),
        site_id: input.site_id,
        room: line(&input.room, "room", 200, false)?,
        rack: line(&input.rack, "rack", 100, false)?,
        u_position: line(&input.u_position, "u_position", 50, false)?,
        department: line(&input.department, "department", 200, false)?,
        category: line(&input.category, "category", 200, false)?,
        asset_no: line(&input.asset_no, "asset_no", 100, false)?,
        dimensions: line(&input.dimensions, "dimensions", 200, false)?,
        weight: line(&input.weight, "weight", 100, false)?,
        accessories: multi_line(&input.accessories, 2000).map_err(|m| StoreError::invalid("accessories", m))?,
        parameters: multi_line(&input.parameters, 2000).map_err(|m| StoreError::invalid("parameters", m))?,
        status: status.to_string(),
        owner: line(&input.owner, "owner", 100, false)?,
        supplier_id: input.supplier_id,
        warranty_end: input.warranty_end.trim().to_string(),
        ips: line(&input.ips, "ips", 1000, false)?,
        ports: line(&input.ports, "ports", 1000, false)?,
        custom: None,
        notes: multi_line(&input.notes, 2000).map_err(|m| StoreError::invalid("notes", m))?,
    };
    Ok(Checked { a, quantity, custom })
}

/// Checks custom values against the fields defined for the kind; returns them as a JSON object.
async fn check_custom(
    db: &Db,
    scope: &ContractScope,
    kind: &str,
    values: Option<&BTreeMap<String, String>>,
) -> StoreResult<String> {
    let defs = fields(db, scope, kind).await?;
    let empty = BTreeMap::new();
    let values = values.unwrap_or(&empty);
    let mut out = serde_json::Map::new();
    for (k, v) in values {
        let Some(def) = defs.iter().find(|d| &d.field_key == k) else {
            return Err(invalid("custom", "该类型没有此自定义字段", "This kind has no such custom field"));
        };
        let v = single_line(v, 500, false).map_err(|m| StoreError::invalid("custom", m))?;
        let ok = match def.value_type.as_str() {
            "number" => v.is_empty() || v.parse::<f64>().is_ok_and(f64::is_finite),
            "date" => v.is_empty() || ledger::parse_ledger_date(&v).is_some(),
            _ => true,
        };
        if !ok {
            return Err(invalid("custom", "自定义字段的值与其类型不符", "A custom value does not match its type"));
        }
        if !v.is_empty() {
            out.insert(k.clone(), serde_json::Value::String(v));
        }
    }
    for d in defs.iter().filter(|d| d.required) {
        if !out.contains_key(&d.field_key) {
            return Err(invalid("custom", "缺少必填的自定义字段", "A required custom field is missing"));
        }
    }
    Ok(serde_json::Value::Object(out).to_string())
}

/// A field an operator added to one kind of asset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomField {
    pub kind: String,
    pub field_key: String,
    pub label: String,
    /// text, number, date
    pub value_type: String,
    pub required: bool,
    pub position: i64,
}

pub async fn fields(db: &Db, scope: &ContractScope, kind: &str) -> StoreResult<Vec<CustomField>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = sqlx::query(
        "SELECT kind, field_key, label, value_type, required, position FROM asset_field \
         WHERE contract_id = $1 AND kind = $2 ORDER BY position, field_key",
    )
    .bind(scope.contract_id())
    .bind(kind.to_string())
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CustomField {
                kind: r.try_get("kind")?,
                field_key: r.try_get("field_key")?,
                label: r.try_get("label")?,
                value_type: r.try_get("value_type")?,
                required: r.try_get::<i64, _>("required")? != 0,
                position: r.try_get("position")?,
            })
        })
        .collect()
}

/// Adds or changes a custom field of a kind (no code change needed for a new attribute).
pub async fn define_field(db: &Db, scope: &ContractScope, f: &CustomField, now: i64) -> StoreResult<()> {
    scope.require(ContractPermission::AssetWrite)?;
    if !ledger::KINDS.iter().any(|(k, _, _)| *k == f.kind) {
        return Err(invalid("kind", "资产类型无效", "Unknown asset kind"));
    }
    let key = f.field_key.trim();
    if key.is_empty()
        || key.len() > 40
        || !key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid(
            "field_key",
            "字段键只能用小写字母、数字和下划线",
            "Keys use lower-case letters, digits and _",
        ));
    }
    if !["text", "number", "date"].contains(&f.value_type.as_str()) {
        return Err(invalid("value_type", "字段类型应为 text、number 或 date", "The type is text, number or date"));
    }
    let label = single_line(&f.label, 100, true).map_err(|m| StoreError::invalid("label", m))?;
    let mut tx = db.begin_write(now).await?;
    sqlx::query(
        "INSERT INTO asset_field (contract_id, kind, field_key, label, value_type, required, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (contract_id, kind, field_key) DO UPDATE SET \
         label = excluded.label, value_type = excluded.value_type, required = excluded.required, position = excluded.position",
    )
    .bind(scope.contract_id())
    .bind(f.kind.clone())
    .bind(key.to_string())
    .bind(label.clone())
    .bind(f.value_type.clone())
    .bind(i64::from(f.required))
    .bind(f.position)
    .execute(tx.conn().await?)
    .await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "asset.field", format!("asset_field:{}:{key}", f.kind))
            .contract(scope.contract_id())
            .detail(format!("label={label} type={}", f.value_type)),
    )
    .await?;
    tx.commit().await
}

// ---------------------------------------------------------------------------------------------
// History

/// One change of a ledger record.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// Records a change of `record_ref` ("asset:12", "system:3", "supplier:5") in the transaction.
pub(crate) async fn record_history(
    tx: &mut WriteTx,
    scope: &ContractScope,
    record_ref: &str,
    action: &str,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> StoreResult<()> {
    let now = tx.now_ms();
    sqlx::query(
        "INSERT INTO ledger_history (contract_id, record_ref, at, actor, action, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(scope.contract_id())
    .bind(record_ref.to_string())
    .bind(now)
    .bind(scope.actor().name.clone())
    .bind(action.to_string())
    .bind(before.map(|v| v.to_string()).unwrap_or_default())
    .bind(after.map(|v| v.to_string()).unwrap_or_default())
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

pub async fn history(db: &Db, scope: &ContractScope, record_ref: &str) -> StoreResult<Vec<HistoryEntry>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = sqlx::query(
        "SELECT at, actor, action, before_json, after_json FROM ledger_history WHERE contract_id = $1 AND record_ref = $2 ORDER BY id",
    )
    .bind(scope.contract_id())
    .bind(record_ref.to_string())
    .fetch_all(&db.pool)
    .await?;
    let parse = |s: String| serde_json::from_str(&s).unwrap_or(serde_json::Value::Null);
    rows.into_iter()
        .map(|r| {
            Ok(HistoryEntry {
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                before: parse(r.try_get("before_json")?),
                after: parse(r.try_get("after_json")?),
            })
        })
        .collect()
}

/// Only the fields that differ, so that a history entry reads as a change, not two records.
fn changed_fields(before: &serde_json::Value, after: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    let (mut b, mut a) = (serde_json::Map::new(), serde_json::Map::new());
    if let (Some(bo), Some(ao)) = (before.as_object(), after.as_object()) {
        for (k, av) in ao {
            if matches!(k.as_str(), "updated_at" | "version" | "site_name") {
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

// ---------------------------------------------------------------------------------------------
// Reading

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Asset> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query(AssertSqlSafe(format!("{SELECT} WHERE a.contract_id = $1 AND a.id = $2")))
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AssetFilter {
    pub kind: Option<String>,
    pub status: Option<String>,
    pub site_id: Option<i64>,
    pub supplier_id: Option<i64>,
    /// Words in the name, model, brand, serial, asset number, IPs, room, department, owner, category.
    pub q: Option<String>,
    /// The id after which the page starts.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssetPage {
    pub items: Vec<Asset>,
    pub next_after: Option<i64>,
}

/// A page of the ledger in id order. A search term matches anywhere in the searched fields
/// (`LIKE '%term%'` on `search_text`, lower-case, `%` and `_` taken literally).
///
/// Which rows are read depends on the term, never what matches: every row read is checked against
/// every condition. On SQLite the search index (migrations 0006 and 0008) is asked first for the
/// first matching assets under every filter ([`candidates`]): the page is read from those, or by
/// reading on in id order when they may not hold all of it. On PostgreSQL a search is one
/// condition on an indexed expression of the filters and the text ([`PgSearch`]), and the planner
/// chooses between its index and reading in id order.
pub async fn list(db: &Db, scope: &ContractScope, f: &AssetFilter) -> StoreResult<AssetPage> {
    scope.require(ContractPermission::AssetRead)?;
    let kind = f.kind.as_deref().filter(|s| !s.is_empty());
    if kind.is_some_and(|k| !ledger::KINDS.iter().any(|(x, _, _)| *x == k)) {
        return Err(invalid("kind", "资产类型无效", "Unknown asset kind"));
    }
    let status = f.status.as_deref().filter(|s| !s.is_empty());
    if status.is_some_and(|s| !ledger::STATUSES.iter().any(|(x, _, _)| *x == s)) {
        return Err(invalid("status", "资产状态无效", "Unknown asset status"));
    }
    let q = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100) {
        return Err(invalid("q", "搜索词过长", "The search text is too long"));
    }
    let filter = Conditions { kind, status, q, site_id: f.site_id, supplier_id: f.supplier_id };
    let limit = f.limit.unwrap_or(50).clamp(1, 500) as usize;
    let after = f.after.unwrap_or(0);
    // One row more than the page, to know whether another page follows.
    let want = limit + 1;
    let mut items = match candidates(db, scope, &filter, after, want).await? {
        Candidates::Scan => read(db, scope, &filter, after, None, want).await?,
        Candidates::Only(ids) => read(db, scope, &filter, after, Some(&ids), want).await?,
        Candidates::UpTo(ids, last) => {
            let mut items = read(db, scope, &filter, after, Some(&ids), want).await?;
            if items.len() < want {
                // Every match up to the last candidate has been seen: read on from there.
                items.extend(read(db, scope, &filter, last, None, want - items.len()).await?);
            }
            items
        }
        Candidates::None => Vec::new(),
    };
    let next_after = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|a| a.id)
    } else {
        None
    };
    Ok(AssetPage { items, next_after })
}

/// The conditions of a list, checked on every row read.
struct Conditions<'a> {
    kind: Option<&'a str>,
    status: Option<&'a str>,
    q: Option<&'a str>,
    site_id: Option<i64>,
    supplier_id: Option<i64>,
}

enum Arg {
    I(i64),
    S(String),
}

fn bind_all<'a>(mut query: AnyQuery<'a>, args: impl IntoIterator<Item = Arg>) -> AnyQuery<'a> {
    for a in args {
        query = match a {
            Arg::I(i) => query.bind(i),
            Arg::S(s) => query.bind(s),
        };
    }
    query
}

type AnyQuery<'a> = sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments>;

/// Up to `limit` assets of the contract after `after` in id order that meet every condition, read
/// from `ids` (a JSON array) only when given (SQLite, see [`candidates`]), else from the contract's
/// ledger.
async fn read(
    db: &Db,
    scope: &ContractScope,
    f: &Conditions<'_>,
    after: i64,
    ids: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<Asset>> {
    let mut sql = format!("{SELECT} WHERE a.contract_id = $1 AND a.id > $2");
    let mut args = vec![Arg::I(scope.contract_id()), Arg::I(after)];
    // Fixed SQL text with the next placeholder number; every value is bound.
    let mut and = |cond: &str, v: Arg| {
        args.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", args.len())));
    };
    if let Some(ids) = ids {
        and(" AND a.id IN (SELECT value FROM json_each(?))", Arg::S(ids.to_string()));
    }
    let pg = match f.q {
        Some(q) if db.backend() == crate::Backend::Postgres => PgSearch::of(f, q),
        _ => None,
    };
    if let Some(PgSearch::Key(pattern)) = &pg {
        // The filters and the term as one condition (see [`PgSearch::Key`]).
        and(
            " AND asset_search_key(a.kind, a.status, a.site_id, a.supplier_id, a.search_text) LIKE ? ESCAPE '\\'",
            Arg::S(pattern.clone()),
        );
    } else {
        if let Some(k) = f.kind {
            and(" AND a.kind = ?", Arg::S(k.into()));
        }
        if let Some(s) = f.status {
            and(" AND a.status = ?", Arg::S(s.into()));
        }
        if let Some(v) = f.site_id {
            and(" AND a.site_id = ?", Arg::I(v));
        }
        if let Some(v) = f.supplier_id {
            and(" AND a.supplier_id = ?", Arg::I(v));
        }
        match (&pg, f.q) {
            (Some(PgSearch::Grams(term)), _) => {
                // `strpos` before the array (the planner orders conditions by cost, and the filters
                // above cost least): read in id order, a row's array is built only when the row
                // holds the term. `<>` of an expression without statistics is estimated at 99.5 %,
                // so the array's estimate alone decides.
                and(" AND strpos(a.search_text, ?) <> 0", Arg::S(term.clone()));
                and(" AND asset_search_grams(a.search_text) @> ARRAY[?]", Arg::S(term.clone()));
            }
            (_, Some(q)) => and(" AND a.search_text LIKE ? ESCAPE '\\'", Arg::S(crate::like_contains(q))),
            (_, None) => {}
        }
    }
    and(" ORDER BY a.id LIMIT ?", Arg::I(limit as i64));
    // A PostgreSQL search is planned for its own term every time (an unnamed statement): a
    // prepared one switches to a generic plan once its custom plans cost as much on average, and
    // the generic plan, not knowing the term, reads a common term's every match through the
    // index (`q=华为` went from 16 to 150 ms at p50 after a run of rare terms on the same
    // connections) or a rare term's ledger in id order.
    let query = bind_all(sqlx::query(AssertSqlSafe(sql)), args).persistent(pg.is_none());
    query.fetch_all(&db.pool).await?.iter().map(from_row).collect()
}

/// A search on PostgreSQL through the indexed expressions of migrations 0008 and 0011.
#[derive(Debug, PartialEq)]
enum PgSearch {
    /// Three characters or more: `asset_search_key(…) LIKE` this pattern, which holds the kind,
    /// status, site and supplier filters and the term and is exactly the list's conditions. One
    /// condition, which the planner estimates from the expression's statistics with the filters
    /// and the term together: as separate conditions their selectivities were multiplied, and a
    /// common term under a filter that excluded it read every row of that filter in id order.
    Key(String),
    /// One or two characters (lower-case): `asset_search_grams(search_text)` holds it, with the
    /// filters as conditions of their own (checked before the array is built).
    Grams(String),
}

impl PgSearch {
    /// None for a term with control characters, which no asset's text holds: the plain
    /// conditions (the key's separator must not be in the term).
    fn of(f: &Conditions<'_>, q: &str) -> Option<PgSearch> {
        if q.chars().any(char::is_control) {
            return None;
        }
        let term = q.to_lowercase();
        if term.chars().count() < 3 {
            return Some(PgSearch::Grams(term));
        }
        // U+001F before each field, as `asset_search_key` writes them; `%` for a filter not given.
        let field = |v: Option<String>| v.map(|v| like_literal(&v)).unwrap_or_else(|| "%".into());
        Some(PgSearch::Key(format!(
            "\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            field(f.kind.map(|k| key_letter(&ledger::KINDS, k, 'α'))),
            field(f.status.map(|s| key_letter(&ledger::STATUSES, s, 'κ'))),
            field(f.site_id.map(|v| v.to_string())),
            field(f.supplier_id.map(|v| v.to_string())),
            crate::like_contains(&term),
        )))
    }
}

/// How `asset_search_key` (migration 0011) writes a kind or status: the Greek letter at its
/// position in `list` counted from `first`; a value not in the list as it is (as the function's
/// `ELSE` does; `list` refuses such values before).
fn key_letter(list: &[(&str, &str, &str)], value: &str, first: char) -> String {
    list.iter()
        .position(|(x, _, _)| *x == value)
        .and_then(|i| char::from_u32(u32::from(first) + u32::try_from(i).ok()?))
        .map_or_else(|| value.to_string(), String::from)
}

/// `s` as a LIKE pattern that matches it alone (`ESCAPE '\'`).
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How many matching assets the search index is asked for at most (SQLite), for a term of one or
/// two characters. Up to this many, a page is read from those assets alone; a term with more is
/// common, and a page of it is found by reading the ledger in id order.
const PROBE_LIMIT: usize = 1000;

/// What the search index says about a term. Ids travel as a JSON array, from one statement to the
/// next without a row per id.
#[derive(Debug, PartialEq)]
enum Candidates {
    /// Nothing: read the ledger in id order.
    Scan,
    /// No asset after the cursor matches.
    None,
    /// Every matching asset after the cursor is one of these.
    Only(String),
    /// Every matching asset after the cursor, up to the last of these (the second field), is one
    /// of these; more follow.
    UpTo(String, i64),
}

/// Asks the search index (SQLite, migrations 0006 and 0008) which assets may match, in a bounded
/// query.
///
/// - Three characters or more: a phrase query over the trigrams of the contract's assets under
///   every filter of the list (their marks, see [`phrase_query`]) for the `first` matches in id
///   order from the cursor. Exact, since the indexed text is what LIKE reads; for site and
///   supplier ids of 131,072 and beyond, more rows than match (they share marks), whence
///   [`Candidates::UpTo`].
/// - One or two characters: the assets holding a trigram that begins with them (every substring
///   begins a trigram: the indexed text ends in two spaces), in any order and over every contract
///   and filter (the index's term list cannot be narrowed); more than [`PROBE_LIMIT`] reads the
///   contract's ledger instead.
///
/// PostgreSQL's indexes are used by the planner within the list query itself, and terms with
/// control characters (which no searched field holds) are left to LIKE.
async fn candidates(
    db: &Db,
    scope: &ContractScope,
    f: &Conditions<'_>,
    after: i64,
    first: usize,
) -> StoreResult<Candidates> {
    let Some(q) = f.q else { return Ok(Candidates::Scan) };
    if db.backend() != crate::Backend::Sqlite || q.chars().any(char::is_control) {
        return Ok(Candidates::Scan);
    }
    let term = q.to_lowercase();
    // Three characters or more: the phrase query, whose candidates are the first matches in id
    // order. Fewer: the term list, whose candidates come in no useful order.
    let phrase = term.chars().count() >= 3;
    // Candidates at most (one more is asked for, to know whether more follow).
    let most = if phrase { first.min(PROBE_LIMIT) } else { PROBE_LIMIT };
    let (sql, a, b) = if phrase {
        (
            "SELECT json_group_array(id) AS ids, count(*) AS n, max(id) AS last FROM \
             (SELECT rowid AS id FROM asset_search WHERE asset_search MATCH $1 AND rowid > $2 ORDER BY rowid LIMIT $3)",
            Arg::S(match phrase_query(scope.contract_id(), f, &term) {
                Some(p) => p,
                None => return Ok(Candidates::Scan),
            }),
            Arg::I(after),
        )
    } else {
        let (from, to) = prefix_range(&term);
        (
            "SELECT json_group_array(id) AS ids, count(*) AS n, max(id) AS last FROM \
             (SELECT DISTINCT doc AS id FROM asset_search_terms WHERE term >= $1 AND term < $2 AND col = 'body' LIMIT $3)",
            Arg::S(from),
            Arg::S(to),
        )
    };
    let row = bind_all(sqlx::query(sql), [a, b, Arg::I(most as i64 + 1)]).fetch_one(&db.pool).await?;
    let (ids, n) = (row.try_get::<String, _>("ids")?, row.try_get::<i64, _>("n")?);
    Ok(match n {
        0 => Candidates::None,
        n if n <= most as i64 => Candidates::Only(ids),
        _ if phrase => Candidates::UpTo(ids, row.try_get("last")?),
        _ => Candidates::Scan,
    })
}

/// The FTS5 query for the assets of one contract under the list's filters whose text holds
/// `term`: each mark (as migration 0008 writes them) and the term, each a quoted phrase (no
/// character in it is syntax; `"` is doubled). The filters' marks hold the contract; without a
/// filter the contract's own mark stands for it. None for a contract id beyond the marks (more
/// than 131,071) or a filter id below 1 (no asset has one).
fn phrase_query(contract_id: i64, f: &Conditions<'_>, term: &str) -> Option<String> {
    let c = id_mark(contract_id).filter(|_| contract_id <= 0x1_FFFF)?;
    let position = |list: &[(&str, &str, &str)], v: &str| list.iter().position(|(x, _, _)| *x == v);
    let mut marks = Vec::new();
    if let Some(k) = f.kind {
        marks.push(['\u{1d}', c, enum_mark(position(&ledger::KINDS, k)?)?]);
    }
    if let Some(s) = f.status {
        marks.push(['\u{1c}', c, enum_mark(position(&ledger::STATUSES, s)?)?]);
    }
    if let Some(id) = f.site_id {
        marks.push(['\u{1b}', c, id_mark(id)?]);
    }
    if let Some(id) = f.supplier_id {
        marks.push(['\u{1a}', c, id_mark(id)?]);
    }
    if marks.is_empty() {
        marks.push(['\u{1e}', c, '\u{1e}']);
    }
    let mut query: Vec<String> = marks.iter().map(|m| format!("scope : \"{}\"", String::from_iter(m))).collect();
    query.push(format!("body : \"{}\"", term.replace('"', "\"\"")));
    Some(query.join(" AND "))
}

/// The character that stands for an id in the marks: U+F0000 + (id mod 131,072), as migration
/// 0008 computes it. None below 1.
fn id_mark(id: i64) -> Option<char> {
    if id < 1 {
        return None;
    }
    char::from_u32(0xF0000 + (id % 0x2_0000) as u32)
}

/// The character that stands for the kind or status at `position` in its list (the order of the
/// CHECK lists of migration 0004): U+E001, U+E002, …
fn enum_mark(position: usize) -> Option<char> {
    char::from_u32(0xE001 + u32::try_from(position).ok()?)
}

/// The range of trigrams that begin with `prefix` (one or two characters): `[prefix, prefix +
/// U+10FFFF × 3)`, which holds every string of three characters or fewer that begins with it.
fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_string(), format!("{prefix}\u{10FFFF}\u{10FFFF}\u{10FFFF}"))
}

// ---------------------------------------------------------------------------------------------
// Writing

const DUPLICATE_NO: Msg = Msg::new("本合同已有该资产编号", "This contract already has an asset with that number");
const CHANGED: Msg =
    Msg::new("记录已被他人修改，请刷新后重试", "The record was changed by someone else; reload and retry");

async fn insert(tx: &mut WriteTx, scope: &ContractScope, c: &Checked, now: i64) -> StoreResult<i64> {
    let a = &c.a;
    let row = sqlx::query(
        "INSERT INTO asset (contract_id, kind, name, model, brand, manufacturer, unit, quantity, serial, manufactured_on, \
         installed_on, site_id, room, rack, u_position, department, category, asset_no, dimensions, weight, accessories, \
         parameters, status, owner, supplier_id, warranty_end, ips, ports, custom, notes, search_text, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
         $24, $25, $26, $27, $28, $29, $30, $31, $32, $32) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(a.kind.clone())
    .bind(a.name.clone())
    .bind(a.model.clone())
    .bind(a.brand.clone())
    .bind(a.manufacturer.clone())
    .bind(a.unit.clone())
    .bind(c.quantity)
    .bind(a.serial.clone())
    .bind(a.manufactured_on.clone())
    .bind(a.installed_on.clone())
    .bind(a.site_id)
    .bind(a.room.clone())
    .bind(a.rack.clone())
    .bind(a.u_position.clone())
    .bind(a.department.clone())
    .bind(a.category.clone())
    .bind(a.asset_no.clone())
    .bind(a.dimensions.clone())
    .bind(a.weight.clone())
    .bind(a.accessories.clone())
    .bind(a.parameters.clone())
    .bind(a.status.clone())
    .bind(a.owner.clone())
    .bind(a.supplier_id)
    .bind(a.warranty_end.clone())
    .bind(a.ips.clone())
    .bind(a.ports.clone())
    .bind(c.custom.clone())
    .bind(a.notes.clone())
    .bind(search_text(a))
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE_NO))?;
    Ok(row.try_get("id")?)
}

pub async fn create(db: &Db, scope: &ContractScope, input: &AssetInput, now: i64) -> StoreResult<Asset> {
    scope.require(ContractPermission::AssetWrite)?;
    let c = check(db, scope, input).await?;
    let mut tx = db.begin_write(now).await?;
    let id = insert(&mut tx, scope, &c, now).await?;
    let after = serde_json::to_value(&c.a).unwrap_or_default();
    record_history(&mut tx, scope, &format!("asset:{id}"), "create", None, Some(&after)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "asset.create", format!("asset:{id}"))
            .contract(scope.contract_id())
            .detail(format!("{} {} {}", c.a.kind, c.a.name, c.a.asset_no)),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

/// Replaces an asset's fields if `version` is current; the history keeps what changed.
pub async fn update(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    input: &AssetInput,
    now: i64,
) -> StoreResult<Asset> {
    scope.require(ContractPermission::AssetWrite)?;
    let before = get(db, scope, id).await?;
    let c = check(db, scope, input).await?;
    let a = &c.a;
    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query(
        "UPDATE asset SET kind = $1, name = $2, model = $3, brand = $4, manufacturer = $5, unit = $6, quantity = $7, \
         serial = $8, manufactured_on = $9, installed_on = $10, site_id = $11, room = $12, rack = $13, u_position = $14, \
         department = $15, category = $16, asset_no = $17, dimensions = $18, weight = $19, accessories = $20, \
         parameters = $21, status = $22, owner = $23, supplier_id = $24, warranty_end = $25, ips = $26, ports = $27, \
         custom = $28, notes = $29, search_text = $30, updated_at = $31, version = version + 1 \
         WHERE contract_id = $32 AND id = $33 AND version = $34",
    )
    .bind(a.kind.clone())
    .bind(a.name.clone())
    .bind(a.model.clone())
    .bind(a.brand.clone())
    .bind(a.manufacturer.clone())
    .bind(a.unit.clone())
    .bind(c.quantity)
    .bind(a.serial.clone())
    .bind(a.manufactured_on.clone())
    .bind(a.installed_on.clone())
    .bind(a.site_id)
    .bind(a.room.clone())
    .bind(a.rack.clone())
    .bind(a.u_position.clone())
    .bind(a.department.clone())
    .bind(a.category.clone())
    .bind(a.asset_no.clone())
    .bind(a.dimensions.clone())
    .bind(a.weight.clone())
    .bind(a.accessories.clone())
    .bind(a.parameters.clone())
    .bind(a.status.clone())
    .bind(a.owner.clone())
    .bind(a.supplier_id)
    .bind(a.warranty_end.clone())
    .bind(a.ips.clone())
    .bind(a.ports.clone())
    .bind(c.custom.clone())
    .bind(a.notes.clone())
    .bind(search_text(a))
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(DUPLICATE_NO))?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(CHANGED));
    }
    let mut after = before.clone();
    after.kind = a.kind.clone();
    let before_v = serde_json::to_value(&before).unwrap_or_default();
    let after_v = {
        let mut v = serde_json::to_value(a).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("quantity".into(), c.quantity.into());
            o.insert("custom".into(), serde_json::from_str(&c.custom).unwrap_or_default());
        }
        v
    };
    let (b, af) = changed_fields(&before_v, &after_v);
    let action = if before.status != a.status && a.status == "retired" { "retire" } else { "update" };
    record_history(&mut tx, scope, &format!("asset:{id}"), action, Some(&b), Some(&af)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), &format!("asset.{action}"), format!("asset:{id}"))
            .contract(scope.contract_id())
            .detail(format!("before={b} after={af}")),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

// ---------------------------------------------------------------------------------------------
// Import

/// What a dry run or an import found.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub rows: usize,
    pub blank_rows: usize,
    pub ignored_columns: Vec<String>,
    pub problems: Vec<ImportProblem>,
    /// Set when the rows were written.
    pub imported: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportProblem {
    pub row: usize,
    pub column: Option<String>,
    pub message: Message,
}

impl From<RowProblem> for ImportProblem {
    fn from(p: RowProblem) -> Self {
        ImportProblem { row: p.row, column: p.column, message: p.message }
    }
}

/// Checks a sheet against the ledger as it is (site names, supplier names, asset numbers already
/// in use) and, unless `dry_run`, writes every row in one transaction — or none.
pub async fn import(
    db: &Db,
    scope: &ContractScope,
    headers: &[String],
    cells: &[Vec<ledger::CellValue>],
    dry_run: bool,
    now: i64,
) -> StoreResult<ImportReport> {
    scope.require(ContractPermission::AssetWrite)?;
    let sheet = match ledger::check_sheet(headers, cells) {
        Ok(s) => s,
        // A header that cannot be read is the first row's problem, reported like any other.
        Err(message) => {
            return Ok(ImportReport {
                rows: 0,
                blank_rows: 0,
                ignored_columns: Vec::new(),
                problems: vec![ImportProblem { row: 1, column: None, message }],
                imported: None,
            });
        }
    };
    let mut problems: Vec<ImportProblem> = sheet.problems.into_iter().map(Into::into).collect();
    let names = |sql: &'static str| async move {
        let rows = sqlx::query(sql).bind(scope.contract_id()).fetch_all(&db.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("name")?, r.try_get::<i64, _>("id")?)))
            .collect::<StoreResult<HashMap<String, i64>>>()
    };
    let sites = names("SELECT name, id FROM site WHERE contract_id = $1").await?;
    let suppliers = names("SELECT name, id FROM supplier WHERE contract_id = $1").await?;
    let used: std::collections::HashSet<String> =
        sqlx::query("SELECT asset_no FROM asset WHERE contract_id = $1 AND asset_no <> ''")
            .bind(scope.contract_id())
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("asset_no"))
            .collect::<Result<_, _>>()?;
    let mut ready: Vec<Checked> = Vec::with_capacity(sheet.rows.len());
    for (row, r) in &sheet.rows {
        match to_input(r, &sites, &suppliers, &used) {
            Ok(c) => ready.push(c),
            Err((column, message)) => problems.push(ImportProblem { row: *row, column: Some(column.into()), message }),
        }
    }
    problems.sort_by_key(|p| p.row);
    let mut report = ImportReport {
        rows: sheet.rows.len(),
        blank_rows: sheet.blank_rows,
        ignored_columns: sheet.ignored_columns,
        problems,
        imported: None,
    };
    if dry_run || !report.problems.is_empty() {
        return Ok(report);
    }
    let mut tx = db.begin_write(now).await?;
    // SQLite: the search index is written once for all rows (see migration 0008).
    let sqlite = db.backend() == crate::Backend::Sqlite;
    if sqlite {
        tx.defer("INSERT INTO asset_search_pause (paused) VALUES (1)", Vec::new());
    }
    let ids = insert_all(&mut tx, scope, db.backend(), &ready, now).await?;
    if sqlite {
        tx.defer(
            "INSERT INTO asset_search (rowid, scope, body) SELECT id, scope, body FROM asset_search_row \
             WHERE contract_id = $1 AND id IN (SELECT value FROM json_each($2))",
            vec![scope.contract_id().into(), serde_json::to_string(&ids).unwrap_or_default().into()],
        );
        tx.defer("DELETE FROM asset_search_pause", Vec::new());
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "asset.import", format!("contract:{}", scope.contract_id()))
            .contract(scope.contract_id())
            .detail(format!("rows={} first_asset={}", ready.len(), ids.first().copied().unwrap_or(0))),
    )
    .await?;
    tx.commit().await?;
    report.imported = Some(ready.len());
    Ok(report)
}

/// Rows per statement of an import. Each statement takes its rows as one JSON array, one bound
/// parameter: bound multi-row `VALUES` lists were slow through sqlx's `Any` driver (BENCHMARKS.md,
/// service desk seeding), and one statement per row was a round trip per row (PostgreSQL: about
/// 2 s of a 10,000-row import).
const IMPORT_CHUNK: usize = 1000;

/// The statement that inserts the assets of a JSON array (`$2`, objects as [`ImportRow`] writes
/// them) in array order, from the engine's table function that yields each element as `value`
/// and its position as `key`.
macro_rules! import_assets_sql {
    ($elements:literal) => {
        concat!(
            "INSERT INTO asset (contract_id, kind, name, model, brand, manufacturer, unit, quantity, serial, \
             manufactured_on, installed_on, site_id, room, rack, u_position, department, category, asset_no, \
             dimensions, weight, accessories, parameters, status, owner, supplier_id, warranty_end, ips, ports, \
             custom, notes, search_text, created_at, updated_at) \
             SELECT $1, value ->> 'kind', value ->> 'name', value ->> 'model', value ->> 'brand', \
             value ->> 'manufacturer', value ->> 'unit', CAST(value ->> 'checked_quantity' AS BIGINT), \
             value ->> 'serial', value ->> 'manufactured_on', value ->> 'installed_on', \
             CAST(value ->> 'site_id' AS BIGINT), value ->> 'room', value ->> 'rack', value ->> 'u_position', \
             value ->> 'department', value ->> 'category', value ->> 'asset_no', value ->> 'dimensions', \
             value ->> 'weight', value ->> 'accessories', value ->> 'parameters', value ->> 'status', \
             value ->> 'owner', CAST(value ->> 'supplier_id' AS BIGINT), value ->> 'warranty_end', \
             value ->> 'ips', value ->> 'ports', value ->> 'checked_custom', value ->> 'notes', \
             value ->> 'search_text', $3, $3 FROM ",
            $elements,
            " ORDER BY key RETURNING id, name, asset_no"
        )
    };
}

/// The history entries of imported assets: a JSON array (`$4`) of `{"r": record, "a": after}`.
macro_rules! import_history_sql {
    ($elements:literal) => {
        concat!(
            "INSERT INTO ledger_history (contract_id, record_ref, at, actor, action, before_json, after_json) \
             SELECT $1, value ->> 'r', $2, $3, 'import', '', value ->> 'a' FROM ",
            $elements,
            " ORDER BY key"
        )
    };
}

/// One asset of an import as its statement reads it.
#[derive(Serialize)]
struct ImportRow<'a> {
    #[serde(flatten)]
    a: &'a AssetInput,
    checked_quantity: i64,
    checked_custom: &'a str,
    search_text: String,
}

/// Inserts checked rows as new assets, each with its history entry, [`IMPORT_CHUNK`] rows per
/// statement; returns their ids in the order of `rows`.
async fn insert_all(
    tx: &mut WriteTx,
    scope: &ContractScope,
    backend: crate::Backend,
    rows: &[Checked],
    now: i64,
) -> StoreResult<Vec<i64>> {
    let (assets_sql, history_sql) = match backend {
        crate::Backend::Sqlite => (import_assets_sql!("json_each($2)"), import_history_sql!("json_each($4)")),
        crate::Backend::Postgres => (
            import_assets_sql!("jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(value, key)"),
            import_history_sql!("jsonb_array_elements($4::jsonb) WITH ORDINALITY AS e(value, key)"),
        ),
    };
    let mut ids = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(IMPORT_CHUNK) {
        let json = serde_json::to_string(
            &chunk
                .iter()
                .map(|c| ImportRow {
                    a: &c.a,
                    checked_quantity: c.quantity,
                    checked_custom: &c.custom,
                    search_text: search_text(&c.a),
                })
                .collect::<Vec<_>>(),
        )
        .map_err(|e| StoreError::Schema(format!("import rows as JSON: {e}")))?;
        let returned = tx
            .fetch_all(assets_sql, vec![scope.contract_id().into(), json.into(), now.into()])
            .await
            .map_err(|e| e.unique_as(DUPLICATE_NO))?;
        let mut inserted = returned
            .iter()
            .map(|r| {
                Ok((r.try_get::<i64, _>("id")?, r.try_get::<String, _>("name")?, r.try_get::<String, _>("asset_no")?))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // Ids grow in the order rows are inserted (this transaction holds the writer lock), and
        // RETURNING promises no order: sorted, they are the rows' in array order, which the names
        // and numbers confirm before any history entry refers to them.
        inserted.sort_by_key(|r| r.0);
        let matches = inserted.len() == chunk.len()
            && inserted.iter().zip(chunk).all(|((_, name, no), c)| *name == c.a.name && *no == c.a.asset_no);
        if !matches {
            return Err(StoreError::Schema("imported assets came back in another order than inserted".into()));
        }
        let history: Vec<serde_json::Value> = inserted
            .iter()
            .zip(chunk)
            .map(|((id, _, _), c)| {
                let after = serde_json::to_value(&c.a).unwrap_or_default().to_string();
                serde_json::json!({ "r": format!("asset:{id}"), "a": after })
            })
            .collect();
        tx.defer(
            history_sql,
            vec![
                scope.contract_id().into(),
                now.into(),
                scope.actor().name.clone().into(),
                serde_json::Value::Array(history).to_string().into(),
            ],
        );
        ids.extend(inserted.iter().map(|r| r.0));
    }
    Ok(ids)
}

type CellProblem = (&'static str, Message);

fn to_input(
    r: &AssetRow,
    sites: &HashMap<String, i64>,
    suppliers: &HashMap<String, i64>,
    used: &std::collections::HashSet<String>,
) -> Result<Checked, CellProblem> {
    let g = |f: Field| r.get(f).to_string();
    let site_id = match r.get(Field::Site) {
        "" => None,
        name => Some(*sites.get(name).ok_or_else(|| {
            (
                Field::Site.header(),
                Message::new(format!("本合同没有站点“{name}”"), format!("This contract has no site \"{name}\"")),
            )
        })?),
    };
    let supplier_id = match r.get(Field::Supplier) {
        "" => None,
        name => Some(*suppliers.get(name).ok_or_else(|| {
            (
                Field::Supplier.header(),
                Message::new(format!("本合同没有供应商“{name}”"), format!("This contract has no supplier \"{name}\"")),
            )
        })?),
    };
    let no = g(Field::AssetNo);
    if !no.is_empty() && used.contains(&no) {
        return Err((
            Field::AssetNo.header(),
            Message::new(
                format!("资产编号“{no}”已在台账中"),
                format!("Asset number \"{no}\" is already in the ledger"),
            ),
        ));
    }
    let a = AssetInput {
        kind: g(Field::Kind),
        name: g(Field::Name),
        model: g(Field::Model),
        brand: g(Field::Brand),
        manufacturer: g(Field::Manufacturer),
        unit: g(Field::Unit),
        quantity: Some(r.quantity),
        serial: g(Field::Serial),
        manufactured_on: g(Field::ManufacturedOn),
        installed_on: g(Field::InstalledOn),
        site_id,
        room: g(Field::Room),
        rack: g(Field::Rack),
        u_position: g(Field::UPosition),
        department: g(Field::Department),
        category: g(Field::Category),
        asset_no: no,
        dimensions: g(Field::Dimensions),
        weight: g(Field::Weight),
        accessories: g(Field::Accessories),
        parameters: g(Field::Parameters),
        status: g(Field::Status),
        owner: g(Field::Owner),
        supplier_id,
        warranty_end: g(Field::WarrantyEnd),
        ips: g(Field::Ips),
        ports: g(Field::Ports),
        custom: None,
        notes: g(Field::Notes),
    };
    Ok(Checked { quantity: r.quantity, custom: "{}".into(), a })
}

/// Every asset of the contract in the import layout (export, then re-import, is a round trip).
pub async fn export_rows(db: &Db, scope: &ContractScope) -> StoreResult<(Vec<&'static str>, Vec<Vec<String>>)> {
    scope.require(ContractPermission::AssetRead)?;
    let headers: Vec<&'static str> = Field::ALL.iter().map(|f| f.header()).collect();
    let suppliers: HashMap<i64, String> = sqlx::query("SELECT id, name FROM supplier WHERE contract_id = $1")
        .bind(scope.contract_id())
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
        .collect::<StoreResult<_>>()?;
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = list(db, scope, &AssetFilter { after: Some(after), limit: Some(500), ..Default::default() }).await?;
        for a in &page.items {
            let v = serde_json::to_value(a).unwrap_or_default();
            rows.push(
                Field::ALL
                    .iter()
                    .map(|f| match f {
                        Field::Site => a.site_name.clone().unwrap_or_default(),
                        Field::Supplier => a.supplier_id.and_then(|s| suppliers.get(&s).cloned()).unwrap_or_default(),
                        Field::Quantity => a.quantity.to_string(),
                        _ => v.get(f.key()).and_then(|x| x.as_str()).unwrap_or("").to_string(),
                    })
                    .collect(),
            );
        }
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok((headers, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No filter but the term.
    const NONE: Conditions<'static> =
        Conditions { kind: None, status: None, q: None, site_id: None, supplier_id: None };

    #[test]
    fn phrase_query_quotes_the_term() {
        assert_eq!(
            phrase_query(7, &NONE, "zc-0777").unwrap(),
            "scope : \"\u{1e}\u{F0007}\u{1e}\" AND body : \"zc-0777\""
        );
        assert_eq!(
            phrase_query(12, &NONE, r#"引号"x" OR *"#).unwrap(),
            "scope : \"\u{1e}\u{F000C}\u{1e}\" AND body : \"引号\"\"x\"\" OR *\""
        );
        assert_eq!(phrase_query(0x1_FFFF, &NONE, "abc").unwrap().chars().nth(10), Some('\u{10FFFF}'));
        assert_eq!(phrase_query(0x2_0000, &NONE, "abc"), None);
        assert_eq!(phrase_query(-1, &NONE, "abc"), None);
        assert_eq!(phrase_query(i64::from(u32::MAX), &NONE, "abc"), None);
    }

    #[test]
    fn phrase_query_ands_a_mark_per_filter() {
        let f = Conditions {
            kind: Some("host"),
            status: Some("retired"),
            site_id: Some(3),
            supplier_id: Some(0x2_0005),
            q: None,
        };
        assert_eq!(
            phrase_query(7, &f, "交换机").unwrap(),
            "scope : \"\u{1d}\u{F0007}\u{E003}\" AND scope : \"\u{1c}\u{F0007}\u{E004}\" \
             AND scope : \"\u{1b}\u{F0007}\u{F0003}\" AND scope : \"\u{1a}\u{F0007}\u{F0005}\" AND body : \"交换机\""
        );
        let site = Conditions { site_id: Some(0), ..NONE };
        assert_eq!(phrase_query(7, &site, "abc"), None);
        let kind = Conditions { kind: Some("printer"), ..NONE };
        assert_eq!(phrase_query(7, &kind, "abc"), None);
    }

    /// The marks the index holds are the ones the queries ask for: each kind and status appears
    /// with its number in the three copies of the scope expression of migration 0008.
    #[test]
    fn marks_match_migration_0008() {
        let sql = include_str!("../migrations/sqlite/0008_asset_search_filters.sql");
        for list in [&ledger::KINDS[..], &ledger::STATUSES[..]] {
            for (i, (value, _, _)) in list.iter().enumerate() {
                let case = format!("WHEN '{value}' THEN 0x{:X}", enum_mark(i).unwrap() as u32);
                assert_eq!(sql.matches(&case).count(), 3, "{case}");
            }
        }
        assert_eq!(sql.matches("983040 + site_id % 131072").count(), 1);
        assert_eq!(sql.matches("983040 + old.site_id % 131072").count(), 2);
        assert_eq!(id_mark(0x2_0000 + 9), id_mark(9));
        assert_eq!(id_mark(0x1_FFFF), Some('\u{10FFFF}'));
    }

    #[test]
    fn postgres_search_is_one_condition_on_the_filters_and_the_term() {
        let f =
            Conditions { kind: Some("host"), status: Some("in_service"), site_id: None, supplier_id: Some(4), q: None };
        assert_eq!(
            PgSearch::of(&f, "ZC-0%7_"),
            Some(PgSearch::Key("\u{1f}γ\u{1f}λ\u{1f}%\u{1f}4\u{1f}%zc-0\\%7\\_%".into()))
        );
        assert_eq!(
            PgSearch::of(&NONE, "交换机"),
            Some(PgSearch::Key("\u{1f}%\u{1f}%\u{1f}%\u{1f}%\u{1f}%交换机%".into()))
        );
        assert_eq!(PgSearch::of(&f, "机房"), Some(PgSearch::Grams("机房".into())));
        assert_eq!(PgSearch::of(&NONE, "Ä"), Some(PgSearch::Grams("ä".into())));
        assert_eq!(PgSearch::of(&NONE, "a\u{1f}b"), None);
    }

    /// The letters the key pattern asks for are the ones `asset_search_key` writes.
    #[test]
    fn key_letters_match_migration_0011() {
        let sql = include_str!("../migrations/postgres/0011_asset_search_key_letters.sql");
        for (list, first) in [(&ledger::KINDS[..], 'α'), (&ledger::STATUSES[..], 'κ')] {
            for (value, _, _) in list {
                let case = format!("WHEN '{value}' THEN '{}'", key_letter(list, value, first));
                assert_eq!(sql.matches(&case).count(), 1, "{case}");
            }
        }
        assert_eq!(key_letter(&ledger::KINDS, "other", 'α'), "ι");
        assert_eq!(key_letter(&ledger::STATUSES, "retired", 'κ'), "ν");
        assert_eq!(key_letter(&ledger::KINDS, "printer", 'α'), "printer");
    }

    #[test]
    fn prefix_range_holds_every_trigram_of_the_prefix() {
        for prefix in ["a", "机房", "%", "\u{10FFFF}"] {
            let (from, to) = prefix_range(prefix);
            let n = prefix.chars().count();
            for tail in ["", "a", "\u{0}", "房间", "\u{10FFFF}", "\u{10FFFF}\u{10FFFF}"] {
                let t = format!("{prefix}{tail}");
                if t.chars().count() <= 3 && tail.chars().count() <= 3 - n {
                    assert!(from.as_str() <= t.as_str() && t.as_str() < to.as_str(), "{t:?}");
                }
            }
            // What does not begin with the prefix is outside.
            for other in ["", "b", "机", "机场", "&"] {
                if !other.starts_with(prefix) {
                    assert!(!(from.as_str() <= other && other < to.as_str()), "{other:?} for {prefix:?}");
                }
            }
        }
    }
}
