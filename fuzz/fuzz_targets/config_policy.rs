//! The configuration and policy loaders on arbitrary UTF-8: `Config::parse` (+ `validate`
//! when it parses) and `Policy::parse` (+ its inspection limits and a decision). Errors are
//! fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailbrake::config::{ByteSize, Config};
use mailbrake::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::parse(text) {
        let _ = c.validate();
        let _ = c.limits.free_space_floor();
    }
    if let Ok(p) = Policy::parse(text) {
        let _ = p.inspection.limits();
        let v = p.decide(Vec::new());
        let _ = v.reject_text();
    }
    let _ = ByteSize::parse(text);
});
