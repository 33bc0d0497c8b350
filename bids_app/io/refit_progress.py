"""How much bootstrap work an interrupted job leaves for its resume, from the work dir.

Reads (never writes) the layout of :class:`bids_app.bootstrap.cache.RefitCache`:
``WORK/bootstrap/<run>_hemi-<H>/bootstrap-<key>/b<bbbb>_r<rrr>.npy``, one file per
finished refit, where r = 0 is an outer resample and r ≥ 1 its inner ones.
"""

from __future__ import annotations

import re
from pathlib import Path

_REFIT = re.compile(r"b(\d{4})_r(\d{3})\.npy")


def refits_kept(work_dir: Path, mode: str, n_boot: int, n_inner: int,
                since: float) -> tuple[int, int]:
    """(refits on disk, refits planned) over the bootstrap problems this job touched
    (cache folders modified at or after ``since``, a ``time.time()``); (0, 0) when none
    was started or ``mode`` is ``none``."""
    inner = n_inner if mode == "double" else 0
    if mode not in ("single", "double"):
        return 0, 0
    kept = planned = 0
    for folder in sorted(Path(work_dir, "bootstrap").glob("*/bootstrap-*")):
        if not folder.is_dir() or folder.stat().st_mtime < since:
            continue
        planned += n_boot * (inner + 1)
        for path in folder.iterdir():
            match = _REFIT.fullmatch(path.name)
            if match and int(match[1]) < n_boot and int(match[2]) <= inner:
                kept += 1
    return kept, planned
