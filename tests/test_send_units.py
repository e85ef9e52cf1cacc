"""The sending parts without a server: recipients, tokens, personalisation, ledger, rate, settings."""

from __future__ import annotations

import base64
import json
import sqlite3
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from digest.errors import BuildError, InputError
from digest.ledger import FAILED, PENDING, SENDING, SENT, Ledger
from digest.mailer import RateLimiter, SmtpSettings, parse_rate
from digest.personalize import (
    MARKER,
    TOKEN_LENGTH,
    _body,
    load_edition,
    unsubscribe_token,
    verify_token,
)
from digest.recipients import address_problem, read_recipients

URL = f"https://events.example.org/unsubscribe?token={MARKER}"


def make_edition(folder: Path, *, marker: bool = True, profile: str = "smtp", attach: bool = False,
                 cte: str = "quoted-printable") -> Path:
    """An edition folder following the build's contract, made with the email package."""
    url = URL if marker else "https://events.example.org/unsubscribe"
    message = EmailMessage()
    message["From"] = "Atrocity Prevention Events <events@example.org>"
    message["To"] = "Subscribers <subscribers@example.org>"
    message["Subject"] = "Atrocity Prevention Events: 5–11 October 2020 (1 event)"
    message["Date"] = "Mon, 05 Oct 2020 06:00:00 -0400"
    message["Message-ID"] = "<digest.2020-W41.abc@events.example.org>"
    message["List-Id"] = "Atrocity Prevention Events <events.example.org>"
    message["List-Unsubscribe"] = f"<{url}>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    long_line = "Fifteenth anniversary of the responsibility to protect – " * 4
    message.set_content(f"{long_line}\nUnsubscribe: {url}\n", cte=cte)
    message.add_alternative(
        f'<html><body><p>{long_line}</p><a href="{url}" style="color:#0b5394">Unsubscribe</a> '
        f'<a href="{url}">again</a></body></html>\n',
        subtype="html", cte=cte,
    )
    if attach:
        message.add_attachment(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", maintype="text", subtype="calendar",
                               filename="events.ics")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digest.eml").write_bytes(message.as_bytes(policy=policy.default.clone(linesep="\n")))
    manifest = {"week": "2020-W41", "profile": profile,
                "unsubscribe": {"url": url, "token_marker": MARKER if marker else None}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


# Recipients ---------------------------------------------------------------------------

def test_text_file_skips_comments_and_reports_invalid_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("# subscribers\n\na@example.org\nBob <b@example.org>\n  b@EXAMPLE.org  \nc@example\n",
                    encoding="utf-8")
    recipients, problems = read_recipients(path)
    assert [(r.address, r.line) for r in recipients] == [("a@example.org", 3), ("b@EXAMPLE.org", 5)]
    assert [str(p) for p in problems] == [
        f"{path}:4: warning: 'Bob <b@example.org>': expected a bare address such as someone@example.org; skipped",
        f"{path}:6: warning: 'c@example': invalid domain 'example'; skipped",
    ]


def test_duplicates_compare_the_domain_case_insensitively_and_the_local_part_as_written(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("a@example.org\na@EXAMPLE.org\nA@example.org\n", encoding="utf-8")
    recipients, problems = read_recipients(path)
    assert [r.address for r in recipients] == ["a@example.org", "A@example.org"]
    assert [str(p) for p in problems] == [f"{path}:2: warning: 'a@EXAMPLE.org' repeats line 1; sent once"]


def test_csv_uses_the_email_column_and_reports_physical_lines(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text('\ufeffName,Email,Note\n"Doe, Jane",jane@example.org,"two\nlines"\nX,bad@,\n,,\n'
                    "Y,y@example.org\n", encoding="utf-8")
    recipients, problems = read_recipients(path)
    assert [(r.address, r.line) for r in recipients] == [("jane@example.org", 3), ("y@example.org", 6)]
    assert [str(p) for p in problems] == [f"{path}:4: warning: 'bad@': nothing after '@'; skipped"]


@pytest.mark.parametrize("content", ["id,email\n1,a@example.org\n", "Email\na@example.org\n"])
def test_a_file_whose_header_names_email_is_a_csv_whatever_its_name(tmp_path, content):
    path = tmp_path / "export.txt"
    path.write_text(content, encoding="utf-8")
    recipients, problems = read_recipients(path)
    assert [r.address for r in recipients] == ["a@example.org"] and problems == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,mail\nA,a@example.org\n", "people.csv:1: no 'email' column in the CSV header (name, mail)."),
        ("", "people.csv: empty CSV file; expected a header with an 'email' column."),
        ("email\nnot-an-address\n", "people.csv: no valid address to send to."),
    ],
)
def test_unusable_recipient_files_are_input_errors(tmp_path, content, message):
    path = tmp_path / "people.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_recipients(path)
    assert caught.value.message == f"{tmp_path}/{message}"


def test_a_recipients_file_that_is_not_utf8_is_an_input_error(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"caf\xe9@example.org\n")
    with pytest.raises(InputError, match="not UTF-8 text"):
        read_recipients(path)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("someone@example.org", None),
        ("first.last+tag@sub.example.co.uk", None),
        ("o'neil@example.org", None),
        ("no-at-sign", "no '@' with a local part before it"),
        ("@example.org", "no '@' with a local part before it"),
        ("a..b@example.org", "invalid local part 'a..b'"),
        ("a@-example.org", "invalid domain '-example.org'"),
        ("a@example..org", "invalid domain 'example..org'"),
        ("a@192.168.0.1", "invalid domain '192.168.0.1' (a numeric top-level domain)"),
        ("josé@example.org", "not an ASCII address (internationalised addresses are not supported)"),
        ("a b@example.org", "expected a bare address such as someone@example.org"),
        ("x" * 65 + "@example.org", "too long (RFC 5321 allows 64 characters before '@' and 254 in all)"),
    ],
)
def test_address_rules(address, problem):
    assert address_problem(address) == problem


# Tokens and personalisation ----------------------------------------------------------

def test_token_is_unpadded_base64url_hmac_of_the_lowercased_address():
    import base64
    import hashlib
    import hmac

    expected = base64.urlsafe_b64encode(
        hmac.new(b"s3cret", b"jane@example.org", hashlib.sha256).digest()).rstrip(b"=").decode()
    assert unsubscribe_token("s3cret", "Jane@Example.org") == expected
    assert len(expected) == TOKEN_LENGTH and "=" not in expected
    assert verify_token("s3cret", "jane@example.org", expected)
    assert not verify_token("other", "jane@example.org", expected)


@pytest.mark.parametrize("variant", [{}, {"attach": True}, {"cte": "base64"}])
def test_personalised_copy_changes_only_to_message_id_and_the_token(tmp_path, variant):
    edition = load_edition(make_edition(tmp_path / "2020-W41", **variant))
    assert edition.week == "2020-W41" and edition.sender == "events@example.org"
    assert edition.message_id_domain == "events.example.org"
    address = "Jane@Example.org"
    token = unsubscribe_token("s3cret", address)
    data = edition.personalize(address, token, "<fresh@events.example.org>")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    head, _, body = data.partition(b"\r\n\r\n")
    assert max(len(line) for line in body.split(b"\r\n")) <= 78
    assert max(len(line) for line in head.split(b"\r\n")) <= 998  # a token makes a folded line longer
    copy = message_from_bytes(data, policy=policy.default)
    built = message_from_bytes(edition.message, policy=policy.default)
    assert copy["To"] == address and copy["Message-ID"] == "<fresh@events.example.org>"
    assert copy["List-Unsubscribe"] == built["List-Unsubscribe"].replace(MARKER, token)
    for name in ("From", "Subject", "Date", "List-Id", "List-Unsubscribe-Post", "MIME-Version", "Content-Type"):
        assert copy[name] == built[name]
    texts = {p.get_content_type(): p for p in copy.walk() if p.get_content_maintype() == "text"}
    originals = {p.get_content_type(): p for p in built.walk() if p.get_content_maintype() == "text"}
    for kind in ("text/plain", "text/html"):
        assert texts[kind].get_content() == originals[kind].get_content().replace(MARKER, token)
        assert texts[kind]["Content-Transfer-Encoding"] == originals[kind]["Content-Transfer-Encoding"]
        assert texts[kind].get_content_charset() == "utf-8"
    assert texts["text/html"].get_content().count(token) == 2
    if variant.get("attach"):  # a part without the marker is kept byte for byte
        def calendar_part(raw: bytes) -> bytes:
            return raw[raw.index(b"Content-Type: text/calendar"):].split(b"\r\n--", 1)[0]
        assert calendar_part(data) == calendar_part(edition.message)
        assert texts["text/calendar"].get_content() == "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"


def test_fast_path_matches_decode_replace_reencode_for_many_tokens(tmp_path):
    edition = load_edition(make_edition(tmp_path / "2020-W41"))
    assert edition._token_slots is not None
    head, _, body = edition.message.partition(b"\r\n\r\n")
    for n in range(100):
        token = unsubscribe_token("k", f"user{n}@example.org")
        fast = edition.personalize(f"user{n}@example.org", token, "<m@x>").partition(b"\r\n\r\n")[2]
        assert fast == _body(head, body, {MARKER.encode(): token.encode()})


def test_without_marker_the_body_is_untouched(tmp_path):
    edition = load_edition(make_edition(tmp_path / "2020-W41", marker=False))
    assert edition.marker is None
    data = edition.personalize("a@example.org", None, "<m@x>")
    assert data.partition(b"\r\n\r\n")[2] == edition.message.partition(b"\r\n\r\n")[2]


def test_a_marker_hidden_in_an_encoded_header_is_caught_before_sending(tmp_path):
    folder = make_edition(tmp_path / "2020-W41")
    raw = (folder / "digest.eml").read_bytes()
    hidden = "=?utf-8?b?" + base64.b64encode(f"Unsubscribe {MARKER}".encode()).decode() + "?="
    (folder / "digest.eml").write_bytes(raw.replace(b"List-Id:", f"X-Note: {hidden}\nList-Id:".encode(), 1))
    edition = load_edition(folder)
    with pytest.raises(BuildError, match="the unsubscribe marker survives personalisation in X-Note"):
        edition.check()
    load_edition(make_edition(tmp_path / "ok")).check()


def test_an_edition_for_a_mailing_service_is_refused(tmp_path):
    with pytest.raises(InputError, match="built for the 'sendgrid' mailing service"):
        load_edition(make_edition(tmp_path / "2020-W41", profile="sendgrid"))


def test_a_manifest_naming_a_marker_the_message_lacks_is_refused(tmp_path):
    folder = make_edition(tmp_path / "2020-W41", marker=False)
    (folder / "manifest.json").write_text(json.dumps({"week": "2020-W41", "profile": "smtp",
                                                      "unsubscribe": {"url": "x", "token_marker": MARKER}}))
    with pytest.raises(InputError, match="does not contain it; rebuild the edition"):
        load_edition(folder)


def test_a_marker_the_manifest_forgot_is_still_replaced(tmp_path):
    folder = make_edition(tmp_path / "2020-W41")
    (folder / "manifest.json").write_text(json.dumps({"week": "2020-W41", "profile": "smtp"}))
    edition = load_edition(folder)
    assert edition.marker == MARKER
    assert MARKER.encode() not in edition.personalize("a@example.org", unsubscribe_token("k", "a@example.org"), "<m@x>")


def test_missing_edition_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such edition directory"):
        load_edition(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="digest.eml: missing"):
        load_edition(tmp_path / "empty")


# Ledger -------------------------------------------------------------------------------

def test_ledger_records_each_transition_and_keeps_rows_per_edition(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        assert ledger.start_edition("2020-W41", "aaa") is None
        ledger.add("2020-W41", [("a@example.org", "a@example.org"), ("b@example.org", "b@example.org")])
        ledger.add("2020-W41", [("a@example.org", "A@example.org")])  # already there: unchanged
        ledger.add("2020-W42", [("a@example.org", "a@example.org")])
        ledger.mark_sending("2020-W41", "a@example.org", "<1@x>")
        assert ledger.rows("2020-W41")["a@example.org"].state == SENDING
        ledger.mark("2020-W41", "a@example.org", SENT, "250 ok")
        ledger.mark_sending("2020-W41", "b@example.org", "<2@x>")
        ledger.mark("2020-W41", "b@example.org", PENDING, "451 later")
        ledger.mark_sending("2020-W41", "b@example.org", "<2@x>")
        ledger.mark("2020-W41", "b@example.org", FAILED, "550 no")
        assert ledger.start_edition("2020-W41", "bbb") == "aaa"
        rows = ledger.rows("2020-W41")
    assert (rows["a@example.org"].address, rows["a@example.org"].state, rows["a@example.org"].accepted) == \
        ("a@example.org", SENT, 1)
    assert (rows["b@example.org"].state, rows["b@example.org"].attempts, rows["b@example.org"].last_reply) == \
        (FAILED, 2, "550 no")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT COUNT(*) FROM deliveries WHERE edition = '2020-W42'").fetchone() == (1,)


def test_one_sender_at_a_time(tmp_path):
    with Ledger(tmp_path / "l.sqlite"), pytest.raises(BuildError, match="another `digest send` is using this"):
        Ledger(tmp_path / "l.sqlite")
    Ledger(tmp_path / "l.sqlite").close()  # released


def test_a_file_that_is_not_a_ledger_is_an_input_error(tmp_path):
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a usable send ledger"):
        Ledger(path)


# Rate and settings ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "rate"), [("10", 10), ("10/s", 10), ("600/min", 10), ("2.5/s", 2.5),
                                            ("3600/h", 1)])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "0", "-1/s", "fast", "10/week"])
def test_parse_rate_rejects(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_rate_limiter_spaces_starts_by_the_interval():
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    limiter.wait()
    limiter.wait()
    now[0] += 0.1  # a slow transaction counts towards the interval
    limiter.wait()
    now[0] += 1.0  # idle: no sleeping, and no burst credit either
    limiter.wait()
    limiter.wait()
    assert slept == [0.25, 0.15, 0.25]


def test_settings_from_environment_with_defaults_and_hidden_password():
    settings = SmtpSettings.from_env({"SMTP_HOST": "smtp.example.org", "SMTP_USERNAME": "u",
                                      "SMTP_PASSWORD": "hunter2", "SMTP_SECURITY": "SSL"})
    assert (settings.port, settings.security, settings.timeout) == (465, "ssl", 30.0)
    assert "hunter2" not in repr(settings)
    assert [settings.backoff(n) for n in (1, 2, 3, 10)] == [2.0, 4.0, 8.0, 60.0]


def test_settings_problems_are_reported_together():
    with pytest.raises(InputError) as caught:
        SmtpSettings.from_env({"SMTP_PORT": "smtp", "SMTP_SECURITY": "tls", "SMTP_PASSWORD": "hunter2",
                               "SMTP_TIMEOUT": "0"})
    text = caught.value.format_message()
    assert text.splitlines() == [
        "environment: field 'SMTP_HOST': not set (export SMTP_HOST=smtp.example.org (or use --dry-run DIR))",
        "environment: field 'SMTP_SECURITY': unknown mode 'tls' (use starttls, ssl or none)",
        "environment: field 'SMTP_PORT': expected a whole number, not 'smtp'",
        "environment: field 'SMTP_USERNAME': not set, but SMTP_PASSWORD is",
        "environment: field 'SMTP_TIMEOUT': must be at least 0.001, not '0'",
        "SMTP settings are incomplete; nothing was sent.",
    ]
    assert "hunter2" not in text
