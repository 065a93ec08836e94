//! The admin HTTP API (for the `mailbrake` CLI) and the metrics endpoint.
//!
//! The API listens on loopback by default and every request needs
//! `Authorization: Bearer <token>` with the token the server wrote to
//! `<data-dir>/admin.token` (mode 0600). `/metrics`, `/healthz` and `/readyz` are on their
//! own listener without a token, for Prometheus and health checks.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET  | `/api/v1/status` | version, mode, upstream, held count |
//! | GET  | `/api/v1/quarantine?state=&reason=&sender=&limit=` | entries, oldest first |
//! | GET  | `/api/v1/quarantine/{id}` | one entry with its findings |
//! | GET  | `/api/v1/quarantine/{id}/raw` | the held message (`message/rfc822`) |
//! | POST | `/api/v1/quarantine/{id}/release` | forward upstream; 502 if the upstream refused |
//! | POST | `/api/v1/quarantine/{id}/delete` | delete (idempotent) |
//! | GET  | `/api/v1/breakers` | open sender brakes |
//! | POST | `/api/v1/breakers/reset` | `{"sender": "..."}` |
//! | POST | `/api/v1/policy/reload` | re-read the policy directory |

mod api;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::server::App;

/// The admin API router (token-protected).
pub fn api_router(app: Arc<App>) -> Router {
    api::routes()
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            require_token,
        ))
        .with_state(app)
}

/// The metrics router: `/metrics`, `/healthz`, `/readyz`.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(app)
}

pub async fn serve_api(app: Arc<App>, listener: TcpListener) {
    let token = app.shutdown.clone();
    let r = axum::serve(listener, api_router(app))
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "admin API stopped");
    }
}

pub async fn serve_metrics(app: Arc<App>, listener: TcpListener) {
    let token = app.shutdown.clone();
    let r = axum::serve(listener, metrics_router(app))
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

async fn require_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), app.admin_token.as_bytes()) {
        next.run(req).await
    } else {
        api::error(StatusCode::UNAUTHORIZED, "missing or wrong admin token")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let m = &app.metrics;
    m.quarantine_messages
        .set(app.quarantine.held_count() as i64);
    m.quarantine_oldest_message_age_seconds
        .set(app.quarantine.oldest_held_age() as i64);
    m.spool_free_bytes
        .set(i64::try_from(app.free_space()).unwrap_or(i64::MAX));
    m.spool_free_floor_bytes
        .set(i64::try_from(app.config.limits.free_space_floor()).unwrap_or(i64::MAX));
    m.breakers_open
        .set(app.batches.breakers.count(crate::quarantine::unix_now()) as i64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if app.quarantine.index_failed() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "quarantine index unwritable\n",
        )
            .into_response();
    }
    if app.storage_floor_reply().is_some() {
        return (StatusCode::SERVICE_UNAVAILABLE, "low disk\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}
