//! The incidents of INCIDENTS.md, replayed through real sockets.

use crate::common::fixtures;
use crate::common::*;

/// See: INCIDENTS.md §2 — 832 member addresses in To. The message is held, nothing reaches
/// the upstream, the CLI lists it with its reason, and a release delivers it exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn incident_2_everyones_address_in_to_is_held_then_released_once() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let m = incident2_message();
    let reply = send(
        ts.smtp,
        "news@publisher.example",
        &["member1@family1.example"],
        &m,
    )
    .await
    .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    let id = held_id(&reply);
    assert_eq!(sink.count(), 0, "nothing may reach the upstream");

    let (code, out, err) = cli_at(&ts, &["quarantine", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&id) && out.contains("visible_recipients"),
        "{out}"
    );

    let (code, out, _) = cli_at(&ts, &["quarantine", "list", "--json"]).await;
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["state"], "held");
    assert_eq!(e["reasons"], serde_json::json!(["visible_recipients"]));
    assert_eq!(e["from"], "news@publisher.example");
    assert_eq!(e["rcpt_count"], 1);
    let stored_size = e["size"].as_u64().unwrap() as usize;
    assert!(stored_size > m.len(), "size includes the trace header");
    assert!(e["received_at"].as_u64().unwrap() > 1_700_000_000);

    let (code, out, _) = cli_at(&ts, &["quarantine", "show", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("832 external addresses"), "{out}");

    let (code, out, err) = cli_at(&ts, &["quarantine", "release", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("released") && out.contains("queued as SINK1"),
        "{out}"
    );
    assert_eq!(sink.count(), 1);
    assert_bytes_eq(&strip_trace(&sink.messages()[0].data), &m);
    assert_eq!(sink.messages()[0].data.len(), stored_size);

    // A second release is a no-op: still exactly one delivery.
    let (code, out, _) = cli_at(&ts, &["quarantine", "release", &id]).await;
    assert_eq!(code, 0);
    assert!(out.contains("already released"), "{out}");
    assert_eq!(sink.count(), 1);
    let (code, out, _) = cli_at(
        &ts,
        &["quarantine", "list", "--state", "released", "--json"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("\"upstream_reply\":\"250 2.0.0 Ok: queued as SINK1\""),
        "{out}"
    );
    ts.stop().await;
}

/// An ordinary thread of a dozen people across three companies flows through.
#[tokio::test(flavor = "multi_thread")]
async fn a_dozen_people_across_three_companies_is_not_held() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ts = TestServer::start(config(dir.path(), Some(sink.url()))).await;
    let to = "a1@alpha.example, a2@alpha.example, a3@alpha.example, a4@alpha.example, b1@beta.example, b2@beta.example";
    let cc = "b3@beta.example, b4@beta.example, c1@gamma.example, c2@gamma.example, c3@gamma.example, c4@gamma.example";
    let m = message(
        &[
            ("From", "a1@alpha.example"),
            ("To", to),
            ("Cc", cc),
            ("Subject", "Re: Re: kickoff"),
        ],
        "Agreed.\r\n",
    );
    let rcpts: Vec<&str> = to.split(", ").chain(cc.split(", ")).collect();
    let reply = send(ts.smtp, "a1@alpha.example", &rcpts, &m).await.unwrap();
    assert_eq!(reply, "250 2.0.0 Ok: queued as SINK1");
    assert_eq!(sink.count(), 1);
    ts.stop().await;
}

/// See: INCIDENTS.md §3 — the wrong spreadsheet: 37,099 members, 20 columns, no e-mail,
/// phone or address. Held at the first message (personal_data); nothing reaches upstream.
#[tokio::test(flavor = "multi_thread")]
async fn incident_3_the_wrong_spreadsheet_is_held() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), Some(sink.url()));
    c.limits.max_message_size = mailbrake::config::ByteSize(64 * 1024 * 1024);
    c.limits.inspect_timeout = std::time::Duration::from_secs(60);
    let mut ts = TestServer::start(c).await;
    let xlsx = fixtures::incident3_xlsx(37_099);
    let m = fixtures::with_attachments(
        &[
            ("From", "staff@recruit.example.co.jp"),
            ("To", "web@contractor.example.jp"),
            ("Subject", "statistics file"),
        ],
        "統計データをお送りします。",
        &[(
            "会員データ.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &xlsx,
        )],
    );
    let reply = send(
        ts.smtp,
        "staff@recruit.example.co.jp",
        &["web@contractor.example.jp"],
        &m,
    )
    .await
    .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    assert_eq!(sink.count(), 0);
    let id = held_id(&reply);
    let (code, out, _) = cli_at(&ts, &["quarantine", "show", &id, "--json"]).await;
    assert_eq!(code, 0);
    let e: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(e["reasons"], serde_json::json!(["personal_data"]), "{out}");
    let f = &e["findings"][0];
    assert_eq!(f["count"], 37_099, "{f}");
    let loc = f["location"].as_str().unwrap();
    assert!(
        loc.contains("会員データ.xlsx")
            && loc.contains("sheet 会員一覧")
            && loc.contains("rows 4-37102"),
        "{loc}"
    );
    for k in ["name", "date_of_birth", "gender", "prefecture", "member_id"] {
        assert!(
            f["columns"].as_array().unwrap().iter().any(|c| c == k),
            "{k} missing in {f}"
        );
    }
    ts.stop().await;
}

/// See: INCIDENTS.md §4 — the member list attached to the bulk notice: member number, name
/// and e-mail of 5,212 members. The first message is held (personal_data and address_list).
#[tokio::test(flavor = "multi_thread")]
async fn incident_4_member_list_attached_to_the_bulk_notice_is_held() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), Some(sink.url()));
    c.limits.max_message_size = mailbrake::config::ByteSize(16 * 1024 * 1024);
    let mut ts = TestServer::start(c).await;
    let csv = fixtures::incident4_csv(5_212);
    let m = fixtures::with_attachments(
        &[
            ("From", "notice@mutual-aid.example.or.jp"),
            ("To", "member7@mail7.example.jp"),
            ("Subject", "総会のお知らせ"),
        ],
        "組合員の皆様\r\n\r\n総会のご案内をお送りします。",
        &[("送付リスト.csv", "text/csv", &csv)],
    );
    let reply = send(
        ts.smtp,
        "notice@mutual-aid.example.or.jp",
        &["member7@mail7.example.jp"],
        &m,
    )
    .await
    .unwrap();
    assert!(reply.starts_with("250 2.0.0 Ok: held as "), "{reply}");
    assert_eq!(sink.count(), 0);
    let id = held_id(&reply);
    let (_, out, _) = cli_at(&ts, &["quarantine", "show", &id, "--json"]).await;
    let e: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let reasons = e["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r == "personal_data") && reasons.iter().any(|r| r == "address_list"),
        "{out}"
    );
    let pd = e["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "personal_data")
        .unwrap();
    assert_eq!(pd["count"], 5_212, "{pd}");
    ts.stop().await;
}
