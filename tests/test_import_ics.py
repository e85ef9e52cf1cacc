"""`digest import` of iCalendar feeds: our fixtures field by field, and every real-world calendar."""

from __future__ import annotations

import io
import shutil
import urllib.error
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import InputError
from digest.importers.ics import (
    Window,
    description_markdown,
    iana_for,
    parse_ics,
    read_source,
)
from digest.importers.writer import fields_for_test

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "ics"
REAL = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real-world" / "ics"


def load(name: str, **kwargs):
    return parse_ics((FIXTURES / name).read_bytes(), name, **kwargs)


def by_title(drafts, title: str):
    return [d for d in drafts if d.fields["title"] == title]


def doubts(draft, field: str) -> list[str]:
    return [n.message for n in draft.uncertain if n.field == field]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copy(REPO / "digest.toml", tmp_path / "digest.toml")
    return tmp_path


def test_weekly_series_keeps_wall_time_across_the_dst_change():
    drafts, notes = load("dst_change.ics")
    assert notes == []
    group = by_title(drafts, "Reading group")
    assert [(d.fields["start"], d.fields["end"], d.fields["timezone"]) for d in group] == [
        ("2020-10-21 18:00", "2020-10-21 19:30", "Europe/Berlin"),   # CEST, UTC+2
        ("2020-10-28 18:00", "2020-10-28 19:30", "Europe/Berlin"),   # CET, UTC+1
        ("2020-11-04 18:00", "2020-11-04 19:30", "Europe/Berlin"),
    ]
    assert [d.fields["uid"] for d in group] == ["reading-group@example.org#20201021T160000Z",
                                                "reading-group@example.org#20201028T170000Z",
                                                "reading-group@example.org#20201104T170000Z"]
    first = group[0]
    assert first.fields["organizer"] == "Reading Group Berlin"
    assert first.fields["location"] == "Library, room 2"
    assert first.fields["register"] == "https://example.org/reading"


def test_utc_and_floating_times():
    drafts, _ = load("dst_change.ics")
    (utc,) = by_title(drafts, "Talk given in UTC")
    assert (utc.fields["start"], utc.fields["end"], utc.fields["timezone"]) == ("2020-10-26 17:00", "2020-10-26 18:00",
                                                                               "UTC")
    (floating,) = by_title(drafts, "Floating breakfast")
    assert floating.fields["start"] == "2020-10-27 08:00" and "timezone" not in floating.fields
    assert doubts(floating, "timezone") == ["floating time (no zone in the feed): the newsletter's time zone applies"]


def test_utc_times_are_shown_in_the_calendars_own_zone():
    drafts, _ = parse_ics((FIXTURES / "dst_change.ics").read_bytes().replace(
        b"X-WR-CALNAME:Reading Group", b"X-WR-TIMEZONE:Europe/Berlin"), "x.ics")
    (utc,) = by_title(drafts, "Talk given in UTC")
    assert (utc.fields["start"], utc.fields["timezone"]) == ("2020-10-26 18:00", "Europe/Berlin")


def test_all_day_and_multi_day():
    drafts, _ = load("all_day_multi_day.ics")
    (day,) = by_title(drafts, "Day of remembrance")
    assert day.fields["start"] == "2020-10-09" and "end" not in day.fields
    (conference,) = by_title(drafts, "Three-day conference")
    assert (conference.fields["start"], conference.fields["end"]) == ("2020-10-12", "2020-10-14")  # DTEND exclusive
    assert conference.fields["status"] == "cancelled"
    assert conference.fields["tags"] == ["conference", "human-rights"]
    (hackathon,) = by_title(drafts, "Weekend hackathon")
    assert (hackathon.fields["start"], hackathon.fields["end"], hackathon.fields["timezone"]) == (
        "2020-10-17 09:00", "2020-10-18 17:00", "America/New_York")


def test_rrule_with_exdate_rdate_and_an_overridden_instance():
    drafts, _ = load("recurring.ics")
    assert [(d.fields["title"], d.fields["start"], d.fields["end"]) for d in drafts] == [
        ("Weekly briefing", "2020-10-07 09:00", "2020-10-07 10:00"),
        ("Weekly briefing (moved to the afternoon)", "2020-10-14 15:00", "2020-10-14 16:00"),
        # 2020-10-21 is an EXDATE
        ("Weekly briefing", "2020-10-28 09:00", "2020-10-28 10:00"),
        ("Weekly briefing", "2020-10-30 09:00", "2020-10-30 10:00"),  # RDATE
        ("Weekly briefing", "2020-11-04 09:00", "2020-11-04 10:00"),  # after the DST change, UNTIL in UTC
    ]
    moved = drafts[1]
    assert moved.fields["uid"] == "briefing@example.org#20201014T130000Z"  # the original slot, in UTC
    assert moved.fields["location"] == "Online"  # inherited from the series
    assert "Every Wednesday." in moved.body


def test_window_limits_the_instances():
    drafts, _ = load("recurring.ics", window=Window(date(2020, 10, 20), date(2020, 10, 31)))
    assert [d.fields["start"] for d in drafts] == ["2020-10-28 09:00", "2020-10-30 09:00"]


def test_rdate_list_and_period():
    drafts, _ = load("rdate.ics")
    assert [(d.fields["start"], d.fields["end"]) for d in drafts] == [
        ("2020-10-05 15:00", "2020-10-05 17:00"),
        ("2020-10-19 15:00", "2020-10-19 17:00"),
        ("2020-11-02 16:00", "2020-11-02 18:00"),
        ("2020-11-16 16:00", "2020-11-16 19:00"),  # VALUE=PERIOD keeps its own end
    ]


def test_missing_dtend_uses_duration_or_the_rfc_default():
    drafts, _ = load("missing_dtend.ics")
    (no_end,) = by_title(drafts, "Screening without an end")
    assert "end" not in no_end.fields
    assert ("end", "the event has no DTEND or DURATION") in [(n.field, n.message) for n in no_end.missing]
    (with_duration,) = by_title(drafts, "Screening with a duration")
    assert with_duration.fields["end"] == "2020-10-09 21:45"
    (festival,) = by_title(drafts, "Festival day")
    assert festival.fields["start"] == "2020-10-10" and "end" not in festival.fields  # one day
    assert festival.fields["organizer"] == "Film Club"
    assert doubts(festival, "organizer") == ["no ORGANIZER: the calendar's name 'Film Club' is used"]


def test_non_ascii_tzid_text_folding_and_html():
    drafts, _ = load("non_ascii_tzid_folded.ics")
    soiree, atlantis = drafts
    assert soiree.fields["title"] == "Soirée Raphaël Lemkin – « Nommer le crime » 東京からの参加者も歓迎"
    assert soiree.fields["organizer"] == "Mémorial de la Shoah, Paris"
    assert soiree.fields["location"] == "Mémorial, 17 rue Geoffroy–l’Asnier, Paris"
    assert (soiree.fields["start"], soiree.fields["end"]) == ("2020-10-08 18:30", "2020-10-08 20:30")
    assert soiree.fields["timezone"] in ("Europe/Madrid", "Europe/Paris", "Europe/Brussels", "Europe/Copenhagen")
    assert soiree.body == ("Rencontre autour de l’œuvre de Lemkin — entrée libre.\n\n- Ouverture à 18h\n"
                           "- Débat: « Prévenir les atrocités »\n\n[Inscription](https://example.org/r) "
                           "ne pas cliquer\n")
    assert "javascript" not in soiree.body
    # A zone no IANA name matches: written with the offset of its VTIMEZONE.
    assert atlantis.fields["start"] == "2020-10-09T10:00:00-02:30"
    assert "timezone" not in atlantis.fields
    assert "is not an IANA zone" in doubts(atlantis, "timezone")[0]


def test_outlook_and_windows_zone_names():
    assert iana_for("(UTC-03:00) Brasília") == "America/Sao_Paulo"
    assert iana_for("W. Europe Standard Time") == "Europe/Berlin"
    assert iana_for("(UTC-05:00) Eastern Time (US & Canada)") == "America/New_York"
    assert iana_for("Europe/Vienna") == "Europe/Vienna"
    assert iana_for("Zone de l’Atlantide") is None


def test_broken_feed_names_the_line_and_writes_nothing(root: Path):
    result = CliRunner().invoke(cli, ["import", str(FIXTURES / "broken.ics"), "--root", str(root)])
    assert result.exit_code == 2
    assert ("broken.ics:12: field 'DTSTART': cannot be read: Wrong datetime format: 20201345T090000Z "
            "(fix the value (e.g. DTSTART:20201007T090000Z) or re-export the feed)") in result.output
    assert "could not import broken.ics; nothing was written." in result.output
    assert not (root / "entries").exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"<html><body>Not found</body></html>", "x.ics:1: not an iCalendar file: it starts with '<html><body>Not found"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20201007T090000Z\r\n",
     "x.ics:2: BEGIN:VEVENT is never closed (the file may be cut off)"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nthis is not a property\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
     "x.ics:3: cannot read 'this is not a property'"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
     "x.ics:3: END:VTODO closes BEGIN:VEVENT (line 2)"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:caf\xe9\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
     "x.ics:3: not UTF-8 text (byte 0xe9)"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nSUMMARY:No start\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
     "x.ics:2: field 'DTSTART': event 'No start' has no DTSTART"),
    ((b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART:20201007T090000Z\r\nRRULE:FREQ=SOMETIMES\r\n"
      b"END:VEVENT\r\nEND:VCALENDAR\r\n"), "x.ics:5: field 'RRULE': cannot be read"),
    (b"", "x.ics: the file is empty"),
])
def test_malformed_feeds_give_a_clear_error(content: bytes, message: str):
    with pytest.raises(InputError) as caught:
        parse_ics(content, "x.ics")
    assert message in str(caught.value.problems[0])


def test_event_without_summary_and_organizer_is_a_draft():
    drafts, _ = parse_ics(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20201007T090000Z\r\nEND:VEVENT\r\n"
                          b"END:VCALENDAR\r\n", "x.ics")
    (draft,) = drafts
    assert (draft.fields["title"], draft.fields["organizer"], draft.fields["status"]) == (
        "Untitled event", "Unknown organizer", "draft")
    described, _ = parse_ics(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20201007T090000Z\r\n"
                             b"DESCRIPTION:Panel on early warning\\nwith experts\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                             "x.ics", organizer="Some Office")
    assert described[0].fields["title"] == "Panel on early warning"
    assert described[0].fields["organizer"] == "Some Office"
    assert "status" not in described[0].fields


def test_only_web_and_mail_links_survive():
    feed = (b"BEGIN:VCALENDAR\r\nX-WR-CALNAME:C\r\nBEGIN:VEVENT\r\nUID:a\r\nSUMMARY:A\r\n"
            b"DTSTART:20201007T090000Z\r\nURL:javascript:alert(1)\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:b\r\n"
            b"SUMMARY:B\r\nDTSTART:20201008T090000Z\r\nURL:/events/b\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    a, b = parse_ics(feed, "x.ics")[0]
    assert "register" not in a.fields and "register" not in b.fields
    assert "only http:, https:, mailto: links are allowed" in doubts(a, "register")[0]
    _a, b2 = parse_ics(feed, "x.ics", base_url="https://example.org/feed.ics")[0]
    assert b2.fields["register"] == "https://example.org/events/b"


def test_html_descriptions_are_parsed_not_regex_stripped():
    text, was_html = description_markdown('<p>Talk &amp; debate</p><script>alert("x")</script>'
                                          '<p>See <a href="https://example.org">the page</a> & <b>come</b></p>')
    assert was_html
    assert text == "Talk & debate\n\nSee [the page](https://example.org) & come"
    plain, was_html = description_markdown("Salary < 5 & more\n# not a heading\nEs gab die Ve&hellip;")
    assert not was_html
    assert plain == "Salary < 5 & more\n\n\\# not a heading\n\nEs gab die Ve…"


def test_organizer_aliases_from_the_config_apply():
    drafts, _ = load("recurring.ics", canonical=lambda name: {"Office on Genocide Prevention": "OSAPG"}.get(name, name))
    assert drafts[0].fields["organizer"] == "OSAPG"
    assert doubts(drafts[0], "organizer") == [
        "'Office on Genocide Prevention' written as 'OSAPG' (organizer alias in digest.toml)"]


def test_url_source_is_fetched_and_only_http_schemes_allowed():
    data = (FIXTURES / "rdate.ics").read_bytes()

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    seen = []

    def opener(request, timeout):
        seen.append((request.full_url, timeout))
        return Response(data)

    assert read_source("https://example.org/cal.ics", opener) == (data, "https://example.org/cal.ics")
    assert seen == [("https://example.org/cal.ics", 30)]

    def failing(request, timeout):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    with pytest.raises(InputError) as caught:
        read_source("https://example.org/missing.ics", failing)
    assert "the server answered 404 Not Found" in str(caught.value.problems[0])
    with pytest.raises(InputError) as caught:
        read_source("ftp://example.org/cal.ics")
    assert "cannot fetch ftp:// addresses" in str(caught.value.problems[0])


def test_reimport_updates_the_same_file_by_uid(root: Path, tmp_path: Path):
    source = tmp_path / "feed" / "all_day_multi_day.ics"
    source.parent.mkdir()
    source.write_bytes((FIXTURES / "all_day_multi_day.ics").read_bytes())
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(source), "--root", str(root)]).exit_code == 0
    # An editor moves a reviewed entry elsewhere; the feed then changes the title.
    moved = root / "entries" / "2020" / "remembrance.md"
    moved.parent.mkdir()
    (root / "entries/imported/2020-10-09-day-remembrance.md").rename(moved)
    source.write_bytes(source.read_bytes().replace(b"SUMMARY:Day of remembrance", b"SUMMARY:Remembrance day"))
    result = runner.invoke(cli, ["import", str(source), "--root", str(root)], catch_exceptions=False)
    assert "0 new, 1 updated, 2 unchanged" in result.output
    assert fields_for_test(moved.read_text(encoding="utf-8"))["title"] == "Remembrance day"
    assert not (root / "entries/imported/2020-10-09-remembrance-day.md").exists()
    again = runner.invoke(cli, ["import", str(source), "--root", str(root)], catch_exceptions=False)
    assert "0 new, 0 updated, 3 unchanged" in again.output


def test_an_entry_moved_to_a_hidden_folder_is_imported_again(root: Path, tmp_path: Path):
    """digest build does not read entries/.trash/ (an editor's deleted notes), so the
    importer does not count an entry there as present; nor does it write into one."""
    source = tmp_path / "feed.ics"
    source.write_bytes((FIXTURES / "all_day_multi_day.ics").read_bytes())
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(source), "--root", str(root)]).exit_code == 0
    entry = root / "entries/imported/2020-10-09-day-remembrance.md"
    trash = root / "entries" / ".trash"
    trash.mkdir()
    entry.rename(trash / entry.name)
    result = runner.invoke(cli, ["import", str(source), "--root", str(root)], catch_exceptions=False)
    assert "1 new, 0 updated, 2 unchanged" in result.output
    assert entry.is_file()
    hidden = runner.invoke(cli, ["import", str(source), "--root", str(root), "--into", str(root / "entries/.drafts")])
    assert hidden.exit_code == 2
    assert "inside the hidden folder '.drafts'" in hidden.output and "choose a folder without a leading dot" in hidden.output
    assert not (root / "entries" / ".drafts").exists()


def test_imported_fixtures_validate_with_digest_check(root: Path):
    runner = CliRunner()
    for name in ("dst_change.ics", "all_day_multi_day.ics", "recurring.ics", "rdate.ics", "missing_dtend.ics",
                 "non_ascii_tzid_folded.ics"):
        result = runner.invoke(cli, ["import", str(FIXTURES / name), "--root", str(root)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    check = runner.invoke(cli, ["check", "--root", str(root)], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    assert "OK: 22 entries" in check.output


# --- every real-world calendar ----------------------------------------------------------------

#: file -> (entries written with the default window, notes that must appear)
REAL_WORLD = {
    "discourse_machbar_no_dtend.ics": (4, []),
    "fablab_cottbus.ics": (40, ["'Repair Café' repeats without end"]),
    "germany_holidays_calendarlabs.ics": (34, ["34 event(s) have an empty RRULE line"]),
    "hackerpublicradio_rdate.ics": (12, []),
    "machbar_potsdam_2019.ics": (478, ["'Chaostreff - CCCP' repeats without end"]),
    "outlook_brasilia_non_ascii_tzid.ics": (1, []),
    "zimbra_recur_instances.ics": (13, ["'Crazy Event Thingy!' repeats without end"]),
}


def real(name: str) -> Path:
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent")
    return REAL / name


def test_every_real_world_calendar_is_covered():
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent")
    assert sorted(p.name for p in REAL.glob("*.ics")) == sorted(REAL_WORLD)


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_calendar_imports_and_validates(name: str, root: Path):
    path = real(name)
    count, expected_notes = REAL_WORLD[name]
    runner = CliRunner()
    result = runner.invoke(cli, ["import", str(path), "--root", str(root)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{count} entr{'y' if count == 1 else 'ies'}: {count} new," in result.output
    for note in expected_notes:
        assert note in result.output
    assert len(list((root / "entries" / "imported").glob("*.md"))) == count
    check = runner.invoke(cli, ["check", "--root", str(root)], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    rerun = runner.invoke(cli, ["import", str(path), "--root", str(root)], catch_exceptions=False)
    assert f"0 new, 0 updated, {count} unchanged" in rerun.output


def test_real_world_zimbra_exceptions():
    drafts, _ = parse_ics(real("zimbra_recur_instances.ics").read_bytes(), "z.ics",
                          window=Window(date(2012, 10, 1), date(2012, 12, 31)))
    assert [(d.fields["start"], d.fields.get("uid", "")[-17:]) for d in drafts] == [
        ("2012-10-02 15:00", "#20121002T170000Z"),  # overridden: 10:00 moved to 15:00
        ("2012-11-06 10:00", "#20121106T180000Z"),
        ("2012-11-06 20:00", "#20121105T180000Z"),  # RDATE 5 Nov moved to 6 Nov 20:00 (RECURRENCE-ID in UTC)
        ("2012-11-10 10:00", "#20121110T180000Z"),  # RDATE
        ("2012-11-30 10:00", "#20121130T180000Z"),  # RDATE
    ]  # 2012-12-04 is an EXDATE
    assert drafts[0].body == "I HAZ CHANGED!\n"
    assert {d.fields["timezone"] for d in drafts} == {"America/Los_Angeles"}
    assert {d.fields["organizer"] for d in drafts} == {"James Lal"}


def test_real_world_outlook_brasilia():
    (draft,), _ = parse_ics(real("outlook_brasilia_non_ascii_tzid.ics").read_bytes(), "o.ics")
    assert (draft.fields["start"], draft.fields["end"], draft.fields["timezone"]) == (
        "2017-05-11 13:30", "2017-05-11 14:00", "America/Sao_Paulo")
    assert draft.fields["status"] == "draft"  # no SUMMARY, no organizer: never built until reviewed
    assert doubts(draft, "timezone") == ["the feed's zone '(UTC-03:00) Brasília' written as America/Sao_Paulo"]


def test_real_world_discourse_and_hpr():
    drafts, _ = parse_ics(real("discourse_machbar_no_dtend.ics").read_bytes(), "d.ics")
    first = drafts[0]
    assert (first.fields["start"], first.fields["timezone"]) == ("2019-01-17 18:00", "Europe/Berlin")
    assert "end" not in first.fields
    assert first.body.endswith("Es gab die Ve…\n")
    assert "register" not in first.fields  # relative URL, no base
    hpr, _ = parse_ics(real("hackerpublicradio_rdate.ics").read_bytes(), "h.ics")
    assert len(hpr) == 12
    assert (hpr[0].fields["start"], hpr[0].fields["timezone"]) == ("2013-08-03 20:00", "Europe/London")
    assert (hpr[3].fields["start"]) == "2013-11-02 19:00"  # GMT after the clocks change
