"""Helpers for the durability tests (T1, T2, T16-T20, T22) on top of the shared harness `mb.py`.

- `configure(m, section, key=value, ...)`: sets keys inside a table of the configuration
  mb.py generated (TOML forbids a second `[limits]`, so `extra` cannot override them).
- `SinkAt`: smtp-sink on a chosen port (so an upstream can be restarted in another mode on
  the same address), dumping into its own directory.
- `Load`: N messages over K parallel sessions (threads), every reply recorded per X-Test-Seq.
- `Smtp`: a raw SMTP client on a socket (for sessions left in the middle of DATA).
- `Strace` / `parse_strace`: run mailbrake under strace and read the trace back.
- `verify_spool`: checks a spool file the way src/quarantine/spool.rs does (magic, lengths,
  CRC-32, end marker), independently of the product's code.
- `held_by_seq`, `dump_counts`, `percentile`, `hist_quantile`: counting and figures.
- `Procs`: stops every process it was given, by PID, also when the test fails.

Everything stays on 127.0.0.1.
"""

import collections
import json
import os
import re
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402

# A test stopped with SIGTERM (e.g. by `timeout` in run_durability.sh) still runs its
# `finally` blocks, so the processes it started are stopped by PID.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

# The shipped policy brakes a sender after 100 messages in 10 minutes: the load tests'
# sender is exempt (its messages are still inspected; held_message() is still held).
EXEMPT = '[[sender.overrides]]\nmatch = "a@corp.example"\nexempt = true\n'


# --------------------------------------------------------------------------------------------
# configuration


def configure(m, section, **keys):
    """Sets `key = value` (values are TOML literals: '"2MiB"', '100') in `[section]` of the
    configuration file of `m`, replacing keys already there; appends the table if absent."""
    with open(m.config) as f:
        lines = f.read().splitlines()
    header = f"[{section}]"
    if header not in (l.strip() for l in lines):
        lines.append(header)
        lines.extend(f"{k} = {v}" for k, v in keys.items())
    else:
        start = next(i for i, l in enumerate(lines) if l.strip() == header)
        end = start + 1
        while end < len(lines) and not lines[end].lstrip().startswith("["):
            end += 1
        body = [l for l in lines[start + 1:end] if l.split("=", 1)[0].strip() not in keys]
        body += [f"{k} = {v}" for k, v in keys.items()]
        lines[start + 1:end] = body
    with open(m.config, "w") as f:
        f.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# processes


class Procs:
    """Everything a test started; `stop_all()` stops each by PID (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.items = []

    def add(self, obj):
        self.items.append(obj)
        return obj

    def stop_all(self):
        for obj in reversed(self.items):
            try:
                if isinstance(obj, subprocess.Popen):
                    stop_popen(obj)
                else:
                    obj.stop()
            except Exception as e:  # keep stopping the others
                print(f"warning: could not stop {obj!r}: {e}", flush=True)


def stop_popen(p, timeout=10):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def children(pid):
    """PIDs of the direct children of `pid` (Linux /proc)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


class SinkAt(mb.Sink):
    """smtp-sink on `port` (default: a free one) with its dumps in `sink-<tag>`; a new SinkAt
    on the same port replaces an upstream that was stopped (another failure mode)."""

    def __init__(self, work, port=None, args=(), tag=None):
        self.port = port or mb.free_port()
        self.dump = os.path.join(work, f"sink-{tag or self.port}")
        os.makedirs(self.dump, exist_ok=True)
        cmd = [mb.SMTP_SINK, "-c", "-d", os.path.join(self.dump, "%Y%m%d%H/%M."), *args, f"127.0.0.1:{self.port}", "1000"]
        if os.geteuid() == 0:
            cmd[2:2] = ["-u", "nobody"]
        os.chmod(self.dump, 0o777)
        end = time.time() + 10
        while True:  # the old sink's socket may linger for a moment
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if mb.wait_port(self.port, 3) and self.proc.poll() is None:
                return
            self.stop()
            if time.time() > end:
                raise RuntimeError(f"smtp-sink did not start on port {self.port}")
            time.sleep(0.2)


def restart(m, timeout=30):
    """SIGTERM, wait for the exit (its code is returned), start again on the same config."""
    code = m.term(timeout)
    m.start()
    return code


# --------------------------------------------------------------------------------------------
# counting


HOLD_TO = ",\r\n ".join(f"m{i}@family{i}.example" for i in range(30))


def test_message(seq, held=False, pad=0):
    """mb.message() with an end marker `END <seq>` as its last body line, so a dump torn by a
    crash mid-transfer is not counted as a delivery. `held`: 30 external addresses in To
    (the shipped policy holds it, as mb.held_message()). `pad`: extra body bytes."""
    body = "hello\r\n" + "".join(f"{'x' * 76}\r\n" for _ in range(pad // 78)) + f"END {seq}\r\n"
    return mb.message(seq, to=HOLD_TO if held else "b@partner.example", body=body)


def dump_counts(*sinks):
    """Counter of X-Test-Seq values over every complete message (end marker present)
    dumped by the given sinks."""
    c = collections.Counter()
    for s in sinks:
        for raw in s.messages():
            for seq in mb.seqs([raw]):
                if f"END {seq}".encode() in raw:
                    c[seq] += 1
    return c


def torn_dumps(*sinks):
    """Dumped messages with an X-Test-Seq but without their end marker (cut mid-transfer)."""
    n = 0
    for s in sinks:
        for raw in s.messages():
            for seq in mb.seqs([raw]):
                if f"END {seq}".encode() not in raw:
                    n += 1
    return n


def seq_of_subject(subject):
    """mb.message() writes `Subject: test <seq>`."""
    if subject and subject.startswith("test "):
        return subject[5:]
    return None


def held_by_seq(m, state="held"):
    """{seq: [entry, ...]} of the quarantine listing (through the CLI)."""
    out = collections.defaultdict(list)
    for e in m.held(state):
        out[seq_of_subject(e.get("subject"))].append(e)
    return out


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def histogram(m, name):
    """(buckets [(le, cumulative count)], sum, count) of a Prometheus histogram."""
    buckets, total, count = [], 0.0, 0
    for line in m.metrics_text().splitlines():
        if line.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
        elif line.startswith(name + "_sum "):
            total = float(line.split()[-1])
        elif line.startswith(name + "_count "):
            count = int(float(line.split()[-1]))
    return sorted(buckets), total, count


def hist_quantile(buckets, q):
    """histogram_quantile() as Prometheus computes it (linear inside the bucket)."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_le, prev_c = le, c
    return prev_le


def counters(m, name):
    """{label value: float} of a one-label counter vector, e.g. upstream_requests_total."""
    out = {}
    for line in m.metrics_text().splitlines():
        if line.startswith(name + "{"):
            lab = re.search(r'="([^"]*)"', line).group(1)
            out[lab] = float(line.split()[-1])
    return out


# --------------------------------------------------------------------------------------------
# load


def send(port, msg, sender="a@corp.example", rcpts=("b@partner.example",), timeout=30):
    """One SMTP transaction; (code, text) of the first refusal (MAIL, RCPT, DATA) or of the
    final reply; (None, error) when the connection failed. Unlike mb.send, a `452 4.3.1` at
    MAIL is reported as such (smtplib does not raise on a refused MAIL)."""
    s = None
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
        s.ehlo("reliability.test")
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode(errors="replace")
        for r in rcpts:
            code, text = s.rcpt(r)
            if code not in (250, 251):
                return code, text.decode(errors="replace")
        code, text = s.data(msg)
        return code, text.decode(errors="replace")
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, str(e.smtp_error)
    except (smtplib.SMTPException, OSError) as e:
        return None, str(e)
    finally:
        if s is not None:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                s.close()


class Load:
    """Sends `items` [(seq, message text)] over `sessions` threads, one SMTP transaction per
    message (`send` above). Every result is kept: results[seq] = [(code, text, t0, t1), ...].
    Setting `stop` makes the threads take no new item; `attempt_limit` bounds retries of a
    message that got no reply or a 4xx (0 = no retry in this Load)."""

    def __init__(self, port, items, sessions=10, timeout=30, retries=0, retry_pause=0.2, pace=0.0):
        self.port = port
        self.pace = pace
        self.items = list(items)
        self.sessions = sessions
        self.timeout = timeout
        self.retries = retries
        self.retry_pause = retry_pause
        self.stop = threading.Event()
        self.results = collections.defaultdict(list)
        self.lock = threading.Lock()
        self.acks = 0
        self._next = 0
        self.threads = []

    def _take(self):
        with self.lock:
            if self.stop.is_set() or self._next >= len(self.items):
                return None
            it = self.items[self._next]
            self._next += 1
            return it

    def _run(self):
        while (it := self._take()) is not None:
            seq, msg = it
            for attempt in range(self.retries + 1):
                t0 = time.time()
                code, text = send(self.port, msg, timeout=self.timeout)
                t1 = time.time()
                with self.lock:
                    self.results[seq].append((code, text, t0, t1))
                    if code == 250:
                        self.acks += 1
                if code is not None and not 400 <= code < 500:
                    break  # a final answer: 2xx, or a permanent 5xx
                if self.stop.is_set():
                    break
                time.sleep(self.retry_pause)
            if self.pace:
                time.sleep(self.pace)

    def start(self):
        for _ in range(self.sessions):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def join(self, limit):
        end = time.time() + limit
        for t in self.threads:
            t.join(max(0.0, end - time.time()))
        return not any(t.is_alive() for t in self.threads)

    def run(self, limit=120):
        self.start()
        if not self.join(limit):
            self.stop.set()
            raise TimeoutError(f"load did not finish within {limit} s")
        return self

    def acked(self):
        """{seq: reply text} of every message that got a 250."""
        return {s: r[1] for s, rs in self.results.items() for r in rs if r[0] == 250}

    def unacked(self):
        """Seqs of the items that never got a 250 (failed, or never tried)."""
        acked = self.acked()
        return [s for s, _ in self.items if s not in acked]


HELD_RE = re.compile(r"held as ([0-9A-Z]{26})")


# --------------------------------------------------------------------------------------------
# a raw SMTP client (sessions left half-way)


class Smtp:
    """One SMTP session over a socket; `reply()` reads one whole (multi-line) reply."""

    def __init__(self, port, timeout=10, source="127.0.0.1"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self, timeout=None):
        """(code, text) of the next reply; (None, 'eof') when the server closed first."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return (None, "eof" + (": " + self.buf.decode(errors="replace") if self.buf else ""))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return (int(line[:3]) if line[:3].isdigit() else None, "\n".join(lines))

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.reply(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def dot_stuff(msg):
    body = msg.replace("\r\n.", "\r\n..")
    if not body.endswith("\r\n"):
        body += "\r\n"
    return body


# --------------------------------------------------------------------------------------------
# strace


STRACE_CALLS = "fsync,fdatasync,sync_file_range,rename,renameat,renameat2,write,writev,sendto,sendmsg,openat"


def strace_wrap(trace_path, calls=STRACE_CALLS):
    """The wrapper for Mailbrake.start(): -f threads, -ttt epoch times, -T durations,
    -y paths of fds (so no openat bookkeeping is needed), -s 256 (a whole reply line)."""
    return ["strace", "-f", "-ttt", "-T", "-y", "-s", "256", "-o", trace_path, "-e", f"trace={calls}"]


def term_traced(m, timeout=30):
    """SIGTERM to mailbrake running under strace (strace's child), then wait for strace."""
    kids = children(m.proc.pid)
    for pid in kids:
        os.kill(pid, signal.SIGTERM)
    try:
        return m.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in children(m.proc.pid):
            os.kill(pid, signal.SIGKILL)
        m.proc.kill()
        m.proc.wait()
        return None


class Call:
    __slots__ = ("pid", "name", "args", "ret", "t0", "dur", "enter", "exit")

    def __init__(self, pid, name, args, ret, t0, dur, enter, exit_):
        self.pid, self.name, self.args, self.ret = pid, name, args, ret
        self.t0, self.dur, self.enter, self.exit = t0, dur, enter, exit_

    @property
    def t1(self):
        return self.t0 + (self.dur or 0.0)

    def __repr__(self):
        return f"<{self.name}({self.args[:80]}) = {self.ret} @{self.enter}-{self.exit}>"


_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_DONE = re.compile(r"^(.*)\)\s+=\s+(-?\d+|\?)(?:\s+\w+\s+\([^)]*\))?(?:\s+<([\d.]+)>)?\s*$")


def parse_strace(lines):
    """Calls from `strace -f -ttt -T -y` output, in order of entry; `enter`/`exit` are line
    numbers (a total order of the events, as strace printed them)."""
    calls = []
    pending = {}
    for n, raw in enumerate(lines):
        m = _LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if rest.startswith(("---", "+++")):
            continue
        if rest.startswith("<... "):
            mm = re.match(r"<\.\.\. (\w+) resumed>(.*)$", rest)
            if not mm or pid not in pending:
                continue
            name, t0, enter, head = pending.pop(pid)
            d = _DONE.match(head + mm.group(2))
            if not d:
                continue
            args = d.group(1)[len(name) + 1:]
            calls.append(Call(pid, name, args, d.group(2), t0, float(d.group(3) or 0), enter, n))
            continue
        name = rest.split("(", 1)[0]
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (name, ts, n, rest[: -len("<unfinished ...>")].rstrip())
            continue
        d = _DONE.match(rest)
        if not d:
            continue
        args = d.group(1)[len(name) + 1:]
        calls.append(Call(pid, name, args, d.group(2), ts, float(d.group(3) or 0), n, n))
    calls.sort(key=lambda c: c.enter)
    return calls


def fd_path(args):
    """The path strace -y printed for the first fd argument: `13</x/y>` -> /x/y."""
    m = re.match(r"\d+<(.*?)>", args)
    return m.group(1) if m else None


def rename_paths(call):
    """(old, new) of rename/renameat/renameat2."""
    strs = re.findall(r'"((?:[^"\\]|\\.)*)"', call.args)
    return (strs[0], strs[1]) if len(strs) >= 2 else (None, None)


def check_held_chain(calls, ids):
    """For each id: the `250 ... held as <id>` write to the client must come after
    (1) an fsync/fdatasync of spool/tmp/<id> that returned 0, then (2) a rename of
    spool/tmp/<id> to spool/held/<id>, then (3) an fsync of the spool/held directory, each
    finished before the next began. Returns ({id: problem}, {id: commit->250 seconds})."""
    syncs = [c for c in calls if c.name in ("fsync", "fdatasync") and c.ret == "0"]
    renames = [c for c in calls if c.name.startswith("rename") and c.ret == "0"]
    replies = [c for c in calls if c.name in ("sendto", "write", "writev", "sendmsg") and "held as " in c.args and '"250 ' in c.args]
    bad, latency = {}, {}
    for id_ in ids:
        w = next((c for c in replies if f"held as {id_}" in c.args), None)
        if w is None:
            bad[id_] = "no 250 write in the trace"
            continue
        r = next((c for c in renames if rename_paths(c)[0] and rename_paths(c)[0].endswith(f"/spool/tmp/{id_}")
                  and rename_paths(c)[1].endswith(f"/spool/held/{id_}")), None)
        if r is None:
            bad[id_] = "no rename tmp/<id> -> held/<id>"
            continue
        f = next((c for c in syncs if (fd_path(c.args) or "").endswith(f"/spool/tmp/{id_}") and c.exit < r.enter), None)
        if f is None:
            bad[id_] = "no fsync/fdatasync of tmp/<id> finished before the rename"
            continue
        d = next((c for c in syncs if (fd_path(c.args) or "").endswith("/spool/held") and c.enter > r.exit and c.exit < w.enter), None)
        if d is None:
            bad[id_] = "no fsync of spool/held/ between the rename and the 250"
            continue
        if not (f.exit < r.enter and r.exit < d.enter and d.exit < w.enter):
            bad[id_] = "out of order"
            continue
        latency[id_] = w.t0 - d.t1
    return bad, latency


# --------------------------------------------------------------------------------------------
# spool files (format: src/quarantine/spool.rs)


def verify_spool(path):
    """None if the spool file at `path` is complete and its CRC verifies; else the problem.
    Returns (problem, meta dict)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"unreadable: {e}", None
    n = len(data)
    if n < 8 + 4 + 8 + 20 or data[:8] != b"MBSPOOL1":
        return "bad magic or too short", None
    if data[-8:] != b"MBSPEND1":
        return "no end marker (torn)", None
    crc, total = struct.unpack("<IQ", data[n - 20:n - 8])
    if total != n - 20:
        return "length mismatch (torn)", None
    if zlib.crc32(data[: n - 20]) & 0xFFFFFFFF != crc:
        return "checksum mismatch", None
    meta_len = struct.unpack("<I", data[8:12])[0]
    if 12 + meta_len + 8 > n - 20:
        return "bad metadata length", None
    try:
        meta = json.loads(data[12:12 + meta_len])
    except ValueError as e:
        return f"bad metadata: {e}", None
    body_len = struct.unpack("<Q", data[12 + meta_len:20 + meta_len])[0]
    if 20 + meta_len + body_len != n - 20:
        return "bad body length", None
    return None, meta


def log_field(m, key):
    """The last value of `key=` in mailbrake's log (ANSI colours stripped)."""
    text = re.sub(rb"\x1b\[[0-9;]*m", b"", m.logs()).decode(errors="replace")
    vals = re.findall(rf"\b{re.escape(key)}=(\S+)", text)
    return vals[-1] if vals else None


def clean_log(m):
    return re.sub(rb"\x1b\[[0-9;]*m", b"", m.logs()).decode(errors="replace")
