"""RFC 5545 calendars of events (one per event and one per week).

The content lines are written here, byte for byte what the icalendar library's
Component API gives for the same properties (tests/test_ical_speed.py checks that),
at ~15 µs a VEVENT instead of ~210 µs; VTIMEZONEs and the TZIDs of named zones too.
icalendar itself is imported only for a time zone that is not a named zone (rare:
fixed offsets are written in UTC) and for a TZID that is not a zone name.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Iterable

from zoneinfo import ZoneInfo

from digest import __version__
from digest.models import Event

if TYPE_CHECKING:
    from digest.config import Config

PRODID = f"-//digest//digest {__version__}//EN"

_STATUS = {"scheduled": "CONFIRMED", "cancelled": "CANCELLED", "postponed": "TENTATIVE"}
_QUOTABLE = re.compile("[,;:\u2019]")  # a parameter value with one of these is double-quoted


def _portable(moment: datetime) -> datetime:
    """Named zones keep their TZID (with a VTIMEZONE); fixed offsets become UTC."""
    return moment if isinstance(moment.tzinfo, ZoneInfo) else moment.astimezone(timezone.utc)


def fold(line: str, limit: int = 74) -> bytes:
    """RFC 5545 folding of one content line: chunks of at most LIMIT octets (75 with the
    continuation space), cut between UTF-8 characters and never after a backslash."""
    data = line.encode("utf-8")
    if len(data) <= limit:
        return data
    chunks = []
    start = 0
    while len(data) - start > limit:
        cut = start + limit
        while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: back to the character start
            cut -= 1
        if data[cut - 1] == 0x5C and cut - 1 > start:  # keep "\," "\;" "\n" together
            cut -= 1
        chunks.append(data[start:cut])
        start = cut
    chunks.append(data[start:])
    return b"\r\n ".join(chunks)


def _text(value: str) -> str:
    """A TEXT value escaped as icalendar's vText does (the order of the replacements matters)."""
    return (value.replace("\\N", "\n").replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _param(value: str, quote_also: str = "") -> str:
    """A parameter value as icalendar writes it: RFC 6868 escapes, double quotes when needed."""
    quote = any(c in value for c in quote_also)
    value = (value.replace("^", "^^").replace("\r\n", "^n").replace("\r", "^n").replace("\n", "^n")
             .replace('"', "^'"))
    return f'"{value}"' if quote or _QUOTABLE.search(value) else value


def _verbatim(value: str, what: str) -> str:
    """A URI or CAL-ADDRESS value; icalendar refuses line breaks in them."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"A {what} value may not contain CR or LF characters: {value!r}")
    return value


def _line(name: str, value: str) -> bytes:
    # icalendar decodes each value as UTF-8-SIG, which drops one leading byte order mark.
    return fold(name + ":" + value.removeprefix("\ufeff"))


#: The TZID of each zone name met, kept between builds by digest.cache with the VTIMEZONEs.
TZIDS: dict[str, str] = {}


def _zone_tzid(key: str) -> str:
    """The TZID icalendar gives a named zone: "UTC" for the zones it counts as UTC (GMT,
    Iceland, Africa/Abidjan, …), else the name. Worked out here (importing icalendar to
    ask cost ~30 ms of a first build): icalendar counts as UTC the zones the time zone
    database makes links of UTC's or Abidjan's, which is what it does with zones that
    agree since 1970; tests/test_ical_speed.py checks every zone against icalendar."""
    tzid = TZIDS.get(key)
    if tzid is None:
        tzid = "UTC" if key == "UTC" or _utc_since_1970(key) else key
        TZIDS[key] = tzid
    return tzid


def _utc_since_1970(key: str) -> bool:
    """Whether zone KEY has kept UTC's offset, with a known name, from 1970 to 2040
    ("localtime" is this machine's zone, not a shared one; "-00" names an unknown one;
    the posix/ and right/ copies of the database are not among its names, and right/
    counts leap seconds)."""
    if key == "localtime" or key.startswith(("posix/", "right/")):
        return False
    zone = ZoneInfo(key)
    moment, end, week = datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2040, 1, 1, tzinfo=timezone.utc), \
        timedelta(days=7)
    while moment < end:  # one step for the other zones: their offset is not UTC's in 1970
        local = moment.astimezone(zone)
        if local.utcoffset() or local.tzname() == "-00":
            return False
        moment += week
    return True


def _tzid(moment: datetime) -> str | None:
    """The TZID icalendar gives MOMENT: "UTC" for UTC, None when naive."""
    zone = moment.tzinfo
    if zone is timezone.utc:
        return "UTC"
    if isinstance(zone, ZoneInfo) and zone.key is not None:
        return _zone_tzid(zone.key)
    from icalendar.timezone.tzid import tzid_from_dt
    return tzid_from_dt(moment)


def learn_tzids(events: Iterable[Event]) -> None:
    """Work out now the TZIDs of EVENTS' times that TZIDS lacks: forked workers inherit
    them (and icalendar, when a zone that is not a named one needs it)."""
    for event in events:
        for moment in (event.start, event.end):
            if isinstance(moment, datetime):
                _tzid(moment)


@lru_cache(maxsize=None)
def _tzid_param(tzid: str) -> str:
    return ";TZID=" + _param(tzid)


def _when(name: str, moment: date, tzids: set[str]) -> bytes:
    """A DATE or DATE-TIME property; a TZID it names is added to TZIDS."""
    if not isinstance(moment, datetime):
        return _line(name + ";VALUE=DATE", "%04d%02d%02d" % (moment.year, moment.month, moment.day))
    value = "%04d%02d%02dT%02d%02d%02d" % (moment.year, moment.month, moment.day,
                                           moment.hour, moment.minute, moment.second)
    tzid = _tzid(moment)
    if tzid == "UTC":
        return _line(name, value + "Z")
    if tzid is None:
        return _line(name, value)
    tzids.add(tzid)
    return _line(name + _tzid_param(tzid), value)


@lru_cache(maxsize=64)
def _dtstamp(utc: datetime) -> bytes:
    return _when("DTSTAMP", utc, set())


@lru_cache(maxsize=1024)
def _organizer(name: str, sender_address: str) -> bytes:
    address = _verbatim("mailto:" + sender_address, "CAL-ADDRESS")
    return _line("ORGANIZER;CN=" + _param(name, quote_also=" '"), address)


_HEAD = b"".join(line + b"\r\n" for line in (
    b"BEGIN:VCALENDAR", b"VERSION:2.0", _line("PRODID", _text(PRODID)), b"CALSCALE:GREGORIAN", b"METHOD:PUBLISH"))


#: A VEVENT without its DTSTAMP line: (the lines before it, the lines after it, its TZIDs).
Parts = tuple[bytes, bytes, frozenset[str]]


def calendar_bytes(events: list[Event] | tuple[Event, ...], config: Config, stamp: datetime, name: str,
                   known: dict[tuple[str, str], Parts] | None = None) -> bytes:
    """A VCALENDAR with the dated events, their VTIMEZONEs, CRLF and folded lines.

    KNOWN, when given, holds VEVENTs by (path, content hash) for this config (the build
    cache keeps them between builds: the calendar of every event is then assembled, not
    made): they are taken from it, and those it lacks are added."""
    if "\n" in name:
        raise ValueError(f"a calendar name must be one line: {name!r}")
    utc_stamp = stamp.astimezone(timezone.utc)
    sender = config.sender_address
    dtstamp = _dtstamp(utc_stamp) + b"\r\n"
    parts = []
    for event in events:
        if event.start is None or event.status not in ("scheduled", "cancelled", "postponed"):
            continue
        if known is not None and event.content_hash:
            key = (event.path, event.content_hash)
            found = known.get(key)
            if found is None:
                found = known[key] = _vevent_ical.parts(event, sender)
        else:
            found = _vevent_ical.parts(event, sender)
        parts.append((found[0] + dtstamp + found[1], found[2]))
    tzids = sorted(set().union(*(used for _, used in parts)))
    years = [moment.year for event in events for moment in (event.start, event.end) if isinstance(moment, date)]
    # What icalendar's Calendar gives with these properties, the VTIMEZONEs (in a stable
    # order) and the VEVENTs; every VEVENT and VTIMEZONE is serialised once: an event is
    # in its own .ics and the week's. X-WR-CALNAME is not a TEXT property: not escaped.
    zones = b"".join(_vtimezone(tzid, min(years), max(years)) for tzid in tzids) if tzids else b""
    return b"".join((_HEAD, _line("X-WR-CALNAME", name), b"\r\n", zones, *(data for data, _ in parts),
                     b"END:VCALENDAR\r\n"))


class _VEvents:
    """_vevent_ical: each VEVENT made once per process (without its DTSTAMP, which is the
    build's day), and taken as made by a build's worker (remember) so the parent's
    calendar of every event does not make it again."""

    LIMIT = 16_384  # oldest first out: ~1 KB each

    def __init__(self, make: Callable[[Event, str], Parts]) -> None:
        self.__wrapped__ = make
        self.made: dict[tuple[Event, str], Parts] = {}

    def parts(self, event: Event, sender_address: str) -> Parts:
        key = (event, sender_address)
        found = self.made.get(key)
        if found is None:
            found = self.__wrapped__(event, sender_address)
            self.remember(event, sender_address, found)
        return found

    def remember(self, event: Event, sender_address: str, made: Parts) -> None:
        """Keep MADE as EVENT's VEVENT: what __wrapped__ gave for an equal Event (the
        same file, read with the same config) in a forked worker."""
        if len(self.made) >= self.LIMIT:
            del self.made[next(iter(self.made))]
        self.made[(event, sender_address)] = made

    def made_for(self, events: Iterable[Event], sender_address: str) -> tuple[tuple[str, Parts], ...]:
        """(path, parts) of the VEVENTs of EVENTS this process has made."""
        found = ((event.path, self.made.get((event, sender_address))) for event in events)
        return tuple((path, made) for path, made in found if made is not None)

    def cache_clear(self) -> None:
        self.made.clear()


def vevent_bytes(event: Event, sender_address: str, stamp: datetime) -> tuple[bytes, frozenset[str]]:
    """EVENT's VEVENT with STAMP as its DTSTAMP, made afresh, and the TZIDs it uses."""
    head, tail, tzids = _make_vevent(event, sender_address)
    return head + _dtstamp(_utc(stamp)) + b"\r\n" + tail, tzids


def _utc(stamp: datetime) -> datetime:
    # icalendar writes DTSTAMP in UTC, taking a naive time as UTC.
    return stamp.astimezone(timezone.utc) if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


def _make_vevent(event: Event, sender_address: str) -> Parts:
    """One VEVENT's lines before and after its DTSTAMP, and the TZIDs it uses (UTC needs no VTIMEZONE)."""
    tzids: set[str] = set()
    lines = [b"BEGIN:VEVENT", _line("SUMMARY", _text(event.title))]
    start, end = event.start, event.end
    if isinstance(start, datetime):
        lines.append(_when("DTSTART", _portable(start), tzids))
        if isinstance(end, datetime):
            lines.append(_when("DTEND", _portable(end), tzids))
    elif isinstance(start, date):
        last = end if isinstance(end, date) else start
        lines += (_when("DTSTART", start, tzids), _when("DTEND", last + timedelta(days=1), tzids))
    head = b"\r\n".join(lines) + b"\r\n"
    lines = [_line("UID", _text(event.uid))]
    # The other properties in alphabetical order, as icalendar sorts them.
    if event.tags:
        lines.append(_line("CATEGORIES", ",".join(_text(tag) for tag in event.tags)))
    description = event.summary
    if event.register:
        description += f"\n\nRegister: {event.register}"
    if event.register_by:
        description += f"\nRegister by {event.register_by.isoformat()}"
    lines.append(_line("DESCRIPTION", _text(description.strip())))
    if event.location:
        lines.append(_line("LOCATION", _text(event.location)))
    lines.append(_organizer(event.organizer, sender_address))
    status = _STATUS.get(event.status)
    if status:
        lines.append(_line("STATUS", status))
    if event.register:
        lines.append(_line("URL", _verbatim(event.register, "URI")))
    lines.append(b"END:VEVENT\r\n")
    return head, b"\r\n".join(lines), frozenset(tzids)


_vevent_ical = _VEvents(_make_vevent)


def vevents_made(events: Iterable[Event], config: Config) -> tuple[tuple[str, Parts], ...]:
    """The VEVENTs of EVENTS made here for CONFIG, by path (without DTSTAMP: see Parts)."""
    return _vevent_ical.made_for(events, config.sender_address)


def remember_vevents(events: Iterable[Event], config: Config, made: tuple[tuple[str, Parts], ...]) -> None:
    """Take MADE (vevents_made in a forked worker) as the VEVENTs of EVENTS, matched by path."""
    by_path = {event.path: event for event in events}
    for path, parts in made:
        if path in by_path:
            _vevent_ical.remember(by_path[path], config.sender_address, parts)


#: VTIMEZONE bytes by (TZID, first year, last year): made here once, and kept between
#: builds by digest.cache (icalendar searches each zone's transitions: ~14 ms a zone).
ZONES: dict[tuple[str, int, int], bytes] = {}


def zones_needed(events: Iterable[Event], config: Config, tzids: dict[str, str],
                 zones: set[tuple[str, int, int]]) -> dict[str, dict]:
    """(In a reader standing by: digest.forked.) The TZIDs and VTIMEZONEs that EVENTS'
    calendars need (each event's own, and all of them together: a week's new entries)
    beyond what the build holds (TZIDS by zone name, the keys of its ZONES). Made there,
    importing icalendar there, while the build gets ready; the build takes them (adopt_zones)."""
    TZIDS.update(tzids)
    events = list(events)
    learn_tzids(events)
    years_of_all: list[int] = []
    spans: list[tuple[frozenset[str], list[int]]] = []
    for event in events:
        years = [moment.year for moment in (event.start, event.end) if isinstance(moment, date)]
        years_of_all.extend(years)
        if event.start is not None and event.status in _STATUS:
            spans.append((_vevent_ical.parts(event, config.sender_address)[2], years))
    used = set().union(*(used for used, _ in spans)) if spans else set()
    if years_of_all:
        spans.append((frozenset(used), years_of_all))
    made: dict[tuple[str, int, int], bytes] = {}
    for used, years in spans:
        for tzid in used:
            key = (tzid, min(years), max(years))
            if key not in zones and key not in made:
                made[key] = _vtimezone(*key)
    return {"tzids": {name: tzid for name, tzid in TZIDS.items() if name not in tzids}, "zones": made}


def adopt_zones(learned: dict[str, dict]) -> None:
    """Take what zones_needed made elsewhere (what is here already stays)."""
    for name, tzid in learned.get("tzids", {}).items():
        TZIDS.setdefault(name, tzid)
    for key, zone in learned.get("zones", {}).items():
        ZONES.setdefault(key, zone)


def _vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    key = (tzid, first_year, last_year)
    if key not in ZONES:
        ZONES[key] = _make_vtimezone(*key)
    return ZONES[key]


def _make_vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    # The rules of the years the calendar's events span (plus a year each side), not
    # icalendar's default 1970-2038: ~60 transitions x 2 lines per zone and ~50 ms to
    # build became a few lines and ~1 ms. Written here, byte for byte what icalendar's
    # Timezone.from_tzid gives (tests/test_ical_speed.py checks every zone): importing
    # icalendar for it cost ~35 ms of each build that met a new zone or a new year.
    try:
        zone = ZoneInfo(tzid)
    except (KeyError, ValueError, OSError):  # not a zone name: icalendar's own lookup
        return _icalendar_vtimezone(tzid, first_year, last_year)
    try:
        first, last = date(first_year - 1, 1, 1), date(last_year + 2, 1, 1)
        stretches = _stretches(_Bounded(zone, last), first, last)
    except (ValueError, OverflowError):  # impossible years: no VTIMEZONE, as before
        return b""
    lines = [b"BEGIN:VTIMEZONE", _line("TZID", _text(tzid)),
             _line("COMMENT", _text(f"This timezone only works from {first} to {last}."))]
    for (offset_from, offset_to, name, is_standard), starts in stretches.items():
        first_start = min(starts)
        starts.remove(first_start)
        if first_start.date() == last:
            first_start = datetime(last.year, last.month, last.day)
        kind = b"STANDARD" if is_standard else b"DAYLIGHT"
        lines += (b"BEGIN:" + kind, _line("DTSTART", _local(first_start)))
        if starts:
            lines.append(_line("RDATE", ",".join(_local(start) for start in starts)))
        lines += (_line("TZNAME", _text(name)),
                  _line("TZOFFSETFROM", _utc_offset(offset_to if offset_from is None else offset_from)),
                  _line("TZOFFSETTO", _utc_offset(offset_to)), b"END:" + kind)
    lines.append(b"END:VTIMEZONE")
    return b"\r\n".join(lines) + b"\r\n"


#: icalendar's Timezone._from_tzinfo_skip_search: the steps in which from_tzinfo looks
#: for the end of each stretch of one UTC offset.
_STEPS = tuple(timedelta(days=days) for days in (64, 32, 16, 8, 4, 2, 1)) + (
    timedelta(hours=4), timedelta(hours=1), timedelta(minutes=20), timedelta(minutes=5), timedelta(minutes=1),
    timedelta(seconds=20), timedelta(seconds=5), timedelta(seconds=1))


def _stretches(zone: tzinfo, first: date, last: date) -> dict[tuple, list[datetime]]:
    """The starts (local, naive) of each kind of stretch of one offset from FIRST to LAST,
    by (offset before, offset, name, standard time?): icalendar's Timezone.from_tzinfo
    (BSD-licensed), step for step, so that the VTIMEZONE is the one it writes."""
    offsets: dict[tuple, list[datetime]] = {}
    start = datetime(first.year, first.month, first.day, tzinfo=zone)
    end_of_all = datetime(last.year, last.month, last.day, tzinfo=zone)
    offset_to = None
    while start < end_of_all:
        offset_from = offset_to
        end = start
        offset_to = end.utcoffset()
        for step in _STEPS:
            last_end = end
            end = end + step
            try:
                while end.utcoffset() == offset_to:
                    last_end = end
                    end = end + step
            except OverflowError:  # past _Bounded's end (or zoneinfo's): as from_tzinfo, kept
                break
            end = last_end
        name = start.tzname()
        key = (offset_from, offset_to, str(offset_to) if name is None else name, start.dst() == timedelta())
        offsets.setdefault(key, []).append(start.replace(tzinfo=None))
        start = end + _STEPS[-1]
    return offsets


def _local(moment: datetime) -> str:
    """A floating DATE-TIME value (icalendar's vDatetime of a naive datetime)."""
    return "%04d%02d%02dT%02d%02d%02d" % (moment.year, moment.month, moment.day,
                                          moment.hour, moment.minute, moment.second)


def _utc_offset(offset: timedelta) -> str:
    """A UTC-OFFSET value as icalendar's vUTCOffset writes it: +HHMM, or +HHMMSS."""
    sign = "-" if offset < timedelta(0) else "+"
    offset = abs(offset)
    hours, minutes, seconds = offset.days * 24 + offset.seconds // 3600, offset.seconds % 3600 // 60, offset.seconds % 60
    return f"{sign}{hours:02}{minutes:02}{seconds:02}" if seconds else f"{sign}{hours:02}{minutes:02}"


def _icalendar_vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    """icalendar's VTIMEZONE for a TZID that is not a zone name (its provider's lookup)."""
    from icalendar import Timezone
    from icalendar.timezone import tzp

    zone = tzp.timezone(tzid)
    try:
        if zone is None:
            raise ValueError(tzid)
        first, last = date(first_year - 1, 1, 1), date(last_year + 2, 1, 1)
        component = Timezone.from_tzinfo(_Bounded(zone, last), tzid, first, last)
    except (ValueError, OverflowError):  # an unknown zone or impossible years: no VTIMEZONE, as before
        return b""
    return b"\r\n".join(fold(line) for line in component.content_lines() if line) + b"\r\n"


class _Bounded(tzinfo):
    """ZONE, raising OverflowError from 65 days after LAST on, as zoneinfo does past
    the year 9999. icalendar's from_tzinfo walks each stretch of one offset to its
    end in steps of at most 64 days, stopping at that error: for a zone without
    transitions ahead (Asia/Tokyo) it walked to the year 9999 (~10 ms a zone). Any
    stretch reaching beyond LAST + 64 days is the last one it records either way, so
    the VTIMEZONE is byte for byte the same (checked over every zone in tests)."""

    def __init__(self, zone: tzinfo, last: date) -> None:
        self.zone = zone
        self.cap = datetime(last.year, last.month, last.day, tzinfo=self) + timedelta(days=65)

    def utcoffset(self, moment: datetime | None) -> timedelta | None:
        if moment is not None and moment.tzinfo is self and moment >= self.cap:
            raise OverflowError("beyond the calendar's years")
        return self.zone.utcoffset(moment)

    def dst(self, moment: datetime | None) -> timedelta | None:
        return self.zone.dst(moment)

    def tzname(self, moment: datetime | None) -> str | None:
        return self.zone.tzname(moment)
