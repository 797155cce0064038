"""The one exception type for user mistakes.

A `CnnlabError` carries a one-line message that names what was received and
what was expected. The CLI prints it and exits with code 2; it never shows a
traceback for these.
"""


class CnnlabError(Exception):
    """A mistake the user can fix: bad input, a missing file, an unknown name."""


class DataError(CnnlabError):
    """A dataset file that is missing, truncated, corrupt or of the wrong kind."""


class CheckpointError(CnnlabError):
    """A checkpoint that cannot be opened safely or does not fit its model."""
