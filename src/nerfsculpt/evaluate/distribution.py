"""The image-distribution cost of fine-tuning: FID and KID between feature sets, in float64.

The protocol of EG3D's FID-50k (docs/method/eg3d.md §5.4): 2048-d features of the StyleGAN
TorchScript Inception detector (called with ``return_features=True`` on uint8 NCHW images), the
mean and the biased covariance (divided by n) of each set in float64, and

    FID = |mu_g - mu_r|^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)).

The trace of the matrix square root is computed as the sum of the square roots of the eigenvalues
of ``S_r^(1/2) S_g S_r^(1/2)`` (symmetric, positive semi-definite, the same eigenvalues as
``S_g S_r``): no complex parts to discard, unlike ``scipy.linalg.sqrtm``.

KID (Binkowski et al. 2018) is the unbiased estimate of the squared MMD with the cubic polynomial
kernel ``k(x, y) = (x . y / d + 1)^3``, averaged over random subsets (StyleGAN's metric: 100 subsets
of at most 1,000 samples); it is unbiased, so unlike FID it does not depend on the sample count in
expectation.

Feature extractors are user-given files (nothing is downloaded): a TorchScript module or, with the
optional ``onnxruntime``, an ONNX model (:func:`load_feature_extractor`).

Example::

    real, fake = FeatureStatistics.of(real_features), FeatureStatistics.of(fake_features)   # [N, D] each
    frechet_distance(real, fake)
    kernel_inception_distance(real_features, fake_features)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KID_SUBSETS = 100
"""Random subsets KID averages over (StyleGAN's ``num_subsets``)."""
KID_SUBSET_SIZE = 1000
"""Samples per subset at most (StyleGAN's ``max_subset_size``)."""


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean and biased covariance of a feature set, float64, and how many samples made them."""

    mean: np.ndarray
    """[D] mean feature."""
    covariance: np.ndarray
    """[D, D] covariance, divided by n (EG3D's metric)."""
    n: int
    """Number of samples."""

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStatistics:
        """Statistics of ``features`` [N, D] (any float dtype; accumulated in float64)."""
        x = np.asarray(features, dtype=np.float64)
        assert x.ndim == 2 and len(x) >= 2, f"expected features [N >= 2, D], got {x.shape}"
        mean = x.mean(axis=0)
        covariance = x.T @ x / len(x) - np.outer(mean, mean)  # second moment - mu mu^T, as EG3D's metric
        return cls(mean, covariance, len(x))

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write ``path`` (safetensors: mean, covariance) and ``path.json`` (n and ``meta``), atomically."""
        from safetensors.numpy import save

        from nerfsculpt.atomic import write_atomic

        path = Path(path)
        write_atomic(path, save({"mean": self.mean, "covariance": self.covariance}))
        write_atomic(path.with_name(path.name + ".json"), (json.dumps({"n": self.n, **(meta or {})}, indent=2)
                                                           + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> tuple[FeatureStatistics, dict[str, Any]]:
        """Read what :meth:`save` wrote: (statistics, meta)."""
        from safetensors.numpy import load_file

        path = Path(path)
        tensors = load_file(path)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        return cls(tensors["mean"], tensors["covariance"], int(meta.pop("n"))), meta


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from rounding set to 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """FID between two feature distributions summarised by their statistics (float64)."""
    root_b = _sqrt_psd(b.covariance)
    middle = root_b @ a.covariance @ root_b  # symmetric PSD, eigenvalues of S_a S_b
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = ((a.mean - b.mean) ** 2).sum() + np.trace(a.covariance) + np.trace(b.covariance) - 2 * trace_sqrt
    return float(max(distance, 0.0))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> float:
    """KID: the unbiased squared MMD of features ``a`` [N, D] and ``b`` [M, D], mean over random subsets.

    Each subset draws m = min(N, M, ``subset_size``) samples of each set without replacement
    (``numpy.random.default_rng(seed)``); the estimate of one subset is

        1/(m(m-1)) sum_{i!=j} k(a_i, a_j) + 1/(m(m-1)) sum_{i!=j} k(b_i, b_j) - 2/m^2 sum_{i,j} k(a_i, b_j)

    with ``k(x, y) = (x . y / D + 1)^3``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.ndim == b.ndim == 2 and a.shape[1] == b.shape[1], f"features of one width, got {a.shape}, {b.shape}"
    m = min(len(a), len(b), subset_size)
    assert m >= 2, "KID needs at least 2 samples per set"
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3  # [m, m] each
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        total += within - 2 * kxy.mean()
    return float(total / subsets)


PIXEL_SIDE = 32
"""Side of the downsampled images whose pixels are the features of :func:`pixel_features`."""


def pixel_features(images: Any) -> Any:  # uint8 [N, 3, H, W] -> float [N, 3 * 32 * 32]
    """Pixels as features: each image area-averaged to 32 x 32, in [0, 1]. Needs no model file; coarse
    (colour and layout, not semantics), for comparing two generators' image distributions when no
    detector is at hand."""
    import torch.nn.functional as F

    small = F.interpolate(images.float() / 255, size=(PIXEL_SIDE, PIXEL_SIDE), mode="area")  # (N, 3, 32, 32)
    return small.flatten(1)


FeatureExtractor = Callable[[Any], Any]
"""Maps uint8 images [N, 3, H, W] (a torch tensor) to features [N, D] (a torch tensor)."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes: which detector made a set of features (recorded in every report)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_feature_extractor(path: str | Path, device: Any = "cpu", return_features: bool = True) -> FeatureExtractor:
    """A feature extractor from a user-given file: TorchScript (``.pt``, ``.pth``, ``.ts``) or ONNX (``.onnx``).

    TorchScript modules are loaded with ``torch.jit.load`` (no pickle). With ``return_features``
    the module is called as ``module(images, return_features=True)``, the StyleGAN Inception
    detector's interface (its 2048-d pool features); otherwise ``module(images)``. ONNX models need
    ``pip install onnxruntime`` and take the images as float32 in [0, 255].

    StyleGAN's ``inception-2015-12-05.pkl`` holds a TorchScript module inside a pickle; save it once
    as TorchScript (``torch.jit.save(module, "inception.pt")``) where you trust the file.
    """
    import torch

    from nerfsculpt.errors import NerfsculptError

    path = Path(path)
    if not path.is_file():
        raise NerfsculptError(f"no model file at {path}; pass the path of a TorchScript (.pt) or ONNX (.onnx) file")
    if path.suffix.lower() == ".onnx":
        try:
            import onnxruntime
        except ImportError:
            raise NerfsculptError(f"{path} is an ONNX model: pip install onnxruntime to use it") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(images: torch.Tensor) -> torch.Tensor:
            out = session.run(None, {name: images.to(torch.float32).cpu().numpy()})[0]
            return torch.from_numpy(out).reshape(len(images), -1)

        return run_onnx
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; the StyleGAN detector is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            module = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as error:
            raise NerfsculptError(f"{path} is not a TorchScript file (torch.jit.save) or an .onnx model: "
                                  f"{str(error).splitlines()[0]}") from None

    @torch.no_grad()
    def run(images: torch.Tensor) -> torch.Tensor:
        out = module(images.to(device), return_features=True) if return_features else module(images.to(device))
        return out.reshape(len(images), -1).float()

    return run


def generator_features(G: Any, extract: FeatureExtractor, n: int, labels: np.ndarray, batch: int = 16,
                       seed: int = 0, progress: bool = False) -> np.ndarray:  # -> [n, D] float64
    """Features of ``n`` images of ``G`` as EG3D's FID samples them (docs/method/eg3d.md §5.4).

    z ~ N(0, I) and each image's camera (conditioning and rendering) the label [25] of a random row
    of ``labels`` (a dataset's poses), psi 1, random backbone noise; images quantised to uint8 by
    ``(x * 127.5 + 128).clamp(0, 255)``. Seeded (``seed``) for every draw.
    """
    import torch
    from tqdm import tqdm

    device = G.dataset_label_std.device
    rng = np.random.default_rng(seed)
    features = []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in tqdm(range(0, n, batch), disable=not progress, unit="batch", desc="generated features"):
            count = min(batch, n - start)
            z = torch.randn(count, G.z_dim).to(device)
            c = torch.from_numpy(labels[rng.integers(0, len(labels), count)]).float().to(device)  # (B, 25)
            image = G(z, c, truncation_psi=1.0, noise_mode="random")["image"]  # (B, 3, H, W) in [-1, 1]
            features.append(extract((image * 127.5 + 128).clamp(0, 255).to(torch.uint8)).double().cpu().numpy())
    return np.concatenate(features)


def dataset_features(dataset: Any, extract: FeatureExtractor, n: int | None = None, batch: int = 64,
                     progress: bool = False) -> np.ndarray:  # -> [n, D] float64
    """Features of the first ``n`` images of an ``EG3DDataset`` (all by default); grey images repeated to RGB."""
    import torch
    from tqdm import tqdm

    n = len(dataset) if n is None else min(n, len(dataset))
    features = []
    for start in tqdm(range(0, n, batch), disable=not progress, unit="batch", desc="real features"):
        images = torch.from_numpy(np.stack([dataset[i][0] for i in range(start, min(n, start + batch))]))
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)  # (B, 3, H, W) uint8
        features.append(extract(images).double().cpu().numpy())
    return np.concatenate(features)


KID_POOL = 5000
"""Real features kept (a seeded random subset) for KID beside the cached statistics of a dataset."""


def cached_dataset_statistics(data: str | Path, extract: FeatureExtractor, detector_sha256: str,
                              cache_dir: str | Path | None = None, call: str = "return_features",
                              progress: bool = False) -> tuple[FeatureStatistics, np.ndarray]:
    """FID statistics of all of a dataset zip's images, and a pool of their features for KID; cached.

    The pool is a seeded random subset of ``KID_POOL`` real features (all of them for a smaller
    dataset): KID's subsets of at most 1,000 samples are drawn from it. The cache key is (zip path,
    size, modification time, detector hash, how the detector is called: ``call``); the cache lives
    in ``cache_dir`` (default ``$XDG_CACHE_HOME/nerfsculpt/fid`` or ``~/.cache/nerfsculpt/fid``).
    """
    import os

    from safetensors.numpy import load_file, save

    from nerfsculpt.atomic import write_atomic
    from nerfsculpt.eg3d_dataset import read_eg3d_dataset

    data = Path(data).resolve()
    stat = data.stat()
    key = json.dumps([str(data), stat.st_size, stat.st_mtime_ns, detector_sha256, call, KID_POOL])
    folder = Path(cache_dir) if cache_dir is not None else (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nerfsculpt" / "fid")
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"
    if path.is_file():
        statistics, _ = FeatureStatistics.load(path)
        return statistics, load_file(path.with_name(path.stem + ".pool.safetensors"))["features"]
    features = dataset_features(read_eg3d_dataset(data), extract, progress=progress)
    statistics = FeatureStatistics.of(features)
    pool = features[np.sort(np.random.default_rng(0).permutation(len(features))[:KID_POOL])]
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path.with_name(path.stem + ".pool.safetensors"), save({"features": pool}))
    statistics.save(path, meta={"dataset": str(data), "detector_sha256": detector_sha256})
    return statistics, pool
