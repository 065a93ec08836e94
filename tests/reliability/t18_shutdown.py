#!/usr/bin/env python3
"""T18 (RELIABILITY.md §4): SIGTERM with 50 idle sessions and 10 sessions in the middle of DATA.

Setup (shutdown_grace = 10 s in the harness configuration; max_connections_per_ip raised to
200 so 60 sessions from 127.0.0.1 are not refused by the per-IP cap):
- 50 idle sessions: EHLO done; half of them also inside a transaction (MAIL + RCPT);
- 10 sessions in DATA: 354 received, the first half of the message sent. After SIGTERM,
  7 of them ("finishers") send the rest and the final dot 1 s later; 3 ("stallers") never
  send their dot. Half the DATA messages are held by the policy, half forwarded.

Then SIGTERM, and:
- new connections are refused, or greeted with 421 (checked several times during the grace);
- every idle session gets `421 4.3.2` (promptly: within 2 s);
- every finisher gets 250 (and the message is delivered or held), or a 4xx (not acked);
- every staller gets a 421 before the connection is closed (a silent close is not enough);
- mailbrake exits with status 0 within shutdown_grace + 5 s = 15 s;
- after a restart on the same data directory, every 250 is accounted for: 0 lost.
"""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402

IDLE, DATA, STALLERS = 50, 10, 3
GRACE = 10.0


def main():
    started = time.time()
    procs = d.Procs()
    clients = []
    problems = []
    with mb.workdir("t18") as work:
        try:
            sink = procs.add(d.SinkAt(work))
            m = procs.add(mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT))
            d.configure(m, "server", max_connections_per_ip="200")
            m.start()

            idle = []
            for i in range(IDLE):
                c = d.Smtp(m.smtp, timeout=10)
                clients.append(c)
                assert c.reply()[0] == 220
                assert c.cmd("EHLO idle.test")[0] == 250
                if i % 2:
                    assert c.cmd("MAIL FROM:<a@corp.example>")[0] == 250
                    assert c.cmd("RCPT TO:<b@partner.example>")[0] == 250
                idle.append(c)
            indata = []
            for i in range(DATA):
                seq = f"t18-{i:02d}"
                msg = d.dot_stuff(d.test_message(seq, held=i % 2 == 0, pad=2000))
                c = d.Smtp(m.smtp, timeout=10)
                clients.append(c)
                assert c.reply()[0] == 220
                assert c.cmd("EHLO data.test")[0] == 250
                assert c.cmd("MAIL FROM:<a@corp.example>")[0] == 250
                assert c.cmd("RCPT TO:<b@partner.example>")[0] == 250
                code, text = c.cmd("DATA")
                if code != 354:
                    mb.fail("T18", f"DATA: {code} {text}")
                half = len(msg) // 2
                c.send(msg[:half])
                indata.append((seq, c, msg[half:], i >= DATA - STALLERS))
            time.sleep(0.5)

            # --- SIGTERM -------------------------------------------------------------------------
            t0 = time.time()
            m.proc.send_signal(signal.SIGTERM)
            idle_replies = [None] * IDLE
            data_replies = {}

            def read_idle(k, c):
                try:
                    idle_replies[k] = (c.reply(timeout=GRACE + 5), time.time() - t0)
                except OSError as e:
                    idle_replies[k] = ((None, f"error {e}"), time.time() - t0)

            def run_data(seq, c, rest, staller):
                try:
                    if not staller:
                        time.sleep(1.0)
                        c.send(rest + ".\r\n")
                    r = c.reply(timeout=GRACE + 8)
                except OSError as e:
                    r = (None, f"error {e}")
                data_replies[seq] = (r, staller, time.time() - t0)

            threads = [threading.Thread(target=read_idle, args=(k, c), daemon=True) for k, c in enumerate(idle)]
            threads += [threading.Thread(target=run_data, args=x, daemon=True) for x in indata]
            for t in threads:
                t.start()

            new_conn = []
            for _ in range(5):
                time.sleep(0.4)
                try:
                    s = socket.create_connection(("127.0.0.1", m.smtp), timeout=3)
                    s.settimeout(3)
                    try:
                        banner = s.recv(512).decode(errors="replace")
                    except OSError as e:
                        banner = f"error {e}"
                    s.close()
                    new_conn.append("421" if banner.startswith("421") else f"accepted: {banner.strip()!r}")
                except ConnectionRefusedError:
                    new_conn.append("refused")
                except OSError as e:
                    new_conn.append(f"error {e}")
            try:
                code = m.proc.wait(timeout=GRACE + 5 + 5)
            except Exception:
                code = None
            exit_s = time.time() - t0
            for t in threads:
                t.join(10)

            # --- verdicts ----------------------------------------------------------------------------
            idle_421 = sum(1 for r in idle_replies if r and r[0][0] == 421 and "4.3.2" in r[0][1])
            idle_slow = [r for r in idle_replies if r and r[0][0] == 421 and r[1] > 2.0]
            bad_idle = [r for r in idle_replies if not (r and r[0][0] == 421 and "4.3.2" in r[0][1])]
            if bad_idle:
                problems.append(f"{len(bad_idle)} idle sessions did not get 421 4.3.2: {bad_idle[0]}")
            if idle_slow:
                problems.append(f"{len(idle_slow)} idle sessions got their 421 after more than 2 s")
            bad_new = [x for x in new_conn if x not in ("refused", "421")]
            if bad_new:
                problems.append(f"new connections after SIGTERM: {bad_new}")
            acked = {}
            fin_250 = fin_4xx = stall_421 = 0
            stall_silent = []
            for seq, ((code_, text), staller, at) in sorted(data_replies.items()):
                if staller:
                    if code_ == 421:
                        stall_421 += 1
                    elif code_ == 250:
                        problems.append(f"{seq}: a staller that never sent its dot got 250: {text}")
                    else:
                        stall_silent.append(f"{seq}: {code_} {text!r} after {at:.1f} s")
                else:
                    if code_ == 250:
                        fin_250 += 1
                        acked[seq] = text
                    elif code_ is not None and 400 <= code_ < 500:
                        fin_4xx += 1
                    else:
                        problems.append(f"{seq}: finisher got {code_} {text!r}")
            if stall_silent:
                problems.append(f"{len(stall_silent)} of {STALLERS} sessions in DATA were closed without a 421 "
                                f"when the grace ran out: {stall_silent[0]}")
            if len(data_replies) != DATA:
                problems.append(f"only {len(data_replies)} of {DATA} DATA sessions finished reading")
            if code is None:
                problems.append(f"mailbrake did not exit within {GRACE + 10:.0f} s of SIGTERM")
            elif code != 0:
                problems.append(f"mailbrake exited with status {code}")
            if exit_s > GRACE + 5:
                problems.append(f"exit took {exit_s:.1f} s > shutdown_grace + 5 s")

            # --- restart: every 250 accounted for ------------------------------------------------------
            m.start()
            held = d.held_by_seq(m)
            dumps = d.dump_counts(sink)
            lost = [s for s in acked if s not in held and s not in dumps]
            if lost:
                problems.append(f"acked but lost: {lost}")
            m.term(30)
            mb.figure("T18", idle_421=f"{idle_421}/{IDLE}", idle_421_max_s=f"{max((r[1] for r in idle_replies if r), default=0):.2f}",
                      new_connections=",".join(sorted(set(new_conn))), data_finished_250=fin_250, data_finished_4xx=fin_4xx,
                      stallers_421=f"{stall_421}/{STALLERS}", stallers_closed_without_421=len(stall_silent),
                      exit_s=f"{exit_s:.1f}", exit_code=code, lost=len(lost), seconds=f"{time.time() - started:.1f}")
            if problems:
                for p in problems:
                    print(f"  problem: {p}", flush=True)
                mb.fail("T18", f"{len(problems)} problem(s), first: {problems[0]}")
            print("PASS T18", flush=True)
        finally:
            for c in clients:
                c.close()
            procs.stop_all()


if __name__ == "__main__":
    main()
