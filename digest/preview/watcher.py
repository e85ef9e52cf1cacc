"""Watching the newsletter's inputs with watchfiles (inotify on Linux, no polling loop).

Two threads: one watches entries/ and the template folders recursively; the other
watches the newsletter's root without recursing, for digest.toml (editors that save
by renaming replace the file, which a watch on the file itself would lose) and for
entries/ or templates/ appearing or disappearing, which restarts the first."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

from digest.config import CONFIG_NAME
from digest.entries import hidden_part

#: Quiet time after the last change before a rebuild (ms), and the longest wait (ms).
STEP_MS = 20
DEBOUNCE_MS = 300
ROOT_NAMES = frozenset({CONFIG_NAME, "entries", "templates"})


class InputFilter(DefaultFilter):
    """watchfiles' default filter (editor swap files, .git, __pycache__…), and hidden files
    and anything in a hidden folder below the watched ones: digest build reads no entry
    there (an editor's .trash/ of deleted notes)."""

    def __init__(self, dirs: list[Path]) -> None:
        super().__init__()
        self.dirs = [str(d) for d in dirs]

    def __call__(self, change: Change, path: str) -> bool:
        for folder in self.dirs:
            if path.startswith(folder + "/"):
                if hidden_part(path[len(folder) + 1:].split("/")):
                    return False
                break
        return super().__call__(change, path)


class Watcher:
    """Calls ON_CHANGE(paths) after each burst of changes to the newsletter's inputs."""

    def __init__(self, root: Path, on_change: Callable[[set[str]], None]) -> None:
        self.root = root.resolve()
        self.on_change = on_change
        self._stopped = threading.Event()
        self._tree_stop = threading.Event()
        self._threads = [threading.Thread(target=self._run_tree, name="digest-watch-tree", daemon=True),
                         threading.Thread(target=self._run_root, name="digest-watch-root", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopped.set()
        self._tree_stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def tree_dirs(self) -> list[Path]:
        return [d for d in (self.root / "entries", self.root / "templates") if d.is_dir()]

    def _notify(self, changes: set[tuple[Change, str]]) -> None:
        try:
            self.on_change({path for _, path in changes})
        except Exception as exc:  # noqa: BLE001 - a failed rebuild must not stop the watching
            print(f"digest preview: rebuild failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _run_tree(self) -> None:
        while not self._stopped.is_set():
            self._tree_stop.clear()
            dirs = self.tree_dirs()
            if not dirs:
                self._tree_stop.wait()
                continue
            try:
                for changes in watch(*dirs, watch_filter=InputFilter(dirs), debounce=DEBOUNCE_MS, step=STEP_MS,
                                     stop_event=self._tree_stop, rust_timeout=1000, raise_interrupt=False):
                    self._notify(changes)
            except (OSError, RuntimeError) as exc:  # a watched folder vanished mid-way: start again
                if not self._stopped.is_set():
                    print(f"digest preview: watching restarted ({exc})", file=sys.stderr)
                    time.sleep(0.2)

    def _run_root(self) -> None:
        def wanted(change: Change, path: str) -> bool:
            return Path(path).name in ROOT_NAMES

        while not self._stopped.is_set():
            try:
                for changes in watch(self.root, watch_filter=wanted, recursive=False, debounce=DEBOUNCE_MS,
                                     step=STEP_MS, stop_event=self._stopped, rust_timeout=1000,
                                     raise_interrupt=False):
                    if any(Path(path).name != CONFIG_NAME for _, path in changes):
                        self._tree_stop.set()  # entries/ or templates/ came or went: watch the new set
                    self._notify(changes)
            except (OSError, RuntimeError) as exc:
                if not self._stopped.is_set():
                    print(f"digest preview: watching restarted ({exc})", file=sys.stderr)
                    time.sleep(0.2)
