"""The book builds from a clean output folder with warnings as errors; chapter pages carry figures, launch
links and the book's own MathJax; notebook code fits the book's code column."""
from __future__ import annotations

import re
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
