"""End to end: the example newsletter builds into digests a mail client can read."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import time
from datetime import date
from email import policy
from html.parser import HTMLParser
from pathlib import Path

import pytest
from icalendar import Calendar

from digest.build import build, plan, render_edition, style_chars
from digest.config import load_config
from digest.finish import MERGE_TAGS, hrefs
from digest.forked import cores
from digest.render import Renderer
from tests.conftest import copy_example
from tests.processes import count_forks, descriptors, no_child_left, reads_here
from tests.synthetic import write_week

TODAY = date(2020, 10, 1)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digest", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = copy_example(tmp_path_factory.mktemp("ex") / "newsletter")
    out = root / "dist"
    result = run_cli("build", "--root", str(root), "--week", "2020-W41", "--today", "2020-10-01",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out / "2020-W41"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    parser.close()
    return parser


def test_build_writes_every_output(built):
    names = {p.name for p in built.iterdir()}
    assert {"digest.html", "digest.txt", "digest.eml", "digest.mjml", "events.ics", "manifest.json",
            "2020-r2p-15th-anniversary.ics"} <= names
    assert "index.html" not in names or (built / "index.html").read_text() != (built / "digest.html").read_text()


def test_html_is_accessible_and_safe(built):
    html = (built / "digest.html").read_text(encoding="utf-8")
    page = parse(html)
    tags = page.tags
    assert html.lower().startswith("<!doctype html>")
    assert ("html", ) and tags[0][0] == "html" and tags[0][1]["lang"] == "en"
    assert any(t == "div" and a.get("lang") == "en" for t, a in tags), "lang on a wrapper inside <body>"
    tables = [a for t, a in tags if t == "table"]
    assert tables and all(a.get("role") == "presentation" for a in tables)
    assert all("alt" in a for t, a in tags if t == "img")
    assert not any(t == "script" for t, _ in tags)
    assert not any(k.startswith("on") for _, a in tags for k in a)
    levels = [int(t[1]) for t, _ in tags if t in ("h1", "h2", "h3", "h4", "h5", "h6")]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), levels
    for href in hrefs(html):
        assert href.split(":", 1)[0] in ("http", "https", "mailto"), href
    metas = {a.get("name"): a.get("content") for t, a in tags if t == "meta"}
    assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"
    assert "prefers-color-scheme: dark" in html
    assert style_chars(html) < 16_384


def test_html_shows_the_week(built):
    html = (built / "digest.html").read_text(encoding="utf-8")
    text = " ".join(" ".join(parse(html).text).split())
    assert "Fifteenth anniversary of the responsibility to protect" in text
    assert "Wednesday 7 October 2020, 09:00\u201310:30 New York time (UTC\u22124)" in text
    assert "Register by Monday 5 October 2020" in text
    assert "Registration deadlines this week" in text
    assert "Dates to be announced" in text and "Ongoing" in text
    assert "No registration link was published for this event." in text
    assert "Unsubscribe" in text and "1 Example Street" in text
    assert "Register for" not in text  # no invented links
    links = hrefs(html)
    assert "https://events.example.org/unsubscribe?token=DIGEST-UNSUBSCRIBE-TOKEN" in links
    assert "https://events.example.org/2020-W41/" in links
    assert any(h.startswith("https://calendar.google.com/calendar/render?action=TEMPLATE") and
               "dates=20201007T130000Z/20201007T143000Z" in h for h in links)
    assert any(h.startswith("https://outlook.live.com/calendar/deeplink/compose?") for h in links)
    assert "https://events.example.org/2020-W41/2020-r2p-15th-anniversary.ics" in links


def test_preheader_and_keeps_mjml_head_css(built):
    html = (built / "digest.html").read_text(encoding="utf-8")
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["preheader"].startswith("1 event 5\u201311 October 2020: Fifteenth anniversary")
    assert manifest["preheader"] in html
    assert ".mj-column-per-100 { width:100% !important" in html  # MJML's column CSS stays in <style>
    assert "<!--[if mso | IE]>" in html  # Outlook blocks survive the inliner
    assert 'class="mj-outlook-group-fix mj-column-per-100"' in html  # classes kept for media queries
    assert "fonts.googleapis.com" not in html


def test_text_part(built):
    text = (built / "digest.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert max(len(line) for line in lines if "://" not in line) <= 78
    assert "## Fifteenth anniversary of the responsibility to protect" in text
    assert "When: Wednesday 7 October 2020, 09:00\u201310:30 New York time (UTC\u22124)" in text
    assert "*** Register by Monday 5 October 2020 ***" in text
    assert "Links:" in text
    refs = [line for line in lines if line.startswith("[")]
    assert refs[0].startswith("[1] https://events.example.org/2020-W41/")
    assert any("unsubscribe?token=DIGEST-UNSUBSCRIBE-TOKEN" in line for line in refs)
    assert "<" not in text.replace("<", "", 0) or "<p>" not in text


def test_eml_parses_back_into_the_same_parts(built):
    raw = (built / "digest.eml").read_bytes()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # On the wire every line ends in CRLF (RFC 5322); the files on disk use LF.
    assert parts[0].get_content().replace("\r\n", "\n") == (built / "digest.txt").read_text(encoding="utf-8")
    assert parts[1].get_content().replace("\r\n", "\n") == (built / "digest.html").read_text(encoding="utf-8")
    assert msg["From"] == "Atrocity Prevention Events <events@example.org>"
    assert msg["To"] == "Subscribers <subscribers@example.org>"
    assert msg["Subject"] == "Atrocity Prevention Events: 5\u201311 October 2020 (1 event)"
    assert msg["Date"] == "Mon, 05 Oct 2020 06:00:00 -0400"
    assert msg["Message-ID"].startswith("<digest.2020-W41.") and msg["Message-ID"].endswith("@events.example.org>")
    assert msg["List-Id"] == "Atrocity Prevention Events <events.example.org>"
    assert msg["List-Unsubscribe"].strip() == ("<https://events.example.org/unsubscribe?token=DIGEST-UNSUBSCRIBE-TOKEN>, "
                                       "<mailto:unsubscribe@example.org?subject=unsubscribe>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]  # the non-ASCII Subject is RFC 2047 encoded


def test_ics_files(built):
    cal = Calendar.from_ical((built / "2020-r2p-15th-anniversary.ics").read_bytes())
    assert cal["VERSION"] == "2.0" and cal["METHOD"] == "PUBLISH" and "PRODID" in cal
    events = cal.walk("VEVENT")
    assert len(events) == 1
    event = events[0]
    assert event["UID"] == "2020-r2p-15th-anniversary@events.example.org"
    assert event.decoded("DTSTART").isoformat() == "2020-10-07T09:00:00-04:00"
    assert event["DTSTART"].params["TZID"] == "America/New_York"
    assert event.decoded("DTEND").isoformat() == "2020-10-07T10:30:00-04:00"
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["America/New_York"]
    assert "DTSTAMP" in event
    raw = (built / "events.ics").read_bytes()
    assert b"\r\n" in raw and all(len(line) <= 75 for line in raw.split(b"\r\n"))


def test_rebuild_is_byte_identical(tmp_path):
    root = copy_example(tmp_path / "n")
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        build(root, out, all_weeks=True, today=TODAY)
    # The cache's record of the files' modification times (digest.cache.STAMPS_DIR) aside.
    files = sorted(p.relative_to(first) for p in first.rglob("*")
                   if p.is_file() and p.name != ".digest.lock" and "stamps" not in p.relative_to(first).parts)
    assert files
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_week_this_and_next(tmp_path):
    root = copy_example(tmp_path / "n")
    p = plan(root, weeks=["this", "next"], today=date(2020, 9, 30))
    assert p.weeks == ("2020-W40", "2020-W41")


def test_source_date_epoch_is_today(tmp_path):
    root = copy_example(tmp_path / "n")
    env = {**__import__("os").environ, "SOURCE_DATE_EPOCH": "1601856000"}  # 2020-10-05
    result = run_cli("build", "--root", str(root), "--week", "this", "--out", str(tmp_path / "d"), env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "2020-W41" / "digest.html").exists()


def test_empty_week_is_skipped_with_a_message(tmp_path):
    root = copy_example(tmp_path / "n")
    result = run_cli("build", "--root", str(root), "--week", "2020-W45", "--out", str(tmp_path / "d"))
    assert result.returncode == 0
    assert "2020-W45: no dated events or deadlines; skipped" in result.stdout
    assert not (tmp_path / "d" / "2020-W45").exists()


def test_list_shows_editions(tmp_path):
    root = copy_example(tmp_path / "n")
    result = run_cli("list", "--root", str(root))
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "2020-W40  28 September \u2013 4 October 2020      1 event(s)  0 deadline(s)  1 ongoing  2 tba",
        "2020-W41  5\u201311 October 2020                  1 event(s)  1 deadline(s)  1 ongoing  2 tba",
    ]


def test_bad_week_is_a_clear_error(tmp_path):
    root = copy_example(tmp_path / "n")
    result = run_cli("build", "--root", str(root), "--week", "2020-W60", "--out", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "'2020-W60' does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("profile", sorted(MERGE_TAGS))
def test_profiles_put_the_exact_merge_tags_in_the_final_bytes(tmp_path, profile):
    root = copy_example(tmp_path / "n")
    p = plan(root, weeks=["2020-W41"], today=TODAY)
    item = render_edition(p, "2020-W41", Renderer(root), profile=profile)
    unsubscribe, view = MERGE_TAGS[profile]
    assert unsubscribe in hrefs(item.html) and unsubscribe in item.text
    if view:
        assert view in hrefs(item.html) and view in item.text
    assert "digest.invalid" not in item.html and "digest.invalid" not in item.text
    assert "%7B" not in item.html and "%7C" not in item.html  # not URL-encoded by the inliner
    assert item.manifest["profile"] == profile


def test_thirty_event_week_stays_under_gmail_clip(tmp_path):
    root = copy_example(tmp_path / "n")
    write_week(root, date(2020, 11, 2), 30, seed=7)
    p = plan(root, weeks=["2020-W45"], today=TODAY)
    item = render_edition(p, "2020-W45", Renderer(root))
    assert item.manifest["counts"]["events"] == 30
    assert len(item.files["digest.html"]) < 102_400
    assert item.manifest["style_chars"] < 16_384


def test_an_oversized_week_shortens_instead_of_clipping(tmp_path):
    root = copy_example(tmp_path / "n")
    write_week(root, date(2020, 11, 2), 80, seed=3)
    p = plan(root, weeks=["2020-W45"], today=TODAY)
    item = render_edition(p, "2020-W45", Renderer(root))
    assert len(item.files["digest.html"]) <= 92_000
    assert item.manifest["shortened"] is True
    assert item.warnings and "events shown in short" in item.warnings[0]
    text = " ".join(parse(item.html).text)
    assert "too long for one email" in text
    if len(item.warnings) > 1:
        assert "more event" in text and "https://events.example.org/2020-W45/" in hrefs(item.html)


def test_failed_build_keeps_the_previous_edition(tmp_path):
    root = copy_example(tmp_path / "n")
    out = tmp_path / "d"
    build(root, out, weeks=["2020-W41"], today=TODAY)
    before = (out / "2020-W41" / "digest.html").read_bytes()
    (root / "entries" / "2020" / "broken.md").write_text("---\ntitle: [\n---\n", encoding="utf-8")
    result = run_cli("build", "--root", str(root), "--week", "2020-W41", "--out", str(out))
    assert result.returncode == 2
    assert (out / "2020-W41" / "digest.html").read_bytes() == before


def _recorder():
    """A progress bar maker that records each total and each count: (maker, totals, counts)."""
    from contextlib import contextmanager

    totals: list[int] = []
    seen: list[int] = []

    @contextmanager
    def progress(total):
        totals.append(total)
        yield seen.append

    return progress, totals, seen


def _three_weeks(tmp_path: Path) -> Path:
    """The example newsletter and three generated weeks of four events."""
    root = copy_example(tmp_path / "n")
    for offset in range(3):
        write_week(root, date(2020, 11, 2 + 7 * offset), 4, seed=offset)
    return root


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_counts_every_rendered_edition(tmp_path, jobs):
    from digest.build import render_all

    root = copy_example(tmp_path / "n")
    for offset in range(6):
        write_week(root, date(2020, 11, 2 + 7 * offset) if offset < 4 else date(2020, 12, 7 + 7 * (offset - 4)),
                   2, seed=offset)
    p = plan(root, all_weeks=True, today=TODAY)
    progress, totals, seen = _recorder()
    built = render_all(p, progress=progress, jobs=jobs)
    assert totals == [len(built)] and sum(seen) == len(built) >= 8


def _count_pools(monkeypatch) -> list[int]:
    """Records each ProcessPoolExecutor made (they still work): proof the readers forked."""
    import concurrent.futures

    made: list[int] = []
    real = concurrent.futures.ProcessPoolExecutor

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Counted)
    return made


#: Entries are read in forked processes only with two or more cores (and one thread).
FORKING = pytest.mark.skipif(cores() < 2, reason="entries are read in forked processes from 2 cores")


@pytest.mark.parametrize("how", ["here", pytest.param("one reader", marks=FORKING), pytest.param("pool", marks=FORKING)])
def test_reading_progress_counts_every_entry_parsed(tmp_path, monkeypatch, how):
    """Serially, in one forked reader and in a pool of them, the reading bar counts each
    entry parsed once; a build that finds every entry in its cache parses none."""
    from digest import entries

    root = _three_weeks(tmp_path)
    count = len(entries.discover(root))
    monkeypatch.setattr(entries, "PARALLEL_MIN", 2 if how == "pool" else 10**6)
    monkeypatch.setattr(entries, "FORK_MIN", 2 if how == "one reader" else 10**6)
    progress, totals, seen = _recorder()
    pools = _count_pools(monkeypatch)
    forks = count_forks(monkeypatch)
    build(root, tmp_path / "out", all_weeks=True, today=TODAY, read_progress=progress, jobs=1)
    assert totals == [count] and seen == [1] * count and count >= 15
    assert len(pools) == (how == "pool") and (len(forks) == 1) == (how == "one reader")
    seen.clear()
    build(root, tmp_path / "out", all_weeks=True, today=TODAY, read_progress=progress)
    assert totals == [count, 0] and seen == []


_DEATH: tuple = ()  # (parent pid, entry that kills its reader, the real reader): see _dying


def _dying(item):
    """entries._read_one, but a forked reader given the victim dies (as when the kernel
    kills it). At module level: the pool pickles it by name."""
    import os

    parent, victim, real = _DEATH
    if os.getpid() != parent and item[1] == victim:
        os._exit(1)
    return real(item)


@FORKING
def test_when_a_reader_dies_the_rest_is_read_here_and_counted(tmp_path, monkeypatch):
    """A forked reader that dies leaves the entries read before it; the rest are read
    here, each once, and the bar still counts every entry."""
    import os

    from digest import entries

    root = _three_weeks(tmp_path)
    items = entries._discover(root)
    config = load_config(root)
    victim = items[len(items) // 2][1]
    monkeypatch.setattr(sys.modules[__name__], "_DEATH", (os.getpid(), victim, entries._read_one))
    here: list[str] = []

    def counting(path, rel, config):
        here.append(rel)
        return real_read(path, rel, config)

    real_read = entries.read_entry
    monkeypatch.setattr(entries, "_read_one", _dying)
    monkeypatch.setattr(entries, "read_entry", counting)
    monkeypatch.setattr(entries, "PARALLEL_MIN", 2)
    progress, totals, seen = _recorder()
    read = entries.read_entries(items, config, progress=progress)
    assert totals == [len(items)] and seen == [1] * len(items)
    assert victim in here and len(here) < len(items)  # the rest only, victim included
    assert [event.path if event else None for event, _ in read] == \
        [event.path if event else None for event, _ in (real_read(p, r, config) for p, r in items)]


@FORKING
def test_a_few_entries_are_read_by_one_forked_reader_while_the_build_gets_ready(tmp_path, monkeypatch):
    """From FORK_MIN entries to parse (a week's new ones), one forked process reads them
    while MEANWHILE runs here: the same results as read here, in order; fewer are read
    here and MEANWHILE is not run."""
    from digest import entries

    root = _three_weeks(tmp_path)
    items = entries._discover(root)
    config = load_config(root)
    expected = [entries.read_entry(path, rel, config) for path, rel in items]
    assert entries.FORK_MIN <= len(items) < entries.PARALLEL_MIN
    here = reads_here(monkeypatch)
    forks = count_forks(monkeypatch)
    calls: list[int] = []
    assert entries.read_entries(items, config, meanwhile=lambda: calls.append(1)) == expected
    assert calls == [1] and len(forks) == 1 and here == []  # all read there
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], os.WNOHANG)  # reaped
    few = items[: entries.FORK_MIN - 1]
    assert entries.read_entries(few, config, meanwhile=lambda: calls.append(1)) == expected[: len(few)]
    assert calls == [1] and len(forks) == 1 and here == [rel for _, rel in few]


def test_the_forked_reader_works_when_sigchld_is_ignored(tmp_path):
    """A process started with SIGCHLD ignored (some daemons and launchers pass that on)
    has its children reaped by the kernel: waitpid finds none. The entries still come
    from the reader, in a real `digest build` process."""
    root = _three_weeks(tmp_path)
    out = tmp_path / "out"
    code = ("import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
            "os.execv(sys.executable, [sys.executable, '-m', 'digest'] + sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", code, "build", "--root", str(root), "--all", "--today",
                           TODAY.isoformat(), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    reference = tmp_path / "reference"
    build(root, reference, all_weeks=True, today=TODAY, use_cache=False)
    for week in plan(root, all_weeks=True, today=TODAY).weeks:
        assert (out / week / "digest.eml").read_bytes() == (reference / week / "digest.eml").read_bytes()


@FORKING
def test_when_the_forked_reader_dies_or_cannot_start_the_entries_are_read_here(tmp_path, monkeypatch):
    """A reader that dies (as when the kernel kills it) sends back nothing usable: every
    entry is read here, each counted once. A fork that fails reads them here too."""
    from digest import entries

    root = _three_weeks(tmp_path)
    items = entries._discover(root)
    config = load_config(root)
    expected = [entries.read_entry(path, rel, config) for path, rel in items]
    here = reads_here(monkeypatch, fatal=items[len(items) // 2][1])
    forks = count_forks(monkeypatch)
    progress, totals, seen = _recorder()
    calls: list[int] = []
    assert entries.read_entries(items, config, meanwhile=lambda: calls.append(1), progress=progress) == expected
    assert len(forks) == 1 and calls == [1]
    assert here == [rel for _, rel in items] and totals == [len(items)] and seen == [1] * len(items)

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    here.clear()
    monkeypatch.setattr(os, "fork", no_fork)
    assert entries.read_entries(items, config, meanwhile=lambda: calls.append(1)) == expected
    assert here == [rel for _, rel in items] and calls == [1]  # read here: nothing to do meanwhile


@FORKING
def test_an_error_meanwhile_stops_the_forked_reader_and_is_raised(tmp_path, monkeypatch):
    """An error of MEANWHILE (a template that cannot be read, Ctrl-C) is raised as it is;
    the reader is stopped and reaped, not left running."""
    from digest import entries

    root = _three_weeks(tmp_path)
    items = entries._discover(root)
    forks = count_forks(monkeypatch)

    def fail():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        entries.read_entries(items, load_config(root), meanwhile=fail)
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], os.WNOHANG)


@FORKING
def test_an_error_of_the_reading_progress_is_not_taken_for_the_readers(tmp_path, monkeypatch):
    """A closed terminal under the reading bar stops the build with its own error, as a
    serial read does; it is not taken for readers that failed (read again here)."""
    from contextlib import contextmanager

    from digest import entries

    root = _three_weeks(tmp_path)
    monkeypatch.setattr(entries, "PARALLEL_MIN", 2)
    calls: list[int] = []

    @contextmanager
    def broken(total):
        def advance(count):
            calls.append(count)
            if len(calls) == 3:
                raise BrokenPipeError(32, "Broken pipe")
        yield advance

    pools = _count_pools(monkeypatch)
    with pytest.raises(BrokenPipeError):
        build(root, tmp_path / "out", all_weeks=True, today=TODAY, read_progress=broken, use_cache=False, jobs=1)
    assert len(calls) == 3 and len(pools) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("broken", ["profile", "template"])
def test_a_first_build_that_fails_leaves_nothing(tmp_path, broken):
    """A profile without its unsubscribe link fails before anything is made; a template
    that fails while rendering takes the new cache (compiled templates), the lock file and
    the output folder it made away with it."""
    root = copy_example(tmp_path / "n")
    if broken == "profile":
        (root / "digest.toml").unlink()  # the default profile, smtp, needs unsubscribe_url
    else:
        layout = root / "templates" / "email" / "digest.mjml"
        layout.write_text(layout.read_text(encoding="utf-8").replace(
            "{% block content %}", "{% block content %}{{ no_such_name }}", 1), encoding="utf-8")
    out = tmp_path / "dist"
    result = run_cli("build", "--root", str(root), "--all", "--today", "2020-10-01", "--out", str(out))
    assert result.returncode == (2 if broken == "profile" else 1), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@FORKING
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open descriptors in /proc")
def test_a_ctrl_c_while_the_reader_forks_or_is_reaped_leaves_no_child_and_no_descriptor(monkeypatch):
    """Ctrl-C waits while a forked reader starts or is reaped (signals blocked), and is
    raised as KeyboardInterrupt once they are unblocked: the reader is then killed and
    reaped, its pipe closed once, and nothing is done twice."""
    import signal

    from digest.forked import Forked

    real_fork, real_waitpid, real_close = os.fork, os.waitpid, os.close

    def fork():
        pid = real_fork()
        if pid:
            os.kill(os.getpid(), signal.SIGINT)  # pending until the parent unblocks it
        return pid

    before = descriptors()
    monkeypatch.setattr(os, "fork", fork)
    with pytest.raises(KeyboardInterrupt):
        Forked(lambda: time.sleep(30))
    monkeypatch.setattr(os, "fork", real_fork)
    assert no_child_left() and descriptors() == before

    closed: list[int] = []

    def waitpid(pid, options):
        os.kill(os.getpid(), signal.SIGINT)
        return real_waitpid(pid, options)

    def close(fd):
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "waitpid", waitpid)
    monkeypatch.setattr(os, "close", close)
    with pytest.raises(KeyboardInterrupt):
        with Forked(lambda: 42) as reader:
            reader.result()
    monkeypatch.undo()
    assert len(closed) == len(set(closed)) == 2  # the pipe's two ends, each once
    assert no_child_left() and descriptors() == before
