"""Accuracy predictor: validation accuracy of a sub-net from its architecture, in microseconds.

Scoring one sub-net with inherited weights takes seconds (batch-norm recalibration plus a pass over
the validation split); a 60 x 50 NSGA-II run asks for thousands. As in once-for-all and RNC, a
regressor is fit on sub-nets scored for real and answers for the rest. Features are the space's
own (`space.features(arch)`, e.g. per stage and block position: present, kernel, expand), else a
one-hot of the genome. The model is chosen by cross-validated rank correlation among ridge
regression and RBF kernel ridge (scikit-learn): what matters to NSGA-II is the ranking, and both
are reliable with the 100-300 samples one can afford on a CPU. `fit` reports the rank correlation
(Spearman and Kendall) on sub-nets it was not fit on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xbarforge.errors import XbarforgeError
from xbarforge.search.space import Arch, SearchSpace

MIN_SAMPLES = 10


def arch_features(space: SearchSpace, arch: Arch) -> np.ndarray:
    """The space's features for `arch`, or a one-hot of its genome."""
    own = getattr(space, "features", None)
    if own is not None:
        return np.asarray(own(arch), dtype=np.float64)
    genome = space.encode(arch)
    out = np.zeros(sum(space.cardinalities))
    offset = 0
    for g, v in zip(space.genes, genome, strict=True):
        out[offset + v] = 1.0
        offset += g.cardinality
    return out


def _candidates() -> dict[str, Any]:
    return {
        "ridge": lambda: make_pipeline(StandardScaler(), Ridge(alpha=10.0)),
        "kernel-ridge": lambda: make_pipeline(StandardScaler(), KernelRidge(alpha=0.1, kernel="rbf", gamma=0.005)),
    }


def _rank(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    return float(spearmanr(a, b)[0]), float(kendalltau(a, b)[0])


@dataclass
class AccuracyPredictor:
    """Fit on (arch, accuracy) pairs; `predict` is what NSGA-II calls."""

    space: SearchSpace
    kind: str = ""
    model: Any = None
    report: dict[str, Any] = field(default_factory=dict)

    def fit(self, archs: Sequence[Arch], accuracies: Sequence[float], holdout: float = 0.25,
            seed: int = 0) -> AccuracyPredictor:
        """Choose the regressor by 5-fold CV on the fit part, report rank correlation on a held-out part,
        then refit on everything."""
        if len(archs) != len(accuracies) or len(archs) < MIN_SAMPLES:
            raise XbarforgeError(f"predictor: needs at least {MIN_SAMPLES} scored sub-nets, got {len(archs)}")
        x = np.stack([arch_features(self.space, a) for a in archs])
        y = np.asarray(accuracies, dtype=np.float64)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        n_test = max(3, int(round(holdout * len(y))))
        test, train = order[:n_test], order[n_test:]
        cv = {}
        for name, make in _candidates().items():
            preds = np.empty(len(train))
            for tr, va in KFold(5, shuffle=True, random_state=seed).split(train):
                preds[va] = make().fit(x[train[tr]], y[train[tr]]).predict(x[train[va]])
            cv[name] = _rank(preds, y[train])[0]
        self.kind = max(cv, key=lambda k: -np.inf if np.isnan(cv[k]) else cv[k])
        held = _candidates()[self.kind]().fit(x[train], y[train]).predict(x[test])
        spearman, kendall = _rank(held, y[test])
        self.model = _candidates()[self.kind]().fit(x, y)
        self.report = {"model": self.kind, "samples": len(y), "fit_samples": len(train), "holdout_samples": n_test,
                       "cv_spearman": cv, "holdout_spearman": spearman, "holdout_kendall": kendall,
                       "holdout_mae": float(np.mean(np.abs(held - y[test])))}
        return self

    def predict(self, arch: Arch) -> float:
        if self.model is None:
            raise XbarforgeError("predictor: not fitted")
        return float(self.model.predict(arch_features(self.space, arch)[None, :])[0])

    def predict_many(self, archs: Sequence[Arch]) -> np.ndarray:
        return self.model.predict(np.stack([arch_features(self.space, a) for a in archs]))
