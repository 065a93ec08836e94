#!/usr/bin/env python3
"""T4 + T5 (RELIABILITY.md §2.1, §4): SMTP smuggling, inbound and outbound.

T4 inbound: the six-variant probe of §2.1 (each variant followed by a whole second
transaction inside one DATA) against the real mailbrake binary:
  - default (`bare_newlines = "normalize"`): 0 of 6 smuggled, and the upstream (smtp-sink)
    receives exactly one message per probe, never one from the smuggled sender;
  - `[limits] bare_newlines = "reject"`: `550 5.5.2` for all six, nothing delivered;
  - against aiosmtpd 1.4.4.post2 (known bad, CVE-2024-27305; pip into a temp venv, skipped
    with a message if it cannot be installed): the probe must report at least one smuggled
    variant, which proves the probe detects smuggling.
T5 outbound: bodies containing `\\n.\\r\\n`, `\\r.\\r\\n`, `\\n.\\n` (each followed by a
smuggled transaction) through mailbrake to its upstream. A recording proxy keeps the exact
bytes mailbrake sends (smtp-sink's dump files turn CRLF into LF, so they cannot show bare
newlines): no bare CR or LF on the wire; smtp-sink gets exactly 1 message per submission;
and with the lenient aiosmtpd 1.4.4.post2 as the upstream (if available), still exactly 1.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

VARIANTS = {"LF.LF": b"\n.\n", "LF.CRLF": b"\n.\r\n", "CR.CRLF": b"\r.\r\n",
            "CRLF.LF": b"\r\n.\n", "CRLF.CR": b"\r\n.\r", "CR.CR": b"\r.\r"}


def probe(host, port, log):
    """The §2.1 probe, unchanged in what it sends; returns {variant: (smuggled?, replies)}.
    Lines it would print are appended to `log` (probes run in parallel threads)."""
    results = {}
    for name, seq in VARIANTS.items():
        s = socket.create_connection((host, port), timeout=5)
        try:
            s.recv(4096)
            s.sendall(b"EHLO probe\r\n"); time.sleep(0.2); s.recv(4096)
            s.sendall(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"); time.sleep(0.3); s.recv(4096)
            s.sendall(b"Subject: first\r\n\r\nbody" + seq + b"MAIL FROM:<smuggled@example.test>\r\n"
                      b"RCPT TO:<b@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
            s.settimeout(1.5); out = b""
            try:
                while (c := s.recv(4096)):
                    out += c
            except (TimeoutError, socket.timeout):
                pass
        finally:
            s.close()
        n = out.count(b"354 ")  # a 2nd "354" means the smuggled DATA was accepted
        results[name] = (n > 0, out)
        log.append(f"  {name:8} {'SMUGGLED' if n else 'ok'} {out.splitlines()[:4]}")
    return results


def t4(w, P, aio_py):
    """The probe against four targets at once (each probe takes ~12 s of waiting)."""
    figures = {}
    sink_n = P.add(mb.Sink(w))
    m_n = P.add(rt.Relay(w, sink_n.url()).start())
    sink_r = P.add(mb.Sink(w))
    m_r = P.add(rt.Relay(w, sink_r.url(), sections={"limits": {"bare_newlines": "reject"}},
                         data_dir=os.path.join(w, "data-reject")).start())
    sink_direct = P.add(mb.Sink(w))
    bad = P.add(rt.Aiosmtpd(w, aio_py)) if aio_py else None
    targets = {"mailbrake, bare_newlines = normalize": m_n.smtp,
               "mailbrake, bare_newlines = reject": m_r.smtp,
               "smtp-sink directly (Postfix 3.7)": sink_direct.port}
    if bad:
        targets[f"aiosmtpd {rt.AIOSMTPD_VERSION} (known bad)"] = bad.port
    results, logs = {}, {k: [] for k in targets}

    def run(k, port):
        try:
            results[k] = probe("127.0.0.1", port, logs[k])
        except Exception as e:  # noqa: BLE001 - reported below
            results[k] = e

    threads = [threading.Thread(target=run, args=(k, p)) for k, p in targets.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for k in targets:
        print(f"T4 probe: {k}", flush=True)
        print("\n".join(logs[k]), flush=True)
        if not isinstance(results.get(k), dict):
            mb.fail("T4", f"probe against {k} failed: {results.get(k)!r}")

    # 1. default: normalize
    r = results["mailbrake, bare_newlines = normalize"]
    smuggled = sum(v[0] for v in r.values())
    msgs = sink_n.messages()
    from_smuggler = sum(b"smuggled@example.test" in x.split(b"\nReceived:", 1)[0] for x in msgs)
    figures["mailbrake_smuggled"] = f"{smuggled}/6"
    figures["delivered"] = len(msgs)
    if smuggled:
        mb.fail("T4", f"{smuggled} of 6 variants smuggled through mailbrake: "
                f"{[k for k, v in r.items() if v[0]]}")
    if len(msgs) != 6 or from_smuggler:
        mb.fail("T4", f"upstream got {len(msgs)} messages ({from_smuggler} from the smuggled sender); want 6 and 0")
    not_250 = [k for k, v in r.items() if not v[1].startswith(b"250 ")]
    if not_250:
        mb.fail("T4", f"no final 250 for {not_250}")

    # 2. reject
    r = results["mailbrake, bare_newlines = reject"]
    refused = sum(v[1].startswith(b"550 5.5.2") for v in r.values())
    smuggled = sum(v[0] for v in r.values())
    figures["reject_550_5_5_2"] = f"{refused}/6"
    if refused != 6 or smuggled:
        mb.fail("T4", f"reject mode: 550 5.5.2 for {refused} of 6, smuggled {smuggled}: "
                f"{ {k: v[1][:80] for k, v in r.items()} }")
    if sink_r.messages() or m_r.held():
        mb.fail("T4", "reject mode: something was delivered or held")

    # 3. smtp-sink (ends DATA only at CRLF.CRLF) and the known-bad server
    r = results["smtp-sink directly (Postfix 3.7)"]
    figures["smtp_sink_smuggled"] = f"{sum(v[0] for v in r.values())}/6"
    if bad:
        r = results[f"aiosmtpd {rt.AIOSMTPD_VERSION} (known bad)"]
        n = sum(v[0] for v in r.values())
        figures["aiosmtpd_1_4_4_smuggled"] = f"{n}/6({','.join(k for k, v in r.items() if v[0])})"
        if n == 0:
            mb.fail("T4", "the probe found nothing on aiosmtpd 1.4.4.post2 (known vulnerable): the probe is broken")
        bad.stop()
    else:
        figures["aiosmtpd_1_4_4_smuggled"] = "skipped"
    for p in (m_n, m_r, sink_n, sink_r, sink_direct):
        p.stop()
    return figures


BODIES = {"LF.CRLF": b"\n.\r\n", "CR.CRLF": b"\r.\r\n", "LF.LF": b"\n.\n"}


def submit_raw(port, seq, variant):
    """One transaction whose body carries `variant` + a smuggled transaction; the final reply."""
    c = rt.Client(port)
    try:
        c.ehlo()
        for line in ("MAIL FROM:<a@corp.example>", "RCPT TO:<b@partner.example>"):
            r = c.cmd(line)
            if not r.startswith("250"):
                return r
        r = c.cmd("DATA")
        if not r.startswith("354"):
            return r
        c.send(f"From: a@corp.example\r\nTo: b@partner.example\r\nSubject: outbound {seq}\r\n"
               f"X-Test-Seq: {seq}\r\n\r\nbody".encode() + variant +
               b"MAIL FROM:<smuggled@example.test>\r\nRCPT TO:<b@partner.example>\r\nDATA\r\n"
               b"Subject: smuggled\r\n\r\nx\r\n.\r\n")
        r = c.reply(30)
        c.cmd("QUIT")
        return r
    finally:
        c.close()


def t5(w, P, aio_py):
    figures = {}
    sink = P.add(mb.Sink(w))
    proxy = P.add(rt.RecordingProxy(sink.port))
    m = P.add(rt.Relay(w, proxy.url(), data_dir=os.path.join(w, "data-t5")).start())
    for i, (name, v) in enumerate(BODIES.items()):
        r = submit_raw(m.smtp, f"t5-{name}", v)
        if not r.startswith("250"):
            mb.fail("T5", f"{name}: final reply {r!r}")
        n = len(sink.messages())
        if n != i + 1:
            mb.fail("T5", f"{name}: upstream has {n} messages after {i + 1} submissions (smuggled or lost)")
    m.stop()  # closes the pooled upstream connections, so the recording is complete
    wire = proxy.sent()
    bare = rt.bare_newlines(wire)
    msgs = sink.messages()
    smug = sum(b"smuggled@example.test" in x.split(b"\nReceived:", 1)[0] for x in msgs)
    seqs = sorted(mb.seqs(msgs))
    figures.update(submissions=len(BODIES), upstream_messages=len(msgs), wire_bytes=len(wire),
                   wire_bare_cr_lf=bare, smuggled_sender_upstream=smug)
    if bare:
        mb.fail("T5", f"{bare} bare CR/LF in the bytes sent upstream")
    if len(msgs) != len(BODIES) or smug or seqs != sorted(f"t5-{k}" for k in BODIES):
        mb.fail("T5", f"upstream messages {len(msgs)} seqs {seqs} smuggled {smug}")
    # each normalised body has a line "." that must go out dot-stuffed as ".."
    stuffed = wire.count(b"\r\n..\r\n")
    figures["wire_stuffed_dot_lines"] = stuffed
    if stuffed < len(BODIES):
        mb.fail("T5", f"only {stuffed} dot-stuffed lines on the wire for {len(BODIES)} bodies with a '.' line")
    proxy.stop(); sink.stop()

    if aio_py:
        lenient = P.add(rt.Aiosmtpd(w, aio_py))
        m2 = P.add(rt.Relay(w, lenient.url(), data_dir=os.path.join(w, "data-t5-lenient")).start())
        for name, v in BODIES.items():
            r = submit_raw(m2.smtp, f"t5l-{name}", v)
            if not r.startswith("250"):
                mb.fail("T5", f"lenient upstream, {name}: final reply {r!r}")
        m2.stop()
        got = lenient.messages()
        froms = [x.split(b"\r\n", 1)[0] for x in got]
        figures["lenient_upstream_messages"] = len(got)
        if len(got) != len(BODIES) or any(b"smuggled" in f for f in froms):
            mb.fail("T5", f"lenient upstream (aiosmtpd 1.4.4.post2) got {len(got)} messages: {froms}")
        lenient.stop()
    else:
        figures["lenient_upstream_messages"] = "skipped"
    return figures


def main():
    t0 = time.monotonic()
    with mb.workdir("t04") as w, rt.Procs() as P:
        aio_py = rt.aiosmtpd_python()
        f4 = t4(w, P, aio_py)
        mb.figure("T4", **f4)
        f5 = t5(w, P, aio_py)
        mb.figure("T5", **f5, seconds=round(time.monotonic() - t0, 1))
    print("PASS T4 T5", flush=True)


if __name__ == "__main__":
    main()
