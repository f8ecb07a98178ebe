"""Experiments over seeds: run named variants of a spec on several seeds, tabulate mean ± sd, and
check that the training budget has converged.

Every comparison the book draws is made over seeds; these helpers keep that to one line in a chapter.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .runs import Record, RunSpec, run_many


def over_seeds(variants: Mapping[str, RunSpec], seeds: Sequence[int], *, store: bool = True,
               device: str = "auto", desc: str = "runs") -> dict[str, list[Record]]:
    """Records of every variant on every seed, trained as one grid (so ``jobs`` can run them in parallel)."""
    specs = [spec.replace(seed=s) for spec in variants.values() for s in seeds]
    records = iter(run_many(specs, store=store, device=device, desc=desc))
    return {name: [next(records) for _ in seeds] for name in variants}


def metric(records: Sequence[Record], fn: Callable[[Record], float] | str) -> np.ndarray:
    """One number per seed: a summary metric by name (``"ACC"``, ``"BWT"``, ...) or any function."""
    return np.array([r.summary()[fn] if isinstance(fn, str) else fn(r) for r in records])


def mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``"0.812 ± 0.004"`` (sample standard deviation over seeds)."""
    v = np.asarray(values, dtype=float)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f}"


def summary_table(runs: Mapping[str, Sequence[Record]], columns: Sequence[str] = ("ACC", "BWT", "forgetting"),
                  label: Callable[[str], str] = str) -> pd.DataFrame:
    """Mean ± sd over seeds of each summary metric, one row per variant."""
    return pd.DataFrame({label(name): {c: mean_sd(metric(recs, c)) for c in columns}
                         for name, recs in runs.items()}).T


def mean_matrix(records: Sequence[Record]) -> np.ndarray:
    """The accuracy matrix averaged over seeds."""
    return np.mean([r.R for r in records], axis=0)


def convergence(joint: RunSpec, seeds: Sequence[int], factor: int = 4, store: bool = True,
                device: str = "auto") -> dict[str, float]:
    """Final ACC of joint training at the spec's budget and at ``factor`` times its epochs (seed means).

    The book's rule: a budget has converged when the two differ by at most 0.02.
    """
    runs = over_seeds({"budget": joint, "longer": joint.replace(epochs=factor * joint.epochs)}, seeds,
                      store=store, device=device, desc="convergence")
    acc = {name: float(metric(recs, "ACC").mean()) for name, recs in runs.items()}
    return {"epochs": joint.epochs, "ACC": acc["budget"], f"epochs x{factor}": factor * joint.epochs,
            f"ACC x{factor}": acc["longer"], "gap": acc["longer"] - acc["budget"]}
