"""Fit the built-in ``synthetic`` generator to the procedural head family.

Usage (the shipped weights came from the first command; its log is ``docs/synthetic_fit.log``)::

    nerfsculpt synthetic fit --out runs/synthetic-fit --minutes 57
    nerfsculpt synthetic fit --out /tmp/smoke --steps 3 --batch 2 --image-every 2     # smoke test

The generator is EG3D's architecture at a small size (``synthetic.generator``: 64^2 tri-planes,
32 px neural rendering, 128 px output, ~1.6M parameters, a full-rate mapping network). It is fitted by regression, not
adversarially: for a latent z and a random FFHQ-like pose c, the target is the procedural head
``heads.head_field(., heads.head_params_from_z(z))``, so the generator learns the latent -> head
map. z is N(0, I) except for its five defect coordinates, drawn wider (``defect_latent_scale``) so
that strong defects are not rare. The mapping network is conditioned on the canonical camera (as
every command samples the generator), so w depends on z alone. Losses of one step (``FitConfig``):

- sigma at four sets of points (``training_points``): uniform in the box; the candidates closest
  to the target surface, over the whole head and again over the face; and uniform points filling
  the places where defects appear (``DEFECT_BOXES``: floaters, crater, creased cheeks, nose), so
  that the small defect volumes weigh in the loss whether a latent has them or not. Smooth L1 on
  sigma / ``SIGMA_UNIT``, so EG3D's raw sigma scale (about +-200) is learned directly, weighted up
  where a defect changes the target or could (``defect_weights``);
- colour at the near-surface points and in a shell around the surface (``colour_shell``): cross-entropy
  between the decoder's first three colour logits and the albedo (``point_losses``), weighted
  strongly enough (``colour_weight``) that the shared decoder keeps sigma's detail out of the colours;
- the decoder's sigma row is reparametrised with a gain during the fit (``add_sigma_gain``) so that
  sigma reaches EG3D's scale without saturating the colours; saved weights are always plain EG3D;
- every ``image_every`` steps, images at FFHQ-like poses: L1 between G's raw (NRR) and
  super-resolved renders and the procedural head rendered by the same renderer (``render.render_field``),
  which trains the super-resolution and the colours seen through the volume.

The run is resumable: a checkpoint (weights, EMA, Adam moments, step) is written every
``checkpoint_every`` steps and when the time budget ends, and a rerun with the same ``--out``
continues from it. Each step's random draws come from a generator seeded by (seed, step), so a
resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfsculpt.atomic import write_atomic
from nerfsculpt.camera import canonical_camera
from nerfsculpt.eg3d_dataset import sample_ffhq_like_poses
from nerfsculpt.generator.rendering import sample_from_planes
from nerfsculpt.generator.triplane import TriPlaneGenerator
from nerfsculpt.synthetic.config import FitConfig
from nerfsculpt.synthetic.generator import synthetic_generator_config
from nerfsculpt.synthetic.heads import (
    DEFECTS,
    N_COLOUR,
    N_IDENTITY,
    SIGMA_SCALE,
    SIGMA_WIDTH,
    Z_DIM_MIN,
    HeadParams,
    head_field,
    head_params_from_z,
    head_sigma,
)
from nerfsculpt.synthetic.render import render_field

log = logging.getLogger(__name__)

SIGMA_UNIT = 10.0  # sigma is regressed in units of 10: strong enough against the colour loss on shared weights


# ------------------------------------------------------------------------------------------------
# Targets


FACE_BOX: tuple[tuple[float, float, float], tuple[float, float, float]] = ((-0.22, -0.28, 0.0), (0.22, 0.28, 0.42))
"""(low, high) corners of the face region that gets its own share of surface points."""

DEFECT_BOXES: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((0.01, 0.045, 0.275), (0.14, 0.175, 0.405), 0.125),  # floaters (heads.FLOATER_CENTRES, radius + margin)
    ((-0.145, -0.04, 0.27), (-0.025, 0.08, 0.39), 0.125),
    ((0.005, -0.185, 0.305), (0.115, -0.075, 0.415), 0.125),
    ((-0.1, 0.04, 0.08), (0.1, 0.24, 0.3), 0.125),  # forehead crater
    ((0.02, -0.18, 0.1), (0.16, 0.02, 0.28), 0.125),  # creased cheeks, both sides
    ((-0.16, -0.18, 0.1), (-0.02, 0.02, 0.28), 0.125),
    ((-0.04, -0.08, 0.18), (0.04, 0.07, 0.33), 0.25),  # nose
)
"""(low corner, high corner, share of ``defect_points``) of the boxes where defects appear."""


def _uniform_in_box(n: int, m: int, low: tuple[float, ...], high: tuple[float, ...],
                    generator: torch.Generator) -> Tensor:  # -> [n, m, 3]
    low_t, high_t = torch.tensor(low), torch.tensor(high)
    return low_t + (high_t - low_t) * torch.rand(n, m, 3, generator=generator)


def _surface_band(params: HeadParams, n_keep: int, n_candidates: int, low: tuple[float, ...],
                  high: tuple[float, ...], generator: torch.Generator) -> Tensor:  # -> [N, n_keep, 3]
    """n_keep points near the target surface inside the box (low, high).

    Of ``n_candidates`` uniform candidates the eighth closest to the surface (smallest |sigma|) are
    each jittered four times by ~6 mm, and the n_keep closest of all candidates are kept: a thin
    band around the surface, where sigma changes sign.
    """
    base = _uniform_in_box(len(params), n_candidates, low, high, generator)  # (N, C, 3)
    near = _closest(base, head_field(base, params)[0], max(1, n_candidates // 8))  # (N, C/8, 3)
    jittered = near.repeat(1, 4, 1)
    jittered = (jittered + 0.006 * torch.randn(jittered.shape, generator=generator)).clamp(-0.5, 0.5)
    candidates = torch.cat([base, jittered], 1)  # (N, 3C/2, 3)
    return _closest(candidates, head_field(candidates, params)[0], n_keep)


def training_points(params: HeadParams, config: FitConfig, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Points [N, P, 3], target sigma [N, P] and albedo [N, P, 3].

    P = U + D + 2S, in this order: U = ``uniform_points`` uniform in the box [-0.5, 0.5]^3;
    D = ``defect_points`` uniform in ``DEFECT_BOXES`` (each box its share); S = ``surface_points``
    near the target surface over the whole box, then S more over ``FACE_BOX`` (``_surface_band``).
    """
    n = len(params)
    box = ((-0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        uniform = _uniform_in_box(n, config.uniform_points, *box, generator)
        counts = [round(share * config.defect_points) for _, _, share in DEFECT_BOXES]
        counts[-1] += config.defect_points - sum(counts)
        defect = torch.cat([_uniform_in_box(n, m, low, high, generator)
                            for (low, high, _), m in zip(DEFECT_BOXES, counts, strict=True)], 1)
        surface = _surface_band(params, config.surface_points, config.candidate_points, *box, generator)
        face = _surface_band(params, config.surface_points, config.candidate_points, *FACE_BOX, generator)
        points = torch.cat([uniform, defect, surface, face], 1)  # (N, U + D + 2S, 3)
        sigma, colour = head_field(points, params)
    return points, sigma, colour


def _closest(points: Tensor, sigma: Tensor, k: int) -> Tensor:  # [N, M, 3], [N, M] -> [N, k, 3]
    """The k points with the smallest |sigma| (nearest the surface) of each row."""
    order = sigma.abs().argsort(dim=1)[:, :k]  # (N, k)
    return torch.gather(points, 1, order[..., None].expand(-1, -1, 3))


@torch.no_grad()
def defect_weights(points: Tensor, params: HeadParams, sigma: Tensor, defect_weight: float) -> Tensor:
    """Per-point weights [N, M] of the sigma loss, mean 1 (``FitConfig.defect_weight``).

    ``sigma`` [N, M] is the target at ``points`` [N, M, 3]. A point's weight grows with how much the
    latent's defects, or all defects at severity 1, move the target away from the same head without defects.
    """
    if defect_weight == 0:
        return torch.ones_like(sigma)
    clean = head_sigma(points, params.with_defects(torch.zeros(len(DEFECTS))))
    worst = head_sigma(points, params.with_defects(torch.ones(len(DEFECTS))))
    change = torch.maximum((sigma - clean).abs(), (worst - clean).abs())
    weights = 1 + defect_weight * (change / 100).clamp(max=1)
    return weights / weights.mean()


def point_losses(G: TriPlaneGenerator, z: Tensor, config: FitConfig, generator: torch.Generator) -> dict[str, Tensor]:
    """Sigma (weighted smooth L1 in units of ``SIGMA_UNIT``) and colour losses for latents z [N, z_dim].

    The colour loss is a binary cross-entropy on the decoder's colour logits (EG3D's colour is
    ``sigmoid(logit) * 1.002 - 0.001``): unlike an L1 on the sigmoid it keeps a gradient when the
    sigmoid saturates, which it does early in the fit. Its minimum (the targets' entropy) is
    subtracted, so 0 is a perfect fit.
    """
    params = head_params_from_z(z)
    points, sigma_t, colour_t = training_points(params, config, generator)
    ws = G.mapping(z, _canonical(z), update_emas=True)  # tracks w_avg for truncation
    planes = G.planes(ws, noise_mode="random", generator=generator)
    features = sample_from_planes(planes, points, box_warp=G.rendering_kwargs["box_warp"]).mean(1)  # (N, P, C)
    n, m, f = features.shape
    raw = G.decoder.decode_raw(features.reshape(n * m, f)).reshape(n, m, -1)  # (N, P, 1 + C): before activation
    sigma = raw[..., 0]  # (N, P)
    target = ((colour_t + 0.001) / 1.002).clamp(1e-4, 1 - 1e-4)  # EG3D's widened sigmoid, inverted
    colour = (F.binary_cross_entropy_with_logits(raw[..., 1:4], target, reduction="none")
              - F.binary_cross_entropy(target, target, reduction="none")).mean(-1)  # (N, P)
    shell = _colour_points(sigma_t, config)
    per_point = F.smooth_l1_loss(sigma / SIGMA_UNIT, sigma_t / SIGMA_UNIT, reduction="none")
    return {
        "sigma": (per_point * defect_weights(points, params, sigma_t, config.defect_weight)).mean(),
        "colour": colour[shell].mean(),
    }


def _colour_points(sigma_t: Tensor, config: FitConfig) -> Tensor:
    """Mask [N, P] of the points under the colour loss: the surface points, and every point within
    ``colour_shell`` of the target surface. sigma = 200 tanh(-sdf / 0.03), so |sdf| < d is
    |sigma| < 200 tanh(d / 0.03)."""
    mask = torch.zeros_like(sigma_t, dtype=torch.bool)
    mask[:, config.uniform_points + config.defect_points :] = True
    if config.colour_shell > 0:
        mask |= sigma_t.abs() < SIGMA_SCALE * math.tanh(config.colour_shell / SIGMA_WIDTH)
    return mask


def _canonical(z: Tensor) -> Tensor:
    """The mapping network's conditioning: the canonical camera for every latent of z [N, z_dim]."""
    return canonical_camera(device=z.device).expand(len(z), -1)


def image_losses(G: TriPlaneGenerator, z: Tensor, c: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
    """L1 of G's raw and super-resolved renders at cameras c against the procedural head rendered the same way."""
    params = head_params_from_z(z)
    with torch.no_grad():
        field = functools.partial(head_field, params=params)
        target_raw = render_field(field, c, G.neural_rendering_resolution, G.rendering_kwargs)["image"]
        target = render_field(field, c, G.img_resolution, G.rendering_kwargs)["image"]
    ws = G.mapping(z, _canonical(z))
    out = G.synthesis(ws, c, noise_mode="random", deterministic=True, generator=generator)
    return {"image_raw": F.l1_loss(out["image_raw"], target_raw), "image": F.l1_loss(out["image"], target)}


# ------------------------------------------------------------------------------------------------
# Sigma gain


class _ScaleFirstRow(torch.nn.Module):
    """Parametrization: the stored first row (the sigma output of the decoder) times ``gain``."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, value: Tensor) -> Tensor:
        return torch.cat([value[:1] * self.gain, value[1:]])

    def right_inverse(self, value: Tensor) -> Tensor:
        return torch.cat([value[:1] / self.gain, value[1:]])


def add_sigma_gain(G: TriPlaneGenerator, gain: float) -> None:
    """Let the decoder's sigma output learn ``gain`` times faster than the colour outputs.

    EG3D's sigma lives at +-200 while the colours are sigmoids of O(1) logits. Fitted plainly, the
    network reaches sigma's scale by inflating the hidden activations it shares with the colours,
    which saturates the sigmoids and stops the colours from learning. Storing the sigma row of the
    last layer divided by ``gain`` (a ``torch.nn.utils.parametrize`` parametrization) moves that
    scale into the row itself; :func:`baked` gives plain EG3D weights back.
    """
    from torch.nn.utils import parametrize

    layer = G.decoder.output_layer
    for name in ("weight", "bias"):
        parametrize.register_parametrization(layer, name, _ScaleFirstRow(gain))


def baked(G: TriPlaneGenerator) -> TriPlaneGenerator:
    """A plain EG3D copy of G with the effective weights of :func:`add_sigma_gain`'s parametrization.

    Built afresh and loaded by state dict: removing a parametrization from a deep copy would also
    break the original, whose dynamically created class the copy shares.
    """
    layer = G.decoder.output_layer
    prefix = next(name for name, module in G.named_modules() if module is layer)  # the layer's state-dict keys
    state = {k: v for k, v in G.state_dict().items() if ".parametrizations." not in k}
    state[f"{prefix}.weight"] = layer.weight.detach().clone()
    state[f"{prefix}.bias"] = layer.bias.detach().clone()
    plain = TriPlaneGenerator(G.config).to(layer.weight.device)
    plain.load_state_dict(state)
    plain.neural_rendering_resolution = G.neural_rendering_resolution
    plain.rendering_kwargs = copy.deepcopy(G.rendering_kwargs)
    return plain.train(G.training).requires_grad_(False)


# ------------------------------------------------------------------------------------------------
# Checkpoints


def _checkpoint_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoint"


def save_checkpoint(out_dir: Path, G, G_ema, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Weights + EMA (our safetensors format), Adam moments (safetensors) and the loop state (JSON)."""
    from safetensors.torch import save as save_tensors

    from nerfsculpt.generator.checkpoint import save_network

    directory = _checkpoint_dir(out_dir)
    save_network(directory / "networks", G=baked(G), G_ema=baked(G_ema), overwrite=True)
    moments = {}
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        st = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq", "step"):
            if key in st:
                moments[f"{i}.{key}"] = torch.as_tensor(st[key]).detach().cpu().contiguous()
    write_atomic(directory / "adam.safetensors", save_tensors(moments))
    write_atomic(directory / "state.json", (json.dumps(state, indent=2) + "\n").encode())


def load_checkpoint_weights(out_dir: Path, G, G_ema) -> dict[str, Any] | None:
    """Restore the (baked) weights and the loop state of :func:`save_checkpoint`; None if there is none."""
    from nerfsculpt.generator.checkpoint import load_network

    directory = _checkpoint_dir(out_dir)
    if not (directory / "state.json").exists():
        return None
    state = json.loads((directory / "state.json").read_text())
    nets = load_network(directory / "networks")
    G.load_state_dict(nets["G"].state_dict())
    G_ema.load_state_dict(nets["G_ema"].state_dict())
    return state


def load_checkpoint_moments(out_dir: Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore Adam's moments saved by :func:`save_checkpoint` (same parameter order)."""
    from safetensors.torch import load_file

    moments = load_file(_checkpoint_dir(out_dir) / "adam.safetensors")
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        if f"{i}.exp_avg" in moments:
            optimizer.state[p] = {key: moments[f"{i}.{key}"].to(p.device) for key in ("exp_avg", "exp_avg_sq", "step")}


# ------------------------------------------------------------------------------------------------
# The loop


@torch.no_grad()
def _update_ema(G_ema, G, beta: float) -> None:
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.lerp_(p, 1 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


@torch.no_grad()
def set_w_avg(G: TriPlaneGenerator, n: int = 4096, seed: int = 12345) -> None:
    """Set the mapping's w_avg (truncation centre) to the mean w over n latents at the canonical camera."""
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(G.dataset_label_std.device)
    c = canonical_camera(device=z.device).expand(n, -1)
    G.backbone.mapping.w_avg.copy_(G.mapping(z, c)[:, 0].mean(0))


def _lr_at(config: FitConfig, progress: float) -> float:
    """Cosine decay from lr to lr * lr_final_fraction as progress goes 0 -> 1."""
    floor = config.lr * config.lr_final_fraction
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def fit(out_dir: str | Path, config: FitConfig | None = None, device: str = "cpu",
        progress: bool = True) -> TriPlaneGenerator:
    """Fit (or resume fitting) the synthetic generator; returns G_ema and writes ``out_dir/final``."""
    from tqdm import tqdm

    from nerfsculpt.generator.checkpoint import save_network

    config = config or FitConfig()
    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    G = TriPlaneGenerator(synthetic_generator_config()).to(device).train()
    with torch.no_grad():
        G.decoder.output_layer.bias[0] = config.initial_sigma / G.decoder.output_layer.bias_gain
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    state = load_checkpoint_weights(out_dir, G, G_ema)
    for module in (G, G_ema):
        add_sigma_gain(module, config.sigma_gain)
    G_ema.requires_grad_(False)
    optimizer = torch.optim.Adam(G.parameters(), lr=config.lr, betas=(0.9, 0.99))
    if state is not None:
        load_checkpoint_moments(out_dir, optimizer)
        log.info("resuming from step %d (%.1f min done)", state["step"], state["seconds"] / 60)
    state = state or {"step": 0, "seconds": 0.0, "fit_config": {}}
    state["fit_config"] = dataclasses.asdict(config)
    log_path = out_dir / "fit_log.jsonl"
    budget = config.minutes * 60 if config.minutes is not None else math.inf
    start = time.monotonic() - state["seconds"]
    bar = tqdm(total=config.steps, initial=state["step"], disable=not progress, unit="step", desc="fit")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    while state["step"] < config.steps and time.monotonic() - start < budget:
        step = state["step"]
        progress_fraction = max(step / config.steps, (time.monotonic() - start) / budget)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(config, progress_fraction)
        rng = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        z = torch.randn(config.batch, G.z_dim, generator=rng)
        z[:, N_IDENTITY + N_COLOUR : Z_DIM_MIN] *= config.defect_latent_scale
        z = z.to(device)
        c = sample_ffhq_like_poses(config.batch, rng).to(device)
        losses = point_losses(G, z, config, rng)
        total = losses["sigma"] + config.colour_weight * losses["colour"]
        if config.image_every and step % config.image_every == 0:
            k = config.image_batch
            img = image_losses(G, z[:k], c[:k], rng)
            losses.update(img)
            total = total + config.image_weight * (img["image_raw"] + img["image"])
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at step {step}: {({k: float(v) for k, v in losses.items()})}")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        _update_ema(G_ema, G, min(config.ema_beta, (1 + step) / (10 + step)))
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
            counts[key] = counts.get(key, 0) + 1
        state["step"] = step + 1
        state["seconds"] = time.monotonic() - start
        bar.update(1)
        if state["step"] % config.log_every == 0:
            record = {"step": state["step"], "minutes": round(state["seconds"] / 60, 2),
                      "lr": optimizer.param_groups[0]["lr"], **{k: sums[k] / counts[k] for k in sums}}
            sums, counts = {}, {}
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(sigma=f"{record.get('sigma', 0):.4f}", img=f"{record.get('image', 0):.3f}")
        if state["step"] % config.checkpoint_every == 0:
            save_checkpoint(out_dir, G, G_ema, optimizer, state)
    bar.close()
    save_checkpoint(out_dir, G, G_ema, optimizer, state)
    G_ema = baked(G_ema).cpu()
    set_w_avg(G_ema)
    save_network(out_dir / "final", G_ema=G_ema, overwrite=True,
                 meta={"fit": {"steps": state["step"], "minutes": round(state["seconds"] / 60, 2),
                               "fit_config": state["fit_config"]}})
    return G_ema
