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
  const typeset = window.MathJax && MathJax.startup && MathJax.startup.promise;
  if (typeset) await Promise.race([typeset, new Promise(done => setTimeout(done, 30000))]);
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


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, or skip (cannot be installed here) / fail (the set-up should have installed it).
    Session-scoped and requested before the book, so a skip costs no build."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        pytest.fail("chromium is missing but this machine can install it: source scripts/env.sh (apt as root)")
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


def listen(page: Page, base: str, seen: Visit) -> None:
    """Record the page's console errors, uncaught exceptions and failed requests into ``seen``."""
    def on_console(message) -> None:
        if message.type == "error" and not message.location["url"].endswith(FAVICON):
            seen.console_errors.append(f"{message.text} ({message.location['url']})")

    def on_response(response) -> None:
        if response.status >= 400 and not response.url.endswith(FAVICON):
            seen.failed_requests.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: seen.console_errors.append(f"uncaught: {error}"))
    page.on("requestfailed", lambda r: r.url.startswith(base) and seen.failed_requests.append(r.url))


def colab_shown(page: Page, page_name: str) -> bool:
    """Whether the chapter's Colab link is in the launch menu and shows when a reader hovers the rocket."""
    link = page.locator(f'.dropdown-launch-buttons a[href="{colab_url(page_name)}"]')
    if not link.count():
        return False
    page.hover(".dropdown-launch-buttons")
    return link.first.is_visible()


def visit(context: BrowserContext, base: str, page_name: str, seen: Visit) -> None:
    """Load one page, record what it logs and requests, inspect it and save a full-page screenshot."""
    page = context.new_page()
    listen(page, base, seen)
    page.goto(base + page_name, wait_until="networkidle")
    seen.report = page.evaluate(INSPECT)
    if page_name.removesuffix(".html") in CHAPTERS:
        seen.colab_visible = colab_shown(page, page_name)
    shot = SHOTS / page_name.replace(".html", ".png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    page.close()


def colab_url(page_name: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/main/{page_name.removesuffix('.html')}.ipynb"


def redirect_target(html: Path, page_name: str) -> Path | None:
    """The page a redirect stub (Jupyter Book's index.html) sends the reader to, else None."""
    match = REDIRECT.search((html / page_name).read_text(errors="replace"))
    return (html / page_name).parent / match.group(1) if match else None


def visit_book(context: BrowserContext, base: str, html: Path) -> dict[str, Visit]:
    """Visit every page of ``html`` served at ``base``. A request to anywhere else is refused and
    recorded on the page being visited, so nothing leaves the machine."""
    results: dict[str, Visit] = {}

    def only_local(route) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            list(results.values())[-1].outside_requests.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    for name in pages_of(html):
        results[name] = seen = Visit()
        target = redirect_target(html, name)
        if target is None:
            visit(context, base, name, seen)
        elif not target.is_file():   # a redirect is not visited: its target is, as a page of its own
            seen.failed_requests.append(f"redirects to a missing page: {target}")
    return results


@pytest.fixture(scope="module")
def visits(chromium: str, book_html: Path, tmp_path_factory) -> dict[str, Visit]:
    """The book's pages, visited once in one headless Chromium with a fresh profile (user-data-dir)."""
    shutil.rmtree(SHOTS, ignore_errors=True)
    with serve(book_html) as base, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(60_000)   # a loaded 2-core machine
        try:
            return visit_book(context, base, book_html)
        finally:
            context.close()


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
