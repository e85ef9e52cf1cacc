"""What the templates show: an Edition turned into plain, display-ready values.

Templates get strings and lists only; every date, zone and link is decided here, so
the HTML and the text part say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from markupsafe import Markup

from digest.config import Config
from digest.dates import day_label, range_label, short_day_label, utc_offset_label, zone_label
from digest.links import google_calendar_url, outlook_calendar_url
from digest.models import Block, Edition, Event, Speaker

UNSUBSCRIBE = "https://digest.invalid/__digest_unsubscribe__"
VIEW_ONLINE = "https://digest.invalid/__digest_view_online__"
STATUS_LABELS = {"cancelled": "Cancelled", "postponed": "Postponed", "tba": "Date to be announced",
                 "ongoing": "Ongoing"}


@dataclass(frozen=True)
class EventView:
    anchor: str
    title: str
    organizer: str
    status: str
    status_label: str
    when: str
    day: str
    location: str
    speakers: tuple[Speaker, ...]
    register: str
    register_by: str
    summary: str
    body_html: Markup
    blocks: tuple[Block, ...]
    google_url: str
    outlook_url: str
    ics_url: str
    web_url: str


def when_label(event: Event, config: Config) -> str:
    """'Wednesday 7 October 2020, 09:00–10:30 New York time (UTC−4)'."""
    if event.start is None:
        return STATUS_LABELS.get(event.status, "Date to be announced")
    if not isinstance(event.start, datetime):
        last = event.end if isinstance(event.end, date) and not isinstance(event.end, datetime) else None
        if last and last != event.start:
            return f"{day_label(event.start)} \u2013 {day_label(last)} (all day)"
        return f"{day_label(event.start)} (all day)"
    start = event.start
    zone = zone_label(event.zone_name)
    offset = utc_offset_label(start)
    place = f"{zone} ({offset})" if zone else offset
    text = f"{day_label(start.date())}, {start:%H:%M}"
    if isinstance(event.end, datetime):
        end = event.end.astimezone(start.tzinfo)
        if end.date() == start.date():
            text += f"\u2013{end:%H:%M}"
        else:
            end_offset = utc_offset_label(end)
            text += f" \u2013 {day_label(end.date())}, {end:%H:%M}"
            if end_offset != offset:
                place = f"{zone} ({offset} / {end_offset})" if zone else f"{offset} / {end_offset}"
    text += f" {place}"
    local = start.astimezone(config.zone)
    if local.utcoffset() != start.utcoffset():
        text += f"; {local:%H:%M} {zone_label(config.timezone) or utc_offset_label(local)}"
        if local.date() != start.date():
            text += f" on {short_day_label(local.date())}"
    return text


def _utc_stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _calendar_links(event: Event, config: Config, web_url: str) -> tuple[str, str]:
    if event.start is None or event.status != "scheduled":
        return "", ""
    # The web version's address, not the description: two URL-encoded copies of a
    # description cost ~1 KB per event against Gmail's 102 KB clip.
    details = web_url or event.register
    location = event.location
    if isinstance(event.start, datetime):
        end = event.end if isinstance(event.end, datetime) else event.start
        google = google_calendar_url(event.title, _utc_stamp(event.start), _utc_stamp(end), details, location)
        outlook = outlook_calendar_url(event.title, event.start.isoformat(), end.isoformat(), details, location, False)
    else:
        last = event.end if isinstance(event.end, date) else event.start
        after = last + timedelta(days=1)
        google = google_calendar_url(event.title, event.start.strftime("%Y%m%d"), after.strftime("%Y%m%d"),
                                     details, location)
        outlook = outlook_calendar_url(event.title, event.start.isoformat(), after.isoformat(), details, location,
                                       True)
    return google, outlook


def present_event(event: Event, config: Config, week: str) -> EventView:
    base = config.base_url.rstrip("/") + "/" if config.base_url else ""
    web_url = f"{base}{week}/#{event.slug}" if base else ""
    google, outlook = _calendar_links(event, config, web_url)
    first = event.first_day(config.zone)
    location = event.location or ("Online" if event.online else "")
    return EventView(
        anchor=event.slug,
        title=event.title,
        organizer=event.organizer,
        status=event.status,
        status_label=STATUS_LABELS.get(event.status, ""),
        when=when_label(event, config),
        day=short_day_label(first) if first else "",
        location=location,
        speakers=event.speakers,
        register=event.register,
        register_by=day_label(event.register_by) if event.register_by else "",
        summary=event.summary,
        body_html=Markup(event.body_html),
        blocks=event.blocks,
        google_url=google,
        outlook_url=outlook,
        ics_url=f"{base}{week}/{event.slug}.ics" if base and event.dated and event.status == "scheduled" else "",
        web_url=web_url,
    )


#: The views of the week last presented: a build presents each edition's events for the
#: email, again when it is shortened, and again for its web page.
_MEMO: tuple[Config, str, dict[str, tuple[Event, EventView]]] | None = None


def _views(events: tuple[Event, ...], config: Config, week: str) -> dict[str, EventView]:
    """present_event of each of EVENTS by path, reusing the views made for these very
    objects (the same Event and Config, by identity: both are frozen) in this week."""
    global _MEMO
    if _MEMO is None or _MEMO[0] is not config or _MEMO[1] != week:
        _MEMO = (config, week, {})
    table = _MEMO[2]
    views = {}
    for event in events:
        hit = table.get(event.path)
        if hit is None or hit[0] is not event:
            hit = table[event.path] = (event, present_event(event, config, week))
        views[event.path] = hit[1]
    return views


def edition_context(edition: Edition, config: Config, *, shortened: int = 0, omitted: tuple[str, ...] = ()) -> dict:
    """The template context of one edition. SHORTENED > 0 asks for summaries only."""
    view = _views((*edition.events, *edition.deadlines, *edition.ongoing, *edition.tba, *edition.ahead),
                  config, edition.week)
    count = len(edition.events)
    base = config.base_url.rstrip("/") + "/" if config.base_url else ""
    return {
        "newsletter": {"name": config.name, "tagline": config.tagline, "language": config.language,
                       "accent": config.accent_color, "logo_url": config.logo_url, "logo_alt": config.logo_alt,
                       "postal_address": config.postal_address, "sender": config.sender},
        "edition": {"week": edition.week, "range": range_label(edition.first, edition.last),
                    "count": count, "previous": edition.previous, "next": edition.next},
        "preheader": preheader(edition, config),
        "groups": [{"name": g.name, "events": [view[e.path] for e in g.events]} for g in edition.groups],
        "deadlines": [view[e.path] for e in edition.deadlines],
        "ongoing": [view[e.path] for e in edition.ongoing],
        "tba": [view[e.path] for e in edition.tba],
        "ahead": [view[e.path] for e in edition.ahead],
        "view_online_url": VIEW_ONLINE,
        "unsubscribe_url": UNSUBSCRIBE,
        "web_edition_url": f"{base}{edition.week}/" if base else "",
        "shortened": shortened,
        "omitted": list(omitted),
    }


def preheader(edition: Edition, config: Config) -> str:
    """The inbox line under the subject: what is on this week."""
    events = edition.events
    if events:
        first = events[0]
        count = len(events)
        lead = f"{count} event{'s' if count != 1 else ''} {range_label(edition.first, edition.last)}: {first.title}"
        if count > 1:
            lead += f" and {count - 1} more"
    elif edition.deadlines:
        lead = f"Registration deadline this week: {edition.deadlines[0].title}"
    else:
        lead = f"No dated events {range_label(edition.first, edition.last)}"
    extras = []
    if edition.deadlines and events:
        extras.append(f"{len(edition.deadlines)} registration deadline{'s' if len(edition.deadlines) != 1 else ''}")
    if edition.tba:
        extras.append(f"{len(edition.tba)} date{'s' if len(edition.tba) != 1 else ''} to be announced")
    text = lead + (" \u00b7 " + ", ".join(extras) if extras else "")
    return text if len(text) <= 150 else text[:149].rsplit(" ", 1)[0] + "\u2026"


def subject(edition: Edition, config: Config) -> str:
    count = len(edition.events)
    what = f"{count} event{'s' if count != 1 else ''}" if count else "this week"
    return f"{config.name}: {range_label(edition.first, edition.last)} ({what})"
