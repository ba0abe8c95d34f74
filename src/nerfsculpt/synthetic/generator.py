"""The built-in ``synthetic`` generator: its size and where its shipped weights live.

It is EG3D's architecture at a small size, fitted to the procedural heads by ``synthetic.fit``
(``nerfsculpt synthetic fit``; log of the shipped run in ``docs/synthetic_fit.log``). The weights are
package data (``nerfsculpt/synthetic/data/synthetic``: ``config.json`` + ``G_ema.safetensors``), so
loading it needs no network: ``nerfsculpt.generator.builtin.resolve_generator("synthetic")``
(``builtin.synthetic_weights_dir()``).
"""

from __future__ import annotations

import copy

from nerfsculpt.generator.config import FFHQ_RENDERING_KWARGS, GeneratorConfig

SYNTHETIC_RENDERING_KWARGS = {**copy.deepcopy(FFHQ_RENDERING_KWARGS), "depth_resolution": 32,
                              "depth_resolution_importance": 32, "image_resolution": 128}
"""FFHQ's rendering options with 32 + 32 samples per ray (CPU budget) and 128 px images."""


def synthetic_generator_config() -> GeneratorConfig:
    """z 64, w 128, 64^2 x 32 tri-planes (channels <= 128, 64 at 64^2), NRR 32 -> 128 px (8XDC layout), ~1.6M
    parameters. The mapping network learns at the full rate (EG3D: 0.01): the fit is a regression, which does not
    need the slow mapping that stabilises GAN training, and the latent's defect coordinates must reach the styles."""
    return GeneratorConfig(
        z_dim=64, w_dim=128, img_resolution=128, channel_base=4096, channel_max=128,
        rendering_kwargs=copy.deepcopy(SYNTHETIC_RENDERING_KWARGS), neural_rendering_resolution=32,
        plane_resolution=64, plane_features=32, decoder_hidden=64, sr_input_resolution=32, sr_channels=(64, 32),
        mapping_lr_multiplier=1.0,
    )
