#!/usr/bin/env python3
"""T8 (RELIABILITY.md §2.4, §4): AUTH brute force.

Server: TLS (certificate made at run time), one user (hash from `mailbrake hash-password`),
`[auth]` at its defaults: failure_delay 1s, max_failures 5 per IP, max_user_failures 10,
failure_window 10m. Log level debug (MAILBRAKE_LOG=debug), so any leak shows.

A. Brute force: from 127.0.0.1, up to 500 wrong passwords (each distinct) as fast as the server
   allows, capped at 60 s: STARTTLS, then AUTH PLAIN again and again; when the server closes,
   reconnect. Counted: verdicts (535 = the password was really checked), throttled answers
   (421 4.7.0 / 454 4.7.0), time to the throttled answer.
   Pass: verdicts <= max_failures (5 per 10 minutes, the configured cap) and the blocked client
   gets 421/454; then 10 parallel guesses from 127.0.0.8 also get <= 5 verdicts.
B. Another source address (127.0.0.3) logs in with the right password: 235.
C. Timing: a second server with the caps lifted (max_failures 100000, failure_delay 100ms so
   the password check itself weighs more): 25 unknown-user and 25 wrong-password attempts,
   interleaved, on established TLS sessions. Pass: medians within 10% of each other.
D. `grep -F` of both server logs for every password used (and for every AUTH PLAIN blob,
   which carries the password in base64): 0 lines.
"""

import base64
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

USER, PASSWORD = "webapp", "Tr0ub4dor&3-correct-horse"
MAX_FAILURES = 5


def plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def tls_client(port, src):
    c = rt.Client(port, src=src, timeout=15)
    c.ehlo()
    c.starttls()
    e = c.cmd("EHLO client.test")
    if "AUTH" not in e:
        raise AssertionError(f"AUTH not offered after STARTTLS: {e!r}")
    return c


def brute_force(port, used, limit_attempts=500, limit_s=60.0):
    verdicts = throttled = closed_sessions = sessions = 0
    codes = {}
    throttled_latency, verdict_latency = [], []
    t0 = time.monotonic()
    c = None
    i = 0
    while i < limit_attempts and time.monotonic() - t0 < limit_s:
        if c is None:
            try:
                c = tls_client(port, "127.0.0.1")
                sessions += 1
            except (rt.Closed, OSError, AssertionError) as e:
                # refused at connect (e.g. the greeting is a 421): counts as throttled
                throttled += 1
                i += 1
                codes["connect-refused"] = codes.get("connect-refused", 0) + 1
                print(f"  connect refused: {e}", flush=True)
                continue
        pw = f"guess-{i:04d}-Zq9"
        used.append(pw)
        used.append(plain(USER, pw))
        i += 1
        t = time.monotonic()
        try:
            r = c.cmd(f"AUTH PLAIN {plain(USER, pw)}", timeout=20)
        except (rt.Closed, OSError):
            c.close(); c = None; closed_sessions += 1
            continue
        code = r[:3]
        codes[code] = codes.get(code, 0) + 1
        if code == "535":
            verdicts += 1
            verdict_latency.append(time.monotonic() - t)
        elif code in ("421", "454"):
            throttled += 1
            throttled_latency.append(time.monotonic() - t)
        else:
            raise AssertionError(f"unexpected reply to AUTH: {r!r}")
        if code == "421":
            data, closed = c.read_until_close(2)
            if not closed:
                raise AssertionError("421 but the connection stayed open")
            c.close(); c = None; closed_sessions += 1
    if c:
        c.close()
    return dict(attempts=i, verdicts=verdicts, throttled=throttled, sessions=sessions, codes=codes,
                elapsed=time.monotonic() - t0, throttled_latency=throttled_latency,
                verdict_latency=verdict_latency)


def parallel_guesses(port, used, src, n=10):
    """n sessions from `src`, each sending one AUTH at the same moment; the replies."""
    clients = [tls_client(port, src) for _ in range(n)]
    out = [None] * n
    go = threading.Barrier(n)

    def one(k):
        pw = f"parallel-{k:02d}-Xy7"
        blob = plain(f"nobody{k}", pw)
        used.extend([pw, blob])
        go.wait()
        try:
            out[k] = clients[k].cmd(f"AUTH PLAIN {blob}", timeout=30)[:3]
        except (rt.Closed, OSError):
            out[k] = "closed"

    ts = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for c in clients:
        c.close()
    return out


def timing(port, used, n=25):
    c = tls_client(port, "127.0.0.1")
    lat = {"unknown_user": [], "wrong_password": []}
    for i in range(2 * n + 2):
        kind = "unknown_user" if i % 2 == 0 else "wrong_password"
        user = f"ghost{i}" if kind == "unknown_user" else USER
        pw = f"timing-{i:03d}-Kk2"
        used.extend([pw, plain(user, pw)])
        t = time.monotonic()
        r = c.cmd(f"AUTH PLAIN {plain(user, pw)}", timeout=20)
        dt = time.monotonic() - t
        if not r.startswith("535 5.7.8"):
            raise AssertionError(f"timing run: {r!r}")
        if i >= 2:  # the first two warm up
            lat[kind].append(dt)
    c.close()
    return lat


def grep_logs(paths, used, work):
    pat = os.path.join(work, "passwords.txt")
    with open(pat, "w") as f:
        f.write("\n".join(sorted(set(used))) + "\n")
    n = 0
    for p in paths:
        r = subprocess.run(["grep", "-c", "-F", "-f", pat, p], capture_output=True, text=True)
        n += int(r.stdout.strip() or 0)
    return n


def main():
    t0 = time.monotonic()
    used = [PASSWORD, plain(USER, PASSWORD)]
    with mb.workdir("t08") as w, rt.Procs() as P:
        cert, key = rt.make_cert(w)
        user = {"name": USER, "password_hash": rt.hash_password(PASSWORD)}
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), env={"MAILBRAKE_LOG": "debug"}, sections={
            "tls": {"cert": cert, "key": key},
            "auth": {"users": [user]},  # failure_delay, max_failures, window: defaults
        }).start())

        a = brute_force(m.smtp, used)
        tl = a["throttled_latency"]
        vl = a["verdict_latency"]
        print(f"  brute force: { {k: v for k, v in a.items() if not k.endswith('latency')} }", flush=True)
        if a["verdicts"] > MAX_FAILURES:
            mb.fail("T8", f"{a['verdicts']} passwords checked from one IP within {a['elapsed']:.0f}s; cap {MAX_FAILURES}/10m")
        if vl and min(vl) < 1.0:
            mb.fail("T8", f"a failed AUTH was answered in {min(vl):.3f}s, before failure_delay (1s)")
        if not a["throttled"]:
            mb.fail("T8", "the brute-forcing client was never throttled (no 421/454)")
        par = parallel_guesses(m.smtp, used, "127.0.0.8")
        par_verdicts = par.count("535")
        print(f"  parallel guesses from 127.0.0.8: {par}", flush=True)
        if par_verdicts > MAX_FAILURES or not set(par) - {"535"}:
            mb.fail("T8", f"parallel guesses: {par_verdicts} verdicts (cap {MAX_FAILURES}): {par}")

        # B. another address is not affected
        c = tls_client(m.smtp, "127.0.0.3")
        ok = c.cmd(f"AUTH PLAIN {plain(USER, PASSWORD)}", timeout=20)
        r = c.cmd("MAIL FROM:<a@corp.example>")
        c.cmd("QUIT"); c.close()
        if not ok.startswith("235"):
            mb.fail("T8", f"127.0.0.3 with the right password: {ok!r}")
        attempts_metric = {k: m.metric(f'mailbrake_auth_attempts_total{{result="{k}"}}') for k in ("failure", "throttled", "success")}
        m.stop()

        # C. timing, on a second server without the caps
        m2 = P.add(rt.Relay(w, sink.url(), data_dir=os.path.join(w, "data-timing"), env={"MAILBRAKE_LOG": "debug"},
                            sections={"tls": {"cert": cert, "key": key},
                                      "limits": {"max_errors": 100000},
                                      "auth": {"users": [user], "failure_delay": "100ms",
                                               "max_failures": 100000, "max_user_failures": 100000}}).start())
        lat = timing(m2.smtp, used)
        m2.stop()
        mu = statistics.median(lat["unknown_user"])
        mw = statistics.median(lat["wrong_password"])
        diff = abs(mu - mw) / min(mu, mw)

        # D. no password in the logs
        leaked = grep_logs([m.log_path, m2.log_path], used, w)
        log_lines = sum(1 for p in (m.log_path, m2.log_path) for _ in open(p, "rb"))
        mb.figure("T8", attempts=a["attempts"], seconds_brute=round(a["elapsed"], 1),
                  verdicts_first_minute=a["verdicts"], cap=f"{MAX_FAILURES}/10m",
                  verdict_reply_ms=round(1000 * statistics.median(vl)) if vl else "-",
                  throttled=a["throttled"], codes="/".join(f"{k}:{v}" for k, v in sorted(a["codes"].items())),
                  throttled_reply_ms=round(1000 * statistics.median(tl), 1) if tl else "-",
                  parallel_verdicts=f"{par_verdicts}/10", other_ip_login=ok[:3],
                  metric_failure=attempts_metric["failure"], metric_throttled=attempts_metric["throttled"],
                  median_unknown_user_ms=round(mu * 1000, 1), median_wrong_password_ms=round(mw * 1000, 1),
                  timing_diff_pct=round(diff * 100, 1), n_each=len(lat["unknown_user"]),
                  log_lines=log_lines, password_lines_in_log=leaked, seconds=round(time.monotonic() - t0, 1))
        if diff > 0.10:
            mb.fail("T8", f"unknown user {mu*1000:.1f} ms vs wrong password {mw*1000:.1f} ms: {diff:.0%} apart (> 10%)")
        if leaked:
            mb.fail("T8", f"{leaked} log lines contain a password or an AUTH blob ({m.log_path}, {m2.log_path})")
    print("PASS T8", flush=True)


if __name__ == "__main__":
    main()
