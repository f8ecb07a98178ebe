"""Reproducibility: seeding, determinism, device choice, profiles and parameter validation.

Every notebook calls :func:`seed_everything` once and validates its papermill parameters with the
``check_*`` helpers *before* any long work starts, so a wrong value fails in seconds with a message
that names the parameter and what it may be.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

PROFILES = ("smoke", "book", "full")


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed python, numpy and torch; turn on deterministic algorithms; return a seeded CPU generator."""
    check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def pick_device(preference: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; otherwise the named device, checked to exist."""
    check_choice("device", preference, ("auto", "cpu", "cuda", "mps"))
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[preference]:
        raise ValueError(f"device={preference!r} is not available on this machine; use device='auto' or 'cpu'")
    return torch.device(preference)


def resolve_profile(profile: str, table: Mapping[str, Mapping[str, Any]], **overrides: Any) -> dict[str, Any]:
    """Return ``table[profile]`` updated with the overrides that are not ``None``.

    ``table`` maps each of :data:`PROFILES` to the chapter's settings; an override names a setting
    that the reader fixed explicitly (a papermill parameter left at ``None`` keeps the profile's value).
    """
    check_choice("profile", profile, tuple(table))
    settings = dict(table[profile])
    for name, value in overrides.items():
        if name not in settings:
            raise ValueError(f"unknown setting {name!r}; the profile defines {sorted(settings)}")
        if value is not None:
            settings[name] = value
    return settings


def progress_enabled() -> bool:
    """Progress bars are on for people and off for headless runs (``CFUTILS_PROGRESS=0``)."""
    return os.environ.get("CFUTILS_PROGRESS", "1") not in ("0", "false", "no")


def progress(iterable: Iterable, **kwargs: Any) -> Iterable:
    """``tqdm.auto`` around ``iterable`` when progress bars are enabled, else the iterable itself."""
    if not progress_enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# ---------------------------------------------------------------- parameter validation
def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Fail unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> None:
    """Fail unless ``value`` is an integer in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}={value!r} must be an integer")
    _check_range(name, value, minimum, maximum)


def check_float(name: str, value: Any, minimum: float | None = None, maximum: float | None = None,
                positive: bool = False) -> None:
    """Fail unless ``value`` is a real number in ``[minimum, maximum]`` (and > 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name}={value!r} must be a number")
    if not np.isfinite(value):
        raise ValueError(f"{name}={value!r} must be finite")
    if positive and value <= 0:
        raise ValueError(f"{name}={value!r} must be positive")
    _check_range(name, value, minimum, maximum)


def check_divides(name: str, value: int, total: int, what: str) -> None:
    """Fail unless ``value`` divides ``total`` (e.g. classes per task must divide the classes)."""
    check_int(name, value, minimum=1)
    if total % value:
        raise ValueError(f"{name}={value} does not divide the {total} {what}; pick a divisor of {total}")


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}={value!r} must be <= {maximum}")
