"""Whole runs on the tiny random generator: outputs, resume equivalence, crash-safe snapshots, bad inputs."""

import dataclasses
import json
import logging
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from nerfsculpt.finetune.config import FinetuneError
from nerfsculpt.finetune.run import finetune
from nerfsculpt.finetune.snapshot import latest_snapshot, save_snapshot
from nerfsculpt.generator.builtin import resolve_generator
from tests.finetune.conftest import tiny_run, write_tiny_reward

CPU = torch.device("cpu")


def test_a_run_writes_logs_trajectories_grids_and_loadable_snapshots(tiny_reward_path, tmp_path, caplog):
    caplog.set_level("INFO", logger="nerfsculpt")
    summary = finetune(tiny_run(snapshot_ticks=1), "tiny-random", tiny_reward_path, tmp_path / "run", CPU,
                       progress=False)
    run = tmp_path / "run"
    assert summary["iterations"] == 4 and summary["ticks"] == 2 and summary["skipped_steps"] == 0
    assert "iteration 4/4 (0.016 kimg)" in caplog.text  # progress lines stand in for the bar when it is off
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in records] == [0, 1, 2]
    assert {"loss/G_gan", "loss/D_gan", "loss/L_r", "loss/L_c", "reward/train_clamp_rate", "kimg_per_s",
            "traj_reward_mean", "traj_clamp_rate"} <= set(records[1])
    assert sorted(p.name for p in (run / "rewards").iterdir()) == [f"tick-00000{k}.csv" for k in range(3)]
    assert (run / "rewards" / "tick-000002.csv").read_text().splitlines()[0] == "seed,reward"
    assert sorted(p.name for p in (run / "images").iterdir()) == [f"tick-00000{k}.png" for k in range(3)]
    config = json.loads((run / "config.json").read_text())
    assert config["plan"]["iterations"] == 4 and config["optimizers"]["G"]["lr"] == pytest.approx(0.002)
    assert latest_snapshot(run).name == "0000004" and (run / "snapshots" / "0000002").is_dir()
    G, info = resolve_generator(str(latest_snapshot(run)))  # any command can take the snapshot as --generator
    assert info.kind == "converted" and G.img_resolution == 64


def _weights(snapshot):
    return {name: load_file(snapshot / f"{name}.safetensors") for name in ("G", "G_ema", "D")}


def test_an_interrupted_and_resumed_run_ends_where_an_uninterrupted_one_does(tiny_reward_path, tmp_path, caplog):
    finetune(tiny_run(), "tiny-random", tiny_reward_path, tmp_path / "straight", CPU, progress=False)
    finetune(tiny_run(kimg=0.008), "tiny-random", tiny_reward_path, tmp_path / "resumed", CPU, progress=False)
    with pytest.raises(FinetuneError, match="pass --resume"):
        finetune(tiny_run(), "tiny-random", tiny_reward_path, tmp_path / "resumed", CPU, progress=False)
    with pytest.raises(FinetuneError, match="differ from the run's \\(lambda_r\\)"):
        finetune(tiny_run(lambda_r=1.0), "tiny-random", tiny_reward_path, tmp_path / "resumed", CPU, resume=True,
                 progress=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="nerfsculpt"):
        finetune(tiny_run(), "tiny-random", tiny_reward_path, tmp_path / "resumed", CPU, resume=True, progress=False)
    assert "D and the optimisers' state are restored" in caplog.text and "built a new one" not in caplog.text
    notes = json.loads((tmp_path / "resumed" / "config.json").read_text())["notes"]
    assert notes == [f"resuming from {tmp_path / 'resumed' / 'snapshots' / '0000002'}: G, G_ema, D and the "
                     "optimisers' state are restored from it"]
    straight, resumed = (latest_snapshot(tmp_path / name) for name in ("straight", "resumed"))
    assert straight.name == resumed.name == "0000004"
    a, b = _weights(straight), _weights(resumed)
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)  # bitwise: every draw is (seed, iteration)
    optim_a, optim_b = (load_file(s / "optimizer.safetensors") for s in (straight, resumed))
    assert optim_a.keys() == optim_b.keys() and all(torch.equal(optim_a[k], optim_b[k]) for k in optim_a)
    log_a, log_b = ((tmp_path / n / "log.jsonl").read_text().splitlines() for n in ("straight", "resumed"))
    assert [json.loads(x)["tick"] for x in log_b] == [0, 1, 2]
    strip = ("seconds", "kimg_per_s")
    assert [{k: v for k, v in json.loads(x).items() if k not in strip} for x in log_a] == [
        {k: v for k, v in json.loads(x).items() if k not in strip} for x in log_b]


@pytest.mark.parametrize("exists", [False, True])
def test_resume_without_a_run_is_refused(tiny_reward_path, tmp_path, exists):
    run = tmp_path / "empty"
    if exists:
        run.mkdir()
    with pytest.raises(FinetuneError, match="holds no run to resume; drop --resume"):
        finetune(tiny_run(), "tiny-random", tiny_reward_path, run, CPU, resume=True, progress=False)
    assert list(tmp_path.iterdir()) == ([run] if exists else []) and not (exists and any(run.iterdir()))


def test_snapshots_and_bundles_are_readable_like_every_other_file(tmp_path):
    """Every file gets the umask's permissions (0644 under 022): snapshots and bundles were written 0600."""
    from nerfsculpt.finetune.snapshot import new_discriminator

    G, _ = resolve_generator("tiny-random")
    old = os.umask(0o022)
    try:
        write_tiny_reward(tmp_path / "bundle")
        save_snapshot(tmp_path / "run", 1, G, G, new_discriminator(G, 0, CPU), {}, {"iteration": 1})
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*")
             if p.is_file()}
    assert {"bundle/model.safetensors", "run/snapshots/0000001/G.safetensors", "run/latest.json"} <= modes.keys()
    assert set(modes.values()) == {"0o644"}, modes


def test_an_interrupted_snapshot_write_never_leaves_a_corrupt_latest(tiny_reward_path, tmp_path, monkeypatch):
    import safetensors.torch

    run = tmp_path / "run"
    finetune(tiny_run(kimg=0.008), "tiny-random", tiny_reward_path, run, CPU, progress=False)
    before = latest_snapshot(run)
    G, _ = resolve_generator("tiny-random")
    real_save = safetensors.torch.save
    calls = []

    def dying_save(*args, **kwargs):  # the process dies after the first network file
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save", dying_save)
    from nerfsculpt.finetune.snapshot import new_discriminator

    with pytest.raises(KeyboardInterrupt):
        save_snapshot(run, 999, G, G, new_discriminator(G, 0, CPU), {}, {"iteration": 999})
    assert latest_snapshot(run) == before
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [before.name]  # no partial snapshot
    resolve_generator(str(before))


def _edit_bundle(src, dst, change):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    change(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_bad_inputs_fail_before_anything_is_written(tiny_reward_path, tmp_path):
    out = tmp_path / "run"
    depth = _edit_bundle(tiny_reward_path, tmp_path / "depth",
                         lambda c: c["extraction"].update(representation="depth_single"))
    with pytest.raises(FinetuneError, match="needs a sigma_slab reward"):
        finetune(tiny_run(), "tiny-random", depth, out, CPU, progress=False)
    other = _edit_bundle(tiny_reward_path, tmp_path / "other",
                         lambda c: c.update(generator={"img_resolution": 512, "plane_resolution": 256, "box_warp": 1}))
    with pytest.raises(FinetuneError, match="img_resolution 512 \\(reward\\) vs 64"):
        finetune(tiny_run(), "tiny-random", other, out, CPU, progress=False)
    labels = tmp_path / "dataset.json"
    labels.write_text(json.dumps({"labels": [["a.png", [0.0] * 16]]}))
    with pytest.raises(FinetuneError, match="25 numbers"):
        finetune(tiny_run(labels=str(labels)), "tiny-random", tiny_reward_path, out, CPU, progress=False)
    from nerfsculpt.synthetic.dataset import write_dataset

    zip_path = write_dataset(tmp_path / "d.zip", n=2, resolution=32, seed=0, progress=False)
    with pytest.raises(FinetuneError, match="32x32 images, the generator makes 64x64"):
        finetune(tiny_run(data_free=False, data=str(zip_path)), "tiny-random", tiny_reward_path, out, CPU,
                 progress=False)
    with pytest.raises(FinetuneError, match="needs --reward"):
        finetune(tiny_run(), "tiny-random", None, out, CPU, progress=False)
    with pytest.raises(FinetuneError, match="micro_batch 3 does not divide"):
        finetune(tiny_run(micro_batch=3), "tiny-random", tiny_reward_path, out, CPU, progress=False)
    assert not out.exists()
    # the mismatch check can be overridden when meant
    finetune(tiny_run(kimg=0.004), "tiny-random", other, out, CPU, progress=False, allow_reward_mismatch=True)


def test_a_control_run_needs_no_reward_and_keeps_the_consistency_term(tmp_path):
    summary = finetune(tiny_run(lambda_r=0, kimg=0.008), "tiny-random", None, tmp_path / "control", CPU,
                       progress=False)
    assert "loss/L_c" in summary["last_tick"] and "loss/L_r" not in summary["last_tick"]
    assert not (tmp_path / "control" / "rewards").exists()


def test_training_on_a_dataset_zip(tiny_reward_path, tmp_path):
    from nerfsculpt.synthetic.dataset import write_dataset

    zip_path = write_dataset(tmp_path / "d.zip", n=4, resolution=64, seed=0, progress=False)
    summary = finetune(tiny_run(data_free=False, data=str(zip_path), kimg=0.008), "tiny-random", tiny_reward_path,
                       tmp_path / "run", CPU, progress=False)
    assert summary["iterations"] == 2 and "D/real_logit" in summary["last_tick"]
    assert "dataset" in json.loads((tmp_path / "run" / "config.json").read_text())["data"]


def test_reward_standardisation_uses_the_tick_0_trajectory_and_survives_resume(tiny_reward_path, tmp_path):
    run = tmp_path / "run"
    config = tiny_run(kimg=0.008, reward_standardise="on", trajectory_seeds=tuple(range(300000, 300006)))
    finetune(config, "tiny-random", tiny_reward_path, run, CPU, progress=False)
    state = json.loads((latest_snapshot(run) / "state.json").read_text())
    mean, std = state["reward_baseline"]
    tick0 = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert (mean, std) == (tick0["traj_iqr_mean"], tick0["traj_iqr_std"]) and std > 0
    finetune(dataclasses.replace(config, kimg=0.016), "tiny-random", tiny_reward_path, run, CPU, resume=True,
             progress=False)
    assert json.loads((latest_snapshot(run) / "state.json").read_text())["reward_baseline"] == [mean, std]


@pytest.mark.parametrize("setting, clamped, scale", [
    ("auto", 0.9, "calibrated"), ("auto", 0.1, "raw"), ("calibrate", 0.1, "calibrated"), ("on", 0.1, "standardised"),
    ("off", 0.9, "raw")])
def test_auto_calibration_only_when_most_rewards_are_clamped(setting, clamped, scale, caplog):
    from nerfsculpt.finetune.run import _choose_reward_scale
    from tests.finetune.conftest import Fullness, make_tuner

    tuner = make_tuner(tiny_run(reward_standardise=setting), Fullness())
    tuner.state.history = [{"traj_clamp_rate": clamped, "traj_iqr_mean": -57.0, "traj_iqr_std": 4.0}]
    with caplog.at_level(logging.INFO, logger="nerfsculpt"):
        _choose_reward_scale(tuner, tuner.config, rank=0)
    assert (tuner.state.reward_baseline == [-57.0, 4.0]) == (scale != "raw")
    assert tuner.terms.baseline == (None if scale == "raw" else (-57.0, 4.0))
    assert tuner.terms.clamp == (2.0 if scale == "standardised" else 10.0)  # std units once standardised
    assert ("no gradient" in caplog.text) == (setting == "off")
    assert ("the paper's reward scale" in caplog.text) == (scale == "calibrated")
    r = torch.tensor([-57.0, -53.0])  # the tick-0 mean and one std above it
    expected = {"raw": r, "calibrated": torch.tensor([5.76, 8.08]), "standardised": torch.tensor([0.0, 1.0])}[scale]
    torch.testing.assert_close(tuner.terms.scaled(r), expected)


def test_the_gold_curve_is_logged_when_the_oracle_applies(tiny_reward_path, tmp_path):
    """'on': every tick scores the trajectory seeds with the oracle and redraws gold_curve.png; 'auto' on a
    generator that is not the synthetic one (tiny-random) does not."""
    finetune(tiny_run(oracle="on", oracle_resolution=16), "tiny-random", tiny_reward_path, tmp_path / "on", CPU,
             progress=False)
    ticks = [json.loads(line) for line in (tmp_path / "on" / "log.jsonl").read_text().splitlines()]
    assert [t["tick"] for t in ticks] == [0, 1, 2]
    assert all({"oracle_quality_mean", "oracle_holes_mean", "sigma_drift"} <= t.keys() for t in ticks)
    assert ticks[0]["sigma_drift"] == 0.0 and ticks[-1]["sigma_drift"] > 0  # G_ema moved away from G_old
    assert sorted(p.name for p in (tmp_path / "on" / "oracle").iterdir()) == [
        "tick-000000.csv", "tick-000001.csv", "tick-000002.csv"]
    assert (tmp_path / "on" / "gold_curve.png").stat().st_size > 0
    finetune(tiny_run(), "tiny-random", tiny_reward_path, tmp_path / "auto", CPU, progress=False)
    assert not (tmp_path / "auto" / "oracle").exists() and not (tmp_path / "auto" / "gold_curve.png").exists()
    assert "oracle_quality_mean" not in json.loads((tmp_path / "auto" / "log.jsonl").read_text().splitlines()[-1])


def test_early_stopping_keeps_the_judges_best_and_stops_on_every_process(tiny_reward_path, tmp_path, monkeypatch):
    """A judge that only gets worse after tick 0: RUN/best holds the pretrained G_ema and the run stops at tick
    1 (patience 1) with a snapshot there; resuming it stops again at once."""
    from nerfsculpt.finetune.monitor import OracleTrajectory
    from nerfsculpt.generator.checkpoint import load_generator

    monkeypatch.setattr(OracleTrajectory, "__call__", lambda self, run, tick, G: {
        "oracle_quality_mean": -float(tick), "oracle_quality_std": 0.0, "sigma_drift": 0.0})
    config = tiny_run(kimg=0.032, oracle="on", oracle_resolution=16, early_stop="oracle", early_stop_patience=1)
    summary = finetune(config, "tiny-random", tiny_reward_path, tmp_path / "run", CPU, progress=False)
    assert summary["iterations"] == 2 and summary["ticks"] == 1  # 8 planned
    assert summary["stopped_early"] == {"judge": "oracle_quality_mean", "best_tick": 0, "best_value": 0.0,
                                        "patience": 1}
    assert summary["best"] == {"tick": 0, "kimg": 0.0, "key": "oracle_quality_mean", "value": 0.0}
    assert latest_snapshot(tmp_path / "run").name == "0000002"
    best, pretrained = (load_generator(tmp_path / "run" / name).state_dict() for name in ("best", "pretrained"))
    assert all(torch.equal(best[k], pretrained[k]) for k in best)
    again = finetune(config, "tiny-random", tiny_reward_path, tmp_path / "run", CPU, resume=True, progress=False)
    assert again["iterations"] == 4 and again["stopped_early"]["best_tick"] == 0  # one more tick, no new best


def test_a_judge_that_improves_moves_best_along(tiny_reward_path, tmp_path, monkeypatch):
    from nerfsculpt.finetune.monitor import OracleTrajectory

    monkeypatch.setattr(OracleTrajectory, "__call__", lambda self, run, tick, G: {
        "oracle_quality_mean": float(tick), "oracle_quality_std": 0.0, "sigma_drift": 0.0})
    config = tiny_run(oracle="on", oracle_resolution=16, early_stop="oracle", early_stop_patience=1)
    summary = finetune(config, "tiny-random", tiny_reward_path, tmp_path / "run", CPU, progress=False)
    assert summary["stopped_early"] is None and summary["iterations"] == 4
    assert summary["best"]["tick"] == 2
    meta = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["meta"]
    assert meta["best"]["tick"] == 2


def test_early_stopping_needs_a_judge(tiny_reward_path, tmp_path):
    with pytest.raises(FinetuneError, match="needs --evaluator"):
        finetune(tiny_run(early_stop="evaluator"), "tiny-random", tiny_reward_path, tmp_path / "a", CPU)
    with pytest.raises(FinetuneError, match="judges the built-in synthetic generator only"):
        finetune(tiny_run(early_stop="oracle"), "tiny-random", tiny_reward_path, tmp_path / "b", CPU)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_held_out_evaluator_is_scored_every_tick(tiny_reward_path, tmp_path):
    summary = finetune(tiny_run(evaluator=str(tiny_reward_path)), "tiny-random", tiny_reward_path, tmp_path / "run",
                       CPU, progress=False)
    ticks = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(t["eval_reward_mean"] == pytest.approx(t["traj_reward_mean"]) for t in ticks)  # the same bundle here
    assert sorted(p.name for p in (tmp_path / "run" / "evaluator").iterdir())[-1] == "tick-000002.csv"
    assert summary["best"]["key"] == "eval_reward_mean" and (tmp_path / "run" / "best" / "config.json").is_file()


def test_an_ensemble_reward_is_calibrated_member_by_member(tmp_path):
    from nerfsculpt.reward.bundle import Extraction, save_bundle
    from nerfsculpt.reward.ensemble import RewardEnsemble
    from nerfsculpt.reward.sigma_net import SigmaRewardNet
    from tests.reward.tiny import SMALL_SLAB, TINY_SIGMA

    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(SigmaRewardNet(TINY_SIGMA))
    bundle = save_bundle(tmp_path / "ensemble", RewardEnsemble(nets, seeds=[0, 1]),
                         Extraction(slab=dataclasses.asdict(SMALL_SLAB)))
    config = tiny_run(reward_standardise="calibrate", reward_objective="wco", trajectory_seeds=(300000, 300001, 300002))
    finetune(config, "tiny-random", bundle, tmp_path / "run", CPU, progress=False)
    ticks = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    state = json.loads((latest_snapshot(tmp_path / "run") / "state.json").read_text())
    assert state["reward_baseline"] == [ticks[0]["traj_member_iqr_mean"], ticks[0]["traj_member_iqr_std"]]
    assert len(state["reward_baseline"][0]) == 2 and all(t["traj_disagreement"] >= 0 for t in ticks)
    assert "reward/train_spread" in ticks[1]
