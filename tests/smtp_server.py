"""A real SMTP server for the send tests: aiosmtpd on 127.0.0.1 with faults to order.

Not a mock: the sender talks SMTP over TCP (and TLS) to aiosmtpd. The handler
keeps every accepted message and can, per recipient and for a number of
attempts, answer RCPT with a 4xx or 5xx, drop the connection in the middle of
DATA, or stall past the client's timeout. Also: a self-signed certificate made
with `openssl`, and the built example edition shared by the send tests.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

REPO = Path(__file__).resolve().parents[1]
WEEK = "2020-W41"
SECRET = "test-secret-do-not-use"
USERNAME, PASSWORD = "digest", "pa55-w0rd-never-printed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class FaultyHandler:
    """Accepts everything except what the test orders; counts what it sees."""

    #: address -> replies for its first RCPTs, one per attempt (then accepted).
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    #: address -> how many times to drop the connection in the middle of DATA.
    drops: dict[str, int] = field(default_factory=dict)
    #: address -> how many times to stall this long (seconds) before answering RCPT.
    stalls: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: seconds to wait before accepting any message (to make a run last).
    data_delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    #: per accepted message: (monotonic arrival time, over TLS?, AUTH mechanism or None)
    arrivals: list[tuple[float, bool, str | None]] = field(default_factory=list)
    rcpt_seen: Counter = field(default_factory=Counter)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            attempt = self.rcpt_seen[address]
            self.rcpt_seen[address] += 1
            replies = self.rcpt_replies.get(address, [])
            stall = self.stalls.get(address)
        if stall and attempt < stall[0]:
            await asyncio.sleep(stall[1])
        if attempt < len(replies):
            return replies[attempt]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            self.arrivals.append((time.monotonic(), session.ssl is not None, getattr(session, "mechanism", None)))
            number = len(self.received)
        return f"250 2.0.0 Ok: queued as {number:06d}"

    def take_drop(self, address: str) -> bool:
        with self.lock:
            if self.drops.get(address, 0) > 0:
                self.drops[address] -= 1
                return True
        return False

    def copies(self) -> Counter:
        """How many copies each address received."""
        with self.lock:
            return Counter(rcpt for r in self.received for rcpt in r.rcpt_tos)


class FaultySMTP(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        rcpts = list(self.envelope.rcpt_tos) if self.envelope else []
        handler: FaultyHandler = self.event_handler
        if rcpts and any(handler.take_drop(r) for r in rcpts):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.read(2048)  # the client is now sending the message: cut it off
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_DATA(arg)


class FaultyController(Controller):
    def factory(self):
        self.handler.connections += 1
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """Start/stop a FaultyController; `env()` gives the SMTP_* variables to reach it."""

    def __init__(self, handler: FaultyHandler | None = None, *, security: str = "none", **kwargs) -> None:
        self.handler = handler or FaultyHandler()
        self.security = security
        self.port = free_port()
        self.controller = FaultyController(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> Self:
        self.controller.start()
        self.handler.connections = 0  # forget the controller's own readiness probe
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def env(self, **extra: str) -> dict[str, str]:
        values = {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": self.security,
            "SMTP_TIMEOUT": "5",
            "SMTP_RETRY_DELAY": "0.01",
            "SMTP_RETRY_MAX_DELAY": "0.05",
            "DIGEST_UNSUBSCRIBE_SECRET": SECRET,
        }
        values.update(extra)
        return values


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    if ok:
        session.mechanism = mechanism
    # handled=False: let aiosmtpd answer 535 (its default, handled=True, answers nothing).
    return AuthResult(success=ok, handled=False)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def build_example(root: Path, *, profile: str | None = None, unsubscribe_url: str | None = None) -> Path:
    """Build the example newsletter's 2020-W41 edition in ROOT; return the edition folder."""
    from click.testing import CliRunner

    from digest.cli import cli

    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "entries", root / "entries")
    shutil.copytree(REPO / "templates", root / "templates")
    config = (REPO / "digest.toml").read_text(encoding="utf-8")
    if unsubscribe_url is not None:
        lines = [
            f'unsubscribe_url = "{unsubscribe_url}"' if line.startswith("unsubscribe_url") else line
            for line in config.splitlines()
        ]
        config = "\n".join(lines) + "\n"
    (root / "digest.toml").write_text(config, encoding="utf-8")
    args = ["build", "--root", str(root), "--week", WEEK, "--today", "2020-10-01", "--out", str(root / "dist")]
    if profile:
        args += ["--profile", profile]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root / "dist" / WEEK


def send_py(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    """Start `python send.py ARGS` as a real process."""
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_")}
    full_env.update(env)
    return subprocess.Popen(
        [sys.executable, str(REPO / "send.py"), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        **kwargs,
    )
