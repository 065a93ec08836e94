//! CPU time and peak memory of processes, from /proc.

use std::path::Path;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on every Linux ABI
/// this benchmark runs on).
const TICKS: f64 = 100.0;

/// Times of one process, in seconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Times {
    /// utime + stime: the process's own CPU (all its threads).
    pub own: f64,
    /// cutime + cstime: CPU of its children that exited and were waited for.
    pub children: f64,
    pub ppid: u32,
}

/// /proc/<pid>/stat times, or None when the process is gone.
pub fn times(pid: u32) -> Option<Times> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some(Times {
        ppid: f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
        own: (num(11) + num(12)) / TICKS,
        children: (num(13) + num(14)) / TICKS,
    })
}

/// A process's own CPU seconds (0 when gone).
pub fn cpu(pid: u32) -> f64 {
    times(pid).map_or(0.0, |t| t.own)
}

/// CPU seconds of this process (the generator and the harness around it).
pub fn self_cpu() -> f64 {
    cpu(std::process::id())
}

/// Peak resident set size (VmHWM) in bytes, 0 when gone.
pub fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Direct children of `pid` (a scan of /proc).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| times(p).is_some_and(|t| t.ppid == pid))
        .collect()
}

/// CPU seconds of a process tree: the root's own and reaped-children time plus, for each
/// live child, its own and reaped-children time (Postfix: master + its services).
pub fn tree_cpu(root: u32) -> f64 {
    let Some(t) = times(root) else { return 0.0 };
    t.own
        + t.children
        + children(root)
            .into_iter()
            .filter_map(times)
            .map(|c| c.own + c.children)
            .sum::<f64>()
}

/// Sum of VmHWM over a process and its live children, in bytes.
pub fn tree_peak_rss(root: u32) -> u64 {
    peak_rss(root) + children(root).into_iter().map(peak_rss).sum::<u64>()
}

/// True while /proc/<pid> exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
        && Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends a signal with kill(1) (no libc binding in this crate's dependencies).
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}
