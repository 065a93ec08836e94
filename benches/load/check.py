#!/usr/bin/env python3
"""Compare a load-benchmark run against the recorded baseline; exit 1 on a regression.

    python3 benches/load/check.py benches/load/results/last.json benches/load/results/baseline.json

Both files are written by `cargo bench --bench load` (see README.md). The figures compared are
the ones under "compared" in each file, each with the direction that is better:

  <cell>.mailbrake_over_ceiling   mailbrake's messages/s as a share of the ceiling's (higher)
  <cell>.mailbrake_over_postfix   mailbrake's messages/s over Postfix's (higher)
  10k.hold_msgs_per_s             hold path, messages/s (higher)
  10k.hold_p99_ms                 hold path, time-to-250 p99 (lower)
  latency.added_p50_ms / _p99_ms  latency added over the ceiling, one message in flight (lower)
  10k.rss_mb / 10k.hold_rss_mb    mailbrake's peak RSS under the 10 KB load (higher is worse)

A figure regresses when it is more than 10 % worse than the baseline's. Added latencies are a
difference of two small numbers, so they also get an absolute allowance of 0.05 ms (a 10 %
band around 0.1 ms is below the timer noise of a shared machine). A figure present in the
baseline but missing from the run (a cell not run, Postfix skipped) is reported and fails the
check too, unless --allow-missing is given.

Exit status: 0 no regression, 1 regression (or missing figure), 2 unusable input.
"""

import json
import sys

TOLERANCE = 0.10
ABSOLUTE_MS = {"latency.added_p50_ms": 0.05, "latency.added_p99_ms": 0.05}


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data, data["compared"]
    except (OSError, ValueError, KeyError) as e:
        print(f"check.py: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    allow_missing = "--allow-missing" in argv
    if len(args) != 2:
        print("usage: check.py LAST.json BASELINE.json [--allow-missing]", file=sys.stderr)
        return 2
    last_data, last = load(args[0])
    base_data, base = load(args[1])
    if last_data.get("meta", {}).get("quick") != base_data.get("meta", {}).get("quick"):
        print("note: one run used --quick and the other did not; figures are less comparable")

    for name, data in (("this run", last_data), ("the baseline", base_data)):
        troubled = [
            f"{cell} ({p})"
            for cell, c in data.get("cells", {}).items()
            for p, r in c.get("paths", {}).items()
            if r.get("problems")
        ]
        if troubled:
            print(f"note: {name} had problems (failures, wrong counts, log errors) in: {', '.join(troubled)}")

    regressions, rows = [], []
    for key in sorted(base):
        b = base[key]
        if key not in last:
            rows.append((key, b["value"], None, "missing"))
            if not allow_missing:
                regressions.append(f"{key}: in the baseline ({b['value']:.4g}) but not in this run")
            continue
        v, better = last[key]["value"], b["better"]
        slack = ABSOLUTE_MS.get(key, 0.0)
        margin = abs(b["value"]) * TOLERANCE
        if better == "higher":
            limit = b["value"] - margin
            bad = v < limit
        else:
            limit = b["value"] + max(margin, slack)
            bad = v > limit
        change = (v - b["value"]) / b["value"] * 100 if b["value"] else float("nan")
        rows.append((key, b["value"], v, f"{change:+.1f} %" + ("  REGRESSION" if bad else "")))
        if bad:
            regressions.append(
                f"{key}: {v:.4g} vs baseline {b['value']:.4g} ({change:+.1f} %, "
                f"{better} is better, limit {limit:.4g})"
            )

    width = max((len(r[0]) for r in rows), default=10)
    print(f"{'figure':<{width}}  {'baseline':>10}  {'this run':>10}  change")
    for key, b, v, note in rows:
        shown = "—" if v is None else f"{v:.4g}"
        print(f"{key:<{width}}  {b:>10.4g}  {shown:>10}  {note}")
    for key in sorted(set(last) - set(base)):
        print(f"{key:<{width}}  {'—':>10}  {last[key]['value']:>10.4g}  new (not in the baseline)")

    if regressions:
        print(f"\nREGRESSION (more than {TOLERANCE:.0%} worse than {args[1]}):")
        for r in regressions:
            print(f"  - {r}")
        return 1
    print(f"\nno regression beyond {TOLERANCE:.0%} against {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
