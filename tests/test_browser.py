"""The built book in headless Chromium, as a reader meets it, served from 127.0.0.1 with nothing else reachable.

Every page: no console error, no request that leaves the machine, every image decoded (naturalWidth > 0),
every formula typeset by MathJax without a TeX error and no raw ``\\(`` left in the text; every chapter page:
the Colab launch link shows when the rocket is hovered. A full-page screenshot of each page is saved under
_build/screenshots/ for a person to look at.

Chromium is Debian's (scripts/env.sh installs it as root with apt-get), driven by Playwright through
``executable_path`` (never ``playwright install``). Where it cannot be installed (not root, or no apt-get)
the tests are skipped; where it could be but is missing, they fail.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from playwright.sync_api import BrowserContext, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "_build" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
REPO = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].removeprefix("https://github.com/")
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [c["file"] for part in TOC["parts"] for c in part["chapters"] if c["file"].startswith("notebooks/")]
REDIRECT = re.compile(r'<meta http-equiv="refresh" content="0; ?url=([^"]+)"', re.IGNORECASE)
FAVICON = "/favicon.ico"   # Chromium asks every site for one, at a moment of its choosing; the book has none

# Run in the page once it is loaded: wait for MathJax's first typesetting and for every image, then report.
INSPECT = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await Promise.all(Array.from(document.images, img => img.complete ? null
      : new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  const math = Array.from(document.querySelectorAll('.math'));
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
  const text = prose.textContent, at = Math.min(...['\\(', '\\['].map(d => text.indexOf(d)).filter(i => i >= 0));
  return {
    broken_images: Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.getAttribute('src')),
    formulas: math.length,
    untypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60)),
    tex_errors: Array.from(document.querySelectorAll('mjx-merror'), e => e.getAttribute('data-mjx-error')),
    raw_tex: Number.isFinite(at) ? text.slice(at, at + 60) : '',
  };
}"""


@dataclass
class Visit:
    """What one page did in the browser."""
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    colab_visible: bool | None = None   # chapter pages only


def chromium() -> str:
    """Debian's chromium, or skip (cannot be installed here) / fail (the set-up should have installed it)."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail("chromium is missing but this machine can install it: source scripts/env.sh (apt-get as root)")
    pytest.skip("chromium is not installed and cannot be here (not root or no apt-get): browser test skipped")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free port of 127.0.0.1; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def pages_of(html: Path) -> list[str]:
    """The HTML pages of the build, relative to it (theme templates under _static are not pages)."""
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html") if "_static" not in p.parts)


def visit(context: BrowserContext, base: str, page_name: str) -> Visit:
    """Load one page, record its console errors and requests, inspect it and save a screenshot."""
    seen = Visit()
    page: Page = context.new_page()
    page.on("console", lambda m: m.type == "error" and not m.location["url"].endswith(FAVICON)
            and seen.console_errors.append(f"{m.text} ({m.location['url']})"))
    page.on("pageerror", lambda e: seen.console_errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: r.url.startswith(base) and seen.failed_requests.append(r.url))
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith(FAVICON)
            and seen.failed_requests.append(f"{r.status} {r.url}"))
    page.goto(base + page_name, wait_until="networkidle")
    seen.report = page.evaluate(INSPECT)
    if page_name.removesuffix(".html") in CHAPTERS:
        colab = page.locator(f'.dropdown-launch-buttons a[href="{colab_url(page_name)}"]')
        if colab.count():
            page.hover(".dropdown-launch-buttons")
            seen.colab_visible = colab.first.is_visible()
        else:
            seen.colab_visible = False
    shot = SHOTS / page_name.replace(".html", ".png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return seen


def colab_url(page_name: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/main/{page_name.removesuffix('.html')}.ipynb"


@pytest.fixture(scope="module")
def visits(book_html: Path, tmp_path_factory) -> dict[str, Visit]:
    """Every page of the book, visited once in one headless Chromium; requests to anywhere but the local
    server are aborted (and recorded), so nothing leaves the machine."""
    executable = chromium()
    shutil.rmtree(SHOTS, ignore_errors=True)
    results: dict[str, Visit] = {}
    outside: list[tuple[str, str]] = []   # (page, url) of requests the browser tried to send elsewhere
    with serve(book_html) as base, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=executable, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        current = [""]

        def only_local(route) -> None:
            if route.request.url.startswith(base):
                route.continue_()
            else:
                outside.append((current[0], route.request.url))
                route.abort()

        context.route("**/*", only_local)
        try:
            for name in pages_of(book_html):
                target = REDIRECT.search((book_html / name).read_text(errors="replace"))
                if target:   # a redirect stub (index.html): its target must exist, the target is visited itself
                    dest = (book_html / name).parent / target.group(1)
                    results[name] = Visit(failed_requests=[] if dest.is_file() else [f"redirect to {dest}"])
                    continue
                current[0] = name
                results[name] = visit(context, base, name)
        finally:
            context.close()
    for name, url in outside:
        results[name].outside_requests.append(url)
    return results


def problems(visits: dict[str, Visit], check) -> str:
    """One line per page for which ``check(visit)`` returns something non-empty."""
    lines = [f"{name}: {found}" for name, v in visits.items() if (found := check(v))]
    return "\n".join(lines)


def test_every_page_was_visited(visits: dict[str, Visit]):
    for page in ["book/intro.html", "book/notation.html", *(f"{c}.html" for c in CHAPTERS)]:
        assert page in visits, f"{page} is not in the build"
    assert all(SHOTS.joinpath(p.replace(".html", ".png")).is_file() for p, v in visits.items() if v.report)


def test_no_console_errors(visits: dict[str, Visit]):
    found = problems(visits, lambda v: v.console_errors)
    assert not found, f"console errors:\n{found}"


def test_nothing_leaves_the_machine(visits: dict[str, Visit]):
    found = problems(visits, lambda v: v.outside_requests)
    assert not found, f"requests to other hosts than 127.0.0.1 (aborted):\n{found}"


def test_no_failed_requests(visits: dict[str, Visit]):
    found = problems(visits, lambda v: v.failed_requests)
    assert not found, f"missing files:\n{found}"


def test_every_image_loads(visits: dict[str, Visit]):
    found = problems(visits, lambda v: v.report.get("broken_images"))
    assert not found, f"images that did not decode (naturalWidth 0):\n{found}"


def test_math_is_rendered(visits: dict[str, Visit]):
    found = problems(visits, lambda v: {k: v.report[k] for k in ("untypeset", "tex_errors", "raw_tex")
                                        if v.report.get(k)})
    assert not found, f"formulas not rendered:\n{found}"
    assert visits["book/notation.html"].report["formulas"] > 20, "the notation page lost its formulas"


def test_colab_link_on_every_chapter_page(visits: dict[str, Visit]):
    missing = [f"{c}.html" for c in CHAPTERS if not visits[f"{c}.html"].colab_visible]
    assert not missing, f"no visible Colab launch link ({colab_url('<chapter>')}) on: {missing}"
