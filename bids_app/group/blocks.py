"""Vertex blocks of the participant store, computed here or as tasks on a Dask cluster.

Every per-vertex computation of the group level is a module-level function of a
:class:`~bids_app.io.spill.SpillReader` and a vertex block that reads its block from the
store itself: a task carries a few numbers, not data, and its memory is set by the block
size, not by the number of participants. The same function
on the same block gives the same numbers here or on a worker, so the maps do not depend
on where they were computed. On a cluster the workers must see the store's folder, the
work directory (``-w``), on a shared filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from bids_app.errors import OutputError


class BlockRunner:
    """Runs block tasks in this process, or on a Dask ``Client`` when given one."""

    def __init__(self, client: Any | None = None) -> None:
        self.client = client

    def map(self, task: Callable[..., Any], calls: Sequence[tuple]) -> list[Any]:
        """``task(*args)`` for each ``args`` in ``calls``, results in the same order."""
        if self.client is None:
            return [task(*args) for args in calls]
        futures = [self.client.submit(task, *args, pure=False) for args in calls]
        try:
            return self.client.gather(futures)
        except FileNotFoundError as exc:
            raise OutputError(
                f"the Dask workers cannot read the group work files ({exc.filename}); pass "
                "-w a folder on a filesystem the workers share"
            ) from exc
        finally:
            for future in futures:
                future.release()


@contextmanager
def block_runner(scheduler: str | None) -> Iterator[BlockRunner]:
    """A runner on the Dask scheduler at ``scheduler`` (an address), else in this process."""
    if not scheduler:
        yield BlockRunner()
        return
    from distributed import Client

    with Client(scheduler) as client:
        yield BlockRunner(client)
