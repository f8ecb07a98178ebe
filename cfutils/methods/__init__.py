"""Continual-learning methods: one short file each, all built on the hooks of :class:`Method`."""
from .base import Method
from .joint import Joint
from .naive import Naive

__all__ = ["Method", "Naive", "Joint"]
