#!/usr/bin/env python3
"""T22 (RELIABILITY.md §4): a real Prometheus (Debian's package) scraping mailbrake under load.

Prometheus scrapes mailbrake's /metrics every 1 s (the invocation of
deploy/scripts/prometheus_scrape_check.sh, without the alert rules). A load of 500 messages
(every 5th held, the rest forwarded to smtp-sink) runs in two halves of 250 with a restart of
mailbrake (SIGTERM, same ports, same data directory) in between. Through Prometheus' HTTP API:

- `up{job="mailbrake"} == 1` at the end;
- the raw samples of each `mailbrake_messages_total{verdict}` series never go down except
  once, to a value below the previous one, at the restart (a counter reset);
  `resets()` over the run sees exactly that one reset for the series that moved;
- the final value equals what the second half sent (the counter restarted from 0), and the
  reset-corrected increase over the whole run equals what was sent (250 + 250, split by
  verdict: 400 forward, 100 hold);
- Prometheus' own `increase(mailbrake_messages_total[...])` over the run agrees within its
  extrapolation (± 10 %, reported).

Skips (exit 0, with a message) when `prometheus` is not installed.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402

HALF = 250
PROMETHEUS = os.environ.get("PROMETHEUS", "prometheus")


def api(port, path, **params):
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body}")
    return body["data"]


def wait_for(pred, limit, what):
    end = time.time() + limit
    while time.time() < end:
        try:
            v = pred()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.5)
    mb.fail("T22", f"timed out waiting for {what}")


def main():
    if not shutil.which(PROMETHEUS):
        print(f"SKIP T22: {PROMETHEUS} not installed (apt-get install prometheus)", flush=True)
        return
    started = time.time()
    procs = d.Procs()
    problems = []
    with mb.workdir("t22") as work:
        try:
            sink = procs.add(d.SinkAt(work))
            m = procs.add(mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT))
            m.start()
            pport = mb.free_port()
            with open(os.path.join(work, "prometheus.yml"), "w") as f:
                f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mailbrake
    static_configs:
      - targets: ["127.0.0.1:{m.metrics}"]
""")
            plog = open(os.path.join(work, "prometheus.log"), "w")
            prom = procs.add(subprocess.Popen(
                [PROMETHEUS, f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/tsdb",
                 f"--web.listen-address=127.0.0.1:{pport}"], stdout=plog, stderr=subprocess.STDOUT))

            def up():
                r = api(pport, "/api/v1/query", query='up{job="mailbrake"}')["result"]
                return r and r[0]["value"][1] == "1"

            wait_for(up, 60, "Prometheus to scrape mailbrake (up == 1)")
            time.sleep(3)  # a few samples at 0 before the load
            t_begin = time.time() - 2

            def half(tag):
                msgs = [(f"t22-{tag}-{i:03d}", d.test_message(f"t22-{tag}-{i:03d}", held=i % 5 == 0)) for i in range(HALF)]
                # paced over ~8 s, so that many scrapes see the counters rise
                ld = d.Load(m.smtp, msgs, sessions=4, retries=3, pace=4 * 8.0 / HALF).run(90)
                if ld.unacked():
                    mb.fail("T22", f"{len(ld.unacked())} messages not acked")
                return ld

            half("a")
            time.sleep(3)
            restart_exit = d.restart(m)
            wait_for(up, 30, "up == 1 after the restart")
            time.sleep(2)
            half("b")
            time.sleep(4)  # the last values get scraped
            t_end = time.time()
            rng = f"{int(t_end - t_begin) + 2}s"
            final_up = up()

            raw = api(pport, "/api/v1/query", query=f"mailbrake_messages_total[{rng}]", time=f"{t_end:.3f}")["result"]
            series = {s["metric"]["verdict"]: [float(v) for _, v in s["values"]] for s in raw}
            stamps = {s["metric"]["verdict"]: [float(t) for t, _ in s["values"]] for s in raw}
            want = {"forward": 2 * HALF * 4 // 5, "hold": 2 * HALF // 5, "reject": 0, "tempfail": 0}
            want_final = {k: v // 2 for k, v in want.items()}
            got_inc, got_final, got_resets, rising = {}, {}, {}, {}
            for verdict, vals in series.items():
                inc, resets, up_steps = 0.0, 0, 0
                for a, b in zip(vals, vals[1:]):
                    if b >= a:
                        inc += b - a
                        up_steps += b > a
                    else:
                        resets += 1
                        inc += b
                got_inc[verdict], got_final[verdict], got_resets[verdict] = inc + (vals[0] if vals else 0), vals[-1] if vals else None, resets
                rising[verdict] = up_steps
            prom_resets = {s["metric"]["verdict"]: float(s["value"][1]) for s in
                           api(pport, "/api/v1/query", query=f"resets(mailbrake_messages_total[{rng}])", time=f"{t_end:.3f}")["result"]}
            prom_inc = {s["metric"]["verdict"]: float(s["value"][1]) for s in
                        api(pport, "/api/v1/query", query=f"increase(mailbrake_messages_total[{rng}])", time=f"{t_end:.3f}")["result"]}
            samples = sum(len(v) for v in series.values())
            exit_code = m.term(30)
            ver = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True)
            ver = ((ver.stdout or ver.stderr).split() + ["?", "?", "?"])[2]
            mb.figure("T22", prometheus=ver, up=int(bool(final_up)), sent=2 * HALF, samples=samples,
                      rising_samples_forward=rising.get("forward", 0), rising_samples_hold=rising.get("hold", 0),
                      increase_forward=int(got_inc.get("forward", -1)), increase_hold=int(got_inc.get("hold", -1)),
                      final_forward=int(got_final.get("forward") or -1), final_hold=int(got_final.get("hold") or -1),
                      resets_forward=int(prom_resets.get("forward", -1)), resets_hold=int(prom_resets.get("hold", -1)),
                      prom_increase_forward=f"{prom_inc.get('forward', -1):.1f}", prom_increase_hold=f"{prom_inc.get('hold', -1):.1f}",
                      restart_exit=restart_exit, seconds=f"{time.time() - started:.1f}")
            if not final_up:
                problems.append("up != 1 at the end")
            for v in ("forward", "hold"):
                if got_inc.get(v) != want[v]:
                    problems.append(f"reset-corrected increase of {v} = {got_inc.get(v)}, sent {want[v]}")
                if got_final.get(v) != want_final[v]:
                    problems.append(f"final {v} = {got_final.get(v)}, the second half sent {want_final[v]}")
                if got_resets.get(v) != 1 or prom_resets.get(v) != 1:
                    problems.append(f"{v}: resets seen in the samples {got_resets.get(v)}, by resets() {prom_resets.get(v)} (want 1: the restart)")
                # increase() extrapolates to the edges of the range: at most ~1.1 scrape interval
                # on each side beyond the first and last sample.
                ts = stamps.get(v) or [0, 1]
                span = max(ts[-1] - ts[0], 1e-9)
                step = span / max(len(ts) - 1, 1)
                hi = want[v] * (span + 2 * 1.1 * step) / span * 1.01
                pi = prom_inc.get(v, 0)
                if not 0.99 * want[v] <= pi <= hi:
                    problems.append(f"increase({v}) = {pi:.1f}, sent {want[v]} (allowed up to {hi:.1f} by extrapolation)")
                if rising.get(v, 0) < 5:
                    problems.append(f"{v}: only {rising.get(v, 0)} scrapes saw the counter rise (load too fast to show monotonicity)")
            for v in ("reject", "tempfail"):
                if got_inc.get(v, 0) != 0:
                    problems.append(f"{v} moved: {got_inc.get(v)}")
            if restart_exit != 0 or exit_code != 0:
                problems.append(f"exit statuses {restart_exit}, {exit_code}")
            if problems:
                for p in problems:
                    print(f"  problem: {p}", flush=True)
                mb.fail("T22", f"{len(problems)} problem(s), first: {problems[0]}")
            print("PASS T22", flush=True)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
