"""The benchmark runs end to end in its tiny mode and writes its reports.
No timing is asserted: only that every section ran and the files are well formed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benchmark_quick_mode_writes_results(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path),
                           "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert set(results) >= {"machine", "editions", "process", "archive", "incremental", "scale", "after_deleting",
                            "summary"}
    assert results["machine"]["work"] == str((tmp_path / "work").resolve())
    assert results["machine"]["file_create_ms"] > 0
    assert set(results["cpu_probe_ms"]) == {"edition of 5", "edition of 20", "process", "archive", "scale",
                                            "incremental"}
    assert all(ms > 0 for ms in results["cpu_probe_ms"].values())
    assert list((tmp_path / "work").iterdir()) == []  # everything the benchmark made there is gone
    assert set(results["editions"]) == {"5", "20"}
    for stages in results["editions"].values():
        assert stages["html_bytes"] > 0 and stages["files"] >= 4
        assert all(stages[s] >= 0 for s in ("read", "validate", "group", "render_mjml", "compile", "inline", "text",
                                            "eml", "write", "replace"))
    assert results["editions"]["20"]["events"] == 20
    assert results["archive"]["editions"] >= 3
    process = results["process"]
    assert all(process[k] > 0 for k in ("import_floor_ms", "build_week_weekly_ms", "build_week_weekly_year_ms",
                                        "build_week_ms", "build_week_cold_ms", "build_week_first_ms"))
    # The new week was built, with its 20 new entries: after 4 weeks, and after "a year" (6 in --quick).
    # (A week's 20 new entries: one may fall in the next week, or an earlier one in this.)
    assert len(process["weekly_events"]) == len(process["weekly_year_events"]) == 1
    assert all(18 <= shown <= 22 for shown in process["weekly_events"] + process["weekly_year_events"])
    assert process["year_weeks_before"] == 6
    # Each build paired with the floor measured just before it (one run each in --quick).
    for name, build_ms in (("weekly", "build_week_weekly_ms"), ("weekly_year", "build_week_weekly_year_ms"),
                           ("unchanged", "build_week_ms"), ("cold", "build_week_cold_ms"),
                           ("first", "build_week_first_ms")):
        pair = process["paired"][name]
        assert pair["runs"] == len(pair["samples"]) == 1 and abs(pair["samples"][0][1] - process[build_ms]) <= 0.1
        assert abs(pair["median"] - pair["samples"][0][1] / pair["samples"][0][0]) < 0.01
    assert any(name.startswith("the same, a year on (6 weeks") for name in results["summary"])
    assert any(name.startswith("digest build --week W / import floor: the weekly job") for name in results["summary"])
    assert any(name.startswith("the same, the first run after an install") for name in results["summary"])
    assert {row["unit"] for row in results["summary"].values()} <= {"ms", "KB", "bytes", "x", "s", "MB"}
    report = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "| stage |" in report and "## Targets" in report and "## After deleting" in report
    assert "each build over the floor measured just before it" in report
    assert results["after_deleting"]["file_create_ms"] > 0 and results["after_deleting"]["cold_process_ms"] > 0
    # A second run compares with the first.
    again = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path),
                            "--skip", "process", "--skip", "archive", "--skip", "incremental", "--skip", "scale"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Previous run:" in (tmp_path / "RESULTS.md").read_text(encoding="utf-8")


def test_synthetic_newsletter_is_seeded(tmp_path: Path) -> None:
    from benchmarks.synth import make_newsletter

    make_newsletter(tmp_path / "a", weeks=2, per_week=3, seed=4)
    make_newsletter(tmp_path / "b", weeks=2, per_week=3, seed=4)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.md"))
    assert len(files) == 6
    for rel in files:
        text = (tmp_path / "a" / rel).read_text(encoding="utf-8")
        assert text == (tmp_path / "b" / rel).read_text(encoding="utf-8")
        body = text.split("\n---\n", 1)[1]
        assert 300 <= len(body) <= 1400
