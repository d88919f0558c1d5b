//! The one HTTP listener (`METRICS_ADDR`): `/metrics` (Prometheus), `/healthz` (liveness)
//! and `/readyz` (readiness). Handlers only read the [`Observer`]; none touches a server.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Observer;
use crate::error::{Error, ErrorKind, Result};

/// Binds `addr`. Separate from [`serve`] so a bad address fails before the relay starts.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::with_source(
            ErrorKind::Config,
            format!("cannot listen on METRICS_ADDR {addr}"),
            e,
        )
    })
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, observer: Arc<Observer>, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(observer);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

async fn metrics(State(observer): State<Arc<Observer>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        observer.metrics.encode(),
    )
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(observer): State<Arc<Observer>>) -> impl IntoResponse {
    let readiness = observer.health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}
