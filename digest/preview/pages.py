"""The preview's pages (Jinja2, autoescaped), the meters, and the email frame.

Pages are rendered on the server only; the browser script swaps the regions marked
`data-live` from a fresh copy of the same page, so there is one rendering path."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2

from digest.build import STYLE_LIMIT, BuiltEdition
from digest.dates import range_label
from digest.editions import resolve_week
from digest.preview.state import Failure, Rendered, Snapshot

ASSETS = Path(__file__).resolve().parent / "assets"
#: Gmail clips messages whose HTML is over about 102 KB (102,400 bytes).
CLIP_BYTES = 102_400
#: The toggles, their values (the first is the default) and their labels.
TOGGLES: dict[str, tuple[tuple[str, str], ...]] = {
    "width": (("640", "Desktop 640"), ("375", "Mobile 375")),
    "scheme": (("light", "Light"), ("dark", "Dark")),
    "view": (("html", "HTML"), ("text", "Plain text"), ("headers", ".eml headers")),
}

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ASSETS)), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["num"] = lambda n: f"{n:,}"


def toggles(query: Mapping[str, list[str]]) -> dict[str, str]:
    """The toggles chosen in the page's query string (?width=375&scheme=dark&view=text)."""
    chosen = {}
    for name, values in TOGGLES.items():
        given = (query.get(name) or [""])[0]
        chosen[name] = given if given in {v for v, _ in values} else values[0][0]
    return chosen


# -- the email frame --------------------------------------------------------------------------

_SCHEME_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.IGNORECASE)
_COLOR_SCHEME_META = re.compile(r"<meta\s+name=\"?color-scheme\"?\s+content=\"[^\"]*\"\s*/?>", re.IGNORECASE)
# Media conditions that always / never hold, valid wherever `(prefers-color-scheme: …)` was.
_ALWAYS = "(min-width: 0px)"
_NEVER = "((max-width: 0px) and (min-width: 1px))"


def frame_html(html: str, scheme: str) -> str:
    """The email as served into the preview's frame, in the chosen colour scheme.

    A frame follows the browser's own `prefers-color-scheme`, which a page cannot set,
    so the email's own dark-mode media rules are switched on or off by rewriting their
    condition, and `color-scheme` is pinned. Links open in a new tab."""
    dark = scheme == "dark"
    html = _SCHEME_QUERY.sub(lambda m: _ALWAYS if (m.group(1).lower() == "dark") == dark else _NEVER, html)
    html = _COLOR_SCHEME_META.sub(f'<meta name="color-scheme" content="{scheme}">', html)
    extra = (f'<base target="_blank"><style>:root {{ color-scheme: {scheme} !important; }}</style>')
    match = re.search(r"</head\s*>", html, re.IGNORECASE)
    if match:
        return html[:match.start()] + extra + html[match.start():]
    return extra + html


# -- meters and the inbox line ----------------------------------------------------------------

class _LinkCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def links(html: str) -> list[str]:
    """Every link target in the HTML, in order (repeats included)."""
    counter = _LinkCounter()
    counter.feed(html)
    counter.close()
    return counter.hrefs


@dataclass(frozen=True)
class Meter:
    key: str
    label: str
    value: int
    limit: int | None
    text: str

    @property
    def level(self) -> str:
        if self.limit is None:
            return "info"
        share = self.value / self.limit
        return "over" if share >= 1 else "warn" if share >= 0.75 else "ok"

    @property
    def percent(self) -> int:
        return round(100 * self.value / self.limit) if self.limit else 0


def meters(built: BuiltEdition, warnings: list[str]) -> list[Meter]:
    size = len(built.files["digest.html"])
    styles = int(built.manifest.get("style_chars", 0))
    targets = links(built.html)
    return [
        Meter("bytes", "HTML size", size, CLIP_BYTES,
              f"{size:,} of {CLIP_BYTES:,} bytes ({round(100 * size / CLIP_BYTES)}%); Gmail clips past {CLIP_BYTES:,}"),
        Meter("style", "<style> characters", styles, STYLE_LIMIT,
              f"{styles:,} of {STYLE_LIMIT:,} ({round(100 * styles / STYLE_LIMIT)}%); Gmail drops all styles past "
              f"{STYLE_LIMIT:,}"),
        Meter("links", "Links", len(targets), None, f"{len(targets)} links, {len(set(targets))} distinct"),
        Meter("warnings", "Warnings", len(warnings), None,
              "none" if not warnings else f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''} (listed below)"),
    ]


def raw_headers(eml: bytes) -> str:
    """The header block of the .eml, as sent (folded, encoded)."""
    head = re.split(rb"\r?\n\r?\n", eml, maxsplit=1)[0]
    return head.decode("ascii", errors="replace").replace("\r\n", "\n")


def inbox(built: BuiltEdition) -> dict[str, str]:
    """What an inbox list shows: sender name, subject, preheader (and the full addresses)."""
    message = BytesParser(policy=policy.default).parsebytes(built.files["digest.eml"], headersonly=True)
    sender = message["From"]
    addresses = getattr(sender, "addresses", ())
    name = addresses[0].display_name if addresses and addresses[0].display_name else str(sender or "")
    return {"name": name, "from": str(sender or ""), "to": str(message["To"] or ""),
            "subject": str(message["Subject"] or built.subject), "preheader": built.preheader}


def edition_warnings(snap: Snapshot, built: BuiltEdition) -> list[str]:
    """The build's warnings that concern this edition: its own, and its entries'."""
    sources = set(built.manifest.get("sources", {})) | {e["path"] for e in built.manifest.get("events", [])}
    plan_warnings = [str(w) for w in snap.plan.warnings if w.path in sources] if snap.plan else []
    return list(built.warnings) + plan_warnings


# -- pages ------------------------------------------------------------------------------------

def _overlay(failure: Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    rows = []
    for problem in failure.problems:
        text = str(problem)
        where = problem.path if problem.line is None else f"{problem.path}:{problem.line}"
        rows.append({"where": where, "rest": text[len(where):], "text": text})
    return {"message": failure.message, "problems": rows}


def _common(snap: Snapshot, boot: str, page: str, week: str = "") -> dict[str, Any]:
    config = snap.plan.config if snap.plan else None
    return {"page": page, "week": week, "version": f"{boot}.{snap.version}",
            "name": config.name if config else "digest", "seconds_ms": round(snap.seconds * 1000),
            "toggles": TOGGLES}


def index_page(snap: Snapshot, boot: str, cached: Mapping[str, Rendered | None]) -> str:
    rows = []
    this_week = ""
    p = snap.plan
    if p is not None:
        try:
            this_week = resolve_week("this", p.today, p.config)
        except ValueError:
            this_week = ""
    failure = snap.failure
    for week, edition in snap.editions.items():
        rendered = cached.get(week)
        if rendered is not None and rendered.built is not None and rendered.failure is None:
            warnings = edition_warnings(snap, rendered.built)
        else:
            paths = {e.path for e in (*edition.events, *edition.deadlines, *edition.ongoing, *edition.tba,
                                      *edition.ahead)}
            warnings = [str(w) for w in p.warnings if w.path in paths] if p else []
        if failure is None and rendered is not None and rendered.failure is not None:
            failure = rendered.failure
        rows.append({"week": week, "range": range_label(edition.first, edition.last),
                     "events": len(edition.events), "deadlines": len(edition.deadlines),
                     "ongoing": len(edition.ongoing), "tba": len(edition.tba), "warnings": warnings,
                     "this_week": week == this_week})
    return _ENV.get_template("index.html").render(
        **_common(snap, boot, "index"), rows=rows, overlay=_overlay(failure),
        tagline=p.config.tagline if p else "", all_warnings=[str(w) for w in p.warnings] if p else [],
        frame_hash="")


def edition_page(snap: Snapshot, boot: str, week: str, rendered: Rendered, chosen: dict[str, str]) -> str:
    built = rendered.built
    failure = snap.failure or rendered.failure
    edition = snap.editions[week]
    weeks = list(snap.editions)
    at = weeks.index(week)
    context: dict[str, Any] = {
        **_common(snap, boot, "edition", week), "chosen": chosen, "overlay": _overlay(failure),
        "range": range_label(edition.first, edition.last),
        "previous": weeks[at - 1] if at > 0 else None, "next": weeks[at + 1] if at + 1 < len(weeks) else None,
        "built": None, "frame_hash": "none",
    }
    if built is not None:
        warnings = edition_warnings(snap, built)
        context.update(
            built=built, inbox=inbox(built), meters=meters(built, warnings), warnings=warnings,
            text=built.text, headers=raw_headers(built.files["digest.eml"]),
            frame_hash=hashlib.sha256(built.files["digest.html"]).hexdigest()[:16],
            downloads=[name for name in ("digest.eml", "digest.txt", "digest.mjml", "events.ics", "manifest.json")
                       if name in built.files])
    return _ENV.get_template("edition.html").render(**context)


def missing_page(snap: Snapshot, boot: str, week: str) -> str:
    return _ENV.get_template("missing.html").render(
        **_common(snap, boot, "missing", week), overlay=_overlay(snap.failure), frame_hash="",
        weeks=list(snap.editions))


def empty_frame(message: str) -> str:
    return _ENV.get_template("empty-frame.html").render(message=message)
