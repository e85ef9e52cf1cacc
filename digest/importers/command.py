"""`digest import`: a listing or an iCalendar feed becomes entry files, with a review report."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import click

from digest.errors import InputError, Problem
from digest.importers import Draft, format_report, import_error


def _is_calendar(source: str, data: bytes) -> bool:
    if re.match(r"^https?://", source, re.IGNORECASE):
        return True
    return source.lower().endswith((".ics", ".ical", ".ifb", ".icalendar")) or \
        data.lstrip(b"\xef\xbb\xbf \t\r\n")[:15].upper() == b"BEGIN:VCALENDAR"


def _validate(drafts: list[Draft], texts: list[str], config) -> list[Problem]:
    """Run the entry validator on the rendered files (in a temp folder): their problems, by origin."""
    from digest.entries import load_events

    with tempfile.TemporaryDirectory(prefix="digest-import-") as tmp:
        root = Path(tmp)
        folder = root / "entries"
        folder.mkdir()
        origin = {}
        for number, (draft, text) in enumerate(zip(drafts, texts)):
            name = f"{number:05d}.md"
            (folder / name).write_bytes(text.encode("utf-8"))
            origin[f"entries/{name}"] = draft.origin
        _events, problems = load_events(root, config)
    return [Problem(origin.get(p.path, p.path), None, p.field, p.message, p.hint, p.warning) for p in problems]


@click.command(name="import")
@click.argument("source")
@click.option("--into", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the new entries. Default: ROOT/entries/imported.")
@click.option("--dry-run", is_flag=True, help="Show the report and what would change; write nothing.")
@click.option("--force", is_flag=True, help="Also overwrite entries an editor has changed since the import.")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day to import (iCalendar). Default: all events; a series from its first day.")
@click.option("--until", "last", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day to import (iCalendar). Default: all events; a series up to a year after --from.")
@click.option("--organizer", default=None,
              help="Organizer for calendar events that name none (default: the calendar's name).")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The newsletter folder (holds digest.toml and entries/).")
def import_command(source: str, into: Path | None, dry_run: bool, force: bool, first, last,
                   organizer: str | None, root: Path) -> None:
    """Turn a pasted events listing or an iCalendar feed into entry files.

    SOURCE is a text file of blocks starting "Organized By : <organizer>", or an
    .ics file or https:// URL. Each event becomes one entry file; the report lists,
    per entry, the fields found, the ones missing and the ones to check. Re-running
    on the same input changes nothing; an entry edited since its import is kept
    (the difference is shown) unless --force. Recurring events are expanded between
    --from and --until. Exit code 2 when the source cannot be read; nothing is
    written then.

    \b
    Example:
        digest import listing.txt --dry-run
        digest import listing.txt --into entries/2020
        digest import https://example.org/events.ics --from 2020-10-01 --until 2020-12-31
    """
    from digest.config import Config, load_config
    from digest.importers.ics import Window, parse_ics, read_source
    from digest.importers.listing import parse_listing
    from digest.importers.writer import apply, plan

    config = load_config(root) if (root / "digest.toml").exists() else Config(root=root)
    target = into if into is not None else root / "entries" / "imported"
    _check_visible(target, root / "entries")
    window = Window(first.date() if first else None, last.date() if last else None)
    if window.first and window.last and window.last < window.first:
        raise import_error("--until", f"{window.last} is before --from {window.first}", hint="swap the dates")
    data, base_url = read_source(source)
    label = source if re.match(r"^https?://", source, re.IGNORECASE) else Path(source).name
    notes: list[str] = []
    if _is_calendar(source, data):
        drafts, notes = parse_ics(data, label, canonical=config.canonical_organizer, window=window,
                                  base_url=base_url, organizer=organizer)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise import_error(label, f"not UTF-8 text (byte 0x{data[exc.start]:02x})",
                               data[: exc.start].count(b"\n") + 1, "save the listing as UTF-8") from None
        drafts = parse_listing(text, label, config.canonical_organizer)
        if not drafts:
            raise import_error(label, "no block starting with 'Organized By : <organizer>'", 1,
                               "each event starts with a line 'Organized By : Name of the organizer'")
        if first or last:
            notes.append("--from/--until apply to calendars only; the listing was imported whole")

    actions = plan(drafts, target, [root / "entries"], force=force)
    problems = _validate([a.draft for a in actions], [a.text for a in actions], config)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise InputError(f"{len(errors)} imported entr{'y' if len(errors) == 1 else 'ies'} would not validate; "
                         "nothing was written.", errors)
    warnings: dict[str, list[Problem]] = {}
    for problem in problems:
        warnings.setdefault(problem.path, []).append(problem)

    for note in notes:
        click.echo(f"note: {note}")
    for action in actions:
        shown = _shown(action.path)
        click.echo(format_report(shown, action.kind if not dry_run else f"{action.kind}, dry run", action.draft))
        for problem in warnings.get(action.draft.origin, []):
            click.echo(f"  warning:   {problem.field + ': ' if problem.field else ''}{problem.message}")
        if action.diff and (action.kind == "kept" or dry_run):
            click.echo(action.diff.rstrip("\n"))
    if not dry_run:
        apply(actions)
    counts = {kind: sum(a.kind == kind for a in actions) for kind in ("new", "update", "unchanged", "kept",
                                                                       "overwrite")}
    summary = (f"{len(actions)} entr{'y' if len(actions) == 1 else 'ies'}: {counts['new']} new, "
               f"{counts['update'] + counts['overwrite']} updated, {counts['unchanged']} unchanged")
    if counts["kept"]:
        summary += f", {counts['kept']} kept because edited by hand (shown above; --force overwrites)"
    click.echo(summary + (" (dry run: nothing written)" if dry_run else f" in {_shown(target)}"))


def _check_visible(target: Path, entries: Path) -> None:
    """Refuse a target in a hidden folder under ENTRIES: the build would never read it."""
    from digest.entries import hidden_part

    try:
        hidden = hidden_part(target.resolve().relative_to(entries.resolve()).parts)
    except ValueError:
        return
    if hidden:
        raise InputError("--into names a folder digest build does not read; nothing was written.",
                         [Problem("--into", None, None, f"{_shown(target)} is inside the hidden folder "
                                  f"{hidden!r}: entries in folders whose name starts with a dot are not read",
                                  "choose a folder without a leading dot, e.g. entries/imported")])


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()
