"""Grouping into weeks: order, multi-day events, statuses, week start, empty weeks."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from digest.config import load_config
from digest.dates import DateValueError, parse_when, range_label, resolve_zone, utc_offset_label, zone_label
from digest.editions import make_edition, resolve_week, week_bounds, week_label, weeks_with_content
from digest.entries import load_events
from tests.conftest import event_fields


def load(n):
    config = load_config(n.root)
    events, problems = load_events(n.root, config)
    assert [p for p in problems if not p.warning] == []
    return config, events


def test_groups_by_organizer_in_order_of_first_event(newsletter):
    n = newsletter()
    n.entry("a.md", event_fields(title="Late B", organizer="B", start="2020-10-09 09:00", end=None))
    n.entry("b.md", event_fields(title="Early A", organizer="A", start="2020-10-06 09:00", end=None))
    n.entry("c.md", event_fields(title="Second B", organizer="B", start="2020-10-07 15:00", end=None))
    n.entry("d.md", event_fields(title="First B", organizer="B", start="2020-10-07 09:00", end=None))
    config, events = load(n)
    edition = make_edition("2020-W41", events, config)
    assert [(g.name, [e.title for e in g.events]) for g in edition.groups] == [
        ("A", ["Early A"]), ("B", ["First B", "Second B", "Late B"])]


def test_organizer_aliases_merge_groups(newsletter):
    n = newsletter()
    n.config('timezone = "UTC"\n[organizers.aliases]\n"Org Inc." = "Org"\n')
    n.entry("a.md", event_fields(title="One", organizer="Org", start="2020-10-06 09:00", end=None))
    n.entry("b.md", event_fields(title="Two", organizer="Org  inc.", start="2020-10-07 09:00", end=None))
    config, events = load(n)
    assert [g.name for g in make_edition("2020-W41", events, config).groups] == ["Org"]


def test_multi_day_event_appears_in_every_week_it_touches(newsletter):
    n = newsletter()
    n.entry("conf.md", event_fields(title="Conference", start="2020-10-09", end="2020-10-20", timezone=None))
    config, events = load(n)
    assert weeks_with_content(events, config) == ["2020-W41", "2020-W42", "2020-W43"]
    for week in ("2020-W41", "2020-W42", "2020-W43"):
        assert [e.title for e in make_edition(week, events, config).events] == ["Conference"]


def test_statuses_and_sections(newsletter):
    n = newsletter()
    n.entry("c.md", event_fields(title="Called off", status="cancelled"))
    n.entry("p.md", event_fields(title="Moved", status="postponed", start=None, end=None))
    n.entry("t.md", {"title": "Someday", "organizer": "X", "status": "tba"})
    n.entry("o.md", {"title": "Course", "organizer": "X", "status": "ongoing", "until": "2020-10-04"})
    n.entry("d.md", event_fields(title="Draft", status="draft"))
    n.entry("r.md", event_fields(title="Later", start="2020-10-20 09:00", end=None, register_by="2020-10-08"))
    config, events = load(n)
    live = tuple(e for e in events if e.status != "draft")
    w41 = make_edition("2020-W41", live, config)
    assert [e.title for e in w41.events] == ["Called off"]
    assert [e.title for e in w41.deadlines] == ["Later"]
    assert [e.title for e in w41.tba] == ["Moved", "Someday"]
    assert w41.ongoing == ()  # ended on 2020-10-04
    assert [e.title for e in w41.ahead] == ["Later"]
    w40 = make_edition("2020-W40", live, config)
    assert [e.title for e in w40.ongoing] == ["Course"]


def test_week_start_sunday(newsletter):
    n = newsletter()
    n.config('timezone = "UTC"\nweek_start = "sunday"\n')
    n.entry("a.md", event_fields(title="Sunday", start="2020-10-11 09:00", end=None, timezone=None))
    config, events = load(n)
    assert week_bounds("2020-W42", config) == (date(2020, 10, 11), date(2020, 10, 17))
    assert weeks_with_content(events, config) == ["2020-W42"]


def test_empty_week_policy_short(newsletter):
    n = newsletter()
    n.config('timezone = "UTC"\nempty_weeks = "short"\n')
    n.entry("a.md", event_fields(title="A", start="2020-10-06 09:00", end=None))
    n.entry("b.md", event_fields(title="B", start="2020-10-27 09:00", end=None))
    config, events = load(n)
    assert weeks_with_content(events, config) == ["2020-W41", "2020-W42", "2020-W43", "2020-W44"]
    assert make_edition("2020-W42", events, config).empty


def test_times_are_grouped_in_the_newsletters_zone(newsletter):
    n = newsletter()  # newsletter zone: America/New_York
    n.entry("a.md", event_fields(title="Late Sunday in Tokyo", start="2020-10-12 08:00", end=None,
                                 timezone="Asia/Tokyo"))
    config, events = load(n)
    # 08:00 Monday in Tokyo is 19:00 Sunday in New York: still week 41 there.
    assert weeks_with_content(events, config) == ["2020-W41"]


def test_resolve_week():
    class C:
        week_start_index = 0
    assert resolve_week("this", date(2020, 10, 1), C()) == "2020-W40"
    assert resolve_week("next", date(2020, 10, 1), C()) == "2020-W41"
    assert week_label(date(2021, 1, 1), C()) == "2020-W53"
    with pytest.raises(ValueError):
        resolve_week("2020-41", date(2020, 10, 1), C())


def test_dates_helpers():
    assert parse_when("2020-10-07") == date(2020, 10, 7)
    assert parse_when("2020-10-07 09:00") == datetime(2020, 10, 7, 9, 0)
    assert parse_when("2020-10-07T09:00:00-04:00").utcoffset().total_seconds() == -14400
    with pytest.raises(DateValueError):
        parse_when("2020-13-01")
    zone, name, warning = resolve_zone("CET", date(2020, 7, 1))
    assert name == "Europe/Paris" and "daylight-saving" in warning
    assert resolve_zone("CEST", date(2020, 7, 1))[2] is None
    assert utc_offset_label(datetime(2020, 10, 7, 9, tzinfo=ZoneInfo("Asia/Kolkata"))) == "UTC+5:30"
    assert utc_offset_label(datetime(2020, 10, 7, 9, tzinfo=ZoneInfo("America/New_York"))) == "UTC\u22124"
    assert zone_label("America/New_York") == "New York time"
    assert range_label(date(2020, 9, 28), date(2020, 10, 4)) == "28 September \u2013 4 October 2020"
