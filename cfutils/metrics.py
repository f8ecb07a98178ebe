r"""Continual-learning metrics from the accuracy matrix.

:math:`R \in [0,1]^{T\times T}`, :math:`R_{i,j}` = test accuracy on task :math:`j` after learning task
:math:`i` (rows: time, columns: tasks; the upper triangle is accuracy on tasks not yet seen). Definitions
follow Lopez-Paz & Ranzato (2017, GEM) and Chaudhry et al. (2018) for forgetting. Libraries differ:
Avalanche's *forgetting* uses the accuracy right after learning a task (:math:`R_{j,j}`), Mammoth's and
ours the best earlier accuracy; the GEM code averages BWT/FWT over :math:`T` instead of :math:`T-1`.
"""
from __future__ import annotations

import numpy as np


def _check(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 1:
        raise ValueError(f"the accuracy matrix must be square T x T, got shape {R.shape}")
    return R


def acc(R: np.ndarray) -> float:
    r"""Average final accuracy: :math:`\mathrm{ACC} = \frac1T \sum_{j=1}^{T} R_{T,j}`."""
    R = _check(R)
    return float(R[-1].mean())


def bwt(R: np.ndarray) -> float:
    r"""Backward transfer: :math:`\mathrm{BWT} = \frac{1}{T-1} \sum_{j=1}^{T-1} (R_{T,j} - R_{j,j})`; negative = forgetting."""
    R = _check(R)
    T = len(R)
    return float(np.mean([R[-1, j] - R[j, j] for j in range(T - 1)])) if T > 1 else 0.0


def fwt(R: np.ndarray, random_init: np.ndarray) -> float:
    r"""Forward transfer: :math:`\mathrm{FWT} = \frac{1}{T-1} \sum_{j=2}^{T} (R_{j-1,j} - b_j)`.

    :math:`b_j` is the accuracy on task :math:`j` of the randomly initialised model.
    """
    R, b = _check(R), np.asarray(random_init, dtype=float)
    T = len(R)
    if b.shape != (T,):
        raise ValueError(f"random_init must hold one accuracy per task ({T}), got shape {b.shape}")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)])) if T > 1 else 0.0


def forgetting_per_task(R: np.ndarray, reference: str = "best") -> np.ndarray:
    r"""Forgetting of each task but the last: :math:`f_j = \max_{j \le l < T} R_{l,j} - R_{T,j}` (``"best"``,
    Chaudhry et al. 2018, Mammoth: the best accuracy once task j was learned) or
    :math:`f_j = R_{j,j} - R_{T,j}` (``"just_trained"``, Avalanche)."""
    R = _check(R)
    T = len(R)
    if reference not in ("best", "just_trained"):
        raise ValueError(f"reference={reference!r}; choose 'best' or 'just_trained'")
    if reference == "best":
        return np.array([R[j:T - 1, j].max() - R[-1, j] for j in range(T - 1)])
    return np.array([R[j, j] - R[-1, j] for j in range(T - 1)])


def forgetting(R: np.ndarray, reference: str = "best") -> float:
    r"""Average forgetting :math:`F = \frac1{T-1}\sum_{j<T} f_j` (see :func:`forgetting_per_task`)."""
    f = forgetting_per_task(R, reference)
    return float(f.mean()) if len(f) else 0.0


def summary(R: np.ndarray, random_init: np.ndarray | None = None) -> dict[str, float]:
    """ACC, BWT, forgetting and (with the random-init accuracies) FWT, as a dict."""
    out = {"ACC": acc(R), "BWT": bwt(R), "forgetting": forgetting(R)}
    if random_init is not None:
        out["FWT"] = fwt(R, random_init)
    return out
