#!/usr/bin/env python3
"""T10 (RELIABILITY.md §2.6, §4): long lines.

  1. a 64 KiB command line (`NOOP AAAA...` + CRLF)  -> `500 5.5.2` and the connection closed;
  2. 1 MiB without any LF, sent as fast as possible -> the same, promptly; the relay's RSS
     peak (VmHWM, reset before the attack when the kernel allows) grows < 10 MiB;
  3. 10 such 1 MiB senders at once -> each refused; RSS growth still < 10 MiB;
  4. a message with a 5,000-byte body line passes through unchanged: the exact bytes
     mailbrake sends upstream (recording proxy in front of smtp-sink) carry the line as sent.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

MIB = 1024 * 1024


def long_line(port, payload, chunk=65536):
    """Sends `payload` (after EHLO) from a thread while reading; returns
    (reply, seconds to the reply, closed?, bytes the server took before closing)."""
    c = rt.Client(port, timeout=10)
    c.ehlo()
    sent = [0]

    def writer():
        try:
            for i in range(0, len(payload), chunk):
                c.s.sendall(payload[i:i + chunk])
                sent[0] = i + chunk
        except OSError:
            pass

    t0 = time.monotonic()
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    try:
        r = c.reply(10)
    except (rt.Closed, OSError) as e:
        r = f"<no reply: {e}>"
    dt = time.monotonic() - t0
    _, closed = c.read_until_close(3)
    w.join(10)
    c.close()
    return r.strip(), dt, closed, min(sent[0], len(payload))


def main():
    t0 = time.monotonic()
    with mb.workdir("t10") as w, rt.Procs() as P:
        sink = P.add(mb.Sink(w))
        proxy = P.add(rt.RecordingProxy(sink.port))
        m = P.add(rt.Relay(w, proxy.url()).start())
        pid = m.pid()
        if mb.send(m.smtp, "warmup")[0] != 250:
            mb.fail("T10", "warm-up message not delivered")
        problems = []

        r64, dt64, closed64, _ = long_line(m.smtp, b"NOOP " + b"A" * (64 * 1024) + b"\r\n")
        print(f"  64 KiB command line: {r64!r} in {dt64*1000:.1f} ms, closed={closed64}", flush=True)
        if not r64.startswith("500 5.5.2") or not closed64:
            problems.append(f"64 KiB line: {r64!r}, closed={closed64}")

        time.sleep(0.3)
        rss0 = rt.rss_kib(pid)
        hwm_reset = rt.reset_hwm(pid)
        hwm0 = rt.hwm_kib(pid)
        r1m, dt1m, closed1m, sent1m = long_line(m.smtp, b"X" * MIB)
        print(f"  1 MiB without LF: {r1m!r} in {dt1m*1000:.1f} ms, closed={closed1m}, client wrote {sent1m} bytes", flush=True)
        if not r1m.startswith("500 5.5.2") or not closed1m:
            problems.append(f"1 MiB line: {r1m!r}, closed={closed1m}")
        if dt1m > 2:
            problems.append(f"1 MiB line refused only after {dt1m:.1f}s")
        # ten at once
        res = [None] * 10

        def one(k):
            res[k] = long_line(m.smtp, b"Y" * MIB)
        ts = [threading.Thread(target=one, args=(k,)) for k in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        ok10 = sum(1 for x in res if x and x[0].startswith("500 5.5.2") and x[2])
        if ok10 != 10:
            problems.append(f"10 parallel 1 MiB lines: {ok10} refused and closed: {[x[:3] if x else None for x in res]}")
        time.sleep(0.3)
        hwm1, rss1 = rt.hwm_kib(pid), rt.rss_kib(pid)
        growth = (hwm1 - (hwm0 if hwm_reset else rss0)) / 1024
        if growth >= 10:
            problems.append(f"RSS peak grew {growth:.1f} MiB during the long-line attacks (>= 10 MiB)")

        # 5,000-byte body line, unchanged upstream
        line = ("".join(chr(ord("a") + (i % 26)) for i in range(4999)) + "Z").encode()
        body = b"a long line follows:\r\n" + line + b"\r\nend\r\n"
        c = rt.Client(m.smtp)
        c.ehlo()
        rs = [c.cmd("MAIL FROM:<a@corp.example>"), c.cmd("RCPT TO:<b@partner.example>"), c.cmd("DATA")]
        c.send(mb.message("long-body-line", body="").encode() + body + b".\r\n")
        rb = c.reply(30)
        c.cmd("QUIT"); c.close()
        m.stop()
        wire = proxy.sent()
        intact = (b"\r\n" + line + b"\r\n") in wire
        dumped = any(line in x for x in sink.messages())
        if not rb.startswith("250") or not intact or not dumped:
            problems.append(f"5,000-byte body line: reply {rb!r}, unchanged on the wire={intact}, at the sink={dumped}")
        mb.figure("T10", cmd_64kib=r64[:9].replace(" ", "_"), cmd_64kib_ms=round(dt64 * 1000, 1), closed_64kib=int(closed64),
                  line_1mib=r1m[:9].replace(" ", "_"), line_1mib_ms=round(dt1m * 1000, 1), closed_1mib=int(closed1m),
                  parallel_1mib_refused=f"{ok10}/10", rss_before_mib=round(rss0 / 1024, 1),
                  rss_peak_growth_mib=round(growth, 2), peak_measure="VmHWM-reset" if hwm_reset else "VmHWM-vs-RSS",
                  body_line_5000=("unchanged" if intact and dumped else "CHANGED"), body_reply=rb[:3],
                  seconds=round(time.monotonic() - t0, 1))
        if problems:
            mb.fail("T10", "; ".join(problems))
    print("PASS T10", flush=True)


if __name__ == "__main__":
    main()
