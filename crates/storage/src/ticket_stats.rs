//! Monthly figures from ticket data: the most frequent faults by type and system (SD9, the input of
//! the FAQ and operation manual) and per-engineer performance (SD10): counts, response and
//! resolution times, SLA attainment, satisfaction and time spent.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;
use yunwei_core::Msg;
use yunwei_core::authz::ContractPermission;
use yunwei_core::calendar::{day_start_utc, days_from_civil};
use yunwei_core::sla::{Event, EventKind, Phase};
use yunwei_core::ticket;

use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::ContractScope;
use crate::rules;
use crate::tickets;

#[derive(Debug, Clone, Serialize)]
pub struct KindSystemCount {
    pub kind: String,
    pub system: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct EngineerFigures {
    pub user_id: i64,
    pub name: String,
    pub assigned: i64,
    pub resolved: i64,
    pub avg_response_min: Option<f64>,
    pub avg_resolution_min: Option<f64>,
    /// Clocks of this person's tickets that stopped within target / that stopped or breached.
    pub sla_met: i64,
    pub sla_judged: i64,
    pub attainment_percent: Option<f64>,
    pub ratings: i64,
    pub avg_rating: Option<f64>,
    pub minutes_spent: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthStats {
    pub month: String,
    pub received: i64,
    pub resolved: i64,
    pub closed: i64,
    pub still_open: i64,
    pub by_kind_system: Vec<KindSystemCount>,
    pub engineers: Vec<EngineerFigures>,
}

/// "2026-03" → [start, end) in UTC ms of the Shanghai month.
pub fn month_range(month: &str) -> Option<(i64, i64)> {
    let (y, m) = month.trim().split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    if !(2000..=2100).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    let start = day_start_utc(days_from_civil(y, m, 1));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Some((start, day_start_utc(days_from_civil(ny, nm, 1))))
}

fn avg(v: &[i64]) -> Option<f64> {
    (!v.is_empty()).then(|| (v.iter().sum::<i64>() as f64 / v.len() as f64 / 60_000.0 * 10.0).round() / 10.0)
}

pub async fn month(db: &Db, scope: &ContractScope, month: &str, now: i64) -> StoreResult<MonthStats> {
    scope.require(ContractPermission::TicketReport)?;
    let (start, end) = month_range(month)
        .ok_or(StoreError::invalid("month", Msg::new("月份格式应为 YYYY-MM", "Months are written YYYY-MM")))?;
    let cid = scope.contract_id();
    let rows = sqlx::query(
        "SELECT t.id, t.kind, t.system_name, t.state, t.assignee_user_id, u.display_name, t.contract_version, t.rating, \
         t.resolved_at, t.received_at FROM ticket t LEFT JOIN app_user u ON u.id = t.assignee_user_id \
         WHERE t.contract_id = $1 AND t.received_at >= $2 AND t.received_at < $3",
    )
    .bind(cid)
    .bind(start)
    .bind(end)
    .fetch_all(&db.pool)
    .await?;
    let mut events: HashMap<i64, Vec<Event>> = HashMap::new();
    for r in sqlx::query(
        "SELECT e.ticket_id, e.at, e.sla FROM ticket_event e JOIN ticket t ON t.id = e.ticket_id \
         WHERE t.contract_id = $1 AND t.received_at >= $2 AND t.received_at < $3 AND e.sla IS NOT NULL ORDER BY e.id",
    )
    .bind(cid)
    .bind(start)
    .bind(end)
    .fetch_all(&db.pool)
    .await?
    {
        events
            .entry(r.try_get("ticket_id")?)
            .or_default()
            .push(Event { at: r.try_get("at")?, kind: ticket::parse_sla_event(&r.try_get::<String, _>("sla")?) });
    }
    let holidays = rules::holidays(db).await?;
    let mut by_ks: BTreeMap<(String, String), i64> = BTreeMap::new();
    // Per engineer: the figures, then response times, resolution times and ratings to average.
    type Samples = (EngineerFigures, Vec<i64>, Vec<i64>, Vec<i64>);
    let mut eng: BTreeMap<i64, Samples> = BTreeMap::new();
    let (mut received, mut resolved, mut closed, mut still_open) = (0, 0, 0, 0);
    for r in &rows {
        received += 1;
        let id: i64 = r.try_get("id")?;
        let kind: String = r.try_get("kind")?;
        let system: String = r.try_get("system_name")?;
        let state: String = r.try_get("state")?;
        let resolved_at: Option<i64> = r.try_get("resolved_at")?;
        let received_at: i64 = r.try_get("received_at")?;
        *by_ks.entry((kind, system)).or_default() += 1;
        if resolved_at.is_some() {
            resolved += 1;
        }
        match state.as_str() {
            "closed" | "cancelled" => closed += 1,
            _ => still_open += 1,
        }
        let Some(uid) = r.try_get::<Option<i64>, _>("assignee_user_id")? else { continue };
        let entry = eng.entry(uid).or_insert_with(|| {
            (
                EngineerFigures {
                    user_id: uid,
                    name: r.try_get::<Option<String>, _>("display_name").ok().flatten().unwrap_or_default(),
                    ..Default::default()
                },
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )
        });
        entry.0.assigned += 1;
        let evts = events.get(&id).map(Vec::as_slice).unwrap_or(&[]);
        if let Some(e) = evts.iter().find(|e| e.kind == EventKind::Responded) {
            entry.1.push(e.at - received_at);
        }
        if let Some(at) = resolved_at {
            entry.0.resolved += 1;
            entry.2.push(at - received_at);
        }
        if let Some(rating) = r.try_get::<Option<i64>, _>("rating")? {
            entry.3.push(rating);
        }
        let rules = rules::version(db, cid, r.try_get("contract_version")?).await?;
        for c in tickets::clocks(&rules, &holidays, evts, now) {
            match c.phase {
                Phase::Met => {
                    entry.0.sla_met += 1;
                    entry.0.sla_judged += 1;
                }
                Phase::Breached { .. } => entry.0.sla_judged += 1,
                _ => {}
            }
        }
    }
    for r in sqlx::query(
        "SELECT user_id, CAST(SUM(minutes) AS BIGINT) AS m FROM ticket_worklog WHERE contract_id = $1 AND at >= $2 AND at < $3 AND user_id IS NOT NULL GROUP BY user_id",
    )
    .bind(cid)
    .bind(start)
    .bind(end)
    .fetch_all(&db.pool)
    .await?
    {
        let uid: i64 = r.try_get("user_id")?;
        if let Some(e) = eng.get_mut(&uid) {
            e.0.minutes_spent = r.try_get("m")?;
        }
    }
    let mut by_kind_system: Vec<KindSystemCount> =
        by_ks.into_iter().map(|((kind, system), count)| KindSystemCount { kind, system, count }).collect();
    by_kind_system.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)).then(a.system.cmp(&b.system)));
    let engineers = eng
        .into_values()
        .map(|(mut f, resp, resol, ratings)| {
            f.avg_response_min = avg(&resp);
            f.avg_resolution_min = avg(&resol);
            f.attainment_percent =
                (f.sla_judged > 0).then(|| (f.sla_met as f64 * 1000.0 / f.sla_judged as f64).round() / 10.0);
            f.ratings = ratings.len() as i64;
            f.avg_rating = (!ratings.is_empty())
                .then(|| (ratings.iter().sum::<i64>() as f64 * 10.0 / ratings.len() as f64).round() / 10.0);
            f
        })
        .collect();
    Ok(MonthStats {
        month: month.trim().to_string(),
        received,
        resolved,
        closed,
        still_open,
        by_kind_system,
        engineers,
    })
}
