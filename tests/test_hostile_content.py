"""Hostile content is data: escaped and inert in the HTML, plain in the text part, and
never able to bend the .eml's headers. HTML is checked with html5lib (the WHATWG
parsing algorithm browsers use), never with regular expressions."""

from __future__ import annotations

import email
import shutil
from datetime import date
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import html5lib
import pytest
import yaml

from digest.build import plan, render_all
from digest.config import Config
from digest.entries import read_entry
from digest.errors import InputError
from digest.markup import render_body
from digest.message import build_message
from tests.conftest import REPO

ALLOWED = ("http", "https", "mailto")
#: Elements that run code, load documents or submit data: none may appear.
ACTIVE = {"script", "iframe", "object", "embed", "form", "base", "frame", "frameset", "applet", "svg", "math",
          "input", "button", "textarea", "link"}
XHTML = "{http://www.w3.org/1999/xhtml}"

TITLE = "<script>alert('t')</script> {{ config }} {% raw %} \u202eevil\u202c \U0001F469\u200d\U0001F469\u200d\U0001F467"
ORGANIZER = "<img src=x onerror=alert(1)> & Co."
LOCATION = "</mj-text></mj-column><mj-raw><script>alert(2)</script></mj-raw>"
SPEAKER = "{{ config.sender }}"
ROLE = "<b onmouseover=alert(3)>Role</b>"
SUMMARY = "{% for x in range(9) %}loop{% endfor %} <style>*{display:none}</style>"
BODY = """Intro with **bold**, _emphasis_ and a [good link](https://example.org/good).

<script>alert('body')</script>
<img src=x onerror=alert(4)>
<a href="javascript:alert(5)">raw anchor</a>
</mj-text><mj-button href="javascript:alert(6)">click</mj-button>

Bad links: [one](javascript:alert(7)) [two](JaVaScRiPt:alert(8)) [three]( javascript:alert(9) )
[four](&#106;avascript:alert(10)) [five](java&#x09;script:alert(11)) [six](data:text/html;base64,PHNjcmlwdD4=)
[seven](vbscript:msgbox(12)) [eight](%6Aavascript:alert(13)) <javascript:alert(14)> [nine][ref]

[ref]: javascript:alert(15)

{{ config }} and {% for x in y %}{% endfor %} stay as written. Bidi \u202eoverride\u202c, ZWJ a\u200db, emoji \U0001F600.
"""


def inert_problems(html: str) -> list[str]:
    """Why HTML is not inert (empty when it is): active elements, on* handlers, bad URLs."""
    problems = []
    tree = html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=True)
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue  # comments
        tag = element.tag.replace(XHTML, "")
        if tag in ACTIVE or tag.startswith("mj-"):
            problems.append(f"<{tag}> element")
        for name, value in element.attrib.items():
            if name.lower().startswith("on"):
                problems.append(f"{name} attribute on <{tag}>")
            if name.lower() in ("href", "src", "action", "formaction", "background", "poster", "xlink:href"):
                scheme = urlsplit(value.strip()).scheme.lower()
                if scheme not in ALLOWED:
                    problems.append(f"{name}={value!r} on <{tag}>")
            if name.lower() == "style" and ("expression(" in value or "url(" in value.replace(" ", "")):
                problems.append(f"style {value!r} on <{tag}>")
        if tag == "meta" and element.get("http-equiv", "").lower() == "refresh":
            problems.append("meta refresh")
    return problems


def assert_inert(html: str) -> None:
    assert inert_problems(html) == []


def visible_text(html: str) -> str:
    tree = html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False)
    body = tree.find("body")
    return " ".join("".join(body.itertext()).split()) if body is not None else ""


def hrefs(html: str) -> list[str]:
    tree = html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False)
    return [a.get("href") for a in tree.iter("a")]


def test_the_checker_itself_catches_active_content() -> None:
    bad = ('<p onclick="x">a</p><script>1</script><a href=" JavaScript:alert(1)">x</a>'
           '<a href="java&#x09;script:x">y</a><img src="data:image/png;base64,AA">')
    assert inert_problems(bad) == ["onclick attribute on <p>", "<script> element",
                                   "href=' JavaScript:alert(1)' on <a>", "href='java\\tscript:x' on <a>",
                                   "src='data:image/png;base64,AA' on <img>"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    shutil.copy(REPO / "digest.toml", root / "digest.toml")
    config = (root / "digest.toml").read_text(encoding="utf-8")
    (root / "digest.toml").write_text(config.replace('name = "Atrocity Prevention Events"',
                                                     'name = "Événements \u202e <b>& Co</b> 😀"'), "utf-8")
    (root / "entries").mkdir()
    fields = {
        "title": TITLE + "\r\nBcc: victim@example.org\r\n\r\nInjected body",
        "organizer": ORGANIZER, "location": LOCATION, "start": "2020-10-07 09:00", "end": "2020-10-07 10:30",
        "timezone": "America/New_York", "register": "https://example.org/r?a=1&b=%22x%22",
        "speakers": [{"name": SPEAKER, "role": ROLE}], "summary": SUMMARY, "tags": ["<x>", "{{ y }}"],
    }
    (root / "entries" / "hostile.md").write_text(
        "---\n" + yaml.safe_dump(fields, allow_unicode=True, sort_keys=False) + "---\n" + BODY, "utf-8")
    p = plan(root, weeks=["2020-W41"], today=date(2020, 10, 1))
    [built] = render_all(p)
    return {"root": root, "built": built, "html": built.html, "text": built.text, "eml": built.files["digest.eml"],
            "mjml": built.files["digest.mjml"].decode()}


def test_html_is_inert(hostile: dict) -> None:
    assert_inert(hostile["html"])


def test_every_link_in_the_html_is_http_https_or_mailto(hostile: dict) -> None:
    links = hrefs(hostile["html"])
    assert links and all(urlsplit(h).scheme in ALLOWED for h in links), links
    assert "https://example.org/good" in links
    assert "https://example.org/r?a=1&b=%22x%22" in links


def test_hostile_text_is_shown_as_text_in_the_html(hostile: dict) -> None:
    shown = visible_text(hostile["html"])
    for text in ("<script>alert('t')</script> {{ config }} {% raw %}", "<img src=x onerror=alert(1)> & Co.",
                 LOCATION, SPEAKER, ROLE, "<script>alert('body')</script>", "<img src=x onerror=alert(4)>",
                 '<a href="javascript:alert(5)">raw anchor</a>', "[one](javascript:alert(7))",
                 "[two](JaVaScRiPt:alert(8))", "[six](data:text/html;base64,PHNjcmlwdD4=)",
                 "{{ config }} and {% for x in y %}{% endfor %} stay as written.", "\u202eoverride\u202c",
                 "a\u200db", "\U0001F600", "Événements \u202e <b>& Co</b> 😀", "\U0001F469\u200d\U0001F469\u200d\U0001F467"):
        assert text in shown, text
    assert "loop" * 9 not in shown  # the summary's Jinja loop never ran


def test_no_template_was_evaluated_from_entry_text(hostile: dict) -> None:
    for part in (hostile["html"], hostile["text"], hostile["mjml"]):
        assert "{{ config }}" in part.replace("&#123;", "{").replace("&#125;", "}")
        assert "loop" * 9 not in part


def test_mjml_tags_in_entries_do_not_reach_the_compiler(hostile: dict) -> None:
    assert "</mj-text></mj-column><mj-raw>" not in hostile["mjml"]
    assert "&lt;/mj-text&gt;" in hostile["mjml"]


def test_text_part_shows_the_text_plainly(hostile: dict) -> None:
    text = hostile["text"]
    flat = " ".join(text.split())
    for plain in ("<script>alert('t')</script> {{ config }} {% raw %} \u202eevil\u202c",
                  ORGANIZER.upper(),  # the text template shows organizers in capitals
                  LOCATION, f"{SPEAKER} ({ROLE})", "<script>alert('body')</script>", "[one](javascript:alert(7))",
                  "Bidi \u202eoverride\u202c, ZWJ a\u200db, emoji \U0001F600"):
        assert plain in flat, plain
    assert "&lt;" not in text and "&amp;" not in text
    assert "javascript:alert(7)" not in [line.split("] ", 1)[-1] for line in text.splitlines()
                                         if line.startswith("[")]


def test_title_line_breaks_are_collapsed(hostile: dict) -> None:
    built = hostile["built"]
    [event] = built.edition.events
    assert "\r" not in event.title and "\n" not in event.title
    assert event.title.endswith("Bcc: victim@example.org Injected body")


def test_eml_headers_are_well_formed(hostile: dict) -> None:
    raw: bytes = hostile["eml"]
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    head.decode("ascii")  # RFC 5322: headers are ASCII; anything else is RFC 2047 encoded
    assert all(len(line) <= 998 for line in raw.splitlines())
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.defects == []
    names = [name.lower() for name in msg.keys()]
    assert names.count("subject") == 1 and "bcc" not in names and "cc" not in names
    assert str(msg["Subject"]).startswith("Événements \u202e <b>& Co</b> 😀: ")
    assert "=?utf-8?" in head.decode("ascii")
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n") == hostile["text"]
    assert html.get_content().replace("\r\n", "\n") == hostile["html"]
    for part in msg.walk():
        assert part.defects == []


@pytest.mark.parametrize("subject", [
    "Weekly\r\nBcc: victim@example.org", "Weekly\nX-Injected: yes", "Weekly\rX: y", "\u202eWeekly\u200d \U0001F600",
    "Tab\there", "=?utf-8?q?already_encoded?=", "x" * 400,
])
def test_subject_can_never_inject_headers(hostile: dict, subject: str) -> None:
    built = hostile["built"]
    config = Config(root=hostile["root"])
    raw = build_message(built.edition, config, subject=subject, text="t\n", html="<p>h</p>\n", unsubscribe_url=None)
    msg = email.message_from_bytes(raw, policy=policy.default)
    names = [name.lower() for name in msg.keys()]
    assert names.count("subject") == 1
    assert "bcc" not in names and "x-injected" not in names and "x" not in names
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    assert msg.defects == []


@pytest.mark.parametrize("link", [
    "javascript:alert(1)", "JAVASCRIPT:alert(1)", " javascript:alert(1)", "javascript :alert(1)",
    "java\tscript:alert(1)", "java\nscript:alert(1)", "&#106;avascript:alert(1)", "&#x6A;avascript:alert(1)",
    "javascript&colon;alert(1)", "%6Aavascript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "DATA:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)", "VbScRiPt:msgbox(1)", "\u200bjavascript:alert(1)",
    "javascript\u00a0:alert(1)", "file:///etc/passwd", "//evil.example.org/x", "https://", "http:///x", "mailto:",
    "ftp://example.org", "jav\x00ascript:x",
])
def test_forbidden_register_links_are_errors(tmp_path: Path, link: str) -> None:
    path = tmp_path / "x.md"
    path.write_text("---\n" + yaml.safe_dump({"title": "t", "organizer": "o", "start": "2020-10-07",
                                              "register": link}, allow_unicode=True) + "---\nbody\n", "utf-8")
    event, problems = read_entry(path, "entries/x.md", Config(root=tmp_path))
    assert event is None
    assert [p.field for p in problems if not p.warning] in (["register"],), [str(p) for p in problems]


@pytest.mark.parametrize("link", ["javascript:alert(1)", "JAVASCRIPT:alert(1)", " javascript:alert(1)",
                                  "&#106;avascript:alert(1)", "java&#x09;script:alert(1)",
                                  "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)",
                                  "data:text/html,x", "vbscript:x", "%6Aavascript:alert(1)", "file:///etc/passwd",
                                  "jav&#x0A;ascript:alert(1)", "\\javascript:alert(1)"])
@pytest.mark.parametrize("form", ["[x]({})", "[x](<{}>)", "<{}>", "[x][r]\n\n[r]: {}", "[x]({} \"t\")"])
def test_forbidden_body_links_are_not_links(link: str, form: str) -> None:
    html, blocks = render_body(form.format(link))
    assert_inert(html)
    assert all(urlsplit(h).scheme in ALLOWED for h in hrefs(html))
    assert all(p.href is None for b in blocks for p in b.parts)


def test_raw_html_in_bodies_is_text_not_markup() -> None:
    html, _ = render_body("<div onclick=x>hi</div>\n\n<b>bold</b> <!-- c --> <x-y z>")
    assert_inert(html)
    tree = html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False)
    assert [e.tag for e in tree.find("body").iter()] == ["body", "p", "p"]
    assert "<div onclick=x>hi</div>" in visible_text(html)


def test_emphasis_and_good_links_survive() -> None:
    html, _ = render_body("**b** _e_ [l](https://example.org/?a=1&b=2) [m](mailto:a@example.org)")
    tree = html5lib.parse(html, treebuilder="etree", namespaceHTMLElements=False)
    tags = [e.tag for e in tree.find("body").iter()]
    assert "strong" in tags and "em" in tags
    assert hrefs(html) == ["https://example.org/?a=1&b=2", "mailto:a@example.org"]


def test_hostile_build_through_check_has_no_problems(hostile: dict) -> None:
    """The hostile entry is valid input: nothing about it is an error."""
    try:
        plan(hostile["root"], all_weeks=True, today=date(2020, 10, 1))
    except InputError as exc:  # pragma: no cover - shows the problems when it fails
        pytest.fail("\n".join(map(str, exc.problems)))
