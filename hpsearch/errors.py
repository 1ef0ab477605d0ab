"""The errors the command line turns into one line on stderr and an exit status."""

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix, in one line (exit 2)."""


class StudyAborted(Exception):
    """Trials keep failing: the search stops instead of burning its budget on errors (exit 1)."""


class StorageLost(StudyAborted):
    """The study database stopped answering in the middle of a run (exit 1). Finished trials
    are safe in it; the trial that was running is failed by heartbeat and retried by the next run."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be. A KeyboardInterrupt so that Optuna records the
    trial in progress as FAIL on the way out instead of leaving it RUNNING."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error (else ``default``,
    else the exception's type name)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else default or type(exc).__name__
