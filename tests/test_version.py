"""The version is written in two places; they agree."""

import tomllib
from pathlib import Path

import nerfsculpt


def test_the_package_and_pyproject_agree_on_the_version():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert nerfsculpt.__version__ == pyproject["project"]["version"]
