#!/usr/bin/env python3
"""T12 (RELIABILITY.md §2.8, §4): recipient flood.

`[limits] max_recipients = 1000` (the default, set explicitly). One transaction: MAIL and
10,000 RCPTs pipelined (written by one thread while another reads, so neither side blocks):
  - RCPT 1..1000 get `250 2.1.5`, RCPT 1001..10000 get `452 4.5.3`, the session stays open;
  - DATA then sends the message:
    a. shipped policy: held (`250 ... held as <id>`) with reason too_many_recipients and
       rcpt_count 1000; nothing at the upstream;
    b. a local policy that allows it (recipient thresholds lifted, the sender exempt from
       the batch windows): delivered once, to exactly the 1000 accepted recipients.
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

LIMIT, N = 1000, 10_000
SENDER = "flood@corp.example"
ALLOW = f"""
[recipients]
max_envelope = 100000
max_external_domains = 100000

[[sender.overrides]]
match = "{SENDER}"
exempt = true
"""


def flood(port, seq):
    """Returns (rcpt reply codes, final reply, seconds for the RCPT phase)."""
    c = rt.Client(port, timeout=60)
    c.ehlo()
    group = [f"MAIL FROM:<{SENDER}>\r\n"] + [f"RCPT TO:<r{i}@partner.example>\r\n" for i in range(N)]
    data = "".join(group).encode()
    t0 = time.monotonic()
    w = threading.Thread(target=c.send, args=(data,), daemon=True)
    w.start()
    mail = c.reply(60)
    if not mail.startswith("250"):
        raise AssertionError(f"MAIL: {mail!r}")
    codes = []
    for _ in range(N):
        codes.append(c.reply(60)[:9])
    dt = time.monotonic() - t0
    w.join(30)
    r = c.cmd("DATA")
    if not r.startswith("354"):
        raise AssertionError(f"DATA: {r!r}")
    c.send(mb.message(seq, to="r0@partner.example").encode() + b".\r\n")
    final = c.reply(60).strip()
    c.cmd("QUIT"); c.close()
    return codes, final, dt


def check_codes(codes):
    ok = sum(1 for i, c in enumerate(codes) if i < LIMIT and c == "250 2.1.5")
    over = sum(1 for i, c in enumerate(codes) if i >= LIMIT and c == "452 4.5.3")
    return ok, over


def main():
    t0 = time.monotonic()
    with mb.workdir("t12") as w, rt.Procs() as P:
        problems = []
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), sections={"limits": {"max_recipients": LIMIT}}).start())
        codes, final, dt = flood(m.smtp, "flood-shipped")
        ok, over = check_codes(codes)
        held = m.held()
        entry = held[0] if held else {}
        if ok != LIMIT or over != N - LIMIT:
            problems.append(f"shipped policy run: {ok} x 250 in 1..{LIMIT}, {over} x 452 after; first bad: "
                            f"{next(((i, c) for i, c in enumerate(codes) if c != ('250 2.1.5' if i < LIMIT else '452 4.5.3')), None)}")
        if not final.startswith("250 2.0.0 Ok: held as") or "too_many_recipients" not in entry.get("reasons", []) \
                or entry.get("rcpt_count") != LIMIT:
            problems.append(f"shipped policy: final {final!r}, held {[(e.get('reasons'), e.get('rcpt_count')) for e in held]}")
        delivered_a = len(sink.messages())
        if delivered_a:
            problems.append(f"shipped policy: {delivered_a} messages reached the upstream")
        m.stop()

        m2 = P.add(rt.Relay(os.path.join(w), sink.url(), data_dir=os.path.join(w, "data-allow"),
                            sections={"limits": {"max_recipients": LIMIT}}, policy_local=ALLOW).start())
        codes2, final2, dt2 = flood(m2.smtp, "flood-allowed")
        ok2, over2 = check_codes(codes2)
        msgs = sink.messages()
        rcpts = re.findall(rb"^X-Rcpt-Args: <([^>]*)>", msgs[0], re.M) if msgs else []
        want = [f"r{i}@partner.example".encode() for i in range(LIMIT)]
        if ok2 != LIMIT or over2 != N - LIMIT:
            problems.append(f"allowing policy run: {ok2} x 250, {over2} x 452")
        if not final2.startswith("250") or "held" in final2 or len(msgs) != 1:
            problems.append(f"allowing policy: final {final2!r}, {len(msgs)} messages upstream")
        elif sorted(rcpts) != sorted(want):
            problems.append(f"allowing policy: upstream recipients {len(rcpts)} (want exactly the first {LIMIT})")
        mb.figure("T12", rcpts_sent=N, limit=LIMIT, rcpt_250=ok, rcpt_452=over, rcpt_phase_s=round(dt, 2),
                  shipped_policy=("held:too_many_recipients" if "held as" in final else final[:3]),
                  held_rcpt_count=entry.get("rcpt_count"), shipped_upstream=delivered_a,
                  allowing_policy=final2[:3], upstream_messages=len(msgs), upstream_rcpts=len(rcpts),
                  seconds=round(time.monotonic() - t0, 1))
        if problems:
            mb.fail("T12", "; ".join(problems))
    print("PASS T12", flush=True)


if __name__ == "__main__":
    main()
