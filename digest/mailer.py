"""Deliver a built edition over SMTP: one connection, retries, a ledger row per recipient.

Each recipient is one SMTP transaction (MAIL, RCPT, DATA) on a connection that
is reused until it drops. Replies decide what happens next:

- 2xx: accepted; the ledger row becomes `sent` with the server's reply.
- 4xx, a dropped connection, a timeout: transient. The recipient goes back in
  the queue, due after an exponential backoff (SMTP_RETRY_DELAY doubling up to
  SMTP_RETRY_MAX_DELAY); the connection is reopened when needed. After
  SMTP_MAX_ATTEMPTS transactions in one run it stays `pending` for the next run.
- 5xx to RCPT or DATA: permanent; the row becomes `failed` with the reply and
  is not retried (not even by a later run, unless --force).
- A refused login, an untrusted certificate, a 5xx to MAIL FROM or a server
  that cannot be reached after SMTP_MAX_ATTEMPTS tries stop the run: they would
  fail every recipient the same way. What was not sent stays `pending`.

The password is only ever handed to smtplib's login; it is in no message, log
or repr.
"""

from __future__ import annotations

import heapq
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from digest.errors import InputError, Problem
from digest.ledger import FAILED, PENDING, SENDING, SENT, Ledger
from digest.personalize import Edition, unsubscribe_token
from digest.recipients import Recipient

SECURITY_MODES = ("starttls", "ssl", "none")
_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_IDLE_CHECK_SECONDS = 10.0

Echo = Callable[[str], None]


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server, read from the environment (see docs/sending.md)."""

    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: str | None = None
    max_attempts: int = 5
    retry_delay: float = 2.0
    retry_max_delay: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings:
        """Read SMTP_* variables; every problem is reported at once (exit code 2)."""
        problems: list[Problem] = []

        def bad(name: str, message: str, hint: str | None = None) -> None:
            problems.append(Problem("environment", None, name, message, hint))

        def number(name: str, default: float, kind: type = float, minimum: float = 0) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(kind(raw))
            except ValueError:
                bad(name, f"expected a {'whole ' if kind is int else ''}number, not {raw!r}")
                return default
            if value < minimum:
                bad(name, f"must be at least {minimum}, not {raw!r}")
                return default
            return value

        host = env.get("SMTP_HOST", "").strip()
        if not host:
            bad("SMTP_HOST", "not set", "export SMTP_HOST=smtp.example.org (or use --dry-run DIR)")
        security = env.get("SMTP_SECURITY", "starttls").strip().lower() or "starttls"
        if security not in SECURITY_MODES:
            bad("SMTP_SECURITY", f"unknown mode {security!r}", "use starttls, ssl or none")
            security = "starttls"
        port = int(number("SMTP_PORT", _DEFAULT_PORTS[security], int, 1))
        if port > 65535:
            bad("SMTP_PORT", f"no such port {port}")
        username = env.get("SMTP_USERNAME") or None
        password = env.get("SMTP_PASSWORD") or None
        if username and password is None:
            bad("SMTP_PASSWORD", "not set, but SMTP_USERNAME is")
        if password is not None and not username:
            bad("SMTP_USERNAME", "not set, but SMTP_PASSWORD is")
        settings = cls(
            host=host,
            port=port,
            security=security,
            username=username,
            password=password,
            timeout=number("SMTP_TIMEOUT", 30.0, float, 0.001),
            ca_file=env.get("SMTP_CA_FILE") or None,
            max_attempts=int(number("SMTP_MAX_ATTEMPTS", 5, int, 1)),
            retry_delay=number("SMTP_RETRY_DELAY", 2.0),
            retry_max_delay=number("SMTP_RETRY_MAX_DELAY", 60.0),
        )
        if problems:
            raise InputError("SMTP settings are incomplete; nothing was sent.", problems)
        return settings

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the attempt-th failure."""
        return float(min(self.retry_delay * 2 ** (attempt - 1), self.retry_max_delay))


class Transient(Exception):
    """Worth retrying: a 4xx reply, a dropped connection, a timeout."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class Permanent(Exception):
    """A 5xx reply to RCPT or DATA: this recipient will not get the message."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class Stop(Exception):
    """Stop the whole run: the same failure would hit every recipient."""


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


class SmtpTransport:
    """One SMTP connection, opened on demand and reused across recipients."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0
        self.connections = 0

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def connect(self) -> None:
        """Open and greet (EHLO, STARTTLS, AUTH). Raises Transient or Stop."""
        self.close()
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file)
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            # Without TCP_NODELAY, the tail of each message waits ~40 ms for a delayed ACK
            # (Nagle), which over TLS made sending 8x slower.
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise Stop(f"{self.where} does not offer STARTTLS; set SMTP_SECURITY=ssl or none if intended.")
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password or "")
        except ssl.SSLCertVerificationError as exc:
            self._abandon(smtp)
            raise Stop(
                f"{self.where}: the server's certificate is not trusted ({exc.verify_message}); "
                "set SMTP_CA_FILE to the CA certificate that signed it."
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            self._abandon(smtp)
            raise Stop(
                f"{self.where} refused the login of SMTP_USERNAME={s.username!r}: {_reply(exc.smtp_code, exc.smtp_error)}"
                " (check SMTP_USERNAME and SMTP_PASSWORD)."
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            self._abandon(smtp)
            raise Stop(f"{self.where}: {exc} (unset SMTP_USERNAME, or use SMTP_SECURITY=starttls)") from None
        except smtplib.SMTPResponseException as exc:
            self._abandon(smtp)
            if exc.smtp_code >= 500:
                raise Stop(f"{self.where} refused the session: {_reply(exc.smtp_code, exc.smtp_error)}") from None
            raise Transient(_reply(exc.smtp_code, exc.smtp_error)) from None
        except smtplib.SMTPException as exc:
            self._abandon(smtp)
            if "authentication method" in str(exc):
                raise Stop(f"{self.where}: {exc}") from None
            raise Transient(f"connection failed: {exc}") from None
        except (OSError, EOFError) as exc:
            self._abandon(smtp)
            raise Transient(f"cannot connect to {self.where}: {exc}") from None
        self._smtp = smtp
        self.connections += 1
        self._last_used = time.monotonic()

    def ensure_connected(self) -> None:
        """Reconnect when the connection dropped or an idle one no longer answers NOOP."""
        if self._smtp is not None and self._smtp.sock is not None:
            if time.monotonic() - self._last_used < _IDLE_CHECK_SECONDS:
                return
            try:
                if self._smtp.noop()[0] == 250:
                    return
            except (smtplib.SMTPException, OSError):
                pass
        self.connect()

    def send(self, sender: str, recipient: str, data: bytes) -> str:
        """One transaction; return the server's final reply or raise Transient/Permanent/Stop."""
        smtp = self._smtp
        if smtp is None or smtp.sock is None:
            raise Transient("not connected")
        self._last_used = time.monotonic()
        try:
            code, message = smtp.mail(sender)
            if code != 250:
                self._after_refusal(code)
                if code >= 500:
                    raise Stop(f"{self.where} refused the sender {sender}: {_reply(code, message)}")
                raise Transient(_reply(code, message))
            code, message = smtp.rcpt(recipient)
            if code not in (250, 251):
                self._after_refusal(code)
                raise (Permanent if code >= 500 else Transient)(_reply(code, message))
            code, message = smtp.data(data)
            if code != 250:
                self._after_refusal(code)
                raise (Permanent if code >= 500 else Transient)(_reply(code, message))
            return _reply(code, message)
        except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
            self._after_refusal(exc.smtp_code)
            raise (Permanent if exc.smtp_code >= 500 else Transient)(_reply(exc.smtp_code, exc.smtp_error)) from None
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            raise Transient(f"connection dropped: {exc or 'no reply'}") from None
        except OSError as exc:
            self.close()
            raise Transient(f"connection error: {exc}") from None
        finally:
            self._last_used = time.monotonic()

    def _after_refusal(self, code: int) -> None:
        if code == 421:  # the server is closing the connection
            self.close()
            return
        try:
            self._smtp.rset()  # type: ignore[union-attr]
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        """QUIT politely if possible; forget the connection either way."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.sock is not None:
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    @staticmethod
    def _abandon(smtp: smtplib.SMTP | None) -> None:
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass


class RateLimiter:
    """At most `rate` transactions per second: start times at least 1/rate apart."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")

    def wait(self) -> None:
        now = self._clock()
        if now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*\Z", re.IGNORECASE)
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """'10/s', '600/min', '2000/h' or '10' (per second) -> messages per second."""
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: expected a positive rate such as 10/s, 600/min or 2000/h")
    return float(match.group(1)) / _PER[(match.group(2) or "s").lower()]


@dataclass
class Summary:
    """What a run did, over the recipients it was given."""

    total: int = 0
    sent_now: int = 0
    sent_before: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pending: list[tuple[str, str]] = field(default_factory=list)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending and self.stopped is None


def send_all(
    edition: Edition,
    recipients: Sequence[Recipient],
    ledger: Ledger,
    transport: SmtpTransport,
    *,
    secret: str | None,
    force: bool = False,
    rate: float | None = None,
    echo: Echo = print,
    sleep: Callable[[float], None] = time.sleep,
    stop_requested: Callable[[], str | None] = lambda: None,
) -> Summary:
    """Send the edition to every recipient the ledger does not show as done."""
    settings = transport.settings
    week = edition.week
    keys = [r.key for r in recipients]
    changed = ledger.start_edition(week, edition.sha256)
    if changed:
        echo(
            f"warning: {edition.path}/digest.eml changed since sending of {week} began; "
            "recipients already sent keep the earlier version."
        )
    ledger.add(week, ((r.key, r.address) for r in recipients))
    if force:
        ledger.reset(week, keys)
    rows = ledger.rows(week, keys)
    in_flight = [row.address for row in rows.values() if row.state == SENDING]
    if in_flight:
        echo(
            f"warning: {len(in_flight)} recipient(s) were in flight when an earlier run stopped "
            f"({', '.join(in_flight[:5])}); the server may have accepted the message: sending again "
            "with the same Message-ID."
        )
    summary = Summary(total=len(recipients))
    summary.sent_before = sum(1 for row in rows.values() if row.state == SENT)
    todo = [k for k in keys if rows[k].state in (PENDING, SENDING)]
    # (due time, order, key): the list in order first, then retries as they fall due.
    queue = [(0.0, seq, key) for seq, key in enumerate(todo)]
    heapq.heapify(queue)
    tries: dict[str, int] = {}
    connect_failures = 0
    limiter = RateLimiter(rate, sleep=sleep)
    message_ids = {k: rows[k].message_id for k in todo}
    seq = len(queue)
    try:
        while queue:
            if reason := stop_requested():
                raise Stop(f"interrupted ({reason}) between two messages; none was in flight.")
            due, order, key = heapq.heappop(queue)
            delay = due - time.monotonic()
            if delay > 0:
                sleep(delay)
            try:
                transport.ensure_connected()
                connect_failures = 0
            except Transient as exc:
                # The server, not the recipient: wait here, then retry with the same one.
                connect_failures += 1
                if connect_failures >= settings.max_attempts:
                    raise Stop(f"gave up after {connect_failures} attempts: {exc.reply}") from None
                wait = settings.backoff(connect_failures)
                echo(f"warning: {exc.reply}; retrying in {wait:g} s")
                sleep(wait)
                heapq.heappush(queue, (due, order, key))
                continue
            address = rows[key].address
            message_id = message_ids.get(key) or edition.new_message_id()
            message_ids[key] = message_id
            token = unsubscribe_token(secret, address) if edition.marker and secret else None
            data = edition.personalize(address, token, message_id)
            limiter.wait()
            ledger.mark_sending(week, key, message_id)
            tries[key] = tries.get(key, 0) + 1
            try:
                reply = transport.send(edition.sender, address, data)
            except Permanent as exc:
                ledger.mark(week, key, FAILED, exc.reply)
                echo(f"failed: {address}: {exc.reply}")
            except Transient as exc:
                ledger.mark(week, key, PENDING, exc.reply)
                if tries[key] >= settings.max_attempts:
                    echo(f"warning: {address}: {exc.reply}; still pending after {tries[key]} attempts")
                else:
                    wait = settings.backoff(tries[key])
                    echo(f"warning: {address}: {exc.reply}; retrying in {wait:g} s")
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + wait, seq, key))
            except Stop as exc:
                ledger.mark(week, key, PENDING, str(exc))
                raise
            else:
                ledger.mark(week, key, SENT, reply)
                summary.sent_now += 1
                if summary.sent_now % 100 == 0:
                    echo(f"sent {summary.sent_now} of {len(todo)}")
    except Stop as exc:
        summary.stopped = str(exc)
    finally:
        transport.close()
    final = ledger.rows(week, keys)
    summary.failed = [(r.address, r.last_reply or "") for r in final.values() if r.state == FAILED]
    summary.pending = [(r.address, r.last_reply or "") for r in final.values() if r.state in (PENDING, SENDING)]
    return summary


def dry_run_name(index: int, address: str) -> str:
    """The file a dry run writes for the index-th recipient."""
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", address)
    return f"{index:05d}-{safe}.eml"
