"""The incremental-build cache, under OUT/.cache/: parsed entries and rendered editions.

Every key names everything the cached value was made from, so a changed input is a
different key and can never find old output. Entries and editions are keyed by a
SHA-256 of:
- an entry: the tool's fingerprint, the config, the file's path and bytes;
- an edition: the tool's fingerprint, the config, every template file (name and
  bytes), the profile, "today", the warnings, the neighbouring weeks and the path and
  content hash of every event the edition shows (in its place).
The tool's fingerprint covers digest's own source files and the versions of the
libraries that shape the output, so editing the code or upgrading a library (not only
bumping __version__) starts afresh. The smaller tables are each tagged with what
they hold for: VTIMEZONEs and premailer's parses (keyed by zone, CSS text) with the
tool's fingerprint; the calendar's VEVENTs (keyed by entry path and content hash) with
the tool's and the config's. Unreadable or corrupt cache files are misses.
Cache files are pickles: only a build run by the same user writes them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, Callable, Mapping

from digest import __version__
from digest.config import Config
from digest.errors import Problem
from digest.models import Event

if TYPE_CHECKING:
    from digest.build import BuiltEdition, Plan
    from digest.entries import Progress

CACHE_DIR = ".cache"
#: The entry table, in shard files ENTRY_SHARDS/<n>.pickle (n in hex). An entry stays in
#: the shard it was first written to; new ones go to the last shard until it holds
#: SHARD_SIZE, then to a new one. A weekly build's new entries rewrite one shard (16
#: shards by key, as before, were nearly all rewritten: ~30 ms for a year's entries); an
#: edit rewrites the old entry's shard and the last one.
ENTRY_SHARDS = "entries"
SHARD_SIZE = 64
ZONES_FILE = "vtimezones.pickle"
#: Each edition folder as the last build left it: STAMPS_DIR/<week>.pickle (one file a
#: week: a weekly build reads and writes its week's, not a year's ~600 KB table).
STAMPS_DIR = "stamps"
#: The one table of earlier versions, removed when a build next records a folder.
OLD_STAMPS_FILE = "stamps.pickle"
#: What premailer parsed (digest.render.inline_parses), for the next build's process.
INLINE_FILE = "inline.pickle"
#: The VEVENTs of the calendar of every event (digest.ical.Parts), by (path, content hash).
VEVENTS_FILE = "vevents.pickle"
#: Entry file -> (size, modification time, inode, settings key, entry key) when last read.
FILES_FILE = "files.pickle"
#: What builds read of the edition folders' manifests and pages (see archive_reads).
ARCHIVE_FILE = "archive.pickle"
#: A file modified this recently when read is read again next time ("racily clean", as git says).
RACY_NS = 2_000_000_000
#: The same for a file system with sub-millisecond times (still updated once per kernel tick).
FINE_RACY_NS = 50_000_000
#: Libraries whose version changes what a build writes.
LIBRARIES = ("jinja2", "mjml-python", "premailer", "cssutils", "icalendar", "markdown-it-py", "PyYAML", "tzdata",
             "MarkupSafe", "lxml", "feedgen")
_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def tool_fingerprint() -> str:
    """digest's version and source, Python's version and the output-shaping libraries'."""
    h = hashlib.sha256(f"digest {__version__}\0python {sys.version}\0".encode())
    for name, version in library_versions(LIBRARIES).items():
        h.update(f"{name} {version}\0".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(_system_tzdata().encode())
    return h.hexdigest()


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Each library's installed version ("-" when it is not installed), as
    importlib.metadata.version gives it: the first distribution of that name on sys.path.

    metadata.version searches every path entry once per name (~8 ms for LIBRARIES, in
    every build); here each entry is listed once and the versions read from the
    `NAME-VERSION.dist-info` folder names pip writes. A name whose first distribution is
    anything else (an .egg-info, a zip, a path entry that is not a folder) is asked of
    importlib.metadata after all."""
    wanted = {_normal(name): name for name in names}
    found: dict[str, str] = {}
    ask: set[str] = set()
    for entry in sys.path:
        if len(found) + len(ask) == len(wanted):
            break
        if entry.lower().endswith(".egg"):  # an egg folder or file: its EGG-INFO is a distribution
            ask.update(name for name in names if name not in found)
            break
        try:
            listing = os.listdir(entry or ".")
        except FileNotFoundError:
            continue
        except OSError:  # a zip or another kind of entry: importlib.metadata knows how to read it
            ask.update(name for name in names if name not in found)
            break
        for item in listing:
            stem, dot, kind = item.rpartition(".")
            kind = kind.lower()  # as importlib.metadata compares them
            if kind not in ("dist-info", "egg-info") or not dot:
                continue
            project, _, version = stem.partition("-")
            name = wanted.get(_normal(project))
            if name is None or name in found or name in ask:
                continue
            if kind == "dist-info" and version and "-" not in version:
                found[name] = version
            else:
                ask.add(name)
    versions = {}
    for name in names:
        if name in found:
            versions[name] = found[name]
            continue
        from importlib import metadata  # ~10 ms of imports (email, zipfile, csv): only when asked

        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def _normal(project: str) -> str:
    """A project name as PEP 503 compares them: PyYAML and pyyaml, markdown_it_py and
    markdown-it-py are one."""
    return "-".join(part for part in project.replace("_", "-").replace(".", "-").lower().split("-") if part)


def _system_tzdata() -> str:
    """The version line of the system's time zone database, which zoneinfo prefers to the
    tzdata package: an update changes local times, offsets and VTIMEZONEs."""
    import zoneinfo

    for folder in zoneinfo.TZPATH:
        try:
            with open(os.path.join(folder, "tzdata.zi"), encoding="utf-8") as handle:
                return f"{folder} {handle.readline().strip()}"
        except OSError:
            try:  # no version file: the folder's modification time changes with an update
                return f"{folder} {os.stat(folder).st_mtime_ns}"
            except OSError:
                continue
    return "-"


def config_fingerprint(config: Config) -> str:
    """Every setting (the frozen Config's repr covers each field, aliases included)."""
    return hashlib.sha256(repr(config).encode()).hexdigest()


def templates_fingerprint(dirs: list[Path]) -> str:
    """Every file of every template folder, in lookup order: a template change rebuilds all."""
    h = hashlib.sha256()
    for folder in dirs:
        h.update(str(folder).encode() + b"\0")
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


#: The entry-table shards this process last read or wrote, with their files' identity:
#: a long-lived process does not unpickle them again.
_LOADED: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def _identity(path: Path) -> tuple[int, int, int]:
    """(size, modification time in ns, inode) of PATH: a replaced or rewritten file differs."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns, info.st_ino


class BuildCache:
    """OUT/.cache: load once, ask and fill during a build, save at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.folder = out / CACHE_DIR
        self._stamps: dict[str, dict[str, Any] | None] = {}  # week -> its record (None: none), as read
        self._stamps_dirty: set[str] = set()
        self._as_left: set[str] = set()
        self._entries: dict[int, dict[str, tuple[Event | None, list[Problem]]]] | None = None
        self._where: dict[str, int] = {}  # entry key -> its shard
        self._entries_used: set[str] = set()
        self._entries_dirty: set[int] = set()
        self._files: dict[str, tuple[int, int, int, str, str]] = {}
        self._files_changed = False
        self._editions_used: set[str] = set()
        self._zones: dict[tuple[str, int, int], bytes] = {}
        self._tzids: dict[str, str] = {}  # zone name -> icalendar's TZID (digest.ical.TZIDS)
        self.hits = 0
        self.misses = 0
        #: Compiled templates not yet written (see hold_bytecode), or None: written at once.
        self._held: list[tuple[Any, Any]] | None = None
        self._inline_keys: tuple[frozenset, frozenset] = (frozenset(), frozenset())
        self._vevents: dict[tuple[str, str], Any] | None = None
        self._vevents_tag: tuple[str, str] = ("", "")
        self._vevents_loaded: frozenset = frozenset()
        self._archive: dict[str, dict] | None = None
        self._archive_loaded: dict[str, dict] = {}
        self._load_zones()
        self._load_inline()

    # -- VTIMEZONEs ---------------------------------------------------------------------

    def _load_zones(self) -> None:
        """Give digest.ical the VTIMEZONEs earlier builds made (same tool, same tzdata)."""
        from digest import ical

        data = _read_table(self.folder / ZONES_FILE)
        if data.get("tool") == tool_fingerprint():  # else from another tool or tz database: made again
            if isinstance(data.get("zones"), dict):
                self._zones = dict(data["zones"])
            if isinstance(data.get("tzids"), dict):
                self._tzids = dict(data["tzids"])
        for key, value in self._zones.items():
            ical.ZONES.setdefault(key, value)
        for name, tzid in self._tzids.items():
            ical.TZIDS.setdefault(name, tzid)

    # -- premailer's parses -------------------------------------------------------------

    def _load_inline(self) -> None:
        """Give digest.render what premailer parsed in earlier builds (same tool: same
        premailer, cssutils and options)."""
        data = _read_table(self.folder / INLINE_FILE)
        if data.get("tool") != tool_fingerprint() or not isinstance(data.get("parses"), dict):
            return
        from digest.render import seed_inline_parses

        parses = data["parses"]
        seed_inline_parses(parses)
        self._inline_keys = (frozenset(parses.get("rules") or ()), frozenset(parses.get("pairs") or ()))

    def _save_inline(self) -> None:
        if "digest.render" not in sys.modules:  # nothing was rendered
            return
        from digest.render import inline_parses

        parses = inline_parses()
        if (frozenset(parses["rules"]), frozenset(parses["pairs"])) != self._inline_keys:
            self._write_table(INLINE_FILE, {"tool": tool_fingerprint(), "parses": parses})
            self._inline_keys = (frozenset(parses["rules"]), frozenset(parses["pairs"]))

    # -- VEVENTs --------------------------------------------------------------------------

    def vevents(self, config: Config) -> dict[tuple[str, str], Any]:
        """The VEVENTs earlier builds made with CONFIG (and this tool), by (entry path, content
        hash): digest.ical.calendar_bytes' KNOWN. The build adds what it makes and removes
        what its events no longer name; save() keeps the table. A week's calendar of every
        event is then assembled from it: a year's VEVENTs took ~25 ms to make."""
        if self._vevents is None:
            tag = (tool_fingerprint(), config_fingerprint(config))
            data = _read_table(self.folder / VEVENTS_FILE)
            table = data.get("vevents") if data.get("tag") == tag else None
            self._vevents = dict(table) if isinstance(table, dict) else {}
            self._vevents_tag = tag
            self._vevents_loaded = frozenset(self._vevents)
        return self._vevents

    def _save_vevents(self) -> None:
        if self._vevents is not None and frozenset(self._vevents) != self._vevents_loaded:
            self._write_table(VEVENTS_FILE, {"tag": self._vevents_tag, "vevents": self._vevents})
            self._vevents_loaded = frozenset(self._vevents)

    # -- the archive's reads -------------------------------------------------------------

    def archive_reads(self) -> dict[str, dict]:
        """What earlier builds read of the edition folders (digest.archive), for files
        whose identity (see file_identity) is unchanged: "listed" is {week: (the
        manifest's identity, whether a web page is there, its Listed)}, "navs" is
        {week: (the page's identity, the nav it holds, or None: it has no markers)}. A
        year's manifests took ~5 ms to read, and its pages ~3 ms to read and compare.
        The caller changes the tables in place; save() keeps them."""
        if self._archive is None:
            data = _read_table(self.folder / ARCHIVE_FILE)
            mine = data.get("tool") == tool_fingerprint()
            self._archive = {name: dict(data[name]) if mine and isinstance(data.get(name), dict) else {}
                             for name in ("listed", "navs")}
            self._archive_loaded = {name: dict(table) for name, table in self._archive.items()}
        return self._archive

    def _save_archive(self) -> None:
        if self._archive is not None and self._archive != self._archive_loaded:
            self._write_table(ARCHIVE_FILE, {"tool": tool_fingerprint(), **self._archive})
            self._archive_loaded = {name: dict(table) for name, table in self._archive.items()}

    # -- entries ------------------------------------------------------------------------

    def _shard_path(self, index: int) -> Path:
        return self.folder / ENTRY_SHARDS / f"{index:x}.pickle"

    def _load_entries(self) -> dict[int, dict[str, tuple[Event | None, list[Problem]]]]:
        if self._entries is None:
            self._entries = {}
            try:
                names = os.listdir(self.folder / ENTRY_SHARDS)
            except OSError:
                names = []
            for name in names:
                stem, _, kind = name.partition(".")
                if kind != "pickle" or not stem or stem.strip("0123456789abcdef"):
                    continue  # a temporary file, or not ours
                index = int(stem, 16)
                path = self._shard_path(index)
                try:
                    stamp = _identity(path)
                except OSError:
                    continue
                memo = _LOADED.get(str(path))
                if memo is None or memo[0] != stamp:  # else this process wrote or read that very file
                    memo = _LOADED[str(path)] = (stamp, _read_table(path))
                self._entries[index] = memo[1]
                if not memo[1]:  # unreadable (a miss): rewritten or removed by save()
                    self._entries_dirty.add(index)
            self._where = {key: index for index in sorted(self._entries, reverse=True)
                           for key in self._entries[index]}
        return self._entries

    def _open_shard(self) -> int:
        """The shard new entries go to: the last one, unless it is full."""
        stored = self._load_entries()
        last = max(stored, default=-1)
        return last if last >= 0 and len(stored[last]) < SHARD_SIZE else last + 1

    def read_all(self, items: list[tuple[Path, str]], config: Config,
                 meanwhile: Callable[[], None] | None = None,
                 progress: Progress | None = None) -> list[tuple[Event | None, list[Problem]]]:
        """digest.entries.read_entries with this cache: stored entries are reused, the
        others are parsed (on all cores when there are many, MEANWHILE running here) and stored.

        Which entries are stored is known from the files' table before the stored ones
        are loaded: an entry whose file the last build read with the same content is
        taken as stored, the others are sent to be parsed at once, and the stored
        entries are loaded while they are (a year's: ~10 ms of a weekly build). One
        taken as stored and not found (a cache file lost) is parsed after all."""
        from digest.entries import MAX_ENTRY_BYTES, read_entries

        base = _key(tool_fingerprint(), config_fingerprint(config))
        known = _read_table(self.folder / FILES_FILE)
        keys: dict[int, str] = {}
        ask: list[int] = []  # unreadable, too big (read_entry reports those its own way) or not stored
        now = time.time_ns()
        for index, (path, rel) in enumerate(items):
            try:
                info = os.stat(path)
            except OSError:
                info = None
            seen = recorded = known.get(rel)
            if info is not None and seen is not None and seen[:4] == (info.st_size, info.st_mtime_ns,
                                                                       info.st_ino, base):
                key = seen[4]  # the file is as when it was last read (size, time, inode): not read again
            else:
                try:
                    with open(path, "rb") as handle:
                        raw = handle.read() if os.fstat(handle.fileno()).st_size <= MAX_ENTRY_BYTES else None
                except OSError:
                    raw = None
                if raw is None:
                    ask.append(index)
                    continue
                key = _key(base, rel, hashlib.sha256(raw).hexdigest())
                if info is not None and now - info.st_mtime_ns > RACY_NS:
                    seen = (info.st_size, info.st_mtime_ns, info.st_ino, base, key)
                else:  # too recent for its stat to be trusted: read again next time, its content known
                    seen = (-1, -1, -1, base, key)
            if seen[4] == key:
                self._files[rel] = seen
            keys[index] = key
            self._entries_used.add(key)
            if self._entries is not None:
                stored_here = key in self._where
            else:  # not loaded yet: stored when the last build read this very content
                stored_here = recorded is not None and recorded[4] == key
            if not stored_here:
                ask.append(index)
        self._files_changed = self._files != known

        def load_meanwhile() -> None:
            self._load_entries()
            if meanwhile is not None:
                meanwhile()

        parsed = dict(zip(ask, read_entries([items[i] for i in ask], config, load_meanwhile, progress)))
        stored = self._load_entries()  # loaded meanwhile, or not: nothing ran meanwhile
        lost = [i for i in keys if i not in parsed and keys[i] not in self._where]
        if lost:
            parsed.update(zip(lost, read_entries([items[i] for i in lost], config)))
        shard = self._open_shard()
        results: list[tuple[Event | None, list[Problem]]] = []
        for index in range(len(items)):
            if index in parsed:
                event, problems = parsed[index]
                if index in keys and keys[index] not in self._where:  # else stored after all
                    key = keys[index]
                    if len(stored.get(shard, ())) >= SHARD_SIZE:
                        shard += 1
                    stored.setdefault(shard, {})[key] = (event, list(problems))
                    self._where[key] = shard
                    self._entries_dirty.add(shard)
            else:
                event, problems = stored[self._where[keys[index]]][keys[index]]
                problems = list(problems)
            results.append((event, problems))
        return results

    # -- editions -----------------------------------------------------------------------

    def edition_key(self, p: Plan, week: str, profile: str | None, templates: str, edition: Any) -> str:
        """Everything EDITION (make_edition's, for WEEK) is rendered from.

        An Edition is a function of the week, the neighbouring weeks, the config and the
        events it shows; an Event, of its file's path and bytes, the config and the tool.
        So each shown event's path and content hash stand for it (hashing repr(edition)
        cost more than rendering)."""
        shown = (*edition.events, *edition.deadlines, *edition.ongoing, *edition.tba, *edition.ahead)
        return _key(tool_fingerprint(), config_fingerprint(p.config), templates, week, str(profile),
                    p.today.isoformat(), repr(p.warnings), repr(p.all_weeks), edition.week,
                    str(edition.previous), str(edition.next),
                    *(f"{e.path}\0{e.content_hash}" if e.content_hash else repr(e) for e in shown))

    def get(self, key: str) -> BuiltEdition | None:
        self._editions_used.add(key)
        try:
            built = pickle.loads((self.folder / "editions" / f"{key}.pickle").read_bytes())
        except Exception:
            self.misses += 1
            return None
        self.hits += 1
        return built

    def used(self, key: str) -> None:
        """Keep edition KEY at the next prune (put() in a worker process noted it there)."""
        self._editions_used.add(key)

    def put(self, key: str, built: BuiltEdition) -> None:
        self._editions_used.add(key)
        self._write(self.folder / "editions" / f"{key}.pickle", pickle.dumps(built, pickle.HIGHEST_PROTOCOL))

    def bytecode(self) -> Any:
        """A Jinja bytecode cache for compiled templates (Jinja checks each template's source).

        Its folder is per tool fingerprint, because the environments' options (digest's
        code) shape the compiled code too, and is made only when a template is compiled:
        a build that fails before rendering leaves nothing behind."""
        import jinja2

        parent = self.folder / "jinja"
        folder = parent / tool_fingerprint()[:16]
        cache = self

        class Bytecode(jinja2.FileSystemBytecodeCache):
            def dump_bytecode(self, bucket: Any) -> None:
                if cache._held is not None:
                    cache._held.append((self, bucket))
                    return
                try:
                    if not folder.is_dir():
                        if parent.is_dir():
                            for old in parent.iterdir():
                                shutil.rmtree(old, ignore_errors=True)
                        folder.mkdir(parents=True, exist_ok=True)
                    super().dump_bytecode(bucket)
                except OSError:
                    pass  # a cache that cannot be written only makes the next build slower

        return Bytecode(str(folder))

    def hold_bytecode(self) -> None:
        """Keep templates compiled from now on in memory until release_bytecode(): a
        build compiles them before it takes the lock, and writes nothing before it."""
        if self._held is None:
            self._held = []

    def discard_bytecode(self) -> None:
        """Forget the compiled templates held since hold_bytecode(): the build did not start."""
        self._held = None

    def release_bytecode(self) -> None:
        """Write the compiled templates held since hold_bytecode(), and any from now on."""
        held, self._held = self._held or [], None
        for bytecode, bucket in held:
            bytecode.dump_bytecode(bucket)

    # -- edition folders as the last build left them ---------------------------------------

    def _stamp(self, week: str) -> dict[str, Any] | None:
        if week not in self._stamps:
            self._stamps[week] = _read_table(self.folder / STAMPS_DIR / f"{week}.pickle") or None
        return self._stamps[week]

    def as_left(self, week: str, key: str) -> dict[str, Any] | None:
        """What the build that wrote OUT/WEEK from edition KEY recorded of it (subject,
        manifest, file sizes…), when every file there still has the size, times and inode
        it left (see folder_stat): the edition's bytes need not be loaded or compared. Any
        other state (a file touched, added or removed) is None."""
        record = self._stamp(week)
        if not record or record.get("key") != key or folder_stat(self.out / week) != record.get("stat"):
            return None
        self._editions_used.add(key)
        self._as_left.add(week)
        return record

    def leave(self, item: BuiltEdition, *, rewritten: bool = True) -> None:
        """Record OUT/WEEK as this build leaves it (call after it is written)."""
        if not rewritten and item.week in self._as_left:
            return  # found as recorded, and left so
        stat = folder_stat(self.out / item.week)
        if stat is None or not _settled(max((max(t[1], t[2]) for t in stat.values()), default=0),
                                        not stat or all(t[1] % 1_000_000 == 0 for t in stat.values())):
            # Unreadable, or written so recently that a change within the file system's
            # time resolution (1 s on some) could go unseen: not trusted, checked next time.
            self._stamps[item.week] = None
            self._stamps_dirty.add(item.week)
            return
        self._stamps[item.week] = {
            "key": item.key, "stat": stat, "subject": item.subject, "preheader": item.preheader,
            "manifest": item.manifest, "warnings": item.warnings,
            "sizes": {name: stat[name][0] for name in item.files if name in stat},
        }
        self._stamps_dirty.add(item.week)

    # -- other derived files (web pages) -----------------------------------------------

    def get_blob(self, key: str) -> bytes | None:
        self._editions_used.add(key)
        try:
            return (self.folder / "editions" / f"{key}.bin").read_bytes()
        except OSError:
            return None

    def put_blob(self, key: str, data: bytes) -> None:
        self._editions_used.add(key)
        self._write(self.folder / "editions" / f"{key}.bin", data)

    def forget_editions(self) -> None:
        """Drop every rendered edition and blob (a build that cannot vouch for what it
        rendered); they are made again when next needed."""
        shutil.rmtree(self.folder / "editions", ignore_errors=True)

    # -- saving -------------------------------------------------------------------------

    def save(self, *, prune_editions: bool = False) -> None:
        """Write the entry table (only the files still in use), any new VTIMEZONEs,
        premailer's new parses, the calendar's VEVENTs and the edition folders' records;
        with PRUNE_EDITIONS (a build of every week), drop the editions this build did not use."""
        from digest import ical

        if set(ical.ZONES) - set(self._zones) or set(ical.TZIDS) - set(self._tzids):
            self._zones = {**ical.ZONES, **self._zones}
            self._tzids = {**ical.TZIDS, **self._tzids}
            self._write_table(ZONES_FILE, {"tool": tool_fingerprint(), "zones": self._zones, "tzids": self._tzids})
        self._save_inline()
        self._save_vevents()
        self._save_archive()
        for index, shard in sorted((self._entries or {}).items()):
            if index in self._entries_dirty or not self._entries_used.issuperset(shard):
                kept = {k: v for k, v in shard.items() if k in self._entries_used}
                path = self._shard_path(index)
                if not kept:  # every entry in it deleted or edited
                    _LOADED.pop(str(path), None)
                    try:
                        path.unlink(missing_ok=True)
                    except OSError:
                        pass
                    continue
                self._write_table(path.relative_to(self.folder), kept)
                try:
                    _LOADED[str(path)] = (_identity(path), kept)
                except OSError:
                    pass
        if self._files_changed:
            self._write_table(FILES_FILE, self._files)
        for week in sorted(self._stamps_dirty):
            record = self._stamps.get(week)
            if record is not None:
                self._write_table(Path(STAMPS_DIR) / f"{week}.pickle", record)
                continue
            try:
                (self.folder / STAMPS_DIR / f"{week}.pickle").unlink(missing_ok=True)
            except OSError:
                pass
        if self._stamps_dirty:
            try:
                (self.folder / OLD_STAMPS_FILE).unlink(missing_ok=True)
            except OSError:
                pass
        self._stamps_dirty = set()
        if prune_editions and (self.folder / "editions").is_dir():
            for path in (*(self.folder / "editions").glob("*.pickle"), *(self.folder / "editions").glob("*.bin")):
                if path.stem not in self._editions_used:
                    path.unlink(missing_ok=True)

    def _write_table(self, name: str | Path, table: dict) -> None:
        self._write(self.folder / name, pickle.dumps(table, pickle.HIGHEST_PROTOCOL))

    def _write(self, path: Path, data: bytes) -> None:
        # Atomic (temporary file, then rename) but not fsynced: a cache file lost in a crash
        # is a miss, and fsyncing one per edition cost more than rendering it.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            try:  # a cache that cannot be written only makes the next build slower
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _read_table(path: Path) -> dict:
    """A dict the cache pickled at PATH; {} when missing, truncated, not a dict or from
    another Python (a miss, never an error)."""
    try:
        data = pickle.loads(path.read_bytes())
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


def file_identity(path: str | Path, now: int | None = None) -> tuple[tuple[int, int, int, int], bool] | None:
    """((size, modification and change times in ns, inode), trusted) of the regular file
    PATH; None when it is missing or not a regular file. A copy that keeps the
    modification time still changes the change time; a file replaced by rename has a
    new inode. Not trusted: changed so recently that a later change within the file
    system's time resolution could leave all four as they are (see BuildCache.leave)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not S_ISREG(info.st_mode):
        return None
    trusted = _settled(max(info.st_mtime_ns, info.st_ctime_ns), info.st_mtime_ns % 1_000_000 == 0, now)
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino), trusted


def _settled(newest_ns: int, coarse: bool, now: int | None = None) -> bool:
    """Whether files last changed at NEWEST_NS are old enough for their sizes, times and
    inodes to show any later change: RACY_NS on a file system with coarse times (COARSE:
    whole milliseconds, or seconds), FINE_RACY_NS on others (still a kernel tick)."""
    return (now if now is not None else time.time_ns()) - newest_ns >= (RACY_NS if coarse else FINE_RACY_NS)


def folder_stat(folder: Path) -> dict[str, tuple[int, int, int, int]] | None:
    """{relative name: (size, modification and change times in ns, inode)} of every file
    under FOLDER; None when unreadable. A rewritten folder has new inodes; a copy that
    keeps modification times (cp -p, rsync -t) still changes the change time."""
    found: dict[str, tuple[int, int, int, int]] = {}
    try:
        pending = [("", os.fspath(folder))]
        while pending:
            prefix, path = pending.pop()
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((f"{prefix}{entry.name}/", entry.path))
                    else:
                        info = entry.stat(follow_symlinks=False)
                        found[prefix + entry.name] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
    except OSError:
        return None
    return found


def unchanged_on_disk(out: Path, week: str, files: Mapping[str, bytes], ignore: tuple[str, ...] = ()) -> bool:
    """True when OUT/WEEK holds exactly FILES (same names, same bytes; IGNORE aside): nothing to write."""
    folder = os.path.join(out, week)
    present = folder_stat(Path(folder))
    if present is None or set(present) - set(ignore) != set(files) - set(ignore):
        return False
    try:
        for name, data in files.items():
            if name in ignore:
                continue
            with open(os.path.join(folder, name), "rb") as handle:
                if handle.read() != data:
                    return False
        return True
    except OSError:
        return False
