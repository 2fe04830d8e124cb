"""Exact frequent itemsets of up to a few products, counted by sparse matrix products.

Why not mlxtend's own miners: on 500k baskets mlxtend's FP-growth takes ~30 s and 2 GB and its
Apriori densifies rows x candidates (8 GB at 0.5 % support, MemoryError below). Bundles only need
itemsets of up to three products, and those are counted exactly by sparse matrix products: singles
by column sums, pairs by ``X.T @ X``, triples by the same product restricted to the baskets that
hold a frequent item (a conditional, FP-growth-style projection). The output has mlxtend's format, so
mlxtend's ``association_rules`` still computes every metric, and the tests check the itemsets against
mlxtend's ``fpgrowth``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse


def min_count(min_support: float, n_baskets: int) -> int:
    """Smallest basket count whose support count / n_baskets is >= min_support, exactly as mlxtend compares."""
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    c = max(math.ceil(min_support * n_baskets), 1)
    while c > 1 and (c - 1) / n_baskets >= min_support:
        c -= 1
    while c / n_baskets < min_support:
        c += 1
    return c


def _upper_pairs(R: sparse.csr_matrix, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column pairs i < j of R that co-occur in >= threshold rows, sorted by (i, j), with counts."""
    P = (R.T @ R).tocoo()
    keep = (P.row < P.col) & (P.data >= threshold)
    i, j, cnt = P.row[keep], P.col[keep], P.data[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], cnt[order]


def _rows_of(R: sparse.csr_matrix, rows: np.ndarray, colmap: np.ndarray, n_cols: int) -> sparse.csr_matrix:
    """Rows `rows` of R, keeping columns with colmap >= 0 renumbered to colmap (numpy gather).

    Same as R[rows][:, cols] but without scipy's per-call indexing overhead, which dominates
    when this runs once per frequent item.
    """
    starts = R.indptr[rows]
    lengths = R.indptr[rows + 1] - starts
    first = np.cumsum(lengths) - lengths
    positions = np.repeat(starts - first, lengths) + np.arange(lengths.sum())
    cols = colmap[R.indices[positions]]
    keep = cols >= 0
    per_row = np.bincount(np.repeat(np.arange(len(rows)), lengths)[keep], minlength=len(rows))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    return sparse.csr_matrix((np.ones(keep.sum(), dtype=np.int32), cols[keep], indptr), shape=(len(rows), n_cols))


def _grow(
    prefix: tuple, R: sparse.csr_matrix, ext: np.ndarray, counts: np.ndarray, threshold: int, max_len: int, found: list
) -> None:
    """Emit prefix + {e} for each e in ext, then extend by counting pairs within the prefix's baskets.

    R holds only the baskets containing `prefix`, restricted to the columns `ext` (global item
    codes, increasing), so R.T @ R counts prefix + {a, b} for every a < b at once. `found` gets
    (prefix, tails: m x k array of item codes, counts) blocks.
    """
    found.append((prefix, ext[:, None], counts))
    if len(prefix) + 2 > max_len or len(ext) < 2:
        return
    i, j, cnt = _upper_pairs(R, threshold)
    if len(i) == 0:
        return
    if len(prefix) + 3 > max_len:  # the pairs are leaves: no need to project further
        found.append((prefix, np.column_stack([ext[i], ext[j]]), cnt))
        return
    by_col = R.tocsc()
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    stops = np.r_[starts[1:], len(i)]
    colmap = np.full(len(ext), -1, dtype=np.int32)
    for start, stop in zip(starts, stops):  # loop over frequent items, never over baskets
        a, js = i[start], j[start:stop]
        rows = by_col.indices[by_col.indptr[a] : by_col.indptr[a + 1]]
        colmap[js] = np.arange(len(js), dtype=np.int32)
        sub = _rows_of(R, rows, colmap, len(js))
        colmap[js] = -1
        _grow(prefix + (ext[a],), sub, ext[js], cnt[start:stop], threshold, max_len, found)


def frequent_itemsets(
    matrix: sparse.spmatrix, items: Sequence, min_support: float, max_len: int | None = 3
) -> pd.DataFrame:
    """Exact frequent itemsets (up to max_len products) by sparse counting, in mlxtend's format.

    Args:
        matrix: baskets x items, boolean (see basket_matrix).
        items: column labels (product ids).
        min_support: fraction of baskets, compared as count / n_baskets >= min_support.
        max_len: largest itemset size; None for no limit.
    Returns:
        DataFrame with `support` (float) and `itemsets` (frozenset of labels), the same rows as
        mlxtend.frequent_patterns.fpgrowth(..., use_colnames=True, max_len=max_len) gives;
        ordered by size, then support descending.
    """
    n = matrix.shape[0]
    empty = pd.DataFrame({"support": pd.Series(dtype=float), "itemsets": pd.Series(dtype=object)})
    if n == 0 or matrix.shape[1] == 0 or (max_len is not None and max_len < 1):
        return empty
    threshold = min_count(min_support, n)
    X = sparse.csr_matrix(matrix, dtype=bool)
    X.sum_duplicates()
    col_counts = np.bincount(X.indices, minlength=X.shape[1])
    frequent = np.flatnonzero(col_counts >= threshold)
    if len(frequent) == 0:
        return empty
    R = sparse.csr_matrix(X[:, frequent], dtype=np.int32)
    found: list = []
    _grow((), R, frequent, col_counts[frequent], threshold, max_len or matrix.shape[1], found)

    by_size: dict[int, tuple[list, list]] = {}
    for prefix, tails, cnt in found:
        block = np.hstack([np.tile(np.asarray(prefix, dtype=np.int64), (len(tails), 1)), tails])
        codes, counts = by_size.setdefault(block.shape[1], ([], []))
        codes.append(block)
        counts.append(np.asarray(cnt, dtype=np.int64))
    labels = np.asarray(items, dtype=object)
    frames = []
    for size in sorted(by_size):
        codes, counts = (np.concatenate(part) for part in by_size[size])
        order = np.argsort(-counts, kind="stable")
        sets = list(map(frozenset, labels[codes[order]].tolist()))
        frames.append(pd.DataFrame({"support": counts[order] / n, "itemsets": pd.Series(sets, dtype=object)}))
    return pd.concat(frames, ignore_index=True)
