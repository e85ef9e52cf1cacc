"""CLI habits: every command documented with an example; `digest new`."""

from __future__ import annotations

import click
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_config
from digest.entries import load_events


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"build", "check", "list", "preview", "import", "send", "new"} <= set(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command.help and "Example:" in command.help, name
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, name


def test_new_creates_a_valid_entry(newsletter):
    n = newsletter()
    result = CliRunner().invoke(cli, ["new", "Panel on early warning", "--organizer", "Some Centre", "--start",
                                      "2020-10-07 09:00", "--timezone", "Europe/Berlin", "--root", str(n.root)])
    assert result.exit_code == 0, result.output
    assert "Created entries/2020/2020-10-07-panel-on-early-warning.md" in result.output
    events, problems = load_events(n.root, load_config(n.root))
    assert problems == [] and events[0].title == "Panel on early warning"
    assert events[0].zone_name == "Europe/Berlin"


def test_new_refuses_an_invalid_entry(newsletter):
    n = newsletter()
    result = CliRunner().invoke(cli, ["new", "X", "--organizer", "O", "--start", "2020-02-30", "--root", str(n.root)])
    assert result.exit_code == 2
    assert not list((n.root / "entries").rglob("*.md"))


def test_today_far_outside_the_calendar_is_a_clear_error(tmp_path):
    for value in ("9999-12-31", "0001-01-01"):
        result = CliRunner().invoke(cli, ["build", "--today", value, "--week", "next", "--out", str(tmp_path)])
        assert result.exit_code == 2
        assert f"Invalid value for --today: {value} is outside 1900-2199" in result.output


def test_a_missing_root_is_a_clear_error():
    result = CliRunner().invoke(cli, ["check", "--root", "/nonexistent/newsletter"])
    assert result.exit_code == 2
    assert "Directory '/nonexistent/newsletter' does not exist" in result.output
