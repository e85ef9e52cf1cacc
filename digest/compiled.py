"""Compiled templates kept beside digest's code, as Python keeps a module's in __pycache__.

Jinja compiles a template to Python code on first use: ~60 ms for digest's email and
web templates, the largest part of a build into a new output folder (a first build, a
`digest check`, a preview) once the libraries are imported. A build's own cache
(digest.cache) keeps the code for the next build into the same folder; this store keeps
it for every build on this installation:

- in digest's own __pycache__ folder (or under sys.pycache_prefix), in a folder per tool
  fingerprint (digest's code, Python's and the libraries' versions: what shapes the
  code), the older ones removed;
- keyed by the environment (email or web), the template's name and its source, so a
  newsletter's unchanged copy of a shipped template finds it too, and a changed one is
  compiled (Jinja checks the source's checksum as well);
- written only for digest's own templates (a newsletter's own go to its build cache),
  atomically (Jinja writes a temporary file and renames it), never when Python writes
  no bytecode (PYTHONDONTWRITEBYTECODE, -B), and not at all where the folder cannot be
  written: like a missing .pyc, a missing entry costs only the compile.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket

_PACKAGE = Path(__file__).resolve().parent


def store_parent() -> Path:
    """The folder holding one store per tool fingerprint."""
    cache = _PACKAGE / "__pycache__"
    if sys.pycache_prefix:
        cache = Path(sys.pycache_prefix) / _PACKAGE.relative_to(_PACKAGE.anchor)
    return cache / "templates"


def own_dirs() -> list[Path]:
    """digest's own template folders: the shipped ones (an installed wheel) and the
    source tree's (a checkout), both kinds (email, web)."""
    found = []
    for base in (_PACKAGE / "_templates", _PACKAGE.parent / "templates"):
        found += [(base / kind).resolve() for kind in ("email", "web") if (base / kind).is_dir()]
    return found


class TemplateCode(jinja2.BytecodeCache):
    """The environment's bytecode cache: FIRST (a build cache's, or None) when it has the
    template, else the store (see the module's docstring); a template compiled here is
    given to both."""

    def __init__(self, kind: str, first: jinja2.BytecodeCache | None = None) -> None:
        self.kind = kind
        self.first = first

    def get_bucket(self, environment: jinja2.Environment, name: str, filename: str | None,
                   source: str) -> Bucket:
        if self.first is not None:
            bucket = self.first.get_bucket(environment, name, filename, source)
            if bucket.code is not None:
                return bucket
        else:
            bucket = Bucket(environment, "", self.get_source_checksum(source))
        from digest.cache import tool_fingerprint

        key = hashlib.sha256(f"{self.kind}\0{name}\0{source}".encode("utf-8", "surrogatepass")).hexdigest()
        stored = Bucket(environment, key, bucket.checksum)
        folder = store_parent() / tool_fingerprint()[:16]
        try:
            with open(folder / f"{key}.cache", "rb") as handle:
                stored.load_bytecode(handle)
        except OSError:
            pass
        if stored.code is not None:
            return stored
        bucket.store_as = (folder, key) if _is_own(filename) else None  # type: ignore[attr-defined]
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:  # get_bucket does it
        raise NotImplementedError

    def dump_bytecode(self, bucket: Bucket) -> None:
        if self.first is not None and bucket.key:
            self.first.dump_bytecode(bucket)
        where = getattr(bucket, "store_as", None)
        if where is None or sys.dont_write_bytecode:
            return
        folder, key = where
        try:
            if not folder.is_dir():
                for old in folder.parent.iterdir() if folder.parent.is_dir() else ():
                    shutil.rmtree(old, ignore_errors=True)  # another tool fingerprint's
                folder.mkdir(parents=True, exist_ok=True)
            stored = Bucket(bucket.environment, key, bucket.checksum)
            stored.code = bucket.code
            jinja2.FileSystemBytecodeCache(str(folder), "%s.cache").dump_bytecode(stored)
        except OSError:
            pass  # like a .pyc that cannot be written: the next process compiles it again


def _is_own(filename: str | None) -> bool:
    if not filename:
        return False
    path = Path(os.path.realpath(filename))
    return any(path.parent == folder or folder in path.parents for folder in own_dirs())


def compile_own() -> int:
    """Compile digest's own templates into the store now, as compileall writes a package's
    bytecode (even where Python would not write it on import); how many were compiled."""
    from digest import render
    from digest.archive import WebRenderer

    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, False
    try:
        compiled = 0
        for folder in own_dirs():
            root = folder.parent.parent  # a newsletter folder whose templates/<kind> is FOLDER
            env = render.make_environment(root) if folder.name == "email" else WebRenderer(root).env
            for name in env.list_templates():
                if not name.endswith((".mjml", ".txt", ".css", ".html")):
                    continue
                env.get_template(name)
                compiled += 1
        return compiled
    finally:
        sys.dont_write_bytecode = saved
