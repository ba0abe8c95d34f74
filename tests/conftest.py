"""Fixtures shared by several test packages."""

import os
import shutil

import pytest

CHROMIUM = os.environ.get("NERFSCULPT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("NERFSCULPT_REQUIRE_CHROMIUM") == "1"
"""Set by ``.ci/run``: a missing Chromium fails the browser tests there instead of skipping them."""


@pytest.fixture
def browser_page():
    if not os.path.exists(CHROMIUM):
        message = (f"Debian's chromium is not installed ({CHROMIUM} is missing): "
                   "sudo apt-get install chromium")
        if REQUIRED:
            pytest.fail(message + " (NERFSCULPT_REQUIRE_CHROMIUM=1)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture(scope="session")
def synthetic_reward(tmp_path_factory):
    """The reward of the synthetic learning test, trained once per session (about 2.5 CPU minutes)."""
    from tests.synthetic_reward import train_synthetic_reward

    return train_synthetic_reward(tmp_path_factory.mktemp("synthetic-reward"))
