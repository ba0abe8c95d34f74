import json
import zipfile

import numpy as np
import pytest
import torch

from nerfsculpt.finetune.config import FinetuneError
from nerfsculpt.finetune.data import DatasetImages, Draws, RenderedImages, filtered_resize, read_labels
from nerfsculpt.generator.builtin import resolve_generator
from nerfsculpt.synthetic.dataset import write_dataset


def _labels_file(path, labels):
    path.write_text(json.dumps({"labels": [[f"img{i}.png", label] for i, label in enumerate(labels)]}))
    return path


def test_labels_of_the_wrong_length_are_refused(tmp_path):
    with pytest.raises(FinetuneError, match="25 numbers"):
        read_labels(_labels_file(tmp_path / "dataset.json", [[0.0] * 24]))
    with pytest.raises(FinetuneError, match="25 numbers"):
        read_labels(_labels_file(tmp_path / "ragged.json", [[0.0] * 25, [0.0] * 16]))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(FinetuneError, match="not an EG3D label file"):
        read_labels(tmp_path / "bad.json")
    with pytest.raises(FinetuneError, match="no such file"):
        read_labels(tmp_path / "missing.json")


def test_labels_from_a_json_or_a_zip(tmp_path):
    labels = np.random.default_rng(0).normal(size=(3, 25)).tolist()
    path = _labels_file(tmp_path / "dataset.json", labels)
    np.testing.assert_allclose(read_labels(path), np.array(labels, dtype=np.float32))
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        z.write(path, "dataset.json")
    np.testing.assert_allclose(read_labels(tmp_path / "d.zip"), np.array(labels, dtype=np.float32))


def test_draws_depend_only_on_seed_iteration_rank_and_stream():
    a = Draws.for_step(0, 5, 0, 2, torch.device("cpu"))
    b = Draws.for_step(0, 5, 0, 2, torch.device("cpu"))
    assert torch.equal(torch.randn(4, generator=a.cpu), torch.randn(4, generator=b.cpu))
    for other in (Draws.for_step(1, 5, 0, 2, torch.device("cpu")), Draws.for_step(0, 6, 0, 2, torch.device("cpu")),
                  Draws.for_step(0, 5, 1, 2, torch.device("cpu")), Draws.for_step(0, 5, 0, 3, torch.device("cpu"))):
        assert not torch.equal(torch.randn(4, generator=Draws.for_step(0, 5, 0, 2, torch.device("cpu")).cpu),
                               torch.randn(4, generator=other.cpu))


def test_data_free_reals_are_renders_of_the_frozen_generator():
    G, _ = resolve_generator("tiny-random")
    real = RenderedImages(G)
    real.check(G)
    draws = Draws.for_step(0, 0, 0, 0, torch.device("cpu"))
    images, labels = real.sample(3, draws, torch.device("cpu"))
    assert images.shape == (3, 3, G.img_resolution, G.img_resolution) and labels.shape == (3, 25)
    assert images.abs().max() <= 1
    assert filtered_resize(images, 16).shape == (3, 3, 16, 16)


def test_a_dataset_whose_resolution_differs_from_the_generator_is_refused(tmp_path):
    G, _ = resolve_generator("tiny-random")  # 64 px images
    path = write_dataset(tmp_path / "d.zip", n=2, resolution=32, seed=0)
    data = DatasetImages(path)
    with pytest.raises(FinetuneError, match="32x32 images, the generator makes 64x64"):
        data.check(G)
    images, labels = data.sample(3, Draws.for_step(0, 0, 0, 0, torch.device("cpu")), torch.device("cpu"))
    assert images.shape == (3, 3, 32, 32) and labels.shape == (3, 25) and -1 <= images.min() <= images.max() <= 1
    with pytest.raises(FinetuneError, match="not a zip"):
        DatasetImages(tmp_path / "d.zip.missing")
