"""The vertex-wise group model, one block of vertices at a time: mean/SD/N, the
random-effects fit of the group design and test–retest reliability.

Each ``_task`` reads its block of the participant store and is run by a
:class:`~bids_app.group.blocks.BlockRunner` (here, or on a Dask cluster). Tasks import
only this stage and :mod:`bids_app.io.spill`, so a worker starts them quickly.
"""

from __future__ import annotations

import numpy as np

from bids_app.group.blocks import BlockRunner
from bids_app.group.descriptive import vertex_stats
from bids_app.group.random_effects import (
    RandomEffectsFit,
    concatenate,
    moderate_tau2,
    random_effects,
)
from bids_app.group.reliability import ReliabilityAccumulator
from bids_app.io.spill import SpillReader

GROUP_STATS = ("mean", "sd", "n")


def estimate_name(param: str) -> str:
    """Store array of the participants' estimates of ``param`` (natural units)."""
    return f"estimate_{param}"


def latent_names(param: str) -> tuple[str, str]:
    """Store arrays of the latent estimates of ``param`` and their variances."""
    return f"latent_{param}", f"variance_{param}"


def retest_names(param: str, repeat: int) -> tuple[str, str]:
    """Store arrays of repeat ``repeat`` of ``param`` in test–retest: estimates and SEs."""
    return f"retest_{param}_{repeat}", f"retestse_{param}_{repeat}"


def _stats_task(reader: SpillReader, param: str, n_rows: int, block: slice) -> dict:
    return vertex_stats(reader.read(estimate_name(param), slice(0, n_rows), block))


def group_stats(runner: BlockRunner, reader: SpillReader, param: str, n_rows: int,
                blocks: list[slice]) -> dict[str, np.ndarray]:
    """Mean, SD and N of ``param`` over the first ``n_rows`` participants."""
    pieces = runner.map(_stats_task, [(reader, param, n_rows, b) for b in blocks])
    return {stat: np.concatenate([p[stat] for p in pieces]) for stat in GROUP_STATS}


def _random_effects_task(reader: SpillReader, param: str, rows: np.ndarray, x: np.ndarray,
                         block: slice, weights: np.ndarray | None = None) -> RandomEffectsFit:
    latent, variance = latent_names(param)
    return random_effects(np.asarray(reader.read(latent, rows, block), float),
                          np.asarray(reader.read(variance, rows, block), float), x, weights)


def _tau2_task(reader: SpillReader, param: str, rows: np.ndarray, x: np.ndarray,
               block: slice) -> np.ndarray:
    return _random_effects_task(reader, param, rows, x, block).tau2


def fit_random_effects(runner: BlockRunner, reader: SpillReader, param: str, rows: np.ndarray,
                       x: np.ndarray, blocks: list[slice]) -> RandomEffectsFit:
    """The random-effects fit of design ``x`` (store rows ``rows``) at every vertex.

    Two passes: every vertex's own τ̂², then the fit weighted by τ² moderated toward the
    median over all vertices (:func:`bids_app.group.random_effects.moderate_tau2`).
    """
    calls = [(reader, param, rows, x, b) for b in blocks]
    weights = moderate_tau2(np.concatenate(runner.map(_tau2_task, calls)))
    return concatenate(runner.map(_random_effects_task,
                                  [(*call, weights[call[-1]]) for call in calls]))


def _retest_task(reader: SpillReader, param: str, repeats: int, n_rows: int,
                 block: slice) -> dict[str, np.ndarray]:
    rows = slice(0, n_rows)
    names = [retest_names(param, j) for j in range(repeats)]
    estimates = np.stack([reader.read(est, rows, block) for est, _ in names], axis=1)
    ses = np.stack([reader.read(se, rows, block) for _, se in names], axis=1)
    accumulator = ReliabilityAccumulator(repeats, block.stop - block.start)
    for estimate, se in zip(estimates, ses, strict=True):  # participants in store order
        accumulator.add(estimate, se)
    return accumulator.result()


def retest_stats(runner: BlockRunner, reader: SpillReader, param: str, repeats: int,
                 n_rows: int, blocks: list[slice]) -> dict[str, np.ndarray]:
    """ICC(3,1), CV, within/between SD, RMS SE and N of ``param`` at every vertex over the
    first ``n_rows`` participants' ``repeats`` repeated maps."""
    pieces = runner.map(_retest_task, [(reader, param, repeats, n_rows, b) for b in blocks])
    return {stat: np.concatenate([p[stat] for p in pieces]) for stat in pieces[0]}
