"""Compiled inner loops of the analyses (numba): the passes over pixels and pairs that NumPy cannot fuse.

The analysis modules import this module inside the functions that need it, so ``import
platform_lib`` stays quick; the first call in a process loads the machine code from numba's cache
(``__pycache__`` beside this file, or numba's user cache where that is read-only), or compiles it
(a few seconds, once).

- :func:`shifted_gram` -- per pixel, the Gram matrix and column sums of ``x - x[first step]`` in
  float64: the intrinsic dimension's only pass over the data (``platform_lib.analysis.intrinsic``);
  :func:`symmetric_eigenvalues` -- eigenvalues of many small symmetric matrices (its Gram matrices).
- :func:`pair_distances` -- the condensed Euclidean distances of one pixel's points, bit for bit
  ``scipy.spatial.distance.pdist``; :func:`order_statistics`,
  :func:`pair_row_sums` and :func:`pair_row_counts_below` -- the order statistics, kernel sums and
  recurrence counts of KDE and REC over those pairs (``platform_lib.analysis.extremes``).

>>> import numpy as np
>>> from scipy.spatial.distance import pdist
>>> x = np.random.default_rng(0).standard_normal((50, 3))
>>> out = np.empty(50 * 49 // 2)
>>> pair_distances(x, out)
>>> bool(np.array_equal(out, pdist(x)))
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy"}
# a reordered sum (several accumulators, so the loop runs in SIMD lanes); no fused multiply-adds
_REASSOC = {**_OPTIONS, "fastmath": {"reassoc"}}


@njit(**_REASSOC)
def shifted_gram(x: np.ndarray, pixels: np.ndarray, gram: np.ndarray, sums: np.ndarray) -> None:
    """For each pixel ``p = pixels[q]`` of ``x`` (pixels, time, var; any strides, float32 or float64):
    ``gram[q] = d.T @ d`` and ``sums[q] = d.sum(axis=0)`` of ``d = x[p] - x[p, 0]`` in float64.

    Shifting by the first step keeps the later centring (``G - s s' / T``) free of cancellation. The
    pixel's columns are copied to a float64 buffer (read along time where a pixel's steps lie close
    together, along the variables where the cube is time-major), then the dot products run over
    contiguous columns in 4 x 4 tiles (8 column loads for 16 products). A NaN anywhere in a column
    makes its sum NaN.

    >>> x = np.array([[[1.0, 5.0], [3.0, 5.0], [2.0, 6.0]]])
    >>> gram, sums = np.empty((1, 2, 2)), np.empty((1, 2))
    >>> shifted_gram(x, np.array([0]), gram, sums)
    >>> gram.tolist(), sums.tolist()
    ([[[5.0, 1.0], [1.0, 1.0]]], [[3.0, 1.0]])
    """
    n_time, n_var = x.shape[1], x.shape[2]
    n_pad = (n_var + 3) // 4 * 4
    cols = np.zeros((n_pad, n_time))  # rows past n_var stay 0
    time_inner = x.strides[1] < x.strides[0]  # a pixel's steps lie closer together than pixels
    for q in range(pixels.size):
        p = pixels[q]
        if time_inner:
            for a in range(n_var):
                x0 = np.float64(x[p, 0, a])
                ca = cols[a]
                for t in range(n_time):
                    ca[t] = np.float64(x[p, t, a]) - x0
        else:
            for t in range(n_time):
                for a in range(n_var):
                    cols[a, t] = np.float64(x[p, t, a]) - np.float64(x[p, 0, a])
        for a in range(n_var):
            ca = cols[a]
            s = 0.0
            for t in range(n_time):
                s += ca[t]
            sums[q, a] = s
        for a0 in range(0, n_pad, 4):
            c0, c1, c2, c3 = cols[a0], cols[a0 + 1], cols[a0 + 2], cols[a0 + 3]
            for b0 in range(0, a0 + 1, 4):
                d0, d1, d2, d3 = cols[b0], cols[b0 + 1], cols[b0 + 2], cols[b0 + 3]
                s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
                s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
                for t in range(n_time):
                    e0, e1, e2, e3 = c0[t], c1[t], c2[t], c3[t]
                    f0, f1, f2, f3 = d0[t], d1[t], d2[t], d3[t]
                    s00 += e0 * f0
                    s01 += e0 * f1
                    s02 += e0 * f2
                    s03 += e0 * f3
                    s10 += e1 * f0
                    s11 += e1 * f1
                    s12 += e1 * f2
                    s13 += e1 * f3
                    s20 += e2 * f0
                    s21 += e2 * f1
                    s22 += e2 * f2
                    s23 += e2 * f3
                    s30 += e3 * f0
                    s31 += e3 * f1
                    s32 += e3 * f2
                    s33 += e3 * f3
                tile = (
                    (s00, s01, s02, s03),
                    (s10, s11, s12, s13),
                    (s20, s21, s22, s23),
                    (s30, s31, s32, s33),
                )
                for i in range(4):
                    a = a0 + i
                    if a >= n_var:
                        break
                    row = tile[i]
                    for j in range(4):
                        b = b0 + j
                        if b > a:
                            break
                        gram[q, a, b] = row[j]
                        gram[q, b, a] = row[j]


@njit(**_OPTIONS)
def pair_distances(x: np.ndarray, out: np.ndarray) -> None:
    """Euclidean distances of all pairs ``i < j`` of the rows of ``x`` (n, features), in ``pdist`` order.

    The same operations in the same order as SciPy (squared differences summed over the features in
    order, then the square root), so the values are identical; one row's pairs are one contiguous run.
    """
    n, f = x.shape
    xt = np.ascontiguousarray(x.T)
    start = 0
    for i in range(n - 1):
        m = n - i - 1
        seg = out[start : start + m]
        for g in range(f):
            xi = xt[g, i]
            col = xt[g, i + 1 :]
            if g == 0:
                for j in range(m):
                    d = xi - col[j]
                    seg[j] = d * d
            else:
                for j in range(m):
                    d = xi - col[j]
                    seg[j] += d * d
        for j in range(m):
            seg[j] = np.sqrt(seg[j])
        start += m


@njit(**_OPTIONS)
def count_less(c: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    """How many values of ``c`` are ``< lo`` and how many ``< hi`` (one pass, no branches: SIMD).

    >>> count_less(np.array([1.0, 2.0, 3.0, 4.0]), 2.0, 3.5)
    (1, 3)
    """
    n_lo = 0
    n_hi = 0
    for j in range(c.size):
        n_lo += c[j] < lo
        n_hi += c[j] < hi
    return n_lo, n_hi


@njit(**_OPTIONS)
def order_statistics(c: np.ndarray, r: int, r2: int, lo: float, hi: float) -> tuple[float, float]:
    """The ``r``-th and ``r2``-th smallest values of ``c`` (``r <= r2 <= r + 1``), exactly.

    ``[lo, hi)`` is a guess at a bracket (from a sample). Counting passes (:func:`count_less`) keep a
    bracket ``[L, H)`` with ``#(c < L) <= r`` and ``#(c < H) > r2`` and narrow it by interpolating
    the ranks' position inside it; once it holds at most 64 values, one pass copies them out (it
    counts 64 values at a time and copies from the rare blocks that hold any) and they are sorted.
    A wrong guess or many ties cannot make it wrong, only slower: a guess that misses starts from the
    whole range, and after 12 rounds the bracket's values are copied out whatever their number.

    >>> c = np.random.default_rng(0).random(10_000)
    >>> order_statistics(c, 4999, 5000, 0.4, 0.6) == tuple(np.sort(c)[[4999, 5000]])
    True
    """
    n_lo, n_hi = count_less(c, lo, hi)
    if n_lo <= r and n_hi > r2:
        low, high = lo, hi
    else:  # the guess missed: start from the whole range
        low, high = np.inf, -np.inf
        for j in range(c.size):
            low = min(low, c[j])
            high = max(high, c[j])
        high = np.nextafter(high, np.inf)
        n_lo, n_hi = 0, c.size
    for _ in range(12):
        inside = n_hi - n_lo
        if inside <= 64:
            break
        centre = (r + r2 + 1) / 2.0 - n_lo  # between the two ranks, counted from ``low``
        spread = max(2.0 * np.sqrt(inside), 8.0)
        t1 = low + (high - low) * max(centre - spread, 0.0) / inside
        t2 = low + (high - low) * min(centre + spread, inside) / inside
        if not (low < t1 < t2 < high):
            t1, t2 = max(t1, low), min(t2, high)
            if t1 >= t2:
                break
        c1, c2 = count_less(c, t1, t2)
        if c1 <= r and c1 > n_lo:
            low, n_lo = t1, c1
        if c2 <= r and c2 > n_lo:
            low, n_lo = t2, c2
        if c2 > r2 and c2 < n_hi:
            high, n_hi = t2, c2
        if c1 > r2 and c1 < n_hi:
            high, n_hi = t1, c1
    values = np.empty(n_hi - n_lo)
    k = 0
    for j0 in range(0, c.size, 64):  # count a block (SIMD); copy from the rare blocks that hold any
        block = c[j0 : j0 + 64]
        hits = 0
        for j in range(block.size):
            hits += (block[j] >= low) & (block[j] < high)
        if hits:
            for j in range(block.size):
                if (block[j] >= low) & (block[j] < high):
                    values[k] = block[j]
                    k += 1
    values.sort()
    return values[r - n_lo], values[r2 - n_lo]


@njit(**_REASSOC)
def pair_row_sums(values: np.ndarray, n: int, diagonal: float, out: np.ndarray) -> None:
    """Row sums of the symmetric ``n x n`` matrix with ``diagonal`` on its diagonal and the condensed
    upper triangle ``values`` (``pdist`` order) elsewhere.

    >>> out = np.empty(3)
    >>> pair_row_sums(np.array([1.0, 2.0, 4.0]), 3, 0.5, out)   # pairs (0,1), (0,2), (1,2)
    >>> out.tolist()
    [3.5, 5.5, 6.5]
    """
    for i in range(n):
        out[i] = diagonal
    start = 0
    for i in range(n - 1):
        m = n - i - 1
        seg = values[start : start + m]
        rest = out[i + 1 :]
        s = 0.0
        for j in range(m):
            s += seg[j]
            rest[j] += seg[j]
        out[i] += s
        start += m


@njit(**_OPTIONS)
def pair_row_counts_below(values: np.ndarray, n: int, threshold: float, out: np.ndarray) -> None:
    """Per row of the symmetric zero-diagonal matrix with condensed upper triangle ``values``: how many
    entries off the diagonal are ``< threshold``.

    >>> out = np.empty(3, dtype=np.int64)
    >>> pair_row_counts_below(np.array([1.0, 2.0, 4.0]), 3, 3.0, out)
    >>> out.tolist()
    [2, 1, 1]
    """
    out[:] = 0
    start = 0
    for i in range(n - 1):
        m = n - i - 1
        seg = values[start : start + m]
        rest = out[i + 1 :]
        s = 0
        for j in range(m):
            inside = seg[j] < threshold
            s += inside
            rest[j] += inside
        out[i] += s
        start += m


@njit(**_OPTIONS)
def _tridiagonal_eigenvalues(d: np.ndarray, e: np.ndarray) -> bool:
    """Eigenvalues (into ``d``, unsorted) of the symmetric tridiagonal matrix with diagonal ``d`` and
    off-diagonal ``e[:-1]`` (``e[-1]`` is scratch): implicit QL with Wilkinson shifts (EISPACK's
    ``tql1``). False if an eigenvalue needed more than 60 iterations."""
    n = d.size
    e[n - 1] = 0.0
    for low in range(n):
        iterations = 0
        while True:
            m = low
            while m < n - 1:
                if abs(e[m]) <= 2.220446049250313e-16 * (abs(d[m]) + abs(d[m + 1])):
                    break
                m += 1
            if m == low:
                break
            iterations += 1
            if iterations > 60:
                return False
            g = (d[low + 1] - d[low]) / (2.0 * e[low])
            r = np.sqrt(g * g + 1.0)
            g = d[m] - d[low] + e[low] / (g + (r if g >= 0.0 else -r))
            s = 1.0
            c = 1.0
            p = 0.0
            i = m - 1
            deflated = False
            while i >= low:
                f = s * e[i]
                b = c * e[i]
                r = np.sqrt(f * f + g * g)
                e[i + 1] = r
                if r == 0.0:  # underflow: the matrix splits here
                    d[i + 1] -= p
                    e[m] = 0.0
                    deflated = True
                    break
                s = f / r
                c = g / r
                g = d[i + 1] - p
                r = (d[i] - g) * s + 2.0 * c * b
                p = s * r
                d[i + 1] = g + p
                g = c * r - b
                i -= 1
            if deflated:
                continue
            d[low] -= p
            e[low] = g
            e[m] = 0.0
    return True


@njit(**_OPTIONS)
def symmetric_eigenvalues(matrices: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending, into ``out`` (n, k)) of each symmetric matrix of ``matrices`` (n, k, k);
    returns a boolean mask of the matrices whose iteration did not converge (solve those otherwise).

    Householder reduction to tridiagonal form (EISPACK's ``tred1``: the lower triangle is read), then
    :func:`_tridiagonal_eigenvalues`. For the 12 x 12 Gram matrices of the intrinsic dimension this is
    about 3 us a matrix against 4.4 us for ``numpy.linalg.eigvalsh`` (LAPACK's fixed cost per call
    dominates at this size), and as accurate (backward stable: errors of a few ulp of the largest).

    >>> out = np.empty((1, 3))
    >>> symmetric_eigenvalues(np.array([[[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 5.0]]]), out).tolist()
    [False]
    >>> np.round(out, 12).tolist()
    [[1.0, 3.0, 5.0]]
    """
    n, k = matrices.shape[0], matrices.shape[1]
    a = np.empty((k, k))
    d = np.empty(k)
    e = np.empty(k)
    failed = np.zeros(n, dtype=np.bool_)
    for q in range(n):
        a[:] = matrices[q]
        for i in range(k - 1, 0, -1):  # annihilate row i left of the subdiagonal
            h = 0.0
            scale = 0.0
            for j in range(i):
                scale += abs(a[i, j])
            if i == 1 or scale == 0.0:
                e[i] = a[i, i - 1]
                d[i] = 0.0
                continue
            for j in range(i):
                a[i, j] /= scale
                h += a[i, j] * a[i, j]
            f = a[i, i - 1]
            g = -np.sqrt(h) if f >= 0.0 else np.sqrt(h)
            e[i] = scale * g
            h -= f * g
            a[i, i - 1] = f - g
            f = 0.0
            for j in range(i):
                g = 0.0
                for m in range(j + 1):
                    g += a[j, m] * a[i, m]
                for m in range(j + 1, i):
                    g += a[m, j] * a[i, m]
                e[j] = g / h
                f += e[j] * a[i, j]
            hh = f / (h + h)
            for j in range(i):
                f = a[i, j]
                g = e[j] - hh * f
                e[j] = g
                for m in range(j + 1):
                    a[j, m] -= f * e[m] + g * a[i, m]
            d[i] = h
        for i in range(k):
            d[i] = a[i, i]
        for i in range(1, k):
            e[i - 1] = e[i]
        if _tridiagonal_eigenvalues(d, e):
            d.sort()
            out[q] = d
        else:
            failed[q] = True
    return failed
