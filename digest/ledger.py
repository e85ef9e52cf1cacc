"""The send ledger: one SQLite row per edition × recipient, so sending can resume.

States: `pending` (not yet accepted), `sending` (handed to the server, reply not
yet recorded), `sent` (the server said 250), `failed` (a permanent 5xx reply).
Every change is its own committed transaction in WAL mode with
`synchronous=FULL`, so a process killed at any instant (kill -9 included) leaves
each row in one of these states. A row found in `sending` by a later run is the
one recipient that was in flight when the earlier run died: the server may or
may not have accepted it, so it is sent again (at least once, never lost) with
the same Message-ID. See docs/sending.md.

Only one `send` may use a ledger at a time: a run holds an exclusive `flock` on
`<ledger>.lock`, which the kernel releases when the process dies.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from digest.errors import BuildError, InputError

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    edition TEXT NOT NULL,
    recipient TEXT NOT NULL,          -- the address, domain lower-cased (the dedup key)
    address TEXT NOT NULL,            -- as first given
    state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,   -- SMTP transactions started, over all runs
    accepted INTEGER NOT NULL DEFAULT 0,   -- times a server said 250 (> 1 only with --force)
    message_id TEXT,
    last_reply TEXT,                  -- the server's last reply, or the connection error
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_attempt_at TEXT,
    sent_at TEXT,
    PRIMARY KEY (edition, recipient)
);
CREATE TABLE IF NOT EXISTS editions (
    edition TEXT PRIMARY KEY,
    eml_sha256 TEXT NOT NULL,
    first_send_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Row:
    recipient: str
    address: str
    state: str
    attempts: int
    accepted: int
    message_id: str | None
    last_reply: str | None


class Ledger:
    """The ledger file, opened for one run (a context manager holding the lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"{path}: cannot create the send ledger ({exc.strerror}).") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise BuildError(
                f"{path}: another `digest send` is using this ledger; wait for it to finish "
                "(two senders at once would send twice)."
            ) from None
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise InputError(f"{path}: ledger written by a newer digest (schema {version}).")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise InputError(f"{path}: not a usable send ledger ({exc}).") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def start_edition(self, edition: str, sha256: str) -> str | None:
        """Record the edition's digest.eml hash; return the earlier hash when it differs."""
        with self._transaction():
            row = self._db.execute("SELECT eml_sha256 FROM editions WHERE edition = ?", (edition,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO editions VALUES (?, ?, ?)", (edition, sha256, _now()))
                return None
        return row[0] if row[0] != sha256 else None

    def add(self, edition: str, recipients: Iterable[tuple[str, str]]) -> None:
        """Add (key, address) pairs not yet in the ledger as pending."""
        now = _now()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO deliveries (edition, recipient, address, state, created_at, updated_at)"
                " VALUES (?, ?, ?, 'pending', ?, ?)",
                [(edition, key, address, now, now) for key, address in recipients],
            )

    def rows(self, edition: str, keys: Iterable[str] | None = None) -> dict[str, Row]:
        """The edition's rows by recipient key (only `keys` when given)."""
        cursor = self._db.execute(
            "SELECT recipient, address, state, attempts, accepted, message_id, last_reply"
            " FROM deliveries WHERE edition = ?",
            (edition,),
        )
        rows = {r[0]: Row(*r) for r in cursor}
        if keys is None:
            return rows
        return {k: rows[k] for k in keys if k in rows}

    def reset(self, edition: str, keys: Iterable[str]) -> None:
        """--force: make these recipients pending again, with a new Message-ID to come."""
        with self._transaction():
            self._db.executemany(
                "UPDATE deliveries SET state = 'pending', message_id = NULL, updated_at = ?"
                " WHERE edition = ? AND recipient = ?",
                [(_now(), edition, key) for key in keys],
            )

    def mark_sending(self, edition: str, key: str, message_id: str) -> None:
        """Commit that a transaction is about to start: from here on, the outcome is unknown."""
        now = _now()
        with self._transaction():
            self._db.execute(
                "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, message_id = ?,"
                " last_attempt_at = ?, updated_at = ? WHERE edition = ? AND recipient = ?",
                (message_id, now, now, edition, key),
            )

    def mark(self, edition: str, key: str, state: str, reply: str) -> None:
        """Record the outcome of the transaction: sent, failed or pending (to retry)."""
        now = _now()
        with self._transaction():
            self._db.execute(
                "UPDATE deliveries SET state = ?, last_reply = ?, updated_at = ?,"
                " accepted = accepted + (? = 'sent'),"
                " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END"
                " WHERE edition = ? AND recipient = ?",
                (state, reply, now, state, state, now, edition, key),
            )


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
