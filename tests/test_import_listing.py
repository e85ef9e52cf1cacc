"""`digest import` of a pasted listing: the seed's five events, field by field, and the writer's promises."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_config
from digest.entries import load_events
from digest.importers.listing import parse_listing
from digest.importers.writer import fields_for_test

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seeds" / "000_86f13fd48dbf7b32.txt"

needs_seed = pytest.mark.skipif(not SEED.is_file(), reason=f"{SEED} is absent")


def run(*args: str):
    return CliRunner().invoke(cli, ["import", *args], catch_exceptions=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copy(REPO / "digest.toml", tmp_path / "digest.toml")
    return tmp_path


@pytest.fixture(scope="module")
def seed_drafts():
    if not SEED.is_file():
        pytest.skip(f"{SEED} is absent")
    return parse_listing(SEED.read_text(encoding="utf-8"), "seed.txt")


def _uncertain(draft, field: str) -> list[str]:
    return [n.message for n in draft.uncertain if n.field == field]


@needs_seed
def test_seed_has_five_blocks_with_their_organizers(seed_drafts):
    assert [d.fields["organizer"] for d in seed_drafts] == [
        "United Nations Office of the Special Advisor on the Prevention of Genocide",
        "United Nations Office on Genocide Prevention and the Responsibility to Protect",
        "Impunity Watch",
        "Budapest Centre for the International Prevention of Genocide and Mass Atrocities",
        "FXB Center for Health and Human Rights, Harvard School of Public Health",
    ]


@needs_seed
def test_online_course_is_ongoing_without_link(seed_drafts):
    course = seed_drafts[0]
    assert course.fields["status"] == "ongoing"
    assert "start" not in course.fields and "register" not in course.fields
    assert course.fields["online"] is True
    assert "More information and registration here" not in course.body
    assert "The course is free of charge." in course.body
    assert any("dropped 'More information and registration here'" in m for m in _uncertain(course, "body"))


@needs_seed
def test_r2p_date_time_zone_and_rsvp(seed_drafts):
    r2p = seed_drafts[1]
    assert r2p.fields["start"] == "2020-10-07 09:00"
    assert r2p.fields["end"] == "2020-10-07 10:30"
    assert r2p.fields["timezone"] == "America/New_York"
    assert r2p.fields["register_by"] == "2020-10-05"
    assert "status" not in r2p.fields  # scheduled
    assert "register" not in r2p.fields
    assert _uncertain(r2p, "timezone") == [
        "EST given for a date in daylight-saving time: read as America/New_York (UTC\u22124 on 2020-10-07)"]
    assert r2p.fields["title"].startswith("Fifteen years ago, the adoption of the responsibility to protect")
    assert any("made from the first sentence, shortened" in m for m in _uncertain(r2p, "title"))
    assert "please register here" not in r2p.body
    assert "To confirm participation, please register." in r2p.body
    assert r2p.body.count("\n\n") == 4  # five paragraphs, hard line breaks joined


@needs_seed
def test_impunity_watch_speakers_and_tba(seed_drafts):
    iw = seed_drafts[2]
    assert iw.fields["status"] == "tba"
    assert iw.fields["speakers"] == [
        {"name": "Ms. Frances Topham Smallwood", "role": "Impunity Watch"},
        {"name": "Ms. Marjolein Wijninckx", "role": "PAX"},
        {"name": "Ms. Mouna Khaity", "role": "Women Now"},
        {"name": "Mr. Abdullah Khatib", "role": "Filmmaker and peace activist"},
        {"name": "Ms. Krystel Bassil", "role": "Syrian Legal Development Programme (SLDP)"},
        {"name": "Mr. Ahmad Helmi", "role": "Kesh Malek/Taʼafi"},
        {"name": "Ms. Sawsan Abou Zeinedin", "role": "Sakan Housing Communities and Qibaa"},
    ]
    assert "**Recorded video briefings**\n\n- Ms. Mouna Khaity, Women Now\n- Mr. Abdullah Khatib, " in iw.body
    assert [n.field for n in iw.missing] == ["start", "register", "register_by"]


@needs_seed
def test_budapest_centre_speakers_from_talk_lines(seed_drafts):
    bc = seed_drafts[3]
    assert bc.fields["status"] == "tba"
    assert bc.fields["speakers"] == [
        {"name": "Dr. Istvan Lakatos", "role": "Former Human Rights Ambassador of Hungary / Senior Adviser in the "
                                              "Ministry of Human and Minority Rights of Montenegro"},
        {"name": "Kyle Matthews", "role": "Executive Director, Montreal Institute for Genocide & Human Rights Studies"},
        {"name": "Jamie Shea", "role": "Professor, Strategy and Security Institute, University of Exeter"},
        {"name": "Gyorgy Tatar", "role": "Chair, Budapest Centre for Mass Atrocities Prevention"},
        {"name": "Ronald A Kingham", "role": "Executive Director, Environment & Development Resource Centre"},
    ]
    assert "location" not in bc.fields  # the text names no place: not guessed
    assert "Register here" not in bc.body
    assert "- “Diverging Responses to the Threats of Climate Security” – Jamie Shea" in bc.body


@needs_seed
def test_fxb_all_day_with_quoted_title_and_bullets(seed_drafts):
    fxb = seed_drafts[4]
    assert fxb.fields["start"] == "2020-09-28"
    assert "end" not in fxb.fields and "timezone" not in fxb.fields
    assert fxb.fields["title"] == "Responses to COVID-19 at Local, National, and International Levels"
    assert _uncertain(fxb, "start") == ["'September 28, 2020' has no time of day: an all-day entry"]
    assert "\n- Discuss past and present patterns" in fxb.body
    assert "\n- Focus on effective responses" in fxb.body
    assert "•" not in fxb.body


@needs_seed
def test_import_writes_files_that_validate_and_report(root: Path):
    result = run(str(SEED), "--root", str(root))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (root / "entries" / "imported").iterdir())
    assert names == [
        "2020-09-28-responses-covid-19-local-national.md",
        "2020-10-07-fifteen-years-ago-adoption-responsibility.md",
        "ongoing-participants-this-online-course-will.md",
        "tba-following-up-discussion-security-risks.md",
        "tba-there-is-growing-recognition-among.md",
    ]
    assert "found:     title, organizer, start, end, timezone, location, online, register_by" in result.output
    assert "missing:   register (the text has no link" in result.output
    assert "uncertain: title: no quoted title in the text" in result.output
    assert result.output.rstrip().endswith("5 entries: 5 new, 0 updated, 0 unchanged in "
                                           f"{(root / 'entries' / 'imported').as_posix()}")
    # the alias table in digest.toml is applied
    course = fields_for_test((root / "entries/imported/ongoing-participants-this-online-course-will.md").read_text())
    assert course["organizer"] == "United Nations Office on Genocide Prevention and the Responsibility to Protect"
    check = CliRunner().invoke(cli, ["check", "--root", str(root)], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    assert "OK: 5 entries" in check.output
    events, problems = load_events(root, load_config(root))
    assert problems == [] and len(events) == 5


@needs_seed
def test_entries_still_validate_after_an_editor_fills_the_gaps(root: Path):
    run(str(SEED), "--root", str(root))
    path = root / "entries/imported/tba-there-is-growing-recognition-among.md"
    text = path.read_text(encoding="utf-8")
    text = text.replace("status: tba\n", "start: 2020-10-20 10:00\nend: 2020-10-20 11:30\ntimezone: Europe/Amsterdam\n"
                        "register: https://example.org/register\n")
    text = text.replace("title: There is growing recognition", "title: HLP rights in Syria. There is growing")
    path.write_text(text, encoding="utf-8")
    events, problems = load_events(root, load_config(root))
    assert [p for p in problems if not p.warning] == []
    assert {e.status for e in events} == {"scheduled", "tba", "ongoing"}


@needs_seed
def test_rerun_changes_nothing_byte_for_byte(root: Path):
    run(str(SEED), "--root", str(root))
    before = {p: p.read_bytes() for p in (root / "entries").rglob("*.md")}
    result = run(str(SEED), "--root", str(root))
    assert "5 entries: 0 new, 0 updated, 5 unchanged" in result.output
    assert {p: p.read_bytes() for p in (root / "entries").rglob("*.md")} == before


@needs_seed
def test_edited_entry_is_kept_and_diff_shown_unless_force(root: Path, tmp_path: Path):
    run(str(SEED), "--root", str(root))
    path = root / "entries/imported/2020-10-07-fifteen-years-ago-adoption-responsibility.md"
    edited = path.read_text(encoding="utf-8").replace(
        "title: Fifteen years ago, the adoption of the responsibility to protect during…",
        "title: Fifteenth anniversary of the responsibility to protect")
    path.write_text(edited, encoding="utf-8")
    changed = tmp_path / "source" / SEED.name  # same name: the origin comment stays the same
    changed.parent.mkdir()
    changed.write_text(SEED.read_text(encoding="utf-8").replace("10:30 am", "11:00 am"), encoding="utf-8")
    result = run(str(changed), "--root", str(root))
    assert result.exit_code == 0
    assert path.read_text(encoding="utf-8") == edited
    assert "(kept)" in result.output
    assert "-end: 2020-10-07 10:30\n+end: 2020-10-07 11:00" in result.output
    assert "1 kept because edited by hand" in result.output
    forced = run(str(changed), "--root", str(root), "--force")
    assert "end: 2020-10-07 11:00" in path.read_text(encoding="utf-8")
    assert "Fifteenth anniversary" not in path.read_text(encoding="utf-8")
    assert "(overwrite)" in forced.output


@needs_seed
def test_unedited_entry_is_updated_when_the_source_changes(root: Path, tmp_path: Path):
    run(str(SEED), "--root", str(root))
    changed = tmp_path / "source" / SEED.name  # same name: the origin comment stays the same
    changed.parent.mkdir()
    changed.write_text(SEED.read_text(encoding="utf-8").replace("10:30 am", "11:00 am"), encoding="utf-8")
    result = run(str(changed), "--root", str(root))
    path = root / "entries/imported/2020-10-07-fifteen-years-ago-adoption-responsibility.md"
    assert "end: 2020-10-07 11:00" in path.read_text(encoding="utf-8")
    assert "0 new, 1 updated, 4 unchanged" in result.output


@needs_seed
def test_dry_run_writes_nothing(root: Path):
    result = run(str(SEED), "--root", str(root), "--dry-run")
    assert result.exit_code == 0
    assert "(new, dry run)" in result.output
    assert "(dry run: nothing written)" in result.output
    assert not (root / "entries").exists()


def test_weekday_that_contradicts_the_date_is_a_warning():
    text = ("Organized By : Some Office\n\nA panel on early warning.\n\n"
            "The event will take place on Tuesday 7 October 2020 at 14:00 (CET).\n"
            "Deadline for RSVP is Monday 6 October 2020\n")
    (draft,) = parse_listing(text, "x.txt")
    assert draft.fields["start"] == "2020-10-07 14:00"
    assert draft.fields["timezone"] == "Europe/Paris"
    assert draft.fields["register_by"] == "2020-10-06"
    assert "the text says Tuesday 7 October 2020, but that day is a Wednesday" in _uncertain(draft, "start")
    assert "the text says Monday 6 October 2020, but that day is a Tuesday" in _uncertain(draft, "register_by")
    assert any("CET given for a date in daylight-saving time" in m for m in _uncertain(draft, "timezone"))


def test_utc_offset_range_and_link():
    text = ("Organized By : Asia Forum\n\nA workshop “Early Warning in Practice” for practitioners, "
            "held online from 12 to 14 November 2020.\n\nRegister here: https://example.org/register\n")
    (draft,) = parse_listing(text, "x.txt")
    assert draft.fields["title"] == "Early Warning in Practice"
    assert draft.fields["start"] == "2020-11-12" and draft.fields["end"] == "2020-11-14"
    assert draft.fields["register"] == "https://example.org/register"
    assert "Register here: https://example.org/register" in draft.body

    (timed,) = parse_listing("Organized By : X\n\nOn October 8, 2020 from 2 to 3:30 pm (UTC+2) we meet.\n", "y.txt")
    assert timed.fields["start"] == "2020-10-08T14:00:00+02:00"
    assert timed.fields["end"] == "2020-10-08T15:30:00+02:00"
    assert "timezone" not in timed.fields


def test_time_without_zone_is_reported_missing():
    (draft,) = parse_listing("Organized By : X\n\nMeet us on 8 October 2020 at 10:00 in Geneva.\n", "y.txt")
    assert draft.fields["start"] == "2020-10-08 10:00"
    assert ("timezone", "the text gives a time but no time zone: the newsletter's time zone applies") in [
        (n.field, n.message) for n in draft.missing]


def test_listing_without_blocks_fails_with_exit_2(tmp_path: Path):
    source = tmp_path / "notes.txt"
    source.write_text("Just some notes, no events.\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["import", str(source), "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "notes.txt:1: no block starting with 'Organized By : <organizer>'" in result.output
    assert not (tmp_path / "entries").exists()


def test_missing_source_is_a_clear_error(tmp_path: Path):
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "nope.txt"), "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "nope.txt: no such file (check the path)" in result.output


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["import", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "digest import listing.txt --dry-run" in result.output
