"""Shared fixtures: a tiny synthetic dataset so unit tests run in milliseconds, the real one when needed,
and the HTML book, built once per test run however many pytest-xdist workers ask for it."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent


def build_book(out: Path) -> str:
    """Vendor MathJax, then build the book into ``out`` from a clean folder with warnings as errors.
    Returns "" on success, else the reason (the tail of the build log)."""
    vendor = subprocess.run([sys.executable, str(ROOT / "scripts" / "vendor_mathjax.py")],
                            capture_output=True, text=True, timeout=300)
    if vendor.returncode != 0:
        return f"scripts/vendor_mathjax.py failed:\n{vendor.stderr[-3000:]}"
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "--all", "-W", "-n",
                           "--keep-going"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return f"book build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return ""


@pytest.fixture(scope="session")
def book_html(tmp_path_factory, worker_id: str) -> Path:
    """``_build/html`` of a fresh book build, shared by the xdist workers of this run through a file lock
    (CFBOOK_HTML=/path/to/_build/html checks an existing build instead)."""
    if os.environ.get("CFBOOK_HTML"):
        html = Path(os.environ["CFBOOK_HTML"])
        if not (html / "index.html").is_file():
            pytest.fail(f"CFBOOK_HTML={html} is not a built book (no index.html)")
        return html
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent              # one folder for all workers of this run
    out, status = shared / "book", shared / "book.status"
    with open(shared / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # the first worker builds, the others wait and reuse
        if not status.exists():
            status.write_text(build_book(out) or "ok")
    reason = status.read_text()
    if reason != "ok":
        pytest.fail(reason, pytrace=False)
    return out / "_build" / "html"
