"""Shared fixtures: a tiny synthetic dataset so unit tests run in milliseconds, and the real one when needed."""
from __future__ import annotations

import pytest
import torch

from cfutils.data import Dataset, load_dataset


@pytest.fixture
def tiny() -> Dataset:
    """10 classes of noisy 8x8 one-channel prototypes (40 train / 10 test each): learnable in a few steps."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.randn(10, 1, 8, 8, generator=g)

    def make(n_per_class: int):
        y = torch.arange(10).repeat_interleave(n_per_class)
        return prototypes[y] + torch.randn(len(y), 1, 8, 8, generator=g), y

    return Dataset("tiny", *make(40), *make(10), tuple(f"c{i}" for i in range(10)))


@pytest.fixture(scope="session")
def fmnist() -> Dataset:
    return load_dataset("fashion_mnist")
