"""The last stage: mailing-service merge tags substituted into the final bytes, and checked.

Placeholders are neutral https URLs while MJML and premailer run (inliners URL-encode
`{{…}}` and `*|…|*` inside href); the service's own tags go in last.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import Any

from digest.config import Config
from digest.errors import BuildError, InputError, Problem
from digest.present import UNSUBSCRIBE, VIEW_ONLINE

TOKEN_MARKER = "DIGEST-UNSUBSCRIBE-TOKEN"

#: profile -> (unsubscribe tag, view-online tag or None)
MERGE_TAGS: dict[str, tuple[str, str | None]] = {
    "mailchimp": ("*|UNSUB|*", "*|ARCHIVE|*"),
    "sendgrid": ("<%asm_group_unsubscribe_raw_url%>", None),
    "mailgun": ("%unsubscribe_url%", None),
    "postmark": ("{{{ pm:unsubscribe }}}", None),
    "ses": ("{{amazonSESUnsubscribeUrl}}", None),
    "listmonk": ("{{ UnsubscribeURL }}", "{{ MessageURL }}"),
    "buttondown": ("{{ unsubscribe_url }}", "{{ email_url }}"),
}


@dataclass(frozen=True)
class Links:
    """What the unsubscribe and view-online placeholders become for one edition."""

    profile: str
    unsubscribe: str
    view_online: str | None
    #: A real URL for the List-Unsubscribe header (smtp profile), else None.
    header_unsubscribe: str | None
    token_marker: str | None


def links_for(config: Config, week: str, profile: str) -> Links:
    web = f"{config.base_url.rstrip('/')}/{week}/" if config.base_url else None
    if profile == "smtp":
        if not config.unsubscribe_url and not config.unsubscribe_mailto:
            raise InputError("no unsubscribe link; nothing was written.", [Problem(
                "digest.toml", None, "unsubscribe_url", "is required for profile 'smtp'",
                "set unsubscribe_url = \"https://…/unsubscribe?token={token}\" or unsubscribe_mailto")])
        url = config.unsubscribe_url.replace("{token}", TOKEN_MARKER) or config.unsubscribe_mailto
        marker = TOKEN_MARKER if "{token}" in config.unsubscribe_url else None
        return Links(profile, url, web, url if url.startswith("https://") else None, marker)
    unsub, view = MERGE_TAGS[profile]
    return Links(profile, unsub, view or web, None, None)


def ready() -> None:
    """Import what document() needs (lxml's HTML parser, ~10 ms) before it is first needed."""
    import importlib

    importlib.import_module("lxml.html")


@lru_cache(maxsize=2)
def document(html: str) -> Any:
    """HTML parsed with lxml (libxml2's HTML parser); the last two are kept, as the
    links check and the style-size check read the same final HTML."""
    import lxml.html

    return lxml.html.document_fromstring(html)


def hrefs(html: str) -> list[str]:
    """Every <a href> of a document."""
    return [a.get("href", "") for a in document(html).iter("a") if a.get("href") is not None]


def substitute(html: str, text: str, links: Links) -> tuple[str, str]:
    """Put the profile's links in place of the placeholders, then check the final bytes."""
    def html_value(value: str) -> str:
        return value if links.profile != "smtp" else escape(value, quote=True)

    html = html.replace(UNSUBSCRIBE, html_value(links.unsubscribe))
    text = text.replace(UNSUBSCRIBE, links.unsubscribe)
    if links.view_online:
        html = html.replace(VIEW_ONLINE, html_value(links.view_online))
        text = text.replace(VIEW_ONLINE, links.view_online)
    found = hrefs(html)
    missing = []
    if links.unsubscribe not in found or links.unsubscribe not in text:
        missing.append(f"unsubscribe link {links.unsubscribe!r}")
    if links.view_online and (links.view_online not in found or links.view_online not in text):
        missing.append(f"view-online link {links.view_online!r}")
    leftovers = [p for p in (UNSUBSCRIBE, VIEW_ONLINE) if p in html or p in text]
    if missing or leftovers:
        raise BuildError(f"profile {links.profile!r}: the final email lacks the exact "
                         + ", ".join(missing + [f"placeholder {p} left" for p in leftovers])
                         + "; check that the templates use unsubscribe_url and view_online_url in href")
    return html, text
