//! The HTTP front of yunwei: server-rendered pages, the JSON API, sessions and security headers.
//!
//! Architecture invariants:
//! - Handlers never build SQL: they obtain a [`yunwei_storage::ContractScope`] or
//!   [`yunwei_storage::AdminScope`] through the extractors in [`auth`] and call storage with it.
//! - Templates receive view structs, never database rows; every value is HTML-escaped by minijinja.
//! - Every state-changing request with a session cookie carries the session's CSRF token; bearer-token
//!   API calls carry no cookie and need none.

/// Builds a template context from `key => value` pairs (or bare `key` for a variable of that
/// name), serialising each value with serde.
#[macro_export]
macro_rules! view {
    ($($key:ident $(=> $value:expr)?),* $(,)?) => {
        minijinja::Value::from_pairs([
            $( (stringify!($key), minijinja::Value::from(minijinja::value::Serde($crate::view!(@value $key $(, $value)?)))) ),*
        ])
    };
    (@value $key:ident) => { $key };
    (@value $key:ident, $value:expr) => { $value };
}

pub mod api;
mod assets;
pub mod auth;
mod error;
mod export;
mod i18n;
pub mod interface_checks;
pub mod jobs;
mod metrics;
pub mod monitors;
mod security;
mod serve;
pub mod smtp;
mod templates;
mod topology;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use yunwei_storage::{Clock, Db};

pub use api::inspections::probe_check as inspection_probe_check;
pub use error::AppError;
pub use serve::{ServeOptions, TlsFiles, serve};

/// Settings of the HTTP front that come from configuration, not from the database.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    /// Whether this server terminates TLS itself.
    pub tls: bool,
    /// Whether a TLS-terminating reverse proxy sits in front (then `X-Forwarded-For` and
    /// `X-Forwarded-Proto` from it are trusted).
    pub behind_tls_proxy: bool,
    /// Where ticket attachments are stored: outside anything served, readable by this server only.
    /// Without it uploads answer 503.
    pub attachments_dir: Option<std::path::PathBuf>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: Arc<Clock>,
    pub config: Arc<WebConfig>,
    templates: Arc<minijinja::Environment<'static>>,
    metrics: metrics::Metrics,
    /// This node's monitor engine (running while the node holds the `monitors` lease).
    pub monitors: Arc<monitors::MonitorRuntime>,
}

impl AppState {
    pub fn new(db: Db, clock: Arc<Clock>, config: WebConfig) -> Self {
        AppState {
            db,
            clock,
            config: Arc::new(config),
            templates: Arc::new(templates::environment()),
            metrics: metrics::Metrics::install(),
            monitors: Arc::default(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// The whole application: pages, API, assets and operations endpoints, with the middleware stack.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .merge(ui::routes())
        .nest("/api/v1", api::routes())
        .merge(api::docs_routes())
        .merge(assets::routes())
        .merge(metrics::routes());
    security::layers(app, state.clone()).with_state(state)
}
