"""The book's assertions: each chapter ends with claims about its own measured results.

``claim("EWC forgets less than fine-tuning", bwt_ewc > bwt_ft + 0.1, bwt_ewc=bwt_ewc, bwt_ft=bwt_ft)``
prints a check mark with the statement when the condition holds, the evidence on the lines below,
both wrapped to the width of the book's output column; otherwise it raises :class:`ClaimFailed`
whose message carries the statement and the evidence, so a regression in CI reads as a sentence of
the book that stopped being true.
"""
from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

WIDTH = 76  # characters: an output block of the rendered book holds 77 at 1280 px, 89 from 1440 px


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


def _wrap(text: str, first: str, rest: str) -> str:
    """``text`` wrapped to :data:`WIDTH` columns; the first line starts with ``first``, others ``rest``."""
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)


def claim(statement: str, condition: bool, **evidence: Any) -> None:
    """Assert ``condition``; print ``✓ statement`` and the evidence below it, or raise
    :class:`ClaimFailed` with both."""
    if not isinstance(statement, str) or not statement.strip():
        raise TypeError(f"claim: the statement must be a non-empty string, not {statement!r}")
    details = ", ".join(f"{k}={_fmt(v)}" for k, v in evidence.items())
    if not bool(condition):
        raise ClaimFailed(f"claim failed: {statement}" + (f" ({details})" if details else ""))
    print(_wrap(statement, "✓ ", "  "))
    if details:
        print(_wrap(details, "    ", "    "))
