//! Monthly reconciliation of the ledger (清查, AS2), and onboarding and retirement as recorded
//! events with an approver.
//!
//! A round is started for one period ("YYYY-MM", one per period per contract) and takes a snapshot
//! of every asset that is not retired as `pending` items. Engineers mark each item found, missing,
//! moved or changed with a note; a move or change can carry the asset's new room, site or status,
//! which is written to the asset through [`assets::update`] so that its history records it. A round
//! closes when no item is pending, or by force (what is still pending is then recorded as missing),
//! and leaves a report of the differences.
//!
//! Invariants:
//! - Items are written only while their round is open: the check is part of the same statement
//!   that writes, inside the writer lock, so a mark racing a close is refused, not lost.
//! - A change applied to an asset goes through [`assets::update`] (its checks, its version, its
//!   history) before the item is marked; a refused change leaves the item as it was.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::ledger;
use yunwei_core::text::{multi_line, single_line};

use crate::assets::{self, Asset, AssetInput};
use crate::audit::AuditEntry;
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;

/// What an engineer can find an item to be; `pending` until checked.
pub const OUTCOMES: [&str; 5] = ["pending", "found", "missing", "moved", "changed"];

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

const CLOSED: Msg = Msg::new("该清查已结束，不能再修改", "The round is closed and can no longer change");

/// Counts of a round's items by outcome.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub pending: i64,
    pub found: i64,
    pub missing: i64,
    pub moved: i64,
    pub changed: i64,
}

impl Counts {
    fn add(&mut self, outcome: &str, n: i64) {
        self.total += n;
        match outcome {
            "pending" => self.pending += n,
            "found" => self.found += n,
            "missing" => self.missing += n,
            "moved" => self.moved += n,
            "changed" => self.changed += n,
            _ => {}
        }
    }

    /// Items checked so far.
    pub fn checked(&self) -> i64 {
        self.total - self.pending
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub id: i64,
    pub contract_id: i64,
    /// YYYY-MM
    pub period: String,
    pub started_by: String,
    pub started_at: i64,
    pub closed_by: String,
    pub closed_at: Option<i64>,
    pub counts: Counts,
}

impl Round {
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }
}

fn round_from_row(r: &AnyRow) -> StoreResult<Round> {
    Ok(Round {
        id: r.try_get("id")?,
        contract_id: r.try_get("contract_id")?,
        period: r.try_get("period")?,
        started_by: r.try_get("started_by")?,
        started_at: r.try_get("started_at")?,
        closed_by: r.try_get("closed_by")?,
        closed_at: r.try_get("closed_at")?,
        counts: Counts::default(),
    })
}

/// One asset of a round, with what is needed to find it in the machine room.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub round_id: i64,
    pub asset_id: i64,
    pub outcome: String,
    pub note: String,
    pub checked_by: String,
    pub checked_at: Option<i64>,
    pub kind: String,
    pub name: String,
    pub model: String,
    pub asset_no: String,
    pub serial: String,
    pub quantity: i64,
    pub unit: String,
    pub site_id: Option<i64>,
    pub site_name: Option<String>,
    pub room: String,
    pub rack: String,
    pub u_position: String,
    pub status: String,
}

const ITEM_SELECT: &str = "SELECT i.round_id, i.asset_id, i.outcome, i.note, i.checked_by, i.checked_at, a.kind, a.name, \
     a.model, a.asset_no, a.serial, a.quantity, a.unit, a.site_id, s.name AS site_name, a.room, a.rack, a.u_position, \
     a.status FROM reconciliation_item i JOIN asset a ON a.id = i.asset_id AND a.contract_id = i.contract_id \
     LEFT JOIN site s ON s.id = a.site_id";

fn item_from_row(r: &AnyRow) -> StoreResult<Item> {
    Ok(Item {
        round_id: r.try_get("round_id")?,
        asset_id: r.try_get("asset_id")?,
        outcome: r.try_get("outcome")?,
        note: r.try_get("note")?,
        checked_by: r.try_get("checked_by")?,
        checked_at: r.try_get("checked_at")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        model: r.try_get("model")?,
        asset_no: r.try_get("asset_no")?,
        serial: r.try_get("serial")?,
        quantity: r.try_get("quantity")?,
        unit: r.try_get("unit")?,
        site_id: r.try_get("site_id")?,
        site_name: r.try_get("site_name").ok().flatten(),
        room: r.try_get("room")?,
        rack: r.try_get("rack")?,
        u_position: r.try_get("u_position")?,
        status: r.try_get("status")?,
    })
}

/// "2026-03": a year from 2000 to 2100 and a month.
pub fn check_period(period: &str) -> StoreResult<String> {
    let p = period.trim();
    let ok = p.is_ascii()
        && p.len() == 7
        && p.as_bytes()[4] == b'-'
        && p[..4].parse::<u32>().is_ok_and(|y| (2000..=2100).contains(&y))
        && p[5..].chars().all(|c| c.is_ascii_digit())
        && p[5..].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m));
    if !ok {
        return Err(invalid("period", "清查月份应为 YYYY-MM", "The period is written YYYY-MM"));
    }
    Ok(p.to_string())
}

// ---------------------------------------------------------------------------------------------
// Rounds

/// Starts the round of a period: every asset not retired becomes a pending item.
pub async fn start(db: &Db, scope: &ContractScope, period: &str, now: i64) -> StoreResult<Round> {
    scope.require(ContractPermission::AssetWrite)?;
    let period = check_period(period)?;
    let mut tx = db.begin_write(now).await?;
    let row = sqlx::query(
        "INSERT INTO reconciliation_round (contract_id, period, started_by, started_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(scope.contract_id())
    .bind(period.clone())
    .bind(scope.actor().name.clone())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| {
        StoreError::from(e).unique_as(Msg::new("该月份已有清查", "There is already a round for that period"))
    })?;
    let id: i64 = row.try_get("id")?;
    let items = sqlx::query(
        "INSERT INTO reconciliation_item (round_id, asset_id, contract_id, outcome) \
         SELECT $1, id, contract_id, 'pending' FROM asset WHERE contract_id = $2 AND status <> 'retired'",
    )
    .bind(id)
    .bind(scope.contract_id())
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    tx.audit(
        AuditEntry::new(scope.actor(), "reconciliation.start", format!("reconciliation:{id}"))
            .contract(scope.contract_id())
            .detail(format!("period={period} items={items}")),
    )
    .await?;
    tx.commit().await?;
    get(db, scope, id).await
}

async fn counts_of(db: &Db, scope: &ContractScope, round: Option<i64>) -> StoreResult<Vec<(i64, Counts)>> {
    let rows = sqlx::query(
        "SELECT round_id, outcome, COUNT(*) AS n FROM reconciliation_item WHERE contract_id = $1 \
         AND (round_id = $2 OR $2 = 0) GROUP BY round_id, outcome",
    )
    .bind(scope.contract_id())
    .bind(round.unwrap_or(0))
    .fetch_all(&db.pool)
    .await?;
    let mut out: Vec<(i64, Counts)> = Vec::new();
    for r in &rows {
        let id: i64 = r.try_get("round_id")?;
        let outcome: String = r.try_get("outcome")?;
        let n: i64 = r.try_get("n")?;
        match out.iter_mut().find(|(i, _)| *i == id) {
            Some((_, c)) => c.add(&outcome, n),
            None => {
                let mut c = Counts::default();
                c.add(&outcome, n);
                out.push((id, c));
            }
        }
    }
    Ok(out)
}

/// The contract's rounds, newest period first, with their progress.
pub async fn list(db: &Db, scope: &ContractScope) -> StoreResult<Vec<Round>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows = sqlx::query("SELECT * FROM reconciliation_round WHERE contract_id = $1 ORDER BY period DESC, id DESC")
        .bind(scope.contract_id())
        .fetch_all(&db.pool)
        .await?;
    let counts = counts_of(db, scope, None).await?;
    rows.iter()
        .map(|r| {
            let mut round = round_from_row(r)?;
            if let Some((_, c)) = counts.iter().find(|(i, _)| *i == round.id) {
                round.counts = c.clone();
            }
            Ok(round)
        })
        .collect()
}

pub async fn get(db: &Db, scope: &ContractScope, id: i64) -> StoreResult<Round> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query("SELECT * FROM reconciliation_round WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    let mut round = round_from_row(&row)?;
    if let Some((_, c)) = counts_of(db, scope, Some(id)).await?.into_iter().next() {
        round.counts = c;
    }
    Ok(round)
}

/// Which items of a round to show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItemFilter {
    /// One outcome (`pending` for what is left to check); all when absent.
    pub outcome: Option<String>,
    /// Words in the asset's name, model, brand, serial, number, IPs, room, department, owner.
    pub q: Option<String>,
    /// The asset id after which the page starts.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemPage {
    pub items: Vec<Item>,
    pub next_after: Option<i64>,
}

/// The items of a round in asset order.
pub async fn items(db: &Db, scope: &ContractScope, round_id: i64, f: &ItemFilter) -> StoreResult<ItemPage> {
    scope.require(ContractPermission::AssetRead)?;
    get(db, scope, round_id).await?;
    let outcome = f.outcome.as_deref().map(str::trim).unwrap_or("");
    if !outcome.is_empty() && !OUTCOMES.contains(&outcome) {
        return Err(invalid("outcome", "清查结果无效", "Unknown outcome"));
    }
    let q = f.q.as_deref().map(str::trim).unwrap_or("");
    if q.chars().count() > 100 {
        return Err(invalid("q", "搜索词过长", "The search text is too long"));
    }
    let limit = f.limit.unwrap_or(100).clamp(1, 500);
    let sql = format!(
        "{ITEM_SELECT} WHERE i.contract_id = $1 AND i.round_id = $2 AND i.asset_id > $3 \
         AND (i.outcome = $4 OR $4 = '') AND a.search_text LIKE $5 ESCAPE '\\' ORDER BY i.asset_id LIMIT $6"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope.contract_id())
        .bind(round_id)
        .bind(f.after.unwrap_or(0))
        .bind(outcome.to_string())
        .bind(if q.is_empty() { "%".to_string() } else { crate::like_contains(q) })
        .bind(limit + 1)
        .fetch_all(&db.pool)
        .await?;
    let mut items = rows.iter().map(item_from_row).collect::<StoreResult<Vec<_>>>()?;
    let next_after = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|i| i.asset_id)
    } else {
        None
    };
    Ok(ItemPage { items, next_after })
}

pub async fn item(db: &Db, scope: &ContractScope, round_id: i64, asset_id: i64) -> StoreResult<Item> {
    scope.require(ContractPermission::AssetRead)?;
    let sql = format!("{ITEM_SELECT} WHERE i.contract_id = $1 AND i.round_id = $2 AND i.asset_id = $3");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope.contract_id())
        .bind(round_id)
        .bind(asset_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    item_from_row(&row)
}

/// What an engineer records for one item. `room`, `site_id` and `status` are the asset's new
/// values found on the spot; they apply to a move or a change only, and only where they differ.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarkInput {
    /// found, missing, moved, changed
    pub outcome: String,
    pub note: String,
    pub room: Option<String>,
    pub site_id: Option<i64>,
    pub status: Option<String>,
}

/// Records what was found for one asset of an open round; a move or change with new values updates
/// the asset (and so its history) first.
pub async fn mark(
    db: &Db,
    scope: &ContractScope,
    round_id: i64,
    asset_id: i64,
    input: &MarkInput,
    now: i64,
) -> StoreResult<Item> {
    scope.require(ContractPermission::AssetWrite)?;
    let outcome = input.outcome.trim();
    if !OUTCOMES[1..].contains(&outcome) {
        return Err(invalid(
            "outcome",
            "清查结果应为 found、missing、moved 或 changed",
            "The outcome is found, missing, moved or changed",
        ));
    }
    let mut note = multi_line(&input.note, 1000).map_err(|m| StoreError::invalid("note", m))?;
    let round = get(db, scope, round_id).await?;
    if !round.is_open() {
        return Err(StoreError::Conflict(CLOSED));
    }
    let current = item(db, scope, round_id, asset_id).await?;

    // The asset's new values, where they differ from the ledger.
    let room = match &input.room {
        Some(r) => Some(single_line(r, 200, false).map_err(|m| StoreError::invalid("room", m))?),
        None => None,
    }
    .filter(|r| *r != current.room);
    let site_id = input.site_id.filter(|s| Some(*s) != current.site_id);
    let status = input.status.as_deref().map(str::trim).filter(|s| !s.is_empty() && *s != current.status);
    if let Some(s) = status {
        if !ledger::STATUSES.iter().any(|(k, _, _)| *k == s) {
            return Err(invalid("status", "资产状态无效", "Unknown asset status"));
        }
        if s == "retired" {
            return Err(invalid(
                "status",
                "报废须经审批，请在资产页办理报废",
                "Retirement needs an approver: retire the asset on its page",
            ));
        }
    }
    let applies = room.is_some() || site_id.is_some() || status.is_some();
    if applies && !matches!(outcome, "moved" | "changed") {
        return Err(invalid(
            "outcome",
            "只有“移位”或“变更”可以修改资产的位置或状态",
            "Only a move or a change can set the asset's location or status",
        ));
    }
    if matches!(outcome, "moved" | "changed") && !applies && note.is_empty() {
        return Err(invalid(
            "note",
            "移位或变更须填写说明或新的位置、状态",
            "A move or change needs a note or the new location or status",
        ));
    }

    if applies {
        let asset = assets::get(db, scope, asset_id).await?;
        let mut input = input_of(&asset);
        let mut changes = Vec::new();
        if let Some(r) = &room {
            changes.push(format!("机房/Room: {} → {}", dash(&asset.room), dash(r)));
            input.room = r.clone();
        }
        if let Some(s) = site_id {
            input.site_id = Some(s);
        }
        if let Some(s) = status {
            changes.push(format!("状态/Status: {} → {}", asset.status, s));
            input.status = s.to_string();
        }
        let updated = assets::update(db, scope, asset_id, asset.version, &input, now).await?;
        if site_id.is_some() {
            changes.push(format!(
                "站点/Site: {} → {}",
                dash(asset.site_name.as_deref().unwrap_or("")),
                dash(updated.site_name.as_deref().unwrap_or(""))
            ));
        }
        let changes = changes.join("; ");
        note = if note.is_empty() { changes } else { format!("{note}\n{changes}") };
    }

    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query(
        "UPDATE reconciliation_item SET outcome = $1, note = $2, checked_by = $3, checked_at = $4 \
         WHERE contract_id = $5 AND round_id = $6 AND asset_id = $7 AND EXISTS (SELECT 1 FROM reconciliation_round r \
         WHERE r.id = $6 AND r.contract_id = $5 AND r.closed_at IS NULL)",
    )
    .bind(outcome.to_string())
    .bind(note.clone())
    .bind(scope.actor().name.clone())
    .bind(now)
    .bind(scope.contract_id())
    .bind(round_id)
    .bind(asset_id)
    .execute(tx.conn().await?)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(CLOSED));
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "reconciliation.mark", format!("reconciliation:{round_id}"))
            .contract(scope.contract_id())
            .detail(format!("asset:{asset_id} {} → {outcome}", current.outcome)),
    )
    .await?;
    tx.commit().await?;
    item(db, scope, round_id, asset_id).await
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "—" } else { s }
}

/// An asset's writable fields as they are (to change a few of them through `assets::update`).
pub fn input_of(a: &Asset) -> AssetInput {
    let custom = a
        .custom
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect());
    AssetInput {
        kind: a.kind.clone(),
        name: a.name.clone(),
        model: a.model.clone(),
        brand: a.brand.clone(),
        manufacturer: a.manufacturer.clone(),
        unit: a.unit.clone(),
        quantity: Some(a.quantity),
        serial: a.serial.clone(),
        manufactured_on: a.manufactured_on.clone(),
        installed_on: a.installed_on.clone(),
        site_id: a.site_id,
        room: a.room.clone(),
        rack: a.rack.clone(),
        u_position: a.u_position.clone(),
        department: a.department.clone(),
        category: a.category.clone(),
        asset_no: a.asset_no.clone(),
        dimensions: a.dimensions.clone(),
        weight: a.weight.clone(),
        accessories: a.accessories.clone(),
        parameters: a.parameters.clone(),
        status: a.status.clone(),
        owner: a.owner.clone(),
        supplier_id: a.supplier_id,
        warranty_end: a.warranty_end.clone(),
        ips: a.ips.clone(),
        ports: a.ports.clone(),
        custom,
        notes: a.notes.clone(),
    }
}

/// The differences a round found, and its counts.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub round: Round,
    /// Missing, moved and changed items (in that order), each with its note.
    pub missing: Vec<Item>,
    pub moved: Vec<Item>,
    pub changed: Vec<Item>,
}

/// The report of differences (a draft while the round is open).
pub async fn report(db: &Db, scope: &ContractScope, round_id: i64) -> StoreResult<Report> {
    scope.require(ContractPermission::AssetRead)?;
    let round = get(db, scope, round_id).await?;
    let sql = format!(
        "{ITEM_SELECT} WHERE i.contract_id = $1 AND i.round_id = $2 AND i.outcome IN ('missing', 'moved', 'changed') \
         ORDER BY i.asset_id"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(scope.contract_id()).bind(round_id).fetch_all(&db.pool).await?;
    let all = rows.iter().map(item_from_row).collect::<StoreResult<Vec<_>>>()?;
    let pick = |o: &str| all.iter().filter(|i| i.outcome == o).cloned().collect::<Vec<_>>();
    Ok(Report { missing: pick("missing"), moved: pick("moved"), changed: pick("changed"), round })
}

/// Closes a round. Refused while items are pending, unless `force`: then they are recorded as
/// missing ("not checked when the round was closed").
pub async fn close(db: &Db, scope: &ContractScope, round_id: i64, force: bool, now: i64) -> StoreResult<Report> {
    scope.require(ContractPermission::AssetWrite)?;
    let round = get(db, scope, round_id).await?;
    if !round.is_open() {
        return Err(StoreError::Conflict(CLOSED));
    }
    let mut tx = db.begin_write(now).await?;
    let pending: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM reconciliation_item WHERE contract_id = $1 AND round_id = $2 AND outcome = 'pending'",
    )
    .bind(scope.contract_id())
    .bind(round_id)
    .fetch_one(tx.conn().await?)
    .await?
    .try_get("n")?;
    if pending > 0 && !force {
        return Err(StoreError::Conflict(Msg::new(
            "还有未清查的资产：全部清查后再结束，或强制结束（未清查的记为缺失）",
            "Some assets are still pending: check them all, or force the close (pending ones become missing)",
        )));
    }
    if pending > 0 {
        sqlx::query(
            "UPDATE reconciliation_item SET outcome = 'missing', note = $1, checked_by = $2, checked_at = $3 \
             WHERE contract_id = $4 AND round_id = $5 AND outcome = 'pending'",
        )
        .bind("结束清查时未清查 / Not checked when the round was closed".to_string())
        .bind(scope.actor().name.clone())
        .bind(now)
        .bind(scope.contract_id())
        .bind(round_id)
        .execute(tx.conn().await?)
        .await?;
    }
    let r = sqlx::query(
        "UPDATE reconciliation_round SET closed_by = $1, closed_at = $2 WHERE contract_id = $3 AND id = $4 AND closed_at IS NULL",
    )
    .bind(scope.actor().name.clone())
    .bind(now)
    .bind(scope.contract_id())
    .bind(round_id)
    .execute(tx.conn().await?)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(CLOSED));
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "reconciliation.close", format!("reconciliation:{round_id}"))
            .contract(scope.contract_id())
            .detail(format!("period={} forced={} pending_as_missing={pending}", round.period, force && pending > 0)),
    )
    .await?;
    tx.commit().await?;
    report(db, scope, round_id).await
}

// ---------------------------------------------------------------------------------------------
// Onboarding and retirement

fn approver_of(approver: &str) -> StoreResult<String> {
    single_line(approver, 100, true).map_err(|m| StoreError::invalid("approver", m))
}

/// Takes an asset into the ledger as an approved onboarding (入库): the asset is created (history
/// "create"), then the onboarding is recorded with its approver (history "onboard").
pub async fn onboard(
    db: &Db,
    scope: &ContractScope,
    input: &AssetInput,
    approver: &str,
    note: &str,
    now: i64,
) -> StoreResult<Asset> {
    scope.require(ContractPermission::AssetWrite)?;
    let approver = approver_of(approver)?;
    let note = multi_line(note, 2000).map_err(|m| StoreError::invalid("note", m))?;
    let asset = assets::create(db, scope, input, now).await?;
    let mut tx = db.begin_write(now).await?;
    let after = serde_json::json!({ "status": asset.status, "approver": approver, "note": note });
    assets::record_history(&mut tx, scope, &format!("asset:{}", asset.id), "onboard", None, Some(&after)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "asset.onboard", format!("asset:{}", asset.id))
            .contract(scope.contract_id())
            .detail(format!("approver={approver}")),
    )
    .await?;
    tx.commit().await?;
    Ok(asset)
}

/// Retires an asset (报废) with its approver and reason, if `version` is current.
pub async fn retire(
    db: &Db,
    scope: &ContractScope,
    id: i64,
    version: i64,
    approver: &str,
    reason: &str,
    now: i64,
) -> StoreResult<Asset> {
    scope.require(ContractPermission::AssetWrite)?;
    let approver = approver_of(approver)?;
    let reason = multi_line(reason, 2000).map_err(|m| StoreError::invalid("reason", m))?;
    if reason.is_empty() {
        return Err(invalid("reason", "请填写报废原因", "Give the reason for the retirement"));
    }
    let before = assets::get(db, scope, id).await?;
    if before.status == "retired" {
        return Err(StoreError::Conflict(Msg::new("该资产已报废", "The asset is already retired")));
    }
    let mut tx = db.begin_write(now).await?;
    let r = sqlx::query(
        "UPDATE asset SET status = 'retired', updated_at = $1, version = version + 1 \
         WHERE contract_id = $2 AND id = $3 AND version = $4",
    )
    .bind(now)
    .bind(scope.contract_id())
    .bind(id)
    .bind(version)
    .execute(tx.conn().await?)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Conflict(Msg::new(
            "记录已被他人修改，请刷新后重试",
            "The record was changed by someone else; reload and retry",
        )));
    }
    let b = serde_json::json!({ "status": before.status });
    let a = serde_json::json!({ "status": "retired", "approver": approver, "reason": reason });
    assets::record_history(&mut tx, scope, &format!("asset:{id}"), "retire", Some(&b), Some(&a)).await?;
    tx.audit(
        AuditEntry::new(scope.actor(), "asset.retire", format!("asset:{id}"))
            .contract(scope.contract_id())
            .detail(format!("approver={approver}")),
    )
    .await?;
    tx.commit().await?;
    assets::get(db, scope, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(check_period(" 2026-03 ").unwrap(), "2026-03");
        for bad in ["2026-13", "2026-00", "2026-3", "26-03", "2026/03", "1999-12", "2026-1x", "２０２６-03", ""] {
            assert!(check_period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_add_up() {
        let mut c = Counts::default();
        for (o, n) in [("pending", 3), ("found", 2), ("missing", 1), ("moved", 1), ("changed", 1)] {
            c.add(o, n);
        }
        assert_eq!((c.total, c.checked()), (8, 5));
    }
}
