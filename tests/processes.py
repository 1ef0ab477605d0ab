"""Helpers for tests that run hpsearch as a child process."""

import signal


def interruptible() -> None:
    """Runs in the child before exec: SIGINT back at its default, as in a terminal. A shell
    that runs the tests in the background (``make test &``) makes its children ignore
    SIGINT, and Python keeps an inherited ignored SIGINT ignored, so Ctrl-C tests would
    see a child that cannot be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
