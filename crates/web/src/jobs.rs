//! Background work of a server node: the desk scheduler and notification delivery. Every node runs
//! the loop; a lease in the database lets one node at a time do the work, so stateless nodes can be
//! added and removed freely.

use std::sync::Arc;
use std::time::Duration;

use yunwei_storage::desk_jobs;
use yunwei_storage::notifications::{self, Channel};

use crate::AppState;

/// How often a node looks for due work. Notices are due at minute precision in every contract, so a
/// second is ample; the pass itself reads only an index range when nothing is due.
const TICK: Duration = Duration::from_secs(1);
const LEASE_MS: i64 = 15_000;

/// Starts the loops; they run until the runtime shuts down. The scheduler and the deliveries run
/// apart, so that a mail server that never answers cannot delay a breach notice.
pub fn spawn(state: AppState, channels: Vec<Arc<dyn Channel>>) {
    let node = format!("node-{}", yunwei_storage::random_token(8));
    if channels.iter().any(|c| c.name() == "email") {
        state.db.enable_email(true);
    }
    let scheduler_state = state.clone();
    let scheduler_node = node.clone();
    tokio::spawn(async move {
        every_tick(|| async {
            if let Err(e) = run_scheduler(&scheduler_state, &scheduler_node).await {
                tracing::warn!(error = %e, "desk scheduler pass failed");
            }
        })
        .await
    });
    if !channels.is_empty() {
        tokio::spawn(async move {
            every_tick(|| async {
                if let Err(e) = run_deliveries(&state, &node, &channels).await {
                    tracing::warn!(error = %e, "notification delivery pass failed");
                }
            })
            .await
        });
    }
}

async fn every_tick<F, Fut>(mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pass().await;
    }
}

/// One scheduler pass over everything due now, if this node holds the desk lease.
pub async fn run_scheduler(state: &AppState, node: &str) -> yunwei_storage::StoreResult<()> {
    let now = state.now_ms();
    if !desk_jobs::try_lease(&state.db, "desk", node, now, LEASE_MS).await? {
        return Ok(());
    }
    loop {
        let r = desk_jobs::run_due(&state.db, now, 500).await?;
        if r.notices > 0 || r.auto_closed > 0 {
            tracing::info!(
                tickets = r.tickets,
                notices = r.notices,
                auto_closed = r.auto_closed,
                "desk scheduler pass"
            );
        }
        if r.tickets < 500 {
            return Ok(());
        }
    }
}

/// One delivery pass through every channel, if this node holds the delivery lease.
pub async fn run_deliveries(
    state: &AppState,
    node: &str,
    channels: &[Arc<dyn Channel>],
) -> yunwei_storage::StoreResult<()> {
    let now = state.now_ms();
    if !desk_jobs::try_lease(&state.db, "delivery", node, now, LEASE_MS).await? {
        return Ok(());
    }
    for ch in channels {
        notifications::deliver(&state.db, ch.as_ref(), now).await?;
    }
    Ok(())
}

/// The scheduler, then the deliveries: what the loops do, in one call. Tests drive time with the
/// test clock and call this.
pub async fn run_once(state: &AppState, node: &str, channels: &[Arc<dyn Channel>]) -> yunwei_storage::StoreResult<()> {
    run_scheduler(state, node).await?;
    run_deliveries(state, node, channels).await
}
