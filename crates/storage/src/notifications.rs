//! Notifications: the in-app inbox of each member, and the outbox through which other channels
//! (email now; WeCom, DingTalk, Feishu and SMS are further [`Channel`]s) deliver them with retries.
//!
//! A notification is written in the same transaction as the change that causes it, so a rolled-back
//! change tells nobody. Delivery happens afterwards, from the outbox, by whichever node holds the
//! delivery lease.

use std::sync::atomic::Ordering;

use serde::Serialize;
use sqlx::Row;
use yunwei_core::authz::ContractRole;

use crate::db::{Arg, Db, WriteTx};
use crate::error::StoreResult;
use crate::principal::Principal;

/// Who receives a notification.
#[derive(Debug, Clone)]
pub enum Recipients {
    User(i64),
    /// Every active member holding the role in the contract.
    Role(ContractRole),
    /// Someone without an account (a caller who gave an email address): outbox only.
    Address(String),
}

/// Appends the notification for each recipient, plus an email delivery for those with an address
/// when email is enabled.
pub(crate) async fn send(
    tx: &mut WriteTx,
    contract_id: i64,
    ticket_id: Option<i64>,
    to: &Recipients,
    kind: &str,
    title: &str,
    body: &str,
) -> StoreResult<()> {
    let email_on = tx.email_enabled.load(Ordering::Relaxed);
    if !email_on {
        // Inbox rows only: one statement that picks the recipients itself, deferred to the
        // transaction's next batch (nothing here needs the rows back).
        let now = tx.now_ms();
        let common: Vec<Arg> =
            vec![contract_id.into(), ticket_id.into(), kind.into(), title.into(), body.into(), now.into()];
        match to {
            Recipients::User(uid) => {
                let mut args = common;
                args.push((*uid).into());
                tx.defer(
                    "INSERT INTO notification (contract_id, user_id, ticket_id, kind, title, body, created_at) \
                     SELECT $1, u.id, $2, $3, $4, $5, $6 FROM app_user u JOIN membership m ON m.user_id = u.id \
                     WHERE m.contract_id = $1 AND u.id = $7 AND u.disabled = 0",
                    args,
                );
            }
            Recipients::Role(role) => {
                let mut args = common;
                args.push(role.as_str().into());
                tx.defer(
                    "INSERT INTO notification (contract_id, user_id, ticket_id, kind, title, body, created_at) \
                     SELECT $1, u.id, $2, $3, $4, $5, $6 FROM app_user u JOIN membership m ON m.user_id = u.id \
                     WHERE m.contract_id = $1 AND m.role = $7 AND u.disabled = 0 ORDER BY u.id",
                    args,
                );
            }
            // Addresses without an account are reached by email only.
            Recipients::Address(_) => {}
        }
        return Ok(());
    }
    let users: Vec<(i64, String)> = match to {
        Recipients::User(uid) => sqlx::query(
            "SELECT u.id, u.email FROM app_user u JOIN membership m ON m.user_id = u.id \
             WHERE m.contract_id = $1 AND u.id = $2 AND u.disabled = 0",
        )
        .bind(contract_id)
        .bind(*uid)
        .fetch_all(tx.conn().await?)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("email")?)))
        .collect::<StoreResult<_>>()?,
        Recipients::Role(role) => sqlx::query(
            "SELECT u.id, u.email FROM app_user u JOIN membership m ON m.user_id = u.id \
             WHERE m.contract_id = $1 AND m.role = $2 AND u.disabled = 0 ORDER BY u.id",
        )
        .bind(contract_id)
        .bind(role.as_str())
        .fetch_all(tx.conn().await?)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("email")?)))
        .collect::<StoreResult<_>>()?,
        Recipients::Address(addr) => {
            if email_on && looks_like_email(addr) {
                // An outbox row needs a notification to carry the text: keep it on no one's inbox.
                let id = insert(tx, contract_id, None, ticket_id, kind, title, body).await?;
                queue(tx, id, "email", addr).await?;
            }
            return Ok(());
        }
    };
    for (uid, email) in users {
        let id = insert(tx, contract_id, Some(uid), ticket_id, kind, title, body).await?;
        if email_on && looks_like_email(&email) {
            queue(tx, id, "email", &email).await?;
        }
    }
    Ok(())
}

pub fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        }
        None => false,
    }
}

async fn insert(
    tx: &mut WriteTx,
    contract_id: i64,
    user_id: Option<i64>,
    ticket_id: Option<i64>,
    kind: &str,
    title: &str,
    body: &str,
) -> StoreResult<i64> {
    let now = tx.now_ms();
    // Outbox-only notifications (no account) are stored as already read by user 0-less rows:
    // the inbox query selects by user id, so a NULL user never shows up anywhere.
    let row = sqlx::query(
        "INSERT INTO notification (contract_id, user_id, ticket_id, kind, title, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(contract_id)
    .bind(user_id)
    .bind(ticket_id)
    .bind(kind.to_string())
    .bind(title.to_string())
    .bind(body.to_string())
    .bind(now)
    .fetch_one(tx.conn().await?)
    .await?;
    Ok(row.try_get("id")?)
}

async fn queue(tx: &mut WriteTx, notification_id: i64, channel: &str, address: &str) -> StoreResult<()> {
    let now = tx.now_ms();
    sqlx::query(
        "INSERT INTO notification_outbox (notification_id, channel, address, next_attempt_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(notification_id)
    .bind(channel.to_string())
    .bind(address.trim().to_string())
    .bind(now)
    .execute(tx.conn().await?)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: i64,
    pub contract_id: i64,
    pub ticket_id: Option<i64>,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// The caller's inbox across all contracts, newest first.
pub async fn inbox(
    db: &Db,
    who: &Principal,
    unread_only: bool,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<Notification>> {
    let Some(uid) = who.user_id() else { return Ok(Vec::new()) };
    let unread = if unread_only { " AND read_at IS NULL" } else { "" };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, contract_id, ticket_id, kind, title, body, created_at, read_at FROM notification \
         WHERE user_id = $1 AND id < $2{unread} ORDER BY id DESC LIMIT $3"
    )))
    .bind(uid)
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 200))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Notification {
                id: r.try_get("id")?,
                contract_id: r.try_get("contract_id")?,
                ticket_id: r.try_get("ticket_id")?,
                kind: r.try_get("kind")?,
                title: r.try_get("title")?,
                body: r.try_get("body")?,
                created_at: r.try_get("created_at")?,
                read_at: r.try_get("read_at")?,
            })
        })
        .collect()
}

pub async fn unread_count(db: &Db, who: &Principal) -> StoreResult<i64> {
    let Some(uid) = who.user_id() else { return Ok(0) };
    let row = sqlx::query("SELECT COUNT(*) AS n FROM notification WHERE user_id = $1 AND read_at IS NULL")
        .bind(uid)
        .fetch_one(&db.pool)
        .await?;
    Ok(row.try_get("n")?)
}

/// Marks the caller's notifications read (one, or all when `id` is `None`). Reading one's own inbox
/// is not a data change worth an audit record; it touches only the caller's own rows.
pub async fn mark_read(db: &Db, who: &Principal, id: Option<i64>, now: i64) -> StoreResult<u64> {
    let Some(uid) = who.user_id() else { return Ok(0) };
    let r = sqlx::query(
        "UPDATE notification SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL AND ($3 = 0 OR id = $3)",
    )
    .bind(now)
    .bind(uid)
    .bind(id.unwrap_or(0))
    .execute(&db.pool)
    .await?;
    Ok(r.rows_affected())
}

/// One delivery waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub channel: String,
    pub address: String,
    pub attempts: i64,
    pub title: String,
    pub body: String,
}

/// A way to reach people outside the application. Implementations live with the server (SMTP);
/// they only send, the outbox keeps state and retries.
pub trait Channel: Send + Sync {
    fn name(&self) -> &'static str;
    fn send<'a>(
        &'a self,
        address: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

const MAX_ATTEMPTS: i64 = 8;

/// Deliveries due now for one channel, oldest first.
pub async fn due_deliveries(db: &Db, channel: &str, now: i64, limit: i64) -> StoreResult<Vec<Delivery>> {
    let rows = sqlx::query(
        "SELECT o.id, o.channel, o.address, o.attempts, n.title, n.body FROM notification_outbox o \
         JOIN notification n ON n.id = o.notification_id \
         WHERE o.state = 'pending' AND o.channel = $1 AND o.next_attempt_at <= $2 ORDER BY o.id LIMIT $3",
    )
    .bind(channel.to_string())
    .bind(now)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Delivery {
                id: r.try_get("id")?,
                channel: r.try_get("channel")?,
                address: r.try_get("address")?,
                attempts: r.try_get("attempts")?,
                title: r.try_get("title")?,
                body: r.try_get("body")?,
            })
        })
        .collect()
}

/// Records a delivery's outcome: sent, or retried with exponential back-off until it fails for good.
pub async fn record_delivery(db: &Db, d: &Delivery, result: Result<(), String>, now: i64) -> StoreResult<()> {
    match result {
        Ok(()) => {
            sqlx::query(
                "UPDATE notification_outbox SET state = 'sent', attempts = attempts + 1, sent_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(d.id)
            .execute(&db.pool)
            .await?;
        }
        Err(e) => {
            let attempts = d.attempts + 1;
            let state = if attempts >= MAX_ATTEMPTS { "failed" } else { "pending" };
            let backoff = 30_000i64 << attempts.min(10);
            let err: String = e.chars().take(500).collect();
            sqlx::query(
                "UPDATE notification_outbox SET state = $1, attempts = $2, next_attempt_at = $3, last_error = $4 WHERE id = $5",
            )
            .bind(state)
            .bind(attempts)
            .bind(now + backoff)
            .bind(err)
            .bind(d.id)
            .execute(&db.pool)
            .await?;
        }
    }
    Ok(())
}

/// Delivers what is due through one channel. Returns (sent, failed attempts).
pub async fn deliver(db: &Db, channel: &dyn Channel, now: i64) -> StoreResult<(usize, usize)> {
    let mut sent = 0;
    let mut failed = 0;
    for d in due_deliveries(db, channel.name(), now, 50).await? {
        let result = channel.send(&d.address, &d.title, &d.body).await;
        if result.is_ok() {
            sent += 1;
        } else {
            failed += 1;
        }
        if let Err(e) = &result {
            tracing::warn!(channel = channel.name(), delivery = d.id, error = %e, "notification delivery failed");
        }
        record_delivery(db, &d, result, now).await?;
    }
    Ok((sent, failed))
}

impl Db {
    /// Turns email deliveries on (the server does when SMTP is configured): from then on every
    /// notification to someone with an address also queues an email.
    pub fn enable_email(&self, on: bool) {
        self.email_enabled.store(on, Ordering::Relaxed);
    }
}
