"""The one error type the command line turns into a single line and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: the message names the problem and the fix, in one line."""


class StudyAborted(Exception):
    """Trials keep failing: the search stops instead of burning its budget on errors."""
