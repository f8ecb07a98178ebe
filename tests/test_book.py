"""The book builds from a clean output folder with warnings as errors; chapter pages carry figures, launch
links and the book's own MathJax; notebook code fits the book's code column."""
from __future__ import annotations

import importlib.util
import io
import re
import tarfile
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO = CONFIG["repository"]["url"].removeprefix("https://github.com/")
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for part in TOC["parts"] for c in part["chapters"] if c["file"].startswith("notebooks/")]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_LINE = 100   # characters of a code line: wider lines scroll sideways in the book's code column


@pytest.fixture(scope="module")
def html(book_html: Path) -> Path:
    return book_html


def image_outputs(notebook: Path) -> int:
    nb = nbformat.read(notebook, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def test_intro_and_references_render(html: Path):
    assert (html / "index.html").exists()
    refs = (html / "book" / "references.html").read_text()
    assert "McCloskey" in refs


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_has_figures_and_colab_link(html: Path, chapter: str):
    page = (html / f"{chapter}.html").read_text()
    n_images = image_outputs(ROOT / f"{chapter}.ipynb")
    assert n_images > 0, f"{chapter} has no figures"
    assert len(re.findall(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', page)) >= n_images
    assert f"colab.research.google.com/github/{REPO}/blob/main/{chapter}.ipynb" in page
    assert "Traceback" not in page and "ClaimFailed" not in page


def test_math_is_served_by_the_book(html: Path):
    """MathJax comes from the build's own static files (scripts/vendor_mathjax.py), not from a CDN."""
    notation = (html / "book" / "notation.html").read_text()
    assert re.search(r'<script[^>]+src="\.\./_static/mathjax/tex-mml-chtml\.js', notation), "no local MathJax"
    assert (html / "_static" / "mathjax" / "VERSION").is_file(), \
        "_static/mathjax is the CDN loader: MathJax could not be vendored (see scripts/vendor_mathjax.py)"
    assert "cdn.jsdelivr.net" not in notation


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_code_lines_fit_the_code_column(notebook: Path):
    nb = nbformat.read(notebook, as_version=4)
    long = [f"cell {i}, {len(line)} chars: {line[:60]}..." for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" for line in cell.source.splitlines() if len(line) > MAX_LINE]
    assert not long, f"{len(long)} code lines longer than {MAX_LINE} characters:\n" + "\n".join(long)


def vendor_mathjax():
    """scripts/vendor_mathjax.py as a module."""
    spec = importlib.util.spec_from_file_location("vendor_mathjax", ROOT / "scripts" / "vendor_mathjax.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vendor_unpacks_only_what_the_book_loads(tmp_path: Path):
    vm = vendor_mathjax()
    tarball = tmp_path / "mathjax.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ["LICENSE", "README.md", "es5/tex-mml-chtml.js", "es5/tex-svg.js", "es5/output/svg/a.js",
                     "es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff", "es5/input/tex/extensions/ams.js"]:
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(name)
            tar.addfile(info, io.BytesIO(name.encode()))
    vm.unpack(tarball, tmp_path / "out")
    kept = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert kept == {"LICENSE", "VERSION", "tex-mml-chtml.js", "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
                    "input/tex/extensions/ams.js"}


def test_vendor_copies_the_cached_copy(tmp_path: Path, monkeypatch):
    vm = vendor_mathjax()
    monkeypatch.setenv("CFBOOK_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))        # no npm: the cache alone must do
    cache = vm.cache_dir()
    cache.mkdir()
    (cache / vm.ENTRY).write_text("// MathJax")
    (cache / vm.STAMP).write_text(vm.VERSION)
    assert vm.vendor(tmp_path / "dest") is True
    assert (tmp_path / "dest" / vm.ENTRY).read_text() == "// MathJax"


def test_vendor_without_npm_says_so_in_one_line_and_loads_from_the_cdn(tmp_path: Path, monkeypatch, capsys):
    vm = vendor_mathjax()
    monkeypatch.setenv("CFBOOK_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert vm.vendor(tmp_path / "dest") is False
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "npm is not installed" in said[0] and "CDN" in said[0]
    assert vm.CDN in (tmp_path / "dest" / vm.ENTRY).read_text()
    assert not (tmp_path / "dest" / vm.STAMP).exists()    # so the next build tries again
