//! Load benchmark (issue 7): messages/s, MB/s, time-to-250, CPU and peak RSS of mailbrake
//! against the ceiling (the generator straight to the sink) and against Postfix relaying the
//! same load, all measured in one run on this machine. See benches/load/README.md.
//!
//! ```text
//! cargo bench --bench load                  # the whole matrix (several minutes)
//! cargo bench --bench load -- --quick       # reduced N, for development
//! cargo bench --bench load -- --cells 10k,latency --out /tmp/x.json
//! ```
//!
//! # Layout
//! - `message`: the benchmark's message, built once.
//! - `generator`: the tokio load generator (C sessions, N messages, reuse or new connection).
//! - `sink`: Postfix's smtp-sink and its delivery counter.
//! - `relay`: the release mailbrake and a private Postfix instance, started per path.
//! - `procstat`: CPU and VmHWM from /proc.
//! - `report`: the Markdown table, the targets and the JSON file.
//! - `cleanup`: stops what was started if the benchmark is interrupted by a signal.

mod cleanup;
mod generator;
mod message;
mod net;
mod procstat;
mod relay;
mod report;
mod sink;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use generator::{Expect, Load, Mode, Wire};
use relay::{Mailbrake, Postfix};
use sink::Sink;

/// The four paths of the issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// (a) generator → sink: the ceiling.
    Ceiling,
    /// (b) generator → mailbrake (inspection on, clean mail) → sink.
    Mailbrake,
    /// (c) generator → Postfix → sink.
    Postfix,
    /// (d) generator → mailbrake, every message held (durable).
    Hold,
}

impl PathKind {
    pub fn letter(self) -> &'static str {
        match self {
            PathKind::Ceiling => "a",
            PathKind::Mailbrake => "b",
            PathKind::Postfix => "c",
            PathKind::Hold => "d",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Ceiling => "ceiling (sink)",
            PathKind::Mailbrake => "mailbrake",
            PathKind::Postfix => "Postfix",
            PathKind::Hold => "mailbrake hold",
        }
    }
}

/// One cell of the matrix.
#[derive(Clone, Debug)]
pub struct Cell {
    pub name: &'static str,
    pub size: usize,
    pub sessions: usize,
    pub mode: Mode,
    pub n_full: usize,
    pub n_quick: usize,
    pub paths: &'static [PathKind],
    /// What the issue's target for this cell is about.
    pub about: &'static str,
}

use PathKind::{Ceiling as A, Hold as D, Mailbrake as B, Postfix as C};

const KIB: usize = 1024;

/// The matrix. N is chosen so that each path takes a few seconds on a 2-core machine
/// (the ceiling is faster, Postfix slower).
pub fn matrix() -> Vec<Cell> {
    vec![
        Cell {
            name: "10k",
            size: 10 * KIB,
            sessions: 10,
            mode: Mode::Reuse,
            n_full: 20_000,
            n_quick: 2_000,
            paths: &[A, B, C, D],
            about: "throughput, x Postfix, hold path, RSS",
        },
        Cell {
            name: "1k-newconn",
            size: KIB,
            sessions: 50,
            mode: Mode::NewConnection,
            n_full: 20_000,
            n_quick: 2_000,
            paths: &[A, B, C],
            about: "a new connection per message",
        },
        Cell {
            name: "100k",
            size: 100 * KIB,
            sessions: 10,
            mode: Mode::Reuse,
            n_full: 5_000,
            n_quick: 500,
            paths: &[A, B, C],
            about: "large messages",
        },
        Cell {
            name: "1m",
            size: 1024 * KIB,
            sessions: 10,
            mode: Mode::Reuse,
            n_full: 500,
            n_quick: 100,
            paths: &[A, B, C],
            about: "MB/s, streaming bodies",
        },
        Cell {
            name: "latency",
            size: 10 * KIB,
            sessions: 1,
            mode: Mode::Reuse,
            n_full: 10_000,
            n_quick: 1_000,
            paths: &[A, B],
            about: "added latency, one message in flight",
        },
    ]
}

/// Options from the command line.
struct Options {
    quick: bool,
    cells: Option<Vec<String>>,
    out: PathBuf,
    n: Option<usize>,
    postfix: bool,
    postfix_concurrency: usize,
    gen_threads: usize,
    per_connection: usize,
    ceiling_sinks: usize,
    /// Path letters to run (default: all of each cell's).
    paths: String,
}

const USAGE: &str = "usage: cargo bench --bench load -- [--quick] [--cells 10k,1k-newconn,100k,1m,latency] \
[--out FILE] [--n N] [--no-postfix] [--postfix-concurrency K] [--gen-threads T] [--per-connection M] [--ceiling-sinks K] [--paths abcd] [--dump-message SIZE:FILE]";

fn options() -> Result<Options, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut o = Options {
        quick: false,
        cells: None,
        out: manifest.join("benches/load/results/last.json"),
        n: None,
        postfix: true,
        postfix_concurrency: 20,
        gen_threads: 2,
        per_connection: 1000,
        ceiling_sinks: 2,
        paths: "abcd".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        let number = |v: String, name: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--bench" => {} // passed by `cargo bench`
            "--quick" => o.quick = true,
            "--cells" => {
                o.cells = Some(
                    value("--cells")?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect(),
                )
            }
            "--out" => o.out = PathBuf::from(value("--out")?),
            "--n" => o.n = Some(number(value("--n")?, "--n")?),
            "--no-postfix" => o.postfix = false,
            "--postfix-concurrency" => {
                o.postfix_concurrency =
                    number(value("--postfix-concurrency")?, "--postfix-concurrency")?
            }
            "--gen-threads" => {
                o.gen_threads = number(value("--gen-threads")?, "--gen-threads")?.max(1)
            }
            "--per-connection" => {
                o.per_connection = number(value("--per-connection")?, "--per-connection")?.max(1)
            }
            "--ceiling-sinks" => {
                o.ceiling_sinks = number(value("--ceiling-sinks")?, "--ceiling-sinks")?.max(1)
            }
            "--paths" => o.paths = value("--paths")?,
            "--dump-message" => {
                // SIZE:FILE — write the benchmark's message of SIZE bytes and exit (for
                // `mailbrake policy test FILE` or a profiler).
                let v = value("--dump-message")?;
                let (size, file) = v.split_once(':').ok_or("--dump-message SIZE:FILE")?;
                let size = number(size.to_string(), "--dump-message")?.max(512);
                std::fs::write(file, message::build(size)).map_err(|e| format!("{file}: {e}"))?;
                std::process::exit(0);
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// Everything measured on one path of one cell.
#[derive(Debug, Default, Clone)]
pub struct PathResult {
    pub path: &'static str,
    pub label: &'static str,
    pub n: usize,
    pub ok: usize,
    pub failed: usize,
    pub held: usize,
    /// Messages the sink counted during the measured run.
    pub delivered: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub relay_cpu_s: Option<f64>,
    pub sink_cpu_s: f64,
    pub gen_cpu_s: f64,
    pub relay_rss: Option<u64>,
    pub rss_label: &'static str,
    pub pipelining: bool,
    /// Errors, wrong counts, log warnings: anything that makes the figures suspect.
    pub problems: Vec<String>,
    /// Informative remarks (e.g. what the time is measured to).
    pub notes: Vec<String>,
}

/// One cell's results.
#[derive(Debug, Clone)]
pub struct CellResult {
    pub cell: Cell,
    pub n: usize,
    pub paths: Vec<PathResult>,
    pub skipped: Vec<String>,
}

impl CellResult {
    pub fn get(&self, p: PathKind) -> Option<&PathResult> {
        self.paths.iter().find(|r| r.path == p.letter())
    }
}

/// What every run shares: the sink, the runtime and the temporary root.
struct Bench {
    rt: tokio::runtime::Runtime,
    /// smtp-sink processes: the first is every relay's upstream; the ceiling uses them all.
    sinks: Vec<Sink>,
    temp: PathBuf,
    options: Options,
    postfix_skip: Option<String>,
    policies: PathBuf,
    policies_hold: PathBuf,
}

fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match run(options) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("load benchmark failed: {e}");
            std::process::exit(2);
        }
    }
}

/// Runs the selected cells; Ok(false) when a path misbehaved (errors, wrong counts).
fn run(options: Options) -> Result<bool, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let temp = tempfile::Builder::new()
        .prefix("mailbrake-load-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    // Postfix (as `postfix`) and smtp-sink (as `nobody`) must traverse it.
    set_mode(temp.path(), 0o755)?;
    cleanup::set_temp(temp.path().to_path_buf());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.gen_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        // Clean up first, and never panic on a closed stderr (a pipe whose reader is gone).
        cleanup::run_now();
        let _ = writeln!(
            std::io::stderr(),
            "\ninterrupted: stopped everything started"
        );
        std::process::exit(130);
    });

    let postfix_skip = if options.postfix {
        relay::postfix_unavailable()
    } else {
        Some("--no-postfix".to_string())
    };
    if let Some(why) = &postfix_skip {
        eprintln!("NOTE: path (c) Postfix skipped: {why}");
    }
    let mut sinks = Vec::new();
    for _ in 0..options.ceiling_sinks {
        sinks.push(Sink::start(temp.path())?);
    }
    let cells: Vec<Cell> = match &options.cells {
        None => matrix(),
        Some(names) => {
            let all = matrix();
            let mut v = Vec::new();
            for n in names {
                v.push(all.iter().find(|c| c.name == n).cloned().ok_or(format!(
                    "unknown cell {n:?}; cells: 10k,1k-newconn,100k,1m,latency"
                ))?);
            }
            v
        }
    };
    let bench = Bench {
        rt,
        sinks,
        temp: temp.path().to_path_buf(),
        postfix_skip,
        policies: manifest.join("benches/load/policies"),
        policies_hold: manifest.join("benches/load/policies-hold"),
        options,
    };
    let load_before = report::loadavg();
    let started = Instant::now();
    let mut results = Vec::new();
    for cell in &cells {
        results.push(run_cell(&bench, cell)?);
    }
    let wall = started.elapsed();
    let meta = report::Meta::collect(
        bench.options.quick,
        wall,
        load_before,
        bench.options.postfix_concurrency,
        bench.options.gen_threads,
        bench.postfix_skip.clone(),
    );
    let text = report::markdown(&meta, &results);
    println!("{text}");
    let json = report::json(&meta, &results);
    if let Some(dir) = bench.options.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let body = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&bench.options.out, body + "\n")
        .map_err(|e| format!("write {}: {e}", bench.options.out.display()))?;
    let md = bench.options.out.with_extension("md");
    std::fs::write(&md, &text).map_err(|e| format!("write {}: {e}", md.display()))?;
    eprintln!(
        "results written to {} and {}",
        bench.options.out.display(),
        md.display()
    );
    let clean = results
        .iter()
        .all(|c| c.paths.iter().all(|p| p.problems.is_empty()));
    drop(bench); // stops the sink before the temporary directory goes
    drop(temp);
    Ok(clean)
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

fn run_cell(bench: &Bench, cell: &Cell) -> Result<CellResult, String> {
    let n = bench.options.n.unwrap_or(if bench.options.quick {
        cell.n_quick
    } else {
        cell.n_full
    });
    let wire = Arc::new(Wire::new(cell.size));
    let mut out = CellResult {
        cell: cell.clone(),
        n,
        paths: Vec::new(),
        skipped: Vec::new(),
    };
    for &path in cell.paths {
        if !bench.options.paths.contains(path.letter()) {
            continue;
        }
        if path == PathKind::Postfix
            && let Some(why) = &bench.postfix_skip
        {
            out.skipped.push(format!("(c) Postfix skipped: {why}"));
            continue;
        }
        eprintln!(
            "[{}] {} x {} B, {} sessions, {}: path ({}) {} ...",
            cell.name,
            n,
            wire.message_len,
            cell.sessions,
            cell.mode.label(),
            path.letter(),
            path.label()
        );
        let r = run_path(bench, cell, &wire, n, path).unwrap_or_else(|e| PathResult {
            path: path.letter(),
            label: path.label(),
            n,
            problems: vec![format!("path could not run: {e}")],
            ..PathResult::default()
        });
        eprintln!(
            "    {:.0} msgs/s, {:.1} MB/s, p50 {:.2} ms, p99 {:.2} ms{}",
            r.msgs_per_s,
            r.mb_per_s,
            r.p50_ms,
            r.p99_ms,
            if r.problems.is_empty() {
                String::new()
            } else {
                format!("  PROBLEMS: {:?}", r.problems)
            }
        );
        out.paths.push(r);
    }
    Ok(out)
}

/// The process whose CPU and memory count as "the relay" of a path.
enum Relay {
    None,
    Mailbrake(Mailbrake),
    Postfix(Postfix),
}

impl Relay {
    fn cpu(&self) -> Option<f64> {
        match self {
            Relay::None => None,
            Relay::Mailbrake(m) => Some(procstat::cpu(m.pid())),
            Relay::Postfix(p) => Some(procstat::tree_cpu(p.master_pid())),
        }
    }
    fn rss(&self) -> Option<u64> {
        match self {
            Relay::None => None,
            Relay::Mailbrake(m) => Some(procstat::peak_rss(m.pid())),
            Relay::Postfix(p) => Some(procstat::tree_peak_rss(p.master_pid())),
        }
    }
}

fn run_path(
    bench: &Bench,
    cell: &Cell,
    wire: &Arc<Wire>,
    n: usize,
    path: PathKind,
) -> Result<PathResult, String> {
    let dir = bench.temp.join(format!("{}-{}", cell.name, path.letter()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    set_mode(&dir, 0o755)?;
    // The ceiling talks to all the sinks (session i to sink i % K); the relays deliver to
    // the first one.
    let sinks: &[Sink] = if path == PathKind::Ceiling {
        &bench.sinks
    } else {
        &bench.sinks[..1]
    };
    let upstream = &bench.sinks[0];
    let (relay, addrs) = match path {
        PathKind::Ceiling => (
            Relay::None,
            sinks
                .iter()
                .map(|s| SocketAddr::from(([127, 0, 0, 1], s.port)))
                .collect(),
        ),
        PathKind::Mailbrake | PathKind::Hold => {
            let policies = if path == PathKind::Hold {
                &bench.policies_hold
            } else {
                &bench.policies
            };
            let m = Mailbrake::start(&dir, &upstream.url(), policies)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], m.port));
            (Relay::Mailbrake(m), vec![addr])
        }
        PathKind::Postfix => {
            let p = Postfix::start(&dir, upstream.port, bench.options.postfix_concurrency)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], p.port));
            (Relay::Postfix(p), vec![addr])
        }
    };
    let expect = match path {
        PathKind::Ceiling | PathKind::Postfix => Expect::Accepted,
        PathKind::Mailbrake => Expect::Forwarded,
        PathKind::Hold => Expect::Held,
    };
    let delivers = path != PathKind::Hold;
    let mut result = PathResult {
        path: path.letter(),
        label: path.label(),
        n,
        rss_label: match path {
            PathKind::Ceiling => "",
            PathKind::Postfix => "sum of VmHWM over master + children",
            _ => "VmHWM",
        },
        ..PathResult::default()
    };
    let load = |messages: usize| Load {
        addrs: addrs.clone(),
        sessions: cell.sessions,
        messages,
        mode: cell.mode,
        per_connection: bench.options.per_connection,
        expect,
    };
    // Warm-up: two messages per session (connections, pools, Postfix's process spawn), all
    // delivered (or held) before the measured run starts.
    let warm = 2 * cell.sessions;
    let group = sink::Group::start(sinks);
    let w = bench
        .rt
        .block_on(generator::run(&load(warm), wire, Duration::from_secs(120)));
    if w.failed > 0 {
        result.problems.push(format!(
            "warm-up: {} of {warm} failed: {:?}",
            w.failed, w.errors
        ));
    }
    if delivers
        && group
            .wait(
                w.ok as u64,
                Duration::from_secs(120),
                Duration::from_secs(30),
            )
            .is_none()
    {
        result.problems.push(format!(
            "warm-up: only {} of {} accepted were delivered",
            group.delivered(),
            w.ok
        ));
    }

    // The measured run.
    let deadline = Duration::from_secs(if bench.options.quick { 300 } else { 900 });
    let group = sink::Group::start(sinks);
    let (relay0, sink0, gen0) = (relay.cpu(), group.cpu(), procstat::self_cpu());
    let t0 = Instant::now();
    let o = bench.rt.block_on(generator::run(&load(n), wire, deadline));
    let reached = if delivers {
        // Every accepted message must reach the sink (a failed one may not).
        group.wait(
            o.ok as u64,
            Duration::from_secs(600),
            Duration::from_secs(30),
        )
    } else {
        None
    };
    let end = match (o.last_reply, reached) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b).unwrap_or_else(Instant::now),
    };
    let (relay1, sink1, gen1) = (relay.cpu(), group.cpu(), procstat::self_cpu());
    result.relay_rss = relay.rss();
    if !delivers {
        // Nothing may reach the upstream on the hold path.
        std::thread::sleep(Duration::from_millis(300));
    }
    result.delivered = group.delivered();
    result.relay_cpu_s = relay0.zip(relay1).map(|(a, b)| b - a);
    result.sink_cpu_s = sink1 - sink0;
    result.gen_cpu_s = gen1 - gen0;
    result.elapsed_s = end.duration_since(t0).as_secs_f64();
    result.ok = o.ok;
    result.failed = o.failed;
    result.held = o.held;
    result.pipelining = o.pipelining;
    let counted = if delivers {
        result.delivered as f64
    } else {
        o.ok as f64
    };
    if result.elapsed_s > 0.0 {
        result.msgs_per_s = counted / result.elapsed_s;
        result.mb_per_s = counted * wire.message_len as f64 / result.elapsed_s / 1e6;
    }
    let mut lat = o.latencies_us;
    lat.sort_unstable();
    result.p50_ms = percentile(&lat, 0.50);
    result.p99_ms = percentile(&lat, 0.99);
    result.notes.push(
        if delivers {
            "time = until the sink counted all N (and the last 250 was read)"
        } else {
            "time = until the last `250 ... held as` was read"
        }
        .into(),
    );
    if !o.pipelining {
        result.notes.push("server did not offer PIPELINING".into());
    }

    // Anything that makes the figures suspect.
    if o.failed > 0 {
        let errs: Vec<String> = o.errors.iter().map(|(e, k)| format!("{k}x {e}")).collect();
        result.problems.push(format!(
            "{} of {n} messages failed: {}",
            o.failed,
            errs.join("; ")
        ));
    }
    if delivers && result.delivered != n as u64 {
        result.problems.push(format!(
            "sink counted {} deliveries, expected {n}",
            result.delivered
        ));
    }
    if !delivers && result.delivered != 0 {
        result.problems.push(format!(
            "{} messages reached the sink on the hold path",
            result.delivered
        ));
    }
    if path == PathKind::Hold && o.held != o.ok {
        result.problems.push(format!(
            "{} of {} accepted messages were not holds",
            o.ok - o.held,
            o.ok
        ));
    }
    match relay {
        Relay::Mailbrake(mut m) => {
            if let Some(note) = m.stop() {
                result.problems.push(note);
            }
            for line in m.log_problems(5) {
                result.problems.push(format!("mailbrake log: {line}"));
            }
        }
        Relay::Postfix(mut p) => {
            if let Some(note) = p.stop() {
                result.problems.push(note);
            }
            let log = p.log_summary(5);
            for line in log.problems {
                result.problems.push(format!("postfix log: {line}"));
            }
            result.notes.push(format!(
                "Postfix {}: {} deliveries logged status=sent (warm-up included), \
                 {} over a reused connection",
                p.version, log.sent, log.reused
            ));
            if log.congestion > 0 {
                result.notes.push(
                    "qmgr warned that the sink's destination used up the whole active queue \
                     (mail arrived faster than it was delivered)"
                        .into(),
                );
            }
        }
        Relay::None => {}
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds.
fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}
