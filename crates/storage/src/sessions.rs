//! Browser sessions kept in the database, so that any node behind a load balancer can serve any
//! request. Only the SHA-256 of the cookie value is stored.

use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::password::SecurityPolicy;

use crate::audit::{AuditEntry, AuditResult};
use crate::db::{Db, WriteTx};
use crate::error::{StoreError, StoreResult};
use crate::principal::{Actor, Principal};
use crate::users::{User, user_from_row};

/// How far a session has come through login. Only `Full` reaches the application; the others
/// reach just the page that completes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Password accepted, TOTP code still to give.
    TotpRequired,
    /// Password accepted, but the account must enrol a TOTP authenticator first.
    TotpEnrolment,
    /// Initial or expired password: must be changed before anything else.
    PasswordChange,
    Full,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::TotpRequired => "totp_required",
            Stage::TotpEnrolment => "totp_enrolment",
            Stage::PasswordChange => "password_change",
            Stage::Full => "full",
        }
    }

    fn parse(s: &str) -> Stage {
        match s {
            "full" => Stage::Full,
            "totp_enrolment" => Stage::TotpEnrolment,
            "password_change" => Stage::PasswordChange,
            _ => Stage::TotpRequired,
        }
    }

    /// The stage that follows a successful password check or step, given the account's state.
    pub fn next(user: &User, policy: &SecurityPolicy, now_ms: i64, passed_totp: bool) -> Stage {
        if user.totp_enrolled && !passed_totp {
            Stage::TotpRequired
        } else if user.must_change_password || user.password_expired(policy, now_ms) {
            Stage::PasswordChange
        } else if user.totp_required(policy) && !user.totp_enrolled {
            Stage::TotpEnrolment
        } else {
            Stage::Full
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: String,
    pub stage: Stage,
    pub csrf_token: String,
    pub active_contract_id: Option<i64>,
    pub pending_totp_secret_enc: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user: User,
    /// The user's contract roles, read with the session.
    pub memberships: std::sync::Arc<[(i64, yunwei_core::authz::ContractRole)]>,
}

impl Session {
    pub fn principal(&self, source_ip: &str) -> Principal {
        Principal::user(
            self.user.id,
            self.user.login.clone(),
            self.user.admin_role,
            self.memberships.clone(),
            source_ip.to_string(),
        )
    }

    pub fn actor(&self, source_ip: &str) -> Actor {
        Actor { user_id: Some(self.user.id), name: self.user.login.clone(), source_ip: source_ip.to_string() }
    }
}

/// A new session: returns the cookie value (shown to the browser only) and the stored session.
pub async fn create(
    db: &Db,
    tx: &mut WriteTx,
    user: &User,
    stage: Stage,
    source_ip: &str,
    user_agent: &str,
    policy: &SecurityPolicy,
) -> StoreResult<(String, String)> {
    let _ = db;
    let now = tx.now_ms();
    let token = crate::random_token(32);
    let csrf = crate::random_token(32);
    sqlx::query(
        "INSERT INTO user_session (token_hash, user_id, stage, csrf_token, source_ip, user_agent, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
    )
    .bind(crate::token_digest(&token))
    .bind(user.id)
    .bind(stage.as_str())
    .bind(csrf.clone())
    .bind(source_ip.to_string())
    .bind(user_agent.chars().take(300).collect::<String>())
    .bind(now)
    .bind(now + i64::from(policy.absolute_lifetime_hours) * 3_600_000)
    .execute(tx.conn().await?)
    .await?;
    Ok((token, csrf))
}

/// Why a cookie did not yield a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    IdleTimeout,
    Expired,
    AccountClosed,
}

fn session_from_row(row: &AnyRow) -> StoreResult<Session> {
    Ok(Session {
        token_hash: row.try_get("token_hash")?,
        stage: Stage::parse(&row.try_get::<String, _>("stage")?),
        csrf_token: row.try_get("csrf_token")?,
        active_contract_id: row.try_get("active_contract_id")?,
        pending_totp_secret_enc: row.try_get("pending_totp_secret_enc")?,
        created_at: row.try_get("s_created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        user: user_from_row(row)?,
        memberships: parse_memberships(row.try_get::<Option<String>, _>("memberships")?.as_deref().unwrap_or("")),
    })
}

/// "12:engineer,15:project_manager" → [(12, Engineer), (15, ProjectManager)]
fn parse_memberships(text: &str) -> std::sync::Arc<[(i64, yunwei_core::authz::ContractRole)]> {
    text.split(',')
        .filter_map(|item| {
            let (cid, role) = item.split_once(':')?;
            Some((cid.parse().ok()?, yunwei_core::authz::ContractRole::parse(role)?))
        })
        .collect()
}

/// Finds the session for a cookie value, enforcing the idle timeout and the absolute lifetime.
/// A session that timed out is deleted and its end audited.
pub async fn lookup(db: &Db, token: &str, source_ip: &str, now_ms: i64) -> StoreResult<Result<Session, Lookup>> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Err(Lookup::Unknown));
    }
    let hash = crate::token_digest(token);
    // The user's memberships come in the same round trip, aggregated into one text column.
    let sql = match db.backend() {
        crate::Backend::Sqlite => {
            "SELECT s.token_hash, s.stage, s.csrf_token, s.active_contract_id, s.pending_totp_secret_enc, \
             s.created_at AS s_created_at, s.last_seen_at, s.expires_at, u.*, \
             (SELECT group_concat(m.contract_id || ':' || m.role, ',') FROM membership m WHERE m.user_id = u.id) AS memberships \
             FROM user_session s JOIN app_user u ON u.id = s.user_id WHERE s.token_hash = $1"
        }
        crate::Backend::Postgres => {
            "SELECT s.token_hash, s.stage, s.csrf_token, s.active_contract_id, s.pending_totp_secret_enc, \
             s.created_at AS s_created_at, s.last_seen_at, s.expires_at, u.*, \
             (SELECT string_agg(m.contract_id || ':' || m.role, ',') FROM membership m WHERE m.user_id = u.id) AS memberships \
             FROM user_session s JOIN app_user u ON u.id = s.user_id WHERE s.token_hash = $1"
        }
    };
    let row = sqlx::query(sql).bind(hash.clone()).fetch_optional(&db.pool).await?;
    let Some(row) = row else { return Ok(Err(Lookup::Unknown)) };
    let session = session_from_row(&row)?;
    let policy = crate::settings::security_policy(db).await?;
    let idle_limit = i64::from(policy.idle_timeout_minutes) * 60_000;
    let why = if session.user.disabled || session.user.is_locked(now_ms) {
        Some(Lookup::AccountClosed)
    } else if now_ms >= session.expires_at {
        Some(Lookup::Expired)
    } else if now_ms - session.last_seen_at >= idle_limit {
        Some(Lookup::IdleTimeout)
    } else {
        None
    };
    if let Some(why) = why {
        let mut tx = db.begin_write(now_ms).await?;
        sqlx::query("DELETE FROM user_session WHERE token_hash = $1").bind(hash).execute(tx.conn().await?).await?;
        let detail = match why {
            Lookup::IdleTimeout => "idle timeout",
            Lookup::Expired => "absolute lifetime reached",
            _ => "account disabled or locked",
        };
        tx.audit(
            AuditEntry::new(&session.actor(source_ip), "auth.session_end", format!("user:{}", session.user.id))
                .result(AuditResult::Denied)
                .detail(detail),
        )
        .await?;
        tx.commit().await?;
        return Ok(Err(why));
    }
    // Refresh the idle clock at most every 15 s: a write per request would serialise readers behind
    // SQLite's single writer. The idle timeout is therefore exact to within 15 seconds.
    if now_ms - session.last_seen_at > 15_000 {
        sqlx::query("UPDATE user_session SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now_ms)
            .bind(session.token_hash.clone())
            .execute(&db.pool)
            .await?;
    }
    Ok(Ok(session))
}

/// Moves a session to its next stage (after TOTP, password change or enrolment). The cookie value
/// is rotated at the same time, so a token seen before full login is worthless after it.
pub async fn advance(tx: &mut WriteTx, old_hash: &str, stage: Stage) -> StoreResult<String> {
    let token = crate::random_token(32);
    let n = sqlx::query("UPDATE user_session SET token_hash = $1, stage = $2, pending_totp_secret_enc = NULL, last_seen_at = $3 WHERE token_hash = $4")
        .bind(crate::token_digest(&token))
        .bind(stage.as_str())
        .bind(tx.now_ms())
        .bind(old_hash.to_string())
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
    if n != 1 {
        return Err(StoreError::NotFound);
    }
    Ok(token)
}

/// Keeps a TOTP secret being enrolled, sealed, with the session until the user confirms a code.
pub async fn set_pending_totp(db: &Db, token_hash: &str, secret_b32: &str) -> StoreResult<()> {
    let sealed = crate::users::seal_totp(db, secret_b32)?;
    sqlx::query("UPDATE user_session SET pending_totp_secret_enc = $1 WHERE token_hash = $2")
        .bind(sealed)
        .bind(token_hash.to_string())
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub fn pending_totp_secret(db: &Db, session: &Session) -> StoreResult<Option<String>> {
    session.pending_totp_secret_enc.as_deref().map(|s| crate::users::open_totp(db, s)).transpose()
}

/// Remembers which contract the user is working in (the contract switcher).
pub async fn set_active_contract(db: &Db, token_hash: &str, contract_id: Option<i64>) -> StoreResult<()> {
    sqlx::query("UPDATE user_session SET active_contract_id = $1 WHERE token_hash = $2")
        .bind(contract_id)
        .bind(token_hash.to_string())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Logout.
pub async fn end(db: &Db, session: &Session, source_ip: &str, now_ms: i64) -> StoreResult<()> {
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("DELETE FROM user_session WHERE token_hash = $1")
        .bind(session.token_hash.clone())
        .execute(tx.conn().await?)
        .await?;
    tx.audit(AuditEntry::new(&session.actor(source_ip), "auth.logout", format!("user:{}", session.user.id))).await?;
    tx.commit().await
}

/// Ends every session of a user except (optionally) the one making the change.
pub(crate) async fn end_other_sessions(tx: &mut WriteTx, user_id: i64, keep_hash: Option<&str>) -> StoreResult<()> {
    sqlx::query("DELETE FROM user_session WHERE user_id = $1 AND token_hash <> $2")
        .bind(user_id)
        .bind(keep_hash.unwrap_or("").to_string())
        .execute(tx.conn().await?)
        .await?;
    Ok(())
}
