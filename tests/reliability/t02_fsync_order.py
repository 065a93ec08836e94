#!/usr/bin/env python3
"""T2 (RELIABILITY.md §4): no `250 ... held as <id>` before the whole fsync chain (strace).

mailbrake runs under
  strace -f -ttt -T -y -s 256 -e trace=fsync,fdatasync,sync_file_range,rename,renameat,
         renameat2,write,writev,sendto,sendmsg,openat
(-y prints the path of every fd argument, so fds need no bookkeeping through openat;
-ttt/-T give epoch entry times and durations). 100 messages that the shipped policy holds are
sent over 10 parallel sessions, so the group commit batches several of them. For every id
the client got in `250 2.0.0 Ok: held as <id>`, the trace must show, each call returning 0
and finished before the next one starts (strace's line order is the order of the events):

  1. fdatasync/fsync of spool/tmp/<id>       (sync_file_range does not count)
  2. rename spool/tmp/<id> -> spool/held/<id>
  3. fsync of the spool/held directory
  4. then the write of `250 ... held as <id>` to the client socket.

The checker is tested on the same trace with step 1 or step 3 removed: it must then flag all
100 (so a pass is not a parser that matches nothing).

T20 (folded in here): commit -> 250 is measured from the same trace as the time between the
end of the directory fsync that made <id> durable and the start of the 250 write; p50/p99 are
printed, and next to them the product's own mailbrake_store_commit_duration_seconds
histogram (one observation per group commit). The strace overhead inflates both.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402

N = 100
SESSIONS = 10


def main():
    started = time.time()
    procs = d.Procs()
    with mb.workdir("t02") as work:
        try:
            sink = procs.add(d.SinkAt(work))
            m = mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT)
            trace = os.path.join(work, "strace.out")
            m.start(wrap=d.strace_wrap(trace))
            procs.add(_Traced(m))
            msgs = [(f"t02-{i:03d}", d.test_message(f"t02-{i:03d}", held=True)) for i in range(N)]
            load = d.Load(m.smtp, msgs, sessions=SESSIONS, timeout=60).run(limit=100)
            acked = load.acked()
            ids = []
            for s, text in acked.items():
                mm = d.HELD_RE.search(text)
                if not mm:
                    mb.fail("T2", f"{s} was not held: {text}")
                ids.append(mm.group(1))
            if len(ids) != N:
                mb.fail("T2", f"only {len(ids)} of {N} messages acked: {load.unacked()[:3]}")
            buckets, _, count = d.histogram(m, "mailbrake_store_commit_duration_seconds")
            code = d.term_traced(m, 30)
            with open(trace) as f:
                lines = f.readlines()
            calls = d.parse_strace(lines)
            bad, latency = d.check_held_chain(calls, ids)

            # The checker must catch a missing link (negative controls on the same trace).
            no_dir = [l for l in lines if not re.search(r"\bfsync\(\d+<[^>]*/spool/held>[) ]", l)]
            no_file = [l for l in lines if not re.search(r"\b(fsync|fdatasync)\(\d+<[^>]*/spool/tmp/", l)]
            bad_dir, _ = d.check_held_chain(d.parse_strace(no_dir), ids)
            bad_file, _ = d.check_held_chain(d.parse_strace(no_file), ids)

            dir_syncs = sum(1 for c in calls if c.name in ("fsync", "fdatasync") and (d.fd_path(c.args) or "").endswith("/spool/held"))
            file_syncs = sum(1 for c in calls if c.name in ("fsync", "fdatasync") and "/spool/tmp/" in (d.fd_path(c.args) or ""))
            sfr = sum(1 for c in calls if c.name == "sync_file_range")
            lat_ms = [v * 1000 for v in latency.values()]
            mb.figure("T2", replies=len(ids), replies_without_full_chain=len(bad), file_syncs=file_syncs,
                      held_dir_fsyncs=dir_syncs, group_commits=count, sled_sync_file_range=sfr,
                      control_no_dir_fsync_flagged=f"{len(bad_dir)}/{N}", control_no_file_sync_flagged=f"{len(bad_file)}/{N}",
                      trace_lines=len(lines), seconds=f"{time.time() - started:.1f}")
            mb.figure("T20", commit_to_250_p50_ms=f"{d.percentile(lat_ms, 50):.2f}", commit_to_250_p99_ms=f"{d.percentile(lat_ms, 99):.2f}",
                      commit_to_250_max_ms=f"{max(lat_ms) if lat_ms else float('nan'):.2f}", n=len(lat_ms), source="strace(T2)",
                      store_commit_p50_ms=f"{d.hist_quantile(buckets, 0.5) * 1000:.2f}",
                      store_commit_p99_ms=f"{d.hist_quantile(buckets, 0.99) * 1000:.2f}")
            if bad:
                for id_, why in list(bad.items())[:5]:
                    print(f"  {id_}: {why}", flush=True)
                mb.fail("T2", f"{len(bad)} of {N} `250 held` replies without the full fsync chain")
            if len(bad_dir) != N or len(bad_file) != N:
                mb.fail("T2", f"checker self-test: removing the dir fsync flags {len(bad_dir)}, removing the file sync flags {len(bad_file)} (want {N} each)")
            if code != 0:
                mb.fail("T2", f"strace/mailbrake exited with {code}")
            print("PASS T2", flush=True)
        finally:
            procs.stop_all()


class _Traced:
    """Stops mailbrake running under strace (by the PIDs of strace and its child)."""

    def __init__(self, m):
        self.m = m

    def stop(self):
        if self.m.proc.poll() is None:
            d.term_traced(self.m, 15)


if __name__ == "__main__":
    main()
