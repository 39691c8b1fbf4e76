"""The one exception type users see.  The CLI prints its message on one line and exits 2."""


class CifarEdgeError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""
