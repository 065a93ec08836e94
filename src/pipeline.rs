//! After the final dot: inspect, decide, then forward, hold or reject — and the reply.
//!
//! `250` is sent only when the upstream accepted the message (its own reply is passed on) or
//! when the quarantine has made it durable (`250 2.0.0 Ok: held as <id>`). Any storage
//! failure answers `451 4.3.5`; inspection that cannot finish holds as `uninspectable`.
//! Every message ends in exactly one `info` log event with its id, verdict and reasons.

use std::sync::Arc;
use std::time::Instant;

use crate::envelope::Envelope;
use crate::inspect::{self, Report};
use crate::policy::Policy;
use crate::quarantine::spool::SpoolMeta;
use crate::quarantine::{Begin, Entry, QuarantineError, unix_now};
use crate::relay::DeliveryError;
use crate::server::App;
use crate::smtp::reply::{self, Reply};
use crate::verdict::{Decision, HoldReason, Verdict};

/// Inspects `message` off the async workers, within the inspection deadline.
pub async fn inspect_bounded(
    app: &App,
    policy: Arc<Policy>,
    envelope: &Envelope,
    message: &Arc<Vec<u8>>,
) -> Report {
    let env = envelope.clone();
    let msg = Arc::clone(message);
    let started = Instant::now();
    let task = tokio::task::spawn_blocking(move || inspect::inspect(&env, &msg, &policy));
    let report = match tokio::time::timeout(app.config.limits.inspect_timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            tracing::error!("inspection failed (panic in an inspector); holding the message");
            Report {
                findings: vec![inspect::uninspectable("the inspector failed")],
                ..Report::default()
            }
        }
        Err(_) => Report {
            findings: vec![inspect::uninspectable("the inspection deadline passed")],
            ..Report::default()
        },
    };
    app.metrics
        .inspect_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    report
}

/// Handles one received message and returns the reply for the client.
pub async fn process(app: &Arc<App>, id: String, envelope: Envelope, message: Vec<u8>) -> Reply {
    let message = Arc::new(message);
    let policy = app.policy();
    let report = inspect_bounded(app, Arc::clone(&policy), &envelope, &message).await;
    let subject = report.subject.clone();
    let verdict = policy.decide(report.findings);
    count_decision(app, &verdict);
    match verdict.decision {
        Decision::Forward => forward(app, &id, &envelope, &message, &verdict).await,
        Decision::Hold => hold(app, id, envelope, message, verdict, subject).await,
        Decision::Reject => {
            app.metrics
                .messages_total
                .with_label_values(&["reject"])
                .inc();
            tracing::info!(id = %id, verdict = "reject", reasons = ?names(&verdict.reasons),
                rcpts = envelope.rcpt_to.len(), size = message.len(), "message rejected by policy");
            Reply::new(550, format!("5.7.1 {}", verdict.reject_text()))
        }
    }
}

fn names(reasons: &[HoldReason]) -> Vec<&'static str> {
    reasons.iter().map(|r| r.as_str()).collect()
}

fn count_decision(app: &App, v: &Verdict) {
    if v.policy_decision == Decision::Forward {
        return;
    }
    let mode = if v.monitor { "monitor" } else { "enforce" };
    for r in &v.reasons {
        app.metrics
            .holds_total
            .with_label_values(&[r.as_str(), mode])
            .inc();
    }
}

async fn forward(app: &App, id: &str, env: &Envelope, message: &[u8], verdict: &Verdict) -> Reply {
    app.metrics
        .messages_total
        .with_label_values(&["forward"])
        .inc();
    let started = Instant::now();
    let result = app.relay.deliver(id, env, message).await;
    app.metrics
        .upstream_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    let monitor_reasons = if verdict.monitor {
        names(&verdict.reasons)
    } else {
        Vec::new()
    };
    match result {
        Ok(r) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["ok"])
                .inc();
            tracing::info!(id = %id, verdict = "forward", monitor_would = ?monitor_reasons,
                rcpts = env.rcpt_to.len(), size = message.len(), upstream = %r, "message forwarded");
            r
        }
        Err(DeliveryError::Temporary(r)) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["tempfail"])
                .inc();
            tracing::warn!(id = %id, verdict = "forward", reply = %r, "upstream failed temporarily; client told to retry");
            r
        }
        Err(DeliveryError::Permanent(r)) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["permfail"])
                .inc();
            tracing::info!(id = %id, verdict = "forward", reply = %r, "upstream refused the message");
            r
        }
    }
}

async fn hold(
    app: &App,
    id: String,
    envelope: Envelope,
    message: Arc<Vec<u8>>,
    verdict: Verdict,
    subject: Option<String>,
) -> Reply {
    let rcpts = envelope.rcpt_to.len();
    let size = message.len();
    let meta = SpoolMeta {
        id: id.clone(),
        envelope,
        received_at: unix_now(),
        reasons: verdict.reasons.clone(),
        findings: verdict.findings,
        subject,
        release_after: None,
    };
    match app.quarantine.hold(meta, message).await {
        Ok(_) => {
            app.metrics
                .messages_total
                .with_label_values(&["hold"])
                .inc();
            tracing::info!(id = %id, verdict = "hold", reasons = ?names(&verdict.reasons), rcpts, size, "message held");
            Reply::new(250, format!("2.0.0 Ok: held as {id}"))
        }
        Err(e) => {
            app.metrics
                .messages_total
                .with_label_values(&["tempfail"])
                .inc();
            tracing::error!(id = %id, error = %e, "cannot store a held message; client told to retry");
            reply_from(reply::STORE_FAILED)
        }
    }
}

fn reply_from(wire: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(wire);
    let text = text.trim_end();
    let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(451);
    Reply::new(code, text.get(4..).unwrap_or(""))
}

/// What a release did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseOutcome {
    pub entry: Entry,
    /// False when the upstream did not accept the message (it stays held).
    pub released: bool,
    /// True when the message had been released before (nothing was sent).
    pub already: bool,
    /// The upstream's reply, or the error.
    pub detail: String,
}

/// Releases a held message: forward upstream, then record the reply. A failed delivery
/// leaves the message held with the error recorded.
pub async fn release(app: &App, id: &str) -> Result<ReleaseOutcome, QuarantineError> {
    let ticket = match app.quarantine.begin_release(id)? {
        Begin::Already(entry) => {
            let detail = entry.upstream_reply.clone().unwrap_or_default();
            return Ok(ReleaseOutcome {
                entry,
                released: true,
                already: true,
                detail,
            });
        }
        Begin::Ready(t) => t,
    };
    let env = ticket.meta.envelope.clone();
    let started = Instant::now();
    let result = app.relay.deliver(id, &env, &ticket.body).await;
    app.metrics
        .upstream_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(r) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["ok"])
                .inc();
            app.metrics.releases_total.with_label_values(&["ok"]).inc();
            let detail = r.to_string();
            let entry = app.quarantine.finish_release(ticket, &detail)?;
            tracing::info!(id = %id, upstream = %detail, "held message released");
            Ok(ReleaseOutcome {
                entry,
                released: true,
                already: false,
                detail,
            })
        }
        Err(e) => {
            let label = if matches!(e, DeliveryError::Temporary(_)) {
                "tempfail"
            } else {
                "permfail"
            };
            app.metrics
                .upstream_requests_total
                .with_label_values(&[label])
                .inc();
            app.metrics
                .releases_total
                .with_label_values(&["failed"])
                .inc();
            let detail = e.reply().to_string();
            let entry = app.quarantine.fail_release(ticket, &detail)?;
            tracing::warn!(id = %id, error = %detail, "release failed; the message stays held");
            Ok(ReleaseOutcome {
                entry,
                released: false,
                already: false,
                detail,
            })
        }
    }
}
