import json

import pytest
import torch

from nerfsculpt.geometry.slab import crop_reward_slab, normalise_slab_0_100, slab_to_model_order
from nerfsculpt.reward.bundle import BundleError, Extraction, load_bundle, save_bundle
from nerfsculpt.reward.sigma_net import SigmaRewardConfig, SigmaRewardNet
from tests.reward.tiny import SMALL_SLAB


def test_round_trip_scores_identically_and_records_the_transforms(tmp_path, tiny_sigma_net, small_extraction):
    out = save_bundle(tmp_path / "bundle", tiny_sigma_net, small_extraction, metrics={"acc": 0.9})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"]["name"] == "sigma_unet"
    assert config["extraction"]["normalisation"] == "min_max_0_100" and config["extraction"]["slab"]["resolution"] == 32
    bundle = load_bundle(out, representation="sigma_slab")
    cube = torch.randn(2, 32, 32, 32) * 100  # raw sigma, (X, Y, Z)
    slab = crop_reward_slab(cube, SMALL_SLAB)
    expected = tiny_sigma_net(slab_to_model_order(normalise_slab_0_100(slab))[:, None])
    torch.testing.assert_close(bundle.score_cubes(cube), expected.detach())
    torch.testing.assert_close(bundle.score_slabs(slab), expected.detach())
    # min-max normalisation: the score of an affine transform of sigma is the same
    torch.testing.assert_close(bundle.score_slabs(3 * slab + 7), expected.detach(), rtol=1e-4, atol=1e-5)


def test_bad_bundles_and_inputs_give_clear_errors(tmp_path, tiny_sigma_net, small_extraction):
    with pytest.raises(BundleError, match="import-reference"):
        load_bundle(tmp_path)
    out = save_bundle(tmp_path / "b", tiny_sigma_net, small_extraction)
    with pytest.raises(BundleError, match="not empty"):
        save_bundle(tmp_path / "b", tiny_sigma_net, small_extraction)
    with pytest.raises(BundleError, match="not 'points'"):
        load_bundle(out, representation="points")
    bundle = load_bundle(out)
    with pytest.raises(AssertionError, match=r"\(X, Y, Z\) order"):
        bundle.score_slabs(torch.rand(1, 17, 18, 16))  # (Z, Y, X) given by mistake
    nan = torch.rand(1, 16, 18, 17)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        bundle.score_slabs(nan)
    # weights of another architecture under this config
    config = json.loads((out / "config.json").read_text())
    config["architecture"]["config"]["f_maps"] = [4, 8, 32]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="do not fit the architecture"):
        load_bundle(out)
    config["format_version"] = 99
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="v1 config"):
        load_bundle(out)


def test_extraction_rejects_unknown_kinds():
    with pytest.raises(BundleError, match="unknown representation"):
        Extraction(representation="voxels")
    with pytest.raises(BundleError, match="unknown normalisation"):
        Extraction(normalisation="log")


def test_full_size_default_extraction_is_the_reference_slab():
    e = Extraction()
    assert e.slab_spec.shape == (128, 141, 129) and e.psi == 1.0 and e.anchor_psi == 0.25
    assert e.truncation_cutoff == 14 and e.noise_mode == "const" and e.eg3d_grid
    assert SigmaRewardNet(SigmaRewardConfig()).config.heads.global_features == 8192
