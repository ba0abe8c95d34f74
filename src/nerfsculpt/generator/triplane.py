"""EG3D's tri-plane generator, weight-compatible with NVIDIA's checkpoints (docs/method/eg3d.md §3.13).

Example (tiny random generator, CPU)::

    >>> import torch
    >>> from nerfsculpt.generator.config import tiny_config
    >>> from nerfsculpt.generator.triplane import TriPlaneGenerator
    >>> from nerfsculpt.camera import canonical_camera
    >>> G = TriPlaneGenerator(tiny_config()).eval()
    >>> c = canonical_camera()
    >>> out = G(torch.randn(1, G.z_dim), c, noise_mode="const")
    >>> sorted(out), tuple(out["image"].shape)
    (['image', 'image_depth', 'image_raw'], (1, 3, 64, 64))
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from nerfsculpt.generator.config import GeneratorConfig
from nerfsculpt.generator.layers import StyleGAN2Backbone
from nerfsculpt.generator.rendering import ImportanceRenderer, OSGDecoder, RaySampler
from nerfsculpt.generator.superresolution import SuperResolution


class TriPlaneGenerator(nn.Module):
    """z, c -> w -> tri-planes -> volume-rendered features -> super-resolved image."""

    eg3d_class_name = "TriPlaneGenerator"

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.z_dim, self.c_dim, self.w_dim = config.z_dim, config.c_dim, config.w_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.rendering_kwargs: dict[str, Any] = copy.deepcopy(config.rendering_kwargs)
        self.neural_rendering_resolution = config.neural_rendering_resolution
        self.plane_features = config.plane_features
        # Set by EG3D's training loop after construction; present in every released checkpoint.
        self.register_buffer("dataset_label_std", torch.ones([config.c_dim]))
        self.renderer = ImportanceRenderer()
        self.ray_sampler = RaySampler()
        self.backbone = StyleGAN2Backbone(
            config.z_dim, config.c_dim, config.w_dim, img_resolution=config.plane_resolution,
            img_channels=3 * config.plane_features, mapping_layers=config.mapping_layers,
            mapping_lr_multiplier=config.mapping_lr_multiplier, w_avg_beta=config.w_avg_beta,
            channel_base=config.channel_base, channel_max=config.channel_max, num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp, fused_modconv_default=config.fused_modconv_default,
        )
        self.superresolution = SuperResolution(
            config.sr_class_name, config.sr_spec, channels=config.plane_features,
            img_resolution=config.img_resolution, w_dim=config.sr_w_dim or config.w_dim,
            sr_num_fp16_res=config.sr_num_fp16_res, sr_antialias=config.rendering_kwargs["sr_antialias"],
            fused_modconv_default=config.sr_fused_modconv_default,
        )
        self.decoder = OSGDecoder(config.plane_features, hidden_dim=config.decoder_hidden,
                                  output_dim=config.plane_features,
                                  lr_multiplier=config.rendering_kwargs.get("decoder_lr_mul", 1))
        self._last_planes: Tensor | None = None

    @property
    def num_ws(self) -> int:
        return self.backbone.num_ws

    # ------------------------------------------------------------------ latent mapping
    def mapping(
        self,
        z: Tensor,  # [N, z_dim]
        c: Tensor,  # [N, 25] conditioning camera label
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:  # [N, num_ws, w_dim]
        if self.rendering_kwargs["c_gen_conditioning_zero"]:
            c = torch.zeros_like(c)
        # EG3D's fallback for a missing c_scale is 0, which silently drops the conditioning.
        c = c * self.rendering_kwargs.get("c_scale", 0)
        return self.backbone.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                     update_emas=update_emas)

    # ------------------------------------------------------------------ tri-planes
    def planes(self, ws: Tensor, **synthesis_kwargs) -> Tensor:  # [N, num_ws, w_dim] -> [N, 3, C, H, W]
        """Run the backbone once and view its output as the three feature planes (docs/method/eg3d.md §3.7)."""
        planes = self.backbone.synthesis(ws, **synthesis_kwargs)
        return planes.view(len(planes), 3, self.plane_features, planes.shape[-2], planes.shape[-1])

    def sample_planes(
        self,
        planes: Tensor,  # [N, 3, C, H, W]
        coordinates: Tensor,  # [N, M, 3] world coordinates in the box [-box_warp/2, box_warp/2]^3
        directions: Tensor | None = None,  # [N, M, 3], ignored by the decoder
    ) -> dict[str, Tensor]:  # {'sigma': [N, M, 1] raw density, 'rgb': [N, M, C]}
        return self.renderer.run_model(planes, self.decoder, coordinates, directions, self.rendering_kwargs)

    # ------------------------------------------------------------------ EG3D entry points
    def synthesis(
        self,
        ws: Tensor,  # [N, num_ws, w_dim]
        c: Tensor,  # [N, 25] rendering camera
        neural_rendering_resolution: int | None = None,
        update_emas: bool = False,
        cache_backbone: bool = False,
        use_cached_backbone: bool = False,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        **synthesis_kwargs,
    ) -> dict[str, Tensor]:
        """Render `{'image' [N,3,H,W], 'image_raw' [N,3,R,R], 'image_depth' [N,1,R,R]}`.

        As in EG3D, passing `neural_rendering_resolution` also stores it on the generator.
        `deterministic` / `generator` make the stochastic renderer reproducible (see rendering.py);
        with `generator`, random backbone noise is drawn from it too.
        """
        del update_emas  # only meaningful for the mapping network
        cam2world = c[:, :16].view(-1, 4, 4)
        intrinsics = c[:, 16:25].view(-1, 3, 3)
        if neural_rendering_resolution is None:
            neural_rendering_resolution = self.neural_rendering_resolution
        else:
            self.neural_rendering_resolution = neural_rendering_resolution
        ray_origins, ray_directions = self.ray_sampler(cam2world, intrinsics, neural_rendering_resolution)

        n, m, _ = ray_origins.shape
        if use_cached_backbone and self._last_planes is not None:
            planes = self._last_planes
        else:
            planes = self.planes(ws, generator=generator, **synthesis_kwargs)
        if cache_backbone:
            self._last_planes = planes

        features, depth, _ = self.renderer(planes, self.decoder, ray_origins, ray_directions, self.rendering_kwargs,
                                           deterministic=deterministic, generator=generator)
        r = neural_rendering_resolution
        feature_image = features.permute(0, 2, 1).reshape(n, features.shape[-1], r, r).contiguous()  # (N, C, R, R)
        depth_image = depth.permute(0, 2, 1).reshape(n, 1, r, r)
        rgb_image = feature_image[:, :3]
        sr_kwargs = {k: v for k, v in synthesis_kwargs.items() if k != "noise_mode"}
        image, raw_quirk = self.superresolution.forward_with_raw(
            rgb_image, feature_image, ws, noise_mode=self.rendering_kwargs["superresolution_noise_mode"], **sr_kwargs
        )
        return {
            "image": image,
            "image_raw": raw_quirk if raw_quirk is not None else rgb_image,
            "image_depth": depth_image,
        }

    def sample(
        self,
        coordinates: Tensor,  # [N, M, 3]
        directions: Tensor | None,  # [N, M, 3]
        z: Tensor,  # [N, z_dim]
        c: Tensor,  # [N, 25]
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs,
    ) -> dict[str, Tensor]:
        """Raw sigma and colour features at arbitrary points (no ray marching)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.sample_mixed(coordinates, directions, ws, **synthesis_kwargs)

    def sample_mixed(
        self,
        coordinates: Tensor,  # [N, M, 3]
        directions: Tensor | None,  # [N, M, 3]
        ws: Tensor,  # [N, num_ws, w_dim]
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        **synthesis_kwargs,
    ) -> dict[str, Tensor]:
        """Like :meth:`sample` but from ws (truncation arguments are ignored, as in EG3D)."""
        del truncation_psi, truncation_cutoff, update_emas
        return self.sample_planes(self.planes(ws, **synthesis_kwargs), coordinates, directions)

    def forward(
        self,
        z: Tensor,  # [N, z_dim]
        c: Tensor,  # [N, 25] used both as conditioning and as rendering camera
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        neural_rendering_resolution: int | None = None,
        update_emas: bool = False,
        cache_backbone: bool = False,
        use_cached_backbone: bool = False,
        **synthesis_kwargs,
    ) -> dict[str, Tensor]:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, c, neural_rendering_resolution=neural_rendering_resolution,
                              update_emas=update_emas, cache_backbone=cache_backbone,
                              use_cached_backbone=use_cached_backbone, **synthesis_kwargs)
