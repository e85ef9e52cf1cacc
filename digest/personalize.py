"""One recipient's copy of a built edition: To, a fresh Message-ID, a personal unsubscribe link.

The build writes `dist/<week>/digest.eml` with the literal marker
`DIGEST-UNSUBSCRIBE-TOKEN` wherever the config's unsubscribe URL said `{token}`
(both parts and List-Unsubscribe) and names it in `manifest.json`. Here the
marker becomes the recipient's token:

    token = base64url(HMAC-SHA256(key=DIGEST_UNSUBSCRIBE_SECRET, msg=lowercase(address)))

UTF-8 for key and message, the URL-safe alphabet, `=` padding stripped (43
characters). The unsubscribe endpoint recomputes it with `unsubscribe_token`
and compares with `hmac.compare_digest` (`verify_token`).

Everything else stays byte-identical to the built message: headers are edited
as raw bytes (only To and Message-ID are replaced, and the marker inside other
headers), and only the MIME parts that contain the marker are decoded, edited
and re-encoded (quoted-printable parts stay quoted-printable, in UTF-8). The
sent message uses CRLF line endings, as SMTP requires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from email import message_from_bytes, policy, quoprimime
from email.parser import BytesHeaderParser
from email.utils import make_msgid, parseaddr
from functools import cached_property
from pathlib import Path

from digest.errors import BuildError, InputError

MARKER = "DIGEST-UNSUBSCRIBE-TOKEN"
#: Characters in a token: 32 HMAC bytes in unpadded base64.
TOKEN_LENGTH = 43
SMTP_PROFILE = "smtp"
_CRLF = b"\r\n"


def unsubscribe_token(secret: str, address: str) -> str:
    """The recipient's unsubscribe token (see the module docstring)."""
    digest = hmac.new(secret.encode("utf-8"), address.lower().encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_token(secret: str, address: str, token: str) -> bool:
    """True when the token was made for this address with this secret."""
    return hmac.compare_digest(unsubscribe_token(secret, address), token)


@dataclass(frozen=True)
class Edition:
    """A built edition as the sender sees it: the message and what the manifest says of it."""

    path: Path
    week: str
    profile: str
    #: digest.eml with CRLF line endings.
    message: bytes
    #: The marker to replace with each recipient's token; None: one generic URL for all.
    marker: str | None
    unsubscribe_url: str | None
    #: Envelope sender: the address in the From header.
    sender: str
    message_id_domain: str
    sha256: str

    def personalize(self, address: str, token: str | None, message_id: str) -> bytes:
        """The message for one recipient, ready for SMTP DATA."""
        head, sep, body = self.message.partition(_CRLF + _CRLF)
        replacements = {}
        if self.marker is not None:
            if token is None:
                raise ValueError("a token is needed: the edition has a per-recipient unsubscribe link")
            replacements[self.marker.encode("ascii")] = token.encode("ascii")
            body = self._token_slots.fill(token) if self._token_slots else _body(head, body, replacements)
        overrides = {b"to": address.encode("ascii"), b"message-id": message_id.encode("ascii")}
        return _headers(head, replacements, overrides) + sep + body

    @cached_property
    def _token_slots(self) -> _Slots | None:
        """The body with the token's bytes at known offsets, when every token encodes alike.

        Tokens are 43 characters of the base64url alphabet, which quoted-printable
        (and 7bit/8bit) leaves as they are, so two tokens give bodies that differ only
        at the token's positions. Decoding, replacing and re-encoding a 40 KB body
        costs ~10 ms a recipient; filling the slots costs microseconds. Checked
        against the slow path; None (use the slow path) when they disagree.
        """
        assert self.marker is not None
        head, _, body = self.message.partition(_CRLF + _CRLF)
        marker = self.marker.encode("ascii")

        def slow(token: str) -> bytes:
            return _body(head, body, {marker: token.encode("ascii")})

        first, second = slow("A" * TOKEN_LENGTH), slow("B" * TOKEN_LENGTH)
        if len(first) != len(second):
            return None
        offsets = [i for i, (x, y) in enumerate(zip(first, second)) if x != y]
        if not offsets or len(offsets) % TOKEN_LENGTH:
            return None
        slots = _Slots(first, offsets)
        probe = unsubscribe_token("probe", "probe@example.org")
        return slots if slots.fill(probe) == slow(probe) else None

    def check(self) -> None:
        """Personalise a probe copy and make sure no marker is left anywhere (BuildError if one is)."""
        if self.marker is None:
            return
        probe = "probe@example.org"
        data = self.personalize(probe, unsubscribe_token("probe", probe), self.new_message_id())
        left = leftover_markers(data, self.marker)
        if left:
            raise BuildError(
                f"{self.path}/digest.eml: the unsubscribe marker survives personalisation in "
                f"{', '.join(left)}; rebuild the edition (and report it: the build should not allow this)."
            )

    def new_message_id(self) -> str:
        return make_msgid(domain=self.message_id_domain)


def load_edition(path: Path) -> Edition:
    """Read `digest.eml` and `manifest.json` from an edition directory (or from digest.eml's)."""
    folder = path.parent if path.name == "digest.eml" else path
    eml_path, manifest_path = folder / "digest.eml", folder / "manifest.json"
    if not folder.is_dir():
        raise InputError(f"{path}: no such edition directory (run `digest build` first).")
    for needed in (eml_path, manifest_path):
        if not needed.is_file():
            raise InputError(f"{needed}: missing; is {folder} a built edition? (run `digest build` first)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{manifest_path}: not valid JSON ({exc}); rebuild the edition.") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{manifest_path}: expected a JSON object; rebuild the edition.")
    profile = manifest.get("profile", SMTP_PROFILE)
    if profile != SMTP_PROFILE:
        raise InputError(
            f"{folder}: built for the '{profile}' mailing service; its links are that service's merge tags, "
            f"which only the service itself fills in. Upload digest.html and digest.txt to {profile}, "
            "or rebuild with --profile smtp to send it here."
        )
    raw = eml_path.read_bytes()
    message = re.sub(rb"\r?\n", _CRLF, raw)
    unsubscribe = manifest.get("unsubscribe") or {}
    marker = unsubscribe.get("token_marker") if isinstance(unsubscribe, dict) else None
    parsed = message_from_bytes(message, policy=policy.default)
    if marker is None and leftover_markers(message, MARKER):
        marker = MARKER  # a manifest that forgot to name it must not send the marker to everyone
    if marker is not None and not leftover_markers(message, marker):
        raise InputError(
            f"{manifest_path}: names the token marker {marker!r} but digest.eml does not contain it; "
            "rebuild the edition."
        )
    sender = parseaddr(str(parsed.get("From", "")))[1]
    if not sender or "@" not in sender:
        raise InputError(f"{eml_path}: no sender address in the From header; rebuild the edition.")
    old_id = str(parsed.get("Message-ID", ""))
    domain = old_id.strip().strip("<>").rpartition("@")[2] or sender.rpartition("@")[2]
    return Edition(
        path=folder,
        week=str(manifest.get("week") or folder.name),
        profile=profile,
        message=message,
        marker=marker,
        unsubscribe_url=unsubscribe.get("url") if isinstance(unsubscribe, dict) else None,
        sender=sender,
        message_id_domain=domain,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def leftover_markers(message: bytes, marker: str) -> list[str]:
    """Where the marker still appears after personalisation (header names, part types)."""
    parsed = message_from_bytes(message, policy=policy.default)
    found = [name for name, value in parsed.items() if marker in str(value)]
    for part in parsed.walk():
        if part.get_content_maintype() == "text" and marker in part.get_content():
            found.append(part.get_content_type())
    return found


class _Slots:
    """A body template: bytes plus the offsets where each token occurrence goes."""

    def __init__(self, template: bytes, offsets: list[int]) -> None:
        self.template = template
        self.offsets = offsets

    def fill(self, token: str) -> bytes:
        if len(token) != TOKEN_LENGTH:
            raise ValueError(f"expected a {TOKEN_LENGTH}-character token")
        out = bytearray(self.template)
        data = token.encode("ascii")
        for n, offset in enumerate(self.offsets):
            out[offset] = data[n % TOKEN_LENGTH]
        return bytes(out)


def _entity(entity: bytes, replacements: dict[bytes, bytes], overrides: dict[bytes, bytes]) -> bytes:
    """Personalise one MIME entity (headers, then body), recursing into multiparts."""
    head, sep, body = entity.partition(_CRLF + _CRLF)
    new_head = _headers(head, replacements, overrides)
    if not sep:
        return new_head
    return new_head + sep + _body(head, body, replacements)


def _headers(head: bytes, replacements: dict[bytes, bytes], overrides: dict[bytes, bytes]) -> bytes:
    """Replace whole fields named in overrides, and markers inside the others; keep the rest."""
    fields = _header_fields(head)
    out: list[bytes] = []
    done: set[bytes] = set()
    for field in fields:
        name = field.split(b":", 1)[0].strip().lower()
        if name in overrides:
            if name not in done:
                out.append(_canonical_name(field) + b": " + overrides[name])
                done.add(name)
            continue
        for old, new in replacements.items():
            field = field.replace(old, new)
        out.append(field)
    for name, value in overrides.items():
        if name not in done:
            out.append({b"to": b"To", b"message-id": b"Message-ID"}.get(name, name) + b": " + value)
    return _CRLF.join(out)


def _body(head: bytes, body: bytes, replacements: dict[bytes, bytes]) -> bytes:
    if not replacements:
        return body
    headers = BytesHeaderParser(policy=policy.default).parsebytes(head + _CRLF + _CRLF)
    maintype = headers.get_content_maintype()
    if maintype == "multipart":
        boundary = headers.get_boundary()
        return _multipart(body, boundary.encode("ascii"), replacements) if boundary else body
    if maintype != "text":
        return body
    part = message_from_bytes(head + _CRLF + _CRLF + body, policy=policy.default)
    text = part.get_content()
    markers = [old.decode("ascii") for old in replacements]
    if not any(m in text for m in markers):
        return body
    for old, new in replacements.items():
        text = text.replace(old.decode("ascii"), new.decode("ascii"))
    charset = part.get_content_charset() or "utf-8"
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    data = text.encode(charset)
    if cte == "quoted-printable":
        return quoprimime.body_encode(data.decode("latin-1"), maxlinelen=76, eol="\r\n").encode("ascii")
    if cte == "base64":
        encoded = base64.encodebytes(data)
        return encoded.replace(b"\n", _CRLF)
    return re.sub(rb"\r?\n", _CRLF, data)


def _multipart(body: bytes, boundary: bytes, replacements: dict[bytes, bytes]) -> bytes:
    delimiter = re.compile(rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|\Z)")
    out: list[bytes] = []
    pos = 0
    first = True
    for match in delimiter.finditer(body):
        segment = body[pos : match.start()]
        if first:
            out.append(segment)  # the preamble
            first = False
        elif segment.startswith(_CRLF):
            out.append(_CRLF + _entity(segment[2:], replacements, {}))
        else:
            out.append(segment)
        out.append(match.group(0))
        pos = match.end()
        if match.group(1):
            break
    out.append(body[pos:])
    return b"".join(out)


def _header_fields(head: bytes) -> list[bytes]:
    """Header fields as raw bytes, each with its continuation lines."""
    fields: list[bytes] = []
    for line in head.split(_CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += _CRLF + line
        elif line:
            fields.append(line)
    return fields


def _canonical_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].rstrip()
