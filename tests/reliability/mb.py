"""Shared harness for the reliability tests (RELIABILITY.md §4): the real `mailbrake` binary,
a real upstream (Postfix's smtp-sink dumping every message to a file), free loopback ports,
and helpers to send, query the CLI and read metrics.

Everything runs on 127.0.0.1; every process started here is stopped by its PID.
Each test script prints one figure line:  FIGURE <test-id> <key=value> ...
"""

import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("MAILBRAKE_BIN", os.path.join(REPO, "target", "debug", "mailbrake"))
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, limit=30.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def figure(test, **values):
    """Prints the figure line of a test: FIGURE T1 lost=0 duplicates=3 ..."""
    parts = " ".join(f"{k}={v}" for k, v in values.items())
    print(f"FIGURE {test} {parts}", flush=True)


def fail(test, why):
    print(f"FAIL {test}: {why}", flush=True)
    sys.exit(1)


class Sink:
    """Postfix smtp-sink on a free port, dumping each delivered message to its own file.

    `args` are extra smtp-sink flags for failure modes: ["-r", "DATA"] (4xx at DATA),
    ["-f", "RCPT"] (5xx at RCPT), ["-q", "."] (disconnect after the final dot), ["-w", "2"].
    """

    def __init__(self, work, args=()):
        self.port = free_port()
        self.dump = os.path.join(work, f"sink-{self.port}")
        os.makedirs(self.dump, exist_ok=True)
        cmd = [SMTP_SINK, "-c", "-u", "nobody", "-d", os.path.join(self.dump, "%Y%m%d%H/%M."), *args, f"127.0.0.1:{self.port}", "1000"]
        if os.geteuid() != 0:
            cmd.remove("-u")
            cmd.remove("nobody")
        # smtp-sink writes as the -u user: the dump directory must be writable by it.
        os.chmod(self.dump, 0o777)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.stop()
            raise RuntimeError("smtp-sink did not start")

    def url(self):
        return f"smtp+plain://127.0.0.1:{self.port}"

    def messages(self):
        """Contents (bytes) of every dumped message."""
        out = []
        for root, _, files in os.walk(self.dump):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    out.append(fh.read())
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Mailbrake:
    """The real binary with a generated configuration. `extra` is TOML appended to it;
    `policy_local` is written as policies/local.toml next to a copy of the shipped default."""

    def __init__(self, work, upstream=None, extra="", policy_local="", data_dir=None, env=None):
        self.work = work
        self.smtp = free_port()
        self.admin = free_port()
        self.metrics = free_port()
        self.data = data_dir or os.path.join(work, "data")
        self.policies = os.path.join(work, "policies")
        os.makedirs(self.policies, exist_ok=True)
        shutil.copy(os.path.join(REPO, "policies", "default.toml"), self.policies)
        if policy_local:
            with open(os.path.join(self.policies, "local.toml"), "w") as f:
                f.write(policy_local)
        self.config = os.path.join(work, f"mailbrake-{self.smtp}.toml")
        up = f'url = "{upstream}"\n' if upstream else ""
        with open(self.config, "w") as f:
            f.write(
                f"""
[server]
listen = ["127.0.0.1:{self.smtp}"]
hostname = "mailbrake.reliability.test"
data_dir = "{self.data}"
policies = "{self.policies}"
shutdown_grace = "10s"
[limits]
min_free_space = "1MiB"
[upstream]
{up}timeout = "10s"
[admin]
listen = "127.0.0.1:{self.admin}"
[metrics]
listen = "127.0.0.1:{self.metrics}"
{extra}
"""
            )
        self.log_path = os.path.join(work, f"mailbrake-{self.smtp}.log")
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def start(self, wrap=()):
        """Starts the server (optionally under a wrapper such as strace) and waits for SMTP."""
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([*wrap, BINARY, "serve", "--config", self.config], stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if not wait_port(self.smtp, 60):
            self.stop()
            raise RuntimeError(f"mailbrake did not start; log: {self.log_path}")
        return self

    def pid(self):
        return self.proc.pid

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def term(self, timeout=30):
        """SIGTERM; returns the exit code (None if it did not exit in time, then killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.term(15)

    def cli(self, *args):
        """Runs `mailbrake <args> --admin .. --data-dir ..`: (exit code, stdout, stderr)."""
        r = subprocess.run([BINARY, *args, "--admin", f"127.0.0.1:{self.admin}", "--data-dir", self.data], capture_output=True, text=True)
        return r.returncode, r.stdout, r.stderr

    def held(self, state="held"):
        code, out, _ = self.cli("quarantine", "list", "--json", "--state", state)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def metrics_text(self):
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5).read().decode()

    def metric(self, name_and_labels):
        for line in self.metrics_text().splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return None

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read()


def message(seq, extra_headers="", body="hello\r\n", to="b@partner.example"):
    """A clean message carrying a unique X-Test-Seq, so deliveries can be counted."""
    return (f"From: a@corp.example\r\nTo: {to}\r\nSubject: test {seq}\r\nMessage-ID: <{seq}@corp.example>\r\n"
            f"X-Test-Seq: {seq}\r\n{extra_headers}\r\n{body}")


def held_message(seq):
    """A message the shipped policy holds (30 external addresses visible in To)."""
    to = ",\r\n ".join(f"m{i}@family{i}.example" for i in range(30))
    return message(seq, to=to)


def send(port, seq, msg=None, sender="a@corp.example", rcpts=("b@partner.example",), timeout=30):
    """One SMTP transaction; returns (code, text) of the final reply, or (None, error)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
            s.ehlo("reliability.test")
            s.mail(sender)
            for r in rcpts:
                s.rcpt(r)
            code, text = s.data(msg if msg is not None else message(seq))
            return code, text.decode(errors="replace")
    except (smtplib.SMTPException, OSError) as e:
        return None, str(e)


def seqs(messages):
    """The X-Test-Seq values found in a list of message bytes."""
    out = []
    for m in messages:
        for line in m.split(b"\n"):
            if line.lower().startswith(b"x-test-seq:"):
                out.append(line.split(b":", 1)[1].strip().decode())
                break
    return out


@contextlib.contextmanager
def workdir(test):
    """A temporary working directory, kept (and printed) when the test fails."""
    d = tempfile.mkdtemp(prefix=f"mailbrake-{test}-")
    # smtp-sink writes its dumps as `nobody`: the directory must be traversable.
    os.chmod(d, 0o755)
    ok = False
    try:
        yield d
        ok = True
    finally:
        if ok:
            shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"{test}: work directory kept: {d}", flush=True)
