#!/usr/bin/env python3
"""End-to-end smoke test of the real `mailbrake` binary with third-party parts.

Clients: Python smtplib and swaks. Upstream: aiosmtpd (a real SMTP server library).
Also runs the smuggling and STARTTLS-injection probes of RELIABILITY.md §2.1/§2.2.
Everything on 127.0.0.1; every process started here is stopped by its PID.

Usage: smoke.py PATH/TO/mailbrake
Exit status 0 when every check passed; each check prints one line.
"""

import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

from aiosmtpd.controller import Controller

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAILED = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{(' — ' + detail) if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Recorder:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok: queued by aiosmtpd"


def wait_port(port, limit=20.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def data_exchange(port, sender, rcpts, msg, tls_ctx=None, login=None):
    """MAIL/RCPT/DATA with smtplib; returns (code, text) of the final reply."""
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("smoke.test")
    if tls_ctx is not None:
        s.starttls(context=tls_ctx)
        s.ehlo("smoke.test")
    if login:
        s.login(*login)
    s.mail(sender)
    for r in rcpts:
        s.rcpt(r)
    code, text = s.data(msg)
    s.quit()
    return code, text.decode()


def smuggle_probe(port):
    """RELIABILITY.md §2.1: returns the number of variants that got a second 354."""
    variants = {"LF.LF": b"\n.\n", "LF.CRLF": b"\n.\r\n", "CR.CRLF": b"\r.\r\n",
                "CRLF.LF": b"\r\n.\n", "CRLF.CR": b"\r\n.\r", "CR.CR": b"\r.\r"}
    bad = 0
    for seq in variants.values():
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.recv(4096)
        s.sendall(b"EHLO probe\r\n"); time.sleep(0.2); s.recv(4096)
        s.sendall(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"); time.sleep(0.3); s.recv(4096)
        s.sendall(b"Subject: first\r\n\r\nbody" + seq + b"MAIL FROM:<smuggled@example.test>\r\n"
                  b"RCPT TO:<b@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
        s.settimeout(1.5)
        out = b""
        try:
            while (c := s.recv(4096)):
                out += c
        except (TimeoutError, socket.timeout):
            pass
        s.close()
        bad += out.count(b"354 ") > 0
    return bad


def starttls_inject_probe(port):
    """RELIABILITY.md §2.2: True when the server ignored the command injected before TLS."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    f = s.makefile("rb")

    def rd():
        lines = []
        while True:
            line = f.readline()
            if not line:
                return b"".join(lines)
            lines.append(line)
            if line[3:4] == b" ":
                return b"".join(lines)

    rd()
    s.sendall(b"EHLO probe\r\n"); rd()
    s.sendall(b"STARTTLS\r\nNOOP\r\n")
    first = rd()
    if not first.startswith(b"220"):
        return True  # refused before TLS: nothing can be injected
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    try:
        t = ctx.wrap_socket(s, server_hostname="localhost"); t.settimeout(3)
        data = t.recv(4096)
        return data == b""
    except (TimeoutError, socket.timeout, ssl.SSLError, OSError):
        return True


def main():
    binary = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="mailbrake-smoke-")
    recorder = Recorder()
    sink_port = free_port()
    sink = Controller(recorder, hostname="127.0.0.1", port=sink_port)
    sink.start()
    proc = None
    try:
        subprocess.run([os.path.join(REPO, "certs", "make-dev-cert.sh"), work], check=True, stdout=subprocess.DEVNULL)
        pw_hash = subprocess.run([binary, "hash-password"], input="smoke-pw\n", capture_output=True, text=True, check=True).stdout.strip()
        smtp, admin, metrics = free_port(), free_port(), free_port()
        cfg = os.path.join(work, "mailbrake.toml")
        with open(cfg, "w") as f:
            f.write(f"""
[server]
listen = ["127.0.0.1:{smtp}"]
hostname = "smoke.mailbrake.test"
data_dir = "{work}/data"
policies = "{REPO}/policies"
[tls]
cert = "{work}/dev-cert.pem"
key = "{work}/dev-key.pem"
[[auth.users]]
name = "smoke"
password_hash = "{pw_hash}"
[upstream]
url = "smtp+plain://127.0.0.1:{sink_port}"
[admin]
listen = "127.0.0.1:{admin}"
[metrics]
listen = "127.0.0.1:{metrics}"
""")
        check("check-config accepts the smoke config",
              subprocess.run([binary, "check-config", "--config", cfg], capture_output=True).returncode == 0)
        log = open(os.path.join(work, "mailbrake.log"), "w")
        proc = subprocess.Popen([binary, "serve", "--config", cfg], stdout=log, stderr=subprocess.STDOUT)
        check("mailbrake listens", wait_port(smtp))

        clean = "From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: hello\r\n\r\nHi Bob.\r\n"
        code, text = data_exchange(smtp, "alice@corp.example", ["bob@partner.example"], clean)
        check("smtplib: clean mail gets the upstream's reply", code == 250 and "aiosmtpd" in text, f"{code} {text}")
        check("aiosmtpd received it", len(recorder.messages) == 1)

        # Folded as a real mailer folds it (RFC 5322 lines stay under 998 octets).
        to = ",\r\n ".join(f"member{i}@family{i % 600}.example" for i in range(832))
        incident2 = f"From: news@publisher.example\r\nTo: {to}\r\nSubject: newsletter\r\n\r\nDear members.\r\n"
        code, text = data_exchange(smtp, "news@publisher.example", ["member1@family1.example"], incident2)
        check("smtplib: incident 2 is held", code == 250 and "held as" in text, f"{code} {text}")
        held = text.split("held as ")[-1].strip()
        check("nothing reached the upstream", len(recorder.messages) == 1)

        ctx = ssl.create_default_context(cafile=os.path.join(work, "dev-cert.pem"))
        code, text = data_exchange(smtp, "app@corp.example", ["x@partner.example"], clean, tls_ctx=ctx, login=("smoke", "smoke-pw"))
        check("smtplib: STARTTLS + AUTH LOGIN/PLAIN delivers", code == 250 and len(recorder.messages) == 2, f"{code} {text}")

        s = smtplib.SMTP("127.0.0.1", smtp, timeout=10); s.ehlo("x")
        code, _ = s.docmd("AUTH", "PLAIN AHNtb2tlAHNtb2tlLXB3")
        s.close()
        check("AUTH before TLS is refused with 530", code == 530, str(code))

        if shutil.which("swaks"):
            r = subprocess.run(["swaks", "--server", f"127.0.0.1:{smtp}", "--from", "carol@corp.example",
                                "--to", "dave@partner.example", "--pipeline", "--silent", "2"], capture_output=True, text=True)
            check("swaks --pipeline delivers", r.returncode == 0 and len(recorder.messages) == 3, r.stderr[-200:])
            r = subprocess.run(["swaks", "--server", f"127.0.0.1:{smtp}", "--from", "carol@corp.example",
                                "--to", "dave@partner.example", "--tls", "--tls-verify", "--tls-ca-path", os.path.join(work, "dev-cert.pem"),
                                "--auth", "PLAIN", "--auth-user", "smoke", "--auth-password", "smoke-pw", "--silent", "2"],
                               capture_output=True, text=True)
            check("swaks --tls --auth delivers", r.returncode == 0 and len(recorder.messages) == 4, r.stderr[-300:])
        else:
            check("swaks is installed", False)

        before = len(recorder.messages)
        bad = smuggle_probe(smtp)
        smuggled = [m for m in recorder.messages if m[0] == "smuggled@example.test"]
        check("smuggling probe: 0 of 6 variants smuggled", bad == 0 and not smuggled, f"{bad} smuggled")
        check("smuggling probe: one upstream message per variant", len(recorder.messages) - before == 6,
              str(len(recorder.messages) - before))
        check("STARTTLS injection probe: injected command ignored", starttls_inject_probe(smtp))

        conn = ["--admin", f"127.0.0.1:{admin}", "--data-dir", f"{work}/data"]
        r = subprocess.run([binary, "quarantine", "list", "--json", *conn], capture_output=True, text=True)
        entries = [json.loads(line) for line in r.stdout.splitlines()]
        check("CLI lists the held message with its reason",
              r.returncode == 0 and len(entries) == 1 and entries[0]["id"] == held and entries[0]["reasons"] == ["visible_recipients"],
              r.stdout[:200])
        before = len(recorder.messages)
        r = subprocess.run([binary, "quarantine", "release", held, *conn], capture_output=True, text=True)
        check("CLI release delivers it once", r.returncode == 0 and len(recorder.messages) == before + 1, r.stdout + r.stderr)

        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        check("metrics: holds counted", 'mailbrake_holds_total{mode="enforce",reason="visible_recipients"} 1' in text)

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            rc = None
        check("SIGTERM: clean exit", rc == 0, str(rc))
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        sink.stop()
    print(f"smoke: {len(FAILED)} failed" + (f": {', '.join(FAILED)}" if FAILED else ""))
    if not FAILED:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"smoke: logs kept in {work}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
