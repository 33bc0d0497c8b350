"""One job per participant and OUTPUT_DIR at a time: an ``flock`` on a per-participant file.

Two identical jobs started on one OUTPUT_DIR (a resubmitted array task, a double click)
used to both do the full work. The second now waits for the first to finish, then finds
the participant finished and skips it. The lock is released by the kernel when the
holder exits, however it exits, so a killed job never blocks the next one; the lock
file itself stays (removing it would race with a job about to lock it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from bids_app.errors import OutputError
from bids_app.io.dataset_description import FINISHED_DIR

LOGGER = logging.getLogger(__name__)


def lock_path(output_dir: Path | str, subject: str) -> Path:
    """``OUTPUT_DIR/logs/.sub-<label>.lock`` (hidden, under the BIDS-ignored logs/)."""
    return Path(output_dir) / FINISHED_DIR / f".sub-{subject}.lock"


@contextlib.contextmanager
def participant_lock(output_dir: Path | str, subject: str) -> Iterator[None]:
    """Hold the participant's lock, waiting (and saying so) while another job holds it."""
    path = lock_path(output_dir, subject)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {exc.strerror}; choose a writable "
                          "OUTPUT_DIR") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                LOGGER.warning("no flock on %s (%s): sub-%s runs unlocked", path, exc, subject)
            else:
                LOGGER.warning("sub-%s is being processed by another job on this OUTPUT_DIR "
                               "(%s): waiting for it", subject, path)
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
