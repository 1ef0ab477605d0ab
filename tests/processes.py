"""Helpers for tests that run hpsearch as a child process."""

import signal


def interruptible() -> None:
    """Runs in the child before exec: SIGINT back at its default, as in a terminal. A shell
    that runs the tests in the background (``make test &``) makes its children ignore
    SIGINT, and Python keeps an inherited ignored SIGINT ignored, so Ctrl-C tests would
    see a child that cannot be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until_training(url: str, study_name: str, number: int, proc, timeout: float = 120) -> None:
    """Until trial ``number`` of the study is RUNNING and has reported an epoch (mid-training),
    while ``proc``, the process that runs it, lives."""
    import time

    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # the child may be creating the database's tables: read again until it has
            trials = optuna.load_study(study_name=study_name, storage=url).trials
        except (KeyError, sqlalchemy.exc.OperationalError):
            trials = []
        if len(trials) > number and trials[number].state == TrialState.RUNNING and trials[number].intermediate_values:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"trial {number} of {study_name} did not start training within {timeout} s")
