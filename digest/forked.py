"""One function run in a forked process while this one goes on (digest.entries' reader
of a week's new entries). The answer comes back pickled
through a pipe; anything that goes wrong there (no fork, a crash, a kill, an answer cut
short) gives FAILED, and the caller does the work itself: the same code, here.

A Forked process can also be started before its work is known (`ask`): it gets ready
(imports) while this one does the same, then waits for its arguments. `digest build`
starts its entry reader that way, first thing (standing_by)."""

from __future__ import annotations

import os
import pickle
import signal
from contextlib import contextmanager
from typing import Any, Callable, Iterator

#: Forked.result() when there is no answer: do the work here.
FAILED = object()
_STOP = (signal.SIGINT, signal.SIGTERM)


class Forked:
    """FN() in a forked process, started at once. result() waits for its answer; stop()
    (also on leaving a `with` block) kills it if it still runs. Either reaps it.

    With READY: the process runs READY(), then waits for ask(*ARGS) and answers
    FN(*ARGS); it ends without an answer if stopped before it is asked."""

    def __init__(self, fn: Callable[..., Any], ready: Callable[[], None] | None = None) -> None:
        self.pid = -1
        self._receive = self._ask = -1
        try:
            receive, send = os.pipe()
        except OSError:  # out of file descriptors
            return
        asked = ask = -1
        if ready is not None:
            try:
                asked, ask = os.pipe()
            except OSError:
                os.close(receive)
                os.close(send)
                return
        # Ctrl-C and SIGTERM wait until each side has its handlers in place: the child must
        # never run this process's code (its exception handlers, exit handlers) by mistake.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
        try:
            pid = os.fork()
        except OSError:  # no memory, or the process limit
            pid = -1
        if pid == 0:  # the child: never returns, never runs the parent's exit handlers
            status = 1
            try:
                for number in _STOP:
                    signal.signal(number, signal.SIG_DFL)  # Ctrl-C or SIGTERM end it at once
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                import gc

                gc.disable()  # short-lived: its collections would walk (and copy) every object inherited
                os.close(receive)
                args: tuple = ()
                if ready is not None:
                    os.close(ask)
                    ready()
                    with open(asked, "rb", closefd=True) as pipe:
                        request = pipe.read()
                    if not request:  # stopped before it was asked: nothing to do
                        status = 0
                        return
                    args = pickle.loads(request)
                data = pickle.dumps(fn(*args), pickle.HIGHEST_PROTOCOL)
                with open(send, "wb", closefd=True) as pipe:
                    pipe.write(data)
                status = 0
            finally:
                os._exit(status)
        os.close(send)
        if asked >= 0:
            os.close(asked)
        if pid < 0:
            os.close(receive)
            if ask >= 0:
                os.close(ask)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return
        self.pid, self._receive, self._ask = pid, receive, ask
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # raises a Ctrl-C that came meanwhile
        except BaseException:
            self.stop()
            raise

    @property
    def started(self) -> bool:
        return self.pid > 0

    def ask(self, *args: Any) -> None:
        """Send ARGS to a process started with READY (once): it answers FN(*ARGS)."""
        ask, self._ask = self._ask, -1
        if ask < 0:
            return
        try:
            with open(ask, "wb", closefd=True) as pipe:
                pipe.write(pickle.dumps(args, pickle.HIGHEST_PROTOCOL))
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            # it died (EPIPE), or ARGS do not pickle: no answer will come (result() is FAILED)
            self.stop()
        except BaseException:
            self.stop()
            raise

    def result(self) -> Any:
        """FN()'s answer, or FAILED."""
        if self.pid < 0:
            return FAILED
        answer: Any = FAILED
        try:
            with open(self._receive, "rb", closefd=False) as pipe:
                data = pipe.read()
            try:
                answer = pickle.loads(data)
            except Exception:  # cut short: the child died (it is reaped below)
                answer = FAILED
        except BaseException:
            self.stop()
            raise
        return answer if self._reap() == 0 else FAILED

    def stop(self) -> None:
        """Kill the child if it still runs, and reap it."""
        if self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def _reap(self) -> int:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)  # no Ctrl-C leaves it a zombie
        pid, receive, ask = self.pid, self._receive, self._ask
        self.pid = self._receive = self._ask = -1  # never reaped or closed twice
        try:
            if ask >= 0:
                os.close(ask)  # one never asked reads nothing and ends
            os.close(receive)  # a child still writing gets EPIPE and ends
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already: SIGCHLD ignored by whoever started this process
            status = 0  # the data decides
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a Ctrl-C that came meanwhile is raised here
        return status

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cores() -> int:
    """The CPUs this process may run on (its affinity: a container's share, `taskset`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: The entry reader `digest build` starts first thing (standing_by); digest.entries
#: claims it for the entries its cache lacks.
_STANDING: Forked | None = None


@contextmanager
def standing_by() -> Iterator[None]:
    """While the block runs, a forked entry reader stands by (claim): it imports the
    entry parsers (YAML, Markdown, dateutil: ~55 ms) while this process imports the
    renderers, and then reads what it is asked. Only with two or more cores, one thread,
    and fork(); stopped and reaped when the block ends, asked or not."""
    global _STANDING
    import threading

    if cores() < 2 or threading.active_count() != 1 or not hasattr(os, "fork"):
        yield
        return
    reader = Forked(_read_entries, ready=_ready_to_read)
    _STANDING = reader if reader.started else None
    try:
        yield
    finally:
        _STANDING = None
        reader.stop()


def claim() -> Forked | None:
    """The standing-by reader, once (None: there is none)."""
    global _STANDING
    reader, _STANDING = _STANDING, None
    return reader


def _ready_to_read() -> None:
    from digest.entries import ready_to_read

    ready_to_read()


def _read_entries(items: list, config: Any, tzids: dict, zones: set) -> tuple[list, dict]:
    """ITEMS read, and the zones their calendars need that the build lacks (TZIDS, ZONES: digest.ical)."""
    from digest import entries, ical

    read = [entries.read_entry(path, rel, config) for path, rel in items]
    try:
        made = ical.zones_needed([event for event, _ in read if event is not None], config, tzids, zones)
    except Exception:  # the build makes them itself, as without a reader (and reports what fails there)
        made = {}
    return read, made
