"""Fetch a dataset file from a list of mirrors, verified, never leaving a partial file.

Each mirror URL is tried in turn (http, https or file URLs, through urllib).
The body is streamed to a temporary file in the destination folder, checked,
and only then renamed over the destination. MNIST files are checked by the
MD5 of their uncompressed content (LeCun et al., "THE MNIST DATABASE"), since
the same content is served under different gzip encodings.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from cnnlab.atomic_file import write_atomically
from cnnlab.data.idx import GZIP_MAGIC
from cnnlab.errors import DataError

Check = Callable[[Path], None]

USER_AGENT = "cnnlab (Python urllib)"
_CHUNK = 1 << 20


def content_md5(path: Path) -> str:
    """Hex MD5 of the file's content, gunzipped on the fly when it starts with the gzip magic."""
    digest = hashlib.md5()
    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if is_gzip else raw
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise DataError(f"{path.name}: no such file ({path})") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path.name}: corrupt gzip stream: {e}") from None
    return digest.hexdigest()


def md5_check(expected: str) -> Check:
    """A check that the uncompressed content of a file has MD5 `expected`."""

    def check(path: Path) -> None:
        actual = content_md5(path)
        if actual != expected.lower():
            raise DataError(f"MD5 of uncompressed content is {actual}, expected {expected}")

    return check


def download_file(
    urls: Sequence[str], dest: Path, check: Check | str | None = None, timeout: float = 30.0
) -> Path:
    """Download `dest` from the first of `urls` that serves a file passing `check`.

    `check` is a callable that raises DataError for a bad file, or a hex MD5
    of the uncompressed content. Only the given URLs (and the redirects they
    answer with) are contacted. Returns `dest`. Raises DataError, one line
    listing every URL tried and why it failed, when none succeeds.
    """
    dest = Path(dest)
    verify = md5_check(check) if isinstance(check, str) else check
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {dest.parent}: {e.strerror or e}") from None
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, verify, timeout)
            return dest
        except DataError as e:
            failures.append(f"{url} ({e})")
        except (OSError, http.client.HTTPException, ValueError) as e:
            failures.append(f"{url} ({_describe(e)})")
    tried = "; ".join(failures) if failures else "no URLs given"
    raise DataError(
        f"could not download {dest.name}: tried {tried}; "
        f"download it by hand and put it in {dest.parent}"
    )


def _fetch(url: str, dest: Path, verify: Check | None, timeout: float) -> None:
    """Stream `url` into a temporary file beside `dest`, verify it, rename it to `dest`."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length", "")
            declared = int(declared) if declared.isascii() and declared.isdigit() else None
            received = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
        if declared is not None and declared != received:
            raise DataError(f"incomplete: {received:,} of {declared:,} bytes")
        if received == 0:
            raise DataError("empty response")
        if verify is not None:
            verify(tmp)

    write_atomically(dest, write)


def _describe(error: BaseException) -> str:
    """A short one-line reason for a failed request."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
