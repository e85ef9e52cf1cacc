"""The web archive: each edition's web page, the list of every edition, an Atom feed
and one calendar of every scheduled event.

`build` calls `prepare_archive` before it writes (an edition's `index.html` goes into
the edition's own atomic folder write) and `write_archive` after, under the same lock.
The archive lists what is on disk (every `OUT/<week>/manifest.json`), not only what
this run built. An edition page's previous/next links depend on which editions exist,
so they sit between two markers and are brought up to date in older pages as editions
are added: the pages are a function of the data and of the set of editions, and
rebuilding gives the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from time import time_ns
from typing import TYPE_CHECKING, Any, Callable, Iterable

import jinja2
from markupsafe import Markup, escape

from digest import __version__
from digest.compiled import TemplateCode
from digest.config import Config
from digest.dates import range_label
from digest.errors import BuildError, InputError, Problem
from digest.ical import calendar_bytes
from digest.present import edition_context
from digest.render import TemplateLoader, UnreadableTemplate, compile_all, own_template_dirs
from digest.writer import write_files

if TYPE_CHECKING:
    from digest.build import BuiltEdition, Plan
    from digest.cache import BuildCache

WEEK_DIR = re.compile(r"\d{4}-W\d{2}")
NAV_START = "<!--digest:nav-->"
NAV_END = "<!--/digest:nav-->"
#: The web version's file name in an edition's folder.
PAGE = "index.html"
ATOM_NS = "http://www.w3.org/2005/Atom"
_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")
_DEFAULT_ACCENT = "#0b5394"


@dataclass(frozen=True)
class Listed:
    """One edition in the archive, as its manifest describes it."""

    week: str
    first: date
    last: date
    subject: str
    preheader: str
    count: int
    events: tuple[tuple[str, str], ...]  # (title, organizer)
    #: The edition's address relative to OUT: "2020-W41/", or its email HTML when an
    #: older build left no web page.
    href: str = ""

    @property
    def range(self) -> str:
        return range_label(self.first, self.last)

    @property
    def number(self) -> int:
        return int(self.week[-2:])

    @property
    def year(self) -> str:
        return self.week[:4]


def listed(manifest: dict[str, Any], where: str, *, page: bool = True) -> Listed:
    """A manifest's dict as a Listed; BuildError naming WHERE when it lacks what the archive needs."""
    try:
        events = tuple((str(e["title"]), str(e["organizer"])) for e in manifest.get("events", ()))
        return Listed(week=str(manifest["week"]), first=date.fromisoformat(manifest["first_day"]),
                      last=date.fromisoformat(manifest["last_day"]), subject=str(manifest["subject"]),
                      preheader=str(manifest.get("preheader", "")), count=int(manifest["counts"]["events"]),
                      events=events, href=f"{manifest['week']}/" + ("" if page else "digest.html"))
    except (KeyError, TypeError, ValueError) as exc:
        raise BuildError(f"{where}: not a digest manifest ({type(exc).__name__}: {exc}); rebuild that edition "
                         "or remove its folder, then build again. Nothing was written.") from None


def on_disk(out: Path, skip: Iterable[str] = (), known: dict[str, tuple] | None = None) -> dict[str, Listed]:
    """Every edition folder under OUT with a manifest, by week (the weeks in SKIP aside).

    KNOWN (BuildCache.archive_reads' "listed"), when given, is used and kept up to date:
    a manifest whose identity (digest.cache.file_identity) is as recorded is not read
    again. It ends up holding the folders found, each manifest recorded when trusted."""
    from digest.cache import file_identity

    found: dict[str, Listed] = {}
    seen: dict[str, tuple] = {}
    if out.is_dir():
        skipped = set(skip)
        now = time_ns()
        for name in sorted(os.listdir(out)):
            if name in skipped or not WEEK_DIR.fullmatch(name):
                continue
            manifest = out / name / "manifest.json"
            identity = file_identity(manifest, now)
            if identity is None:
                continue
            page = (out / name / PAGE).is_file()
            record = known.get(name) if known is not None else None
            if record is not None and record[:2] == (identity[0], page):
                found[name] = record[2]
            else:
                found[name] = _read_listed(manifest, name, page)
            if identity[1]:
                seen[name] = (identity[0], page, found[name])
    if known is not None:
        known.clear()
        known.update(seen)
    return found


def _read_listed(manifest: Path, week: str, page: bool) -> Listed:
    """The Listed of the manifest of edition folder WEEK (holding a web page, or not)."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BuildError(f"{manifest}: cannot be read ({exc}); rebuild that edition or remove its folder, "
                         "then build again. Nothing was written.") from None
    if not isinstance(data, dict):
        raise BuildError(f"{manifest}: expected a JSON object; rebuild that edition or remove its folder.")
    item = listed(data, str(manifest), page=page)
    if item.week != week:
        raise BuildError(f"{manifest}: names week {item.week!r} but lives in {week}/; "
                         "rebuild that edition or remove its folder.")
    return item


def catalogue(out: Path, built: Iterable[BuiltEdition], known: dict[str, tuple] | None = None) -> list[Listed]:
    """The editions the archive will hold once BUILT is written: on disk, replaced by
    this run's; oldest first. KNOWN: see on_disk."""
    built = list(built)
    found = on_disk(out, {item.week for item in built}, known)  # those are being replaced
    for item in built:
        found[item.week] = listed(item.manifest, item.week)
    return [found[week] for week in sorted(found)]


# -- templates ---------------------------------------------------------------

def web_template_dirs(root: Path) -> list[Path]:
    """The newsletter's own web templates first, then the ones shipped with digest."""
    dirs = [root / "templates" / "web"]
    for candidate in own_template_dirs("web"):
        if all(candidate.resolve() != d.resolve() for d in dirs if d.exists()):
            dirs.append(candidate)
    return dirs


class WebRenderer:
    """Jinja2 (autoescaped, StrictUndefined) over templates/web/."""

    def __init__(self, root: Path, bytecode: jinja2.BytecodeCache | None = None) -> None:
        self.dirs = web_template_dirs(root)
        self.env = jinja2.Environment(loader=TemplateLoader(self.dirs, "templates/web"),
                                      bytecode_cache=TemplateCode("web", bytecode),
                                      autoescape=True, undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)

    def warm(self) -> None:
        """Compile the page templates now (before forking workers); errors surface when rendering."""
        compile_all(self.env)

    def render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except UnreadableTemplate as exc:
            raise InputError("the web templates could not be rendered; nothing was written.",
                             [exc.problem]) from None
        except jinja2.TemplateError as exc:
            where, line = f"templates/web/{name}", None
            if isinstance(exc, jinja2.TemplateSyntaxError):
                where, line = exc.filename or where, exc.lineno
            tb = exc.__traceback__
            while tb is not None:  # the innermost frame inside a template file names it and its line
                if any(tb.tb_frame.f_code.co_filename.startswith(str(d)) for d in self.dirs):
                    where, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
                tb = tb.tb_next
            for d in self.dirs:
                if str(where).startswith(str(d)):
                    where = "templates/web/" + Path(where).relative_to(d).as_posix()
            raise InputError("the web templates could not be rendered; nothing was written.",
                             [Problem(str(where), line, None, f"template error: {exc}",
                                      "see README.md, Web archive, for the names a web template gets")]) from None


def _site(config: Config) -> dict[str, Any]:
    accent = config.accent_color if _COLOR.fullmatch(config.accent_color) else _DEFAULT_ACCENT
    return {"name": config.name, "tagline": config.tagline, "language": config.language, "accent": accent,
            "logo_url": config.logo_url, "logo_alt": config.logo_alt}


def nav_html(renderer: WebRenderer, config: Config, listing: list[Listed], week: str) -> str:
    """The previous/next links of WEEK's page, between the markers."""
    weeks = [item.week for item in listing]
    index = weeks.index(week)
    previous = listing[index - 1] if index > 0 else None
    following = listing[index + 1] if index + 1 < len(listing) else None
    inner = renderer.render("nav.html", {"site": _site(config), "previous": previous, "next": following})
    return NAV_START + inner.strip() + NAV_END


def edition_page(renderer: WebRenderer, p: Plan, item: BuiltEdition, nav: str = NAV_START + NAV_END) -> bytes:
    """The web version of one edition: everything in the email, in full, without the
    unsubscribe footer. NAV is its previous/next links (see nav_html); left empty, the
    page is rendered without them (in a build's worker) and with_nav puts them in."""
    config = p.config
    context = edition_context(item.edition, config)
    context.update({
        "site": _site(config),
        "root": "../",
        "description": item.preheader,
        "subject": item.subject,
        "ics_files": sorted(name for name in item.files if name.endswith(".ics")),
        "nav": Markup(nav),
    })
    return _tidy(renderer.render("edition.html", context)).encode("utf-8")


def with_nav(page: bytes, nav: str) -> bytes | None:
    """PAGE with NAV in place of each of its previous/next link blocks; None when it has
    none (custom templates): it is rendered again instead."""
    start, end = NAV_START.encode(), NAV_END.encode()
    head, *blocks = page.split(start)
    if not blocks or any(end not in block for block in blocks):
        return None
    return head + b"".join(nav.encode("utf-8") + block.split(end, 1)[1] for block in blocks)


# -- the archive's own files ---------------------------------------------------

def _tidy(html: str) -> str:
    return html.strip() + "\n"


def _moment(day: date, config: Config) -> datetime:
    """Midnight at the start of DAY in the newsletter's zone: an edition's date, never the clock."""
    return datetime.combine(day, time(0), config.zone).astimezone(timezone.utc)


def _base(config: Config) -> str:
    return config.base_url.rstrip("/") + "/" if config.base_url else ""


def _feed_uuid(config: Config, *parts: str) -> str:
    # From the List-Id, not the base URL: moving the archive must not make readers see every edition anew.
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(("digest", config.list_id, *parts))))


def preload() -> None:
    """Import the library the archive's feed uses (feedgen, with lxml); a build does it
    while other processes parse entries, unless the entry reader makes the feed."""
    import importlib

    from digest import forked

    if "inline" not in forked.HELPS:
        importlib.import_module("feedgen.feed")


def feed_bytes(config: Config, listing: list[Listed], meanwhile: Callable[[], None] | None = None) -> bytes:
    """make_feed's feed, made by the entry reader when it inlines the build's CSS
    (digest.forked.inliner: it has lxml, and this process then does not import feedgen)
    while MEANWHILE runs here, else here (after MEANWHILE)."""
    from digest import forked

    made = forked.served("feed", config, listing, meanwhile=meanwhile)
    return made if isinstance(made, bytes) else make_feed(config, listing)


def make_feed(config: Config, listing: list[Listed]) -> bytes:
    """An Atom feed (RFC 4287) with one entry per edition, newest first; timestamps from the editions' dates."""
    from feedgen.feed import FeedGenerator

    base = _base(config)
    feed = FeedGenerator()
    feed.id(_feed_uuid(config, "feed"))
    feed.title(config.name)
    if config.tagline:
        feed.subtitle(config.tagline)
    feed.language(config.language)
    feed.author({"name": config.name})
    feed.generator("digest", version=__version__)
    feed.link(href=base or "./", rel="alternate", type="text/html")
    feed.link(href=f"{base}feed.xml", rel="self", type="application/atom+xml")
    if config.logo_url:
        feed.logo(config.logo_url)
    newest = max((_moment(item.first, config) for item in listing),
                 default=datetime(1970, 1, 1, tzinfo=timezone.utc))
    feed.updated(newest)
    for item in reversed(listing):
        entry = feed.add_entry(order="append")
        entry.id(_feed_uuid(config, item.week))
        entry.title(item.subject)
        moment = _moment(item.first, config)
        entry.updated(moment)
        entry.published(moment)
        entry.link(href=f"{base}{item.href}", rel="alternate", type="text/html")
        if item.preheader:
            entry.summary(item.preheader)
        entry.content(_feed_content(item), type="html")
    return feed.atom_str(pretty=True, encoding="UTF-8")


def _feed_content(item: Listed) -> str:
    """An edition's summary in its feed entry: the week, the count and each event with its
    organizer, escaped as the templates' autoescape does (markupsafe's escape). Neither a
    template compiled afresh in every build (~5 ms) nor Markup.format (string.Formatter,
    ~0.2 ms an edition) is needed for this."""
    html = f"<p>{escape(item.range)}: {item.count} event{'s' if item.count != 1 else ''}.</p>"
    if item.events:
        html += "<ul>" + "".join(f"<li>{escape(title)} ({escape(organizer)})</li>"
                                 for title, organizer in item.events) + "</ul>"
    return html


def calendar_of_everything(p: Plan, known: dict | None = None) -> bytes:
    """Every dated event, one VEVENT each, with its stable UID (calendar apps update, never duplicate).

    Cancelled and postponed events stay in, as STATUS:CANCELLED / TENTATIVE: a subscribed
    calendar that already shows them then marks them, instead of silently keeping them.
    KNOWN: VEVENTs made before (see calendar_bytes); those of events no longer here are dropped."""
    zone = p.config.zone
    events = sorted((e for e in p.events if e.status in ("scheduled", "cancelled", "postponed") and e.start is not None),
                    key=lambda e: e.sort_key(zone))
    stamp = datetime.combine(p.today, time(0), timezone.utc)
    data = calendar_bytes(events, p.config, stamp, p.config.name, known)
    if known is not None:
        current = {(e.path, e.content_hash) for e in events}
        for key in [key for key in known if key not in current]:
            del known[key]
    return data


def _cached(cache: BuildCache | None, parts: Iterable[str], make: Callable[[], bytes]) -> bytes:
    """make(), from the build cache when PARTS (everything it is made from) are unchanged."""
    if cache is None:
        return make()
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    data = cache.get_blob(key)
    if data is None:
        data = make()
        cache.put_blob(key, data)
    return data


def _cached_calendar(cache: BuildCache | None, p: Plan) -> bytes:
    """calendar_of_everything, from the build cache when no entry, setting or tool changed.

    An Event is made from its file's bytes, the config and the tool alone, so their
    hashes (with "today", the DTSTAMP) name the calendar exactly."""
    from digest.cache import config_fingerprint, tool_fingerprint

    return _cached(cache, ("events.ics", tool_fingerprint(), config_fingerprint(p.config), p.today.isoformat(),
                          *(f"{e.path}\0{e.content_hash}" for e in p.events)),
                   lambda: calendar_of_everything(p, cache.vevents(p.config) if cache is not None else None))


def calendar_later(cache: BuildCache | None, p: Plan) -> Callable[[], bytes]:
    """_cached_calendar(CACHE, P), made at the first call and kept (the build may make it
    while it waits for the entry reader: digest.forked.when_idle)."""
    return functools.cache(functools.partial(_cached_calendar, cache, p))


def index_page(renderer: WebRenderer, config: Config, listing: list[Listed]) -> bytes:
    context = {"site": _site(config), "root": "./", "editions": list(reversed(listing)), "base_url": _base(config)}
    return _tidy(renderer.render("index.html", context)).encode("utf-8")


def _renav(out: Path, renderer: WebRenderer, config: Config, listing: list[Listed],
           skip: set[str], known: dict[str, tuple] | None = None) -> dict[str, bytes]:
    """Older pages whose previous/next links are out of date, brought up to date: "WEEK/index.html" -> page.

    KNOWN (BuildCache.archive_reads' "navs"), when given, is used and kept up to date:
    a page whose identity (digest.cache.file_identity) is as recorded with the same nav
    (or with none: no markers) is not read again."""
    from digest.cache import file_identity

    changed = {}
    seen: dict[str, tuple] = {}
    now = time_ns()
    for item in listing:
        path = out / item.week / PAGE
        if item.week in skip:
            continue
        identity = file_identity(path, now)
        if identity is None:
            continue
        nav = nav_html(renderer, config, listing, item.week)
        record = known.get(item.week) if known is not None else None
        if record is not None and record[0] == identity[0] and record[1] in (nav, None):
            seen[item.week] = record  # as it was: it holds this nav, or none
            continue
        html = path.read_bytes()
        fresh = with_nav(html, nav)
        if fresh is not None and fresh != html:  # a page without markers is left as it is
            changed[f"{item.week}/index.html"] = fresh
        elif identity[1]:
            seen[item.week] = (identity[0], None if fresh is None else nav)
    if known is not None:
        known.clear()
        known.update(seen)
    return changed


@dataclass(frozen=True)
class Archive:
    """Everything the archive writes, rendered before anything is written."""

    #: WEEK -> {"index.html": the web version}, written with the edition's own folder
    #: (empty when prepare_archive handed each page on as it was made).
    pages: dict[str, dict[str, bytes]]
    #: Paths under OUT -> bytes: index.html, feed.xml, events.ics and older pages' new links.
    files: dict[str, bytes]


def prepare_archive(out: Path, p: Plan, built: list[BuiltEdition], cache: BuildCache | None = None,
                    page: Callable[[str, bytes], None] | None = None,
                    calendar: Callable[[], bytes] | None = None) -> Archive:
    """Read what OUT holds and render the archive as it will be once BUILT is written (writes nothing).

    PAGE, when given, gets each edition's web page (week, bytes) as soon as it is made,
    and the Archive keeps none. CALENDAR, when given, gives the calendar of every event
    (calendar_later). Call it under the build lock: it reads the editions already on disk.
    """
    reads = cache.archive_reads() if cache is not None else {"listed": None, "navs": None}
    listing = catalogue(out, built, reads["listed"])
    renderer = WebRenderer(p.config.root, cache.bytecode() if cache is not None else None)
    pages: dict[str, dict[str, bytes]] = {}
    files: dict[str, bytes] = {}
    # The index and the feed are made from the listing, the config, the tool (and the web templates).
    from digest.cache import config_fingerprint, templates_fingerprint, tool_fingerprint

    base = (tool_fingerprint(), config_fingerprint(p.config), repr(listing)) if cache is not None else ()

    def the_rest() -> None:
        """Everything but the feed: made while the entry reader makes the feed, if it does."""
        for item in built:
            nav = nav_html(renderer, p.config, listing, item.week)
            # Rendered with the edition (in its worker) or, for an edition left as it was,
            # the page on disk: only the previous/next links can have changed.
            current = out / item.week / PAGE
            ready = item.page or (current.read_bytes() if current.is_file() else b"")
            data = with_nav(ready, nav) if ready else None
            if data is None:
                data = edition_page(renderer, p, item, nav)
            if page is not None:
                page(item.week, data)
            else:
                pages[item.week] = {PAGE: data}
        files.update(_renav(out, renderer, p.config, listing, {item.week for item in built}, reads["navs"]))
        files["index.html"] = _cached(cache, ("index.html", *base, templates_fingerprint(renderer.dirs)),
                                      lambda: index_page(renderer, p.config, listing))
        files["events.ics"] = calendar() if calendar is not None else _cached_calendar(cache, p)

    rest_once = functools.cache(the_rest)
    feed = _cached(cache, ("feed.xml", *base), lambda: feed_bytes(p.config, listing, meanwhile=rest_once))
    rest_once()
    index, events = files.pop("index.html"), files.pop("events.ics")
    files.update({"index.html": index, "feed.xml": feed, "events.ics": events})  # the older pages' first
    return Archive(pages, files)


def write_archive(out: Path, archive: Archive) -> list[Path]:
    """After the editions are written: the archive's files, each atomically (flushed
    together: writer.write_files); unchanged files are not touched."""
    changed = {}
    for name, data in sorted(archive.files.items()):
        path = out / name
        if not path.is_file() or path.read_bytes() != data:
            changed[path] = data
    write_files(changed)
    return list(changed)
