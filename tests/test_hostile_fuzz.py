"""Broken input never crashes: generated malformed entries and configs (hypothesis).

The bulk runs in process against the reader (`read_entry`, `load_config`); a smaller
share goes through the whole CLI (`digest check` / `digest build`). Every run must
either succeed or end with an InputError (exit 2) whose problems name the file.

DIGEST_FUZZ_EXAMPLES sets the total number of generated cases (default 10,000).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from digest.cli import cli
from digest.config import Config, load_config
from digest.entries import FIELDS, read_entry
from digest.errors import EXIT_BAD_INPUT, InputError, Problem
from digest.links import link_problem
from digest.markup import render_body
from tests.conftest import REPO

TOTAL = int(os.environ.get("DIGEST_FUZZ_EXAMPLES", "10000"))
#: Cases per share of the total. Hypothesis's own strategies (which shrink failures to
#: a minimal case) are slow to draw from, so most cases come in batches of BATCH from a
#: plain Random seeded by hypothesis (failures print the seed and the case).
BATCH = 10
COUNTS = {
    "raw": TOTAL * 5 // 100,
    "fields": TOTAL * 3 // 100,
    "body": TOTAL * 2 // 100,
    "config": TOTAL * 3 // 100,
    "cli": TOTAL * 1 // 100,
    "entry-batches": TOTAL * 64 // 100,
    "config-batches": TOTAL * 22 // 100,
}
FUZZ = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
#: Shrinking a plain Random's choices goes nowhere: batches report the failing case instead.
BATCH_FUZZ = dict(FUZZ, phases=[Phase.explicit, Phase.generate])

HOSTILE_TEXT = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</mj-text><mj-raw><script>x</script></mj-raw>",
    "{{ config }}", "{% for x in range(10**9) %}{% endfor %}", "{#", "\u202egnp.exe", "\u200d\u200b\ufeff",
    "👩‍👩‍👧", "Subject: injected\r\nBcc: victim@example.org", "\r\n\r\n", "&lt;b&gt;", "%s%n", "\x00", "\x1b[31m",
    "\ud7ff", "\U0010ffff", "a" * 5000, "javascript:alert(1)", " JaVaScRiPt:alert(1)", "data:text/html,<x>",
    "vbscript:msgbox", "java\tscript:x", "&#106;avascript:x", "https://", "mailto:", "http://[::1", "//evil",
]
DATES = [
    "2020-10-07", "2020-10-07 09:00", "2020-10-07T09:00:00-04:00", "2020-10-07T09:00Z", "0001-01-01",
    "9999-12-31", "9999-12-31 23:59", "1899-12-31", "2200-01-01", "1970-01-01T00:00:00+14:00",
    "2020-02-30", "2020-13-01", "2021-03-28 02:30", "2020-10-07 24:00", "10:30", "99:99", "-2020-10-07",
    "2020-10-07T09:00:00.1234567", "+002020-10-07", "2020-W41", "today", "", " ",
]
ZONES = ["America/New_York", "EST", "America", "__pycache__", "x" * 300, "UTC", "Z", "Mars/Olympus", "../../etc/passwd", "", "Etc/GMT+14",
         "posix/Europe/Berlin", "America/New_York\x00", "EDT", "right/UTC", "/etc/localtime"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=60), st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(DATES), st.sampled_from(ZONES), st.dates().map(str), st.datetimes().map(str),
)
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=6)

field_values = {
    "title": st.one_of(st.text(min_size=1, max_size=80), st.sampled_from(HOSTILE_TEXT)),
    "organizer": st.one_of(st.text(min_size=1, max_size=80), st.sampled_from(HOSTILE_TEXT)),
    "start": st.sampled_from(DATES),
    "end": st.sampled_from(DATES),
    "timezone": st.sampled_from(ZONES),
    "all_day": st.booleans(),
    "location": st.sampled_from(HOSTILE_TEXT),
    "online": st.booleans(),
    "register": st.one_of(st.sampled_from(HOSTILE_TEXT), st.just("https://example.org/r?a=1&b=<x>")),
    "register_by": st.sampled_from(DATES),
    "speakers": st.lists(st.one_of(st.text(max_size=20), st.fixed_dictionaries(
        {"name": st.sampled_from(HOSTILE_TEXT)}, optional={"role": scalars, "bio": scalars})), max_size=3),
    "tags": st.one_of(st.lists(scalars, max_size=4), st.text(max_size=20)),
    "status": st.sampled_from(["scheduled", "draft", "tba", "ongoing", "cancelled", "postponed", "canceled", ""]),
    "until": st.sampled_from(DATES),
    "uid": st.sampled_from(HOSTILE_TEXT),
    "summary": st.sampled_from(HOSTILE_TEXT),
}


@st.composite
def entry_fields(draw: Any, valid_bias: bool = False) -> dict[str, Any]:
    """Front matter fields: mostly plausible, with wrong types and junk mixed in."""
    fields: dict[str, Any] = {"title": "A webinar", "organizer": "Some Org", "start": "2020-10-07 09:00"}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=8, unique=True)):
        fields[name] = draw(field_values[name])
    if not valid_bias:
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
            fields[name] = draw(junk)
        if draw(st.booleans()):
            fields[draw(st.text(max_size=12))] = draw(junk)
        for name in draw(st.lists(st.sampled_from(list(fields)), max_size=2, unique=True)):
            del fields[name]
    return fields


BODY_PIECES = st.sampled_from([
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
    "[x](JAVASCRIPT:alert(1))", "[x]( javascript:alert(1) )", "[x](&#106;avascript:alert(1))",
    "[x](java&#x09;script:alert(1))", "[x](data:text/html;base64,PHNjcmlwdD4=)", "[x](vbscript:msgbox(1))",
    "<javascript:alert(1)>", "<https://example.org/a>", "[ok](https://example.org/ok)", "![img](https://x/y.png)",
    "**bold** _em_", "</mj-text></mj-column>", "<mj-raw>", "{{ config }}", "{% include 'x' %}", "\n\n", "\n",
    "# Heading", "> quote", "- item", "1. item", "```\ncode <b>\n```", "    indented", "\u202e", "\u200d", "😀",
    "<!-- comment -->", "<![CDATA[x]]>", "&amp;&lt;&#0;&#xD800;", "[ref]\n\n[ref]: javascript:alert(1)",
    "\r\n", "\r", "\x0b", "\x7f", "\\", "`", "|a|b|\n|-|-|\n|c|d|",
])
BODY_LIST = list(BODY_PIECES.elements)  # type: ignore[attr-defined]
bodies = st.one_of(st.text(max_size=200), st.lists(BODY_PIECES, max_size=12).map("".join),
                   st.lists(st.one_of(BODY_PIECES, st.text(max_size=10)), max_size=10).map(" ".join))


def dump_entry(fields: dict[str, Any], body: str, unicode: bool = True) -> str:
    return "---\n" + yaml.safe_dump(fields, allow_unicode=unicode, sort_keys=False) + "---\n" + body + "\n"


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """Byte-level damage: BOM, line endings, truncation, invalid UTF-8, stray bytes."""
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["bom", "crlf", "cr", "truncate", "invalid", "insert", "delete-fence",
                                     "tabs", "dup", "none"]))
        if kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif kind == "cr":
            data = data.replace(b"\n", b"\r")
        elif kind == "truncate" and data:
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "invalid":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                                     b"\x00", b"\xe9"])) + data[at:]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(max_size=8)) + data[at:]
        elif kind == "delete-fence":
            data = data.replace(b"---", b"--", 1) if draw(st.booleans()) else data[::-1].replace(
                b"---", b"--", 1)[::-1]
        elif kind == "tabs":
            data = data.replace(b"\n", b"\n\t", 1)
        elif kind == "dup" and data:
            lines = data.split(b"\n")
            at = draw(st.integers(0, len(lines) - 1))
            data = b"\n".join(lines[: at + 1] + lines[at:])
    return data


YAML_LINES = st.sampled_from([
    "---", "...", "title: x", "organizer: y", "start: 2020-10-07", "key: [", "key: {", "- item", "  - nested",
    "&anchor a: 1", "a: &x [1, 2]", "b: *x", "c: *missing", "!!python/object/apply:os.system ['true']: 1",
    "title: !!python/name:os.system", "title: !!binary aGVsbG8=", "start: !!timestamp 2020-10-07",
    "tags: !!set {a, b}", "speakers: !!omap [a: 1]", "? complex key", ": value", "%YAML 1.1", "%TAG ! tag:x,",
    "title: 'unterminated", 'title: "bad \\q escape"', "title: |", "  block", "title: >-", "\tindented: tab",
    "<<: {title: merged}", "start: 2020-10-07 09:00:00.999999999", "all_day: yes", "online: 'off'",
    "register: 0x1F", "uid: 0o17", "title: .inf", "title: ~", "title: -.NaN", "title: 1_000", "''", "{}", "[]",
])
YAML_LINES_LIST = list(YAML_LINES.elements)  # type: ignore[attr-defined]
raw_entries = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.one_of(YAML_LINES, st.text(max_size=20)), max_size=14).map(
        lambda ls: ("\n".join(["---", *ls, "---", "body"])).encode("utf-8", "surrogatepass")),
    st.lists(YAML_LINES, max_size=10).map(lambda ls: "\n".join(ls).encode()),
)


def scratch_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="digest-fuzz-"))
    (root / "entries").mkdir()
    return root


@pytest.fixture(scope="module")
def scratch() -> Any:
    root = scratch_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


CONFIG = Config(root=Path("."), timezone="America/New_York")


def check_read(root: Path, data: bytes) -> None:
    path = root / "entries" / "fuzz.md"
    path.write_bytes(data)
    event, problems = read_entry(path, "entries/fuzz.md", CONFIG)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.path == "entries/fuzz.md"
        assert problem.line is None or (isinstance(problem.line, int) and problem.line >= 1)
        assert str(problem).startswith("entries/fuzz.md")
    if event is None:
        assert any(not p.warning for p in problems), "rejected without an error"
        return
    assert all(p.warning for p in problems)
    for text in (event.title, event.organizer, event.location, event.summary, event.uid):
        assert "\n" not in text and "\r" not in text and "\x00" not in text
    assert event.title and event.organizer
    if event.register:
        assert link_problem(event.register) is None
    assert event.start is None or 1900 <= event.start.year <= 2199


@settings(max_examples=max(1, COUNTS["raw"]), **FUZZ)
@given(data=raw_entries.flatmap(mutated))
def test_raw_bytes_never_crash_the_reader(scratch: Path, data: bytes) -> None:
    check_read(scratch, data)


@settings(max_examples=max(1, COUNTS["fields"]), **FUZZ)
@given(fields=entry_fields(), body=bodies, unicode=st.booleans(), damage=st.data())
def test_malformed_fields_never_crash_the_reader(scratch: Path, fields: dict, body: str, unicode: bool,
                                                 damage: st.DataObject) -> None:
    try:
        text = dump_entry(fields, body, unicode)
    except yaml.YAMLError:
        assume(False)
    data = damage.draw(mutated(text.encode("utf-8", "surrogatepass")))
    check_read(scratch, data)


@settings(max_examples=max(1, COUNTS["body"]), **FUZZ)
@given(body=bodies)
def test_markdown_bodies_render_inert_html(body: str) -> None:
    """Links only with http/https/mailto; raw HTML never survives as a tag."""
    from tests.test_hostile_content import assert_inert

    html, blocks = render_body(body)
    assert_inert(html)
    for block in blocks:
        for part in block.parts:
            assert part.href is None or link_problem(part.href) is None


# --- configs -------------------------------------------------------------------------

CONFIG_KEYS = ["name", "tagline", "language", "timezone", "week_start", "empty_weeks", "ahead_weeks", "ahead_limit",
               "sender", "reply_to", "to", "list_id", "base_url", "profile", "unsubscribe_url",
               "unsubscribe_mailto", "postal_address", "max_html_bytes", "theme", "organizers", "nonsense"]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(text, text)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    return '""'


toml_scalars = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                         st.sampled_from(HOSTILE_TEXT + ZONES + ["monday", "Sunday", "skip", "short", "mailchimp",
                                                                 "https://x.example/{token}", "#fff", "red"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


@st.composite
def config_text(draw: Any) -> bytes:
    lines = []
    for key in draw(st.lists(st.sampled_from(CONFIG_KEYS), max_size=8, unique=True)):
        lines.append(f"{key} = {toml_value(draw(toml_values))}")
    if draw(st.booleans()):
        lines.append("[theme]")
        lines.append(f"{draw(st.sampled_from(['accent_color', 'logo_url', 'logo_alt', 'colour']))} = "
                     f"{toml_value(draw(toml_values))}")
    if draw(st.booleans()):
        lines.append("[organizers.aliases]")
        lines.append(f"{json.dumps(draw(st.text(max_size=10)))} = {toml_value(draw(toml_values))}")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        text = draw(st.text(max_size=200))
    return draw(mutated(text.encode("utf-8", "surrogatepass")))


def check_config(root: Path, data: bytes) -> Config | None:
    (root / "digest.toml").write_bytes(data)
    try:
        config = load_config(root)
    except InputError as exc:
        assert exc.exit_code == EXIT_BAD_INPUT
        assert exc.problems
        for problem in exc.problems:
            assert problem.path == "digest.toml"
            str(problem)
        return None
    config.zone, config.week_start_index, config.sender_address  # noqa: B018 (must not raise)
    return config


@settings(max_examples=max(1, COUNTS["config"]), **FUZZ)
@given(data=config_text())
def test_malformed_configs_never_crash(scratch: Path, data: bytes) -> None:
    check_config(scratch, data)


# --- whole runs through the CLI ------------------------------------------------------

@st.composite
def newsletters(draw: Any) -> tuple[bytes | None, list[bytes]]:
    """A config (often the example's, sometimes damaged) and 1-3 entries (often valid)."""
    config: bytes | None = (REPO / "digest.toml").read_bytes()
    choice = draw(st.integers(0, 5))
    if choice == 0:
        config = draw(config_text())
    elif choice == 1:
        config = None
    entries = []
    for _ in range(draw(st.integers(1, 3))):
        valid = draw(st.integers(0, 2)) > 0
        fields = draw(entry_fields(valid_bias=valid))
        try:
            text = dump_entry(fields, draw(bodies))
        except yaml.YAMLError:
            text = "---\ntitle: x\n---\n"
        data = text.encode("utf-8", "surrogatepass")
        entries.append(data if valid else draw(mutated(data)))
    return config, entries


def run_cli(args: list[str]) -> Any:
    result = CliRunner().invoke(cli, args, standalone_mode=False, catch_exceptions=True)
    if result.exception is not None:
        exc = result.exception
        assert isinstance(exc, InputError), f"{type(exc).__name__}: {exc}"
        assert exc.problems
        for problem in exc.problems:
            assert problem.path == "digest.toml" or problem.path.startswith("entries/"), problem
    assert "Traceback" not in result.output
    return result


CLI_FUZZ = dict(FUZZ, max_examples=max(1, COUNTS["cli"]))


@settings(**CLI_FUZZ)
@given(newsletter=newsletters(), command=st.sampled_from(["check", "build"]))
def test_cli_check_and_build_succeed_or_exit_2(newsletter: tuple[bytes | None, list[bytes]], command: str) -> None:
    config, entries = newsletter
    root = scratch_root()
    try:
        if config is not None:
            (root / "digest.toml").write_bytes(config)
        for index, data in enumerate(entries):
            (root / "entries" / f"e{index}.md").write_bytes(data)
        args = [command, "--root", str(root), "--today", "2020-10-01"]
        if command == "build":
            args += ["--all", "--out", str(root / "dist")]
        result = run_cli(args)
        if command == "build" and result.exception is not None:
            assert not (root / "dist").exists() or not any(
                p for p in (root / "dist").iterdir() if p.name != ".digest.lock")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- batches: many cases per hypothesis example -------------------------------------

def junk_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 2**63, -(2**64), 10**30, rng.randrange(-10**6, 10**6)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("-inf"), float("nan")])
    if kind in (4, 5):
        return rng.choice(HOSTILE_TEXT)
    if kind == 6:
        return rng.choice(DATES + ZONES)
    if kind in (7, 8):
        return "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0x3000),
                                       rng.randrange(0x1F300, 0x1FAFF), 0x202E, 0x200D, 0xFEFF, 0x85, 0x2028]))
                       for _ in range(rng.randrange(0, 30)))
    if kind in (9, 10):
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {str(junk_value(rng, depth + 1))[:10]: junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def damage(data: bytes, rng: random.Random) -> bytes:
    """The byte-level damage of `mutated`, driven by a plain Random."""
    for _ in range(rng.randrange(0, 4)):
        kind = rng.randrange(9)
        if kind == 0:
            data = b"\xef\xbb\xbf" + data
        elif kind == 1:
            data = data.replace(b"\n", b"\r\n")
        elif kind == 2:
            data = data.replace(b"\n", b"\r")
        elif kind == 3:
            data = data[: rng.randrange(0, len(data) + 1)]
        elif kind == 4:
            at = rng.randrange(0, len(data) + 1)
            data = data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xe9", b"\t", b"\x1b"]) + data[at:]
        elif kind == 5:
            at = rng.randrange(0, len(data) + 1)
            data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))) + data[at:]
        elif kind == 6:
            data = data.replace(b"---", b"--", 1)
        elif kind == 7:
            lines = data.split(b"\n")
            at = rng.randrange(len(lines))
            lines.insert(at, rng.choice(YAML_LINES_LIST).encode())
            data = b"\n".join(lines)
        elif kind == 8 and data:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
    return data


DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def fast_entry(rng: random.Random) -> bytes:
    fields: dict[str, Any] = {"title": "A webinar", "organizer": "Some Org", "start": "2020-10-07 09:00"}
    for name in rng.sample(FIELDS, rng.randrange(0, 8)):
        fields[name] = junk_value(rng) if rng.random() < 0.5 else rng.choice(HOSTILE_TEXT + DATES + ZONES)
    for name in rng.sample(list(fields), rng.randrange(0, 2)):
        del fields[name]
    if rng.random() < 0.2:
        fields[str(junk_value(rng))[:12]] = junk_value(rng)
    body = " ".join(rng.choice(BODY_LIST) for _ in range(rng.randrange(0, 8)))
    try:
        front = yaml.dump(fields, Dumper=DUMPER, allow_unicode=rng.random() < 0.5, sort_keys=False)
    except (yaml.YAMLError, UnicodeEncodeError, ValueError):
        front = "\n".join(f"{k}: {v}" for k, v in fields.items()) + "\n"  # hand-written: often broken YAML
    if rng.random() < 0.15:
        front = "\n".join(f"{k}: {v}" for k, v in fields.items()) + "\n"
    return damage(("---\n" + front + "---\n" + body + "\n").encode("utf-8", "surrogatepass"), rng)


def fast_config(rng: random.Random) -> bytes:
    lines = [f"{key} = {toml_value(junk_value(rng) if rng.random() < 0.5 else rng.choice(CONFIG_VALUES))}"
             for key in rng.sample(CONFIG_KEYS, rng.randrange(0, 8))]
    if rng.random() < 0.4:
        lines += ["[theme]", f"{rng.choice(['accent_color', 'logo_url', 'logo_alt', 'x'])} = "
                             f"{toml_value(rng.choice(CONFIG_VALUES + HOSTILE_TEXT))}"]
    if rng.random() < 0.3:
        lines += ["[organizers.aliases]", f"{json.dumps(rng.choice(HOSTILE_TEXT))} = {toml_value(junk_value(rng))}"]
    return damage(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"), rng)


CONFIG_VALUES = ["monday", "Sunday", "skip", "short", "mailchimp", "https://x.example/{token}", "#fff", "red",
                 "Europe/Berlin", "en", "pt-BR", 20000, 102000, 4, 53, -1, "mailto:a@example.org", "x <a@b>"]


@settings(max_examples=max(1, COUNTS["entry-batches"] // BATCH), **BATCH_FUZZ)
@given(seed=st.integers(0, 2**64))
def test_batches_of_generated_entries_never_crash_the_reader(scratch: Path, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(BATCH):
        data = fast_entry(rng)
        try:
            check_read(scratch, data)
        except Exception as exc:  # pragma: no cover - names the case that failed
            raise AssertionError(f"entry {data!r}") from exc


@settings(max_examples=max(1, COUNTS["config-batches"] // BATCH), **BATCH_FUZZ)
@given(seed=st.integers(0, 2**64))
def test_batches_of_generated_configs_never_crash(scratch: Path, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(BATCH):
        data = fast_config(rng)
        try:
            check_config(scratch, data)
        except Exception as exc:  # pragma: no cover - names the case that failed
            raise AssertionError(f"config {data!r}") from exc


def test_counts_meet_the_issue() -> None:
    """At least 10,000 generated entries and configs per run unless told otherwise."""
    cases = sum(COUNTS.values())
    assert cases >= TOTAL * 99 // 100
    if "DIGEST_FUZZ_EXAMPLES" not in os.environ:
        assert cases >= 10_000


@pytest.mark.parametrize("name, text", [
    ("deep-flow", "---\ntitle: " + "[" * 100_000 + "]" * 100_000 + "\norganizer: y\n---\n"),
    ("deep-map", "---\ntitle: " + "{a: " * 50_000 + "1" + "}" * 50_000 + "\n---\n"),
    ("deep-block", "---\n" + "".join(" " * i + f"k{i}:\n" for i in range(3000)) + "---\n"),
    ("billion-laughs", "---\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12)) + "status: *a11\ntitle: t\n---\n"),
    ("many-nodes", "---\ntags: [" + ", ".join(["x"] * 100_000) + "]\n---\n"),
    ("huge-int", "---\ntitle: " + "9" * 10_000 + "\norganizer: y\nstart: 2020-10-07\n---\n"),
    ("python-tag", "---\ntitle: !!python/object/apply:os.system ['false']\n---\n"),
    ("only-bom", "\ufeff"),
    ("nul", "---\ntitle: a\x00b\n---\n"),
    ("control-escaped", '---\ntitle: "a\\x1bb"\norganizer: y\nstart: 2020-10-07\n---\n'),
    ("year-1", "---\ntitle: t\norganizer: o\nstart: 0001-01-01\n---\n"),
    ("year-9999", "---\ntitle: t\norganizer: o\nstart: 9999-12-31 23:59\ntimezone: Pacific/Kiritimati\n---\n"),
    ("until-far", "---\ntitle: t\norganizer: o\nstatus: ongoing\nuntil: 9999-12-31\n---\n"),
])
def test_known_killers_are_reported_not_crashed(scratch: Path, name: str, text: str) -> None:
    check_read(scratch, text.encode("utf-8", "surrogatepass"))
    event, problems = read_entry(scratch / "entries" / "fuzz.md", "entries/fuzz.md", CONFIG)
    assert event is None, name


def test_far_dates_name_the_field(scratch: Path) -> None:
    (scratch / "entries" / "fuzz.md").write_text("---\ntitle: t\norganizer: o\nstart: 9999-12-31 23:00\n---\n")
    _, problems = read_entry(scratch / "entries" / "fuzz.md", "entries/fuzz.md", CONFIG)
    assert [str(p) for p in problems] == [
        "entries/fuzz.md:4: field 'start': year 9999 is outside 1900\u20132199 (expected e.g. 2020-10-07, "
        "2020-10-07 09:00 or 2020-10-07T09:00:00-04:00)"]


@pytest.mark.parametrize("body, line, message", [
    ("Text\n\nmore \x1f here", 9, "the text contains the control character U+001F"),
    ("\n\n\ufffe", 9, "the text contains the non-character U+FFFE"),
    ("ok\r\nthen\x00", None, None),  # NUL: the whole file is refused before reading fields
])
def test_characters_email_cannot_carry_in_the_body_are_errors(scratch: Path, body: str, line: int | None,
                                                               message: str | None) -> None:
    (scratch / "entries" / "fuzz.md").write_bytes(
        ("---\ntitle: t\norganizer: o\nstart: 2020-10-07\n---\n\n" + body).encode())
    event, problems = read_entry(scratch / "entries" / "fuzz.md", "entries/fuzz.md", CONFIG)
    assert event is None
    if message:
        assert [str(p) for p in problems] == [
            f"entries/fuzz.md:{line}: {message} (remove it; an email cannot carry it)"]


@pytest.mark.parametrize("value", ["!!timestamp 2020-10-07 09:00", "!!timestamp x", "!!bool maybe",
                                   "[2020, !!bool maybe]", "!!float x", "!!int 1e3"])
def test_a_value_its_yaml_tag_does_not_fit_is_named(scratch: Path, value: str) -> None:
    """PyYAML's safe constructors raise AttributeError ("!!timestamp" without seconds)
    or KeyError ("!!bool maybe") on such values: found by the batch fuzzer (seed
    5675276604831143); they were tracebacks."""
    (scratch / "entries" / "fuzz.md").write_text(f"---\ntitle: t\norganizer: o\nstart: {value}\n---\n")
    event, problems = read_entry(scratch / "entries" / "fuzz.md", "entries/fuzz.md", CONFIG)
    assert event is None
    assert "entries/fuzz.md:4: field 'start': the value does not match its YAML type tag ('!!…') (remove the " \
        "tag and write the value plainly)" in [str(p) for p in problems]


def test_billion_laughs_is_refused_by_name(scratch: Path) -> None:
    text = "---\na: &a [x, x]\nb: [*a, *a]\n---\n"
    (scratch / "entries" / "fuzz.md").write_text(text)
    _, problems = read_entry(scratch / "entries" / "fuzz.md", "entries/fuzz.md", CONFIG)
    assert [str(p) for p in problems] == [
        "entries/fuzz.md:3: YAML aliases ('*name') are not supported (write plain 'field: value' lines)"]


@pytest.mark.parametrize("text, message", [
    ("a = " + "[" * 50_000 + "]" * 50_000, "digest.toml: values are nested too deeply (simplify the file)"),
    ('[theme]\naccent_color = "red; } body { display: none"',
     "digest.toml: field 'accent_color': 'red; } body { display: none' is not a colour (e.g. \"#0b5394\")"),
    ('language = "en\\" onload=\\"x"',
     "digest.toml: field 'language': 'en\" onload=\"x' is not a language tag (e.g. \"en\" or \"pt-BR\")"),
    ("name = 1e999", "digest.toml: field 'name': must be text, not inf (put it in quotes)"),
    ('name = "a\\r\\nBcc: x@example.org"', "digest.toml: field 'name': must be one line (remove the line break)"),
])
def test_config_killers_are_reported(scratch: Path, text: str, message: str) -> None:
    (scratch / "digest.toml").write_text(text)
    with pytest.raises(InputError) as info:
        load_config(scratch)
    assert [str(p) for p in info.value.problems] == [message]


def test_config_over_the_size_limit_is_refused_unread(scratch: Path) -> None:
    path = scratch / "digest.toml"
    with open(path, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB without using the disk
    try:
        with pytest.raises(InputError) as info:
            load_config(scratch)
        assert str(info.value.problems[0]) == ("digest.toml: file is 52,428,800 bytes; the config is limited to "
                                               "256 KiB (is this the right file?)")
    finally:
        path.unlink()


def test_a_50_mb_entry_is_refused_without_reading_it(scratch: Path) -> None:
    import tracemalloc

    path = scratch / "entries" / "huge.md"
    with open(path, "wb") as handle:
        handle.write(b"---\ntitle: huge\n")
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB without using the disk
    try:
        tracemalloc.start()
        event, problems = read_entry(path, "entries/huge.md", CONFIG)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert event is None
        assert [str(p) for p in problems] == ["entries/huge.md: file is 52,428,800 bytes; entries are limited to "
                                              "1 MiB (shorten the description or link to a page)"]
        assert peak < 1024 * 1024, f"{peak:,} bytes allocated"
    finally:
        path.unlink()


def test_an_entry_just_over_the_limit_is_refused_and_one_at_it_is_read(scratch: Path) -> None:
    from digest.entries import MAX_ENTRY_BYTES

    path = scratch / "entries" / "big.md"
    head = b"---\ntitle: t\norganizer: o\nstart: 2020-10-07\n---\n"
    path.write_bytes(head + b"a" * (MAX_ENTRY_BYTES - len(head)))
    event, problems = read_entry(path, "entries/big.md", CONFIG)
    assert event is not None and problems == []
    path.write_bytes(head + b"a" * (MAX_ENTRY_BYTES - len(head) + 1))
    event, problems = read_entry(path, "entries/big.md", CONFIG)
    assert event is None and "entries are limited to 1 MiB" in str(problems[0])
    path.unlink()
