//! Prometheus metrics: requests by route and status, latency histogram, database pool.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::AppState;

#[derive(Clone)]
pub struct Metrics {
    // A recorder per server rather than a process-global one: tests run several servers in one
    // process, and each must count only its own requests.
    recorder: Arc<PrometheusRecorder>,
}

impl Metrics {
    pub fn install() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("http_request_duration_seconds".into()),
                &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            )
            .expect("static bucket list is not empty")
            // Monitor runs: start − slot (the bound is 1 s), and the write of a batch.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Prefix("monitor_".into()),
                &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0],
            )
            .expect("static bucket list is not empty")
            .build_recorder();
        Metrics { recorder: Arc::new(recorder) }
    }

    /// Runs `f` with this server's recorder (metrics recorded outside a request).
    pub(crate) fn record<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&*self.recorder, f)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render)).route("/healthz", get(|| async { "ok" })).route("/readyz", get(ready))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn render(State(state): State<AppState>) -> Response {
    let (size, idle) = state.db.pool_stats();
    metrics::with_local_recorder(&*state.metrics.recorder, || {
        metrics::gauge!("db_pool_connections").set(f64::from(size));
        metrics::gauge!("db_pool_idle_connections").set(idle as f64);
        state.monitors.export_metrics();
    });
    let handle = state.metrics.recorder.handle();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // The route pattern, not the raw path, so that ids do not explode the label set.
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let secs = started.elapsed().as_secs_f64();
    metrics::with_local_recorder(&*state.metrics.recorder, || {
        metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
            .increment(1);
        metrics::histogram!("http_request_duration_seconds", "route" => route).record(secs);
    });
    resp
}
