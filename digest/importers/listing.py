"""Listing text → entry drafts.

A listing is text copied from organizers' pages: blocks that start with a line
`Organized By : <organizer>`, then free text, agendas of speakers, bullet lists,
"Register here" and RSVP deadlines. Only what the text says is kept: a block without
a date becomes `status: tba` (or `ongoing` for a self-paced/online course), and every
value read with a doubt is named in the draft's review notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from dateutil import parser as dateparser

from digest.importers import Draft, DraftBuilder

ORGANIZER_LINE = re.compile(r"^[ \t]*Organi[sz]ed[ \t]+by[ \t]*:[ \t]*(?P<name>\S.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)

_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
           "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec")
_WEEKDAY = r"(?P<wd>(?:Mon|Tues|Tue|Wednes|Wed|Thurs|Thu|Fri|Satur|Sat|Sun)(?:day)?)\.?,?\s+(?:the\s+)?"
_ORD = r"(?:st|nd|rd|th)?"
DATE_RE = re.compile(
    rf"(?:{_WEEKDAY})?(?:"
    rf"(?:(?P<r1>\d{{1,2}}){_ORD}\s*(?:-|–|—|to|until)\s*)?(?P<d1>\d{{1,2}}){_ORD}\s+(?:of\s+)?(?P<m1>{_MONTHS})\.?,?\s+(?P<y1>\d{{4}})"
    rf"|(?P<m2>{_MONTHS})\.?\s+(?P<d2>\d{{1,2}}){_ORD}(?:\s*(?:-|–|—|to|until)\s*(?P<r2>\d{{1,2}}){_ORD})?,?\s+(?P<y2>\d{{4}})"
    rf")\b",
    re.IGNORECASE,
)
_TIME = r"\d{1,2}(?:[:.]\d{2})?(?:\s*[ap]\.?\s?m\.?)?"
TIME_RANGE_RE = re.compile(
    rf"(?:from|at|between)?\s*(?P<t1>{_TIME})\s*(?:-|–|—|to|until|and)\s*(?P<t2>{_TIME})"
    r"(?:\s*\(?\s*(?P<tz>(?:UTC|GMT)\s*[+-−]\s*\d{1,2}(?::?\d{2})?|[A-Z]{2,5})\s*\)?)?",
    re.IGNORECASE,
)
TIME_AT_RE = re.compile(
    rf"(?:at|from|starting at)\s+(?P<t1>{_TIME})"
    r"(?:\s*\(?\s*(?P<tz>(?:UTC|GMT)\s*[+-−]\s*\d{1,2}(?::?\d{2})?|[A-Z]{2,5})\s*\)?)?",
    re.IGNORECASE,
)
DEADLINE_RE = re.compile(
    r"(?:deadline|rsvp|register|registration|sign[ -]?up|apply|applications?)\b[^.\n]{0,60}?"
    r"(?:\bby|\bbefore|\bis|\buntil|\bon|\bcloses(?:\s+on)?|:)\s+(?P<date>" + DATE_RE.pattern + ")",
    re.IGNORECASE,
)
URL_RE = re.compile(r"\b(?:https?://|mailto:)[^\s<>()\[\]\"“”]+[^\s<>()\[\]\"“”.,;:!?]", re.IGNORECASE)
# Calls to action whose link did not survive the copy: without the link they are noise.
DANGLING_RE = re.compile(
    r"^\W*(?:(?:more\s+information|more\s+info|details|information)\s+(?:and|&)\s+)?"
    r"(?:register|registration|rsvp|sign[ -]?up|click|more\s+information|read\s+more|learn\s+more)"
    r"(?:\s+(?:here|now|online|below))?\s*[:.!]?\W*$",
    re.IGNORECASE,
)
_REGISTER_HERE_TAIL = re.compile(r",?\s*(?:please\s+)?(register|rsvp|sign up)\s+(?:here|below|at)\s*:?\s*$", re.IGNORECASE)
ONLINE_RE = re.compile(r"\b(online|virtual(?:ly)?|webinar|web conference|zoom|livestream(?:ed)?|live[- ]stream(?:ed)?)\b", re.IGNORECASE)
SELF_PACED_RE = re.compile(r"\b(self[- ]paced|online course|e-?learning course|mooc|on[- ]demand course)\b", re.IGNORECASE)
QUOTED_RE = re.compile(r"[“\"]([^“”\"]{8,200}?)[”\"]")
_HONORIFIC = r"(?:(?:Ms|Mr|Mrs|Mx|Dr|Prof|Professor|Sir|Dame|Amb|Ambassador|H\.E|Hon|Rev|Judge|Justice)\.?\s+)"
_PARTICLES = {"de", "da", "del", "della", "van", "von", "der", "den", "al", "el", "bin", "ibn", "la", "le", "du",
              "dos", "das", "di", "y", "ter", "zu"}
_BULLET_RE = re.compile(r"^\s*(?:[•·●▪◦‣∙*+]|-(?=\s)|–(?=\s)|\d{1,2}[.)](?=\s))\s*")
_DASHES = (" – ", " — ", " - ", " -- ")


@dataclass(frozen=True)
class Speaker:
    name: str
    role: str
    talk: str = ""


def parse_listing(text: str, source: str, canonical=lambda name: name) -> list[Draft]:
    """Every `Organized By :` block of TEXT as a Draft; CANONICAL maps organizer aliases."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    starts = list(ORGANIZER_LINE.finditer(text))
    drafts = []
    for number, match in enumerate(starts, 1):
        end = starts[number].start() if number < len(starts) else len(text)
        line = text.count("\n", 0, match.start()) + 1
        origin = f"{source}, block {number} (line {line})"
        drafts.append(_block(match.group("name"), text[match.end():end], origin, canonical))
    return drafts


def _block(organizer: str, text: str, origin: str, canonical) -> Draft:
    d = DraftBuilder(origin)
    written = " ".join(organizer.split())
    name = canonical(written)
    if name != written:
        d.doubt("organizer", f"written as {written!r} in the listing; the alias table in digest.toml makes it {name!r}")
    d.set("organizer", name)

    flat = " ".join(text.replace("*", " ").replace("_", " ").split())
    urls = URL_RE.findall(text)
    paragraphs = _paragraphs(text)
    speakers = [s for p in paragraphs for s in _agenda(p) or ()]
    prose = [p for p in paragraphs if not _agenda(p) and not _bullets(p)]

    # Title: a quoted title in the prose, else the first sentence, shortened.
    quoted = _quoted_title(prose)
    if quoted:
        d.set("title", quoted)
        d.doubt("title", "taken from the quoted title in the text; check it names the event, not a series")
    else:
        first = _first_sentence(" ".join(" ".join(p) for p in prose) or flat)
        if first:
            title, shortened = _shorten(first)
            d.set("title", title)
            d.doubt("title", "no quoted title in the text: made from the first sentence"
                    + (", shortened" if shortened else "") + "; write the event's real title")
        else:
            d.set("title", f"Event by {name}")
            d.doubt("title", "the block has no text: a placeholder title; write the event's real title")

    # Deadlines first, so their dates are not taken for the event's date.
    deadline_spans: list[tuple[int, int]] = []
    for m in DEADLINE_RE.finditer(flat):
        deadline_spans.append(m.span("date"))
        if "register_by" in d.values:
            d.doubt("register_by", f"another deadline is mentioned too: {m.group('date')!r}")
            continue
        day, warning = _read_date(DATE_RE.fullmatch(m.group("date")))
        if day is not None:
            d.set("register_by", day[0].isoformat())
            if warning:
                d.doubt("register_by", warning)
    if "register_by" not in d.values:
        d.lacks("register_by", "no registration deadline in the text")

    _event_date(d, flat, deadline_spans)

    if urls:
        register = next((u for u in urls if re.search(r"regist|rsvp|sign|ticket|apply", u, re.IGNORECASE)), urls[0])
        if not register.lower().startswith("mailto:") or "@" in register:
            d.set("register", register)
            if len(set(urls)) > 1:
                d.doubt("register", f"the text has {len(set(urls))} links; this one was taken")
    else:
        d.lacks("register", "the text has no link (\"Register here\" lost its address in the copy)")

    online = ONLINE_RE.search(flat)
    if online:
        d.set("location", "Online")
        d.set("online", True)
        d.doubt("location", f"Online, because the text says {online.group(0)!r}")
    else:
        d.lacks("location", "the text names no place")

    if "start" not in d.values:
        course = SELF_PACED_RE.search(flat)
        if course:
            d.set("status", "ongoing")
            d.doubt("status", f"ongoing: no date, and the text says {course.group(0)!r}; "
                    "add 'until:' if the course closes")
        else:
            d.set("status", "tba")
            d.doubt("status", "tba: the text gives no date; add start and set status: scheduled when it is known")
        d.lacks("start", "no date in the text")

    if speakers:
        d.set("speakers", [{"name": s.name, "role": s.role} if s.role else {"name": s.name} for s in speakers])
    else:
        d.lacks("speakers", "no agenda lines with names")

    d.body, dropped = _markdown(paragraphs, bool(urls))
    for phrase in dropped:
        d.doubt("body", f"dropped {phrase!r}: the listing has no link for it")
    return d.freeze()


# --- dates ---------------------------------------------------------------------------

def _read_date(m: re.Match[str] | None) -> tuple[tuple[date, date] | None, str | None]:
    """(first day, last day) of a DATE_RE match, and a warning when the weekday contradicts it."""
    if m is None:
        return None, None
    day, month, year, other = ((m.group("d1"), m.group("m1"), m.group("y1"), m.group("r1")) if m.group("d1")
                               else (m.group("d2"), m.group("m2"), m.group("y2"), m.group("r2")))
    try:
        first = dateparser.parse(f"{day} {month} {year}", dayfirst=True).date()
    except (ValueError, OverflowError):
        return None, f"{m.group(0)!r} is not a real date"
    last = first
    if other:
        try:
            bound = first.replace(day=int(other))
        except ValueError:
            return None, f"{m.group(0)!r} is not a real date range"
        first, last = (bound, first) if bound < first else (first, bound)
    warning = None
    weekday = m.group("wd")
    if weekday:
        named = weekday[:3].lower()
        actual = first.strftime("%A")
        if actual[:3].lower() != named:
            warning = f"the text says {weekday} {first.day} {first.strftime('%B %Y')}, but that day is a {actual}"
    return (first, last), warning


def _parse_time(text: str) -> time | None:
    cleaned = re.sub(r"\s+", " ", text.lower().replace(".", ":", 1) if re.fullmatch(r"\d{1,2}\.\d{2}.*", text.strip())
                     else text.lower()).replace(".", "").strip()
    try:
        return dateparser.parse(cleaned, default=datetime(2000, 1, 1)).time()
    except (ValueError, OverflowError):
        return None


def _event_date(d: DraftBuilder, flat: str, excluded: list[tuple[int, int]]) -> None:
    hits = [m for m in DATE_RE.finditer(flat)
            if not any(a <= m.start() < b or m.start() <= a < m.end() for a, b in excluded)]
    if not hits:
        return
    m = hits[0]
    days, warning = _read_date(m)
    if days is None:
        d.doubt("start", warning or f"could not read {m.group(0)!r}")
        return
    if warning:
        d.doubt("start", warning)
    others = sorted({h.group(0) for h in hits[1:]} - {m.group(0)})
    if others:
        d.doubt("start", "other dates are mentioned too: " + ", ".join(repr(o) for o in others))
    first, last = days
    sentence_end = re.search(r"[.!?](?:\s|$)", flat[m.end():])
    tail = flat[m.end(): m.end() + (sentence_end.start() if sentence_end else 160)][:160]
    head_start = max(flat.rfind(". ", 0, m.start()) + 1, 0)
    head = flat[head_start: m.start()]
    t = TIME_RANGE_RE.search(tail) or TIME_RANGE_RE.search(head)
    single = None if t else (TIME_AT_RE.search(tail) or TIME_AT_RE.search(head))
    if t:
        t1, t2 = t.group("t1"), t.group("t2")
        meridiem = re.search(r"[ap]\.?\s?m\.?", t2, re.IGNORECASE)
        if meridiem and not re.search(r"[ap]\.?\s?m", t1, re.IGNORECASE):
            t1 = f"{t1} {meridiem.group(0)}"
        start_t, end_t = _parse_time(t1), _parse_time(t2)
        if start_t and end_t and ":" not in t.group("t1") + t.group("t2") and not re.search(r"[ap]\.?\s?m", t.group(0), re.IGNORECASE):
            start_t = end_t = None  # "7-9" with no colon and no am/pm is not a time range
    elif single:
        start_t, end_t = _parse_time(single.group("t1")), None
        if start_t and ":" not in single.group("t1") and not re.search(r"[ap]\.?\s?m", single.group("t1"), re.IGNORECASE):
            start_t = None
    else:
        start_t = end_t = None
    timing = t or single
    zone_text = timing.group("tz") if timing and start_t else None
    if start_t is None:
        d.set("start", first.isoformat())
        if last != first:
            d.set("end", last.isoformat())
        d.doubt("start", f"{m.group(0).strip()!r} has no time of day: an all-day entry")
        d.lacks("timezone")
        return
    start = datetime.combine(first, start_t)
    end = datetime.combine(last, end_t) if end_t else None
    if end is not None and end <= start and last == first and end_t is not None and end_t < start_t:
        end += timedelta(days=1)
        d.doubt("end", "the end time is before the start time: read as the next day")
    offset = None
    if zone_text:
        zone_text = zone_text.replace("−", "-").replace(" ", "")
        fixed = re.fullmatch(r"(?:UTC|GMT)([+-])(\d{1,2})(?::?(\d{2}))?", zone_text, re.IGNORECASE)
        if fixed:
            minutes = int(fixed.group(2)) * 60 + int(fixed.group(3) or 0)
            offset = timezone(timedelta(minutes=minutes if fixed.group(1) == "+" else -minutes))
        else:
            from digest.dates import DateValueError, resolve_zone

            try:
                _zone, iana, zone_warning = resolve_zone(zone_text, first)
            except DateValueError:
                d.doubt("timezone", f"{zone_text!r} after the time is not a time zone this importer knows; "
                        "the newsletter's time zone is used")
                zone_text = None
            else:
                d.set("timezone", iana)
                if zone_warning:
                    d.doubt("timezone", zone_warning)
                elif iana != zone_text:
                    d.doubt("timezone", f"the text says {zone_text}: read as {iana}")
    if offset is not None:
        d.set("start", start.replace(tzinfo=offset).isoformat())
        if end:
            d.set("end", end.replace(tzinfo=offset).isoformat())
    else:
        d.set("start", start.strftime("%Y-%m-%d %H:%M"))
        if end:
            d.set("end", end.strftime("%Y-%m-%d %H:%M"))
        if not zone_text:
            d.lacks("timezone", "the text gives a time but no time zone: the newsletter's time zone applies")
    if not end:
        d.lacks("end", "the text gives no end time")


# --- text structure ------------------------------------------------------------------

def _paragraphs(text: str) -> list[list[str]]:
    """Blocks of non-blank lines (each line stripped of trailing space)."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def _speaker(line: str) -> Speaker | None:
    """A speaker from an agenda line ("Ms. Jane Doe, Some Org" or "“Talk” - Dr. Name, Role")."""
    text = " ".join(line.strip().strip("*_").split())
    text = _BULLET_RE.sub("", text)
    talk = ""
    if text[:1] in "“\"'‘":
        for dash in _DASHES:
            if dash in text:
                left, right = text.rsplit(dash, 1)
                if _speaker(right):
                    talk = left.strip()
                    if talk[0] == "“" and "”" not in talk:
                        talk += "”"
                    text = right
                    break
        else:
            return None
    if len(text) > 250 or "," not in text or text.endswith((".", ":", "?", "!")) and not text.endswith(")."):
        return None
    name, role = (part.strip() for part in text.split(",", 1))
    bare = re.sub("^" + _HONORIFIC, "", name)
    words = bare.split()
    if not 2 <= len(words) <= 5 or not words[0][:1].isupper():
        return None
    for word in words:
        if word.lower() in _PARTICLES:
            continue
        if not (word[:1].isupper() and re.fullmatch(r"[\w'’ʼ.\-]+", word)):
            return None
    role = re.sub(r"\s+/(?=\S)", " / ", role)
    if not role:
        return None
    return Speaker(name, role.rstrip("."), talk)


def _agenda(paragraph: list[str]) -> list[Speaker] | None:
    """The speakers of a paragraph made of agenda lines (an optional heading first), else None."""
    lines = paragraph[1:] if len(paragraph) > 1 and _heading(paragraph[0]) else paragraph
    speakers = [_speaker(line) for line in lines]
    if speakers and all(speakers):
        return [s for s in speakers if s]
    return None


def _heading(line: str) -> bool:
    text = line.strip().strip("*_ ")
    return 0 < len(text) <= 70 and not text.endswith((".", ",", ";")) and _speaker(text) is None \
        and not _BULLET_RE.match(line) and not DANGLING_RE.match(text)


def _bullets(paragraph: list[str]) -> bool:
    return bool(_BULLET_RE.match(paragraph[0])) and not _agenda(paragraph)


def _quoted_title(prose: list[list[str]]) -> str:
    for paragraph in prose:
        for m in QUOTED_RE.finditer(" ".join(paragraph)):
            candidate = m.group(1).strip().rstrip(".,;:").strip()
            words = candidate.split()
            if len(words) >= 3 and candidate[:1].isupper():
                return candidate
    return ""


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.search(r"(?<![A-Z])(?<!\b[A-Z][a-z])[.!?](?=\s+[A-Z“\"(]|$)", text)
    return (text[: m.start()] if m else text).strip()


def _shorten(sentence: str, limit: int = 80) -> tuple[str, bool]:
    if len(sentence) <= limit:
        return sentence, False
    cut = sentence[:limit].rsplit(" ", 1)[0]
    words = cut.rstrip(",;: ").split()
    while len(words) > 3 and words[-1].lower().strip(",") in {
            "a", "an", "the", "of", "and", "or", "to", "in", "on", "for", "at", "by", "with", "that", "which",
            "from", "as", "its", "their", "about", "between", "among"}:
        words.pop()
    return " ".join(words).rstrip(",;:") + "…", True


def _markdown(paragraphs: list[list[str]], has_links: bool) -> tuple[str, list[str]]:
    """The block as Markdown: paragraphs, bold agenda headings, bullet lists; dangling calls dropped."""
    out: list[str] = []
    dropped: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        lines = []
        for line in paragraph:
            text = line.strip()
            if not has_links and DANGLING_RE.match(text):
                dropped.append(text.strip("*_ "))
                continue
            tail = _REGISTER_HERE_TAIL.search(text)
            if not has_links and tail:
                dropped.append(tail.group(0).strip(" ,:"))
                text = _REGISTER_HERE_TAIL.sub(r", please \1.", text)
                text = re.sub(r"^,\s*please", "Please", text)
            lines.append(text)
        if not lines:
            continue
        speakers = _agenda(lines)
        nxt = paragraphs[index + 1] if index + 1 < len(paragraphs) else None
        if speakers is not None:
            heading = len(lines) > 1 and _heading(lines[0])
            if heading:
                out.append(f"**{lines[0].strip('*_ ')}**")
                lines = lines[1:]
            listed = "\n".join("- " + _agenda_line(line) for line in lines)
            if not heading and out and out[-1].startswith("- ") and index and _agenda(paragraphs[index - 1]):
                out[-1] += "\n" + listed  # consecutive agenda paragraphs: one list
            else:
                out.append(listed)
        elif _bullets(lines):
            items: list[str] = []
            for line in lines:
                if _BULLET_RE.match(line):
                    items.append(_BULLET_RE.sub("", line).strip())
                elif items:
                    items[-1] += " " + line.strip()
                else:
                    items.append(line.strip())
            out.append("\n".join("- " + _escape(item) for item in items))
        elif len(lines) == 1 and _heading(lines[0]) and nxt is not None and _agenda(nxt) is not None:
            out.append(f"**{lines[0].strip('*_ ')}**")
        else:
            out.append(_escape(" ".join(lines)))
    return "\n\n".join(out), dropped


def _agenda_line(line: str) -> str:
    text = " ".join(_BULLET_RE.sub("", line.strip()).split())
    return _escape(re.sub(r"\s+/(?=\S)", " / ", text))


def _escape(text: str) -> str:
    """Keep text from turning into Markdown it did not mean (a heading, a quote, a list)."""
    if re.match(r"^(#{1,6}\s|>|[-+*]\s|\d+[.)]\s|={3,}|-{3,})", text):
        text = "\\" + text
    return text
