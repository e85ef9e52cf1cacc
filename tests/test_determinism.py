"""Determinism: entries in any order, on any file system, under any locale and TZ give
byte-identical output."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digest.entries import discover
from tests.conftest import REPO

ENVIRONMENTS = [
    {"TZ": "UTC", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
    {"TZ": "Pacific/Kiritimati", "LC_ALL": "C", "LANG": "C"},
    {"TZ": "America/St_Johns", "LC_ALL": "tr_TR.UTF-8", "LANG": "de_DE.UTF-8", "PYTHONHASHSEED": "12345"},
    {"TZ": "Asia/Kathmandu", "LC_ALL": "", "LANG": "ja_JP.eucJP", "PYTHONHASHSEED": "0", "LC_COLLATE": "sv_SE"},
]


def copy_site(source: Path, target: Path, order: list[str]) -> Path:
    """Copy the example with its entry files created in ORDER (directory order follows creation
    on most file systems), under differently nested folders."""
    target.mkdir(parents=True)
    shutil.copy(source / "digest.toml", target / "digest.toml")
    shutil.copytree(source / "templates", target / "templates")
    for rel in order:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target / rel)
    return target


def snapshot(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and ".cache" not in p.parts and p.name != ".digest.lock"}


def build(root: Path, out: Path, env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "TZ", "PYTHONHASHSEED"))}
    full.update(env)
    result = subprocess.run([sys.executable, "-m", "digest", "build", "--root", str(root), "--all", "--today",
                             "2020-10-01", "--out", str(out)], capture_output=True, text=True, env=full, timeout=120)
    assert result.returncode == 0, result.stderr
    return snapshot(out)


def test_any_order_locale_and_tz_give_identical_bytes(tmp_path: Path) -> None:
    entries = [p.relative_to(REPO).as_posix() for p in discover(REPO)]
    assert len(entries) >= 5
    outputs = []
    for index, env in enumerate(ENVIRONMENTS):
        order = entries[:]
        random.Random(index).shuffle(order) if index else order.reverse()
        root = copy_site(REPO, tmp_path / f"site{index}", order)
        outputs.append(build(root, tmp_path / f"out{index}", env))
    assert outputs[0], "nothing was built"
    for other in outputs[1:]:
        assert other == outputs[0]


def test_discovery_order_ignores_directory_order(tmp_path: Path) -> None:
    names = ["b.md", "A.md", "a/z.md", "a.md", "\u00e9.md", "e\u0301x.md", "10.md", "9.md", "a-b.md", "a_b.md"]
    orders = []
    for index in range(3):
        root = tmp_path / f"r{index}"
        shuffled = names[:]
        random.Random(index).shuffle(shuffled)
        for name in shuffled:
            (root / "entries" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "entries" / name).write_text("x")
        orders.append([p.relative_to(root).as_posix() for p in discover(root)])
    assert orders[0] == orders[1] == orders[2]
    assert orders[0] == sorted(orders[0], key=lambda s: s.encode())


def test_rebuild_in_place_is_byte_identical(tmp_path: Path) -> None:
    root = copy_site(REPO, tmp_path / "site", [p.relative_to(REPO).as_posix() for p in discover(REPO)])
    first = build(root, tmp_path / "out", ENVIRONMENTS[0])
    shutil.rmtree(tmp_path / "out" / ".cache", ignore_errors=True)
    again = build(root, tmp_path / "out", ENVIRONMENTS[1])
    assert first == again


@pytest.mark.parametrize("epoch", ["1601510400"])
def test_source_date_epoch_is_honoured_regardless_of_tz(tmp_path: Path, epoch: str) -> None:
    root = copy_site(REPO, tmp_path / "site", [p.relative_to(REPO).as_posix() for p in discover(REPO)])
    results = []
    for env in ENVIRONMENTS[:2]:
        full = {**os.environ, **env, "SOURCE_DATE_EPOCH": epoch}
        out = tmp_path / f"out-{env['TZ'].replace('/', '-')}"
        result = subprocess.run([sys.executable, "-m", "digest", "build", "--root", str(root), "--week", "this",
                                 "--out", str(out)], capture_output=True, text=True, env=full, timeout=120)
        assert result.returncode == 0, result.stderr
        results.append((result.stdout.split(":")[0], snapshot(out)))
    assert results[0] == results[1]
