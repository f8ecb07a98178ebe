"""The book's assertions: each chapter ends with claims about its own measured results.

``claim("EWC forgets less than fine-tuning", bwt_ewc > bwt_ft + 0.1, bwt_ewc=bwt_ewc, bwt_ft=bwt_ft)``
prints a check mark with the statement when the condition holds, and otherwise raises
:class:`ClaimFailed` whose message carries the statement and the evidence, so a regression in CI
reads as a sentence of the book that stopped being true.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class ClaimFailed(AssertionError):
    """A chapter's claim did not hold for the results just computed."""


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    if isinstance(value, np.ndarray):
        return np.array2string(np.asarray(value, dtype=float), precision=3, suppress_small=True)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (float, np.floating)) for v in value):
        return "[" + ", ".join(f"{float(v):.3f}" for v in value) + "]"
    return repr(value)


def claim(statement: str, condition: bool, **evidence: Any) -> None:
    """Assert ``condition``; print ``✓ statement`` or raise :class:`ClaimFailed` with the evidence."""
    details = ", ".join(f"{k}={_fmt(v)}" for k, v in evidence.items())
    if not bool(condition):
        raise ClaimFailed(f"claim failed: {statement}" + (f" ({details})" if details else ""))
    print(f"✓ {statement}" + (f"  [{details}]" if details else ""))
