"""An image request's body, read only up to a size limit, and its declared media type.

The limit is checked twice (RFC 9110, Section 15.5.14, 413 Content Too Large): against
the Content-Length header before a byte is read, and against the running count while
the body streams in (a chunked body declares no length), so that no request can make
the server hold more than `max_bytes` of it.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from cnnlab.serve.http_error import HttpError

MAX_BODY_BYTES = 8 * 1024 * 1024
"""The default body limit: a phone photo fits, a flood does not."""

MEDIA_TYPES = ("image/png", "image/jpeg")


def _too_large(size: str, max_bytes: int) -> HttpError:
    return HttpError(413, f"request body of {size} bytes: the limit is {max_bytes} bytes")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.strip().isascii() and declared.strip().isdigit()):
            raise HttpError(400, f"Content-Length {declared!r}: expected a number of bytes")
        if int(declared) > max_bytes:
            raise _too_large(declared.strip(), max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(f"more than {max_bytes}", max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:  # the client hung up, or sent a malformed chunk
        raise HttpError(400, f"the request body ended early, after {size} bytes") from None
    return b"".join(chunks)


def check_media_type(request: Request) -> None:
    """415 unless the Content-Type is image/png or image/jpeg (parameters ignored)."""
    given = request.headers.get("content-type", "")
    media_type = given.split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise HttpError(
            415,
            f"Content-Type {given or '(none)'!r}: expected {' or '.join(MEDIA_TYPES)} "
            "with the image's bytes as the body",
        )
