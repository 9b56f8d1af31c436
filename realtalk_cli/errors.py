"""The error types users see: a problem they can act on, turned into one line at the CLI edge."""


class RealtalkError(Exception):
    """Bad input or configuration; the message names the file and the place."""

    exit_code = 2


class IncompleteRun(RealtalkError):
    """A run that stopped before it was complete, with nothing wrong in its input (e.g. a memory plug-in that
    outlived its deadline): one line and exit 3; the same command again continues it."""

    exit_code = 3
