"""A real browser for the UI tests: Debian's Chromium, driven by playwright.

Nothing is installed here. The machine needs `apt-get install -y chromium` (the browser at
`/usr/bin/chromium`) and the test venv `pip install playwright` (the driver only: never
`playwright install`, which downloads a browser build of its own).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_browser() -> None:
    """Fail with the install steps when the browser or the driver is missing (the airflow nox
    session installs both)."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no {CHROMIUM}: apt-get install -y chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("no playwright in this venv: pip install playwright")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright `Browser`), closed afterwards."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Any, base_url: str, username: str, password: str) -> Any:
    """A new page signed in through Airflow's own login form (SimpleAuthManager)."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url)
    return page
