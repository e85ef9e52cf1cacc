"""What the preview shows: the last good plan, each edition's last render, the current
problems, and a version number that moves on every rebuild.

Editions are rendered on demand and kept while their inputs are unchanged, so a
save re-renders only the editions it affects (and only those someone looks at)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, cast

from digest.build import BuiltEdition, Plan, plan, render_edition
from digest.config import Config
from digest.editions import make_edition
from digest.entries import MAX_ENTRY_BYTES, read_entry
from digest.errors import DigestError, Problem
from digest.models import Edition, Event
from digest.parallel import week_plans
from digest.render import Renderer, template_dirs

#: The key under which open index pages are counted (editions count under their week).
INDEX = ""


@dataclass(frozen=True)
class Failure:
    """Why the newest input could not be built: the problems as `digest check` prints them."""

    message: str
    problems: tuple[Problem, ...] = ()

    @staticmethod
    def of(exc: BaseException) -> Failure:
        if isinstance(exc, DigestError):
            return Failure(exc.message, exc.problems)
        # The server never dies on bad input, whatever a stage raises.
        return Failure(f"unexpected {type(exc).__name__}: {exc}")

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems] + [self.message]


@dataclass(frozen=True)
class Rendered:
    """One edition's render: the files, or why there are none."""

    built: BuiltEdition | None
    failure: Failure | None = None


@dataclass(frozen=True)
class Snapshot:
    """One rebuild's outcome. `plan` is the last plan that succeeded (kept while the
    input is broken, so pages go on showing the last good build under the overlay)."""

    version: int
    plan: Plan | None
    editions: dict[str, Edition] = field(default_factory=dict)  # week -> edition, in order
    plans: dict[str, Plan] = field(default_factory=dict)  # week -> the plan its edition renders from
    failure: Failure | None = None
    templates: str = ""
    renderer: Renderer | None = None
    seconds: float = 0.0

    @property
    def weeks(self) -> tuple[str, ...]:
        return tuple(self.editions)

    @property
    def stale(self) -> bool:
        return self.failure is not None


class EntryMemo:
    """Parsed entries kept in memory between rebuilds, keyed by path and content hash,
    so a save re-parses one file, not all of them. Passed to `plan` as its `cache`
    (only `reader` is used); unlike digest.cache.BuildCache it never touches the disk."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._entries: dict[tuple[str, str], tuple[Event | None, tuple[Problem, ...]]] = {}

    def reader(self, config: Config) -> Callable[[Path, str, Config], tuple[Event | None, list[Problem]]]:
        if config != self._config:
            self._config, self._entries = config, {}
        used: dict[tuple[str, str], tuple[Event | None, tuple[Problem, ...]]] = {}
        previous = self._entries
        self._entries = used  # entries deleted since the last rebuild drop out

        def read(path: Path, rel: str, cfg: Config) -> tuple[Event | None, list[Problem]]:
            try:
                if path.stat().st_size > MAX_ENTRY_BYTES:
                    return read_entry(path, rel, cfg)
                raw = path.read_bytes()
            except OSError:
                return read_entry(path, rel, cfg)  # reports the problem its own way
            key = (rel, hashlib.sha256(raw).hexdigest())
            if key not in previous:
                event, problems = read_entry(path, rel, cfg)
                previous[key] = (event, tuple(problems))
            used[key] = previous[key]
            return used[key][0], list(used[key][1])

        return read


def template_fingerprint(root: Path) -> str:
    """A hash of every template file the renderer may read (names and contents)."""
    sha = hashlib.sha256()
    for folder in template_dirs(root):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            sha.update(str(path).encode() + b"\0")
            try:
                sha.update(path.read_bytes())
            except OSError:
                sha.update(b"unreadable")
    return sha.hexdigest()


class Preview:
    """Holds the preview's state; thread-safe. `rebuild` is called by the watcher,
    `edition` by request threads, `wait` by the server-sent-event streams."""

    def __init__(self, root: Path, *, today: date | None = None) -> None:
        self.root = root
        self.today = today
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._render_lock = threading.Lock()  # mjml-python holds the GIL: render one at a time
        self._snapshot = Snapshot(0, None)
        self._cache: dict[str, tuple[Any, Rendered]] = {}
        self._watching: Counter[str] = Counter()
        self._entries = EntryMemo()
        self.closed = False

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    # -- building ---------------------------------------------------------------------------

    def rebuild(self) -> tuple[Snapshot, list[str]]:
        """Read everything again; render the editions open in a browser (and the first
        one, so template errors surface on the index too); then tell the pages.
        Returns the new snapshot and the weeks that were rendered again."""
        started = time.perf_counter()
        with self._render_lock:
            old = self.snapshot
            fingerprint = template_fingerprint(self.root)
            try:
                p = plan(self.root, all_weeks=True, today=self.today, cache=cast(Any, self._entries))
                editions: dict[str, Edition] = {}
                plans: dict[str, Plan] = {}
                # Each week's plan holds only the events its edition can show (one pass
                # over the events, not weeks x events); the editions are the same.
                for week, q in zip(p.weeks, week_plans(p, list(p.weeks))):
                    edition = make_edition(week, q.events, q.config, list(q.all_weeks))
                    if edition.empty and p.config.empty_weeks == "skip":
                        continue
                    editions[week], plans[week] = edition, q
                # The renderer keeps compiled templates: a new one when any template changed.
                same = old.renderer is not None and old.templates == fingerprint
                renderer = old.renderer if same and old.renderer else Renderer(self.root)
                snap = Snapshot(old.version + 1, p, editions, plans, None, fingerprint, renderer)
            except Exception as exc:  # noqa: BLE001 - shown in the browser; the server keeps serving
                snap = replace(old, version=old.version + 1, failure=Failure.of(exc))
            rendered: list[str] = []
            if snap.failure is None:
                with self._lock:
                    wanted = [w for w in self._watching if w in snap.editions]
                    index_open = INDEX in self._watching
                # The index shows template errors through its first edition; render that one
                # when an index page is open, and at start (it also warms the renderer up).
                if snap.weeks and snap.weeks[0] not in wanted and (index_open or old.version == 0):
                    wanted.append(snap.weeks[0])
                for week in wanted:
                    if self._render(snap, week)[1]:
                        rendered.append(week)
            snap = replace(snap, seconds=time.perf_counter() - started)
            with self._lock:
                self._snapshot = snap
                self._changed.notify_all()
        return snap, rendered

    @staticmethod
    def _key(snap: Snapshot, week: str) -> Any:
        q = snap.plans[week]
        return (snap.editions[week], q.config, snap.templates, q.warnings, q.today, q.all_weeks)

    def _render(self, snap: Snapshot, week: str) -> tuple[Rendered, bool]:
        """The edition's render for SNAP, from the cache when its inputs are unchanged.
        Call with the render lock held. Returns (rendered, whether it was rendered now)."""
        key = self._key(snap, week)
        cached = self._cache.get(week)
        if cached is not None and cached[0] == key:
            return cached[1], False
        assert snap.renderer is not None
        try:
            result = Rendered(render_edition(snap.plans[week], week, snap.renderer))
        except Exception as exc:  # noqa: BLE001 - shown in the browser
            # Keep the last good files to show under the overlay.
            last = cached[1].built if cached is not None else None
            result = Rendered(last, Failure.of(exc))
        self._cache[week] = (key, result)
        return result, True

    def edition(self, week: str) -> tuple[Snapshot, Rendered | None]:
        """The current snapshot and WEEK's render (None when there is no such edition)."""
        snap = self.snapshot
        if week not in snap.editions:
            return snap, None
        if snap.stale:
            cached = self._cache.get(week)
            return snap, Rendered(cached[1].built if cached else None, snap.failure)
        with self._render_lock:
            return snap, self._render(snap, week)[0]

    def cached(self, week: str) -> Rendered | None:
        """WEEK's render if it is up to date with the snapshot (never renders)."""
        snap = self.snapshot
        entry = self._cache.get(week)
        if entry is None or week not in snap.editions or snap.plan is None:
            return None
        return entry[1] if entry[0] == self._key(snap, week) else None

    # -- following changes ------------------------------------------------------------------

    @contextmanager
    def watching(self, week: str) -> Iterator[None]:
        """Mark WEEK (or INDEX) as open in a browser while the block runs: it is rendered
        on every rebuild, before the pages are told."""
        with self._lock:
            self._watching[week] += 1
        try:
            yield
        finally:
            with self._lock:
                self._watching[week] -= 1
                if self._watching[week] <= 0:
                    del self._watching[week]

    def wait(self, after: int, timeout: float) -> Snapshot:
        """The snapshot once its version differs from AFTER, or the current one after TIMEOUT."""
        with self._lock:
            self._changed.wait_for(lambda: self._snapshot.version != after or self.closed, timeout)
            return self._snapshot

    def close(self) -> None:
        """Wake every waiting stream so it can end."""
        with self._lock:
            self.closed = True
            self._changed.notify_all()
