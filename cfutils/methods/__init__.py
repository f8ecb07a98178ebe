"""Continual-learning methods: one short file each, all built on the hooks of :class:`Method`."""
from .base import Method
from .ewc import EWC, OnlineEWC
from .joint import Joint
from .mas import MAS
from .naive import Naive
from .quadratic import QuadraticPenalty
from .si import SI

__all__ = ["Method", "Naive", "Joint"]
__all__ += ["QuadraticPenalty", "EWC", "OnlineEWC", "SI", "MAS"]
