"""Who gets the digest: a text file of addresses or a CSV with an `email` column.

A text file holds one bare address per line; blank lines and lines starting with
`#` are ignored. A CSV (a `.csv` file, or any file whose first line is a header
naming an `email` column) is read with the standard `csv` module and every other
column is ignored. An invalid address is reported with its line and skipped; the
same address twice (the domain compared case-insensitively, the local part as
written, as RFC 5321 says) is sent once.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from digest.errors import InputError, Problem

# RFC 5322 dot-atom local part (no quoted strings) and an ASCII host name with a
# dot. Deliberately stricter than the RFC: a newsletter list is no place for
# "quoted local"@[192.0.2.1], and an address we cannot vouch for is skipped loudly.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*\Z")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


@dataclass(frozen=True)
class Recipient:
    """One address to send to, with where it came from."""

    address: str
    line: int

    @property
    def key(self) -> str:
        """The address with its domain lower-cased: two equal keys are one recipient."""
        return normalize(self.address)


def normalize(address: str) -> str:
    """Lower-case the domain and keep the local part as written."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def address_problem(address: str) -> str | None:
    """Say what is wrong with an address, or None when it is fine."""
    if not address:
        return "empty address"
    if not address.isascii():
        return "not an ASCII address (internationalised addresses are not supported)"
    if any(c.isspace() for c in address) or "<" in address or ">" in address:
        return "expected a bare address such as someone@example.org"
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "no '@' with a local part before it"
    if not domain:
        return "nothing after '@'"
    if len(local) > 64 or len(address) > 254:
        return "too long (RFC 5321 allows 64 characters before '@' and 254 in all)"
    if not _LOCAL.match(local):
        return f"invalid local part {local!r}"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return f"invalid domain {domain!r}"
    if labels[-1].isdigit():
        return f"invalid domain {domain!r} (a numeric top-level domain)"
    return None


def parse_one(address: str, where: str = "--to") -> Recipient:
    """Check one address given on the command line."""
    address = address.strip()
    problem = address_problem(address)
    if problem:
        raise InputError(f"{where}: {address!r}: {problem}.")
    return Recipient(address, 0)


def read_recipients(path: Path) -> tuple[list[Recipient], list[Problem]]:
    """Read a recipients file; return the recipients (first occurrence kept) and warnings.

    Raises InputError when the file cannot be read, a CSV has no `email` column,
    or no valid address is left.
    """
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{shown}: no such recipients file.") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read the recipients file ({exc.strerror}).") from None

    if _looks_like_csv(path, text):
        rows = _csv_rows(shown, text)
    else:
        rows = _text_rows(text)

    problems: list[Problem] = []
    recipients: list[Recipient] = []
    seen: dict[str, int] = {}
    for line, address in rows:
        problem = address_problem(address)
        if problem:
            problems.append(Problem(shown, line, None, f"{address!r}: {problem}; skipped", warning=True))
            continue
        key = normalize(address)
        if key in seen:
            problems.append(
                Problem(shown, line, None, f"{address!r} repeats line {seen[key]}; sent once", warning=True)
            )
            continue
        seen[key] = line
        recipients.append(Recipient(address, line))
    if not recipients:
        raise InputError(f"{shown}: no valid address to send to.", problems)
    return recipients, problems


def _looks_like_csv(path: Path, text: str) -> bool:
    if path.suffix.lower() == ".csv":
        return True
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "email" in (cell.strip().strip('"').lower() for cell in first.split(","))


def _csv_rows(shown: str, text: str) -> list[tuple[int, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{shown}: empty CSV file; expected a header with an 'email' column.") from None
    except csv.Error as exc:
        raise InputError(f"{shown}:1: unreadable CSV header ({exc}).") from None
    names = [cell.strip().lower() for cell in header]
    if "email" not in names:
        raise InputError(
            f"{shown}:1: no 'email' column in the CSV header ({', '.join(header) or 'empty'}).",
        )
    column = names.index("email")
    rows: list[tuple[int, str]] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            cell = row[column].strip() if column < len(row) else ""
            rows.append((reader.line_num, cell))
    except csv.Error as exc:
        raise InputError(f"{shown}:{reader.line_num}: unreadable CSV ({exc}).") from None
    return rows


def _text_rows(text: str) -> list[tuple[int, str]]:
    rows: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append((number, line))
    return rows
