"""EG3D's FFHQ camera numbers, torch-free (the command line's defaults are read from here).

``nerfsculpt.camera`` re-exports all of them beside the camera maths.
"""

from __future__ import annotations

import math

AVG_CAMERA_RADIUS = 2.7  # rendering_kwargs['avg_camera_radius'] of the FFHQ config (docs/method/eg3d.md §1.3)
AVG_CAMERA_PIVOT = (0.0, 0.0, 0.2)  # rendering_kwargs['avg_camera_pivot']: the look-at point

_EG3D_PI = 3.14159  # the truncated constants of EG3D's FOV_to_intrinsics (docs/method/eg3d.md §3.14)
_EG3D_SQRT2 = 1.414


def fov_to_focal(fov_deg: float, eg3d_constants: bool = True) -> float:
    """Normalised focal length of a camera with a *diagonal* field of view of ``fov_deg`` degrees.

    ``f = 1 / (tan(fov / 2) * sqrt(2))``: EG3D's ``fov`` spans the image diagonal (length sqrt(2)
    in normalised units). With ``eg3d_constants=True`` (default) pi and sqrt(2) are replaced by
    EG3D's 3.14159 and 1.414, which reproduces ``FOV_to_intrinsics`` (docs/method/eg3d.md §3.14).

    >>> round(fov_to_focal(18.837), 6)
    4.263391
    """
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov_deg must be in (0, 180) degrees, got {fov_deg}")
    pi, sqrt2 = (_EG3D_PI, _EG3D_SQRT2) if eg3d_constants else (math.pi, math.sqrt(2.0))
    return 1.0 / (math.tan(fov_deg * pi / 360.0) * sqrt2)


def focal_to_fov(focal: float, eg3d_constants: bool = True) -> float:
    """Inverse of :func:`fov_to_focal`: diagonal field of view in degrees of a normalised focal."""
    if not focal > 0.0:
        raise ValueError(f"focal must be positive, got {focal}")
    pi, sqrt2 = (_EG3D_PI, _EG3D_SQRT2) if eg3d_constants else (math.pi, math.sqrt(2.0))
    return math.atan(1.0 / (focal * sqrt2)) * 360.0 / pi


# The FFHQ dataset labels: 2985.29 px at 700 px crops (docs/method/eg3d.md §5.1). gen_videos.py and the training
# loop's comments hard-code the rounded 4.2647.
FOCAL_FFHQ_DATASET = 2985.29 / 700
# The paper's data: FOV_to_intrinsics(18.837) = 4.26339 (docs/method/reference_method.md §0.3). nerfsculpt's default.
FOCAL_PAPER = fov_to_focal(18.837)
