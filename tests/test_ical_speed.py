"""digest.ical writes VEVENTs and calendars itself, without icalendar's Component API:
the bytes must be exactly what that API gives (the reference builders below are the
implementation it replaced), and it must stay fast."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event as VEvent
from zoneinfo import ZoneInfo

from digest.ical import PRODID, _portable, _vevent_ical, _vtimezone, calendar_bytes, fold, vevent_bytes
from digest.models import Event


def reference_vevent(event: Event, sender_address: str, stamp: datetime) -> tuple[bytes, frozenset[str]]:
    item = VEvent()
    item.add("uid", event.uid)
    item.add("dtstamp", stamp)
    item.add("summary", event.title)
    start, end = event.start, event.end
    if isinstance(start, datetime):
        item.add("dtstart", _portable(start))
        if isinstance(end, datetime):
            item.add("dtend", _portable(end))
    elif isinstance(start, date):
        item.add("dtstart", start)
        last = end if isinstance(end, date) else start
        item.add("dtend", last + timedelta(days=1))
    description = event.summary
    if event.register:
        description += f"\n\nRegister: {event.register}"
        item.add("url", event.register)
    if event.register_by:
        description += f"\nRegister by {event.register_by.isoformat()}"
    item.add("description", description.strip())
    if event.location:
        item.add("location", event.location)
    item.add("organizer", "mailto:" + sender_address, parameters={"CN": event.organizer})
    status = {"scheduled": "CONFIRMED", "cancelled": "CANCELLED", "postponed": "TENTATIVE"}.get(event.status)
    if status:
        item.add("status", status)
    if event.tags:
        item.add("categories", list(event.tags))
    holder = Calendar()
    holder.add_component(item)
    data = b"\r\n".join(fold(line) for line in item.content_lines() if line) + b"\r\n"
    return data, frozenset(holder.get_used_tzids() - {"UTC"})


def reference_calendar(events: list[Event], sender_address: str, stamp: datetime, name: str) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    utc_stamp = stamp.astimezone(timezone.utc)
    parts = [reference_vevent(event, sender_address, utc_stamp) for event in events
             if event.start is not None and event.status in ("scheduled", "cancelled", "postponed")]
    tzids = sorted(set().union(*(used for _, used in parts)))
    years = [moment.year for event in events for moment in (event.start, event.end) if isinstance(moment, date)]
    head = b"\r\n".join(fold(line) for line in cal.content_lines() if line) + b"\r\n"
    end = head.rindex(b"END:VCALENDAR")
    zones = b"".join(_vtimezone(tzid, min(years), max(years)) for tzid in tzids) if tzids else b""
    return head[:end] + zones + b"".join(data for data, _ in parts) + head[end:]


ZONES = [ZoneInfo(key) for key in ("America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe",
                                    "UTC", "Etc/UTC", "GMT", "Iceland", "Africa/Abidjan", "America/Port-au-Prince",
                                    "Etc/GMT+5")]
FIXED = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-16 * 60, 16 * 60))
# Text heavy in what needs escaping, quoting or care when folding.
SPECIAL = st.sampled_from([",", ";", ":", "\\", "\\N", "\\n", "\n", "\r", "\r\n", '"', "'", "\u2019", "^", " ",
                           "\ufeff", "é", "€", "𝄞", "日本", "\t", "mailto:", "END:VCALENDAR"])
TEXT = st.lists(st.one_of(SPECIAL, st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
                          st.text("abcdefghij ", min_size=60, max_size=90)), max_size=8).map("".join)
LINE = TEXT.map(lambda s: s.replace("\r", "").replace("\n", ""))
DAYS = st.dates(min_value=date(1, 1, 2), max_value=date(9990, 1, 1))
FIRST, LAST = datetime(2, 1, 1), datetime(9990, 1, 1)  # no overflow when moved to another zone
NAIVE = st.datetimes(min_value=FIRST, max_value=LAST)
MOMENTS = st.datetimes(min_value=FIRST, max_value=LAST,
                       timezones=st.one_of(st.sampled_from(ZONES), FIXED, st.just(timezone.utc)))


@st.composite
def events(draw) -> Event:
    if draw(st.booleans()):
        start = draw(DAYS)
        end = draw(st.one_of(st.none(), st.just(start), st.builds(lambda d: start + timedelta(days=d),
                                                                  st.integers(1, 5))))
    else:
        start = draw(MOMENTS)
        end = draw(st.one_of(st.none(), MOMENTS))
    return Event(path="p.md", slug="s", uid=draw(st.one_of(st.just("s@example.org"), TEXT)), title=draw(TEXT),
                 organizer=draw(TEXT), status=draw(st.sampled_from(["scheduled", "cancelled", "postponed", "tba"])),
                 start=start, end=end, all_day=isinstance(start, date), zone_name=None, location=draw(TEXT),
                 register=draw(st.one_of(st.just(""), LINE)), register_by=draw(st.one_of(st.none(), DAYS)),
                 tags=tuple(draw(st.lists(TEXT, max_size=4))), summary=draw(TEXT))


SENDERS = st.one_of(st.just("events@example.org"), LINE)
STAMPS = st.one_of(NAIVE.map(lambda moment: moment.replace(tzinfo=timezone.utc)), NAIVE, MOMENTS)
EXAMPLE = Event(path="p.md", slug="s", uid="\ufeffu@x", title="A, b; c\\ d\\N e\n" + "é" * 40 + "\\" * 5,
                organizer='Dr. "O\'Neil": Ünïcode; Inc., ^ ’', status="postponed",
                start=datetime(2020, 3, 8, 2, 30, tzinfo=ZoneInfo("America/New_York")),
                end=datetime(2020, 3, 8, 9, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))), all_day=False,
                zone_name=None, location="Palais des Nations, Geneva", register="https://x.org/r?a=1,2;3",
                register_by=date(2020, 3, 1), tags=("a,b", "c;d", "\ufeffe"), summary="x" * 200)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events(), sender=SENDERS, stamp=STAMPS)
@example(event=EXAMPLE, sender="events@example.org", stamp=datetime(2020, 1, 1, tzinfo=timezone.utc))
@example(event=replace(EXAMPLE, organizer="", start=date(2020, 2, 29), end=None, tags=(), register="", summary=""),
         sender="e@x", stamp=datetime(2020, 1, 1))
def test_vevent_is_what_icalendar_writes(event: Event, sender: str, stamp: datetime) -> None:
    assert vevent_bytes(event, sender, stamp) == reference_vevent(event, sender, stamp)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(events(), max_size=4), sender=SENDERS, stamp=STAMPS,
       name=TEXT.map(lambda s: s.replace("\n", "")))
def test_calendar_is_what_icalendar_writes(items: list[Event], sender: str, stamp: datetime, name: str) -> None:
    config = SimpleNamespace(sender_address=sender)
    # Events that compare equal (the same instant in two zones) but are written differently
    # would share a cached VEVENT: a real event's path tells it apart, and clearing the cache
    # keeps earlier examples' events out.
    items = [replace(event, path=f"{index}.md") for index, event in enumerate(items)]
    _vevent_ical.cache_clear()
    assert calendar_bytes(items, config, stamp, name) == reference_calendar(items, sender, stamp, name)
    # VEVENTs kept by (path, content hash) without their DTSTAMP (as the build cache keeps
    # them) give the same calendar, on another day too.
    known: dict = {}
    hashed = [replace(event, content_hash=f"h{index}") for index, event in enumerate(items)]
    assert calendar_bytes(hashed, config, stamp, name, known) == reference_calendar(hashed, sender, stamp, name)
    assert len(known) == sum(e.start is not None and e.status != "tba" for e in hashed)
    _vevent_ical.cache_clear()
    later = stamp + timedelta(days=3, seconds=7)
    assert calendar_bytes(hashed, config, later, name, known) == reference_calendar(hashed, sender, later, name)
    assert not _vevent_ical.made  # every VEVENT came from KNOWN


def test_line_breaks_where_icalendar_refuses_them() -> None:
    stamp = datetime(2020, 1, 1, tzinfo=timezone.utc)
    broken = replace(EXAMPLE, register="https://x.org/\r\nX-EVIL:1")
    for event, sender in ((broken, "e@x"), (EXAMPLE, "e@x\nX-EVIL:1")):
        with pytest.raises(ValueError):
            reference_vevent(event, sender, stamp)
        with pytest.raises(ValueError):
            vevent_bytes(event, sender, stamp)


def test_importing_the_module_does_not_import_icalendar() -> None:
    code = "import sys, digest.ical; assert 'icalendar' not in sys.modules, 'icalendar imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


VTIMEZONE_ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Asia/Kolkata", "Australia/Lord_Howe",
                   "Africa/Casablanca", "America/Sao_Paulo", "Pacific/Apia", "Europe/Dublin", "Asia/Tehran",
                   "America/Santiago", "Antarctica/Troll", "Etc/GMT+5", "UTC", "Europe/Moscow", "Asia/Gaza"]


@pytest.mark.parametrize("zone", VTIMEZONE_ZONES)
@pytest.mark.parametrize("years", [(2020, 2020), (2019, 2021), (1970, 1971), (2037, 2039), (2099, 2100)])
def test_vtimezone_is_what_icalendar_writes(zone: str, years: tuple[int, int]) -> None:
    """The bounded search gives icalendar's own VTIMEZONE (Timezone.from_tzid), byte for byte."""
    from icalendar import Timezone

    from digest.ical import _make_vtimezone

    reference = Timezone.from_tzid(zone, first_date=date(years[0] - 1, 1, 1), last_date=date(years[1] + 2, 1, 1))
    want = b"\r\n".join(fold(line) for line in reference.content_lines() if line) + b"\r\n"
    assert _make_vtimezone(zone, *years) == want


def test_every_zone_is_what_icalendar_writes() -> None:
    """digest writes VTIMEZONEs itself (icalendar is not imported for them): for every zone
    this machine knows, the bytes are icalendar's Timezone.from_tzid, unbounded (the 1890s:
    local mean times, offsets in seconds)."""
    from zoneinfo import available_timezones

    from icalendar import Timezone

    from digest.ical import _make_vtimezone

    differ = []
    for zone in sorted(available_timezones()):
        for first, last in ((2019, 2021), (1890, 1900)):
            reference = Timezone.from_tzid(zone, first_date=date(first - 1, 1, 1), last_date=date(last + 2, 1, 1))
            want = b"\r\n".join(fold(line) for line in reference.content_lines() if line) + b"\r\n"
            if _make_vtimezone(zone, first, last) != want:
                differ.append((zone, first))
    assert len(available_timezones()) > 300 and differ == []


def test_a_vtimezone_is_made_without_icalendar() -> None:
    """A calendar meeting a new year or zone does not import icalendar (~35 ms of a weekly
    build) for its TZIDs or VTIMEZONEs; what is not a zone name still goes to icalendar's
    lookup, which finds nothing there."""
    code = ("import sys\nfrom datetime import datetime\nfrom zoneinfo import ZoneInfo\n"
            "from digest.ical import _make_vtimezone, _tzid\n"
            "assert _tzid(datetime(2021, 1, 1, tzinfo=ZoneInfo('Europe/Berlin'))) == 'Europe/Berlin'\n"
            "assert _tzid(datetime(2021, 1, 1, tzinfo=ZoneInfo('Iceland'))) == 'UTC'\n"
            "assert _make_vtimezone('Europe/Berlin', 2021, 2022).startswith(b'BEGIN:VTIMEZONE\\r\\nTZID:Europe/Berlin\\r\\n')\n"
            "assert _make_vtimezone('Etc/GMT+5', 2021, 2021).count(b'BEGIN:STANDARD') == 1\n"
            "assert 'icalendar' not in sys.modules, 'icalendar imported'\n"
            "assert _make_vtimezone('Not/A_Zone', 2021, 2021) == b''\n"
            "assert 'icalendar' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_zones_tzid_is_what_icalendar_gives() -> None:
    """The TZID of each named zone, worked out without icalendar: "UTC" for the zones
    icalendar counts as UTC (UTC, GMT, Iceland, Africa/Abidjan and its links, …), else the
    zone's name, for every zone this machine knows."""
    from zoneinfo import available_timezones

    from icalendar.timezone.tzid import tzid_from_tzinfo

    from digest import ical

    keys = sorted(available_timezones() | {"UTC"})
    for extra in ("posix/UTC", "right/UTC", "posix/Etc/GMT", "right/Europe/Berlin"):  # where the system has them
        try:
            ZoneInfo(extra)
        except (KeyError, ValueError, OSError):
            continue
        keys.append(extra)
    ours = {key: ical._zone_tzid(key) for key in keys}
    theirs = {key: tzid_from_tzinfo(ZoneInfo(key)) for key in keys}
    assert ours == theirs
    assert ours["Europe/London"] == "Europe/London" and ours["Etc/GMT"] == ours["Atlantic/Reykjavik"] == "UTC"
