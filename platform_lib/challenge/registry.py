"""A challenge in the team's space: its minicubes written atomically to the team storage and registered
in the team catalog with the task card, opened back by name, and forecasts saved for submission.

>>> import os, tempfile
>>> from unittest import mock
>>> from platform_lib.demo import make_demo_cube
>>> team = tempfile.mkdtemp()
>>> with mock.patch.dict(os.environ, {"ESDL_TEAM_DIR": team}):
...     path = make_challenge("tiny", make_demo_cube(resolution=5.0, years=(2001, 2012)), events="injected",
...         patch=2, context=4, horizon=3, fractions=(1, 0, 1), progress=False)
...     card = open_challenge("tiny").attrs["task_card"]
>>> path.name, card["target"], card["horizon_steps"]
('tiny.zarr', 'gross_primary_productivity', 3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from platform_lib.arguments import names_argument, number_argument, text_argument
from platform_lib.challenge.minicubes import (
    DEFAULT_DRIVERS,
    DEFAULT_TARGET,
    check_minicube_arguments,
    make_minicubes,
    split_counts,
)
from platform_lib.challenge.selection import (
    DEFAULT_DETECT_VARIABLE,
    DEFAULT_QUANTILE,
    EVENT_SOURCES,
    challenge_events,
)
from platform_lib.errors import EsdlError

METRIC = (
    "RMSE, NSE (median over minicubes) and skill against the pixel climatology (1 - MSE / MSE_clim) "
    "over the observed target cells of the test horizon, for event and control minicubes separately; "
    "ranked by event skill"
)
SUBMISSION = (
    "a Zarr store or netCDF file with the target variable over (minicube, step, y, x): every test "
    "minicube by name, steps 0 .. horizon-1, a value for every observed cell (save_forecast writes one)"
)


def task_card(ds: xr.Dataset, name: str, source: str, events: dict[str, Any]) -> dict[str, Any]:
    """The task card: what to forecast from what, over which horizon, on which split, scored how."""
    step_days = 8
    return {
        "name": name,
        "source": source,
        "task": f"forecast {ds.attrs['target']} over the horizon from its past values and the drivers over "
        "context and horizon",
        "inputs": {"target_context": ds.attrs["target"], "drivers": list(ds.attrs["drivers"])},
        "target": ds.attrs["target"],
        "patch_cells": int(ds.attrs["patch"]),
        "context_steps": int(ds.attrs["context"]),
        "horizon_steps": int(ds.attrs["horizon"]),
        "step_days": step_days,
        "split": {
            "by": "event: overlapping minicubes and an event's controls stay together",
            "fractions": list(ds.attrs["fractions"]),
            "seed": int(ds.attrs["seed"]),
            "minicubes": split_counts(ds),
        },
        "events": {**events, "skipped": dict(ds.attrs["skipped"])},
        "metric": METRIC,
        "submission": SUBMISSION,
        "climatology": "each cell's mean at that step of the year over the other years (never its own value)",
    }


def make_challenge(
    name: str,
    source: str | xr.Dataset,
    *,
    events: str = "both",
    target: str = DEFAULT_TARGET,
    drivers: Sequence[str] = DEFAULT_DRIVERS,
    patch: int = 8,
    context: int = 10,
    horizon: int = 6,
    controls: int = 1,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    detect_variable: str = DEFAULT_DETECT_VARIABLE,
    quantile: float = DEFAULT_QUANTILE,
    team: str | os.PathLike[str] | None = None,
    catalog_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Cut challenge ``name`` from ``source`` (a catalog cube name or a Dataset), write it to the team's
    cube folder atomically and register it in the team catalog with its task card; return the store.

    ``events``: ``"detected"``, ``"injected"`` (demo cubes) or ``"both"``
    (:func:`~platform_lib.challenge.selection.challenge_events`); the rest as in
    :func:`~platform_lib.challenge.make_minicubes`. A name already taken is refused before anything is
    written.
    """
    from platform_lib.catalog import open_cube
    from platform_lib.paths import team_catalog_path
    from platform_lib.regional import check_name_free, name_lock
    from platform_lib.storage import remove_path, write_zarr_atomic
    from platform_lib.team import check_cube_name, register_cube, team_cubes_dir

    check_cube_name(name)
    check_minicube_arguments(patch, context, horizon, controls, fractions, seed)
    events = text_argument(events, "events", choices=EVENT_SOURCES)
    target = text_argument(target, "target")
    drivers = names_argument(drivers, "drivers")
    if events != "injected":
        detect_variable = text_argument(detect_variable, "detect_variable")
        quantile = number_argument(quantile, "quantile", low=0, high=1, low_open=True, high_open=True)
    catalog = team_catalog_path(catalog_path, team)
    target_store = team_cubes_dir(team, create=False) / f"{name}.zarr"
    check_name_free(name, catalog, target_store)
    if isinstance(source, str):
        label, cube = source, open_cube(source)
    elif isinstance(source, xr.Dataset):
        label, cube = str(source.attrs.get("title", "an in-memory cube")), source
    else:
        raise EsdlError(
            f"source must be a catalog cube name or an xarray Dataset; got {type(source).__name__}."
        )
    table = challenge_events(cube, events, target=target, variable=detect_variable, quantile=quantile)
    ds = make_minicubes(
        cube,
        table,
        target=target,
        drivers=drivers,
        patch=patch,
        context=context,
        horizon=horizon,
        controls=controls,
        fractions=fractions,
        seed=seed,
        progress=progress,
    )
    how = {"source": events, "given": int(len(table))}
    if events != "injected":
        how.update({"detect_variable": detect_variable, "quantile": float(quantile)})
    card = task_card(ds, name, label, how)
    ds.attrs["task_card"] = card
    ds.attrs["title"] = f"challenge {name}: {card['task']}"
    metadata = {
        "title": ds.attrs["title"],
        "kind": "challenge",
        "challenge": card,
        "variables": {
            str(v): {
                "units": str(ds[v].attrs.get("units", "")),
                "long_name": str(ds[v].attrs.get("long_name", v)),
            }
            for v in ds.data_vars
        },
        # where and when its minicubes are (cell centres), in the catalog's terms
        "spatial_extent": [
            float(ds["lon"].min()),
            float(ds["lat"].min()),
            float(ds["lon"].max()),
            float(ds["lat"].max()),
        ],
        "temporal_extent": [str(ds["time"].values.min())[:10], str(ds["time"].values.max())[:10]],
        "chunking": "minicubes",
        "license": str(cube.attrs.get("license", "see source cube")),
        "source": f"prediction-challenge minicubes of {label}",
    }
    encoding = {v: {"chunks": (256, ds.sizes["step"], patch, patch)} for v in ds.data_vars}
    team_cubes_dir(team)
    with name_lock(target_store.parent, name, timeout=-1):
        check_name_free(name, catalog, target_store)
        write_zarr_atomic(ds, target_store, encoding=encoding, progress=False)
        try:
            # one dask chunk per stored chunk: xarray's "auto" cannot size the minicubes' label coordinates
            # (variable-length strings), so open_cube(name) would fail with it
            register_cube(
                name,
                target_store,
                metadata,
                catalog_path=catalog,
                description=ds.attrs["title"],
                args={"chunks": {}},
            )
        except BaseException:
            remove_path(target_store)
            raise
    return target_store


def open_challenge(name: str) -> xr.Dataset:
    """Challenge ``name`` from the catalogs, loaded (minicubes are small), or a clear error: an unknown
    name, or a cube that is not a challenge (no task card). The module's example opens one."""
    from platform_lib.catalog import get_entry, open_store

    entry = get_entry(name)
    if not entry.is_local:
        raise EsdlError(f"challenge {name!r} is at {entry.urlpath}: challenges live in the team folder.")
    ds = open_store(entry.urlpath.removeprefix("file://"), what=f"challenge {name!r}")
    if "task_card" not in ds.attrs:
        raise EsdlError(
            f"{name!r} is a cube, not a challenge (it has no task card); make one with "
            f"esdl challenge make NAME --source {name}."
        )
    return ds.load()


def save_forecast(forecast: xr.DataArray, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a forecast (from a baseline or your model) as a submission: a Zarr store, atomically.

    >>> import tempfile, numpy as np
    >>> f = xr.DataArray(np.zeros((1, 2, 1, 1)), dims=("minicube", "step", "y", "x"),
    ...     coords={"minicube": ["e00001"], "step": [0, 1]}, name="kndvi")
    >>> save_forecast(f, Path(tempfile.mkdtemp()) / "mine.zarr").name
    'mine.zarr'
    """
    from platform_lib.ml.materialise import vlen_strings
    from platform_lib.storage import write_zarr_atomic

    if not isinstance(forecast, xr.DataArray) or forecast.name is None:
        raise EsdlError("a forecast must be a named xarray DataArray (named after the target variable).")
    out = forecast.assign_coords(minicube=vlen_strings(forecast["minicube"].values.tolist())).to_dataset()
    return write_zarr_atomic(out, path, overwrite=overwrite, progress=False)
