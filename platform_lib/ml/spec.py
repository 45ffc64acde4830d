"""What one training sample is: input channels, optional targets, patch size and stride per named dim.

>>> spec = SampleSpec(inputs=["air_temperature_2m"], targets=["kndvi"], patch={"time": 8, "lat": 4, "lon": 4})
>>> spec.stride_of("lat"), spec.extent_of("time")
(4, 8)
>>> SampleSpec(inputs="t2m", targets="t2m", patch={"time": 4}, target_time="next", horizon=2).extent_of("time")
6
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from platform_lib.arguments import names_argument, number_argument, sizes_argument, text_argument
from platform_lib.errors import EsdlError, allowed, did_you_mean

TARGET_TIMES = ("same", "next")


@dataclass(frozen=True)
class SampleSpec:
    """A sample: ``inputs`` (channels), ``targets``, ``patch`` size per dim and ``stride`` per dim.

    Dims not named in ``patch`` have size 1 and are dropped from the sample's shape, so
    ``patch={"time": 46}`` gives pixel time series of shape ``(channels, 46)`` and
    ``patch={"time": 8, "lat": 16, "lon": 16}`` gives ``(channels, 8, 16, 16)``. ``stride`` defaults to
    the patch (no overlap; 1 along unnamed dims); a smaller stride overlaps patches, a stride along an
    unnamed dim thins the samples (``stride={"lat": 4, "lon": 4}``: every 4th pixel's series).
    ``target_time="same"`` cuts targets from the same window as the inputs; ``"next"`` cuts the
    ``horizon`` time steps that follow the input window (forecasting).

    >>> SampleSpec(inputs=["a", "b"], patch={"time": 8}).x_shape(("time", "lat", "lon"))
    (2, 8)
    >>> SampleSpec(inputs=["a"], patch={"time": 0})
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: SampleSpec patch['time'] must be a whole number of at least 1; got 0.
    """

    inputs: tuple[str, ...]
    patch: Mapping[str, int]
    targets: tuple[str, ...] = ()
    stride: Mapping[str, int] = field(default_factory=dict)
    target_time: Literal["same", "next"] = "same"
    horizon: int = 1

    def __post_init__(self) -> None:
        if self.inputs is None or (isinstance(self.inputs, list | tuple) and not self.inputs):
            raise EsdlError("SampleSpec needs at least one input variable (inputs=[...]).")
        object.__setattr__(self, "inputs", names_argument(self.inputs, "SampleSpec inputs"))
        targets = () if self.targets is None else self.targets
        object.__setattr__(self, "targets", names_argument(targets, "SampleSpec targets", empty_ok=True))
        if isinstance(self.patch, Mapping) and not self.patch:
            raise EsdlError("SampleSpec needs a patch size for at least one dim, e.g. patch={'time': 8}.")
        object.__setattr__(self, "patch", sizes_argument(self.patch, "SampleSpec patch", empty_ok=False))
        stride = {} if self.stride is None else self.stride
        object.__setattr__(self, "stride", sizes_argument(stride, "SampleSpec stride"))
        text_argument(self.target_time, "SampleSpec target_time", choices=TARGET_TIMES)
        object.__setattr__(
            self, "horizon", number_argument(self.horizon, "SampleSpec horizon", low=1, integer=True)
        )
        if self.target_time == "next" and not self.targets:
            raise EsdlError("SampleSpec target_time='next' needs targets=[...] to forecast.")

    @property
    def variables(self) -> tuple[str, ...]:
        """Inputs then the targets that are not inputs: the channels read from the cube.

        >>> SampleSpec(inputs=["a", "b"], targets=["b", "c"], patch={"time": 2}).variables
        ('a', 'b', 'c')
        """
        return self.inputs + tuple(v for v in self.targets if v not in self.inputs)

    def patch_of(self, dim: str) -> int:
        """The input patch size along ``dim`` (1 for dims not in ``patch``).

        >>> SampleSpec(inputs="a", patch={"time": 8}).patch_of("lat")
        1
        """
        return self.patch.get(dim, 1)

    def stride_of(self, dim: str) -> int:
        """The stride along ``dim``: ``stride[dim]``, else the patch size, else 1."""
        return self.stride.get(dim, self.patch.get(dim, 1))

    def extent_of(self, dim: str) -> int:
        """Cells along ``dim`` that one sample touches (inputs and targets)."""
        extra = self.horizon if (self.target_time == "next" and dim == "time") else 0
        return self.patch_of(dim) + extra

    def sample_dims(self, dims: Sequence[str]) -> tuple[str, ...]:
        """The dims a sample keeps, in the cube's order (those named in ``patch``).

        >>> SampleSpec(inputs="a", patch={"lon": 4, "time": 8}).sample_dims(("time", "lat", "lon"))
        ('time', 'lon')
        """
        return tuple(d for d in dims if d in self.patch)

    def x_shape(self, dims: Sequence[str]) -> tuple[int, ...]:
        """Shape of one input sample: ``(channels, *patch)`` over :meth:`sample_dims`."""
        return (len(self.inputs), *(self.patch[d] for d in self.sample_dims(dims)))

    def y_shape(self, dims: Sequence[str]) -> tuple[int, ...]:
        """Shape of one target sample (``time`` is ``horizon`` long for ``target_time='next'``).

        >>> SampleSpec(inputs="a", targets="a", patch={"time": 4}, target_time="next", horizon=2).y_shape(("time",))
        (1, 2)
        """
        return (len(self.targets), *(self.y_window(d) for d in self.sample_dims(dims)))

    def y_window(self, dim: str) -> int:
        """Target window along ``dim``.

        >>> SampleSpec(inputs="a", targets="a", patch={"time": 8}, target_time="next", horizon=3).y_window("time")
        3
        """
        return self.horizon if (self.target_time == "next" and dim == "time") else self.patch_of(dim)

    def y_offset(self, dim: str) -> int:
        """Offset of the target window from the sample's origin along ``dim``.

        >>> SampleSpec(inputs="a", targets="a", patch={"time": 8}, target_time="next").y_offset("time")
        8
        """
        return self.patch_of(dim) if (self.target_time == "next" and dim == "time") else 0

    def check(self, ds: Any) -> tuple[str, ...]:
        """Check the spec against a dataset; return the cube's dims (in order) or raise a clear error.

        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"a": (("time", "lat"), np.zeros((10, 3), "float32"))})
        >>> SampleSpec(inputs=["a"], patch={"time": 4}).check(ds)
        ('time', 'lat')
        >>> SampleSpec(inputs=["b"], patch={"time": 4}).check(ds)
        Traceback (most recent call last):
        ...
        platform_lib.errors.EsdlError: SampleSpec variable 'b' is not in the cube; variables: 'a'.
        >>> SampleSpec(inputs=["a"], patch={"lat": 5}).check(ds)
        Traceback (most recent call last):
        ...
        platform_lib.errors.EsdlError: SampleSpec patch needs 5 cells along 'lat' but the cube has only 3.
        """
        names = [str(v) for v in ds.data_vars]
        for v in self.variables:
            if v not in ds.data_vars:
                raise EsdlError(
                    f"SampleSpec variable {v!r} is not in the cube; variables: {allowed(names)}.{did_you_mean(v, names)}"
                )
        dims = tuple(str(d) for d in ds[self.variables[0]].dims)
        for v in self.variables[1:]:
            if tuple(ds[v].dims) != dims:
                raise EsdlError(
                    f"SampleSpec variables must share dims; {self.variables[0]!r} has {dims} but {v!r} has {tuple(ds[v].dims)}."
                )
        for what, sizes in (("patch", self.patch), ("stride", self.stride)):
            for dim in sizes:
                if dim not in dims:
                    raise EsdlError(
                        f"SampleSpec {what} dim {dim!r} is not a dim of the cube; dims: {allowed(dims)}."
                        f"{did_you_mean(dim, dims)}"
                    )
        if self.target_time == "next" and "time" not in dims:
            raise EsdlError(f"SampleSpec target_time='next' needs a 'time' dim; the cube has {dims}.")
        for dim in dims:
            need, have = self.extent_of(dim), int(ds.sizes[dim])
            if need > have:
                raise EsdlError(
                    f"SampleSpec patch needs {need} cells along {dim!r} but the cube has only {have}."
                )
        return dims

    def to_json(self) -> str:
        """The spec as JSON (stored with materialised training sets).

        >>> s = SampleSpec(inputs=["a"], patch={"time": 2})
        >>> SampleSpec.from_json(s.to_json()) == s
        True
        """
        return json.dumps(
            {
                "inputs": list(self.inputs),
                "targets": list(self.targets),
                "patch": dict(self.patch),
                "stride": dict(self.stride),
                "target_time": self.target_time,
                "horizon": self.horizon,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SampleSpec:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))
