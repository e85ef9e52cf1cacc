"""RFC 5545 calendars of events (one per event and one per week) with the icalendar library."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from zoneinfo import ZoneInfo

from icalendar import Calendar, Event as VEvent

from digest import __version__
from digest.config import Config
from digest.models import Event

PRODID = f"-//digest//digest {__version__}//EN"


def _portable(moment: datetime) -> datetime:
    """Named zones keep their TZID (with a VTIMEZONE); fixed offsets become UTC."""
    return moment if isinstance(moment.tzinfo, ZoneInfo) else moment.astimezone(timezone.utc)


def _vevent(event: Event, config: Config, stamp: datetime) -> VEvent:
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
    item.add("organizer", "mailto:" + config.sender_address, parameters={"CN": event.organizer})
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
    for event in events:
        if event.start is not None and event.status in ("scheduled", "cancelled", "postponed"):
            cal.add_component(_vevent(event, config, stamp.astimezone(timezone.utc)))
    cal.add_missing_timezones()
    return cal.to_ical()
