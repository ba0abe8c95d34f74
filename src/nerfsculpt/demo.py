"""``nerfsculpt demo``: the whole method on the built-in generator, working, on a laptop CPU.

Steps, each resumable (an interrupted demo continues where it stopped when run again with the same
``--out``):

1. the reward: the shipped one (``synthetic/data/reward``: the tiny sigma reward trained on 600
   simulated questions about the built-in generator, reproducible with the two commands in
   docs/demo.md) or, with ``--from-scratch``, simulated preferences and a reward trained here;
2. fine-tuning the built-in generator with it (``--preset synthetic``: lambda_r 10, the clamped
   reward calibrated to the paper's scale, the sigma-consistency term) and the control run
   (lambda_r 0), tracking held-out seeds with the oracle (the gold curve);
3. the oracle's verdict on tuned against control (``finetune compare``) and ``nerfsculpt evaluate``
   of the tuned generator against the original, with a simulated user study;
4. a paper-style summary, ``OUT/demo.json`` and the HTML report ``OUT/report/report.html``.

Modes (``DEMO_MODES``): ``default`` (about 6 minutes on 2 cores), ``quick`` (about a minute, run
in CI: every step at toy sizes, its numbers are not evidence), ``--from-scratch`` (adds the
preferences and the reward: about 10 minutes in all).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SHIPPED_REWARD = Path(__file__).parent / "synthetic" / "data" / "reward"
"""The shipped reward bundle of the built-in generator (config.json + model.safetensors)."""


@dataclass(frozen=True)
class DemoSizes:
    """How big each step of a demo mode is."""

    kimg: float
    """Fine-tuning length (kimg) of the tuned and the control run (batch 4)."""
    tick_kimg: float
    """kimg between the runs' ticks (trajectory scores, gold curve)."""
    trajectory_seeds: tuple[int, ...]
    """Held-out seeds the runs track and the oracle judges (never in the preference study's 0-599)."""
    oracle_resolution: int
    """Sigma grid of the oracle during the runs."""
    eval_seeds: tuple[int, ...]
    """Latents of the evaluation (the paper's 200000-... at psi 0.7)."""
    sweep_psis: tuple[float, ...]
    """Truncations of the reward sweep."""
    renders: int
    """Seeds shown as clay renders and meshes."""
    shift_samples: int
    """Images per generator of the pixel-space image shift (the image-distribution cost without a detector)."""
    questions: int
    """Simulated questions of ``--from-scratch``."""


DEMO_MODES = {
    "default": DemoSizes(kimg=0.4, tick_kimg=0.1, trajectory_seeds=tuple(range(50000, 50032)), oracle_resolution=64,
                         eval_seeds=tuple(range(200000, 200016)), sweep_psis=(0.0, 0.25, 0.5, 0.7, 1.0), renders=3,
                         shift_samples=64, questions=600),
    "quick": DemoSizes(kimg=0.04, tick_kimg=0.02, trajectory_seeds=tuple(range(50000, 50006)), oracle_resolution=32,
                       eval_seeds=(200000, 200001, 200002, 200003), sweep_psis=(0.0, 1.0), renders=1, shift_samples=8,
                       questions=40),
}
"""Sizes of ``nerfsculpt demo`` (default) and ``nerfsculpt demo --quick``."""


def run_demo(out: str | Path, quick: bool = False, from_scratch: bool = False, device: Any = "cpu",
             progress: bool = True) -> dict[str, Any]:
    """Run the demo into ``out`` (resumable); returns the summary also written to ``out/demo.json``."""
    from nerfsculpt.atomic import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "default"
    sizes = DEMO_MODES[mode]
    reward = _reward(out, sizes, from_scratch, device, progress)
    runs = {name: _finetune(out / name, sizes, reward if name == "tune" else None, device, progress)
            for name in ("tune", "control")}
    from nerfsculpt.finetune.compare import compare_runs

    verdict = compare_runs(runs["tune"], runs["control"])
    report = _evaluate(out, sizes, reward, runs, device, progress)
    summary = {"mode": mode, "from_scratch": from_scratch, "sizes": dataclasses.asdict(sizes),
               "reward": {"path": str(reward), "accuracy": _reward_accuracy(reward)},
               "finetune": {"verdict": verdict, "runs": {k: str(v) for k, v in runs.items()}},
               "evaluation": report["sections"], "report": str(out / "report" / "report.html")}
    write_atomic(out / "demo.json", (json.dumps(summary, indent=2, default=str) + "\n").encode())
    write_atomic(out / "demo_summary.json", (json.dumps(headline_numbers(summary), indent=2) + "\n").encode())
    return summary


def headline_numbers(summary: dict[str, Any]) -> dict[str, Any]:
    """The demo's key numbers, small enough to keep in the repository (docs/demo_summary.json)."""
    import torch

    from nerfsculpt import __version__

    verdict = summary["finetune"]["verdict"]
    keys = ("seeds", "seed_range", "tolerance", "tuned_change", "control_change", "paired_difference", "slope",
            "reward_rise", "passed")
    sections = summary["evaluation"]
    evaluation: dict[str, Any] = {}
    if sections["oracle"]["status"] == "ran":
        quality = next(r for r in sections["oracle"]["result"]["rows"] if r["measure"] == "quality")
        evaluation["oracle_quality_change"] = {"mean": quality["change"], "ci95": quality["change_ci95"],
                                               "better": quality["better"], "worse": quality["worse"]}
    if sections["rewards"]["status"] == "ran":
        evaluation["reward_delta"] = sections["rewards"]["result"]["delta"]
    if sections["image_shift"]["status"] == "ran":
        evaluation["image_shift"] = sections["image_shift"]["result"]
    if sections["study"]["status"] == "ran":
        study = sections["study"]["result"]
        evaluation["user_study"] = {"counts": study["counts"], "cohens_h": study["cohens_h"]}
    return {"mode": summary["mode"], "from_scratch": summary["from_scratch"], "nerfsculpt": __version__,
            "torch": torch.__version__, "verdict": {k: verdict[k] for k in keys if k in verdict},
            "evaluation": evaluation}


def _reward(out: Path, sizes: DemoSizes, from_scratch: bool, device: Any, progress: bool) -> Path:
    if not from_scratch:
        return SHIPPED_REWARD
    from nerfsculpt.preferences.store import PreferenceStore
    from nerfsculpt.reward.config import RewardModelConfig, RewardTrainConfig
    from nerfsculpt.reward.pipeline import train_reward
    from nerfsculpt.synthetic.config import SimulatedStudyConfig
    from nerfsculpt.synthetic.preferences import simulate_preferences

    db = out / "preferences.sqlite"
    done = False
    if db.is_file():  # a study is written in one transaction: present means complete
        with PreferenceStore(db, create=False) as store:
            done = any(s["name"] == "simulated" for s in store.studies())
    if not done:
        log.info("demo: simulating %d preference questions", sizes.questions)
        seeds = tuple(range(max(sizes.questions, 2)))  # each question draws from these seeds
        simulate_preferences(db, SimulatedStudyConfig(seeds=seeds, questions=sizes.questions), device=device,
                             progress=progress)
    bundle = out / "reward" / "bundle"
    if not (bundle / "model.safetensors").is_file():
        log.info("demo: training the reward")
        train_reward(db, out / "reward", RewardModelConfig(model="tiny", slab_resolution=32),
                     train=RewardTrainConfig(lr=2e-3, batch=4), device=device, progress=progress)
    return bundle


def _finetune(run: Path, sizes: DemoSizes, reward: Path | None, device: Any, progress: bool) -> Path:
    from nerfsculpt.finetune.config import FinetuneConfig, apply_preset
    from nerfsculpt.finetune.run import finetune

    if (run / "summary.json").is_file():
        log.info("demo: %s is finished", run)
        return run
    fields = {"kimg": sizes.kimg, "tick_kimg": sizes.tick_kimg, "trajectory_seeds": sizes.trajectory_seeds,
              "image_seeds": (), "mesh_seeds": (), "oracle": "on", "oracle_resolution": sizes.oracle_resolution,
              "lambda_r": 10.0 if reward is not None else 0.0}
    config = apply_preset("synthetic", FinetuneConfig(**fields), keep=fields)
    log.info("demo: fine-tuning %s (%s)", run.name, "lambda_r 10" if reward is not None else "control, lambda_r 0")
    finetune(config, "synthetic", reward, run, device, resume=(run / "config.json").is_file(), progress=progress)
    return run


def _evaluate(out: Path, sizes: DemoSizes, reward: Path, runs: dict[str, Path], device: Any,
              progress: bool) -> dict[str, Any]:
    from nerfsculpt.evaluate.config import EvaluateConfig
    from nerfsculpt.evaluate.report import evaluate_generators

    snapshots = sorted((runs["tune"] / "snapshots").iterdir())
    config = EvaluateConfig(seeds=sizes.eval_seeds, sweep_psis=sizes.sweep_psis, renders=sizes.renders,
                            shift_samples=sizes.shift_samples,
                            depth_resolution=64, sigma_resolution=32 if sizes is DEMO_MODES["quick"] else 64,
                            oracle_resolution=sizes.oracle_resolution)
    log.info("demo: evaluating %s against the built-in generator", snapshots[-1])
    return evaluate_generators("synthetic", str(snapshots[-1]), str(reward), out / "report", config,
                               run=runs["tune"], control=runs["control"], device=device, progress=progress)


def _reward_accuracy(reward: Path) -> dict[str, Any] | None:
    """Table 1 of the reward's own training (its bundle's metrics), if recorded."""
    config = json.loads((reward / "config.json").read_text())
    return config.get("metrics")


def summary_text(summary: dict[str, Any]) -> str:
    """The demo's paper-style summary (what ``nerfsculpt demo`` prints)."""
    lines = [f"nerfsculpt demo ({summary['mode']}{', from scratch' if summary['from_scratch'] else ''}): "
             "the method on the built-in generator", ""]
    if summary["mode"] == "quick":
        lines += ["(toy sizes, to check that everything runs: these numbers are not evidence; run "
                  "'nerfsculpt demo')", ""]
    accuracy = (summary["reward"]["accuracy"] or {}).get("test", {}).get("accuracy", {})
    if "regular_only/scalar" in accuracy:
        lines.append(f"Reward model (Table 1, test split, scalar head): all pairs "
                     f"{_pct(accuracy['all_pairs/scalar'])}, regular only {_pct(accuracy['regular_only/scalar'])}")
    v = summary["finetune"]["verdict"]
    t, c, p = v["tuned_change"], v["control_change"], v["paired_difference"]
    lines += [f"Fine-tuning vs control on {v['seeds']} held-out seeds, the oracle's quality (ground truth):",
              f"  tuned {t['mean']:+.3f} {_ci(t['ci95'])}, better on {t['improved']:.0%} | control {c['mean']:+.3f} "
              f"{_ci(c['ci95'])} | tuned - control {p['mean']:+.3f} {_ci(p['ci95'])}: "
              f"{'PASS' if v['passed'] else 'FAIL'}"]
    sections = summary["evaluation"]
    if sections["rewards"]["status"] == "ran":
        d = sections["rewards"]["result"]["delta"]
        lines.append(f"Reward change, same latents (psi 0.7): {d['mean']:+.3f} {_ci(d['mean_ci95'])}, up on "
                     f"{d['fraction_positive']:.0%}")
    if sections["slope"]["status"] == "ran" and "reward" in sections["slope"]["result"].get("tuned", {}):
        s = sections["slope"]["result"]["tuned"]["reward"]
        lines.append(f"Final against initial reward: b = {s['b']:.2f} {_ci(s['b_ci95'])} (p of b = 1: "
                     f"{s['p_b_equals_1']:.2g})")
    if sections["oracle"]["status"] == "ran":
        rows = sections["oracle"]["result"]["rows"]
        lines.append("Oracle per defect (lower is better), original -> tuned: " + ", ".join(
            f"{r['measure']} {r['before']:.3f} -> {r['after']:.3f}" for r in rows if r["measure"] != "quality"))
    if sections["study"]["status"] == "ran":
        r = sections["study"]["result"]
        lines.append(f"Simulated user study ({r['total']} answers): tuned {r['proportions']['tuned']:.0%}, original "
                     f"{r['proportions']['original']:.0%}, no preference {r['proportions']['none']:.0%}; Cohen's h "
                     f"{r['cohens_h']:.2f}")
    if sections["image_shift"]["status"] == "ran":
        r = sections["image_shift"]["result"]
        n = sections["image_shift"]["protocol"]["samples"]
        lines.append(f"Image-distribution cost, pixel space ({n} images each): FID tuned vs original {r['fid']:.3g} "
                     f"(noise floor, original vs itself: {r['floor_fid']:.3g}); KID {r['kid']:.3g} (floor "
                     f"{r['floor_kid']:.3g})")
    fid = sections["fid"]
    if fid["status"] == "ran":
        lines.append("Inception FID (tuned - original): " + ", ".join(
            f"{space} {v['cost']['fid']:+.3g}" for space, v in fid["result"].items()))
    else:
        lines.append("Inception FID: not run here (give StyleGAN's detector: nerfsculpt evaluate --detector ... "
                     "--data ...)")
    lines += ["", f"report: {summary['report']}"]
    return "\n".join(lines)


def _pct(cell: dict[str, Any]) -> str:
    low, high = cell["ci95"]
    return f"{cell['accuracy']:.3f} [{low:.3f}, {high:.3f}] (n = {cell['n']})"


def _ci(interval: Any) -> str:
    return f"[{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else ""
