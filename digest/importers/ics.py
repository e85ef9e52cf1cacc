"""iCalendar (RFC 5545) feeds → entry drafts, with the icalendar library.

Times keep their zone: IANA TZIDs as they are, Outlook's Windows names and
"(UTC-03:00) Brasília"-style labels mapped to IANA when the offsets agree, else the
VTIMEZONE's offset is written as an ISO time with offset. Recurring events (RRULE,
RDATE, EXDATE, RECURRENCE-ID) are expanded with dateutil's rrule within a window.
A feed that cannot be read fails with the line to look at; nothing is written.
"""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import icalendar
from dateutil.rrule import rruleset, rrulestr

from digest.importers import Draft, DraftBuilder, import_error
from digest.importers.listing import _escape, _shorten
from digest.links import link_problem

MAX_FEED_BYTES = 20 * 1024 * 1024
MAX_INSTANCES = 500
DEFAULT_SPAN = timedelta(days=365)
_UTC = ZoneInfo("UTC")

#: Outlook display labels (the part after "(UTC±hh:mm) ") whose cities are not IANA names.
LABELS = {
    "brasilia": "America/Sao_Paulo", "eastern time (us & canada)": "America/New_York",
    "central time (us & canada)": "America/Chicago", "mountain time (us & canada)": "America/Denver",
    "pacific time (us & canada)": "America/Los_Angeles", "coordinated universal time": "UTC",
    "greenwich mean time": "Europe/London", "new delhi": "Asia/Kolkata", "beijing": "Asia/Shanghai",
    "canberra": "Australia/Sydney", "wellington": "Pacific/Auckland", "osaka": "Asia/Tokyo",
}


@dataclass(frozen=True)
class Window:
    """Which days to import; None ends are open (single events) or defaulted (series)."""

    first: date | None = None
    last: date | None = None


@dataclass
class _Scanned:
    """One component of the feed as the line scanner saw it."""

    name: str
    line: int
    props: dict[str, list[int]] = field(default_factory=dict)


# --- reading the source --------------------------------------------------------------

def read_source(source: str, opener: Callable[..., Any] = urllib.request.urlopen) -> tuple[bytes, str | None]:
    """The bytes of SOURCE (a file path or an https:// URL) and the base URL for relative links."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.IGNORECASE):
        scheme = urlsplit(source).scheme.lower()
        if scheme not in ("https", "http"):
            raise import_error(source, f"cannot fetch {scheme}:// addresses", hint="give an https:// URL or a file")
        request = urllib.request.Request(source, headers={"User-Agent": "digest-import/0.1"})
        try:
            with opener(request, timeout=30) as response:
                data = response.read(MAX_FEED_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise import_error(source, f"the server answered {exc.code} {exc.reason}",
                               hint="check the address in a browser") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise import_error(source, f"could not fetch the feed: {reason}",
                               hint="check the address and the network") from None
        if len(data) > MAX_FEED_BYTES:
            raise import_error(source, f"the feed is larger than {MAX_FEED_BYTES // 2**20} MiB")
        return data, source
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise import_error(source, "no such file", hint="check the path") from None
    except OSError as exc:
        raise import_error(source, f"cannot be read: {exc.strerror}") from None
    return data, None


def unfold(data: bytes, source: str) -> list[tuple[int, str]]:
    """(line number, text) of each content line, unfolded as bytes first.

    RFC 5545 folds at 75 octets, which may split a UTF-8 character: the bytes are
    joined before decoding, and a decoding error names the line it is on.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    logical: list[tuple[int, bytes]] = []
    for number, line in enumerate(re.split(rb"\r\n|\n|\r", data), 1):
        if line[:1] in (b" ", b"\t") and logical:
            start, previous = logical[-1]
            logical[-1] = (start, previous + line[1:])
        elif line.strip():
            logical.append((number, line))
    out = []
    for number, line in logical:
        try:
            out.append((number, line.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise import_error(source, f"not UTF-8 text (byte 0x{line[exc.start]:02x})", number,
                               "RFC 5545 calendars are UTF-8; re-export the feed") from None
    return out


# --- the line scanner: structure and line numbers ---------------------------------------

_NAME = re.compile(r"[A-Za-z0-9-]+")


def _split_content_line(text: str) -> tuple[str, str] | None:
    """(NAME, value) of 'NAME;PARAM="a:b":value', or None when it is not a content line."""
    m = _NAME.match(text)
    if not m or m.end() >= len(text) or text[m.end()] not in ";:":
        return None
    quoted = False
    for index in range(m.end(), len(text)):
        ch = text[index]
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return m.group(0).upper(), text[index + 1:]
    return None


def scan(logical: list[tuple[int, str]], source: str) -> list[_Scanned]:
    """Check the feed's structure line by line; the components, with their lines, in order."""
    if not logical:
        raise import_error(source, "the file is empty", hint="export the calendar again")
    first_line, first = logical[0]
    if first.strip().upper() != "BEGIN:VCALENDAR":
        shown = first.strip()[:60]
        raise import_error(source, f"not an iCalendar file: it starts with {shown!r}", first_line,
                           "an .ics feed starts with BEGIN:VCALENDAR; check the file or the URL")
    stack: list[_Scanned] = []
    found: list[_Scanned] = []
    for number, line in logical:
        parts = _split_content_line(line)
        if parts is None:
            raise import_error(source, f"cannot read {line.strip()[:60]!r}", number,
                               "every line must look like NAME:value (or NAME;PARAM=x:value)")
        name, value = parts
        if name == "BEGIN":
            component = _Scanned(value.strip().upper(), number)
            stack.append(component)
            found.append(component)
        elif name == "END":
            if not stack:
                raise import_error(source, f"END:{value.strip()} without a BEGIN", number)
            if stack[-1].name != value.strip().upper():
                raise import_error(source, f"END:{value.strip()} closes BEGIN:{stack[-1].name} "
                                   f"(line {stack[-1].line})", number, "the file is damaged or cut together")
            stack.pop()
            if not stack and number != logical[-1][0]:
                following = next(n for n, _ in logical if n > number)
                raise import_error(source, "text after END:VCALENDAR", following, "remove it")
        elif not stack:
            raise import_error(source, f"{name} outside BEGIN:VCALENDAR … END:VCALENDAR", number)
        else:
            stack[-1].props.setdefault(name, []).append(number)
    if stack:
        raise import_error(source, f"BEGIN:{stack[-1].name} is never closed (the file may be cut off)",
                           stack[-1].line, "download or export the feed again")
    return found


# --- time zones --------------------------------------------------------------------------

def _zone_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for key in sorted(available_timezones()):
        city = key.rsplit("/", 1)[-1].replace("_", " ").casefold()
        names.setdefault(city, key)
    return names


_CITIES: dict[str, str] | None = None


def _fold(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold().strip()


def iana_for(tzid: str) -> str | None:
    """An IANA zone for a TZID: itself, an Outlook/Windows name, or a '(UTC-03:00) Brasília' label."""
    global _CITIES
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    name = tzid.strip().strip('"')
    try:
        ZoneInfo(name)
        return name
    except (ZoneInfoNotFoundError, ValueError):
        pass
    if name in WINDOWS_TO_OLSON:
        return WINDOWS_TO_OLSON[name]
    label = re.sub(r"^\((?:UTC|GMT)(?:[+-]\d{1,2}:\d{2})?\)\s*", "", name)
    folded = _fold(label)
    if folded in LABELS:
        return LABELS[folded]
    if _CITIES is None:
        _CITIES = _zone_names()
    for city in re.split(r",|/| and ", label):
        key = _fold(city)
        if key in LABELS:
            return LABELS[key]
        if key in _CITIES:
            return _CITIES[key]
    return None


@dataclass
class _Zones:
    """How this feed's times are written: the calendar's own zone for UTC and floating times."""

    calendar_zone: str | None
    notes: list[tuple[str, str]] = field(default_factory=list)


def _represent(moment: datetime, tzid: str | None, zones: _Zones, d: DraftBuilder) -> tuple[str, str | None]:
    """(entry value, timezone field or None) for an instant or a floating time."""
    if moment.second or moment.microsecond:
        d.doubt("start", f"the feed's time has seconds ({moment:%H:%M:%S}); written as {moment:%H:%M}")
    if moment.tzinfo is None:
        if zones.calendar_zone:
            d.doubt("timezone", f"floating time (no zone in the feed): read in the calendar's zone {zones.calendar_zone}")
            return moment.strftime("%Y-%m-%d %H:%M"), zones.calendar_zone
        d.doubt("timezone", "floating time (no zone in the feed): the newsletter's time zone applies")
        return moment.strftime("%Y-%m-%d %H:%M"), None
    key = getattr(moment.tzinfo, "key", None)
    if key in ("UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Zulu", "Zulu", "UCT", "Etc/UCT") or moment.utcoffset() == timedelta(0) and key is None and tzid is None:
        target = zones.calendar_zone or "UTC"
        local = moment.astimezone(ZoneInfo(target))
        return local.strftime("%Y-%m-%d %H:%M"), target
    if key:
        return moment.strftime("%Y-%m-%d %H:%M"), key
    # A zone built from the feed's own VTIMEZONE: map its name when the offsets agree.
    name = tzid or str(getattr(moment.tzinfo, "_tzid", "") or moment.tzname() or "")
    iana = iana_for(name) if name else None
    if iana:
        local = moment.astimezone(ZoneInfo(iana))
        if local.utcoffset() == moment.utcoffset():
            if iana != name:
                d.doubt("timezone", f"the feed's zone {name!r} written as {iana}")
            return local.strftime("%Y-%m-%d %H:%M"), iana
    d.doubt("timezone", f"the feed's zone {name!r} is not an IANA zone: written with its UTC offset "
            f"({moment:%z}); set 'timezone:' to the right zone")
    return moment.replace(second=0, microsecond=0).isoformat(), None


# --- descriptions --------------------------------------------------------------------------

_HTML_TAGS = {"a", "b", "br", "div", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "i", "img", "li", "ol",
              "p", "span", "strong", "table", "td", "th", "tr", "u", "ul", "html", "body", "hr", "blockquote"}
_BLOCK_TAGS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "tr", "blockquote", "hr"}


class _Detector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += tag in _HTML_TAGS

    handle_startendtag = handle_starttag


class _ToMarkdown(HTMLParser):
    """HTML → Markdown text: paragraphs, list items, safe links; everything else as text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.skip = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def _flush(self, prefix: str = "") -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.blocks.append(prefix + text)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag == "br":
            self._flush()
        elif tag == "li":
            self._flush()
            self.current.append("\0li")
        elif tag in _BLOCK_TAGS:
            self._flush()
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self.href = href if href and link_problem(href) is None else None
            self.link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag == "a":
            text = " ".join("".join(self.link_text).split())
            if self.href and text:
                label = text.replace("[", "(").replace("]", ")")
                self.current.append(f"[{label}]({self.href})" if text != self.href else f"<{self.href}>")
            else:
                self.current.append(text)
            self.href, self.link_text = None, []
        elif tag in _BLOCK_TAGS or tag == "li":
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        (self.link_text if self.href is not None else self.current).append(data)

    def markdown(self) -> str:
        self._flush()
        out: list[str] = []
        for block in self.blocks:
            if block.startswith("\0li"):
                item = "- " + _escape(block[3:].strip())
                if out and out[-1].startswith("- "):
                    out[-1] += "\n" + item
                else:
                    out.append(item)
            else:
                out.append(_escape(block.replace("\0li", "")))
        return "\n\n".join(out)


def description_markdown(text: str) -> tuple[str, bool]:
    """A DESCRIPTION as Markdown, and whether it held HTML (parsed, never regex-stripped)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    detector = _Detector()
    detector.feed(text)
    detector.close()
    if detector.tags:
        parser = _ToMarkdown()
        parser.feed(text)
        parser.close()
        return parser.markdown(), True
    if re.search(r"&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,6});", text):
        text = html.unescape(text)
    out: list[str] = []
    for line in text.split("\n"):
        line = " ".join(line.split())
        if not line:
            continue
        if re.match(r"^[-*•]\s", line):
            item = "- " + _escape(line[1:].strip())
            if out and out[-1].startswith("- "):
                out[-1] += "\n" + item
                continue
            out.append(item)
        else:
            out.append(_escape(line))
    return "\n\n".join(out), False


# --- the feed ----------------------------------------------------------------------------

def parse_ics(data: bytes | str, source: str, *, canonical: Callable[[str], str] = lambda n: n,
              window: Window = Window(), base_url: str | None = None,
              organizer: str | None = None) -> tuple[list[Draft], list[str]]:
    """Every event of the feed (recurring ones expanded in WINDOW) as Drafts, and notes on the feed."""
    logical = unfold(data if isinstance(data, bytes) else data.encode("utf-8"), source)
    scanned = scan(logical, source)
    text = "".join(line + "\r\n" for _, line in logical)
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise import_error(source, f"the icalendar library cannot read it: {exc}"[:300],
                           hint="check the file against RFC 5545") from None
    if isinstance(calendar, list):
        calendar = calendar[0]
    lines_of = [s for s in scanned if s.name == "VEVENT"]
    events = list(calendar.walk("VEVENT"))
    feed_notes: list[str] = []
    zone = str(calendar.get("X-WR-TIMEZONE", "") or "").strip()
    calendar_zone = None
    if zone:
        try:
            ZoneInfo(zone)
            calendar_zone = None if zone in ("UTC", "Etc/UTC", "Etc/GMT", "GMT") else zone
        except (ZoneInfoNotFoundError, ValueError):
            feed_notes.append(f"X-WR-TIMEZONE {zone!r} is not an IANA zone; ignored")
    zones = _Zones(calendar_zone)
    calendar_name = " ".join(str(calendar.get("X-WR-CALNAME", "") or "").split())
    ctx = _Context(source, canonical, zones, calendar_name, base_url, organizer)

    # Check every event before expanding any: a broken date anywhere stops the import.
    for index, event in enumerate(events):
        scanned_event = lines_of[index] if index < len(lines_of) else _Scanned("VEVENT", 0)
        for name, message in getattr(event, "errors", []) or []:
            prop = (name or "").upper()
            line = (scanned_event.props.get(prop) or [scanned_event.line])[0]
            if prop in ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID") or not prop:
                raise import_error(source, f"cannot be read: {message}" if prop else f"a line cannot be read: {message}", line,
                                   "fix the value (e.g. DTSTART:20201007T090000Z) or re-export the feed",
                                   prop or None)
            feed_notes.append(f"line {line}: {prop} ignored ({message})")
        if "DTSTART" not in event:
            raise import_error(source, f"event {_label(event)} has no DTSTART", scanned_event.line,
                               "every event needs a start (DTSTART)", "DTSTART")

    masters: dict[str, Any] = {}
    overrides: dict[str, list[tuple[Any, int]]] = {}
    singles: list[tuple[Any, int]] = []
    empty_rules: list[int] = []
    for index, event in enumerate(events):
        line = lines_of[index].line if index < len(lines_of) else 0
        uid = str(event.get("UID", "") or "").strip()
        if "RECURRENCE-ID" in event and uid:
            overrides.setdefault(uid, []).append((event, line))
        elif _recurring(event) and (uid or f"line {line}") not in masters:
            masters[uid or f"line {line}"] = (event, line)
        else:
            if "RRULE" in event and not _recurring(event):
                empty_rules.append(line)
            singles.append((event, line))

    if empty_rules:
        shown = ", ".join(str(n) for n in empty_rules[:5]) + (", …" if len(empty_rules) > 5 else "")
        feed_notes.append(f"{len(empty_rules)} event(s) have an empty RRULE line (lines {shown}): "
                          "read as single events")
    drafts: list[Draft] = []
    for event, line in singles:
        if _private(event):
            feed_notes.append(f"line {line}: {_label(event)} skipped: CLASS:{event.get('CLASS')}")
            continue
        start = event.decoded("DTSTART")
        if _outside(start, window, explicit=True):
            continue
        drafts.append(ctx.draft(event, None, f"{source}, event at line {line}", None))
    for uid, (master, line) in masters.items():
        if _private(master):
            feed_notes.append(f"line {line}: {_label(master)} skipped: CLASS:{master.get('CLASS')}")
            continue
        mine = overrides.pop(uid, [])
        drafts.extend(_expand(master, line, mine, window, ctx, feed_notes))
    for uid, items in overrides.items():
        # Moved instances whose series is not in the feed: each is an event of its own.
        for event, line in items:
            if _private(event) or _outside(event.decoded("DTSTART"), window, explicit=True):
                continue
            rid = event.decoded("RECURRENCE-ID")
            drafts.append(ctx.draft(event, None, f"{source}, event at line {line}", _rid(rid)))
    drafts = _dedupe(drafts, feed_notes)
    drafts.sort(key=lambda dr: (str(dr.fields.get("start", "")), str(dr.fields.get("title", "")),
                                str(dr.fields.get("uid", ""))))
    return drafts, feed_notes


def _recurring(event: Any) -> bool:
    rules = event.get("RRULE")
    rules = rules if isinstance(rules, list) else [rules] if rules is not None else []
    return "RDATE" in event or any("FREQ" in rule for rule in rules)


def _label(event: Any) -> str:
    summary = " ".join(str(event.get("SUMMARY", "") or "").split())
    return repr(summary) if summary else "(no SUMMARY)"


def _private(event: Any) -> bool:
    return str(event.get("CLASS", "PUBLIC")).upper() in ("PRIVATE", "CONFIDENTIAL")


def _day(moment: date | datetime) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def _outside(moment: date | datetime, window: Window, explicit: bool) -> bool:
    day = _day(moment)
    return bool(window.first and day < window.first or window.last and day > window.last)


def _rid(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            return moment.strftime("%Y%m%dT%H%M%S")
        return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return moment.strftime("%Y%m%d")


def _dedupe(drafts: list[Draft], notes: list[str]) -> list[Draft]:
    """Drop a second event with the same title, organizer and start (the validator forbids it)."""
    seen: dict[tuple, str] = {}
    uids: set[str] = set()
    kept = []
    for draft in drafts:
        key = (str(draft.fields.get("title", "")).casefold(), str(draft.fields.get("organizer", "")).casefold(),
               str(draft.fields.get("start", "")), str(draft.fields.get("status", "scheduled")))
        if key in seen:
            notes.append(f"{draft.origin}: skipped, same title, organizer and start as {seen[key]}")
            continue
        if draft.uid and draft.uid in uids:
            notes.append(f"{draft.origin}: skipped, its UID {draft.uid!r} is used twice in the feed")
            continue
        seen[key] = draft.origin
        if draft.uid:
            uids.add(draft.uid)
        kept.append(draft)
    return kept


# --- recurrence ----------------------------------------------------------------------------

def _values(event: Any, name: str) -> list[Any]:
    """The .dt values of RDATE/EXDATE (a property may repeat and hold several values)."""
    raw = event.get(name)
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        for value in getattr(item, "dts", [item]):
            out.append(value.dt)
    return out


def _wall(moment: date | datetime, zone: tzinfo | None, master_is_day: bool, at: time) -> datetime:
    """MOMENT as a naive wall time in the series' zone (how dateutil's rrule counts)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is not None and zone is not None:
            moment = moment.astimezone(zone)
        return moment.replace(tzinfo=None)
    return datetime.combine(moment, time() if master_is_day else at)


def _expand(master: Any, line: int, overrides: list[tuple[Any, int]], window: Window, ctx: _Context,
            notes: list[str]) -> list[Draft]:
    source = ctx.source
    start = master.decoded("DTSTART")
    is_day = not isinstance(start, datetime)
    zone = start.tzinfo if isinstance(start, datetime) else None
    first = datetime.combine(start, time()) if is_day else start.replace(tzinfo=None)
    rules = master.get("RRULE")
    rules = rules if isinstance(rules, list) else [rules] if rules is not None else []
    rset = rruleset()
    rset.rdate(first)
    open_ended = False
    for rule in rules:
        spec = {k: v for k, v in rule.items()}
        if "FREQ" not in spec:
            ctx.feed_note(notes, f"line {line}: {_label(master)} has an empty RRULE; read as a single event")
            continue
        until = spec.pop("UNTIL", [None])[0]
        try:
            parsed = rrulestr(icalendar.vRecur(spec).to_ical().decode(), dtstart=first, ignoretz=True)
            if until is not None:
                parsed = parsed.replace(until=_wall(until, zone, is_day, time(23, 59, 59)), count=None)
        except (ValueError, TypeError) as exc:
            raise import_error(source, f"RRULE cannot be used: {exc}", line, "fix the rule or re-export the feed",
                               "RRULE") from None
        open_ended |= until is None and "COUNT" not in spec
        rset.rrule(parsed)
    at = first.time()
    periods: dict[datetime, datetime] = {}
    for value in _values(master, "RDATE"):
        if isinstance(value, tuple):
            begin, finish = value
            wall = _wall(begin, zone, is_day, at)
            periods[wall] = wall + finish if isinstance(finish, timedelta) else _wall(finish, zone, is_day, at)
            rset.rdate(wall)
        else:
            rset.rdate(_wall(value, zone, is_day, at))
    excluded_days: set[date] = set()
    for value in _values(master, "EXDATE"):
        if isinstance(value, datetime) or is_day:
            rset.exdate(_wall(value, zone, is_day, at))
        else:
            excluded_days.add(value)

    lo = window.first or first.date()
    hi = window.last or (lo + DEFAULT_SPAN)
    lo_dt, hi_dt = datetime.combine(lo, time.min), datetime.combine(hi, time.max)
    found: list[datetime] = []
    truncated = False
    for steps, occurrence in enumerate(rset):
        if occurrence > hi_dt or steps > 200_000:
            break
        if occurrence < lo_dt or occurrence.date() in excluded_days:
            continue
        if len(found) == MAX_INSTANCES:
            truncated = True
            break
        found.append(occurrence)
    if truncated:
        ctx.feed_note(notes, f"line {line}: {_label(master)}: only the first {MAX_INSTANCES} instances up to "
                      f"{found[-1]:%Y-%m-%d} were imported; narrow --from/--until")
    elif open_ended and window.last is None:
        ctx.feed_note(notes, f"line {line}: {_label(master)} repeats without end: instances up to {hi} imported "
                      "(pass --until to choose)")

    by_key: dict[str, tuple[Any, int]] = {}
    for event, override_line in overrides:
        by_key[_rid(event.decoded("RECURRENCE-ID"))] = (event, override_line)
    duration = _duration(master)
    drafts = []
    for wall in found:
        instance = wall.date() if is_day else wall.replace(tzinfo=zone)
        key = _rid(instance)
        if key in by_key:
            event, override_line = by_key.pop(key)
            if _private(event):
                continue
            drafts.append(ctx.draft(event, None, f"{source}, event at line {override_line} "
                                    f"(moved instance of the series at line {line})", key, master))
            continue
        end: date | datetime | None
        if wall in periods:
            end = periods[wall] if is_day else periods[wall].replace(tzinfo=zone)
        elif duration is None:
            end = None
        elif is_day:
            end = instance + duration  # type: ignore[operator]
        else:
            end = (wall + duration).replace(tzinfo=zone)
        drafts.append(ctx.draft(master, (instance, end), f"{source}, series at line {line}, instance {key}",
                                key))
    for key, (event, override_line) in by_key.items():
        # A moved instance whose original date is not generated (outside the window or not in the rule).
        if _private(event) or _outside(event.decoded("DTSTART"), window, explicit=True):
            continue
        moved = event.decoded("DTSTART")
        if window.first is None and window.last is None or not _outside(moved, Window(lo, hi), True):
            drafts.append(ctx.draft(event, None, f"{source}, event at line {override_line} (moved instance)",
                                    key, master))
    return drafts


def _duration(event: Any) -> timedelta | None:
    """DTEND − DTSTART in wall-clock terms (None when the event gives no end)."""
    start = event.decoded("DTSTART")
    if "DTEND" in event:
        end = event.decoded("DTEND")
        if isinstance(start, datetime) and isinstance(end, datetime):
            if start.tzinfo is not None and end.tzinfo is not None:
                end = end.astimezone(start.tzinfo)
            return end.replace(tzinfo=None) - start.replace(tzinfo=None)
        if not isinstance(start, datetime) and not isinstance(end, datetime):
            return end - start
        return None
    if "DURATION" in event:
        value = event.decoded("DURATION")
        return value if isinstance(value, timedelta) else None
    return timedelta(days=1) if not isinstance(start, datetime) else None


# --- one event → one draft ---------------------------------------------------------------

@dataclass
class _Context:
    source: str
    canonical: Callable[[str], str]
    zones: _Zones
    calendar_name: str
    base_url: str | None
    default_organizer: str | None = None

    def feed_note(self, notes: list[str], message: str) -> None:
        if message not in notes:
            notes.append(message)

    def draft(self, event: Any, times: tuple[date | datetime, date | datetime | None] | None, origin: str,
              rid: str | None, master: Any = None) -> Draft:
        d = DraftBuilder(origin)

        def get(name: str) -> Any:
            value = event.get(name)
            if value is None and master is not None:
                value = master.get(name)
            return value

        summary = " ".join(str(get("SUMMARY") or "").split())
        description = str(get("DESCRIPTION") or "")
        body = ""
        if description.strip():
            body, was_html = description_markdown(description)
            if was_html:
                d.doubt("body", "the description was HTML: converted to text; check the layout")
        else:
            alt = get("X-ALT-DESC")
            if alt is not None and str(alt).strip():
                body, _ = description_markdown(str(alt))
                d.doubt("body", "no DESCRIPTION: made from X-ALT-DESC (HTML)")
        location = " ".join(str(get("LOCATION") or "").split())

        status = "scheduled"
        if summary:
            d.set("title", summary[:300])
        else:
            fallback = next((line for line in body.split("\n") if line.strip()), "") or location
            if fallback:
                title, _ = _shorten(fallback.lstrip("-\\ "))
                d.set("title", title)
                d.doubt("title", "the event has no SUMMARY: made from its "
                        + ("description" if body else "location") + "; write the real title")
            else:
                d.set("title", "Untitled event")
                status = "draft"
                d.doubt("title", "the event has no SUMMARY, DESCRIPTION or LOCATION: 'Untitled event', saved as "
                        "status: draft so it is never built; write the title and remove the status")

        organizer = get("ORGANIZER")
        name = ""
        if organizer is not None:
            params = getattr(organizer, "params", {})
            name = " ".join(str(params.get("CN", "") or "").strip('"').split())
            if not name:
                address = str(organizer)
                name = address[7:] if address.lower().startswith("mailto:") else address
                if name:
                    d.doubt("organizer", "ORGANIZER has no name (CN): its address is used")
        if not name and self.default_organizer:
            name = self.default_organizer
            d.doubt("organizer", f"no ORGANIZER: {name!r} from --organizer is used")
        if not name and self.calendar_name:
            name = self.calendar_name
            d.doubt("organizer", f"no ORGANIZER: the calendar's name {name!r} is used")
        if not name:
            name = "Unknown organizer"
            status = "draft"
            d.doubt("organizer", "no ORGANIZER and no calendar name: 'Unknown organizer', saved as status: draft; "
                    "write the organizer and remove the status (or import again with --organizer)")
        canonical = self.canonical(name)
        if canonical != " ".join(name.split()):
            d.doubt("organizer", f"{name!r} written as {canonical!r} (organizer alias in digest.toml)")
        d.set("organizer", canonical)

        state = str(get("STATUS") or "").upper()
        if state == "CANCELLED" and status != "draft":
            status = "cancelled"
        elif state == "TENTATIVE":
            d.doubt("status", "the feed marks the event TENTATIVE")
        if status != "scheduled":
            d.set("status", status)

        if times is None:
            start = event.decoded("DTSTART")
            end = _end_of(event, start, d)
        else:
            start, end = times
        self._times(d, event, start, end)

        if location:
            d.set("location", location)
            if re.match(r"https?://", location, re.IGNORECASE):
                d.set("online", True)
        else:
            d.lacks("location", "the event has no LOCATION")
        url = str(get("URL") or "").strip()
        if url:
            if self.base_url and not urlsplit(url).scheme:
                url = urljoin(self.base_url, url)
            problem = link_problem(url)
            if problem:
                d.doubt("register", f"URL {url!r} not kept: {problem}")
                d.lacks("register", "the feed's URL is not a usable link")
            else:
                d.set("register", url)
        else:
            d.lacks("register", "the event has no URL")
        d.lacks("register_by", "calendar feeds carry no registration deadline")
        d.lacks("speakers", "calendar feeds carry no speakers")

        categories = get("CATEGORIES")
        tags: list[str] = []
        for item in (categories if isinstance(categories, list) else [categories] if categories else []):
            for word in getattr(item, "cats", [str(item)]):
                from digest.importers.writer import slug

                tag = slug(str(word), words=4)
                if tag and tag != "event" and tag not in tags:
                    tags.append(tag)
        d.set("tags", tags[:8])
        uid = " ".join(str(get("UID") or "").split())
        if uid:
            d.set("uid", f"{uid}#{rid}" if rid else uid)
        else:
            import hashlib

            seed = f"{summary}|{_rid(start)}|{location}"
            d.set("uid", "digest-import-" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:20]
                  + (f"#{rid}" if rid else ""))
            d.doubt("uid", "the event has no UID: one was made from its title, start and location")
        d.body = body
        if not body:
            d.doubt("body", "the event has no description")
        return d.freeze()

    def _times(self, d: DraftBuilder, event: Any, start: date | datetime, end: date | datetime | None) -> None:
        tzid = None
        prop = event.get("DTSTART")
        if prop is not None and hasattr(prop, "params"):
            tzid = prop.params.get("TZID")
        if not isinstance(start, datetime):
            d.set("start", start.isoformat())
            if isinstance(end, date) and not isinstance(end, datetime):
                last = end - timedelta(days=1)
                if last > start:
                    d.set("end", last.isoformat())
            return
        value, zone_name = _represent(start, tzid, self.zones, d)
        d.set("start", value)
        if zone_name:
            d.set("timezone", zone_name)
        if isinstance(end, datetime):
            if end.tzinfo is not None and start.tzinfo is not None:
                end = end.astimezone(start.tzinfo)
            if end <= start if (end.tzinfo is None) == (start.tzinfo is None) else False:
                return
            probe = DraftBuilder("")
            end_value, _ = _represent(end, tzid, self.zones, probe)
            d.set("end", end_value)
        elif end is None:
            d.lacks("end", "the event has no DTEND or DURATION")


def _end_of(event: Any, start: date | datetime, d: DraftBuilder) -> date | datetime | None:
    """DTEND, else DTSTART + DURATION, else the RFC 5545 default (one day, or no length)."""
    if "DTEND" in event:
        end = event.decoded("DTEND")
        if isinstance(start, datetime) != isinstance(end, datetime):
            d.doubt("end", "DTEND and DTSTART are of different kinds (a date and a date-time): end ignored")
            return None
        if end < start if not isinstance(start, datetime) or (start.tzinfo is None) == (end.tzinfo is None) else False:
            d.doubt("end", "DTEND is before DTSTART: end ignored")
            return None
        if not isinstance(start, datetime) and end == start:
            d.doubt("end", "DTEND equals DTSTART for an all-day event: read as one day")
            return start + timedelta(days=1)
        return end
    if "DURATION" in event:
        duration = event.decoded("DURATION")
        if isinstance(duration, timedelta):
            if isinstance(start, datetime) and start.tzinfo is not None and hasattr(start.tzinfo, "key"):
                return (start.replace(tzinfo=None) + duration).replace(tzinfo=start.tzinfo)
            return start + duration
    if not isinstance(start, datetime):
        return start + timedelta(days=1)
    return None

