"""Procedural heads: an analytic sigma/colour field of head-like shapes in EG3D's frame.

A head is a smooth union of signed-distance primitives (cranium and face ellipsoids, cheeks,
brow ridge, eye sockets and eyeballs, nose ridge, tip and wings, lips, chin, ears, neck), shaped by
an identity vector, coloured by a colour vector, and damaged by five **defect severities** of the
kinds EG3D produces (:data:`DEFECTS`). Everything is torch ops on the query points: batched,
deterministic and differentiable in the points.

Frame (``docs/geometry.md``): the face looks toward +z, +y is up, +x is image right; the whole
head lies inside [-0.5, 0.5]^3 with a margin and the face inside the reward slab
(x in [-0.249, 0.249], y in [-0.249, 0.300], z in [-0.100, 0.402]); the nose tip is at z < 0.33.

Sigma is on EG3D's raw scale: ``sigma = SIGMA_SCALE * tanh(-sdf / SIGMA_WIDTH)``, i.e. about
-200 in empty space, +200 inside, and sigma = 10 lies ``0.03 * atanh(0.05) = 1.5e-3`` inside the
sdf = 0 surface (0.4 voxel at 256^3), so level-10 marching cubes and the slab's 0-100
normalisation apply unchanged.

Defects (severity 0 leaves sigma bitwise unchanged and sigma is continuous as a severity goes to 0;
magnitudes grow with severity; ``docs/synthetic.md`` has the exact formulas):

- ``bumps``: horizontal creases across both cheeks, a groove ``0.04 * s`` deep at the centre of a
  Gaussian patch and ridges above and below it (wavelength 0.085; mirror-symmetric);
- ``nose``: a saddle nose: the ridge's kink, 45% of the way from the tip to the root, is pushed in
  by ``0.07 * s`` and the face around it sinks by up to ``0.035 * s`` (a broad dish), so the profile
  turns concave;
- ``holes``: a deep crater punched into the forehead, radius ``0.07 * sqrt(s)`` (area ∝ s);
- ``floaters``: three density blobs in front of the face, clear of it by >= 0.05, volume ∝ s;
- ``asymmetry``: the subject's left half of the face (x > 0.02) inflated by ``0.04 * s``.

Latent map (:func:`head_params_from_z`), ``z`` [N, >= Z_DIM_MIN], dims beyond ``Z_DIM_MIN`` ignored::

    identity = tanh(0.6 z[:, 0:14])
    colour   = tanh(0.6 z[:, 14:19])
    defects  = smoothstep((z[:, 19:24] - 0.3) / 1.7)     # smoothstep(u) = 3u^2 - 2u^3 on [0, 1]

z = 0 (the sample mean) is a clean average head; a severity is non-zero only for z_k > 0.3
(38% per defect) and reaches 1 at z_k = 2.0. With z ~ N(0, I), 78% of the heads have at least one
defect of severity > 0.1 (EG3D's samples are rarely flawless either); truncation toward the mean
latent removes them.

Example::

    params = sample_head_params(4, torch.Generator().manual_seed(0))
    xyz = grid_coordinates(128)                                   # [128^3, 3]
    sigma = head_sigma(xyz.expand(4, -1, -1), params)             # [4, 128^3]
    cube = sigma.reshape(4, 128, 128, 128)                        # [x, y, z]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

DEFECTS: tuple[str, ...] = ("bumps", "nose", "holes", "floaters", "asymmetry")
"""Defect kinds, in the order of ``HeadParams.defects`` columns and of the oracle's scores."""

IDENTITY_NAMES: tuple[str, ...] = (
    "head_width", "head_height", "head_depth", "face_length", "nose_length", "nose_width", "nose_bridge",
    "brow", "chin", "jaw_width", "cheeks", "mouth_width", "lips", "ears",
)
"""Columns of ``HeadParams.identity``, each in [-1, 1] (0 = average head)."""

COLOUR_NAMES: tuple[str, ...] = ("skin_tone", "skin_warmth", "lips", "brows_eyes", "hair")
"""Columns of ``HeadParams.colour``, each in [-1, 1]: skin light -> dark, pink -> olive, lip redness,
darkness of brows and eyes, hair light -> dark."""

N_IDENTITY = len(IDENTITY_NAMES)
N_COLOUR = len(COLOUR_NAMES)
Z_DIM_MIN: int = N_IDENTITY + N_COLOUR + len(DEFECTS)  # 24
"""Smallest latent size :func:`head_params_from_z` accepts; further dims are ignored."""

SIGMA_SCALE = 200.0
"""Magnitude of sigma far from the surface: -200 in empty space, +200 deep inside."""
SIGMA_WIDTH = 0.03
"""World distance over which sigma goes from 0 to 76% of ``SIGMA_SCALE`` (the tanh width)."""

Z_GAIN = 0.6
"""identity and colour = tanh(Z_GAIN * z)."""
DEFECT_ONSET = 0.3
"""A defect's severity is 0 for z_k <= DEFECT_ONSET."""
DEFECT_RAMP = 1.7
"""Severity reaches 1 at z_k = DEFECT_ONSET + DEFECT_RAMP."""


@dataclass
class HeadParams:
    """Parameters of N procedural heads (see the module docstring for what each column does)."""

    identity: Tensor  # [N, N_IDENTITY] in [-1, 1]
    """Shape of the head: proportions, nose, brow, chin, jaw, cheeks, mouth, ears (``IDENTITY_NAMES``)."""
    colour: Tensor  # [N, N_COLOUR] in [-1, 1]
    """Albedo controls (``COLOUR_NAMES``)."""
    defects: Tensor  # [N, len(DEFECTS)] in [0, 1]
    """Severity of each defect kind (``DEFECTS``); 0 = clean."""

    def __post_init__(self) -> None:
        n = len(self.identity)
        if self.identity.ndim != 2 or self.identity.shape[1] != N_IDENTITY:
            raise ValueError(f"identity must be [N, {N_IDENTITY}], got {tuple(self.identity.shape)}")
        if self.colour.ndim != 2 or tuple(self.colour.shape) != (n, N_COLOUR):
            raise ValueError(f"colour must be [{n}, {N_COLOUR}], got {tuple(self.colour.shape)}")
        if self.defects.ndim != 2 or tuple(self.defects.shape) != (n, len(DEFECTS)):
            raise ValueError(f"defects must be [{n}, {len(DEFECTS)}] ({', '.join(DEFECTS)}), "
                             f"got {tuple(self.defects.shape)}")

    def __len__(self) -> int:
        return len(self.identity)

    def index(self, i: int | slice | Tensor | list[int]) -> HeadParams:
        """Rows ``i`` (an int keeps the batch dimension: ``params.index(3)`` has length 1)."""
        rows = [i] if isinstance(i, int) else i
        return HeadParams(self.identity[rows], self.colour[rows], self.defects[rows])

    def with_defects(self, defects: Tensor) -> HeadParams:
        """Same identity and colour, other severities ``defects`` [N, 5] or [5] (broadcast)."""
        defects = torch.as_tensor(defects, dtype=self.defects.dtype, device=self.defects.device)
        return HeadParams(self.identity, self.colour, defects.expand(len(self), len(DEFECTS)).clone())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> HeadParams:
        """Copy on ``device`` (and ``dtype`` if given)."""
        return HeadParams(*(t.to(device=device, dtype=dtype) for t in (self.identity, self.colour, self.defects)))


def _smoothstep(u: Tensor) -> Tensor:
    u = u.clamp(0, 1)
    return u * u * (3 - 2 * u)


def head_params_from_z(z: Tensor) -> HeadParams:
    """Deterministic, smooth map from a latent ``z`` [N, z_dim >= Z_DIM_MIN] to head parameters.

    ``identity = tanh(0.6 z[:, :14])``, ``colour = tanh(0.6 z[:, 14:19])``,
    ``defects = smoothstep((z[:, 19:24] - 0.3) / 1.7)`` (C1, monotone, exactly 0 for z_k <= 0.3).

    >>> head_params_from_z(torch.zeros(1, 64)).defects
    tensor([[0., 0., 0., 0., 0.]])
    """
    if z.ndim != 2 or z.shape[1] < Z_DIM_MIN:
        raise ValueError(f"expected z [N, z_dim >= {Z_DIM_MIN}], got {tuple(z.shape)}")
    identity = torch.tanh(Z_GAIN * z[:, :N_IDENTITY])
    colour = torch.tanh(Z_GAIN * z[:, N_IDENTITY : N_IDENTITY + N_COLOUR])
    defects = _smoothstep((z[:, N_IDENTITY + N_COLOUR : Z_DIM_MIN] - DEFECT_ONSET) / DEFECT_RAMP)
    return HeadParams(identity, colour, defects)


def sample_head_params(n: int, generator: torch.Generator | None = None, defect_free: bool = False) -> HeadParams:
    """``head_params_from_z(z)`` for ``z ~ N(0, I)`` [n, Z_DIM_MIN] drawn from ``generator``.

    ``defect_free=True`` zeroes the severities (same identities and colours as without it).
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be a positive int, got {n!r}")
    z = torch.randn(n, Z_DIM_MIN, generator=generator)
    params = head_params_from_z(z)
    return params.with_defects(torch.zeros(len(DEFECTS))) if defect_free else params


# ------------------------------------------------------------------------------------------------
# Signed-distance primitives; every argument broadcasts to [N, M]


_EPS = 1e-12  # keeps sqrt differentiable at 0
Scalar = Tensor | float  # a number or an [N, 1] / [K] per-head column
Point = tuple[Scalar, Scalar, Scalar]


def _length(*components: Tensor) -> Tensor:
    return torch.sqrt(sum(c * c for c in components) + _EPS)


def _ellipsoid(x: Tensor, y: Tensor, z: Tensor, rx: Scalar, ry: Scalar, rz: Scalar) -> Tensor:
    """Approximate sdf of an ellipsoid centred at the origin (Quilez's bound, exact on the surface)."""
    k0 = _length(x / rx, y / ry, z / rz)
    k1 = _length(x / (rx * rx), y / (ry * ry), z / (rz * rz))
    return k0 * (k0 - 1) / k1


def _capsule(x: Tensor, y: Tensor, z: Tensor, a: Point, b: Point, radius: Scalar) -> Tensor:
    """Sdf of the capsule of ``radius`` around the segment a -> b (each a 3-tuple)."""
    px, py, pz = x - a[0], y - a[1], z - a[2]
    bx, by, bz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    h = ((px * bx + py * by + pz * bz) / (bx * bx + by * by + bz * bz)).clamp(0, 1)
    return _length(px - bx * h, py - by * h, pz - bz * h) - radius


def _smooth_union(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum of two sdfs with blend radius ``k`` (Quilez)."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0, 1)
    return torch.lerp(b, a, h) - k * h * (1 - h)


def _smooth_subtract(a: Tensor, b: Tensor, k: float) -> Tensor:
    """``a`` minus the solid ``b``, blended over ``k``."""
    return -_smooth_union(-a, b, k)


def _gauss(d2: Tensor, s: float) -> Tensor:
    return torch.exp(-d2 / (2 * s * s))


def _sigmoid(t: Tensor) -> Tensor:
    # via tanh: torch.sigmoid (and fractional pow) round differently in its vectorised and scalar CPU
    # paths, so results would depend on how the points are chunked; tanh and exp do not.
    return 0.5 + 0.5 * torch.tanh(0.5 * t)


# ------------------------------------------------------------------------------------------------
# The head


FLOATER_CENTRES: tuple[tuple[float, float, float], ...] = ((0.075, 0.11, 0.34), (-0.085, 0.02, 0.33),
                                                            (0.06, -0.13, 0.36))
"""Where the floater blobs sit (world), in front of forehead, cheek and mouth, clear of the nose."""
FLOATER_RADII: tuple[float, ...] = (0.045, 0.04, 0.035)
"""Blob radii at severity 1 (scaled by cbrt(severity): volume proportional to severity)."""
BUMP_CENTRE: tuple[float, float] = (0.085, -0.08)
"""(|x|, y) of the centre of the creased cheek patches (y scaled with the face length)."""
BUMP_PATCH: tuple[float, float] = (0.035, 0.03)
"""Standard deviations (across, vertically) of the Gaussian patch that carries the creases."""
BUMP_WAVELENGTH = 0.085
"""Vertical wavelength of the cheek creases (5.4 texels of the synthetic generator's 64^2 tri-planes)."""
HOLE_CENTRE: tuple[float, float] = (0.0, 0.14)
"""(x, y) of the axis of the forehead crater."""
HOLE_RADIUS = 0.07
"""Radius of the forehead crater at ``holes`` severity 1 (times sqrt(severity): area proportional to it)."""
BUMP_AMPLITUDE = 0.04
"""Depth of the cheek creases at ``bumps`` severity 1."""
ASYMMETRY = 0.04
"""How far the face's x > 0 half is inflated at ``asymmetry`` severity 1."""
NOSE_KINK = 0.45
"""Where the nose ridge sags with the ``nose`` defect: this fraction of the way from tip to root."""
NOSE_SAG = 0.07
"""How far (world z) the ridge's kink is pushed in at ``nose`` severity 1."""
NOSE_DISH = 0.035
"""How far the bridge of the nose around the kink sinks (a broad dish) at ``nose`` severity 1."""
NOSE_DISH_SIZE: tuple[float, float] = (0.035, 0.03)
"""Standard deviations (x, y) of the Gaussian dish centred on the kink."""
NOSE_RADIUS = 0.022
"""Radius of the nose ridge capsules (times 1 + 0.2 nose_width)."""
EYE_CENTRE: tuple[float, float, float] = (0.05, 0.03, 0.183)
"""(|x|, y, z) of the eyeballs' centres; their paint (``head_colour``) is centred on the same (|x|, y)."""
EYEBALL_RADIUS = 0.021
LIPS_Y = -0.11
"""Height of the painted lips' centre, times the face's vertical scale (between the two lip shapes)."""


def _columns(params: HeadParams, like: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Identity columns and severities as [N, 1] tensors on ``like``'s device and dtype."""
    identity = params.identity.to(device=like.device, dtype=like.dtype)
    defects = params.defects.to(device=like.device, dtype=like.dtype)
    return ([identity[:, i : i + 1] for i in range(N_IDENTITY)],
            [defects[:, k : k + 1] for k in range(len(DEFECTS))])


def _check_points(points: Tensor, params: HeadParams) -> None:
    if not isinstance(params, HeadParams):
        raise TypeError(f"params must be HeadParams, got {type(params).__name__}")
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[0] != len(params):
        raise ValueError(f"expected points [N, M, 3] with N = len(params) = {len(params)}, got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise TypeError(f"points must be floating point, got {points.dtype}")


def _face_scale(face_length: Tensor) -> Tensor:
    """Vertical scale of the face, 1 +- 6 %, from the ``face_length`` identity column: the chin, nose tip,
    lips, cheek creases and their landmarks move with it."""
    return 1 + 0.06 * face_length


def _skull(x: Tensor, y: Tensor, z: Tensor, u: list[Tensor]) -> Tensor:
    """Cranium, lower face and neck: the head without features."""
    head_w, head_h, head_d, face_len, jaw = u[0], u[1], u[2], u[3], u[9]
    fy = _face_scale(face_len)
    cranium = _ellipsoid(x, y - 0.07, z, 0.165 * (1 + 0.07 * head_w), 0.2 * (1 + 0.05 * head_h),
                         0.205 * (1 + 0.05 * head_d))
    face = _ellipsoid(x, y + 0.045 * fy, z - 0.07, 0.145 * (1 + 0.06 * jaw), 0.17 * fy, 0.16)
    neck = _capsule(x, y, z, (0.0, -0.36, -0.03), (0.0, -0.12, -0.03), 0.085)
    return _smooth_union(_smooth_union(cranium, face, 0.05), neck, 0.04)


def _ears(sdf: Tensor, x: Tensor, y: Tensor, z: Tensor, u: list[Tensor]) -> Tensor:
    ear = _ellipsoid(x.abs() - 0.163 * (1 + 0.07 * u[0]), y - 0.01, z + 0.005, 0.016, 0.048 * (1 + 0.2 * u[13]), 0.03)
    return _smooth_union(sdf, ear, 0.01)


def _nose_tip(nose_len: Tensor, fy: Tensor) -> Point:
    """End point (x, y, z) of the nose ridge segment."""
    return 0.0, -0.04 * fy, 0.285 + 0.012 * nose_len


def _face_features(sdf: Tensor, x: Tensor, y: Tensor, z: Tensor, u: list[Tensor], saddle: Tensor) -> Tensor:
    """Cheeks, chin, brow ridge, eyes, nose and lips, smooth-unioned onto ``sdf``.

    The nose ridge is two capsules root -> kink -> tip; the kink, ``NOSE_KINK`` of the way up
    from the tip, is pushed in by ``NOSE_SAG * saddle`` and the face under it sinks by up to
    ``NOSE_DISH * saddle`` (``saddle`` = the ``nose`` severity; 0 = a straight ridge).
    """
    (_, _, _, face_len, nose_len, nose_w, bridge, brow, chin, _, cheeks, mouth_w, lips, _) = u
    ax = x.abs()  # paired features are built on |x|: exactly mirror-symmetric
    fy = _face_scale(face_len)
    cheek = _ellipsoid(ax - 0.065, y + 0.045 * fy, z - 0.155, 0.05, 0.042, 0.045 * (1 + 0.15 * cheeks))
    sdf = _smooth_union(sdf, cheek, 0.04)
    chin_blob = _ellipsoid(x, y + 0.185 * fy, z - 0.165 - 0.01 * chin, 0.042, 0.035, 0.04)
    sdf = _smooth_union(sdf, chin_blob, 0.03)

    brow_z = 0.205 + 0.008 * brow
    brow_ridge = _capsule(ax, y, z, (0.0, 0.072, brow_z), (0.085, 0.066, brow_z - 0.035), 0.013)
    sdf = _smooth_union(sdf, brow_ridge, 0.03)
    eye_x, eye_y, eye_z = EYE_CENTRE
    socket = _ellipsoid(ax - eye_x, y - eye_y, z - 0.228, 0.032, 0.02, 0.03)
    sdf = _smooth_subtract(sdf, socket, 0.01)
    eyeball = _length(ax - eye_x, y - eye_y, z - eye_z) - EYEBALL_RADIUS
    sdf = _smooth_union(sdf, eyeball, 0.004)

    root, tip = (0.0, 0.045, 0.215 + 0.008 * bridge), _nose_tip(nose_len, fy)
    kink = tuple(t + NOSE_KINK * (r - t) for r, t in zip(root, tip, strict=True))
    kink = (kink[0], kink[1], kink[2] - NOSE_SAG * saddle)
    # the saddle's dish around the kink, on the face only (on the ridge too it would cut the tip off)
    dish = torch.exp(-0.5 * (x / NOSE_DISH_SIZE[0]) ** 2 - 0.5 * ((y - kink[1]) / NOSE_DISH_SIZE[1]) ** 2)
    sdf = sdf + NOSE_DISH * saddle * dish * _sigmoid((z - 0.17) / 0.02)
    width = 1 + 0.2 * nose_w
    # the ridge is 0.044 wide (3 texels of the synthetic generator's 64^2 tri-planes, which cannot hold a thinner one)
    nose = torch.minimum(_capsule(x, y, z, root, kink, NOSE_RADIUS * width),
                         _capsule(x, y, z, kink, tip, NOSE_RADIUS * width))
    nose = _smooth_union(nose, _length(x, y - tip[1] + 0.008, z - tip[2] + 0.013) - 0.022 * width, 0.012)
    wing = _ellipsoid(ax - 0.018 * width, y + 0.047 * fy, z - 0.245, 0.016, 0.013, 0.018)
    nose = _smooth_union(nose, wing, 0.01)
    sdf = _smooth_union(sdf, nose, 0.015)

    mouth_y = -0.1 * fy
    upper = _ellipsoid(x, y - mouth_y, z - 0.222, 0.033 * (1 + 0.15 * mouth_w), 0.01 * (1 + 0.3 * lips), 0.02)
    lower = _ellipsoid(x, y - mouth_y + 0.022, z - 0.217, 0.03 * (1 + 0.15 * mouth_w), 0.011 * (1 + 0.3 * lips),
                       0.02)
    return _smooth_union(sdf, torch.minimum(upper, lower), 0.01)


def _local_defects(sdf: Tensor, x: Tensor, y: Tensor, z: Tensor, u: list[Tensor], s: list[Tensor]) -> Tensor:
    """Bumps, forehead crater, asymmetry and floaters on ``sdf`` (the nose sag is in the nose)."""
    bumps, holes, floaters, asymmetry = s[0], s[2], s[3], s[4]
    fy = _face_scale(u[3])
    ax = x.abs()
    # bumps: horizontal creases across both cheeks, wavelength BUMP_WAVELENGTH vertically, on a Gaussian
    # patch (standard deviations BUMP_PATCH), a groove at the patch centre
    cx, cy = BUMP_CENTRE[0], BUMP_CENTRE[1] * fy
    patch = torch.exp(-0.5 * ((ax - cx) / BUMP_PATCH[0]) ** 2 - 0.5 * ((y - cy) / BUMP_PATCH[1]) ** 2)
    patch = patch * _sigmoid((z - 0.1) / 0.02)
    sdf = sdf + BUMP_AMPLITUDE * bumps * patch * torch.cos(2 * torch.pi * (y - cy) / BUMP_WAVELENGTH)
    # holes: an ellipsoidal crater in the forehead down to z = 0.1, radius HOLE_RADIUS sqrt(s) (area proportional
    # to s). Its sdf is divided by sqrt(s) so that sigma around a vanishing crater tends to the clean
    # head's (a bare distance field would keep pulling the interior's sigma down as s -> 0).
    scale = holes.sqrt().clamp_min(1e-3)  # the clamp keeps gradients finite where holes = 0
    radius = HOLE_RADIUS * scale
    crater = _ellipsoid(x - HOLE_CENTRE[0], y - HOLE_CENTRE[1], z - 0.23, radius, radius, 0.13)
    sdf = torch.where(holes > 0, torch.maximum(sdf, -crater / scale), sdf)
    sdf = _inflate_left(sdf, x, z, asymmetry)
    # floaters: disconnected blobs in front of the face, volume proportional to s; sdfs divided by
    # cbrt(s) as for the crater, so that the empty space around vanishing blobs tends to the clean field
    scale = torch.exp(torch.log(floaters.clamp_min(1e-9)) / 3).clamp_min(1e-3)  # cbrt
    for (cx, cy, cz), r in zip(FLOATER_CENTRES, FLOATER_RADII, strict=True):
        blob = _length(x - cx, y - cy, z - cz) / scale - r
        sdf = torch.where(floaters > 0, torch.minimum(sdf, blob), sdf)
    return sdf


def _inflate_left(sdf: Tensor, x: Tensor, z: Tensor, severity: Tensor) -> Tensor:
    """Asymmetry: the face half x > 0 inflated by ``ASYMMETRY * severity``, ramping in over 0.02 < x < 0.08
    (the midline, hence the nose profile, is untouched)."""
    return sdf - ASYMMETRY * severity * _smoothstep((x - 0.02) / 0.06) * _sigmoid((z - 0.05) / 0.02)


def _on_subset(mask: Tensor, sdf: Tensor, x: Tensor, y: Tensor, z: Tensor, columns: list[Tensor],
               fn: Callable[..., Tensor]) -> Tensor:
    """``sdf`` with ``fn(sdf, x, y, z, columns)`` applied at the points of ``mask`` [N, M] only."""
    rows, cols = mask.nonzero(as_tuple=True)  # (K,) each
    picked = [t[rows, cols] for t in (sdf, x, y, z)]  # (K,) each
    updated = fn(*picked, [c[rows, 0] for c in columns])  # (K,)
    return sdf.index_put((rows, cols), updated)


def head_sdf(points: Tensor, params: HeadParams) -> Tensor:
    """Approximate signed distance (world units) of the heads with their defects: [N, M, 3] -> [N, M].

    Features (and the local defects) are evaluated only inside boxes that contain them with a
    margin of about 0.1 (face: |x| < 0.26, -0.36 < y < 0.28, z > -0.02; ears: |x| > 0.06,
    -0.17 < y < 0.19, -0.155 < z < 0.145), three times faster than everywhere. Outside the boxes
    they would only move a saturated sigma (|sigma| > 199.5) by at most ~2; the surface, and sigma
    anywhere near it, are unaffected.
    """
    _check_points(points, params)
    u, s = _columns(params, points)
    x, y, z = points.unbind(-1)  # (N, M) each
    sdf = _skull(x, y, z, u)
    ax = x.abs()
    ears = (ax > 0.06) & (y > -0.17) & (y < 0.19) & (z > -0.155) & (z < 0.145)
    sdf = _on_subset(ears, sdf, x, y, z, u, _ears)
    face = (ax < 0.26) & (y > -0.36) & (y < 0.28) & (z > -0.02)

    def face_and_defects(sdf: Tensor, x: Tensor, y: Tensor, z: Tensor, columns: list[Tensor]) -> Tensor:
        sdf = _face_features(sdf, x, y, z, columns[:N_IDENTITY], columns[N_IDENTITY + 1])
        return _local_defects(sdf, x, y, z, columns[:N_IDENTITY], columns[N_IDENTITY:])

    inside = _on_subset(face, sdf, x, y, z, u + s, face_and_defects)
    return torch.where(face, inside, _inflate_left(sdf, x, z, s[4]))  # asymmetry outside the face box too


def head_sigma(points: Tensor, params: HeadParams) -> Tensor:
    """Raw sigma on EG3D's scale at ``points`` [N, M, 3] (world) -> [N, M].

    ``SIGMA_SCALE * tanh(-head_sdf / SIGMA_WIDTH)``: -200 in empty space, +200 inside, sigma = 10
    1.5e-3 inside the surface. Memory is a few dozen [N, M] temporaries: chunk M for huge grids.
    """
    return SIGMA_SCALE * torch.tanh(-head_sdf(points, params) / SIGMA_WIDTH)


# ------------------------------------------------------------------------------------------------
# Colour


EYE_RADIUS = 0.024
"""Vertical radius of each painted eye, a dark ellipse 1.4 times wider than tall (the eyeball's radius is
``EYEBALL_RADIUS``, 0.021): about three texels of the synthetic generator's 64^2 tri-planes across, so that
the fitted generator can draw it. A dark iris in a white blurs to about the skin's brightness at that scale;
one dark patch stays dark, as the lips stay red."""


def _mix(base: Tensor, colour: Tensor, weight: Tensor) -> Tensor:
    """Blend ``colour`` over ``base`` ([N, M, 3] or [N, 1, 3]) with ``weight`` [N, M]."""
    return torch.lerp(base, colour, weight[..., None])


def head_colour(points: Tensor, params: HeadParams) -> Tensor:
    """Albedo in [0, 1] at ``points`` [N, M, 3] -> [N, M, 3]: skin, hair cap, brows, eyes, lips.

    Defined everywhere (a 3-D texture); only its values near the surface show in renders.
    """
    _check_points(points, params)
    u, _ = _columns(params, points)
    fy = _face_scale(u[3])
    c = params.colour.to(device=points.device, dtype=points.dtype)
    tone, warmth, lip_red, dark, hair_tone = (c[:, k : k + 1, None] for k in range(N_COLOUR))  # (N, 1, 1)
    x, y, z = points.unbind(-1)  # (N, M)
    ax = x.abs()

    def rgb(*values: float) -> Tensor:  # (3,)
        return torch.tensor(values, device=points.device, dtype=points.dtype)

    light, deep = rgb(0.93, 0.78, 0.67), rgb(0.42, 0.28, 0.20)
    skin = torch.lerp(light, deep, 0.5 + 0.45 * tone) + 0.04 * warmth * rgb(0.3, 0.5, -0.8)  # (N, 1, 3)
    out = skin.expand(*x.shape, 3)
    hair = torch.lerp(rgb(0.55, 0.42, 0.28), rgb(0.08, 0.06, 0.05), 0.5 + 0.5 * hair_tone)  # (N, 1, 3)
    # hair cap: above a hairline that is high on the forehead and drops toward the back and sides
    hairline = 0.17 - 0.35 * torch.relu(0.12 - z) - 0.2 * torch.relu(ax - 0.12)
    out = _mix(out, hair.expand_as(out), _sigmoid((y - hairline) / 0.008))
    # the face's paint is the same through the whole front half of the head (z > 0.05), as a tri-plane's
    # xy plane draws it: only its front surface shows, and no sharp change in depth needs to be learned
    front = _sigmoid((z - 0.05) / 0.01)
    brow_colour = torch.lerp(skin, hair, 0.65 + 0.3 * dark)  # (N, 1, 3)
    brows = _gauss(((ax - 0.05) / 0.034) ** 2 + ((y - 0.07) / 0.016) ** 2, 1.0) * front
    out = _mix(out, brow_colour.expand_as(out), (1.8 * brows).clamp(0, 1))
    # eyes: one dark patch each, painted wider than the eyeballs to show at the 32 px neural rendering
    eye_colour = torch.lerp(rgb(0.16, 0.14, 0.16), rgb(0.05, 0.035, 0.03), 0.5 + 0.5 * dark)  # (N, 1, 3)
    eye_x, eye_y, _ = EYE_CENTRE
    eye = _sigmoid((EYE_RADIUS - _length((ax - eye_x) / 1.4, y - eye_y)) / 0.003) * front
    out = _mix(out, eye_colour.expand_as(out), eye)
    lip = torch.lerp(skin, rgb(0.68, 0.16, 0.2), 0.6 + 0.25 * lip_red)  # (N, 1, 3)
    mouth = _gauss((x / 0.04) ** 2 + ((y - LIPS_Y * fy) / 0.022) ** 2, 1.0) * front
    out = _mix(out, lip.expand_as(out), (2.0 * mouth).clamp(0, 1))
    return out.clamp(0, 1)


def face_landmarks(params: HeadParams) -> dict[str, Tensor]:
    """Points [N, 3] at the centres of each head's painted features (``head_colour``), on its surface to within ~0.01.

    ``eye_right`` / ``eye_left`` (the eyes' centres; the subject's right is at -x), ``mouth`` (the lips'
    centre, which moves with the face length) and ``cheek_right`` / ``cheek_left`` (plain skin beside
    the nose, below the eyes).
    """
    fy = _face_scale(params.identity[:, 3])  # (N,)

    def point(x: float, y: Tensor | float, z: float) -> Tensor:
        like = torch.ones_like(fy)
        return torch.stack([x * like, y * like, z * like], -1)

    eye_x, eye_y, eye_z = EYE_CENTRE
    return {
        "eye_right": point(-eye_x, eye_y, eye_z + EYEBALL_RADIUS),
        "eye_left": point(eye_x, eye_y, eye_z + EYEBALL_RADIUS),
        "mouth": point(0.0, LIPS_Y * fy, 0.226),
        "cheek_right": point(-0.1, -0.05, 0.2), "cheek_left": point(0.1, -0.05, 0.2),
    }


def head_field(points: Tensor, params: HeadParams) -> tuple[Tensor, Tensor]:
    """``(head_sigma, head_colour)`` at ``points`` [N, M, 3]: ([N, M], [N, M, 3])."""
    return head_sigma(points, params), head_colour(points, params)
