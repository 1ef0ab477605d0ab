"""Running hpsearch's command line inside the test process."""

from hpsearch.cli import main


def hpsearch(command: str, *args) -> int:
    """The exit status of ``hpsearch COMMAND ARGS``: ``command`` is split at spaces, each of
    ``args`` (a path, a URL) is passed whole as ``str(arg)``."""
    return main([*command.split(), *map(str, args)])
