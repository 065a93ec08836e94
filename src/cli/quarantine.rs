//! `mailbrake quarantine ...` and `mailbrake breaker ...`: thin clients of the admin API.

use serde_json::{Value, json};
use std::io::Write;

use super::client::{AdminClient, ClientError, api_error, encode};
use super::output::{clip, escape, time};
use super::{BreakerCmd, Conn, Exit, Filters, QuarantineCmd};

pub fn run(cmd: QuarantineCmd) -> Exit {
    let result = match cmd {
        QuarantineCmd::List {
            filters,
            state,
            json,
            conn,
        } => list(&conn, &filters, &state, json),
        QuarantineCmd::Show {
            id,
            json,
            raw,
            conn,
        } => show(&conn, &id, json, raw),
        QuarantineCmd::Release {
            ids,
            all,
            filters,
            yes,
            conn,
        } => act(&conn, Act::Release, ids, all, &filters, yes),
        QuarantineCmd::Delete {
            ids,
            all,
            filters,
            yes,
            conn,
        } => act(&conn, Act::Delete, ids, all, &filters, yes),
    };
    finish(result)
}

pub fn run_breaker(cmd: BreakerCmd) -> Exit {
    let result = match cmd {
        BreakerCmd::List { json, conn } => breaker_list(&conn, json),
        BreakerCmd::Reset { sender, conn } => breaker_reset(&conn, &sender),
    };
    finish(result)
}

fn finish(result: Result<Exit, ClientError>) -> Exit {
    match result {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mailbrake: {}", e.message);
            e.exit
        }
    }
}

fn usage(message: impl Into<String>) -> ClientError {
    ClientError {
        exit: Exit::Usage,
        message: message.into(),
    }
}

fn query(filters: &Filters, state: &str) -> String {
    let mut q = format!("?state={}", encode(state));
    if let Some(r) = &filters.reason {
        q.push_str(&format!("&reason={}", encode(r)));
    }
    if let Some(s) = &filters.sender {
        q.push_str(&format!("&sender={}", encode(s)));
    }
    q
}

fn fetch(c: &AdminClient, filters: &Filters, state: &str) -> Result<Vec<Value>, ClientError> {
    let (status, v) = c.get(&format!("/api/v1/quarantine{}", query(filters, state)))?;
    if status != 200 {
        return Err(usage(api_error(&v)));
    }
    Ok(v.get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn reasons(v: &Value) -> String {
    v.get("reasons")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn list(conn: &Conn, filters: &Filters, state: &str, json: bool) -> Result<Exit, ClientError> {
    let c = AdminClient::from_conn(conn)?;
    let entries = fetch(&c, filters, state)?;
    let mut out = std::io::stdout().lock();
    if json {
        for e in &entries {
            // serde_json escapes control characters: one valid object per line, always.
            let _ = writeln!(out, "{e}");
        }
    } else if entries.is_empty() {
        let _ = writeln!(out, "Quarantine is empty (state {state}).");
    } else {
        let _ = writeln!(
            out,
            "{:<26}  {:<8}  {:<20}  {:>9}  {:>5}  {:<32}  REASONS",
            "ID", "STATE", "RECEIVED", "SIZE", "RCPTS", "FROM"
        );
        for e in &entries {
            let from = if s(e, "from").is_empty() {
                "<>".to_string()
            } else {
                escape(s(e, "from"))
            };
            let _ = writeln!(
                out,
                "{:<26}  {:<8}  {:<20}  {:>9}  {:>5}  {:<32}  {}",
                s(e, "id"),
                s(e, "state"),
                time(n(e, "received_at")),
                n(e, "size"),
                n(e, "rcpt_count"),
                clip(&from, 32),
                reasons(e)
            );
        }
        let _ = writeln!(out, "{} message(s).", entries.len());
    }
    Ok(if entries.is_empty() {
        Exit::NotFound
    } else {
        Exit::Ok
    })
}

fn show(conn: &Conn, id: &str, json: bool, raw: bool) -> Result<Exit, ClientError> {
    let c = AdminClient::from_conn(conn)?;
    let id = encode(id);
    if raw {
        let (status, bytes) = c.get_bytes(&format!("/api/v1/quarantine/{id}/raw"))?;
        if status != 200 {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            eprintln!("mailbrake: {}", api_error(&v));
            return Ok(Exit::NotFound);
        }
        let _ = std::io::stdout().lock().write_all(&bytes);
        return Ok(Exit::Ok);
    }
    let (status, e) = c.get(&format!("/api/v1/quarantine/{id}"))?;
    if status != 200 {
        eprintln!("mailbrake: {}", api_error(&e));
        return Ok(Exit::NotFound);
    }
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{e}");
        return Ok(Exit::Ok);
    }
    let _ = writeln!(out, "id:          {}", s(&e, "id"));
    let _ = writeln!(out, "state:       {}", s(&e, "state"));
    let _ = writeln!(out, "received:    {}", time(n(&e, "received_at")));
    let from = s(&e, "from");
    let _ = writeln!(
        out,
        "from:        {}",
        if from.is_empty() {
            "<>".into()
        } else {
            escape(from)
        }
    );
    let _ = writeln!(out, "sender:      {}", escape(s(&e, "sender")));
    let _ = writeln!(out, "client:      {}", s(&e, "client_ip"));
    let rcpts: Vec<String> = e
        .get("rcpts")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(escape).collect())
        .unwrap_or_default();
    let shown: Vec<&str> = rcpts.iter().take(5).map(String::as_str).collect();
    let more = if rcpts.len() > 5 {
        format!(" … and {} more", rcpts.len() - 5)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "recipients:  {} ({}{more})",
        rcpts.len(),
        shown.join(", ")
    );
    let _ = writeln!(out, "size:        {} bytes", n(&e, "size"));
    if let Some(subj) = e.get("subject").and_then(Value::as_str) {
        let _ = writeln!(out, "subject:     {}", escape(subj));
    }
    let _ = writeln!(out, "reasons:     {}", reasons(&e));
    let _ = writeln!(out, "findings:");
    for f in e
        .get("findings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "  - {} ({}) in {}: {}",
            s(f, "reason"),
            s(f, "action"),
            escape(s(f, "location")),
            escape(s(f, "summary"))
        );
    }
    if n(&e, "attempts") > 0 {
        let _ = writeln!(out, "releases:    {} attempt(s)", n(&e, "attempts"));
    }
    if let Some(err) = e.get("last_error").and_then(Value::as_str) {
        let _ = writeln!(out, "last error:  {}", escape(err));
    }
    if let Some(r) = e.get("upstream_reply").and_then(Value::as_str) {
        let _ = writeln!(
            out,
            "released:    {} — upstream said: {}",
            time(n(&e, "released_at")),
            escape(r)
        );
    }
    if e.get("deleted_at").and_then(Value::as_u64).is_some() {
        let _ = writeln!(out, "deleted:     {}", time(n(&e, "deleted_at")));
    }
    Ok(Exit::Ok)
}

#[derive(Clone, Copy)]
enum Act {
    Release,
    Delete,
}

fn act(
    conn: &Conn,
    act: Act,
    ids: Vec<String>,
    all: bool,
    filters: &Filters,
    yes: bool,
) -> Result<Exit, ClientError> {
    let (verb, past) = match act {
        Act::Release => ("release", "released"),
        Act::Delete => ("delete", "deleted"),
    };
    if ids.is_empty() && !all {
        return Err(usage(format!(
            "give message ids, or --all [--reason R] [--sender S] --yes to {verb} every match"
        )));
    }
    let c = AdminClient::from_conn(conn)?;
    let ids = if all {
        let entries = fetch(&c, filters, "held")?;
        if entries.is_empty() {
            println!("No held message matches.");
            return Ok(Exit::NotFound);
        }
        if !yes {
            return Err(usage(format!(
                "{} held message(s) match; add --yes to {verb} them all",
                entries.len()
            )));
        }
        entries.iter().map(|e| s(e, "id").to_string()).collect()
    } else {
        ids
    };
    let mut failures = 0;
    let mut done = 0;
    for id in &ids {
        let (status, v) = c.post(
            &format!("/api/v1/quarantine/{}/{verb}", encode(id)),
            &json!({}),
        )?;
        match (act, status) {
            (Act::Release, 200) if v.get("already").and_then(Value::as_bool) == Some(true) => {
                println!("{id}: already released ({})", escape(s(&v, "detail")));
                done += 1;
            }
            (Act::Release, 200) => {
                println!(
                    "{id}: released — upstream said: {}",
                    escape(s(&v, "detail"))
                );
                done += 1;
            }
            (Act::Release, 502) => {
                println!(
                    "{id}: NOT released, still held — {}",
                    escape(s(&v, "detail"))
                );
                failures += 1;
            }
            (Act::Delete, 200) => {
                println!("{id}: deleted");
                done += 1;
            }
            _ => {
                println!("{}: {}", escape(id), escape(&api_error(&v)));
                failures += 1;
            }
        }
    }
    eprintln!("{past}: {done} message(s); failed or not found: {failures}");
    Ok(if failures == 0 {
        Exit::Ok
    } else {
        Exit::NotFound
    })
}

fn breaker_list(conn: &Conn, json: bool) -> Result<Exit, ClientError> {
    let c = AdminClient::from_conn(conn)?;
    let (status, v) = c.get("/api/v1/breakers")?;
    if status != 200 {
        return Err(usage(api_error(&v)));
    }
    let list = v
        .get("breakers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if json {
        for b in &list {
            let _ = writeln!(out, "{b}");
        }
    } else if list.is_empty() {
        let _ = writeln!(out, "No open brakes.");
    } else {
        let _ = writeln!(
            out,
            "{:<40}  {:<14}  {:<20}  HELD SINCE",
            "SENDER", "WHY", "SINCE"
        );
        for b in &list {
            let _ = writeln!(
                out,
                "{:<40}  {:<14}  {:<20}  {}",
                clip(&escape(s(b, "sender")), 40),
                s(b, "reason"),
                time(n(b, "since")),
                n(b, "held_since")
            );
        }
    }
    Ok(if list.is_empty() {
        Exit::NotFound
    } else {
        Exit::Ok
    })
}

fn breaker_reset(conn: &Conn, sender: &str) -> Result<Exit, ClientError> {
    let c = AdminClient::from_conn(conn)?;
    let (status, v) = c.post("/api/v1/breakers/reset", &json!({ "sender": sender }))?;
    if status == 200 {
        println!("brake reset for {}", escape(sender));
        Ok(Exit::Ok)
    } else {
        eprintln!("mailbrake: {}", escape(&api_error(&v)));
        Ok(Exit::NotFound)
    }
}
