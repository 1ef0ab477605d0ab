"""Ctrl-C and SIGTERM, taken only where a run can stop cleanly.

A signal raises KeyboardInterrupt (``Terminated`` for SIGTERM) in the main thread. Raised
in the middle of Optuna's bookkeeping around a trial, it can leave the study in a state
nothing repairs: a trial claimed but never given a heartbeat stays RUNNING for ever, and a
heartbeat thread started but never told to stop keeps the process alive after it has said
"terminated". So the search runs ``deferred()``: a signal that arrives there is held, and
raised at the next place that is ``allowed()`` (a trial's training, the wait for other
workers), at ``raise_held()`` or when the deferred block ends. The search loop calls
``raise_held()`` before each claim, so what a signal costs depends on when it comes:

- during a trial's training: it is raised at once (after the epoch's report, if it came
  during one), and that trial is stored as failed (``ended: interrupted``) and queued
  again with the same parameters;
- while a finished trial is stored (Optuna's tell, the callbacks) or between trials: it is
  raised once that bookkeeping ends, before another trial is claimed or waited for; no
  trial is added;
- while a trial is claimed (Optuna's ask, its heartbeat thread starting, its parameters
  sampled): it is raised when that trial's training starts, so that trial too is stored as
  failed and queued again.

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


def raise_held() -> None:
    """Raise the signal that ``deferred()`` held, if one came (a place inside a deferred
    block where the run can stop cleanly); else return."""
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
        raise_held()


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Let signals raise at once, starting with any held one."""
    global _deferring
    outer, _deferring = _deferring, False
    try:
        raise_held()
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
