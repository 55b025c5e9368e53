"""The shipped reports in a real browser: headless Chromium opens every ``studies/*/report.html``
and the summary page ``studies/index.html`` (written by ``gradkit study summary studies``), takes
a screenshot, and checks that every image loaded, that the page logged no console error and
that every relative link points to a file that exists.

The browser is Debian's ``chromium`` (``.ci/run`` installs it), driven by Playwright without
Playwright's own browser download. The test skips, saying why, only where no browser is there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

STUDIES = Path(__file__).resolve().parents[2] / "studies"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium reaches for the network at start, and a closed network refuses it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = [*sorted(STUDIES.glob("*/report.html")), STUDIES / "index.html"]


def _chromium() -> str:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run does)")
    return executable


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install '.[test]')"
    )
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def test_every_shipped_page_is_there() -> None:
    assert len(PAGES) >= 10 and all(page.is_file() for page in PAGES), PAGES


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(STUDIES)) for p in PAGES])
def test_page_renders_in_chromium(browser, path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed: {request.url}"))
    page.goto(path.as_uri(), wait_until="load")
    screenshot = tmp_path / "page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    images = page.eval_on_selector_all(
        "img",
        "all => all.map(i => [i.getAttribute('src').slice(0, 60), i.complete, i.naturalWidth])",
    )
    links = page.eval_on_selector_all("a[href]", "all => all.map(a => a.getAttribute('href'))")
    title = page.title()
    page.close()
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000
    assert title
    assert images, f"{path}: no images"
    # Embedded or relative, so that a report folder can be mailed.
    assert all(urlsplit(src).scheme in ("", "data") for src, _, _ in images), images
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert not broken, f"{path}: images that did not load: {broken}"
    assert not errors, f"{path}: console errors: {errors}"
    for link in links:
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or not parts.path:
            continue  # a web address or an anchor in the page: not a link between pages
        target = (path.parent / unquote(parts.path)).resolve()
        assert target.is_file(), f"{path}: link {link!r} points to no file"
