"""Shared fixtures: a tiny bank with renders and a ranking study over it."""

import shutil

import pytest

from nerfsculpt.cli import main
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.geometry.bank import BankConfig, write_bank

TINY = BankConfig(resolution=16, slab_resolution=16, mesh_level=0.0, depth_resolution=8, n_points=32,
                  render_resolution=32)


@pytest.fixture(scope="session")
def bank(tmp_path_factory):
    """8 seeds of the tiny random generator, renders only."""
    path = tmp_path_factory.mktemp("bank") / "bank"
    write_bank(path, *resolve_generator("tiny-random", "cpu"), TINY, list(range(8)), ("renders",), progress=False)
    return path


@pytest.fixture(scope="session")
def study_template(bank, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "template.sqlite"
    assert main(["label", "new", "--bank", str(bank), "--db", str(db), "--study", "pilot", "--items", "3",
                 "--questions", "6", "--overlap", "2", "--repeats", "1"]) == 0
    return db


@pytest.fixture
def study_db(study_template, tmp_path):
    """A fresh copy of the study database (6 questions of 3 items + 1 repeat, overlap 2)."""
    db = tmp_path / "prefs.sqlite"
    shutil.copy(study_template, db)
    return db

