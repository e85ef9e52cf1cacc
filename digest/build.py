"""`build` owns the order of the stages: read, validate, group, render, compile,
inline, finish, write. `check` and the preview run the same path without writing."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Callable, ContextManager, Iterable, Iterator, Mapping

from digest import __version__
from digest.config import Config, load_config
from digest.editions import make_edition, resolve_week, weeks_with_content
from digest.entries import Progress, load_events
from digest.errors import BuildError, InputError, Problem, raise_if_errors
from digest.finish import links_for, substitute
from digest.finish import ready as finish_ready
from digest.ical import Parts, calendar_bytes, remember_vevents, vevents_made
from digest.message import build_message
from digest.models import Edition, Event
from digest.present import VIEW_ONLINE, edition_context, subject
from digest.render import Renderer, compile_mjml, inline_css
from digest.cache import BuildCache, templates_fingerprint, unchanged_on_disk
from digest.parallel import render_weeks, week_plans, workers_for
from digest.writer import Staging, locked

STYLE_LIMIT = 16_384


@dataclass(frozen=True)
class BuiltEdition:
    """One edition, rendered: every file it writes, and what the build noticed."""

    week: str
    edition: Edition
    subject: str
    preheader: str
    files: dict[str, bytes]
    manifest: dict
    warnings: tuple[str, ...] = ()
    #: The build cache's key for this edition: names everything it was made from ("" without a cache).
    key: str = ""
    #: Its web page without the previous/next links (digest.archive fills them in), when rendered.
    page: bytes = b""
    #: The VEVENTs its worker made (digest.ical.vevents_made), on their way to the parent.
    vevents: tuple[tuple[str, Parts], ...] = ()
    #: What its worker learned that the parent did not know (see _learned), on their way to it.
    learned: Mapping[str, dict] = field(default_factory=dict)

    @property
    def html(self) -> str:
        return self.files["digest.html"].decode("utf-8")

    @property
    def text(self) -> str:
        return self.files["digest.txt"].decode("utf-8")


@dataclass(frozen=True)
class Plan:
    """What a build will make: the config, the events, the weeks and the warnings."""

    config: Config
    events: tuple[Event, ...]
    weeks: tuple[str, ...]
    all_weeks: tuple[str, ...]
    warnings: tuple[Problem, ...]
    today: date


def today_default() -> date:
    """The real date, or SOURCE_DATE_EPOCH's (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            day = datetime.fromtimestamp(int(epoch), timezone.utc).date()
            if not 1900 <= day.year <= 2199:
                raise ValueError(day)
            return day
        except (ValueError, OverflowError, OSError):
            raise InputError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix timestamp",
                             [Problem("environment", None, "SOURCE_DATE_EPOCH", "must be whole seconds since 1970",
                                      "e.g. SOURCE_DATE_EPOCH=1601510400")]) from None
    return date.today()


def plan(root: Path, *, weeks: Iterable[str] = (), all_weeks: bool = False, today: date | None = None,
         strict: bool = False, cache: BuildCache | None = None,
         meanwhile: Callable[[], None] | None = None, progress: Progress | None = None) -> Plan:
    """Read and validate everything; decide which editions to make. Raises InputError on bad input.

    With CACHE, each entry file is parsed once per distinct content. MEANWHILE runs
    while other processes parse entries, if they do; PROGRESS shows the entries parsed
    (see digest.entries.read_entries)."""
    config = load_config(root)
    if cache is not None and hasattr(cache, "read_all"):
        events, problems = load_events(root, config, read_all=cache.read_all, meanwhile=meanwhile,
                                       progress=progress)
    else:
        events, problems = load_events(root, config, cache.reader(config) if cache else None, meanwhile=meanwhile,
                                       progress=progress)
    raise_if_errors(problems, "the entries")
    warnings = tuple(sorted(p for p in problems if p.warning))
    if strict and warnings:
        raise InputError(f"{len(warnings)} warning(s) and --strict is on; nothing was written.",
                         [Problem(w.path, w.line, w.field, w.message, w.hint) for w in warnings])
    live = tuple(e for e in events if e.status != "draft")
    today = today or today_default()
    content = weeks_with_content(live, config)
    chosen: list[str] = []
    if all_weeks:
        chosen = list(content)
    for value in weeks:
        try:
            label = resolve_week(value, today, config)
        except ValueError as exc:
            message, hint = (exc.args + ("",))[:2]
            raise InputError("bad --week", [Problem("--week", None, None, str(message), str(hint) or None)]) from None
        if label not in chosen:
            chosen.append(label)
    return Plan(config, live, tuple(chosen), tuple(content), warnings, today)


def style_chars(html: str) -> int:
    """Characters inside <style> blocks (Gmail drops them all past 16,384)."""
    from digest.finish import document

    return sum(len(style.text or "") for style in document(html).iter("style"))


def _stamp(today: date) -> datetime:
    return datetime.combine(today, time(0), timezone.utc)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render_edition(p: Plan, week: str, renderer: Renderer, *, profile: str | None = None) -> BuiltEdition:
    """Render one week into all its files, in memory."""
    config = p.config
    edition = make_edition(week, p.events, config, list(p.all_weeks))
    links = links_for(config, week, profile or config.profile)
    warnings: list[str] = []

    def attempt(shortened: int, keep: int | None) -> tuple[str, str, str, dict]:
        shown = edition
        omitted: tuple[str, ...] = ()
        if keep is not None:
            kept = set(edition.events[:keep])
            omitted = tuple(e.title for e in edition.events[keep:])
            groups = []
            for g in edition.groups:
                events = tuple(e for e in g.events if e in kept)
                if events:
                    groups.append(type(g)(g.name, events))
            shown = type(edition)(**{**edition.__dict__, "groups": tuple(groups)})
        if shortened:
            # A shortened week lists only the deadlines of events from other weeks: this
            # week's own events show "Register by" in their cards (or on the web version).
            this_week = set(edition.events)
            shown = type(edition)(**{**shown.__dict__,
                                     "deadlines": tuple(d for d in shown.deadlines if d not in this_week)})
        context = edition_context(shown, config, shortened=shortened, omitted=omitted)
        context["edition"]["count"] = len(edition.events)
        context["view_online_url"] = VIEW_ONLINE if links.view_online else ""
        mjml_source = renderer.mjml(context)
        texts: list[str] = []  # the text version is rendered while the reader inlines, if it does
        html = inline_css(compile_mjml(mjml_source), renderer.css(context),
                          meanwhile=lambda: texts.append(renderer.text(context)))
        return mjml_source, html, texts[0], context

    mjml_source, html, text, context = attempt(0, None)
    budget = config.max_html_bytes
    if len(html.encode()) > budget:
        warnings.append(f"{week}: HTML was {len(html.encode()):,} bytes (budget {budget:,}); events shown in short")
        mjml_source, html, text, context = attempt(1, None)
        keep = len(edition.events)
        # Estimate how many events fit from the bytes each one costs, then step down:
        # a handful of renders even for a 1000-event week (cutting 10% a try took 45 s).
        frame = len(attempt(1, 0)[1].encode()) if len(html.encode()) > budget else 0
        while len(html.encode()) > budget and keep > 0:
            per_event = max(1.0, (len(html.encode()) - frame) / keep)
            keep = max(0, min(keep - 1, int((budget - frame) / per_event)))
            mjml_source, html, text, context = attempt(1, keep)
        if keep < len(edition.events):
            warnings.append(f"{week}: {len(edition.events) - keep} event(s) left out of the email to stay under "
                            f"{budget:,} bytes (listed on the web version)")
    html, text = substitute(html, text, links)
    styles = style_chars(html)  # the document substitute has just parsed
    html = html.rstrip("\n") + "\n"  # the MIME part ends with a newline: the file matches it
    if styles > STYLE_LIMIT:
        raise BuildError(f"{week}: the <style> blocks hold {styles:,} characters; Gmail drops them all past "
                         f"{STYLE_LIMIT:,}. Shorten the mj-style in templates/email/layout.mjml.")
    subject_line = subject(edition, config)
    eml = build_message(edition, config, subject=subject_line, text=text, html=html,
                        unsubscribe_url=links.header_unsubscribe)
    stamp = _stamp(p.today)
    files: dict[str, bytes] = {
        "digest.html": html.encode("utf-8"),
        "digest.txt": text.encode("utf-8"),
        "digest.mjml": mjml_source.encode("utf-8"),
        "digest.eml": eml,
    }
    dated = [e for e in edition.events if e.status == "scheduled"]
    files["events.ics"] = calendar_bytes(dated, config, stamp, f"{config.name}: {edition.week}")
    for event in dated:
        files[f"{event.slug}.ics"] = calendar_bytes([event], config, stamp, event.title)
    manifest = {
        "week": week,
        "first_day": edition.first.isoformat(),
        "last_day": edition.last.isoformat(),
        "subject": subject_line,
        "preheader": context["preheader"],
        "profile": links.profile,
        "unsubscribe": {"url": links.unsubscribe, "token_marker": links.token_marker},
        "view_online": links.view_online,
        "counts": {"events": len(edition.events), "organizers": len(edition.groups),
                   "deadlines": len(edition.deadlines), "ongoing": len(edition.ongoing), "tba": len(edition.tba),
                   "ahead": len(edition.ahead)},
        "events": [{"uid": e.uid, "title": e.title, "organizer": e.organizer, "status": e.status,
                    "path": e.path} for e in edition.events],
        "bytes": {name: len(data) for name, data in sorted(files.items())},
        "style_chars": styles,
        "shortened": bool(context["shortened"]),
        "warnings": warnings + [str(w) for w in p.warnings],
        "sources": {e.path: e.content_hash for e in sorted(
            {*edition.events, *edition.deadlines, *edition.ongoing, *edition.tba, *edition.ahead},
            key=lambda e: e.path)},
        "digest_version": __version__,
    }
    manifest["hashes"] = {name: _sha(data) for name, data in sorted(files.items())}
    files["manifest.json"] = (json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    return BuiltEdition(week, edition, subject_line, context["preheader"], files, manifest, tuple(warnings))


def render_all(p: Plan, *, profile: str | None = None, root: Path | None = None, cache: BuildCache | None = None,
               jobs: int | None = None, progress: Callable[[int], ContextManager[Callable[[int], None]]] | None = None,
               page: Callable[[BuiltEdition], bytes] | None = None,
               write: Callable[[BuiltEdition], BuiltEdition] | None = None,
               keep: Callable[[BuiltEdition], BuiltEdition] | None = None,
               renderer: Renderer | None = None, templates: str | None = None) -> list[BuiltEdition]:
    """Render every planned week: from CACHE when its inputs are unchanged, else on all cores.

    PAGE, when given, renders an edition's web page where the edition was rendered (in
    its worker). WRITE, when given, gets each rendered edition there too and returns
    what to send back in its place; KEEP gets each edition here, as soon as it is ready,
    and returns what to hold on to. RENDERER: the email templates' (made here when not given).
    TEMPLATES: the templates' fingerprint (digest.cache.templates_fingerprint of the email
    and web template folders), taken before RENDERER compiled any of them: an edit made
    after it can then only miss the cache later, never be stored under a newer key."""
    from digest.archive import web_template_dirs

    root = root or p.config.root
    renderer = renderer or Renderer(root, cache.bytecode() if cache else None)
    # A cached edition holds its web page: the web templates are part of its key.
    if templates is None:
        templates = templates_fingerprint(renderer.dirs + web_template_dirs(root)) if cache else ""
    found: dict[str, BuiltEdition] = {}
    todo: list[tuple[str, str, Plan]] = []
    editions: dict[str, Edition] = {}

    def ready(item: BuiltEdition) -> BuiltEdition:
        return keep(item) if keep else item

    for week, q in zip(p.weeks, week_plans(p, list(p.weeks))):
        edition = make_edition(week, q.events, q.config, list(q.all_weeks))
        if edition.empty and p.config.empty_weeks == "skip":
            continue
        key = cache.edition_key(q, week, profile, templates, edition) if cache else ""
        left = cache.as_left(week, key) if cache else None
        if cache and left is not None:  # OUT/WEEK is as the build that made this edition left it
            found[week] = ready(BuiltEdition(week, edition, left["subject"], left["preheader"],
                                             OnDisk(cache.out / week, left["sizes"]), left["manifest"],
                                             left["warnings"], key))
            continue
        hit = cache.get(key) if cache else None
        # The Edition made here (equal to the one rendered) replaces the unpickled copy of
        # it and of its events: 10,000 entries' editions held ~100 MB of such copies.
        if hit is not None:
            hit = replace(hit, key=key, edition=edition)
            found[week] = ready(write(hit) if write else hit)
        else:
            todo.append((week, key, q))
            editions[week] = edition
    keys = {week: key for week, key, _ in todo}
    parent = os.getpid()
    # What this process knows when workers fork: each sends back only what it learns beyond it
    # (for the cache to keep: a build without one does without).
    sent = _known() if cache and workers_for(len(todo), jobs) > 1 else None

    def finish(week: str, item: BuiltEdition) -> BuiltEdition:  # in the worker
        item = replace(item, key=keys[week], page=page(item) if page else b"")
        if cache:
            cache.put(item.key, item)
        if write:
            item = write(item)
        # The parent's calendar of every event takes the VEVENTs made here instead of making them again.
        if os.getpid() == parent:
            return replace(item, edition=None)  # type: ignore[arg-type]  # done() puts it back
        learned = _learned(sent) if sent is not None else {}
        return replace(item, edition=None, vevents=vevents_made(item.edition.events, p.config),  # type: ignore[arg-type]
                       learned=learned)

    def done(week: str, item: BuiltEdition) -> BuiltEdition:  # here
        if cache:
            cache.used(item.key)
        edition = editions.pop(week)
        if item.vevents:
            remember_vevents(edition.events, p.config, item.vevents)
        if item.learned:
            _adopt_learned(item.learned)
        return ready(replace(item, edition=edition, vevents=(), learned={}))

    with (progress(len(todo)) if progress else nullcontext(None)) as advance:
        rendered = render_weeks([q for _, _, q in todo], [w for w, _, _ in todo], renderer, profile=profile,
                                jobs=jobs, progress=advance, finish=finish, done=done)
    found.update((week, item) for (week, _, _), item in zip(todo, rendered))
    return [found[week] for week in p.weeks if week in found]


def _tables() -> dict[str, Mapping]:
    """What a process learns while it renders, and a later build reuses through the cache
    (digest.cache): the VTIMEZONEs and TZIDs digest.ical made, and premailer's parses."""
    from digest import ical
    from digest.render import inline_parses

    return {"zones": ical.ZONES, "tzids": ical.TZIDS, **inline_parses()}


def _known() -> dict[str, set]:
    return {kind: set(table) for kind, table in _tables().items()}


def _learned(sent: dict[str, set]) -> dict[str, dict]:
    """(In a worker) what _tables() holds beyond SENT, which then grows by it: a worker's
    VTIMEZONEs and parses reach the parent, which keeps them for the next build (without
    them, the first weekly build after a parallel --all made them again: ~20 ms)."""
    new = {kind: {key: value for key, value in table.items() if key not in sent[kind]}
           for kind, table in _tables().items()}
    for kind, table in new.items():
        sent[kind].update(table)
    return {kind: table for kind, table in new.items() if table}


def _adopt_learned(learned: Mapping[str, dict]) -> None:
    """(In the parent) what a worker learned (_learned)."""
    from digest import ical
    from digest.render import seed_inline_parses

    for key, zone in learned.get("zones", {}).items():
        ical.ZONES.setdefault(key, zone)
    for name, tzid in learned.get("tzids", {}).items():
        ical.TZIDS.setdefault(name, tzid)
    parses = {kind: learned[kind] for kind in ("rules", "pairs") if kind in learned}
    if parses:  # else nothing to put into premailer's cache
        seed_inline_parses(parses)


class OnDisk(Mapping[str, bytes]):
    """An edition's files, read from its folder when asked for: a build holds no edition's
    bytes once they are written (a 10,000-entry archive held ~300 MB of them)."""

    def __init__(self, folder: Path, sizes: dict[str, int]) -> None:
        self.folder, self.sizes = folder, sizes

    def __getitem__(self, name: str) -> bytes:
        if name not in self.sizes:
            raise KeyError(name)
        return (self.folder / name).read_bytes()

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def build(root: Path, out: Path, *, weeks: Iterable[str] = (), all_weeks: bool = False,
          today: date | None = None, profile: str | None = None, strict: bool = False, use_cache: bool = True,
          jobs: int | None = None,
          progress: Callable[[int], ContextManager[Callable[[int], None]]] | None = None,
          read_progress: Progress | None = None,
          ) -> tuple[Plan, list[BuiltEdition]]:
    """Build editions into OUT/<week>/: all of them, or on any failure none.

    Each edition is written to a staging folder as soon as it is rendered (its bytes are
    not kept in memory); the web archive is rendered next, and only then are the folders
    swapped in. OUT/.cache (digest.cache) keeps parsed entries and rendered editions; an
    edition whose folder already holds the same bytes is not rewritten."""
    from digest import forked
    from digest.archive import (PAGE, WebRenderer, calendar_later, edition_page, preload, prepare_archive,
                                web_template_dirs, write_archive)

    cache = BuildCache(out) if use_cache else None
    renderer = Renderer(root, cache.bytecode() if cache else None)
    web = WebRenderer(root, cache.bytecode() if cache else None)
    # Taken before any template is compiled (meanwhile may compile them long before the
    # lock is held): what is rendered is never newer than the key it is cached under.
    templates = templates_fingerprint(renderer.dirs + web_template_dirs(root)) if cache else ""

    def meanwhile() -> None:
        """While other processes parse entries: compile the templates (written to the
        cache once the lock is held) and import what rendering needs, before workers fork."""
        if cache:
            cache.hold_bytecode()
        renderer.warm()
        web.warm()
        preload()

    try:
        p = plan(root, weeks=weeks, all_weeks=all_weeks, today=today, strict=strict, cache=cache,
                 meanwhile=meanwhile, progress=read_progress)
        for week in p.weeks[:1]:
            links_for(p.config, week, profile or p.config.profile)  # a profile without its links fails here, first
    except BaseException:
        if cache:
            cache.discard_bytecode()  # nothing compiled is written: the build did not start
        raise
    fresh_cache = cache is not None and not cache.folder.exists()
    with locked(out):
        if cache:
            cache.release_bytecode()
        staging = Staging(out)
        same: set[str] = set()  # weeks whose folder already holds these files (the web page aside)
        kept: dict[str, BuiltEdition] = {}

        def write(item: BuiltEdition) -> BuiltEdition:
            """Write an edition to its staging folder unless OUT holds it already (in a worker,
            or here); it comes back with its files on disk."""
            sizes = {name: len(data) for name, data in item.files.items()}
            if cache and unchanged_on_disk(out, item.week, item.files, ignore=(PAGE,)):
                return replace(item, files=OnDisk(out / item.week, sizes))
            # The web page goes in too, its previous/next links still empty: page() below
            # rewrites the file in place (creating a file is what costs, on some disks).
            staged = {**item.files, PAGE: item.page} if item.page else item.files
            return replace(item, files=OnDisk(staging.stage(item.week, staged), sizes))

        def keep(item: BuiltEdition) -> BuiltEdition:
            """Note where an edition is: as it is in OUT, or staged."""
            folder = item.files.folder  # type: ignore[attr-defined]
            if folder == out / item.week:
                same.add(item.week)
            else:
                staging.adopt(item.week, folder)
            kept[item.week] = item
            return item

        def page(week: str, data: bytes) -> None:
            """Add an edition's web page to its folder."""
            if week not in same:
                staging.add(week, {PAGE: data})
                return
            current = out / week / PAGE
            if not (current.is_file() and current.read_bytes() == data):
                staging.stage(week, {**kept[week].files, PAGE: data})  # the rest read back from OUT/WEEK

        # The calendar of every event depends on no edition: made while the reader inlines,
        # if it does, when lxml (for the final HTML's checks: digest.finish) is imported too.
        calendar = calendar_later(cache, p)
        if forked.inliner() is not None:
            forked.when_idle(calendar)
            forked.when_idle(finish_ready)
        try:  # (the jobs are dropped below, run or not: they belong to this build)
            web.warm()  # compiled once, here, before workers fork
            built = render_all(p, profile=profile, root=root, cache=cache, jobs=jobs, progress=progress,
                               page=lambda item: edition_page(web, p, item), write=write, keep=keep,
                               renderer=renderer, templates=templates)
            # The web archive, rendered before anything is swapped in.
            archive = prepare_archive(out, p, built, cache, page=page, calendar=calendar)
            if cache and templates_fingerprint(renderer.dirs + web_template_dirs(root)) != templates:
                # A template changed while this build ran: what was rendered may not be what
                # the cache keys name (an edit put back later would then find it). Keep none of it.
                cache.forget_editions()
                raise BuildError("the templates changed while the build ran; nothing was written. "
                                 "Run the build again.")
            written = {target.name for target in staging.commit()}
        except BaseException:
            staging.abort()
            if fresh_cache and cache is not None:  # a failed first build leaves no cache behind
                shutil.rmtree(cache.folder, ignore_errors=True)
            raise
        finally:
            forked.drop_idle(calendar, finish_ready)
        for item in built:
            item.files.folder = out / item.week  # type: ignore[attr-defined]
            if cache:
                cache.leave(item, rewritten=item.week in written)
        write_archive(out, archive)  # OUT/index.html, feed.xml, events.ics; older pages' prev/next links
        if cache:
            cache.save(prune_editions=all_weeks)
    return p, built


_WEEK_DIR = re.compile(r"\d{4}-W\d{2}")
