"""One function run in a forked process while this one goes on (digest.entries' reader
of a week's new entries). The answer comes back pickled
through a pipe; anything that goes wrong there (no fork, a crash, a kill, an answer cut
short) gives FAILED, and the caller does the work itself: the same code, here."""

from __future__ import annotations

import os
import pickle
import signal
from typing import Any, Callable

#: Forked.result() when there is no answer: do the work here.
FAILED = object()
_STOP = (signal.SIGINT, signal.SIGTERM)


class Forked:
    """FN() in a forked process, started at once. result() waits for its answer; stop()
    (also on leaving a `with` block) kills it if it still runs. Either reaps it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.pid = -1
        self._receive = -1
        try:
            receive, send = os.pipe()
        except OSError:  # out of file descriptors
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
                data = pickle.dumps(fn(), pickle.HIGHEST_PROTOCOL)
                with open(send, "wb", closefd=True) as pipe:
                    pipe.write(data)
                status = 0
            finally:
                os._exit(status)
        os.close(send)
        if pid < 0:
            os.close(receive)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return
        self.pid, self._receive = pid, receive
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # raises a Ctrl-C that came meanwhile
        except BaseException:
            self.stop()
            raise

    @property
    def started(self) -> bool:
        return self.pid > 0

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
        pid, receive, self.pid, self._receive = self.pid, self._receive, -1, -1  # never reaped or closed twice
        try:
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
