"""The .eml: multipart/alternative (text then HTML), quoted-printable, RFC 8058 headers."""

from __future__ import annotations

import binascii
import hashlib
from datetime import datetime, time
from functools import lru_cache
from email import policy
from email.utils import format_datetime

from digest.config import Config
from digest.models import Edition


def build_message(edition: Edition, config: Config, *, subject: str, text: str, html: str,
                  unsubscribe_url: str | None) -> bytes:
    """The edition as an RFC 5322 message; the same input gives the same bytes."""
    fingerprint = hashlib.sha256(f"{subject}\0{text}\0{html}".encode()).hexdigest()
    headers = [("From", config.sender), ("To", config.to)]
    if config.reply_to:
        headers.append(("Reply-To", config.reply_to))
    # One line, always: a line break in a header value would start a new header.
    headers.append(("Subject", " ".join(subject.split())))
    # Dated at the start of the edition's week in the newsletter's zone: deterministic.
    headers.append(("Date", format_datetime(datetime.combine(edition.first, time(6, 0), config.zone))))
    headers.append(("Message-ID", f"<digest.{edition.week}.{fingerprint[:16]}@{config.list_id}>"))
    headers.append(("List-Id", f"{config.name} <{config.list_id}>"))
    targets = [f"<{u}>" for u in (unsubscribe_url, config.unsubscribe_mailto) if u]
    if targets:
        headers.append(("List-Unsubscribe", ", ".join(targets)))
    if unsubscribe_url and unsubscribe_url.startswith("https://"):
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    boundary = f"==digest-{fingerprint[:24]}=="
    headers += [("MIME-Version", "1.0"), ("Content-Type", f'multipart/alternative; boundary="{boundary}"')]
    # The email package parses, folds and encodes each header (the same sender, list and
    # unsubscribe headers, every edition: once); the MIME frame around the two
    # quoted-printable parts is fixed, and written here (its generator re-splits every
    # body line in Python, and parses each part's headers: half of the .eml's time).
    head = b"".join(_header(name, value) for name, value in headers)
    frame = [head, b"\r\n"]
    for subtype, body in (("plain", text), ("html", html)):
        frame += [b"--", boundary.encode("ascii"), b"\r\n", _PART_HEAD[subtype], b"\r\n",
                  b"\r\n".join(_qp(body).splitlines()), b"\r\n\r\n"]
    frame += [b"--", boundary.encode("ascii"), b"--\r\n"]
    return b"".join(frame)


@lru_cache(maxsize=512)
def _header(name: str, value: str) -> bytes:
    """NAME: VALUE as the email package's SMTP policy stores and folds it (a value with
    a line break raises ValueError, as setting it on a message does)."""
    return policy.SMTP.fold_binary(name, policy.SMTP.header_store_parse(name, value)[1])


_PART_HEAD = {subtype: (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                        "Content-Transfer-Encoding: quoted-printable\r\n").encode("ascii")
              for subtype in ("plain", "html")}


def _qp(body: str) -> bytes:
    """BODY as UTF-8 quoted-printable, ending with a line break."""
    if not body.endswith("\n"):
        body += "\n"
    return binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True, header=False)
