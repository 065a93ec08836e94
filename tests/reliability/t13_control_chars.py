#!/usr/bin/env python3
"""T13 (RELIABILITY.md §2.9, §4): CRLF / NUL / control characters in the envelope and in the
operator's CLI output.

Protocol (raw socket):
  - `MAIL FROM:<a\\r\\nRCPT TO:<x@evil>>`: the MAIL line is refused (501 5.1.7) and the
    injected RCPT line is not accepted (503: no transaction); DATA gets 503;
  - NUL in the local part of MAIL / RCPT        -> 501 5.1.7 / 501 5.1.3;
  - a bare CR inside an address                 -> 501 (never silently dropped);
  (the injected `RCPT TO:<x@evil>>` line is refused: 501 syntax or 503 no transaction)
  - ESC / BEL / C1 CSI in the EHLO name          -> refused or never echoed raw;
  nothing of this reaches the upstream.
Held mail carrying terminal escapes (shipped policy holds it: 30 visible addresses):
  - Subject and From with ESC sequences (OSC title, clear screen, colours), BEL, CSI (U+009B),
    a bidi override (U+202E);
  - an RFC 2047 encoded-word Subject that decodes to ESC and CR LF;
  - an attachment whose RFC 2231 file name decodes to ESC sequences and a newline.
Then `mailbrake quarantine list --json`: every line parses as JSON (Python and `jq -c`),
lines == held messages; `show --json` parses; human `list` and `show` contain no raw ESC
(0x1b), no other C0 control except LF/TAB, no C1 and no bidi override. The server's own log
file (stderr redirected to a file) carries no ESC byte and none of the message content.
"""

import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402

TO30 = ",\r\n ".join(f"m{i}@family{i}.example" for i in range(30))
ESC_SUBJECT = "\x1b]0;pwned\x07\x1b[2J\x1b[31mURGENT\x1b[0m \u009b31m C1 \u202eevil\u202c"
ESC_FROM = "\x1b[31mCEO\x1b[0m\x07 <a@corp.example>"


def held_messages():
    b64 = __import__("base64").b64encode
    enc = "=?utf-8?b?" + b64("\x1b[5mblink\r\nX-Injected: yes\x1b[0m".encode()).decode() + "?="
    att = ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\n"
           "Content-Type: text/plain\r\n\r\nsee attachment\r\n--BB\r\n"
           "Content-Type: text/plain\r\n"
           "Content-Disposition: attachment; filename*=utf-8''%1B%5B31mevil%0Aname%07.txt\r\n\r\n"
           "hello\r\n--BB--\r\n")
    return {
        "esc-subject-from": f"From: {ESC_FROM}\r\nTo: {TO30}\r\nSubject: {ESC_SUBJECT}\r\nX-Test-Seq: esc1\r\n\r\nhi\r\n",
        "encoded-word": f"From: a@corp.example\r\nTo: {TO30}\r\nSubject: {enc}\r\nX-Test-Seq: esc2\r\n\r\nhi\r\n",
        "attachment-name": f"From: a@corp.example\r\nTo: {TO30}\r\nSubject: files\r\nX-Test-Seq: esc3\r\n{att}",
    }


def bad_chars(text):
    """Raw control characters a terminal could act on (LF and TAB are fine)."""
    out = []
    for ch in text:
        o = ord(ch)
        if (o < 0x20 and ch not in "\n\t") or o == 0x7f or 0x80 <= o <= 0x9f or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
            out.append(hex(o))
    return out


def protocol(port):
    out = {}
    c = rt.Client(port)
    c.ehlo()
    c.send(b"MAIL FROM:<a\r\nRCPT TO:<x@evil>>\r\n")
    out["crlf_in_mail"] = [c.reply().strip(), c.reply().strip()]
    out["data_after"] = c.cmd("DATA").strip()
    c.cmd("RSET")
    out["nul_mail"] = c.cmd(b"MAIL FROM:<a\x00b@corp.example>").strip()
    out["cr_mail"] = c.cmd(b"MAIL FROM:<a\rb@corp.example>").strip()
    c.cmd("MAIL FROM:<a@corp.example>")
    out["nul_rcpt"] = c.cmd(b"RCPT TO:<x\x00y@partner.example>").strip()
    out["cr_rcpt"] = c.cmd(b"RCPT TO:<x\ry@partner.example>").strip()
    out["data_after_rcpt"] = c.cmd("DATA").strip()
    c.cmd("QUIT"); c.close()
    c = rt.Client(port)
    c.reply()
    out["esc_ehlo"] = c.cmd(b"EHLO \x1b[31mred\xc2\x9bx").strip()
    c.cmd("QUIT"); c.close()
    return out


def main():
    t0 = time.monotonic()
    with mb.workdir("t13") as w, rt.Procs() as P:
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url()).start())
        problems = []
        p = protocol(m.smtp)
        for k, v in p.items():
            print(f"  {k}: {v!r}", flush=True)
        if not (p["crlf_in_mail"][0].startswith("501") and p["crlf_in_mail"][1][:3] in ("501", "503")):
            problems.append(f"MAIL FROM:<a CRLF RCPT TO:<x@evil>>: {p['crlf_in_mail']}")
        if not p["data_after"].startswith("503"):
            problems.append(f"DATA after the injection: {p['data_after']!r}")
        if not p["nul_mail"].startswith("501 5.1.7") or not p["cr_mail"].startswith("501"):
            problems.append(f"NUL/CR in MAIL: {p['nul_mail']!r} {p['cr_mail']!r}")
        if not p["nul_rcpt"].startswith("501 5.1.3") or not p["cr_rcpt"].startswith("501"):
            problems.append(f"NUL/CR in RCPT: {p['nul_rcpt']!r} {p['cr_rcpt']!r}")
        if not p["data_after_rcpt"].startswith("503"):
            problems.append(f"DATA with only refused recipients: {p['data_after_rcpt']!r}")
        if "\x1b" in p["esc_ehlo"] or "\u009b" in p["esc_ehlo"]:
            problems.append(f"EHLO echoed a raw escape: {p['esc_ehlo']!r}")

        ids = {}
        for name, msg in held_messages().items():
            r = mb.send(m.smtp, name, msg=msg.encode())
            if r[0] != 250 or "held as" not in r[1]:
                problems.append(f"{name}: not held: {r}")
            else:
                ids[name] = r[1].rsplit(" ", 1)[-1]
        code, out, err = m.cli("quarantine", "list", "--json")
        lines = [l for l in out.split("\n") if l.strip()]
        parsed, bad_json = [], []
        for l in lines:
            try:
                parsed.append(json.loads(l))
            except json.JSONDecodeError:
                bad_json.append(l[:120])
        jq_ok = None
        if shutil.which("jq"):
            jq = subprocess.run(["jq", "-c", "."], input=out, capture_output=True, text=True)
            jq_ok = jq.returncode == 0 and len([l for l in jq.stdout.splitlines() if l]) == len(ids)
        if code != 0 or bad_json or len(lines) != len(ids) or len(parsed) != len(ids):
            problems.append(f"list --json: exit {code}, {len(lines)} lines for {len(ids)} held, unparsable {bad_json}")
        if jq_ok is False:
            problems.append("jq -c could not parse every line of list --json")
        if ids and parsed:
            subj = next((e.get("subject") for e in parsed if e.get("id") == ids.get("esc-subject-from")), None)
            if subj is not None and "\x1b" not in subj:
                print(f"  note: list --json subject of the ESC message: {subj!r}", flush=True)
        human = {}
        code, out, err = m.cli("quarantine", "list")
        human["list"] = out
        if code != 0:
            problems.append(f"quarantine list: exit {code}: {err}")
        for name, i in ids.items():
            code, out, err = m.cli("quarantine", "show", i)
            human[f"show {name}"] = out
            if code != 0:
                problems.append(f"show {name}: exit {code}: {err}")
            code, js, err = m.cli("quarantine", "show", i, "--json")
            try:
                json.loads(js)
                if js.strip().count("\n"):
                    problems.append(f"show --json {name}: more than one line")
            except json.JSONDecodeError as e:
                problems.append(f"show --json {name}: does not parse: {e}")
        raw_esc = {k: bad_chars(v) for k, v in human.items() if bad_chars(v)}
        if raw_esc:
            problems.append(f"raw control characters in human output: {raw_esc}")
        log = m.logs()
        log_esc = log.count(b"\x1b")
        leaked_content = [w_ for w_ in (b"pwned", b"URGENT", b"blink", b"X-Injected", b"evil") if w_ in log]
        if leaked_content:
            problems.append(f"message content in the server log: {leaked_content}")
        if log_esc:
            problems.append(f"the server log file ({m.log_path}) has {log_esc} raw ESC bytes: ANSI colour codes are "
                            "written although stderr is not a terminal")
        delivered = len(sink.messages())
        mb.figure("T13", crlf_in_mail="/".join(x[:3] for x in p["crlf_in_mail"]), nul_mail=p["nul_mail"][:9].replace(" ", "_"),
                  nul_rcpt=p["nul_rcpt"][:9].replace(" ", "_"), cr_in_address=p["cr_mail"][:3] + "/" + p["cr_rcpt"][:3],
                  held=len(ids), json_lines=len(lines), json_parsed=len(parsed), jq_parsed=jq_ok,
                  human_outputs_checked=len(human), raw_controls_in_human=sum(len(v) for v in raw_esc.values()),
                  esc_in_server_log=log_esc, delivered=delivered, seconds=round(time.monotonic() - t0, 1))
        if delivered:
            problems.append(f"{delivered} messages reached the upstream")
        if problems:
            for k, v in human.items():
                if bad_chars(v):
                    print(f"--- {k} ---\n{v!r}", flush=True)
            mb.fail("T13", "; ".join(problems))
    print("PASS T13", flush=True)


if __name__ == "__main__":
    main()
