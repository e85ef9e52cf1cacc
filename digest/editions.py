"""Grouping events into weekly editions."""

from __future__ import annotations

import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo
from functools import lru_cache

from digest.config import Config
from digest.models import Edition, Event, OrganizerGroup

_WEEK = re.compile(r"(\d{4})-W(\d{2})")


class WeekError(ValueError):
    """A --week value that names no week."""


def week_label(day: date, config: Config) -> str:
    """The label of the edition week holding DAY: the ISO week of the Monday inside it."""
    return _label(day, config.week_start_index)


@lru_cache(maxsize=8192)
def _label(day: date, week_start: int) -> str:
    first = day - timedelta(days=(day.weekday() - week_start) % 7)
    monday = first + timedelta(days=(0 - first.weekday()) % 7)
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(label: str, config: Config) -> tuple[date, date]:
    """First and last day of the edition week LABEL (e.g. '2020-W41')."""
    match = _WEEK.fullmatch(label)
    if not match:
        raise WeekError(f"{label!r} is not a week", "write it as 2020-W41, or use 'this' or 'next'")
    try:
        monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        raise WeekError(f"{label!r} does not exist", "ISO years have 52 or 53 weeks") from None
    first = monday - timedelta(days=(0 - config.week_start_index) % 7)
    return first, first + timedelta(days=6)


def resolve_week(value: str, today: date, config: Config) -> str:
    """'this', 'next', 'last' or an explicit label -> a week label."""
    shift = {"this": 0, "next": 7, "last": -7, "previous": -7}.get(value.lower())
    if shift is not None:
        return week_label(today + timedelta(days=shift), config)
    week_bounds(value, config)
    return value


def _touches(event: Event, first: date, last: date, zone: ZoneInfo) -> bool:
    start, end = event.first_day(zone), event.last_day(zone)
    return start is not None and end is not None and start <= last and end >= first


def _shown_between(event: Event, first: date, last: date, zone: ZoneInfo) -> bool:
    """Ongoing and tba items show from their start (if any) until `until` (if any)."""
    begins = event.first_day(zone) if event.status == "ongoing" else None
    return (begins is None or begins <= last) and (event.until is None or event.until >= first)


def weeks_with_content(events: tuple[Event, ...], config: Config) -> list[str]:
    """Labels of every week that has a dated event or a deadline, in order.

    With empty_weeks = "short", the weeks between them are included too.
    """
    labels: set[str] = set()
    for event in events:
        if event.dated:
            day, last = event.first_day(config.zone), event.last_day(config.zone)
            assert day is not None and last is not None
            last = min(last, day + timedelta(days=366))  # a year-long event does not make 52 editions
            while day <= last:
                labels.add(week_label(day, config))
                day += timedelta(days=7)
            labels.add(week_label(last, config))
        if event.register_by and event.status in ("scheduled", "postponed"):
            labels.add(week_label(event.register_by, config))
    ordered = sorted(labels)
    if config.empty_weeks == "short" and ordered:
        first, _ = week_bounds(ordered[0], config)
        end, _ = week_bounds(ordered[-1], config)
        ordered = []
        while first <= end:
            ordered.append(week_label(first, config))
            first += timedelta(days=7)
    return ordered


def make_edition(label: str, events: tuple[Event, ...], config: Config,
                 all_weeks: list[str] | None = None) -> Edition:
    """Everything one week's digest shows."""
    first, last = week_bounds(label, config)
    zone = config.zone
    this_week = sorted((e for e in events if e.dated and _touches(e, first, last, zone)),
                       key=lambda e: e.sort_key(zone))
    order: dict[str, list[Event]] = {}
    for event in this_week:
        order.setdefault(event.organizer, []).append(event)
    groups = tuple(OrganizerGroup(name, tuple(items)) for name, items in order.items())
    deadlines = tuple(sorted(
        (e for e in events if e.register_by and first <= e.register_by <= last and e.status == "scheduled"),
        key=lambda e: (e.register_by, e.sort_key(zone))))
    ongoing = tuple(sorted((e for e in events if e.status == "ongoing" and _shown_between(e, first, last, zone)),
                           key=lambda e: (e.organizer.casefold(), e.title.casefold(), e.path)))
    tba = tuple(sorted(
        (e for e in events if (e.status == "tba" or (e.status == "postponed" and e.start is None))
         and _shown_between(e, first, last, zone)),
        key=lambda e: (e.organizer.casefold(), e.title.casefold(), e.path)))
    horizon = last + timedelta(days=7 * config.ahead_weeks)
    ahead = tuple(sorted(
        (e for e in events if e.dated and e.status != "cancelled"
         and last < (e.first_day(zone) or date.min) <= horizon),
        key=lambda e: e.sort_key(zone)))[: config.ahead_limit]
    previous = following = None
    if all_weeks and label in all_weeks:
        index = all_weeks.index(label)
        previous = all_weeks[index - 1] if index > 0 else None
        following = all_weeks[index + 1] if index + 1 < len(all_weeks) else None
    return Edition(week=label, first=first, last=last, groups=groups, deadlines=deadlines,
                   ongoing=ongoing, tba=tba, ahead=ahead, previous=previous, next=following)
