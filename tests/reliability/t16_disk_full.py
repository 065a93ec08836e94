#!/usr/bin/env python3
"""T16 (RELIABILITY.md §4): disk full. Never a 250 for something not stored; nothing acked lost.

Two forms:

--floor (no root needed; the CI form): the free-space floor. mailbrake is restarted with
  `[limits] min_free_space` set 1 GiB above the current free space of the file system of its
  data directory: MAIL gets `452 4.3.1`, nothing is delivered or held, the messages held before
  are still listed. Restarted with the floor lowered again, the refused messages are sent again
  and flow. 0 acked messages lost.

--loop (needs root and a working `mount -o loop`; skipped with a message otherwise): the data
  directory is a 64 MiB ext4 image (mkfs.ext4 -m 0) mounted on a temp dir, with
  max_message_size = 1 MiB and min_free_space = 2 MiB (floor 2 MiB).
  B. ENOSPC inside the commit: 5 sessions reach 354 with held messages, a 6th stops after RCPT;
     the test fills the file system to the last block; the 5 dots must get `451 4.3.5` (or
     250 only if the message really is stored), the 6th session's DATA `452 4.3.1`, a new MAIL
     `452 4.3.1`. Space freed: sled keeps its I/O error for the life of the process, so
     mailbrake drains and re-executes itself (same PID, no supervisor needed) to reopen the
     index; once /readyz answers 200 again, holds flow without an operator's restart.
  A. Fill during load: 4 sessions send held and clean messages while a filler writes the
     disk full; replies turn to 452 4.3.1 / 451 4.3.5.
  Then the filler is removed and mailbrake restarted (SIGTERM): 0 acked messages missing,
  0 half-indexed entries (every held index entry has a spool file that verifies: magic,
  lengths, CRC-32, end marker), every spool file in held/ is listed, nothing in corrupt/,
  no panic in the log, and the process never died during the test.
  The file system is unmounted and the image removed in a finally block.

Default (no flag): --floor, then --loop if root and loop mounts work here.
"""

import argparse
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import durability as d  # noqa: E402
import mb  # noqa: E402


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def mail_reply(port, sender="a@corp.example"):
    c = d.Smtp(port)
    try:
        c.reply()
        c.cmd("EHLO floor.test")
        return c.cmd(f"MAIL FROM:<{sender}>")
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------
# free-space floor (no root)


def floor_form():
    started = time.time()
    procs = d.Procs()
    problems = []
    with mb.workdir("t16-floor") as work:
        try:
            sink = procs.add(d.SinkAt(work))
            m = procs.add(mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT))
            m.start()
            first = [(f"t16f-a-{i}", d.test_message(f"t16f-a-{i}", held=i % 2 == 0)) for i in range(20)]
            la = d.Load(m.smtp, first, sessions=4).run(60)
            if la.unacked():
                mb.fail("T16", f"before the floor: not acked {la.unacked()[:3]}")
            m.term(30)

            free = free_bytes(m.data)
            floor = free + (1 << 30)
            d.configure(m, "limits", min_free_space=str(floor))
            m.start()
            second = [(f"t16f-b-{i}", d.test_message(f"t16f-b-{i}", held=i % 2 == 0)) for i in range(20)]
            refused = []
            for s, _ in second:
                code, text = mail_reply(m.smtp)
                refused.append((code, text))
            n452 = sum(1 for c, t in refused if c == 452 and "4.3.1" in t)
            if n452 != len(second):
                problems.append(f"below the floor: {n452} of {len(second)} MAIL got 452 4.3.1; e.g. {refused[0]}")
            lb = d.Load(m.smtp, second, sessions=4).run(60)  # whole transactions: none may be acked
            if lb.acked():
                problems.append(f"below the floor, {len(lb.acked())} messages got 250")
            held_during = d.held_by_seq(m)
            if {s for s, _ in first[::2]} - set(held_during):
                problems.append("holds acked before the floor are not listed while below it")
            gauge = m.metric("mailbrake_spool_free_bytes")
            m.term(30)

            d.configure(m, "limits", min_free_space='"1MiB"')
            m.start()
            lc = d.Load(m.smtp, second, sessions=4, retries=2).run(60)
            if lc.unacked():
                problems.append(f"after lowering the floor: not acked {lc.unacked()[:3]}")
            acked = dict(la.acked(), **lc.acked())
            time.sleep(0.3)
            held = d.held_by_seq(m)
            dumps = d.dump_counts(sink)
            lost = [s for s in acked if s not in held and s not in dumps]
            dup = sum(c - 1 for c in dumps.values() if c > 1) + sum(len(v) - 1 for v in held.values() if len(v) > 1)
            code = m.term(30)
            mb.figure("T16", form="floor", free_bytes=free, floor_bytes=floor, spool_free_bytes_gauge=int(gauge or -1),
                      mail_452_4_3_1=f"{n452}/{len(second)}", acked_below_floor=len(lb.acked()),
                      acked_after=len(lc.acked()), lost=len(lost), duplicates=dup, exit_code=code,
                      seconds=f"{time.time() - started:.1f}")
            if lost:
                problems.append(f"acked but lost: {lost[:5]}")
            if code != 0:
                problems.append(f"exit status {code}")
            if problems:
                for p in problems:
                    print(f"  problem: {p}", flush=True)
                mb.fail("T16", f"floor: {len(problems)} problem(s), first: {problems[0]}")
            print("PASS T16 (floor)", flush=True)
        finally:
            procs.stop_all()


# ------------------------------------------------------------------------------------------------
# a real full file system (root + loop mount)


def loop_available():
    if os.geteuid() != 0:
        return "not root"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if not shutil.which(tool):
            return f"{tool} not found"
    probe = tempfile.mkdtemp(prefix="t16-probe-")
    img, mnt = os.path.join(probe, "img"), os.path.join(probe, "mnt")
    try:
        os.mkdir(mnt)
        with open(img, "wb") as f:
            f.truncate(8 << 20)
        r = subprocess.run(["mkfs.ext4", "-q", "-F", img], capture_output=True, text=True)
        if r.returncode:
            return f"mkfs.ext4 failed: {r.stderr.strip()}"
        r = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
        if r.returncode:
            return f"mount -o loop failed: {r.stderr.strip()}"
        subprocess.run(["umount", mnt], capture_output=True)
        return None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def fill(path, chunk=1 << 20, stop=None, pause=0.0):
    """Appends to `path` until ENOSPC (then with smaller chunks, down to 1 KiB); returns bytes."""
    written = 0
    with open(path, "ab", buffering=0) as f:
        size = chunk
        while size >= 1024:
            if stop is not None and stop.is_set():
                break
            try:
                f.write(b"\0" * size)
                written += size
                if pause:
                    time.sleep(pause)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                size //= 4
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    return written


def ready_wait(m, limit):
    """Seconds until mailbrake's /readyz answers 200 (None if it never does within `limit`)."""
    import urllib.request
    start = time.time()
    while time.time() - start < limit:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m.metrics}/readyz", timeout=2) as r:
                if r.status == 200:
                    return time.time() - start
        except OSError:
            pass
        time.sleep(0.2)
    return None


def loop_form():
    why = loop_available()
    if why:
        print(f"SKIP T16 (loop): {why}; run as root on a machine with loop devices", flush=True)
        return
    started = time.time()
    procs = d.Procs()
    problems = []
    with mb.workdir("t16-loop") as work:
        img, mnt = os.path.join(work, "disk.img"), os.path.join(work, "mnt")
        os.mkdir(mnt)
        mounted = False
        try:
            with open(img, "wb") as f:
                f.truncate(64 << 20)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], check=True)
            subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
            mounted = True
            sink = procs.add(d.SinkAt(work))
            m = procs.add(mb.Mailbrake(work, upstream=sink.url(), policy_local=d.EXEMPT, data_dir=os.path.join(mnt, "data")))
            d.configure(m, "limits", max_message_size='"1MiB"', min_free_space='"2MiB"')
            m.start()
            acked = {}
            all_results = {}
            replies = {"250": 0, "452 4.3.1": 0, "451 4.3.5": 0, "other": []}

            def note(code, text, seq=None):
                if seq is not None:
                    all_results.setdefault(seq, []).append((code, text))
                if code == 250:
                    replies["250"] += 1
                elif code == 452 and "4.3.1" in (text or ""):
                    replies["452 4.3.1"] += 1
                elif code == 451 and "4.3.5" in (text or ""):
                    replies["451 4.3.5"] += 1
                else:
                    replies["other"].append((code, text))

            warm = [(f"t16l-w-{i}", d.test_message(f"t16l-w-{i}", held=i % 2 == 0, pad=20000)) for i in range(10)]
            lw = d.Load(m.smtp, warm, sessions=4).run(60)
            acked.update(lw.acked())
            if lw.unacked():
                mb.fail("T16", f"loop: warm-up not acked: {lw.unacked()[:3]}")

            # --- B: ENOSPC inside the commit ---------------------------------------------------
            sessions = []
            for i in range(6):
                seq = f"t16l-b-{i}"
                c = d.Smtp(m.smtp, timeout=30)
                sessions.append((seq, c))
                c.reply()
                c.cmd("EHLO full.test")
                c.cmd("MAIL FROM:<a@corp.example>")
                c.cmd("RCPT TO:<b@partner.example>")
                if i < 5:
                    code, text = c.cmd("DATA")
                    if code != 354:
                        mb.fail("T16", f"loop: DATA before the fill: {code} {text}")
            filler1 = os.path.join(mnt, "filler-1")
            fill(filler1)
            time.sleep(1.3)  # mailbrake measures free space at most once a second
            b_results = {}
            for seq, c in sessions[:5]:
                c.send(d.dot_stuff(d.test_message(seq, held=True, pad=40000)) + ".\r\n")
                b_results[seq] = c.reply(timeout=30)
                note(*b_results[seq], seq=seq)
                if b_results[seq][0] == 250:
                    acked[seq] = b_results[seq][1]
            seq6, c6 = sessions[5]
            data6 = c6.cmd("DATA", timeout=30)
            mail_new = mail_reply(m.smtp)
            for _, c in sessions:
                c.close()
            alive_b = m.proc.poll() is None
            b_451 = sum(1 for r in b_results.values() if r[0] == 451 and "4.3.5" in r[1])
            if not alive_b:
                problems.append(f"B: mailbrake died when the disk filled (exit {m.proc.returncode})")
            if any(r[0] not in (250, 451) for r in b_results.values()):
                problems.append(f"B: dots on a full disk: {list(b_results.values())}")
            if not (data6[0] == 452 and "4.3.1" in data6[1]):
                problems.append(f"B: DATA below the floor got {data6} (want 452 4.3.1)")
            if not (mail_new[0] == 452 and "4.3.1" in mail_new[1]):
                problems.append(f"B: MAIL below the floor got {mail_new} (want 452 4.3.1)")
            os.remove(filler1)
            time.sleep(2.5)  # free space is measured once a second, the index probed every 2 s
            ready_after = ready_wait(m, 60)
            if alive_b and ready_after is None:
                problems.append("B: space freed, but /readyz did not answer 200 within 60 s")
            if alive_b and m.proc.poll() is not None:
                problems.append(f"B: mailbrake exited after space was freed (exit {m.proc.returncode}); want an in-place restart")
            if alive_b:
                lr = d.Load(m.smtp, [(f"t16l-r-{i}", d.test_message(f"t16l-r-{i}", held=True)) for i in range(5)], sessions=2, retries=2).run(60)
                acked.update(lr.acked())
                for sq, rs in lr.results.items():
                    for code, text, *_ in rs:
                        note(code, text, sq)
                if lr.unacked():
                    problems.append(f"B: space freed, but holds still fail until a restart: {lr.results[lr.unacked()[0]][-1][:2]}")

            # --- A: fill during load -------------------------------------------------------------
            alive_a = alive_b
            if alive_b:
                stop = threading.Event()
                items = [(f"t16l-a-{i:04d}", d.test_message(f"t16l-a-{i:04d}", held=i % 3 != 0, pad=30000)) for i in range(3000)]
                la = d.Load(m.smtp, items, sessions=4, timeout=30)
                la.start()
                filler2 = os.path.join(mnt, "filler-2")
                ft = threading.Thread(target=fill, args=(filler2, 256 << 10, stop, 0.01), daemon=True)
                ft.start()
                ft.join(40)
                time.sleep(3)  # the load keeps going on the full disk
                la.stop.set()
                la.join(40)
                for sq, rs in la.results.items():
                    for code, text, *_ in rs:
                        note(code, text, sq)
                acked.update(la.acked())
                alive_a = m.proc.poll() is None
                if not alive_a:
                    problems.append(f"A: mailbrake died during the fill (exit {m.proc.returncode})")
                os.remove(filler2)

            # --- before the restart: is every durable spool file indexed (listed)? ----------------------
            held_dir = os.path.join(m.data, "spool", "held")
            running_unlisted = -1
            if m.proc.poll() is None:
                listed_running = {e["id"] for e in m.held()}
                running_unlisted = len(set(os.listdir(held_dir)) - listed_running)
                if running_unlisted:
                    problems.append(f"{running_unlisted} spool files in held/ are not in the index while mailbrake runs "
                                    f"(half-indexed: stored durably, but the client got 451 and the quarantine does not list them)")

            # --- free space, restart, count ----------------------------------------------------------
            code_exit = m.term(30) if m.proc.poll() is None else m.proc.returncode
            time.sleep(0.3)
            m.start()
            entries = m.held()
            half_indexed = []
            for e in entries:
                problem, meta = d.verify_spool(os.path.join(held_dir, e["id"]))
                if problem or (meta and meta.get("id") != e["id"]):
                    half_indexed.append((e["id"], problem))
            listed = {e["id"] for e in entries}
            files = set(os.listdir(held_dir))
            unlisted = files - listed
            corrupt = os.listdir(os.path.join(m.data, "spool", "corrupt"))
            held = d.held_by_seq(m)
            dumps = d.dump_counts(sink)
            missing = []
            for s, text in acked.items():
                mm = d.HELD_RE.search(text)
                if mm:
                    if mm.group(1) not in listed:
                        missing.append(s)
                elif s not in dumps:
                    missing.append(s)
            panics = d.clean_log(m).count("panicked")
            told_451 = {s for s, rs in all_results.items() for r in rs if r[0] == 451 and "4.3.5" in (r[1] or "")} - set(acked)
            phantom = sorted(s for s in told_451 if s in held)
            if phantom:
                problems.append(f"{len(phantom)} messages answered 451 4.3.5 are in the quarantine after the restart "
                                f"(stored although the client was told to retry: one more copy per retry)")
            code_final = m.term(30)
            mb.figure("T16", form="loop", fs="ext4 64MiB", acked=len(acked), replies_250=replies["250"],
                      replies_452_4_3_1=replies["452 4.3.1"], replies_451_4_3_5=replies["451 4.3.5"],
                      other_replies=len(replies["other"]), commit_enospc_451=f"{b_451}/5", data_452=int(data6[0] == 452),
                      missing_acked=len(missing), half_indexed=len(half_indexed), unlisted_spool_files=len(unlisted),
                      unindexed_while_running=running_unlisted, stored_but_451=len(phantom),
                      ready_after_free_s=f"{ready_after:.1f}" if ready_after is not None else "never",
                      corrupt=len(corrupt), panics=panics, exit_after_fill=code_exit, exit_final=code_final,
                      seconds=f"{time.time() - started:.1f}")
            if replies["other"]:
                problems.append(f"unexpected replies on a full disk: {replies['other'][:3]}")
            if missing:
                problems.append(f"{len(missing)} acked messages missing after restart: {missing[:5]}")
            if half_indexed:
                problems.append(f"{len(half_indexed)} held entries without a verifying spool file: {half_indexed[:3]}")
            if unlisted:
                problems.append(f"{len(unlisted)} spool files in held/ not listed: {sorted(unlisted)[:3]}")
            if corrupt:
                problems.append(f"{len(corrupt)} spool files moved to corrupt/")
            if panics:
                problems.append(f"{panics} panics in the log")
            if code_exit != 0 or code_final != 0:
                problems.append(f"exit statuses: after the fill {code_exit}, final {code_final}")
            if problems:
                for p in problems:
                    print(f"  problem: {p}", flush=True)
                mb.fail("T16", f"loop: {len(problems)} problem(s), first: {problems[0]}")
            print("PASS T16 (loop)", flush=True)
        finally:
            procs.stop_all()
            if mounted:
                r = subprocess.run(["umount", mnt], capture_output=True, text=True)
                if r.returncode:
                    time.sleep(1)
                    subprocess.run(["umount", "-l", mnt], capture_output=True)
            if os.path.exists(img):
                os.remove(img)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--floor", action="store_true", help="only the free-space floor form (no root)")
    ap.add_argument("--loop", action="store_true", help="only the loop-mounted ext4 form (root)")
    a = ap.parse_args()
    if a.floor or not a.loop:
        floor_form()
    if a.loop or not a.floor:
        loop_form()


if __name__ == "__main__":
    main()
