//! Network device configuration backups (AS6): where and as whom to pull each device's
//! configuration, every distinct version pulled, the failures, and the alert when a device has not
//! been backed up for longer than its target allows.
//!
//! SSH is not here: the web crate's job and API pull with `yunwei-netconf` and hand the result to
//! [`record_pull`] or [`record_failure`].
//!
//! Invariants:
//! - The device password is sealed with the server key ([`crate::secrets`]) before it reaches the
//!   database, and leaves this module in clear only in a [`PullTarget`] (no `Serialize`, redacted
//!   `Debug`) for the SSH client; views show [`MASK`]. Audit records never carry it.
//! - A version is stored only when the running configuration's SHA-256 differs from the latest
//!   stored one; an unchanged pull still counts as a backup (`last_success_at`).
//! - An overdue alert fires at most once per target and Shanghai day (`device_config_alert` key).

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;
use yunwei_core::Msg;
use yunwei_core::authz::{ContractPermission, ContractRole};
use yunwei_core::text::single_line;

use crate::audit::{AuditEntry, AuditResult};
use crate::db::Db;
use crate::error::{StoreError, StoreResult};
use crate::notifications::{self, Recipients};
use crate::principal::ContractScope;

/// What views show in place of the password.
pub const MASK: &str = "••••";

const PASSWORD_PURPOSE: &str = "device-config-password";
const DAY_MS: i64 = 86_400_000;
/// A target is pulled again when its last attempt is this old.
pub const PULL_EVERY_MS: i64 = DAY_MS;

fn invalid(field: &'static str, zh: &'static str, en: &'static str) -> StoreError {
    StoreError::invalid(field, Msg::new(zh, en))
}

/// What a person sets for a device. `password` may be left out when replacing a target: the
/// stored one is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetInput {
    /// A device family of `yunwei-netconf`'s vendor table (`huawei_vrp`, `h3c_comware`, `cisco_ios`).
    pub vendor: String,
    pub host: String,
    pub port: Option<i64>,
    pub username: String,
    pub password: Option<String>,
    /// Alert when no backup succeeded for longer than this (1–366 days, default 31).
    pub max_age_days: Option<i64>,
    /// Forget the remembered host key (a replaced device): the next pull trusts the key it sees.
    pub forget_host_key: bool,
    /// The version last read; a stale one answers a conflict. Left out: no check.
    pub version: Option<i64>,
}

/// A target as people see it: never the password.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetView {
    pub asset_id: i64,
    pub asset_name: String,
    pub contract_id: i64,
    pub vendor: String,
    pub host: String,
    pub port: i64,
    pub username: String,
    /// Always [`MASK`].
    pub password: String,
    pub max_age_days: i64,
    /// Remembered on the first successful connection (`SHA256:…`).
    pub host_key_sha256: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: String,
    /// As of the last successful pull.
    pub saved_differs: bool,
    pub latest_version_id: Option<i64>,
    pub latest_version_at: Option<i64>,
    /// Milliseconds since the last successful backup (absent when there never was one).
    pub backup_age_ms: Option<i64>,
    /// No successful backup within `max_age_days` (counted from the target's creation when there
    /// never was one).
    pub overdue: bool,
    pub created_at: i64,
    pub version: i64,
}

const TARGET_SELECT: &str = "SELECT t.asset_id, a.name AS asset_name, t.contract_id, t.vendor, t.host, t.port, t.username, \
     t.max_age_days, t.host_key_sha256, t.last_attempt_at, t.last_success_at, t.last_error, t.saved_differs, \
     t.created_at, t.version, \
     (SELECT MAX(v.id) FROM device_config_version v WHERE v.asset_id = t.asset_id) AS latest_version_id, \
     (SELECT MAX(v.fetched_at) FROM device_config_version v WHERE v.asset_id = t.asset_id) AS latest_version_at \
     FROM device_config_target t JOIN asset a ON a.id = t.asset_id";

fn overdue_at(last_success_at: Option<i64>, created_at: i64, max_age_days: i64, now: i64) -> bool {
    now - last_success_at.unwrap_or(created_at) > max_age_days * DAY_MS
}

fn target_from_row(r: &AnyRow, now: i64) -> StoreResult<TargetView> {
    let last_success_at: Option<i64> = r.try_get("last_success_at")?;
    let created_at: i64 = r.try_get("created_at")?;
    let max_age_days: i64 = r.try_get("max_age_days")?;
    let key: String = r.try_get("host_key_sha256")?;
    Ok(TargetView {
        asset_id: r.try_get("asset_id")?,
        asset_name: r.try_get("asset_name")?,
        contract_id: r.try_get("contract_id")?,
        vendor: r.try_get("vendor")?,
        host: r.try_get("host")?,
        port: r.try_get("port")?,
        username: r.try_get("username")?,
        password: MASK.into(),
        max_age_days,
        host_key_sha256: (!key.is_empty()).then_some(key),
        last_attempt_at: r.try_get("last_attempt_at")?,
        last_success_at,
        last_error: r.try_get("last_error")?,
        saved_differs: r.try_get::<i64, _>("saved_differs")? != 0,
        latest_version_id: r.try_get("latest_version_id")?,
        latest_version_at: r.try_get("latest_version_at")?,
        backup_age_ms: last_success_at.map(|t| (now - t).max(0)),
        overdue: overdue_at(last_success_at, created_at, max_age_days, now),
        created_at,
        version: r.try_get("version")?,
    })
}

/// Checks that the asset is one of the contract's; returns its name.
async fn asset_name(db: &Db, scope: &ContractScope, asset_id: i64) -> StoreResult<String> {
    let row = sqlx::query("SELECT name FROM asset WHERE contract_id = $1 AND id = $2")
        .bind(scope.contract_id())
        .bind(asset_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(row.try_get("name")?)
}

fn check_host(host: &str) -> StoreResult<String> {
    let h = single_line(host, 253, true).map_err(|m| StoreError::invalid("host", m))?;
    if !h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')) {
        return Err(invalid("host", "主机应为 IP 地址或主机名", "The host is an IP address or a host name"));
    }
    Ok(h)
}

/// Sets or replaces the pull target of one of the contract's assets.
pub async fn set_target(
    db: &Db,
    scope: &ContractScope,
    asset_id: i64,
    input: &TargetInput,
    now: i64,
) -> StoreResult<TargetView> {
    scope.require(ContractPermission::DeviceConfigManage)?;
    let name = asset_name(db, scope, asset_id).await?;
    let vendor = input.vendor.trim();
    if vendor.is_empty()
        || vendor.len() > 40
        || !vendor.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid("vendor", "设备厂商类型无效", "Unknown device vendor"));
    }
    let host = check_host(&input.host)?;
    let port = input.port.unwrap_or(22);
    if !(1..=65535).contains(&port) {
        return Err(invalid("port", "端口应为 1 到 65535", "The port is 1 to 65535"));
    }
    let username = single_line(&input.username, 64, true).map_err(|m| StoreError::invalid("username", m))?;
    // Unless given, as long as the contract's configuration-backup duty allows (a month where it
    // names none).
    let max_age_days = match input.max_age_days {
        Some(d) => d,
        None => crate::rules::current(db, scope.contract_id())
            .await?
            .and_then(|r| r.compiled.config_backup_days().map(|(_, days)| days))
            .unwrap_or(31),
    };
    if !(1..=366).contains(&max_age_days) {
        return Err(invalid("max_age_days", "备份期限应为 1 到 366 天", "The backup period is 1 to 366 days"));
    }
    let password = match input.password.as_deref() {
        None | Some("") => None,
        Some(p) if p.chars().count() > 256 || p.chars().any(char::is_control) => {
            return Err(invalid(
                "password",
                "密码过长或含控制字符",
                "The password is too long or has control characters",
            ));
        }
        Some(p) => Some(db.secrets.seal(PASSWORD_PURPOSE, p)?),
    };

    let mut tx = db.begin_write(now).await?;
    let existing = sqlx::query(
        "SELECT host, port, version, host_key_sha256, password_enc FROM device_config_target \
         WHERE contract_id = $1 AND asset_id = $2",
    )
    .bind(scope.contract_id())
    .bind(asset_id)
    .fetch_optional(tx.conn().await?)
    .await?;
    let action;
    match existing {
        None => {
            let Some(sealed) = password else {
                return Err(invalid("password", "首次设置须填写密码", "A password is required for a new target"));
            };
            sqlx::query(
                "INSERT INTO device_config_target (asset_id, contract_id, vendor, host, port, username, password_enc, \
                 max_age_days, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(asset_id)
            .bind(scope.contract_id())
            .bind(vendor.to_string())
            .bind(host.clone())
            .bind(port)
            .bind(username.clone())
            .bind(sealed)
            .bind(max_age_days)
            .bind(now)
            .execute(tx.conn().await?)
            .await?;
            action = "device_config.target_create";
        }
        Some(row) => {
            let version: i64 = row.try_get("version")?;
            if input.version.is_some_and(|v| v != version) {
                return Err(StoreError::Conflict(Msg::new(
                    "该设备的备份设置已被他人修改，请刷新后重试",
                    "Someone else changed this target; reload and retry",
                )));
            }
            let old_host: String = row.try_get("host")?;
            let old_port: i64 = row.try_get("port")?;
            let moved = old_host != host || old_port != port;
            let key: String = row.try_get("host_key_sha256")?;
            let key = if moved || input.forget_host_key { String::new() } else { key };
            let sealed = match password {
                Some(s) => s,
                None => row.try_get("password_enc")?,
            };
            sqlx::query(
                "UPDATE device_config_target SET vendor = $1, host = $2, port = $3, username = $4, password_enc = $5, \
                 max_age_days = $6, host_key_sha256 = $7, version = version + 1 \
                 WHERE contract_id = $8 AND asset_id = $9",
            )
            .bind(vendor.to_string())
            .bind(host.clone())
            .bind(port)
            .bind(username.clone())
            .bind(sealed)
            .bind(max_age_days)
            .bind(key)
            .bind(scope.contract_id())
            .bind(asset_id)
            .execute(tx.conn().await?)
            .await?;
            action = "device_config.target_update";
        }
    }
    let password_note = if input.password.as_deref().is_some_and(|p| !p.is_empty()) { "set" } else { "kept" };
    tx.audit(AuditEntry::new(scope.actor(), action, format!("asset:{asset_id}")).contract(scope.contract_id()).detail(
        format!(
            "asset={name} vendor={vendor} host={host} port={port} username={username} \
                 max_age_days={max_age_days} password={password_note} forget_host_key={}",
            input.forget_host_key
        ),
    ))
    .await?;
    tx.commit().await?;
    get_target(db, scope, asset_id, now).await
}

/// The pull target of one asset (no password).
pub async fn get_target(db: &Db, scope: &ContractScope, asset_id: i64, now: i64) -> StoreResult<TargetView> {
    scope.require(ContractPermission::AssetRead)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{TARGET_SELECT} WHERE t.contract_id = $1 AND t.asset_id = $2")))
        .bind(scope.contract_id())
        .bind(asset_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    target_from_row(&row, now)
}

/// Every pull target of the contract with its backup age and overdue flag, by asset.
pub async fn list_targets(db: &Db, scope: &ContractScope, now: i64) -> StoreResult<Vec<TargetView>> {
    scope.require(ContractPermission::AssetRead)?;
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("{TARGET_SELECT} WHERE t.contract_id = $1 ORDER BY t.asset_id")))
            .bind(scope.contract_id())
            .fetch_all(&db.pool)
            .await?;
    rows.iter().map(|r| target_from_row(r, now)).collect()
}

/// What the SSH client needs, with the password opened. Never serialised; `Debug` hides the
/// password.
#[derive(Clone)]
pub struct PullTarget {
    pub contract_id: i64,
    pub asset_id: i64,
    pub vendor: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub host_key_sha256: Option<String>,
}

impl std::fmt::Debug for PullTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullTarget")
            .field("contract_id", &self.contract_id)
            .field("asset_id", &self.asset_id)
            .field("vendor", &self.vendor)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host_key_sha256", &self.host_key_sha256)
            .finish()
    }
}

const PULL_SELECT: &str = "SELECT t.contract_id, t.asset_id, t.vendor, t.host, t.port, t.username, t.password_enc, t.host_key_sha256 \
     FROM device_config_target t";

fn pull_target_from_row(db: &Db, r: &AnyRow) -> StoreResult<PullTarget> {
    let sealed: String = r.try_get("password_enc")?;
    let key: String = r.try_get("host_key_sha256")?;
    let port: i64 = r.try_get("port")?;
    Ok(PullTarget {
        contract_id: r.try_get("contract_id")?,
        asset_id: r.try_get("asset_id")?,
        vendor: r.try_get("vendor")?,
        host: r.try_get("host")?,
        port: u16::try_from(port).unwrap_or(22),
        username: r.try_get("username")?,
        password: db.secrets.open(PASSWORD_PURPOSE, &sealed)?,
        host_key_sha256: (!key.is_empty()).then_some(key),
    })
}

/// The target with its password, for a pull a person asked for now.
pub async fn pull_target(db: &Db, scope: &ContractScope, asset_id: i64) -> StoreResult<PullTarget> {
    scope.require(ContractPermission::DeviceConfigManage)?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{PULL_SELECT} WHERE t.contract_id = $1 AND t.asset_id = $2")))
        .bind(scope.contract_id())
        .bind(asset_id)
        .fetch_optional(&db.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
    pull_target_from_row(db, &row)
}

/// For the scheduled job (all contracts): claims up to `limit` targets whose last attempt is older
/// than [`PULL_EVERY_MS`] (or that were never tried) by setting their attempt time to `now`, so
/// that another node's pass leaves them alone. Assets that are retired are left out. A target
/// whose password no longer opens (the server key changed) gets that failure recorded instead.
pub async fn claim_due(db: &Db, now: i64, limit: i64) -> StoreResult<Vec<PullTarget>> {
    let cutoff = now - PULL_EVERY_MS;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{PULL_SELECT} JOIN asset a ON a.id = t.asset_id \
         WHERE (t.last_attempt_at IS NULL OR t.last_attempt_at <= $1) AND a.status <> 'retired' \
         ORDER BY t.last_attempt_at IS NOT NULL, t.last_attempt_at, t.asset_id LIMIT $2"
    )))
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let asset_id: i64 = r.try_get("asset_id")?;
        // Bookkeeping, not a change of data: the claim is written directly.
        let claimed = sqlx::query(
            "UPDATE device_config_target SET last_attempt_at = $1 \
             WHERE asset_id = $2 AND (last_attempt_at IS NULL OR last_attempt_at <= $3)",
        )
        .bind(now)
        .bind(asset_id)
        .bind(cutoff)
        .execute(&db.pool)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            continue;
        }
        match pull_target_from_row(db, &r) {
            Ok(t) => out.push(t),
            Err(StoreError::Crypto(_)) => {
                let contract_id: i64 = r.try_get("contract_id")?;
                let scope = ContractScope::platform(contract_id);
                record_failure(
                    db,
                    Some(&scope),
                    asset_id,
                    "the stored password does not open with this server's secret key (was the key changed?); set the password again",
                    now,
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A successful pull, as the SSH client returned it. `saved_differs` is computed by the caller
/// (`yunwei_netconf::differs_ignoring_volatile`), which knows which lines are volatile.
#[derive(Debug, Clone, Default)]
pub struct PulledConfig {
    pub running: String,
    pub saved: Option<String>,
    pub saved_differs: bool,
    pub host_key_sha256: String,
}

/// What [`record_pull`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PullRecord {
    /// The running configuration differed from the latest version: a new version.
    Stored { version_id: i64 },
    /// Same as the latest version: nothing stored, the backup time moved on.
    Unchanged { version_id: i64 },
}

/// The scope to act in: the caller's (checked), or the platform's in the target's contract.
async fn acting_scope(db: &Db, scope: Option<&ContractScope>, asset_id: i64) -> StoreResult<ContractScope> {
    match scope {
        Some(s) => {
            s.require(ContractPermission::DeviceConfigManage)?;
            Ok(s.clone())
        }
        None => {
            let row = sqlx::query("SELECT contract_id FROM device_config_target WHERE asset_id = $1")
                .bind(asset_id)
                .fetch_optional(&db.pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            Ok(ContractScope::platform(row.try_get("contract_id")?))
        }
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// Records a successful pull: a new version when the running configuration changed, the host key
/// on first use, the backup time. `scope` is the person who asked for the pull, or `None` for the
/// scheduled job (the platform in the target's contract).
pub async fn record_pull(
    db: &Db,
    scope: Option<&ContractScope>,
    asset_id: i64,
    pulled: &PulledConfig,
    now: i64,
) -> StoreResult<PullRecord> {
    let scope = acting_scope(db, scope, asset_id).await?;
    let sha = sha256_hex(&pulled.running);
    let mut tx = db.begin_write(now).await?;
    let target =
        sqlx::query("SELECT host_key_sha256 FROM device_config_target WHERE contract_id = $1 AND asset_id = $2")
            .bind(scope.contract_id())
            .bind(asset_id)
            .fetch_optional(tx.conn().await?)
            .await?
            .ok_or(StoreError::NotFound)?;
    let known_key: String = target.try_get("host_key_sha256")?;
    let latest = sqlx::query(
        "SELECT id, sha256 FROM device_config_version WHERE contract_id = $1 AND asset_id = $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(scope.contract_id())
    .bind(asset_id)
    .fetch_optional(tx.conn().await?)
    .await?;
    let latest: Option<(i64, String)> = match latest {
        Some(r) => Some((r.try_get("id")?, r.try_get("sha256")?)),
        None => None,
    };
    let outcome = match latest {
        Some((id, s)) if s == sha => PullRecord::Unchanged { version_id: id },
        _ => {
            let row = sqlx::query(
                "INSERT INTO device_config_version (contract_id, asset_id, fetched_at, sha256, running, saved, saved_differs) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(scope.contract_id())
            .bind(asset_id)
            .bind(now)
            .bind(sha.clone())
            .bind(pulled.running.clone())
            .bind(pulled.saved.clone().unwrap_or_default())
            .bind(i64::from(pulled.saved_differs))
            .fetch_one(tx.conn().await?)
            .await?;
            PullRecord::Stored { version_id: row.try_get("id")? }
        }
    };
    // Trust on first use: remember the key only when none is known (a replaced target cleared it).
    let first_key = known_key.is_empty() && !pulled.host_key_sha256.is_empty();
    sqlx::query(
        "UPDATE device_config_target SET last_attempt_at = $1, last_success_at = $1, last_error = '', \
         saved_differs = $2, host_key_sha256 = CASE WHEN host_key_sha256 = '' THEN $3 ELSE host_key_sha256 END \
         WHERE contract_id = $4 AND asset_id = $5",
    )
    .bind(now)
    .bind(i64::from(pulled.saved_differs))
    .bind(pulled.host_key_sha256.clone())
    .bind(scope.contract_id())
    .bind(asset_id)
    .execute(tx.conn().await?)
    .await?;
    let mut detail = match outcome {
        PullRecord::Stored { version_id } => format!("stored version {version_id} sha256={sha}"),
        PullRecord::Unchanged { version_id } => format!("unchanged since version {version_id}"),
    };
    if pulled.saved_differs {
        detail.push_str(" saved_differs=true");
    }
    if first_key {
        detail.push_str(&format!(" host_key={} (trusted on first use)", pulled.host_key_sha256));
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "device_config.pull", format!("asset:{asset_id}"))
            .contract(scope.contract_id())
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Records a failed pull (unreachable, refused, timed out, host key changed) with its message.
pub async fn record_failure(
    db: &Db,
    scope: Option<&ContractScope>,
    asset_id: i64,
    error: &str,
    now: i64,
) -> StoreResult<()> {
    let scope = acting_scope(db, scope, asset_id).await?;
    let error: String = error.chars().filter(|c| !c.is_control()).take(1000).collect();
    let mut tx = db.begin_write(now).await?;
    let n = sqlx::query(
        "UPDATE device_config_target SET last_attempt_at = $1, last_error = $2 WHERE contract_id = $3 AND asset_id = $4",
    )
    .bind(now)
    .bind(error.clone())
    .bind(scope.contract_id())
    .bind(asset_id)
    .execute(tx.conn().await?)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.audit(
        AuditEntry::new(scope.actor(), "device_config.pull", format!("asset:{asset_id}"))
            .contract(scope.contract_id())
            .result(AuditResult::Failed)
            .detail(error),
    )
    .await?;
    tx.commit().await
}

/// One stored version without its text, for lists.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VersionSummary {
    pub id: i64,
    pub asset_id: i64,
    pub fetched_at: i64,
    pub sha256: String,
    pub saved_differs: bool,
    pub has_saved: bool,
    /// Length of the running configuration in characters.
    pub running_chars: i64,
}

/// The versions of one asset's configuration, newest first (`before_id` pages on).
pub async fn versions(
    db: &Db,
    scope: &ContractScope,
    asset_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<VersionSummary>> {
    scope.require(ContractPermission::AssetRead)?;
    asset_name(db, scope, asset_id).await?;
    let rows = sqlx::query(
        "SELECT id, asset_id, fetched_at, sha256, saved_differs, CAST(LENGTH(saved) AS BIGINT) AS saved_chars, \
         CAST(LENGTH(running) AS BIGINT) AS running_chars FROM device_config_version \
         WHERE contract_id = $1 AND asset_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4",
    )
    .bind(scope.contract_id())
    .bind(asset_id)
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 500))
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(VersionSummary {
                id: r.try_get("id")?,
                asset_id: r.try_get("asset_id")?,
                fetched_at: r.try_get("fetched_at")?,
                sha256: r.try_get("sha256")?,
                saved_differs: r.try_get::<i64, _>("saved_differs")? != 0,
                has_saved: r.try_get::<Option<i64>, _>("saved_chars")?.unwrap_or(0) > 0,
                running_chars: r.try_get::<Option<i64>, _>("running_chars")?.unwrap_or(0),
            })
        })
        .collect()
}

/// One stored version with its text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Version {
    pub id: i64,
    pub asset_id: i64,
    pub fetched_at: i64,
    pub sha256: String,
    pub running: String,
    pub saved: Option<String>,
    pub saved_differs: bool,
}

/// One version of one asset's configuration.
pub async fn version(db: &Db, scope: &ContractScope, asset_id: i64, id: i64) -> StoreResult<Version> {
    scope.require(ContractPermission::AssetRead)?;
    let r = sqlx::query(
        "SELECT id, asset_id, fetched_at, sha256, running, saved, saved_differs FROM device_config_version \
         WHERE contract_id = $1 AND asset_id = $2 AND id = $3",
    )
    .bind(scope.contract_id())
    .bind(asset_id)
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    let saved: String = r.try_get("saved")?;
    Ok(Version {
        id: r.try_get("id")?,
        asset_id: r.try_get("asset_id")?,
        fetched_at: r.try_get("fetched_at")?,
        sha256: r.try_get("sha256")?,
        running: r.try_get("running")?,
        saved: (!saved.is_empty()).then_some(saved),
        saved_differs: r.try_get::<i64, _>("saved_differs")? != 0,
    })
}

/// Two versions of the same asset, for a diff.
pub async fn version_pair(
    db: &Db,
    scope: &ContractScope,
    asset_id: i64,
    from: i64,
    to: i64,
) -> StoreResult<(Version, Version)> {
    Ok((version(db, scope, asset_id, from).await?, version(db, scope, asset_id, to).await?))
}

fn shanghai_date(ms: i64) -> String {
    let (y, m, d) = yunwei_core::calendar::civil_from_days(yunwei_core::calendar::local_day(ms));
    format!("{y:04}-{m:02}-{d:02}")
}

/// For the scheduled job (all contracts): for each target with no successful backup within its
/// `max_age_days` and not alerted yet today (Shanghai), notifies the contract's engineers and
/// project managers. Returns how many alerts it sent.
pub async fn overdue_alerts(db: &Db, now: i64) -> StoreResult<usize> {
    let day = shanghai_date(now);
    let key = format!("overdue:{day}");
    let rows = sqlx::query(
        "SELECT t.asset_id, t.contract_id, a.name AS asset_name, t.vendor, t.host, t.port, t.max_age_days, \
         t.last_success_at, t.created_at, t.last_error FROM device_config_target t JOIN asset a ON a.id = t.asset_id \
         WHERE a.status <> 'retired' AND COALESCE(t.last_success_at, t.created_at) < $1 - t.max_age_days * 86400000 \
         AND NOT EXISTS (SELECT 1 FROM device_config_alert x WHERE x.asset_id = t.asset_id AND x.alert_key = $2) \
         ORDER BY t.asset_id",
    )
    .bind(now)
    .bind(key.clone())
    .fetch_all(&db.pool)
    .await?;
    let mut sent = 0;
    for r in rows {
        let asset_id: i64 = r.try_get("asset_id")?;
        let contract_id: i64 = r.try_get("contract_id")?;
        let name: String = r.try_get("asset_name")?;
        let host: String = r.try_get("host")?;
        let port: i64 = r.try_get("port")?;
        let vendor: String = r.try_get("vendor")?;
        let max_age_days: i64 = r.try_get("max_age_days")?;
        let last_success_at: Option<i64> = r.try_get("last_success_at")?;
        let created_at: i64 = r.try_get("created_at")?;
        let last_error: String = r.try_get("last_error")?;
        let days = (now - last_success_at.unwrap_or(created_at)) / DAY_MS;
        let mut tx = db.begin_write(now).await?;
        let inserted = sqlx::query(
            "INSERT INTO device_config_alert (asset_id, alert_key, contract_id, sent_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset_id, alert_key) DO NOTHING",
        )
        .bind(asset_id)
        .bind(key.clone())
        .bind(contract_id)
        .bind(now)
        .execute(tx.conn().await?)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another node sent it meanwhile; dropping the transaction rolls it back.
            continue;
        }
        let title = match last_success_at {
            Some(_) => {
                format!("[配置备份] {name} 已 {days} 天未备份 / Configuration of {name} not backed up for {days} days")
            }
            None => format!("[配置备份] {name} 从未备份成功 / Configuration of {name} never backed up"),
        };
        let last = last_success_at.map(shanghai_date).unwrap_or_else(|| "—".into());
        let mut body = format!(
            "设备 Device: {name} ({vendor}, {host}:{port})\n允许间隔 Allowed: {max_age_days} 天 days\n\
             上次成功备份 Last backup: {last}"
        );
        if !last_error.is_empty() {
            body.push_str(&format!("\n最近错误 Last error: {last_error}"));
        }
        for role in [ContractRole::Engineer, ContractRole::ProjectManager] {
            notifications::send(
                &mut tx,
                contract_id,
                None,
                &Recipients::Role(role),
                "device_config_overdue",
                &title,
                &body,
            )
            .await?;
        }
        let scope = ContractScope::platform(contract_id);
        tx.audit(
            AuditEntry::new(scope.actor(), "device_config.overdue_alert", format!("asset:{asset_id}"))
                .contract(contract_id)
                .detail(format!("days={days} max_age_days={max_age_days} key={key}")),
        )
        .await?;
        tx.commit().await?;
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_boundary() {
        let created = 1_000;
        assert!(!overdue_at(None, created, 1, created + DAY_MS));
        assert!(overdue_at(None, created, 1, created + DAY_MS + 1));
        assert!(!overdue_at(Some(created + DAY_MS), created, 1, created + DAY_MS + 1));
    }

    #[test]
    fn hosts_are_checked() {
        assert_eq!(check_host(" 10.0.0.1 ").unwrap(), "10.0.0.1");
        assert!(check_host("core-sw1.example.cn").is_ok());
        assert!(check_host("fe80::1").is_ok());
        assert!(check_host("a b").is_err());
        assert!(check_host("x;rm -rf").is_err());
        assert!(check_host("").is_err());
    }

    #[test]
    fn shanghai_dates() {
        // 2026-03-01 16:00 UTC is 2026-03-02 00:00 in Shanghai.
        assert_eq!(shanghai_date(1_772_380_800_000), "2026-03-02");
    }
}
