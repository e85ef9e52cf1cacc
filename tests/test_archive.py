"""The web archive (issue 8): edition web pages, the index, the Atom feed, the calendar
of every event; links that resolve; rebuilds that give the same bytes."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from icalendar import Calendar

from digest.build import build
from digest.config import load_config
from digest.entries import load_events
from digest.errors import BuildError, InputError
from tests.conftest import REPO, copy_example, event_fields

A = "{http://www.w3.org/2005/Atom}"
TODAY = date(2020, 10, 1)
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


class Page(HTMLParser):
    """Links, ids and tags of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if found.get("id"):
            self.ids.add(str(found["id"]))
        for key in ("href", "src"):
            if found.get(key) is not None:
                self.links.append(str(found[key]))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def snapshot(folder: Path) -> dict[str, bytes]:
    """What a build publishes (not the lock or a build cache: hidden names)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            files[rel.as_posix()] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "dist"
    build(REPO, out, all_weeks=True, today=TODAY)
    return out


def without_base_url(root: Path) -> Path:
    config = root / "digest.toml"
    text = config.read_text(encoding="utf-8")
    assert 'base_url = "https://events.example.org/"\n' in text
    config.write_text(text.replace('base_url = "https://events.example.org/"\n', ""), encoding="utf-8")
    return root


def test_archive_is_written_beside_the_editions(dist: Path) -> None:
    assert {"index.html", "feed.xml", "events.ics", "2020-W40", "2020-W41"} <= {p.name for p in dist.iterdir()}
    for week in ("2020-W40", "2020-W41"):
        web = (dist / week / "index.html").read_text(encoding="utf-8")
        email = (dist / week / "digest.html").read_text(encoding="utf-8")
        assert web != email
        assert web.startswith("<!doctype html>\n<html lang=\"en\">")


def test_index_lists_every_edition_newest_first_with_dates_and_counts(dist: Path) -> None:
    page = parse(dist / "index.html")
    editions = [link for link in page.links if re.fullmatch(r"\d{4}-W\d\d/", link)]
    assert editions == ["2020-W41/", "2020-W40/"]
    text = " ".join("".join(page.text).split())
    assert "Week 41, 2020: 5\u201311 October 2020 \u00b7 1 event" in text
    assert "Week 40, 2020: 28 September \u2013 4 October 2020 \u00b7 1 event" in text


def test_web_version_is_the_email_content_without_the_footer(dist: Path) -> None:
    html = (dist / "2020-W41" / "index.html").read_text(encoding="utf-8")
    page = parse(dist / "2020-W41" / "index.html")
    tags = [tag for tag, _ in page.tags]
    assert "script" not in tags and "<script" not in html.lower()
    assert tags.count("h1") == 1 and "h2" in tags and "h3" in tags
    assert ("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}) in page.tags
    assert "Unsubscribe" not in html and "unsubscribe" not in html.lower()
    assert "digest.invalid" not in html and "View this email" not in html
    # Every event of the email, by its anchor, and its text.
    email = parse(dist / "2020-W41" / "digest.html")
    headings = {i for i in email.ids if i.startswith("2020-")}
    assert headings and headings <= page.ids
    assert "Fifteenth anniversary of the responsibility to protect" in html
    assert 'href="2020-r2p-15th-anniversary.ics"' in html
    assert 'href="../2020-W40/" rel="prev"' in html
    assert 'rel="next"' not in html  # the newest edition has no next one


def test_first_edition_links_only_forward(dist: Path) -> None:
    html = (dist / "2020-W40" / "index.html").read_text(encoding="utf-8")
    assert 'href="../2020-W41/" rel="next"' in html and 'rel="prev"' not in html


def test_every_internal_link_of_the_archive_resolves(dist: Path) -> None:
    checked = 0
    for source in sorted(dist.rglob("index.html")):
        page = parse(source)
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                assert parts.scheme in ("https", "http", "mailto"), link
                continue
            target = (source.parent / unquote(parts.path)).resolve() if parts.path else source
            if parts.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{source.relative_to(dist)}: {link!r} does not resolve"
            assert dist.resolve() in target.parents
            if parts.fragment:
                assert parts.fragment in parse(target).ids, f"{source.relative_to(dist)}: {link!r}: no such id"
            checked += 1
    assert checked > 20


def test_feed_is_atom(dist: Path) -> None:
    root = ET.parse(dist / "feed.xml").getroot()
    assert root.tag == f"{A}feed"
    for name in ("id", "title", "updated"):
        assert len(root.findall(f"{A}{name}")) == 1, name
    assert root.findtext(f"{A}title") == "Atrocity Prevention Events"
    assert root.findtext(f"{A}id").startswith("urn:uuid:")
    assert root.find(f"{A}author/{A}name") is not None  # entries have none, so the feed must
    links = {link.get("rel", "alternate"): link.get("href") for link in root.findall(f"{A}link")}
    assert links == {"alternate": "https://events.example.org/", "self": "https://events.example.org/feed.xml"}
    entries = root.findall(f"{A}entry")
    assert [e.find(f"{A}link").get("href") for e in entries] == [
        "https://events.example.org/2020-W41/", "https://events.example.org/2020-W40/"]
    stamps = []
    for entry in entries:
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{A}{name}")) == 1, name
        assert RFC3339.fullmatch(entry.findtext(f"{A}updated"))
        stamps.append(datetime.fromisoformat(entry.findtext(f"{A}updated")))
        assert entry.find(f"{A}content").get("type") == "html"
    assert len({e.findtext(f"{A}id") for e in entries}) == 2
    assert entries[0].findtext(f"{A}title") == "Atrocity Prevention Events: 5\u201311 October 2020 (1 event)"
    # "updated" comes from the data (the edition's first day, midnight in New York), not the clock.
    assert stamps == [datetime.fromisoformat("2020-10-05T04:00:00+00:00"),
                      datetime.fromisoformat("2020-09-28T04:00:00+00:00")]
    assert RFC3339.fullmatch(root.findtext(f"{A}updated"))
    assert datetime.fromisoformat(root.findtext(f"{A}updated")) == max(stamps)


def test_feed_content_is_escaped_html() -> None:
    """Each entry's content is HTML whose text is the titles and organizers as written:
    markup in them is text, never an element."""
    from digest.archive import Listed, feed_bytes

    config = load_config(REPO)
    hostile = Listed(week="2020-W41", first=date(2020, 10, 5), last=date(2020, 10, 11), subject="S <b>", preheader="",
                     count=2, events=(("<script>alert(1)</script> & co", 'Org "A" <i>'), ("Plain", "B")),
                     href="2020-W41/")
    single = Listed(week="2020-W40", first=date(2020, 9, 28), last=date(2020, 10, 4), subject="T", preheader="",
                    count=1, events=(), href="2020-W40/")
    entries = ET.fromstring(feed_bytes(config, [single, hostile])).findall(f"{A}entry")
    content = [entry.findtext(f"{A}content") for entry in entries]
    page = Page()
    page.feed(content[0])
    page.close()
    assert [tag for tag, _ in page.tags] == ["p", "ul", "li", "li"]
    assert "".join(page.text) == (f"{hostile.range}: 2 events.<script>alert(1)</script> & co (Org \"A\" <i>)"
                                  "Plain (B)")
    assert content[1] == f"<p>{single.range}: 1 event.</p>"


def test_events_ics_has_every_dated_entry(dist: Path) -> None:
    config = load_config(REPO)
    events, _ = load_events(REPO, config)
    scheduled = {e.uid: e for e in events if e.status == "scheduled" and e.start is not None}
    assert len(scheduled) >= 2
    calendar = Calendar.from_ical((dist / "events.ics").read_bytes())
    vevents = calendar.walk("VEVENT")
    assert len(vevents) == len(scheduled)
    for item in vevents:
        event = scheduled[str(item["UID"])]
        assert str(item["SUMMARY"]) == event.title
        assert item.decoded("DTSTART") == event.start
        if isinstance(event.end, datetime):
            assert item.decoded("DTEND") == event.end
        assert str(item["STATUS"]) == "CONFIRMED"
    # The same UIDs as the editions' own calendars: subscribing and importing do not duplicate.
    for week in ("2020-W40", "2020-W41"):
        own = Calendar.from_ical((dist / week / "events.ics").read_bytes())
        assert {str(v["UID"]) for v in own.walk("VEVENT")} <= set(scheduled)


def test_rebuilding_is_byte_identical(dist: Path, tmp_path: Path) -> None:
    again = tmp_path / "dist"
    build(REPO, again, all_weeks=True, today=TODAY)
    build(REPO, again, all_weeks=True, today=TODAY)
    assert snapshot(again) == snapshot(dist)


def test_one_week_at_a_time_gives_the_same_archive(dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    build(REPO, out, weeks=["2020-W41"], today=TODAY)
    first = parse(out / "index.html")
    assert [link for link in first.links if link.startswith("2020-")] == ["2020-W41/"]
    assert 'rel="prev"' not in (out / "2020-W41" / "index.html").read_text(encoding="utf-8")
    # The older edition arrives later: the archive lists both, and W41's page gains its "previous" link.
    build(REPO, out, weeks=["2020-W40"], today=TODAY)
    assert snapshot(out) == snapshot(dist)


def test_archive_keeps_editions_this_run_did_not_build(dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    shutil.copytree(dist / "2020-W40", out / "2020-W40")
    manifest = json.loads((out / "2020-W40" / "manifest.json").read_text(encoding="utf-8"))
    manifest["subject"] = "Built long ago"
    (out / "2020-W40" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    build(REPO, out, weeks=["2020-W41"], today=TODAY)
    feed = ET.parse(out / "feed.xml").getroot()
    assert [e.findtext(f"{A}title") for e in feed.findall(f"{A}entry")][1] == "Built long ago"
    assert "2020-W40/" in parse(out / "index.html").links


def test_a_broken_manifest_stops_the_build_before_anything_is_written(dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    (out / "2020-W39").mkdir(parents=True)
    (out / "2020-W39" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BuildError, match=r"2020-W39/manifest.json: cannot be read"):
        build(REPO, out, weeks=["2020-W41"], today=TODAY)
    assert not (out / "2020-W41").exists() and not (out / "index.html").exists()


def test_without_base_url_the_email_has_no_view_online_or_ics_links(tmp_path: Path) -> None:
    root = without_base_url(copy_example(tmp_path / "newsletter"))
    out = tmp_path / "dist"
    build(root, out, all_weeks=True, today=TODAY)
    for week in ("2020-W40", "2020-W41"):
        html = (out / week / "digest.html").read_text(encoding="utf-8")
        text = (out / week / "digest.txt").read_text(encoding="utf-8")
        page = parse(out / week / "digest.html")
        assert page.links
        for link in page.links:
            assert urlsplit(link).scheme in ("https", "mailto"), f"{week}: relative link {link!r} in the email"
            assert not urlsplit(link).path.endswith(".ics"), link
        for shown in (html, text):
            assert "View online" not in shown and "in your browser" not in shown
            assert ".ics" not in shown
            assert "digest.invalid" not in shown
        # The web version still offers the .ics files beside it, by relative links that resolve.
        web = (out / week / "index.html").read_text(encoding="utf-8")
        assert 'href="events.ics"' in web
    feed = ET.parse(out / "feed.xml").getroot()
    assert [e.find(f"{A}link").get("href") for e in feed.findall(f"{A}entry")] == ["2020-W41/", "2020-W40/"]
    for entry in feed.findall(f"{A}entry"):
        assert (out / entry.find(f"{A}link").get("href") / "index.html").is_file()


def test_entry_text_is_escaped_everywhere(newsletter, tmp_path: Path) -> None:
    n = newsletter()
    hostile = 'Panel <script>alert("x")</script> & <b>bold</b>'
    n.entry("2020/hostile.md", event_fields(title=hostile, organizer="Org <i>x</i>"),
            body="<script>alert(1)</script> text")
    out = tmp_path / "dist"
    build(n.root, out, weeks=["2020-W41"], today=TODAY)
    for name in ("index.html", "2020-W41/index.html"):
        html = (out / name).read_text(encoding="utf-8")
        assert "<script" not in html and "<b>" not in html and "<i>" not in html
        assert "Panel &lt;script&gt;" in html
    feed = ET.parse(out / "feed.xml").getroot()
    entry = feed.find(f"{A}entry")
    content = entry.findtext(f"{A}content")  # HTML, carried as text: the parser unescapes it once
    assert "Panel &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in content
    assert "<script" not in content and "<b>" not in content


def test_a_newsletter_can_override_a_web_template(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "newsletter")
    (root / "templates" / "web" / "index.html").write_text(
        "<!doctype html><html lang=\"{{ site.language }}\"><title>{{ site.name }}</title>"
        "{% for item in editions %}<a href=\"{{ item.week }}/\">{{ item.week }}</a>{% endfor %}</html>",
        encoding="utf-8")
    out = tmp_path / "dist"
    build(root, out, weeks=["2020-W41"], today=TODAY)
    assert (out / "index.html").read_text(encoding="utf-8") == (
        "<!doctype html><html lang=\"en\"><title>Atrocity Prevention Events</title>"
        "<a href=\"2020-W41/\">2020-W41</a></html>\n")


def test_an_older_edition_without_a_web_page_is_linked_by_its_email(dist: Path, tmp_path: Path) -> None:
    out = tmp_path / "dist"
    shutil.copytree(dist / "2020-W40", out / "2020-W40")
    (out / "2020-W40" / "index.html").unlink()  # built before the archive existed
    build(REPO, out, weeks=["2020-W41"], today=TODAY)
    assert "2020-W40/digest.html" in parse(out / "index.html").links
    assert 'href="../2020-W40/digest.html" rel="prev"' in (out / "2020-W41" / "index.html").read_text(encoding="utf-8")
    hrefs = [e.find(f"{A}link").get("href") for e in ET.parse(out / "feed.xml").getroot().findall(f"{A}entry")]
    assert hrefs == ["https://events.example.org/2020-W41/", "https://events.example.org/2020-W40/digest.html"]


def test_a_broken_web_template_is_reported_and_nothing_is_written(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "newsletter")
    (root / "templates" / "web" / "nav.html").write_text("{{ previous.nonsense }}", encoding="utf-8")
    out = tmp_path / "dist"
    with pytest.raises(InputError) as caught:
        build(root, out, all_weeks=True, today=TODAY)
    assert [str(p) for p in caught.value.problems] == [
        ("templates/web/nav.html:1: template error: 'None' has no attribute 'nonsense' "
         "(see README.md, Web archive, for the names a web template gets)")]
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


CHROMIUM = Path("/usr/bin/chromium")


def test_pages_fit_a_phone_screen_without_javascript(newsletter, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    n = newsletter()
    n.entry("2020/long.md", event_fields(title="Supercalifragilisticexpialidocious" * 3,
                                         register="https://example.org/" + "a" * 200),
            body="See https://example.org/" + "b" * 200 + " and\n\n```\n" + "c" * 300 + "\n```")
    out = tmp_path / "dist"
    build(n.root, out, weeks=["2020-W41"], today=TODAY)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 360, "height": 740}, java_script_enabled=False)
            for name in ("index.html", "2020-W41/index.html"):
                page.goto((out / name).as_uri())
                assert page.locator("h1").count() == 1
                # Nothing sticks out sideways: no horizontal scrolling on a phone.
                assert page.evaluate("document.documentElement.scrollWidth") <= 360, name
        finally:
            browser.close()


def test_cancelled_events_stay_in_the_subscribed_calendar_marked_cancelled(tmp_path: Path) -> None:
    root = copy_example(tmp_path / "n")
    (root / "entries" / "called-off.md").write_text(
        "---\ntitle: Called off\norganizer: Some Org\nstart: 2020-10-08 09:00\nstatus: cancelled\n---\nNo.\n",
        encoding="utf-8")
    build(root, tmp_path / "dist", all_weeks=True, today=TODAY)
    calendar = Calendar.from_ical((tmp_path / "dist" / "events.ics").read_bytes())
    status = {str(v["SUMMARY"]): str(v["STATUS"]) for v in calendar.walk("VEVENT")}
    assert status["Called off"] == "CANCELLED"
    assert status["Fifteenth anniversary of the responsibility to protect"] == "CONFIRMED"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_template_that_shows_the_links_twice_gets_both_filled(tmp_path: Path, jobs: int) -> None:
    """Pages are rendered with the edition (in a worker) and their previous/next links
    filled in afterwards: every place the template shows them, cached or not."""
    from benchmarks.synth import make_newsletter

    root = tmp_path / "nl"
    make_newsletter(root, weeks=8, per_week=2, seed=3)
    shutil.copytree(REPO / "templates", root / "templates")
    page = root / "templates" / "web" / "edition.html"
    page.write_text(page.read_text(encoding="utf-8").replace("{{ nav }}", "{{ nav }}\n<hr>\n{{ nav }}"),
                    encoding="utf-8")
    out = tmp_path / "dist"
    for _ in range(2):  # rendered, then from the cache
        build(root, out, all_weeks=True, today=date(2020, 1, 1), jobs=jobs)
        weeks = sorted(p.name for p in out.iterdir() if re.fullmatch(r"\d{4}-W\d{2}", p.name))
        import lxml.html

        doc = lxml.html.document_fromstring((out / weeks[1] / "index.html").read_bytes())
        navs = doc.xpath('//nav[@aria-label="Editions"]')
        assert len(navs) == 2
        assert [a.get("href") for a in navs[0].iter("a")] == [a.get("href") for a in navs[1].iter("a")]
        assert f"../{weeks[0]}/" in [a.get("href") for a in navs[0].iter("a")]
