"""Typed configuration of the EG3D generator and discriminator.

The field names follow EG3D's constructor keyword arguments (``G.init_kwargs`` in a snapshot
pickle) so that a configuration read from an official checkpoint maps 1:1 onto a
:class:`GeneratorConfig`. A few sizes that EG3D hard-codes (tri-plane resolution, features per
plane, decoder width, super-resolution widths) are exposed as fields with EG3D's values as
defaults, so that tiny configurations can be built for tests and for the built-in generator.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# rendering_kwargs of `train.py --cfg=ffhq` (docs/method/eg3d.md §1.3). Real checkpoints carry their own copy,
# which always wins: these are only the defaults of a freshly built FFHQ-512 generator.
FFHQ_RENDERING_KWARGS: dict[str, Any] = {
    "depth_resolution": 48,
    "depth_resolution_importance": 48,
    "ray_start": 2.25,
    "ray_end": 3.3,
    "box_warp": 1,
    "avg_camera_radius": 2.7,
    "avg_camera_pivot": [0, 0, 0.2],
    "image_resolution": 512,
    "disparity_space_sampling": False,
    "clamp_mode": "softplus",
    "superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC",
    "c_gen_conditioning_zero": False,
    "gpc_reg_prob": 0.5,
    "c_scale": 1.0,
    "superresolution_noise_mode": "none",
    "density_reg": 0.25,
    "density_reg_p_dist": 0.004,
    "reg_type": "l1",
    "decoder_lr_mul": 1.0,
    "sr_antialias": True,
}

# Keys the forward pass reads; a checkpoint missing one of them is rejected (docs/method/eg3d.md §1.3).
REQUIRED_RENDERING_KEYS = (
    "depth_resolution",
    "depth_resolution_importance",
    "ray_start",
    "ray_end",
    "box_warp",
    "disparity_space_sampling",
    "clamp_mode",
    "superresolution_module",
    "c_gen_conditioning_zero",
    "superresolution_noise_mode",
    "sr_antialias",
)


@dataclass(frozen=True)
class SuperResolutionSpec:
    """Structure of one of EG3D's super-resolution classes (training/superresolution.py)."""

    input_resolution: int
    """Side of the feature image the first block expects; other sizes are resized to it."""
    channels: tuple[int, int]
    """Output channels of block0 and block1."""
    upsample: tuple[bool, bool]
    """Whether block0 / block1 upsample by 2 (False = EG3D's `SynthesisBlockNoUp`)."""
    resize_when_smaller_only: bool
    """EG3D's 4X resizes only inputs smaller than `input_resolution`; the others any mismatch."""
    has_resample_filter: bool
    """Whether the module registers a root `resample_filter` buffer (all but 8XDC do)."""

    @property
    def factor(self) -> int:
        return 2 ** sum(self.upsample)


SUPERRESOLUTION_SPECS: dict[str, SuperResolutionSpec] = {
    "SuperresolutionHybrid8XDC": SuperResolutionSpec(128, (256, 128), (True, True), False, False),
    "SuperresolutionHybrid8X": SuperResolutionSpec(128, (128, 64), (True, True), False, True),
    "SuperresolutionHybrid4X": SuperResolutionSpec(128, (128, 64), (False, True), True, True),
    "SuperresolutionHybrid2X": SuperResolutionSpec(64, (128, 64), (False, True), False, True),
}


def superresolution_class_name(module_path: str) -> str:
    """`'training.superresolution.SuperresolutionHybrid8XDC'` -> `'SuperresolutionHybrid8XDC'`."""
    name = module_path.rsplit(".", 1)[-1]
    if name not in SUPERRESOLUTION_SPECS:
        known = ", ".join(sorted(SUPERRESOLUTION_SPECS))
        raise ValueError(f"unsupported superresolution_module {module_path!r}; supported: {known}")
    return name


# GeneratorConfig fields for sizes EG3D hard-codes rather than takes as constructor arguments.
SIZE_FIELDS = ("plane_resolution", "plane_features", "decoder_hidden", "sr_input_resolution", "sr_channels",
               "sr_w_dim")


@dataclass
class GeneratorConfig:
    """Constructor arguments of the tri-plane generator (EG3D `TriPlaneGenerator`)."""

    z_dim: int = 512
    """Latent z dimensionality."""
    w_dim: int = 512
    """Intermediate latent w dimensionality."""
    c_dim: int = 25
    """Conditioning label size: 16 cam2world + 9 intrinsics."""
    img_resolution: int = 512
    """Side of the super-resolved output image."""
    img_channels: int = 3
    """Colour channels of the output image."""
    mapping_layers: int = 2
    """Number of FC layers of the mapping network (`mapping_kwargs.num_layers`)."""
    mapping_lr_multiplier: float = 0.01
    """Learning-rate multiplier of the mapping FC layers (StyleGAN2 equalised lr)."""
    w_avg_beta: float = 0.998
    """Decay of the tracked average w used by truncation."""
    channel_base: int = 32768
    """Backbone channels at resolution r are min(channel_base // r, channel_max)."""
    channel_max: int = 512
    """Upper bound of backbone channels."""
    num_fp16_res: int = 0
    """Backbone blocks run in fp16 on CUDA (EG3D FFHQ: 0, i.e. always fp32)."""
    conv_clamp: float | None = None
    """Clamp of backbone conv outputs (None for EG3D FFHQ)."""
    fused_modconv_default: bool | str = "inference_only"
    """Fused grouped modulated conv; 'inference_only' = fused in eval mode, non-fused in training."""
    sr_num_fp16_res: int = 4
    """> 0 runs super-resolution in fp16 on CUDA with conv clamp 256 (the clamp also applies in fp32)."""
    sr_fused_modconv_default: bool | str = "inference_only"
    """`sr_kwargs.fused_modconv_default` of EG3D."""
    rendering_kwargs: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(FFHQ_RENDERING_KWARGS))
    """EG3D's rendering options (ray range, samples per ray, box size, SR module, ...)."""
    neural_rendering_resolution: int = 128
    """Side of the volume-rendered feature image (128 for the *-128 checkpoints)."""
    plane_resolution: int = 256
    """Side of each tri-plane (EG3D: 256)."""
    plane_features: int = 32
    """Features per plane; the backbone outputs 3 x this many channels (EG3D: 32)."""
    decoder_hidden: int = 64
    """Hidden width of the OSG decoder MLP (EG3D: 64)."""
    sr_input_resolution: int | None = None
    """Override of the SR module's input resolution (None = EG3D's value for that module)."""
    sr_channels: tuple[int, int] | None = None
    """Override of the SR blocks' widths (None = EG3D's values for that module)."""
    sr_w_dim: int | None = None
    """w width the SR blocks expect. EG3D hard-codes 512; None means `w_dim`."""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived sizes
    @property
    def backbone_resolutions(self) -> list[int]:
        """Resolutions of the backbone's synthesis blocks, 4 .. plane_resolution."""
        return [2**i for i in range(2, int(math.log2(self.plane_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        """Number of w vectors the backbone consumes (14 for a 256 backbone)."""
        return 2 * len(self.backbone_resolutions)

    def backbone_channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def sr_class_name(self) -> str:
        return superresolution_class_name(self.rendering_kwargs["superresolution_module"])

    @property
    def sr_spec(self) -> SuperResolutionSpec:
        base = SUPERRESOLUTION_SPECS[self.sr_class_name]
        return dataclasses.replace(
            base,
            input_resolution=self.sr_input_resolution or base.input_resolution,
            channels=tuple(self.sr_channels) if self.sr_channels else base.channels,
        )

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming every inconsistent field."""
        errors = []
        r = self.plane_resolution
        if r < 4 or r & (r - 1):
            errors.append(f"plane_resolution must be a power of two >= 4, got {r}")
        missing = [k for k in REQUIRED_RENDERING_KEYS if k not in self.rendering_kwargs]
        if missing:
            errors.append(f"rendering_kwargs lacks {missing}")
        else:
            try:
                spec = self.sr_spec
            except ValueError as e:
                errors.append(str(e))
            else:
                if spec.input_resolution * spec.factor != self.img_resolution:
                    errors.append(
                        f"{self.sr_class_name} maps {spec.input_resolution}px to "
                        f"{spec.input_resolution * spec.factor}px but img_resolution is {self.img_resolution}"
                    )
            if self.rendering_kwargs["clamp_mode"] != "softplus":
                errors.append("rendering_kwargs.clamp_mode must be 'softplus' (the only mode EG3D's ray marcher has)")
        if self.c_dim not in (0, 25) and self.c_dim < 25:
            errors.append(f"c_dim must be 25 (camera label) or 0, got {self.c_dim}")
        if errors:
            raise ValueError("invalid generator configuration:\n  - " + "\n  - ".join(errors))

    # ------------------------------------------------------------------ EG3D init_kwargs interop
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["sr_channels"] is not None:
            d["sr_channels"] = list(d["sr_channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown generator config keys {unknown}")
        d = dict(d)
        if d.get("sr_channels") is not None:
            d["sr_channels"] = tuple(d["sr_channels"])
        return cls(**d)

    @classmethod
    def from_eg3d_init_kwargs(
        cls, init_kwargs: dict[str, Any], neural_rendering_resolution: int | None = None, **sizes: Any
    ) -> GeneratorConfig:
        """Build from the `init_kwargs` stored in an EG3D snapshot; unknown keys are reported.

        `sizes` sets the fields EG3D hard-codes (`SIZE_FIELDS`: plane resolution and features,
        decoder and SR widths) for checkpoints whose weights have other sizes than EG3D's.
        """
        unknown_sizes = sorted(set(sizes) - set(SIZE_FIELDS))
        if unknown_sizes:
            raise ValueError(f"{unknown_sizes} are not size fields; expected some of {SIZE_FIELDS}")
        kw = dict(init_kwargs)
        problems = []
        mapping = dict(kw.pop("mapping_kwargs", {}) or {})
        sr_kwargs = dict(kw.pop("sr_kwargs", {}) or {})
        out: dict[str, Any] = {}
        for key in ("z_dim", "w_dim", "c_dim", "img_resolution", "img_channels", "channel_base",
                    "channel_max", "num_fp16_res", "conv_clamp", "fused_modconv_default", "sr_num_fp16_res"):
            if key in kw:
                out[key] = kw.pop(key)
        if "rendering_kwargs" in kw:
            out["rendering_kwargs"] = dict(kw.pop("rendering_kwargs"))
        else:
            problems.append("init_kwargs has no rendering_kwargs")
        out["mapping_layers"] = mapping.pop("num_layers", 8)
        out["mapping_lr_multiplier"] = mapping.pop("lr_multiplier", 0.01)
        out["w_avg_beta"] = mapping.pop("w_avg_beta", 0.998)
        for key, expected in (("activation", "lrelu"), ("embed_features", None), ("layer_features", None)):
            if key in mapping and mapping.pop(key) not in (expected, out.get("w_dim", 512)):
                problems.append(f"mapping_kwargs.{key} differs from EG3D's default; not supported")
        if mapping:
            problems.append(f"unsupported mapping_kwargs {sorted(mapping)}")
        out["sr_fused_modconv_default"] = sr_kwargs.pop("fused_modconv_default", "inference_only")
        sr_kwargs.pop("channel_base", None)  # ignored by EG3D's SR classes (docs/method/eg3d.md §1.2)
        sr_kwargs.pop("channel_max", None)
        if sr_kwargs:
            problems.append(f"unsupported sr_kwargs {sorted(sr_kwargs)}")
        # Backbone synthesis kwargs EG3D passes through unchanged; only its defaults are supported.
        for key, expected in (("architecture", "skip"), ("resample_filter", [1, 3, 3, 1]),
                              ("use_noise", True), ("kernel_size", 3), ("fp16_channels_last", False)):
            if key in kw and kw.pop(key) != expected:
                problems.append(f"init_kwargs.{key} must be {expected!r}")
        if kw:
            problems.append(f"unsupported init_kwargs {sorted(kw)}")
        if problems:
            raise ValueError("checkpoint configuration not supported:\n  - " + "\n  - ".join(problems))
        if neural_rendering_resolution is not None:
            out["neural_rendering_resolution"] = int(neural_rendering_resolution)
        return cls(**out, **sizes)

    def to_eg3d_init_kwargs(self) -> dict[str, Any]:
        """The `init_kwargs` EG3D's TriPlaneGenerator would need (EG3D-sized fields only)."""
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "mapping_kwargs": {"num_layers": self.mapping_layers},
            "channel_base": self.channel_base,
            "channel_max": self.channel_max,
            "fused_modconv_default": self.fused_modconv_default,
            "rendering_kwargs": copy.deepcopy(self.rendering_kwargs),
            "num_fp16_res": self.num_fp16_res,
            "sr_num_fp16_res": self.sr_num_fp16_res,
            "sr_kwargs": {"channel_base": self.channel_base, "channel_max": self.channel_max,
                          "fused_modconv_default": self.sr_fused_modconv_default},
            "conv_clamp": self.conv_clamp,
            "c_dim": self.c_dim,
            "img_resolution": self.img_resolution,
            "img_channels": self.img_channels,
        }


@dataclass
class DiscriminatorConfig:
    """Constructor arguments of EG3D's `DualDiscriminator`."""

    c_dim: int = 25
    """Conditioning label size."""
    img_resolution: int = 512
    """Side of the (super-resolved) input image; image_raw is resized to it."""
    img_channels: int = 3
    """Channels of each of the two images (doubled internally)."""
    channel_base: int = 32768
    """Channels at resolution r are min(channel_base // r, channel_max)."""
    channel_max: int = 512
    """Upper bound of channels."""
    num_fp16_res: int = 4
    """Highest-resolution blocks that run in fp16 on CUDA."""
    conv_clamp: float | None = 256
    """Clamp of conv outputs."""
    cmap_dim: int | None = None
    """Width of the mapped label (None = channels at 4x4)."""
    disc_c_noise: float = 0.0
    """Std of the noise added to the label (relative to its batch std)."""
    mapping_layers: int = 8
    """FC layers of the label mapping (EG3D's D uses the default 8)."""
    mbstd_group_size: int = 4
    """Minibatch-std group size."""
    mbstd_num_channels: int = 1
    """Minibatch-std feature channels."""

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(int(math.log2(self.img_resolution)), 2, -1)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiscriminatorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown discriminator config keys {unknown}")
        return cls(**d)

    @classmethod
    def from_eg3d_init_kwargs(cls, init_kwargs: dict[str, Any]) -> DiscriminatorConfig:
        kw = dict(init_kwargs)
        problems = []
        out: dict[str, Any] = {}
        for key in ("c_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
                    "num_fp16_res", "conv_clamp", "cmap_dim", "disc_c_noise"):
            if key in kw:
                out[key] = kw.pop(key)
        if kw.pop("architecture", "resnet") != "resnet":
            problems.append("only architecture='resnet' is supported")
        block_kwargs = dict(kw.pop("block_kwargs", {}) or {})
        block_kwargs.pop("freeze_layers", None)  # training-only
        if block_kwargs:
            problems.append(f"unsupported block_kwargs {sorted(block_kwargs)}")
        mapping = dict(kw.pop("mapping_kwargs", {}) or {})
        out["mapping_layers"] = mapping.pop("num_layers", 8)
        if mapping:
            problems.append(f"unsupported mapping_kwargs {sorted(mapping)}")
        epilogue = dict(kw.pop("epilogue_kwargs", {}) or {})
        out["mbstd_group_size"] = epilogue.pop("mbstd_group_size", 4)
        out["mbstd_num_channels"] = epilogue.pop("mbstd_num_channels", 1)
        if epilogue:
            problems.append(f"unsupported epilogue_kwargs {sorted(epilogue)}")
        kw.pop("sr_upsample_factor", None)
        if kw:
            problems.append(f"unsupported init_kwargs {sorted(kw)}")
        if problems:
            raise ValueError("discriminator configuration not supported:\n  - " + "\n  - ".join(problems))
        return cls(**out)


def ffhq512_config() -> GeneratorConfig:
    """The configuration of NVIDIA's `ffhq512-128.pkl` (docs/method/eg3d.md §1.2-1.3)."""
    return GeneratorConfig()


def tiny_config(**overrides: Any) -> GeneratorConfig:
    """A few-thousand-parameter EG3D for tests: 32^2 planes, 16 px rendering, 64 px output."""
    rendering = copy.deepcopy(FFHQ_RENDERING_KWARGS)
    rendering.update(depth_resolution=12, depth_resolution_importance=12, image_resolution=64)
    cfg = dict(
        z_dim=32, w_dim=32, img_resolution=64, channel_base=1024, channel_max=32,
        rendering_kwargs=rendering, neural_rendering_resolution=16, plane_resolution=32,
        plane_features=8, decoder_hidden=16, sr_input_resolution=16, sr_channels=(16, 8),
    )
    cfg.update(overrides)
    return GeneratorConfig(**cfg)


def tiny_discriminator_config(**overrides: Any) -> DiscriminatorConfig:
    """A small DualDiscriminator matching :func:`tiny_config`'s 64 px output."""
    cfg = dict(img_resolution=64, channel_base=1024, channel_max=32, mapping_layers=2)
    cfg.update(overrides)
    return DiscriminatorConfig(**cfg)
