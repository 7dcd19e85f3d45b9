"""The built website, opened page by page in a real (headless) Chromium.

Serves `_build/html` on 127.0.0.1 and checks every page the way a reader's browser
sees it: no missing file of the site's own (HTTP 4xx/5xx), no script error from the
site's own scripts, every image decoded, the sidebar reaching every page of `_toc.yml`,
the Colab button opening the right notebook (the student notebook on exercise pages),
and the search page finding a word. A screenshot of each page goes to
`_build/screenshots/`. Outside resources (MathJax from its CDN) are not checked: the
test runs offline.

Needs `make book` first, Chromium at /usr/bin/chromium (Debian package `chromium`)
and the Python package `playwright` (only its driver; no `playwright install`).
Skips with a message otherwise.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from book_toc import toc_files  # tests/book_toc.py

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

playwright_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser test needs the Python package playwright (the `browser` extra)",
)
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install it with `apt-get install -y chromium`",
        allow_module_level=True,
    )
if not (HTML / "intro.html").exists():
    pytest.skip(f"{HTML} has no built book: run `make book` first", allow_module_level=True)

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def site_pages() -> list[str]:
    """Every HTML page of the site, as a path relative to _build/html."""
    pages = []
    for path in HTML.rglob("*.html"):
        rel = path.relative_to(HTML)
        if rel.parts[0].startswith("_"):  # _static, _sources, _images ...
            continue
        pages.append(rel.as_posix())
    return sorted(pages)


def expected_colab_url(page: str) -> str:
    """The Colab link a notebook page must carry (student notebook for solutions)."""
    repo = urlsplit(CONFIG["repository"]["url"]).path.strip("/")
    branch = CONFIG["repository"]["branch"]
    book = CONFIG["repository"].get("path_to_book", "").strip("/.")
    name = page[: -len(".html")]
    if name.endswith("_solutions"):
        name = name[: -len("_solutions")]
    path = f"{book}/{name}.ipynb" if book else f"{name}.ipynb"
    colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return f"{colab}/github/{repo}/blob/{branch}/{path}"


# --- serving and inspecting -------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib name)
        pass


def serve(directory: Path):
    """A static HTTP server on 127.0.0.1, any free port, in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@dataclass
class PageReport:
    """What one page load showed: problems found and links seen."""

    missing: list[str] = field(default_factory=list)       # own files answering >= 400
    script_errors: list[str] = field(default_factory=list)  # uncaught errors, console errors
    broken_images: list[str] = field(default_factory=list)
    images_without_alt: list[str] = field(default_factory=list)  # notebook outputs
    colab_links: list[str] = field(default_factory=list)
    sidebar_links: list[str] = field(default_factory=list)  # absolute URLs
    links: list[str] = field(default_factory=list)          # every <a href>, absolute


def inspect(page, url: str, origin: str, screenshot: Path | None = None) -> PageReport:
    """Load `url` in a Playwright page and report what went wrong."""
    report = PageReport()
    own = lambda u: u.startswith(origin)  # noqa: E731

    def on_response(response) -> None:
        if own(response.url) and response.status >= 400:
            report.missing.append(f"{response.status} {response.url}")

    def on_failed(request) -> None:
        if own(request.url):
            report.missing.append(f"failed {request.url}: {request.failure}")

    def on_console(message) -> None:
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        # Failed loads of outside resources (a CDN while offline) are not the site's.
        if own(where) and "Failed to load resource" not in message.text:
            report.script_errors.append(f"console: {message.text} ({where})")

    def on_pageerror(error) -> None:
        report.script_errors.append(f"uncaught: {error}")

    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    try:
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle", timeout=5_000)
    except playwright_api.TimeoutError:
        pass  # an outside resource that never answers offline; the page itself loaded
    finally:
        page.remove_listener("response", on_response)
        page.remove_listener("requestfailed", on_failed)
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_pageerror)
    report.broken_images = page.eval_on_selector_all(
        "img",
        "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.currentSrc || i.src || i.outerHTML)",
    )
    # myst-nb uses the file path as alt text unless a cell sets mystnb.image.alt.
    report.images_without_alt = page.eval_on_selector_all(
        ".cell_output img",
        "imgs => imgs.filter(i => { const a = (i.getAttribute('alt') || '').trim();"
        " return !a || /\\.(png|jpe?g|svg|gif)$/i.test(a); }).map(i => i.src)",
    )
    report.colab_links = page.eval_on_selector_all(
        "a[href^='https://colab.research.google.com']", "as => as.map(a => a.href)"
    )
    report.sidebar_links = page.eval_on_selector_all(
        ".bd-sidebar-primary a[href]", "as => as.map(a => a.href)"
    )
    report.links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    return report


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(browser):
    """Every page of the built site, loaded once: {page: PageReport}."""
    server, origin = serve(HTML)
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        reports = {
            name: inspect(page, origin + name, origin, SHOTS / name.replace(".html", ".png"))
            for name in site_pages()
        }
        yield origin, reports, page
    finally:
        context.close()
        server.shutdown()


# --- the checks ---------------------------------------------------------------


PAGES = site_pages()


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_cleanly(site, name):
    _, reports, _ = site
    report = reports[name]
    assert report.missing == [], f"{name}: own files missing: {report.missing}"
    assert report.script_errors == [], f"{name}: script errors: {report.script_errors}"
    assert report.broken_images == [], f"{name}: images not shown: {report.broken_images}"


@pytest.mark.parametrize("name", PAGES)
def test_notebook_images_have_alt_text(site, name):
    images = site[1][name].images_without_alt
    assert images == [], (
        f"{name}: output images without alt text (set the cell metadata "
        f"mystnb.image.alt, with mystnb.figure.caption and .name): {images}"
    )


def dead_links(links: list[str], origin: str, root: Path) -> list[str]:
    """Links to the site itself whose file does not exist under `root`."""
    dead = []
    for url in links:
        if not url.startswith(origin):
            continue
        path = unquote(urlsplit(url).path).lstrip("/")
        target = root / path
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            dead.append(url)
    return dead


@pytest.mark.parametrize("name", PAGES)
def test_links_within_the_site_resolve(site, name):
    origin, reports, _ = site
    dead = dead_links(reports[name].links, origin, HTML)
    assert dead == [], f"{name}: links to files that do not exist: {dead}"


def test_sidebar_reaches_every_toc_page(site):
    origin, reports, _ = site
    linked = {
        unquote(urlsplit(u).path).lstrip("/")
        for u in reports["intro.html"].sidebar_links
        if u.startswith(origin)
    }
    missing = [f for f in toc_files(TOC) if f + ".html" not in linked]
    assert missing == [], f"_toc.yml pages not linked from the landing page's sidebar: {missing}"


@pytest.mark.parametrize("name", PAGES)
def test_colab_button_opens_the_right_notebook(site, name):
    _, reports, _ = site
    source = ROOT / name.replace(".html", ".ipynb")
    links = set(reports[name].colab_links)
    if not source.is_file():
        assert links == set(), f"{name} is not a notebook but links to Colab: {links}"
        return
    expected = expected_colab_url(name)
    assert links == {expected}, f"{name}: Colab links {links}, expected {expected}"
    student = urlsplit(expected).path.split("/blob/", 1)[1].split("/", 1)[1]
    assert (ROOT / student).is_file(), f"{name}: Colab opens {student}, which does not exist"


def test_search_finds_a_word(site):
    origin, _, page = site
    page.goto(urljoin(origin, "search.html?q=convolution"), wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=15_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "as => as.length")
    assert hits > 0, "searching the site for 'convolution' found nothing"


def test_inspector_catches_broken_pages(browser, tmp_path):
    """The checks above can fail: a page with each kind of fault is caught."""
    (tmp_path / "bad.html").write_text(
        "<html><body><h1>bad</h1>"
        "<script>const X = 1;</script><script>const X = 2;</script>"
        "<script src='missing.js'></script>"
        "<img src='missing.png' alt='gone'>"
        "<div class='cell_output'><img src='missing.png' alt='missing.png'></div>"
        "<a href='https://colab.research.google.com/github/o/r/blob/main/x.ipynb'>c</a>"
        "<a href='bad.html#top'>self</a><a href='sub/gone.html'>gone</a>"
        "</body></html>",
        encoding="utf-8",
    )
    server, origin = serve(tmp_path)
    context = browser.new_context()
    try:
        report = inspect(context.new_page(), origin + "bad.html", origin)
    finally:
        context.close()
        server.shutdown()
    assert any("missing.js" in m for m in report.missing), report
    assert any("already been declared" in e for e in report.script_errors), report
    assert any("missing.png" in i for i in report.broken_images), report
    assert len(report.images_without_alt) == 1, report
    assert dead_links(report.links, origin, tmp_path) == [origin + "sub/gone.html"]
    assert report.colab_links == ["https://colab.research.google.com/github/o/r/blob/main/x.ipynb"]
    assert expected_colab_url("chapters/ch1_cnn/exercises_solutions.html").endswith(
        "/blob/main/chapters/ch1_cnn/exercises.ipynb"
    )
