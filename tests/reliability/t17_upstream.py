#!/usr/bin/env python3
"""T17 (RELIABILITY.md §4): upstream failures and recovery, against Postfix's smtp-sink.

One mailbrake, one upstream address; the sink on that address is restarted in each mode:

A. `-r DATA` (4xx) for FAIL_SECONDS (RELIABILITY.md says 5 min; 6 s here, --fail-seconds to
   change), then a normal sink. Clean mail gets `451 4.4.1` while it fails; the client keeps
   retrying (every 0.5 s, bounded) and every message is delivered after the recovery: 0 lost.
   A held message released while the sink fails stays held with the error shown
   (`last_error`, and in `quarantine show`); released again after the recovery it goes out once.
B. `-f RCPT` (5xx): the client gets the upstream's own 5xx (same code as the sink answers
   directly); nothing delivered. A release during B stays held with the 5xx as its error.
C. `-q .` (disconnect after the final dot, without a reply): `451`; the client resends after
   the sink is normal again. The dropping sink did receive (dump) each message, so each
   affected message is delivered at most twice: <= 1 duplicate per affected message.

Then mailbrake_upstream_requests_total{result} must match what the sinks and the client saw:
ok = messages the normal sinks accepted, tempfail = 451s to the client + failed releases in A
(and C's count equals the messages the dropping sink dumped), permfail = 5xx to the client +
failed releases in B, error = 0.
"""

import argparse
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402

N_A, N_B, N_C = 20, 5, 5


def send_all(m, msgs, sessions=4):
    return d.Load(m.smtp, msgs, sessions=sessions, timeout=30).run(limit=60)


def codes(load):
    return [r[0] for rs in load.results.values() for r in rs]


def release(m, id_):
    code, out, err = m.cli("quarantine", "release", id_)
    return code, out + err


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fail-seconds", type=float, default=6.0)
    a = ap.parse_args()
    started = time.time()
    procs = d.Procs()
    seen = {"451": 0, "5xx": 0, "rel_temp": 0, "rel_perm": 0}
    problems = []
    with mb.workdir("t17") as work:
        try:
            port = mb.free_port()
            sink = procs.add(d.SinkAt(work, port, ["-r", "DATA"], tag="A-4xx"))
            m = procs.add(mb.Mailbrake(work, upstream=f"smtp+plain://127.0.0.1:{port}", policy_local=d.EXEMPT))
            m.start()

            # Two held messages, released later while the upstream fails.
            held_ids = {}
            for s in ("t17-held-1", "t17-held-2"):
                code, text = mb.send(m.smtp, s, d.test_message(s, held=True))
                mm = d.HELD_RE.search(text or "")
                if code != 250 or not mm:
                    mb.fail("T17", f"{s} not held: {code} {text}")
                held_ids[s] = mm.group(1)

            # --- A: 4xx for a while, then normal ------------------------------------------------
            pending = {f"t17-a-{i:02d}": d.test_message(f"t17-a-{i:02d}") for i in range(N_A)}
            acked_a = {}
            during_fail = []
            fail_until = time.time() + a.fail_seconds
            while time.time() < fail_until:
                load = send_all(m, list(pending.items()))
                during_fail += codes(load)
                time.sleep(0.5)
            seen["451"] += sum(1 for c in during_fail if c == 451)
            if any(c != 451 for c in during_fail):
                mb.fail("T17", f"while the upstream answers 4xx the client must get 451: {sorted(set(during_fail), key=str)}")
            rc, out = release(m, held_ids["t17-held-1"])
            seen["rel_temp"] += 1
            e = next((x for x in m.held() if x["id"] == held_ids["t17-held-1"]), None)
            _, show, _ = m.cli("quarantine", "show", held_ids["t17-held-1"])
            if e is None or e["state"] != "held" or not e.get("last_error"):
                mb.fail("T17", f"a release during the 4xx must leave the message held with its error; entry={e} cli={rc} {out!r}")
            if "451" not in show and e["last_error"] not in show:
                mb.fail("T17", f"`quarantine show` does not show the release error {e['last_error']!r}:\n{show}")
            a_attempts = len(during_fail)
            sink.stop()
            sink_a = procs.add(d.SinkAt(work, port, tag="A-normal"))
            end = time.time() + 30
            while pending and time.time() < end:
                load = send_all(m, list(pending.items()))
                for s, t in load.acked().items():
                    acked_a[s] = t
                    pending.pop(s)
                seen["451"] += sum(1 for c in codes(load) if c == 451)
                if pending:
                    time.sleep(0.5)
            if pending:
                mb.fail("T17", f"{len(pending)} messages still not accepted 30 s after the upstream recovered")
            rc, out = release(m, held_ids["t17-held-1"])
            e = next((x for x in m.held("released") if x["id"] == held_ids["t17-held-1"]), None)
            if e is None:
                mb.fail("T17", f"release after the recovery did not release: cli={rc} {out!r}")
            time.sleep(0.3)
            dumps_a = d.dump_counts(sink_a)
            lost_a = [s for s in acked_a if dumps_a.get(s, 0) == 0]
            if dumps_a.get("t17-held-1") != 1:
                mb.fail("T17", f"released message delivered {dumps_a.get('t17-held-1', 0)} times, want 1")
            if d.dump_counts(sink).total():
                mb.fail("T17", "the 4xx sink dumped messages it refused")

            # --- B: 5xx --------------------------------------------------------------------------
            sink_a.stop()
            sink_b = procs.add(d.SinkAt(work, port, ["-f", "RCPT"], tag="B-5xx"))
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:  # what the upstream itself says
                s.ehlo("probe")
                s.mail("probe@corp.example")
                up_code, up_text = s.rcpt("probe@partner.example")
            load = send_all(m, [(f"t17-b-{i}", d.test_message(f"t17-b-{i}")) for i in range(N_B)])
            got_b = [(r[0], r[1]) for rs in load.results.values() for r in rs]
            seen["5xx"] += sum(1 for c, _ in got_b if c and c >= 500)
            seen["451"] += sum(1 for c, _ in got_b if c == 451)
            b_not_5xx = [(c, t) for c, t in got_b if c != up_code]
            if b_not_5xx:
                problems.append(f"B: {len(b_not_5xx)} of {N_B} clients did not get the upstream's {up_code} {up_text.decode()!r} "
                                f"but {b_not_5xx[0]} (first message after the upstream was restarted: a pooled connection "
                                f"to the old upstream process is used and its EOF becomes 451 instead of a reconnect)")
            rc, out = release(m, held_ids["t17-held-2"])
            seen["rel_perm"] += 1
            e = next((x for x in m.held() if x["id"] == held_ids["t17-held-2"]), None)
            if e is None or not e.get("last_error") or str(up_code) not in e["last_error"]:
                mb.fail("T17", f"a release refused with 5xx must stay held with the 5xx shown; entry={e}")
            if d.dump_counts(sink_b).total():
                mb.fail("T17", "the 5xx sink dumped messages")

            # --- C: disconnect after the final dot -------------------------------------------------
            sink_b.stop()
            sink_c = procs.add(d.SinkAt(work, port, ["-q", "."], tag="C-drop"))
            c_msgs = [(f"t17-c-{i}", d.test_message(f"t17-c-{i}")) for i in range(N_C)]
            load = send_all(m, c_msgs)
            got_c = codes(load)
            seen["451"] += sum(1 for c in got_c if c == 451)
            if any(c == 250 for c in got_c) or any(c is None for c in got_c):
                mb.fail("T17", f"a dropped upstream connection after the dot must give the client a 4xx: {got_c}")
            time.sleep(0.3)
            dumped_by_dropper = d.dump_counts(sink_c)
            sink_c.stop()
            sink_n = procs.add(d.SinkAt(work, port, tag="C-normal"))
            # Release the 5xx-refused message now that the upstream is back.
            rc, out = release(m, held_ids["t17-held-2"])
            if not any(x["id"] == held_ids["t17-held-2"] for x in m.held("released")):
                mb.fail("T17", f"release after recovery failed: {rc} {out!r}")
            load = d.Load(m.smtp, c_msgs, sessions=4, timeout=30, retries=10, retry_pause=0.5).run(limit=60)
            seen["451"] += sum(1 for c in codes(load) if c == 451)
            if load.unacked():
                mb.fail("T17", f"resend after -q . recovery not accepted: {load.unacked()}")
            time.sleep(0.3)
            all_c = d.dump_counts(sink_c, sink_n)
            dup_c = sum(max(0, all_c.get(s, 0) - 1) for s, _ in c_msgs)
            worst_c = max(all_c.get(s, 0) for s, _ in c_msgs) - 1
            normal = d.dump_counts(sink_a, sink_n)

            # --- metrics against the sinks ---------------------------------------------------------
            up = d.counters(m, "mailbrake_upstream_requests_total")
            rel = d.counters(m, "mailbrake_releases_total")
            want = {"ok": normal.total(), "tempfail": seen["451"] + seen["rel_temp"],
                    "permfail": seen["5xx"] + seen["rel_perm"], "error": 0}
            exit_code = m.term(30)
            mb.figure("T17", fail_seconds=a.fail_seconds, a_attempts_451=a_attempts, a_acked=len(acked_a), a_lost=len(lost_a),
                      b_client_code=up_code, c_dumped_by_dropping_sink=dumped_by_dropper.total(), c_duplicates=dup_c,
                      c_max_dup_per_message=worst_c, release_during_failure="held+error",
                      upstream_ok=int(up.get("ok", -1)), upstream_tempfail=int(up.get("tempfail", -1)),
                      upstream_permfail=int(up.get("permfail", -1)), upstream_error=int(up.get("error", -1)),
                      sink_delivered=normal.total(), releases_ok=int(rel.get("ok", -1)), releases_failed=int(rel.get("failed", -1)),
                      seconds=f"{time.time() - started:.1f}")
            if lost_a:
                problems.append(f"acked but not delivered: {lost_a}")
            if worst_c > 1:
                problems.append(f"C: a message was delivered {worst_c + 1} times after -q .")
            mism = {k: (up.get(k), v) for k, v in want.items() if up.get(k) != v}
            if mism:
                problems.append(f"upstream_requests_total (metric, expected from sinks/client): {mism}")
            if rel.get("ok") != 2 or rel.get("failed") != 2:
                problems.append(f"releases_total: {rel} (want ok=2 failed=2)")
            if exit_code != 0:
                problems.append(f"mailbrake exited with {exit_code}")
            if problems:
                for p in problems:
                    print(f"  problem: {p}", flush=True)
                mb.fail("T17", f"{len(problems)} problem(s), first: {problems[0]}")
            print("PASS T17", flush=True)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
