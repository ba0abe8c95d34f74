"""Crash-safe writes: a reader sees the old file or the new one, never a partial one."""

import numpy as np
import pytest
from PIL import Image

from nerfsculpt import atomic


def test_write_atomic_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_crash_before_rename_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def crash(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_remove_temporaries_only_touches_temporaries(tmp_path):
    (tmp_path / ".x.png.123.abcd1234.tmp").write_bytes(b"partial")
    (tmp_path / "x.png").write_bytes(b"done")
    atomic.remove_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_png_bytes_round_trip_and_validation(tmp_path):
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    path = atomic.write_atomic(tmp_path / "i.png", atomic.png_bytes(image))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    with pytest.raises(ValueError, match="uint8"):
        atomic.png_bytes(image.astype(np.float32))


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "bundle"
    with atomic.atomic_directory(target) as staging:
        (staging / "a.txt").write_text("one")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(FileExistsError, match="not empty"):
        with atomic.atomic_directory(target):
            pass
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_directory(target, overwrite=True) as staging:
            (staging / "a.txt").write_text("two")
            raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "one"
    with atomic.atomic_directory(target, overwrite=True) as staging:
        (staging / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging or old copies left
