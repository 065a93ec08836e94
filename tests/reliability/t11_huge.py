#!/usr/bin/env python3
"""T11 (RELIABILITY.md §2.7, §4): huge messages.

Config: `[limits] max_message_size = "8MiB"` (advertised as SIZE 8388608).
  1. `MAIL FROM:<..> SIZE=<limit+1>`                     -> `552 5.3.4` at MAIL;
  2. undeclared DATA of 2 x the limit, sent in 64 KiB writes: no reply of any kind before
     the final dot (checked just before sending it), then `552 5.3.4`; the session goes on
     (NOOP answers 250);
  3. `SIZE=1000` declared, 2 x the limit sent            -> `552 5.3.4` after the dot;
  4. control: a message just under the limit is accepted and delivered.
During 2 and 3 the relay's peak RSS (VmHWM reset before each, minus the RSS just before it)
grows < limit + 1 MiB per transaction (what the allocator keeps afterwards is reported), and nothing
of 2 and 3 is delivered (smtp-sink), held (`quarantine list`) or left in the spool.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

MIB = 1024 * 1024
LIMIT = 8 * MIB


def body_of(size, seq):
    head = mb.message(seq, body="").encode()
    line = b"x" * 76 + b"\r\n"
    n = (size - len(head)) // len(line) + 1
    return head + line * n


def oversize(port, seq, mail_args=""):
    """Returns (reply to the dot, early bytes seen before the dot, NOOP reply afterwards)."""
    c = rt.Client(port, timeout=30)
    c.ehlo()
    r = [c.cmd(f"MAIL FROM:<a@corp.example>{mail_args}"), c.cmd("RCPT TO:<b@partner.example>"), c.cmd("DATA")]
    if not r[-1].startswith("354"):
        raise AssertionError(f"no 354: {r}")
    data = body_of(2 * LIMIT, seq)
    for i in range(0, len(data), 65536):
        c.s.sendall(data[i:i + 65536])
    early, _closed = c.read_until_close(0.5)  # anything before the dot is a premature reply
    c.send(b".\r\n")
    final = c.reply(60)
    noop = c.cmd("NOOP")
    c.cmd("QUIT"); c.close()
    return final.strip(), early, noop.strip()


def spool_files(data_dir):
    n = 0
    for root, _, files in os.walk(data_dir):
        if "spool" in root or "msg" in root or "tmp" in root:
            n += len(files)
    return n


def main():
    t0 = time.monotonic()
    with mb.workdir("t11") as w, rt.Procs() as P:
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), sections={"limits": {"max_message_size": LIMIT}}).start())
        pid = m.pid()
        problems = []
        c = rt.Client(m.smtp)
        ehlo = c.ehlo()
        r_size = c.cmd(f"MAIL FROM:<a@corp.example> SIZE={LIMIT + 1}").strip()
        c.cmd("QUIT"); c.close()
        if f"SIZE {LIMIT}" not in ehlo:
            problems.append(f"EHLO does not advertise SIZE {LIMIT}: {ehlo!r}")
        if not r_size.startswith("552 5.3.4"):
            problems.append(f"SIZE over the limit at MAIL: {r_size!r}")
        if mb.send(m.smtp, "warmup")[0] != 250:
            mb.fail("T11", "warm-up message not delivered")
        spool0 = spool_files(m.data)
        time.sleep(0.3)
        rss_start = rt.rss_kib(pid)

        def measured(seq, args=""):
            """One oversize transaction; its own peak RSS growth (VmHWM reset just before,
            minus the RSS just before)."""
            time.sleep(0.2)
            before = rt.rss_kib(pid)
            reset = rt.reset_hwm(pid)
            hwm0 = rt.hwm_kib(pid)
            t = time.monotonic()
            out = oversize(m.smtp, seq, args)
            dt = time.monotonic() - t
            time.sleep(0.2)
            return out, (rt.hwm_kib(pid) - (hwm0 if reset else before)) / 1024, dt

        (r2, early2, noop2), g2, dt_big = measured("big-undeclared")
        (r3, early3, noop3), g3, _ = measured("big-declared-small", " SIZE=1000")
        growth = max(g2, g3)
        retained = (rt.rss_kib(pid) - rss_start) / 1024
        rss0 = rss_start
        for name, r, early, noop in (("undeclared", r2, early2, noop2), ("SIZE=1000", r3, early3, noop3)):
            if early:
                problems.append(f"{name}: reply before the final dot: {early[:100]!r}")
            if not r.startswith("552 5.3.4"):
                problems.append(f"{name}: reply to the dot {r!r}")
            if not noop.startswith("250"):
                problems.append(f"{name}: session did not go on: NOOP {noop!r}")
        if growth >= LIMIT / MIB + 1:
            problems.append(f"peak RSS grew {growth:.1f} MiB (limit + 1 MiB = {LIMIT / MIB + 1:.0f})")
        # control: just under the limit passes
        near = body_of(LIMIT - 64 * 1024, "near-limit")
        t_near = time.monotonic()
        r4 = mb.send(m.smtp, "near-limit", msg=near.decode(), timeout=60)
        dt_near = time.monotonic() - t_near
        seqs = mb.seqs(sink.messages())
        held = m.held("all")
        spool1 = spool_files(m.data)
        if r4[0] != 250 or "near-limit" not in seqs:
            problems.append(f"a message just under the limit: {r4}")
        if any(s.startswith("big-") for s in seqs) or held or spool1 != spool0:
            problems.append(f"oversize mail stored or delivered: seqs={seqs} held={len(held)} spool {spool0}->{spool1}")
        mb.figure("T11", limit_mib=LIMIT // MIB, size_at_mail=r_size[:9].replace(" ", "_"),
                  undeclared_2x=r2[:9].replace(" ", "_"), declared_small_2x=r3[:9].replace(" ", "_"),
                  replies_before_dot=len(early2) + len(early3), session_goes_on=int(noop2.startswith("250") and noop3.startswith("250")),
                  seconds_16mib_transfer=round(dt_big, 2), rss_before_mib=round(rss0 / 1024, 1),
                  rss_peak_growth_mib=f"{g2:.1f}/{g3:.1f}", budget_mib=LIMIT // MIB + 1,
                  rss_retained_after_both_mib=round(retained, 1),
                  near_limit=r4[0], near_limit_s=round(dt_near, 2), oversize_delivered=sum(s.startswith("big-") for s in seqs),
                  held=len(held), spool_files_added=spool1 - spool0, seconds=round(time.monotonic() - t0, 1))
        if problems:
            mb.fail("T11", "; ".join(problems))
    print("PASS T11", flush=True)


if __name__ == "__main__":
    main()
