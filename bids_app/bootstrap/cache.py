"""Resume store for finished bootstrap refits: one small .npy per resample.

A double bootstrap is hundreds of MAP fits; a crash or a pre-empted cluster job must
not throw the finished ones away. Each refit is written under a directory named by a
hash of everything that determines it (data, estimate, TR, resampling scheme and its
settings, seed and the refit's own settings), so a changed input can never reuse a stale
result, while a larger B or R reuses every resample already computed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import joblib
import numpy as np

from bids_app.digest import array_digest
from bids_app.errors import OutputError
from bids_app.io.atomic import write_with


def refit_token(refit: object) -> str:
    """What identifies a refit's settings: its ``cache_token`` attribute when it has one
    (preferred: it can leave out counters and caches), else a hash of its pickle."""
    token = getattr(refit, "cache_token", None)
    return str(token) if token is not None else joblib.hash(refit)


def cache_key(key: list, theta_t_hat: np.ndarray, seed: int, refit: object, scheme: str
              ) -> str:
    """Hex key of one bootstrap problem: ``key`` lists the data and protocol (arrays and
    scalars), ``scheme`` identifies the resampling and its settings (B, R, the mode and
    the bias correction are left out on purpose: they do not change any refit)."""
    parts = [array_digest(np.asarray(x)) if np.ndim(x) else repr(np.asarray(x).item())
             for x in key]
    parts += [array_digest(theta_t_hat), repr(int(seed)), refit_token(refit), scheme]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class RefitCache:
    """Finished refits of one bootstrap problem under ``root / bootstrap-<key>``."""

    def __init__(self, root: str | os.PathLike, key: str):
        self.folder = Path(root) / f"bootstrap-{key[:20]}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(
                f"cannot create bootstrap cache {self.folder}: {err.strerror}; "
                "pass a writable work directory"
            ) from err

    def path(self, b: int, r: int) -> Path:
        """File of outer resample ``b`` (r = 0) or its inner resample ``r`` ≥ 1."""
        return self.folder / f"b{b:04d}_r{r:03d}.npy"

    def load(self, b: int, r: int) -> np.ndarray | None:
        """The stored refit, or None when absent or unreadable (then it is redone)."""
        path = self.path(b, r)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None

    def save(self, b: int, r: int, theta_t: np.ndarray) -> None:
        """Write atomically, so a killed job never leaves a half-written refit."""
        write_with(self.path(b, r),
                   lambda tmp: np.save(tmp, np.asarray(theta_t), allow_pickle=False))
