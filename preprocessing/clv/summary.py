"""The CLV summary: per-customer frequency, recency, T and monetary value, from lines or day totals.

A *purchase* is a customer-day with positive spend; several invoices on one day count once, and
returns (negative ``total_amount``) and zero-value lines are not purchases. Times are in days
(``freq='D'``) or weeks (``'W'``); the summary's ``attrs`` carry ``as_of`` and ``time_unit``, which the
prediction functions check against the fitted model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from preprocessing.clv.params import BGNBDParams
from preprocessing.features import reference_date

DAYS_PER_MONTH = 365.25 / 12
_UNIT_DAYS = {"D": 1.0, "W": 7.0}


def _unit_days(freq: str) -> float:
    try:
        return _UNIT_DAYS[freq]
    except KeyError:
        raise ValueError(f"freq must be 'D' (days) or 'W' (weeks), not {freq!r}") from None


def _purchase_days(lines: pd.DataFrame) -> pd.DataFrame:
    """Customer-day purchases: one row per (customer_id, day) with that day's positive spend."""
    missing = {"customer_id", "purchase_date", "total_amount"} - set(lines.columns)
    if missing:
        raise ValueError(f"purchase lines lack column(s): {', '.join(sorted(missing))}")
    day = pd.to_datetime(lines["purchase_date"]).dt.normalize()
    amount = pd.to_numeric(lines["total_amount"], errors="coerce")
    keep = lines["customer_id"].notna() & day.notna() & (amount > 0)
    frame = pd.DataFrame({"customer_id": lines["customer_id"][keep], "day": day[keep], "amount": amount[keep]})
    return frame.groupby(["customer_id", "day"], sort=True, as_index=False)["amount"].sum()


def rfm_summary(lines: pd.DataFrame, as_of=None, freq: str = "D") -> pd.DataFrame:
    """Per-customer (frequency, recency, T, monetary_value): the sufficient statistics of BG/NBD + Gamma-Gamma.

    Args:
        lines: canonical purchase lines (``customer_id``, ``purchase_date``, ``total_amount`` used).
            Anonymous lines (no customer_id), returns and zero-value lines are dropped; lines on days
            after ``as_of`` are ignored.
        as_of: the reference *day* (time of day ignored); default the day of the latest line, never
            after today.
        freq: time unit of ``recency`` and ``T``: 'D' days or 'W' weeks (purchases still counted by day).

    Returns:
        DataFrame indexed by ``customer_id`` with int ``frequency`` (repeat purchase days) and float
        ``recency``, ``T`` (in ``freq`` units) and ``monetary_value`` (mean spend per repeat purchase
        day, 0 for non-repeaters). ``attrs`` carries ``as_of`` (Timestamp) and ``time_unit``.
    """
    _unit_days(freq)  # refuses an unknown unit before any work
    if as_of is None:
        latest = pd.to_datetime(lines["purchase_date"]).max() if len(lines) else pd.NaT
        if pd.isna(latest):
            raise ValueError("no dated purchase lines: cannot choose an as_of day")
        as_of_day = reference_date(latest).normalize()  # never after today: a typo must not age everyone
    else:
        as_of_day = pd.Timestamp(as_of).normalize()
    if len(lines) <= SMALL_LINES:
        small = _rfm_summary_small(lines, as_of_day, freq)
        if small is not None:
            return small
    daily = _purchase_days(lines)
    return rfm_summary_from_day_totals(_day_totals(daily[daily["day"] <= as_of_day]), as_of_day, freq)


SMALL_LINES = 100_000
"""Up to this many lines ``rfm_summary`` reduces them with numpy (``_rfm_summary_small``): pandas'
groupbys cost ~25 ms however few the lines, which was a fifth of an incremental rescore."""


def _rfm_summary_small(lines: pd.DataFrame, as_of_day: pd.Timestamp, freq: str) -> pd.DataFrame | None:
    """``rfm_summary`` by sorting and ``np.add.reduceat`` instead of groupbys; the same frame (index in
    the groupby's order and dtype, same columns and dtypes; sums equal up to rounding). None when no
    line counts (the groupby path then builds the empty frame)."""
    missing = {"customer_id", "purchase_date", "total_amount"} - set(lines.columns)
    if missing:
        raise ValueError(f"purchase lines lack column(s): {', '.join(sorted(missing))}")
    customer = lines["customer_id"]
    day = pd.to_datetime(lines["purchase_date"]).dt.normalize()
    amount = pd.to_numeric(lines["total_amount"], errors="coerce")
    keep = (customer.notna() & day.notna() & (amount > 0) & (day <= as_of_day)).to_numpy()
    if not keep.any():
        return None
    codes, uniques = pd.factorize(customer[keep], sort=True)  # groupby(sort=True)'s order
    days = day.to_numpy(dtype="datetime64[ns]")[keep]
    spend = amount.to_numpy(dtype=float)[keep]
    order = np.lexsort((days, codes))
    codes, days, spend = codes[order], days[order], spend[order]
    new_day = np.r_[True, (codes[1:] != codes[:-1]) | (days[1:] != days[:-1])]
    day_starts = np.flatnonzero(new_day)
    day_spend = np.add.reduceat(spend, day_starts)
    day_code, day_date = codes[day_starts], days[day_starts]
    starts = np.flatnonzero(np.r_[True, day_code[1:] != day_code[:-1]])
    ends = np.r_[starts[1:], len(day_code)] - 1
    n_days = np.diff(np.r_[starts, len(day_code)])
    first, last = day_date[starts], day_date[ends]
    frequency = (n_days - 1).astype("int64")
    repeat_spend = np.add.reduceat(day_spend, starts) - day_spend[starts]
    with np.errstate(divide="ignore", invalid="ignore"):
        monetary = np.where(frequency > 0, repeat_spend / np.maximum(frequency, 1), 0.0)
    unit = _unit_days(freq)
    one_day = np.timedelta64(1, "D")
    index = pd.Index(uniques, name="customer_id")
    if isinstance(customer.dtype, pd.CategoricalDtype):
        index = pd.CategoricalIndex(uniques, dtype=customer.dtype, name="customer_id")
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": ((last - first) // one_day).astype(float) / unit,
            "T": ((np.datetime64(as_of_day.as_unit("ns").asm8) - first) // one_day).astype(float) / unit,
            "monetary_value": monetary.astype(float),
        },
        index=index,
    )
    summary.attrs = {"as_of": as_of_day, "time_unit": freq}
    return summary


def _day_totals(daily: pd.DataFrame) -> pd.DataFrame:
    """``_purchase_days`` rows (sorted by customer, day) reduced to the per-customer totals
    ``rfm_summary_from_day_totals`` reads."""
    first_amount = daily["amount"].where(~daily["customer_id"].duplicated(), 0.0)
    grouped = daily.assign(first_amount=first_amount).groupby("customer_id", sort=True)
    return grouped.agg(
        n_days=("day", "size"),
        first_day=("day", "min"),
        last_day=("day", "max"),
        total=("amount", "sum"),
        first_amount=("first_amount", "sum"),
    )


def rfm_summary_from_day_totals(totals: pd.DataFrame, as_of, freq: str = "D") -> pd.DataFrame:
    """``rfm_summary`` from per-customer purchase-day totals instead of lines.

    The same summary without the lines in memory: a database can reduce the purchase days itself
    (``portal.services.scores.aggregates.clv_day_totals_sql``) and send one row per customer.

    Args:
        totals: one row per customer (the index becomes ``customer_id``) over the purchase days
            (customer-days with positive spend, as ``rfm_summary`` counts them) on or before the
            ``as_of`` day: ``n_days`` (int), ``first_day`` / ``last_day`` (datetime64, midnight),
            ``total`` (spend over those days) and ``first_amount`` (spend on the first day).
        as_of: the reference *day* (time of day ignored).
        freq: time unit of ``recency`` and ``T``: 'D' days or 'W' weeks.

    Returns:
        The ``rfm_summary`` frame (same columns, dtypes and ``attrs``).
    """
    unit = _unit_days(freq)
    as_of_day = pd.Timestamp(as_of).normalize()
    frequency = (totals["n_days"] - 1).astype("int64")
    repeat_spend = totals["total"] - totals["first_amount"]
    monetary = (repeat_spend / frequency.where(frequency > 0)).fillna(0.0)
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": (totals["last_day"] - totals["first_day"]).dt.days.astype(float) / unit,
            "T": (as_of_day - totals["first_day"]).dt.days.astype(float) / unit,
            "monetary_value": monetary.astype(float),
        },
        index=totals.index.rename("customer_id"),
    )
    summary.attrs = {"as_of": as_of_day, "time_unit": freq}
    return summary


def _summary_arrays(summary: pd.DataFrame):
    """Validated float arrays (x, t_x, T) from a summary frame."""
    missing = {"frequency", "recency", "T"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks column(s): {', '.join(sorted(missing))}")
    x = summary["frequency"].to_numpy(dtype=float)
    tx = summary["recency"].to_numpy(dtype=float)
    T = summary["T"].to_numpy(dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(tx).all() and np.isfinite(T).all()):
        raise ValueError("summary has missing or infinite frequency/recency/T")
    if (x < 0).any() or (tx < 0).any() or (tx > T + 1e-9).any():
        raise ValueError("summary must satisfy frequency >= 0 and 0 <= recency <= T")
    if ((x == 0) & (tx > 0)).any():
        raise ValueError("customers with frequency 0 must have recency 0")
    return x, tx, T


def _check_unit(params: BGNBDParams, summary: pd.DataFrame) -> None:
    unit = summary.attrs.get("time_unit", params.time_unit)
    if unit != params.time_unit:
        raise ValueError(f"summary is in unit {unit!r} but the model was fitted in {params.time_unit!r}")
