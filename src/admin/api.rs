//! Handlers of the admin API. Errors are JSON `{"error": "..."}` with a fitting status;
//! internal details stay in the log.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use crate::quarantine::{Filter, QuarantineError, State as QState};
use crate::server::App;
use crate::verdict::HoldReason;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/quarantine", get(list))
        .route("/api/v1/quarantine/{id}", get(show))
        .route("/api/v1/quarantine/{id}/raw", get(raw))
        .route("/api/v1/quarantine/{id}/release", post(release))
        .route("/api/v1/quarantine/{id}/delete", post(delete))
        .route("/api/v1/breakers", get(breakers))
        .route("/api/v1/breakers/reset", post(breaker_reset))
        .route("/api/v1/policy/reload", post(reload))
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn q_error(e: QuarantineError) -> Response {
    match &e {
        QuarantineError::NotFound(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        QuarantineError::NotHeld { .. } | QuarantineError::Busy(_) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        _ => {
            tracing::error!(error = %e, "admin request failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage error (see the server log)",
            )
        }
    }
}

fn check_id(id: &str) -> Result<(), Box<Response>> {
    if crate::ids::is_valid(id) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no message with id {}", id.escape_debug()),
        )))
    }
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let policy = app.policy();
    Json(json!({
        "version": crate::VERSION,
        "mode": if policy.mode == crate::policy::Mode::Monitor { "monitor" } else { "enforce" },
        "upstream": app.relay.label(),
        "held": app.quarantine.held_count(),
        "oldest_held_age_seconds": app.quarantine.oldest_held_age(),
        "sessions": app.limiter.active(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    reason: Option<String>,
    sender: Option<String>,
    limit: Option<usize>,
}

async fn list(State(app): State<Arc<App>>, Query(q): Query<ListQuery>) -> Response {
    let state = match q.state.as_deref() {
        None | Some("all") => None,
        Some(s) => match QState::parse(s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "state must be held, released, deleted or all",
                );
            }
        },
    };
    let reason = match q.reason.as_deref() {
        None => None,
        Some(r) => match HoldReason::parse(r) {
            Some(r) => Some(r),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown reason {}", r.escape_debug()),
                );
            }
        },
    };
    let filter = Filter {
        state,
        reason,
        sender: q.sender,
        limit: q.limit,
    };
    let entries = tokio::task::spawn_blocking(move || app.quarantine.list(&filter)).await;
    match entries {
        Ok(e) => Json(json!({ "entries": e })).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "listing failed"),
    }
}

async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_id(&id) {
        return *r;
    }
    match app.quarantine.get(&id) {
        Ok(e) => Json(e).into_response(),
        Err(e) => q_error(e),
    }
}

async fn raw(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_id(&id) {
        return *r;
    }
    let a = Arc::clone(&app);
    match tokio::task::spawn_blocking(move || a.quarantine.raw(&id)).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "message/rfc822")], bytes).into_response(),
        Ok(Err(e)) => q_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "read failed"),
    }
}

async fn release(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_id(&id) {
        return *r;
    }
    match crate::pipeline::release(&app, &id).await {
        Ok(outcome) => {
            let status = if outcome.released {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, Json(outcome)).into_response()
        }
        Err(e) => q_error(e),
    }
}

async fn delete(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if let Err(r) = check_id(&id) {
        return *r;
    }
    let a = Arc::clone(&app);
    match tokio::task::spawn_blocking(move || crate::pipeline::delete(&a, &id)).await {
        Ok(Ok(e)) => Json(e).into_response(),
        Ok(Err(e)) => q_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "delete failed"),
    }
}

async fn breakers(State(app): State<Arc<App>>) -> Response {
    let list = app.batches.breakers.list(crate::quarantine::unix_now());
    Json(json!({ "breakers": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct ResetBody {
    sender: String,
}

async fn breaker_reset(State(app): State<Arc<App>>, Json(body): Json<ResetBody>) -> Response {
    match app.batches.reset(&app.policy(), body.sender.trim()) {
        Some(b) => {
            tracing::info!(sender = %b.sender.escape_debug(), reason = b.reason.as_str(), held_since = b.held_since, "sender brake reset");
            Json(json!({ "reset": b })).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!("no open brake for {}", body.sender.escape_debug()),
        ),
    }
}

async fn reload(State(app): State<Arc<App>>) -> Response {
    match app.reload_policy() {
        Ok(()) => {
            tracing::info!("policy reloaded");
            Json(json!({ "reloaded": true })).into_response()
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}
