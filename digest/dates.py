"""Dates and time zones: reading entry values, mapping abbreviations, showing times."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


#: Abbreviation -> (IANA zone, True if the abbreviation names daylight time,
#: False if standard time, None if it names neither, e.g. "ET").
ABBREVIATIONS: dict[str, tuple[str, bool | None]] = {
    "EST": ("America/New_York", False), "EDT": ("America/New_York", True), "ET": ("America/New_York", None),
    "CST": ("America/Chicago", False), "CDT": ("America/Chicago", True), "CT": ("America/Chicago", None),
    "MST": ("America/Denver", False), "MDT": ("America/Denver", True), "MT": ("America/Denver", None),
    "PST": ("America/Los_Angeles", False), "PDT": ("America/Los_Angeles", True), "PT": ("America/Los_Angeles", None),
    "AKST": ("America/Anchorage", False), "AKDT": ("America/Anchorage", True),
    "AST": ("America/Halifax", False), "ADT": ("America/Halifax", True),
    "HST": ("Pacific/Honolulu", False),
    "GMT": ("UTC", None), "UTC": ("UTC", None), "Z": ("UTC", None),
    "BST": ("Europe/London", True),
    "WET": ("Europe/Lisbon", False), "WEST": ("Europe/Lisbon", True),
    "CET": ("Europe/Paris", False), "CEST": ("Europe/Paris", True),
    "EET": ("Europe/Athens", False), "EEST": ("Europe/Athens", True),
    "MSK": ("Europe/Moscow", None),
    "EAT": ("Africa/Nairobi", None), "CAT": ("Africa/Maputo", None), "WAT": ("Africa/Lagos", None),
    "SAST": ("Africa/Johannesburg", None),
    "PKT": ("Asia/Karachi", None), "IST": ("Asia/Kolkata", None), "SGT": ("Asia/Singapore", None),
    "HKT": ("Asia/Hong_Kong", None), "JST": ("Asia/Tokyo", None), "KST": ("Asia/Seoul", None),
    "AEST": ("Australia/Sydney", False), "AEDT": ("Australia/Sydney", True),
    "NZST": ("Pacific/Auckland", False), "NZDT": ("Pacific/Auckland", True),
    "BRT": ("America/Sao_Paulo", None), "ART": ("America/Argentina/Buenos_Aires", None),
}

_SHAPE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
EXAMPLE = "expected e.g. 2020-10-07, 2020-10-07 09:00 or 2020-10-07T09:00:00-04:00"


class DateValueError(ValueError):
    """A date value that cannot be read; the message says why."""


def parse_when(value: object) -> date | datetime:
    """Read an entry's date value: a date, a naive local datetime or an aware datetime."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise DateValueError(f"{value!r} is not a date")
    text = value.strip()
    if not _SHAPE.fullmatch(text):
        raise DateValueError(f"could not read {value!r} as a date")
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        from dateutil.parser import isoparse  # imported only when an entry is parsed

        parsed = isoparse(text)
    except ValueError as exc:
        raise DateValueError(f"{value!r} is not a real date or time: {exc}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.replace(tzinfo=timezone(parsed.utcoffset() or timedelta(0)))
    return parsed


def parse_day(value: object) -> date:
    """Read a value that must be a day (a datetime is cut to its date)."""
    when = parse_when(value)
    return when.date() if isinstance(when, datetime) else when


def resolve_zone(name: str, on: date | None) -> tuple[tzinfo, str, str | None]:
    """Map a time zone name or abbreviation to (zone, IANA name, warning or None)."""
    if not isinstance(name, str) or not name.strip():
        raise DateValueError("time zone is empty")
    cleaned = name.strip()
    abbreviation = ABBREVIATIONS.get(cleaned.upper().strip("()"))
    if abbreviation is None:
        try:
            return ZoneInfo(cleaned), cleaned, None
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise DateValueError(f"unknown time zone {name!r}") from None
    iana, daylight = abbreviation
    zone = ZoneInfo(iana)
    warning = None
    if daylight is not None and on is not None:
        local = datetime.combine(on, time(12), zone)
        actual = bool(local.dst())
        if actual != daylight:
            state = "daylight-saving" if actual else "standard"
            warning = (
                f"{cleaned} given for a date in {state} time: read as {iana} "
                f"({utc_offset_label(local)} on {on.isoformat()})"
            )
    return zone, iana, warning


def utc_offset_label(moment: datetime) -> str:
    """'UTC−4', 'UTC+5:30', 'UTC' for an aware datetime (with a real minus sign)."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "\u2212"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zone_label(zone_name: str | None) -> str:
    """'New York time' for America/New_York; '' for UTC or fixed offsets."""
    if not zone_name or zone_name in ("UTC", "Etc/UTC") or "/" not in zone_name:
        return ""
    city = zone_name.rsplit("/", 1)[-1].replace("_", " ")
    return f"{city} time"


def day_label(day: date) -> str:
    """'Wednesday 7 October 2020' (English, independent of the locale)."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def short_day_label(day: date) -> str:
    """'Wed 7 Oct'."""
    return f"{_WEEKDAYS[day.weekday()][:3]} {day.day} {_MONTHS[day.month - 1][:3]}"


def range_label(first: date, last: date) -> str:
    """'5–11 October 2020', '28 September – 4 October 2020', …"""
    if first.year != last.year:
        return f"{first.day} {_MONTHS[first.month - 1]} {first.year} \u2013 {last.day} {_MONTHS[last.month - 1]} {last.year}"
    if first.month != last.month:
        return f"{first.day} {_MONTHS[first.month - 1]} \u2013 {last.day} {_MONTHS[last.month - 1]} {last.year}"
    return f"{first.day}\u2013{last.day} {_MONTHS[first.month - 1]} {first.year}"


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
