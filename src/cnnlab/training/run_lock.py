"""One process at a time writes a run directory: an exclusive flock on RUN_DIR/run.lock.

An flock belongs to the open file, and the kernel drops it when the process ends in any
way, SIGKILL and power cuts included, so a lock never outlives its holder and never
blocks the resumption of a killed run. A second process that finds it held gets a
one-line error naming the holder's process id (written into the file).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO

from cnnlab.errors import CnnlabError

LOCK_NAME = "run.lock"


class RunLock:
    """The lock on `run_dir`; `acquire` is idempotent, `release` lets go of it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock, or raise CnnlabError when another process holds it."""
        if self._file is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise CnnlabError(
                f"{self.run_dir}: another process (pid {holder}) is writing this run "
                "directory; wait for it to end or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is None:
            return
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
