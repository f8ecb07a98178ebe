"""cfutils: the shared helpers of the catastrophic-forgetting book.

``data`` (datasets and task streams) -> ``train`` (one loop, any ``methods.Method``) -> ``metrics``
(accuracy matrix to ACC/BWT/FWT/forgetting) -> ``plots`` and ``claims``; ``repro`` for seeds,
devices, profiles and parameter checks.
"""
__version__ = "0.1.0"
