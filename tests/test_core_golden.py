"""Golden files of the example digest (MJML, text, normalised HTML).

Refresh them, on purpose only, with:
    DIGEST_UPDATE_GOLDEN=1 python -m pytest tests/test_core_golden.py
then read the diff (git diff tests/golden) before committing.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import lxml.html
import pytest

from digest.build import plan, render_edition
from digest.render import Renderer
from tests.conftest import REPO, copy_example

GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"


def normalise_html(html: str) -> str:
    """One element per line, so a golden diff shows what changed."""
    tree = lxml.html.document_fromstring(html)
    return lxml.html.tostring(tree, pretty_print=True, encoding="unicode", doctype="<!doctype html>")


@pytest.mark.parametrize("week", ["2020-W40", "2020-W41"])
def test_example_matches_golden(tmp_path, week):
    root = copy_example(tmp_path / "n")
    p = plan(root, weeks=[week], today=date(2020, 10, 1))
    item = render_edition(p, week, Renderer(root))
    outputs = {
        "digest.mjml": item.files["digest.mjml"].decode(),
        "digest.txt": item.files["digest.txt"].decode(),
        "digest.normalised.html": normalise_html(item.html),
    }
    folder = GOLDEN / week
    for name, actual in outputs.items():
        path = folder / name
        if UPDATE:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            continue
        assert path.exists(), f"missing {path}: run DIGEST_UPDATE_GOLDEN=1 python -m pytest {Path(__file__).name}"
        assert actual == path.read_text(encoding="utf-8"), (
            f"{week}/{name} differs from the golden file; if the change is intended, refresh with "
            "DIGEST_UPDATE_GOLDEN=1 python -m pytest tests/test_core_golden.py")
