"""The benchmark: `python benchmarks/run.py` (add --quick for a tiny, fast run).

Generates seeded synthetic newsletters (benchmarks/synth.py), times the build at
several sizes and reports medians, with the machine and the date, into
benchmarks/results.json and benchmarks/RESULTS.md (compared with the previous run
when there is one). Not part of the test suite's pass/fail: targets are reported,
never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from synth import make_newsletter  # noqa: E402

TODAY = "2020-01-01"
TARGETS = {
    "edition_20_ms": 15.0,
    "process_ratio": 1.3,
    "archive_cold_s": 1.5,
    "incremental_ms": 150.0,
    "peak_mb_10k": 300.0,
    "html_20_kb": 75.0,
    "html_30_bytes": 102_400,
}


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}


def compile_package() -> bool:
    """Write the package's bytecode, as a regular `pip install` does, and its own
    templates' compiled code (digest.compiled), as its first run does; True when it did.

    An editable install leaves digest/*.py uncompiled, and with PYTHONDONTWRITEBYTECODE
    set (as on some CI machines) every fresh process compiles them again (about 40 ms),
    while the import floor's libraries come compiled from pip. The first run after an
    install, with nothing compiled, is measured on its own (process_floor)."""
    import compileall

    from digest.compiled import compile_own

    done = bool(compileall.compile_dir(str(HERE.parent / "digest"), quiet=1))
    return bool(compile_own()) and done


def file_create_ms(folder: Path, count: int = 300) -> float:
    """Median ms to create one small file in a fresh folder under FOLDER: the disk's own
    cost, which every written output file pays (0.02 ms on a quiet local disk). The
    files stay until the benchmark ends (see the comment below)."""
    work = Path(tempfile.mkdtemp(prefix="digest-fs-", dir=folder))
    samples = []
    for i in range(count):
        start = time.perf_counter()
        with open(work / f"f{i}.ics", "wb") as handle:
            handle.write(b"x" * 2000)
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1000, 3)


# Nothing the benchmark writes is deleted before it ends. On ext4 without a journal (this
# machine's), allocating an inode skips every inode of its group freed in the last minute
# (six, while the inode table is not yet written back): recently_deleted() in
# fs/ext4/ialloc.c, checked one by one. Creating files after deleting many costs up to ten
# times as much, so one run's clean-up would slow the next run's writes. That cost is
# measured once, on its own, at the end (after_deleting).


def cpu_probe_ms() -> float:
    """Median ms of a fixed pure-Python workload: how fast this machine ran at that moment.
    Shared machines vary by half from minute to minute; the report gives this next to
    each section so that a slow spell can be told from a slower build."""
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def timed(fn, repeat: int) -> tuple[list[float], object]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return samples, result


# -- one edition, stage by stage ----------------------------------------------------------

def edition_stages(root: Path, week: str, repeat: int) -> dict:
    """Median ms of each stage of one edition, the in-process total, and output bytes."""
    from digest import entries as entries_mod
    from digest.build import plan, render_edition
    from digest.config import load_config
    from digest.editions import make_edition, weeks_with_content
    from digest.finish import links_for
    from digest.message import build_message
    from digest.present import edition_context, subject
    from digest.render import Renderer, compile_mjml, inline_css
    from digest.writer import write_tree

    today = date.fromisoformat(TODAY)
    config = load_config(root)
    files = entries_mod.discover(root)
    stages: dict[str, list[float]] = {k: [] for k in (
        "read", "validate", "group", "render_mjml", "compile", "inline", "text", "eml", "write")}
    totals: list[float] = []
    renderer = Renderer(root)
    p = plan(root, weeks=[week], today=today)
    unbounded = replace(p, config=replace(p.config, max_html_bytes=10**9))
    built = render_edition(p, week, renderer)  # warm: templates compiled, modules imported
    out = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    from digest import present
    from digest.ical import _vevent_ical

    # Each run writes into a folder of its own, kept until the benchmark ends.
    for _ in range(repeat):
        # Each run renders the edition as a build meets it: its events' VEVENTs not yet
        # made (an edition is rendered once per build; only template, style and time
        # zone caches carry over from edition to edition).
        _vevent_ical.cache_clear()
        present._MEMO = None
        t0 = time.perf_counter()
        for f in files:
            f.read_bytes()
        t1 = time.perf_counter()
        events, _problems = entries_mod.load_events(root, config)
        t2 = time.perf_counter()
        stages["read"].append(t1 - t0)
        # load_events reads the files again; the OS cache makes that a small share.
        stages["validate"].append(max(0.0, (t2 - t1) - (t1 - t0)))
        t0 = time.perf_counter()
        labels = weeks_with_content(tuple(e for e in events if e.status != "draft"), config)
        edition = make_edition(week, unbounded.events, config, list(labels))
        stages["group"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        context = edition_context(edition, config)
        mjml_source = renderer.mjml(context)
        t1 = time.perf_counter()
        html = compile_mjml(mjml_source)
        t2 = time.perf_counter()
        html = inline_css(html, renderer.css(context))
        t3 = time.perf_counter()
        text = renderer.text(context)
        t4 = time.perf_counter()
        links = links_for(config, week, config.profile)
        build_message(edition, config, subject=subject(edition, config), text=text, html=html,
                      unsubscribe_url=links.header_unsubscribe)
        t5 = time.perf_counter()
        stages["render_mjml"].append(t1 - t0)
        stages["compile"].append(t2 - t1)
        stages["inline"].append(t3 - t2)
        stages["text"].append(t4 - t3)
        stages["eml"].append(t5 - t4)
        _vevent_ical.cache_clear()
        present._MEMO = None
        # Written as a weekly build writes a new week: into a new output folder. (A build
        # never rewrites a folder that holds the same bytes; replacing one that differs,
        # a rebuild, is measured by replace_ms, last: it deletes files.)
        fresh = out / f"run-{len(totals)}"
        t0 = time.perf_counter()
        built = render_edition(p, week, renderer)
        t1 = time.perf_counter()
        write_tree(fresh, week, built.files)
        t2 = time.perf_counter()
        stages["write"].append(t2 - t1)
        totals.append(t2 - t0)
    result = {name: median_ms(values) for name, values in stages.items()}
    result["render_edition_total"] = median_ms(totals)
    result["events"] = len(built.edition.events)
    result["html_bytes"] = len(built.files["digest.html"])
    result["shortened"] = bool(built.manifest["shortened"])
    result["all_bytes"] = sum(len(v) for v in built.files.values())
    result["files"] = len(built.files)
    return result


def replace_ms(root: Path, week: str, repeat: int) -> float:
    """Median ms to write an edition over its folder with one file changed, as a rebuild
    does: the new folder is staged and swapped in, the old one's files removed."""
    from digest.build import plan, render_edition
    from digest.render import Renderer
    from digest.writer import write_tree

    built = render_edition(plan(root, weeks=[week], today=date.fromisoformat(TODAY)), week, Renderer(root))
    out = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    write_tree(out, week, built.files)
    samples = []
    for i in range(repeat):
        changed = dict(built.files, **{"digest.txt": built.files["digest.txt"] + b"\n" * (i + 1)})
        start = time.perf_counter()
        write_tree(out, week, changed)
        samples.append(time.perf_counter() - start)
    return median_ms(samples)


# -- processes ----------------------------------------------------------------------------

def run_process(args: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"benchmark command failed ({done.returncode}): {' '.join(args)}\n{done.stderr}")
    return elapsed, done.stdout


def digest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from digest.cli import main; main()", *args]


def child(code: str) -> dict:
    """Run CODE in a fresh interpreter; it prints one JSON object."""
    _, stdout = run_process([sys.executable, "-c", code])
    return json.loads(stdout.strip().splitlines()[-1])


CHILD_BUILD = """
import json, resource, sys, time
from datetime import date
from pathlib import Path
t0 = time.perf_counter()
from digest.build import build
t1 = time.perf_counter()
p, built = build(Path({root!r}), Path({out!r}), all_weeks=True, today=date.fromisoformat({today!r}))
t2 = time.perf_counter()
# VmHWM: this process's own peak. ru_maxrss also counts the benchmark's process as this
# one was forked from it, before exec (Linux keeps the larger of the two).
try:
    self_kb = int([line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1])
except (OSError, IndexError):
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the workers: forked here, never exec'd
print(json.dumps({{"import_s": t1 - t0, "build_s": t2 - t1, "editions": len(built), "entries": len(p.events),
                  "peak_mb": max(self_kb, kids_kb) / 1024}}))
"""

CHILD_INCREMENTAL = """
import json, time
from datetime import date
from pathlib import Path
from digest.build import build
root, out, today = Path({root!r}), Path({out!r}), date.fromisoformat({today!r})
build(root, out, all_weeks=True, today=today)
entry = sorted((root / "entries").rglob("*.md"))[{index}]
samples = []
for i in range({repeat}):
    entry.write_text(entry.read_text(encoding="utf-8") + "\\nOne more line, edit %d.\\n" % i, encoding="utf-8")
    start = time.perf_counter()
    p, built = build(root, out, all_weeks=True, today=today)
    samples.append(time.perf_counter() - start)
print(json.dumps({{"samples": samples, "editions": len(built)}}))
"""


def process_floor(tmp: Path, single: Path, repeat: int, year: int = 51) -> dict:
    """`digest build --week W` as a fresh process, next to the bare import floor:

    - weekly: a run of weekly jobs as cron makes them. The output folder is as last
      week's job left it (the archive of the weeks before); this week's 20 entries are
      new since then. Each run builds the next week, at least 2 s after the run before
      (digest.cache does not trust a file written less than 2 s before it looked). Twice:
      a newsletter's first weeks (4 built before), and a year on (YEAR weeks built before:
      the calendar of every event, the feed, the index and the entry cache are a year's);
    - unchanged: the same week again, nothing changed (the output folder from the run before);
    - cold: no output folder, no cache (every entry parsed; digest's own templates'
      compiled code as its first run left it, see digest.compiled), for SINGLE, a
      newsletter of one 20-event week;
    - first: the same, as the first run after an install: no template compiled anywhere.

    The floor is measured between the builds, so that a slow spell of the machine moves both."""
    floor: list[float] = []

    def measure_floor() -> None:
        floor.append(run_process([sys.executable, "-c", "import jinja2, mjml, premailer"])[0])

    def paired(builds: list[float], floors: list[float]) -> dict:
        """Each build over the floor measured just before it: a slow spell of the machine
        moves both. Their median and range, and the samples (ms)."""
        ratios = sorted(b / f for b, f in zip(builds, floors))
        return {"median": round(statistics.median(ratios), 2), "low": round(ratios[0], 2),
                "high": round(ratios[-1], 2), "met": sum(r <= TARGETS["process_ratio"] for r in ratios),
                "runs": len(ratios),
                "samples": [[round(f * 1000, 1), round(b * 1000, 1)] for b, f in zip(builds, floors)]}

    weekly, shown, out, root, last = _weekly_jobs(tmp / "weekly", 4, repeat, measure_floor)
    pairs = {"weekly": paired(weekly[1:], floor[1:])}
    mark = len(floor)
    weekly_year, shown_year, *_ = _weekly_jobs(tmp / "weekly-year", year, repeat, measure_floor)
    pairs["weekly_year"] = paired(weekly_year[1:], floor[mark + 1:])

    def command(week: str, dist: Path, at: Path) -> list[str]:
        return digest_cmd("build", "--root", str(at), "--week", week, "--today", TODAY, "--out", str(dist))

    unchanged = []
    time.sleep(2.0)  # as the weekly runs: the cache trusts what the last build wrote
    mark = len(floor)
    for _ in range(repeat):
        measure_floor()
        unchanged.append(run_process(command(last, out, root))[0])
    pairs["unchanged"] = paired(unchanged, floor[mark:])
    cold, single_week = [], _busiest_week(single)
    mark = len(floor)
    for i in range(repeat):  # each into a new folder
        measure_floor()
        cold.append(run_process(command(single_week, out.parent / f"cold-{i}", single))[0])
    pairs["cold"] = paired(cold, floor[mark:])
    from digest.compiled import compile_own, store_parent

    first = []
    mark = len(floor)
    for i in range(repeat):  # each into a new folder, with no template compiled
        shutil.rmtree(store_parent(), ignore_errors=True)
        measure_floor()
        first.append(run_process(command(single_week, out.parent / f"first-{i}", single))[0])
    pairs["first"] = paired(first, floor[mark:])
    compile_own()  # as it was, for what follows
    result = {"import_floor_ms": median_ms(floor), "build_week_weekly_ms": median_ms(weekly[1:]),
              "build_week_weekly_year_ms": median_ms(weekly_year[1:]), "year_weeks_before": year,
              "build_week_ms": median_ms(unchanged), "build_week_cold_ms": median_ms(cold),
              "build_week_first_ms": median_ms(first),
              "weekly_events": shown[1:], "weekly_year_events": shown_year[1:]}
    result["ratio_weekly"] = round(result["build_week_weekly_ms"] / result["import_floor_ms"], 2)
    result["ratio_weekly_year"] = round(result["build_week_weekly_year_ms"] / result["import_floor_ms"], 2)
    result["ratio"] = round(result["build_week_ms"] / result["import_floor_ms"], 2)
    result["ratio_cold"] = round(result["build_week_cold_ms"] / result["import_floor_ms"], 2)
    result["ratio_first"] = round(result["build_week_first_ms"] / result["import_floor_ms"], 2)
    result["paired"] = pairs
    return result


def _weekly_jobs(root: Path, before: int, repeat: int,
                 measure_floor: Callable[[], None]) -> tuple[list[float], list[int], Path, Path, str]:
    """BEFORE weeks built (`--all`), then 1 + REPEAT weekly jobs, each with its week's
    entries put back first: (times, events each built week shows, the output folder,
    the newsletter, the last week built). The first job is for the disk's and the OS's
    caches as a weekly job finds them: not counted by the caller."""
    from datetime import date as day

    labels = make_newsletter(root, weeks=before + repeat + 1, per_week=20)
    later = root.parent / f"{root.name}-later"
    later.mkdir()
    by_week: dict[str, list[Path]] = {}
    for path in sorted((root / "entries").rglob("*.md")):
        year, number, _ = day.fromisoformat(path.name[:10]).isocalendar()
        label = f"{year}-W{number:02d}"
        if label in labels[before:]:
            by_week.setdefault(label, []).append(path)
            path.rename(later / path.name)
    os.sync()
    out = Path(tempfile.mkdtemp(prefix="digest-bench-")) / "dist"
    run_process(digest_cmd("build", "--root", str(root), "--all", "--today", TODAY, "--out", str(out)))
    times, shown = [], []
    for week in labels[before:]:
        for path in by_week.get(week, []):
            (later / path.name).rename(path)
        time.sleep(2.0)
        measure_floor()
        times.append(run_process(digest_cmd("build", "--root", str(root), "--week", week, "--today", TODAY,
                                            "--out", str(out)))[0])
        manifest = json.loads((out / week / "manifest.json").read_text(encoding="utf-8"))
        shown.append(len(manifest["events"]))  # the week the job was to build, with its new entries
    return times, shown, out, root, labels[-1]


def archive(root: Path, repeat: int) -> dict:
    """--all cold (no output, no cache) and warm (unchanged input): `digest build --all`
    as a process, and build() inside a process (its own time and the peak memory)."""
    out = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    cold, warm, cold_build, warm_build, editions, peak = [], [], [], [], 0, 0.0
    user, system = [], []
    for i in range(repeat):  # each cold build into a new folder
        command = archive_cmd(root, out / f"process-{i}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cold.append(run_process(command)[0])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the process and its workers
        user.append(after.ru_utime - before.ru_utime)
        system.append(after.ru_stime - before.ru_stime)
        warm.append(run_process(command)[0])
        code = CHILD_BUILD.format(root=str(root), out=str(out / f"in-process-{i}"), today=TODAY)
        info = child(code)
        cold_build.append(info["build_s"])
        editions, peak = info["editions"], max(peak, info["peak_mb"])
        warm_build.append(child(code)["build_s"])
    return {"editions": editions, "cold_process_ms": median_ms(cold), "cold_build_ms": median_ms(cold_build),
            "cold_user_ms": median_ms(user), "cold_system_ms": median_ms(system),
            "warm_process_ms": median_ms(warm), "warm_build_ms": median_ms(warm_build), "peak_mb": round(peak, 1)}


def archive_cmd(root: Path, out: Path) -> list[str]:
    return digest_cmd("build", "--root", str(root), "--all", "--today", TODAY, "--out", str(out))


def after_deleting(root: Path, repeat: int) -> dict:
    """What deleting many files costs the writes that follow, on this file system: a small
    file created just after 1,500 were deleted beside it, and `rm -rf dist && digest build
    --all` (cold, right after deleting the previous output). Runs last: it deletes."""
    out = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    doomed = out / "doomed"
    doomed.mkdir()
    for i in range(1500):
        (doomed / f"f{i}.ics").write_bytes(b"x" * 2000)
    shutil.rmtree(doomed)
    time.sleep(1.5)  # the kernel counts inodes freed before the current second
    probe = file_create_ms(out)
    cold = []
    for _ in range(repeat):
        run_process(archive_cmd(root, out / "dist"))
        shutil.rmtree(out / "dist")
        cold.append(run_process(archive_cmd(root, out / "dist"))[0])
        shutil.rmtree(out / "dist")
    return {"file_create_ms": probe, "cold_process_ms": median_ms(cold)}


def incremental(root: Path, repeat: int) -> dict:
    """One entry changes; build --all again in a warm process (the preview server's case)
    and as a fresh process (digest build --all after an edit)."""
    work = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    shutil.copytree(root, work / "nl")
    count = len(list((work / "nl" / "entries").rglob("*.md")))
    info = child(CHILD_INCREMENTAL.format(root=str(work / "nl"), out=str(work / "dist"), today=TODAY,
                                          index=count // 2, repeat=repeat))
    entry = sorted((work / "nl" / "entries").rglob("*.md"))[count // 3]
    procs = []
    for i in range(repeat):
        entry.write_text(entry.read_text(encoding="utf-8") + f"\nProcess edit {i}.\n", encoding="utf-8")
        procs.append(run_process(archive_cmd(work / "nl", work / "dist"))[0])
    return {"in_process_ms": median_ms(info["samples"]), "process_ms": median_ms(procs),
            "editions": info["editions"]}


def scale(sizes: list[int], per_week: int, tmp: Path) -> dict:
    """--all over N entries in a fresh process: time per entry and peak memory."""
    result = {}
    for n in sizes:
        root = tmp / f"scale-{n}"
        make_newsletter(root, weeks=max(1, n // per_week), per_week=min(n, per_week), seed=11)
        start = time.perf_counter()
        info = child(CHILD_BUILD.format(root=str(root), out=str(tmp / f"scale-{n}-dist"), today=TODAY))
        wall = time.perf_counter() - start
        result[str(n)] = {"entries": info["entries"], "editions": info["editions"],
                          "build_ms": round(info["build_s"] * 1000, 1), "process_ms": round(wall * 1000, 1),
                          "ms_per_entry": round(info["build_s"] * 1000 / max(1, info["entries"]), 3),
                          "peak_mb": round(info["peak_mb"], 1)}
    return result


# -- report -------------------------------------------------------------------------------

def summary(results: dict) -> dict:
    """The issue's targets next to what was measured (ratio = measured / target)."""
    ed = results["editions"]
    rows = {}

    def row(name: str, measured: float | None, target: float, unit: str) -> None:
        if measured is None:
            return
        rows[name] = {"measured": measured, "target": target, "unit": unit,
                      "ratio": round(measured / target, 2), "met": measured <= target}

    if "20" in ed:
        row("one 20-event edition, in-process, all outputs", ed["20"]["render_edition_total"],
            TARGETS["edition_20_ms"], "ms")
        row("20-event week HTML", round(ed["20"]["html_bytes"] / 1024, 1), TARGETS["html_20_kb"], "KB")
    if "30" in ed:
        row("30-event week HTML (after shortening)", ed["30"]["html_bytes"], TARGETS["html_30_bytes"], "bytes")
    if "process" in results:
        row("digest build --week W / import floor: the weekly job (this week's 20 entries new)",
            results["process"]["ratio_weekly"], TARGETS["process_ratio"], "x")
        if "ratio_weekly_year" in results["process"]:
            row(f"the same, a year on ({results['process']['year_weeks_before']} weeks in the archive)",
                results["process"]["ratio_weekly_year"], TARGETS["process_ratio"], "x")
        row("the same, nothing changed", results["process"]["ratio"], TARGETS["process_ratio"], "x")
        row("the same, cold (no output folder)", results["process"]["ratio_cold"], TARGETS["process_ratio"], "x")
        if "ratio_first" in results["process"]:
            row("the same, the first run after an install (no output folder, no template compiled)",
                results["process"]["ratio_first"], TARGETS["process_ratio"], "x")
    if "archive" in results:
        row(f"{results['archive']['shape']} archive, cold (process)",
            round(results["archive"]["cold_process_ms"] / 1000, 2),
            TARGETS["archive_cold_s"], "s")
    if "incremental" in results:
        row("rebuild after one entry changed (in-process)", results["incremental"]["in_process_ms"],
            TARGETS["incremental_ms"], "ms")
    big = results.get("scale", {})
    if big:
        largest = max(big.values(), key=lambda v: v["entries"])
        row(f"{largest['entries']:,} entries, peak memory", largest["peak_mb"], TARGETS["peak_mb_10k"], "MB")
    return rows


def markdown(results: dict, previous: dict | None) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"`python benchmarks/run.py{' --quick' if results['quick'] else ''}` on {m['date']}: {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}, {m['platform']}. Medians of {results['repeat']} runs"
        f"{'' if results['quick'] else ' (an edition of up to 100 events: at least 25; of 1,000 events, and the archive: at most 3)'}; "
        "synthetic newsletters from benchmarks/synth.py (seeded).",
        "",
        f"Work folder: `{m.get('work', '?')}`. Creating one small file there costs {m.get('file_create_ms', '?')} ms "
        "(median; "
        "a quiet local disk: about 0.02 ms). A 20-event edition writes 26 files, a 52-week archive about "
        "1,500. The package's bytecode is compiled first, as a regular install does. Every run writes into "
        "a new folder, and what deletes files (a rebuild replacing folders) runs last: on some file "
        "systems, deleting many files makes the next files created cost more"
        + (" (measured under \"After deleting\")." if "after_deleting" in results else "."),
        "",
        "CPU probe (a fixed pure-Python loop; on this machine at its usual speed: 16-18 ms), at the start of "
        "each section: " + ", ".join(f"{name} {ms} ms" for name, ms in results.get("cpu_probe_ms", {}).items())
        + ". A section whose probe is slower ran in a slow spell of this shared machine.",
        "",
        "## Targets (issue 7)",
        "",
        "| what | measured | target | ratio | met | previous run |",
        "|---|---:|---:|---:|:-:|---:|",
    ]
    old = (previous or {}).get("summary", {})
    for name, r in results["summary"].items():
        before = old.get(name, {}).get("measured")
        lines.append(f"| {name} | {r['measured']:,} {r['unit']} | {r['target']:,} {r['unit']} | {r['ratio']} | "
                     f"{'yes' if r['met'] else 'no'} | {'' if before is None else f'{before:,} ' + r['unit']} |")
    lines += ["", "## One edition, per stage (ms, median)", "",
              "Stages run once each on the full edition (no size budget); `total` is `render_edition` "
              "with the budget (it may shorten and render again) plus writing the files into a new week's "
              "folder, as the weekly build does. `replace` (not in the total; measured last, as it deletes "
              "files) writes the edition again over its folder with one file changed, as a rebuild does: the "
              "old folder's files are removed too.", ""]
    stage_names = ["read", "validate", "group", "render_mjml", "compile", "inline", "text", "eml", "write"]
    stage_names += ["replace"] if all("replace" in r for r in results["editions"].values()) else []
    sizes = list(results["editions"])
    lines.append("| stage | " + " | ".join(f"{s} events" for s in sizes) + " |")
    lines.append("|---|" + "---:|" * len(sizes))
    for stage in stage_names + ["render_edition_total"]:
        label = "total" if stage == "render_edition_total" else stage
        lines.append(f"| {label} | " + " | ".join(f"{results['editions'][s][stage]:,}" for s in sizes) + " |")
    lines.append("| HTML bytes | " + " | ".join(
        f"{results['editions'][s]['html_bytes']:,}{' (shortened)' if results['editions'][s]['shortened'] else ''}"
        for s in sizes) + " |")
    lines.append("| all output bytes | " + " | ".join(f"{results['editions'][s]['all_bytes']:,}" for s in sizes) + " |")
    if "process" in results:
        p = results["process"]

        def pairs(name: str) -> str:
            q = p.get("paired", {}).get(name)
            if not q:
                return ""
            return (f"; each build over the floor measured just before it: median {q['median']}x, "
                    f"{q['low']}-{q['high']}x, {q['met']} of {q['runs']} at or under {TARGETS['process_ratio']}x")

        lines += ["", "## As a process", "",
                  f"- `python -c \"import jinja2, mjml, premailer\"`: {p['import_floor_ms']:,} ms (measured "
                  "before each build below)",
                  f"- `digest build --week W` (20 events), the weekly job: the output folder as last week's job "
                  f"left it, this week's 20 entries new since: {p['build_week_weekly_ms']:,} ms "
                  f"({p['ratio_weekly']}x the floor{pairs('weekly')})",
                  f"- the same, a year on ({p.get('year_weeks_before', '?')} weeks in the archive: the calendar of "
                  f"every event, the feed, the index and the entry cache are a year's): "
                  f"{p.get('build_week_weekly_year_ms', 0):,} ms ({p.get('ratio_weekly_year', '?')}x the floor"
                  f"{pairs('weekly_year')})",
                  f"- the same week again, nothing changed: {p['build_week_ms']:,} ms ({p['ratio']}x the floor"
                  f"{pairs('unchanged')})",
                  f"- the same, cold (no output folder, no cache; digest's own templates' compiled code as its "
                  f"first run left it beside them, as Python keeps a module's): {p['build_week_cold_ms']:,} ms "
                  f"({p['ratio_cold']}x the floor{pairs('cold')})",
                  f"- the same, the first run after an install (no template compiled anywhere): "
                  f"{p.get('build_week_first_ms', 0):,} ms ({p.get('ratio_first', '?')}x the floor{pairs('first')})"]
    if "archive" in results:
        a = results["archive"]
        lines += ["", f"## Archive: --all, {a['editions']} editions", "",
                  f"- cold (a new output folder, no cache): {a['cold_process_ms']:,} ms as a "
                  f"`digest build --all` process ({a['cold_build_ms']:,} ms inside build(), in a process of its own); "
                  f"CPU over both cores: {a.get('cold_user_ms', 0):,} ms user, {a.get('cold_system_ms', 0):,} ms "
                  "system (the kernel's share: creating ~1,600 files and writing them)",
                  f"- warm (nothing changed): {a['warm_process_ms']:,} ms as a process "
                  f"({a['warm_build_ms']:,} ms inside build())",
                  f"- peak memory: {a['peak_mb']} MB"]
    if "after_deleting" in results and "archive" in results:
        d = results["after_deleting"]
        lines += ["", "## After deleting", "",
                  f"- creating one small file just after 1,500 were deleted beside it: {d['file_create_ms']} ms "
                  f"(in a quiet folder: {m.get('file_create_ms', '?')} ms)",
                  f"- `rm -rf dist && digest build --all` (the cold archive, right after deleting the previous "
                  f"output): {d['cold_process_ms']:,} ms (into a new folder: {results['archive']['cold_process_ms']:,} "
                  "ms)",
                  "", "On ext4 without a journal, allocating an inode skips, one by one, every inode of its "
                  "group freed in the last minute (six while the inode table is not yet written back; "
                  "recently_deleted() in fs/ext4/ialloc.c): each new file pays for the files deleted before "
                  "it. ext4 with a journal, and tmpfs, do not. This is why the benchmark deletes nothing "
                  "until it ends, and why runs shortly after deleting many files (a test suite, a previous "
                  "benchmark) write slower."]
    if "incremental" in results:
        i = results["incremental"]
        lines += ["", "## Incremental: one entry changed, then --all", "",
                  f"- in a warm process (the preview server's case): {i['in_process_ms']:,} ms",
                  f"- as a fresh `digest build --all` process: {i['process_ms']:,} ms"]
    if results.get("scale"):
        lines += ["", "## Scale: --all in a fresh process", "",
                  "| entries | editions | build ms | ms per entry | peak MB |", "|---:|---:|---:|---:|---:|"]
        for s in results["scale"].values():
            lines.append(f"| {s['entries']:,} | {s['editions']:,} | {s['build_ms']:,} | {s['ms_per_entry']} | "
                         f"{s['peak_mb']} |")
    if previous:
        lines += ["", f"Previous run: {previous.get('machine', {}).get('date', '?')}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1-2 runs: proves the benchmark works")
    parser.add_argument("--repeat", type=int, default=None, help="runs per measurement (default 7; quick: 1)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.json and RESULTS.md go")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the generated newsletters and outputs (default: the system's temporary "
                             "folder); creating files costs what this folder's file system charges")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["editions", "process", "archive", "incremental", "scale"])
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 7)
    sizes = [5, 20] if args.quick else [5, 20, 30, 100, 1000]
    results: dict = {"machine": machine(), "quick": args.quick, "repeat": repeat, "editions": {}}
    compile_package()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="digest-bench-", dir=args.work))
    results["machine"]["work"] = str(tmp.parent.resolve())
    tempfile.tempdir = str(tmp)  # every folder the benchmark makes goes there, removed at the end
    try:
        os.sync()  # what was written before (a test suite, say) is not flushed by the first measured build
        results["machine"]["file_create_ms"] = file_create_ms(tmp)
        def newsletter(name: str, **kwargs) -> Path:
            root = tmp / name
            if not root.exists():
                make_newsletter(root, **kwargs)
                os.sync()  # a build syncs once before it swaps folders in: it is not to flush these too
            return root

        def say(text: str, section: str | None = None) -> None:
            print(text, file=sys.stderr, flush=True)
            if section:
                results.setdefault("cpu_probe_ms", {})[section] = cpu_probe_ms()

        if "editions" not in args.skip:
            for n in sizes:
                say(f"one edition of {n} events …", f"edition of {n}")
                root = newsletter(f"week-{n}", weeks=1, per_week=n)
                week = _busiest_week(root)
                # A small edition takes milliseconds: more runs (a second or so in all) give a
                # median that a brief slow spell of a shared machine does not move.
                runs = min(repeat, 3) if n >= 1000 else repeat if args.quick or n > 100 else max(repeat, 25)
                results["editions"][str(n)] = edition_stages(root, week, max(1, runs))
                results["editions"][str(n)]["runs"] = max(1, runs)
        if "process" not in args.skip:
            say("digest build --week W as a process …", "process")
            results["process"] = process_floor(tmp, newsletter("week-20", weeks=1, per_week=20), repeat,
                                               year=6 if args.quick else 51)
        weeks, per = (3, 5) if args.quick else (52, 20)
        if "archive" not in args.skip:
            say(f"archive {weeks} x {per}, cold and warm …", "archive")
            results["archive"] = archive(newsletter("archive", weeks=weeks, per_week=per),
                                         max(1, min(repeat, 3)))
            results["archive"]["shape"] = f"{weeks} x {per}"
        if "scale" not in args.skip:
            say("scale …", "scale")
            results["scale"] = scale([20, 50] if args.quick else [1000, 10000], 20, tmp)
        # What deletes files comes last: a rebuild replaces the folders it changes.
        if "incremental" not in args.skip:
            say("incremental rebuild …", "incremental")
            results["incremental"] = incremental(newsletter("archive", weeks=weeks, per_week=per), repeat)
        if "editions" not in args.skip:
            say("replacing an edition's folder …")
            for n, stages in results["editions"].items():
                root = newsletter(f"week-{n}", weeks=1, per_week=int(n))
                stages["replace"] = replace_ms(root, _busiest_week(root), stages["runs"])
        if "archive" not in args.skip:
            say("after deleting files …")
            results["after_deleting"] = after_deleting(newsletter("archive", weeks=weeks, per_week=per),
                                                       max(1, min(repeat, 3)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["summary"] = summary(results)
    args.out.mkdir(parents=True, exist_ok=True)
    previous = None
    if (args.out / "results.json").exists():
        try:
            previous = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        except ValueError:
            previous = None
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report = markdown(results, previous)
    (args.out / "RESULTS.md").write_text(report, encoding="utf-8")
    print(report)
    return 0


def _busiest_week(root: Path) -> str:
    from digest.build import plan
    from digest.editions import make_edition

    p = plan(root, all_weeks=True, today=date.fromisoformat(TODAY))
    return max(p.all_weeks, key=lambda w: len(make_edition(w, p.events, p.config).events))


if __name__ == "__main__":
    sys.exit(main())
