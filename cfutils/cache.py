"""Records of runs that are not :class:`~cfutils.runs.RunSpec` runs (chapter 8's language models,
chapter 4's multi-task pairs): small gzipped JSON files under ``results/<folder>/``, keyed by a spec hash.

:func:`cached` returns the stored result of a specification (a JSON-able dict) or computes and stores it
(atomic write). A file written for another specification, an unreadable file or an old format is
reported in one line and re-computed, never used. ``CFUTILS_RECORDS=off`` computes everything live and
writes nothing; ``store=False`` (the smoke profile) neither reads nor writes. Curves and metrics are
stored; a small model's weights may be kept beside a record (:func:`weights_path`), written by its owner.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .data import atomic_write_bytes
from .runs import records_enabled, results_dir

FORMAT = 1           # bump when the layout or the meaning of a stored result changes


def _canonical(spec: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(spec, sort_keys=True))


def key(kind: str, spec: dict[str, Any]) -> str:
    """``<kind>-<16 hex digits of the spec's hash>``."""
    blob = json.dumps({"kind": kind, "spec": _canonical(spec)}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def path(folder: str, kind: str, spec: dict[str, Any], root: Path | None = None) -> Path:
    return (root or results_dir()) / folder / f"{key(kind, spec)}.json.gz"


def weights_path(folder: str, kind: str, spec: dict[str, Any], root: Path | None = None) -> Path:
    """``<key>.pt`` beside the record of ``spec`` (pruned and refreshed with it)."""
    return (root or results_dir()) / folder / f"{key(kind, spec)}.pt"


def load(folder: str, kind: str, spec: dict[str, Any], root: Path | None = None) -> Any | None:
    """The stored result, or None (with a one-line reason when a file was there but unusable)."""
    file = path(folder, kind, spec, root)
    if not file.exists():
        return None
    try:
        saved = json.loads(gzip.decompress(file.read_bytes()))
        problem = ("an old format" if saved.get("format") != FORMAT else
                   "another specification" if saved.get("spec") != _canonical(spec) else None)
    except (OSError, EOFError, ValueError, KeyError) as err:
        problem = f"an unreadable file ({type(err).__name__})"
    if problem:
        print(f"[records] {file.name} holds {problem}; re-computing it", file=sys.stderr)
        return None
    return saved["result"]


def save(folder: str, kind: str, spec: dict[str, Any], result: Any,
         root: Path | None = None) -> Path:
    """Write ``result`` for ``spec`` atomically (temporary file + rename)."""
    file = path(folder, kind, spec, root)
    blob = gzip.compress(json.dumps({"format": FORMAT, "kind": kind, "spec": _canonical(spec),
                                     "result": result}, sort_keys=True).encode(), mtime=0)
    atomic_write_bytes(blob, file)
    return file


def _note_in_manifest(folder: str, kind: str, spec: dict[str, Any]) -> None:
    manifest = os.environ.get("CFUTILS_MANIFEST")
    if manifest:
        with open(manifest, "a") as f:
            f.write(f"{folder}/{key(kind, spec)}\n")


def cached(folder: str, kind: str, spec: dict[str, Any], compute: Callable[[], Any],
           store: bool = True) -> Any:
    """The result of ``spec``: from ``results/<folder>/``, or ``compute()`` now (and stored)."""
    use = store and records_enabled()
    if use:
        _note_in_manifest(folder, kind, spec)
        found = load(folder, kind, spec)
        if found is not None:
            return found
    result = _canonical({"r": compute()})["r"]
    if use:
        save(folder, kind, spec, result)
    return result
