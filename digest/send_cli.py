"""`digest send` and `python send.py`: one click command for both."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Self

import click

from digest.errors import EXIT_FAILURE, InputError
from digest.ledger import Ledger
from digest.mailer import (
    SmtpSettings,
    SmtpTransport,
    Summary,
    dry_run_name,
    parse_rate,
    send_all,
)
from digest.personalize import (
    Edition,
    load_edition,
    unsubscribe_token,
)
from digest.recipients import Recipient, parse_one, read_recipients

LEDGER_NAME = ".send-ledger.sqlite"
SECRET_VAR = "DIGEST_UNSUBSCRIBE_SECRET"


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("send", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("edition", type=click.Path(path_type=Path))
@click.option("--to", "to", metavar="ADDR", help="Send to this one address.")
@click.option(
    "--recipients",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Text file of addresses (one a line) or CSV with an 'email' column.",
)
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Write each recipient's message to DIR; contact no server.",
)
@click.option("--rate", callback=_rate, metavar="N/s", help="At most N messages a second (also N/min, N/h).")
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PATH",
    help=f"Send ledger [default: EDITION/../{LEDGER_NAME}].",
)
@click.option("--force", is_flag=True, help="Send again to recipients the ledger shows as sent or failed.")
def send_command(
    edition: Path,
    to: str | None,
    recipients: Path | None,
    dry_run: Path | None,
    rate: float | None,
    ledger_path: Path | None,
    force: bool,
) -> None:
    """Send a built edition's digest.eml to each recipient over SMTP.

    Each copy gets its own To, a fresh Message-ID and a personal unsubscribe
    link (DIGEST_UNSUBSCRIBE_SECRET keys the token); the rest is sent as built,
    never re-rendered. A ledger records every recipient's state, so running the
    same command again after a crash, kill or Ctrl-C sends only to those not yet
    accepted, and a finished edition sends nothing more unless --force.

    SMTP settings come from the environment: SMTP_HOST, SMTP_PORT,
    SMTP_SECURITY (starttls, ssl or none), SMTP_USERNAME, SMTP_PASSWORD,
    SMTP_TIMEOUT (seconds), and optionally SMTP_CA_FILE, SMTP_MAX_ATTEMPTS,
    SMTP_RETRY_DELAY, SMTP_RETRY_MAX_DELAY. See docs/sending.md.

    Exit codes: 0 all sent, 1 some failed or still pending, 2 bad input.

    Example:

    \b
        export SMTP_HOST=smtp.example.org SMTP_USERNAME=digest SMTP_PASSWORD=…
        export DIGEST_UNSUBSCRIBE_SECRET=…
        digest send dist/2020-W41 --to editor@example.org --dry-run /tmp/preview
        digest send dist/2020-W41 --recipients subscribers.csv --rate 10/s
    """
    if (to is None) == (recipients is None):
        raise click.UsageError("give exactly one of --to ADDR or --recipients FILE.")
    built = load_edition(edition)
    chosen = _recipients(to, recipients)
    secret = _secret(built)
    built.check()
    if dry_run is not None:
        _dry_run(built, chosen, secret, dry_run)
        return
    settings = SmtpSettings.from_env(os.environ)
    if settings.username and settings.security == "none":
        _warn("SMTP_SECURITY=none: the password crosses the network unencrypted.")
    path = ledger_path or built.path.resolve().parent / LEDGER_NAME
    transport = SmtpTransport(settings)
    with Ledger(path) as ledger, _GracefulStop() as stop:
        try:
            summary = send_all(
                built, chosen, ledger, transport, secret=secret, force=force, rate=rate, echo=_warn,
                stop_requested=stop.requested,
            )
        except KeyboardInterrupt:
            transport.close()
            _warn("interrupted; run the same command again to send to the rest.")
            sys.exit(EXIT_FAILURE)
    _report(summary, built, path)
    if not summary.ok:
        sys.exit(EXIT_FAILURE)


class _GracefulStop:
    """First Ctrl-C or SIGTERM: finish the current transaction, then stop. Second: stop now.

    Stopping between transactions leaves no recipient in flight, so a graceful stop
    never causes a duplicate; only an immediate stop (second signal, kill -9) can.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, object] = {}

    def requested(self) -> str | None:
        return self.signal

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    def _handle(self, number: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number).name
        _warn(f"{self.signal}: stopping after the current message (again to stop at once).")


def main() -> None:
    """Entry point of `python send.py`."""
    send_command(prog_name="send.py")


def _recipients(to: str | None, path: Path | None) -> list[Recipient]:
    if to is not None:
        return [parse_one(to)]
    assert path is not None
    chosen, problems = read_recipients(path)
    for problem in problems:
        _warn(str(problem))
    return chosen


def _secret(edition: Edition) -> str | None:
    secret = os.environ.get(SECRET_VAR) or None
    if edition.marker is None:
        _warn(
            f"{edition.path}: the unsubscribe URL has no {{token}}, so every recipient gets the same "
            f"link ({edition.unsubscribe_url or 'see the message'}); put {{token}} in unsubscribe_url for personal links."
        )
        return None
    if secret is None:
        raise InputError(
            f"{SECRET_VAR} is not set: it keys each recipient's unsubscribe token "
            "(export it; keep it the same for every edition, as the unsubscribe page checks it)."
        )
    return secret


def _dry_run(edition: Edition, recipients: list[Recipient], secret: str | None, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the dry-run directory ({exc.strerror}).") from None
    for index, recipient in enumerate(recipients, start=1):
        token = unsubscribe_token(secret, recipient.address) if edition.marker and secret else None
        data = edition.personalize(recipient.address, token, edition.new_message_id())
        (folder / dry_run_name(index, recipient.address)).write_bytes(data)
    click.echo(f"Dry run: wrote {len(recipients)} message(s) to {folder}; no server was contacted.")


def _report(summary: Summary, edition: Edition, ledger: Path) -> None:
    sent = summary.sent_now + summary.sent_before
    click.echo(
        f"{edition.week}: sent {sent} of {summary.total} ({summary.sent_now} in this run), "
        f"failed permanently {len(summary.failed)}, still pending {len(summary.pending)}."
    )
    for address, reply in summary.failed:
        click.echo(f"  failed: {address}: {reply}")
    for address, reply in summary.pending[:20]:
        click.echo(f"  pending: {address}: {reply or 'not attempted'}")
    if len(summary.pending) > 20:
        click.echo(f"  … and {len(summary.pending) - 20} more pending")
    if summary.stopped:
        click.echo(f"Stopped: {summary.stopped}")
    if summary.pending or summary.stopped:
        click.echo("Run the same command again to retry the pending ones.")
    click.echo(f"Ledger: {ledger}")


def _warn(message: str) -> None:
    click.echo(message, err=True)
