"""Without Chromium the browser tests are skipped with the command that installs it, never passed;
with ``NERFSCULPT_REQUIRE_CHROMIUM=1`` (as ``.ci/run`` sets) they fail instead."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_without_chromium(tmp_path, require: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_needs_chromium.py"
    test.write_text("from tests.conftest import browser_page  # noqa: F401\n\n\n"
                    "def test_page(browser_page):\n    assert browser_page is not None\n")
    env = {**os.environ, "NERFSCULPT_CHROMIUM": str(tmp_path / "no-chromium"), "PYTHONPATH": str(ROOT),
           "NERFSCULPT_REQUIRE_CHROMIUM": "1" if require else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", str(test)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("require", [False, True])
def test_missing_chromium_is_a_skip_or_a_failure(tmp_path, require):
    result = _run_without_chromium(tmp_path, require)
    assert "sudo apt-get install chromium" in result.stdout, result.stdout
    if require:
        assert result.returncode == 1 and "1 error" in result.stdout, result.stdout
    else:
        assert result.returncode == 0 and "1 skipped" in result.stdout and "passed" not in result.stdout, result.stdout
