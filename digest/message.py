"""The .eml: multipart/alternative (text then HTML), quoted-printable, RFC 8058 headers."""

from __future__ import annotations

import binascii
import hashlib
from datetime import datetime, time
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from digest.config import Config
from digest.models import Edition


def build_message(edition: Edition, config: Config, *, subject: str, text: str, html: str,
                  unsubscribe_url: str | None) -> bytes:
    """The edition as an RFC 5322 message; the same input gives the same bytes."""
    fingerprint = hashlib.sha256(f"{subject}\0{text}\0{html}".encode()).hexdigest()
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = config.sender
    msg["To"] = config.to
    if config.reply_to:
        msg["Reply-To"] = config.reply_to
    # One line, always: a line break in a header value would start a new header.
    msg["Subject"] = " ".join(subject.split())
    # Dated at the start of the edition's week in the newsletter's zone: deterministic.
    msg["Date"] = format_datetime(datetime.combine(edition.first, time(6, 0), config.zone))
    msg["Message-ID"] = f"<digest.{edition.week}.{fingerprint[:16]}@{config.list_id}>"
    msg["List-Id"] = f"{config.name} <{config.list_id}>"
    targets = [f"<{u}>" for u in (unsubscribe_url, config.unsubscribe_mailto) if u]
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if unsubscribe_url and unsubscribe_url.startswith("https://"):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["MIME-Version"] = "1.0"
    msg.make_alternative()
    boundary = f"==digest-{fingerprint[:24]}=="
    msg.set_boundary(boundary)
    # The email package folds and encodes the headers; the MIME frame around the two
    # quoted-printable parts is fixed, and written here (its generator re-splits every
    # body line in Python, and parses each part's headers: half of the .eml's time).
    head = b"".join(msg.policy.fold_binary(name, value) for name, value in msg.raw_items())
    frame = [head, b"\r\n"]
    for subtype, body in (("plain", text), ("html", html)):
        frame += [b"--", boundary.encode("ascii"), b"\r\n", _PART_HEAD[subtype], b"\r\n",
                  b"\r\n".join(_qp(body).splitlines()), b"\r\n\r\n"]
    frame += [b"--", boundary.encode("ascii"), b"--\r\n"]
    return b"".join(frame)


_PART_HEAD = {subtype: (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                        "Content-Transfer-Encoding: quoted-printable\r\n").encode("ascii")
              for subtype in ("plain", "html")}


def _qp(body: str) -> bytes:
    """BODY as UTF-8 quoted-printable, ending with a line break."""
    if not body.endswith("\n"):
        body += "\n"
    return binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True, header=False)
