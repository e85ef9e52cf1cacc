"""The .eml: multipart/alternative (text then HTML), quoted-printable, RFC 8058 headers."""

from __future__ import annotations

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
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    msg.set_boundary(f"==digest-{fingerprint[:24]}==")
    return msg.as_bytes(policy=policy.SMTP)
