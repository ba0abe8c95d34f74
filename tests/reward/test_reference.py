import pytest
import torch
import yaml

from nerfsculpt.reward.bundle import BundleError, load_bundle
from nerfsculpt.reward.reference import PREFIXES, import_reference, native_state_dict, reference_state_dict
from nerfsculpt.reward.sigma_net import SigmaRewardNet

RUN_CONFIG = {
    "data": {"dset_dict": {"selected_dtypes": ["sigma_field_256"]},
             "augmentations": {"tune": {"_target_": "normalise_sigma_self", "min_norm": 0, "max_norm": 100}}},
    "model": {"Conv3DModule": {"f_maps": [4, 8, 16], "num_groups": 2, "final_size_out": 64}},
}


def write_release(directory, net: SigmaRewardNet, config=RUN_CONFIG, lightning=False):
    directory.mkdir(parents=True, exist_ok=True)
    state = reference_state_dict(net.state_dict())
    torch.save({"state_dict": state, "epoch": 3} if lightning else state, directory / "best_model.pt")
    (directory / "run_config.yaml").write_text(yaml.safe_dump(config))
    return directory


def test_reference_key_names_are_those_of_the_release():
    keys = reference_state_dict(SigmaRewardNet().state_dict())
    assert "Conv3DModule.encoders.5.basic_module.se_module.sSE.conv.weight" in keys
    assert "Conv3DModule.decoders.4.upsampling.upsample.conv_transposed.weight" in keys
    assert "Conv3DModule.decoders.0.basic_module.conv2.groupnorm.weight" in keys
    assert {"MLP.input_layer.weight", "MLP.hidden_layers.0.0.weight", "MLP.output_layer.bias",
            "scalar_rwd_head_BT.output_layer.weight", "scalar_rwd_head_pairs.input_layer.weight",
            "Conv3DModule.conv1d_for_recon.weight", "Conv3DModule.conv3d_for_recon.bias"} <= set(keys)
    assert all(any(k.startswith(old) for old, _ in PREFIXES) for k in keys)


@pytest.mark.parametrize("lightning", [False, True])
def test_import_scores_identically_to_the_native_network(tmp_path, tiny_sigma_net, lightning):
    release = write_release(tmp_path / "7wnzkgie", tiny_sigma_net, lightning=lightning)
    bundle = load_bundle(import_reference(release, tmp_path / "imported"))
    assert bundle.config["source"]["kind"] == "reference-release"
    assert bundle.config["generator"] == {"img_resolution": 512, "plane_resolution": 256, "box_warp": 1.0}
    x = torch.rand(2, 1, 129, 141, 128)[:, :, ::4, ::4, ::4] * 100  # any slab size >= 4 per side
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(x), tiny_sigma_net(x), rtol=0, atol=0)
    assert bundle.extraction.slab_spec.shape == (128, 141, 129)


def test_import_refuses_other_representations_and_mismatched_files(tmp_path, tiny_sigma_net):
    other = {**RUN_CONFIG, "data": {"dset_dict": {"selected_dtypes": ["single_dmap"]}}}
    with pytest.raises(BundleError, match="'single_dmap'"):
        import_reference(write_release(tmp_path / "a", tiny_sigma_net, other), tmp_path / "out")
    wrong = {**RUN_CONFIG, "model": {"Conv3DModule": {"f_maps": [8, 16, 32], "num_groups": 2}}}
    with pytest.raises(BundleError, match="not from the same run"):
        import_reference(write_release(tmp_path / "b", tiny_sigma_net, wrong), tmp_path / "out")
    norm = {**RUN_CONFIG, "data": {**RUN_CONFIG["data"], "augmentations": {"min_norm": 0, "max_norm": 1}}}
    with pytest.raises(BundleError, match=r"\[0, 100\]"):
        import_reference(write_release(tmp_path / "c", tiny_sigma_net, norm), tmp_path / "out")
    with pytest.raises(BundleError, match="no best_model.pt"):
        import_reference(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on any error


def test_import_refuses_pickled_code_and_foreign_keys(tmp_path, tiny_sigma_net):
    release = write_release(tmp_path / "r", tiny_sigma_net)
    torch.save({"state_dict": {"fn": print}}, release / "best_model.pt")  # not tensors-only
    with pytest.raises(BundleError, match="tensors-only"):
        import_reference(release, tmp_path / "out")
    with pytest.raises(BundleError, match="not part of the sigma reward"):
        native_state_dict({"Conv2DModule.conv.weight": torch.zeros(1)})
