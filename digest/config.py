"""The newsletter's settings: `digest.toml` at the newsletter's root.

Loaded into a frozen, typed Config. Unknown keys and wrong types are errors that
name the key; every problem in the file is reported at once.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import Problem, raise_if_errors
from digest.links import link_problem

CONFIG_NAME = "digest.toml"
MAX_CONFIG_BYTES = 256 * 1024
_COLOR = re.compile(r"#[0-9A-Fa-f]{3}|#[0-9A-Fa-f]{6}|[A-Za-z]{3,20}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
PROFILES = ("smtp", "mailchimp", "sendgrid", "mailgun", "postmark", "ses", "listmonk", "buttondown")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Config:
    """Settings of one newsletter. Every field is documented in README.md."""

    root: Path
    #: Newsletter name, shown in the header and the Subject.
    name: str = "Events digest"
    #: One line under the name.
    tagline: str = ""
    #: BCP 47 language tag for lang="…".
    language: str = "en"
    #: The newsletter's time zone (IANA); weeks are cut in it.
    timezone: str = "UTC"
    #: First day of an edition's week.
    week_start: str = "monday"
    #: "skip" (no edition for a week without dated events) or "short" (a short edition).
    empty_weeks: str = "skip"
    #: How many weeks after the edition the "further ahead" list looks.
    ahead_weeks: int = 4
    #: At most this many items in "further ahead".
    ahead_limit: int = 8
    #: Sender: "Name <address>".
    sender: str = "Events digest <digest@example.org>"
    reply_to: str = ""
    #: Default To: header of the built .eml.
    to: str = "Subscribers <subscribers@example.org>"
    #: List-Id value, e.g. "events.example.org".
    list_id: str = "digest.example.org"
    #: Where the web archive lives (https://…/); editions at BASE/2020-W41/.
    base_url: str = ""
    #: Mailing-service profile: which merge tags unsubscribe/view-online links use.
    profile: str = "smtp"
    #: Unsubscribe page (profile smtp); may contain {token}.
    unsubscribe_url: str = ""
    #: mailto: address for List-Unsubscribe (optional).
    unsubscribe_mailto: str = ""
    #: Sender's postal address (CAN-SPAM), shown in the footer.
    postal_address: str = ""
    #: The email's HTML must stay under this many bytes (Gmail clips at ~102 KB).
    max_html_bytes: int = 92_000
    #: Theme colours.
    accent_color: str = "#0b5394"
    logo_url: str = ""
    logo_alt: str = ""
    #: Organizer aliases: "name as written" -> "canonical name".
    organizer_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def week_start_index(self) -> int:
        return WEEKDAYS.index(self.week_start)

    @property
    def sender_address(self) -> str:
        """The sender's user@domain, as the email package reads the From header."""
        return _addr_spec(self.sender)

    def canonical_organizer(self, name: str) -> str:
        """The organizer's name after the alias table (case-insensitive match)."""
        folded = " ".join(name.split()).casefold()
        for alias, canonical in self.organizer_aliases.items():
            if " ".join(alias.split()).casefold() == folded:
                return canonical
        return " ".join(name.split())

    def __reduce__(self) -> tuple:
        """Pickled with its aliases as a dict (a reader standing by is sent the Config: digest.forked)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["organizer_aliases"] = dict(self.organizer_aliases)
        return _unpickled, (values,)


def _unpickled(values: dict[str, Any]) -> Config:
    return Config(**{**values, "organizer_aliases": MappingProxyType(values["organizer_aliases"])})


_TABLES = {"theme": {"accent_color", "logo_url", "logo_alt"}, "organizers": {"aliases"}}
_SIMPLE = {f.name: f for f in fields(Config) if f.name not in {"root", "organizer_aliases"}}
_TOP_KEYS = set(_SIMPLE) - set().union(*_TABLES.values()) | set(_TABLES)


def _flatten(data: dict[str, Any], path: str, problems: list[Problem]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                problems.append(Problem(path, None, key, "must be a table", f"write [{key}]"))
                continue
            for sub, subvalue in value.items():
                if key == "organizers" and sub == "aliases":
                    flat["organizer_aliases"] = subvalue
                elif sub in _TABLES[key]:
                    flat[sub] = subvalue
                else:
                    near = difflib.get_close_matches(sub, sorted(_TABLES[key]), 1)
                    hint = f"did you mean '{near[0]}'?" if near else f"known: {', '.join(sorted(_TABLES[key]))}"
                    problems.append(Problem(path, None, f"{key}.{sub}", "unknown key", hint))
        elif key in _TOP_KEYS:
            flat[key] = value
        else:
            near = difflib.get_close_matches(key, sorted(_TOP_KEYS), 1)
            hint = f"did you mean '{near[0]}'?" if near else "see README.md, section Config"
            problems.append(Problem(path, None, key, "unknown key", hint))
    return flat


def _check(values: dict[str, Any], path: str, problems: list[Problem]) -> None:
    def bad(key: str, message: str, hint: str | None = None) -> None:
        problems.append(Problem(path, None, key, message, hint))

    for key, value in list(values.items()):
        if key == "organizer_aliases":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                bad("organizers.aliases", "must be a table of \"alias\" = \"canonical name\"")
                values.pop(key)
            else:
                values[key] = MappingProxyType(dict(value))
            continue
        expected = _SIMPLE[key].type
        want = int if expected == "int" else str
        if want is int and (isinstance(value, bool) or not isinstance(value, int)):
            bad(key, f"must be a whole number, not {value!r}")
            values.pop(key)
        elif want is str and not isinstance(value, str):
            bad(key, f"must be text, not {value!r}", "put it in quotes")
            values.pop(key)
    if "timezone" in values:
        try:
            ZoneInfo(values["timezone"])
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'America' is a folder
            bad("timezone", f"unknown time zone {values['timezone'][:80]!r}", "use an IANA name such as Europe/Berlin")
            values.pop("timezone")
    if values.get("week_start", "monday").lower() not in WEEKDAYS:
        bad("week_start", f"{values['week_start']!r} is not a weekday", "e.g. monday or sunday")
        values.pop("week_start")
    elif "week_start" in values:
        values["week_start"] = values["week_start"].lower()
    if values.get("empty_weeks", "skip") not in ("skip", "short"):
        bad("empty_weeks", f"{values['empty_weeks']!r} is not a policy", "use \"skip\" or \"short\"")
        values.pop("empty_weeks")
    if values.get("profile", "smtp") not in PROFILES:
        near = difflib.get_close_matches(str(values["profile"]), PROFILES, 1)
        bad("profile", f"unknown mailing-service profile {values['profile']!r}",
            f"did you mean '{near[0]}'?" if near else "one of " + ", ".join(PROFILES))
        values.pop("profile")
    for key in ("base_url", "unsubscribe_url", "logo_url"):
        if values.get(key):
            issue = link_problem(values[key].replace("{token}", "x"), allow_mailto=False)
            if issue:
                bad(key, issue, "use an https:// address")
                values.pop(key)
    if values.get("unsubscribe_mailto"):
        issue = link_problem(values["unsubscribe_mailto"])
        if issue or not values["unsubscribe_mailto"].startswith("mailto:"):
            bad("unsubscribe_mailto", issue or "must start with mailto:", "e.g. mailto:leave@example.org")
            values.pop("unsubscribe_mailto")
    for key in ("ahead_weeks", "ahead_limit"):
        if key in values and not 0 <= values[key] <= 52:
            bad(key, "must be between 0 and 52")
            values.pop(key)
    if "max_html_bytes" in values and not 20_000 <= values["max_html_bytes"] <= 102_000:
        bad("max_html_bytes", "must be between 20000 and 102000", "Gmail clips HTML over ~102 KB")
        values.pop("max_html_bytes")
    # Both land inside CSS or an attribute of the email: a closed set of shapes only.
    if "accent_color" in values and not _COLOR.fullmatch(values["accent_color"]):
        bad("accent_color", f"{values['accent_color']!r} is not a colour", "e.g. \"#0b5394\"")
        values.pop("accent_color")
    if "language" in values and not _LANGUAGE.fullmatch(values["language"]):
        bad("language", f"{values['language']!r} is not a language tag", "e.g. \"en\" or \"pt-BR\"")
        values.pop("language")
    for key in ("name", "sender", "to", "list_id", "reply_to", "tagline", "postal_address"):
        # Every line break str.splitlines knows (U+2028 too): the email package refuses them in headers.
        value = values.get(key, "")
        if "\0" in value or (value and value.splitlines() != [value]):
            bad(key, "must be one line", "remove the line break")
            values.pop(key)
    for key in ("sender", "to", "reply_to"):
        if values.get(key):
            issue = address_problem(values[key], group=key == "to")
            if issue:
                bad(key, f"{values[key][:80]!r} {issue}", "write it as Name <someone@example.org>")
                values.pop(key)
            else:
                values[key] = canonical_address(values[key])


_PERIOD_IN_NAME = "period in 'phrase'"  # "Dr. J. Doe <…>": obsolete syntax, read well


@lru_cache(maxsize=64)
def _parsed_address(value: str) -> Any:
    """VALUE as the email package parses a To header (None where it trips over it, as
    on ". <a@b>"): the .eml's headers are made by it, so it is the judge."""
    from email import policy

    try:
        header = policy.SMTP.header_factory("To", value)
        _ = header.addresses  # parsed lazily: this is where it trips
    except Exception:
        return None
    return header


def _addr_spec(value: str) -> str:
    header = _parsed_address(value)
    if header is not None and header.addresses and header.addresses[0].addr_spec:
        return header.addresses[0].addr_spec
    return value.rsplit("<", 1)[-1].rstrip(">").strip()


def canonical_address(value: str) -> str:
    """VALUE (an address address_problem accepts) as it is written: unchanged, unless its
    name holds a period, which RFC 5322 lets readers accept but not writers produce
    ("Dr. J. Doe <…>" becomes '"Dr. J. Doe" <…>')."""
    header = _parsed_address(value)
    if header is not None and len(header.addresses) == 1 and any(
            str(defect) == _PERIOD_IN_NAME for defect in header.defects):
        return str(header.addresses[0])
    return value


def address_problem(value: str, *, group: bool = False) -> str | None:
    """Why VALUE cannot be a From/To/Reply-To header of one mailbox (None when it can).
    GROUP also allows an empty group ("Undisclosed recipients:;"). Of the obsolete forms
    only a period in a name passes (written quoted: see canonical_address); routes,
    spaced addresses and empty list elements are refused."""
    header = _parsed_address(value)
    if header is None:
        return "is not an address the email package can read"
    addresses = header.addresses
    empty_group = group and len(header.groups) == 1 and header.groups[0].display_name and not addresses
    defects = [d for d in header.defects if str(d) != _PERIOD_IN_NAME]
    if defects:
        return f"is not one plain address ({defects[0]})"
    if not (len(addresses) == 1 or empty_group):
        return "is not one address"
    for address in addresses:
        if not address.username or not address.domain:
            return "has no user@domain address"
        if not (address.username + address.domain).isascii():
            return "has non-ASCII characters in the address (the name may have them)"
    return None


def load_config(root: Path) -> Config:
    """Read ROOT/digest.toml (absent: all defaults) into a Config, or raise InputError."""
    root = Path(root)
    path = root / CONFIG_NAME
    shown = CONFIG_NAME
    problems: list[Problem] = []
    if not path.exists():
        return Config(root=root)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise_if_errors([Problem(shown, None, None, f"file is {size:,} bytes; the config is limited to 256 KiB",
                                     "is this the right file?")], shown)
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise_if_errors([Problem(shown, None, None, f"cannot be read: {exc.strerror or exc}",
                                 "check the file's permissions")], shown)
        raise  # unreachable
    except RecursionError:
        raise_if_errors([Problem(shown, None, None, "values are nested too deeply", "simplify the file")], shown)
        raise  # unreachable
    except UnicodeDecodeError as exc:
        raise_if_errors([Problem(shown, None, None, f"not UTF-8 text ({exc.reason})", "save the file as UTF-8")], shown)
        raise  # unreachable
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(found.group(1)) if found else None
        message = str(exc).split(" (at ")[0]
        raise_if_errors([Problem(shown, line, None, f"TOML syntax error: {message}", "see https://toml.io")], shown)
        raise
    values = _flatten(data, shown, problems)
    _check(values, shown, problems)
    raise_if_errors(problems, shown)
    return Config(root=root, **values)
