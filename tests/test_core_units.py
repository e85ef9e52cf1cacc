"""Unit tests of the small modules: markup, links, present, finish, writer."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import Config
from digest.errors import BuildError
from digest.finish import Links, substitute
from digest.links import google_calendar_url, link_problem
from digest.markup import plain_summary, render_body
from digest.models import Event
from digest.present import UNSUBSCRIBE, VIEW_ONLINE, when_label
from digest.render import TextRefs, _render_blocks, wrap
from digest.writer import recover, write_tree

NY = ZoneInfo("America/New_York")


def event(**fields) -> Event:
    base = dict(path="entries/e.md", slug="e", uid="e@x", title="T", organizer="O", status="scheduled",
                start=None, end=None, all_day=False, zone_name="America/New_York")
    base.update(fields)
    return Event(**base)


def test_markdown_escapes_raw_html_and_keeps_safe_links():
    html, blocks = render_body("Hi <script>alert(1)</script> [site](https://example.org) "
                               "[bad](javascript:alert(1)) **bold**\n\n# Heading\n\n- one\n- two")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<a href="https://example.org">site</a>' in html
    assert "javascript:" not in html.split("[bad]")[0] and 'href="javascript' not in html
    assert "<strong>bold</strong>" in html
    assert "<h1>" not in html and "<p><strong>Heading</strong></p>" in html
    assert [b.kind for b in blocks] == ["p", "p", "li", "li"]


def test_text_blocks_number_links_and_wrap():
    _, blocks = render_body("See [the page](https://example.org/a) and https://example.org/b.\n\n- item")
    refs = TextRefs()
    text = _render_blocks(blocks, refs)
    assert text == "See the page [1] and https://example.org/b.\n\n  * item\n"
    assert refs.urls == ["https://example.org/a"]
    assert max(len(line) for line in wrap("word " * 50).splitlines()) <= 78


def test_plain_summary_cuts_at_a_word():
    _, blocks = render_body("alpha " * 100)
    summary = plain_summary(blocks, limit=40)
    assert len(summary) <= 41 and summary.endswith("\u2026") and " alph\u2026" not in summary


@pytest.mark.parametrize("url, ok", [("https://example.org/x?y=1", True), ("mailto:a@example.org", True),
                                     ("http://example.org", True), ("javascript:alert(1)", False),
                                     ("JAVASCRIPT:alert(1)", False), ("https://exa mple.org", False),
                                     ("https:///path", False), ("mailto:nobody", False), ("", False)])
def test_link_problem(url, ok):
    assert (link_problem(url) is None) is ok


def test_google_calendar_url_encodes_everything():
    url = google_calendar_url("A & B", "20201007T130000Z", "20201007T143000Z", "x y", "Genève")
    assert url == ("https://calendar.google.com/calendar/render?action=TEMPLATE&text=A%20%26%20B"
                   "&dates=20201007T130000Z/20201007T143000Z&details=x%20y&location=Gen%C3%A8ve")


def test_when_labels():
    config = Config(root=Path("."), timezone="America/New_York")
    assert when_label(event(start=date(2020, 9, 28), all_day=True), config) == "Monday 28 September 2020 (all day)"
    assert when_label(event(start=date(2020, 10, 9), end=date(2020, 10, 11), all_day=True), config) == (
        "Friday 9 October 2020 \u2013 Sunday 11 October 2020 (all day)")
    berlin = ZoneInfo("Europe/Berlin")
    assert when_label(event(start=datetime(2020, 10, 7, 15, 0, tzinfo=berlin),
                            end=datetime(2020, 10, 7, 16, 30, tzinfo=berlin), zone_name="Europe/Berlin"), config) == (
        "Wednesday 7 October 2020, 15:00\u201316:30 Berlin time (UTC+2); 09:00 New York time")
    assert when_label(event(status="tba"), config) == "Date to be announced"


def test_substitute_checks_the_final_bytes():
    links = Links("listmonk", "{{ UnsubscribeURL }}", "{{ MessageURL }}", None, None)
    html = f'<a href="{UNSUBSCRIBE}">Unsubscribe</a> <a href="{VIEW_ONLINE}">View</a>'
    out_html, out_text = substitute(html, f"{UNSUBSCRIBE} {VIEW_ONLINE}", links)
    assert out_html == '<a href="{{ UnsubscribeURL }}">Unsubscribe</a> <a href="{{ MessageURL }}">View</a>'
    with pytest.raises(BuildError, match="lacks the exact"):
        substitute("<p>no link</p>", UNSUBSCRIBE, links)


def test_smtp_urls_are_html_escaped_in_the_html_only():
    links = Links("smtp", "https://x.org/u?a=1&b=2", None, "https://x.org/u?a=1&b=2", None)
    html, text = substitute(f'<a href="{UNSUBSCRIBE}">u</a>', UNSUBSCRIBE, links)
    assert html == '<a href="https://x.org/u?a=1&amp;b=2">u</a>' and text == "https://x.org/u?a=1&b=2"


def test_write_tree_replaces_whole_folders(tmp_path):
    write_tree(tmp_path, "2020-W41", {"a.txt": b"old", "gone.txt": b"x"})
    write_tree(tmp_path, "2020-W41", {"a.txt": b"new"})
    assert sorted(p.name for p in (tmp_path / "2020-W41").iterdir()) == ["a.txt"]
    assert (tmp_path / "2020-W41" / "a.txt").read_bytes() == b"new"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_recover_puts_back_an_edition_a_killed_swap_left_aside(tmp_path):
    (tmp_path / ".old-2020-W41.123").mkdir()
    (tmp_path / ".old-2020-W41.123" / "digest.html").write_bytes(b"previous")
    (tmp_path / ".tmp-2020-W42.123").mkdir()
    recover(tmp_path)
    assert (tmp_path / "2020-W41" / "digest.html").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2020-W41"]


def test_recover_removes_a_killed_write_files_scratch_file(tmp_path):
    (tmp_path / ".events.ics.4592.tmp").write_bytes(b"half")
    (tmp_path / "events.ics").write_bytes(b"whole")
    recover(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.ics"]


# -- the text part's word wrap ------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from digest.render import fill  # noqa: E402

_WORDS = st.lists(st.one_of(st.text(alphabet="ab", min_size=1, max_size=12), st.text(min_size=1, max_size=90),
                            st.just("https://example.org/" + "x" * 80)), max_size=40)


@settings(max_examples=2000, deadline=None)
@given(_WORDS, st.sampled_from([("", ""), ("  * ", "    "), ("> ", "> "), ("", "    ")]),
       st.sampled_from(["\n", " ", "  ", "\t", "\xa0"]))
def test_fill_matches_textwrap(words, indents, separator):
    """fill() is textwrap.fill (no long-word or hyphen breaks) on the words, only faster."""
    import textwrap

    text = separator.join(words)
    want = textwrap.fill(" ".join(text.split()), 78, initial_indent=indents[0], subsequent_indent=indents[1],
                         break_long_words=False, break_on_hyphens=False)
    assert fill(text, *indents) == want


# -- the .eml's MIME frame ----------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.text(max_size=400), st.text(min_size=1, max_size=120))
def test_the_eml_is_what_the_email_package_writes(text, html, subject):
    """digest.message writes the multipart frame itself (the email package folds the
    headers); parsed and written again by the email package, the frame is the same bytes,
    with the same two bodies."""
    from email import message_from_bytes, policy

    from digest.editions import make_edition
    from digest.message import build_message

    config = Config(root=Path("."))
    edition = make_edition("2020-W41", (), config)
    raw = build_message(edition, config, subject=subject, text=text, html=html, unsubscribe_url=None)
    parsed = message_from_bytes(raw, policy=policy.SMTP)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert parsed.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[1] == body
    plain, rich = parsed.get_payload()
    normalise = lambda s: (s if s.endswith("\n") else s + "\n").replace("\r\n", "\n").replace("\r", "\n")
    assert normalise(plain.get_content()) == normalise(text)
    assert normalise(rich.get_content()) == normalise(html)
    assert parsed.get_content_type() == "multipart/alternative" and plain.get_content_subtype() == "plain"


def _reference_head(edition, config, subject, text, html, unsubscribe_url) -> bytes:
    """The headers as an EmailMessage writes them (how digest.message made them before)."""
    import hashlib
    from datetime import time as clock
    from email import policy
    from email.message import EmailMessage
    from email.utils import format_datetime

    fingerprint = hashlib.sha256(f"{subject}\0{text}\0{html}".encode()).hexdigest()
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = config.sender
    msg["To"] = config.to
    if config.reply_to:
        msg["Reply-To"] = config.reply_to
    msg["Subject"] = " ".join(subject.split())
    msg["Date"] = format_datetime(datetime.combine(edition.first, clock(6, 0), config.zone))
    msg["Message-ID"] = f"<digest.{edition.week}.{fingerprint[:16]}@{config.list_id}>"
    msg["List-Id"] = f"{config.name} <{config.list_id}>"
    targets = [f"<{u}>" for u in (unsubscribe_url, config.unsubscribe_mailto) if u]
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if unsubscribe_url and unsubscribe_url.startswith("https://"):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["MIME-Version"] = "1.0"
    msg.make_alternative()
    msg.set_boundary(f"==digest-{fingerprint[:24]}==")
    return b"".join(msg.policy.fold_binary(name, value) for name, value in msg.raw_items())


_NAMES = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(subject=st.text(min_size=1, max_size=200), name=_NAMES, reply=st.booleans(),
       unsubscribe=st.sampled_from([None, "https://example.org/u?t=1", "http://x.org/" + "u" * 90]),
       mailto=st.sampled_from(["", "mailto:leave@example.org"]))
def test_eml_headers_are_what_an_email_message_writes(subject, name, reply, unsubscribe, mailto):
    """Each header is parsed and folded by the email package once per value: the bytes
    are an EmailMessage's, for any subject and newsletter name."""
    from dataclasses import replace

    from digest.editions import make_edition
    from digest.message import build_message

    config = replace(Config(root=Path(".")), name=name, sender=f"{name} <digest@example.org>",
                     unsubscribe_mailto=mailto, reply_to="Desk <desk@example.org>" if reply else "")
    edition = make_edition("2020-W41", (), config)
    try:
        want = _reference_head(edition, config, subject, "t", "<p>h</p>", unsubscribe)
    except Exception as exc:  # a value the email package refuses (or trips on) fails the same way
        with pytest.raises(type(exc)):
            build_message(edition, config, subject=subject, text="t", html="<p>h</p>", unsubscribe_url=unsubscribe)
        return
    raw = build_message(edition, config, subject=subject, text="t", html="<p>h</p>", unsubscribe_url=unsubscribe)
    assert raw.split(b"\r\n\r\n", 1)[0] + b"\r\n" == want


def test_presented_views_are_reused_only_for_the_very_same_event_and_config() -> None:
    """edition_context presents an edition's events once for the email and its web page;
    an edited entry (a new Event with the same path) or a new config is presented afresh."""
    from dataclasses import replace

    from digest.editions import make_edition
    from digest.present import edition_context

    config = Config(root=Path("."))
    one = event(path="entries/a.md", title="First title", start=date(2020, 10, 7))
    edition = make_edition("2020-W41", (one,), config)
    shown = edition_context(edition, config)["groups"][0]["events"][0]
    assert edition_context(edition, config)["groups"][0]["events"][0] is shown  # reused
    edited = replace(one, title="Edited title")
    again = edition_context(make_edition("2020-W41", (edited,), config), config)["groups"][0]["events"][0]
    assert again.title == "Edited title"
    other = replace(config, base_url="https://example.org/news")
    moved = edition_context(make_edition("2020-W41", (edited,), other), other)["groups"][0]["events"][0]
    assert moved.web_url == "https://example.org/news/2020-W41/#" + edited.slug


def _slow_bad_chars(url: str) -> bool:
    import unicodedata

    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") for ch in url)


def _slow_contain_bidi(value: str) -> str:
    embeds = isolates = 0
    for ch in value:
        if ch in "\u202a\u202b\u202d\u202e":
            embeds += 1
        elif ch == "\u202c" and embeds:
            embeds -= 1
        elif ch in "\u2066\u2067\u2068":
            isolates += 1
        elif ch == "\u2069" and isolates:
            isolates -= 1
    return value + "\u202c" * embeds + "\u2069" * isolates


_TRICKY = st.text(st.sampled_from(list("ab :/@.é\t\x00\x7f\u00a0\u2028\u200b\u202a\u202c\u202e\u2066\u2069 ")) |
                  st.characters(), max_size=30)


@settings(max_examples=500, deadline=None)
@given(_TRICKY)
def test_fast_paths_say_what_the_character_by_character_checks_say(value: str) -> None:
    """link_problem and contain_bidi skip their per-character loops for plain text: the
    result is the loops' own."""
    from digest.entries import contain_bidi

    assert contain_bidi(value) == _slow_contain_bidi(value)
    for url in (value, "https://x.org/" + value, "mailto:a@b" + value):
        problem = link_problem(url)
        if not url.strip():
            assert problem == "is empty"
        elif _slow_bad_chars(url):
            assert problem is not None and "spaces or control characters" in problem
        else:
            assert problem is None or "spaces or control characters" not in problem


def test_discover_finds_what_rglob_finds(tmp_path: Path) -> None:
    """Entry discovery walks with scandir; it finds exactly what entries/**/*.md with
    pathlib's rglob finds, hidden names aside (no dotfiles, nothing in dot-folders, no
    folders, symlinked files yes, symlinked folders not entered), in the same order."""
    import os

    from digest.entries import ENTRIES_DIR, _discover

    root = tmp_path / "nl"
    entries = root / "entries"
    for rel in ("a.md", "b.MD", ".hidden.md", "notes.txt", "2020/x.md", "2020/deep/y.md", ".git/z.md",
                ".trash/deleted.md", "2020/.old/w.md", "dir.md/inner.md", "é/ü.md"):
        path = entries / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\n", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.md").write_text("---\n", encoding="utf-8")
    os.symlink(outside, entries / "linked")
    os.symlink(outside / "o.md", entries / "2020" / "link.md")
    os.symlink(tmp_path / "missing.md", entries / "broken.md")
    os.symlink(outside, entries / "folderlink.md")

    folder = root / ENTRIES_DIR
    want = sorted(((p, ENTRIES_DIR + "/" + p.relative_to(folder).as_posix()) for p in folder.rglob("*.md")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts) and p.is_file()),
                  key=lambda item: item[1].encode("utf-8", "surrogateescape"))
    assert _discover(root) == want
    assert [rel for _, rel in want] == ["entries/2020/deep/y.md", "entries/2020/link.md",
                                        "entries/2020/x.md", "entries/a.md", "entries/dir.md/inner.md",
                                        "entries/\u00e9/\u00fc.md"]


def test_an_events_cached_hash_is_the_dataclass_hash_and_stays_home() -> None:
    """Event hashes once; the value is what the dataclass's hash of its fields gives,
    equal events hash equal; its days in a zone are pickled with it, its hash is not
    (hashes differ by process)."""
    import pickle
    from dataclasses import fields, replace

    one = event(path="entries/a.md", title="A", start=date(2020, 10, 7), tags=("x",))
    body = ("body_html", "blocks")  # decided by the content (content_hash): left out of the hash
    assert hash(one) == hash(tuple(getattr(one, f.name) for f in fields(one) if f.compare and f.name not in body))
    assert pickle.loads(pickle.dumps(one)).__dict__.get("_memos") is None  # nothing worked out yet
    hash(one)
    one.first_day(NY)
    copy = pickle.loads(pickle.dumps(one))
    assert copy.__dict__["_memos"] == [NY, one._days(NY), None]  # the days travel, the hash does not
    assert copy.__dict__["_memos"][0] is NY and copy.first_day(NY) == date(2020, 10, 7)
    assert copy.first_day(ZoneInfo("Asia/Tokyo")) == date(2020, 10, 7)  # another zone: worked out again
    assert copy == one and hash(copy) == hash(one)
    assert hash(replace(one, title="B")) != hash(one) and {one, replace(one)} == {one}


def test_an_unpickled_events_body_is_unpacked_when_first_asked_for() -> None:
    """A pickled event carries its body (HTML and text blocks) packed: the copy plans,
    dates, hashes and pickles again without unpacking it, and gives the same body,
    equality and copies once asked."""
    import copy
    import pickle
    from dataclasses import replace

    html, blocks = render_body("Join **us** at [the site](https://example.org/).\n\n- one\n- two\n")
    one = event(path="entries/a.md", title="A", start=date(2020, 10, 7), body_html=html, blocks=blocks)
    two = pickle.loads(pickle.dumps(one))
    assert "_body" in two.__dict__ and "blocks" not in two.__dict__ and "body_html" not in two.__dict__
    assert hash(two) == hash(one) and two.first_day(NY) == date(2020, 10, 7) and two.dated
    three = pickle.loads(pickle.dumps(two))  # passed on still packed
    assert "_body" in two.__dict__ and three.__dict__["_body"] == two.__dict__["_body"]
    assert two.blocks == blocks and two.body_html == html
    assert "_body" not in two.__dict__ and two == one
    assert three == one and three.blocks == blocks  # equality unpacks
    assert replace(pickle.loads(pickle.dumps(one)), title="B").blocks == blocks
    assert copy.copy(pickle.loads(pickle.dumps(one))).body_html == html
    with pytest.raises(AttributeError):
        two.no_such_field
    plain = event(path="entries/b.md", title="B", start=None)  # the defaults, without a class attribute
    assert plain.body_html == "" and plain.blocks == () and pickle.loads(pickle.dumps(plain)).blocks == ()
