//! The `mailbrake` binary: parse the command line, run, map the outcome to an exit code.

use clap::Parser;
use std::process::ExitCode;

use mailbrake::cli::{Cli, Command, Exit, ServeArgs};
use mailbrake::config::{Config, LogFormat};
use mailbrake::server::Server;

mod capped_alloc;

/// The heap allocator: the system's, with a cap that only `mailbrake pdf-text` sets.
#[global_allocator]
static ALLOCATOR: capped_alloc::Capped = capped_alloc::Capped;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // PDFs are read in a child process of this executable (heap-capped, killed at the
    // deadline). /proc/self/exe still works after an upgrade replaced the file.
    let me = std::path::Path::new("/proc/self/exe");
    let exe = if me.exists() {
        Some(me.to_path_buf())
    } else {
        std::env::current_exe().ok()
    };
    if let Some(exe) = exe {
        mailbrake::inspect::extract::read_in_child_processes(exe);
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::PdfText { max_memory } => pdf_text(max_memory),
        other => mailbrake::cli::run_client(other).into(),
    }
}

/// `mailbrake pdf-text`: the PDF on standard input, its text on standard output, with the
/// heap capped at `max_memory` (an allocation past it aborts the process, which the parent
/// reports as a limit). Prints nothing else: a message could quote the PDF.
fn pdf_text(max_memory: u64) -> ExitCode {
    use mailbrake::inspect::extract::{PdfTextError, pdf_child_exit, pdf_text};
    use std::io::{Read, Write};
    std::panic::set_hook(Box::new(|_| {}));
    capped_alloc::cap(max_memory);
    let mut input = Vec::new();
    if std::io::stdin().lock().read_to_end(&mut input).is_err() {
        return ExitCode::from(pdf_child_exit::IO);
    }
    match pdf_text(&input) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::from(pdf_child_exit::IO);
            }
            ExitCode::SUCCESS
        }
        Err(PdfTextError::Unreadable) => ExitCode::from(pdf_child_exit::UNREADABLE),
        Err(PdfTextError::Panicked) => ExitCode::from(pdf_child_exit::PANICKED),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailbrake: {e:#}");
            return Exit::Usage.into();
        }
    };
    init_logging(&config);
    // Parser panics (pdf-extract, calamine) are caught around each extraction, but the default
    // hook would print their messages, which can quote mail content. Log the location only.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(location = %at, thread = std::thread::current().name().unwrap_or("?"), "panic (message withheld: it may quote mail content)");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.io_threads())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailbrake: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let server = Server::start(config).await?;
        // systemd Type=notify: listeners are bound and the store is open.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let app = server.app.clone();
        let signalled = app.clone();
        tokio::spawn(async move { signals(signalled).await });
        server.wait().await;
        anyhow::Ok(
            app.restart_requested
                .load(std::sync::atomic::Ordering::SeqCst),
        )
    });
    // Sessions still open after the grace period are dropped with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => restart_in_place(),
        Err(e) => {
            tracing::error!(error = %e, "mailbrake cannot start");
            eprintln!("mailbrake: {e:#}");
            Exit::Usage.into()
        }
    }
}

/// Replaces this process with a fresh copy of itself (same PID, same arguments): every
/// descriptor is close-on-exec, so the sled lock and the listeners are released and the new
/// image reopens the index and reconciles it with the spool. EX_TEMPFAIL (75) if that fails,
/// so a supervisor restarts it instead.
fn restart_in_place() -> ExitCode {
    use std::os::unix::process::CommandExt;
    tracing::warn!("re-executing mailbrake to reopen the quarantine index");
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "mailbrake".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec();
    eprintln!("mailbrake: cannot re-execute itself ({err}); exiting 75 for the supervisor");
    ExitCode::from(75)
}

/// The configuration file (if any) with the command-line flags applied on top.
fn build_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut c = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        c.server.listen = args.listen.clone();
    }
    if let Some(u) = &args.upstream {
        c.upstream.url = Some(u.clone());
    }
    if let Some(d) = &args.data_dir {
        c.server.data_dir = d.clone();
    }
    if let Some(p) = &args.policies {
        c.server.policies = Some(p.clone());
    }
    if let Some(a) = args.admin_listen {
        c.admin.listen = a;
    }
    if let Some(a) = args.metrics_listen {
        c.metrics.listen = a;
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    }
    c.validate()?;
    Ok(c)
}

fn init_logging(config: &Config) {
    let filter = std::env::var("MAILBRAKE_LOG").unwrap_or_else(|_| config.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// SIGTERM / SIGINT start the graceful shutdown; SIGHUP reloads the policy.
async fn signals(app: std::sync::Arc<mailbrake::server::App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match app.reload_policy() {
                Ok(()) => tracing::info!("policy reloaded (SIGHUP)"),
                Err(e) => tracing::error!(error = %e, "policy reload failed; the old policy stays"),
            },
        }
    }
    tracing::info!("shutting down: no new connections; sessions in DATA may finish");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    app.shutdown.cancel();
}
