//! Content detection through real sockets: corpus messages replayed as a client would send
//! them, and the operator's explanations (`policy test`, `quarantine show`).

use crate::common::fixtures::{members_pdf, pdf_with_content, with_attachments};
use crate::common::*;

fn corpus(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/corpus")
            .join(file),
    )
    .unwrap()
}

/// A password-protected zip (PPAP) cannot be inspected: held as uninspectable, never passed.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_zip_is_held_as_uninspectable() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let m = corpus("hold/49-encrypted-zip-ppap-zipcrypto.eml");
    let reply = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &m,
    )
    .await
    .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    assert_eq!(sink.count(), 0);
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &held_id(&reply)]).await;
    assert!(
        out.contains("uninspectable (hold)") && out.contains("encrypted"),
        "{out}"
    );
    ts.stop().await;
}

/// Hard negatives flow through untouched: a sales sheet whose 担当者 column repeats three
/// staff names, and an invoice with T-numbers and corporate numbers.
#[tokio::test(flavor = "multi_thread")]
async fn ordinary_business_mail_is_forwarded() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    for f in [
        "pass/01-sales-by-prefecture-tanto-3-staff-200-rows.eml",
        "pass/05-invoice-xlsx-t-number.eml",
    ] {
        let m = corpus(f);
        let reply = send(
            ts.smtp,
            "staff@example.co.jp",
            &["partner@partner.example.jp"],
            &m,
        )
        .await
        .unwrap();
        assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1", "{f}");
    }
    assert_eq!(sink.count(), 2);
    ts.stop().await;
}

/// `policy test` explains a verdict offline: where, which columns, how many records.
#[tokio::test(flavor = "multi_thread")]
async fn policy_test_explains_a_personal_data_hold() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    std::fs::write(
        &file,
        corpus("hold/08-i3-hidden-sheet-under-cover-page.eml"),
    )
    .unwrap();
    let (code, out, err) = cli(vec![
        "policy".into(),
        "test".into(),
        file.display().to_string(),
        "--to".into(),
        "contractor@web.example.jp".into(),
        "--json".into(),
        "--policies".into(),
        policies_dir().display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verdict"], "hold");
    assert_eq!(v["reasons"], serde_json::json!(["personal_data"]));
    let f = &v["findings"][0];
    let loc = f["location"].as_str().unwrap();
    assert!(loc.contains("(hidden)") && loc.contains("rows "), "{loc}");
    assert!(f["count"].as_u64().unwrap() >= 10);
    assert!(
        f["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "date_of_birth"),
        "{f}"
    );
    // The human form says the same in words.
    let (_, human, _) = cli(vec![
        "policy".into(),
        "test".into(),
        file.display().to_string(),
        "--policies".into(),
        policies_dir().display().to_string(),
    ])
    .await;
    assert!(
        human.contains("verdict: hold (personal_data)") && human.contains("personal records"),
        "{human}"
    );
}

/// A PDF member list goes through the same path as in production: read by a heap-capped
/// `mailbrake pdf-text` child process, its 30 people found, the message held.
#[tokio::test(flavor = "multi_thread")]
async fn a_pdf_member_list_is_read_in_a_child_process_and_held() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let m = with_attachments(
        &[
            ("From", "staff@example.co.jp"),
            ("To", "partner@partner.example.jp"),
            ("Subject", "Member list"),
        ],
        "Please find the member list attached.",
        &[("members.pdf", "application/pdf", &members_pdf(30))],
    );
    let reply = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &m,
    )
    .await
    .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    assert_eq!(sink.count(), 0);
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &held_id(&reply)]).await;
    assert!(
        out.contains("personal_data (hold)") && out.contains("members.pdf"),
        "{out}"
    );
    // A short PDF letter is forwarded (the child reads it and finds nobody).
    let letter = pdf_with_content(b"BT /F1 12 Tf 72 720 Td (Quarterly report attached.) Tj ET\n");
    let m = with_attachments(
        &[
            ("From", "staff@example.co.jp"),
            ("To", "partner@partner.example.jp"),
            ("Subject", "Report"),
        ],
        "Report attached.",
        &[("report.pdf", "application/pdf", &letter)],
    );
    let reply = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &m,
    )
    .await
    .unwrap();
    assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1");
    ts.stop().await;
}

/// A 10 KiB PDF whose content stream is two million `q Q` operators makes pdf-extract
/// allocate gigabytes. The reader's heap cap (`[inspection] max_pdf_memory`, 64 MiB here)
/// stops it: the message is held as uninspectable, the relay keeps its memory and goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_pdf_that_needs_more_memory_than_the_reader_cap_is_held_uninspectable() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pol = tempfile::tempdir().unwrap();
    std::fs::copy(
        policies_dir().join("default.toml"),
        pol.path().join("default.toml"),
    )
    .unwrap();
    std::fs::write(
        pol.path().join("local.toml"),
        "[inspection]\nmax_pdf_memory = \"64MiB\"\n",
    )
    .unwrap();
    let mut c = config(dir.path(), Some(sink.url()));
    c.server.policies = Some(pol.path().to_path_buf());
    let mut ts = TestServer::start(c).await;
    let mut ops = b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET\n".to_vec();
    for _ in 0..2_000_000 {
        ops.extend_from_slice(b"q Q\n");
    }
    let bomb = pdf_with_content(&ops);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let m = with_attachments(
        &[
            ("From", "staff@example.co.jp"),
            ("To", "partner@partner.example.jp"),
            ("Subject", "doc"),
        ],
        "see attached",
        &[("doc.pdf", "application/pdf", &bomb)],
    );
    let reply = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &m,
    )
    .await
    .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &held_id(&reply)]).await;
    assert!(
        out.contains("uninspectable (hold)") && out.contains("more than 64 MiB of memory"),
        "{out}"
    );
    let reply = send(
        ts.smtp,
        "staff@example.co.jp",
        &["partner@partner.example.jp"],
        &message(&[("Subject", "still here")], "hello"),
    )
    .await
    .unwrap();
    assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1");
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}
