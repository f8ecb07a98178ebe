"""Fine-tuning: train on each new task with nothing to protect the old ones (the lower bound)."""
from __future__ import annotations

from .base import Method


class Naive(Method):
    """Plain sequential fine-tuning; every hook keeps the behaviour of :class:`Method`."""

    name = "naive"
