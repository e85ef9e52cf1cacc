"""Helpers for tests of forked processes: forks counted, entries read here recorded,
children and descriptors left behind."""

from __future__ import annotations

import os

from digest import entries


def count_forks(monkeypatch) -> list[int]:
    """Records the pid of each process os.fork makes (they still run)."""
    made: list[int] = []
    real = os.fork

    def fork():
        pid = real()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return made


def reads_here(monkeypatch, fatal: str | None = None) -> list[str]:
    """The entries read_entry reads in this process from now on (a forked reader reading
    FATAL dies, as when the kernel kills it)."""
    parent, here = os.getpid(), []
    real = entries.read_entry

    def reading(path, rel, config):
        if os.getpid() != parent and rel == fatal:
            os._exit(1)
        if os.getpid() == parent:
            here.append(rel)
        return real(path, rel, config)

    monkeypatch.setattr(entries, "read_entry", reading)
    return here


def no_child_left() -> bool:
    """Whether this process has no child, running or unreaped."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def descriptors() -> int | None:
    """How many file descriptors this process has open (None without /proc)."""
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
