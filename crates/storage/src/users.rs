//! Accounts: creation, password login with lockout, password changes with history, TOTP.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::{AdminPermission, AdminRole};
use yunwei_core::password::{self, SecurityPolicy};

use crate::audit::{AuditEntry, AuditResult};
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::principal::{Actor, AdminScope};

const TOTP_PURPOSE: &str = "totp-secret";

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub display_name: String,
    pub email: String,
    pub admin_role: Option<AdminRole>,
    pub password_changed_at: i64,
    pub must_change_password: bool,
    pub totp_enrolled: bool,
    pub failed_logins: i64,
    pub locked_until: i64,
    pub disabled: bool,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

pub(crate) fn user_from_row(row: &AnyRow) -> StoreResult<User> {
    let admin_role: Option<String> = row.try_get("admin_role")?;
    let totp: Option<String> = row.try_get("totp_secret_enc")?;
    Ok(User {
        id: row.try_get("id")?,
        login: row.try_get("login")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        admin_role: admin_role.as_deref().and_then(AdminRole::parse),
        password_changed_at: row.try_get("password_changed_at")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        totp_enrolled: totp.is_some(),
        failed_logins: row.try_get("failed_logins")?,
        locked_until: row.try_get("locked_until")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        last_login_at: row.try_get("last_login_at")?,
    })
}

impl User {
    pub fn is_locked(&self, now_ms: i64) -> bool {
        self.locked_until > now_ms
    }

    /// Whether policy demands a second factor for this account.
    pub fn totp_required(&self, policy: &SecurityPolicy) -> bool {
        self.admin_role.is_some() || policy.totp_required_for_all
    }

    pub fn password_expired(&self, policy: &SecurityPolicy, now_ms: i64) -> bool {
        policy.expiry_days > 0 && now_ms - self.password_changed_at > i64::from(policy.expiry_days) * 86_400_000
    }
}

pub async fn get(db: &Db, id: i64) -> StoreResult<User> {
    let row = sqlx::query("SELECT * FROM app_user WHERE id = $1").bind(id).fetch_optional(&db.pool).await?;
    user_from_row(&row.ok_or(StoreError::NotFound)?)
}

pub async fn find_by_login(db: &Db, login: &str) -> StoreResult<Option<User>> {
    let row = sqlx::query("SELECT * FROM app_user WHERE login = $1")
        .bind(login.trim().to_lowercase())
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// All accounts, for the user administration pages (system and security admins).
pub async fn list(db: &Db, scope: &AdminScope) -> StoreResult<Vec<User>> {
    if !matches!(
        scope.permission(),
        AdminPermission::UserManage
            | AdminPermission::RoleGrant
            | AdminPermission::LockoutManage
            | AdminPermission::TokenManage
    ) {
        return Err(StoreError::Forbidden);
    }
    let rows = sqlx::query("SELECT * FROM app_user ORDER BY login").fetch_all(&db.pool).await?;
    rows.iter().map(user_from_row).collect()
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub login: String,
    pub display_name: String,
    pub email: String,
}

/// Creates an account with an initial password that must be changed at first login. Returns the
/// new id. The initial password is checked against the policy like any other.
pub async fn create(
    db: &Db,
    scope: &AdminScope,
    new: NewUser,
    initial_password: &str,
    now_ms: i64,
) -> StoreResult<i64> {
    scope.expect(AdminPermission::UserManage)?;
    let login = yunwei_core::text::login_name(&new.login).map_err(|m| StoreError::invalid("login", m))?;
    let display_name = yunwei_core::text::single_line(&new.display_name, 100, true)
        .map_err(|m| StoreError::invalid("display_name", m))?;
    let email = yunwei_core::text::single_line(&new.email, 200, false).map_err(|m| StoreError::invalid("email", m))?;
    if !email.is_empty() && !email.contains('@') {
        return Err(StoreError::invalid("email", Msg::new("邮箱地址格式不正确", "is not an e-mail address")));
    }
    let policy = crate::settings::security_policy(db).await?;
    if let Some(v) = password::check_password(&policy, &login, initial_password).first() {
        return Err(StoreError::invalid("password", v.message()));
    }
    let hash = crate::kdf::hash(initial_password).await?;
    let mut tx = db.begin_write(now_ms).await?;
    let row = sqlx::query(
        "INSERT INTO app_user (login, display_name, email, password_hash, password_changed_at, must_change_password, created_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $5) RETURNING id",
    )
    .bind(login.clone())
    .bind(display_name)
    .bind(email)
    .bind(hash.clone())
    .bind(now_ms)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(Msg::new("登录名已存在", "This login name is taken")))?;
    let id: i64 = row.try_get("id")?;
    insert_history(&mut tx, id, &hash, now_ms).await?;
    tx.audit(AuditEntry::new(scope.actor(), "user.create", format!("user:{id}")).detail(format!("login={login}")))
        .await?;
    tx.commit().await?;
    Ok(id)
}

async fn insert_history(tx: &mut crate::WriteTx, user_id: i64, hash: &str, now_ms: i64) -> StoreResult<()> {
    sqlx::query("INSERT INTO password_history (user_id, password_hash, changed_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(hash.to_string())
        .bind(now_ms)
        .execute(tx.conn().await?)
        .await?;
    Ok(())
}

/// How a password login attempt ended.
#[derive(Debug)]
pub enum LoginOutcome {
    Success(User),
    BadCredentials,
    Locked { until_ms: i64 },
    Disabled,
}

/// Checks a login and password, counting failures and locking the account after the policy's
/// threshold. Every attempt is audited. The argon2 check runs before the write lock is taken.
pub async fn password_login(db: &Db, login: &str, pw: &str, source_ip: &str, now_ms: i64) -> StoreResult<LoginOutcome> {
    let policy = crate::settings::security_policy(db).await?;
    let login_clean: String = login.trim().chars().take(64).collect();
    let user = find_by_login(db, &login_clean).await?;
    let actor = Actor {
        user_id: user.as_ref().map(|u| u.id),
        name: user.as_ref().map(|u| u.login.clone()).unwrap_or_else(|| login_clean.to_lowercase()),
        source_ip: source_ip.to_string(),
    };
    let Some(user) = user else {
        // Spend the same time as a real check so that response times do not reveal which logins exist.
        crate::kdf::verify_against_dummy(pw).await;
        db.audit_event(
            now_ms,
            AuditEntry::new(&actor, "auth.login", "user:?").result(AuditResult::Failed).detail("unknown login"),
        )
        .await?;
        return Ok(LoginOutcome::BadCredentials);
    };
    let object = format!("user:{}", user.id);
    if user.disabled {
        db.audit_event(
            now_ms,
            AuditEntry::new(&actor, "auth.login", &object).result(AuditResult::Denied).detail("disabled"),
        )
        .await?;
        return Ok(LoginOutcome::Disabled);
    }
    if user.is_locked(now_ms) {
        db.audit_event(
            now_ms,
            AuditEntry::new(&actor, "auth.login", &object).result(AuditResult::Denied).detail("locked"),
        )
        .await?;
        return Ok(LoginOutcome::Locked { until_ms: user.locked_until });
    }
    let stored: String = sqlx::query("SELECT password_hash FROM app_user WHERE id = $1")
        .bind(user.id)
        .fetch_one(&db.pool)
        .await?
        .try_get("password_hash")?;
    let ok = crate::kdf::verify(pw, &stored).await;
    let mut tx = db.begin_write(now_ms).await?;
    if ok {
        sqlx::query("UPDATE app_user SET failed_logins = 0, locked_until = 0, last_login_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(user.id)
            .execute(tx.conn().await?)
            .await?;
        tx.audit(AuditEntry::new(&actor, "auth.login", &object).detail("password accepted")).await?;
        tx.commit().await?;
        return Ok(LoginOutcome::Success(get(db, user.id).await?));
    }
    let failures: i64 =
        sqlx::query("UPDATE app_user SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
            .bind(user.id)
            .fetch_one(tx.conn().await?)
            .await?
            .try_get("failed_logins")?;
    tx.audit(
        AuditEntry::new(&actor, "auth.login", &object)
            .result(AuditResult::Failed)
            .detail(format!("wrong password, {failures} consecutive")),
    )
    .await?;
    let mut outcome = LoginOutcome::BadCredentials;
    if failures >= i64::from(policy.lockout_threshold) {
        let until = now_ms + i64::from(policy.lockout_minutes) * 60_000;
        sqlx::query("UPDATE app_user SET locked_until = $1, failed_logins = 0 WHERE id = $2")
            .bind(until)
            .bind(user.id)
            .execute(tx.conn().await?)
            .await?;
        tx.audit(
            AuditEntry::new(&actor, "auth.lockout", &object)
                .result(AuditResult::Denied)
                .detail(format!("locked for {} minutes after {failures} failures", policy.lockout_minutes)),
        )
        .await?;
        outcome = LoginOutcome::Locked { until_ms: until };
    }
    tx.commit().await?;
    Ok(outcome)
}

/// Changes one's own password: the current one must be given, the new one must meet the policy
/// and must not be one of the last `reuse_history` passwords. Other sessions of the user end.
pub async fn change_own_password(
    db: &Db,
    actor: &Actor,
    user_id: i64,
    current: &str,
    new_password: &str,
    keep_session_hash: Option<&str>,
    now_ms: i64,
) -> StoreResult<()> {
    let policy = crate::settings::security_policy(db).await?;
    let user = get(db, user_id).await?;
    let stored: String = sqlx::query("SELECT password_hash FROM app_user WHERE id = $1")
        .bind(user_id)
        .fetch_one(&db.pool)
        .await?
        .try_get("password_hash")?;
    if !crate::kdf::verify(current, &stored).await {
        db.audit_event(
            now_ms,
            AuditEntry::new(actor, "user.password_change", format!("user:{user_id}"))
                .result(AuditResult::Failed)
                .detail("current password wrong"),
        )
        .await?;
        return Err(StoreError::invalid(
            "current_password",
            Msg::new("当前密码不正确", "The current password is wrong"),
        ));
    }
    if let Some(v) = password::check_password(&policy, &user.login, new_password).first() {
        return Err(StoreError::invalid("new_password", v.message()));
    }
    let history = sqlx::query(
        "SELECT password_hash FROM password_history WHERE user_id = $1 ORDER BY changed_at DESC, id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(i64::from(policy.reuse_history.max(1)))
    .fetch_all(&db.pool)
    .await?;
    for row in &history {
        let old: String = row.try_get("password_hash")?;
        if crate::kdf::verify(new_password, &old).await {
            return Err(StoreError::invalid(
                "new_password",
                Msg::new("不能重复使用最近用过的密码", "You cannot reuse one of your recent passwords"),
            ));
        }
    }
    let hash = crate::kdf::hash(new_password).await?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query(
        "UPDATE app_user SET password_hash = $1, password_changed_at = $2, must_change_password = 0 WHERE id = $3",
    )
    .bind(hash.clone())
    .bind(now_ms)
    .bind(user_id)
    .execute(tx.conn().await?)
    .await?;
    insert_history(&mut tx, user_id, &hash, now_ms).await?;
    crate::sessions::end_other_sessions(&mut tx, user_id, keep_session_hash).await?;
    tx.audit(AuditEntry::new(actor, "user.password_change", format!("user:{user_id}"))).await?;
    tx.commit().await
}

/// Sets a new initial password for someone else (forces a change at next login), and lifts a lock.
pub async fn reset_password(
    db: &Db,
    scope: &AdminScope,
    user_id: i64,
    initial_password: &str,
    now_ms: i64,
) -> StoreResult<()> {
    scope.expect(AdminPermission::UserManage)?;
    let user = get(db, user_id).await?;
    let policy = crate::settings::security_policy(db).await?;
    if let Some(v) = password::check_password(&policy, &user.login, initial_password).first() {
        return Err(StoreError::invalid("password", v.message()));
    }
    let hash = crate::kdf::hash(initial_password).await?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query(
        "UPDATE app_user SET password_hash = $1, password_changed_at = $2, must_change_password = 1, \
         failed_logins = 0, locked_until = 0 WHERE id = $3",
    )
    .bind(hash.clone())
    .bind(now_ms)
    .bind(user_id)
    .execute(tx.conn().await?)
    .await?;
    insert_history(&mut tx, user_id, &hash, now_ms).await?;
    crate::sessions::end_other_sessions(&mut tx, user_id, None).await?;
    tx.audit(AuditEntry::new(scope.actor(), "user.password_reset", format!("user:{user_id}"))).await?;
    tx.commit().await
}

/// Lifts a lockout (security admin).
pub async fn unlock(db: &Db, scope: &AdminScope, user_id: i64, now_ms: i64) -> StoreResult<()> {
    scope.expect(AdminPermission::LockoutManage)?;
    get(db, user_id).await?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("UPDATE app_user SET failed_logins = 0, locked_until = 0 WHERE id = $1")
        .bind(user_id)
        .execute(tx.conn().await?)
        .await?;
    tx.audit(AuditEntry::new(scope.actor(), "user.unlock", format!("user:{user_id}"))).await?;
    tx.commit().await
}

/// Disables or re-enables an account (system admin); disabling ends its sessions.
pub async fn set_disabled(db: &Db, scope: &AdminScope, user_id: i64, disabled: bool, now_ms: i64) -> StoreResult<()> {
    scope.expect(AdminPermission::UserManage)?;
    let user = get(db, user_id).await?;
    if scope.actor().user_id == Some(user_id) {
        return Err(StoreError::invalid("user", Msg::new("不能停用自己的账号", "You cannot disable your own account")));
    }
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("UPDATE app_user SET disabled = $1 WHERE id = $2")
        .bind(i64::from(disabled))
        .bind(user_id)
        .execute(tx.conn().await?)
        .await?;
    if disabled {
        crate::sessions::end_other_sessions(&mut tx, user_id, None).await?;
    }
    let action = if disabled { "user.disable" } else { "user.enable" };
    tx.audit(AuditEntry::new(scope.actor(), action, format!("user:{user_id}")).detail(format!("login={}", user.login)))
        .await?;
    tx.commit().await
}

/// Grants or removes an administrator role (security admin). An account holds at most one admin
/// role (one column), and an account with contract memberships cannot become an administrator.
pub async fn set_admin_role(
    db: &Db,
    scope: &AdminScope,
    user_id: i64,
    role: Option<AdminRole>,
    now_ms: i64,
) -> StoreResult<()> {
    scope.expect(AdminPermission::RoleGrant)?;
    let user = get(db, user_id).await?;
    if scope.actor().user_id == Some(user_id) {
        return Err(StoreError::invalid("user", Msg::new("不能修改自己的角色", "You cannot change your own role")));
    }
    if role.is_some() {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM membership WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&db.pool)
            .await?
            .try_get("n")?;
        if n > 0 {
            return Err(StoreError::Conflict(Msg::new(
                "该账号是合同成员，不能同时担任管理员（三权分立）",
                "This account is a contract member and cannot also be an administrator (separation of duties)",
            )));
        }
    }
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("UPDATE app_user SET admin_role = $1 WHERE id = $2")
        .bind(role.map(|r| r.as_str().to_string()))
        .bind(user_id)
        .execute(tx.conn().await?)
        .await?;
    crate::sessions::end_other_sessions(&mut tx, user_id, None).await?;
    tx.audit(AuditEntry::new(scope.actor(), "user.admin_role", format!("user:{user_id}")).detail(format!(
        "login={} before={} after={}",
        user.login,
        user.admin_role.map(|r| r.as_str()).unwrap_or("-"),
        role.map(|r| r.as_str()).unwrap_or("-")
    )))
    .await?;
    tx.commit().await
}

/// Stores a confirmed TOTP secret, sealed with the server key.
pub async fn enrol_totp(
    db: &Db,
    actor: &Actor,
    user_id: i64,
    secret_b32: &str,
    step: u64,
    now_ms: i64,
) -> StoreResult<()> {
    let sealed = db.secrets.seal(TOTP_PURPOSE, secret_b32)?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("UPDATE app_user SET totp_secret_enc = $1, totp_last_step = $2 WHERE id = $3")
        .bind(sealed)
        .bind(step as i64)
        .bind(user_id)
        .execute(tx.conn().await?)
        .await?;
    tx.audit(AuditEntry::new(actor, "user.totp_enrol", format!("user:{user_id}"))).await?;
    tx.commit().await
}

/// Removes a user's TOTP so they enrol again at next login (security admin, e.g. a lost phone).
pub async fn reset_totp(db: &Db, scope: &AdminScope, user_id: i64, now_ms: i64) -> StoreResult<()> {
    scope.expect(AdminPermission::LockoutManage)?;
    get(db, user_id).await?;
    let mut tx = db.begin_write(now_ms).await?;
    sqlx::query("UPDATE app_user SET totp_secret_enc = NULL, totp_last_step = 0 WHERE id = $1")
        .bind(user_id)
        .execute(tx.conn().await?)
        .await?;
    crate::sessions::end_other_sessions(&mut tx, user_id, None).await?;
    tx.audit(AuditEntry::new(scope.actor(), "user.totp_reset", format!("user:{user_id}"))).await?;
    tx.commit().await
}

/// Verifies a TOTP code and consumes its time step, so each code works once. Failures count
/// towards the lockout like wrong passwords do.
pub async fn verify_totp(db: &Db, actor: &Actor, user_id: i64, code: &str, now_ms: i64) -> StoreResult<bool> {
    let policy = crate::settings::security_policy(db).await?;
    let sealed: Option<String> = sqlx::query("SELECT totp_secret_enc FROM app_user WHERE id = $1")
        .bind(user_id)
        .fetch_one(&db.pool)
        .await?
        .try_get("totp_secret_enc")?;
    let Some(sealed) = sealed else { return Ok(false) };
    let secret = db.secrets.open(TOTP_PURPOSE, &sealed)?;
    let step = yunwei_core::totp::verify(&secret, code, (now_ms / 1000).max(0) as u64);
    let object = format!("user:{user_id}");
    let mut tx = db.begin_write(now_ms).await?;
    let accepted = match step {
        Some(step) => {
            sqlx::query(
                "UPDATE app_user SET totp_last_step = $1, failed_logins = 0 WHERE id = $2 AND totp_last_step < $1",
            )
            .bind(step as i64)
            .bind(user_id)
            .execute(tx.conn().await?)
            .await?
            .rows_affected()
                == 1
        }
        None => false,
    };
    if accepted {
        tx.audit(AuditEntry::new(actor, "auth.totp", &object)).await?;
    } else {
        let failures: i64 =
            sqlx::query("UPDATE app_user SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins")
                .bind(user_id)
                .fetch_one(tx.conn().await?)
                .await?
                .try_get("failed_logins")?;
        let why = if step.is_some() { "code already used" } else { "wrong code" };
        tx.audit(AuditEntry::new(actor, "auth.totp", &object).result(AuditResult::Failed).detail(why)).await?;
        if failures >= i64::from(policy.lockout_threshold) {
            sqlx::query("UPDATE app_user SET locked_until = $1, failed_logins = 0 WHERE id = $2")
                .bind(now_ms + i64::from(policy.lockout_minutes) * 60_000)
                .bind(user_id)
                .execute(tx.conn().await?)
                .await?;
            crate::sessions::end_other_sessions(&mut tx, user_id, None).await?;
            tx.audit(
                AuditEntry::new(actor, "auth.lockout", &object).result(AuditResult::Denied).detail("TOTP failures"),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(accepted)
}

pub(crate) fn seal_totp(db: &Db, secret_b32: &str) -> StoreResult<String> {
    db.secrets.seal(TOTP_PURPOSE, secret_b32)
}

pub(crate) fn open_totp(db: &Db, sealed: &str) -> StoreResult<String> {
    db.secrets.open(TOTP_PURPOSE, sealed)
}

/// Bootstrap: creates an administrator with a one-time password when no account with that admin
/// role exists yet. Returns the generated password, or `None` when nothing was created.
pub async fn ensure_admin(
    db: &Db,
    login: &str,
    display_name: &str,
    role: AdminRole,
    now_ms: i64,
) -> StoreResult<Option<String>> {
    let exists: i64 = sqlx::query("SELECT COUNT(*) AS n FROM app_user WHERE admin_role = $1")
        .bind(role.as_str())
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?;
    if exists > 0 {
        return Ok(None);
    }
    let pw = password::initial_password_for(login);
    let hash = crate::kdf::hash(&pw).await?;
    let actor = Actor { user_id: None, name: "system".into(), source_ip: "startup".into() };
    let mut tx = db.begin_write(now_ms).await?;
    let id: i64 = sqlx::query(
        "INSERT INTO app_user (login, display_name, email, admin_role, password_hash, password_changed_at, must_change_password, created_at) \
         VALUES ($1, $2, '', $3, $4, $5, 1, $5) RETURNING id",
    )
    .bind(login.to_string())
    .bind(display_name.to_string())
    .bind(role.as_str())
    .bind(hash.clone())
    .bind(now_ms)
    .fetch_one(tx.conn().await?)
    .await
    .map_err(|e| StoreError::from(e).unique_as(Msg::new("登录名已存在", "This login name is taken")))?
    .try_get("id")?;
    insert_history(&mut tx, id, &hash, now_ms).await?;
    tx.audit(
        AuditEntry::new(&actor, "user.bootstrap_admin", format!("user:{id}"))
            .detail(format!("login={login} role={}", role.as_str())),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(pw))
}
