//! Network device configuration backups (AS6): the pull target of an asset (never its password),
//! pulling now, the stored versions, and the diff between two of them.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunwei_core::Msg;
use yunwei_storage::ContractScope;
use yunwei_storage::device_configs::{self as store, TargetInput, TargetView, Version, VersionSummary};

use super::{ApiJson, ErrorBody, PageQuery, Paged};
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use crate::jobs::{self, PullOutcome};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/device-vendors", get(vendors))
        .route("/contracts/{cid}/config-targets", get(list_targets))
        .route("/contracts/{cid}/assets/{id}/config-target", get(get_target).put(set_target))
        .route("/contracts/{cid}/assets/{id}/config-target/pull", post(pull_now))
        .route("/contracts/{cid}/assets/{id}/configs", get(list_versions))
        .route("/contracts/{cid}/assets/{id}/configs/diff", get(diff))
        .route("/contracts/{cid}/assets/{id}/configs/{vid}", get(get_version))
}

async fn scope(state: &AppState, caller: &ApiCaller, cid: i64) -> Result<ContractScope, AppError> {
    Ok(caller.principal.contract_scope(&state.db, cid).await?)
}

/// Where and as whom to pull an asset's configuration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    /// huawei_vrp, h3c_comware, cisco_ios (GET /api/v1/device-vendors lists them)
    pub vendor: String,
    pub host: String,
    /// default 22
    pub port: Option<i64>,
    pub username: String,
    /// Required for a new target; leave out to keep the stored one. Stored encrypted, never returned.
    pub password: Option<String>,
    /// Alert when no backup succeeded for longer than this: 1–366, default 31.
    pub max_age_days: Option<i64>,
    /// Forget the remembered host key (the device was replaced).
    #[serde(default)]
    pub forget_host_key: bool,
    /// The version last read; a stale one answers 409.
    pub version: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TargetApiView {
    pub asset_id: i64,
    pub asset_name: String,
    pub vendor: String,
    pub host: String,
    pub port: i64,
    pub username: String,
    /// Always "••••".
    pub password: String,
    pub max_age_days: i64,
    /// SHA256:… remembered on the first successful pull.
    pub host_key_sha256: Option<String>,
    pub last_attempt_at_ms: Option<i64>,
    pub last_success_at_ms: Option<i64>,
    /// Empty after a successful pull.
    pub last_error: String,
    /// The saved configuration differs from the running one (as of the last successful pull).
    pub saved_differs: bool,
    pub latest_version_id: Option<i64>,
    pub latest_version_at_ms: Option<i64>,
    pub backup_age_ms: Option<i64>,
    /// No successful backup within max_age_days.
    pub overdue: bool,
    pub version: i64,
}

impl From<TargetView> for TargetApiView {
    fn from(t: TargetView) -> Self {
        TargetApiView {
            asset_id: t.asset_id,
            asset_name: t.asset_name,
            vendor: t.vendor,
            host: t.host,
            port: t.port,
            username: t.username,
            password: t.password,
            max_age_days: t.max_age_days,
            host_key_sha256: t.host_key_sha256,
            last_attempt_at_ms: t.last_attempt_at,
            last_success_at_ms: t.last_success_at,
            last_error: t.last_error,
            saved_differs: t.saved_differs,
            latest_version_id: t.latest_version_id,
            latest_version_at_ms: t.latest_version_at,
            backup_age_ms: t.backup_age_ms,
            overdue: t.overdue,
            version: t.version,
        }
    }
}

/// The contract's pull targets with their backup age and overdue flag.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/config-targets", tag = "device configs",
    params(("cid" = i64, Path)),
    responses((status = 200, body = Vec<TargetApiView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_targets(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(cid): Path<i64>,
) -> Result<axum::Json<Vec<TargetApiView>>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let list = store::list_targets(&state.db, &s, state.now_ms()).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

/// An asset's pull target (the password is never returned).
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/{id}/config-target", tag = "device configs",
    params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = TargetApiView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_target(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<axum::Json<TargetApiView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(axum::Json(store::get_target(&state.db, &s, id, state.now_ms()).await?.into()))
}

/// Sets or replaces an asset's pull target. The password is stored encrypted.
#[utoipa::path(put, path = "/api/v1/contracts/{cid}/assets/{id}/config-target", tag = "device configs",
    params(("cid" = i64, Path), ("id" = i64, Path)), request_body = TargetBody,
    responses((status = 200, body = TargetApiView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_target(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    ApiJson(body): ApiJson<TargetBody>,
) -> Result<axum::Json<TargetApiView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    if yunwei_netconf::vendor(body.vendor.trim()).is_none() {
        return Err(AppError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            message: Msg::new("设备厂商类型无效", "Unknown device vendor"),
            field: Some("vendor"),
        });
    }
    let input = TargetInput {
        vendor: body.vendor.trim().to_string(),
        host: body.host,
        port: body.port,
        username: body.username,
        password: body.password,
        max_age_days: body.max_age_days,
        forget_host_key: body.forget_host_key,
        version: body.version,
    };
    Ok(axum::Json(store::set_target(&state.db, &s, id, &input, state.now_ms()).await?.into()))
}

#[derive(Serialize, ToSchema)]
pub struct PullView {
    /// stored (a new version), unchanged (same as the latest version), failed
    pub outcome: String,
    pub version_id: Option<i64>,
    /// Why the pull failed: unreachable, authentication refused, host key changed, timed out, …
    pub error: Option<String>,
}

/// Pulls the configuration now (at most 25 s) and records the result; a failed pull is recorded
/// on the target and answered with outcome "failed".
#[utoipa::path(post, path = "/api/v1/contracts/{cid}/assets/{id}/config-target/pull", tag = "device configs",
    params(("cid" = i64, Path), ("id" = i64, Path)),
    responses((status = 200, body = PullView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pull_now(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
) -> Result<axum::Json<PullView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let target = match store::pull_target(&state.db, &s, id).await {
        Ok(t) => t,
        Err(yunwei_storage::StoreError::Crypto(_)) => {
            let error = "the stored password does not open with this server's secret key (was the key changed?); \
                         set the password again";
            store::record_failure(&state.db, Some(&s), id, error, state.now_ms()).await?;
            return Ok(axum::Json(PullView { outcome: "failed".into(), version_id: None, error: Some(error.into()) }));
        }
        Err(e) => return Err(e.into()),
    };
    let view = match jobs::pull_and_record(&state, Some(&s), target, jobs::PULL_TIMEOUT).await? {
        PullOutcome::Stored { version_id } => {
            PullView { outcome: "stored".into(), version_id: Some(version_id), error: None }
        }
        PullOutcome::Unchanged { version_id } => {
            PullView { outcome: "unchanged".into(), version_id: Some(version_id), error: None }
        }
        PullOutcome::Failed { error } => PullView { outcome: "failed".into(), version_id: None, error: Some(error) },
    };
    Ok(axum::Json(view))
}

#[derive(Serialize, ToSchema)]
pub struct VersionSummaryView {
    pub id: i64,
    pub fetched_at_ms: i64,
    pub sha256: String,
    pub saved_differs: bool,
    pub has_saved: bool,
    pub running_chars: i64,
}

impl From<VersionSummary> for VersionSummaryView {
    fn from(v: VersionSummary) -> Self {
        VersionSummaryView {
            id: v.id,
            fetched_at_ms: v.fetched_at,
            sha256: v.sha256,
            saved_differs: v.saved_differs,
            has_saved: v.has_saved,
            running_chars: v.running_chars,
        }
    }
}

/// The stored versions of an asset's configuration, newest first.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/{id}/configs", tag = "device configs",
    params(("cid" = i64, Path), ("id" = i64, Path), PageQuery),
    responses((status = 200, body = Paged<VersionSummaryView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<Paged<VersionSummaryView>>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let limit = q.limit();
    let list = store::versions(&state.db, &s, id, q.after_id()?, limit).await?;
    Ok(axum::Json(Paged::new(list.into_iter().map(Into::into).collect(), limit, |v: &VersionSummaryView| v.id)))
}

#[derive(Serialize, ToSchema)]
pub struct VersionView {
    pub id: i64,
    pub fetched_at_ms: i64,
    pub sha256: String,
    pub running: String,
    pub saved: Option<String>,
    pub saved_differs: bool,
}

impl From<Version> for VersionView {
    fn from(v: Version) -> Self {
        VersionView {
            id: v.id,
            fetched_at_ms: v.fetched_at,
            sha256: v.sha256,
            running: v.running,
            saved: v.saved,
            saved_differs: v.saved_differs,
        }
    }
}

/// One stored version with its running (and saved) configuration.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/{id}/configs/{vid}", tag = "device configs",
    params(("cid" = i64, Path), ("id" = i64, Path), ("vid" = i64, Path)),
    responses((status = 200, body = VersionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_version(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id, vid)): Path<(i64, i64, i64)>,
) -> Result<axum::Json<VersionView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    Ok(axum::Json(store::version(&state.db, &s, id, vid).await?.into()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The older version's id.
    pub from: i64,
    /// The newer version's id.
    pub to: i64,
    /// Unchanged lines shown around each change (0–100, default 3).
    pub context: Option<usize>,
    /// Every line, not only the changes with their context.
    pub full: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct DiffLineView {
    /// equal, delete (only in `from`), insert (only in `to`)
    pub tag: String,
    pub old_line: Option<usize>,
    pub new_line: Option<usize>,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct DiffView {
    pub from: i64,
    pub to: i64,
    pub from_fetched_at_ms: i64,
    pub to_fetched_at_ms: i64,
    pub deleted: usize,
    pub inserted: usize,
    pub lines: Vec<DiffLineView>,
}

/// The line diff of the running configuration between two versions.
#[utoipa::path(get, path = "/api/v1/contracts/{cid}/assets/{id}/configs/diff", tag = "device configs",
    params(("cid" = i64, Path), ("id" = i64, Path), DiffQuery),
    responses((status = 200, body = DiffView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((cid, id)): Path<(i64, i64)>,
    Query(q): Query<DiffQuery>,
) -> Result<axum::Json<DiffView>, AppError> {
    let s = scope(&state, &caller, cid).await?;
    let (a, b) = store::version_pair(&state.db, &s, id, q.from, q.to).await?;
    let context = q.context.unwrap_or(3).min(100);
    // Diffing up to 2 × 8 MiB is CPU work: keep it off the async workers.
    let full = q.full.unwrap_or(false);
    let (ra, rb) = (a.running, b.running);
    let lines = tokio::task::spawn_blocking(move || {
        if full { yunwei_netconf::diff(&ra, &rb) } else { yunwei_netconf::diff_with_context(&ra, &rb, context) }
    })
    .await
    .map_err(|_| AppError::internal())?;
    let count = |t| lines.iter().filter(|l| l.tag == t).count();
    let (deleted, inserted) = (count(yunwei_netconf::DiffTag::Delete), count(yunwei_netconf::DiffTag::Insert));
    Ok(axum::Json(DiffView {
        from: a.id,
        to: b.id,
        from_fetched_at_ms: a.fetched_at,
        to_fetched_at_ms: b.fetched_at,
        deleted,
        inserted,
        lines: lines
            .into_iter()
            .map(|l| DiffLineView {
                tag: match l.tag {
                    yunwei_netconf::DiffTag::Equal => "equal",
                    yunwei_netconf::DiffTag::Delete => "delete",
                    yunwei_netconf::DiffTag::Insert => "insert",
                }
                .into(),
                old_line: l.old_line,
                new_line: l.new_line,
                text: l.text,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct VendorView {
    pub name: String,
    pub label: String,
    pub running: String,
    pub saved: Option<String>,
}

/// The device families a target can name, with the commands they run.
#[utoipa::path(get, path = "/api/v1/device-vendors", tag = "device configs",
    responses((status = 200, body = Vec<VendorView>), (status = 401, body = ErrorBody)))]
pub async fn vendors(_caller: ApiCaller) -> axum::Json<Vec<VendorView>> {
    axum::Json(
        yunwei_netconf::vendors()
            .iter()
            .map(|(name, v)| VendorView {
                name: name.clone(),
                label: v.label.clone(),
                running: v.running.clone(),
                saved: v.saved.clone(),
            })
            .collect(),
    )
}
