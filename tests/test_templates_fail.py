"""Templates fail loudly: a typo'd variable, a missing partial or MJML that mjml-python
rejects stops the build with the template's file and line, exit 1, nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.errors import EXIT_FAILURE, BuildError
from tests.conftest import REPO


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    shutil.copytree(REPO / "entries", root / "entries")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "digest.toml", root / "digest.toml")
    return root


def edit(root: Path, name: str, old: str, new: str) -> int:
    """Replace OLD (which must occur) in a template; return the 1-based line of the change."""
    path = root / "templates" / "email" / name
    text = path.read_text(encoding="utf-8")
    assert old in text, (name, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def build(root: Path) -> BuildError:
    result = CliRunner().invoke(cli, ["build", "--root", str(root), "--week", "2020-W41", "--today", "2020-10-01"],
                                standalone_mode=False, catch_exceptions=True)
    assert isinstance(result.exception, BuildError), result.exception
    assert result.exception.exit_code == EXIT_FAILURE
    assert not (root / "dist" / "2020-W41").exists()
    return result.exception


def line_of(root: Path, name: str, needle: str) -> int:
    text = (root / "templates" / "email" / name).read_text(encoding="utf-8")
    return text[: text.index(needle)].count("\n") + 1


def test_typo_in_a_variable_names_file_and_line(site: Path) -> None:
    edit(site, "digest.mjml", "<h2>{{ group.name }}</h2>", "<h2>{{ group.nmae }}</h2>")
    [problem] = build(site).problems
    assert (problem.path, problem.line) == ("templates/email/digest.mjml", line_of(site, "digest.mjml", "group.nmae"))
    assert problem.message == "template error: 'jinja2.runtime.Context object' has no attribute 'nmae'" or \
        "nmae" in problem.message


def test_typo_in_a_partial_names_the_partial(site: Path) -> None:
    edit(site, "partials/event.mjml", "{{ e.title }}</h3>", "{{ e.titel }}</h3>")
    [problem] = build(site).problems
    assert problem.path == "templates/email/partials/event.mjml"
    assert problem.line == line_of(site, "partials/event.mjml", "e.titel")
    assert "titel" in problem.message


def test_typo_in_a_loop_is_not_a_silently_empty_section(site: Path) -> None:
    edit(site, "digest.mjml", "{%- for e in group.events %}", "{%- for e in group.evnts %}")
    [problem] = build(site).problems
    assert (problem.path, problem.line) == ("templates/email/digest.mjml", line_of(site, "digest.mjml", "group.evnts"))
    assert "evnts" in problem.message


def test_missing_partial_names_the_including_template(site: Path) -> None:
    (site / "templates/email/partials/event.mjml").unlink()
    shipped = REPO / "templates/email/partials/event.mjml"
    text = (site / "templates/email/digest.mjml").read_text(encoding="utf-8")
    if "partials/event.mjml" not in text:
        pytest.skip("digest.mjml does not import the event partial")
    # the shipped templates are a fallback: rename the reference so nothing provides it
    edit(site, "digest.mjml", "partials/event.mjml", "partials/evnt.mjml")
    assert shipped.exists()
    [problem] = build(site).problems
    assert problem.path == "templates/email/digest.mjml"
    assert problem.line == line_of(site, "digest.mjml", "partials/evnt.mjml")
    assert "'partials/evnt.mjml' not found" in problem.message


def test_jinja_syntax_error_names_file_and_line(site: Path) -> None:
    edit(site, "layout.mjml", "<mj-body", "{% if %}<mj-body")
    [problem] = build(site).problems
    assert problem.path == "templates/email/layout.mjml"
    assert problem.line == line_of(site, "layout.mjml", "{% if %}")


def test_unknown_filter_names_file_and_line(site: Path) -> None:
    path = site / "templates/email/digest.txt"
    text = path.read_text(encoding="utf-8").rstrip("\n") + "\n"
    path.write_text(text + "{{ 1 | no_such_filter }}\n", encoding="utf-8")
    [problem] = build(site).problems
    assert (problem.path, problem.line) == ("templates/email/digest.txt", text.count("\n") + 1)
    assert "no_such_filter" in problem.message


@pytest.mark.parametrize("name, old, new, needle", [
    ("digest.mjml", "{%- endfor %}\n      </mj-column>", "{%- endfor %}\n", None),  # a close tag removed
    ("layout.mjml", "<mj-body", '<mj-section css-class="oops"><mj-body', 'css-class="oops"'),
    ("partials/event.mjml", "<h3 id=", "</mj-text></mj-column><h3 id=", None),
])
def test_mjml_the_compiler_rejects_names_file_and_line(site: Path, name: str, old: str, new: str,
                                                        needle: str | None) -> None:
    line = edit(site, name, old, new)
    error = build(site)
    [problem] = error.problems
    assert problem.message.startswith("mjml-python rejected the MJML")
    assert problem.path.startswith("templates/email/")
    assert isinstance(problem.line, int) and problem.line >= 1
    if needle:
        assert (problem.path, problem.line) == (f"templates/email/{name}", line_of(site, name, needle))
    if name == "digest.mjml":  # the first <mj-column> left open is on the line before the removed close tag
        assert problem.path == "templates/email/digest.mjml" and problem.line < line


def test_template_failure_exits_1_without_a_traceback(site: Path) -> None:
    edit(site, "partials/event.mjml", "{{ e.title }}</h3>", "{{ e.titel }}</h3>")
    result = subprocess.run([sys.executable, "-m", "digest", "build", "--root", str(site), "--week", "2020-W41",
                             "--today", "2020-10-01"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("templates/email/partials/event.mjml:")
    assert "Error: the email templates could not be rendered; nothing was written." in result.stderr
    assert not (site / "dist" / "2020-W41").exists()


@pytest.mark.parametrize("folder, name", [("email", "partials/event.mjml"), ("web", "nav.html"),
                                          ("email", "digest.txt")])
def test_a_template_that_is_not_utf8_is_named_without_a_traceback(site: Path, folder: str, name: str) -> None:
    path = site / "templates" / folder / name
    text = path.read_bytes()
    path.write_bytes(text + b"\n<p>caf\xe9</p>\n")  # Latin-1, as an editor might save it
    (site / "templates" / folder / "a-logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not a template: not named
    result = subprocess.run([sys.executable, "-m", "digest", "build", "--root", str(site), "--week", "2020-W41",
                             "--today", "2020-10-01"], capture_output=True, text=True, timeout=120)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    line = text.count(b"\n") + 2
    assert (f"templates/{folder}/{name}:{line}: not UTF-8 text (byte 0xe9 at offset {len(text) + 7}) "
            "(save the file as UTF-8)") in result.stderr
    assert not (site / "dist" / "2020-W41").exists()


def test_a_missing_web_partial_is_reported_as_not_found(site: Path) -> None:
    page = site / "templates" / "web" / "edition.html"
    page.write_text(page.read_text(encoding="utf-8").replace('"partials/event.html"', '"partials/evnt.html"'),
                    encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "digest", "build", "--root", str(site), "--week", "2020-W41",
                             "--today", "2020-10-01"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("templates/web/edition.html:6: template error: 'partials/evnt.html' not found")
    assert not (site / "dist" / "2020-W41").exists()
