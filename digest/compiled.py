"""Compiled templates kept beside digest's code, as Python keeps a module's in __pycache__.

Jinja compiles a template to Python code on first use: ~60 ms for digest's email and
web templates, the largest part of a build into a new output folder (a first build, a
`digest check`, a preview) once the libraries are imported. A build's own cache
(digest.cache) keeps the code for the next build into the same folder; this store keeps
that of digest's own templates for every build on this installation:

- in digest's own __pycache__ folder (or under sys.pycache_prefix, or in the folder
  DIGEST_TEMPLATE_CACHE names), in a folder per tool fingerprint (digest's code, Python's
  and the libraries' versions: what shapes the code); the few most recent are kept;
- keyed by the environment (email or web), the template's name and its source (Jinja
  checks the source's checksum as well): an edited template is compiled again, and its
  older entry removed;
- for digest's own template files only (a newsletter's own, copies included, go to its
  build cache: compiled code names the file it was compiled from);
- written atomically (Jinja writes a temporary file and renames it), readable by all as
  a .pyc is, never when Python writes no bytecode (PYTHONDONTWRITEBYTECODE, -B), and not
  at all where the folder cannot be written; an entry that cannot be read is compiled
  again: like a missing .pyc, it costs only the compile.
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


#: How many stores (tool fingerprints) are kept: interpreters sharing one source tree
#: (two virtual environments, say) each keep theirs.
KEPT = 4


def store_parent() -> Path:
    """The folder holding one store per tool fingerprint."""
    chosen = os.environ.get("DIGEST_TEMPLATE_CACHE")
    if chosen:
        return Path(chosen)
    cache = _PACKAGE / "__pycache__"
    if sys.pycache_prefix:
        cache = Path(sys.pycache_prefix) / _PACKAGE.relative_to(_PACKAGE.anchor)
    return cache / "templates"


def own_dirs() -> list[Path]:
    """digest's own template folders, both kinds (digest.render.own_template_dirs)."""
    from digest.render import own_template_dirs

    return [folder.resolve() for kind in ("email", "web") for folder in own_template_dirs(kind)]


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
        if not _is_own(filename):
            return bucket
        from digest.cache import tool_fingerprint

        folder = store_parent() / tool_fingerprint()[:16]
        named = hashlib.sha256(f"{self.kind}\0{name}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
        key = f"{self.kind}-{named}-{hashlib.sha256(source.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"
        stored = Bucket(environment, key, bucket.checksum)
        try:
            with open(folder / f"{key}.cache", "rb") as handle:
                stored.load_bytecode(handle)
        except Exception:  # noqa: BLE001 - missing, cut short, from another Jinja: compiled again
            stored.reset()
        if stored.code is not None:
            return stored
        bucket.store_as = (folder, key, f"{self.kind}-{named}-", filename)  # type: ignore[attr-defined]
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:  # get_bucket does it
        raise NotImplementedError

    def dump_bytecode(self, bucket: Bucket) -> None:
        if self.first is not None and bucket.key:
            self.first.dump_bytecode(bucket)
        where = getattr(bucket, "store_as", None)
        if where is None or sys.dont_write_bytecode:
            return
        folder, key, same_template, filename = where
        try:
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                _prune(folder.parent)
            stored = Bucket(bucket.environment, key, bucket.checksum)
            stored.code = bucket.code
            jinja2.FileSystemBytecodeCache(str(folder), "%s.cache").dump_bytecode(stored)
            path = folder / f"{key}.cache"
            os.chmod(path, (os.stat(filename).st_mode & 0o777) | 0o200)  # as Python gives a .pyc its source's
            for older in folder.glob(f"{same_template}*.cache"):  # the template's earlier versions
                if older != path:
                    older.unlink(missing_ok=True)
        except OSError:
            pass  # like a .pyc that cannot be written: the next process compiles it again


def _prune(parent: Path) -> None:
    """Keep the KEPT stores most recently made under PARENT."""
    stores = []
    for path in parent.iterdir():
        try:
            stores.append((path.stat().st_mtime_ns, path))
        except OSError:  # removed meanwhile
            continue
    for _, old in sorted(stores, reverse=True)[KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


def _is_own(filename: str | None) -> bool:
    if not filename:
        return False
    path = Path(os.path.realpath(filename))
    return any(path.parent == folder or folder in path.parents for folder in own_dirs())


def stored(root: Path) -> bool:
    """Whether a build of the newsletter at ROOT is likely to find every template it uses
    compiled: digest's own in this store (it holds entries for this tool fingerprint),
    and the newsletter has no template folder of its own (those compile into its build
    cache, empty in a first build). A guess for planning work (digest.forked), never
    for what is rendered."""
    from digest.cache import tool_fingerprint

    for kind in ("email", "web"):
        folder = root / "templates" / kind
        if folder.is_dir() and all(folder.resolve() != own.resolve() for own in own_dirs()):
            return False
    try:
        with os.scandir(store_parent() / tool_fingerprint()[:16]) as found:
            return any(entry.name.endswith(".cache") for entry in found)
    except OSError:
        return False


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
            compiled += render.compile_all(render.make_environment(root) if folder.name == "email"
                                           else WebRenderer(root).env)
        return compiled
    finally:
        sys.dont_write_bytecode = saved
