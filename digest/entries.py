"""Reading entries: Markdown files with YAML front matter become validated Events.

Every problem in every file is collected (with file, line and field) before anything
is built; nothing here raises for bad input.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import unicodedata
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable
from zoneinfo import ZoneInfo

from digest.config import Config
from digest.dates import EXAMPLE, DateValueError, parse_day, parse_when, resolve_zone
from digest.errors import Problem
from digest.links import link_problem
from digest.models import STATUSES, Event, Speaker

ENTRIES_DIR = "entries"
MAX_ENTRY_BYTES = 1024 * 1024
MAX_TITLE = 300
#: Dates outside these years are typing mistakes (and would overflow time zone arithmetic).
MIN_YEAR, MAX_YEAR = 1900, 2199
MAX_YAML_DEPTH = 20
MAX_YAML_NODES = 20_000
FIELDS = ("title", "organizer", "start", "end", "timezone", "all_day", "location", "online",
          "register", "register_by", "speakers", "tags", "status", "until", "uid", "summary")
SPEAKER_FIELDS = ("name", "role")

@lru_cache(maxsize=1)
def _loaders() -> tuple[type, type]:
    """libyaml's safe loader, and one without the timestamp resolver (dates stay text,
    read by digest.dates). PyYAML is imported here, on the first entry parsed: a build
    that finds every entry in its cache does not load it."""
    import yaml

    base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        """Safe YAML without the timestamp resolver."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    return base, Loader


def ready_to_read() -> None:
    """Import what parsing an entry needs (PyYAML, markdown-it, dateutil): a reader
    standing by does it before it is asked (digest.forked)."""
    import importlib

    _loaders()
    for name in ("dateutil.parser", "digest.markup"):
        importlib.import_module(name)


def hidden_part(parts: Iterable[str]) -> str | None:
    """The first hidden name (starting with a dot) among a path's PARTS below entries/:
    the build reads nothing there (.git, an editor's .trash of deleted notes)."""
    return next((part for part in parts if part.startswith(".")), None)


def discover(root: Path) -> list[Path]:
    """Entry files under ROOT/entries, in a stable order (by relative path, bytewise);
    hidden files and folders (names starting with a dot) are left out."""
    return [path for path, _ in _discover(root)]


def _discover(root: Path) -> list[tuple[Path, str]]:
    """(path, path relative to ROOT, with /) of every entry file, in discover's order."""
    folder = root / ENTRIES_DIR
    if not folder.is_dir():
        return []
    found: list[tuple[Path, str]] = []
    # The *.md files folder.rglob would find, but for hidden names: folders and files whose
    # name starts with a dot (.git, an editor's .trash of deleted notes, .#lock files) are
    # not entries. Symlinked folders are not entered. scandir's entries need no stat per
    # file unless it is a symlink (rglob cost ~15 ms a 1,000).
    pending = [(str(folder), ENTRIES_DIR + "/")]
    while pending:
        where, rel = pending.pop()
        try:
            with os.scandir(where) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        pending.append((entry.path, rel + entry.name + "/"))
                elif entry.name.endswith(".md") and not entry.name.startswith(".") and entry.is_file():
                    found.append((Path(entry.path), rel + entry.name))
            except OSError:
                continue
    return sorted(found, key=lambda item: item[1].encode("utf-8", "surrogateescape"))


PARALLEL_MIN = 300  # below this many files, starting processes costs more than it saves
#: From this many files (and below PARALLEL_MIN), with something to do meanwhile, one
#: forked process reads them while this one does it: a weekly build's new entries are
#: read while the templates load and premailer is imported (20-30 ms of a ~300 ms build).
#: Fewer are read here (YAML and Markdown's imports and a few entries: ~20 ms), and
#: MEANWHILE is left to be done when needed: a build may turn out to render nothing.
FORK_MIN = 8


def read_entries(items: list[tuple[Path, str]], config: Config,
                 meanwhile: Callable[[], None] | None = None,
                 progress: Progress | None = None) -> list[tuple[Event | None, list[Problem]]]:
    """read_entry for every (path, relative path), in order: in forked processes when
    there are many (YAML and Markdown parsing hold the GIL), in one forked process when
    there are a few and MEANWHILE is given (FORK_MIN), else here.

    MEANWHILE, when given, runs here while forked processes read (a build compiles its
    templates then); it is skipped when the entries are read here. PROGRESS: see
    Progress; it counts each entry read. Errors of MEANWHILE and PROGRESS are raised as
    they are (never taken for the readers' failure)."""
    import threading

    from digest import forked

    cores = forked.cores()
    with (progress(len(items)) if progress else nullcontext(None)) as advance:
        standing = forked.claim()
        if standing is not None and not 0 < len(items) < PARALLEL_MIN:
            standing.stop()  # nothing to read, or a pool's work: it is not needed
            standing = None
        if standing is not None:  # its imports are done, or under way: even one entry is read there
            return _read_forked(items, config, meanwhile, advance, standing)
        can_fork = cores >= 2 and threading.active_count() == 1 and hasattr(os, "fork")
        if can_fork and meanwhile is not None and FORK_MIN <= len(items) < PARALLEL_MIN:
            return _read_forked(items, config, meanwhile, advance)
        if len(items) < PARALLEL_MIN or not can_fork:
            return _read_here(items, config, advance)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from digest.parallel import frozen

        global _READ_CONFIG
        _READ_CONFIG = config
        failed: BaseException | None = None
        read: list[tuple[Event | None, list[Problem]]] = []
        try:
            with frozen(), ProcessPoolExecutor(min(cores, 4), mp_context=multiprocessing.get_context("fork")) as pool:
                results = pool.map(_read_one, items, chunksize=max(1, len(items) // (cores * 8)))
                try:
                    if meanwhile is not None:
                        meanwhile()
                except BaseException as exc:  # the caller's error, not the readers': raised as it is, below
                    failed = exc
                    pool.shutdown(cancel_futures=True)
                else:
                    for result in results:
                        read.append(result)
                        try:
                            if advance is not None:
                                advance(1)
                        except BaseException as exc:  # the progress bar's (a closed terminal), as above
                            failed = exc
                            pool.shutdown(cancel_futures=True)
                            break
        except (OSError, RuntimeError):  # cannot fork, or a worker died: read the rest here
            if failed is not None:
                raise failed from None
            return read + _read_here(items[len(read):], config, advance)
        finally:
            _READ_CONFIG = None
        if failed is not None:
            raise failed
        return read


_READ_CONFIG: Config | None = None  # inherited by forked readers


def _read_forked(items: list[tuple[Path, str]], config: Config, meanwhile: Callable[[], None] | None,
                 advance: Callable[[int], None] | None,
                 standing: Any = None) -> list[tuple[Event | None, list[Problem]]]:
    """read_entries' small case: one forked process reads ITEMS (digest.forked) while
    MEANWHILE runs here: STANDING, a reader standing by (asked now), or one forked now.
    If it cannot be started, or dies, or sends back anything but all of them, ITEMS are
    read here; an error of MEANWHILE (or Ctrl-C) is raised as it is, once the reader is
    stopped and reaped."""
    from digest.forked import Forked, read_standing

    if standing is not None:
        read = read_standing(standing, items, config, meanwhile)
    else:
        with Forked(lambda: [read_entry(path, rel, config) for path, rel in items]) as reader:
            if reader.started and meanwhile is not None:  # else read here, below: nothing runs meanwhile
                meanwhile()
            read = reader.result()
    if not isinstance(read, list) or len(read) != len(items):
        return _read_here(items, config, advance)
    return [_counted(result, advance) for result in read]


#: A progress bar's maker: PROGRESS(total) is a context that gives a function to call
#: with each count done (or None: nothing to show).
Progress = Callable[[int], ContextManager[Callable[[int], None] | None]]


def _counted(result: Any, advance: Callable[[int], None] | None) -> Any:
    """RESULT, once ADVANCE (when there is one) has counted it."""
    if advance is not None:
        advance(1)
    return result


def _read_here(items: list[tuple[Path, str]], config: Config,
               advance: Callable[[int], None] | None) -> list[tuple[Event | None, list[Problem]]]:
    """read_entry for each of ITEMS in this process, each counted by ADVANCE."""
    return [_counted(read_entry(path, rel, config), advance) for path, rel in items]


def _read_one(item: tuple[Path, str]) -> tuple[Event | None, list[Problem]]:
    assert _READ_CONFIG is not None
    return read_entry(item[0], item[1], _READ_CONFIG)


def load_events(root: Path, config: Config, read: Any = None, read_all: Any = None,
                meanwhile: Callable[[], None] | None = None,
                progress: Progress | None = None) -> tuple[tuple[Event, ...], list[Problem]]:
    """Read and validate every entry; return the good events and all problems.

    READ replaces read_entry (same signature), READ_ALL replaces read_entries:
    digest.cache passes memoised ones. MEANWHILE, PROGRESS: see read_entries (PROGRESS
    counts the entries parsed, not those a cache already holds)."""
    events: list[Event] = []
    problems: list[Problem] = []
    seen: dict[tuple, str] = {}
    seen_uid: dict[str, str] = {}
    items = _discover(root)
    if read_all is not None:
        results = read_all(items, config, meanwhile, progress)
    elif read is not None:
        results = [read(path, rel, config) for path, rel in items]
    else:
        results = read_entries(items, config, meanwhile, progress)
    for (path, rel), (event, found) in zip(items, results):
        problems.extend(found)
        if event is None:
            continue
        key = (event.title.casefold(), event.organizer.casefold(), event.start, event.status)
        if key in seen:
            problems.append(Problem(rel, 1, "title", f"duplicates {seen[key]} (same title, organizer and start)",
                                    "delete one of the two files, or make them differ"))
            continue
        if event.uid in seen_uid:
            problems.append(Problem(rel, 1, "uid", f"uid {event.uid!r} is already used by {seen_uid[event.uid]}",
                                    "every entry needs its own uid; remove the field to use the file name"))
            continue
        seen[key] = rel
        seen_uid[event.uid] = rel
        events.append(event)
    return tuple(events), problems


@dataclass
class _Fields:
    values: dict[str, Any]
    lines: dict[str, int]


def read_entry(path: Path, rel: str, config: Config) -> tuple[Event | None, list[Problem]]:
    """Read one file into an Event (or None) and the problems found in it."""
    problems: list[Problem] = []
    try:
        size = path.stat().st_size
        if size > MAX_ENTRY_BYTES:
            return None, [Problem(rel, None, None, f"file is {size:,} bytes; entries are limited to 1 MiB",
                                  "shorten the description or link to a page")]
        with open(path, "rb") as handle:  # bounded even when the size changed since stat()
            raw = handle.read(MAX_ENTRY_BYTES + 1)
        if len(raw) > MAX_ENTRY_BYTES:
            return None, [Problem(rel, None, None, "file is over 1 MiB; entries are limited to 1 MiB",
                                  "shorten the description or link to a page")]
    except OSError as exc:
        return None, [Problem(rel, None, None, f"cannot be read: {exc.strerror}", "check the file's permissions")]
    text, problem = _decode(raw, rel)
    if problem:
        return None, [problem]
    parsed = _split_front_matter(text, rel, problems)
    if parsed is None:
        return None, problems
    fields_, body = parsed
    found = _BAD_CHAR.search(body)
    if found:
        start = len(text.rstrip("\n")) - len(body) + found.start()
        problems.append(Problem(rel, text[:start].count("\n") + 1, None, f"the text {_bad_chars(found.group())}",
                                "remove it; an email cannot carry it"))
    event = _validate(fields_, body, rel, config, hashlib.sha256(raw).hexdigest(), problems)
    if any(not p.warning for p in problems):
        return None, problems
    return event, problems


def _decode(raw: bytes, rel: str) -> tuple[str, Problem | None]:
    if not raw.strip():
        return "", Problem(rel, None, None, "file is empty", "start it with front matter: ---, title: …, ---")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return "", Problem(rel, line, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                           "save the file as UTF-8")
    if "\0" in text:
        return "", Problem(rel, text[: text.index("\0")].count("\n") + 1, None,
                           "contains a NUL character", "save the file as plain UTF-8 text")
    return text.replace("\r\n", "\n").replace("\r", "\n"), None


def _split_front_matter(text: str, rel: str, problems: list[Problem]) -> tuple[_Fields, str] | None:
    import yaml

    lines = text.split("\n")
    if lines[0].strip() != "---":
        problems.append(Problem(rel, 1, None, "no front matter",
                                "the file must start with a line '---', then fields such as 'title: …', then '---'"))
        return None
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            break
    else:
        problems.append(Problem(rel, 1, None, "front matter is not closed", "add a line '---' after the last field"))
        return None
    source = "\n".join(lines[1:index])
    body = "\n".join(lines[index + 1:]).strip("\n")
    try:
        shape = _shape_problem(source) if _may_be_hostile(source) else None
        if shape:
            problems.append(Problem(rel, shape[0], None, shape[1], "write plain 'field: value' lines"))
            return None
        loader = _loaders()[1](source)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        # A quote or bracket left open is reported at the end of the text; the line
        # where it was opened (the context) is the one to fix.
        mark = exc.context_mark or exc.problem_mark
        line = mark.line + 2 if mark else 2
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        problems.append(Problem(rel, line, None, f"YAML syntax error: {what}",
                                "check the indentation and quote values that contain ': ' or start with a symbol"))
        return None
    except (yaml.YAMLError, RecursionError) as exc:
        problems.append(Problem(rel, 2, None, f"YAML error: {type(exc).__name__}", "simplify the front matter"))
        return None
    if node is None:
        problems.append(Problem(rel, 2, None, "front matter is empty", "add at least 'title:' and 'organizer:'"))
        return None
    if not isinstance(node, yaml.MappingNode):
        problems.append(Problem(rel, node.start_mark.line + 2, None, "front matter must be fields ('name: value')",
                                "write one 'field: value' per line"))
        return None
    values: dict[str, Any] = {}
    where: dict[str, int] = {}
    constructor = _loaders()[1]("")
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 2
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(Problem(rel, line, None, "a field name must be plain text", "write 'name: value'"))
            continue
        key = str(key_node.value)
        if key in values:
            problems.append(Problem(rel, line, key, f"given twice (first on line {where[key]})", "keep one of them"))
            continue
        try:
            values[key] = constructor.construct_object(value_node, deep=True)
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors fail in many ways on bad tagged values
            # An explicit tag PyYAML's safe constructors choke on: "!!timestamp 2020-10-07 09:00"
            # (no seconds) raised AttributeError, "!!bool maybe" KeyError.
            if "!" in source[value_node.start_mark.index:value_node.end_mark.index]:
                problems.append(Problem(rel, line, key, "the value does not match its YAML type tag ('!!…')",
                                        "remove the tag and write the value plainly"))
            else:
                problems.append(Problem(rel, line, key, f"cannot be read: {type(exc).__name__}", "simplify the value"))
            continue
        where[key] = value_node.start_mark.line + 2
    constructor.dispose()
    return _Fields(values, where), body


def _may_be_hostile(source: str) -> bool:
    """False when SOURCE cannot hold what _shape_problem looks for, so the common case
    skips a second YAML pass: no alias or anchor, fewer brackets than the depth limit,
    no nested "- -" sequences, shallow indentation and a modest size (block nesting
    needs about one more column of indentation per level)."""
    if len(source) > 20_000 or "*" in source or "&" in source or "- -" in source or "-\t-" in source:
        return True
    if source.count("[") + source.count("{") >= MAX_YAML_DEPTH:
        return True
    return any(len(line) - len(line.lstrip(" \t")) > MAX_YAML_DEPTH // 2 for line in source.split("\n"))


def _shape_problem(source: str) -> tuple[int, str] | None:
    """Refuse what would exhaust the YAML composer: deep nesting (a C stack overflow in
    libyaml's bindings), aliases (billion laughs) and huge node counts. Reads events only,
    which libyaml produces without recursion."""
    depth = nodes = 0
    import yaml

    for event in yaml.parse(source, Loader=_loaders()[0]):
        line = event.start_mark.line + 2
        if isinstance(event, yaml.AliasEvent):
            return line, "YAML aliases ('*name') are not supported"
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return line, f"values are nested more than {MAX_YAML_DEPTH} levels deep"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        nodes += 1
        if nodes > MAX_YAML_NODES:
            return line, f"front matter holds more than {MAX_YAML_NODES:,} values"
    return None


_EMBED_OPEN, _EMBED_CLOSE = "\u202a\u202b\u202d\u202e", "\u202c"  # LRE RLE LRO RLO / PDF
_ISOLATE_OPEN, _ISOLATE_CLOSE = "\u2066\u2067\u2068", "\u2069"  # LRI RLI FSI / PDI
_BIDI = re.compile("[" + _EMBED_OPEN + _EMBED_CLOSE + _ISOLATE_OPEN + _ISOLATE_CLOSE + "]")


def contain_bidi(value: str) -> str:
    """Close every bidi embedding, override or isolate VALUE leaves open, so a stray
    right-to-left override in a title cannot reverse the text after it in the email."""
    if not _BIDI.search(value):
        return value
    embeds = isolates = 0
    for ch in value:
        if ch in _EMBED_OPEN:
            embeds += 1
        elif ch == _EMBED_CLOSE and embeds:
            embeds -= 1
        elif ch in _ISOLATE_OPEN:
            isolates += 1
        elif ch == _ISOLATE_CLOSE and isolates:
            isolates -= 1
    return value + _EMBED_CLOSE * embeds + _ISOLATE_CLOSE * isolates


def _clean_line(value: str) -> str:
    return contain_bidi(" ".join(value.split()))


#: Characters no email part may carry: C0/C1 controls (tab and line breaks aside) and the
#: non-characters U+FDD0..U+FDEF, U+FFFE, U+FFFF (the MJML compiler rejects them).
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")


def _bad_chars(value: str) -> str | None:
    found = _BAD_CHAR.search(value)
    if found is None:
        return None
    kind = "control character" if unicodedata.category(found.group()) == "Cc" else "non-character"
    return f"contains the {kind} U+{ord(found.group()):04X}"


def _validate(f: _Fields, body: str, rel: str, config: Config, digest_hash: str,
              problems: list[Problem]) -> Event | None:
    values, lines = f.values, f.lines

    def bad(field: str, message: str, hint: str | None = None, warning: bool = False) -> None:
        problems.append(Problem(rel, lines.get(field, 1), field, message, hint, warning))

    for key in values:
        if key not in FIELDS:
            near = difflib.get_close_matches(key, FIELDS, 1, 0.6)
            hint = f"did you mean '{near[0]}'?" if near else "known fields: " + ", ".join(FIELDS)
            problems.append(Problem(rel, lines.get(key, 1), key, "unknown field", hint))

    def text(field: str, *, required: bool = False, one_line: bool = True, limit: int = 2000) -> str:
        value = values.get(field)
        if value is None:
            if required:
                bad(field, "is missing", f"add '{field}: …' to the front matter")
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            bad(field, f"must be text, not {type(value).__name__}", "write it on one line, in quotes if needed")
            return ""
        value = str(value)
        issue = _bad_chars(value)
        if issue:
            bad(field, issue, "remove it")
            return ""
        value = _clean_line(value) if one_line else value.strip()
        if required and not value:
            bad(field, "is empty", f"write the {field}")
        if len(value) > limit:
            bad(field, f"is {len(value):,} characters long", f"keep it under {limit:,}")
            return ""
        return value

    def flag(field: str) -> bool | None:
        value = values.get(field)
        if value is None:
            return None
        if not isinstance(value, bool):
            bad(field, f"must be true or false, not {value!r}")
            return None
        return value

    title = text("title", required=True, limit=MAX_TITLE)
    organizer_raw = text("organizer", required=True, limit=MAX_TITLE)
    organizer = config.canonical_organizer(organizer_raw) if organizer_raw else ""
    location = text("location", limit=500)
    summary = text("summary", one_line=True, limit=1000)
    uid = text("uid", limit=500)
    online = flag("online")
    all_day_flag = flag("all_day")

    status = values.get("status", "scheduled")
    if status not in STATUSES:
        near = difflib.get_close_matches(str(status), STATUSES, 1)
        bad("status", f"unknown status {status!r}",
            f"did you mean '{near[0]}'?" if near else "one of " + ", ".join(STATUSES))
        status = "scheduled"

    def when(field: str) -> date | datetime | None:
        if values.get(field) is None:
            return None
        try:
            return _in_range(parse_when(values[field]))
        except DateValueError as exc:
            bad(field, str(exc), EXAMPLE)
            return None

    start = when("start")
    end_value = values.get("end")
    end: date | datetime | None
    if isinstance(end_value, str) and re.fullmatch(r"\d{1,2}:\d{2}", end_value.strip()) and isinstance(start, datetime):
        try:
            end = datetime.combine(start.date(), time.fromisoformat(end_value.strip().zfill(5)))
        except ValueError:
            bad("end", f"{end_value!r} is not a real time", "e.g. 10:30")
            end = None
    else:
        end = when("end")

    zone_name: str | None = config.timezone
    zone: Any = config.zone
    if values.get("timezone") is not None:
        on = start.date() if isinstance(start, datetime) else start
        try:
            zone, zone_name, warning = resolve_zone(values["timezone"], on)
            if warning:
                bad("timezone", warning, f"write 'timezone: {zone_name}' to silence this", warning=True)
        except DateValueError as exc:
            bad("timezone", str(exc), "use an IANA name such as America/New_York or Europe/Berlin")
            zone, zone_name = None, None
        except OSError:  # zoneinfo reads files: a folder name ('America') or an over-long name
            bad("timezone", f"unknown time zone {str(values['timezone'])[:80]!r}",
                "use an IANA name such as America/New_York or Europe/Berlin")
            zone, zone_name = None, None

    def localise(moment: date | datetime | None, field: str) -> date | datetime | None:
        if not isinstance(moment, datetime):
            return moment
        if moment.tzinfo is None:
            if zone is None:
                return None
            local = moment.replace(tzinfo=zone)
            if local != local.astimezone(ZoneInfo("UTC")).astimezone(zone):
                bad(field, f"{moment:%Y-%m-%d %H:%M} does not exist in {zone_name} (clocks change that night)",
                    "pick a time outside the daylight-saving change", warning=True)
            return local
        return moment.astimezone(zone) if values.get("timezone") is not None and zone is not None else moment

    nonlocal_fixed = isinstance(start, datetime) and start.tzinfo is not None and values.get("timezone") is None
    start = localise(start, "start")
    end = localise(end, "end")
    if nonlocal_fixed:
        zone_name = None

    all_day = isinstance(start, date) and not isinstance(start, datetime)
    if all_day_flag is True and isinstance(start, datetime):
        bad("all_day", "is true but start has a time of day", "remove the time from start, or remove all_day")
    if all_day_flag is False and start is not None and all_day:
        bad("all_day", "is false but start has no time of day", "add a time to start, e.g. 2020-10-07 09:00")
    if start is not None and end is not None:
        if isinstance(start, datetime) != isinstance(end, datetime):
            bad("end", "must be a date when start is a date, and a date and time when start has a time",
                "write both the same way")
        elif end < start:  # type: ignore[operator]
            shape = "%Y-%m-%d %H:%M" if isinstance(start, datetime) else "%Y-%m-%d"
            bad("end", f"is before start ({end:{shape}} < {start:{shape}})",
                "check the dates; end is the last day or the end time")

    if status in ("scheduled", "cancelled") and start is None and "start" not in lines:
        bad("status", f"a {status} event needs a start", "add 'start: 2020-10-07 09:00', or 'status: tba' "
            "when the date is not announced yet")
    if status == "tba" and start is not None:
        bad("start", "is ignored while status is tba", "remove start, or set status: scheduled", warning=True)

    register = text("register", limit=2000)
    if register:
        issue = link_problem(register)
        if issue:
            bad("register", issue, "use the organizer's https:// registration page")
            register = ""

    register_by: date | None = None
    if values.get("register_by") is not None:
        try:
            register_by = _in_range(parse_day(values["register_by"]))
        except DateValueError as exc:
            bad("register_by", str(exc), "expected e.g. 2020-10-05")
        first = start.date() if isinstance(start, datetime) else start
        if register_by and first and register_by > first:
            bad("register_by", f"deadline {register_by} is after the event starts ({first})",
                "check the deadline", warning=True)
    until: date | None = None
    if values.get("until") is not None:
        try:
            until = _in_range(parse_day(values["until"]))
        except DateValueError as exc:
            bad("until", str(exc), "expected e.g. 2020-12-31")
        if until and status not in ("ongoing", "tba", "postponed"):
            bad("until", f"only applies to ongoing or tba items, not {status}", "remove it", warning=True)

    speakers = _speakers(values.get("speakers"), lines.get("speakers", 1), rel, problems)
    tags = _tags(values.get("tags"), bad)

    if any(not p.warning for p in problems):
        return None
    from digest.markup import plain_summary, render_body  # markdown-it: only when an entry is parsed

    body_html, blocks = render_body(body)
    slug = re.sub(r"[^a-z0-9]+", "-", rel.removeprefix(ENTRIES_DIR + "/").removesuffix(".md").lower()).strip("-")
    return Event(
        path=rel, slug=slug or "entry", uid=uid or f"{slug}@{config.list_id}", title=title,
        organizer=organizer, status=status, start=start, end=end, all_day=all_day, zone_name=zone_name,
        location=location, online=online, register=register, register_by=register_by, speakers=speakers,
        tags=tags, until=until, summary=summary or plain_summary(blocks), body_html=body_html, blocks=blocks,
        content_hash=digest_hash,
    )


def _in_range(value: Any) -> Any:
    """VALUE (a date or datetime) when its year is plausible; DateValueError otherwise."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise DateValueError(f"year {value.year} is outside {MIN_YEAR}\u2013{MAX_YEAR}")
    return value


def _speakers(value: Any, line: int, rel: str, problems: list[Problem]) -> tuple[Speaker, ...]:
    if value is None:
        return ()
    hint = "write a list: '- name: Dr. Jane Doe' with an optional 'role: …' under it"
    if not isinstance(value, list):
        problems.append(Problem(rel, line, "speakers", "must be a list", hint))
        return ()
    speakers: list[Speaker] = []
    for number, item in enumerate(value, 1):
        if isinstance(item, str) and item.strip() and not _bad_chars(item):
            speakers.append(Speaker(_clean_line(item)))
            continue
        if not isinstance(item, dict):
            problems.append(Problem(rel, line, "speakers", f"item {number} must be a name or name/role", hint))
            continue
        for key in item:
            if key not in SPEAKER_FIELDS:
                near = difflib.get_close_matches(str(key), SPEAKER_FIELDS, 1)
                problems.append(Problem(rel, line, f"speakers[{number}].{key}", "unknown field",
                                        f"did you mean '{near[0]}'?" if near else "use name and role"))
        name, role = item.get("name"), item.get("role", "")
        if not isinstance(name, str) or not name.strip() or _bad_chars(name):
            problems.append(Problem(rel, line, f"speakers[{number}].name", "is missing or not plain text", hint))
            continue
        if not isinstance(role, str) or _bad_chars(role):
            problems.append(Problem(rel, line, f"speakers[{number}].role", "must be plain text", hint))
            continue
        speakers.append(Speaker(_clean_line(name)[:MAX_TITLE], _clean_line(role)[:MAX_TITLE]))
    return tuple(speakers)


def _tags(value: Any, bad: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool)
                                              and not _bad_chars(str(t)) for t in value):
        bad("tags", "must be a list of words", "e.g. tags: [webinar, hate-speech]")
        return ()
    return tuple(dict.fromkeys(_clean_line(str(t)) for t in value if str(t).strip()))
