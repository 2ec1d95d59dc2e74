//! The audit log: append (through [`crate::WriteTx::audit`]), read with filters, verify the chain.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::audit::{AuditContent, GENESIS_HASH, chain_hash};
use yunwei_core::authz::AdminPermission;

use crate::db::Db;
use crate::error::StoreResult;
use crate::principal::{Actor, AdminScope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Ok,
    Failed,
    Denied,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Failed => "failed",
            AuditResult::Denied => "denied",
        }
    }
}

/// One event to append. `object` names what was acted on (`user:12`, `site:3`); `detail` carries
/// before/after values for data changes and never a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub user_id: Option<i64>,
    pub username: String,
    pub source_ip: String,
    pub contract_id: Option<i64>,
    pub action: String,
    pub object: String,
    pub result: AuditResult,
    pub detail: String,
}

impl AuditEntry {
    pub fn new(actor: &Actor, action: &str, object: impl Into<String>) -> Self {
        AuditEntry {
            user_id: actor.user_id,
            username: actor.name.clone(),
            source_ip: actor.source_ip.clone(),
            contract_id: None,
            action: action.to_string(),
            object: object.into(),
            result: AuditResult::Ok,
            detail: String::new(),
        }
    }

    pub fn contract(mut self, contract_id: i64) -> Self {
        self.contract_id = Some(contract_id);
        self
    }

    pub fn result(mut self, r: AuditResult) -> Self {
        self.result = r;
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = d.into();
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub user_id: Option<i64>,
    pub username: String,
    pub source_ip: String,
    pub contract_id: Option<i64>,
    pub action: String,
    pub object: String,
    pub result: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

fn record(row: &AnyRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        source_ip: row.try_get("source_ip")?,
        contract_id: row.try_get("contract_id")?,
        action: row.try_get("action")?,
        object: row.try_get("object")?,
        result: row.try_get("result")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Filters the audit admin can combine. Text filters match exactly, except `action_prefix`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditFilter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub username: Option<String>,
    pub action_prefix: Option<String>,
    pub contract_id: Option<i64>,
    pub result: Option<String>,
}

/// Newest first, `limit` records older than `before_seq`.
pub async fn list(
    db: &Db,
    scope: &AdminScope,
    filter: &AuditFilter,
    before_seq: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditRecord>> {
    scope.expect(AdminPermission::AuditRead).or_else(|_| scope.expect(AdminPermission::AuditExport))?;
    // Placeholders are numbered as conditions are added; values are always bound, never spliced.
    enum Arg {
        Int(i64),
        Text(String),
    }
    let mut sql = String::from("SELECT * FROM audit_log WHERE 1 = 1");
    let mut args: Vec<Arg> = Vec::new();
    let mut cond = |sql: &mut String, expr: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&format!(" AND {expr} ${}", args.len()));
    };
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(v) = filter.from_ms {
        cond(&mut sql, "at_ms >=", Arg::Int(v));
    }
    if let Some(v) = filter.to_ms {
        cond(&mut sql, "at_ms <", Arg::Int(v));
    }
    if let Some(v) = filter.contract_id {
        cond(&mut sql, "contract_id =", Arg::Int(v));
    }
    if let Some(v) = before_seq {
        cond(&mut sql, "seq <", Arg::Int(v));
    }
    if let Some(v) = text(&filter.username) {
        cond(&mut sql, "username =", Arg::Text(v));
    }
    if let Some(v) = text(&filter.result) {
        cond(&mut sql, "result =", Arg::Text(v));
    }
    if let Some(v) = text(&filter.action_prefix) {
        // A prefix match without LIKE, so that '%' and '_' typed by the user mean themselves.
        let expr = format!("SUBSTR(action, 1, {}) =", v.chars().count());
        cond(&mut sql, &expr, Arg::Text(v));
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", args.len() + 1));
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in args {
        q = match a {
            Arg::Int(i) => q.bind(i),
            Arg::Text(s) => q.bind(s),
        };
    }
    q = q.bind(limit.clamp(1, 10_000));
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter().map(record).collect()
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checked: i64,
    /// The first record whose stored hash, sequence or link does not match, and why.
    pub first_broken: Option<(i64, String)>,
}

/// Recomputes every hash from the first record on, in pages, and compares with the stored head.
pub async fn verify(db: &Db) -> StoreResult<VerifyReport> {
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut expected_seq = 1i64;
    let mut checked = 0i64;
    loop {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq >= $1 ORDER BY seq ASC LIMIT 1000")
            .bind(expected_seq)
            .fetch_all(&db.pool)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let r = record(row)?;
            if r.seq != expected_seq {
                return Ok(broken(checked, expected_seq, format!("record {expected_seq} is missing")));
            }
            if r.prev_hash != prev_hash {
                return Ok(broken(checked, r.seq, "link to the previous record does not match".into()));
            }
            let content = AuditContent {
                seq: r.seq,
                at_ms: r.at_ms,
                user_id: r.user_id,
                username: &r.username,
                source_ip: &r.source_ip,
                contract_id: r.contract_id,
                action: &r.action,
                object: &r.object,
                result: &r.result,
                detail: &r.detail,
            };
            if chain_hash(&prev_hash, &content) != r.hash {
                return Ok(broken(checked, r.seq, "content does not match its hash (record altered)".into()));
            }
            prev_hash = r.hash;
            expected_seq += 1;
            checked += 1;
        }
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&db.pool).await?;
    let head_seq: i64 = head.try_get("seq")?;
    let head_hash: String = head.try_get("hash")?;
    if head_seq != checked || head_hash != prev_hash {
        return Ok(broken(
            checked,
            checked + 1,
            format!("the chain ends at record {checked} but the head says {head_seq} (records removed from the end)"),
        ));
    }
    Ok(VerifyReport { checked, first_broken: None })
}

fn broken(checked: i64, seq: i64, why: String) -> VerifyReport {
    VerifyReport { checked, first_broken: Some((seq, why)) }
}
