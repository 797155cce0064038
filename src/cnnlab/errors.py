"""The one exception type for user mistakes.

A `CnnlabError` carries a one-line message that names what was received and
what was expected. The CLI prints it and exits with its `exit_code`: 2, or 3 for a
run stopped by a non-finite loss; it never shows a traceback for these.
"""


class CnnlabError(Exception):
    """A mistake the user can fix: bad input, a missing file, an unknown name."""

    exit_code = 2  # what the CLI exits with


class DataError(CnnlabError):
    """A dataset file that is missing, truncated, corrupt or of the wrong kind."""


class CheckpointError(CnnlabError):
    """A checkpoint that cannot be opened safely or does not fit its model."""


class NumericalError(CnnlabError):
    """Training that met a NaN or infinite loss: the CLI exits with code 3, not 2."""

    exit_code = 3
