"""Execute notebooks in place with their default (``book``) parameters: the committed outputs.

    python scripts/execute_notebooks.py                      # every notebook in _toc.yml order
    python scripts/execute_notebooks.py notebooks/02_ewc.ipynb

nbclient, not papermill (papermill adds per-cell timing metadata); progress bars off; no timing
metadata, so re-executing an unchanged notebook gives an unchanged file (figures included).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
VOLATILE_CELL_KEYS = ("execution", "papermill")


def clean(nb: nbformat.NotebookNode) -> None:
    """Drop papermill/execution metadata and make the kernelspec the plain ``python3`` one."""
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)


def execute(path: Path, timeout: int = 1800) -> float:
    nb = nbformat.read(path, as_version=4)
    clean(nb)
    # one torch thread, as under strict nbval (scripts/test.sh): reductions split over threads
    # round differently, and a committed output must be what the test re-computes
    os.environ.update(CFUTILS_PROGRESS="0", PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
                      PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    NotebookClient(nb, kernel_name="python3", timeout=timeout, record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    clean(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(args: list[str]) -> None:
    paths = [Path(a).resolve() for a in args] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in paths:
        print(f"executing {path.relative_to(ROOT)} ...", flush=True)
        print(f"  done in {execute(path):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
