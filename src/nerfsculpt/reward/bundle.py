"""Reward bundles: a trained reward as ``model.safetensors`` + ``config.json`` (never a pickle).

The config carries everything scoring needs, so a reward is always applied with exactly the
transforms it was trained with:

- ``architecture``: network name (``sigma_unet``) and its config;
- ``extraction``: what the reward reads -- representation, the slab crop (``geometry.slab.SlabSpec``
  fields), whether sigma is sampled on EG3D's ``create_samples`` grid, the normalisation, the
  camera, and the latent rules of the training data (psi of regular and anchor items, truncation
  cutoff, noise mode);
- ``training`` (config, data hashes), ``metrics`` (Table-1 accuracies) and ``source`` (e.g. the
  imported reference bundle), free-form JSON;
- ``ensemble`` (only in a bundle of K > 1 networks, ``reward.ensemble``): ``{"members": K, "seeds":
  [...], "bootstrap": bool}``; the weights of member k are stored as ``members.<k>.<name>``, the
  ``architecture`` is the members' (every member has it).

Example::

    save_bundle("runs/reward", net, Extraction())
    bundle = load_bundle("runs/reward")
    r = bundle.score_slabs(slab_xyz)          # [N, 128, 141, 129] raw sigma (X, Y, Z) -> [N]
    rk = bundle.score_slabs_members(slab_xyz) # [K, N] per member (K = bundle.members; 1 for a single net)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nerfsculpt._version import __version__
from nerfsculpt.atomic import atomic_directory
from nerfsculpt.errors import NerfsculptError
from nerfsculpt.geometry.slab import SlabSpec, crop_reward_slab
from nerfsculpt.reward.baselines import DepthResNetReward, DepthRewardConfig, PointReward, PointRewardConfig
from nerfsculpt.reward.ensemble import RewardEnsemble
from nerfsculpt.reward.sigma_net import SigmaRewardConfig, SigmaRewardNet, sigma_input

FORMAT_NAME = "nerfsculpt-reward"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
REPRESENTATIONS = ("sigma_slab", "depth_single", "depth_triple", "points")
"""Inputs a reward reads: the sigma slab, the canonical depth map, the three depth maps (yaw +1, 0,
-1 rad), a point cloud from the canonical depth map (docs/method/reference_method.md §1-§2)."""
NORMALISATIONS = ("min_max_0_100",)


class BundleError(NerfsculptError, ValueError):
    """A reward bundle is missing, malformed, or does not fit the requested use."""


@dataclass(frozen=True)
class Extraction:
    """What a reward reads and how it was produced.

    Defaults: the paper's sigma slab (docs/method/reference_method.md §1).
    """

    representation: str = "sigma_slab"
    """Input kind; ``sigma_slab`` = the cropped 256^3 sigma cube."""
    slab: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(SlabSpec()))
    """``geometry.slab.SlabSpec`` fields of the crop."""
    eg3d_grid: bool = True
    """Sigma sampled at EG3D's ``create_samples`` points (the reference's), not the exact grid."""
    normalisation: str = "min_max_0_100"
    """Per-sample min-max of the slab to [0, 100] (the reference's ``normalise_sigma_self``)."""
    camera: str = "canonical"
    """Conditioning camera of the mapping network."""
    psi: float = 1.0
    """Truncation of the ranked (regular) items."""
    anchor_psi: float = 0.25
    """Truncation of the high-quality anchors (seeds 100000-100999)."""
    truncation_cutoff: int | None = 14
    """Truncation cutoff (w layers truncated)."""
    noise_mode: str = "const"
    """Synthesis noise mode."""

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise BundleError(f"unknown representation {self.representation!r}; known: {REPRESENTATIONS}")
        if self.normalisation not in NORMALISATIONS:
            raise BundleError(f"unknown normalisation {self.normalisation!r}; known: {NORMALISATIONS}")
        SlabSpec(**self.slab)

    @property
    def slab_spec(self) -> SlabSpec:
        return SlabSpec(**self.slab)


ARCHITECTURES: dict[str, tuple[type[nn.Module], Any]] = {
    "sigma_unet": (SigmaRewardNet, SigmaRewardConfig),
    "depth_resnet50": (DepthResNetReward, DepthRewardConfig),
    "point_net": (PointReward, PointRewardConfig),
}
"""Network name -> (class, config class with ``from_dict``/``to_dict``)."""


def architecture_name(model: nn.Module) -> str:
    for name, (cls, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise BundleError(f"no bundle architecture for {type(model).__name__}")


@dataclass
class RewardBundle:
    """A loaded reward: the network (eval mode) and the bundle's config."""

    model: nn.Module
    """The reward network, or a ``RewardEnsemble`` whose reward is its members' mean (``reward.ensemble``)."""
    extraction: Extraction
    """What the reward reads and how it was produced."""
    config: dict[str, Any]
    """The bundle's ``config.json``."""
    path: Path | None = None
    """The bundle directory it was loaded from."""

    @property
    def members(self) -> int:
        """K, the networks of an ensemble bundle; 1 for a single network."""
        return len(self.model.members) if isinstance(self.model, RewardEnsemble) else 1

    def member_rewards(self, x: Tensor) -> Tensor:  # [N, ...] network input (prepare_slabs) -> [K, N]
        """Each member's reward of prepared inputs (differentiable); [1, N] for a single network."""
        if isinstance(self.model, RewardEnsemble):
            return self.model.member_rewards(x)
        return self.model(x)[None]  # (1, N)

    def prepare_slabs(self, slab_xyz: Tensor) -> Tensor:  # [N, X, Y, Z] raw sigma -> [N, 1, Z, Y, X]
        """The network input for raw sigma slabs, with the bundle's transforms (crop already applied)."""
        spec = self.extraction.slab_spec
        assert slab_xyz.ndim == 4 and tuple(slab_xyz.shape[1:]) == spec.shape, (
            f"expected raw sigma slabs [N, {', '.join(map(str, spec.shape))}] in (X, Y, Z) order, got "
            f"{tuple(slab_xyz.shape)}; crop a [N, {spec.resolution}^3] cube with score_cubes instead")
        return sigma_input(slab_xyz)

    def check_generator(self, G: nn.Module) -> None:
        """BundleError if the bundle records a generator (``config['generator']``) whose sizes differ from ``G``'s."""
        trained_on = self.config.get("generator")
        if not trained_on:
            return
        ours = generator_record(G)
        differ = {k: (trained_on[k], ours[k]) for k in GENERATOR_KEYS if k in trained_on and trained_on[k] != ours[k]}
        if differ:
            text = ", ".join(f"{k} {a} (reward) vs {b} (generator)" for k, (a, b) in differ.items())
            raise BundleError(f"the reward was trained on sigma of another kind of generator: {text}; train a "
                              f"reward on this generator's samples")

    def score_slabs(self, slab_xyz: Tensor) -> Tensor:  # [N, X, Y, Z] -> [N]
        """Rewards of raw sigma slabs (X, Y, Z order, as ``geometry.slab.crop_reward_slab`` returns them)."""
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.model(self.prepare_slabs(slab_xyz).to(device)).cpu()

    def score_slabs_members(self, slab_xyz: Tensor) -> Tensor:  # [N, X, Y, Z] -> [K, N]
        """Each member's rewards of raw sigma slabs, as :meth:`score_slabs` (no gradients, on the CPU)."""
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.member_rewards(self.prepare_slabs(slab_xyz).to(device)).cpu()

    def score_inputs(self, raw: Tensor) -> Tensor:  # [N, ...] as the bank stores them -> [N]
        """Rewards of raw inputs of the bundle's representation (slabs, depth maps or point clouds)."""
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.model(raw.to(device)).cpu()

    def score_cubes(self, cube_xyz: Tensor) -> Tensor:  # [N, R, R, R] -> [N]
        """Rewards of raw sigma cubes on the bundle's full grid (cropped here)."""
        return self.score_slabs(crop_reward_slab(cube_xyz, self.extraction.slab_spec))


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a weights file, never running code from it: ``.safetensors``, or a ``.pt``/``.pth``
    read with ``torch.load(weights_only=True)`` (a Lightning checkpoint's ``state_dict`` entry is used)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused or a corrupt file: say which and why
        raise BundleError(f"cannot read {path} as a tensors-only checkpoint ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # a Lightning checkpoint
    if not (isinstance(data, dict) and data and all(isinstance(v, Tensor) for v in data.values())):
        raise BundleError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return data


def load_strictly(model: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """``model.load_state_dict(state, strict=True)``, a mismatch raised as BundleError starting with ``what``."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise BundleError(f"{what} ({str(error).splitlines()[0]} ...)") from None


GENERATOR_KEYS = ("img_resolution", "plane_resolution", "box_warp")
"""What a bundle records of the generator its training inputs came from (``config['generator']``)."""
FFHQ512_GENERATOR = {"img_resolution": 512, "plane_resolution": 256, "box_warp": 1.0}
"""That record for NVIDIA's ffhq512-128.pkl (the paper's released reward)."""


def generator_record(G: nn.Module) -> dict[str, Any]:
    """The sizes of ``G`` that a sigma reward depends on (stored as ``config['generator']``)."""
    return {"img_resolution": int(G.img_resolution), "plane_resolution": int(G.config.plane_resolution),
            "box_warp": float(G.rendering_kwargs["box_warp"])}


def save_bundle(out_dir: str | Path, model: nn.Module, extraction: Extraction, training: dict[str, Any] | None = None,
                metrics: dict[str, Any] | None = None, source: dict[str, Any] | None = None,
                overwrite: bool = False, generator: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and its config as a bundle directory, atomically. Returns the directory.

    ``model``: a reward network or a :class:`~nerfsculpt.reward.ensemble.RewardEnsemble` (its
    members' architecture is recorded, and ``ensemble`` beside it). ``generator``:
    :func:`generator_record` of the generator whose samples the reward was trained on (fine-tuning
    refuses a generator of other sizes).
    """
    from safetensors.torch import save  # not save_file: it creates its files 0600, not by the umask

    network = model.members[0] if isinstance(model, RewardEnsemble) else model
    name = architecture_name(network)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "nerfsculpt_version": __version__,
        "architecture": {"name": name, "config": network.config.to_dict()},
        "extraction": dataclasses.asdict(extraction),
        "training": training or {},
        "metrics": metrics or {},
        "source": source or {},
        "generator": generator,
    }
    if isinstance(model, RewardEnsemble):
        seeds = None if model.seeds is None else list(model.seeds)
        config["ensemble"] = {"members": len(model.members), "seeds": seeds, "bootstrap": model.bootstrap}
    text = json.dumps(config, indent=2) + "\n"  # fails before anything is written
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_directory(out_dir, overwrite, error=BundleError) as staging:
        (staging / WEIGHTS_FILE).write_bytes(save(tensors, metadata={"format": "pt"}))
        (staging / CONFIG_FILE).write_text(text)
    return Path(out_dir)


def load_bundle(path: str | Path, device: str | torch.device = "cpu",
                representation: str | None = None) -> RewardBundle:
    """Load a bundle written by :func:`save_bundle` (or ``nerfsculpt reward import-reference``).

    ``representation`` (if given) must match the bundle's, e.g. ``"sigma_slab"`` for code that
    feeds sigma slabs.
    """
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not (config_path.is_file() and weights_path.is_file()):
        raise BundleError(f"{path} is not a reward bundle (needs {CONFIG_FILE} and {WEIGHTS_FILE}); a reference "
                          f"release (best_model.pt + run_config.yaml) is converted by `nerfsculpt reward "
                          f"import-reference`")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise BundleError(f"{config_path} is not valid JSON ({error})") from None
    if config.get("format") != FORMAT_NAME or config.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{config_path} is not a {FORMAT_NAME} v{FORMAT_VERSION} config "
                          f"(format {config.get('format')!r} v{config.get('format_version')!r})")
    try:
        extraction = Extraction(**config["extraction"])
    except TypeError as error:
        raise BundleError(f"{config_path}: malformed extraction spec ({error})") from None
    if representation is not None and extraction.representation != representation:
        raise BundleError(f"{path} holds a reward for {extraction.representation!r} inputs, not {representation!r}")
    name = config["architecture"]["name"]
    if name not in ARCHITECTURES:
        raise BundleError(f"{path}: unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    cls, config_cls = ARCHITECTURES[name]
    members = _ensemble_members(path, config)
    try:
        networks = [cls(config_cls.from_dict(config["architecture"]["config"])) for _ in range(members or 1)]
    except (TypeError, ValueError) as error:
        raise BundleError(f"{path}: architecture config does not build a {name} network ({error})") from None
    state = load_file(weights_path)
    if members is None:
        model = networks[0]
    else:
        missing = [k for k in range(members) if not any(key.startswith(f"members.{k}.") for key in state)]
        if missing:
            raise BundleError(f"{path}: {CONFIG_FILE} lists an ensemble of {members} members but {WEIGHTS_FILE} has "
                              f"no weights for member(s) {missing}; rerun the ensemble's 'nerfsculpt reward train "
                              f"--ensemble {members}' to rewrite the bundle, or use a complete copy")
        record = config["ensemble"]
        try:
            model = RewardEnsemble(networks, seeds=record.get("seeds"), bootstrap=record.get("bootstrap", False))
        except (TypeError, ValueError) as error:
            raise BundleError(f"{path}: malformed 'ensemble' entry in {CONFIG_FILE} ({error})") from None
    load_strictly(model, state, f"{path}: the weights do not fit the architecture in {CONFIG_FILE}")
    return RewardBundle(model=model.to(device).eval(), extraction=extraction, config=config, path=path)


def _ensemble_members(path: Path, config: dict[str, Any]) -> int | None:
    """K of an ensemble bundle's ``config['ensemble']`` (checked), None for a single network."""
    record = config.get("ensemble")
    if record is None:
        return None
    members = record.get("members") if isinstance(record, dict) else None
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise BundleError(f"{path / CONFIG_FILE}: 'ensemble' must hold 'members' >= 1 (the number of networks), "
                          f"got {record!r}; remove the 'ensemble' entry of a single-network bundle")
    seeds = record.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or len(seeds) != members):
        raise BundleError(f"{path / CONFIG_FILE}: 'ensemble' lists {members} members but seeds {seeds!r}; give one "
                          f"training seed per member, or null")
    return members
