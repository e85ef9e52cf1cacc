"""`digest new`: start an entry file from the fields an editor knows."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from digest.errors import InputError, Problem


def entry_text(fields: dict[str, object], body: str) -> str:
    front = yaml.safe_dump({k: v for k, v in fields.items() if v not in (None, "", [])}, sort_keys=False,
                           allow_unicode=True, width=1000)
    return f"---\n{front}---\n{body.strip()}\n"


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-") or "entry"


@click.command(name="new")
@click.argument("title")
@click.option("--organizer", required=True, help="Who organizes the event.")
@click.option("--start", default=None, help="2020-10-07, 2020-10-07 09:00 or ISO 8601 with offset.")
@click.option("--end", default=None, help="End time or last day.")
@click.option("--timezone", default=None, help="IANA zone, e.g. America/New_York.")
@click.option("--status", default=None, type=click.Choice(["scheduled", "draft", "tba", "ongoing"]),
              help="Default: scheduled with --start, tba without.")
@click.option("--register", default=None, help="Registration link (https://…).")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The newsletter folder.")
def new_command(title: str, organizer: str, start: str | None, end: str | None, timezone: str | None,
                status: str | None, register: str | None, root: Path) -> None:
    """Create an entry file under entries/ and check it.

    \b
    Example:
        digest new "Panel on early warning" --organizer "Some Centre" --start "2020-10-07 09:00" --timezone Europe/Berlin
    """
    from digest.config import load_config
    from digest.entries import read_entry

    status = status or ("scheduled" if start else "tba")
    year = (start or "")[:4] if start and start[:4].isdigit() else "undated"
    name = f"{start[:10]}-{slugify(title)}.md" if start else f"{slugify(title)}.md"
    path = root / "entries" / year / name
    rel = path.relative_to(root).as_posix()
    if path.exists():
        raise InputError("nothing was written.", [Problem(rel, None, None, "already exists",
                                                          "edit it, or choose another title")])
    fields = {"title": title, "organizer": organizer, "start": start, "end": end, "timezone": timezone,
              "status": None if status == "scheduled" else status, "register": register}
    text = entry_text(fields, "Describe the event here (Markdown).")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    _, problems = read_entry(path, rel, load_config(root))
    errors = [p for p in problems if not p.warning]
    if errors:
        path.unlink()
        raise InputError("the new entry would not be valid; nothing was written.", errors)
    for problem in problems:
        click.echo(str(problem), err=True)
    click.echo(f"Created {rel}")
