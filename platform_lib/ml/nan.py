"""What to do with NaN (ocean, outside coverage): drop samples, fill values, and/or return a mask.

- ``drop="any"`` drops a sample with any NaN in its inputs or targets; ``drop="all"`` drops it when
  all its inputs, or all its targets, are NaN (nothing to learn from).
- ``fill`` replaces the NaN that remain: a number, ``"mean"`` (the variable's mean, so 0 after
  normalisation) or ``"seasonal"`` (the pixel's mean seasonal cycle, then the variable's mean).
- ``mask=True`` adds ``x_mask``/``y_mask`` (True where the value was valid) before filling.

NaN counts per sample come from a summed-area table over the block, so dropping costs one pass over
the block and nothing per sample.

>>> NanPolicy(drop="any", fill=0.0, mask=True).drop
'any'
>>> NanPolicy(drop="some")
Traceback (most recent call last):
...
platform_lib.errors.EsdlError: NanPolicy drop='some' is not one of 'all', 'any' (or None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from platform_lib.arguments import flag_argument, number_argument
from platform_lib.errors import EsdlError, allowed, short_repr
from platform_lib.ml.boxsum import box_sums, summed_area

DROPS = ("any", "all")
FILLS = ("mean", "seasonal")


@dataclass(frozen=True)
class NanPolicy:
    """How samples with NaN are treated; see the module docstring."""

    drop: str | None = None
    fill: float | str | None = None
    mask: bool = False

    def __post_init__(self) -> None:
        if self.drop is not None and (not isinstance(self.drop, str) or self.drop not in DROPS):
            raise EsdlError(f"NanPolicy drop={self.drop!r} is not one of {allowed(DROPS)} (or None).")
        if isinstance(self.fill, str) and self.fill not in FILLS:
            raise EsdlError(
                f"NanPolicy fill={self.fill!r} is not a number or one of {allowed(FILLS)} (or None)."
            )
        if self.fill is not None and not isinstance(self.fill, str):
            number_argument(self.fill, "NanPolicy fill")
        flag_argument(self.mask, "NanPolicy mask")

    @classmethod
    def coerce(cls, value: NanPolicy | str | None) -> NanPolicy:
        """Accept a policy, ``None`` (keep NaN) or a shorthand: ``"keep"``, ``"drop-any"``, ``"drop-all"``,
        ``"mask"``, ``"fill-mean"``, ``"fill-seasonal"``.

        >>> NanPolicy.coerce("drop-any")
        NanPolicy(drop='any', fill=None, mask=False)
        """
        if value is None or isinstance(value, NanPolicy):
            return value or cls()
        shorthands = {
            "keep": cls(),
            "drop-any": cls(drop="any"),
            "drop-all": cls(drop="all"),
            "mask": cls(mask=True, fill=0.0),
            "fill-mean": cls(fill="mean"),
            "fill-seasonal": cls(fill="seasonal"),
        }
        if not isinstance(value, str) or value not in shorthands:
            raise EsdlError(
                f"nan={short_repr(value)} is not a NaN policy; use a NanPolicy or one of {allowed(shorthands)}."
            )
        return shorthands[value]


def window_nan_counts(nan_cells: np.ndarray, origins: np.ndarray, window: Sequence[int]) -> np.ndarray:
    """NaN count in each box ``origins[i] : origins[i] + window`` of the bool array ``nan_cells``.

    >>> cells = np.array([[True, False, False], [False, False, True]])
    >>> window_nan_counts(cells, np.array([[0, 0], [0, 1]]), (2, 2)).tolist()
    [1, 1]
    """
    lo = [origins[:, k] for k in range(nan_cells.ndim)]
    hi = [origins[:, k] + window[k] - 1 for k in range(nan_cells.ndim)]
    return box_sums(summed_area(nan_cells), lo, hi)


def keep_samples(
    policy: NanPolicy,
    block: np.ndarray,
    origins: np.ndarray,
    x_channels: np.ndarray,
    x_window: Sequence[int],
    y_channels: np.ndarray,
    y_window: Sequence[int],
    y_offset: Sequence[int],
) -> np.ndarray:
    """Which samples (``origins`` relative to ``block``) survive ``policy.drop``; all True without drop."""
    keep = np.ones(len(origins), dtype=bool)
    if policy.drop is None or len(origins) == 0:
        return keep
    parts = [(x_channels, x_window, np.zeros(len(x_window), dtype=np.int64))]
    if len(y_channels):
        parts.append((y_channels, y_window, np.asarray(y_offset, dtype=np.int64)))
    for channels, window, offset in parts:
        nan_cells = (
            np.isnan(block[channels]).sum(axis=0) if len(channels) > 1 else np.isnan(block[channels[0]])
        )
        counts = window_nan_counts(nan_cells, origins + offset, window)
        if policy.drop == "any":
            keep &= counts == 0
        else:
            keep &= counts < len(channels) * int(np.prod(window))
    return keep
