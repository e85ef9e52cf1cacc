"""The command line: parses flags and calls digest.build; nothing else."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import click

from digest import __version__
from digest.errors import EXIT_BAD_INPUT, DigestError

ROOT_OPTION = click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."),
                           show_default=True, help="The newsletter folder (holds digest.toml and entries/).")
TODAY_OPTION = click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None,
                            help="Pretend today is this date (for --week this|next). "
                                 "Default: the real date, or SOURCE_DATE_EPOCH.")


def _today(value) -> date | None:
    if value and not 1900 <= value.year <= 2199:
        raise click.BadParameter(f"{value.date().isoformat()} is outside 1900-2199", param_hint="--today")
    return value.date() if value else None


def _bar(label: str, minimum: int) -> Callable[[int], ContextManager[Callable[[int], None] | None]]:
    """A maker of progress bars on a terminal, for MINIMUM or more things to wait for."""
    @contextmanager
    def progress(total: int) -> Iterator[Callable[[int], None] | None]:
        if total < minimum or not sys.stderr.isatty():
            yield None
            return
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update
    return progress


#: Bars when there is enough to wait for: six editions to render (a year's archive takes
#: a second or more), 2,000 entries to parse (about half a second on two cores).
_progress = _bar("Rendering editions", 6)
_reading = _bar("Reading entries", 2000)


def _warn(problems) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)


class LazyGroup(click.Group):
    """Commands from other modules are imported only when they run (or --help lists
    them): `digest build` does not pay for the SMTP, preview and import modules."""

    LAZY = {
        "import": ("digest.importers.command", "import_command"),
        "new": ("digest.new", "new_command"),
        "preview": ("digest.preview.command", "preview_command"),
        "send": ("digest.send_cli", "send_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY and name not in self.commands:
            import importlib

            module, attribute = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
def cli() -> None:
    """Turn a folder of event entries into a weekly email newsletter.

    \b
    Example:
        digest check
        digest build --week 2020-W41 --today 2020-10-01
    """


@cli.command()
@ROOT_OPTION
@click.option("--week", "weeks", multiple=True, metavar="WEEK",
              help="2020-W41, 'this' or 'next' (repeatable). Default: this week.")
@click.option("--all", "all_weeks", is_flag=True, help="Every week that has events.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder. Default: ROOT/dist.")
@TODAY_OPTION
@click.option("--profile", type=click.Choice(["smtp", "mailchimp", "sendgrid", "mailgun", "postmark", "ses",
                                              "listmonk", "buttondown"]), default=None,
              help="Mailing-service merge tags for unsubscribe/view-online links (default: config 'profile').")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def build(root: Path, weeks: tuple[str, ...], all_weeks: bool, out: Path | None, today, profile: str | None,
          strict: bool) -> None:
    """Build the digest of one or more weeks into OUT/<week>/.

    Writes digest.html, digest.txt, digest.eml, digest.mjml, events.ics, one .ics per
    event and manifest.json, atomically: a failed build leaves the previous edition.

    \b
    Example:
        digest build --week 2020-W41 --today 2020-10-01
        digest build --all --out public/
    """
    from digest.forked import standing_by

    # An entry reader, importing the parsers while this process imports the rest (for a
    # week or two, no workers: a first build's reader also inlines the CSS).
    with standing_by(inline=not all_weeks and len(weeks) <= 2):
        from digest.build import build as run_build

        if not weeks and not all_weeks:
            weeks = ("this",)
        target = out if out is not None else root / "dist"
        p, built = run_build(root, target, weeks=weeks, all_weeks=all_weeks, today=_today(today), profile=profile,
                             strict=strict, progress=_progress, read_progress=_reading)
    _warn(p.warnings)
    for item in built:
        for warning in item.warnings:
            click.echo(f"warning: {warning}", err=True)
        size = len(item.files["digest.html"])
        click.echo(f"{item.week}: {item.manifest['counts']['events']} event(s), HTML {size:,} bytes "
                   f"-> {target / item.week}")
    skipped = [w for w in p.weeks if w not in {b.week for b in built}]
    for week in skipped:
        click.echo(f"{week}: no dated events or deadlines; skipped (empty_weeks = \"skip\" in digest.toml)")
    if not p.weeks:
        click.echo("No weeks with events: nothing to build.")


@cli.command()
@ROOT_OPTION
@TODAY_OPTION
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def check(root: Path, today, strict: bool) -> None:
    """Check every entry and the config, and render every edition; write nothing.

    Lists every problem of every file as path:line: field 'x': what is wrong (hint),
    then exits 2. Exit 0 when all is well (warnings are shown).

    \b
    Example:
        digest check --root my-newsletter/
    """
    from digest.build import plan, render_all

    p = plan(root, all_weeks=True, today=_today(today), strict=strict)
    built = render_all(p)
    _warn(p.warnings)
    for item in built:
        for warning in item.warnings:
            click.echo(f"warning: {warning}", err=True)
    click.echo(f"OK: {len(p.events)} entr{'y' if len(p.events) == 1 else 'ies'}, {len(built)} edition(s), "
               f"{len(p.warnings)} warning(s).")


@cli.command(name="list")
@ROOT_OPTION
@TODAY_OPTION
def list_editions(root: Path, today) -> None:
    """List the editions (weeks with events) and what each holds.

    \b
    Example:
        digest list
    """
    from digest.build import plan
    from digest.dates import range_label
    from digest.editions import make_edition

    p = plan(root, all_weeks=True, today=_today(today))
    _warn(p.warnings)
    if not p.weeks:
        click.echo("No weeks with events.")
    for week in p.weeks:
        e = make_edition(week, p.events, p.config, list(p.all_weeks))
        click.echo(f"{week}  {range_label(e.first, e.last):<32} {len(e.events):>3} event(s) "
                   f"{len(e.deadlines):>2} deadline(s) {len(e.ongoing):>2} ongoing {len(e.tba):>2} tba")


#: Commands that run once and end (a cron job's build): see _one_shot.
ONE_SHOT = ("build", "check")


def _one_shot(args: list[str]) -> bool:
    """Whether ARGS run a command of ONE_SHOT. Such a process runs without the cyclic
    garbage collector: its passes over everything a build holds (modules, templates, a
    year's events) took 17 ms of a weekly build and ~40 ms a year on, while a weekly
    build leaves ~1,000 objects in reference cycles (a 52-week `--all` ~4,000: its peak
    memory did not change). Reference counting frees everything else as before. The
    preview server and sending keep the collector."""
    command = next((arg for arg in args if not arg.startswith("-")), None)
    return command in ONE_SHOT


def main() -> None:
    one_shot = _one_shot(sys.argv[1:])
    if one_shot:
        import gc

        gc.disable()
    try:
        cli.main(standalone_mode=False, prog_name="digest")
        _leaving(one_shot)
    except DigestError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


def _leaving(one_shot: bool) -> None:
    """The command is done and the process ends: its output is flushed; every file it
    wrote was written and closed with its `with` block, and every process it started was
    stopped and reaped. A one-shot command (ONE_SHOT) then ends at once, as mypy's
    hard_exit does: the interpreter's shutdown would free its whole heap module by module
    (~6 ms after a week's build) and walk it with the collector (~90 ms after a year's
    archive). Its exit handlers are skipped with it: logging's is run here; the others a
    build registers (multiprocessing's, concurrent.futures') have nothing left to do, its
    pools being joined. Not under a profiler or a tracer (cProfile, coverage): they write
    their data at the interpreter's shutdown. Other commands keep their heap out of the
    collector's passes."""
    import gc

    sys.stdout.flush()
    sys.stderr.flush()
    if one_shot and sys.getprofile() is None and sys.gettrace() is None:
        logging = sys.modules.get("logging")
        if logging is not None:
            logging.shutdown()
        os._exit(0)
    gc.freeze()
