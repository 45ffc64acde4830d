"""Plain, obviously-correct per-pixel references for the analysis tests (loops, numpy, scipy, sklearn).

Each fast implementation in ``platform_lib.analysis`` must agree with these on random and demo data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

METHODS = ("KDE", "REC", "KNN_Gamma", "KNN_Delta", "T2")


def reference_dimension(matrix: np.ndarray, explained: float = 0.95, retained: float = 0.999) -> float:
    """The paper's per-pixel ``sufficient_dimensions`` (Mahecha, Gans et al. 2020, ESDLPaperCode.jl), written
    plainly: z-score (a constant column becomes ones), PCA (which centres the columns again: the ones
    become zeros), keep 0.999 of the variance, the first k whose share of the kept variance is > 0.95."""
    if np.isnan(matrix).any():
        return np.nan
    std = matrix.std(axis=0)
    z = (matrix - matrix.mean(axis=0)) / np.where(std == 0, 1.0, std)
    z[:, std == 0] = 1.0
    z = z - z.mean(axis=0)  # the PCA's own centring
    s = np.linalg.svd(z, compute_uv=False)
    var = s**2
    share = np.cumsum(var) / var.sum()
    n_keep = min(int(np.searchsorted(share, retained, side="right")) + 1, len(var))
    kept = var[:n_keep]
    kept_share = np.cumsum(kept) / kept.sum()
    for k, value in enumerate(kept_share, start=1):
        if value > explained:
            return float(k)
    return float(n_keep)


def reference_gap_fill(series: np.ndarray, steps: np.ndarray) -> np.ndarray:
    msc = pd.Series(series).groupby(steps).mean().reindex(range(46)).to_numpy()
    filled = np.where(np.isnan(series), msc[steps], series)
    ok = ~np.isnan(filled)
    if not ok.any():
        return filled
    t = np.arange(series.size)
    return np.interp(t, t[ok], filled[ok])


def reference_scales(series: np.ndarray, annfreq: int = 46, nharm: int = 3) -> np.ndarray:
    """ESDL.jl's ``filterTSFFT(outar, y, annfreq, plandict; nharm=3)`` (src/TSDecomposition.jl), line by
    line with its 1-based indices kept: (4, time) of Trend, Long-Term Variability, Annual Cycle, Fast
    Oscillations. ``round`` is Julia's ``round(Int, x)``: to nearest, ties to even (numpy's ``rint``)."""

    def tscale2ind(b: float, length: int) -> int:  # i = round(Int, l / b + 1)
        return int(np.rint(length / b + 1))

    def mirror(i: int, length: int) -> int:  # mirror(i, l) = l - i + 2
        return length - i + 2

    y = np.asarray(series, dtype=np.float64)
    l = y.size  # noqa: E741 - the upstream name
    out = np.zeros((4, l))
    x = np.arange(1, l + 1, dtype=np.float64)  # detrendTS!: x = 1..l, linreg(x, y)
    b = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    a = y.mean() - b * x.mean()
    out[0] = a + b * x
    fy = np.fft.fft((y - out[0]).astype(np.complex128))  # fftplan * fy
    fyout = np.zeros(l, np.complex128)
    at = lambda i: i - 1  # noqa: E731 - Julia index i is numpy index i - 1
    for jharm in range(1, nharm + 1):
        iup = tscale2ind(annfreq * 1.1 / jharm, l)
        idown = tscale2ind(annfreq * 0.9 / jharm, l)
        for i in range(iup, idown + 1):
            fyout[at(i)] = fy[at(i)]
            i2 = mirror(i, l)
            fyout[at(i2)] = fy[at(i2)]
            fy[at(i)] = 0
            fy[at(i2)] = 0
    out[2] = np.fft.ifft(fyout).real
    iup = tscale2ind(annfreq * 1.1, l)
    fyout = np.zeros(l, np.complex128)
    for i in range(2, iup):  # for i = 2:iup-1
        i2 = mirror(i, l)
        fyout[at(i)] = fy[at(i)]
        fyout[at(i2)] = fy[at(i2)]
        fy[at(i)] = 0
        fy[at(i2)] = 0
    out[1] = np.fft.ifft(fyout).real
    out[3] = np.fft.ifft(fy).real
    return out


def reference_scores(x: np.ndarray) -> dict[str, np.ndarray]:
    """One pixel's complete (T, F) matrix, scored the obvious way, one method at a time."""
    t = len(x)
    d = cdist(x, x)
    sigma = np.median(d)  # all T*T entries, the diagonal included, as in the package
    kde = 1.0 - np.exp(-0.5 * d / sigma**2).mean(axis=1)
    rec = np.empty(t)
    for i in range(t):
        inside = sum(1 for j in range(t) if j != i and d[i, j] < sigma)
        rec[i] = 1.0 - inside / t
    k = math.ceil(0.05 * t)
    # knn_dists of the package: self set to the largest distance, each row sorted (stable), first k
    masked = d.copy()
    np.fill_diagonal(masked, d.max())
    ind = np.argsort(masked, axis=1, kind="stable")[:, :k]
    gamma = np.take_along_axis(d, ind, axis=1).mean(axis=1)
    delta = np.array([np.linalg.norm(sum(x[i] - x[j] for j in ind[i]) / k) for i in range(t)])
    if len(np.unique(x, axis=0)) == t:  # no duplicate points: a peer library agrees
        dist, _ = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x).kneighbors(x)
        np.testing.assert_allclose(dist[:, 1:].mean(axis=1), gamma, rtol=1e-12)
    q = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    u, s, vt = np.linalg.svd(q)
    q_inv_half = (u @ np.diag((s + 1e-10) ** -0.5) @ vt).T
    t2 = (((x - x.mean(axis=0)) @ q_inv_half) ** 2).sum(axis=1)
    return {"KDE": kde, "REC": rec, "KNN_Gamma": gamma, "KNN_Delta": delta, "T2": t2}


def reference_quantiles(scores: np.ndarray) -> np.ndarray:
    """get_quantile_scores: thresholds at 0:0.01:1; level i where thresholds[i-1] < s <= thresholds[i]."""
    levels = np.arange(101) / 100
    thresholds = np.quantile(scores, levels)
    out = np.empty_like(scores)
    for j, s in enumerate(scores):
        if s <= thresholds[0]:
            out[j] = levels[0]
        for i in range(1, 101):
            if thresholds[i - 1] < s <= thresholds[i]:
                out[j] = levels[i]
    return out


def reference_block(block: np.ndarray, ensemble_methods=METHODS) -> np.ndarray:
    """(pixels, time, features) -> (pixels, time, 5 raw + 5 quantile + ensemble mean), NaN rows skipped."""
    out = np.full((*block.shape[:2], 11), np.nan)
    for p, pixel in enumerate(block):
        ok = ~np.isnan(pixel).any(axis=1)
        if ok.sum() < 10:
            continue
        raw = reference_scores(pixel[ok])
        quant = {m: reference_quantiles(raw[m]) for m in METHODS}
        for i, m in enumerate(METHODS):
            out[p, ok, i] = raw[m]
            out[p, ok, 5 + i] = quant[m]
        out[p, ok, 10] = np.mean([quant[m] for m in ensemble_methods], axis=0)
    return out


def esdc_time(first: int, last: int) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(
        [
            pd.Timestamp(y, 1, 1) + pd.Timedelta(days=8 * k + 4)
            for y in range(first, last + 1)
            for k in range(46)
        ]
    )
