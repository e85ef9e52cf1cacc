"""One function run in a forked process while this one goes on (digest.entries' reader
of a week's new entries). The answer comes back pickled
through a pipe; anything that goes wrong there (no fork, a crash, a kill, an answer cut
short) gives FAILED, and the caller does the work itself: the same code, here.

A Forked process can also be started before its work is known (`ask`): it gets ready
(imports) while this one does the same, then waits for its arguments, and after its
answer serves further requests (`request`) until stopped. `digest build` starts its
entry reader that way, first thing (standing_by); in a build of a week or two the reader
also inlines the edition's CSS (premailer, imported there while this process renders)
and makes the archive's feed, unless a first build's process does the inlining itself
(read_standing)."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

#: Forked.result() when there is no answer: do the work here.
FAILED = object()
_STOP = (signal.SIGINT, signal.SIGTERM)


class Forked:
    """FN() in a forked process, started at once. result() waits for its answer; stop()
    (also on leaving a `with` block) kills it if it still runs. Either reaps it.

    With READY: the process runs READY(), then waits for ask(*ARGS) and answers
    FN(*ARGS); it ends without an answer if stopped before it is asked. After that it
    answers request(NAME, *ARGS) with SERVES[NAME](*ARGS), one at a time, until stopped;
    an error there answers FAILED (the caller does that work itself) and it goes on."""

    def __init__(self, fn: Callable[..., Any], ready: Callable[[], None] | None = None,
                 serves: dict[str, Callable[..., Any]] | None = None) -> None:
        self.pid = -1
        self._receive = self._ask = -1
        self._owner = os.getpid()
        self._talks = ready is not None
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
            for fd in (ask, send):  # where the system lets it, a request or answer (an edition's HTML) fits whole
                _widen(fd)
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
                if ready is not None:
                    os.close(ask)
                    ready()
                    _serve(asked, send, fn, serves or {})
                else:
                    data = pickle.dumps(fn(), pickle.HIGHEST_PROTOCOL)
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
        self._send(None, args)

    def request(self, name: str, *args: Any, meanwhile: Callable[[], None] | None = None) -> Any:
        """SERVES[NAME](*ARGS) from a process started with READY, once it has answered
        ask: the answer, or FAILED (then it is stopped if it broke down); MEANWHILE runs
        here while it is made (its error, or Ctrl-C, stops the process and is raised).
        Only from the process that started it (not from one forked since)."""
        if os.getpid() != self._owner or self._ask < 0:
            return FAILED
        self._send(name, args)
        if meanwhile is not None:
            try:
                meanwhile()
            except BaseException:
                self.stop()  # its answer would be read as the next one's
                raise
        return self.result()

    def _send(self, name: str | None, args: tuple) -> None:
        if self._ask < 0:
            return
        if os.getpid() != self._owner:  # inherited by a forked process: not its reader
            self._forget()
            return
        try:
            _send_frame(self._ask, (name, args))
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            # it died (EPIPE), or ARGS do not pickle: no answer will come (result() is FAILED)
            self.stop()
        except BaseException:
            self.stop()
            raise

    def result(self) -> Any:
        """FN()'s answer (with READY: the answer to what was last sent), or FAILED."""
        if self.pid < 0:
            return FAILED
        if self._talks:
            try:
                answer = _receive_frame(self._receive)
            except BaseException:
                self.stop()
                raise
            if answer is None:  # it died: reap it
                self.stop()
                return FAILED
            ok, value = answer
            return value if ok else FAILED
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
        """Kill the child if it still runs, and reap it. In a process forked since (which
        inherited this object), only close the pipes: the child is not its own."""
        if os.getpid() != self._owner:
            self._forget()
            return
        if self.pid > 0:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)  # killed and reaped, or neither
            try:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._reap()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _forget(self) -> None:
        """Close the pipes without touching the child (in a process that does not own it)."""
        for fd in (self._ask, self._receive):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.pid = self._receive = self._ask = -1

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


def _widen(fd: int) -> None:
    """Give FD's pipe a buffer of 1 MiB (Linux; the most an unprivileged process may ask)
    where it can: a writer then does not wait for the reader to start reading."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass


def _send_frame(fd: int, message: Any) -> None:
    """MESSAGE pickled to FD, after its length (8 bytes): what _receive_frame reads."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    with open(fd, "wb", closefd=False) as pipe:
        pipe.write(len(data).to_bytes(8, "little") + data)


def _receive_frame(fd: int) -> tuple | None:
    """One length-prefixed pickle from FD; None at its end (or cut short)."""
    with open(fd, "rb", closefd=False, buffering=0) as pipe:
        head = _read_exactly(pipe, 8)
        if head is None:
            return None
        data = _read_exactly(pipe, int.from_bytes(head, "little"))
    if data is None:
        return None
    try:
        return pickle.loads(data)
    except Exception:
        return None


def _read_exactly(pipe: Any, size: int) -> bytes | None:
    parts, got = [], 0
    while got < size:
        chunk = pipe.read(size - got)
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _serve(asked: int, send: int, fn: Callable[..., Any], serves: dict[str, Callable[..., Any]]) -> None:
    """(In the child.) Answer what comes through ASKED: FN's first, then SERVES', until its end."""
    while True:
        request = _receive_frame(asked)
        if request is None:  # stopped: nothing more to do
            return
        name, args = request
        if name is None:
            answer = (True, fn(*args))  # an error here ends the child: the caller reads itself
        else:
            try:
                answer = (True, serves[name](*args))
            except Exception:
                answer = (False, None)
        _send_frame(send, answer)
        while AFTER:  # work that waited for the answer to be sent (preparing later requests)
            AFTER.pop(0)()


#: (In a child started with READY.) What to do once the answer being made is sent.
AFTER: list[Callable[[], None]] = []


def cores() -> int:
    """The CPUs this process may run on (its affinity: a container's share, `taskset`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


#: The entry reader `digest build` starts first thing (standing_by); digest.entries
#: claims it for the entries its cache lacks (read_standing).
_STANDING: Forked | None = None
#: Whether the reader may also inline (standing_by's INLINE), and the reader once it does.
_MAY_INLINE = False
_INLINER: Forked | None = None
#: What the reader does for the build besides reading, while the build gets ready
#: (read_standing's MEANWHILE): "inline" (the edition's CSS and the archive's feed:
#: inliner). Renderer.warm and digest.archive.preload then do not import premailer or feedgen.
HELPS: frozenset[str] = frozenset()


@contextmanager
def standing_by(inline: bool = False) -> Iterator[None]:
    """While the block runs, a forked entry reader stands by (claim): it imports the
    entry parsers (YAML, Markdown, dateutil: ~55 ms) while this process imports the
    renderers, and then reads what it is asked. With INLINE (a build of a week or two:
    no workers), the reader then imports premailer (and cssutils, for a first build),
    inlines the edition's CSS and makes the archive's feed, unless read_standing finds
    this process has the time to inline. Only with two or more cores, one thread, and
    fork(); stopped and reaped when the block ends (with the jobs when_idle was given)."""
    global _STANDING, _MAY_INLINE, _INLINER
    import threading

    if cores() < 2 or threading.active_count() != 1 or not hasattr(os, "fork"):
        yield
        return
    reader: Forked | None = None
    try:
        reader = Forked(_read_entries, ready=_ready_to_read, serves={"inline": _inline, "feed": _feed})
        _STANDING, _MAY_INLINE = (reader if reader.started else None), inline
        yield
    finally:
        if reader is not None:
            reader.stop()
        _STANDING, _MAY_INLINE, _INLINER = None, False, None
        _IDLE.clear()


def _forget_in_child() -> None:
    """(In any process forked from here.) The reader's pipes are not its own: close them,
    so that they close when this process ends (a reader waits for its pipe to close)."""
    global _STANDING, _INLINER
    for reader in {id(r): r for r in (_STANDING, _INLINER) if r is not None}.values():
        reader._forget()
    _STANDING = _INLINER = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


#: Work this process may do while it waits for a helper's answer (when_idle, idle).
_IDLE: list[Callable[[], Any]] = []


def when_idle(job: Callable[[], Any]) -> None:
    """Run JOB (once) the next time this process waits for the reader's answer (an
    inlining), if it does: JOB must make what is asked for later anyway (a memo), and
    leave no trace if it fails (it is then done, and fails, where it is asked for)."""
    _IDLE.append(job)


def drop_idle(*jobs: Callable[[], Any]) -> None:
    """Forget JOBS if they have not run (a build done with them)."""
    _IDLE[:] = [job for job in _IDLE if all(job is not dropped for dropped in jobs)]


def idle() -> None:
    """Run the jobs when_idle was given, each once; their errors are left for later."""
    while _IDLE:
        job = _IDLE.pop(0)
        try:
            job()
        except Exception:  # noqa: BLE001 - asked for again where it is needed, and reported there
            pass


def claim() -> Forked | None:
    """The standing-by reader, once (None: there is none)."""
    global _STANDING
    reader, _STANDING = _STANDING, None
    return reader


def read_standing(reader: Forked, items: list, config: Any, meanwhile: Callable[[], None] | None) -> Any:
    """ITEMS read by READER (claimed) while MEANWHILE runs here, or FAILED. It also makes
    the zones their calendars need, taken here (digest.ical), or prepares to inline
    (inliner). An error of MEANWHILE (or Ctrl-C) stops it and is raised."""
    global HELPS, _INLINER
    from digest import compiled, ical, render

    # The reader inlines the edition's CSS when it may (a week or two), with the parses
    # the cache kept (this process has them: seeds): this process then never imports
    # premailer (~15 ms). A first build (no seeds) parses its CSS: premailer and cssutils
    # take ~60 ms to import. Where its templates are compiled already (digest.compiled),
    # this process has the time: it imports them while the reader reads and makes the
    # zones, and inlines itself. Else compiling the templates (~45 ms) keeps it busy: the
    # reader imports them after reading and inlines, and this process makes the zones
    # while it waits.
    seeds = None if render.inlining_is_cold() else render.inline_seeds()
    inline = _MAY_INLINE and (seeds is not None or not compiled.stored(config.root))
    reader.ask(items, config, dict(ical.TZIDS), set(ical.ZONES), inline, seeds if inline else None)
    try:
        if reader.started and meanwhile is not None:  # else read here: nothing runs meanwhile
            HELPS = frozenset({"inline"} if inline else ())
            try:
                meanwhile()
            finally:
                HELPS = frozenset()
        answer = reader.result()
    except BaseException:
        reader.stop()
        raise
    if not (isinstance(answer, tuple) and len(answer) == 2):
        reader.stop()
        return FAILED
    read, zones = answer
    ical.adopt_zones(zones)
    if inline:
        _INLINER = reader
    else:
        reader.stop()
    return read


def inliner() -> Forked | None:
    """The reader, when it inlines this build's CSS (read_standing), and makes its feed
    (digest.archive.feed_bytes); None once it is gone."""
    return _INLINER if _INLINER is not None and _INLINER.started else None


def served(name: str, *args: Any, meanwhile: Callable[[], None] | None = None, idle_too: bool = False) -> Any:
    """SERVES[NAME](*ARGS) from the reader that inlines (inliner), or FAILED where there
    is none or it fails; MEANWHILE (and, with IDLE_TOO, the jobs when_idle was given) runs
    here once either way: while the reader works, or first."""
    def waiting() -> None:
        ran.append(True)
        if meanwhile is not None:
            meanwhile()
        if idle_too:
            idle()

    ran: list[bool] = []
    helper = inliner()
    answer = helper.request(name, *args, meanwhile=waiting) if helper is not None else FAILED
    if not ran:
        waiting()
    return answer


def _ready_to_read() -> None:
    import importlib

    from digest.entries import ready_to_read

    ready_to_read()
    # The calendars' zones (_read_entries) ask for the sender's address, which the email
    # package parses: imported now, it is not ~13 ms more that the build waits for.
    importlib.import_module("email.policy")


def _read_entries(items: list, config: Any, tzids: dict, zones: set, inline: bool = False,
                  seeds: dict | None = None) -> tuple[list, dict]:
    """(In the reader.) ITEMS read, and the zones their calendars need that the build
    lacks (TZIDS, ZONES: digest.ical), unless a first build's reader inlines (INLINE
    without SEEDS); with INLINE, premailer is imported next (see _ready_to_inline)."""
    from digest import entries, ical

    read = [entries.read_entry(path, rel, config) for path, rel in items]
    made: dict = {}
    if not inline or seeds is not None:
        try:
            made = ical.zones_needed([event for event, _ in read if event is not None], config, tzids, zones)
        except Exception:  # the build makes them itself, as without a reader (and reports what fails there)
            made = {}
    if inline:
        AFTER.append(lambda: _ready_to_inline(seeds))
    return read, made


def _ready_to_inline(seeds: dict | None) -> None:
    """(In the reader, once its entries are sent.) premailer now; cssutils too for a first
    build (no SEEDS: it parses its CSS), else the parses the build's cache kept, which the
    build has (they are not sent back)."""
    import importlib

    from digest import render

    if seeds is None:
        importlib.import_module("cssutils")
    else:
        render.seed_inline_parses(seeds)
        for kind, table in seeds.items():
            _SENT.setdefault(kind, set()).update(table)
    render._premailer_class()


def _inline(html: str, css: str) -> tuple[str, dict]:
    """(In the reader.) digest.render.inline_css, and the parses not sent before, for the build's cache."""
    from digest import render

    inlined = render.inline_css(html, css)
    new = {kind: {key: value for key, value in table.items() if key not in _SENT[kind]}
           for kind, table in render.inline_parses().items()}
    for kind, table in new.items():
        _SENT[kind].update(table)
    if "digest.archive" not in sys.modules:  # the archive's feed is asked for next
        AFTER.append(_ready_to_feed)
    return inlined, new


def _ready_to_feed() -> None:
    """(In the reader, once an inlining is sent.) feedgen (lxml is premailer's already)."""
    import importlib

    for name in ("digest.archive", "feedgen.feed"):
        importlib.import_module(name)


def _feed(config: Any, listing: list) -> bytes:
    """(In the reader.) digest.archive.make_feed: the build's process then does not import
    feedgen (~5 ms; lxml it imports for its own checks)."""
    from digest.archive import make_feed

    return make_feed(config, listing)


#: (In the reader.) The parses' keys already sent to the build, by kind.
_SENT: dict[str, set] = {"rules": set(), "pairs": set()}
