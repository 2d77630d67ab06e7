"""The ``depth/ground_plane`` backend: a heuristic, not a learned model.

It assumes the camera looks at a flat ground with the horizon at a fixed height in the
image. A point on the ground ``t`` below the horizon (in image heights) is then at a
distance proportional to ``1 / t``: lower in the image means closer. Above the horizon the
map keeps increasing towards the top (sky and far background).

This answers "which object is closer" correctly only when both stand on the same floor
and their lowest visible parts are what is compared. It is wrong for indoor close-ups and
table tops seen from above, for objects that do not touch the ground (birds, lamps,
things held in the air), for ceilings (whose near parts are at the *top* of the image), and
for any image whose horizon is far from ``horizon``. It never looks at the pixels. Use it
only when no learned depth model (``depth_anything``) can run.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vpd.tools.backends._common import CpuBackend, require_range

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = ["GroundPlaneDepth", "ground_plane_rows"]

#: Rows closer than this (in image heights) to the horizon are treated as "at the horizon".
_NEAR_HORIZON = 0.02


def ground_plane_rows(height: int, horizon: float = 0.4) -> np.ndarray:
    """Relative depth of each image row under the flat-ground assumption.

    Args:
        height: Number of rows.
        horizon: Height of the horizon as a fraction of the image height from the top.

    Returns:
        A float32 vector of ``height`` values, strictly decreasing from the top row to the
        bottom row (larger is farther). Below the horizon ``1 / t`` with ``t`` the distance
        under the horizon in image heights; above it a continuation with the same slope.
    """
    import numpy as np

    t = (np.arange(height, dtype=np.float64) + 0.5) / max(height, 1) - horizon
    edge = _NEAR_HORIZON
    # 1/t below the horizon; above it, the tangent line at t = edge, so the curve stays
    # continuous, smooth and strictly monotonic instead of exploding at the horizon.
    below = 1.0 / np.maximum(t, edge)
    above = 1.0 / edge + (edge - t) / edge**2
    return np.where(t > edge, below, above).astype(np.float32)


class GroundPlaneDepth(CpuBackend):
    """Depth from the image row alone, assuming a flat ground (lower in the image = closer).

    Options (checked when the backend is constructed; a bad value is a ConfigError):
        horizon: Where the horizon is, as a fraction in [0, 1) of the image height from the
            top (0.4 suits eye-level photos; about 0.5 for a level camera, lower for one
            tilted down).

    It computes on the CPU whatever ``device`` says, and returns float32 maps (``dtype``
    must be None or ``"float32"``).
    """

    capability: ClassVar[str] = "depth"
    name: ClassVar[str] = "ground_plane"
    default_model: ClassVar[str | None] = None
    description: ClassVar[str] = (
        "heuristic, not a learned model: depth from image row under a flat-ground assumption "
        "(lower in the image = closer)"
    )
    option_defaults: ClassVar[dict[str, Any]] = {"horizon": 0.4}

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        require_range(self, "horizon", 0.0, 1.0, upper_open=True)

    def model_key(self) -> Hashable:
        """Nothing to load."""
        return ("ground_plane",)

    def _load(self) -> Any:
        return None

    def estimate_depth(self, images: Sequence[Image]) -> list[np.ndarray]:
        """A depth map per image from each pixel's row.

        Args:
            images: RGB PIL images (only their sizes are used).

        Returns:
            For each image a float32 ``H x W`` map, larger = farther: equal along each
            row, strictly decreasing from the top row to the bottom row.
        """
        import numpy as np

        maps = []
        for image in images:
            width, height = image.size
            rows = ground_plane_rows(height, float(self.options["horizon"]))
            maps.append(np.ascontiguousarray(np.broadcast_to(rows[:, None], (height, width))))
        return maps
