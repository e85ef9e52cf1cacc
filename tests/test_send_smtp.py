"""Sending the built example edition to a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
import time
from collections import Counter
from email import message_from_bytes, policy
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from digest.personalize import MARKER, load_edition, unsubscribe_token, verify_token
from digest.send_cli import send_command
from tests.smtp_server import (
    PASSWORD,
    SECRET,
    USERNAME,
    FaultyHandler,
    SmtpServer,
    authenticator,
    build_example,
    free_port,
    self_signed,
    send_py,
    server_tls_context,
)

pytestmark = [
    # aiosmtpd warns when AUTH is allowed without TLS, which one test does on purpose.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]

UNSUBSCRIBE = "https://events.example.org/unsubscribe?token="
SMTP_VARS = ("SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_TIMEOUT",
             "SMTP_CA_FILE", "SMTP_MAX_ATTEMPTS", "SMTP_RETRY_DELAY", "SMTP_RETRY_MAX_DELAY",
             "DIGEST_UNSUBSCRIBE_SECRET")


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    return build_example(tmp_path_factory.mktemp("send") / "newsletter")


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


def addresses(n: int, prefix: str = "reader") -> list[str]:
    return [f"{prefix}{i:03d}@example.org" for i in range(n)]


def write_list(path: Path, addrs: list[str]) -> Path:
    path.write_text("\n".join(addrs) + "\n", encoding="utf-8")
    return path


def send(*args: str, env: dict[str, str]) -> Result:
    full = {name: None for name in SMTP_VARS}
    full.update(env)
    return CliRunner().invoke(send_command, [str(a) for a in args], env=full)


def ledger_rows(path: Path) -> dict[str, tuple]:
    with sqlite3.connect(path) as db:
        return {
            row[0]: row[1:]
            for row in db.execute("SELECT address, state, attempts, last_reply, accepted, message_id FROM deliveries")
        }


@functools.lru_cache(maxsize=4)
def parsed(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def check_message(data: bytes, address: str, built: bytes) -> str:
    """Assert one received message is the built one personalised for ADDRESS; return its Message-ID."""
    message = message_from_bytes(data, policy=policy.default)
    original = parsed(built)
    token = unsubscribe_token(SECRET, address)
    assert verify_token(SECRET, address, token)
    assert message["To"] == address
    for name in ("From", "Subject", "Date", "List-Id", "List-Unsubscribe-Post", "MIME-Version", "Reply-To"):
        assert message[name] == original[name], name
    assert message["Message-ID"] != original["Message-ID"]
    assert message["List-Unsubscribe"] == original["List-Unsubscribe"].replace(MARKER, token)
    assert f"<{UNSUBSCRIBE}{token}>" in message["List-Unsubscribe"]
    parts = [p for p in message.walk() if p.get_content_maintype() == "text"]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        text = part.get_content()
        assert UNSUBSCRIBE + token in text
        assert MARKER not in text
    # Headers other than To, Message-ID and List-Unsubscribe: byte-identical to the build's.
    def other_headers(raw: bytes) -> list[bytes]:
        head = raw.split(b"\r\n\r\n", 1)[0]
        return [
            f for f in head.replace(b"\r\n ", b"\x00 ").split(b"\r\n")
            if f.split(b":")[0].lower() not in (b"to", b"message-id", b"list-unsubscribe")
        ]
    assert other_headers(data) == other_headers(built)
    return str(message["Message-ID"])


def test_200_recipients_each_get_one_personal_copy_over_one_connection(edition, tmp_path):
    people = addresses(200)
    # A CSV with other columns, an invalid address and a duplicate whose domain differs in case.
    rows = ["name,email,joined"] + [f"Reader {i},{a},2020-01-01" for i, a in enumerate(people)]
    rows.insert(11, "Broken,not-an-address,2020-01-01")
    rows.append(f"Again,{people[5].replace('example.org', 'EXAMPLE.org')},2020-01-02")
    csv = tmp_path / "subscribers.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    ledger = tmp_path / "ledger.sqlite"
    built = load_edition(edition).message
    with SmtpServer() as server:
        started = time.perf_counter()
        result = send(edition, "--recipients", csv, "--ledger", ledger, env=server.env())
        elapsed = time.perf_counter() - started
        handler = server.handler
    assert result.exit_code == 0, result.output
    print(f"\n200 messages in {elapsed:.2f} s: {200 / elapsed:.0f} messages/s")
    assert f"{csv}:12: warning: 'not-an-address': no '@' with a local part before it; skipped" in result.stderr
    assert f"{csv}:203: warning: 'reader005@EXAMPLE.org' repeats line 7; sent once" in result.stderr
    assert "2020-W41: sent 200 of 200 (200 in this run), failed permanently 0, still pending 0." in result.stdout
    assert handler.connections == 1
    assert handler.copies() == Counter({a: 1 for a in people})
    ids = set()
    for received in handler.received:
        assert received.mail_from == "events@example.org"
        ids.add(check_message(received.data, received.rcpt_tos[0], built))
    assert len(ids) == 200
    rows_ = ledger_rows(ledger)
    assert {row[0] for row in rows_.values()} == {"sent"}
    assert all(row[1] == 1 and row[2].startswith("250 2.0.0 Ok: queued as") for row in rows_.values())


def test_faults_are_retried_or_recorded_and_a_resume_completes(edition, tmp_path):
    people = addresses(40)
    handler = FaultyHandler()
    busy = people[0:4]      # 421: the server closes the connection
    greylisted = people[4:7]  # 450 twice
    unknown = people[7:10]  # 550, permanent
    dropped = people[10:12]  # connection cut in the middle of DATA
    slow = people[12]       # stalls past SMTP_TIMEOUT once
    stubborn = people[13]   # 451 more times than SMTP_MAX_ATTEMPTS
    for a in busy:
        handler.rcpt_replies[a] = ["421 4.3.2 Service shutting down, try later"]
    for a in greylisted:
        handler.rcpt_replies[a] = ["450 4.2.0 Greylisted, come back later"] * 2
    for a in unknown:
        handler.rcpt_replies[a] = ["550 5.1.1 No such user here"] * 100
    for a in dropped:
        handler.drops[a] = 1
    handler.stalls[slow] = (1, 3.0)
    handler.rcpt_replies[stubborn] = ["451 4.3.0 Temporary failure"] * 3
    recipients = write_list(tmp_path / "list.txt", people)
    ledger = tmp_path / "ledger.sqlite"
    env_extra = {"SMTP_TIMEOUT": "1.5", "SMTP_MAX_ATTEMPTS": "3"}
    with SmtpServer(handler) as server:
        first = send(edition, "--recipients", recipients, "--ledger", ledger, env=server.env(**env_extra))
        after_first = handler.copies()
        rows = ledger_rows(ledger)
        # The server gets better; resume.
        second = send(edition, "--recipients", recipients, "--ledger", ledger, env=server.env(**env_extra))
        third = send(edition, "--recipients", recipients, "--ledger", ledger, env=server.env(**env_extra))
    assert first.exit_code == 1, first.output
    assert "2020-W41: sent 36 of 40 (36 in this run), failed permanently 3, still pending 1." in first.stdout
    for a in unknown:
        assert f"  failed: {a}: 550 5.1.1 No such user here" in first.stdout
        assert rows[a][0] == "failed" and rows[a][2] == "550 5.1.1 No such user here" and rows[a][1] == 1
    assert f"  pending: {stubborn}: 451 4.3.0 Temporary failure" in first.stdout
    assert rows[stubborn][:3] == ("pending", 3, "451 4.3.0 Temporary failure")
    assert after_first == Counter({a: 1 for a in people if a not in unknown and a != stubborn})
    assert rows[busy[0]][1] == 2 and rows[greylisted[0]][1] == 3 and rows[dropped[0]][1] == 2
    assert rows[slow][1] == 2
    assert "connection dropped" in first.stderr and "timed out" in first.stderr

    assert second.exit_code == 1  # the three unknown users stay failed
    assert "2020-W41: sent 37 of 40 (1 in this run), failed permanently 3, still pending 0." in second.stdout
    assert third.exit_code == 1
    assert "(0 in this run)" in third.stdout
    deliverable = [a for a in people if a not in unknown]
    assert handler.copies() == Counter({a: 1 for a in deliverable})
    for a in unknown:  # not retried by the resumes: one RCPT each, ever
        assert handler.rcpt_seen[a] == 1
    final = ledger_rows(ledger)
    assert all(final[a][0] == "sent" for a in deliverable)
    assert all(final[a][0] == "failed" and final[a][2].startswith("550") for a in unknown)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_mid_run_then_resume_loses_nobody(edition, tmp_path, sig):
    people = addresses(120, "k")
    recipients = write_list(tmp_path / "list.txt", people)
    ledger = tmp_path / "ledger.sqlite"
    handler = FaultyHandler(data_delay=0.01)
    with SmtpServer(handler) as server:
        process = send_py(str(edition), "--recipients", str(recipients), "--ledger", str(ledger), env=server.env())
        deadline = time.monotonic() + 30
        while len(handler.received) < 40 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(process.pid, sig)
        stdout, stderr = process.communicate(timeout=30)
        if sig == signal.SIGKILL:
            assert process.returncode == -signal.SIGKILL
        else:  # a graceful stop: the message in flight is finished first
            assert process.returncode == 1
            assert b"SIGINT: stopping after the current message" in stderr
            assert b"Stopped: interrupted (SIGINT) between two messages; none was in flight." in stdout
            assert b"Traceback" not in stderr
        with sqlite3.connect(ledger) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        killed = ledger_rows(ledger)
        in_flight = [a for a, row in killed.items() if row[0] == "sending"]
        sent_before = sum(1 for row in killed.values() if row[0] == "sent")
        assert len(in_flight) <= (1 if sig == signal.SIGKILL else 0)
        assert 35 <= sent_before < 120
        resumed = send(edition, "--recipients", recipients, "--ledger", ledger, env=server.env())
    assert resumed.exit_code == 0, resumed.output
    assert f"sent 120 of 120 ({120 - sent_before} in this run)" in resumed.stdout
    copies = handler.copies()
    assert set(copies) == set(people)  # nobody lost
    duplicated = [a for a, n in copies.items() if n > 1]
    print(f"\n{sig.name}: {sent_before} sent before the kill, in flight {in_flight}, duplicated {duplicated}")
    assert duplicated == [] or (duplicated == in_flight and copies[in_flight[0]] == 2)
    if in_flight:
        assert "1 recipient(s) were in flight when an earlier run stopped" in resumed.stderr
    if duplicated:  # sent again with the same Message-ID, so mailbox providers can fold the two
        ids = {r.message["Message-ID"] for r in handler.received if r.rcpt_tos == duplicated}
        assert len(ids) == 1
    assert {row[0] for row in ledger_rows(ledger).values()} == {"sent"}


def test_starttls_with_a_self_signed_certificate(edition, tmp_path, cert):
    context = server_tls_context(*cert)
    with SmtpServer(security="starttls", tls_context=context, require_starttls=True) as server:
        untrusted = send(edition, "--to", "a@example.org", "--ledger", tmp_path / "l1", env=server.env())
        trusted = send(edition, "--to", "a@example.org", "--ledger", tmp_path / "l2",
                       env=server.env(SMTP_CA_FILE=str(cert[0])))
        handler = server.handler
    assert untrusted.exit_code == 1
    assert "the server's certificate is not trusted" in untrusted.stdout
    assert "set SMTP_CA_FILE" in untrusted.stdout
    assert trusted.exit_code == 0, trusted.output
    assert handler.copies() == Counter({"a@example.org": 1})
    assert handler.arrivals[0][1] is True  # over TLS


def test_implicit_tls(edition, tmp_path, cert):
    with SmtpServer(security="ssl", ssl_context=server_tls_context(*cert)) as server:
        result = send(edition, "--to", "a@example.org", "--ledger", tmp_path / "l",
                      env=server.env(SMTP_CA_FILE=str(cert[0])))
        handler = server.handler
    assert result.exit_code == 0, result.output
    assert handler.copies() == Counter({"a@example.org": 1})


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_over_starttls(edition, tmp_path, cert, mechanism):
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    with SmtpServer(security="starttls", tls_context=server_tls_context(*cert), require_starttls=True,
                    authenticator=authenticator, auth_required=True, auth_exclude_mechanism=[other]) as server:
        env = server.env(SMTP_CA_FILE=str(cert[0]), SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD)
        good = send(edition, "--recipients", write_list(tmp_path / "l.txt", addresses(3)),
                    "--ledger", tmp_path / "l", env=env)
        bad = send(edition, "--to", "b@example.org", "--ledger", tmp_path / "l2",
                   env={**env, "SMTP_PASSWORD": "wrong-" + PASSWORD})
        handler = server.handler
    assert good.exit_code == 0, good.output
    assert [a[2] for a in handler.arrivals] == [mechanism] * 3
    assert bad.exit_code == 1
    assert f"refused the login of SMTP_USERNAME='{USERNAME}': 535" in bad.stdout
    assert "still pending 1" in bad.stdout
    for result in (good, bad):
        assert PASSWORD not in result.output


def test_auth_without_tls_when_the_server_allows_it(edition, tmp_path):
    with SmtpServer(authenticator=authenticator, auth_required=True, auth_require_tls=False) as server:
        result = send(edition, "--to", "a@example.org", "--ledger", tmp_path / "l",
                      env=server.env(SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD))
        handler = server.handler
    assert result.exit_code == 0, result.output
    assert "SMTP_SECURITY=none: the password crosses the network unencrypted." in result.stderr
    assert PASSWORD not in result.output
    assert handler.arrivals[0][1:] == (False, "PLAIN")


def test_dry_run_writes_files_and_opens_no_connection(edition, tmp_path):
    people = addresses(5)
    out = tmp_path / "preview"
    built = load_edition(edition).message
    with SmtpServer() as server:
        result = send(edition, "--recipients", write_list(tmp_path / "l.txt", people), "--dry-run", out,
                      "--ledger", tmp_path / "ledger", env=server.env())
        handler = server.handler
    assert result.exit_code == 0, result.output
    assert f"Dry run: wrote 5 message(s) to {out}; no server was contacted." in result.stdout
    assert handler.connections == 0 and handler.received == []
    assert not (tmp_path / "ledger").exists()
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:05d}-{a}.eml" for i, a in enumerate(people, start=1)]
    for path, address in zip(files, people):
        check_message(path.read_bytes(), address, built)


def test_dry_run_needs_no_smtp_settings(edition, tmp_path):
    result = send(edition, "--to", "a@example.org", "--dry-run", tmp_path / "out",
                  env={"DIGEST_UNSUBSCRIBE_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").iterdir())) == 1


def test_a_finished_edition_is_not_sent_again_unless_forced(edition, tmp_path):
    recipients = write_list(tmp_path / "l.txt", addresses(4))
    with SmtpServer() as server:
        first = send(edition, "--recipients", recipients, env=server.env())
        again = send(edition, "--recipients", recipients, env=server.env())
        forced = send(edition, "--recipients", recipients, "--force", env=server.env())
        handler = server.handler
    default_ledger = edition.parent / ".send-ledger.sqlite"
    assert f"Ledger: {default_ledger}" in first.stdout
    assert (first.exit_code, again.exit_code, forced.exit_code) == (0, 0, 0)
    assert "sent 4 of 4 (0 in this run)" in again.stdout
    assert handler.connections == 2  # the second run did not even connect
    assert handler.copies() == Counter({a: 2 for a in addresses(4)})
    ids = Counter(r.message["Message-ID"] for r in handler.received)
    assert len(ids) == 8  # --force sends new messages, with new Message-IDs
    assert all(row[3] == 2 for row in ledger_rows(default_ledger).values())
    default_ledger.unlink()


def test_rate_spaces_the_transactions(edition, tmp_path):
    with SmtpServer() as server:
        result = send(edition, "--recipients", write_list(tmp_path / "l.txt", addresses(6)),
                      "--ledger", tmp_path / "l", "--rate", "20/s", env=server.env())
        arrivals = [a[0] for a in server.handler.arrivals]
    assert result.exit_code == 0, result.output
    # Starts are at least 1/20 s apart; arrivals jitter by a transaction's length, not more.
    assert arrivals[-1] - arrivals[0] >= 5 * 0.05 - 0.02


def test_without_token_in_config_everyone_gets_the_generic_link(tmp_path):
    generic = "https://events.example.org/unsubscribe"
    edition = build_example(tmp_path / "news", unsubscribe_url=generic)
    with SmtpServer() as server:
        result = send(edition, "--recipients", write_list(tmp_path / "l.txt", addresses(2)),
                      "--ledger", tmp_path / "l", env=server.env(DIGEST_UNSUBSCRIBE_SECRET=""))
        handler = server.handler
    assert result.exit_code == 0, result.output
    assert result.stderr.count("the unsubscribe URL has no {token}") == 1
    for received in handler.received:
        assert received.message["List-Unsubscribe"].startswith(f"<{generic}>")
        assert received.message["To"] == received.rcpt_tos[0]


def test_an_unreachable_server_stops_the_run_after_the_retries(edition, tmp_path):
    port = str(free_port())  # nothing listens there
    result = send(edition, "--to", "a@example.org", "--ledger", tmp_path / "l",
                  env={"SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "SMTP_SECURITY": "none",
                       "SMTP_MAX_ATTEMPTS": "3", "SMTP_RETRY_DELAY": "0.01", "DIGEST_UNSUBSCRIBE_SECRET": SECRET})
    assert result.exit_code == 1
    assert result.stderr.count("Connection refused; retrying in") == 2
    assert f"Stopped: gave up after 3 attempts: cannot connect to 127.0.0.1:{port}" in result.stdout
    assert "still pending 1." in result.stdout and "  pending: a@example.org: not attempted" in result.stdout
    assert ledger_rows(tmp_path / "l")["a@example.org"][:2] == ("pending", 0)


def test_bad_input_exits_2_without_a_traceback(edition, tmp_path):
    ok_list = write_list(tmp_path / "ok.txt", addresses(1))
    csv = tmp_path / "people.csv"
    csv.write_text("name,mail\nA,a@example.org\n", encoding="utf-8")
    bad_list = write_list(tmp_path / "bad.txt", ["nope", "also nope@"])
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": "9", "DIGEST_UNSUBSCRIBE_SECRET": SECRET}
    cases = {
        "no such edition directory": send(tmp_path / "missing", "--to", "a@example.org", env=env),
        "no such recipients file": send(edition, "--recipients", tmp_path / "none.txt", env=env),
        "no 'email' column in the CSV header (name, mail)": send(edition, "--recipients", csv, env=env),
        "no valid address to send to": send(edition, "--recipients", bad_list, env=env),
        "--to: 'x@': nothing after '@'": send(edition, "--to", "x@", env=env),
        "give exactly one of --to ADDR or --recipients FILE": send(edition, env=env),
        "expected a positive rate": send(edition, "--to", "a@example.org", "--rate", "fast", env=env),
        "field 'SMTP_HOST': not set": send(edition, "--recipients", ok_list, env={**env, "SMTP_HOST": ""}),
        "field 'SMTP_SECURITY': unknown mode 'tls'": send(edition, "--to", "a@example.org",
                                                          env={**env, "SMTP_SECURITY": "tls"}),
        "DIGEST_UNSUBSCRIBE_SECRET is not set": send(edition, "--to", "a@example.org",
                                                     env={**env, "DIGEST_UNSUBSCRIBE_SECRET": ""}),
    }
    for expected, result in cases.items():
        assert result.exit_code == 2, (expected, result.output)
        assert expected in result.output, (expected, result.output)
        assert isinstance(result.exception, SystemExit), (expected, result.exception)
        assert "Traceback" not in result.output


def test_an_edition_built_for_a_mailing_service_is_refused(tmp_path):
    edition = build_example(tmp_path / "news", profile="mailchimp")
    result = send(edition, "--to", "a@example.org", env={"SMTP_HOST": "127.0.0.1", "DIGEST_UNSUBSCRIBE_SECRET": "x"})
    assert result.exit_code == 2
    assert "built for the 'mailchimp' mailing service" in result.output
    assert "rebuild with --profile smtp" in result.output


def test_send_py_and_digest_send_are_the_same_command(edition, tmp_path):
    process = send_py("--help", env={})
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"Usage: send.py [OPTIONS] EDITION" in out and b"Example:" in out
    from digest.cli import cli

    assert cli.get_command(click.Context(cli), "send") is send_command
