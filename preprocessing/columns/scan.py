"""A cheap first look at a transactions file: its date range, stores and customers, before anything is written.

Only the purchase date, store and customer columns of a chunk are parsed (with the importer's own
date and id rules), so the look costs a fraction of validating the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from preprocessing.columns.parsing import _parse_dates
from preprocessing.columns.state import ValidationState, _Columns, _Report
from preprocessing.columns.validation import _customer_ids


@dataclass
class FileScan:
    """What the chunks seen so far hold: rows, purchase dates (first, last, unreadable), stores, customers."""

    rows: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    unreadable_dates: int = 0
    without_store: int = 0
    stores: dict[str, int] = field(default_factory=dict)  # store name as written (stripped) -> rows
    customers: set = field(default_factory=set)  # customer ids as the importer stores them
    state: ValidationState = field(default_factory=ValidationState)

    def add(self, chunk: pd.DataFrame, mapping: dict, region: str = "US") -> None:
        """Fold one text chunk (as ``TableReader`` yields it) into the scan; ``mapping`` is field -> header."""
        wanted = {f: mapping[f] for f in ("purchase_date", "store", "customer_id") if mapping.get(f) in chunk}
        text = {f: chunk[h].astype(object) for f, h in wanted.items()}
        text = {f: (s if f == "purchase_date" else s.str.strip()) for f, s in text.items()}
        cols = _Columns(text, len(chunk))
        self.rows += len(chunk)
        if "purchase_date" in cols:
            report = _Report(np.arange(len(chunk)), wanted)
            dates = _parse_dates(cols, "purchase_date", self.state, region, report)
            self.unreadable_dates += int((dates.isna().to_numpy() & ~cols.empty("purchase_date")).sum())
            if dates.notna().any():
                low, high = dates.min(), dates.max()
                self.first = low if self.first is None else min(self.first, low)
                self.last = high if self.last is None else max(self.last, high)
        if "store" in cols:
            names = cols.get("store")
            blank = names.eq("")
            self.without_store += int(blank.sum())
            for name, n in names[~blank].value_counts().items():
                self.stores[name] = self.stores.get(name, 0) + int(n)
        else:
            self.without_store += len(chunk)
        if "customer_id" in cols:
            self.customers.update(_customer_ids(cols).dropna().unique().tolist())
