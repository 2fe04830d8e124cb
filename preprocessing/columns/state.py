"""What validating one chunk works with: its mapped text columns, its row-level report, and the
decisions carried from one chunk of a file to the next (``ValidationState``).

Kept apart from the value parsers and the per-kind rules so both can share them without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ERROR_COLUMNS = ["row", "column", "field", "value", "reason", "level"]


@dataclass
class ValidationState:
    """What one chunk decides for the next ones of the same file; pass one instance, chunks in file order.

    date_formats: field -> date family chosen on the first chunk where one parses >= 95 % of values.
    decimal_comma: field -> whether ',' is the decimal mark (decided when a chunk first shows it).
    line_counts: identical (transaction_id, product_id) lines seen so far, keyed by a 64-bit hash, so
        ``line_no`` continues across chunks (about 40 bytes per distinct key).
    phone_cache: raw phone text -> (E.164 or None, number type), to call phonenumbers once per value.
    """

    date_formats: dict[str, str] = field(default_factory=dict)
    decimal_comma: dict[str, bool] = field(default_factory=dict)
    # A plain Int64 index: an empty RangeIndex would turn the first keys into a RangeIndex whose step
    # (the difference of two 64-bit hashes) overflows on the next reindex.
    line_counts: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64", index=pd.Index([], dtype="int64")))
    phone_cache: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class _Report:
    """Collects error / warning rows for one chunk, vectorised per (field, reason)."""

    def __init__(self, rows: np.ndarray, mapping: dict):
        self.rows = rows
        self.mapping = mapping
        self.bad = np.zeros(len(rows), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def add(self, mask, target: str, values: pd.Series | None, reason: str, level: str = "error") -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if level == "error":
            self.bad |= mask
        vals = values.to_numpy(dtype=object)[mask] if values is not None else ""
        self.parts.append(
            pd.DataFrame(
                {
                    "row": self.rows[mask],
                    "column": self.mapping.get(target, target),
                    "field": target,
                    "value": vals,
                    "reason": reason,
                    "level": level,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else "str") for c in ERROR_COLUMNS})
        out = pd.concat(self.parts, ignore_index=True)
        return out.sort_values("row", kind="stable").reset_index(drop=True)


class _Columns:
    """The chunk's mapped text columns by field (positional index), with cached emptiness masks."""

    def __init__(self, text: dict[str, pd.Series], n: int):
        self.text = {f: s.reset_index(drop=True) for f, s in text.items()}
        self.n = n
        self._empty: dict[str, np.ndarray] = {}
        self._blank: pd.Series | None = None

    def __contains__(self, target: str) -> bool:
        return target in self.text

    def get(self, target: str) -> pd.Series:
        """The field's text, or all '' when the field is not mapped."""
        if target in self.text:
            return self.text[target]
        if self._blank is None:
            self._blank = pd.Series(np.full(self.n, "", dtype=object), dtype=object)
        return self._blank

    def empty(self, target: str) -> np.ndarray:
        if target not in self._empty:
            self._empty[target] = (self.get(target).to_numpy() == "") if target in self.text else np.ones(self.n, bool)
        return self._empty[target]

    def optional(self, target: str) -> pd.Series:
        """Text with None where empty."""
        s = self.get(target)
        empty = self.empty(target)
        return s.mask(empty) if empty.any() else s
