"""The values that flow between the stages: frozen, built once, never mutated."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

STATUSES = ("scheduled", "draft", "tba", "ongoing", "cancelled", "postponed")
DATED = ("scheduled", "cancelled", "postponed")


@dataclass(frozen=True)
class Speaker:
    name: str
    role: str = ""


@dataclass(frozen=True)
class Inline:
    """A run of text in a Markdown body; href when it is a link."""

    text: str
    href: str | None = None


@dataclass(frozen=True)
class Block:
    """A paragraph ("p"), list item ("li"), quote ("quote") or code block ("code")."""

    kind: str
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Event:
    """One validated entry."""

    path: str
    slug: str
    uid: str
    title: str
    organizer: str
    status: str
    start: datetime | date | None
    end: datetime | date | None
    all_day: bool
    zone_name: str | None
    location: str = ""
    online: bool | None = None
    register: str = ""
    register_by: date | None = None
    speakers: tuple[Speaker, ...] = ()
    tags: tuple[str, ...] = ()
    until: date | None = None
    summary: str = ""
    body_html: str = ""
    blocks: tuple[Block, ...] = ()
    content_hash: str = ""

    @property
    def dated(self) -> bool:
        return self.status in DATED and self.start is not None

    def first_day(self, zone: ZoneInfo) -> date | None:
        return self._days(zone)[0]

    def last_day(self, zone: ZoneInfo) -> date | None:
        return self._days(zone)[1]

    def _days(self, zone: ZoneInfo) -> tuple[date | None, date | None, tuple]:
        """(first day, last day, sort key) in ZONE, worked out once per zone: a year's
        build asks ~80,000 times. Kept outside the fields: equality, hashing and repr ignore it."""
        memo = self._memo()
        if memo[0] is zone:
            return memo[1]
        first = self._first_day(zone)
        moment = self.start.astimezone(zone).time() if isinstance(self.start, datetime) else None
        key = (first or date.max, moment is not None, moment or datetime.min.time(), self.title.casefold(), self.path)
        days = (first, self._last_day(zone), key)
        memo[0], memo[1] = zone, days
        return days

    def _memo(self) -> list:
        """[zone, days in it, hash]: what _days and __hash__ work out once. One list in one
        extra key (a frozen dataclass: not through __setattr__); a second key would grow
        every event's __dict__ to its next size (~1.4 KB each)."""
        memo = self.__dict__.get("_memos")
        if memo is None:
            memo = self.__dict__["_memos"] = [None, None, None]
        return memo

    def _first_day(self, zone: ZoneInfo) -> date | None:
        if self.start is None:
            return None
        if isinstance(self.start, datetime):
            return self.start.astimezone(zone).date()
        return self.start

    def _last_day(self, zone: ZoneInfo) -> date | None:
        end = self.end if self.end is not None else self.start
        if end is None:
            return None
        if isinstance(end, datetime):
            # An event ending at midnight does not touch the next day.
            local = end.astimezone(zone)
            if local.time() == datetime.min.time() and end != self.start:
                return local.date() - timedelta(days=1)
            return local.date()
        return end

    def __hash__(self) -> int:
        """The dataclass's hash (of every field but the body's: see _HASHED), worked out
        once: events key caches and sets, and an event has ~20 fields. Kept outside the
        fields (see _memo)."""
        memo = self._memo()
        if memo[2] is None:
            memo[2] = hash(tuple(getattr(self, name) for name in _HASHED))
        return memo[2]

    def __getstate__(self) -> dict:
        """The fields, with the body (its HTML and text blocks) packed into one pickle of
        its own, unpacked when first asked for (__getattr__): a build loads a year of
        events to plan and date them, and renders the bodies of one week's. Their objects
        were two thirds of unpickling a year's events (~11 ms of ~17). The memo's days
        travel (a year's took ~8 ms to work out; its zone is the same ZoneInfo once
        unpickled), its hash does not: a string's hash differs from process to process."""
        # Of a copy: another thread may be unpacking the body meanwhile.
        state = {k: v for k, v in dict(self.__dict__).items() if k != "_memos" and k not in _BODY}
        if "_body" not in state:
            state["_body"] = pickle.dumps((self.body_html, self.blocks), pickle.HIGHEST_PROTOCOL)
        memo = self.__dict__.get("_memos")
        if memo is not None and memo[0] is not None:
            state["_memos"] = [memo[0], memo[1], None]
        return state

    def __getattr__(self, name: str) -> Any:
        """The body's fields of an event unpickled without them (see __getstate__)."""
        if name in _BODY:
            memo = self.__dict__
            packed = memo.get("_body")
            if packed is not None:
                body_html, blocks = pickle.loads(packed)
                memo.setdefault("body_html", body_html)
                memo.setdefault("blocks", blocks)
                memo.pop("_body", None)
            if name in memo:  # unpacked here, or by another thread meanwhile
                return memo[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def sort_key(self, zone: ZoneInfo) -> tuple:
        """Day, then time of day (all-day first), then title and path."""
        return self._days(zone)[2]


_EVENT_FIELDS = tuple(f.name for f in fields(Event))
#: The fields an event's body is made of (see Event.__getstate__). Their defaults live
#: in __init__ alone: a class attribute would answer for an unpacked body's fields
#: before Event.__getattr__ is asked.
_BODY = ("body_html", "blocks")
for _name in _BODY:
    delattr(Event, _name)
#: What Event.__hash__ hashes: every field but the body's, which the entry's content
#: (content_hash) decides. Equal events still hash alike; no body is unpacked to hash.
_HASHED = tuple(name for name in _EVENT_FIELDS if name not in _BODY)


@dataclass(frozen=True)
class OrganizerGroup:
    name: str
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Edition:
    """One week's digest, before rendering."""

    week: str  # "2020-W41"
    first: date
    last: date
    groups: tuple[OrganizerGroup, ...]
    deadlines: tuple[Event, ...]
    ongoing: tuple[Event, ...]
    tba: tuple[Event, ...]
    ahead: tuple[Event, ...]
    previous: str | None = None
    next: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(e for g in self.groups for e in g.events)

    @property
    def empty(self) -> bool:
        return not self.groups and not self.deadlines
