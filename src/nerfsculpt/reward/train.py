"""Train and evaluate the sigma reward on ranked lists (docs/method/reference_method.md §3-§4; paper §3.2, Table 1).

One training item is a ranked list of slabs, best first: [x_HQ > x_w > x_l] with the high-quality
anchor (a fresh anchor draw each epoch), or [x_w > x_l]. A step forwards every slab of ``batch``
items, computes the objective's terms (``reward.losses``), and takes an Adam step (coupled L2
weight decay, as ``torch.optim.Adam(weight_decay=...)`` in the reference). After each epoch the
validation loss is computed (deterministic: both pair orders, fixed anchors) and training stops
when it has not improved for ``patience`` epochs; the best epoch's weights are kept.

Defaults are the paper's: objective ``paper`` (Eq. 4 + 1e-2 reconstruction), Adam lr 1e-5, weight
decay 1e-4, batch 1, <= 10 epochs, patience 3, seed 42. ``objective="reference"`` trains what the
reference code trains (pair-head cross-entropy dominant; its validation loss turns stochastic from
epoch 3 on, a quirk not reproduced: ours stays deterministic).

Accuracy (Table 1, :func:`evaluate`): "all pairs" = the 3 pairs of every anchored test list,
"regular only" = the (winner, loser) pair alone; a pair is correct when the scalar reward orders it
as the annotator did (and, when the objective trains it, when the pair head does: the reference's
table uses the pair head, docs/method/reference_method.md §3.6). Ties count as wrong. Exact (Clopper-Pearson)
95 % intervals.

Runs are resumable: ``OUT/checkpoint`` (weights, Adam moments, loop state) is written every
``checkpoint_every`` steps and at the end of each epoch; rerunning with the same ``OUT`` continues.

Under ``torchrun`` (a ``torch.distributed`` group) each step takes ``batch`` lists per rank and the
gradients are averaged over ranks: K ranks with batch b train as one process with batch K*b.
Rank 0 writes the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nerfsculpt.atomic import write_atomic
from nerfsculpt.distributed import all_reduce_sum, average_gradients, barrier, world
from nerfsculpt.preferences.pairs import RankedList, add_anchors
from nerfsculpt.preferences.store import Item
from nerfsculpt.reward.config import RewardTrainConfig
from nerfsculpt.reward.data import InputSource, ranking_tensor
from nerfsculpt.reward.losses import (
    LossWeights,
    bradley_terry_loss,
    pair_head_loss,
    pair_head_probability,
    pair_indices,
    reconstruction_loss,
    strength_l2,
    strength_loss,
    weights_for,
)
from nerfsculpt.runlog import RunLog, load_optimizer_tensors, optimizer_tensors

log = logging.getLogger(__name__)

SUBSETS = ("all_pairs", "regular_only")
"""Table 1's pair sets: every pair of the (anchored) lists, and the (winner, loser) pairs alone."""
HEADS = ("scalar", "pair_head")


@dataclass
class Splits:
    """Ranked lists (without anchors) per partition, and the anchors of each partition."""

    train: list[RankedList]
    val: list[RankedList]
    test: list[RankedList]
    anchors: dict[str, list[Item]]

    def check(self, anchors: bool) -> None:
        for name in ("train", "val"):
            if not getattr(self, name):
                raise ValueError(f"the {name} split is empty; collect more answers or change the split fractions")
        if anchors:
            for name in ("train", "val", "test"):
                if getattr(self, name) and not self.anchors.get(name):
                    raise ValueError(f"no anchors for the {name} split; pass anchors or train without them")

    def lists(self, partition: str, anchors: bool, seed: int) -> list[RankedList]:
        """The partition's lists, each with an anchor drawn with ``seed`` if ``anchors``."""
        lists = getattr(self, partition)
        return add_anchors(lists, self.anchors[partition], seed=seed) if anchors and lists else list(lists)


# ------------------------------------------------------------------------------------------------
# One forward pass over ranked lists


@dataclass
class ListScores:
    """Per-list outputs, [B, K] best first (columns beyond a list's length are 0)."""

    rewards: Tensor
    log_strengths: Tensor
    lengths: Tensor
    pair_forward: Tensor  # [B, P, 2] pair head on (i, j), i ranked above j
    pair_backward: Tensor  # [B, P, 2] on (j, i)
    recon_loss: Tensor | None


def score_lists(net: nn.Module, raw: Tensor, lengths: Tensor, offsets: Tensor,
                reconstruct: bool = False) -> ListScores:
    """Forward the raw inputs [S, ...] of B lists (``net.prepare`` makes the network input) and arrange
    the outputs per list; the reconstruction loss only for networks that reconstruct (sigma)."""
    x = net.prepare(raw)  # sigma: (S, 1, Z, Y, X)
    out, recon = net.outputs(x, reconstruct=reconstruct)
    k = int(lengths.max())
    columns = torch.arange(k, device=lengths.device)
    valid = columns[None, :] < lengths[:, None]  # (B, K)
    index = torch.where(valid, offsets[:, None] + columns[None, :], torch.zeros_like(valid, dtype=torch.long))
    index = index.to(out.reward.device)
    valid = valid.to(out.reward.device)
    rewards = torch.where(valid, out.reward[index], 0.0)  # (B, K)
    log_strengths = torch.where(valid, out.log_strength[index], 0.0)
    first, second = pair_indices(k)
    emb = out.embedding[index]  # (B, K, E)
    a, b = emb[:, first].flatten(0, 1), emb[:, second].flatten(0, 1)  # (B*P, E) each
    pair_forward = net.heads.pair_logits(a, b).reshape(len(lengths), len(first), 2)  # (B, P, 2)
    pair_backward = net.heads.pair_logits(b, a).reshape(len(lengths), len(first), 2)
    recon_loss = reconstruction_loss(recon, x) if recon is not None else None
    return ListScores(rewards, log_strengths, lengths.to(out.reward.device), pair_forward, pair_backward, recon_loss)


def objective_terms(scores: ListScores, weights: LossWeights, epoch: int | None,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Weighted loss terms and their sum (``total``). ``epoch=None``: evaluation (both pair orders)."""
    terms: dict[str, Tensor] = {}
    lengths = scores.lengths
    if weights.scalar:
        terms["scalar"] = bradley_terry_loss(scores.rewards, lengths)
    if weights.strength:
        terms["strength"] = strength_loss(scores.log_strengths, lengths)
    if weights.strength_l2:
        terms["strength_l2"] = strength_l2(scores.log_strengths, lengths)
    if weights.pairs:
        one_order = None
        if epoch is not None and epoch >= weights.pair_burn_in_epochs:
            one_order = torch.rand(scores.pair_forward.shape[:2], generator=generator) < 0.5
            one_order = one_order.to(scores.pair_forward.device)
        terms["pairs"] = pair_head_loss(scores.pair_forward, scores.pair_backward, lengths, one_order)
    if weights.reconstruction and scores.recon_loss is not None:
        terms["reconstruction"] = scores.recon_loss
    factor = {"scalar": weights.scalar, "strength": weights.strength, "strength_l2": weights.strength_l2,
              "pairs": weights.pairs, "reconstruction": weights.reconstruction}
    terms["total"] = sum(factor[name] * value for name, value in terms.items())
    return terms


# ------------------------------------------------------------------------------------------------
# Evaluation


def _interval(correct: int, n: int, confidence: float = 0.95) -> list[float] | None:
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(correct, n).proportion_ci(confidence_level=confidence, method="exact")
    return [float(ci.low), float(ci.high)]


@torch.no_grad()
def evaluate(net: nn.Module, lists: Sequence[RankedList], source: InputSource, weights: LossWeights,
             batch: int = 1, progress: bool = False) -> dict[str, Any]:
    """Loss and Table-1 accuracies of ``lists`` (anchored or not), scalar and pair heads, with 95 % CIs.

    Under torch.distributed each rank scores its share of the lists and the counts are summed, so
    every rank gets the same result.
    """
    from tqdm import tqdm

    device = next(net.parameters()).device
    rank, n_ranks = world()
    was_training = net.training
    net.eval()
    heads = HEADS if weights.pairs else HEADS[:1]  # the pair head is only reported when it was trained
    counts = {f"{subset}/{head}": [0, 0] for subset in SUBSETS for head in heads}
    loss_sum, n_lists, monitor = 0.0, 0, "pairs" if weights.pairs else "scalar"
    starts = list(range(0, len(lists), batch))[rank::n_ranks]
    for start in tqdm(starts, disable=not progress or rank > 0, desc="eval", unit="batch"):
        chunk = lists[start : start + batch]
        slabs, lengths, offsets = ranking_tensor(chunk, source)
        scores = score_lists(net, slabs.to(device), lengths.to(device), offsets.to(device))
        terms = objective_terms(scores, dataclasses.replace(weights, reconstruction=0.0), epoch=None)
        loss_sum += float(terms[monitor]) * len(chunk)
        n_lists += len(chunk)
        k = int(lengths.max())
        first, second = pair_indices(k)
        prob = pair_head_probability(scores.pair_forward, scores.pair_backward)  # (B, P)
        for b, ranked in enumerate(chunk):
            for p, (i, j) in enumerate(zip(first.tolist(), second.tolist(), strict=True)):
                if j >= len(ranked.items):
                    continue
                regular = not (ranked.anchored and i == 0)
                hits = {"scalar": bool(scores.rewards[b, i] > scores.rewards[b, j]),
                        "pair_head": bool(prob[b, p] > 0.5)}
                for head in heads:
                    for subset in SUBSETS if regular else SUBSETS[:1]:
                        counts[f"{subset}/{head}"][0] += hits[head]
                        counts[f"{subset}/{head}"][1] += 1
    net.train(was_training)
    keys = list(counts)
    totals = torch.tensor([loss_sum, n_lists, *(v for k in keys for v in counts[k])], dtype=torch.float64)
    totals = all_reduce_sum(totals).tolist()
    loss_sum, n_lists = totals[0], int(totals[1])
    counts = {k: (int(totals[2 + 2 * i]), int(totals[3 + 2 * i])) for i, k in enumerate(keys)}
    accuracy = {key: {"accuracy": c / n if n else None, "correct": c, "n": n, "ci95": _interval(c, n)}
                for key, (c, n) in counts.items()}
    return {"loss": loss_sum / max(n_lists, 1), "loss_term": monitor, "lists": n_lists, "accuracy": accuracy}


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Table-1 style text: accuracy (95 % CI) on all pairs and regular-only pairs, per split and head."""
    lines = [f"{'split':<8}{'head':<11}{'all pairs':>29}{'regular only':>29}"]
    for split, result in results.items():
        for head in (h for h in HEADS if f"all_pairs/{h}" in result["accuracy"]):
            cells = []
            for subset in SUBSETS:
                a = result["accuracy"][f"{subset}/{head}"]
                cells.append("-" if a["accuracy"] is None else
                             f"{a['accuracy']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] n={a['n']}")
            lines.append(f"{split:<8}{head:<11} {cells[0]:>28} {cells[1]:>28}")  # a space even past n = 999
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Training


def _save_checkpoint(out_dir: Path, net: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    from safetensors.torch import save

    directory = out_dir / "checkpoint"
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / "model.safetensors", save({k: v.detach().cpu().contiguous()
                                                        for k, v in net.state_dict().items()}))
    write_atomic(directory / "adam.safetensors", save(optimizer_tensors(optimizer)))
    write_atomic(directory / "state.json", (json.dumps(state, indent=2) + "\n").encode())


def _load_checkpoint(out_dir: Path, net: nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
    from safetensors.torch import load_file

    directory = out_dir / "checkpoint"
    if not (directory / "state.json").is_file():
        return None
    state = json.loads((directory / "state.json").read_text())
    net.load_state_dict(load_file(directory / "model.safetensors"))
    load_optimizer_tensors(optimizer, load_file(directory / "adam.safetensors"))
    return state


def train_anchor_seed(config: RewardTrainConfig, epoch: int) -> int:
    """Seed of the anchor draw of the training lists in ``epoch`` (a fresh draw every epoch)."""
    return config.seed * 1000 + epoch


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def train(net: nn.Module, splits: Splits, source: InputSource, out_dir: str | Path,
          config: RewardTrainConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``net`` in place (resuming from ``out_dir/checkpoint``); returns the run summary.

    Leaves the best epoch's weights in ``net`` and in ``out_dir/best.safetensors``; the log is
    ``out_dir/log.jsonl`` (one line per ``log_every`` steps and per epoch).
    """
    from safetensors.torch import load_file, save
    from tqdm import tqdm

    config = config or RewardTrainConfig()
    config.validate()
    splits.check(config.anchors)
    rank, n_ranks = world()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = weights_for(config.objective)
    device = next(net.parameters()).device
    if config.checkpointing:
        if not hasattr(net, "checkpointing"):
            raise ValueError(f"{type(net).__name__} does not support activation checkpointing")
        net.checkpointing = True
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
    use_autocast = autocast_dtype is not None and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
    state = _load_checkpoint(out_dir, net, optimizer)
    if state is not None:
        log.info("resuming at epoch %d, step %d of it", state["epoch"], state["position"])
    state = state or {"epoch": 0, "position": 0, "step": 0, "best_loss": math.inf, "best_epoch": None,
                      "bad_epochs": 0, "history": [], "stopped": None, "seconds": 0.0}
    state["config"] = dataclasses.asdict(config)
    log_path = out_dir / "log.jsonl"
    val_lists = splits.lists("val", config.anchors, seed=config.seed)
    started = time.monotonic() - state["seconds"]

    run_log = RunLog(log_path, out_dir / "tensorboard" if config.tensorboard else None, enabled=rank == 0)

    def write_log(record: dict) -> None:
        run_log.write(record, state["step"], prefix="train/" if "total" in record else "val/")

    def checkpoint() -> None:
        state["seconds"] = time.monotonic() - started
        if rank == 0:
            _save_checkpoint(out_dir, net, optimizer, state)
        barrier()

    net.train()
    while state["epoch"] < config.max_epochs and state["stopped"] is None:
        epoch = state["epoch"]
        lists = splits.lists("train", config.anchors, seed=train_anchor_seed(config, epoch))  # fresh anchors
        order = _epoch_order(len(lists), config.seed, epoch)
        # a step takes n_ranks * batch lists, rank r the r-th batch of them (the last partial step is dropped
        # under torchrun, so every rank takes the same number of steps)
        step_size = config.batch * n_ranks
        n_steps = len(order) // step_size if n_ranks > 1 else math.ceil(len(order) / step_size)
        batches = [order[i * step_size + rank * config.batch : i * step_size + (rank + 1) * config.batch]
                   for i in range(n_steps)]
        sums: dict[str, float] = {}
        bar = tqdm(total=len(batches), initial=state["position"], disable=not progress or rank > 0, unit="step",
                   desc=f"epoch {epoch + 1}/{config.max_epochs}")
        for position in range(state["position"], len(batches)):
            chunk = [lists[i] for i in batches[position]]
            rng = torch.Generator().manual_seed((config.seed * 7919 + epoch) * 1_000_003 + position)  # pair orders
            slabs, lengths, offsets = ranking_tensor(chunk, source)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
                scores = score_lists(net, slabs.to(device), lengths.to(device), offsets.to(device),
                                     reconstruct=weights.reconstruction > 0)
                terms = objective_terms(scores, weights, epoch, rng)
            if not torch.isfinite(terms["total"]):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {position}: "
                                         f"{ {k: float(v) for k, v in terms.items()} }")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(terms["total"]).backward()
                average_gradients(net.parameters())
                scaler.step(optimizer)
                scaler.update()
            else:
                terms["total"].backward()
                average_gradients(net.parameters())
                optimizer.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            state["position"] = position + 1
            state["step"] += 1
            bar.update(1)
            if state["step"] % config.log_every == 0:
                record = {"epoch": epoch, "step": state["step"], **{k: v / config.log_every for k, v in sums.items()}}
                sums = {}
                write_log(record)
                bar.set_postfix(loss=f"{record['total']:.4f}")
            if state["step"] % config.checkpoint_every == 0:
                checkpoint()
        bar.close()
        val = evaluate(net, val_lists, source, weights, batch=config.batch)
        net.train()
        if not math.isfinite(val["loss"]):
            raise FloatingPointError(f"non-finite validation loss after epoch {epoch}: {val['loss']}")
        improved = val["loss"] < state["best_loss"]
        if improved:
            state["best_loss"], state["best_epoch"], state["bad_epochs"] = val["loss"], epoch, 0
            if rank == 0:
                write_atomic(out_dir / "best.safetensors", save({k: v.detach().cpu().contiguous()
                                                                 for k, v in net.state_dict().items()}))
        else:
            state["bad_epochs"] += 1
        regular = val["accuracy"]["regular_only/scalar"]["accuracy"]
        state["history"].append({"epoch": epoch, "val_loss": val["loss"], "val_regular_only": regular,
                                 "improved": improved})
        write_log({"epoch": epoch, "val_loss": val["loss"], "val_loss_term": val["loss_term"],
                   "val_regular_only_scalar": regular,
                   "val_all_pairs_scalar": val["accuracy"]["all_pairs/scalar"]["accuracy"]})
        log.info("epoch %d: val %s %.4f, regular-only accuracy %.3f%s", epoch + 1, val["loss_term"], val["loss"],
                 regular or float("nan"), " (best)" if improved else "")
        state["epoch"], state["position"] = epoch + 1, 0
        if state["bad_epochs"] >= max(config.patience, 1):
            state["stopped"] = f"early stopping: no better validation loss for {state['bad_epochs']} epochs"
        checkpoint()
    if state["stopped"] is None:
        state["stopped"] = f"reached max_epochs {config.max_epochs}"
        checkpoint()
    run_log.close()
    net.load_state_dict(load_file(out_dir / "best.safetensors", device=str(device)))
    return {"best_epoch": state["best_epoch"], "best_val_loss": state["best_loss"], "epochs": state["epoch"],
            "steps": state["step"], "stopped": state["stopped"], "history": state["history"],
            "seconds": round(state["seconds"], 1), "config": state["config"]}


def data_fingerprint(splits: Splits) -> dict[str, Any]:
    """Sizes and a sha256 of each partition's lists (question, annotator, items): what a bundle was trained on."""
    out: dict[str, Any] = {}
    for name in ("train", "val", "test"):
        lists = getattr(splits, name)
        rows = [[r.question_id, r.annotator, [dataclasses.astuple(i) for i in r.items]] for r in lists]
        out[name] = {"lists": len(lists), "sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest()}
    return out
