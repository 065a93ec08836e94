//! The `Received:` trace header (RFC 5321 §4.4), built only from validated values.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the trace header says about one message.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    pub tls: bool,
    pub authenticated: bool,
    pub id: &'a str,
    pub now: SystemTime,
}

/// The header, folded before the date, ending in CRLF.
pub fn header(t: &Trace<'_>) -> String {
    let protocol = match (t.tls, t.authenticated) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    let ip = match t.client_ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    };
    format!(
        "Received: from {} ({ip})\r\n\tby {} (mailbrake) with {protocol} id {};\r\n\t{}\r\n",
        safe_helo(t.helo),
        t.hostname,
        t.id,
        rfc5322_date(t.now)
    )
}

/// The HELO name restricted to characters that cannot break the header.
fn safe_helo(helo: &str) -> String {
    let s: String = helo
        .chars()
        .take(255)
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_:[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "unknown".into() } else { s }
}

/// `Sat, 21 Nov 2026 17:31:00 +0000` for a UTC time.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_283_460);
        assert_eq!(rfc5322_date(t), "Sat, 21 Nov 2026 17:51:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn header_is_safe() {
        let h = header(&Trace {
            helo: "evil\r\nBcc: x@y (a)",
            client_ip: "::1".parse().unwrap(),
            hostname: "relay.example",
            tls: true,
            authenticated: false,
            id: "01ABC",
            now: UNIX_EPOCH,
        });
        assert!(h.starts_with("Received: from evil__Bcc:_x_y__a_ ([IPv6:::1])\r\n\tby relay.example (mailbrake) with ESMTPS id 01ABC;\r\n\t"));
        assert_eq!(h.matches("\r\n").count(), 3);
    }
}
