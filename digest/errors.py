"""Problems found in input, and the exceptions that carry them to the CLI.

Every problem names a file, a line (when known) and a field, says what is wrong
and how to fix it. The CLI prints them and exits 2 (bad input) or 1 (a build or
send failure); it never shows a traceback for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import click

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong (or doubtful) in one input file."""

    path: str
    line: int | None
    field: str | None
    message: str
    hint: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        kind = "warning: " if self.warning else ""
        return f"{where}: {kind}{what}{self.message}{hint}"


class DigestError(click.ClickException):
    """A failure the user can fix; carries zero or more problems."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    def format_message(self) -> str:
        lines = [str(p) for p in self.problems]
        lines.append(self.message)
        return "\n".join(lines)

    def show(self, file=None) -> None:  # type: ignore[override]
        for problem in self.problems:
            click.echo(str(problem), err=True)
        click.echo(f"Error: {self.message}", err=True)


class InputError(DigestError):
    """Bad entries, config or templates given by the user: exit code 2."""

    exit_code = EXIT_BAD_INPUT


class BuildError(DigestError):
    """The build (or send) failed for a reason other than bad entries: exit code 1."""

    exit_code = EXIT_FAILURE


def raise_if_errors(problems: Iterable[Problem], what: str) -> None:
    """Raise InputError when any of the problems is an error (not a warning)."""
    errors = sorted(p for p in problems if not p.warning)
    if errors:
        noun = "problem" if len(errors) == 1 else "problems"
        raise InputError(f"{len(errors)} {noun} in {what}; nothing was written.", errors)
