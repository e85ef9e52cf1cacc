"""Markdown bodies: safe HTML for the email, and blocks for the plain-text part.

markdown-it-py with raw HTML off (it is shown as text), images off, headings turned
into bold paragraphs (the email owns h1–h3), and only http/https/mailto links.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token

from digest.links import safe_url
from digest.models import Block, Inline


def _make_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable(["image"])
    md.validateLink = safe_url  # type: ignore[method-assign]
    md.add_render_rule("heading_open", lambda *a, **k: "<p><strong>")
    md.add_render_rule("heading_close", lambda *a, **k: "</strong></p>\n")
    return md


_MD = _make_parser()


def render_body(source: str) -> tuple[str, tuple[Block, ...]]:
    """Parse a Markdown body once; return its HTML and its text blocks."""
    tokens = _MD.parse(source)
    html = _MD.renderer.render(tokens, _MD.options, {})
    return html, _blocks(tokens)


def _blocks(tokens: list[Token]) -> tuple[Block, ...]:
    blocks: list[Block] = []
    kinds: list[str] = []
    for token in tokens:
        if token.type in ("bullet_list_open", "ordered_list_open", "blockquote_open"):
            kinds.append("quote" if token.type == "blockquote_open" else "li")
        elif token.type in ("bullet_list_close", "ordered_list_close", "blockquote_close"):
            kinds.pop()
        elif token.type == "inline":
            parts = _inline(token.children or [])
            if parts:
                blocks.append(Block(kinds[-1] if kinds else "p", parts))
        elif token.type in ("fence", "code_block"):
            blocks.append(Block("code", (Inline(token.content.rstrip("\n")),)))
    return tuple(blocks)


def _inline(children: list[Token]) -> tuple[Inline, ...]:
    parts: list[Inline] = []
    href: str | None = None
    for child in children:
        if child.type == "link_open":
            href = str(child.attrs.get("href", ""))
        elif child.type == "link_close":
            href = None
        elif child.type in ("text", "code_inline"):
            parts.append(Inline(child.content, href))
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(Inline(" ", href))
    merged: list[Inline] = []
    for part in parts:
        if merged and merged[-1].href == part.href:
            merged[-1] = Inline(merged[-1].text + part.text, part.href)
        else:
            merged.append(part)
    return tuple(merged)


def plain_summary(blocks: tuple[Block, ...], limit: int = 240) -> str:
    """The first paragraph as plain text, cut at a word boundary near LIMIT characters."""
    for block in blocks:
        text = " ".join("".join(p.text for p in block.parts).split())
        if text:
            if len(text) <= limit:
                return text
            cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:.")
            return cut + "\u2026"
    return ""
