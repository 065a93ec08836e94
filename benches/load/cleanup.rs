//! Last-resort cleanup on SIGINT/SIGTERM: the guards' `Drop` covers errors and panics, but a
//! signal ends the process without unwinding. Every started process and Postfix instance is
//! registered here while it runs; the signal handler stops them by PID and removes the
//! temporary directory.

use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    postfix: Vec<PathBuf>,
    temp: Option<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    postfix: Vec::new(),
    temp: None,
});

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut r)
}

pub fn add_pid(pid: u32) {
    with(|r| r.pids.push(pid));
}

pub fn remove_pid(pid: u32) {
    with(|r| r.pids.retain(|&p| p != pid));
}

pub fn add_postfix(config: PathBuf) {
    with(|r| r.postfix.push(config));
}

pub fn remove_postfix(config: &PathBuf) {
    with(|r| r.postfix.retain(|c| c != config));
}

pub fn set_temp(dir: PathBuf) {
    with(|r| r.temp = Some(dir));
}

/// Stops everything registered; called from the signal handler, then the process exits.
pub fn run_now() {
    let (pids, postfix, temp) = with(|r| (r.pids.clone(), r.postfix.clone(), r.temp.clone()));
    for config in postfix {
        let _ = std::process::Command::new(crate::relay::POSTFIX)
            .arg("-c")
            .arg(&config)
            .arg("stop")
            .output();
    }
    for pid in pids {
        crate::procstat::signal(pid, "KILL");
    }
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
}
