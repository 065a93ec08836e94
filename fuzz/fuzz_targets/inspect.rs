//! The inspection entry point (MIME walk, charset decoding, archive extraction, every
//! detector) on arbitrary bytes as a message, with the policy built into the binary.
//! Checks: no panic, and a message that is not parsed at all is held (never a silent pass).
//!
//! One exception, by design: mail-parser 0.11.9 has a `debug_assert!(false, "Invalid part
//! ID…")` (src/parsers/message.rs:485) that fires only in builds with debug assertions (as
//! fuzz builds are); release builds compile it out, and `inspect_with` catches a parser panic
//! and holds the message as uninspectable. libFuzzer's panic hook would abort on it before
//! that catch runs, so panics located in mail-parser's sources (registry or vendor/) pass through to the catch;
//! every other panic still aborts and is reported as a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbrake::envelope::Envelope;
use mailbrake::inspect::inspect;
use mailbrake::policy::Policy;
use std::sync::OnceLock;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| Policy::builtin().expect("the built-in policy parses"))
}

/// Lets panics raised inside mail-parser unwind to `inspect_with`'s `catch_unwind`.
fn tolerate_parser_debug_asserts() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let libfuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_parser = info
                .location()
                .is_some_and(|l| l.file().contains("mail-parser"));
            if !in_parser {
                libfuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_parser_debug_asserts();
    let env = Envelope {
        mail_from: "a@corp.example".into(),
        rcpt_to: vec!["b@partner.example".into(), "c@other.example".into()],
        smtputf8: false,
        client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        helo: "fuzz".into(),
        auth_user: None,
        tls: false,
    };
    let report = inspect(&env, data, policy());
    let verdict = policy().decide(report.findings);
    let _ = verdict.reject_text();
});
