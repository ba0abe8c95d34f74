"""Synthetic EG3D dataset: poses, zip layout, labels, reader round trip, bad input, determinism, atomicity, CLI."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from nerfsculpt import cli
from nerfsculpt.camera import FOCAL_FFHQ_DATASET, look_at_pose, split_label
from nerfsculpt.eg3d_dataset import (
    DatasetError,
    PoseDistribution,
    archive_name,
    image_to_float,
    read_eg3d_dataset,
    sample_ffhq_like_poses,
)
from nerfsculpt.synthetic import dataset as dataset_module
from nerfsculpt.synthetic.dataset import write_dataset

FAST = {"depth_resolution": 12, "depth_resolution_importance": 12}
N, RES = 6, 16


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "synth.zip"
    return write_dataset(path, N, RES, seed=3, rendering_kwargs=FAST, progress=False)


def _write_zip(path, files: dict[str, bytes], compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# Cameras


def test_pose_distribution_statistics_and_labels():
    labels = sample_ffhq_like_poses(4000, torch.Generator().manual_seed(0))
    assert labels.shape == (4000, 25) and labels.dtype == torch.float32
    cam2world, intrinsics = split_label(labels)
    expected_k = torch.tensor([[FOCAL_FFHQ_DATASET, 0, 0.5], [0, FOCAL_FFHQ_DATASET, 0.5], [0, 0, 1]])
    torch.testing.assert_close(intrinsics, expected_k.expand(4000, 3, 3))
    origins = cam2world[:, :3, 3].double()  # on the sphere of radius 2.7 around the world origin
    torch.testing.assert_close(origins.norm(dim=1), torch.full((4000,), 2.7, dtype=torch.float64), atol=1e-5,
                               rtol=0)
    # Recover the angles: EG3D's geometry puts the camera at r (sin phi cos(pi - h), cos phi, sin phi sin(pi - h))
    # with h = pi/2 + yaw, phi = arccos(1 - 2 v / pi), v = pi/2 + pitch.
    x, y, z = origins.unbind(1)
    yaw = torch.atan2(x, z)
    pitch = (torch.pi / 2) * (1 - y / 2.7) - torch.pi / 2
    assert yaw.abs().max() <= 0.8 + 1e-5 and pitch.abs().max() <= 0.45 + 1e-5
    # truncated normal std: sigma^2 (1 - 2 a phi(a) / (2 Phi(a) - 1)), a = limit / sigma
    for values, std, limit in ((yaw, 0.3, 0.8), (pitch, 0.15, 0.45)):
        a = limit / std
        pdf, cdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(a / math.sqrt(2)))
        expected = std * math.sqrt(1 - 2 * a * pdf / (2 * cdf - 1))
        assert values.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(values.mean().item()) < 4 * expected / math.sqrt(4000)
    # cameras look at the pivot (0, 0, 0.2)
    forward = cam2world[:, :3, 2].double()
    to_pivot = torch.tensor([0, 0, 0.2], dtype=torch.float64) - origins
    torch.testing.assert_close(forward, to_pivot / to_pivot.norm(dim=1, keepdim=True), atol=1e-5, rtol=0)
    # the same as look_at_pose on the recovered angles
    torch.testing.assert_close(cam2world[:3], look_at_pose(yaw[:3].float(), pitch[:3].float()), atol=1e-4, rtol=0)


def test_pose_sampling_is_deterministic_and_validated():
    a = sample_ffhq_like_poses(10, torch.Generator().manual_seed(1))
    b = sample_ffhq_like_poses(10, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, sample_ffhq_like_poses(10, torch.Generator().manual_seed(2)))
    frontal = sample_ffhq_like_poses(3, distribution=PoseDistribution(yaw_std=0, pitch_std=0))
    torch.testing.assert_close(split_label(frontal)[0], look_at_pose(0.0, 0.0).expand(3, 4, 4))
    with pytest.raises(DatasetError, match="yaw_std must be >= 0"):
        sample_ffhq_like_poses(3, distribution=PoseDistribution(yaw_std=-1))
    with pytest.raises(DatasetError, match="n must be a positive integer"):
        sample_ffhq_like_poses(0)


# ------------------------------------------------------------------------------------------------
# Writing and reading


def test_zip_layout_names_and_labels(written):
    assert archive_name(1234) == "00001/img00001234.png" and archive_name(0) == "00000/img00000000.png"
    with zipfile.ZipFile(written) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names == [f"00000/img{i:08d}.png" for i in range(N)] + ["dataset.json", "synthetic_config.json"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        labels = json.loads(zf.read("dataset.json"))["labels"]
        config = json.loads(zf.read("synthetic_config.json"))["config"]
        image = Image.open(io.BytesIO(zf.read(names[0])))
        assert (image.mode, image.size) == ("RGB", (RES, RES))
    assert [name for name, _ in labels] == names[:N]
    # The labels are the poses drawn from the seed's pose stream, bit for bit.
    poses = sample_ffhq_like_poses(N, torch.Generator().manual_seed(dataset_module._stream_seed(3, 0)))
    assert torch.equal(torch.tensor([label for _, label in labels], dtype=torch.float32), poses)
    assert (config["n"], config["resolution"], config["seed"]) == (N, RES, 3)
    assert config["rendering_kwargs"]["depth_resolution"] == 12 and config["rendering_kwargs"]["ray_end"] == 3.3


def test_reader_round_trip_and_images_are_the_renders(written):
    from nerfsculpt.synthetic.heads import head_field, sample_head_params
    from nerfsculpt.synthetic.render import render_field

    data = read_eg3d_dataset(written)
    assert len(data) == N and (data.resolution, data.num_channels) == (RES, 3)
    image, label = data[2]
    assert image.dtype == np.uint8 and image.shape == (3, RES, RES)
    assert label.dtype == np.float32 and label.shape == (25,)
    np.testing.assert_array_equal(data.labels[2], label)
    np.testing.assert_allclose(data.label_std(), data.labels.std(0))
    assert data[-1][1].tolist() == data.labels[N - 1].tolist()
    # Image 2 is head 2 of the head stream rendered from pose 2, converted with EG3D's x * 127.5 + 128.
    heads = sample_head_params(N, torch.Generator().manual_seed(dataset_module._stream_seed(3, 1)), defect_free=True)
    assert torch.all(heads.defects == 0)
    params = heads.index(2)
    with torch.no_grad():
        render = render_field(lambda p: head_field(p, params), torch.from_numpy(label)[None], RES, FAST)["image"]
    expected = (render[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1
    torch.testing.assert_close(image_to_float(image), render[0], atol=1 / 127.5, rtol=0)
    # the head is in the picture: a dark background and a lit subject
    assert image.min() == 0 and image.max() > 100
    with pytest.raises(IndexError):
        data[N]
    data.close()


def test_reading_a_deflated_copy_and_pickling_for_workers(written, tmp_path):
    import pickle

    deflated = tmp_path / "deflated.zip"
    with zipfile.ZipFile(written) as src:
        _write_zip(deflated, {name: src.read(name) for name in src.namelist()}, zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(deflated) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
    stored, compressed = read_eg3d_dataset(written), read_eg3d_dataset(deflated)
    for i in range(N):
        np.testing.assert_array_equal(stored[i][0], compressed[i][0])
        np.testing.assert_array_equal(stored[i][1], compressed[i][1])
    clone = pickle.loads(pickle.dumps(compressed))  # what a DataLoader worker receives
    np.testing.assert_array_equal(clone[1][0], stored[1][0])


def test_determinism_by_seed(tmp_path, written):
    again = write_dataset(tmp_path / "again.zip", N, RES, seed=3, rendering_kwargs=FAST, progress=False, ray_chunk=100)
    assert again.read_bytes() == written.read_bytes()  # also independent of the chunking
    other = read_eg3d_dataset(write_dataset(tmp_path / "other.zip", 2, RES, seed=4, rendering_kwargs=FAST,
                                            progress=False))
    first = read_eg3d_dataset(written)
    assert not np.array_equal(other.labels[0], first.labels[0])
    assert not np.array_equal(other[0][0], first[0][0])


def test_an_interrupted_write_leaves_no_zip(tmp_path, monkeypatch):
    out = tmp_path / "crash.zip"
    calls = []
    real = dataset_module.png_bytes

    def crash(image, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C halfway
        return real(image, **kwargs)

    monkeypatch.setattr(dataset_module, "png_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, 4, RES, rendering_kwargs=FAST, progress=False)
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []
    # an existing dataset survives a failed overwrite
    monkeypatch.setattr(dataset_module, "png_bytes", real)
    write_dataset(out, 2, RES, rendering_kwargs=FAST, progress=False)
    before = out.read_bytes()
    calls.clear()
    monkeypatch.setattr(dataset_module, "png_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(out, 4, RES, rendering_kwargs=FAST, progress=False, overwrite=True)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["crash.zip"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be a positive integer"),
        ({"resolution": 24}, "power of two"),
        ({"seed": -1}, "seed must be"),
        ({"rendering_kwargs": {"ray_start": "auto"}}, "'auto'"),
        ({"poses": PoseDistribution(pitch_limit=2.0)}, "pitch_limit must be < pi/2"),
        ({"out": "synth.tar"}, "ending in .zip"),
    ],
)
def test_write_bad_input(tmp_path, kwargs, message):
    args = {"out": "synth.zip", "n": 2, "resolution": RES, **kwargs}
    out = tmp_path / args.pop("out")
    with pytest.raises(DatasetError, match=message):
        write_dataset(out, **args, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_to_overwrite(written):
    with pytest.raises(DatasetError, match="already exists; pass overwrite=True"):
        write_dataset(written, 2, RES, progress=False)


def _label_json(names, n_numbers=25):
    return json.dumps({"labels": [[name, [0.5] * n_numbers] for name in names]}).encode()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"00000/img00000000.png": "square"}, "has no dataset.json"),
        ({"00000/img00000000.png": "square", "dataset.json": b'{"labels": null}'}, "'labels': null"),
        ({"00000/img00000000.png": "square", "00000/img00000001.png": "square",
          "dataset.json": _label_json(["00000/img00000000.png"])}, r"1 image\(s\) have no label.*img00000001"),
        ({"00000/img00000000.png": "square", "dataset.json": _label_json(["00000/img00000000.png"], 16)},
         "25 numbers"),
        ({"00000/img00000000.png": "wide", "dataset.json": _label_json(["00000/img00000000.png"])},
         "must be square, 00000/img00000000.png is 16x8"),
        ({"dataset.json": _label_json([])}, "contains no images"),
        ({"00000/img00000000.png": "square", "dataset.json": b"{not json"}, "is not {'labels'"),
    ],
)
def test_read_bad_input(tmp_path, files, message):
    arrays = {"square": np.zeros((8, 8, 3), np.uint8), "wide": np.zeros((8, 16, 3), np.uint8)}
    contents = {name: _png(arrays[v]) if isinstance(v, str) else v for name, v in files.items()}
    path = _write_zip(tmp_path / "bad.zip", contents)
    with pytest.raises(DatasetError, match=message):
        read_eg3d_dataset(path)


def test_read_not_a_zip_and_mismatched_image(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="is not a zip file"):
        read_eg3d_dataset(tmp_path / "x.zip")
    names = ["00000/img00000000.png", "00000/img00000001.png"]
    path = _write_zip(tmp_path / "mixed.zip", {names[0]: _png(np.zeros((8, 8, 3), np.uint8)),
                                               names[1]: _png(np.zeros((4, 4, 3), np.uint8)),
                                               "dataset.json": _label_json(names)})
    data = read_eg3d_dataset(path)
    assert data[0][0].shape == (3, 8, 8)
    with pytest.raises(DatasetError, match=r"img00000001.png is \(3, 4, 4\)"):
        data[1]


# ------------------------------------------------------------------------------------------------
# CLI


def _run(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_a_readable_dataset(capsys, tmp_path):
    out = tmp_path / "cli.zip"
    code, stdout, err = _run(capsys, "synthetic", "dataset", "--n", "3", "--out", str(out), "--resolution", "16",
                             "--seed", "3", "--depth-resolution", "12", "--depth-resolution-importance", "12",
                             "--no-progress")
    assert code == 0, err
    assert stdout.strip() == str(out)
    data = read_eg3d_dataset(out)
    assert len(data) == 3 and data.resolution == 16
    reference = write_dataset(tmp_path / "api.zip", 3, 16, seed=3, rendering_kwargs=FAST, progress=False)
    assert out.read_bytes() == reference.read_bytes()  # the CLI mirrors the library


def test_cli_help_dry_run_and_defaults(capsys, tmp_path):
    code, out, _ = _run(capsys, "synthetic", "dataset", "--help")
    text = " ".join(out.split())
    assert code == 0 and "nerfsculpt synthetic dataset --n 2000 --out synth.zip" in text
    for default in ("(default: 128)", "(default: 0.3)", "(default: 32)", "(default: 4.2647)"):
        assert default in text, default
    defaults = PoseDistribution()
    args = cli.build_parser().parse_args(["synthetic", "dataset", "--n", "1", "--out", "o.zip"])
    for name in ("yaw_std", "pitch_std", "yaw_limit", "pitch_limit", "focal"):
        assert getattr(args, name) == getattr(defaults, name), name
    config = dataset_module.SyntheticDatasetConfig(1)
    assert args.resolution == config.resolution
    assert args.depth_resolution == config.rendering_kwargs["depth_resolution"]
    assert args.depth_resolution_importance == config.rendering_kwargs["depth_resolution_importance"]
    assert args.ray_chunk == dataset_module.DEFAULT_RAY_CHUNK

    target = tmp_path / "dry.zip"
    code, out, _ = _run(capsys, "synthetic", "dataset", "--n", "2000", "--out", str(target), "--dry-run")
    plan = json.loads(out)
    assert code == 0 and not target.exists()
    assert (plan["config"]["n"], plan["config"]["resolution"]) == (2000, 128)
    assert plan["config"]["rendering_kwargs"]["depth_resolution_importance"] == 32

    code, _, err = _run(capsys, "synthetic")
    assert code == 2 and "dataset" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "0"], "n must be a positive integer"),
        (["--n", "2", "--resolution", "100"], "power of two"),
        (["--n", "2", "--yaw-std", "-1"], "yaw_std must be >= 0"),
        (["--n", "2", "--ray-chunk", "0"], "--ray-chunk must be >= 1"),
        (["--n", "2", "--out-name", "synth.tar"], "ending in .zip"),
        (["--n", "2", "--out-name", "exists.zip"], "already exists; pass --overwrite"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, message):
    (tmp_path / "exists.zip").write_bytes(b"")
    name = "synth.zip"
    if "--out-name" in argv:
        name = argv[argv.index("--out-name") + 1]
        argv = argv[: argv.index("--out-name")]
    code, _, err = _run(capsys, "synthetic", "dataset", "--out", str(tmp_path / name), *argv)
    assert code == 2 and message in err, err
    assert err.startswith("nerfsculpt synthetic dataset: error:") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.zip"]
