"""Worker processes that never outlive the command that started them.

:func:`ordered_map` runs a function over items in a ``ProcessPoolExecutor`` (the manifest scan, the converter, the
audit). A pool's idle workers wait on a pipe whose other end the parent holds, so a parent killed with SIGKILL (or
by the OOM killer) used to leave every worker blocked forever, each holding its interpreter, torch and fairseq
(~390 MB). Now:

* each worker asks the kernel for SIGKILL when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``); where that is
  unavailable, a watchdog thread polls ``os.getppid()`` and ends the worker within :data:`WATCH_SECONDS`;
* SIGTERM of the parent (while it has no SIGTERM handler of its own) raises ``SystemExit(143)`` in the main thread,
  which stops the workers and shuts the pool down before the command exits; so does any other exception, Ctrl-C
  included (workers ignore SIGINT: the parent stops them). A worker inherits that handler by fork until its
  initializer resets it: a SIGTERM in between ends it as the default action does;
* queued items are dropped instead of being finished.
"""
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator

from .atomic import pid_alive

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 0.5  # how often the fallback watchdog checks that the parent is alive


def parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; whether it was armed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # no libc symbol (another C library)
        return False


def watch_parent(parent_pid: int, ppid: int) -> None:
    """Watchdog thread of a worker: end the process once its parent is gone."""
    while os.getppid() == ppid and pid_alive(parent_pid):
        time.sleep(WATCH_SECONDS)
    os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Pool initializer (in each worker): end this worker when the process that made the pool (``parent_pid``)
    dies, and leave SIGINT and SIGTERM to the parent and the default action."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited by fork
    armed = parent_death_signal(signal.SIGKILL)
    ppid = os.getppid()  # parent_pid itself, or a fork server that dies with it
    if ppid != parent_pid and not pid_alive(parent_pid):  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=watch_parent, args=(parent_pid, ppid), daemon=True, name="watch-parent").start()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's workers now (Python ≥ 3.14 has ``terminate_workers``; before, its process table)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def raise_on_sigterm(pool: ProcessPoolExecutor):
    """Install a SIGTERM handler (main thread, no handler of the caller's) that stops ``pool``'s workers and raises
    ``SystemExit(143)``; returns the previous handler to restore, or None when none was installed."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None

    owner = os.getpid()

    def terminated(signum, _frame):
        if os.getpid() != owner:  # a worker forked before its initializer reset SIGTERM: the default death
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        logger.warning("terminated (signal %d): stopping the worker processes", signum)
        stop_workers(pool)
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminated)


def ordered_map(fn: Callable, items: Iterable, jobs: int, window: int = 4) -> Iterator:
    """``map(fn, items)`` in ``jobs`` worker processes, in order, with at most ``jobs × window`` tasks in flight.

    ``fn`` and the items must be picklable. The workers die with this process (even by SIGKILL); SIGTERM, an
    exception or closing the iterator early stops them at once (see the module docstring). ``jobs`` ≤ 1 maps in
    this process.
    """
    if jobs <= 1:
        yield from map(fn, items)
        return
    pool, pending, finished = ProcessPoolExecutor(jobs, initializer=die_with_parent, initargs=(os.getpid(),)), \
        deque(), False
    previous = raise_on_sigterm(pool)
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= jobs * window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    finally:  # interrupted: stop the workers and drop queued tasks instead of finishing them
        if not finished:
            stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
