"""Importers: a pasted events listing or an iCalendar feed becomes entry files.

Each importer turns its source into Drafts (front matter fields, a Markdown body and
a review note of what was found, what is missing and what is uncertain); the writer
renders them in the entry format (docs/entry-format.md) and writes them without ever
overwriting an entry an editor has changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from digest.errors import InputError, Problem

#: Fields a reviewer expects in an imported entry; the ones not found are "missing".
WANTED = ("title", "organizer", "start", "end", "timezone", "location", "register", "register_by", "speakers")


class ImportFailed(InputError):
    """The source cannot be imported (a malformed feed, an unreadable file): exit code 2."""


def import_error(source: str, message: str, line: int | None = None, hint: str | None = None,
                 field_: str | None = None) -> ImportFailed:
    """An ImportFailed carrying one Problem located in SOURCE (at LINE when known)."""
    return ImportFailed(f"could not import {source}; nothing was written.",
                        [Problem(source, line, field_, message, hint)])


@dataclass(frozen=True)
class Note:
    """One remark for the reviewer about one field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Draft:
    """One entry as an importer read it, before it is written."""

    #: Front matter, in the order it is written.
    fields: Mapping[str, Any]
    #: Markdown body.
    body: str
    #: Where it came from, for the file's header comment ("seed.txt, block 2").
    origin: str
    #: Fields whose values the source gave.
    found: tuple[str, ...] = ()
    #: Fields the source does not give (with why, when it helps).
    missing: tuple[Note, ...] = ()
    #: Values read with a doubt the reviewer should check.
    uncertain: tuple[Note, ...] = ()

    @property
    def uid(self) -> str | None:
        value = self.fields.get("uid")
        return str(value) if value else None


@dataclass
class DraftBuilder:
    """Mutable while one importer reads one event; frozen into a Draft at the end."""

    origin: str
    values: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    missing_reasons: dict[str, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    def set(self, name: str, value: Any) -> None:
        if value is None or value == "" or value == [] or value == ():
            return
        self.values[name] = value

    def doubt(self, name: str, message: str) -> None:
        note = Note(name, message)
        if note not in self.notes:
            self.notes.append(note)

    def lacks(self, name: str, why: str = "") -> None:
        self.missing_reasons[name] = why

    def freeze(self) -> Draft:
        order = ("title", "organizer", "status", "start", "end", "timezone", "all_day", "location", "online",
                 "register", "register_by", "speakers", "tags", "until", "uid")
        fields_ = {k: self.values[k] for k in order if k in self.values}
        fields_.update({k: v for k, v in self.values.items() if k not in fields_})
        found = tuple(k for k in fields_ if k in WANTED or k in ("status", "online", "uid", "tags"))
        missing = []
        for name in WANTED:
            if name in fields_:
                continue
            if name == "timezone" and ("start" not in fields_ or _is_day(fields_.get("start"))
                                       or _has_offset(fields_.get("start"))):
                continue
            if name == "end" and ("start" not in fields_ or _is_day(fields_.get("start"))):
                continue
            missing.append(Note(name, self.missing_reasons.get(name, "not in the source")))
        return Draft(MappingProxyType(fields_), self.body.strip() + "\n" if self.body.strip() else "",
                     self.origin, found, tuple(missing), tuple(self.notes))


def _is_day(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 10


def _has_offset(value: Any) -> bool:
    return isinstance(value, str) and (value.endswith("Z") or value[-6:-5] in ("+", "-"))


def format_report(path: str, action: str, draft: Draft) -> str:
    """The review report of one entry: what was found, what is missing, what to check."""
    lines = [f"{path}  ({action})", f"  from:      {draft.origin}"]
    lines.append("  found:     " + (", ".join(draft.found) or "nothing"))
    if draft.missing:
        lines.append("  missing:   " + "; ".join(
            f"{n.field} ({n.message})" if n.message else n.field for n in draft.missing))
    for number, note in enumerate(draft.uncertain):
        lines.append(("  uncertain: " if number == 0 else "             ") + str(note))
    return "\n".join(lines)
