"""The one error type the command line turns into a single line and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix, in one line."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error (else ``default``,
    else the exception's type name)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else default or type(exc).__name__


class StudyAborted(Exception):
    """Trials keep failing: the search stops instead of burning its budget on errors."""
