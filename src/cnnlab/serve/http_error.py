"""A user mistake in an HTTP request, with the status code it is answered with."""

from __future__ import annotations

from cnnlab.errors import CnnlabError


class HttpError(CnnlabError):
    """A one-line CnnlabError that the server answers with `status` and {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
