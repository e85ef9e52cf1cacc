"""digest.compiled: digest's own templates compiled once per installation, kept beside
its code as Python keeps a module's, never served for a changed template."""

from __future__ import annotations

import shutil
import sys
from datetime import date
from pathlib import Path

import jinja2
import pytest

from digest import compiled
from digest.build import build
from digest.cache import tool_fingerprint
from tests.conftest import REPO, copy_example

TODAY = date(2020, 10, 1)
STORE_PARENT = compiled.store_parent  # before conftest's fixture puts the store elsewhere


@pytest.fixture()
def store(tmp_path: Path, monkeypatch) -> Path:
    """The store in a folder of this test's, written as Python writes bytecode."""
    parent = tmp_path / "pycache" / "templates"
    monkeypatch.setattr(compiled, "store_parent", lambda: parent)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    return parent


@pytest.fixture()
def compiles(monkeypatch) -> list[str]:
    """The templates Jinja compiles from now on."""
    names: list[str] = []
    real = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        names.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return names


def outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).as_posix().startswith((".cache/", ".digest.lock"))}


def newsletter(tmp_path: Path, name: str) -> Path:
    """The example newsletter without templates of its own: it uses digest's."""
    root = copy_example(tmp_path / name)
    shutil.rmtree(root / "templates")
    return root


def stored(store: Path) -> set[str]:
    return {p.name for p in store.rglob("*.cache")}


def test_a_build_into_a_new_folder_compiles_no_template_a_build_before_compiled(tmp_path, store, compiles):
    """The first build compiles digest's templates and keeps them; a build into another
    folder (no build cache) compiles none and writes the same bytes as one without the store."""
    root = newsletter(tmp_path, "n")
    build(root, tmp_path / "one", weeks=["2020-W41"], today=TODAY)
    first = set(compiles)
    assert {"digest.mjml", "digest.txt", "content.css", "edition.html", "index.html"} <= first
    assert len(stored(store)) == len(first)  # one entry a template, in one folder of this tool's
    assert [p.name for p in store.iterdir()] == [tool_fingerprint()[:16]]
    compiles.clear()
    build(root, tmp_path / "two", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert compiles == []
    shutil.rmtree(store)
    build(root, tmp_path / "three", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert set(compiles) == first and outputs(tmp_path / "two") == outputs(tmp_path / "three")


def test_an_edited_template_is_compiled_again_and_a_newsletters_own_are_not_kept(tmp_path, store, compiles,
                                                                                  monkeypatch):
    """Keyed by the template's source: an edit to one of digest's templates is compiled
    (never the stored code), shows, and replaces its older entry. A newsletter's own
    templates, copies of digest's included, are compiled and not kept there (compiled
    code names the file it was compiled from): they go to its build cache."""
    own = copy_example(tmp_path / "own")  # templates/ copied from digest's, unchanged
    build(newsletter(tmp_path, "plain"), tmp_path / "plain-out", weeks=["2020-W41"], today=TODAY)
    before = stored(store)
    compiles.clear()
    build(own, tmp_path / "own-out", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert set(compiles) >= {"digest.mjml", "digest.txt"} and stored(store) == before
    assert (tmp_path / "own-out" / "2020-W41" / "digest.txt").read_bytes() == (
        tmp_path / "plain-out" / "2020-W41" / "digest.txt").read_bytes()

    # Were the copy digest's own (a checkout's templates/): an edit is compiled, then kept.
    monkeypatch.setattr(compiled, "own_dirs", lambda: [(own / "templates" / kind).resolve()
                                                       for kind in ("email", "web")])
    build(own, tmp_path / "own-again", weeks=["2020-W41"], today=TODAY, use_cache=False)
    kept = stored(store)
    compiles.clear()
    text = own / "templates" / "email" / "digest.txt"
    text.write_text(text.read_text(encoding="utf-8").replace("View online:", "Read it online:"), encoding="utf-8")
    build(own, tmp_path / "edited-out", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert compiles == ["digest.txt"]
    assert "Read it online:" in (tmp_path / "edited-out" / "2020-W41" / "digest.txt").read_text(encoding="utf-8")
    assert len(stored(store)) == len(kept) and stored(store) != kept  # its older entry replaced
    compiles.clear()
    build(own, tmp_path / "edited-again", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert compiles == []


def test_nothing_is_written_where_python_writes_no_bytecode_or_cannot(tmp_path, store, monkeypatch, compiles):
    """PYTHONDONTWRITEBYTECODE (or -B) keeps the store unwritten; a store that cannot be
    made (its parent a file) only costs the compile; a damaged entry is compiled again."""
    root = newsletter(tmp_path, "n")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    build(root, tmp_path / "a", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert not store.exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder", encoding="utf-8")
    monkeypatch.setattr(compiled, "store_parent", lambda: blocked / "templates")
    build(root, tmp_path / "b", weeks=["2020-W41"], today=TODAY, use_cache=False)
    monkeypatch.setattr(compiled, "store_parent", lambda: store)
    build(root, tmp_path / "c", weeks=["2020-W41"], today=TODAY, use_cache=False)
    entries = list(store.rglob("*.cache"))
    assert entries
    source_mode = (REPO / "templates" / "email" / "digest.txt").stat().st_mode & 0o777
    assert {path.stat().st_mode & 0o777 for path in entries} == {source_mode | 0o200}  # as a .pyc's
    from jinja2.bccache import bc_magic

    for path in entries:
        path.write_bytes(b"j2 damaged")
    compiles.clear()
    build(root, tmp_path / "d", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert len(compiles) == len(entries)
    for path in store.rglob("*.cache"):
        path.write_bytes(path.read_bytes()[:len(bc_magic) + 3])  # cut short: a crash while writing
    compiles.clear()
    build(root, tmp_path / "e", weeks=["2020-W41"], today=TODAY, use_cache=False)
    assert len(compiles) == len(entries)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b") == outputs(tmp_path / "c") == outputs(tmp_path / "d")
    assert outputs(tmp_path / "d") == outputs(tmp_path / "e")


def test_the_most_recent_stores_are_kept_and_compile_own_fills_this_tools(tmp_path, store, monkeypatch, compiles):
    """The store is per tool fingerprint (digest's code, Python's and the libraries'
    versions shape the code): the KEPT most recent are kept when this one is made (two
    interpreters sharing a source tree keep theirs). compile_own() compiles every template
    of digest's own, even with -B."""
    import os

    from digest.archive import web_template_dirs
    from digest.render import template_dirs

    olds = []
    for age in range(compiled.KEPT):  # the oldest last
        old = store / f"{age:016x}"
        old.mkdir(parents=True)
        (old / "x.cache").write_bytes(b"old")
        os.utime(old, ns=(10**18 - age * 10**9, 10**18 - age * 10**9))
        olds.append(old)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    count = compiled.compile_own()
    assert [old.exists() for old in olds] == [True] * (compiled.KEPT - 1) + [False] and sys.dont_write_bytecode
    own = {p.relative_to(d).as_posix() for d in (template_dirs(REPO)[0], web_template_dirs(REPO)[0])
           for p in d.rglob("*") if p.is_file()}
    assert count == len(own) == len(stored(store / tool_fingerprint()[:16])) == len(set(compiles))
    compiles.clear()
    assert compiled.compile_own() == count and compiles == []  # all found: nothing compiled again


def test_the_marked_mjml_of_an_error_report_is_kept_nowhere(tmp_path, store):
    """The MJML with line markers (to trace a compile error to its template line) is
    compiled from marked sources for that report only."""
    from digest.build import plan
    from digest.present import edition_context
    from digest.editions import make_edition
    from digest.render import Renderer

    root = newsletter(tmp_path, "n")
    p = plan(root, weeks=["2020-W41"], today=TODAY)
    renderer = Renderer(root)
    context = edition_context(make_edition("2020-W41", p.events, p.config, list(p.all_weeks)), p.config)
    renderer.mjml(context)
    before = stored(store)
    assert before and renderer.marked_mjml(context) != renderer.mjml(context)
    assert stored(store) == before


def test_the_store_is_where_the_environment_says(monkeypatch, tmp_path):
    """DIGEST_TEMPLATE_CACHE names the folder; else PYTHONPYCACHEPREFIX's tree, else
    digest's own __pycache__."""
    monkeypatch.setenv("DIGEST_TEMPLATE_CACHE", str(tmp_path / "here"))
    assert STORE_PARENT() == tmp_path / "here"
    monkeypatch.delenv("DIGEST_TEMPLATE_CACHE")
    package = Path(compiled.__file__).resolve().parent
    monkeypatch.setattr(sys, "pycache_prefix", None)
    assert STORE_PARENT() == package / "__pycache__" / "templates"
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "prefix"))
    assert STORE_PARENT() == tmp_path / "prefix" / package.relative_to(package.anchor) / "templates"


def test_stored_says_whether_a_build_finds_its_templates_compiled(tmp_path, store):
    """compiled.stored (how a first build shares its work between processes: digest.forked):
    not before the store holds this tool's templates, nor for a newsletter with template
    folders of its own (they compile into its build's cache); else yes."""
    own = copy_example(tmp_path / "own")
    plain = copy_example(tmp_path / "plain")
    shutil.rmtree(plain / "templates")
    assert not compiled.stored(plain) and not compiled.stored(own)
    assert compiled.compile_own() >= 10
    assert compiled.stored(plain) and not compiled.stored(own)
    shutil.rmtree(own / "templates" / "email")  # web templates alone are the newsletter's too
    assert not compiled.stored(own)
    shutil.rmtree(store / tool_fingerprint()[:16])
    assert not compiled.stored(plain)


def test_warming_compiles_every_template_rendering_then_needs(tmp_path, store, compiles):
    """Renderer.warm and WebRenderer.warm (run while other processes read entries) compile
    the templates the rendered ones include or extend too: rendering an edition, its page
    and the index afterwards compiles none (a first build's ~15 ms after the inlining)."""
    from digest.archive import WebRenderer, edition_page, index_page
    from digest.build import plan, render_edition
    from digest.render import Renderer

    root = newsletter(tmp_path, "n")
    renderer, web = Renderer(root), WebRenderer(root)
    renderer.warm()
    web.warm()
    assert {"layout.mjml", "partials/event.mjml", "base.html", "partials/event.html", "index.html"} <= set(compiles)
    compiles.clear()
    p = plan(root, weeks=["2020-W41"], today=TODAY)
    item = render_edition(p, "2020-W41", renderer)
    assert edition_page(web, p, item) and index_page(web, p.config, [])
    assert compiles == []
