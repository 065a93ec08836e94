#!/usr/bin/env python3
"""T15 (RELIABILITY.md §2.11, §4): zip bombs and nested archives.

Every archive is generated in the test (Python's zipfile; `zip -P` for real ZipCrypto when
installed), attached base64 to a message, and sent to the real relay with the shipped policy
(`[inspection]`: max_depth 3, max_archive_entries 10000, max_inflated 200MiB, max_ratio 100
per entry over 1 MiB, 8 s). Where a bomb could stop inspection before the interesting part,
a people table (40 records: name, e-mail, phone, birth date) rides inside it, so a pass would
mean the inspector missed personal data.
  zeros-10MB       10 MB of zeros deflated (~10 KiB)                     -> held uninspectable
  nested-3         zip > zip > zip > customers.csv                        -> held (uninspectable or personal_data)
  nested-42        3 levels x 10 copies, each leaf 10 MB of zeros (1 GB nominal) -> held uninspectable
  entries-10000    10,000 tiny entries, customers.csv the last            -> held (either reason)
  encrypted-zip-P  `zip -P` (ZipCrypto) of customers.csv                  -> held uninspectable
  encrypted-flag   zipfile archive with the encryption bit set by hand      -> held uninspectable
  overlap-1000     1,000 central-directory entries sharing one 10 MB-zeros local entry
                   (Fifield's non-recursive bomb)                          -> held uninspectable
  text-20x1MB      20 entries of one 1 MB line of words each (51 KiB zipped, no personal data)
                   -> forwarded after a full inspection, or held uninspectable; < 10 s either way
                   and the relay idle afterwards
Pass for each: held with the expected reason, final reply < 10 s after the final dot, the
relay idle again after the reply (< 0.4 s of CPU in the next 2 s), and
the relay's peak RSS growth reported (asserted < 4 x max_message_size). The decompressed
bytes are not exported by mailbrake; the figure reports the caps and the finding's words.
"""

import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

MIB = 1024 * 1024
LIMIT = 25 * MIB
ZEROS = b"\0" * 10_000_000


def customers_csv():
    first = ["Taro", "Hanako", "John", "Mary", "Ken", "Yuki", "Alice", "Bob", "Carol", "Dave"]
    last = ["Yamada", "Suzuki", "Smith", "Brown", "Tanaka", "Sato", "Jones", "Miller", "Davis", "Wilson"]
    rows = ["name,email,phone,date_of_birth"]
    for i in range(40):
        f, l = first[i % 10], last[(i * 3) % 10]
        rows.append(f"{f} {l},{f.lower()}.{l.lower()}{i}@gmail.com,090-{1000 + i:04d}-{2000 + i * 7:04d},"
                    f"19{70 + i % 30}-{1 + i % 12:02d}-{1 + i % 28:02d}")
    return ("\r\n".join(rows) + "\r\n").encode()


def zip_of(entries, method=zipfile.ZIP_DEFLATED):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", method, compresslevel=9 if method == zipfile.ZIP_DEFLATED else None) as z:
        for name, data in entries:
            z.writestr(name, data)
    return bio.getvalue()


def text_line(size):
    unit = b"lorem ipsum dolor sit amet "
    return (unit * (size // len(unit) + 1))[:size]


def nested(levels, leaf_entries, copies=1):
    data = zip_of(leaf_entries)
    for lvl in range(levels - 1):
        data = zip_of([(f"level{lvl}-{k}.zip", data) for k in range(copies)])
    return data


def encrypted_flag():
    data = bytearray(zip_of([("customers.csv", customers_csv())], zipfile.ZIP_STORED))
    data[6] |= 1  # local header general-purpose flag
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 1  # central directory flag
    return bytes(data)


def encrypted_zip_p(work):
    if not shutil.which("zip"):
        return None
    d = os.path.join(work, "encsrc")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "customers.csv"), "wb") as f:
        f.write(customers_csv())
    out = os.path.join(work, "enc.zip")
    subprocess.run(["zip", "-q", "-P", "s3cret", out, "customers.csv"], cwd=d, check=True, timeout=30)
    with open(out, "rb") as f:
        return f.read()


def overlapping(n=1000):
    """One local entry (10 MB of zeros deflated) referenced by n central-directory records."""
    data = zip_of([("k.txt", ZEROS)])
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_off = struct.unpack("<II", data[eocd + 12:eocd + 20])
    rec = data[cd_off:cd_off + 46]
    recs = []
    for i in range(n):
        name = f"{i:04d}.txt".encode()
        recs.append(rec[:28] + struct.pack("<HHH", len(name), 0, 0) + rec[34:46] + name)
    cd = b"".join(recs)
    return data[:cd_off] + cd + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(cd), cd_off, 0)


def message(seq, name, payload):
    b = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    return (f"From: a@corp.example\r\nTo: b@partner.example\r\nSubject: {seq}\r\nX-Test-Seq: {seq}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nthe files, as discussed\r\n"
            f"--B\r\nContent-Type: application/zip; name={name}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename={name}\r\n\r\n{b}--B--\r\n").encode()


def hist(m, name):
    s = c = 0.0
    for line in m.metrics_text().splitlines():
        if line.startswith(name + "_sum"):
            s = float(line.split()[-1])
        elif line.startswith(name + "_count"):
            c = float(line.split()[-1])
    return s, c


def send(m, seq, msg):
    c = rt.Client(m.smtp, timeout=60)
    c.ehlo()
    for line in (f"MAIL FROM:<{seq}@corp.example>", "RCPT TO:<b@partner.example>", "DATA"):
        c.cmd(line)
    c.send(msg)
    t = time.monotonic()
    c.send(b".\r\n")
    final = c.reply(60).strip()
    dt = time.monotonic() - t
    c.cmd("QUIT"); c.close()
    return final, dt


def main():
    t0 = time.monotonic()
    with mb.workdir("t15") as w, rt.Procs() as P:
        csv = customers_csv()
        cases = [
            ("zeros-10MB", "zeros.zip", zip_of([("zeros.bin", ZEROS)]), {"uninspectable"}),
            ("nested-3", "nested.zip", nested(3, [("customers.csv", csv)]), {"uninspectable", "personal_data"}),
            ("nested-42", "42.zip", nested(3, [("zeros.bin", ZEROS)], copies=10), {"uninspectable"}),
            ("entries-10000", "many.zip", zip_of([(f"f{i:05d}.txt", b"x") for i in range(9_999)] + [("customers.csv", csv)]),
             {"uninspectable", "personal_data"}),
            ("encrypted-zip-P", "secret.zip", encrypted_zip_p(w), {"uninspectable"}),
            ("encrypted-flag", "flagged.zip", encrypted_flag(), {"uninspectable"}),
            ("overlap-1000", "overlap.zip", overlapping(), {"uninspectable"}),
            # last: 20 entries of 1 MB one-line text each (51 KiB zipped, ratio 20:1, under every
            # archive limit): only the text analysis can be slow here
            ("text-20x1MB", "text.zip", zip_of([(f"notes{i}.txt", text_line(1_000_000)) for i in range(20)]),
             {"uninspectable", "forward"}),
        ]
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), sections={"limits": {"max_message_size": LIMIT}}).start())
        pid = m.pid()
        if mb.send(m.smtp, "warmup")[0] != 250:
            mb.fail("T15", "warm-up message not delivered")
        time.sleep(0.3)
        base_rss = rt.rss_kib(pid)
        problems, fig = [], {}
        for seq, name, payload, want in cases:
            if payload is None:
                print(f"  {seq}: skipped (zip not installed)", flush=True)
                fig[seq.replace("-", "_")] = "skipped"
                continue
            rt.reset_hwm(pid)
            s0, c0 = hist(m, "mailbrake_inspect_duration_seconds")
            final, dt = send(m, seq, message(seq, name, payload))
            s1, c1 = hist(m, "mailbrake_inspect_duration_seconds")
            busy = rt.cpu_busy(pid, 2.0)
            growth = (rt.hwm_kib(pid) - base_rss) / 1024
            entry = None
            if "held as " in final:
                code, js, _ = m.cli("quarantine", "show", final.rsplit(" ", 1)[-1], "--json")
                entry = json.loads(js) if code == 0 else None
            reasons = set(entry["reasons"]) if entry else set()
            why = [f["summary"] for f in entry["findings"]] if entry else []
            inspect_s = (s1 - s0) / (c1 - c0) if c1 > c0 else None
            print(f"  {seq}: {len(payload)} bytes zipped: {final[:40]!r} in {dt:.2f}s (inspect {inspect_s}), "
                  f"peak +{growth:.1f} MiB, CPU after the reply {busy:.2f}s/2s, reasons {sorted(reasons)}: {why[:2]}", flush=True)
            fig[seq.replace("-", "_")] = (f"{'held:' + '+'.join(sorted(reasons)) if entry else 'forwarded' if final.startswith('250') else final[:3]},"
                                         f"{dt:.2f}s,peak+{growth:.0f}MiB,cpu_after={busy:.2f}s")
            forwarded = final.startswith("250") and "held" not in final
            if not (forwarded and "forward" in want) and (not entry or not (reasons & want)):
                problems.append(f"{seq}: {final!r} reasons {sorted(reasons)} (want held: {' or '.join(sorted(want))})")
            if dt >= 10:
                problems.append(f"{seq}: reply after {dt:.1f}s (>= 10 s)")
            if busy > 0.4:
                problems.append(f"{seq}: the relay kept burning CPU after its reply ({busy:.2f} s of CPU in the next "
                                "2 s): the inspection was not stopped at its deadline")
            if growth >= 4 * LIMIT / MIB:
                problems.append(f"{seq}: peak RSS grew {growth:.0f} MiB (>= 4 x {LIMIT // MIB} MiB)")
        delivered = [s for s in mb.seqs(sink.messages()) if s not in ("warmup", "text-20x1MB")]
        if delivered:
            problems.append(f"archives forwarded upstream: {delivered}")
        mb.figure("T15", **fig, decompressed_cap="200MiB_total,ratio100_per_entry_over_1MiB(not_exported)",
                  rss_base_mib=round(base_rss / 1024, 1), seconds=round(time.monotonic() - t0, 1))
        if problems:
            mb.fail("T15", "; ".join(problems))
    print("PASS T15", flush=True)


if __name__ == "__main__":
    main()
