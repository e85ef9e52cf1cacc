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


def test_one_shot_commands_run_without_the_cycle_collector(tmp_path):
    """`digest build` and `digest check` turn the cyclic garbage collector off for their
    process (see digest.cli._one_shot); the preview server and send keep it."""
    import subprocess
    import sys

    from digest.cli import _one_shot
    from tests.conftest import REPO, copy_example

    assert _one_shot(["build", "--week", "next"]) and _one_shot(["check", "--strict"])
    assert not any(_one_shot(args) for args in (["preview"], ["send", "--week", "2020-W41"], ["--help"], []))
    root = copy_example(tmp_path / "nl")
    code = ("import gc, sys\nimport digest.build as b\nreal = b.build\n"
            "def spy(*args, **kwargs):\n    print('collector on:', gc.isenabled())\n    return real(*args, **kwargs)\n"
            "b.build = spy\nfrom digest.cli import main\nsys.argv = ['digest', *sys.argv[1:]]\nmain()\n")
    done = subprocess.run([sys.executable, "-c", code, "build", "--root", str(root), "--week", "2020-W41",
                           "--today", "2020-10-01", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "collector on: False" in done.stdout and (tmp_path / "out" / "2020-W41" / "digest.html").is_file()


def test_a_one_shot_command_ends_at_once_with_its_output_whole(tmp_path):
    """`digest build` and `digest check` end with os._exit once done (digest.cli._leaving):
    their output on a pipe is the same, every byte, as when the interpreter shuts down as
    usual (as it does under a tracer: coverage and cProfile write their data then), their
    status 0, and the interpreter's shutdown (an exit handler) does not run; other
    commands end as usual."""
    import subprocess
    import sys

    from tests.conftest import REPO, copy_example

    root = copy_example(tmp_path / "nl")
    for week in range(42, 52):  # output on both streams: a line per week, warnings
        (root / "entries" / f"w{week}.md").write_text(
            f"---\ntitle: Talk {week}\norganizer: Org\nstart: 2020-{10 + (week - 40) // 5:02d}-{1 + (week % 5) * 6:02d}"
            f" 10:00\nregister_by: 2030-01-01\n---\nText.\n", encoding="utf-8")
    code = ("import atexit, sys\natexit.register(lambda: print('shutdown ran'))\n"
            "if sys.argv[1] == 'traced':\n    sys.settrace(lambda *args: None)\n"
            "from digest.cli import main\nsys.argv = ['digest', *sys.argv[2:]]\nmain()\n")

    def run(how: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, how, *args, "--root", str(root)],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    for args in (("build", "--all", "--today", "2020-10-01", "--out", str(tmp_path / "out")), ("check",)):
        fast, usual = run("fast", *args), run("traced", *args)
        assert fast.returncode == usual.returncode == 0, fast.stderr + usual.stderr
        assert usual.stdout.endswith("shutdown ran\n") and "shutdown ran" not in fast.stdout
        assert fast.stdout == usual.stdout.removesuffix("shutdown ran\n") and fast.stderr == usual.stderr
        assert fast.stdout.count("\n") >= (10 if args[0] == "build" else 1)
    listed = run("fast", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.rstrip().endswith("shutdown ran")
