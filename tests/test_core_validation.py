"""Validation: every problem of every entry in one run, worded for editors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from digest.config import load_config
from digest.entries import load_events
from digest.errors import InputError
from tests.conftest import REPO, event_fields

BROKEN = REPO / "tests" / "fixtures" / "broken"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_check_lists_every_problem_of_every_file_and_exits_2(tmp_path):
    result = run_cli("check", "--root", str(BROKEN))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    expected = (BROKEN / "expected.txt").read_text(encoding="utf-8")
    assert result.stderr == expected
    files = {p.name for p in (BROKEN / "entries").iterdir()} - {"duplicate-a.md"}
    for name in files:
        assert f"entries/{name}:" in result.stderr, name


@pytest.mark.parametrize("name, message", [
    ("yaml-syntax.md", "entries/yaml-syntax.md:2: YAML syntax error: while scanning a quoted scalar, found "
                       "unexpected end of stream (check the indentation and quote values that contain ': ' or "
                       "start with a symbol)"),
    ("missing-title.md", "entries/missing-title.md:1: field 'title': is missing (add 'title: …' to the front matter)"),
    ("missing-organizer.md", "entries/missing-organizer.md:1: field 'organizer': is missing "
                             "(add 'organizer: …' to the front matter)"),
    ("unknown-field.md", "entries/unknown-field.md:5: field 'speaker': unknown field (did you mean 'speakers'?)"),
    ("bad-date.md", "entries/bad-date.md:4: field 'start': could not read '7 October 2020' as a date (expected "
                    "e.g. 2020-10-07, 2020-10-07 09:00 or 2020-10-07T09:00:00-04:00)"),
    ("impossible-date.md", "entries/impossible-date.md:4: field 'start': '2020-02-30 09:00' is not a real date or "
                           "time: day is out of range for month (expected e.g. 2020-10-07, 2020-10-07 09:00 or "
                           "2020-10-07T09:00:00-04:00)"),
    ("end-before-start.md", "entries/end-before-start.md:5: field 'end': is before start (2020-10-07 09:00 < "
                            "2020-10-07 10:00) (check the dates; end is the last day or the end time)"),
    ("unknown-timezone.md", "entries/unknown-timezone.md:5: field 'timezone': unknown time zone 'Mars/Olympus_Mons' "
                            "(use an IANA name such as America/New_York or Europe/Berlin)"),
    ("bad-link.md", "entries/bad-link.md:5: field 'register': 'javascript:alert(1)' has 'javascript:'; only http:, "
                    "https:, mailto: links are allowed (use the organizer's https:// registration page)"),
    ("duplicate-b.md", "entries/duplicate-b.md:1: field 'title': duplicates entries/duplicate-a.md (same title, "
                       "organizer and start) (delete one of the two files, or make them differ)"),
    ("not-utf8.md", "entries/not-utf8.md:2: not UTF-8 text (byte 0xe9 at offset 14) (save the file as UTF-8)"),
    ("empty.md", "entries/empty.md: file is empty (start it with front matter: ---, title: …, ---)"),
    ("no-front-matter.md", "entries/no-front-matter.md:1: no front matter (the file must start with a line '---', "
                           "then fields such as 'title: …', then '---')"),
    ("bad-status.md", "entries/bad-status.md:5: field 'status': unknown status 'canceled' (did you mean 'cancelled'?)"),
    ("no-start.md", "entries/no-start.md:1: field 'status': a scheduled event needs a start (add "
                    "'start: 2020-10-07 09:00', or 'status: tba' when the date is not announced yet)"),
])
def test_each_error_kind_has_its_message(name, message):
    _, problems = load_events(BROKEN, load_config(BROKEN))
    shown = [str(p) for p in problems if p.path == f"entries/{name}"]
    assert shown == [message]


def test_build_writes_nothing_on_bad_input(tmp_path):
    out = tmp_path / "dist"
    result = run_cli("build", "--root", str(BROKEN), "--all", "--out", str(out))
    assert result.returncode == 2
    assert "nothing was written" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_est_on_a_daylight_date_is_new_york_time_with_a_warning(newsletter):
    n = newsletter()
    n.entry("r2p.md", event_fields(timezone="EST"))
    events, problems = load_events(n.root, load_config(n.root))
    assert [str(p) for p in problems] == [
        "entries/r2p.md:6: warning: field 'timezone': EST given for a date in daylight-saving time: read as "
        "America/New_York (UTC\u22124 on 2020-10-07) (write 'timezone: America/New_York' to silence this)"]
    assert events[0].start.utcoffset().total_seconds() == -4 * 3600
    assert events[0].zone_name == "America/New_York"


def test_est_in_winter_is_silent(newsletter):
    n = newsletter()
    n.entry("w.md", event_fields(start="2020-12-07 09:00", end="2020-12-07 10:00", timezone="EST"))
    events, problems = load_events(n.root, load_config(n.root))
    assert problems == []
    assert events[0].start.utcoffset().total_seconds() == -5 * 3600


def test_strict_makes_warnings_fatal(newsletter, tmp_path):
    n = newsletter()
    n.entry("r2p.md", event_fields(timezone="EST"))
    ok = run_cli("check", "--root", str(n.root), "--today", "2020-10-01")
    assert ok.returncode == 0 and "warning:" in ok.stderr
    strict = run_cli("check", "--root", str(n.root), "--strict")
    assert strict.returncode == 2 and "entries/r2p.md:6: field 'timezone': EST given" in strict.stderr


@pytest.mark.parametrize("value", ["2020-10-07", "2020-10-07 09:00", "2020-10-07T09:00:00-04:00",
                                   "2020-10-07T13:00Z"])
def test_accepted_date_shapes(newsletter, value):
    n = newsletter()
    n.entry("e.md", event_fields(start=value, end=None, timezone=None))
    events, problems = load_events(n.root, load_config(n.root))
    assert [p for p in problems if not p.warning] == [] and len(events) == 1


def test_link_schemes(newsletter):
    n = newsletter()
    for index, url in enumerate(["JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,x",
                                 "vbscript:x", "ftp://example.org/", "https://", "/relative"]):
        n.entry(f"e{index}.md", event_fields(title=f"T{index}", register=url))
    _, problems = load_events(n.root, load_config(n.root))
    assert len([p for p in problems if p.field == "register"]) == 7


def test_config_problems_name_the_key(newsletter):
    n = newsletter()
    n.config('name = "X"\ntimezon = "UTC"\nweek_start = "caturday"\nahead_weeks = "four"\n[theme]\naccent = "#000"\n')
    with pytest.raises(InputError) as caught:
        load_config(n.root)
    shown = [str(p) for p in caught.value.problems]
    assert "digest.toml: field 'timezon': unknown key (did you mean 'timezone'?)" in shown
    assert "digest.toml: field 'theme.accent': unknown key (did you mean 'accent_color'?)" in shown
    assert "digest.toml: field 'ahead_weeks': must be a whole number, not 'four'" in shown
    assert "digest.toml: field 'week_start': 'caturday' is not a weekday (e.g. monday or sunday)" in shown


def test_sender_to_and_reply_to_must_be_addresses_the_eml_can_carry(newsletter):
    """The .eml's headers are made by the email package: a sender it cannot read is a
    config error naming the field, never a traceback during the build."""
    n = newsletter()
    n.config('sender = ". <digest@example.org>"\nto = "everyone"\nreply_to = "Desk <desk@exämple.org>"\n')
    result = run_cli("build", "--root", str(n.root), "--all", "--out", str(n.root / "dist"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "field 'sender': '. <digest@example.org>' is not an address the email package can read" in result.stderr
    assert "field 'to': 'everyone' is not one plain address" in result.stderr
    assert "field 'reply_to'" in result.stderr and "non-ASCII" in result.stderr
    assert "Name <someone@example.org>" in result.stderr
    assert not (n.root / "dist").exists()
    n.config('sender = "Ünïcode Näme <digest@example.org>"\nto = "Undisclosed recipients:;"\n')
    assert load_config(n.root).to == "Undisclosed recipients:;"


def test_toml_syntax_error_has_a_line(newsletter):
    n = newsletter()
    n.config('name = "X"\ntimezone = UTC\n')
    result = run_cli("check", "--root", str(n.root))
    assert result.returncode == 2
    assert "digest.toml:2: TOML syntax error: Invalid value" in result.stderr
    assert "Traceback" not in result.stderr


def test_open_bidi_overrides_are_closed_in_one_line_fields(newsletter):
    n = newsletter()
    n.entry("b.md", event_fields(title="Evil \u202eliving", location="\u2067Beirut"))
    events, problems = load_events(n.root, load_config(n.root))
    assert problems == []
    assert events[0].title == "Evil \u202eliving\u202c"
    assert events[0].location == "\u2067Beirut\u2069"


def test_names_with_periods_are_addresses_and_every_line_break_is_refused(newsletter):
    """"Dr. J. Doe <…>" is obsolete but ordinary syntax: accepted, and the calendars'
    ORGANIZER gets the parsed address. A name with any line break str.splitlines knows
    (U+2028 too) is refused with the field named, not a traceback in the build."""
    n = newsletter()
    n.config('sender = "Dr. J. Doe <events@example.org>"\nreply_to = "x@example.org (Events desk)"\n')
    config = load_config(n.root)
    assert config.sender_address == "events@example.org"
    assert config.sender == '"Dr. J. Doe" <events@example.org>'  # written as RFC 5322 lets writers write it
    for value, why in (("Events <events@example.org>,,", "empty element in address-list"),
                       ("<@relay.example:editors@example.org>", "obsolete route specification"),
                       ("john . doe@example.org", "local-part is not a dot-atom")):
        n.config(f'sender = "{value}"\n')
        with pytest.raises(InputError) as caught:
            load_config(n.root)
        assert f"is not one plain address ({why}" in str(caught.value.problems[0])
    n.config('name = "A\\u2028B"\ntagline = "end\\n"\n')
    result = run_cli("build", "--root", str(n.root), "--all", "--out", str(n.root / "dist"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "field 'name': must be one line" in result.stderr and "field 'tagline': must be one line" in result.stderr
