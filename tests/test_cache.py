"""The incremental-build cache never serves stale output, and parallel builds are
byte-identical to serial ones: every cached build is compared with a fresh, uncached
build of the same input, file by file, byte for byte."""

from __future__ import annotations

import os
import pickle
import shutil
from datetime import date
from pathlib import Path

import pytest

import digest.build
import digest.entries
from benchmarks.synth import make_newsletter
from digest import cache as cache_mod
from digest.build import build, plan
from digest.editions import make_edition
from digest.forked import cores
from digest.parallel import render_weeks, week_plans
from digest.render import Renderer

REPO = Path(__file__).resolve().parents[1]
TODAY = date(2020, 1, 1)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file but the cache and the lock."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).as_posix().startswith((".cache/", ".digest.lock"))}


def fresh(root: Path, tmp: Path, today: date = TODAY, **kwargs) -> dict[str, bytes]:
    out = tmp / "fresh"
    shutil.rmtree(out, ignore_errors=True)
    build(root, out, all_weeks=True, today=today, use_cache=False, jobs=1, **kwargs)
    return snapshot(out)


@pytest.fixture()
def newsletter(tmp_path: Path) -> Path:
    root = tmp_path / "nl"
    make_newsletter(root, weeks=4, per_week=4, seed=3)
    shutil.copytree(REPO / "templates", root / "templates")
    return root


def hold_last_week(root: Path, tmp: Path) -> tuple[tuple[str, ...], Path]:
    """The newsletter's weeks, and the folder its last week's entries were moved to (a
    weekly job's entries, not written yet): put them back into entries/YYYY/ later."""
    weeks = plan(root, all_weeks=True, today=TODAY).weeks
    held = tmp / "held"
    held.mkdir()
    for path in sorted((root / "entries").rglob("*.md")):
        year, number, _ = date.fromisoformat(path.name[:10]).isocalendar()
        if f"{year}-W{number:02d}" == weeks[-1]:
            path.rename(held / path.name)
    return weeks, held


@pytest.fixture()
def renders(monkeypatch) -> list[str]:
    """The weeks actually rendered (not served from the cache)."""
    seen: list[str] = []
    real = digest.build.render_edition

    def counting(p, week, renderer, **kwargs):
        seen.append(week)
        return real(p, week, renderer, **kwargs)

    monkeypatch.setattr(digest.build, "render_edition", counting)
    return seen


def test_warm_build_renders_nothing_and_matches_uncached(newsletter: Path, tmp_path: Path, renders) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    first = len(renders)
    assert first >= 4 and list((out / ".cache" / cache_mod.ENTRY_SHARDS).glob("*.pickle"))
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert len(renders) == first  # every edition came from the cache
    assert snapshot(out) == fresh(newsletter, tmp_path)


def test_changed_entry_rebuilds_only_its_editions_and_never_serves_stale(newsletter: Path, tmp_path: Path,
                                                                         renders) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    entry = sorted((newsletter / "entries").rglob("*.md"))[-1]
    entry.write_text(entry.read_text(encoding="utf-8") + "\nA sentence added by the editor.\n", encoding="utf-8")
    renders.clear()
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert 1 <= len(renders) < 4
    after = snapshot(out)
    assert after == fresh(newsletter, tmp_path)
    assert any(b"A sentence added by the editor." in data for name, data in after.items() if name.endswith(".txt"))


def test_changed_template_rebuilds_everything(newsletter: Path, tmp_path: Path, renders) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    first = len(renders)
    css = newsletter / "templates" / "email" / "content.css"
    css.write_text(css.read_text(encoding="utf-8").replace("font-size: 26px", "font-size: 27px"), encoding="utf-8")
    text = newsletter / "templates" / "email" / "digest.txt"
    text.write_text(text.read_text(encoding="utf-8") + "\nA footer line from the new template.\n", encoding="utf-8")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert len(renders) == 2 * first
    after = snapshot(out)
    assert after == fresh(newsletter, tmp_path)
    assert all(b"A footer line from the new template." in data for name, data in after.items()
               if name.endswith("digest.txt"))


def test_changed_config_and_today_and_profile_are_new_keys(newsletter: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    toml = newsletter / "digest.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("Synthetic Prevention Events", "Renamed Events"),
                    encoding="utf-8")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert snapshot(out) == fresh(newsletter, tmp_path)
    assert b"Renamed Events" in snapshot(out)[sorted(n for n in snapshot(out) if n.endswith("digest.html"))[0]]
    build(newsletter, out, all_weeks=True, today=date(2020, 1, 2), jobs=1, profile="mailchimp")
    shutil.rmtree(tmp_path / "fresh")
    build(newsletter, tmp_path / "fresh", all_weeks=True, today=date(2020, 1, 2), use_cache=False, jobs=1,
          profile="mailchimp")
    assert snapshot(out) == snapshot(tmp_path / "fresh")


def test_new_tool_version_starts_afresh(newsletter: Path, tmp_path: Path, renders, monkeypatch) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    first = len(renders)
    monkeypatch.setattr(cache_mod, "tool_fingerprint", lambda: "another version of digest")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert len(renders) == 2 * first


def test_fingerprint_covers_source_and_libraries(tmp_path: Path, monkeypatch) -> None:
    from importlib import metadata

    def fingerprint() -> str:
        cache_mod.tool_fingerprint.cache_clear()
        return cache_mod.tool_fingerprint()

    first = fingerprint()
    assert len(first) == 64 and first == fingerprint()
    # The versions read from folder names are importlib.metadata's, for every library.
    expected = {}
    for name in cache_mod.LIBRARIES:
        try:
            expected[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected[name] = "-"
    assert cache_mod.library_versions(cache_mod.LIBRARIES) == expected
    assert cache_mod.library_versions(("no-such-project-here",)) == {"no-such-project-here": "-"}
    with monkeypatch.context() as patch:  # read from the folder names, not asked of importlib.metadata

        def refuse(name):
            raise AssertionError(f"importlib.metadata asked for {name}")

        patch.setattr(metadata, "version", refuse)
        assert cache_mod.library_versions(cache_mod.LIBRARIES) == expected

    # An upgraded library (here: one earlier on sys.path) is another tool.
    site = tmp_path / "site"
    (site / "Jinja2-99.0.dist-info").mkdir(parents=True)
    (site / "Jinja2-99.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: Jinja2\nVersion: 99.0\n")
    monkeypatch.syspath_prepend(str(site))
    assert cache_mod.library_versions(("jinja2",)) == {"jinja2": "99.0"} == {"jinja2": metadata.version("jinja2")}
    upgraded = fingerprint()
    assert upgraded != first
    # An .egg-info first on sys.path: importlib.metadata reads it, and so does the fingerprint.
    eggs = tmp_path / "eggs"
    (eggs / "markdown_it_py-0.1-py3.11.egg-info").mkdir(parents=True)
    (eggs / "markdown_it_py-0.1-py3.11.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.1\nName: markdown-it-py\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(eggs))
    assert cache_mod.library_versions(("markdown-it-py",)) == {"markdown-it-py": "0.1"}
    assert fingerprint() not in (first, upgraded)
    # An egg on sys.path (its EGG-INFO folder has no version in its name): asked too.
    egg = tmp_path / "feedgen-97.0-py3.11.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: feedgen\nVersion: 97.0\n")
    monkeypatch.syspath_prepend(str(egg))
    assert cache_mod.library_versions(("feedgen",)) == {"feedgen": metadata.version("feedgen")} == {"feedgen": "97.0"}

    # So is an edit to digest's own source.
    monkeypatch.undo()
    package = tmp_path / "package"
    shutil.copytree(cache_mod._PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache_mod, "_PACKAGE", package)
    assert fingerprint() == first
    (package / "present.py").write_text((package / "present.py").read_text() + "\n# edited\n")
    assert fingerprint() != first
    monkeypatch.undo()
    assert fingerprint() == first


def test_corrupt_or_foreign_cache_files_are_misses(newsletter: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "SHARD_SIZE", 5)  # several shards
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    shards = sorted((out / ".cache" / cache_mod.ENTRY_SHARDS).glob("*.pickle"))
    assert len(shards) >= 3
    for shard in shards:
        shard.write_bytes(b"not a pickle")
    for path in (out / ".cache" / "editions").glob("*.pickle"):
        path.write_bytes(path.read_bytes()[:20])
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert snapshot(out) == fresh(newsletter, tmp_path)
    # Each unreadable shard is rewritten or removed; every entry is stored once.
    tables = [pickle.loads(shard.read_bytes()) for shard in sorted((out / ".cache" / cache_mod.ENTRY_SHARDS).glob("*"))]
    keys = [key for table in tables for key in table]
    assert len(keys) == len(set(keys)) == len(list((newsletter / "entries").rglob("*.md")))


def test_new_entries_go_to_the_last_shard_and_edits_rewrite_only_theirs(newsletter: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """A weekly build's new entries rewrite the last shard only; an edit rewrites the old
    entry's shard and the last; a shard left empty is removed; what is stored is what a
    fresh build reads. A cache of 16 shards by key (the layout before) is read too."""
    monkeypatch.setattr(cache_mod, "SHARD_SIZE", 5)
    out = tmp_path / "out"
    folder = out / ".cache" / cache_mod.ENTRY_SHARDS
    entries = sorted((newsletter / "entries").rglob("*.md"))
    held = tmp_path / "held"
    held.mkdir()
    for path in entries[-2:]:  # next week's, not written yet
        path.rename(held / path.name)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)

    def shards() -> dict[str, tuple[int, int, int]]:
        return {p.name: cache_mod._identity(p) for p in sorted(folder.glob("*.pickle"))}

    def stored() -> dict[str, set[str]]:
        return {name: set(pickle.loads((folder / name).read_bytes())) for name in shards()}

    first = shards()
    assert list(first) == ["0.pickle", "1.pickle", "2.pickle"] and [len(k) for k in stored().values()] == [5, 5, 4]
    for path in entries[-2:]:
        (held / path.name).rename(path)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    second = shards()
    assert {name for name in second if second[name] != first.get(name)} == {"2.pickle", "3.pickle"}
    assert [len(k) for k in stored().values()] == [5, 5, 5, 1]

    entries[0].write_text(entries[0].read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    third = shards()
    assert {name for name in third if third[name] != second.get(name)} == {"0.pickle", "3.pickle"}
    assert [len(k) for k in stored().values()] == [4, 5, 5, 2]
    for path in entries[1:5]:  # the rest of shard 0: to the last shards
        path.write_text(path.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert list(shards()) == ["1.pickle", "2.pickle", "3.pickle", "4.pickle"]
    assert [len(k) for k in stored().values()] == [5, 5, 5, 1]
    assert snapshot(out) == fresh(newsletter, tmp_path)
    assert sum(map(len, stored().values())) == len(list((newsletter / "entries").rglob("*.md")))

    # The layout of earlier versions: shards by the key's first hex digit.
    table: dict[str, object] = {}
    for name in shards():
        table.update(pickle.loads((folder / name).read_bytes()))
        (folder / name).unlink()
    for key, value in table.items():
        path = folder / f"{key[0]}.pickle"
        old = pickle.loads(path.read_bytes()) if path.exists() else {}
        path.write_bytes(pickle.dumps({**old, key: value}))
    before = shards()
    renders = []
    monkeypatch.setattr(digest.entries, "FORK_MIN", 10**6)  # any entry read is read here, and counted
    real = digest.entries.read_entry
    monkeypatch.setattr(digest.entries, "read_entry", lambda *a: renders.append(a) or real(*a))
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert renders == [] and shards() == before  # all found, nothing rewritten


def test_damaged_output_folder_is_rewritten(newsletter: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    html = sorted(out.glob("*/digest.html"))[0]
    html.write_bytes(b"edited by hand")
    (html.parent / "events.ics").unlink()
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert snapshot(out) == fresh(newsletter, tmp_path)


def test_removed_entry_leaves_no_trace(newsletter: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    gone = sorted((newsletter / "entries").rglob("*.md"))[0]
    title = gone.read_text(encoding="utf-8").split("title: ", 1)[1].split("\n", 1)[0].strip('"')
    gone.unlink()
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    after = fresh(newsletter, tmp_path)
    assert not any(title.encode() in data for name, data in after.items() if name.endswith("digest.txt"))
    assert {k: v for k, v in snapshot(out).items() if k in after} == after


def test_parallel_build_is_byte_identical_to_serial(tmp_path: Path) -> None:
    root = tmp_path / "nl"
    make_newsletter(root, weeks=8, per_week=3, seed=5)
    p = plan(root, all_weeks=True, today=TODAY)
    weeks = list(p.weeks)
    plans = week_plans(p, weeks)
    renderer = Renderer(root)
    serial = render_weeks(plans, weeks, renderer, jobs=1)
    forked = render_weeks(plans, weeks, renderer, jobs=2)
    assert [b.files for b in forked] == [b.files for b in serial]
    build(root, tmp_path / "a", all_weeks=True, today=TODAY, use_cache=False, jobs=2)
    build(root, tmp_path / "b", all_weeks=True, today=TODAY, use_cache=False, jobs=1)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_week_index_gives_the_same_editions(tmp_path: Path) -> None:
    root = tmp_path / "nl"
    make_newsletter(root, weeks=10, per_week=3, seed=9)
    p = plan(root, all_weeks=True, today=TODAY)
    weeks = list(p.weeks) + ["2019-W50", "2021-W10"]
    for week, q in zip(weeks, week_plans(p, weeks)):
        assert make_edition(week, q.events, q.config, list(q.all_weeks)) == \
            make_edition(week, p.events, p.config, list(p.all_weeks))
        # A build of one or two weeks checks each event against them instead: the same plans.
        assert week_plans(p, [week]) == [q] == week_plans(p, [week, "2019-W50"])[:1]


def test_cached_web_pages_follow_web_template_changes(newsletter: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert list((out / ".cache" / "editions").glob("*.bin"))  # web pages were cached
    page = newsletter / "templates" / "web" / "edition.html"
    page.write_text(page.read_text(encoding="utf-8").replace("{{ nav }}", "{{ nav }}<p>changed web template</p>"),
                    encoding="utf-8")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    snap = snapshot(out)
    assert any(b"changed web template" in data for name, data in snap.items() if name.endswith("/index.html"))
    assert snap == fresh(newsletter, tmp_path)


def test_a_build_keeps_no_edition_bytes_in_memory(newsletter: Path, tmp_path: Path) -> None:
    """build() hands back editions whose files are read from OUT when asked for."""
    from digest.build import OnDisk

    out = tmp_path / "out"
    for _ in range(2):  # rendered, then from the cache
        _, built = build(newsletter, out, all_weeks=True, today=TODAY, jobs=2)
        for item in built:
            assert isinstance(item.files, OnDisk)
            assert item.files.folder == out / item.week
            on_disk = {p.name for p in (out / item.week).iterdir()} - {"index.html"}
            assert set(item.files) == on_disk
            assert all(item.files[name] == (out / item.week / name).read_bytes() for name in item.files)
            assert len(item.files["digest.html"]) == item.manifest["bytes"]["digest.html"]


def test_vtimezones_are_kept_between_builds_and_never_from_another_tool(newsletter: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """A new process finds the VTIMEZONEs and zone TZIDs the last build made (neither is
    worked out again); a store written by another tool or
    tz database is ignored."""
    import icalendar.timezone.tzid

    from digest import ical

    def new_process() -> None:
        ical.ZONES.clear()
        ical.TZIDS.clear()
        ical._vevent_ical.cache_clear()

    out = tmp_path / "out"
    new_process()
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=2)  # looked up before the workers fork
    store = out / ".cache" / cache_mod.ZONES_FILE
    stored = pickle.loads(store.read_bytes())
    named = {e.zone_name for e in plan(newsletter, all_weeks=True, today=TODAY).events if e.zone_name}
    assert stored["zones"] and named and set(stored["tzids"]) >= named
    assert stored["tzids"]["America/New_York"] == "America/New_York"
    before = snapshot(out)
    entry = sorted((newsletter / "entries").rglob("*.md"))[0]
    entry.write_text(entry.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    new_process()

    def refuse(*args, **kwargs):
        raise AssertionError("icalendar was asked again")

    monkeypatch.setattr(ical, "_make_vtimezone", refuse)
    monkeypatch.setattr(ical, "_utc_since_1970", refuse)
    monkeypatch.setattr(icalendar.timezone.tzid, "tzid_from_tzinfo", refuse)
    monkeypatch.setattr(icalendar.timezone.tzid, "tzid_from_dt", refuse)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert snapshot(out) == fresh(newsletter, tmp_path) != before

    data = pickle.loads(store.read_bytes())
    data["tool"] = "another"
    data["zones"] = {key: b"BEGIN:VTIMEZONE\r\nTZID:stale\r\nEND:VTIMEZONE\r\n" for key in data["zones"]}
    data["tzids"] = {name: "Stale/Zone" for name in data["tzids"]}
    store.write_bytes(pickle.dumps(data))
    new_process()
    monkeypatch.undo()
    shutil.rmtree(out / ".cache" / "editions")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    written = b"".join(snapshot(out).values())
    assert b"TZID:stale" not in written and b"Stale/Zone" not in written and b"TZID=America/New_York" in written


def test_premailer_parses_are_kept_between_builds_and_never_from_another_tool(newsletter: Path, tmp_path: Path,
                                                                              monkeypatch) -> None:
    """A new process inlines with the CSS rules and declarations the last build parsed:
    cssutils parses nothing (and the bytes are an uncached build's); a store written by
    another tool is ignored."""
    import cssutils
    import premailer.cache

    from digest import render

    def new_process() -> None:
        monkeypatch.setattr(render, "_INLINER", None)
        monkeypatch.setattr(render, "_SEEDS", {"rules": {}, "pairs": {}})
        premailer.cache.cache.clear()

    out = tmp_path / "out"
    new_process()
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    store = out / ".cache" / cache_mod.INLINE_FILE
    stored = pickle.loads(store.read_bytes())
    assert stored["tool"] == cache_mod.tool_fingerprint()
    assert len(stored["parses"]["rules"]) == 1 and len(stored["parses"]["pairs"]) >= 5
    entry = sorted((newsletter / "entries").rglob("*.md"))[0]
    entry.write_text(entry.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    before = store.stat().st_mtime_ns
    new_process()

    def refuse(*args, **kwargs):
        raise AssertionError("cssutils parsed again")

    monkeypatch.setattr(cssutils, "parseString", refuse)
    monkeypatch.setattr(cssutils, "parseStyle", refuse)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    monkeypatch.undo()
    assert store.stat().st_mtime_ns == before  # nothing new to keep: not rewritten
    assert snapshot(out) == fresh(newsletter, tmp_path)

    data = pickle.loads(store.read_bytes())
    data["tool"] = "another"
    rules = data["parses"]["rules"]
    data["parses"]["rules"] = {key: ([(spec, selector, "color:#abcdef") for spec, selector, _ in found], left)
                               for key, (found, left) in rules.items()}
    data["parses"]["pairs"] = {key: [("color", "#abcdef")] for key in data["parses"]["pairs"]}
    store.write_bytes(pickle.dumps(data))
    new_process()
    shutil.rmtree(out / ".cache" / "editions")
    shutil.rmtree(out / ".cache" / cache_mod.STAMPS_DIR, ignore_errors=True)  # every edition rendered again
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert b"abcdef" not in b"".join(snapshot(out).values())
    assert pickle.loads(store.read_bytes())["tool"] == cache_mod.tool_fingerprint()  # written again, for this tool
    monkeypatch.undo()


def test_calendar_vevents_are_kept_between_builds_and_never_stale(newsletter: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    """The calendar of every event is assembled from the VEVENTs earlier builds made
    (without their DTSTAMP): only an edited entry's is made again, the old one is
    dropped, and the bytes are a fresh calendar's, on another day too. A table kept for
    another config or tool is not used."""
    from digest import ical
    from digest.archive import calendar_of_everything

    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    store = out / ".cache" / cache_mod.VEVENTS_FILE
    p = plan(newsletter, all_weeks=True, today=TODAY)
    dated = {(e.path, e.content_hash) for e in p.events
             if e.start is not None and e.status in ("scheduled", "cancelled", "postponed")}
    assert len(dated) > 10 and set(pickle.loads(store.read_bytes())["vevents"]) == dated

    entry = sorted((newsletter / "entries").rglob("*.md"))[0]
    entry.write_text(entry.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    later = date(2020, 1, 9)
    edited = plan(newsletter, all_weeks=True, today=later)
    ical._vevent_ical.cache_clear()  # as in a new process
    made: list[str] = []
    real = ical._vevent_ical.__wrapped__

    def counting(event, sender):
        made.append(event.path)
        return real(event, sender)

    monkeypatch.setattr(ical._vevent_ical, "__wrapped__", counting)
    known = cache_mod.BuildCache(out).vevents(edited.config)
    assembled = calendar_of_everything(edited, known)
    assert made == [entry.relative_to(newsletter).as_posix()]
    assert set(known) == {(e.path, e.content_hash) for e in edited.events if e.start is not None
                          and e.status in ("scheduled", "cancelled", "postponed")} != dated
    ical._vevent_ical.cache_clear()
    assert assembled == calendar_of_everything(edited)
    assert b"DTSTAMP:20200109T000000Z" in assembled and b"DTSTAMP:20200101" not in assembled

    # Another tool's or another config's table is not used, whatever it holds.
    monkeypatch.undo()
    for day, tag in ((later, lambda t: ("another tool", t[1])), (date(2020, 1, 10), lambda t: (t[0], "another config"))):
        data = pickle.loads(store.read_bytes())
        data["tag"] = tag(data["tag"])
        data["vevents"] = {key: (b"BEGIN:VEVENT\r\n", b"X-STALE:1\r\nEND:VEVENT\r\n", frozenset())
                           for key in data["vevents"]}
        store.write_bytes(pickle.dumps(data))
        ical._vevent_ical.cache_clear()
        build(newsletter, out, all_weeks=True, today=day, jobs=1)
        assert b"X-STALE" not in (out / "events.ics").read_bytes()
        assert snapshot(out) == fresh(newsletter, tmp_path, today=day)
        assert pickle.loads(store.read_bytes())["tag"][0] == cache_mod.tool_fingerprint()


@pytest.mark.skipif(cores() < 2 or not hasattr(os, "fork"), reason="workers are forked processes")
def test_what_workers_learn_is_kept_as_a_serial_build_keeps_it(tmp_path: Path, monkeypatch) -> None:
    """premailer's parses, VTIMEZONEs and TZIDs made in the workers of a parallel --all
    reach the cache as a serial build's do: the weekly build after it (a new process)
    neither parses CSS nor asks icalendar, and writes what an uncached build writes."""
    import cssutils
    import icalendar.timezone.tzid
    import premailer.cache

    from digest import ical, render

    root = tmp_path / "nl"
    # Across a new year: the editions of 2020 have VTIMEZONEs (one per span of years) that
    # only their workers make (the calendar of every event spans 2019-2020).
    make_newsletter(root, weeks=8, per_week=3, seed=5, start=date(2019, 12, 2))

    def new_process() -> None:
        monkeypatch.setattr(render, "_INLINER", None)
        monkeypatch.setattr(render, "_SEEDS", {"rules": {}, "pairs": {}})
        premailer.cache.cache.clear()
        ical.ZONES.clear()
        ical.TZIDS.clear()
        ical._vevent_ical.cache_clear()

    rendered_in: set[int] = set()
    real_render = digest.build.render_edition

    def render_edition(*args, **kwargs):
        rendered_in.add(os.getpid())
        return real_render(*args, **kwargs)

    monkeypatch.setattr(digest.build, "render_edition", render_edition)
    stores = {}
    for jobs in (1, 2):
        new_process()
        rendered_in.clear()
        out = tmp_path / f"out-{jobs}"
        built = build(root, out, all_weeks=True, today=TODAY, jobs=jobs)[1]
        assert len(built) >= 8
        stores[jobs] = {name: pickle.loads((out / ".cache" / name).read_bytes())["parses" if name ==
                                                                                   cache_mod.INLINE_FILE else "zones"]
                        for name in (cache_mod.INLINE_FILE, cache_mod.ZONES_FILE)}
        stores[jobs]["tzids"] = pickle.loads((out / ".cache" / cache_mod.ZONES_FILE).read_bytes())["tzids"]
    assert os.getpid() not in rendered_in  # the parallel build rendered every edition in its workers
    parses = stores[2][cache_mod.INLINE_FILE]
    assert len(parses["rules"]) == 1 and len(parses["pairs"]) >= 5
    for kind in ("rules", "pairs"):
        assert parses[kind] == stores[1][cache_mod.INLINE_FILE][kind]
    assert stores[2][cache_mod.ZONES_FILE] == stores[1][cache_mod.ZONES_FILE] != {}
    assert stores[2]["tzids"] == stores[1]["tzids"] != {}

    monkeypatch.undo()
    out = tmp_path / "out-2"
    entry = sorted((root / "entries").rglob("*.md"))[-1]
    entry.write_text(entry.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
    new_process()

    def refuse(*args, **kwargs):
        raise AssertionError("made again")

    for module, name in ((cssutils, "parseString"), (cssutils, "parseStyle"), (ical, "_make_vtimezone"),
                         (ical, "_utc_since_1970"), (icalendar.timezone.tzid, "tzid_from_tzinfo"),
                         (icalendar.timezone.tzid, "tzid_from_dt")):
        monkeypatch.setattr(module, name, refuse)
    week = plan(root, all_weeks=True, today=TODAY).weeks[-1]
    build(root, out, weeks=[week], today=TODAY, jobs=1)
    monkeypatch.undo()
    expected = fresh(root, tmp_path)
    mine = snapshot(out)
    for name in [name for name in expected if name.startswith(f"{week}/")] + ["events.ics"]:
        assert mine[name] == expected[name], name


def test_premailer_parses_kept_are_bounded_and_plain(monkeypatch) -> None:
    """Only csstext_to_pairs' lists of string pairs are kept (not parsed sheets or
    selectors), and at most SEEDS_KEPT of each kind, the latest."""
    import premailer.cache
    from cachetools.keys import hashkey

    from digest import render

    monkeypatch.setattr(render, "_SEEDS", {"rules": {}, "pairs": {}})
    render._premailer_class()
    monkeypatch.setattr(render._INLINER, "rules", {})
    premailer.cache.cache.clear()
    def key(style: str) -> tuple:  # as premailer's cache keys csstext_to_pairs(style, validate=False)
        return hashkey(style, validate=False)

    render.seed_inline_parses({"pairs": {key(f"color:#{i:06x}"): [("color", f"#{i:06x}")]
                                         for i in range(render.SEEDS_KEPT + 10)}})
    premailer.cache.cache[hashkey("a selector")] = object()  # what _create_cssselector keeps
    kept = render.inline_parses()
    assert len(kept["pairs"]) == render.SEEDS_KEPT and hashkey("a selector") not in kept["pairs"]
    assert key(f"color:#{render.SEEDS_KEPT + 9:06x}") in kept["pairs"] and key("color:#000000") not in kept["pairs"]
    assert kept["rules"] == {}
    assert pickle.loads(pickle.dumps(kept)) == kept  # as the cache stores it
    premailer.cache.cache.clear()


def test_premailer_cache_turned_off_is_not_seeded(monkeypatch) -> None:
    """PREMAILER_CACHE_MAXSIZE=0 (premailer's way to turn its cache off): seeds are not kept, no error."""
    import cachetools
    import premailer.cache

    from digest import render

    monkeypatch.setattr(premailer.cache, "cache", cachetools.LFUCache(maxsize=0))
    render._seed_premailer({("color:red",): [("color", "red")]})
    assert len(premailer.cache.cache) == 0


def test_folders_as_the_last_build_left_them_are_not_read(newsletter: Path, tmp_path: Path, monkeypatch) -> None:
    """An untouched edition folder (every file's size, times and inode as recorded) is
    trusted without loading the cached edition; a file edited in place, even to the same
    size, or an added file is noticed and the folder rewritten. A folder written less
    than two seconds before the build ended is not trusted (checked byte for byte)."""
    out = tmp_path / "out"
    monkeypatch.setattr(cache_mod, "RACY_NS", 10**12)  # as if the build had taken no time at all
    monkeypatch.setattr(cache_mod, "FINE_RACY_NS", 10**12)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert not list((out / ".cache" / cache_mod.STAMPS_DIR).glob("*.pickle"))  # all just written: none trusted
    monkeypatch.setattr(cache_mod, "RACY_NS", -10**18)  # as if long ago
    monkeypatch.setattr(cache_mod, "FINE_RACY_NS", -10**18)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)

    def no_load(self, key):
        raise AssertionError("an untouched edition was loaded from the cache")

    monkeypatch.setattr(cache_mod.BuildCache, "get", no_load)
    _, built = build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert all(item.files["digest.html"] == (out / item.week / "digest.html").read_bytes() for item in built)
    monkeypatch.undo()

    html = out / built[0].week / "digest.html"
    original = html.read_bytes()
    html.write_bytes(original.replace(b"<", b"{", 1))  # same size, new modification time
    (out / built[-1].week / "stray.txt").write_bytes(b"left by hand")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert html.read_bytes() == original
    assert snapshot(out) == fresh(newsletter, tmp_path)


def test_entry_files_as_last_read_are_not_read_again_and_edits_are_noticed(newsletter: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """An entry file whose size, modification time and inode are as when it was last read
    is not read again; an edit, even to the same size, gives it a new modification time
    and is read. A file modified within two seconds of being read is read again anyway."""
    import os

    entries = sorted((newsletter / "entries").rglob("*.md"))
    for path in entries:
        os.utime(path, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)

    opened: list[str] = []
    real_open = open

    def spying_open(file, *args, **kwargs):
        if str(file).endswith(".md"):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spying_open)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert opened == []

    edited = entries[len(entries) // 2]
    text = edited.read_text(encoding="utf-8")
    edited.write_text(text.replace("a", "e", 1) if "a" in text else text.replace("e", "a", 1), encoding="utf-8")
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert set(opened) == {str(edited)}  # hashed, then parsed
    monkeypatch.undo()
    assert snapshot(out) == fresh(newsletter, tmp_path)


def test_a_weekly_build_records_only_its_week(newsletter: Path, tmp_path: Path, monkeypatch) -> None:
    """Each edition folder's record is a file of its own: a build of a new week writes
    that week's and reads no other; the one table of earlier versions is removed."""
    monkeypatch.setattr(cache_mod, "RACY_NS", -10**18)  # as if long ago: every folder is recorded
    monkeypatch.setattr(cache_mod, "FINE_RACY_NS", -10**18)
    weeks, held = hold_last_week(newsletter, tmp_path)
    last = weeks[-1]
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    folder = out / ".cache" / cache_mod.STAMPS_DIR
    before = {p.name: cache_mod._identity(p) for p in folder.glob("*.pickle")}
    assert set(before) == {f"{week}.pickle" for week in weeks if week != last}
    (out / ".cache" / cache_mod.OLD_STAMPS_FILE).write_bytes(pickle.dumps({}))
    for path in held.iterdir():
        path.rename(newsletter / "entries" / path.name[:4] / path.name)
    read: list[str] = []
    real = cache_mod._read_table
    monkeypatch.setattr(cache_mod, "_read_table", lambda path: read.append(path.name) or real(path))
    build(newsletter, out, weeks=[last], today=TODAY, jobs=1)
    after = {p.name: cache_mod._identity(p) for p in folder.glob("*.pickle")}
    assert {name for name in after if after[name] != before.get(name)} == {f"{last}.pickle"}
    assert not [name for name in read if name in before]  # no other week's record was read
    assert not (out / ".cache" / cache_mod.OLD_STAMPS_FILE).exists()


def test_a_folder_rewritten_by_an_uncached_build_is_not_trusted(newsletter: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """An uncached build (or any other writer) that leaves files of the same size and
    modification time (a file system with 1-second times) is still noticed: the files
    are new (inode, change time)."""
    import os

    monkeypatch.setattr(cache_mod, "RACY_NS", -10**18)
    monkeypatch.setattr(cache_mod, "FINE_RACY_NS", -10**18)
    out = tmp_path / "out"
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)  # records every folder
    stamps = {path.stem: pickle.loads(path.read_bytes())
              for path in (out / ".cache" / cache_mod.STAMPS_DIR).glob("*.pickle")}
    assert stamps and set(stamps) == {folder.name for folder in out.glob("20*-W*")}
    build(newsletter, out, all_weeks=True, today=date(2020, 1, 2), use_cache=False, jobs=1)
    for week, record in stamps.items():  # same sizes, same modification times as recorded
        for name, (size, mtime, *_rest) in record["stat"].items():
            path = out / week / name
            if path.is_file() and path.stat().st_size == size:
                os.utime(path, ns=(mtime, mtime))
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    assert snapshot(out) == fresh(newsletter, tmp_path)


def test_when_no_process_can_be_forked_the_editions_render_here(newsletter: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    import multiprocessing.context

    def refuse(self):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", refuse)
    _, built = build(newsletter, tmp_path / "out", all_weeks=True, today=TODAY, use_cache=False, jobs=2)
    monkeypatch.undo()
    assert len(built) >= 4 and snapshot(tmp_path / "out") == fresh(newsletter, tmp_path)


def test_an_error_of_this_process_while_workers_render_is_not_swallowed(newsletter: Path, tmp_path: Path) -> None:
    """Only a failure to fork falls back to rendering here; an OSError of the build's own
    steps (a closed progress pipe) stops the build, as in a serial one."""
    from contextlib import contextmanager

    calls = []

    @contextmanager
    def broken_progress(total):
        def advance(count):
            calls.append(count)
            if len(calls) == 1:  # once: a swallowed error would let the serial fallback finish
                raise BrokenPipeError(32, "Broken pipe")
        yield advance

    with pytest.raises(BrokenPipeError):
        build(newsletter, tmp_path / "out", all_weeks=True, today=TODAY, jobs=2, progress=broken_progress)
    assert not (tmp_path / "out").exists()  # a first build that fails leaves nothing, staged folders included


def test_the_parent_takes_the_vevents_its_workers_made(tmp_path: Path, monkeypatch) -> None:
    """A parallel build's calendar of every event reuses the VEVENTs made in the workers
    (matched by path, for the parent's own equal events), and is byte-identical."""
    from digest import ical

    root = tmp_path / "nl"
    make_newsletter(root, weeks=8, per_week=3, seed=5)
    made_here: list[str] = []
    real = ical._vevent_ical.__wrapped__

    def counting(event, sender):
        made_here.append(event.path)  # counted in this process only: a worker's list is its own copy
        return real(event, sender)

    monkeypatch.setattr(ical._vevent_ical, "__wrapped__", counting)
    ical._vevent_ical.cache_clear()
    p, built = build(root, tmp_path / "a", all_weeks=True, today=TODAY, use_cache=False, jobs=2)
    in_editions = {e.path for item in built for e in item.edition.events if e.status == "scheduled"}
    assert len(in_editions) > 10
    assert not in_editions & set(made_here)  # made in the workers only
    assert all(not item.vevents for item in built)  # not held once taken
    ical._vevent_ical.cache_clear()
    build(root, tmp_path / "b", all_weeks=True, today=TODAY, use_cache=False, jobs=1)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert (tmp_path / "a" / "events.ics").read_bytes().count(b"BEGIN:VEVENT") >= len(in_editions)


def test_remembered_vevents_go_only_to_the_event_with_that_path(tmp_path: Path) -> None:
    from dataclasses import replace as copy

    from digest import ical

    root = tmp_path / "nl"
    make_newsletter(root, weeks=1, per_week=2, seed=5)
    p = plan(root, all_weeks=True, today=TODAY)
    first, second = p.events[:2]
    stamp = digest.build._stamp(TODAY)
    ical._vevent_ical.cache_clear()
    ical.remember_vevents([first], p.config, (("elsewhere.md", (b"BEGIN:VEVENT\r\n", b"X\r\nEND:VEVENT\r\n",
                                                                 frozenset())),))
    assert not ical._vevent_ical.made  # no event here has that path
    made = ical.vevents_made([second], p.config)
    assert made == ()
    ical.calendar_bytes([second], p.config, stamp, "x")
    made = ical.vevents_made([second], p.config)
    assert [path for path, _ in made] == [second.path]
    ical._vevent_ical.cache_clear()
    ical.remember_vevents([copy(second)], p.config, made)
    assert ical.calendar_bytes([second], p.config, stamp, "x").count(b"BEGIN:VEVENT") == 1
    ical._vevent_ical.cache_clear()


def test_templates_compiled_while_entries_are_parsed_are_written_only_under_the_lock(
        tmp_path: Path, monkeypatch) -> None:
    """With many entries the build compiles its templates while other processes parse
    them; a build that then fails on a bad entry writes nothing, not even the cache."""
    from digest import entries

    monkeypatch.setattr(entries, "PARALLEL_MIN", 4)
    root = tmp_path / "nl"
    make_newsletter(root, weeks=3, per_week=4, seed=5)
    shutil.copytree(REPO / "templates", root / "templates")
    waited: list[str] = []
    real_warm = Renderer.warm

    def warm(self):
        waited.append(str(os.getpid()))
        real_warm(self)

    monkeypatch.setattr(Renderer, "warm", warm)
    bad = root / "entries" / "zz-bad.md"
    bad.write_text("---\ntitle: x\n---\nno organizer\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(digest.build.InputError):
        build(root, out, all_weeks=True, today=TODAY, jobs=2)
    assert waited, "the templates were not compiled while the entries were parsed"
    assert not out.exists()
    bad.unlink()
    build(root, out, all_weeks=True, today=TODAY, jobs=2)
    assert list((out / ".cache" / "jinja").rglob("*.cache"))  # written once the lock was held
    assert snapshot(out) == fresh(root, tmp_path)


def test_workers_fork_from_a_frozen_heap_and_the_parent_unfreezes(tmp_path: Path) -> None:
    """gc.freeze before fork: a worker's collections skip everything it inherited (the
    plan, events, templates); the parent's objects are collectable again afterwards."""
    import gc
    from dataclasses import replace as copy

    root = tmp_path / "nl"
    make_newsletter(root, weeks=8, per_week=3, seed=5)
    p = plan(root, all_weeks=True, today=TODAY)
    weeks = list(p.weeks)
    before = gc.get_freeze_count()

    def finish(week, item):  # in the worker
        return copy(item, warnings=(str(gc.get_freeze_count()),))

    items = render_weeks(week_plans(p, weeks), weeks, Renderer(root), jobs=2, finish=finish)
    assert all(int(item.warnings[0]) > 1000 for item in items)
    assert gc.get_freeze_count() == before


def test_an_error_of_the_work_done_meanwhile_is_raised_not_taken_for_a_reader_failure(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    """Only a reader that cannot fork or dies makes the entries be read here; an error of
    what this process does while they read (MEANWHILE) is raised as it is."""
    from digest import entries
    from digest.config import load_config

    monkeypatch.setattr(entries, "PARALLEL_MIN", 4)
    root = tmp_path / "nl"
    make_newsletter(root, weeks=3, per_week=4, seed=5)
    items = entries._discover(root)
    read_here: list[str] = []
    real = entries.read_entry
    monkeypatch.setattr(entries, "read_entry",
                        lambda path, rel, config: read_here.append(rel) or real(path, rel, config))

    def meanwhile() -> None:
        raise RuntimeError("a template could not be compiled")

    with pytest.raises(RuntimeError, match="a template could not be compiled"):
        entries.read_entries(items, load_config(root), meanwhile)
    assert read_here == []  # not read again here, serially


def test_a_template_edited_while_the_build_runs_is_never_served_stale(tmp_path: Path, monkeypatch) -> None:
    """Templates compile while the entries are parsed, before the lock is held. A template
    edited while a build runs (here: while it waits for the lock) fails that build with
    nothing written and nothing cached, so neither keeping the edit nor putting the old
    template back (a git checkout) can meet output rendered from the other."""
    import contextlib

    from digest import entries
    from digest.errors import BuildError

    monkeypatch.setattr(entries, "PARALLEL_MIN", 4)  # entries read in parallel: templates compile meanwhile
    root = tmp_path / "nl"
    make_newsletter(root, weeks=3, per_week=4, seed=5)
    shutil.copytree(REPO / "templates", root / "templates")
    template = root / "templates" / "email" / "digest.txt"
    original = template.read_text(encoding="utf-8")
    real_locked = digest.build.locked

    @contextlib.contextmanager
    def edit_then_lock(out, *args, **kwargs):
        template.write_text(original + "EDITED WHILE WAITING\n", encoding="utf-8")
        with real_locked(out, *args, **kwargs):
            yield

    out = tmp_path / "out"
    build(root, out, all_weeks=True, today=TODAY, jobs=2)
    before = snapshot(out)
    for keep_edit in (False, True):
        monkeypatch.setattr(digest.build, "locked", edit_then_lock)
        with pytest.raises(BuildError, match="the templates changed while the build ran"):
            build(root, out, all_weeks=True, today=TODAY, jobs=2)
        monkeypatch.setattr(digest.build, "locked", real_locked)
        assert snapshot(out) == before  # nothing written
        assert not list((out / ".cache" / "editions").glob("*"))  # nothing rendered kept
        if not keep_edit:
            template.write_text(original, encoding="utf-8")  # put back: the output is the original's
            build(root, out, all_weeks=True, today=TODAY, jobs=2)
            assert snapshot(out) == before
    _, again = build(root, out, all_weeks=True, today=TODAY, jobs=2)
    assert all(b"EDITED WHILE WAITING" in (out / item.week / "digest.txt").read_bytes() for item in again)
    assert snapshot(out) == fresh(root, tmp_path)

def test_the_archive_reads_older_manifests_and_pages_only_when_they_changed(newsletter: Path, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """A weekly build takes the older editions' listing and previous/next links from the
    cache while their manifests and pages are as recorded (size, times, inode): it reads
    none of them. A manifest or page edited (even to the same size) is read again, and the
    archive is what an uncached build makes of the same folder. Files written too
    recently to be trusted are not recorded."""
    import json

    from digest import archive

    weeks, held = hold_last_week(newsletter, tmp_path)
    last = weeks[-1]
    out = tmp_path / "out"
    monkeypatch.setattr(cache_mod, "RACY_NS", 10**12)  # as if the build had taken no time at all
    monkeypatch.setattr(cache_mod, "FINE_RACY_NS", 10**12)
    build(newsletter, out, all_weeks=True, today=TODAY, jobs=1)
    build(newsletter, out, weeks=[weeks[-2]], today=TODAY, jobs=1)
    table = cache_mod._read_table(out / ".cache" / cache_mod.ARCHIVE_FILE)
    assert not table.get("listed") and not table.get("navs")  # all just written: none trusted
    monkeypatch.setattr(cache_mod, "RACY_NS", -10**18)  # as if long ago
    monkeypatch.setattr(cache_mod, "FINE_RACY_NS", -10**18)
    for path in held.iterdir():
        path.rename(newsletter / "entries" / path.name[:4] / path.name)

    manifests: list[str] = []
    pages: list[str] = []
    real_listed, real_read = archive._read_listed, Path.read_bytes
    monkeypatch.setattr(archive, "_read_listed", lambda path, week, page: manifests.append(week)
                        or real_listed(path, week, page))
    monkeypatch.setattr(Path, "read_bytes", lambda self: (pages.append(self.parent.name) if self.name == archive.PAGE
                                                         and self.parent.parent == out and self.parent.name != last
                                                         else None) or real_read(self))

    def weekly(expected_manifests: set[str], expected_pages: set[str]) -> None:
        manifests.clear()
        pages.clear()
        build(newsletter, out, weeks=[last], today=TODAY, jobs=1)
        assert set(manifests) == expected_manifests and set(pages) == expected_pages
        copy = tmp_path / "uncached"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".cache"))
        build(newsletter, copy, weeks=[last], today=TODAY, use_cache=False, jobs=1)
        assert snapshot(out) == snapshot(copy)

    older = set(weeks[:-1])
    weekly(older, older)  # the first weekly build reads them all, and records them
    weekly(set(), {weeks[-2]})  # then only the page it gave a new "next" link (rewritten: a new inode)
    weekly(set(), set())
    first = out / weeks[0] / "manifest.json"
    data = json.loads(first.read_text(encoding="utf-8"))
    data["subject"] = data["subject"][::-1]  # the same size
    first.write_text(json.dumps(data), encoding="utf-8")
    page = out / weeks[1] / archive.PAGE
    page.write_bytes(real_read(page).replace(archive.NAV_END.encode(), b"", 1))  # a marker lost: page left as is
    weekly({weeks[0]}, {weeks[1]})
    assert data["subject"].encode() in real_read(out / "feed.xml")  # its entry's title
    weekly(set(), set())  # a page without both markers is recorded as such: never given links
