"""The `digest preview` command (registered in digest/cli.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click


@click.command(name="preview")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="The newsletter folder (holds digest.toml and entries/).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only this machine can connect unless you give another one.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Pretend today is this date. Default: the real date, or SOURCE_DATE_EPOCH.")
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in the web browser.")
def preview_command(root: Path, host: str, port: int, today: datetime | None, open_browser: bool) -> None:
    """Serve every edition on a local web page that updates as you edit.

    Shows each week's email as subscribers will see it (rendered HTML at 640 or 375
    px, light or dark, plain text, .eml headers), the inbox line, and the budgets
    (HTML bytes against Gmail's 102 KB clip, <style> characters, links, warnings).
    Saving an entry, a template or digest.toml rebuilds it and the open pages update
    by themselves; problems show in the page, as `digest check` words them. Builds
    in memory: nothing is written to dist/. Stop it with Ctrl-C.

    \b
    Example:
        digest preview
        digest preview --root my-newsletter/ --port 8001 --today 2020-10-01
    """
    from digest.preview.server import run

    run(root, host=host, port=port, today=today.date() if today else None, open_browser=open_browser,
        echo=click.echo)
