"""Writing files so that a crash leaves either the old file or the new one, never half.

The new content goes to a temporary file beside the target (`.NAME.XXXX.tmp`), is flushed
to the disk (fsync), renamed over the target (atomic on POSIX) and the directory is
fsynced, so that the rename itself survives a power cut. Until the rename the previous
file is untouched; a process killed mid-write leaves only its temporary file, which
`remove_stale_temporaries` clears. A failed write (a full disk, a read-only directory)
raises the OSError and removes the temporary file.

For tests of crash safety, CNNLAB_TEST_PAUSE_IN_WRITE_S=SECONDS makes
`write_bytes_atomically` pause halfway through its data, so that a kill can land inside
a write.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PAUSE_ENV = "CNNLAB_TEST_PAUSE_IN_WRITE_S"


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private: give a new file's mode
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module's docstring)."""
    view = memoryview(data)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            half = len(view) // 2
            f.write(view[:half])
            pause = float(os.environ.get(PAUSE_ENV) or 0)
            if pause > 0:  # tests only: hold the write open, half done
                f.flush()
                time.sleep(pause)
            f.write(view[half:])

    write_atomically(path, write)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files that killed writes left in `folder`; the caller must be
    the only writer there (cnnlab.training.run_lock). Returns what it deleted."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _fsync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable; file systems that cannot fsync a directory
    (some network ones) are left to their own guarantees."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
