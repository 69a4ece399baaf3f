"""A real headless browser for the dashboard's page: Debian's chromium and chromedriver
through selenium, nothing downloaded (`make browser` installs them where it can).
Without them the test is skipped, except in CI, where `.ci/run` installed them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sandbox.testbed import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    if not available():
        if os.environ.get("CI"):
            pytest.fail(f"no {CHROMIUM} / {CHROMEDRIVER} in CI: `make browser` should have installed them")
        pytest.skip("no chromium and chromedriver here (`make browser` installs them, as root)")
    os.environ["SE_OFFLINE"] = "true"  # selenium never downloads a browser or a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # Without the background-networking flags chromium keeps calling Google's hosts,
    # which this machine's closed network refuses.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1100", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER, port=free_port()))
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def text(driver: Any, element_id: str) -> str | None:
    """An element's text, read in one script (the page re-draws its tables at every push:
    a found element can be gone by the time its text is asked for)."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); "
                                 "return e === null ? null : e.innerText;", element_id)
