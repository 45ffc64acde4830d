"""Sums over many boxes of an n-d array at once, from one summed-area table (used by the NaN policy to
count NaN per sample and by the splits to check the labels around each sample).

>>> counts = np.array([[1, 0, 0], [0, 0, 1]])
>>> box_sums(summed_area(counts), [np.array([0, 0]), np.array([0, 1])], [np.array([1, 1]), np.array([1, 2])]).tolist()
[1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summed_area(values: np.ndarray) -> np.ndarray:
    """Inclusive n-d cumulative sum (int64) with a zero pad in front of every axis.

    >>> summed_area(np.array([[1, 1], [1, 1]])).tolist()
    [[0, 0, 0], [0, 1, 2], [0, 2, 4]]
    """
    out = np.pad(values.astype(np.int64), [(1, 0)] * values.ndim)
    for axis in range(values.ndim):
        np.cumsum(out, axis=axis, out=out)
    return out


def box_sums(sat: np.ndarray, lo: Sequence[np.ndarray], hi: Sequence[np.ndarray]) -> np.ndarray:
    """Sum over the boxes ``[lo, hi]`` (inclusive, one index array per axis) of a :func:`summed_area`.

    >>> box_sums(summed_area(np.ones((3, 3))), [np.array([0]), np.array([1])], [np.array([2]), np.array([2])]).tolist()
    [6]
    """
    total = np.zeros(np.shape(lo[0]), dtype=np.int64)
    for corner in range(1 << len(lo)):
        idx, sign = [], 1
        for k in range(len(lo)):
            if corner >> k & 1:
                idx.append(lo[k])
                sign = -sign
            else:
                idx.append(hi[k] + 1)
        total += sign * sat[tuple(idx)]
    return total
