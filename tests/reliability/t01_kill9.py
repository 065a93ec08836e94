#!/usr/bin/env python3
"""T1 (RELIABILITY.md §4): kill -9 of mailbrake during a load with holds; nothing acked is lost.

1,000 messages over 10 parallel sessions (threads), every 5th one held by the shipped policy
(30 external addresses in To), the rest forwarded to smtp-sink. At a random point (a seeded
RNG picks the number of 250s after which to kill, plus a sub-50 ms delay; the seed is printed
and can be replayed with --seed) mailbrake gets SIGKILL. It is restarted on the same data
directory, and then:

- every message the client got `250` for is in the sink's dumps or in the quarantine
  (lost = 0); every hold acked before the kill is listed after the restart;
- the quarantine after the restart holds exactly the acked holds, plus at most the holds that
  were committed but whose 250 never reached the client (the duplicate window, <= sessions);
- the messages that got no reply or a 4xx are not acked: the client sends them again; then
  every message is acked, delivered or held, and the duplicates (delivered or held more than
  once) are counted (<= sessions in flight at the kill).

Also prints `FIGURE T20 duplicates_in_T1=...` (T20's latency half is in t02_fsync_order.py).
Usage: python3 tests/reliability/t01_kill9.py [--seed N] [--rounds R] [--messages N]
"""

import argparse
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402

SESSIONS = 10


def one_round(seed, n_messages):
    rng = random.Random(seed)
    kill_after = rng.randint(n_messages // 10, n_messages * 9 // 10)
    extra_delay = rng.uniform(0, 0.05)
    print(f"T1 seed={seed}: kill -9 after {kill_after} acks + {extra_delay * 1000:.1f} ms", flush=True)
    items = [(f"t01-{seed}-{i:04d}", i % 5 == 0) for i in range(n_messages)]
    held_seqs = {s for s, h in items if h}
    msgs = [(s, d.test_message(s, held=h)) for s, h in items]
    started = time.time()
    procs = d.Procs()
    with mb.workdir("t01") as work:
        try:
            sink = procs.add(d.SinkAt(work))
            m = procs.add(mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT))
            m.start()

            # --- phase 1: load, kill -9 at the chosen point ------------------------------
            load = d.Load(m.smtp, msgs, sessions=SESSIONS, timeout=30)
            killed = {}

            def killer():
                end = time.time() + 90
                while load.acks < kill_after and time.time() < end:
                    time.sleep(0.001)
                time.sleep(extra_delay)
                killed["acks_seen"] = load.acks
                killed["at"] = time.time()
                m.kill9()
                load.stop.set()

            k = threading.Thread(target=killer, daemon=True)
            load.start()
            k.start()
            k.join(120)
            if "at" not in killed:
                mb.fail("T1", "the killer thread did not run")
            if not load.join(60):
                mb.fail("T1", "client threads still running 60 s after the kill")
            acked1 = load.acked()
            holds_acked1 = {s for s in acked1 if s in held_seqs}
            no_reply = sum(1 for rs in load.results.values() for r in rs if r[0] is None)
            tempfail = sum(1 for rs in load.results.values() for r in rs if r[0] is not None and 400 <= r[0] < 500)
            perm = {s: r for s, rs in load.results.items() for r in rs if r[0] is not None and r[0] >= 500}
            if perm:
                mb.fail("T1", f"permanent failures during the load: {list(perm.items())[:3]}")
            wrong = [s for s, t in acked1.items() if (s in held_seqs) != ("held as" in t)]
            if wrong:
                mb.fail("T1", f"verdict differs from the policy for {wrong[:3]}")

            # --- restart on the same data directory; count before any retry -----------------
            m.start()
            held1 = d.held_by_seq(m)
            dumps1 = d.dump_counts(sink)
            lost1 = sorted(s for s in acked1 if s not in dumps1 and s not in held1)
            missing_holds = sorted(holds_acked1 - set(held1))
            listed_ids = {e["id"] for es in held1.values() for e in es}
            for s in holds_acked1:
                id_ = d.HELD_RE.search(acked1[s]).group(1)
                if id_ not in listed_ids:
                    missing_holds.append(f"{s} ({id_})")
            held_after_restart = sum(len(es) for es in held1.values())
            committed_unacked = held_after_restart - len(holds_acked1)
            corrupt = d.log_field(m, "corrupt")
            tmp_removed = d.log_field(m, "tmp_removed")
            print(f"T1 after restart: acked={len(acked1)} (holds {len(holds_acked1)}), "
                  f"quarantine={held_after_restart}, sink={sum(dumps1.values())}, torn dumps={d.torn_dumps(sink)}, "
                  f"no reply={no_reply}, 4xx={tempfail}, reconcile: corrupt={corrupt} tmp_removed={tmp_removed}", flush=True)

            # --- phase 2: the client sends again what was not acked ------------------------
            retry = [(s, msg) for s, msg in msgs if s not in acked1]
            load2 = d.Load(m.smtp, retry, sessions=SESSIONS, timeout=30, retries=3).run(limit=120)
            not_acked = load2.unacked()
            if not_acked:
                mb.fail("T1", f"{len(not_acked)} messages still not acked after retries, e.g. "
                              f"{not_acked[0]}: {load2.results.get(not_acked[0])}")
            acked = dict(acked1, **load2.acked())
            time.sleep(0.5)
            held = d.held_by_seq(m)
            dumps = d.dump_counts(sink)
            lost = sorted(s for s in acked if s not in dumps and s not in held)
            dup_delivered = sum(c - 1 for c in dumps.values() if c > 1)
            dup_held = sum(len(es) - 1 for es in held.values() if len(es) > 1)
            crossed = sorted(set(dumps) & set(held))
            duplicates = dup_delivered + dup_held + len(crossed)
            held_total = sum(len(es) for es in held.values())
            exit_code = m.term(30)
            elapsed = time.time() - started

            mb.figure("T1", seed=seed, sent=n_messages, sessions=SESSIONS, kill_after_acks=killed["acks_seen"],
                      acked_before_kill=len(acked1), holds_acked_before_kill=len(holds_acked1),
                      held_after_restart=held_after_restart, committed_unacked_holds=committed_unacked,
                      lost=len(lost1) + len(lost), duplicates=duplicates, duplicates_delivered=dup_delivered,
                      duplicates_held=dup_held, acked_total=len(acked), delivered=len(dumps),
                      held=len(held), corrupt=corrupt, seconds=f"{elapsed:.1f}")
            mb.figure("T20", duplicates_in_T1=duplicates, seed=seed)

            if lost1 or lost:
                mb.fail("T1", f"acked but lost: {(lost1 + lost)[:5]} (of {len(lost1) + len(lost)})")
            if missing_holds:
                mb.fail("T1", f"holds acked before the kill missing from the quarantine after restart: {missing_holds[:5]}")
            if not 0 <= committed_unacked <= SESSIONS:
                mb.fail("T1", f"quarantine after restart has {held_after_restart} entries for {len(holds_acked1)} acked holds "
                              f"(more than {SESSIONS} sessions could have had in flight)")
            if corrupt not in (None, "0"):
                mb.fail("T1", f"{corrupt} spool files failed verification at the restart")
            if set(held) != held_seqs or set(dumps) != set(s for s, _ in items) - held_seqs:
                mb.fail("T1", f"final state: {len(set(held))} distinct held (want {len(held_seqs)}), "
                              f"{len(dumps)} distinct delivered (want {n_messages - len(held_seqs)}), crossed={crossed[:3]}")
            if held_total != len(held_seqs) + dup_held:
                mb.fail("T1", f"quarantine count {held_total} != holds acked {len(held_seqs)} + duplicates {dup_held}")
            if duplicates > SESSIONS:
                mb.fail("T1", f"{duplicates} duplicates, more than the {SESSIONS} sessions in flight at the kill")
            if exit_code != 0:
                mb.fail("T1", f"mailbrake exited with {exit_code} on SIGTERM after the test")
        finally:
            procs.stop_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=int(os.environ.get("T1_SEED", random.SystemRandom().randrange(1 << 31))))
    ap.add_argument("--rounds", type=int, default=1, help="repeat with seed, seed+1, ...")
    ap.add_argument("--messages", type=int, default=1000)
    a = ap.parse_args()
    for r in range(a.rounds):
        one_round(a.seed + r, a.messages)
    print(f"PASS T1 ({a.rounds} round(s) from seed {a.seed})", flush=True)


if __name__ == "__main__":
    main()
