"""Configurations and EG3D weight compatibility of the module trees (eg3d.md §1-2)."""

from pathlib import Path

import pytest

from nerfsculpt.generator.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    ffhq512_config,
    tiny_config,
)
from nerfsculpt.generator.discriminator import DualDiscriminator
from nerfsculpt.generator.triplane import TriPlaneGenerator

DATA = Path(__file__).parents[1] / "data"

# init_kwargs of the released FFHQ pickles as EG3D's train.py stores them (eg3d.md §1.2).
EG3D_FFHQ_INIT_KWARGS = {
    "z_dim": 512, "w_dim": 512, "mapping_kwargs": {"num_layers": 2}, "channel_base": 32768, "channel_max": 512,
    "fused_modconv_default": "inference_only",
    "rendering_kwargs": {
        "depth_resolution": 48, "depth_resolution_importance": 48, "ray_start": 2.25, "ray_end": 3.3,
        "box_warp": 1, "avg_camera_radius": 2.7, "avg_camera_pivot": [0, 0, 0.2], "image_resolution": 512,
        "disparity_space_sampling": False, "clamp_mode": "softplus",
        "superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC",
        "c_gen_conditioning_zero": False, "gpc_reg_prob": 0.5, "c_scale": 1.0, "superresolution_noise_mode": "none",
        "density_reg": 0.25, "density_reg_p_dist": 0.004, "reg_type": "l1", "decoder_lr_mul": 1.0,
        "sr_antialias": True,
    },
    "num_fp16_res": 0, "sr_num_fp16_res": 4,
    "sr_kwargs": {"channel_base": 32768, "channel_max": 512, "fused_modconv_default": "inference_only"},
    "conv_clamp": None, "c_dim": 25, "img_resolution": 512, "img_channels": 3,
}


def _read_state_dict_listing(name: str) -> list[tuple[str, list[int]]]:
    rows = []
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("#"):
            continue
        _kind, key, shape, _dtype = line.split("\t")
        rows.append((key, [int(s) for s in shape.strip("[]").split(",") if s.strip()]))
    return rows


@pytest.fixture(scope="module")
def ffhq_generator():
    return TriPlaneGenerator(ffhq512_config())


def test_ffhq_generator_state_dict_matches_eg3d_key_for_key(ffhq_generator):
    expected = _read_state_dict_listing("eg3d_state_dict_G.txt")
    got = [(k, list(v.shape)) for k, v in ffhq_generator.state_dict().items()]
    assert len(got) == 177
    assert got == expected  # same keys, same order, same shapes


def test_ffhq_generator_parameter_counts(ffhq_generator):
    G = ffhq_generator
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(G) == 30_662_136
    assert count(G.backbone.mapping) == 800_768
    assert count(G.backbone.synthesis) == 28_207_533
    assert count(G.superresolution) == 1_649_578
    assert count(G.decoder) == 4_257
    assert G.num_ws == 14


def test_ffhq_discriminator_state_dict_matches_eg3d_key_for_key():
    D = DualDiscriminator(DiscriminatorConfig())
    got = [(k, list(v.shape)) for k, v in D.state_dict().items()]
    assert len(got) == 92
    assert got == _read_state_dict_listing("eg3d_state_dict_D.txt")
    assert sum(p.numel() for p in D.parameters()) == 31_359_744
    assert sum(p.numel() for p in D.mapping.parameters()) == 2_114_560
    assert sum(p.numel() for p in D.b4.parameters()) == 6_821_888


def test_from_eg3d_init_kwargs_round_trip():
    cfg = GeneratorConfig.from_eg3d_init_kwargs(EG3D_FFHQ_INIT_KWARGS, neural_rendering_resolution=128)
    assert cfg == ffhq512_config()
    assert cfg.to_eg3d_init_kwargs() == EG3D_FFHQ_INIT_KWARGS
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg


def test_from_eg3d_init_kwargs_reports_every_problem():
    bad = dict(EG3D_FFHQ_INIT_KWARGS, architecture="resnet", mystery=3)
    bad["mapping_kwargs"] = {"num_layers": 2, "foo": 1}
    with pytest.raises(ValueError) as err:
        GeneratorConfig.from_eg3d_init_kwargs(bad)
    msg = str(err.value)
    assert "architecture" in msg and "mystery" in msg and "foo" in msg


def test_validation_names_inconsistent_fields():
    with pytest.raises(ValueError, match="plane_resolution"):
        tiny_config(plane_resolution=48)
    with pytest.raises(ValueError, match="img_resolution"):
        tiny_config(img_resolution=128)
    rk = dict(tiny_config().rendering_kwargs, superresolution_module="training.superresolution.Nope")
    with pytest.raises(ValueError, match="unsupported superresolution_module"):
        tiny_config(rendering_kwargs=rk)
    rk = {k: v for k, v in tiny_config().rendering_kwargs.items() if k != "ray_start"}
    with pytest.raises(ValueError, match="ray_start"):
        tiny_config(rendering_kwargs=rk)


def test_discriminator_from_eg3d_init_kwargs():
    kw = {"c_dim": 25, "img_resolution": 512, "img_channels": 3, "channel_base": 32768, "channel_max": 512,
          "num_fp16_res": 4, "conv_clamp": 256, "disc_c_noise": 0, "block_kwargs": {"freeze_layers": 0},
          "mapping_kwargs": {}, "epilogue_kwargs": {"mbstd_group_size": 4}}
    assert DiscriminatorConfig.from_eg3d_init_kwargs(kw) == DiscriminatorConfig()
    with pytest.raises(ValueError, match="architecture"):
        DiscriminatorConfig.from_eg3d_init_kwargs(dict(kw, architecture="skip"))


def test_from_eg3d_init_kwargs_accepts_hard_coded_sizes_for_small_checkpoints():
    tiny = tiny_config()
    kwargs = tiny.to_eg3d_init_kwargs()
    sizes = {k: getattr(tiny, k) for k in ("plane_resolution", "plane_features", "decoder_hidden",
                                           "sr_input_resolution", "sr_channels")}
    assert GeneratorConfig.from_eg3d_init_kwargs(kwargs, tiny.neural_rendering_resolution, **sizes) == tiny
    with pytest.raises(ValueError, match="img_resolution"):  # without the sizes: SR 8XDC is 128 -> 512
        GeneratorConfig.from_eg3d_init_kwargs(kwargs)
    with pytest.raises(ValueError, match="not size fields"):
        GeneratorConfig.from_eg3d_init_kwargs(kwargs, z_dim=3)
