"""Templates to MJML and text, MJML to HTML (mjml-python), CSS inlining (premailer)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import TracebackType
from typing import Any, Callable

import jinja2

from digest.compiled import TemplateCode
from digest.errors import BuildError, Problem
from digest.models import Block, Speaker

TEXT_WIDTH = 78
#: Padding after the preheader so inboxes do not pull body text into the preview line.
PREVIEW_PADDING = "\u034f\u00a0" * 90


def own_template_dirs(kind: str) -> list[Path]:
    """digest's own templates of KIND ("email", "web") that exist: the source tree's (a
    checkout), then those shipped in the package (a wheel)."""
    here = Path(__file__).resolve().parent
    return [d for d in (here.parent / "templates" / kind, here / "_templates" / kind) if d.is_dir()]


def template_dirs(root: Path) -> list[Path]:
    """The newsletter's own templates first, then the ones shipped with digest."""
    dirs = [root / "templates" / "email"]
    dirs += [d for d in own_template_dirs("email") if d.resolve() != dirs[0].resolve()]
    return dirs


def _autoescape(name: str | None) -> bool:
    return name is None or not name.endswith((".txt", ".css"))


def make_environment(root: Path, bytecode: jinja2.BytecodeCache | None = None) -> jinja2.Environment:
    """The email templates' environment; BYTECODE (a build cache's) keeps compiled templates
    for the next build into its folder, digest.compiled for any process (digest's own)."""
    env = jinja2.Environment(
        loader=TemplateLoader(template_dirs(root), "templates/email"),
        bytecode_cache=TemplateCode("email", bytecode),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        auto_reload=False,
    )
    env.filters["wrap"] = wrap
    env.globals["speaker_list"] = speaker_list
    return env


def wrap(text: str, indent: int = 0) -> str:
    """Wrap TEXT at 78 columns; continuation lines indented by INDENT spaces. URLs are never broken."""
    return fill(str(text), subsequent=" " * indent)


def fill(text: str, initial: str = "", subsequent: str = "", width: int = TEXT_WIDTH) -> str:
    """Greedy word wrap of TEXT's words (any whitespace between them becomes one space):
    what textwrap.fill gives with break_long_words and break_on_hyphens off, without its
    regular-expression chunking (a third of the text part's cost). A word longer than a
    line stays whole, on a line of its own."""
    lines: list[str] = []
    line: list[str] = []
    indent, length = initial, 0
    room = width - len(initial)
    for word in text.split():
        if line and length + 1 + len(word) > room:
            lines.append(indent + " ".join(line))
            indent, room = subsequent, width - len(subsequent)
            line, length = [word], len(word)
        else:
            length += len(word) + (1 if line else 0)
            line.append(word)
    if line:
        lines.append(indent + " ".join(line))
    return "\n".join(lines)


def speaker_list(speakers: tuple[Speaker, ...]) -> str:
    return "; ".join(f"{s.name} ({s.role})" if s.role else s.name for s in speakers)


class TextRefs:
    """Numbered link references for the text part: the same URL gets the same number."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> str:
        if url not in self.urls:
            self.urls.append(url)
        return f"[{self.urls.index(url) + 1}]"


def _render_blocks(blocks: tuple[Block, ...], refs: TextRefs) -> str:
    out: list[str] = []
    for block in blocks:
        if block.kind == "code":
            out.append(block.parts[0].text)
            continue
        text = "".join(p.text + (f" {refs(p.href)}" if p.href and p.href != p.text else
                                 (f" {refs(p.href)}" if p.href else "")) for p in block.parts)
        if block.kind == "li":
            out.append(fill(text, "  * ", "    "))
        elif block.kind == "quote":
            out.append(fill(text, "> ", "> "))
        else:
            out.append(wrap(text))
    joined: list[str] = []
    for index, chunk in enumerate(out):
        if index and not (blocks[index].kind == "li" and blocks[index - 1].kind == "li"):
            joined.append("")
        joined.append(chunk)
    return "\n".join(joined) + ("\n" if joined else "")


class UnreadableTemplate(jinja2.TemplateError):
    """A template file that exists but cannot be read as UTF-8 text; PROBLEM names it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem

    def __reduce__(self) -> tuple:  # pickled whole (from a worker), not from its message
        return (type(self), (self.problem,))


class TemplateLoader(jinja2.FileSystemLoader):
    """Jinja's FileSystemLoader, naming the file it could not read as SHOWN/<template>,
    with the line of the first byte that is not UTF-8 (Jinja says neither)."""

    def __init__(self, dirs: list[Path], shown: str) -> None:
        super().__init__([str(d) for d in dirs])
        self.shown = shown

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        try:
            return super().get_source(environment, template)
        except jinja2.TemplateNotFound:
            raise
        except (UnicodeDecodeError, OSError) as exc:
            name = f"{self.shown}/{template}"
            if isinstance(exc, UnicodeDecodeError):
                line = exc.object[: exc.start].count(b"\n") + 1
                problem = Problem(name, line, None,
                                  f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                                  "save the file as UTF-8")
            else:
                problem = Problem(name, None, None, f"cannot be read: {exc.strerror or exc}",
                                  "check the file's permissions")
            raise UnreadableTemplate(problem) from None


def _template_problem(exc: BaseException, tb: TracebackType | None, dirs: list[Path]) -> Problem:
    """Name the template file and line where rendering failed."""
    if isinstance(exc, UnreadableTemplate):
        return exc.problem
    path, line = None, None
    if isinstance(exc, jinja2.TemplateSyntaxError):
        path, line = exc.filename, exc.lineno
    else:
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if any(filename.startswith(str(d)) for d in dirs):
                path, line = filename, tb.tb_lineno
            tb = tb.tb_next
    shown = path or "templates/email"
    for d in dirs:
        if path and path.startswith(str(d)):
            shown = "templates/email/" + Path(path).relative_to(d).as_posix()
    if isinstance(exc, jinja2.TemplateNotFound):
        return Problem(shown, line, None, f"template {exc.name!r} not found", "check the name in extends/include/import")
    if isinstance(exc, jinja2.UndefinedError):
        return Problem(shown, line, None, f"template error: {exc.message}",
                       "check the variable's spelling; see README.md, Templates, for the names a template gets")
    return Problem(shown, line, None, f"template error: {type(exc).__name__}: {exc}", "fix the template")


class Renderer:
    """Holds the compiled templates of one newsletter; renders any number of editions."""

    def __init__(self, root: Path, bytecode: jinja2.BytecodeCache | None = None) -> None:
        self.root = root
        self.dirs = template_dirs(root)
        self.env = make_environment(root, bytecode)
        self._templates: dict[str, jinja2.Template] = {}

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            template = self._templates.get(name) or self._templates.setdefault(name, self.env.get_template(name))
            return template.render(context)
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
            problem = _template_problem(exc, exc.__traceback__, self.dirs)
            raise BuildError("the email templates could not be rendered; nothing was written.", [problem]) from None

    def warm(self) -> None:
        """Compile the templates and import the compilers now (before forking workers)."""
        for name in ("digest.mjml", "digest.txt", "content.css"):
            try:
                self._templates.setdefault(name, self.env.get_template(name))
            except jinja2.TemplateError:  # unreadable ones too (TemplateLoader)
                pass  # rendering reports it, with the file and line
        compile_all(self.env)
        import importlib

        from digest import forked

        importlib.import_module("mjml")
        if "inline" not in forked.HELPS:  # else the entry reader inlines
            if inlining_is_cold():  # a first build parses its CSS
                importlib.import_module("cssutils")
            _premailer_class()

    def mjml(self, context: dict[str, Any]) -> str:
        source = self._render("digest.mjml", {**context, "preview_padding": PREVIEW_PADDING})
        _ORIGINS.clear()  # remembered so that a compile error can be traced to a template line
        _ORIGINS[source] = (self, context)
        return source

    def marked_mjml(self, context: dict[str, Any]) -> str:
        """The MJML again, each template line followed by a marker naming its file and line."""
        env = make_environment(self.root)
        env.bytecode_cache = None  # the marked source is compiled for this once: kept nowhere
        env.loader = _MarkingLoader(self.env.loader, self.dirs)  # type: ignore[arg-type]
        return env.get_template("digest.mjml").render({**context, "preview_padding": PREVIEW_PADDING})

    def css(self, context: dict[str, Any]) -> str:
        return self._render("content.css", {"accent": context["newsletter"]["accent"]})

    def text(self, context: dict[str, Any]) -> str:
        refs = TextRefs()
        env_globals: dict[str, Callable[..., str] | list[str]] = {
            "ref": refs, "references": refs.urls, "blocks": lambda b: _render_blocks(b, refs)}
        text = self._render("digest.txt", {**context, **env_globals})
        lines = [line.rstrip() for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        collapsed: list[str] = []
        for line in lines:
            if line or (collapsed and collapsed[-1]):
                collapsed.append(line)
        return "\n".join(collapsed) + "\n"


def compile_mjml(source: str, template: str = "templates/email/digest.mjml") -> str:
    """MJML -> HTML with mjml-python: no comments, no web fonts."""
    from mjml import mjml2html

    try:
        return mjml2html(source, disable_comments=True, fonts={})
    except (ValueError, RuntimeError) as exc:
        path, line, what = template, None, ""
        origin = _ORIGINS.get(source)
        try:
            if origin is not None:
                path, line, what = _locate(origin[0].marked_mjml(origin[1])) or (path, line, what)
        except Exception:  # noqa: BLE001 - locating is best effort; the error below still stands
            pass
        raise BuildError("MJML could not be compiled; nothing was written.",
                         [Problem(path, line, None, f"mjml-python rejected the MJML: {exc}{what}",
                                  "check that every <mj-…> tag is closed, in order")]) from None


#: The last MJML rendered, and by whom: compile errors re-render it with line markers.
_ORIGINS: dict[str, tuple[Renderer, dict[str, Any]]] = {}
_MARK = "\ue000{}:{}\ue001"
_MARK_RE = re.compile("\ue000([^\ue001]*):(\\d+)\ue001")
_MJ_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(/?)>")
#: Tags whose content MJML takes as raw HTML: tags inside them are not MJML.
_ENDING = {"mj-text", "mj-button", "mj-raw", "mj-style", "mj-title", "mj-preview", "mj-table",
           "mj-navbar-link", "mj-accordion-title", "mj-accordion-text", "mj-social-element"}


class _MarkingLoader(jinja2.BaseLoader):
    """Wraps a loader: appends a marker with the template's file and line to every line
    outside Jinja tags (so output can be traced back to its source)."""

    def __init__(self, inner: jinja2.BaseLoader, dirs: list[Path]) -> None:
        self.inner, self.dirs = inner, dirs

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str | None, Any]:
        source, filename, uptodate = self.inner.get_source(environment, template)
        shown = "templates/email/" + template
        for d in self.dirs:
            if filename and filename.startswith(str(d)):
                shown = "templates/email/" + Path(filename).relative_to(d).as_posix()
        out, depth, line, index = [], None, 1, 0
        closers = {"{{": "}}", "{%": "%}", "{#": "#}"}
        while index < len(source):
            pair = source[index:index + 2]
            if depth is None and pair in closers:
                depth = closers[pair]
                out.append(pair)
                index += 2
                continue
            if depth is not None and pair == depth:
                depth = None
                out.append(pair)
                index += 2
                continue
            char = source[index]
            if char == "\n":
                if depth is None:
                    out.append(_MARK.format(shown, line))
                line += 1
            out.append(char)
            index += 1
        return "".join(out), filename, uptodate


def _locate(marked: str) -> tuple[str, int | None, str] | None:
    """The template file and line of the first MJML tag that is not closed in order."""
    stack: list[re.Match[str]] = []

    def where(match: re.Match[str], message: str) -> tuple[str, int | None, str]:
        mark = _MARK_RE.search(marked, match.end())
        tag = _MARK_RE.sub("", match.group(0))
        if mark is None:
            return "templates/email/digest.mjml", None, f" ({tag}: {message})"
        return mark.group(1), int(mark.group(2)), f" ({tag}: {message})"

    for match in _MJ_TAG.finditer(marked):
        closing, name, single = match.group(1), match.group(2), match.group(3)
        if stack and stack[-1].group(2) in _ENDING and not (closing and name == stack[-1].group(2)):
            continue
        if closing:
            if not stack:
                return where(match, "closes nothing")
            if stack[-1].group(2) != name:
                return where(stack[-1], f"is closed by </{name}>; close it first")
            stack.pop()
        elif not single:
            stack.append(match)
    if stack:
        return where(stack[-1], "is never closed")
    return None


#: The extensions of template files (digest's own: MJML, text, CSS, HTML pages).
TEMPLATE_EXTENSIONS = (".mjml", ".txt", ".css", ".html")


def compile_all(env: jinja2.Environment) -> int:
    """Compile every template ENV's folders hold (what the ones rendered include, extend
    or import, which Jinja compiles when it first meets them), so that a build's first
    rendering compiles none; an error is left for the rendering to report. How many."""
    compiled = 0
    for name in env.list_templates():
        if name.endswith(TEMPLATE_EXTENSIONS):
            try:
                env.get_template(name)
            except jinja2.TemplateError:  # unreadable ones too (TemplateLoader)
                continue
            compiled += 1
    return compiled


_PREMAILER_LOG = logging.getLogger("digest.premailer")
_PREMAILER_LOG.addHandler(logging.NullHandler())
_PREMAILER_LOG.propagate = False


def _premailer_class() -> type:
    """premailer's Premailer, with the parsed content CSS kept between editions.

    premailer imports `requests` at its top only to fetch external stylesheets, which
    digest never lets it do, and `cssutils` to parse CSS, which a build with every parse
    in its cache (digest.cache) does not do. While premailer is imported, each is a
    stand-in module that imports the real one on first use: requests never, in a build
    (~40 ms off every start); cssutils when a stylesheet or style not seen before is
    parsed (~35 ms off a weekly build). cssutils' log is quieted when it is imported.
    premailer's cache of parsed inline styles (128 entries by default, fewer than one
    edition's distinct MJML styles) is raised through its own setting.
    """
    global _INLINER
    if _INLINER is not None:
        return _INLINER
    import os
    import sys

    stand_ins = [_stand_in(name, then) for name, then in (("requests", None), ("cssutils", _quiet_cssutils))
                 if name not in sys.modules]
    os.environ.setdefault("PREMAILER_CACHE_MAXSIZE", "4096")
    try:
        from premailer import Premailer
    finally:
        for stand_in in stand_ins:
            if sys.modules.get(stand_in.__name__) is stand_in:
                del sys.modules[stand_in.__name__]
    if "cssutils" in sys.modules:  # imported already: no stand-in
        _quiet_cssutils(sys.modules["cssutils"])

    class Inliner(Premailer):  # type: ignore[misc]
        rules: dict[tuple[str, int], tuple[list, list]] = {}

        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
            # The same content CSS every edition: parse (cssutils) and serialise it once.
            key = (css_body, ruleset_index)
            if key not in self.rules:
                if len(self.rules) > 64:
                    self.rules.clear()
                self.rules[key] = super()._parse_style_rules(css_body, ruleset_index)
            return self.rules[key]

    _INLINER = Inliner
    _apply_seeds()
    return Inliner


_INLINER: type | None = None


def _stand_in(name: str, then: Callable[[Any], None] | None) -> Any:
    """A module in sys.modules under NAME whose first attribute looked up imports the
    real one (and calls THEN with it), and replaces itself with it in premailer's modules."""
    import importlib
    import sys
    import types

    stand_in = types.ModuleType(name, f"premailer's {name}, imported on first use")

    def real(attribute: str) -> Any:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        module = importlib.import_module(name)
        replaced = False
        for holder in ("premailer.premailer", "premailer.merge_style"):
            if getattr(sys.modules.get(holder), name, None) is stand_in:
                setattr(sys.modules[holder], name, module)
                replaced = True
        if replaced and then is not None:
            then(module)
        return getattr(module, attribute)

    stand_in.__getattr__ = real  # type: ignore[attr-defined]
    sys.modules[name] = stand_in
    return stand_in


def _quiet_cssutils(cssutils: Any) -> None:
    """cssutils logs each CSS construct it does not know (MJML's, Outlook's) to stderr."""
    cssutils.log.addHandler(logging.NullHandler())
    cssutils.log.setLevel(logging.CRITICAL)

#: What premailer parsed with cssutils in earlier builds (kept by digest.cache): the
#: content CSS's rules, and the declaration lists premailer's own cache keeps (its keys,
#: each a `csstext_to_pairs` call's arguments). A fresh process's first edition parses
#: nothing it has seen before: ~10 ms of the weekly job, most of it cssutils.
_SEEDS: dict[str, dict] = {"rules": {}, "pairs": {}}
#: How many of each are kept between builds: the templates' styles come to a few dozen.
SEEDS_KEPT = 512


def _apply_seeds() -> None:
    """Put _SEEDS into the inliner's rules and premailer's cache (premailer imported)."""
    assert _INLINER is not None
    for key, value in _SEEDS["rules"].items():
        _INLINER.rules.setdefault(key, value)  # type: ignore[attr-defined]
    _seed_premailer(_SEEDS["pairs"])


def _seed_premailer(pairs: dict) -> None:
    from premailer.cache import cache, cache_access_lock

    if not pairs or cache.maxsize < 1:  # PREMAILER_CACHE_MAXSIZE=0: premailer's cache is off
        return
    with cache_access_lock:
        for key, value in pairs.items():
            if key not in cache:
                try:
                    cache[key] = value
                except ValueError:  # larger than the cache holds (cachetools): not kept, as premailer does
                    return


def seed_inline_parses(parses: dict) -> None:
    """Give this process the parses an earlier build kept (see inline_parses)."""
    for kind in ("rules", "pairs"):
        if isinstance(parses.get(kind), dict):
            _SEEDS[kind].update(parses[kind])
    if _INLINER is not None:
        _apply_seeds()


def inline_parses() -> dict[str, dict]:
    """The parses this process knows (seeded or made), for the cache to keep: the values
    are strings and tuples of strings; premailer's keys are cachetools' hashkeys (tuples
    that name cachetools' marker class: a cachetools without it makes the file a miss)."""
    rules = dict(_SEEDS["rules"])
    pairs = dict(_SEEDS["pairs"])
    if _INLINER is not None:
        from premailer.cache import cache, cache_access_lock

        for key, (found, leftover) in _INLINER.rules.items():  # type: ignore[attr-defined]
            if all(isinstance(item, tuple) for item in leftover):  # not cssutils' @media rules
                rules[key] = (found, leftover)
        with cache_access_lock:
            made = list(cache.items())
        for key, value in made:  # csstext_to_pairs' lists; the cache also holds parsed sheets and selectors
            if isinstance(value, list) and all(isinstance(pair, tuple) and len(pair) == 2
                                               and all(isinstance(part, str) for part in pair) for pair in value):
                pairs[key] = value
    if len(rules) > SEEDS_KEPT or len(pairs) > SEEDS_KEPT:
        # Bounded (~1.5 MB at most): the ones first seen last are kept. A style used every
        # week but first seen long ago may go, and is parsed (and kept) again next time.
        rules = dict(list(rules.items())[-SEEDS_KEPT:])
        pairs = dict(list(pairs.items())[-SEEDS_KEPT:])
    return {"rules": rules, "pairs": pairs}


def inline_seeds() -> dict[str, dict]:
    """The parses earlier builds kept (seed_inline_parses), for another process to seed."""
    return {kind: dict(table) for kind, table in _SEEDS.items()}


def inlining_is_cold() -> bool:
    """Whether inlining here would first import premailer and parse CSS (a first build: no parses kept)."""
    return _INLINER is None and not _SEEDS["rules"]


def inline_css(html: str, css: str, meanwhile: Callable[[], None] | None = None) -> str:
    """Inline our content CSS only; keep MJML's <style> blocks, classes, doctype and MSO blocks.

    In a `digest build` of a week or two, the entry reader does it (digest.forked.inliner)
    with the same code, unless the build read no entry or a first build's process has
    the time (digest.forked.read_standing): premailer is imported there while this process
    renders, and this process runs MEANWHILE (and the jobs digest.forked.when_idle was
    given) while it waits. Without the reader, they run first."""
    from digest import forked

    answer = forked.served("inline", html, css, meanwhile=meanwhile, idle_too=True)
    if answer is not forked.FAILED:
        inlined, parses = answer
        seed_inline_parses(parses)  # kept by the cache, as if made here
        return inlined
    # (FAILED: the reader is gone, or it failed: here, where an error is reported as it should be)
    Premailer = _premailer_class()

    # MJML's head CSS (resets, column widths, media queries, dark mode) must stay a
    # <style>: premailer skips and keeps blocks marked data-premailer="ignore".
    marked = html.replace("<style type=\"text/css\">", "<style type=\"text/css\" data-premailer=\"ignore\">")
    marked = marked.replace("<style media=", "<style data-premailer=\"ignore\" media=")
    try:
        result = Premailer(
            marked,
            css_text=[css],
            keep_style_tags=True,
            remove_classes=False,
            strip_important=False,
            disable_validation=True,
            allow_network=False,
            allow_loading_external_files=False,
            disable_leftover_css=True,
            exclude_pseudoclasses=True,
            align_floating_images=False,
        ).transform(pretty_print=False)
    except Exception as exc:  # premailer/cssutils raise many unrelated types
        raise BuildError(f"CSS inlining failed: {type(exc).__name__}: {exc}") from None
    # Blocks premailer did not reach (inside <!--[if mso]> or with a media attribute) keep the marker.
    result = result.replace(' data-premailer="ignore"', "")
    if not result.lstrip().lower().startswith("<!doctype"):
        result = "<!doctype html>" + result
    return result
