"""The one exception type the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix, on one line.

    Deliberately not a ``ValueError``: the CLI shows a ``UserError`` as one line and exit status 2,
    and anything else as a bug (traceback and a line asking to report it), so a ``ValueError``
    from our own code or a library can never pass for the user's mistake.
    """
