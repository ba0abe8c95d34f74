"""Reward ensembles: the mean reward and its gradients, bundles of K members, bootstrap, the CLI end to end."""

import csv
import json

import pytest
import torch

from nerfsculpt.cli import main
from nerfsculpt.geometry.slab import crop_reward_slab
from nerfsculpt.reward.bundle import BundleError, load_bundle, save_bundle
from nerfsculpt.reward.config import EnsembleConfig
from nerfsculpt.reward.ensemble import RewardEnsemble
from nerfsculpt.reward.ensemble_training import bootstrap_lists, member_runs
from nerfsculpt.reward.sigma_net import SIGMA_PRESETS, SigmaRewardNet, sigma_input
from nerfsculpt.reward.train import RewardTrainConfig
from tests.reward.test_train import make_splits
from tests.reward.tiny import CPU, SMALL_SLAB, TINY_SIGMA, simulated_study


def tiny_net(seed: int) -> SigmaRewardNet:
    torch.manual_seed(seed)
    return SigmaRewardNet(TINY_SIGMA).eval()


def test_ensemble_reward_is_the_members_mean_and_its_gradient_reaches_every_member():
    a, b = tiny_net(1).double(), tiny_net(2).double()
    ensemble = RewardEnsemble([a, b], seeds=[1, 2])
    x = (torch.rand(3, 1, 17, 18, 16, dtype=torch.float64) * 100).requires_grad_()  # normalised slabs (Z, Y, X)
    each = ensemble.member_rewards(x)
    assert each.shape == (2, 3)
    torch.testing.assert_close(each, torch.stack([a(x), b(x)]))
    torch.testing.assert_close(ensemble(x), (a(x) + b(x)) / 2)
    assert not torch.allclose(each[0], each[1])  # different seeds, different rewards
    # d(mean)/dx is the mean of the members' input gradients, and every member receives a gradient
    (grad_a,) = torch.autograd.grad(a(x).sum(), x)
    (grad_b,) = torch.autograd.grad(b(x).sum(), x)
    ensemble(x).sum().backward()
    torch.testing.assert_close(x.grad, (grad_a + grad_b) / 2)
    for member in (a, b):
        grads = [p.grad for p in member.heads.scalar_rwd_head.parameters()] + [member.unet.final_conv.weight.grad]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    ensemble.checkpointing = True  # fine-tuning sets it on the bundle's model
    assert a.checkpointing and b.checkpointing and ensemble.checkpointing
    torch.testing.assert_close(ensemble.member_rewards(x), each)


def test_ensemble_refuses_mixed_architectures_and_missing_seeds():
    other_size = SigmaRewardNet(SIGMA_PRESETS["tiny"])
    with pytest.raises(ValueError, match="share one architecture"):
        RewardEnsemble([tiny_net(0), other_size])
    with pytest.raises(ValueError, match="one training seed per member"):
        RewardEnsemble([tiny_net(0), tiny_net(1)], seeds=[0])
    with pytest.raises(ValueError, match="at least one member"):
        RewardEnsemble([])


def test_ensemble_bundle_round_trip_scores_each_member_identically(tmp_path, tiny_sigma_net, small_extraction):
    second = tiny_net(7)
    out = save_bundle(tmp_path / "bundle", RewardEnsemble([tiny_sigma_net, second], seeds=[42, 43]), small_extraction)
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"] == {"members": 2, "seeds": [42, 43], "bootstrap": False}
    assert config["architecture"]["name"] == "sigma_unet" and config["format_version"] == 1
    bundle = load_bundle(out, representation="sigma_slab")
    assert isinstance(bundle.model, RewardEnsemble) and bundle.members == 2 and bundle.model.seeds == (42, 43)
    slab = crop_reward_slab(torch.randn(3, 32, 32, 32) * 100, SMALL_SLAB)  # raw sigma (X, Y, Z)
    x = sigma_input(slab)
    with torch.no_grad():
        expected = torch.stack([tiny_sigma_net(x), second(x)])  # (2, 3)
    torch.testing.assert_close(bundle.score_slabs_members(slab), expected)
    torch.testing.assert_close(bundle.score_slabs(slab), expected.mean(0))
    assert not torch.allclose(expected[0], expected[1])
    assert bundle.member_rewards(x).requires_grad  # differentiable, for fine-tuning objectives
    single = load_bundle(save_bundle(tmp_path / "single", tiny_sigma_net, small_extraction))
    assert single.members == 1 and "ensemble" not in single.config
    torch.testing.assert_close(single.score_slabs_members(slab), expected[:1])
    assert single.member_rewards(x).shape == (1, 3)


def test_an_ensemble_bundle_missing_a_member_or_with_no_members_is_refused(tmp_path, tiny_sigma_net,
                                                                            small_extraction):
    from safetensors.torch import load_file, save_file

    out = save_bundle(tmp_path / "bundle", RewardEnsemble([tiny_sigma_net, tiny_net(3)], seeds=[0, 1]),
                      small_extraction)
    weights = load_file(out / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("members.1.")}, out / "model.safetensors")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(BundleError, match=r"no weights for member\(s\) \[1\]; rerun"):
        load_bundle(out)
    config = json.loads((out / "config.json").read_text())
    config["ensemble"]["members"], config["ensemble"]["seeds"] = 0, []
    (out / "config.json").write_text(json.dumps(config))
    before["config.json"] = (out / "config.json").stat().st_mtime_ns
    with pytest.raises(BundleError, match="'members' >= 1"):
        load_bundle(out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # loading wrote nothing


def test_bootstrap_resamples_each_members_training_lists_and_nothing_else():
    splits = make_splits(n_train=40, n_val=10, n_test=10)
    config = RewardTrainConfig(seed=42)
    plain = member_runs(splits, config, EnsembleConfig(members=3))
    boot = member_runs(splits, config, EnsembleConfig(members=3, bootstrap=True))
    assert [r.config.seed for r in boot] == [42, 43, 44] == [r.config.seed for r in plain]
    assert all(r.splits is splits for r in plain)
    for run in boot:
        assert len(run.splits.train) == len(splits.train) and set(run.splits.train) <= set(splits.train)
        assert run.splits.val is splits.val and run.splits.test is splits.test
    assert boot[1].splits.train != plain[1].splits.train and boot[1].splits.train != boot[2].splits.train
    again = member_runs(splits, config, EnsembleConfig(members=3, bootstrap=True))
    assert [r.splits.train for r in again] == [r.splits.train for r in boot]  # seeded: deterministic
    # a bootstrap sample of n holds 1 - (1 - 1/n)^n ~ 63.2 % of the distinct originals
    draws = bootstrap_lists(list(range(2000)), seed=5)
    assert abs(len(set(draws)) / 2000 - (1 - (1 - 1 / 2000) ** 2000)) < 0.03
    with pytest.raises(ValueError, match="--ensemble K"):
        member_runs(splits, config, EnsembleConfig(members=1, bootstrap=True))


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return simulated_study(tmp_path_factory.mktemp("prefs") / "p.sqlite", "0-23", 14, 16)


def test_bootstrap_without_an_ensemble_is_a_usage_error_that_writes_nothing(prefs, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["reward", "train", "--db", str(prefs), "--out", str(out), "--model", "tiny", "--slab-resolution", "16",
            *CPU]
    assert main([*base, "--bootstrap"]) == 2
    assert "--ensemble K" in capsys.readouterr().err
    assert main([*base, "--ensemble", "0"]) == 2
    assert ">= 1 members" in capsys.readouterr().err
    assert not out.exists()


def test_train_an_ensemble_resume_it_and_score_with_member_columns(prefs, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["reward", "train", "--db", str(prefs), "--out", str(out), "--model", "tiny", "--slab-resolution", "16",
            "--epochs", "1", "--batch", "4", "--lr", "1e-3", "--ensemble", "2", "--bootstrap", *CPU]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "member 1/2" in text and "member 2/2" in text and "ensemble of 2 members" in text
    assert text.count("regular only") == 3  # a table per member and one of the ensemble
    bundle = load_bundle(out / "bundle")
    assert bundle.members == 2 and bundle.config["ensemble"] == {"members": 2, "seeds": [42, 43], "bootstrap": True}
    state = bundle.model.state_dict()
    first = [k for k in state if k.startswith("members.0.")]
    assert any(not torch.equal(state[k], state[k.replace("members.0.", "members.1.", 1)]) for k in first)
    training, metrics = bundle.config["training"], bundle.config["metrics"]
    assert set(metrics) == {"test", "val", "members"} and len(metrics["members"]) == 2
    assert all(set(m) == {"test", "val"} for m in metrics["members"])
    assert [m["seed"] for m in training["members"]] == [42, 43]
    resampled = [m["data"]["train"]["sha256"] for m in training["members"]]
    assert len(set(resampled)) == 2 and training["data"]["train"]["sha256"] not in resampled
    assert json.loads((out / "metrics.json").read_text())["metrics"] == metrics

    # rerun: every member's checkpoint says it finished, so nothing trains again
    runs = [out / "member-0", out / "member-1"]
    assert all(json.loads((r / "checkpoint" / "state.json").read_text())["stopped"] for r in runs)
    logs = [(r / "log.jsonl").read_text() for r in runs]
    best = [(r / "best.safetensors").stat().st_mtime_ns for r in runs]
    weights = (out / "bundle" / "model.safetensors").read_bytes()
    assert main(args) == 0
    capsys.readouterr()
    assert [(r / "log.jsonl").read_text() for r in runs] == logs
    assert [(r / "best.safetensors").stat().st_mtime_ns for r in runs] == best
    assert (out / "bundle" / "model.safetensors").read_bytes() == weights

    csv_path = tmp_path / "scores.csv"
    assert main(["reward", "score", "--bundle", str(out / "bundle"), "--generator", "tiny-random", "--seeds", "0-3",
                 "--out", str(csv_path), *CPU]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == ["seed", "reward", "reward_std", "member_0", "member_1"] and len(rows) == 4
    for row in rows:
        m0, m1 = float(row["member_0"]), float(row["member_1"])
        assert float(row["reward"]) == pytest.approx((m0 + m1) / 2, abs=2e-6)
        assert float(row["reward_std"]) == pytest.approx(abs(m0 - m1) / 2, abs=2e-6)  # population std of two
    # the member_1 column is member-1's best network, scored alone as a single-network bundle
    from safetensors.torch import load_file

    from nerfsculpt.generator.builtin import resolve_generator
    from nerfsculpt.reward.scoring import score_seeds

    member_1 = SigmaRewardNet(SIGMA_PRESETS["tiny"]).eval()
    member_1.load_state_dict(load_file(runs[1] / "best.safetensors"))
    alone = load_bundle(save_bundle(tmp_path / "member-1", member_1, bundle.extraction))
    direct = score_seeds(alone, resolve_generator("tiny-random", "cpu")[0], [0, 1, 2, 3])
    torch.testing.assert_close(torch.tensor([float(r["member_1"]) for r in rows]), direct, atol=2e-6, rtol=0)

    # reward eval of the ensemble bundle reproduces the ensemble's metrics
    assert main(["reward", "eval", "--bundle", str(out / "bundle"), "--db", str(prefs), "--out",
                 str(tmp_path / "eval.json"), *CPU]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["test"]["accuracy"] == metrics["test"]["accuracy"]
