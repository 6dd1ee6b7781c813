"""Worker processes that never outlive the command that started them.

A batch command that runs jobs in a process pool calls :func:`worker_setup` in each worker's
initializer. Then

* the kernel kills the worker the moment its parent dies, even by ``kill -9`` (Linux
  ``prctl(PR_SET_PDEATHSIG)``); elsewhere the worker checks :func:`exit_if_orphaned` before
  every job and every view, so at most the image in progress is finished, never the queue;
* Ctrl-C reaches only the parent (workers ignore SIGINT), which stops the pool and exits with
  one line instead of one traceback per worker.

:class:`StopOnInterrupt` turns Ctrl-C into a request that a loop honours between items.

Imports nothing heavy: workers start quickly.
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _kill_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_if_orphaned(parent_pid: int) -> None:
    """End this process at once (no cleanup, no output) when ``parent_pid`` is no longer its parent."""
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_setup(parent_pid: int) -> None:
    """Call first in a pool worker (see the module docstring); ``parent_pid`` is ``os.getpid()`` of the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _kill_with_parent()
    exit_if_orphaned(parent_pid)  # the parent may have died before the line above took effect


class StopOnInterrupt:
    """While active (main thread only), Ctrl-C asks the work to stop at the next :meth:`check`.

    Use it around loops whose body runs foreign C code that must not be interrupted half-way
    (ctypes calls into OpenGL turn a KeyboardInterrupt into an unrelated error). ``check()``
    raises ``KeyboardInterrupt`` once Ctrl-C was pressed; a second Ctrl-C interrupts at once.
    """

    def __init__(self, notice: str = "stopping after the current item (Ctrl-C again to stop at once)"):
        self.requested = False
        self.notice = notice
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        print(self.notice, file=sys.stderr, flush=True)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __enter__(self) -> "StopOnInterrupt":
        import threading

        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False
