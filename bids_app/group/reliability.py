"""Test–retest reliability from repeated maps, accumulated one participant at a time.

ICC(3,1) (two-way mixed, consistency, single measurement; Shrout & Fleiss 1979) per
feature (vertex or parcel) from the two-way ANOVA mean squares of an n × k table
(participants × repeats). The sums behind the mean squares are accumulated participant by
participant, so memory is O(k · features) whatever the number of participants. A
participant enters a feature only when all k repeats have a value there.
"""

from __future__ import annotations

import numpy as np


class ReliabilityAccumulator:
    """Streaming sums for ICC(3,1), the within-participant CV and the mean participant SE."""

    def __init__(self, n_repeats: int, n_features: int) -> None:
        self.k = n_repeats
        self.n = np.zeros(n_features)
        self.col_sum = np.zeros((n_repeats, n_features))
        self.row_mean_sq = np.zeros(n_features)
        self.total_sq = np.zeros(n_features)
        self.se_sq = np.zeros(n_features)
        self.se_n = np.zeros(n_features)

    def add(self, repeats: np.ndarray, se: np.ndarray | None = None) -> None:
        """One participant's (k, features) estimates and, optionally, their SEs."""
        repeats = np.asarray(repeats, float)[: self.k]
        ok = np.isfinite(repeats).all(axis=0)
        x = np.where(ok, repeats, 0.0)
        self.n += ok
        self.col_sum += x
        self.row_mean_sq += x.mean(axis=0) ** 2
        self.total_sq += (x**2).sum(axis=0)
        if se is not None:
            se = np.asarray(se, float)[: self.k]
            good = ok & np.isfinite(se).all(axis=0)
            self.se_sq += np.where(good, se**2, 0.0).sum(axis=0)
            self.se_n += good * self.k

    def result(self) -> dict[str, np.ndarray]:
        """icc, within-participant CV and SD, between-participant SD, RMS participant SE, n."""
        n, k = self.n, self.k
        with np.errstate(divide="ignore", invalid="ignore"):
            grand = self.col_sum.sum(axis=0) / (n * k)
            correction = n * k * grand**2
            ss_total = self.total_sq - correction
            ss_rows = k * self.row_mean_sq - correction
            ss_cols = (self.col_sum**2).sum(axis=0) / n - correction
            ss_error = np.maximum(ss_total - ss_rows - ss_cols, 0.0)
            ms_rows = ss_rows / (n - 1)
            ms_error = ss_error / ((n - 1) * (k - 1))
            icc = (ms_rows - ms_error) / (ms_rows + (k - 1) * ms_error)
            within_var = np.maximum(ss_total - ss_rows, 0.0) / (n * (k - 1))
            within_sd = np.sqrt(within_var)
            between_sd = np.sqrt(np.maximum(ms_rows - ms_error, 0.0) / k)
            cv = within_sd / np.abs(grand)
            mean_se = np.sqrt(self.se_sq / self.se_n)
        enough = n >= 2
        out = {
            "icc": icc,
            "cv": cv,
            "withinsd": within_sd,
            "betweensd": between_sd,
            "meanse": mean_se,
        }
        out = {name: np.where(enough, value, np.nan) for name, value in out.items()}
        out["n"] = n.copy()
        return out
