//! After the final dot: inspect, judge the sender's batch, decide, then forward (as is or with
//! To/Cc made undisclosed), delay, hold or reject — and the reply.
//!
//! `250` is sent only when the upstream accepted the message (its own reply is passed on) or
//! when the quarantine has made it durable (`250 2.0.0 Ok: held as <id>`, also for timed
//! holds). Any storage failure answers `451 4.3.5`; inspection that cannot finish holds as
//! `uninspectable`. The sender's windows count only mail that leaves: a held or rejected
//! message is never counted (a held one counts when it is released), and a forward the
//! upstream did not take (4xx, 5xx) is taken back out, so a retry is counted once.
//! Every message ends in exactly one `info` log event with its id, verdict and reasons.

use std::sync::Arc;
use std::time::Instant;

use crate::batch::Observation;
use crate::envelope::{Envelope, domain_of, is_internal};
use crate::inspect::{self, Report};
use crate::policy::Policy;
use crate::quarantine::spool::SpoolMeta;
use crate::quarantine::{Begin, Entry, QuarantineError, unix_now};
use crate::relay::DeliveryError;
use crate::server::App;
use crate::smtp::reply::{self, Reply};
use crate::verdict::{Action, Decision, HoldReason, Verdict};

/// Inspects `message` off the async workers, within the inspection deadline, except a small
/// plain-text message ([`inspect::mime_prescan::text_only`]), which is inspected in place.
/// Attachments of held messages are recognised without scanning (`known_attachment`).
pub async fn inspect_bounded(
    app: &Arc<App>,
    policy: Arc<Policy>,
    envelope: &Envelope,
    message: &Arc<Vec<u8>>,
) -> Report {
    let env = envelope.clone();
    let msg = Arc::clone(message);
    let a = Arc::clone(app);
    let started = Instant::now();
    if inspect::mime_prescan::text_only(&msg) {
        // Small plain ASCII prose: tens of microseconds (at worst ~0.6 ms, see text_only).
        // Inspecting it here saves two thread hand-offs per message (~9 % of the relay's
        // CPU at 10 KB).
        let report = inspect::inspect_with(&env, &msg, &policy, &|d| a.batches.known.contains(d));
        app.metrics
            .inspect_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        return report;
    }
    let task = tokio::task::spawn_blocking(move || {
        inspect::inspect_with(&env, &msg, &policy, &|d| a.batches.known.contains(d))
    });
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

fn names(reasons: &[HoldReason]) -> Vec<&'static str> {
    reasons.iter().map(|r| r.as_str()).collect()
}

/// Handles one received message and returns the reply for the client.
pub async fn process(app: &Arc<App>, id: String, envelope: Envelope, message: Vec<u8>) -> Reply {
    let message = Arc::new(message);
    let policy = app.policy();
    let report = inspect_bounded(app, Arc::clone(&policy), &envelope, &message).await;
    let now = unix_now();
    let mut obs = app
        .batches
        .observe(&policy, &envelope, &report.tokens, &report.findings, now);
    let mut findings = report.findings;
    findings.append(&mut obs.findings);
    let mut verdict = policy.decide(findings);
    let external = envelope
        .rcpt_to
        .iter()
        .any(|r| domain_of(r).is_some_and(|d| !is_internal(&d, &policy.internal_domains)));
    // A `bcc` finding means "never send these To/Cc visible": a message held or delayed for
    // another reason keeps that rewrite for its release (monitor mode forwards unchanged).
    let undisclose = !verdict.monitor && verdict.findings.iter().any(|f| f.action == Action::Bcc);
    if !verdict.monitor
        && matches!(verdict.decision, Decision::Forward | Decision::Bcc)
        && policy.delay.external_mail
        && external
    {
        verdict.decision = Decision::Delay;
    }
    count_decision(app, &verdict);
    if let Some(r) = app.batches.after_verdict(&policy, &obs, &verdict, now) {
        app.metrics.breaker_trips_total.inc();
        tracing::warn!(sender = %policy.sender.key(&envelope).escape_debug(), reason = r.as_str(), id = %id,
            "sender brake opened: everything from this sender is held until `mailbrake breaker reset`");
    }
    let subject = report.subject;
    match verdict.decision {
        Decision::Forward => finish_forward(
            app,
            &obs,
            forward(app, &id, &envelope, &message, &verdict).await,
        ),
        Decision::Bcc => {
            let rewritten = crate::rewrite::undisclosed_recipients(&message);
            finish_forward(
                app,
                &obs,
                forward(app, &id, &envelope, &rewritten, &verdict).await,
            )
        }
        Decision::Hold => {
            let r = hold(
                app,
                id,
                envelope,
                message,
                &verdict,
                subject,
                report.implicated,
                None,
                undisclose,
            )
            .await;
            // A held message was never counted (it counts if and when it is released).
            r
        }
        Decision::Delay => {
            let until = now + policy.delay.duration.as_secs();
            let r = hold(
                app,
                id,
                envelope,
                message,
                &verdict,
                subject,
                Vec::new(),
                Some(until),
                undisclose,
            )
            .await;
            // Counted as leaving; not stored after all (451): take it back for the retry.
            if !r.is_positive() {
                app.batches.undo(&obs);
            }
            r
        }
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

/// A forward that did not end in 2xx did not send anything: take it out of the windows.
fn finish_forward(app: &App, obs: &Observation, r: Reply) -> Reply {
    if !r.is_positive() {
        app.batches.undo(obs);
    }
    r
}

/// `holds_total{reason,mode}`: hold decisions only (a reject, a delay or a Bcc rewrite is
/// not a hold); in monitor mode, the holds the policy would have made.
fn count_decision(app: &App, v: &Verdict) {
    if v.policy_decision != Decision::Hold {
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

/// Forwards upstream and answers with the upstream's reply. `messages_total` counts what the
/// client was told: `forward` (2xx), `tempfail` (4xx: not sent, retry), `reject` (5xx).
async fn forward(app: &App, id: &str, env: &Envelope, message: &[u8], verdict: &Verdict) -> Reply {
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
    let how = if verdict.decision == Decision::Bcc {
        "forward (To/Cc undisclosed)"
    } else {
        "forward"
    };
    match result {
        Ok(r) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["ok"])
                .inc();
            app.metrics
                .messages_total
                .with_label_values(&["forward"])
                .inc();
            tracing::info!(id = %id, verdict = how, monitor_would = ?monitor_reasons,
                rcpts = env.rcpt_to.len(), size = message.len(), upstream = %r, "message forwarded");
            r
        }
        Err(DeliveryError::Temporary(r)) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["tempfail"])
                .inc();
            app.metrics
                .messages_total
                .with_label_values(&["tempfail"])
                .inc();
            tracing::warn!(id = %id, verdict = how, reply = %r, "upstream failed temporarily; client told to retry");
            r
        }
        Err(DeliveryError::Permanent(r)) => {
            app.metrics
                .upstream_requests_total
                .with_label_values(&["permfail"])
                .inc();
            app.metrics
                .messages_total
                .with_label_values(&["reject"])
                .inc();
            tracing::info!(id = %id, verdict = how, reply = %r, "upstream refused the message");
            r
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn hold(
    app: &Arc<App>,
    id: String,
    envelope: Envelope,
    message: Arc<Vec<u8>>,
    verdict: &Verdict,
    subject: Option<String>,
    implicated: Vec<String>,
    release_after: Option<u64>,
    undisclose_on_release: bool,
) -> Reply {
    let rcpts = envelope.rcpt_to.len();
    let size = message.len();
    let sender = envelope.mail_from.clone();
    let sender_key = app.policy().sender.key(&envelope);
    let meta = SpoolMeta {
        id: id.clone(),
        envelope,
        received_at: unix_now(),
        reasons: verdict.reasons.clone(),
        findings: verdict.findings.clone(),
        subject,
        release_after,
        attachments: implicated,
        undisclose_on_release,
    };
    match app.quarantine.hold(meta, message).await {
        Ok(entry) => {
            let kind = if release_after.is_some() {
                "delay"
            } else {
                "hold"
            };
            app.metrics
                .messages_total
                .with_label_values(&["hold"])
                .inc();
            app.batches.known.add(&entry.attachments);
            tracing::info!(id = %id, verdict = kind, reasons = ?names(&verdict.reasons), rcpts, size, "message held");
            if release_after.is_none() {
                notify(app, &id, &sender, &sender_key, &verdict.reasons, rcpts);
            }
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

/// Sends the hold notice to the envelope `sender` in the background (the client's 250 does
/// not wait for it), rate limited by the sender identity `sender_key` (the AUTH user, else
/// the envelope sender: per-message return addresses share one allowance).
fn notify(
    app: &Arc<App>,
    id: &str,
    sender: &str,
    sender_key: &str,
    reasons: &[HoldReason],
    rcpts: usize,
) {
    if !app.notifier.enabled() || sender.is_empty() {
        return;
    }
    if !app.notifier.take_slot(sender_key, unix_now()) {
        app.metrics
            .notices_total
            .with_label_values(&["suppressed"])
            .inc();
        return;
    }
    let notice = app
        .notifier
        .compose(sender, id, reasons, rcpts, std::time::SystemTime::now());
    let env = Envelope {
        mail_from: String::new(),
        rcpt_to: vec![sender.to_string()],
        smtputf8: !sender.is_ascii(),
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        helo: app.hostname.clone(),
        auth_user: None,
        tls: false,
    };
    let (a, notice_id) = (Arc::clone(app), format!("{id}-notice"));
    tokio::spawn(async move {
        match a.relay.deliver(&notice_id, &env, &notice).await {
            Ok(_) => a.metrics.notices_total.with_label_values(&["sent"]).inc(),
            Err(e) => {
                a.metrics.notices_total.with_label_values(&["failed"]).inc();
                tracing::warn!(id = %notice_id, error = %e.reply(), "hold notice not delivered");
            }
        }
    });
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
    // The bcc decision the message was held with still holds when it is released.
    let rewritten = ticket
        .meta
        .undisclose_on_release
        .then(|| crate::rewrite::undisclosed_recipients(&ticket.body));
    let body = rewritten.as_deref().unwrap_or(&ticket.body);
    let started = Instant::now();
    let result = app.relay.deliver(id, &env, body).await;
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
            // It left now: it counts in the sender's windows (a timed hold was counted when
            // it was accepted).
            if ticket.meta.release_after.is_none() {
                app.batches.count_released(&app.policy(), &env, unix_now());
            }
            let detail = r.to_string();
            let entry = app.quarantine.finish_release(ticket, &detail)?;
            app.batches.known.remove(&entry.attachments);
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

/// Deletes a quarantined message (and forgets its attachments as "known").
pub fn delete(app: &App, id: &str) -> Result<Entry, QuarantineError> {
    let was_held = app
        .quarantine
        .get(id)
        .map(|e| e.state == crate::quarantine::State::Held)
        .unwrap_or(false);
    let e = app.quarantine.delete(id)?;
    if was_held {
        app.batches.known.remove(&e.attachments);
    }
    tracing::info!(id = %e.id, "held message deleted");
    Ok(e)
}

/// Sends the timed holds that are due (called by the housekeeping loop). A failed send stays
/// held and is tried again a minute later. A message whose sender's brake is open now (it
/// opened after the delay started) is not sent: it becomes a `breaker_open` hold.
pub async fn release_due(app: &App) {
    let now = unix_now();
    for id in app.quarantine.due(now) {
        let policy = app.policy();
        if let Ok(e) = app.quarantine.get(&id)
            && let key = policy.sender.key_of(e.auth_user.as_deref(), &e.from)
            && let Some(b) = app.batches.breakers.get(&key, now)
        {
            let finding = crate::verdict::Finding {
                reason: HoldReason::BreakerOpen,
                action: Action::Hold,
                summary: format!(
                    "the sender's brake opened ({}) while this message was delayed: it is held until released by hand",
                    b.reason
                ),
                location: "sender".into(),
                count: None,
                columns: Vec::new(),
            };
            match app
                .quarantine
                .cancel_delay(&id, HoldReason::BreakerOpen, finding)
            {
                Ok(_) => {
                    app.batches.breakers.note_held(&key);
                    app.metrics
                        .holds_total
                        .with_label_values(&[HoldReason::BreakerOpen.as_str(), "enforce"])
                        .inc();
                    tracing::info!(id = %id, verdict = "hold", reasons = ?[HoldReason::BreakerOpen.as_str()],
                        "delayed message not sent: the sender's brake is open");
                }
                Err(err) => {
                    tracing::warn!(id = %id, error = %err, "cannot turn a delayed message into a hold; trying again later");
                    app.quarantine.postpone(&id, now + 60);
                }
            }
            continue;
        }
        match release(app, &id).await {
            Ok(o) if o.released => tracing::info!(id = %id, "delayed message sent"),
            Ok(_) | Err(_) => app.quarantine.postpone(&id, now + 60),
        }
    }
}
