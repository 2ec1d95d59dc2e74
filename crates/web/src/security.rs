//! The middleware stack: panics caught, metrics, security headers on every response, HTML error
//! pages for browsers, body and time limits, authentication with CSRF.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::AppState;
use crate::auth;
use crate::error::{AppError, ErrorMarker};

/// Largest request body accepted anywhere (JSON and forms). Attachments will get their own limit.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn layers(app: Router<AppState>, state: AppState) -> Router<AppState> {
    app.fallback(|| async { AppError::not_found() })
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(state.clone(), html_errors))
        .layer(from_fn_with_state(state.clone(), security_headers))
        .layer(from_fn_with_state(state, crate::metrics::track))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            AppError::internal().into_response()
        }))
}

async fn security_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let swagger = req.uri().path().starts_with("/api/docs/swagger");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // Swagger UI sets inline styles; scripts stay 'self' everywhere.
    let style = if swagger { "style-src 'self' 'unsafe-inline'" } else { "style-src 'self'" };
    let csp = format!(
        "default-src 'self'; script-src 'self'; {style}; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    // A handler that set a stricter policy (downloads: `sandbox`; SVG: `default-src 'none'`) keeps it.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&csp)
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("permissions-policy", HeaderValue::from_static("camera=(), microphone=(), geolocation=()"));
    if state.config.tls || state.config.behind_tls_proxy {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Browsers get an HTML page for errors; API clients keep the JSON body.
async fn html_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let lang = auth::cookie(req.headers(), auth::LANG_COOKIE).map(crate::i18n::Lang::parse).unwrap_or_default();
    let resp = next.run(req).await;
    if api {
        return resp;
    }
    let Some(marker) = resp.extensions().get::<ErrorMarker>().cloned() else {
        return resp;
    };
    let body = state.templates.get_template("error.html").and_then(|t| {
        t.render(minijinja::context! {
            lang => lang.as_str(),
            page => minijinja::Value::from(minijinja::value::Serde(crate::ui::Page::default())),
            status => marker.status.as_u16(),
            message => lang.pick(marker.message),
        })
    });
    match body {
        Ok(html) => (marker.status, Html(html)).into_response(),
        Err(_) => resp,
    }
}
