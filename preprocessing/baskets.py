"""Purchase lines as baskets: cleaned ids, the one-hot basket matrix and product display names.

One basket per transaction_id; lines with a quantity <= 0 (returns, cancellations) or without a
transaction or product id put nothing in a basket. Ids are encoded once as integer codes, so the
matrix for millions of lines is built with numpy, not per row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse


def _as_id(values: pd.Series) -> pd.Series:
    """Ids as stripped strings (missing stays missing), so stock and sales ids compare equal."""
    out = values.astype(str).str.strip()
    return out.where(values.notna() & (out != ""))


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 = missing) and sorted string labels for an id column.

    Factorizes the raw values first (hashing 2M strings once) and cleans only the few uniques,
    so 1 and "1 " end up as the same id "1".
    """
    raw_codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    labels = _as_id(pd.Series(uniques, dtype=object))
    clean_codes, clean = pd.factorize(labels, sort=True)
    remap = np.append(clean_codes, -1)  # raw code -1 (missing) stays -1
    return remap[raw_codes], pd.Index(clean, dtype=object)


def _unique_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts (np.unique's hash path is ~50x slower on 2M int64)."""
    ordered = np.sort(values)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(ordered) else np.array([], int)
    return ordered[starts], np.diff(np.r_[starts, len(ordered)])


def _encode(lines: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Index]:
    """Basket rows, product codes and product ids of the lines that put a product in a basket."""
    missing = [c for c in ("transaction_id", "product_id") if c not in lines]
    if missing:
        raise ValueError(f"purchase lines need columns {missing}")
    tx, _ = pd.factorize(lines["transaction_id"].to_numpy(dtype=object))
    product, items = _codes(lines["product_id"])
    keep = (tx >= 0) & (product >= 0)
    if "quantity" in lines:
        keep &= ~(pd.to_numeric(lines["quantity"], errors="coerce").to_numpy() <= 0)
    # Renumber baskets so a transaction with only returns is no basket at all.
    present = np.zeros(tx.max(initial=-1) + 1, dtype=bool)
    present[tx[keep]] = True
    rows = (np.cumsum(present) - 1)[tx[keep]]
    return keep, rows, product[keep], items


def basket_matrix(lines: pd.DataFrame) -> tuple[sparse.csr_matrix, pd.Index]:
    """One-hot encode real transactions (one row per transaction_id) straight from integer codes.

    Lines with a quantity <= 0 (returns, cancellations) or without a transaction/product id are
    left out, so a transaction that only returned goods is no basket at all; a product bought on
    several lines of one transaction counts once.

    Returns:
        (X, items): X is a bool CSR matrix, baskets x products, canonical (sorted, no duplicates);
        items is the Index of product_id (str) for X's columns, sorted; products only ever
        returned keep a (never used) column.
    """
    _, rows, cols, items = _encode(lines)
    n_rows, n_cols = (int(rows.max()) + 1 if len(rows) else 0), len(items)
    cells, _ = _unique_counts(rows.astype(np.int64) * max(n_cols, 1) + cols)
    r, c = np.divmod(cells, max(n_cols, 1))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    X = sparse.csr_matrix((np.ones(len(cells), dtype=bool), c.astype(np.int32), indptr), shape=(n_rows, n_cols))
    return X, pd.Index(items, name="product_id")


def product_names(lines: pd.DataFrame) -> pd.Series:
    """Display name per product_id: its most used name, with the id added where two ids share a name."""
    keep, _, product, items = _encode(lines)
    if "product_name" not in lines:
        return pd.Series(items, index=items, name="product_name")
    name, labels = _codes(lines["product_name"])
    name = name[keep]
    has = name >= 0
    pair, count = _unique_counts(product[has].astype(np.int64) * max(len(labels), 1) + name[has])
    pid, nid = np.divmod(pair, max(len(labels), 1))
    # most used name first; ties go to the alphabetically first name (labels are sorted)
    order = np.lexsort((nid, -count, pid))
    first = order[np.r_[True, pid[order][1:] != pid[order][:-1]]] if len(order) else order
    names = pd.Series(items.to_numpy(), index=items, dtype=object, name="product_name")
    names.iloc[pid[first]] = labels.to_numpy()[nid[first]]
    shared = names.duplicated(keep=False)
    return names.where(~shared, names + " (" + names.index.to_series() + ")")
