"""A fine-tuning run end to end: check every input, set up or resume the run directory, train, snapshot.

    summary = finetune(FinetuneConfig(kimg=2, batch=8, data_free=True), "synthetic", "runs/reward/bundle",
                       "runs/tune", device=torch.device("cpu"))

Every input is checked before anything is written (reward representation and generator, dataset
resolution and labels, batch arithmetic). The run directory layout is in ``finetune.snapshot``;
``log.jsonl`` gets one record per tick (losses, kimg/s, train-batch reward and clamp rate, the
trajectory seeds' reward statistics).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nerfsculpt.atomic import write_atomic
from nerfsculpt.distributed import all_reduce_sum, barrier, world
from nerfsculpt.finetune.config import PAPER_REWARD_MEAN, PAPER_REWARD_STD, FinetuneConfig, FinetuneError, batch_plan
from nerfsculpt.finetune.data import DatasetImages, RealImages, RenderedImages, read_labels
from nerfsculpt.finetune.figures import gold_curve_png
from nerfsculpt.finetune.loop import FineTuner, run_loop
from nerfsculpt.finetune.monitor import OracleTrajectory, image_grid, reward_trajectory, tick_meshes
from nerfsculpt.finetune.snapshot import latest_snapshot, load_snapshot, load_start, new_discriminator, save_snapshot
from nerfsculpt.generator.builtin import generator_fingerprint
from nerfsculpt.reward.bundle import BundleError, RewardBundle, load_bundle
from nerfsculpt.runlog import RunLog

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
PRETRAINED_DIR = "pretrained"
RESUMABLE_CHANGES = ("kimg", "snapshot_ticks", "max_bad_steps", "tensorboard")
"""Settings a resumed run may change (the rest must equal the saved configuration)."""


def load_reward(path: str | Path, device: torch.device) -> RewardBundle:
    """A sigma-slab reward bundle; FinetuneError for any other kind."""
    try:
        return load_bundle(path, device=device, representation="sigma_slab")
    except BundleError as error:
        raise FinetuneError(f"--reward: {error}; fine-tuning differentiates through sigma, so it needs a "
                            f"sigma_slab reward ('nerfsculpt reward train' default)") from None


def _check_resume(run: Path, config: FinetuneConfig, resume: bool) -> dict[str, Any] | None:
    """The saved configuration of ``run`` if resuming; FinetuneError if the directory cannot be used."""
    saved_path = run / CONFIG_FILE
    if not run.exists() or (run.is_dir() and not any(run.iterdir())):
        if resume:
            raise FinetuneError(f"--resume: {run} holds no run to resume; drop --resume to start a new run there")
        return None
    if not run.is_dir():
        raise FinetuneError(f"--out {run} exists and is not a directory")
    if not saved_path.is_file():
        raise FinetuneError(f"--out {run} is not empty and holds no fine-tuning run; choose another directory")
    if not resume:
        raise FinetuneError(f"--out {run} already holds a run; pass --resume to continue it, or choose another --out")
    saved = json.loads(saved_path.read_text())
    old, new = saved["config"], config.to_dict()
    differ = sorted(k for k in new if k not in RESUMABLE_CHANGES and json.dumps(old.get(k)) != json.dumps(new[k]))
    if differ:
        raise FinetuneError(f"--resume with settings that differ from the run's ({', '.join(differ)}); resume with "
                            f"the saved settings (RUN/config.json) or start a new --out; only "
                            f"{', '.join(RESUMABLE_CHANGES)} may change")
    return saved


def real_images(config: FinetuneConfig, G_old: nn.Module) -> RealImages:
    if config.data_free:
        labels = read_labels(config.labels) if config.labels is not None else None
        return RenderedImages(G_old, labels)
    return DatasetImages(config.data)


def describe(config: FinetuneConfig, generator: str, reward: str | None, world_size: int = 1) -> dict[str, Any]:
    """The resolved configuration and batch arithmetic (what ``--dry-run`` prints; no file is read)."""
    config.validate()
    plan = batch_plan(config, world_size)
    return {"generator": generator, "reward": reward, "config": config.to_dict(), "plan": plan.to_dict(),
            "summary": f"{config.kimg:g} kimg at batch {config.batch} = {plan.iterations:,} iterations = "
                       f"{plan.images:,} images per phase; {plan.world_size} process(es) x {plan.accumulation} "
                       f"micro-batch(es) of {plan.micro_batch}; a tick every {plan.iterations_per_tick} iterations "
                       f"({plan.ticks} ticks after tick 0)"}


def finetune(config: FinetuneConfig, generator: str, reward_path: str | Path | None, out: str | Path,
             device: torch.device, resume: bool = False, progress: bool = True,
             allow_reward_mismatch: bool = False) -> dict[str, Any]:
    """Fine-tune ``generator`` with the reward bundle at ``reward_path`` into the run directory ``out``."""
    run = Path(out)
    rank, world_size = world()
    description = describe(config, generator, str(reward_path) if reward_path else None, world_size)
    if config.lambda_r > 0 and reward_path is None:
        raise FinetuneError("lambda_r > 0 needs --reward (a sigma_slab reward bundle); for a control run pass "
                            "--lambda-r 0")
    saved = _check_resume(run, config, resume)

    # ---- every input, before anything is written
    start = load_start(generator, device, config.discriminator)
    reward = load_reward(reward_path, device) if reward_path is not None else None
    evaluator = load_reward(config.evaluator, device) if config.evaluator is not None else None
    if reward is not None and reward.members > 1 and config.reward_objective != "mean" and (
            config.reward_standardise == "off"):
        log.warning("reward_objective %r compares the members' raw rewards (reward_standardise off), whose offsets "
                    "are arbitrary; pass --reward-standardise calibrate", config.reward_objective)
    if reward is not None and reward.members == 1 and config.reward_objective != "mean":
        log.warning("reward_objective %r on a single reward network is its plain reward; train an ensemble with "
                    "'nerfsculpt reward train --ensemble K'", config.reward_objective)
    for bundle in (reward, evaluator):
        if bundle is not None and not allow_reward_mismatch:
            try:
                bundle.check_generator(start.G_ema)
            except BundleError as error:
                raise FinetuneError(f"{error}, or pass --allow-reward-mismatch if you mean it") from None
    pretrained = run / PRETRAINED_DIR
    if saved is not None and (pretrained / CONFIG_FILE).is_file():
        from nerfsculpt.generator.checkpoint import load_generator

        G_old = load_generator(pretrained, device)
    else:
        G_old = copy.deepcopy(start.G_ema).eval().requires_grad_(False)
    real = real_images(config, G_old)
    real.check(start.G)
    D = start.D if start.D is not None else new_discriminator(start.G, config.seed, device)
    snapshot = latest_snapshot(run) if saved is not None else None
    if snapshot is not None:
        notes = [f"resuming from {snapshot}: G, G_ema, D and the optimisers' state are restored from it"]
    else:
        notes = start.notes + ([] if start.D is not None else ["the checkpoint has no discriminator: built a new one"])
    tuner = FineTuner(config, start.G, start.G_ema, D, G_old, reward, real, device)
    oracle_on = bool(config.trajectory_seeds) and oracle_applies(config.oracle, G_old)
    if config.early_stop == "oracle" and not oracle_on:
        raise FinetuneError("early_stop 'oracle' needs the gold curve, which judges the built-in synthetic generator "
                            "only; pass --oracle on if this generator makes procedural heads, or stop on --evaluator")
    gold = OracleTrajectory(G_old, config.trajectory_seeds, config.oracle_resolution) if (
        rank == 0 and oracle_on) else None
    judge = _judge_key(config, oracle_on)

    # ---- the run directory
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        if saved is None:
            from nerfsculpt.generator.checkpoint import save_network

            save_network(pretrained, G_ema=G_old, meta={"generator": start.info.to_dict()}, overwrite=True)
        record = {**description, "generator_info": start.info.to_dict(), "data": real.description, "notes": notes,
                  "optimizers": tuner.optimizer_settings(), "world_size": world_size,
                  "reward_config": reward.config if reward is not None else None}
        write_atomic(run / CONFIG_FILE, (json.dumps(record, indent=2, default=str) + "\n").encode())
    barrier()
    if snapshot is not None:
        tuner.load_state(load_snapshot(snapshot, tuner.G, tuner.G_ema, tuner.D, tuner.optimizers))
        log.info("resuming %s at iteration %d (%.1f kimg)", run, tuner.state.iteration, tuner.state.nimg / 1000)
    if rank == 0:  # the log restarts from the snapshot's history: ticks after it are done again
        lines = "".join(json.dumps(record) + "\n" for record in tuner.state.history)
        write_atomic(run / "log.jsonl", lines.encode())
    for note in notes:
        log.info("%s", note)
    log.info("fine-tuning %s: %s; real images: %s", generator, description["summary"], real.description)

    with RunLog(run / "log.jsonl", run / "tensorboard" if config.tensorboard else None, enabled=rank == 0) as run_log:
        def on_tick(tuner: FineTuner, tick: int) -> bool:
            """Log the tick, keep the judge's best G_ema, snapshot; True = stop early (rank 0 decides)."""
            record = _tick_record(tuner, tick, reward, run)
            if rank != 0:
                return False
            if gold is not None:
                record.update(gold(run, tick, tuner.G_ema))
            if evaluator is not None:
                record.update(reward_trajectory(run, tick, evaluator, tuner.G_ema, config.trajectory_seeds,
                                                config.reward_clamp, prefix="eval"))
            stop = _keep_best(tuner, tick, record, judge, run)
            tuner.state.history.append(record)
            run_log.write(record, step=tuner.state.nimg)
            if gold is not None:
                gold_curve_png(tuner.state.history, run / "gold_curve.png")
            log.info("tick %d: %s", tick, _short(record))
            if stop:
                log.info("stopping early: %s", record["early_stop"])
            final = tuner.state.iteration >= tuner.plan.iterations or stop
            if tick > 0 and (final or tick % config.snapshot_ticks == 0):
                save_snapshot(run, tuner.state.iteration, tuner.G, tuner.G_ema, tuner.D, tuner.optimizers,
                              tuner.state_dict())
            return stop

        if tuner.state.iteration == 0 and tuner.state.tick == 0:
            on_tick(tuner, 0)
            _choose_reward_scale(tuner, config, rank)
        state = run_loop(tuner, on_tick, progress=progress)
    summary = {"run": str(run), "iterations": state.iteration, "kimg": state.nimg / 1000, "ticks": state.tick,
               "skipped_steps": state.skipped, "seconds": round(state.seconds, 1),
               "G_ema_fingerprint": generator_fingerprint(tuner.G_ema),
               "latest_snapshot": str(latest_snapshot(run)) if rank == 0 else None,
               "stopped_early": state.history[-1].get("early_stop") if state.history else None,
               "best": _best(state.history, judge),
               "first_tick": state.history[0] if state.history else None,
               "last_tick": state.history[-1] if state.history else None}
    if rank == 0:
        write_atomic(run / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    barrier()
    return summary


def _tick_record(tuner: FineTuner, tick: int, reward: RewardBundle | None, run: Path) -> dict[str, Any]:
    """Losses since the last tick (all processes) and, on rank 0, the trajectory, image grid and meshes."""
    cfg, state = tuner.config, tuner.state
    record: dict[str, Any] = {"tick": tick, "iteration": state.iteration, "kimg": state.nimg / 1000,
                              "seconds": round(state.seconds, 2),
                              "kimg_per_s": state.nimg / 1000 / state.seconds if state.seconds > 0 else 0.0,
                              "skipped_steps": state.skipped, **tuner.tick_means()}
    if tuner.rank != 0:
        return record
    if reward is not None and cfg.trajectory_seeds:
        baseline = tuner.state.reward_baseline
        per_member = baseline if baseline is not None and isinstance(baseline[0], list) else None
        record.update(reward_trajectory(run, tick, reward, tuner.G_ema, cfg.trajectory_seeds, cfg.reward_clamp,
                                        member_baseline=per_member))
    if cfg.image_seeds:
        image_grid(run, tick, tuner.G_ema, cfg.image_seeds)
    if cfg.mesh_seeds:
        tick_meshes(run, tick, tuner.G_ema, cfg.mesh_seeds, cfg.mesh_resolution)
    return record


JUDGES = {"oracle": "oracle_quality_mean", "evaluator": "eval_reward_mean"}
"""The log key each ``early_stop`` judge maximises."""


def _judge_key(config: FinetuneConfig, oracle_on: bool) -> str | None:
    """The log key whose best tick RUN/best keeps: the early-stopping judge, else the evaluator, else the oracle."""
    if config.early_stop != "off":
        return JUDGES[config.early_stop]
    if config.evaluator is not None and config.trajectory_seeds:
        return JUDGES["evaluator"]
    return JUDGES["oracle"] if oracle_on else None


def _best(history: list[dict[str, Any]], judge: str | None) -> dict[str, Any] | None:
    """The first tick with the judge's highest value: {tick, kimg, key, value}; None without a judge."""
    ticks = [r for r in history if judge is not None and judge in r]
    if not ticks:
        return None
    best = max(ticks, key=lambda r: (r[judge], -r["tick"]))
    return {"tick": best["tick"], "kimg": best["kimg"], "key": judge, "value": best[judge]}


def _keep_best(tuner: FineTuner, tick: int, record: dict[str, Any], judge: str | None, run: Path) -> bool:
    """Save G_ema to RUN/best/ at a new best of the judge; True when early stopping's patience ran out."""
    if judge is None or judge not in record:
        return False
    best = _best([*tuner.state.history, record], judge)
    if best["tick"] == tick:
        from nerfsculpt.generator.checkpoint import save_network

        save_network(run / "best", G_ema=tuner.G_ema, overwrite=True, meta={"best": best})
    config = tuner.config
    if config.early_stop != "off" and tick - best["tick"] >= config.early_stop_patience:
        record["early_stop"] = {"judge": judge, "best_tick": best["tick"], "best_value": best["value"],
                                "patience": config.early_stop_patience}
        return True
    return False


def oracle_applies(setting: str, G_old: nn.Module) -> bool:
    """``oracle`` 'on', or 'auto' and G_old has the built-in synthetic generator's architecture."""
    if setting != "auto":
        return setting == "on"
    from nerfsculpt.synthetic.generator import synthetic_generator_config

    return G_old.config.to_dict() == synthetic_generator_config().to_dict()


def _choose_reward_scale(tuner: FineTuner, config: FinetuneConfig, rank: int) -> None:
    """After tick 0: calibrate or standardise L_r's reward if ``reward_standardise`` says so (same on every process)."""
    if tuner.terms.reward is None or config.lambda_r == 0 or not config.trajectory_seeds:
        return
    first = tuner.state.history[0] if rank == 0 else {}
    clamped = torch.tensor([first.get("traj_clamp_rate", 0.0)], dtype=torch.float64)
    clamped = float(all_reduce_sum(clamped))  # rank 0's value, on every rank
    setting = config.reward_standardise
    beyond = (f"{100 * clamped:.0f} % of the trajectory seeds' tick-0 rewards are beyond the clamp "
              f"+-{config.reward_clamp:g}")
    if setting in ("on", "calibrate") or (setting == "auto" and clamped > 0.5):
        k = tuner.terms.reward.members
        if k > 1:  # each member on its own scale: their offsets are arbitrary
            tuner.set_reward_baseline(first.get("traj_member_iqr_mean", [0.0] * k),
                                      first.get("traj_member_iqr_std", [0.0] * k))
        else:
            tuner.set_reward_baseline(first.get("traj_iqr_mean", 0.0), first.get("traj_iqr_std", 0.0))
        mean, std = (", ".join(f"{v:.4g}" for v in x) if isinstance(x, list) else f"{x:.4g}"
                     for x in tuner.state.reward_baseline)
        if tuner.terms.standardised:
            log.info("%s; L_r reads (r - %s) / %s, clamped to +-%g std (reward_standardise %s)", beyond, mean, std,
                     config.reward_clamp_standardised, setting)
        else:
            log.info("%s; L_r reads %g + %g * (r - %s) / %s, the paper's reward scale, clamped to +-%g "
                     "(reward_standardise %s)", beyond, PAPER_REWARD_MEAN, PAPER_REWARD_STD, mean, std,
                     config.reward_clamp, setting)
    elif clamped > 0.5:
        log.warning("%s, where L_r has no gradient; pass --reward-standardise calibrate (or auto)", beyond)


def _short(record: dict[str, Any]) -> str:
    keys = ("kimg", "kimg_per_s", "loss/G_gan", "loss/D_gan", "loss/L_r", "loss/L_c", "traj_reward_mean",
            "eval_reward_mean", "oracle_quality_mean", "sigma_drift")
    return ", ".join(f"{k} {record[k]:.4g}" for k in keys if k in record)


