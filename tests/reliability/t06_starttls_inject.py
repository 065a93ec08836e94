#!/usr/bin/env python3
"""T6 server side (RELIABILITY.md §2.2, §4; CVE-2011-0411 class): STARTTLS command injection.

The certificate is made at run time with openssl in the work directory and configured as
`[tls] cert/key`. The §2.2 probe sends `STARTTLS\\r\\nNOOP\\r\\n` in one write, then tries
to complete TLS and waits for an unprompted reply inside TLS.
Pass: mailbrake never answers the injected NOOP (neither in plaintext after 220 nor inside
TLS), and the connection is closed. Controls, so the pass means something:
  - a clean STARTTLS (nothing pipelined) completes and EHLO inside TLS answers 250 with AUTH
    not needed here; `openssl s_client -starttls smtp` negotiates TLS;
  - the same probe against aiosmtpd 1.4.4.post2 with STARTTLS (known bad, CVE-2024-34083;
    skipped with a message when it cannot be installed) must report VULNERABLE.
"""

import os
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mb  # noqa: E402
import rt  # noqa: E402


def probe(port):
    """The §2.2 probe. Returns (verdict, details): verdict is "vulnerable", "closed" or
    "ignored" (TLS up, no unprompted reply within 3 s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    replies = []

    def rd():
        b = b""
        while not (b.endswith(b"\r\n") and b.split(b"\r\n")[-2][3:4] == b" "):
            c = s.recv(4096)  # socket timeout bounds the wait
            if not c:
                raise ConnectionError("closed by server")
            b += c
        replies.append(b)
        return b

    try:
        rd(); s.sendall(b"EHLO probe\r\n"); rd()
        s.sendall(b"STARTTLS\r\nNOOP\r\n")  # NOOP rides in the same segment
        r = rd()
        if not r.startswith(b"220"):
            # refused before TLS: the NOOP must not be answered in plaintext either
            s.settimeout(2)
            rest = b""
            try:
                while (c := s.recv(4096)):
                    rest += c
                closed = True
            except (TimeoutError, socket.timeout):
                closed = False
            except OSError:
                closed = True
            if rest:
                return "vulnerable", f"reply after the STARTTLS refusal: {r!r} then {rest!r}"
            return ("closed" if closed else "open"), f"STARTTLS answered {r!r}; nothing more; closed={closed}"
        ctx = rt.client_tls_context()
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.settimeout(3)
        try:
            got = t.recv(4096)
            if got:
                return "vulnerable", f"{r!r} then inside TLS: {got!r}"
            return "closed", f"{r!r}; TLS up, then closed without a reply"
        except (TimeoutError, socket.timeout):
            return "ignored", f"{r!r}; TLS up, injected command ignored"
        except ssl.SSLError as e:
            return "closed", f"{r!r}; closed: {e}"
    except ConnectionError as e:
        return "closed", f"{replies!r}; {e}"
    except ssl.SSLError as e:
        return "closed", f"{replies!r}; TLS refused: {e}"
    finally:
        s.close()


def main():
    t0 = time.monotonic()
    with mb.workdir("t06") as w, rt.Procs() as P:
        cert, key = rt.make_cert(w)
        sink = P.add(mb.Sink(w))
        m = P.add(rt.Relay(w, sink.url(), sections={"tls": {"cert": cert, "key": key}}).start())

        # control 1: a clean STARTTLS works
        c = rt.Client(m.smtp)
        ehlo = c.ehlo()
        if "STARTTLS" not in ehlo:
            mb.fail("T6", f"STARTTLS not offered: {ehlo!r}")
        c.starttls()
        after = c.cmd("EHLO client.test")
        tls_version = c.s.version()
        c.cmd("QUIT")
        c.close()
        if not after.startswith("250") or "STARTTLS" in after:
            mb.fail("T6", f"EHLO inside TLS: {after!r}")
        # control 2: openssl s_client
        r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{m.smtp}", "-brief"],
                           input=b"", capture_output=True, timeout=30)
        text = (r.stdout + r.stderr).decode(errors="replace")
        proto = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("Protocol version")), None)
        if not proto:
            mb.fail("T6", f"openssl s_client -starttls smtp failed: {text[-400:]}")

        # the attack, several times (timing of the segment vs. the server's read)
        verdicts = []
        for _ in range(5):
            v, detail = probe(m.smtp)
            verdicts.append(v)
            print(f"  mailbrake: {v}: {detail}", flush=True)
        answered = verdicts.count("vulnerable")
        closed = verdicts.count("closed")
        log = m.logs().decode(errors="replace")
        logged = log.count("plaintext pipelined after STARTTLS")

        # the known-bad control
        aio_py = rt.aiosmtpd_python()
        bad_verdict = "skipped"
        if aio_py:
            bad = P.add(rt.Aiosmtpd(w, aio_py, cert, key))
            bad_verdict, detail = probe(bad.port)
            print(f"  aiosmtpd {rt.AIOSMTPD_VERSION}: {bad_verdict}: {detail}", flush=True)
            bad.stop()
        mb.figure("T6", injected_replies=f"{answered}/5", closed=f"{closed}/5", logged_warnings=logged,
                  clean_starttls=tls_version, openssl_s_client=proto.replace(" ", ""),
                  aiosmtpd_1_4_4=bad_verdict, seconds=round(time.monotonic() - t0, 1))
        if answered:
            mb.fail("T6", f"mailbrake answered the injected command in {answered} of 5 probes")
        if closed != 5:
            mb.fail("T6", f"connection not closed in {5 - closed} of 5 probes: {verdicts}")
        if aio_py and bad_verdict != "vulnerable":
            mb.fail("T6", f"the probe did not detect aiosmtpd 1.4.4.post2 (known vulnerable): {bad_verdict}")
        if sink.messages():
            mb.fail("T6", "something reached the upstream")
    print("PASS T6", flush=True)


if __name__ == "__main__":
    main()
