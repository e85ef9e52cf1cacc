"""The only module that writes to disk: whole editions, atomically, under a lock."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator, Mapping

from digest.errors import BuildError

if TYPE_CHECKING:
    import ctypes

LOCK_NAME = ".digest.lock"
_RENAME_EXCHANGE = 2


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """The C library this process already has loaded (find_library would run a subprocess).
    ctypes is imported only here: a build that swaps no folder does without it (~2 ms)."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux renameat2); False where unsupported."""
    libc = _libc()
    renameat2 = getattr(libc, "renameat2", None) if libc is not None else None
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover(out: Path) -> None:
    """Finish a swap an earlier, killed run left half done; remove its scratch folders."""
    if not out.is_dir():
        return
    for old in sorted(out.glob(".old-*")):
        name = old.name[len(".old-"):].rsplit(".", 1)[0]
        target = out / name
        if not target.exists():
            old.rename(target)  # the new edition never arrived: put the previous one back
        else:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in out.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for pattern in (".*.tmp", "*/.*.tmp"):  # what write_files left when killed (the files are intact)
        for tmp in out.glob(pattern):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_tree(out: Path, name: str, files: Mapping[str, bytes]) -> Path:
    """Write FILES as OUT/NAME/…: all of them or, on any failure, none (the old folder stays)."""
    return write_trees(out, {name: files})[0]


def write_trees(out: Path, trees: Mapping[str, Mapping[str, bytes]]) -> list[Path]:
    """Write several folders OUT/NAME/…, each swapped in whole (see Staging)."""
    staging = Staging(out)
    for name, files in trees.items():
        staging.stage(name, files)
    return staging.commit()


class Staging:
    """Folders written beside their targets (OUT/.tmp-NAME.PID) as they become ready,
    then swapped in together by commit().

    Nothing is flushed until commit(), which syncs once (an fsync per file cost 20–100 ms
    per edition) and then swaps each folder in with one atomic rename. A failure while
    writing removes every staged folder and leaves every old folder as it was. Use it
    under the build lock: recover() removes staged folders a killed run left.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pending: dict[str, Path] = {}
        self.pid = os.getpid()  # forked workers stage under the same names

    def folder(self, name: str) -> Path:
        return self.out / f".tmp-{name}.{self.pid}"

    def adopt(self, name: str, folder: Path) -> None:
        """Take over a folder another process (a forked worker) staged for NAME."""
        self.pending[name] = folder

    def stage(self, name: str, files: Mapping[str, bytes]) -> Path:
        """Write FILES into NAME's staged folder (made afresh); returns the folder."""
        tmp = self.folder(name)
        self.pending[name] = tmp
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            self.add(name, files)
        except BuildError:
            raise
        except OSError as exc:
            self._fail(name, exc)
        return tmp

    def add(self, name: str, files: Mapping[str, bytes]) -> None:
        """Write more FILES into NAME's staged folder."""
        tmp = self.pending[name]
        try:
            made = {tmp}
            for rel, data in sorted(files.items()):
                path = tmp / rel
                if path.parent not in made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    made.add(path.parent)
                with open(path, "wb") as handle:
                    handle.write(data)
        except OSError as exc:
            self._fail(name, exc)

    def drop(self, name: str) -> None:
        """Forget NAME's staged folder (its target stays as it is)."""
        tmp = self.pending.pop(name, None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def abort(self) -> None:
        """Remove every staged folder, workers' ones not yet adopted included (in the
        process that made this Staging; a forked worker removes only its own)."""
        for name in list(self.pending):
            self.drop(name)
        if os.getpid() == self.pid:
            for folder in self.out.glob(f".tmp-*.{self.pid}"):
                shutil.rmtree(folder, ignore_errors=True)

    def _fail(self, name: str, exc: OSError) -> None:
        if os.getpid() == self.pid:
            self.abort()
        else:  # a worker: the folders of other weeks belong to the build, which decides
            self.drop(name)
        target = self.out / name
        hint = "free some disk space" if exc.errno == errno.ENOSPC else "check that the folder is writable"
        raise BuildError(f"could not write {target}: {exc.strerror or exc} ({hint}); "
                         "the previous edition, if any, is unchanged.") from None

    def commit(self) -> list[Path]:
        """Flush everything staged to disk, then swap each folder in; returns the targets."""
        pending = [(tmp, self.out / name) for name, tmp in self.pending.items()]
        self.pending = {}
        try:
            os.sync()
        except OSError as exc:  # pragma: no cover - sync does not fail on Linux
            for tmp, _ in pending:
                shutil.rmtree(tmp, ignore_errors=True)
            self._fail(pending[-1][1].name if pending else "", exc)
        written = []
        for index, (tmp, target) in enumerate(pending):
            try:
                if target.exists():
                    if _exchange(tmp, target):
                        shutil.rmtree(tmp, ignore_errors=True)
                    else:
                        old = self.out / f".old-{target.name}.{os.getpid()}"
                        target.rename(old)
                        tmp.rename(target)
                        shutil.rmtree(old, ignore_errors=True)
                else:
                    tmp.rename(target)
            except OSError as exc:
                for rest, _ in pending[index:]:
                    shutil.rmtree(rest, ignore_errors=True)
                raise BuildError(f"could not replace {target}: {exc.strerror or exc}; "
                                 "it still holds the previous edition.") from None
            written.append(target)
        if pending:
            _fsync_dir(self.out)
        return written


def write_files(files: Mapping[Path, bytes]) -> None:
    """Replace each of FILES (path -> bytes) atomically: all are written to temporary files
    and flushed with one sync (an fsync each waited for the disk once a file; the fsync
    each then gets is cheap, and reports a write error the flush met), then renamed into
    place. A failure before the renames leaves every file as it was."""
    temps: list[tuple[Path, Path]] = []
    handles: list[IO[bytes]] = []
    target: Path | None = None
    try:
        for path, data in files.items():
            target = path
            if path.is_dir():  # the rename would fail after others were done
                raise IsADirectoryError(errno.EISDIR, "a folder is in its place")
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(tmp, "wb")
            temps.append((tmp, path))
            handles.append(handle)
            handle.write(data)
            handle.flush()
        if handles:
            os.sync()
        for (_, target), handle in zip(temps, handles):
            os.fsync(handle.fileno())
            handle.close()
        for tmp, target in temps:
            os.replace(tmp, target)
    except OSError as exc:
        for handle in handles:
            handle.close()
        for tmp, _ in temps:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        raise BuildError(f"could not write {target}: {exc.strerror or exc}; the previous file is unchanged.") from None
    for folder in {path.parent for _, path in temps}:
        _fsync_dir(folder)


@contextmanager
def locked(out: Path, wait: float = 30.0) -> Iterator[None]:
    """Hold OUT's build lock; another build waits up to WAIT seconds, then gives up clearly.

    A build that made OUT (and its missing parents) and then fails takes them away again
    (lock file included) when nothing else is in them. A build that waited meanwhile
    finds its lock file gone, and locks the one that is there (made afresh) instead."""
    deadline = time.monotonic() + wait
    while True:
        made: list[Path] = []  # the folders this build made (for the OUT it locks in the end), OUT first
        missing, folder = [], out
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        try:
            out.mkdir(parents=True)
            made = missing
        except FileExistsError:
            pass
        except OSError as exc:
            raise BuildError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
        try:
            handle = open(out / LOCK_NAME, "a+b")
        except FileNotFoundError:  # a failed first build took OUT away between the two steps
            if time.monotonic() < deadline:
                continue
            raise BuildError(f"cannot create the output folder {out}: it was removed while this build "
                             "started; try again") from None
        except OSError as exc:
            raise BuildError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BuildError(f"another digest build is writing to {out} (lock {out / LOCK_NAME} held "
                                         f"for {wait:.0f} s); try again when it has finished") from None
                    time.sleep(0.05)
            if _still_there(handle, out / LOCK_NAME):
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # removed while this build waited: lock the lock file that is there now
    done = False
    try:
        recover(out)
        yield
        done = True
    finally:
        try:
            if made and not done:
                try:  # unlinked while still held; then the folders, each only if it is empty
                    (out / LOCK_NAME).unlink()
                    for folder in made:
                        folder.rmdir()
                except OSError:
                    pass
        finally:
            handle.close()


def _still_there(handle: IO[bytes], path: Path) -> bool:
    """Whether PATH is still the file HANDLE has open."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except OSError:
        return False
