"""Helpers for the attack tests (T4-T15, T25) on top of the shared harness `mb.py`.

- `Relay`: `mb.Mailbrake` whose generated configuration can be changed per section
  (`sections={"limits": {"bare_newlines": "reject"}, "server": {...}}`): keys are merged
  into the tables mb.py already writes ([server], [limits], [upstream]), because TOML does
  not allow a table to be defined twice (mb.py's `extra` cannot carry a second [limits]).
- `Client`: a raw SMTP client over a socket (optionally bound to a 127.0.0.x source
  address), reading whole (multi-line) replies, with STARTTLS.
- `make_cert`: a self-signed certificate made with openssl in the work directory.
- `rss_kib`, `hwm_kib`, `reset_hwm`: memory of a process from /proc/<pid>/status.
- `Procs`: stops everything it was given (by PID), also when the test fails.

Everything stays on 127.0.0.0/8.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402


# --------------------------------------------------------------------------------------
# configuration


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def merge_sections(text, sections):
    """Sets `key = value` inside each `[section]` of a TOML text (replacing a key that is
    already there), appending the section when it does not exist."""
    lines = text.splitlines()
    for name, kv in sections.items():
        header = f"[{name}]"
        try:
            start = next(i for i, l in enumerate(lines) if l.strip() == header)
        except StopIteration:
            lines.append(header)
            lines.extend(f"{k} = {toml_value(v)}" for k, v in kv.items())
            continue
        end = start + 1
        while end < len(lines) and not lines[end].lstrip().startswith("["):
            end += 1
        body = [l for l in lines[start + 1:end] if l.split("=", 1)[0].strip() not in kv]
        body.extend(f"{k} = {toml_value(v)}" for k, v in kv.items())
        lines[start + 1:end] = body
    return "\n".join(lines) + "\n"


class Relay(mb.Mailbrake):
    """mb.Mailbrake with per-section configuration overrides."""

    def __init__(self, work, upstream=None, sections=None, **kw):
        super().__init__(work, upstream, **kw)
        if sections:
            with open(self.config) as f:
                text = f.read()
            with open(self.config, "w") as f:
                f.write(merge_sections(text, sections))

    def config_text(self):
        with open(self.config) as f:
            return f.read()

    def start(self, wrap=()):
        """mb.Mailbrake.start, retried with new ports when one of the free ports it picked was
        taken in the meantime by another process ("Address already in use")."""
        for attempt in range(4):
            try:
                return super().start(wrap)
            except RuntimeError:
                with open(self.log_path, "rb") as f:
                    busy = b"Address already in use" in f.read()
                if not busy or attempt == 3:
                    raise
                text = self.config_text()
                for attr in ("smtp", "admin", "metrics"):
                    old, new = getattr(self, attr), mb.free_port()
                    text = text.replace(f"127.0.0.1:{old}\"", f"127.0.0.1:{new}\"")
                    setattr(self, attr, new)
                with open(self.config, "w") as f:
                    f.write(text)
                print(f"  (a port was taken meanwhile; restarting mailbrake on new ports, attempt {attempt + 2})",
                      flush=True)
        return self


def hash_password(password):
    r = subprocess.run([mb.BINARY, "hash-password"], input=password + "\n", capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.startswith("$argon2"):
        raise RuntimeError(f"hash-password failed: {r.stderr}")
    return r.stdout.strip()


def make_cert(work):
    """A self-signed certificate for localhost made with openssl: (cert path, key path)."""
    cert = os.path.join(work, "cert.pem")
    key = os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def client_tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------------------
# processes and memory


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


def hwm_kib(pid):
    return status_kib(pid, "VmHWM")


def reset_hwm(pid):
    """Resets the peak RSS (VmHWM) of a process (Linux: write 5 to clear_refs). False if not
    allowed, in which case VmHWM stays the peak over the whole life of the process."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy(pid, seconds=1.5):
    """CPU seconds a process used during the next `seconds` (an idle relay uses ~0)."""
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - c0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Procs:
    """Context manager that stops every registered process object (mb.Sink, mb.Mailbrake,
    subprocess.Popen) by its PID on exit, whatever happened."""

    def __init__(self):
        self.items = []

    def add(self, p):
        self.items.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in reversed(self.items):
            try:
                if isinstance(p, subprocess.Popen):
                    if p.poll() is None:
                        p.terminate()
                        try:
                            p.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait()
                else:
                    p.stop()
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: {e}", flush=True)
        return False


# --------------------------------------------------------------------------------------
# raw SMTP client


class Closed(Exception):
    pass


class Client:
    """A raw SMTP client: exact bytes out, whole replies in."""

    def __init__(self, port, src=None, timeout=10.0, host="127.0.0.1"):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        if src:
            self.s.bind((src, 0))
        self.s.connect((host, port))
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply in time")
        self.s.settimeout(left)
        try:
            c = self.s.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(str(e))
        except ssl.SSLError as e:
            raise Closed(str(e))
        if not c:
            raise Closed("closed by server")
        self.buf += c

    def reply(self, timeout=None):
        """One whole reply (all lines, CRLF kept) as str."""
        deadline = time.monotonic() + (timeout or self.timeout)
        out = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            line, self.buf = self.buf.split(b"\r\n", 1)
            out.append(line + b"\r\n")
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(out).decode("utf-8", "replace")

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def code(self, timeout=None):
        return int(self.reply(timeout)[:3])

    def read_until_close(self, timeout):
        """Everything the server sends until it closes; (bytes, closed?)."""
        deadline = time.monotonic() + timeout
        data, self.buf = self.buf, b""
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                c = self.s.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return data, True
            if not c:
                return data, True
            data += c
        return data, False

    def ehlo(self, name="client.test"):
        r = self.reply()  # greeting
        if not r.startswith("220"):
            raise AssertionError(f"greeting: {r!r}")
        e = self.cmd(f"EHLO {name}")
        if not e.startswith("250"):
            raise AssertionError(f"EHLO: {e!r}")
        return e

    def starttls(self, ctx=None):
        r = self.cmd("STARTTLS")
        if not r.startswith("220"):
            raise AssertionError(f"STARTTLS: {r!r}")
        self.s = (ctx or client_tls_context()).wrap_socket(self.s, server_hostname="localhost")
        self.buf = b""
        return r

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def replies_in(text):
    """Splits a stream of reply bytes/str into whole replies."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out, cur = [], []
    for line in text.split("\r\n"):
        if not line:
            continue
        cur.append(line)
        if len(line) < 4 or line[3] != "-":
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


def bare_newlines(data):
    """Count of CR not followed by LF plus LF not preceded by CR."""
    return len(re.findall(rb"\r(?!\n)", data)) + len(re.findall(rb"(?<!\r)\n", data))


def sink_body(raw):
    """smtp-sink's dump file: its own header lines (X-Client-Addr, X-Client-Proto, X-Helo-Args,
    X-Mail-Args, X-Rcpt-Args) then the message as received (after its Received line). Returns
    the bytes after smtp-sink's own header block."""
    return raw


def metric_sum(m, name):
    """Sum over all label sets of a metric (e.g. a counter with labels)."""
    total = 0.0
    for line in m.metrics_text().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.split()[-1])
    return total


class Timer:
    def __init__(self):
        self.t0 = time.monotonic()

    def s(self):
        return time.monotonic() - self.t0


# --------------------------------------------------------------------------------------
# a recording TCP proxy (to see the exact bytes mailbrake sends to its upstream)

import socketserver  # noqa: E402
import threading  # noqa: E402


class RecordingProxy:
    """Listens on a free loopback port and forwards every connection to `target_port`,
    keeping the exact bytes the client (mailbrake) sent on each connection."""

    def __init__(self, target_port):
        self.streams = []
        lock = threading.Lock()
        streams = self.streams

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                up = socket.create_connection(("127.0.0.1", target_port), timeout=30)
                rec = bytearray()
                with lock:
                    streams.append(rec)

                def pump(src, dst, record):
                    try:
                        while True:
                            c = src.recv(65536)
                            if not c:
                                break
                            if record is not None:
                                record.extend(c)
                            dst.sendall(c)
                    except OSError:
                        pass
                    finally:
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass

                t = threading.Thread(target=pump, args=(up, self.request, None), daemon=True)
                t.start()
                pump(self.request, up, rec)
                t.join(timeout=30)
                up.close()

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self):
        return f"smtp+plain://127.0.0.1:{self.port}"

    def sent(self):
        return b"".join(bytes(s) for s in self.streams)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------
# aiosmtpd 1.4.4.post2: a known-bad SMTP server (CVE-2024-27305: it ends DATA at LF.CRLF;
# CVE-2024-34083: STARTTLS injection), used to prove that a probe detects a vulnerable target.

AIOSMTPD_VERSION = "1.4.4.post2"
AIOSMTPD_VENV = os.environ.get("AIOSMTPD_VENV", f"/tmp/mailbrake-reliability-aiosmtpd-{AIOSMTPD_VERSION}")

AIOSMTPD_SERVER = r'''
import asyncio, os, signal, sys
from aiosmtpd.controller import Controller
dump, port = sys.argv[1], int(sys.argv[2])
tls = None
if len(sys.argv) > 4:
    import ssl
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
class H:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        H.n += 1
        with open(os.path.join(dump, f"{os.getpid()}-{H.n:05d}.eml"), "wb") as f:
            f.write(b"X-Mail-From: " + envelope.mail_from.encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
        return "250 OK"
c = Controller(H(), hostname="127.0.0.1", port=port, tls_context=tls)
c.start()
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
'''


def aiosmtpd_python():
    """The venv's python with aiosmtpd 1.4.4.post2 (installed with pip on first use), or
    None with a message when it cannot be installed."""
    py = os.path.join(AIOSMTPD_VENV, "bin", "python")
    check = [py, "-c", f"import aiosmtpd; assert aiosmtpd.__version__ == '{AIOSMTPD_VERSION}'"]
    if os.path.exists(py) and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    try:
        subprocess.run([sys.executable, "-m", "venv", AIOSMTPD_VENV], check=True, capture_output=True, timeout=120)
        subprocess.run([py, "-m", "pip", "install", "-q", f"aiosmtpd=={AIOSMTPD_VERSION}"], check=True,
                       capture_output=True, timeout=180)
        subprocess.run(check, check=True, capture_output=True)
        return py
    except (subprocess.SubprocessError, OSError) as e:
        print(f"SKIP aiosmtpd {AIOSMTPD_VERSION} unavailable ({e}); known-bad target not run", flush=True)
        return None


class Aiosmtpd:
    """aiosmtpd 1.4.4.post2 on a free port, writing each message to `dump`."""

    def __init__(self, work, py, cert=None, key=None):
        self.port = mb.free_port()
        self.dump = os.path.join(work, f"aiosmtpd-{self.port}")
        os.makedirs(self.dump, exist_ok=True)
        script = os.path.join(work, "aiosmtpd_server.py")
        with open(script, "w") as f:
            f.write(AIOSMTPD_SERVER)
        tls = [cert, key] if cert else []
        self.proc = subprocess.Popen([py, script, self.dump, str(self.port), *tls], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        if not mb.wait_port(self.port, 30):
            self.stop()
            raise RuntimeError("aiosmtpd did not start")

    def url(self):
        return f"smtp+plain://127.0.0.1:{self.port}"

    def messages(self):
        out = []
        for f in sorted(os.listdir(self.dump)):
            with open(os.path.join(self.dump, f), "rb") as fh:
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
