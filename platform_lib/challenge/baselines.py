"""Baselines of the prediction challenge: what a submission has to beat.

Each takes the minicubes (:func:`~platform_lib.challenge.make_minicubes`) and returns a forecast of
the target over the horizon for the minicubes of one split (default ``test``): a DataArray
``(minicube, step, y, x)`` with ``step`` 0 .. horizon-1, the form :func:`~platform_lib.challenge.score`
takes. They learn only from the ``train`` minicubes (``ridge`` picks its penalty on ``val``).

- ``persistence``: the last observed value of each pixel in the context, held over the horizon;
- ``climatology``: the pixel's mean at that step of the year over the other years;
- ``decaying_anomaly``: climatology plus the last observed anomaly, decaying by the lag-1
  autocorrelation of the anomalies (fitted on the training context windows) per step ahead;
- ``ridge``: a ridge regression per step ahead of the anomaly on the drivers' anomalies at that step
  and over the context, the decayed last anomaly and the climatology (and their products);
- ``torch_mlp``: a small neural network (``torch``, the ``ml`` extra) on each pixel's series of
  anomalies, trained through the ML bridge (:class:`~platform_lib.ml.TrainingSet`,
  :func:`~platform_lib.ml.torch.make_dataloader`) on the CPU.

>>> from platform_lib.demo import make_demo_cube, injected_events
>>> from platform_lib.challenge import make_minicubes
>>> cube = make_demo_cube(resolution=5.0, years=(2001, 2012))
>>> mc = make_minicubes(cube, injected_events(cube), patch=2, context=4, horizon=3, fractions=(1, 0, 1),
...     progress=False)
>>> climatology(mc).dims, climatology(mc).sizes["step"]
(('minicube', 'step', 'y', 'x'), 3)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import xarray as xr

from platform_lib.arguments import number_argument, text_argument
from platform_lib.challenge.minicubes import SPLITS, labels
from platform_lib.errors import EsdlError, allowed

RIDGE_PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def split_part(ds: xr.Dataset, split: str) -> xr.Dataset:
    """The minicubes of ``split`` (``train``, ``val`` or ``test``), or a clear error when it has none.

    >>> split_part(xr.Dataset(coords={"split": ("minicube", ["train"])}), "test")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: the challenge has no 'test' minicubes.
    """
    split = text_argument(split, "split", choices=SPLITS)
    keep = np.flatnonzero(labels(ds, "split") == split)
    if keep.size == 0:
        raise EsdlError(f"the challenge has no {split!r} minicubes.")
    return ds.isel(minicube=keep)


def _target(ds: xr.Dataset) -> str:
    return str(ds.attrs["target"])


def forecast_array(part: xr.Dataset, values: np.ndarray) -> xr.DataArray:
    """``values`` (minicube, horizon step, y, x) as the forecast DataArray of ``part``'s minicubes.

    >>> part = xr.Dataset(coords={"minicube": ["e00000"], "step": [-1, 0, 1]}, attrs={"target": "kndvi"})
    >>> forecast_array(part, np.zeros((1, 2, 1, 1))).coords["step"].values.tolist()
    [0, 1]
    """
    horizon = part.isel(step=np.flatnonzero(part["step"].values >= 0))
    name = _target(part)
    return xr.DataArray(
        values.astype(np.float32),
        dims=("minicube", "step", "y", "x"),
        coords={"minicube": part["minicube"].values, "step": horizon["step"].values},
        name=name,
    )


def _steps(part: xr.Dataset, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (minicube, step, y, x) split into the context and the horizon steps."""
    steps = part["step"].values
    return values[:, steps < 0], values[:, steps >= 0]


def _context_horizon(part: xr.Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    return _steps(part, part[name].values)


def _last_finite(context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the last finite value of the context window and how many steps before its end."""
    finite = np.isfinite(context)
    n = context.shape[1]
    last = np.where(finite, np.arange(n)[None, :, None, None], -1).max(axis=1)
    value = np.take_along_axis(context, np.maximum(last, 0)[:, None], axis=1)[:, 0]
    return np.where(last >= 0, value, np.nan), np.where(last >= 0, n - 1 - last, 0)


def climatology(ds: xr.Dataset, split: str = "test") -> xr.DataArray:
    """The pixel climatology over the horizon (the reference every skill is measured against)."""
    part = split_part(ds, split)
    return forecast_array(part, _context_horizon(part, f"{_target(part)}_climatology")[1])


def persistence(ds: xr.Dataset, split: str = "test") -> xr.DataArray:
    """The last observed value of each pixel, held over the horizon (the climatology where none was)."""
    part = split_part(ds, split)
    context, _ = _context_horizon(part, _target(part))
    last, _lag = _last_finite(context)
    clim = _context_horizon(part, f"{_target(part)}_climatology")[1]
    held = np.broadcast_to(last[:, None], clim.shape)
    return forecast_array(part, np.where(np.isfinite(held), held, clim))


def _anomalies(part: xr.Dataset, name: str) -> np.ndarray:
    return part[name].values - part[f"{name}_climatology"].values


def anomaly_persistence(ds: xr.Dataset) -> float:
    """The lag-1 autocorrelation of the target's anomalies over the training context windows (pooled).

    >>> import numpy as np, xarray as xr
    >>> a = np.sin(np.arange(20.0))[None, :, None, None].astype("float32")
    >>> ds = xr.Dataset({"g": (("minicube", "step", "y", "x"), a), "g_climatology": (("minicube", "step", "y", "x"), 0 * a)},
    ...     coords={"step": np.arange(-20, 0), "split": ("minicube", ["train"])}, attrs={"target": "g"})
    >>> round(anomaly_persistence(ds), 2)
    0.53
    """
    part = split_part(ds, "train")
    anom = _steps(part, _anomalies(part, _target(part)))[0]
    a, b = anom[:, :-1].ravel(), anom[:, 1:].ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return 0.0
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float(np.clip((a * b).sum() / denominator, 0.0, 1.0)) if denominator > 0 else 0.0


def _decayed_last(part: xr.Dataset, rho: float) -> np.ndarray:
    """The last observed anomaly decayed to every horizon step: (minicube, step, y, x), 0 where none."""
    name = _target(part)
    anom_context = _steps(part, _anomalies(part, name))[0]
    last, lag = _last_finite(anom_context)
    n_steps = int((part["step"].values >= 0).sum())
    ahead = np.arange(1, n_steps + 1)[None, :, None, None] + lag[:, None]
    return np.nan_to_num(last[:, None] * rho**ahead)


def decaying_anomaly(ds: xr.Dataset, split: str = "test") -> xr.DataArray:
    """Climatology plus the last observed anomaly decaying by its lag-1 autocorrelation per step."""
    part = split_part(ds, split)
    clim = _context_horizon(part, f"{_target(part)}_climatology")[1]
    return forecast_array(part, clim + _decayed_last(part, anomaly_persistence(ds)))


def ridge_features(ds: xr.Dataset, part: xr.Dataset, rho: float) -> np.ndarray:
    """Features (minicube, step, y, x, feature) of the ridge baseline for ``part`` of ``ds``.

    Per horizon step: each driver's anomaly at that step and its mean over the context, the decayed
    last target anomaly, the target climatology, and each driver's anomaly times the climatology (a
    heatwave costs more GPP where there is more to lose).
    """
    name = _target(ds)
    clim = _context_horizon(part, f"{name}_climatology")[1]
    columns = [_decayed_last(part, rho), clim]
    for driver in ds.attrs["drivers"]:
        context, horizon = _steps(part, _anomalies(part, driver))
        with warnings.catch_warnings():  # a pixel without a value in its context: NaN, then 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            context_mean = np.nanmean(context, axis=1, keepdims=True)
        columns += [horizon, np.broadcast_to(context_mean, horizon.shape), horizon * clim]
    return np.nan_to_num(np.stack(columns, axis=-1).astype(np.float64))


def _fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Ridge coefficients (intercept first) for standardised features ``x`` (n, f) and targets ``y``."""
    design = np.c_[np.ones(len(x)), x]
    gram = design.T @ design
    gram[1:, 1:] += penalty * np.eye(x.shape[1])
    return np.linalg.solve(gram, design.T @ y)


def ridge(ds: xr.Dataset, split: str = "test", penalty: float | None = None) -> xr.DataArray:
    """A ridge regression per horizon step of the target anomaly (see :func:`ridge_features`).

    Trained on the ``train`` minicubes; ``penalty`` (on standardised features) is picked from
    :data:`RIDGE_PENALTIES` by the ``val`` error when not given (1.0 without a ``val`` split).
    """
    rho = anomaly_persistence(ds)
    name = _target(ds)
    train = split_part(ds, "train")
    x_train = ridge_features(ds, train, rho)
    y_train = _steps(train, _anomalies(train, name))[1]
    mean = x_train.reshape(-1, x_train.shape[-1]).mean(axis=0)
    std = x_train.reshape(-1, x_train.shape[-1]).std(axis=0) + 1e-9

    def fit(penalty: float) -> list[np.ndarray]:
        coefs = []
        for h in range(y_train.shape[1]):
            xs = ((x_train[:, h] - mean) / std).reshape(-1, len(mean))
            ys = y_train[:, h].ravel()
            ok = np.isfinite(ys)
            coefs.append(_fit_ridge(xs[ok], ys[ok], penalty))
        return coefs

    def predict(part: xr.Dataset, coefs: list[np.ndarray]) -> np.ndarray:
        x = (ridge_features(ds, part, rho) - mean) / std
        clim = _context_horizon(part, f"{name}_climatology")[1]
        anomaly = np.stack([x[:, h] @ c[1:] + c[0] for h, c in enumerate(coefs)], axis=1)
        return clim + anomaly

    if penalty is None:
        has_val = "val" in set(labels(ds, "split"))
        if has_val:
            val = split_part(ds, "val")
            truth = _context_horizon(val, name)[1]
            errors = []
            for p in RIDGE_PENALTIES:
                err = predict(val, fit(p)) - truth
                errors.append(float(np.nanmean(err**2)))
            penalty = RIDGE_PENALTIES[int(np.argmin(errors))]
        else:
            penalty = 1.0
    penalty = number_argument(penalty, "penalty", low=0)
    part = split_part(ds, split)
    out = forecast_array(part, predict(part, fit(penalty)))
    out.attrs["penalty"] = penalty
    return out


def torch_mlp(
    ds: xr.Dataset,
    split: str = "test",
    *,
    epochs: int = 40,
    hidden: int = 64,
    batch_size: int = 256,
    seed: int = 0,
) -> xr.DataArray:
    """A small multilayer perceptron on each pixel's anomaly series, trained through the ML bridge.

    Inputs per pixel: the target's anomalies over the context (0 over the horizon), each driver's
    anomalies over context and horizon, and the target's climatology; output: the target's anomaly at
    every horizon step (masked MSE where the target was observed). Normalised with the training
    statistics of the :class:`~platform_lib.ml.TrainingSet` over the ``train`` minicubes; deterministic
    for a ``seed`` on one machine. Needs ``torch`` (``pip install 'esdl-platform[ml]'``).
    """
    from platform_lib.errors import import_extra

    torch = import_extra("torch", "ml", "the torch baseline")
    from platform_lib.ml import NanPolicy, SampleSpec, TrainingSet
    from platform_lib.ml.torch import make_dataloader

    epochs = number_argument(epochs, "epochs", low=1, integer=True)
    hidden = number_argument(hidden, "hidden", low=1, integer=True)
    name = _target(ds)
    n_context = int((ds["step"].values < 0).sum())
    n_steps = int(ds.sizes["step"])

    def series(part: xr.Dataset) -> xr.Dataset:
        steps = part["step"].values
        anomaly = _anomalies(part, name)
        past = np.where(steps[None, :, None, None] < 0, anomaly, np.nan)
        data = {
            "past_anomaly": past,
            "climatology": part[f"{name}_climatology"].values,
            "target_anomaly": anomaly,
        }
        for driver in ds.attrs["drivers"]:
            data[f"{driver}_anomaly"] = _anomalies(part, driver)
        dims = ("minicube", "step", "y", "x")
        return xr.Dataset({k: (dims, v.astype(np.float32)) for k, v in data.items()})

    inputs = ["past_anomaly", "climatology", *(f"{d}_anomaly" for d in ds.attrs["drivers"])]
    spec = SampleSpec(inputs=inputs, targets=["target_anomaly"], patch={"step": n_steps})
    policy = NanPolicy(fill="mean", mask=True)
    train = TrainingSet(series(split_part(ds, "train")), spec, nan=policy, normalise="inputs")
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(len(inputs) * n_steps, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, n_steps - n_context),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    loader = make_dataloader(train, batch_size, seed=seed)
    for epoch in range(epochs):
        loader.dataset.set_epoch(epoch)
        for batch in loader:
            y = batch["y"][:, 0, n_context:]
            mask = batch["y_mask"][:, 0, n_context:]
            loss = (((model(batch["x"]) - y) ** 2) * mask).sum() / mask.sum().clamp(min=1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    part = split_part(ds, split)
    test = TrainingSet(series(part), spec, nan=policy, normalise="inputs", stats=train.stats)
    anomaly = np.zeros((part.sizes["minicube"], n_steps - n_context, part.sizes["y"], part.sizes["x"]))
    model.eval()
    with torch.no_grad():
        for batch in test.iter_batches(1024, shuffle=False):
            out = model(torch.from_numpy(batch["x"])).numpy()
            m, y, x = batch["origin"][:, 0], batch["origin"][:, 2], batch["origin"][:, 3]
            anomaly[m, :, y, x] = out
    clim = _context_horizon(part, f"{name}_climatology")[1]
    return forecast_array(part, clim + anomaly)


BASELINES: dict[str, Callable[..., xr.DataArray]] = {
    "persistence": persistence,
    "climatology": climatology,
    "decaying_anomaly": decaying_anomaly,
    "ridge": ridge,
    "torch_mlp": torch_mlp,
}


def baseline(ds: xr.Dataset, name: str, split: str = "test") -> xr.DataArray:
    """The forecast of baseline ``name`` (one of :data:`BASELINES`) for ``split``.

    >>> baseline(xr.Dataset(), "median")
    Traceback (most recent call last):
    ...
    platform_lib.errors.EsdlError: no baseline 'median'; the baselines are: 'climatology', 'decaying_anomaly', 'persistence', 'ridge', 'torch_mlp'.
    """
    if name not in BASELINES:
        raise EsdlError(f"no baseline {name!r}; the baselines are: {allowed(BASELINES)}.")
    return BASELINES[name](ds, split)
