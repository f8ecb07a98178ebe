"""(Re)compute the run records a chapter needs, by executing the chapter with the record store on.

    python scripts/refresh_results.py 02                 # chapter 2: train what is missing, re-execute
    python scripts/refresh_results.py --jobs 2 02 05     # independent runs in 2 processes
    python scripts/refresh_results.py --force 02         # re-train every record of chapter 2
    python scripts/refresh_results.py --backend ray --address auto 02   # on a Ray cluster

Records are written one by one as runs finish, so an interrupted refresh resumes where it stopped.
Executing the notebook writes its outputs (the committed notebook) and ``results/manifests/<chapter>.txt``,
the list of records it read: the reproduction test re-trains a sample of them, and ``--prune`` deletes
records that no manifest lists.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import execute  # noqa: E402

from cfutils.runs import results_dir  # noqa: E402


def chapter_notebooks(names: list[str]) -> list[Path]:
    """Notebooks whose file name starts with each given prefix (``02`` or ``02_ewc``)."""
    every = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not names:
        return every
    chosen = []
    for name in names:
        found = [p for p in every if p.stem.startswith(name)]
        if len(found) != 1:
            raise SystemExit(f"chapter {name!r} matches {[p.stem for p in found]}; give one of "
                             f"{[p.stem for p in every]}")
        chosen += found
    return chosen


def manifest_path(notebook: Path) -> Path:
    return results_dir() / "manifests" / f"{notebook.stem}.txt"


def listed(path: Path) -> list[str]:
    return sorted(set(path.read_text().split())) if path.exists() else []


def refresh(notebook: Path, force: bool) -> None:
    manifest = manifest_path(notebook)
    if force:
        for entry in listed(manifest):
            for suffix in (".json.gz", ".pt"):
                (results_dir() / f"{entry}{suffix}").unlink(missing_ok=True)
    with tempfile.NamedTemporaryFile("w+", suffix=".txt") as used:
        os.environ["CFUTILS_MANIFEST"] = used.name
        start = time.perf_counter()
        execute(notebook)
        entries = listed(Path(used.name))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(f"{e}\n" for e in entries))
    print(f"{notebook.stem}: {len(entries)} records, executed in {time.perf_counter() - start:.0f} s")


def prune() -> None:
    keep = {e for m in (results_dir() / "manifests").glob("*.txt") for e in listed(m)}
    for record in results_dir().glob("*/*.json.gz"):
        entry = f"{record.parent.name}/{record.name.removesuffix('.json.gz')}"
        if entry not in keep:
            record.unlink()
            record.with_name(record.name.replace(".json.gz", ".pt")).unlink(missing_ok=True)
            print(f"pruned {entry}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter prefixes, e.g. 02 05 (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs (processes or Ray workers)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray instance)")
    parser.add_argument("--force", action="store_true", help="re-train the chapter's existing records")
    parser.add_argument("--prune", action="store_true", help="delete records no chapter lists")
    args = parser.parse_args()
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs} must be >= 1")
    notebooks = chapter_notebooks(args.chapters)
    os.environ.update(CFUTILS_JOBS=str(args.jobs), CFUTILS_BACKEND=args.backend, CFUTILS_RECORDS="on")
    if args.address:
        os.environ["CFUTILS_RAY_ADDRESS"] = args.address
    for notebook in notebooks:
        refresh(notebook, args.force)
    if args.prune:
        prune()


if __name__ == "__main__":
    main()
