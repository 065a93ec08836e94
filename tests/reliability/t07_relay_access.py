#!/usr/bin/env python3
"""T7 (RELIABILITY.md §2.3, §4): open relay / access control.

`[relay] allowed_networks = ["127.0.0.1/32"]`, one AUTH user (hash made with
`mailbrake hash-password`), TLS with a certificate made at run time (AUTH is only offered
after TLS). Clients bind the source address 127.0.0.2 (outside the allowed network):
  1. swaks, no AUTH                      -> 554 5.7.1 at RCPT
  2. raw client, STARTTLS, no AUTH       -> 554 5.7.1 at RCPT
  3. raw client, STARTTLS, wrong password -> 535 5.7.8, then RCPT still 554 5.7.1
  4. raw client, unknown user             -> 535 5.7.8, then RCPT still 554 5.7.1
  5. raw client, AUTH before TLS          -> 530 5.7.0, then RCPT still 554 5.7.1
  -> 0 messages at the upstream (smtp-sink) after all of these.
  6. swaks --tls --auth PLAIN with the right password from 127.0.0.2 -> delivered (1 message)
  7. control: from 127.0.0.1 without AUTH -> delivered.
"""

import base64
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

USER, PASSWORD = "webapp", "correct horse battery staple"


def plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def attempt(port, tls, auth=None, seq="x"):
    """From 127.0.0.2: returns the list of replies (AUTH reply if any, MAIL, RCPT, DATA)."""
    c = rt.Client(port, src="127.0.0.2")
    out = []
    try:
        c.ehlo()
        if tls:
            c.starttls()
            c.cmd("EHLO client.test")
        if auth:
            out.append(c.cmd(f"AUTH PLAIN {plain(*auth)}", timeout=15).strip())
        out.append(c.cmd("MAIL FROM:<a@corp.example>").strip())
        out.append(c.cmd("RCPT TO:<b@partner.example>").strip())
        out.append(c.cmd("DATA").strip())
        if out[-1].startswith("354"):
            c.send(mb.message(seq).encode() + b".\r\n")
            out.append(c.reply(30).strip())
        c.cmd("QUIT")
    finally:
        c.close()
    return out


def swaks(port, *extra):
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--local-interface", "127.0.0.2",
                        "--from", "a@corp.example", "--to", "b@partner.example", "--timeout", "20",
                        *extra], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def main():
    t0 = time.monotonic()
    with mb.workdir("t07") as w, rt.Procs() as P:
        cert, key = rt.make_cert(w)
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), sections={
            "tls": {"cert": cert, "key": key},
            "relay": {"allowed_networks": ["127.0.0.1/32"]},
            "auth": {"failure_delay": "200ms", "users": [{"name": USER, "password_hash": rt.hash_password(PASSWORD)}]},
        }).start())
        results = {}
        code, out = swaks(m.smtp, "--header", "X-Test-Seq: swaks-noauth")
        results["swaks_noauth"] = next((l.strip() for l in out.splitlines() if "554" in l and "<**" in l), out[-300:])
        if "554 5.7.1" not in out:
            mb.fail("T7", f"swaks from 127.0.0.2 without AUTH: no 554 5.7.1:\n{out}")

        r = attempt(m.smtp, tls=True, seq="tls-noauth")
        results["tls_noauth"] = r
        if not (r[0].startswith("250") and r[1].startswith("554 5.7.1")):
            mb.fail("T7", f"STARTTLS, no AUTH: {r}")
        r = attempt(m.smtp, tls=True, auth=(USER, "wrong password"), seq="bad-pass")
        results["bad_password"] = r
        if not (r[0].startswith("535 5.7.8") and r[2].startswith("554 5.7.1")):
            mb.fail("T7", f"wrong password: {r}")
        r = attempt(m.smtp, tls=True, auth=("nobody", PASSWORD), seq="bad-user")
        results["unknown_user"] = r
        if not (r[0].startswith("535 5.7.8") and r[2].startswith("554 5.7.1")):
            mb.fail("T7", f"unknown user: {r}")
        r = attempt(m.smtp, tls=False, auth=(USER, PASSWORD), seq="plain-auth")
        results["auth_before_tls"] = r
        if not (r[0].startswith("530 5.7.0") and r[2].startswith("554 5.7.1")):
            mb.fail("T7", f"AUTH before TLS: {r}")
        refused_at_sink = len(sink.messages())
        if refused_at_sink:
            mb.fail("T7", f"{refused_at_sink} unauthorised messages reached the upstream: {mb.seqs(sink.messages())}")

        code, out = swaks(m.smtp, "--tls", "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                          "--header", "X-Test-Seq: swaks-auth")
        auth_ok = "235 2.7.0" in out
        delivered_line = next((l.strip() for l in out.splitlines() if l.lstrip().startswith(("<-", "<~")) and "250 2.0.0" in l), None)
        if code != 0 or not auth_ok or not delivered_line:
            mb.fail("T7", f"swaks with valid AUTH from 127.0.0.2 failed (exit {code}):\n{out}")
        # control: the allowed network relays without AUTH
        ctrl = mb.send(m.smtp, "allowed-noauth")
        if ctrl[0] != 250:
            mb.fail("T7", f"127.0.0.1 without AUTH: {ctrl}")
        got = sorted(mb.seqs(sink.messages()))
        for k, v in results.items():
            print(f"  {k}: {v}", flush=True)
        mb.figure("T7", unauth_rcpt="554_5.7.1", unauth_at_sink=refused_at_sink, bad_auth="535_then_554",
                  auth_before_tls="530", valid_auth_delivered=int("swaks-auth" in got),
                  allowed_net_delivered=int("allowed-noauth" in got), sink_total=len(got),
                  seconds=round(time.monotonic() - t0, 1))
        if got != ["allowed-noauth", "swaks-auth"]:
            mb.fail("T7", f"upstream got {got}; want exactly the authorised and the allowed-network message")
    print("PASS T7", flush=True)


if __name__ == "__main__":
    main()
