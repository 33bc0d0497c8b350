"""Open a report in headless Chromium and say what a reader would see broken.

A development tool (the report tests, ``benchmarks/bench_reports.py``): it needs the
``dev`` extra's Playwright and a system Chromium (Debian's ``chromium`` package); it
never downloads a browser. Chromium runs with background networking off, so a closed
network is not flooded with its update and telemetry requests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")
# A report column is 1100 px; this viewport shows it with its margins.
VIEWPORT = {"width": 1200, "height": 900}
_BROKEN_IMAGES = """Array.from(document.images)
    .filter(img => !img.complete || img.naturalWidth === 0)
    .map(img => img.alt || img.src.slice(0, 60))"""


def chromium_path() -> str | None:
    """The system Chromium (``HEMOCOUPLING_CHROMIUM`` overrides), or None."""
    found = os.environ.get("HEMOCOUPLING_CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).exists() else None


@dataclass
class PageCheck:
    """What opening one page showed: broken images, console errors, failed requests,
    and the images and links it holds."""

    broken_images: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    image_sources: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return ([f"broken image: {x}" for x in self.broken_images]
                + [f"console error: {x}" for x in self.console_errors]
                + [f"failed request: {x}" for x in self.failed_requests])


@contextmanager
def headless_chromium() -> Iterator:
    """A Playwright browser on the system Chromium (Playwright gives it a throw-away
    profile: it refuses ``--user-data-dir``)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("no chromium executable (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def check_page(browser, path: Path, screenshot: Path | None = None) -> PageCheck:
    """Load ``path`` (a local HTML file), collect what is broken, optionally save a
    full-page PNG screenshot."""
    check = PageCheck()
    page = browser.new_page(viewport=VIEWPORT)
    page.on("console", lambda msg: check.console_errors.append(msg.text)
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: check.console_errors.append(str(exc)))
    page.on("requestfailed", lambda request: check.failed_requests.append(request.url))
    page.goto(Path(path).resolve().as_uri(), wait_until="load")
    check.broken_images = page.evaluate(_BROKEN_IMAGES)
    check.image_sources = page.evaluate("Array.from(document.images).map(i => i.src)")
    check.links = page.evaluate(
        "Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return check
