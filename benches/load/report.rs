//! The results: a Markdown table with every figure, the targets with PASS/FAIL, and
//! the JSON file `check.py` compares against the recorded baseline.

use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{CellResult, PathKind, PathResult};

/// Where and how the run happened.
pub struct Meta {
    pub date: String,
    pub commit: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub quick: bool,
    pub wall_s: f64,
    pub load_before: String,
    pub load_after: String,
    pub postfix_concurrency: usize,
    pub gen_threads: usize,
    pub postfix_skip: Option<String>,
    pub postfix_version: String,
}

impl Meta {
    pub fn collect(
        quick: bool,
        wall: Duration,
        load_before: String,
        postfix_concurrency: usize,
        gen_threads: usize,
        postfix_skip: Option<String>,
    ) -> Meta {
        let repo = env!("CARGO_MANIFEST_DIR");
        let cmd = |prog: &str, args: &[&str]| {
            Command::new(prog)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let mut commit = cmd("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
        if !cmd(
            "git",
            &[
                "-C",
                repo,
                "status",
                "--porcelain",
                "--",
                "src",
                "Cargo.toml",
                "Cargo.lock",
            ],
        )
        .is_empty()
        {
            commit.push_str(" (+ uncommitted changes in src/)");
        }
        Meta {
            date: cmd("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            commit,
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map_or_else(|| "unknown".into(), |s| s.trim().to_string()),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            quick,
            wall_s: wall.as_secs_f64(),
            load_before,
            load_after: loadavg(),
            postfix_concurrency,
            gen_threads,
            postfix_skip,
            postfix_version: if Path::new(crate::relay::POSTFIX).exists() {
                cmd("/usr/sbin/postconf", &["-d", "-h", "mail_version"])
            } else {
                String::new()
            },
        }
    }
}

/// /proc/loadavg's 1, 5 and 15-minute averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One of the targets, evaluated.
pub struct Target {
    pub id: &'static str,
    pub text: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub higher_is_better: bool,
    pub unit: &'static str,
    /// Why the value is missing or suspect.
    pub caveat: Option<String>,
}

impl Target {
    pub fn verdict(&self) -> &'static str {
        match (self.value, &self.caveat) {
            (None, _) => "SKIP",
            (Some(_), Some(_)) => "FAIL",
            (Some(v), None) => {
                let ok = if self.higher_is_better {
                    v >= self.threshold
                } else {
                    v <= self.threshold
                };
                if ok { "PASS" } else { "FAIL" }
            }
        }
    }
}

fn cell<'a>(cells: &'a [CellResult], name: &str) -> Option<&'a CellResult> {
    cells.iter().find(|c| c.cell.name == name)
}

fn path<'a>(cells: &'a [CellResult], name: &str, p: PathKind) -> Option<&'a PathResult> {
    cell(cells, name)?.get(p)
}

/// Throughput ratio of path `x` to path `y` in a cell (messages/s; equal N and size make it
/// the MB/s ratio too).
fn ratio(cells: &[CellResult], name: &str, x: PathKind, y: PathKind) -> Option<f64> {
    let (x, y) = (path(cells, name, x)?, path(cells, name, y)?);
    (y.msgs_per_s > 0.0).then(|| x.msgs_per_s / y.msgs_per_s)
}

/// Problems of the paths a figure is made of.
fn caveat(cells: &[CellResult], name: &str, paths: &[PathKind]) -> Option<String> {
    let c = cell(cells, name)?;
    let v: Vec<String> = paths
        .iter()
        .filter_map(|&p| c.get(p))
        .filter(|r| !r.problems.is_empty())
        .map(|r| format!("path ({}) had problems", r.path))
        .collect();
    (!v.is_empty()).then(|| v.join(", "))
}

/// Added latency (path b minus path a) in the latency cell: (p50, p99) in ms.
pub fn added_latency(cells: &[CellResult]) -> Option<(f64, f64)> {
    let a = path(cells, "latency", PathKind::Ceiling)?;
    let b = path(cells, "latency", PathKind::Mailbrake)?;
    Some((b.p50_ms - a.p50_ms, b.p99_ms - a.p99_ms))
}

pub fn targets(cells: &[CellResult]) -> Vec<Target> {
    use PathKind::{Ceiling as A, Hold as D, Mailbrake as B, Postfix as C};
    let mut t = Vec::new();
    let mut share = |id, name: &str, min: f64, what: &str| {
        t.push(Target {
            id,
            text: format!("{what}: mailbrake ≥ {:.0} % of the ceiling", min * 100.0),
            value: ratio(cells, name, B, A),
            threshold: min,
            higher_is_better: true,
            unit: "x",
            caveat: caveat(cells, name, &[A, B]),
        });
    };
    share(
        "10k_ceiling",
        "10k",
        0.40,
        "10 KB, 10 sessions, reuse (msgs/s)",
    );
    share(
        "1k_newconn_ceiling",
        "1k-newconn",
        0.35,
        "1 KB, 50 sessions, new connection (msgs/s)",
    );
    share("100k_ceiling", "100k", 0.60, "100 KB, 10 sessions (msgs/s)");
    share("1m_ceiling", "1m", 0.75, "1 MB, 10 sessions (MB/s)");
    t.push(Target {
        id: "10k_postfix",
        text: "10 KB, 10 sessions, reuse: mailbrake ≥ 5× Postfix".into(),
        value: ratio(cells, "10k", B, C),
        threshold: 5.0,
        higher_is_better: true,
        unit: "x",
        caveat: caveat(cells, "10k", &[B, C]),
    });
    for name in ["10k", "1k-newconn", "100k", "1m"] {
        t.push(Target {
            id: match name {
                "10k" => "never_slower_10k",
                "1k-newconn" => "never_slower_1k_newconn",
                "100k" => "never_slower_100k",
                _ => "never_slower_1m",
            },
            text: format!("never slower than Postfix: {name}"),
            value: ratio(cells, name, B, C),
            threshold: 1.0,
            higher_is_better: true,
            unit: "x",
            caveat: caveat(cells, name, &[B, C]),
        });
    }
    let added = added_latency(cells);
    let lat_caveat = caveat(cells, "latency", &[A, B]);
    t.push(Target {
        id: "added_p50",
        text: "latency added over the ceiling, one message in flight: p50 ≤ 0.5 ms".into(),
        value: added.map(|a| a.0),
        threshold: 0.5,
        higher_is_better: false,
        unit: "ms",
        caveat: lat_caveat.clone(),
    });
    t.push(Target {
        id: "added_p99",
        text: "latency added over the ceiling, one message in flight: p99 ≤ 2 ms".into(),
        value: added.map(|a| a.1),
        threshold: 2.0,
        higher_is_better: false,
        unit: "ms",
        caveat: lat_caveat,
    });
    let hold = path(cells, "10k", D);
    let hold_caveat = caveat(cells, "10k", &[D]);
    t.push(Target {
        id: "hold_rate",
        text: "hold path, 10 KB, 10 sessions: ≥ 2,000 msgs/s (fdatasync before each 250)".into(),
        value: hold.map(|h| h.msgs_per_s),
        threshold: 2000.0,
        higher_is_better: true,
        unit: "msgs/s",
        caveat: hold_caveat.clone(),
    });
    t.push(Target {
        id: "hold_p99",
        text: "hold path: time-to-250 p99 ≤ 5 ms".into(),
        value: hold.map(|h| h.p99_ms),
        threshold: 5.0,
        higher_is_better: false,
        unit: "ms",
        caveat: hold_caveat,
    });
    for (id, p, what) in [("rss_10k", B, "forwarding"), ("rss_10k_hold", D, "holding")] {
        t.push(Target {
            id,
            text: format!("peak RSS under the 10 KB load ({what}) ≤ 100 MB"),
            value: path(cells, "10k", p)
                .and_then(|r| r.relay_rss)
                .map(|b| b as f64 / 1e6),
            threshold: 100.0,
            higher_is_better: false,
            unit: "MB",
            caveat: caveat(cells, "10k", &[p]),
        });
    }
    t
}

fn cpu(s: Option<f64>, elapsed: f64) -> String {
    match s {
        None => "—".into(),
        Some(s) if elapsed > 0.0 => format!("{s:.2} ({:.0} %)", s / elapsed * 100.0),
        Some(s) => format!("{s:.2}"),
    }
}

fn x(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2}"))
}

pub fn markdown(meta: &Meta, cells: &[CellResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## mailbrake load benchmark{}\n",
        if meta.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(
        s,
        "{} · commit {} · {} × {} · Linux {} · Postfix {} · load average before {} / after {} · {:.0} s\n",
        meta.date,
        meta.commit,
        meta.cores,
        meta.cpu,
        meta.kernel,
        if meta.postfix_version.is_empty() {
            "n/a"
        } else {
            &meta.postfix_version
        },
        meta.load_before,
        meta.load_after,
        meta.wall_s
    );
    let _ = writeln!(
        s,
        "| cell | path | N | msgs/s | MB/s | p50 ms | p99 ms | relay CPU s (% of a core) | sink CPU s | generator CPU s | relay peak RSS MB | × ceiling | × Postfix |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for c in cells {
        let shape = format!(
            "{} {} B × {} sess, {}",
            c.cell.name,
            c.cell.size,
            c.cell.sessions,
            c.cell.mode.label()
        );
        let ceiling = c.get(PathKind::Ceiling).map(|r| r.msgs_per_s);
        let postfix = c.get(PathKind::Postfix).map(|r| r.msgs_per_s);
        for r in &c.paths {
            let rel = |base: Option<f64>| {
                base.filter(|b| *b > 0.0 && r.path != "a")
                    .map(|b| r.msgs_per_s / b)
            };
            let rss = r.relay_rss.map_or_else(
                || "—".into(),
                |b| {
                    let mb = b as f64 / 1e6;
                    if r.path == "c" {
                        format!("{mb:.1} (sum)")
                    } else {
                        format!("{mb:.1}")
                    }
                },
            );
            let _ = writeln!(
                s,
                "| {shape} | ({}) {}{} | {} | {:.0} | {:.1} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} |",
                r.path,
                r.label,
                if r.problems.is_empty() { "" } else { " ⚠" },
                r.n,
                r.msgs_per_s,
                r.mb_per_s,
                r.p50_ms,
                r.p99_ms,
                cpu(r.relay_cpu_s, r.elapsed_s),
                cpu(Some(r.sink_cpu_s), r.elapsed_s),
                cpu(Some(r.gen_cpu_s), r.elapsed_s),
                rss,
                x(rel(ceiling)),
                if r.path == "c" {
                    "—".into()
                } else {
                    x(rel(postfix))
                },
            );
        }
        if c.cell.name == "latency"
            && let Some((p50, p99)) = added_latency(std::slice::from_ref(c))
        {
            let _ = writeln!(
                s,
                "| {shape} | added (b − a) | | | | {p50:.3} | {p99:.3} | | | | | | |"
            );
        }
    }
    let _ = writeln!(s, "\nTargets (issue 7):\n");
    let _ = writeln!(s, "| target | measured | verdict |");
    let _ = writeln!(s, "|---|--:|---|");
    for t in targets(cells) {
        let measured = t.value.map_or_else(
            || "not measured".into(),
            |v| match t.unit {
                "x" => format!("{:.1} % / {v:.2}×", v * 100.0),
                "msgs/s" => format!("{v:.0} msgs/s"),
                u => format!("{v:.3} {u}"),
            },
        );
        let verdict = match &t.caveat {
            Some(c) if t.value.is_some() => format!("{} ({c})", t.verdict()),
            _ => t.verdict().to_string(),
        };
        let _ = writeln!(s, "| {} | {measured} | {verdict} |", t.text);
    }
    let problems: Vec<String> = cells
        .iter()
        .flat_map(|c| {
            c.paths.iter().flat_map(move |r| {
                r.problems
                    .iter()
                    .map(move |p| format!("- {} ({}) {}: {p}", c.cell.name, r.path, r.label))
            })
        })
        .chain(cells.iter().flat_map(|c| {
            c.skipped
                .iter()
                .map(move |s| format!("- {}: {s}", c.cell.name))
        }))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(
            s,
            "\nProblems and skipped paths:\n\n{}",
            problems.join("\n")
        );
    }
    let notes: Vec<String> = cells
        .iter()
        .flat_map(|c| {
            c.paths.iter().flat_map(move |r| {
                r.notes
                    .iter()
                    .filter(|n| !n.starts_with("time = "))
                    .map(move |n| format!("- {} ({}) {}: {n}", c.cell.name, r.path, r.label))
            })
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNotes:\n\n{}", notes.join("\n"));
    }
    let _ = writeln!(
        s,
        "\nmsgs/s: N / time until the sink counted all N (a, b, c) or until the last `250 … held` (d). \
         MB/s = 10^6 bytes of message per second. p50/p99: time-to-250 from the write of the final dot. \
         CPU: seconds during the measured run (% of one core). Postfix CPU = master + all its children; \
         its RSS is the sum of VmHWM over its processes at the end. Message sizes in bytes (KiB-based)."
    );
    s
}

fn path_json(r: &PathResult) -> Value {
    json!({
        "label": r.label,
        "n": r.n,
        "ok": r.ok,
        "failed": r.failed,
        "held": r.held,
        "delivered": r.delivered,
        "elapsed_s": r.elapsed_s,
        "msgs_per_s": r.msgs_per_s,
        "mb_per_s": r.mb_per_s,
        "p50_ms": r.p50_ms,
        "p99_ms": r.p99_ms,
        "relay_cpu_s": r.relay_cpu_s,
        "sink_cpu_s": r.sink_cpu_s,
        "generator_cpu_s": r.gen_cpu_s,
        "relay_peak_rss_bytes": r.relay_rss,
        "relay_peak_rss_kind": r.rss_label,
        "pipelining": r.pipelining,
        "problems": r.problems,
        "notes": r.notes,
    })
}

/// The figures `check.py` compares, each with the direction that is better.
fn compared(cells: &[CellResult]) -> Value {
    use PathKind::{Ceiling as A, Hold as D, Mailbrake as B, Postfix as C};
    let mut m = serde_json::Map::new();
    let mut put = |key: String, value: Option<f64>, better: &str| {
        if let Some(v) = value {
            m.insert(key, json!({ "value": v, "better": better }));
        }
    };
    for c in cells {
        let name = c.cell.name;
        if name != "latency" {
            put(
                format!("{name}.mailbrake_over_ceiling"),
                ratio(cells, name, B, A),
                "higher",
            );
            put(
                format!("{name}.mailbrake_over_postfix"),
                ratio(cells, name, B, C),
                "higher",
            );
        }
    }
    if let Some(h) = path(cells, "10k", D) {
        put("10k.hold_msgs_per_s".into(), Some(h.msgs_per_s), "higher");
        put("10k.hold_p99_ms".into(), Some(h.p99_ms), "lower");
        put(
            "10k.hold_rss_mb".into(),
            h.relay_rss.map(|b| b as f64 / 1e6),
            "lower",
        );
    }
    if let Some(b) = path(cells, "10k", B) {
        put(
            "10k.rss_mb".into(),
            b.relay_rss.map(|b| b as f64 / 1e6),
            "lower",
        );
    }
    if let Some((p50, p99)) = added_latency(cells) {
        put("latency.added_p50_ms".into(), Some(p50), "lower");
        put("latency.added_p99_ms".into(), Some(p99), "lower");
    }
    Value::Object(m)
}

pub fn json(meta: &Meta, cells: &[CellResult]) -> Value {
    let cells_json: serde_json::Map<String, Value> = cells
        .iter()
        .map(|c| {
            let paths: serde_json::Map<String, Value> = c
                .paths
                .iter()
                .map(|r| (r.path.to_string(), path_json(r)))
                .collect();
            (
                c.cell.name.to_string(),
                json!({
                    "message_bytes": c.cell.size,
                    "sessions": c.cell.sessions,
                    "mode": c.cell.mode.label(),
                    "n": c.n,
                    "about": c.cell.about,
                    "paths": paths,
                    "skipped": c.skipped,
                }),
            )
        })
        .collect();
    let targets: Vec<Value> = targets(cells)
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "target": t.text,
                "value": t.value,
                "threshold": t.threshold,
                "unit": t.unit,
                "verdict": t.verdict(),
                "caveat": t.caveat,
            })
        })
        .collect();
    json!({
        "meta": {
            "date": meta.date,
            "commit": meta.commit,
            "cpu": meta.cpu,
            "cores": meta.cores,
            "kernel": meta.kernel,
            "quick": meta.quick,
            "wall_s": meta.wall_s,
            "load_average_before": meta.load_before,
            "load_average_after": meta.load_after,
            "postfix_version": meta.postfix_version,
            "postfix_smtp_concurrency": meta.postfix_concurrency,
            "generator_threads": meta.gen_threads,
            "postfix_skipped": meta.postfix_skip,
        },
        "cells": cells_json,
        "targets": targets,
        "compared": compared(cells),
    })
}
