#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz corpora (fuzz/corpus/<target>/seed-*): generated SMTP
transcripts, DATA bodies and messages, 14 small .eml files copied from tests/fixtures/corpus,
the shipped policy and deploy/mailbrake.toml. The corpus directories themselves are not
tracked (the repository's .gitignore), so t21_fuzz.sh runs this first. Run from anywhere:
python3 fuzz/make_seeds.py
"""

import base64
import gzip
import io
import os
import shutil
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, f"seed-{name}"), "wb") as f:
        f.write(data)


# smtp_line: byte 0 = cap selector (512 + 16*b), then a client's command stream.
CAP = b"\xf0"
put("smtp_line", "session", CAP + b"EHLO client.test\r\nMAIL FROM:<a@corp.example> SIZE=1000 BODY=8BITMIME\r\n"
    b"RCPT TO:<b@partner.example>\r\nRCPT TO:<c@partner.example> NOTIFY=NEVER\r\nDATA\r\n")
put("smtp_line", "auth", CAP + b"EHLO x\r\nAUTH PLAIN AHdlYmFwcAB3cm9uZw==\r\nAUTH LOGIN\r\nd2ViYXBw\r\n*\r\nSTARTTLS\r\n")
put("smtp_line", "odd", CAP + b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nVRFY root\r\nEXPN list\r\nHELP\r\n"
    b"NOOP x\r\nRSET\r\nBDAT 10 LAST\r\nETRN x\r\nQUIT\r\n")
put("smtp_line", "utf8", CAP + "MAIL FROM:<ä@例え.jp> SMTPUTF8\r\nRCPT TO:<\"quoted local\"@[127.0.0.1]>\r\n".encode())
put("smtp_line", "control", CAP + b"MAIL FROM:<a\x00b@corp.example>\r\nMAIL FROM:<a\rb@x>\r\nRCPT TO:<x@evil>>\nEHLO \x1b[31m\n")
put("smtp_line", "long", b"\x00" + b"NOOP " + b"A" * 600 + b"\r\nNOOP\r\n")

# smtp_data: byte 0 = cap selector, bytes 1..8 = chunk sizes, then what follows 354.
HDR = b"\x02\x01\x03\x07\x10\x3f\x02\x05\x01"
body = b"From: a@corp.example\r\nTo: b@partner.example\r\nSubject: x\r\n\r\nhello\r\n..stuffed\r\n"
put("smtp_data", "plain", HDR + body + b".\r\nQUIT\r\n")
put("smtp_data", "empty", HDR + b".\r\n")
for name, seq in {"lf-lf": b"\n.\n", "lf-crlf": b"\n.\r\n", "cr-crlf": b"\r.\r\n", "crlf-lf": b"\r\n.\n",
                  "crlf-cr": b"\r\n.\r", "cr-cr": b"\r.\r"}.items():
    put("smtp_data", f"smuggle-{name}", HDR + b"Subject: first\r\n\r\nbody" + seq +
        b"MAIL FROM:<s@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nx\r\n.\r\n")
put("smtp_data", "bare", HDR + b"a\nb\rc\r\r\n.\rx\r\n.\nz\r\n.\r\n")
put("smtp_data", "small-cap", b"\x00" + HDR[1:] + b"x" * 40 + b"\r\n.\r\nNOOP\r\n")

# inspect: small messages that reach the MIME walk and the archive code.
H = "From: a@corp.example\r\nTo: b@partner.example\r\nSubject: seed\r\nMIME-Version: 1.0\r\n"


def attach(name, ctype, payload):
    b = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    return (H + "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
            f"--B\r\nContent-Type: {ctype}; name={name}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; filename={name}\r\n\r\n{b}--B--\r\n")


csv = b"name,email,phone,date_of_birth\r\n" + b"".join(
    f"Taro Yamada{i},taro{i}@gmail.com,090-1234-{1000 + i},1980-01-{1 + i:02d}\r\n".encode() for i in range(12))
zb = io.BytesIO()
with zipfile.ZipFile(zb, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("members.csv", csv)
    z.writestr("zeros.bin", b"\0" * 200_000)
put("inspect", "zip", attach("m.zip", "application/zip", zb.getvalue()))
enc = bytearray(zb.getvalue())
enc[6] |= 1
cd = enc.rfind(b"PK\x01\x02")
enc[cd + 8] |= 1
put("inspect", "zip-encrypted-flag", attach("e.zip", "application/zip", bytes(enc)))
put("inspect", "gzip", attach("m.csv.gz", "application/gzip", gzip.compress(csv)))
put("inspect", "plain", H + "Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\nID: alice PW: s3cret\r\n")
put("inspect", "nested", H + "".join(f"Content-Type: multipart/mixed; boundary=\"{i}\"\r\n\r\n--{i}\r\n" for i in range(40))
    + "Content-Type: text/plain\r\n\r\nx\r\n")
put("inspect", "base64-garbage", H + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
    "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!%%**==QUJD=\r\n" * 20 + "--b--\r\n")
put("inspect", "encoded-words", "From: =?utf-8?b?G1szMW1DRU8bWzBt?= <a@corp.example>\r\nTo: b@x.example\r\n"
    "Subject: =?iso-2022-jp?B?GyRCJEskUSRzJE8bKEI=?=\r\nContent-Type: text/html; charset=shift_jis\r\n\r\n"
    "<table><tr><td>name</td><td>mail</td></tr><tr><td>x</td><td>y@gmail.com</td></tr></table>\r\n")
put("inspect", "rfc822", H + "Content-Type: message/rfc822\r\n\r\n" + H + "Content-Type: text/plain\r\n\r\ninner\r\n")

# inspect: small real messages of the labelled corpus (tests/fixtures/corpus).
FIXTURES = ["hold/18-i4-member-list-in-zip", "hold/19-member-list-in-nested-zip", "hold/20-zip-cp932-entry-name-customer-csv",
            "hold/21-forwarded-message-with-participant-list", "hold/41-credentials-3-accounts-english",
            "hold/33-my-number-labelled-body-one-person", "hold/30-address-list-30-pasted-in-body",
            "pass/37-business-mail-iso2022jp", "pass/13-calendar-invite-8-attendees", "pass/78-forwarded-newsletter-rfc822",
            "pass/93-html-inline-image-signature", "pass/09-reply-chain-6-quoted-signatures",
            "pass/07-attendee-list-3-people-xlsx", "pass/73-budget-ods"]
for f in FIXTURES:
    src = os.path.join(REPO, "tests", "fixtures", "corpus", f + ".eml")
    if os.path.exists(src):
        with open(src, "rb") as fh:
            put("inspect", os.path.basename(f), fh.read())

# config_policy: the shipped files plus small variants.
shutil.copy(os.path.join(REPO, "policies", "default.toml"), os.path.join(HERE, "corpus", "config_policy", "seed-default-policy"))
shutil.copy(os.path.join(REPO, "deploy", "mailbrake.toml"), os.path.join(HERE, "corpus", "config_policy", "seed-deploy-config"))
put("config_policy", "limits", '[limits]\nmax_message_size = "10MiB"\ncommand_timeout = "2m"\nbare_newlines = "reject"\n'
    '[server]\nlisten = ["127.0.0.1:2525"]\nmax_connections_per_ip = 10\n[relay]\nallowed_networks = ["127.0.0.1/32", "::1/128"]\n')
put("config_policy", "policy-local", 'mode = "monitor"\ninternal_domains = ["example.co.jp"]\n[recipients]\nmax_envelope = 5\n'
    'action = "reject"\n[[sender.overrides]]\nmatch = "user:app"\nexempt = true\n[inspection]\nmax_inflated = "1MiB"\nmax_time = "1s"\n')
print("seeds written under", os.path.join(HERE, "corpus"))
