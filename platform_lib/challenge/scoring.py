"""Scoring a forecast of the challenge, and the team's leaderboard.

Scores are computed over the cells where the target was observed, separately for the ``event`` and
``control`` minicubes of the split (and for all together):

- ``rmse``: root mean squared error over the cells;
- ``nse``: Nash-Sutcliffe efficiency of each minicube (``1 - SSE / sum((obs - mean(obs))**2)`` over its
  horizon cells), the median over the minicubes;
- ``skill``: ``1 - MSE / MSE_climatology``, the share of the climatology's squared error the forecast
  removes (0: as good as the climatology, 1: perfect).

The leaderboard is a CSV file in the team folder (``<team>/challenges/<name>/leaderboard.csv``) that
members append to under a file lock, each append an atomic rewrite, so rows from members submitting at
the same moment are all kept.

>>> import numpy as np, xarray as xr
>>> dims = ("minicube", "step", "y", "x")
>>> obs = np.arange(8.0).reshape(2, 4, 1, 1)
>>> ds = xr.Dataset({"g": (dims, obs), "g_climatology": (dims, obs * 0 + 3.5)}, coords={"minicube": ["e0", "c1"],
...     "step": [-1, 0, 1, 2], "split": ("minicube", ["test"] * 2), "kind": ("minicube", ["event", "control"])},
...     attrs={"target": "g"})
>>> perfect = ds["g"].sel(step=[0, 1, 2])
>>> score(ds, perfect).loc["event", ["rmse", "nse", "skill"]].tolist()
[0.0, 1.0, 1.0]
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from platform_lib.arguments import text_argument
from platform_lib.challenge.minicubes import KINDS, SPLITS, labels
from platform_lib.errors import EsdlError, allowed

LEADERBOARD_COLUMNS = (
    "submitted_at",
    "user",
    "label",
    *(f"{kind}_{metric}" for kind in KINDS for metric in ("rmse", "nse", "skill")),
    "all_skill",
    "minicubes",
)


def _truth(ds: xr.Dataset, split: str) -> tuple[xr.Dataset, np.ndarray, np.ndarray]:
    split = text_argument(split, "split", choices=SPLITS)
    keep = np.flatnonzero(labels(ds, "split") == split)
    if keep.size == 0:
        raise EsdlError(f"the challenge has no {split!r} minicubes to score.")
    part = ds.isel(minicube=keep)
    horizon = part["step"].values >= 0
    target = str(ds.attrs["target"])
    truth = part[target].values[:, horizon].astype(np.float64)
    return part, truth, part[f"{target}_climatology"].values[:, horizon].astype(np.float64)


def check_forecast(ds: xr.Dataset, forecast: xr.DataArray | xr.Dataset, split: str = "test") -> np.ndarray:
    """The forecast's values in the challenge's order (minicube, step, y, x), or a clear error saying
    what does not match: the variable, the dims, the minicubes, the steps, the sizes, missing values.
    """
    part, truth, _ = _truth(ds, split)
    target = str(ds.attrs["target"])
    if isinstance(forecast, xr.Dataset):
        if target not in forecast.data_vars:
            raise EsdlError(
                f"the submission has no variable {target!r} (the target); it has: {allowed(forecast.data_vars)}."
            )
        forecast = forecast[target]
    if not isinstance(forecast, xr.DataArray):
        raise EsdlError(f"a forecast must be an xarray DataArray or Dataset; got {type(forecast).__name__}.")
    dims = ("minicube", "step", "y", "x")
    if set(forecast.dims) != set(dims):
        raise EsdlError(f"the forecast has dims {tuple(forecast.dims)}; it needs {dims}.")
    forecast = forecast.transpose(*dims)
    wanted = [str(m) for m in part["minicube"].values]
    if "minicube" not in forecast.coords:
        raise EsdlError("the forecast needs a 'minicube' coordinate naming the minicubes (e.g. 'e00012').")
    given = [str(m) for m in forecast["minicube"].values]
    missing, extra = sorted(set(wanted) - set(given)), sorted(set(given) - set(wanted))
    if missing or extra or len(given) != len(set(given)):
        raise EsdlError(
            f"the forecast must cover each of the {len(wanted)} {split} minicubes once: "
            + (f"missing {len(missing)} (e.g. {missing[:3]}); " if missing else "")
            + (f"{len(extra)} not in the {split} split (e.g. {extra[:3]}); " if extra else "")
            + ("some repeated; " if len(given) != len(set(given)) else "")
            + "take the names from the challenge's minicube coordinate."
        )
    steps = part["step"].values[part["step"].values >= 0]
    if "step" in forecast.coords and not np.array_equal(np.asarray(forecast["step"].values), steps):
        raise EsdlError(
            f"the forecast's steps are {forecast['step'].values.tolist()}; it needs {steps.tolist()}."
        )
    values = np.asarray(forecast.sel(minicube=wanted).values, dtype=np.float64)
    if values.shape != truth.shape:
        raise EsdlError(f"the forecast has shape {values.shape}; the {split} horizon is {truth.shape}.")
    gaps = np.isfinite(truth) & ~np.isfinite(values)
    if gaps.any():
        first = wanted[int(np.argwhere(gaps)[0][0])]
        raise EsdlError(
            f"the forecast has {int(gaps.sum())} missing (NaN or infinite) values where the target was "
            f"observed (first in minicube {first!r}); forecast every observed cell."
        )
    return values


def _scores(values: np.ndarray, truth: np.ndarray, clim: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(truth)
    err = (values - truth)[ok]
    clim_err = (clim - truth)[ok & np.isfinite(clim)]
    nses = []
    for m in range(truth.shape[0]):
        obs = truth[m][ok[m]]
        spread = float(((obs - obs.mean()) ** 2).sum()) if obs.size else 0.0
        if spread > 0:
            nses.append(1.0 - float(((values[m][ok[m]] - obs) ** 2).sum()) / spread)
    mse_clim = float(np.mean(clim_err**2)) if clim_err.size else float("nan")
    mse = float(np.mean(err**2)) if err.size else float("nan")
    return {
        "rmse": float(np.sqrt(mse)),
        "nse": float(np.median(nses)) if nses else float("nan"),
        "skill": 1.0 - mse / mse_clim if mse_clim > 0 else float("nan"),
        "minicubes": int(truth.shape[0]),
        "cells": int(ok.sum()),
    }


def score(ds: xr.Dataset, forecast: xr.DataArray | xr.Dataset, split: str = "test") -> pd.DataFrame:
    """RMSE, NSE and skill against the climatology of ``forecast``, one row per kind (``event``,
    ``control``) and ``all`` (see the module docstring)."""
    values = check_forecast(ds, forecast, split)
    part, truth, clim = _truth(ds, split)
    kinds = labels(part, "kind")
    rows = {}
    for kind in (*KINDS, "all"):
        sel = kinds == kind if kind != "all" else np.ones(len(kinds), dtype=bool)
        if sel.any():
            rows[kind] = _scores(values[sel], truth[sel], clim[sel])
    return pd.DataFrame.from_dict(rows, orient="index")


def read_submission(path: str | os.PathLike[str]) -> xr.Dataset:
    """A submission file: a Zarr store or a netCDF file with the target variable.

    >>> read_submission("/no/such/forecast.zarr")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: no submission at /no/such/forecast.zarr: give a Zarr store or a netCDF file (.nc) with the forecast.
    """
    path = Path(path)
    if not path.exists():
        raise EsdlError(
            f"no submission at {path}: give a Zarr store or a netCDF file (.nc) with the forecast."
        )
    try:
        if path.is_dir():
            return xr.open_zarr(path, consolidated=None).load()
        return xr.open_dataset(path).load()
    except (OSError, ValueError, KeyError) as exc:
        raise EsdlError(f"cannot read the submission {path}: {exc}") from None


# ------------------------------------------------------------------------------------- leaderboard
def leaderboard_path(name: str, team: str | os.PathLike[str] | None = None) -> Path:
    """``<team>/challenges/<name>/leaderboard.csv``.

    >>> leaderboard_path("heat-gpp", "/srv/team").as_posix()
    '/srv/team/challenges/heat-gpp/leaderboard.csv'
    """
    from platform_lib.paths import team_dir
    from platform_lib.team import check_cube_name

    folder = Path(team) if team is not None else team_dir()
    return folder / "challenges" / check_cube_name(name) / "leaderboard.csv"


def append_to_leaderboard(
    name: str,
    label: str,
    scores: pd.DataFrame,
    *,
    team: str | os.PathLike[str] | None = None,
) -> Path:
    """Append one row (who, when, ``label`` and the event and control scores) to challenge ``name``'s
    leaderboard under its lock; return the file.

    >>> import tempfile
    >>> rows = pd.DataFrame({"rmse": [1.0, 2.0, 1.5], "nse": [0.5, 0.1, 0.3], "skill": [0.4, 0.2, 0.3],
    ...     "minicubes": [2, 2, 4]}, index=["event", "control", "all"])
    >>> team = tempfile.mkdtemp()
    >>> _ = append_to_leaderboard("heat-gpp", "ridge", rows, team=team)
    >>> read_leaderboard("heat-gpp", team=team)[["label", "event_skill", "minicubes"]].values.tolist()
    [['ridge', 0.4, 4]]
    """
    from filelock import FileLock

    from platform_lib.storage import remove_text_temporaries, write_text_atomic
    from platform_lib.team import LOCK_TIMEOUT_S, current_user

    label = text_argument(label, "label")
    if "\n" in label or len(label) > 80:
        raise EsdlError(f"label must be one line of at most 80 characters; got {label[:40]!r}...")
    path = leaderboard_path(name, team)
    path.parent.mkdir(parents=True, exist_ok=True)
    row: dict[str, object] = {
        "submitted_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "user": current_user(),
        "label": label,
    }
    for kind in KINDS:
        for metric in ("rmse", "nse", "skill"):
            row[f"{kind}_{metric}"] = (
                float(scores.loc[kind, metric]) if kind in scores.index else float("nan")
            )
    row["all_skill"] = float(scores.loc["all", "skill"])
    row["minicubes"] = int(scores.loc["all", "minicubes"])
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        remove_text_temporaries(path)
        old = path.read_text() if path.exists() else ",".join(LEADERBOARD_COLUMNS) + "\n"
        line = pd.DataFrame([row], columns=list(LEADERBOARD_COLUMNS)).to_csv(index=False, header=False)
        write_text_atomic(path, old + line)
    return path


def read_leaderboard(name: str, *, team: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The leaderboard of challenge ``name``, best event skill first (empty when nobody submitted)."""
    path = leaderboard_path(name, team)
    if not path.exists():
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    table = pd.read_csv(io.StringIO(path.read_text()))
    return table.sort_values("event_skill", ascending=False, kind="stable").reset_index(drop=True)
