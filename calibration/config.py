"""Calibration config: image pixel ↔ floor metre point pairs for one camera."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edge.config_base import Strict

Point = tuple[float, float]
MAX_COORDINATE = 100_000.0  # px or m


class CalibrationConfig(Strict):
    """Four or more pairs: where a floor mark is in the image (px) and on the floor (m).

    Either inline (``image_points_px`` + ``floor_points_m``) or in a small YAML ``file`` with
    the same two keys, relative to the store config.
    """

    image_points_px: list[Point] | None = Field(default=None, description="where floor marks are in the image")
    floor_points_m: list[Point] | None = Field(default=None, description="the same marks on the floor, same order")
    file: str | None = Field(default=None, description="a YAML file with the two point lists instead (relative to this file)")
    max_reprojection_error_m: float = Field(default=0.25, gt=0.0, le=5.0, description="validate-config refuses a calibration worse than this")
    reference_size_px: tuple[int, int] | None = Field(
        default=None, description="(width, height) of the frames the image points were clicked on"
    )

    @field_validator("image_points_px", "floor_points_m")
    @classmethod
    def _plausible(cls, v: list[Point] | None) -> list[Point] | None:
        # 1e308 is finite but turns the homography into inf/NaN; no camera or floor is that big
        for x, y in v or []:
            if abs(x) > MAX_COORDINATE or abs(y) > MAX_COORDINATE:
                raise ValueError(f"point ({x:.3g}, {y:.3g}) is beyond ±{MAX_COORDINATE:.0f}: not a pixel or metre position")
        return v

    @model_validator(mode="after")
    def _pairs(self) -> CalibrationConfig:
        if self.file is None:
            if self.image_points_px is None or self.floor_points_m is None:
                raise ValueError("give either 'file' or both 'image_points_px' and 'floor_points_m'")
            if len(self.image_points_px) < 4:
                raise ValueError(f"need at least 4 point pairs, found {len(self.image_points_px)}")
            if len(self.image_points_px) != len(self.floor_points_m):
                raise ValueError(
                    f"image_points_px has {len(self.image_points_px)} points but floor_points_m has "
                    f"{len(self.floor_points_m)}: they must pair up"
                )
        elif self.image_points_px is not None or self.floor_points_m is not None:
            raise ValueError("give either 'file' or inline points, not both")
        return self
