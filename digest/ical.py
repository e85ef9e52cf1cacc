"""RFC 5545 calendars of events (one per event and one per week) with the icalendar library."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from zoneinfo import ZoneInfo

from icalendar import Calendar, Event as VEvent, Timezone

from digest import __version__
from digest.config import Config
from digest.models import Event

PRODID = f"-//digest//digest {__version__}//EN"


def _portable(moment: datetime) -> datetime:
    """Named zones keep their TZID (with a VTIMEZONE); fixed offsets become UTC."""
    return moment if isinstance(moment.tzinfo, ZoneInfo) else moment.astimezone(timezone.utc)


def _vevent(event: Event, sender_address: str, stamp: datetime) -> VEvent:
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
    return item


def calendar_bytes(events: list[Event] | tuple[Event, ...], config: Config, stamp: datetime, name: str) -> bytes:
    """A VCALENDAR with the dated events, their VTIMEZONEs, CRLF and folded lines."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", name)
    utc_stamp = stamp.astimezone(timezone.utc)
    parts = [_vevent_ical(event, config.sender_address, utc_stamp) for event in events
             if event.start is not None and event.status in ("scheduled", "cancelled", "postponed")]
    tzids = sorted(set().union(*(used for _, used in parts)))
    years = [moment.year for event in events for moment in (event.start, event.end) if isinstance(moment, date)]
    # Byte for byte what cal.add_component(...) for each, cal.add_missing_timezones()
    # and cal.to_ical() give (VTIMEZONEs first, in a stable order), but every VEVENT and
    # VTIMEZONE is serialised once: an event is in its own .ics and the week's.
    head = b"\r\n".join(fold(line) for line in cal.content_lines() if line) + b"\r\n"
    end = head.rindex(b"END:VCALENDAR")
    zones = b"".join(_vtimezone(tzid, min(years), max(years)) for tzid in tzids) if tzids else b""
    return head[:end] + zones + b"".join(data for data, _ in parts) + head[end:]


@lru_cache(maxsize=4096)
def _vevent_ical(event: Event, sender_address: str, stamp: datetime) -> tuple[bytes, frozenset[str]]:
    """One VEVENT's bytes and the TZIDs it uses (UTC needs no VTIMEZONE)."""
    holder = Calendar()
    item = _vevent(event, sender_address, stamp)
    holder.add_component(item)
    # icalendar builds and escapes the content lines; they are folded here because its
    # character-by-character fold took ~70% of a year's build (same rules: at most
    # 75 octets a line, never inside a UTF-8 character or a backslash escape).
    data = b"\r\n".join(fold(line) for line in item.content_lines() if line) + b"\r\n"
    return data, frozenset(holder.get_used_tzids() - {"UTC"})


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


@lru_cache(maxsize=None)
def _vtimezone(tzid: str, first_year: int, last_year: int) -> bytes:
    # The rules of the years the calendar's events span (plus a year each side), not
    # icalendar's default 1970-2038: ~60 transitions x 2 lines per zone and ~50 ms to
    # build became a few lines and ~1 ms.
    try:
        zone = Timezone.from_tzid(tzid, first_date=date(first_year - 1, 1, 1), last_date=date(last_year + 2, 1, 1))
    except ValueError:  # a zone icalendar does not know gets no VTIMEZONE, as before
        return b""
    return b"\r\n".join(fold(line) for line in zone.content_lines() if line) + b"\r\n"
