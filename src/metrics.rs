//! The metric catalogue (DESIGN.md §6): every name in one place, prefix `mailbrake_`.
//!
//! Labels are bounded sets (verdicts, reasons, results); no sender or recipient ever appears
//! in a label. Each server owns its own registry, so several servers can run in one test.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::verdict::HoldReason;

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    /// Messages by final outcome: `forward`, `hold`, `reject`, `tempfail`.
    pub messages_total: IntCounterVec,
    /// Holds by reason and mode (`enforce`, or `monitor` when the policy only observes).
    pub holds_total: IntCounterVec,
    /// Messages in the quarantine in state `held`.
    pub quarantine_messages: IntGauge,
    /// Age of the oldest held message (set at scrape time).
    pub quarantine_oldest_message_age_seconds: IntGauge,
    /// Releases by result: `ok`, `failed`.
    pub releases_total: IntCounterVec,
    /// Upstream transactions by result: `ok`, `tempfail`, `permfail`, `error`.
    pub upstream_requests_total: IntCounterVec,
    pub upstream_duration_seconds: Histogram,
    pub inspect_duration_seconds: Histogram,
    pub smtp_connections_active: IntGauge,
    /// Connections refused at once, by reason: `limit_global`, `limit_per_ip`, `shutdown`.
    pub smtp_connections_rejected_total: IntCounterVec,
    /// AUTH attempts by result: `success`, `failure`, `throttled`.
    pub auth_attempts_total: IntCounterVec,
    pub breakers_open: IntGauge,
    pub breaker_trips_total: IntCounter,
    /// Hold notices to senders by result: `sent`, `failed`, `suppressed` (rate limit).
    pub notices_total: IntCounterVec,
    /// Senders whose batch state is in memory now.
    pub senders_active: IntGauge,
    /// Duration of one durable quarantine commit (a batch of spool files).
    pub store_commit_duration_seconds: Histogram,
    /// Free bytes in the data directory's file system (set at scrape time).
    pub spool_free_bytes: IntGauge,
    pub spool_free_floor_bytes: IntGauge,
    pub build_info: IntGaugeVecInfo,
}

/// `mailbrake_build_info{version} 1`.
pub struct IntGaugeVecInfo(pub prometheus::IntGaugeVec);

/// Latency buckets from 100 µs to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(format!("mailbrake_{name}"), help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    register(r, Box::new(c.clone()), name);
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(format!("mailbrake_{name}"), help)
        .unwrap_or_else(|e| unreachable_metric(name, e));
    register(r, Box::new(g.clone()), name);
    g
}

fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(
        HistogramOpts::new(format!("mailbrake_{name}"), help).buckets(SECONDS_BUCKETS.to_vec()),
    )
    .unwrap_or_else(|e| unreachable_metric(name, e));
    register(r, Box::new(h.clone()), name);
    h
}

fn register(r: &Registry, c: Box<dyn prometheus::core::Collector>, name: &str) {
    if let Err(e) = r.register(c) {
        unreachable_metric(name, e)
    }
}

/// Metric construction fails only for invalid names or duplicate registration, both fixed
/// at compile time by this catalogue; the unit test below builds every metric once.
#[allow(clippy::panic)]
fn unreachable_metric(name: &str, e: prometheus::Error) -> ! {
    panic!("metric {name} cannot be registered: {e}")
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            messages_total: counter_vec(
                &r,
                "messages_total",
                "Messages by outcome after the final dot.",
                &["verdict"],
            ),
            holds_total: counter_vec(
                &r,
                "holds_total",
                "Hold decisions by reason (mode=monitor: decided but forwarded).",
                &["reason", "mode"],
            ),
            quarantine_messages: gauge(&r, "quarantine_messages", "Messages held now."),
            quarantine_oldest_message_age_seconds: gauge(
                &r,
                "quarantine_oldest_message_age_seconds",
                "Age of the oldest held message (0 when none).",
            ),
            releases_total: counter_vec(
                &r,
                "releases_total",
                "Releases of held messages by result.",
                &["result"],
            ),
            upstream_requests_total: counter_vec(
                &r,
                "upstream_requests_total",
                "Upstream transactions by result.",
                &["result"],
            ),
            upstream_duration_seconds: histogram(
                &r,
                "upstream_duration_seconds",
                "Time to deliver one message to the upstream.",
            ),
            inspect_duration_seconds: histogram(
                &r,
                "inspect_duration_seconds",
                "Time to inspect one message.",
            ),
            smtp_connections_active: gauge(&r, "smtp_connections_active", "Open SMTP sessions."),
            smtp_connections_rejected_total: counter_vec(
                &r,
                "smtp_connections_rejected_total",
                "Connections refused at once with 421.",
                &["reason"],
            ),
            auth_attempts_total: counter_vec(
                &r,
                "auth_attempts_total",
                "SMTP AUTH attempts by result.",
                &["result"],
            ),
            breakers_open: gauge(&r, "breakers_open", "Sender brakes open now."),
            breaker_trips_total: {
                let c = IntCounter::new("mailbrake_breaker_trips_total", "Sender brake trips.")
                    .unwrap_or_else(|e| unreachable_metric("breaker_trips_total", e));
                register(&r, Box::new(c.clone()), "breaker_trips_total");
                c
            },
            notices_total: counter_vec(
                &r,
                "notices_total",
                "Hold notices to senders by result.",
                &["result"],
            ),
            senders_active: gauge(&r, "senders_active", "Senders with batch state in memory."),
            store_commit_duration_seconds: histogram(
                &r,
                "store_commit_duration_seconds",
                "Time of one durable quarantine commit (write, fsync, rename, dir fsync).",
            ),
            spool_free_bytes: gauge(
                &r,
                "spool_free_bytes",
                "Free bytes in the file system of the data directory.",
            ),
            spool_free_floor_bytes: gauge(
                &r,
                "spool_free_floor_bytes",
                "Free bytes below which new mail is refused with 452 4.3.1.",
            ),
            build_info: {
                let g = prometheus::IntGaugeVec::new(
                    Opts::new("mailbrake_build_info", "Build information."),
                    &["version"],
                )
                .unwrap_or_else(|e| unreachable_metric("build_info", e));
                register(&r, Box::new(g.clone()), "build_info");
                g.with_label_values(&[crate::VERSION]).set(1);
                IntGaugeVecInfo(g)
            },
            registry: r,
        };
        // Pre-create the bounded label sets so every series exists from the first scrape
        // (rate() and alert rules need a zero before the first increment).
        for v in ["forward", "hold", "reject", "tempfail"] {
            m.messages_total.with_label_values(&[v]);
        }
        for reason in HoldReason::ALL {
            for mode in ["enforce", "monitor"] {
                m.holds_total.with_label_values(&[reason.as_str(), mode]);
            }
        }
        for v in ["ok", "failed"] {
            m.releases_total.with_label_values(&[v]);
        }
        for v in ["ok", "tempfail", "permfail", "error"] {
            m.upstream_requests_total.with_label_values(&[v]);
        }
        for v in ["limit_global", "limit_per_ip", "shutdown"] {
            m.smtp_connections_rejected_total.with_label_values(&[v]);
        }
        for v in ["success", "failure", "throttled"] {
            m.auth_attempts_total.with_label_values(&[v]);
        }
        for v in ["sent", "failed", "suppressed"] {
            m.notices_total.with_label_values(&[v]);
        }
        m
    }

    /// The text exposition format (plus process_* metrics on Linux).
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers the process collector (CPU, RSS, fds) once in the default registry.
pub fn register_process_metrics() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = prometheus::register(Box::new(pc));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_renders_every_name() {
        let m = Metrics::new();
        m.holds_total
            .with_label_values(&["visible_recipients", "enforce"])
            .inc();
        let text = m.render();
        for name in [
            "mailbrake_messages_total",
            "mailbrake_holds_total",
            "mailbrake_quarantine_messages",
            "mailbrake_quarantine_oldest_message_age_seconds",
            "mailbrake_releases_total",
            "mailbrake_upstream_requests_total",
            "mailbrake_upstream_duration_seconds",
            "mailbrake_inspect_duration_seconds",
            "mailbrake_smtp_connections_active",
            "mailbrake_smtp_connections_rejected_total",
            "mailbrake_auth_attempts_total",
            "mailbrake_breakers_open",
            "mailbrake_breaker_trips_total",
            "mailbrake_store_commit_duration_seconds",
            "mailbrake_build_info",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
        assert!(
            text.contains(
                "mailbrake_holds_total{mode=\"enforce\",reason=\"visible_recipients\"} 1"
            )
        );
    }
}
