#!/usr/bin/env python3
"""T19 (RELIABILITY.md §4): restart consistency of the quarantine.

Hold 100 messages; restart mailbrake 10 times with SIGTERM (each exit must be status 0 and
each start must list the same 100 held ids); release 50 of them with one
`mailbrake quarantine release ID...`; restart; then:
- `quarantine list` (held) shows exactly the other 50, `--state released` exactly these 50;
- each released message was delivered exactly once at the sink, no held one at all;
- one more restart later, nothing was sent again (the sink counts are unchanged) and the
  lists are the same.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402

N, RESTARTS, RELEASE = 100, 10, 50


def main():
    started = time.time()
    procs = d.Procs()
    problems = []
    with mb.workdir("t19") as work:
        try:
            sink = procs.add(d.SinkAt(work))
            m = procs.add(mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT))
            m.start()
            msgs = [(f"t19-{i:03d}", d.test_message(f"t19-{i:03d}", held=True)) for i in range(N)]
            load = d.Load(m.smtp, msgs, sessions=4, timeout=30).run(limit=60)
            acked = load.acked()
            if len(acked) != N:
                mb.fail("T19", f"{N - len(acked)} of {N} holds not acked")
            ids = {s: d.HELD_RE.search(t).group(1) for s, t in acked.items()}
            want = set(ids.values())
            codes = []
            restart_s = []
            for r in range(RESTARTS):
                t = time.time()
                codes.append(d.restart(m))
                restart_s.append(time.time() - t)
                listed = {e["id"] for e in m.held()}
                if listed != want:
                    problems.append(f"after restart {r + 1}: held list has {len(listed)} ids, "
                                    f"{len(want - listed)} missing, {len(listed - want)} unknown")
            if any(c != 0 for c in codes):
                problems.append(f"exit codes on SIGTERM: {codes}")
            to_release = sorted(ids[s] for s in sorted(ids)[:RELEASE])
            rel_seqs = set(sorted(ids)[:RELEASE])
            code, out, err = m.cli("quarantine", "release", *to_release)
            if code != 0:
                problems.append(f"quarantine release exited {code}: {(out + err)[-300:]}")
            codes.append(d.restart(m))
            held = {e["id"] for e in m.held()}
            released = {e["id"] for e in m.held("released")}
            time.sleep(0.3)
            dumps = d.dump_counts(sink)
            once = sum(1 for s in rel_seqs if dumps.get(s) == 1)
            wrong = {s: dumps.get(s, 0) for s in rel_seqs if dumps.get(s) != 1}
            leaked = [s for s in dumps if s not in rel_seqs]
            codes.append(d.restart(m))
            held2 = {e["id"] for e in m.held()}
            released2 = {e["id"] for e in m.held("released")}
            dumps2 = d.dump_counts(sink)
            exit_code = m.term(30)
            codes.append(exit_code)
            mb.figure("T19", held_acked=N, restarts=RESTARTS + 2, released_via_cli=len(to_release), held_after=len(held),
                      released_after=len(released), delivered_once=f"{once}/{RELEASE}", delivered_wrong=len(wrong),
                      held_delivered=len(leaked), resent_after_restart=dumps2.total() - dumps.total(),
                      restart_p50_s=f"{d.percentile(restart_s, 50):.2f}", nonzero_exits=sum(1 for c in codes if c != 0),
                      seconds=f"{time.time() - started:.1f}")
            if held != want - set(to_release):
                problems.append(f"held after release+restart: {len(held)} (want {N - RELEASE})")
            if released != set(to_release):
                problems.append(f"released after restart: {len(released)} (want {RELEASE})")
            if wrong:
                problems.append(f"released messages not delivered exactly once: {list(wrong.items())[:5]}")
            if leaked:
                problems.append(f"held (unreleased) messages delivered: {leaked[:5]}")
            if held2 != held or released2 != released or dumps2 != dumps:
                problems.append("a further restart changed the lists or sent messages again")
            if any(c != 0 for c in codes):
                problems.append(f"exit codes on SIGTERM: {codes}")
            if problems:
                for p in problems:
                    print(f"  problem: {p}", flush=True)
                mb.fail("T19", f"{len(problems)} problem(s), first: {problems[0]}")
            print("PASS T19", flush=True)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
