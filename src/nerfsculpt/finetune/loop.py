"""The fine-tuning loop: EG3D's GAN training (docs/method/eg3d.md §5.2-5.3) plus the paper's geometry terms (Eq. 6).

One iteration, with ``batch`` images per phase split over processes and micro-batches:

1. **Gmain**: non-saturating loss on D(G(z, c)) with dual discrimination and pose-conditioning swap;
   with ``reward_step='combined'`` (the paper) lambda_r L_r + lambda_c L_c of the same latents is added
   to this objective (Eq. 6). One Adam step.
2. **Greg** (every ``g_reg_interval``): EG3D's L1 density regulariser, times the interval (lazy gain).
3. **Dmain**: softplus(D(fake)) + softplus(-D(real)); fakes update G's w_avg tracker.
4. **Dreg** (every ``d_reg_interval``): R1 on both images, gamma / 2, times the interval.
5. **Greward** (``reward_step='separate'``, the reference): lambda_r L_r + lambda_c L_c of fresh latents,
   stepped by a separate Adam (docs/method/reference_method.md §5.2, Appendix A row 8).
6. G_ema = lerp(G, G_ema, 0.5 ** (batch / (ema_kimg * 1000))); buffers copied.

Blur is off and pose-swap / rendering-resolution fades are over (EG3D turns them off when resuming,
which fine-tuning always does); the neural rendering resolution is the checkpoint's.

Every phase's random draws come from ``Draws.for_step(seed, iteration, rank, phase)``, so an
interrupted and resumed run draws exactly what an uninterrupted one does. Gradients are averaged
over processes after each phase (torchrun). A phase whose loss or gradients are not finite is
skipped with a warning; ``max_bad_steps`` consecutive skips abort the run.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nerfsculpt.distributed import all_reduce_sum, average_gradients, world
from nerfsculpt.finetune.config import BatchPlan, FinetuneConfig, FinetuneError, batch_plan, lazy_regularisation
from nerfsculpt.finetune.data import Draws, RealImages, filtered_resize
from nerfsculpt.finetune.losses import (
    clamp_rate,
    density_l1_loss,
    discriminator_gan_loss,
    generator_gan_loss,
    r1_penalty,
)
from nerfsculpt.finetune.objective import GeometryTerms
from nerfsculpt.reward.bundle import RewardBundle

log = logging.getLogger(__name__)

PHASES = ("Gmain", "Greg", "Dmain", "Dreg", "Greward")
_STREAMS = {name: i for i, name in enumerate(PHASES)} | {"real": len(PHASES)}


@dataclass
class RunState:
    """Progress of a run (saved in every snapshot's state.json)."""

    iteration: int = 0
    """Iterations done."""
    nimg: int = 0
    """Images per phase done (iteration * batch)."""
    tick: int = 0
    """Ticks done after tick 0."""
    bad_steps: dict[str, int] = field(default_factory=dict)
    """Per phase: consecutive optimiser steps skipped for non-finite values."""
    skipped: int = 0
    """Optimiser steps skipped over the whole run."""
    seconds: float = 0.0
    """Training time so far (without tick maintenance)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per tick (what log.jsonl holds)."""
    reward_baseline: list[float] | None = None
    """(mean, std) standardising the reward in L_r (``reward_standardise``), set at tick 0."""


class FineTuner:
    """Holds the networks, optimisers and state of a run and advances it one iteration at a time."""

    def __init__(self, config: FinetuneConfig, G: nn.Module, G_ema: nn.Module, D: nn.Module, G_old: nn.Module,
                 reward: RewardBundle | None, real: RealImages, device: torch.device):
        self.config, self.device, self.real = config, device, real
        self.rank, self.world_size = world()
        self.plan: BatchPlan = batch_plan(config, self.world_size)
        self.G = G.to(device).train().requires_grad_(False)
        self.G_ema = G_ema.to(device).eval().requires_grad_(False)
        self.D = D.to(device).train().requires_grad_(False)
        self.terms = GeometryTerms(config, reward, G_old.to(device))
        self.resolution = int(self.G.neural_rendering_resolution)  # the checkpoint's (128 for ffhq512-128)
        self.g_reg = config.density_reg > 0
        self.d_reg = config.r1_gamma > 0
        g_lr, g_betas = (lazy_regularisation(config.g_lr, config.betas, config.g_reg_interval) if self.g_reg
                         else (config.g_lr, config.betas))
        d_lr, d_betas = (lazy_regularisation(config.d_lr, config.betas, config.d_reg_interval) if self.d_reg
                         else (config.d_lr, config.betas))
        self.optimizers = {
            "G": torch.optim.Adam(self.G.parameters(), lr=g_lr, betas=g_betas, eps=1e-8),
            "D": torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas, eps=1e-8),
        }
        if config.reward_step == "separate" and self.terms.active:
            self.optimizers["Greward"] = torch.optim.Adam(self.G.parameters(), lr=config.reward_lr,
                                                          betas=config.betas, eps=1e-8)
        self.ema_beta = 0.5 ** (config.batch / (config.resolved_ema_kimg * 1000))
        self.state = RunState()
        self._tick_sums: dict[str, float] = defaultdict(float)
        self._tick_counts: dict[str, int] = defaultdict(int)
        self._reals: list[tuple[Tensor, Tensor]] | None = None  # this iteration's real micro-batches (D phases)
        self._reward_grads: list[Tensor | None] | None = None  # lambda_r L_r's gradient of a phase (reward_grad_clip)
        self._micro_share = 1.0  # the weight of one micro-batch in its phase (gain / micro-batches)

    # ------------------------------------------------------------------ bookkeeping
    def optimizer_settings(self) -> dict[str, dict[str, Any]]:
        """Learning rate and betas of each optimiser after the lazy-regularisation adjustment."""
        return {name: {"lr": opt.param_groups[0]["lr"], "betas": list(opt.param_groups[0]["betas"])}
                for name, opt in self.optimizers.items()}

    def _record(self, name: str, value: float, weight: int = 1) -> None:
        self._tick_sums[name] += value * weight
        self._tick_counts[name] += weight

    def tick_means(self) -> dict[str, float]:
        """Mean of every recorded loss since the last call (summed over processes), then reset."""
        names = sorted(self._tick_sums)
        totals = torch.tensor([[self._tick_sums[n], self._tick_counts[n]] for n in names] or [[0.0, 0.0]],
                              dtype=torch.float64)
        totals = all_reduce_sum(totals)
        self._tick_sums.clear()
        self._tick_counts.clear()
        return {n: float(s / c) for n, (s, c) in zip(names, totals.tolist(), strict=False) if c > 0}

    def _draws(self, phase: str) -> Draws:
        return Draws.for_step(self.config.seed, self.state.iteration, self.rank, _STREAMS[phase], self.device)

    def _micro_batches(self, draws: Draws) -> list[tuple[Tensor, Tensor]]:
        """(z [m, z_dim], c [m, 25]) per micro-batch of this process's share of the phase."""
        n, m = self.plan.per_process, self.plan.micro_batch
        z = torch.randn(n, self.G.z_dim, generator=draws.cpu).to(self.device)  # (n, z_dim)
        c = self.real.labels(n, draws.cpu).to(self.device)  # (n, 25)
        return list(zip(z.split(m), c.split(m), strict=True))

    # ------------------------------------------------------------------ generator and discriminator passes
    def _swap_conditioning(self, c: Tensor, draws: Draws, per_sample: bool = True) -> Tensor:
        """Generator pose-conditioning swap: condition on the next sample's camera with probability p (§5.2)."""
        p = self.config.pose_swap_prob
        if p == 0:
            return c
        swapped = torch.roll(c, 1, 0)
        draw = torch.rand((len(c), 1) if per_sample else (), generator=draws.cpu).to(c.device)
        return torch.where(draw < p, swapped, c)

    def _run_G(self, z: Tensor, c: Tensor, draws: Draws, update_emas: bool = False) -> dict[str, Tensor]:
        ws = self.G.mapping(z, self._swap_conditioning(c, draws), update_emas=update_emas)
        return self.G.synthesis(ws, c, neural_rendering_resolution=self.resolution, noise_mode="random",
                                generator=draws.device)

    def _real_batch(self) -> list[tuple[Tensor, Tensor]]:
        """This iteration's real images (shared by Dmain and Dreg) as ([m, 3, H, W], [m, 25]) micro-batches."""
        draws = self._draws("real")
        images, labels = self.real.sample(self.plan.per_process, draws, self.device)
        m = self.plan.micro_batch
        return list(zip(images.split(m), labels.split(m), strict=True))

    # ------------------------------------------------------------------ one optimiser step
    def _step(self, name: str, optimizer: torch.optim.Optimizer, module: nn.Module, losses: list[Tensor]) -> bool:
        """Average gradients over processes, skip the step if anything is not finite; True if stepped."""
        average_gradients(module.parameters())
        bad_losses = all_reduce_sum(torch.tensor([float(not all(bool(torch.isfinite(x)) for x in losses))]))
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        grads_finite = not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())  # one sync
        finite = float(bad_losses) == 0 and grads_finite
        if finite:
            optimizer.step()
            self.state.bad_steps[name] = 0
        else:
            bad = self.state.bad_steps[name] = self.state.bad_steps.get(name, 0) + 1
            self.state.skipped += 1
            log.warning("iteration %d, phase %s: non-finite loss or gradient; step skipped (%d in a row)",
                        self.state.iteration, name, bad)
            if bad >= self.config.max_bad_steps:
                raise FinetuneError(
                    f"{bad} consecutive steps had NaN/Inf losses or gradients (last: {name} at "
                    f"iteration {self.state.iteration}); training has diverged. Resume from an earlier snapshot with "
                    f"a lower learning rate or lambda_r, or check the reward and data")
        optimizer.zero_grad(set_to_none=True)
        return finite

    def _phase(self, name: str, module: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, gain: float) -> None:
        """Zero grads, accumulate ``loss_fn(z, c, draws)`` over micro-batches (averaged), step."""
        module.requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        draws = self._draws(name)
        batches = self._micro_batches(draws)
        losses = []
        self._micro_share = gain / len(batches)
        for k, (z, c) in enumerate(batches):
            loss = loss_fn(z, c, draws, k)
            (loss * self._micro_share).backward()
            losses.append(loss.detach())
        module.requires_grad_(False)
        if self._reward_grads is not None:
            self._add_clipped_reward_gradient()
        self._step(name, optimizer, module, losses)

    def _add_clipped_reward_gradient(self) -> None:
        """Add the phase's lambda_r L_r gradient to G's, its L2 norm clipped at ``reward_grad_clip`` (this process)."""
        grads, self._reward_grads = self._reward_grads, None
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None]))
        self._record("reward/grad_norm", float(norm))
        scale = min(1.0, self.config.reward_grad_clip / (float(norm) + 1e-12))
        for p, g in zip(self.G.parameters(), grads, strict=True):
            if g is not None:
                p.grad = g * scale if p.grad is None else p.grad.add_(g, alpha=scale)

    # ------------------------------------------------------------------ the phases
    def _gmain_loss(self, z: Tensor, c: Tensor, draws: Draws, k: int) -> Tensor:
        fake = self._run_G(z, c, draws)
        loss = generator_gan_loss(self.D(fake, c))
        self._record("loss/G_gan", float(loss.detach()), len(z))
        if self.config.reward_step == "combined" and self.terms.active:
            loss = loss + self._geometry_loss(z)
        return loss

    def _geometry_loss(self, z: Tensor) -> Tensor:
        """lambda_r L_r + lambda_c L_c of a micro-batch; with ``reward_grad_clip`` the L_r part's gradient is
        taken here and set aside (added, clipped, after the phase's micro-batches) and only L_c is returned."""
        loss, stats = self.terms(self.G, z)
        if self.config.reward_grad_clip is not None and "loss_r" in stats:
            params = list(self.G.parameters())
            grads = torch.autograd.grad(stats["loss_r"] * self._micro_share, params, retain_graph=True,
                                        allow_unused=True)  # planes may be shared with L_c: keep the graph
            if self._reward_grads is None:
                self._reward_grads = list(grads)
            else:
                self._reward_grads = [a if b is None else b if a is None else a + b
                                      for a, b in zip(self._reward_grads, grads, strict=True)]
            loss = stats.get("loss_c", loss.new_zeros(()))
        if "reward" in stats:
            self._record("reward/train_mean", float(stats["reward"].mean()), len(z))
            self._record("reward/train_clamp_rate", clamp_rate(stats["reward"], self.terms.clamp), len(z))
            self._record("loss/L_r", stats["L_r"], len(z))
            if "spread" in stats:
                self._record("reward/train_spread", float(stats["spread"].mean()), len(z))
        if "L_c" in stats:
            self._record("loss/L_c", stats["L_c"], len(z))
        return loss

    def _greg_loss(self, z: Tensor, c: Tensor, draws: Draws, k: int) -> Tensor:
        cfg = self.config
        ws = self.G.mapping(z, self._swap_conditioning(c, draws, per_sample=False))  # one swap draw per pass
        points = torch.rand(len(z), cfg.density_reg_points, 3, generator=draws.cpu) * 2 - 1  # (m, P, 3)
        perturbed = points + torch.randn(points.shape, generator=draws.cpu) * cfg.density_reg_perturbation
        both = torch.cat([points, perturbed], 1).to(self.device)  # (m, 2P, 3)
        sigma = self.G.sample_mixed(both, None, ws, noise_mode="random", generator=draws.device)["sigma"]
        loss = density_l1_loss(sigma[:, : cfg.density_reg_points], sigma[:, cfg.density_reg_points :], cfg.density_reg)
        self._record("loss/G_density", float(loss.detach()), len(z))
        return loss

    def _dmain_loss(self, z: Tensor, c: Tensor, draws: Draws, k: int) -> Tensor:
        with torch.no_grad():
            fake = self._run_G(z, c, draws, update_emas=True)
        real_images, real_c = self._reals[k]
        real = {"image": real_images, "image_raw": filtered_resize(real_images, self.resolution)}
        fake_logits, real_logits = self.D(fake, c), self.D(real, real_c)
        loss = discriminator_gan_loss(fake_logits, real_logits)
        self._record("loss/D_gan", float(loss.detach()), len(z))
        self._record("D/fake_logit", float(fake_logits.detach().mean()), len(z))
        self._record("D/real_logit", float(real_logits.detach().mean()), len(z))
        return loss

    def _dreg_loss(self, z: Tensor, c: Tensor, draws: Draws, k: int) -> Tensor:
        real_images, real_c = self._reals[k]
        images = {"image": real_images.detach().requires_grad_(True),
                  "image_raw": filtered_resize(real_images, self.resolution).detach().requires_grad_(True)}
        penalty = r1_penalty(self.D(images, real_c), images)  # (m,)
        loss = penalty.mean() * (self.config.r1_gamma / 2)
        self._record("loss/D_r1", float(loss.detach()), len(z))
        return loss

    def _greward_loss(self, z: Tensor, c: Tensor, draws: Draws, k: int) -> Tensor:
        return self._geometry_loss(z)

    # ------------------------------------------------------------------ one iteration
    def iteration(self) -> None:
        """Run every phase due at this iteration, update G_ema, advance the counters."""
        cfg, it = self.config, self.state.iteration
        g_gain = cfg.g_reg_interval if cfg.lazy_gain else 1
        d_gain = cfg.d_reg_interval if cfg.lazy_gain else 1
        self._phase("Gmain", self.G, self.optimizers["G"], self._gmain_loss, 1)
        if self.g_reg and it % cfg.g_reg_interval == 0:
            self._phase("Greg", self.G, self.optimizers["G"], self._greg_loss, g_gain)
        self._reals = self._real_batch()
        self._phase("Dmain", self.D, self.optimizers["D"], self._dmain_loss, 1)
        if self.d_reg and it % cfg.d_reg_interval == 0:
            self._phase("Dreg", self.D, self.optimizers["D"], self._dreg_loss, d_gain)
        self._reals = None
        if "Greward" in self.optimizers:
            self._phase("Greward", self.G, self.optimizers["Greward"], self._greward_loss, 1)
        self._average_buffers()
        self.update_ema()
        self.state.iteration += 1
        self.state.nimg += cfg.batch

    @torch.no_grad()
    def _average_buffers(self) -> None:
        """Average G's tracked buffers (w_avg) over processes, so that every rank holds the same generator.

        Each rank updates w_avg from its own fakes; EG3D leaves them apart and saves rank 0's.
        """
        if self.world_size == 1:
            return
        for buffer in self.G.buffers():
            if buffer.is_floating_point():
                all_reduce_sum(buffer).div_(self.world_size)

    @torch.no_grad()
    def update_ema(self) -> None:
        """G_ema = lerp(G, G_ema, beta) for parameters; buffers (w_avg, ...) copied (docs/method/eg3d.md §5.3)."""
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.lerp(p_ema, self.ema_beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def load_state(self, state: dict[str, Any]) -> None:
        self.state = RunState(**state)
        if self.state.reward_baseline is not None:
            self.terms.baseline = tuple(self.state.reward_baseline)

    def set_reward_baseline(self, mean: float | list[float], std: float | list[float]) -> None:
        """Standardise the reward in L_r from now on: (r - mean) / std (the same on every process); lists give
        an ensemble's members one (mean, std) each."""
        per_member = isinstance(mean, list)
        means, stds = (mean, std) if per_member else ([mean], [std])
        values = torch.tensor([*means, *stds], dtype=torch.float64) * (self.rank == 0)  # rank 0's, on every rank
        values = all_reduce_sum(values).tolist()
        means, stds = values[: len(means)], values[len(means) :]
        if not all(s > 0 for s in stds):
            raise FinetuneError(f"the trajectory seeds' rewards have std {stds}; reward_standardise cannot scale them")
        baseline = (means, stds) if per_member else (means[0], stds[0])
        self.state.reward_baseline = list(baseline)
        self.terms.baseline = baseline


def run_loop(tuner: FineTuner, on_tick, progress: bool = True) -> RunState:
    """Train until ``plan.iterations``, calling ``on_tick(tuner, tick)`` at each tick boundary.

    Tick 0 (before any step) is run by the caller. ``on_tick`` returning True on rank 0 stops the run
    on every process after that tick (early stopping). Returns the final state.
    """
    from tqdm import tqdm

    plan, state = tuner.plan, tuner.state
    started = time.monotonic() - state.seconds
    first, resumed_at = state.iteration, time.monotonic()  # for the ETA without a progress bar
    with tqdm(total=plan.iterations, initial=state.iteration, unit="it", desc="finetune",
              disable=not progress or tuner.rank != 0) as bar:
        while state.iteration < plan.iterations:
            tuner.iteration()
            state.seconds = time.monotonic() - started
            kimg = state.nimg / 1000
            bar.update()
            bar.set_postfix(kimg=f"{kimg:.2f}/{plan.images / 1000:g}",
                            kimg_s=f"{kimg / max(state.seconds, 1e-9):.3f}")
            if bar.disable and tuner.rank == 0 and state.iteration % max(plan.iterations // 20, 1) == 0:
                rate = (state.iteration - first) / max(time.monotonic() - resumed_at, 1e-9)  # iterations / s
                log.info("iteration %d/%d (%.3g kimg), %.2f s/iteration, about %.0f s to go", state.iteration,
                         plan.iterations, kimg, 1 / max(rate, 1e-9), (plan.iterations - state.iteration) / rate)
            if state.iteration % plan.iterations_per_tick == 0 or state.iteration == plan.iterations:
                state.tick += 1
                paused = time.monotonic()
                stop = torch.tensor([float(bool(on_tick(tuner, state.tick)) and tuner.rank == 0)], dtype=torch.float64)
                stop = float(all_reduce_sum(stop)) > 0  # rank 0's decision, on every process
                started += time.monotonic() - paused  # maintenance does not count as training time
                if stop:
                    break
    return state

