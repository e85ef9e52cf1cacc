"""Writing drafts as entry files: stable names, byte-for-byte reruns, edits kept.

Each written file carries an `# import-hash:` comment: the hash of the file as the
importer wrote it. A re-import may replace a file only while that hash still matches
(nobody has edited it); an edited file is kept and the difference is shown, unless
--force. The same input always renders the same bytes, so a rerun changes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from digest.entries import hidden_part
from digest.importers import Draft

HASH_LINE = re.compile(r"^# import-hash: (?P<hash>[0-9a-f]{16})\b[^\n]*\n", re.MULTILINE)
_STOP = {"a", "an", "the", "of", "and", "or", "to", "in", "on", "for", "at", "by", "with", "from", "der", "die",
         "das", "und", "im", "am", "zum", "zur", "le", "la", "les", "de", "du", "des", "et"}


class _Dumper(yaml.SafeDumper):
    """Safe YAML that writes dates as plain text (the entry reader takes them as text)."""


_Dumper.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Action:
    """What the writer will do with one draft."""

    path: Path
    #: "new", "update", "unchanged", "kept" (edited by hand: not overwritten) or "overwrite" (--force)
    kind: str
    text: str
    draft: Draft
    diff: str = ""


def slug(text: str, words: int = 5, limit: int = 50) -> str:
    """'Fifteenth anniversary of the responsibility to protect' -> 'fifteenth-anniversary-responsibility-protect'."""
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode().lower()
    parts = [w for w in re.split(r"[^a-z0-9]+", folded) if w]
    kept = [w for w in parts if w not in _STOP] or parts
    result = ""
    for word in kept[:words]:
        candidate = f"{result}-{word}" if result else word
        if len(candidate) > limit:
            break
        result = candidate
    return result or "event"


def file_stem(draft: Draft) -> str:
    """'2020-10-07-fifteenth-anniversary-responsibility-protect', or 'tba-…'/'ongoing-…' without a date."""
    start = str(draft.fields.get("start") or "")
    prefix = start[:10] if re.match(r"\d{4}-\d{2}-\d{2}", start) else str(draft.fields.get("status") or "undated")
    return f"{prefix}-{slug(str(draft.fields.get('title') or ''))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render(draft: Draft) -> str:
    """The entry file for DRAFT: front matter with review comments, then the Markdown body."""
    front = yaml.dump(dict(draft.fields), Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                      default_flow_style=False, width=10**6)
    comments = [f"# Imported by `digest import` from {_one_line(draft.origin)}."]
    comments += [f"# Check {_one_line(str(note))}" for note in draft.uncertain]
    if draft.missing:
        comments.append("# Missing: " + ", ".join(note.field for note in draft.missing))
    text = "---\n" + "\n".join(comments) + "\n" + front + "---\n" + draft.body
    stamp = f"# import-hash: {_hash(text)} (re-imports update this file only while it is unedited)\n"
    return _insert_stamp(text, stamp)


def _insert_stamp(text: str, stamp: str) -> str:
    head, rest = text.split("\n", 1)
    return f"{head}\n{stamp}{rest}"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def pristine(text: str) -> bool:
    """True when TEXT is exactly what the importer wrote (its import-hash still matches)."""
    found = HASH_LINE.search(text)
    if not found:
        return False
    return _hash(text[: found.start()] + text[found.end():]) == found.group("hash")


def _front_uid(text: str) -> str | None:
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        data = yaml.load(text[3:end], Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return None
    if isinstance(data, dict) and isinstance(data.get("uid"), str):
        return data["uid"]
    return None


def _existing(folders: Iterable[Path]) -> dict[str, Path]:
    """uid -> file, for every entry file under FOLDERS that has a uid (hidden files and
    folders left out, as digest build leaves them out)."""
    found: dict[str, Path] = {}
    seen: set[Path] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.md")):
            if path in seen or hidden_part(path.relative_to(folder).parts):
                continue
            seen.add(path)
            try:
                uid = _front_uid(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                continue
            if uid and uid not in found:
                found[uid] = path
    return found


def plan(drafts: Iterable[Draft], into: Path, search: Iterable[Path] = (), force: bool = False) -> list[Action]:
    """Decide the file and the action for every draft; touch nothing.

    A draft with a uid goes to the file that already holds that uid (anywhere under
    INTO or SEARCH, so an entry an editor moved is still found); otherwise to
    INTO/<date>-<slug>.md, with -2, -3… when two drafts want the same name.
    """
    by_uid = _existing([into, *search])
    taken: set[Path] = set()
    actions: list[Action] = []
    for draft in drafts:
        text = render(draft)
        path = by_uid.get(draft.uid) if draft.uid else None
        if path is None or path in taken:
            stem = file_stem(draft)
            number = 1
            while True:
                path = into / (stem if number == 1 else f"{stem}-{number}")
                path = path.with_name(path.name + ".md")
                other = _uid_of(path)
                if path not in taken and (other is None or other == draft.uid):
                    break
                number += 1
        taken.add(path)
        actions.append(_action(path, text, draft, force))
    return actions


def _uid_of(path: Path) -> str | None:
    """The uid of an existing file (None when absent or without uid); '' marks 'exists, unreadable'."""
    if not path.exists():
        return None
    try:
        return _front_uid(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return ""


def _action(path: Path, text: str, draft: Draft, force: bool) -> Action:
    if not path.exists():
        return Action(path, "new", text, draft)
    try:
        old = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        old = None
    if old == text:
        return Action(path, "unchanged", text, draft)
    if old is not None and pristine(old):
        return Action(path, "update", text, draft)
    diff = "".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), text.splitlines(keepends=True),
        fromfile=f"{path} (as edited)", tofile=f"{path} (from the import)"))
    return Action(path, "overwrite" if force else "kept", text, draft, diff)


def apply(actions: Iterable[Action]) -> None:
    """Write every new, updated or forced file atomically (temp file, then rename)."""
    for action in actions:
        if action.kind not in ("new", "update", "overwrite"):
            continue
        action.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".tmp", dir=action.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(action.text.encode("utf-8"))
            os.replace(tmp, action.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def fields_for_test(text: str) -> dict[str, Any]:
    """The front matter of an entry file as plain values (dates as text); for tests and tools."""
    end = text.find("\n---", 3)
    loaded = yaml.load(text[3:end], Loader=_Loader)
    return loaded if isinstance(loaded, dict) else {}


class _Loader(yaml.SafeLoader):
    """Safe YAML without timestamps, like the entry reader."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
