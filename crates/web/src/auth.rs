//! Who is calling: the session/bearer middleware, CSRF verification and the extractors handlers use.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use yunwei_storage::sessions::{self, Lookup, Session, Stage};
use yunwei_storage::{Principal, tokens};

use crate::error::AppError;
use crate::i18n::Lang;
use crate::{AppState, api};

pub const SESSION_COOKIE: &str = "yw_session";
pub const PRE_COOKIE: &str = "yw_pre";
pub const LANG_COOKIE: &str = "yw_lang";
/// Largest urlencoded body read while looking for the CSRF field.
const FORM_LIMIT: usize = 1024 * 1024;

/// Facts about the request every handler may need.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub ip: String,
    pub lang: Lang,
    /// Whether the browser reached us over TLS (directly or through the trusted proxy).
    pub secure: bool,
    /// Whether the peer is this machine (plain HTTP is acceptable only then).
    pub loopback: bool,
}

/// The result of authentication, stored in request extensions by [`authenticate`].
#[derive(Clone)]
pub enum Authn {
    Anonymous,
    Session(Arc<Session>),
    Token(Principal),
    /// A cookie was sent but its session ended (idle, expired, account closed).
    Ended(Lookup),
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn request_ctx(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> RequestCtx {
    let peer_ip = peer.map(|p| p.ip());
    let loopback = peer_ip.is_some_and(|ip| ip.is_loopback());
    let forwarded_ip = if state.config.behind_tls_proxy {
        // The proxy appends the address it saw: the rightmost entry is the one we can trust.
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_string())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
    } else {
        None
    };
    let secure = state.config.tls
        || (state.config.behind_tls_proxy
            && headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https"));
    let lang = cookie(headers, LANG_COOKIE).map(Lang::parse).unwrap_or_default();
    RequestCtx {
        ip: forwarded_ip.unwrap_or_else(|| peer_ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into())),
        lang,
        secure,
        loopback: loopback && forwarded_ip_absent(state, headers),
    }
}

fn forwarded_ip_absent(state: &AppState, headers: &HeaderMap) -> bool {
    !state.config.behind_tls_proxy || headers.get("x-forwarded-for").is_none()
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: resolves the caller once per request and enforces CSRF on state-changing requests
/// that ride on a cookie.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let ctx = request_ctx(&state, req.headers(), peer);
    let now = state.now_ms();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let authn = if let Some(secret) = bearer {
        match tokens::authenticate(&state.db, secret.trim(), &ctx.ip, now).await {
            Ok(Some(p)) => Authn::Token(p),
            Ok(None) => Authn::Anonymous,
            Err(e) => return AppError::from(e).into_response(),
        }
    } else if let Some(token) = cookie(req.headers(), SESSION_COOKIE).map(str::to_string) {
        match sessions::lookup(&state.db, &token, &ctx.ip, now).await {
            Ok(Ok(s)) => Authn::Session(Arc::new(s)),
            Ok(Err(why)) => Authn::Ended(why),
            Err(e) => return AppError::from(e).into_response(),
        }
    } else {
        Authn::Anonymous
    };

    let mut req = req;
    if !is_safe(req.method()) && !matches!(authn, Authn::Token(_)) {
        if cross_site(req.headers()) {
            return AppError::csrf().into_response();
        }
        let expected = match &authn {
            Authn::Session(s) => Some(s.csrf_token.clone()),
            // Before login the double-submit cookie guards the login form itself.
            _ => cookie(req.headers(), PRE_COOKIE).map(str::to_string),
        };
        let (parts, body) = req.into_parts();
        // Only a form carries its token inside the body; everything else (JSON, an attachment's
        // raw bytes) carries it in the header and is passed on unread, with its own size limit.
        let (body, presented) = if is_form(&parts) && !parts.headers.contains_key("x-csrf-token") {
            let bytes = match to_bytes(body, FORM_LIMIT).await {
                Ok(b) => b,
                Err(_) => {
                    return AppError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        yunwei_core::Msg::new("请求内容过大", "The request body is too large"),
                    )
                    .into_response();
                }
            };
            let presented = presented_csrf(&parts, &bytes);
            (Body::from(bytes), presented)
        } else {
            (body, presented_csrf(&parts, &[]))
        };
        let ok = match (&expected, &presented) {
            (Some(e), Some(p)) => constant_time_eq(e.as_bytes(), p.as_bytes()),
            _ => false,
        };
        // A request without any session or pre-login cookie has nothing to forge: it is rejected
        // later as unauthenticated (API) or treated as a login without the form (pages).
        let nothing_to_protect = expected.is_none() && !matches!(authn, Authn::Session(_));
        let unauthenticated_api = nothing_to_protect && parts.uri.path().starts_with("/api/");
        if !ok && !unauthenticated_api {
            return AppError::csrf().into_response();
        }
        req = Request::from_parts(parts, body);
    }
    req.extensions_mut().insert(ctx);
    req.extensions_mut().insert(authn);
    next.run(req).await
}

/// Fetch Metadata and Origin: a browser tells us when a request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return true;
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        _ => false,
    }
}

fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn presented_csrf(parts: &Parts, body: &[u8]) -> Option<String> {
    if let Some(v) = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return Some(v.to_string());
    }
    if is_form(parts)
        && let Some(v) = form_field(body, "_csrf")
    {
        return Some(v);
    }
    parts.uri.query().and_then(|q| form_field(q.as_bytes(), "_csrf"))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded_pairs(body).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A browser user with a complete login (password, second factor, no pending password change).
/// Pages that need one redirect elsewhere when it is missing.
pub struct UiUser {
    pub session: Arc<Session>,
    pub ctx: RequestCtx,
}

impl UiUser {
    pub fn principal(&self) -> Principal {
        self.session.principal(&self.ctx.ip)
    }
}

/// Where a page sends a browser whose session is not complete.
pub fn stage_redirect(stage: Stage) -> Redirect {
    match stage {
        Stage::TotpRequired => Redirect::to("/login/totp"),
        Stage::TotpEnrolment => Redirect::to("/login/enrol"),
        Stage::PasswordChange => Redirect::to("/password"),
        Stage::Full => Redirect::to("/"),
    }
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<RequestCtx>().cloned().ok_or_else(|| AppError::internal().into_response())?;
        match parts.extensions.get::<Authn>() {
            Some(Authn::Session(s)) if s.stage == Stage::Full => Ok(UiUser { session: s.clone(), ctx }),
            Some(Authn::Session(s)) => Err(stage_redirect(s.stage).into_response()),
            Some(Authn::Ended(Lookup::IdleTimeout)) => Err(Redirect::to("/login?ended=idle").into_response()),
            Some(Authn::Ended(_)) => Err(Redirect::to("/login?ended=expired").into_response()),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// A session at any stage (the pages that complete a login).
pub struct AnySession {
    pub session: Arc<Session>,
    pub ctx: RequestCtx,
}

impl FromRequestParts<AppState> for AnySession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<RequestCtx>().cloned().ok_or_else(|| AppError::internal().into_response())?;
        match parts.extensions.get::<Authn>() {
            Some(Authn::Session(s)) => Ok(AnySession { session: s.clone(), ctx }),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

impl FromRequestParts<AppState> for RequestCtx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RequestCtx>().cloned().ok_or_else(AppError::internal)
    }
}

/// An API caller: a complete browser session or a bearer token. Answers 401 otherwise.
pub struct ApiCaller {
    pub principal: Principal,
    pub ctx: RequestCtx,
    pub session: Option<Arc<Session>>,
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let ctx = parts.extensions.get::<RequestCtx>().cloned().ok_or_else(AppError::internal)?;
        match parts.extensions.get::<Authn>() {
            Some(Authn::Session(s)) if s.stage == Stage::Full => {
                Ok(ApiCaller { principal: s.principal(&ctx.ip), ctx, session: Some(s.clone()) })
            }
            Some(Authn::Token(p)) => Ok(ApiCaller { principal: p.clone(), ctx, session: None }),
            _ => Err(api::unauthorized()),
        }
    }
}

/// `Set-Cookie` value for a session-like cookie. `Secure` is set whenever the browser reached us
/// over TLS; plain HTTP is only ever served to loopback, where browsers would drop a Secure cookie.
pub fn set_cookie(name: &str, value: &str, ctx: &RequestCtx, max_age_secs: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if ctx.secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

pub fn clear_cookie(name: &str, ctx: &RequestCtx) -> String {
    set_cookie(name, "", ctx, Some(0))
}
