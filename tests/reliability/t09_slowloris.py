#!/usr/bin/env python3
"""T9 (RELIABILITY.md §2.5, §4): slowloris, idle and trickling connections.

Config: max_connections_per_ip = 10, command_timeout = 3s, session_timeout = 8s.
  - 15 idle sessions from 127.0.0.1 (cap + 5): the first 10 get 220; the 5 extra get
    `421 4.7.0` in < 1 s and are closed.
  - 90 more idle sessions from 127.0.0.10-18 (10 each), so that the RSS growth per idle
    connection is measured over 100 connections (VmRSS of /proc/<pid>/status).
  - every idle session is closed (`421 4.4.2`) at the command timeout, 3 s +- 1 s.
  - 3 trickle sessions from 127.0.0.4 sending one byte every 0.5 s (two as NOOP lines, one
    inside a DATA body after 354) are closed at
    the session deadline, 8 s +- 1 s, with `421 4.4.2`.
  - meanwhile a normal client from 127.0.0.5 is delivered (smtp-sink upstream).
  - afterwards: 127.0.0.1 may connect again, the active-connection gauge is back to 0 and
    the server's fd count is back to where it was.
"""

import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

PER_IP, CMD_TIMEOUT, SESSION_TIMEOUT = 10, 3.0, 8.0


class Idle(threading.Thread):
    """Connects, reads the greeting, then reads until the server closes."""

    def __init__(self, port, src):
        super().__init__(daemon=True)
        self.c = rt.Client(port, src=src, timeout=20)
        self.t_connect = time.monotonic()
        self.greeting = self.c.reply(5)
        self.t_greeting = time.monotonic() - self.t_connect
        self.closed_after = None
        self.data = b""

    def run(self):
        data, closed = self.c.read_until_close(SESSION_TIMEOUT + 10)
        self.data = data
        if closed:
            self.closed_after = time.monotonic() - self.t_connect
        self.c.close()


class Trickle(threading.Thread):
    def __init__(self, port, src, in_data=False):
        super().__init__(daemon=True)
        self.port, self.src, self.in_data = port, src, in_data
        self.closed_after = None
        self.last = b""
        self.bytes_sent = 0

    def run(self):
        c = rt.Client(self.port, src=self.src, timeout=20)
        t0 = time.monotonic()
        c.reply(5)
        if self.in_data:  # the trickle goes into a message body instead of commands
            for line in ("EHLO trickle.test", "MAIL FROM:<a@corp.example>", "RCPT TO:<b@partner.example>", "DATA"):
                c.cmd(line)
            stream = b"Subject: slow\r\n\r\n" + b"x" * 1000
        else:
            stream = b"NOOP\r\n" * 100
        c.s.settimeout(0.01)
        received = b""
        try:
            while time.monotonic() - t0 < SESSION_TIMEOUT + 10:
                try:
                    c.s.sendall(stream[self.bytes_sent:self.bytes_sent + 1])
                    self.bytes_sent += 1
                except OSError:
                    break
                end = time.monotonic() + 0.5
                gone = False
                while time.monotonic() < end:
                    try:
                        chunk = c.s.recv(4096)
                    except (TimeoutError, OSError):
                        continue
                    if not chunk:
                        gone = True
                        break
                    received += chunk
                if gone:
                    break
        finally:
            self.closed_after = time.monotonic() - t0
            self.last = received.strip().split(b"\r\n")[-1] if received else b""
            c.close()


def main():
    t0 = time.monotonic()
    with mb.workdir("t09") as w, rt.Procs() as P:
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), sections={
            "server": {"max_connections_per_ip": PER_IP, "max_connections": 1000},
            "limits": {"command_timeout": "3s", "session_timeout": "8s"},
        }).start())
        pid = m.pid()
        # warm up (threads, TLS-free session path), then the baseline
        if mb.send(m.smtp, "warmup")[0] != 250:
            mb.fail("T9", "warm-up message not delivered")
        time.sleep(0.5)
        rss0, fds0 = rt.rss_kib(pid), rt.fd_count(pid)

        trickles = [Trickle(m.smtp, "127.0.0.4", in_data=(k == 2)) for k in range(3)]
        for t in trickles:
            t.start()
        idle = []
        for _ in range(PER_IP):
            idle.append(Idle(m.smtp, "127.0.0.1"))
        bad_greet = [i.greeting for i in idle if not i.greeting.startswith("220")]
        if bad_greet:
            mb.fail("T9", f"sessions within the cap were not greeted: {bad_greet}")
        extra = []
        for _ in range(5):
            t = time.monotonic()
            c = rt.Client(m.smtp, src="127.0.0.1", timeout=5)
            r = c.reply(5)
            dt_reply = time.monotonic() - t
            _, closed = c.read_until_close(2)
            extra.append((r.strip(), dt_reply, closed))
            c.close()
        others = [Idle(m.smtp, f"127.0.0.{10 + k // PER_IP}") for k in range(90)]
        idle += others
        for i in idle:
            i.start()
        time.sleep(0.3)
        rss1 = rt.rss_kib(pid)
        active = m.metric("mailbrake_smtp_connections_active")
        # a normal client from 127.0.0.5 while all of this goes on
        c = rt.Client(m.smtp, src="127.0.0.5")
        c.ehlo()
        rs = [c.cmd("MAIL FROM:<a@corp.example>"), c.cmd("RCPT TO:<b@partner.example>"), c.cmd("DATA")]
        c.send(mb.message("normal-127.0.0.5").encode() + b".\r\n")
        normal = c.reply(30)
        c.cmd("QUIT"); c.close()

        for i in idle:
            i.join(SESSION_TIMEOUT + 15)
        for t in trickles:
            t.join(SESSION_TIMEOUT + 15)
        # 127.0.0.1 may connect again; everything was released
        again = rt.Client(m.smtp, src="127.0.0.1", timeout=5)
        again_greeting = again.reply(5)
        again.cmd("QUIT"); again.close()
        time.sleep(0.5)
        active_after = m.metric("mailbrake_smtp_connections_active")
        fds1 = rt.fd_count(pid)
        rejected = m.metric("mailbrake_smtp_connections_rejected_total") or rt.metric_sum(m, "mailbrake_smtp_connections_rejected_total")

        idle_close = [i.closed_after for i in idle]
        idle_421 = sum(b"421 4.4.2" in i.data for i in idle)
        trickle_close = [t.closed_after for t in trickles]
        per_conn_kib = (rss1 - rss0) / len(idle)
        delivered = "normal-127.0.0.5" in mb.seqs(sink.messages())
        print(f"  extra: {extra}", flush=True)
        print(f"  idle closed after: min {min(x or 99 for x in idle_close):.2f} max {max(x or 99 for x in idle_close):.2f} s; "
              f"trickle closed after {[round(x, 2) for x in trickle_close]} s, last reply {[t.last for t in trickles]}", flush=True)
        mb.figure("T9", idle=len(idle), extra_421=f"{sum(e[0].startswith('421 4.7.0') and e[2] for e in extra)}/5",
                  extra_reply_ms=round(1000 * max(e[1] for e in extra), 1),
                  idle_closed_s=f"{min(x or 99 for x in idle_close):.2f}-{max(x or 99 for x in idle_close):.2f}",
                  idle_421_4_4_2=f"{idle_421}/{len(idle)}",
                  trickle_closed_s=f"{min(trickle_close):.2f}-{max(trickle_close):.2f}",
                  trickle_bytes=sum(t.bytes_sent for t in trickles),
                  normal_client=normal[:3], delivered=int(delivered),
                  rss_before_mib=round(rss0 / 1024, 1), rss_with_idle_mib=round(rss1 / 1024, 1),
                  rss_per_idle_conn_kib=round(per_conn_kib, 1), active_during=active, active_after=active_after,
                  fds_before=fds0, fds_after=fds1, rejected_metric=rejected,
                  seconds=round(time.monotonic() - t0, 1))
        problems = []
        for r, dt, closed in extra:
            if not r.startswith("421 4.7.0") or dt >= 1.0 or not closed:
                problems.append(f"extra connection: {r!r} after {dt:.2f}s closed={closed}")
        for x in idle_close:
            if x is None or abs(x - CMD_TIMEOUT) > 1.0:
                problems.append(f"idle session closed after {x} s (want {CMD_TIMEOUT} +- 1)")
                break
        if idle_421 != len(idle):
            problems.append(f"only {idle_421} of {len(idle)} idle sessions got 421 4.4.2")
        for t in trickles:
            if abs(t.closed_after - SESSION_TIMEOUT) > 1.0 or not t.last.startswith(b"421 4.4.2"):
                problems.append(f"trickle session closed after {t.closed_after:.2f}s with {t.last!r} (want {SESSION_TIMEOUT} +- 1, 421 4.4.2)")
        if not normal.startswith("250") or not delivered:
            problems.append(f"normal client from 127.0.0.5: {normal!r}, delivered={delivered}")
        if per_conn_kib >= 1024:
            problems.append(f"RSS growth {per_conn_kib:.0f} KiB per idle connection (>= 1 MiB)")
        if not again_greeting.startswith("220"):
            problems.append(f"127.0.0.1 cannot connect again after its sessions ended: {again_greeting!r}")
        if active_after not in (0, 0.0, None):
            problems.append(f"connections_active = {active_after} after every client left")
        if fds1 > fds0 + 2:
            problems.append(f"server fds {fds0} -> {fds1} after every client left (leak?)")
        if problems:
            mb.fail("T9", "; ".join(problems))
    print("PASS T9", flush=True)


if __name__ == "__main__":
    main()
