"""Links: which are allowed, and the add-to-calendar links of an event."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, urlsplit

ALLOWED_SCHEMES = ("http", "https", "mailto")


def link_problem(url: str, *, allow_mailto: bool = True) -> str | None:
    """Why URL may not appear in an email (None when it may)."""
    if not isinstance(url, str) or not url.strip():
        return "is empty"
    # Printable ASCII holds no such character but the space (the common case, checked fast).
    plain = url.isascii() and url.isprintable()
    if " " in url or not plain and any(unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") for ch in url):
        return f"{url!r} contains spaces or control characters"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"{url!r} is not a valid link ({exc})"
    schemes = ALLOWED_SCHEMES if allow_mailto else ("http", "https")
    if parts.scheme.lower() not in schemes:
        scheme = f"'{parts.scheme}:'" if parts.scheme else "no scheme"
        return f"{url!r} has {scheme}; only {', '.join(s + ':' for s in schemes)} links are allowed"
    if parts.scheme.lower() in ("http", "https") and not parts.hostname:
        return f"{url!r} has no host name"
    if parts.scheme.lower() == "mailto" and "@" not in parts.path:
        return f"{url!r} has no e-mail address"
    return None


def safe_url(url: str) -> bool:
    return link_problem(url) is None


def google_calendar_url(title: str, start_utc: str, end_utc: str, details: str, location: str) -> str:
    """A Google Calendar 'add event' link; dates as YYYYMMDD or YYYYMMDDTHHMMSSZ."""
    return (
        "https://calendar.google.com/calendar/render?action=TEMPLATE"
        f"&text={quote(title, safe='')}&dates={start_utc}/{end_utc}"
        f"&details={quote(details, safe='')}&location={quote(location, safe='')}"
    )


def outlook_calendar_url(title: str, start_iso: str, end_iso: str, details: str, location: str, all_day: bool) -> str:
    """An Outlook.com 'add event' deep link."""
    url = (
        "https://outlook.live.com/calendar/deeplink/compose?path=/calendar/action/compose&rru=addevent"
        f"&startdt={quote(start_iso, safe='')}&enddt={quote(end_iso, safe='')}"
        f"&subject={quote(title, safe='')}&body={quote(details, safe='')}&location={quote(location, safe='')}"
    )
    return url + ("&allday=true" if all_day else "")
