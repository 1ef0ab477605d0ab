"""Ctrl-C and SIGTERM, taken only where a run can stop cleanly.

A signal raises KeyboardInterrupt (``Terminated`` for SIGTERM) in the main thread. Raised
in the middle of Optuna's bookkeeping around a trial, it can leave the study in a state
nothing repairs: a trial claimed but never given a heartbeat stays RUNNING for ever, and a
heartbeat thread started but never told to stop keeps the process alive after it has said
"terminated". So the search runs ``deferred()``: a signal that arrives there is held, and
raised at the next place that is ``allowed()`` (a trial's training, the wait for other
workers) or when the deferred block ends. The delay is the length of one bookkeeping call.

A launcher starts its workers with both signals blocked (``blocked()``): a child inherits
the blocked mask and calls ``ready()`` once its handlers are in place, so a signal sent in
between is delivered to the handler instead of killing the child before it could tidy up.
(Blocking guards children only: a process's other threads, such as BLAS's, still take
signals for it, so the launcher itself forwards through a handler.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from hpsearch.errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_deferring = False
_held: int | None = None  # a signal that arrived while deferring


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame) -> None:
    global _held
    if _deferring:
        _held = _held or signum
        return
    raise _exception(signum)


def _raise_held() -> None:
    global _held
    if _held is not None:
        signum, _held = _held, None
        raise _exception(signum)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Route SIGINT and SIGTERM through this module (main thread only; elsewhere a no-op)."""
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    _held = None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def ready() -> None:
    """Unblock the signals (a worker inherits a launcher's blocked mask): a signal that came
    meanwhile is raised here, so call it where KeyboardInterrupt is handled."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold signals until the block ends (or an ``allowed()`` block inside it starts)."""
    global _deferring
    outer, _deferring = _deferring, True
    try:
        yield
    finally:
        _deferring = outer
    if not outer:
        _raise_held()


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Let signals raise at once, starting with any held one."""
    global _deferring
    outer, _deferring = _deferring, False
    try:
        _raise_held()
        yield
    finally:
        _deferring = outer


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM at the OS level (pending ones are delivered on exit)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
