"""digest.forked: a reader standing by from the start of `digest build`, asked later;
and premailer's cssutils, imported only when something is parsed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from digest import entries, forked
from digest.config import load_config
from digest.forked import FAILED, Forked
from tests.conftest import copy_example
from tests.synthetic import write_week
from tests.processes import count_forks, descriptors, no_child_left, reads_here

FORKING = pytest.mark.skipif(forked.cores() < 2 or not hasattr(os, "fork"),
                             reason="a reader stands by only with fork() and 2 cores")


def _newsletter(tmp_path: Path, weeks: int = 2, per_week: int = 4) -> Path:
    root = copy_example(tmp_path / "n")
    for offset in range(weeks):
        write_week(root, date(2020, 11, 2 + 7 * offset), per_week, seed=offset)
    return root


@FORKING
def test_a_process_started_ready_answers_what_it_is_asked_after_getting_ready(tmp_path):
    """READY runs in the child before it is asked; the answer is FN(*ARGS) from the child."""
    mark = tmp_path / "ready"
    before = descriptors()
    with Forked(lambda a, b: (os.getpid(), a + b, mark.exists()), ready=mark.touch) as child:
        assert child.started
        deadline = time.monotonic() + 30
        while not mark.exists() and time.monotonic() < deadline:  # ready before any ask
            time.sleep(0.01)
        assert mark.exists()
        child.ask(2, 40)
        pid, total, was_ready = child.result()
    assert pid not in (os.getpid(), -1) and total == 42 and was_ready
    assert no_child_left() and descriptors() == before


@FORKING
def test_a_process_never_asked_ends_when_stopped_and_one_that_dies_gives_failed():
    """Stopped before it is asked (the build found nothing new): it ends and is reaped,
    descriptors closed. One whose READY fails, or that dies, answers FAILED: the caller
    does the work itself."""
    before = descriptors()
    child = Forked(lambda: 1, ready=lambda: None)
    assert child.started
    child.stop()
    assert no_child_left() and descriptors() == before
    assert child.result() is FAILED  # nothing after stop, and no error

    def broken() -> None:
        raise ImportError("no parser")

    with Forked(lambda: 1, ready=broken) as child:
        child.ask()
        assert child.result() is FAILED
    with Forked(lambda: os._exit(3), ready=lambda: None) as child:
        child.ask()
        assert child.result() is FAILED
    with Forked(lambda x: x, ready=lambda: None) as child:
        child.ask(lambda: 0)  # does not pickle: it is stopped, and the caller reads
        assert child.result() is FAILED
    assert no_child_left() and descriptors() == before


@FORKING
def test_entries_are_read_by_the_reader_standing_by_and_nothing_more_is_forked(tmp_path, monkeypatch):
    """Under standing_by, read_entries claims the reader: every entry is read there (even
    fewer than FORK_MIN), the same results in order, no other process forked, MEANWHILE
    run here; it is claimed once, and gone (reaped) when the block ends."""
    root = _newsletter(tmp_path)
    items = entries._discover(root)
    config = load_config(root)
    expected = [entries.read_entry(path, rel, config) for path, rel in items]
    here = reads_here(monkeypatch)
    calls: list[int] = []
    few = items[:2]
    assert len(few) < entries.FORK_MIN
    with forked.standing_by():
        standing = forked._STANDING
        assert standing is not None and standing.started
        made = count_forks(monkeypatch)
        assert entries.read_entries(few, config, meanwhile=lambda: calls.append(1)) == expected[:2]
        assert here == [] and calls == [1] and made == []  # read there, while MEANWHILE ran here
        assert forked.claim() is None  # claimed once
        assert entries.read_entries(few, config, meanwhile=lambda: calls.append(1)) == expected[:2]
        assert here == [rel for _, rel in few]  # then read here (too few to fork for)
    assert no_child_left()


@FORKING
def test_a_reader_standing_by_that_dies_leaves_the_entries_to_be_read_here(tmp_path, monkeypatch):
    """A reader standing by that dies (the kernel kills it) sends nothing usable: every
    entry is read here, once, and counted once by the progress bar."""
    root = _newsletter(tmp_path)
    items = entries._discover(root)
    config = load_config(root)
    expected = [entries.read_entry(path, rel, config) for path, rel in items]
    here = reads_here(monkeypatch, fatal=items[1][1])
    counted: list[int] = []

    def progress(total):
        from contextlib import nullcontext
        return nullcontext(counted.append)

    with forked.standing_by():
        assert entries.read_entries(items, config, meanwhile=lambda: None, progress=progress) == expected
    assert here == [rel for _, rel in items] and counted == [1] * len(items)
    assert no_child_left()


@FORKING
def test_ctrl_c_while_a_reader_stands_by_leaves_no_child_and_no_descriptor():
    """A Ctrl-C (or any error) in the block stops the reader, asked or not, and reaps it."""
    before = descriptors()
    with pytest.raises(KeyboardInterrupt):
        with forked.standing_by():
            assert forked._STANDING is not None
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # interrupted
    assert forked._STANDING is None and no_child_left() and descriptors() == before


def test_no_reader_stands_by_with_one_core_or_other_threads(monkeypatch):
    import threading

    monkeypatch.setattr(forked, "cores", lambda: 1)
    with forked.standing_by():
        assert forked._STANDING is None
    monkeypatch.undo()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with forked.standing_by():
            assert forked._STANDING is None
    finally:
        stop.set()
        thread.join()


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


_INLINE = r"""
import logging, pickle, sys
from digest import render
HTML = ('<html><head><style type="text/css">p{margin:0}</style></head><body>'
        '<p class="a" style="color:red">x</p><div class="b">y</div></body></html>')
CSS = ".a { font-weight: bold } .b { color: #123456 }"
"""


def test_cssutils_is_imported_only_when_premailer_parses_something_new(tmp_path):
    """A process whose parses are all seeded (a weekly build after the cache's) inlines
    without importing cssutils, the same bytes; the first new style imports it, quiet
    (its log to a NullHandler at CRITICAL), and premailer's modules then use it."""
    store = tmp_path / "parses.pickle"
    made = _python(_INLINE + r"""
first = render.inline_css(HTML, CSS)
assert "cssutils" in sys.modules
open(sys.argv[1], "wb").write(pickle.dumps(render.inline_parses()))
print(repr(first))
""", str(store))
    assert made.returncode == 0, made.stderr
    first = made.stdout.strip()
    done = _python(_INLINE + r"""
render.seed_inline_parses(pickle.loads(open(sys.argv[1], "rb").read()))
again = render.inline_css(HTML, CSS)
print("cssutils" in sys.modules)
print(repr(again))
new = render.inline_css(HTML.replace("red", "blue"), CSS)
import cssutils, premailer.premailer as p, premailer.merge_style as m
print("cssutils" in sys.modules, p.cssutils is cssutils, m.cssutils is cssutils)
print(cssutils.log._log.level == logging.CRITICAL,
      any(isinstance(h, logging.NullHandler) for h in cssutils.log._log.handlers))
print(repr(new))
""", str(store))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "False" and lines[1] == first  # not imported, the same bytes
    assert lines[2] == "True True True" and lines[3] == "True True"
    assert "color:blue" in lines[4]
    assert done.stderr == ""


@FORKING
def test_a_weekly_build_process_reads_its_new_entries_in_the_reader_and_imports_no_cssutils(tmp_path):
    """`digest build` as cron runs it, the week after last week's job: the new week's
    entries are parsed only in the reader standing by (this process imports no YAML or
    Markdown parser), which then inlines the edition's CSS with the parses the cache kept
    (this process imports no premailer; neither imports cssutils), and the files are an
    uncached in-process build's."""
    from digest.build import build

    root = copy_example(tmp_path / "n")
    write_week(root, date(2020, 11, 2), 4, seed=0)
    held = {path: tmp_path / path.name for path in write_week(root, date(2020, 11, 9), 4, seed=1)}
    for path, away in held.items():
        path.rename(away)
    out, reference = tmp_path / "out", tmp_path / "reference"
    _cli_build(root, out, "2020-W45")
    build(root, reference, weeks=("2020-W45",), today=date(2020, 11, 1), use_cache=False)  # the same history
    for path, away in held.items():
        away.rename(path)
    time.sleep(2.1)  # the cache trusts files written 2 s before it looks
    log = tmp_path / "reader.log"
    log.unlink(missing_ok=True)
    imported = _cli_build(root, out, "2020-W46", log)
    assert imported == ["lxml"]  # none of cssutils, feedgen, icalendar, markdown_it, premailer, yaml
    # one inlining, without cssutils; the feed was made there too (feedgen)
    assert log.read_text().splitlines() == ["['lxml', 'markdown_it', 'premailer', 'yaml']"]
    build(root, reference, weeks=("2020-W46",), today=date(2020, 11, 1), use_cache=False)
    for name in ("digest.html", "digest.txt", "digest.eml", "events.ics", "index.html"):
        assert (out / "2020-W46" / name).read_bytes() == (reference / "2020-W46" / name).read_bytes()
    # the feed (made by the reader) and the calendar of every event (made while it inlined)
    for name in ("feed.xml", "events.ics", "index.html", "2020-W45/index.html"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_the_zones_a_reader_makes_are_all_the_calendars_of_its_entries_need(tmp_path, monkeypatch):
    """zones_needed (run by the reader standing by) makes the TZIDs and VTIMEZONEs of each
    entry's own calendar and of all of them together (a week's); once adopted, those
    calendars make no zone and are the same bytes; what the build holds is not made again."""
    from datetime import datetime, timezone

    from digest import ical

    root = _newsletter(tmp_path, weeks=1, per_week=12)
    config = load_config(root)
    events = [event for event, _ in (entries.read_entry(p, r, config) for p, r in entries._discover(root)) if event]
    stamp = datetime(2020, 11, 1, tzinfo=timezone.utc)

    def calendars() -> list[bytes]:
        return [ical.calendar_bytes([event], config, stamp, "one") for event in events] + \
               [ical.calendar_bytes(events, config, stamp, "week")]

    monkeypatch.setattr(ical, "ZONES", {})
    monkeypatch.setattr(ical, "TZIDS", {})
    expected = calendars()
    made_here = dict(ical.ZONES)
    assert len({tzid for tzid, _, _ in made_here}) >= 3  # the week uses several zones

    monkeypatch.setattr(ical, "ZONES", {})
    monkeypatch.setattr(ical, "TZIDS", {})
    ical._vevent_ical.cache_clear()  # as in the reader: no VEVENT made yet
    learned = ical.zones_needed(events, config, {}, set())
    assert learned["zones"] == made_here and set(learned["tzids"]) >= {k for k, _, _ in made_here} - {"UTC"}
    monkeypatch.setattr(ical, "ZONES", {})
    monkeypatch.setattr(ical, "TZIDS", {})
    ical.adopt_zones(learned)

    def refuse(*args):
        raise AssertionError("a zone made again")

    monkeypatch.setattr(ical, "_make_vtimezone", refuse)
    assert calendars() == expected
    assert ical.zones_needed(events, config, dict(ical.TZIDS), set(ical.ZONES)) == {"tzids": {}, "zones": {}}


def _entry(root: Path, name: str, day: str, zone: str) -> None:
    folder = root / "entries" / "zoned"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text(
        f"---\ntitle: Talk {name}\norganizer: Organizer {name}\nstart: {day} 10:00\nend: {day} 11:30\n"
        f"timezone: {zone}\nregister: https://example.org/{name}\n---\nA talk.\n", encoding="utf-8")


#: `digest build` as a process, printing (last, on stderr) the modules of interest it
#: imported; its reader adds a line to $READER_LOG with its own after each inlining.
_CLI = ("import os, sys\nimport digest.cli as cli\nimport digest.forked as forked\nreal = cli._leaving\n"
        "MODULES = ('cssutils', 'feedgen', 'icalendar', 'lxml', 'markdown_it', 'premailer', 'yaml')\ninline = forked._inline\n\n"
        "def leaving(one_shot):\n"
        "    print(sorted(m for m in MODULES if m in sys.modules), file=sys.stderr)\n"
        "    real(one_shot)\n\n"
        "def reader_inline(*args):\n"
        "    answer = inline(*args)\n"
        "    with open(os.environ['READER_LOG'], 'a') as log:\n"
        "        print(sorted(m for m in MODULES if m in sys.modules), file=log)\n"
        "    return answer\n\n"
        "cli._leaving = leaving\nforked._inline = reader_inline\nsys.argv = ['digest'] + sys.argv[1:]\ncli.main()\n")


def _cli_build(root: Path, out: Path, week: str, reader_log: Path | None = None, **env: str) -> list[str]:
    """`digest build --week WEEK` as a process (with ENV): the modules of interest it imported
    (its last stderr line); READER_LOG gets its reader's after each inlining (see _CLI)."""
    log = reader_log or out.parent / "reader.log"
    done = subprocess.run([sys.executable, "-c", _CLI, "build", "--root", str(root), "--week", week,
                           "--today", "2020-11-01", "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "READER_LOG": str(log), **env})
    assert done.returncode == 0, done.stderr
    return eval(done.stderr.strip().splitlines()[-1])


def _same_files(out: Path, reference: Path, week: str) -> None:
    names = sorted(p.name for p in (reference / week).iterdir() if p.name != "manifest.json")
    assert "digest.html" in names and any(name.endswith(".ics") and name != "events.ics" for name in names)
    for name in names:
        assert (out / week / name).read_bytes() == (reference / week / name).read_bytes(), name
    assert (out / "events.ics").read_bytes() == (reference / "events.ics").read_bytes()


@FORKING
def test_a_first_build_process_has_its_css_inlined_by_the_reader_and_keeps_the_parses(tmp_path):
    """A first `digest build` (no output folder) that compiles its templates: the reader
    standing by reads the entries and then inlines the edition's CSS, so this process
    imports neither premailer nor cssutils (nor the entry parsers, nor icalendar); every file is an uncached in-process build's, and
    the cache keeps the parses and zones: the next week's build parses no CSS."""
    import pickle

    from digest.build import build

    root = _newsletter(tmp_path, weeks=1, per_week=12)
    out = tmp_path / "out"
    assert _cli_build(root, out, "2020-W45") == ["lxml"]  # the zones are made here meanwhile (no icalendar)
    reference = tmp_path / "reference"
    build(root, reference, weeks=("2020-W45",), today=date(2020, 11, 1), use_cache=False)
    _same_files(out, reference, "2020-W45")
    parses = pickle.loads((out / ".cache" / "inline.pickle").read_bytes())["parses"]
    assert parses["rules"] and len(parses["pairs"]) >= 5  # the content CSS, and the styles it met
    zones = pickle.loads((out / ".cache" / "vtimezones.pickle").read_bytes())["zones"]
    assert {tzid for tzid, _, _ in zones} == {line.split(":", 1)[1] for path in (out / "2020-W45").glob("*.ics")
                                             for line in path.read_text().splitlines() if line.startswith("TZID:")}
    write_week(root, date(2020, 11, 9), 6, seed=1)  # next week's entries, then its build
    time.sleep(2.1)  # the cache trusts files written 2 s before it looks
    assert "cssutils" not in _cli_build(root, out, "2020-W46")


@FORKING
def test_a_first_build_process_with_its_templates_compiled_inlines_while_the_reader_makes_zones(
        tmp_path, monkeypatch):
    """A first build whose templates are all compiled (digest's own, in the store: no
    folder of the newsletter's) has time to import premailer and cssutils while the
    reader reads and makes the zones, and inlines itself;
    the files are an uncached build's, and the cache keeps the parses and zones."""
    import pickle

    from digest import compiled
    from digest.build import build

    root = _newsletter(tmp_path, weeks=1, per_week=12)
    shutil.rmtree(root / "templates")
    store = tmp_path / "store"
    monkeypatch.setattr(compiled, "store_parent", lambda: store)
    compiled.compile_own()
    assert compiled.stored(root)
    out, log = tmp_path / "out", tmp_path / "reader.log"
    assert _cli_build(root, out, "2020-W45", log, DIGEST_TEMPLATE_CACHE=str(store)) == [
        "cssutils", "feedgen", "lxml", "premailer"]
    assert not log.exists()  # the reader inlined nothing
    reference = tmp_path / "reference"
    build(root, reference, weeks=("2020-W45",), today=date(2020, 11, 1), use_cache=False)
    _same_files(out, reference, "2020-W45")
    assert pickle.loads((out / ".cache" / "inline.pickle").read_bytes())["parses"]["rules"]
    zones = pickle.loads((out / ".cache" / "vtimezones.pickle").read_bytes())["zones"]
    assert {tzid for tzid, _, _ in zones} == {line.split(":", 1)[1] for path in (out / "2020-W45").glob("*.ics")
                                             for line in path.read_text().splitlines() if line.startswith("TZID:")}


@FORKING
def test_a_weekly_build_process_gets_new_zones_from_the_reader(tmp_path):
    """Last week's build knew one zone; this week's new entries bring others: the reader
    makes their TZIDs and VTIMEZONEs (this process imports no icalendar), the calendars
    are an uncached build's, and the cache keeps the zones."""
    import pickle

    from digest.build import build

    root = copy_example(tmp_path / "n")
    for name in ("a", "b"):
        _entry(root, name, "2020-11-03", "Europe/Berlin")
    out = tmp_path / "out"
    _cli_build(root, out, "2020-W45")
    for name, zone in (("c", "America/Bogota"), ("d", "Asia/Tokyo"), ("e", "Europe/Berlin")):
        _entry(root, name, "2020-11-10", zone)
    time.sleep(2.1)  # the cache trusts files written 2 s before it looks
    imported = _cli_build(root, out, "2020-W46")
    assert "icalendar" not in imported and "yaml" not in imported and "cssutils" not in imported
    reference = tmp_path / "reference"
    build(root, reference, weeks=("2020-W45", "2020-W46"), today=date(2020, 11, 1), use_cache=False)
    _same_files(out, reference, "2020-W46")
    kept = pickle.loads((out / ".cache" / "vtimezones.pickle").read_bytes())
    assert {"America/Bogota", "Asia/Tokyo", "Europe/Berlin"} <= {tzid for tzid, _, _ in kept["zones"]}


@FORKING
def test_a_ready_process_serves_requests_in_turn_after_its_answer(tmp_path, monkeypatch):
    """After answering ask, the process answers request(NAME, ...) one at a time; work
    put in AFTER runs once the answer is sent; an error in a request answers FAILED and
    the process goes on; a process forked since (a build's worker) gets FAILED at once."""
    mark = tmp_path / "after"

    def first(x):
        forked.AFTER.append(mark.touch)
        return x + 1

    def boom():
        raise ValueError("no")

    serves = {"double": lambda x: 2 * x, "boom": boom, "after": mark.exists}
    with Forked(first, ready=lambda: None, serves=serves) as child:
        child.ask(1)
        assert child.result() == 2
        assert child.request("after") is True  # AFTER ran before the next request was read
        assert child.request("double", 21) == 42
        assert child.request("boom") is FAILED and child.started
        assert child.request("double", 2) == 4
        monkeypatch.setattr(os, "getpid", lambda: -7)
        assert child.request("double", 3) is FAILED and child.started
        monkeypatch.undo()
        assert child.request("double", 3) == 6
    assert no_child_left()


def _inline_case() -> tuple[str, str]:
    html = ('<html><head><style type="text/css">p{margin:0}</style></head><body>'
            '<p class="a" style="color:red">x</p><div class="b">y</div></body></html>')
    return html, ".a { font-weight: bold } .b { color: #123456 }"


@FORKING
@pytest.mark.parametrize("failure", ["none", "dies", "dies preparing", "dies later", "raises"])
def test_the_reader_inlines_a_first_build_and_when_it_cannot_this_process_does(tmp_path, monkeypatch, failure):
    """Asked for a first build (no parses kept, premailer not imported here), the reader
    inlines what inline_css is given: the same bytes as here, and its parses kept here
    (each sent once). If it dies (at the first request, while importing premailer, at the
    second), or fails, inline_css does it here (where an error is reported as always)."""
    from digest import render

    monkeypatch.setattr(render, "_INLINER", None)
    monkeypatch.setattr(render, "_SEEDS", {"rules": {}, "pairs": {}})
    real_inline, calls = forked._inline, []

    def later(html, css):
        calls.append(1)  # in the reader: its own count
        return real_inline(html, css) if len(calls) < 2 else os._exit(1)

    monkeypatch.setattr(forked, "_inline", {
        "dies": lambda html, css: os._exit(1), "raises": lambda html, css: 1 / 0, "dies later": later,
    }.get(failure, real_inline))
    if failure == "dies preparing":
        monkeypatch.setattr(forked, "_ready_to_inline", lambda: os._exit(1))
    root = _newsletter(tmp_path, weeks=1)
    items = entries._discover(root)
    config = load_config(root)
    html, css = _inline_case()
    other = html.replace("red", "green")
    warmed: list[str] = []
    with forked.standing_by(inline=True):
        entries.read_entries(items, config, meanwhile=lambda: warmed.append(",".join(sorted(forked.HELPS))))
        assert warmed == ["inline"] and forked.inliner() is not None
        inlined = [render.inline_css(html, css), render.inline_css(other, css)]
        assert (render._INLINER is None) == (failure == "none")  # premailer imported here only as a fallback
        assert (forked.inliner() is None) == failure.startswith("dies")
        if failure == "none":
            assert render._SEEDS["rules"] and render._SEEDS["pairs"]  # the reader's parses, for the cache
    assert forked.inliner() is None and no_child_left()
    monkeypatch.setattr(render, "_INLINER", None)
    monkeypatch.setattr(render, "_SEEDS", {"rules": {}, "pairs": {}})
    assert inlined == [render.inline_css(html, css), render.inline_css(other, css)]  # made here, nothing standing by


@FORKING
def test_the_parses_the_reader_sends_are_each_sent_once(monkeypatch):
    """_inline (in the reader) answers with the parses not sent before: the second
    edition's answer holds only the styles the first did not meet."""
    from digest import render

    monkeypatch.setattr(render, "_INLINER", None)
    monkeypatch.setattr(render, "_SEEDS", {"rules": {}, "pairs": {}})
    monkeypatch.setattr(forked, "_SENT", {"rules": set(), "pairs": set()})
    html, css = _inline_case()
    _, first = forked._inline(html, css)
    _, again = forked._inline(html, css)
    _, other = forked._inline(html.replace("color:red", "color:blue"), css)
    assert first["rules"] and first["pairs"] and again == {"rules": {}, "pairs": {}}
    assert not other["rules"] and other["pairs"] and not set(other["pairs"]) & set(first["pairs"])


@FORKING
def test_processes_forked_later_do_not_hold_the_readers_pipes_and_an_unneeded_reader_is_stopped(tmp_path):
    """A process forked while a reader stands by (a pool's reader, a build's worker) closes
    its copies of the reader's pipes (so a reader never waits for them) and cannot use or
    stop it; read_entries stops a reader it does not need (nothing to read)."""
    root = _newsletter(tmp_path, weeks=1)
    config = load_config(root)
    with forked.standing_by():
        reader = forked._STANDING
        assert reader is not None
        pid = os.fork()
        if pid == 0:  # a later child
            ok = forked._STANDING is None and reader._ask == -1 and reader.request("inline", "", "") is FAILED
            os._exit(0 if ok else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert reader.started and forked._STANDING is reader  # the parent's is untouched
        assert entries.read_entries([], config, meanwhile=lambda: None) == []
        assert forked._STANDING is None and not reader.started and no_child_left()


@FORKING
def test_zones_that_fail_in_the_reader_leave_its_entries_and_are_made_here(tmp_path, monkeypatch):
    """A failure making zones in the reader (an error there, whatever it is) costs only the
    zones: the entries still come from the reader, and the build makes the zones itself."""
    from digest import ical

    root = _newsletter(tmp_path)
    items = entries._discover(root)
    config = load_config(root)
    expected = [entries.read_entry(path, rel, config) for path, rel in items]
    here = reads_here(monkeypatch)

    def broken(*args):
        raise ImportError("icalendar")

    monkeypatch.setattr(ical, "zones_needed", broken)
    monkeypatch.setattr(ical, "ZONES", {})
    monkeypatch.setattr(ical, "TZIDS", {})
    with forked.standing_by():
        assert entries.read_entries(items, config, meanwhile=lambda: None) == expected
    assert here == [] and ical.ZONES == {} and no_child_left()
    from datetime import datetime, timezone

    ical.calendar_bytes([event for event, _ in expected if event], config, datetime(2020, 11, 1, tzinfo=timezone.utc),
                        "week")
    assert ical.ZONES  # made here, as without a reader


@FORKING
def test_a_weekly_build_asks_for_its_new_entries_before_it_loads_the_stored_ones(tmp_path, monkeypatch):
    """The entries the cache lacks are known from its files' table: the reader is asked
    for them first, and the stored entries are loaded while it reads them (the build's
    own work meanwhile after); the build is what an uncached one makes."""
    from digest import build as build_mod
    from digest.cache import BuildCache

    root = _newsletter(tmp_path, weeks=2)
    out = tmp_path / "out"
    build_mod.build(root, out, weeks=["2020-W45"], today=date(2020, 11, 1))
    write_week(root, date(2020, 11, 16), 4, seed=7)  # next week's entries, new
    events: list[str] = []
    real_ask, real_load, real_read = Forked.ask, BuildCache._load_entries, forked.read_standing

    def ask(self, *args):
        events.append(f"ask {len(args[0])}")
        return real_ask(self, *args)

    def load(self):
        if self._entries is None:
            events.append("load")
        return real_load(self)

    def read_standing(reader, items, config, meanwhile):
        return real_read(reader, items, config, lambda: (events.append("meanwhile"), meanwhile())[1])

    monkeypatch.setattr(Forked, "ask", ask)
    monkeypatch.setattr(BuildCache, "_load_entries", load)
    monkeypatch.setattr(forked, "read_standing", read_standing)
    here = reads_here(monkeypatch)
    with forked.standing_by():
        build_mod.build(root, out, weeks=["2020-W47"], today=date(2020, 11, 1))
    assert events == ["ask 4", "meanwhile", "load"] and here == []
    monkeypatch.undo()
    fresh = tmp_path / "fresh"
    build_mod.build(root, fresh, weeks=["2020-W45", "2020-W47"], today=date(2020, 11, 1), use_cache=False)
    for name in ("digest.html", "digest.txt", "events.ics"):
        assert (out / "2020-W47" / name).read_bytes() == (fresh / "2020-W47" / name).read_bytes()


def _slow_double(x):
    time.sleep(0.3)
    return (os.getpid(), 2 * x, time.monotonic())


def _nap_next():
    """(In the child.) Answer at once, then sleep before reading the next request."""
    forked.AFTER.append(lambda: time.sleep(0.5))
    return "napping"


@FORKING
def test_a_request_runs_meanwhile_here_while_the_child_answers(tmp_path):
    """request(..., meanwhile=M): M runs here while the child works (before its answer is
    read); an error in M stops the child (its answer would be read as the next one's) and
    is raised; requests and answers larger than a pipe's usual 64 KiB do not make either
    side wait for the other (the pipes take 1 MiB where the system lets them)."""
    before = descriptors()
    child = Forked(lambda: None, ready=lambda: None,
                   serves={"double": _slow_double, "echo": lambda data: data, "nap": _nap_next})
    assert child.started
    seen: list[float] = []
    pid, doubled, answered_at = child.request("double", 21, meanwhile=lambda: seen.append(time.monotonic()))
    assert pid != os.getpid() and doubled == 42 and seen and seen[0] < answered_at
    big = "x" * 500_000
    assert child.request("nap") == "napping"
    started = time.monotonic()
    assert child.request("echo", big, meanwhile=lambda: seen.append(time.monotonic())) == big
    try:
        import fcntl

        widened = fcntl.fcntl(child._ask, fcntl.F_GETPIPE_SZ) >= 1 << 20
    except (ImportError, AttributeError, OSError):  # not Linux: pipes keep their size
        widened = False
    if widened:  # (a system may refuse: pipe-max-size, a user's pipe quota)
        assert seen[1] - started < 0.3  # written whole while the child slept (0.5 s), not read yet

    def broken() -> None:
        raise RuntimeError("meanwhile failed")

    with pytest.raises(RuntimeError, match="meanwhile failed"):
        child.request("double", 1, meanwhile=broken)
    assert not child.started and child.request("double", 1) is FAILED
    assert no_child_left() and descriptors() == before


def test_idle_jobs_run_once_and_their_errors_are_left_for_later(monkeypatch):
    """forked.idle runs what when_idle was given, once each, in order; a job that fails
    is dropped quietly (what it was to make is made, and fails, where it is needed)."""
    monkeypatch.setattr(forked, "_IDLE", [])
    done: list[str] = []

    def broken() -> None:
        done.append("broken")
        raise ValueError("later")

    forked.when_idle(lambda: done.append("a"))
    forked.when_idle(broken)
    forked.when_idle(lambda: done.append("b"))
    forked.idle()
    forked.idle()
    assert done == ["a", "broken", "b"] and forked._IDLE == []
    dropped = lambda: done.append("dropped")  # noqa: E731
    forked.when_idle(dropped)
    forked.drop_idle(dropped)
    forked.idle()
    assert done[-1] == "b" and forked._IDLE == []


@FORKING
def test_a_builds_idle_jobs_do_not_outlive_it(tmp_path, monkeypatch):
    """build() gives the reader's waits its jobs (the calendar of every event, lxml) and
    drops them when it ends, run or not: a later build in the same process (one that
    renders nothing, say) is not handed another build's work."""
    from digest.build import build

    root = _newsletter(tmp_path, weeks=1)
    helper = Forked(lambda: None, ready=lambda: None, serves={"inline": forked._inline, "feed": forked._feed})
    monkeypatch.setattr(forked, "_INLINER", helper)
    monkeypatch.setattr(forked, "_IDLE", [])
    try:
        for _ in range(2):  # rendered, then unchanged (nothing inlined: the jobs never ran)
            build(root, tmp_path / "out", weeks=("2020-W45",), today=date(2020, 11, 1))
            assert forked._IDLE == []
    finally:
        helper.stop()


@FORKING
def test_inlining_in_the_reader_renders_meanwhile_here_and_gives_the_same_bytes(tmp_path, monkeypatch):
    """inline_css with the reader inlining: MEANWHILE (the text version) and the idle
    jobs (the calendar of every event) run here while it inlines; the HTML is what
    inlining here gives. Without the reader, MEANWHILE runs first, here."""
    from digest import render

    html = ('<html><head><style type="text/css">p{margin:0}</style></head><body>'
            '<p class="a">x</p><div class="b">y</div></body></html>')
    css = ".a { font-weight: bold } .b { color: #123456 }"
    here = render.inline_css(html, css)
    order: list[str] = []
    helper = Forked(lambda: None, ready=lambda: None, serves={"inline": forked._inline})
    monkeypatch.setattr(forked, "_INLINER", helper)
    monkeypatch.setattr(forked, "_IDLE", [])

    def not_here() -> None:
        raise AssertionError("inlined here")

    real = render._premailer_class
    monkeypatch.setattr(render, "_premailer_class", not_here)  # here only: the reader forked before
    try:
        forked.when_idle(lambda: order.append("idle"))
        assert render.inline_css(html, css, meanwhile=lambda: order.append("meanwhile")) == here
        assert order == ["meanwhile", "idle"] and helper.started
    finally:
        helper.stop()
    monkeypatch.setattr(render, "_premailer_class", real)
    monkeypatch.setattr(forked, "_INLINER", None)
    assert render.inline_css(html, css, meanwhile=lambda: order.append("first")) == here
    assert order[-1] == "first" and no_child_left()
