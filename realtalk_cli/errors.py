"""The one error type users see: a problem they can act on, turned into one line at the CLI edge."""


class RealtalkError(Exception):
    """Bad input or configuration; the message names the file and the place."""
