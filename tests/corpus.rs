//! The labelled evaluation corpus (tests/fixtures/corpus): every message is replayed through
//! the same inspection and policy as the server, and its verdict compared with the verdict a
//! careful human DLP reviewer gave it (labels.json, rules in the corpus README).
//!
//! The test prints a confusion matrix, per-reason figures and one line per mismatch, then
//! fails if any label is not met: it is the acceptance test of the content detectors.
//! See the figures with `cargo test --test corpus -- --nocapture`.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mail_parser::{HeaderName, HeaderValue, MessageParser};
use mailbrake::envelope::Envelope;
use mailbrake::inspect;
use mailbrake::policy::Policy;
use mailbrake::verdict::{Decision, Verdict};
use serde::Deserialize;

/// One entry of labels.json.
#[derive(Debug, Deserialize)]
struct Label {
    file: String,
    /// "hold" or "forward".
    verdict: String,
    /// Hold reasons that must be among the verdict's reasons (more are tolerated).
    reasons: Vec<String>,
    why: String,
    #[allow(dead_code)]
    incident: Option<u32>,
}

/// Used when a message has no usable To/Cc.
const FALLBACK_RCPT: &str = "recipient@example.com";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// The envelope a submitting client would give: MAIL FROM = the From address, RCPT TO = the
/// To + Cc addresses (or one external address when there are none).
fn envelope_for(raw: &[u8]) -> Envelope {
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    if let Some(m) = MessageParser::default().parse(raw) {
        let addresses = |name: HeaderName<'static>| -> Vec<String> {
            m.header_values(name)
                .filter_map(|v| match v {
                    HeaderValue::Address(a) => Some(
                        a.iter()
                            .filter_map(|x| x.address.as_deref().map(str::to_string))
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                })
                .flatten()
                .collect()
        };
        from = addresses(HeaderName::From)
            .into_iter()
            .next()
            .unwrap_or_default();
        for a in addresses(HeaderName::To)
            .into_iter()
            .chain(addresses(HeaderName::Cc))
        {
            if !rcpts.contains(&a) {
                rcpts.push(a);
            }
        }
    }
    if rcpts.is_empty() {
        rcpts.push(FALLBACK_RCPT.to_string());
    }
    Envelope {
        mail_from: from,
        rcpt_to: rcpts,
        smtputf8: false,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        helo: "corpus".into(),
        auth_user: None,
        tls: false,
    }
}

fn is_held(d: Decision) -> bool {
    matches!(d, Decision::Hold | Decision::Reject)
}

fn findings_text(v: &Verdict) -> String {
    if v.findings.is_empty() {
        return "no findings".into();
    }
    v.findings
        .iter()
        .map(|f| {
            format!(
                "{} ({}) in {}: {}",
                f.reason,
                f.action.as_str(),
                f.location,
                f.summary
            )
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
fn corpus_verdicts_match_labels() {
    let dir = corpus_dir();
    let labels: Vec<Label> =
        serde_json::from_slice(&std::fs::read(dir.join("labels.json")).unwrap()).unwrap();
    let policy = Policy::load(Some(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
    ))
    .expect("policies/ loads");

    // Every message on disk is labelled, and every label has its message.
    let labelled: BTreeSet<&str> = labels.iter().map(|l| l.file.as_str()).collect();
    assert_eq!(
        labelled.len(),
        labels.len(),
        "duplicate file in labels.json"
    );
    let mut on_disk = BTreeSet::new();
    for sub in ["hold", "pass"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".eml") {
                on_disk.insert(format!("{sub}/{name}"));
            }
        }
    }
    let on_disk_refs: BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
    assert_eq!(
        on_disk_refs, labelled,
        "the .eml files and labels.json disagree (regenerate with make_corpus.py)"
    );

    let (mut held_ok, mut missed, mut false_holds, mut passed_ok, mut wrong_reason) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    // reason -> (labelled, found among the verdict's reasons)
    let mut per_reason: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut mismatches: Vec<String> = Vec::new();

    for l in &labels {
        assert!(
            l.verdict == "hold" || l.verdict == "forward",
            "{}: verdict must be hold or forward",
            l.file
        );
        let raw = std::fs::read(dir.join(&l.file)).unwrap();
        let envelope = envelope_for(&raw);
        let report = inspect::inspect(&envelope, &raw, &policy);
        let verdict = policy.decide(report.findings);
        let got = verdict.decision.as_str();
        let got_reasons: Vec<&str> = verdict.reasons.iter().map(|r| r.as_str()).collect();
        let missing: Vec<&str> = l
            .reasons
            .iter()
            .map(String::as_str)
            .filter(|r| !got_reasons.contains(r))
            .collect();
        for r in &l.reasons {
            let e = per_reason.entry(r.clone()).or_default();
            e.0 += 1;
            if got_reasons.contains(&r.as_str()) {
                e.1 += 1;
            }
        }
        let expected_hold = l.verdict == "hold";
        let problem = match (expected_hold, is_held(verdict.decision)) {
            (true, true) if missing.is_empty() => {
                held_ok += 1;
                None
            }
            (true, true) => {
                held_ok += 1;
                wrong_reason += 1;
                Some("held for another reason")
            }
            (true, false) => {
                missed += 1;
                Some("MISSED HOLD")
            }
            (false, true) => {
                false_holds += 1;
                Some("FALSE HOLD")
            }
            (false, false) => {
                passed_ok += 1;
                None
            }
        };
        if let Some(kind) = problem {
            let want = if l.reasons.is_empty() {
                l.verdict.clone()
            } else {
                format!("{} ({})", l.verdict, l.reasons.join(", "))
            };
            let have = if got_reasons.is_empty() {
                got.to_string()
            } else {
                format!("{got} ({})", got_reasons.join(", "))
            };
            mismatches.push(format!(
                "{kind}: {} — expected {want}, got {have}; {}; label: {}",
                l.file,
                findings_text(&verdict),
                l.why
            ));
        }
    }

    let holds = held_ok + missed;
    let passes = false_holds + passed_ok;
    println!();
    println!(
        "corpus: {} messages ({holds} labelled hold, {passes} labelled forward)",
        labels.len()
    );
    println!("                     got hold   got forward");
    println!("  labelled hold      {held_ok:>8}   {missed:>11}   (held correctly / missed holds)");
    println!(
        "  labelled forward   {false_holds:>8}   {passed_ok:>11}   (false holds / passed correctly)"
    );
    println!("  held for the wrong reason (expected reason missing): {wrong_reason}");
    let pct = |a: usize, b: usize| {
        if b == 0 {
            100.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    println!(
        "  hold recall {:.1}%, forward accuracy {:.1}%",
        pct(held_ok, holds),
        pct(passed_ok, passes)
    );
    println!("  per reason (labelled → present in the verdict):");
    for (r, (n, found)) in &per_reason {
        println!("    {r:<14} {found:>3} / {n:<3}");
    }
    if !mismatches.is_empty() {
        println!("mismatches ({}):", mismatches.len());
        for m in &mismatches {
            println!("  {m}");
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} corpus labels not met (held correctly {held_ok}, missed holds {missed}, false holds {false_holds}, passed correctly {passed_ok}, wrong reason {wrong_reason})",
        mismatches.len(),
        labels.len()
    );
}
