"""Put a pinned MathJax 3 into _vendor/mathjax so that the built book renders its formulas offline.

    python scripts/vendor_mathjax.py     # run by scripts/build_book.sh and tests/test_book.py before a build

The `mathjax` package of the npm registry is fetched once with npm, checked against its pinned sha512,
unpacked into a cache shared by all checkouts ($CFBOOK_CACHE, default ~/.cache/cfbook) and copied into
_vendor/mathjax (git-ignored). _config.yml lists _vendor as a static path, so the build carries it as
_static/mathjax, and points `mathjax_path` there. When neither the cache nor npm and its registry can
provide it, the script says so in one line and writes a loader that takes the same version from the
CDN instead, so formulas still render where the reader is online.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "3.2.2"
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
ENTRY = "tex-mml-chtml.js"   # Sphinx's default MathJax 3 component: TeX and MathML input, HTML output
# The entry component plus what it loads on demand: TeX extensions, fonts, menu, accessibility, speech.
KEEP = (ENTRY, "input/", "output/chtml/", "ui/", "a11y/", "sre/", "adaptors/")
CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{VERSION}/es5/{ENTRY}"
ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "_vendor" / "mathjax"
STAMP = "VERSION"


def cache_dir() -> Path:
    """Where the unpacked package is kept for every checkout of this machine."""
    base = Path(os.environ.get("CFBOOK_CACHE", Path.home() / ".cache" / "cfbook"))
    return base / f"mathjax-{VERSION}"


def sri(path: Path) -> str:
    """Subresource-integrity string (``sha512-<base64>``) of a file, as the npm registry records it."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def npm_error(proc: subprocess.CompletedProcess) -> str:
    """npm's one-line summary of a failure (its --json error), else the first line it printed."""
    try:
        return json.loads(proc.stdout)["error"]["summary"]
    except (ValueError, KeyError, TypeError):
        return (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[0]


def npm_pack(workdir: Path) -> Path:
    """Download the pinned tarball with npm into ``workdir``; raise RuntimeError with npm's reason."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    cmd = [npm, "pack", f"mathjax@{VERSION}", "--json", "--pack-destination", str(workdir),
           "--fetch-retries=1", "--fetch-timeout=30000", "--loglevel=error"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        raise RuntimeError("npm pack timed out after 180 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack failed: {npm_error(proc)}")
    tarball = workdir / json.loads(proc.stdout)[0]["filename"]
    if sri(tarball) != INTEGRITY:
        raise RuntimeError(f"{tarball.name} does not match the pinned sha512")
    return tarball


def unpack(tarball: Path, target: Path) -> None:
    """Extract the licence and the KEEP part of ``es5/`` from the npm tarball into ``target``."""
    with tarfile.open(tarball) as tar:
        members = []
        for m in tar.getmembers():
            name = m.name.removeprefix("package/")
            if name == "LICENSE" or (name.startswith("es5/") and name[4:].startswith(KEEP)):
                m.name = name.removeprefix("es5/")
                members.append(m)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}   # Python >= 3.10.12
        tar.extractall(target, members=members, **safe)
    if not (target / ENTRY).is_file():
        raise RuntimeError(f"the mathjax@{VERSION} package has no es5/{ENTRY}")
    (target / STAMP).write_text(VERSION + "\n")


def fill_cache(cache: Path) -> None:
    """Fetch and unpack into a temporary folder next to ``cache``, then rename it (atomic)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(cache, ignore_errors=True)    # an incomplete copy (no VERSION stamp)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        unpack(npm_pack(Path(tmp)), Path(tmp) / "mathjax")
        try:
            os.replace(Path(tmp) / "mathjax", cache)
        except OSError:
            if not installed(cache):            # else another checkout filled it meanwhile
                raise


def installed(path: Path) -> bool:
    """Whether ``path`` holds a complete copy of the pinned version (not the CDN loader)."""
    stamp = path / STAMP
    return stamp.is_file() and stamp.read_text().strip() == VERSION and (path / ENTRY).is_file()


def write_cdn_loader(dest: Path) -> None:
    """A stand-in entry file that loads the same MathJax version from the CDN (needs a network)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest / ENTRY).write_text(
        f"// MathJax could not be vendored when this book was built: load mathjax@{VERSION} from the CDN.\n"
        f"(function () {{ var s = document.createElement('script'); s.src = '{CDN}'; s.async = true;\n"
        "  document.head.appendChild(s); }());\n")


def vendor(dest: Path = DEST) -> bool:
    """Make ``dest`` hold MathJax; True when it is the local copy, False when it is the CDN loader."""
    if installed(dest):
        return True
    cache = cache_dir()
    if not installed(cache):
        try:
            fill_cache(cache)
        except (RuntimeError, OSError, ValueError, tarfile.TarError) as err:
            print(f"[book] MathJax {VERSION} could not be vendored ({err}): the book will load it from the CDN",
                  file=sys.stderr)
            write_cdn_loader(dest)
            return False
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(cache, dest)
    print(f"[book] MathJax {VERSION} copied into {dest}", file=sys.stderr)
    return True


if __name__ == "__main__":
    vendor()
