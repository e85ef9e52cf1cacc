"""Shared fixtures: the example newsletter, a factory for newsletters in tmp folders,
and the real-world test data beside the checkout (../shared)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Pin what leaks into output (Pelican's lesson): time zone and locale.
os.environ["TZ"] = "UTC"
os.environ.setdefault("LC_ALL", "C.UTF-8")
# digest processes the tests start keep digest's compiled templates (digest.compiled) out
# of the package too, in a folder removed when the tests end.
os.environ["DIGEST_TEMPLATE_CACHE"] = tempfile.mkdtemp(prefix="digest-template-store-")
atexit.register(shutil.rmtree, os.environ["DIGEST_TEMPLATE_CACHE"], True)


@pytest.fixture(autouse=True)
def _template_store(tmp_path_factory) -> Iterator[None]:
    """digest's compiled templates (digest.compiled) are kept out of the package during
    tests, and not written unless a test asks (tests/test_compiled.py): a test finds no
    template compiled by another, whatever PYTHONDONTWRITEBYTECODE says. Its own
    MonkeyPatch: a test's monkeypatch.undo() leaves it in place."""
    import sys

    from digest import compiled

    store = tmp_path_factory.mktemp("template-store") / "templates"
    patch = pytest.MonkeyPatch()
    patch.setattr(compiled, "store_parent", lambda: store)
    patch.setattr(sys, "dont_write_bytecode", True)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (CI has it beside the checkout)")
    return SHARED


def copy_example(target: Path) -> Path:
    """A copy of the example newsletter (entries, templates, digest.toml) in TARGET."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "entries", target / "entries")
    shutil.copytree(REPO / "templates", target / "templates")
    shutil.copy(REPO / "digest.toml", target / "digest.toml")
    return target


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "newsletter")


class Newsletter:
    """A newsletter folder in tmp with the example's config and no entries."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "entries").mkdir(parents=True)
        shutil.copy(REPO / "digest.toml", root / "digest.toml")

    def entry(self, name: str, fields: dict[str, Any] | None = None, body: str = "Body.", raw: str | bytes | None = None) -> Path:
        path = self.root / "entries" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            path.write_bytes(raw.encode() if isinstance(raw, str) else raw)
            return path
        front = yaml.safe_dump(fields or {}, sort_keys=False, allow_unicode=True)
        path.write_text(f"---\n{front}---\n{body}\n", encoding="utf-8")
        return path

    def config(self, text: str) -> None:
        (self.root / "digest.toml").write_text(text, encoding="utf-8")


@pytest.fixture
def newsletter(tmp_path: Path) -> Callable[[], Newsletter]:
    counter = iter(range(1000))
    return lambda: Newsletter(tmp_path / f"n{next(counter)}")


def event_fields(**overrides: Any) -> dict[str, Any]:
    fields = {"title": "A webinar", "organizer": "Some Org", "start": "2020-10-07 09:00",
              "end": "2020-10-07 10:30", "timezone": "America/New_York"}
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}
