//! Login, second factor, TOTP enrolment, password change, logout, language switch.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use yunwei_storage::audit::AuditEntry;
use yunwei_storage::sessions::{self, Stage};
use yunwei_storage::users::{self, LoginOutcome};

use super::{Page, UiForm, render};
use crate::AppState;
use crate::auth::{
    AnySession, Authn, PRE_COOKIE, RequestCtx, SESSION_COOKIE, clear_cookie, cookie, set_cookie, stage_redirect,
};
use crate::error::AppError;
use crate::i18n::t;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login_submit))
        .route("/login/totp", get(totp_page).post(totp_submit))
        .route("/login/enrol", get(enrol_page).post(enrol_submit))
        .route("/password", get(password_page).post(password_submit))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(switch_lang))
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    ended: Option<String>,
}

/// The anonymous layout (no navigation).
fn bare_page() -> Page {
    Page::default()
}

async fn login_page(
    State(state): State<AppState>,
    ctx: RequestCtx,
    headers: HeaderMap,
    authn: axum::Extension<Authn>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, AppError> {
    if let Authn::Session(s) = &authn.0
        && s.stage == Stage::Full
    {
        return Ok(Redirect::to("/").into_response());
    }
    let error = match q.ended.as_deref() {
        Some("idle") => Some(t(ctx.lang, "login.ended_idle")),
        Some(_) => Some(t(ctx.lang, "login.ended_expired")),
        None => None,
    };
    render_login(&state, &ctx, &headers, &authn.0, error, "", StatusCode::OK)
}

/// Renders the login form with a CSRF token: the partial session's, or a pre-login double-submit
/// cookie (set here when missing).
fn render_login(
    state: &AppState,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    authn: &Authn,
    error: Option<String>,
    login: &str,
    status: StatusCode,
) -> Result<Response, AppError> {
    let (csrf, set) = match authn {
        Authn::Session(s) => (s.csrf_token.clone(), None),
        _ => match cookie(headers, PRE_COOKIE).filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())) {
            Some(v) => (v.to_string(), None),
            None => {
                let v = yunwei_storage::random_token(32);
                (v.clone(), Some(set_cookie(PRE_COOKIE, &v, ctx, None)))
            }
        },
    };
    let html = render(state, "login.html", ctx.lang, &bare_page(), crate::view! { csrf, error, login })?;
    let mut resp = (status, html).into_response();
    if let Some(Ok(v)) = set.map(|c| c.parse()) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

async fn login_submit(
    State(state): State<AppState>,
    ctx: RequestCtx,
    headers: HeaderMap,
    authn: axum::Extension<Authn>,
    UiForm(form): UiForm<LoginForm>,
) -> Result<Response, AppError> {
    let now = state.now_ms();
    if !ctx.secure && !ctx.loopback {
        // SE3/SE4: a password never crosses the network in clear text.
        let actor = yunwei_storage::Actor {
            user_id: None,
            name: form.login.chars().take(64).collect(),
            source_ip: ctx.ip.clone(),
        };
        state
            .db
            .audit_event(
                now,
                AuditEntry::new(&actor, "auth.login", "user:?")
                    .result(yunwei_storage::audit::AuditResult::Denied)
                    .detail("plain HTTP from a remote address"),
            )
            .await?;
        let msg = t(ctx.lang, "login.insecure");
        return render_login(&state, &ctx, &headers, &authn.0, Some(msg), "", StatusCode::FORBIDDEN);
    }
    if form.password.len() > 1024 {
        return render_login(
            &state,
            &ctx,
            &headers,
            &authn.0,
            Some(t(ctx.lang, "login.failed")),
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let outcome = users::password_login(&state.db, &form.login, &form.password, &ctx.ip, now).await?;
    let user = match outcome {
        LoginOutcome::Success(u) => u,
        other => {
            let key = match other {
                LoginOutcome::Locked { .. } => "login.locked",
                LoginOutcome::Disabled => "login.disabled",
                _ => "login.failed",
            };
            let login: String = form.login.chars().take(64).collect();
            return render_login(
                &state,
                &ctx,
                &headers,
                &authn.0,
                Some(t(ctx.lang, key)),
                &login,
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    let policy = yunwei_storage::settings::security_policy(&state.db).await?;
    let stage = Stage::next(&user, &policy, now, false);
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut tx = state.db.begin_write(now).await?;
    let (token, _csrf) = sessions::create(&state.db, &mut tx, &user, stage, &ctx.ip, ua, &policy).await?;
    let actor = yunwei_storage::Actor { user_id: Some(user.id), name: user.login.clone(), source_ip: ctx.ip.clone() };
    tx.audit(
        AuditEntry::new(&actor, "auth.session_start", format!("user:{}", user.id))
            .detail(format!("stage={}", stage.as_str())),
    )
    .await?;
    tx.commit().await?;
    Ok(with_session_cookie(stage_redirect(stage), &token, &ctx, true))
}

/// A redirect that sets the (new) session cookie, optionally clearing the pre-login cookie.
fn with_session_cookie(redirect: Redirect, token: &str, ctx: &RequestCtx, clear_pre: bool) -> Response {
    let mut resp = redirect.into_response();
    if let Ok(v) = set_cookie(SESSION_COOKIE, token, ctx, None).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    if clear_pre && let Ok(v) = clear_cookie(PRE_COOKIE, ctx).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

async fn totp_page(State(state): State<AppState>, s: AnySession) -> Result<Response, AppError> {
    if s.session.stage != Stage::TotpRequired {
        return Ok(stage_redirect(s.session.stage).into_response());
    }
    let html =
        render(&state, "totp.html", s.ctx.lang, &bare_page(), crate::view! { csrf => s.session.csrf_token.clone() })?;
    Ok(html.into_response())
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn totp_submit(
    State(state): State<AppState>,
    s: AnySession,
    UiForm(form): UiForm<CodeForm>,
) -> Result<Response, AppError> {
    if s.session.stage != Stage::TotpRequired {
        return Ok(stage_redirect(s.session.stage).into_response());
    }
    let now = state.now_ms();
    let actor = s.session.actor(&s.ctx.ip);
    if !users::verify_totp(&state.db, &actor, s.session.user.id, &form.code, now).await? {
        let html = render(
            &state,
            "totp.html",
            s.ctx.lang,
            &bare_page(),
            crate::view! { csrf => s.session.csrf_token.clone(), error => t(s.ctx.lang, "totp.failed") },
        )?;
        return Ok((StatusCode::UNAUTHORIZED, html).into_response());
    }
    let policy = yunwei_storage::settings::security_policy(&state.db).await?;
    let stage = Stage::next(&s.session.user, &policy, now, true);
    advance(&state, &s, stage, "auth.totp_passed").await
}

/// Moves the session on, rotating its cookie.
async fn advance(state: &AppState, s: &AnySession, stage: Stage, action: &str) -> Result<Response, AppError> {
    let mut tx = state.db.begin_write(state.now_ms()).await?;
    let token = sessions::advance(&mut tx, &s.session.token_hash, stage).await?;
    tx.audit(
        AuditEntry::new(&s.session.actor(&s.ctx.ip), action, format!("user:{}", s.session.user.id))
            .detail(format!("stage={}", stage.as_str())),
    )
    .await?;
    tx.commit().await?;
    Ok(with_session_cookie(stage_redirect(stage), &token, &s.ctx, false))
}

async fn enrol_page(State(state): State<AppState>, s: AnySession) -> Result<Response, AppError> {
    // Required enrolment, or a user who chose to add a second factor.
    let may_enrol =
        s.session.stage == Stage::TotpEnrolment || (s.session.stage == Stage::Full && !s.session.user.totp_enrolled);
    if !may_enrol {
        return Ok(stage_redirect(s.session.stage).into_response());
    }
    let secret = match sessions::pending_totp_secret(&state.db, &s.session)? {
        Some(secret) => secret,
        None => {
            let secret = yunwei_core::totp::generate_secret();
            sessions::set_pending_totp(&state.db, &s.session.token_hash, &secret).await?;
            secret
        }
    };
    render_enrol(&state, &s, &secret, None, StatusCode::OK)
}

fn render_enrol(
    state: &AppState,
    s: &AnySession,
    secret: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let url = yunwei_core::totp::otpauth_url(secret, &s.session.user.login).unwrap_or_default();
    let qr_svg = qrcode::QrCode::new(url.as_bytes())
        .map(|code| code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build())
        .unwrap_or_default();
    let html = render(
        state,
        "enrol.html",
        s.ctx.lang,
        &bare_page(),
        crate::view! { csrf => s.session.csrf_token.clone(), secret, qr_svg, error },
    )?;
    Ok((status, html).into_response())
}

async fn enrol_submit(
    State(state): State<AppState>,
    s: AnySession,
    UiForm(form): UiForm<CodeForm>,
) -> Result<Response, AppError> {
    let Some(secret) = sessions::pending_totp_secret(&state.db, &s.session)? else {
        return Ok(Redirect::to("/login/enrol").into_response());
    };
    let now = state.now_ms();
    let Some(step) = yunwei_core::totp::verify(&secret, &form.code, (now / 1000) as u64) else {
        return render_enrol(&state, &s, &secret, Some(t(s.ctx.lang, "totp.failed")), StatusCode::UNPROCESSABLE_ENTITY);
    };
    users::enrol_totp(&state.db, &s.session.actor(&s.ctx.ip), s.session.user.id, &secret, step, now).await?;
    advance(&state, &s, Stage::Full, "auth.totp_enrolled").await
}

fn password_rules(state_lang: crate::i18n::Lang, min: u32) -> String {
    t(state_lang, "password.rules").replace("{n}", &min.to_string())
}

async fn password_page(State(state): State<AppState>, s: AnySession) -> Result<Response, AppError> {
    if !matches!(s.session.stage, Stage::PasswordChange | Stage::Full) {
        return Ok(stage_redirect(s.session.stage).into_response());
    }
    render_password(&state, &s, None, StatusCode::OK).await
}

async fn render_password(
    state: &AppState,
    s: &AnySession,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let policy = yunwei_storage::settings::security_policy(&state.db).await?;
    let forced = s.session.stage == Stage::PasswordChange;
    let page = if forced {
        bare_page()
    } else {
        let ui = crate::auth::UiUser { session: s.session.clone(), ctx: s.ctx.clone() };
        super::page(state, &ui, "/password").await?
    };
    let html = render(
        state,
        "password.html",
        s.ctx.lang,
        &page,
        crate::view! {
            csrf => s.session.csrf_token.clone(),
            forced,
            error,
            rules => password_rules(s.ctx.lang, policy.min_length),
            totp_enrolled => s.session.user.totp_enrolled,
        },
    )?;
    Ok((status, html).into_response())
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

async fn password_submit(
    State(state): State<AppState>,
    s: AnySession,
    UiForm(form): UiForm<PasswordForm>,
) -> Result<Response, AppError> {
    if !matches!(s.session.stage, Stage::PasswordChange | Stage::Full) {
        return Ok(stage_redirect(s.session.stage).into_response());
    }
    if form.new_password != form.confirm_password {
        return render_password(&state, &s, Some(t(s.ctx.lang, "password.mismatch")), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
    let now = state.now_ms();
    let result = users::change_own_password(
        &state.db,
        &s.session.actor(&s.ctx.ip),
        s.session.user.id,
        &form.current_password,
        &form.new_password,
        Some(&s.session.token_hash),
        now,
    )
    .await;
    if let Err(e) = result {
        let msg = super::form_error(s.ctx.lang, e)?;
        return render_password(&state, &s, Some(msg), StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let user = users::get(&state.db, s.session.user.id).await?;
    let policy = yunwei_storage::settings::security_policy(&state.db).await?;
    // The second factor, if enrolled, was passed before reaching this page.
    let stage = Stage::next(&user, &policy, now, true);
    advance(&state, &s, stage, "auth.password_stage_done").await
}

async fn logout(State(state): State<AppState>, s: AnySession) -> Result<Response, AppError> {
    sessions::end(&state.db, &s.session, &s.ctx.ip, state.now_ms()).await?;
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = clear_cookie(SESSION_COOKIE, &s.ctx).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn switch_lang(ctx: RequestCtx, headers: HeaderMap, Path(code): Path<String>) -> Response {
    let lang = crate::i18n::Lang::parse(&code);
    // Go back to where the user was, but only to a path on this site.
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.strip_prefix(host))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/")
        .to_string();
    let mut resp = Redirect::to(&back).into_response();
    let mut c = format!("{}={}; Path=/; SameSite=Strict; Max-Age=31536000", crate::auth::LANG_COOKIE, lang.as_str());
    if ctx.secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = c.parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
