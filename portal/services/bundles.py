"""Dead stock and the bundles that could move it, on the stored stock levels and transactions.

The pure work is ``preprocessing.bundling`` (dead stock, the sentence a manager reads) and
``preprocessing.suggestions`` (one suggestion per dead-stock product, ranked by the stock value it
can clear); this module feeds them from the database, stores the suggestions as ``BundleRule`` rows
under a ``bundles`` model record (in rank order) and answers the page's questions.

Rules are one global model (baskets from every store). Dead stock is per (product, store) stock
row; a product counts as dead stock for mining when it is dead in at least one store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
from markupsafe import Markup, escape
from sqlalchemy import delete, distinct, exists, func, or_, select
from threadpoolctl import threadpool_limits

from portal import jobs, model_store
from portal.extensions import db
from portal.formatting import money
from portal.jobs import JobError
from portal.models import BundleRule, Job, ModelRecord, Product, PurchaseLine, StockLevel, Store
from portal.params import parse_id
from portal.security import user_store_id
from portal.services import settings as settings_service
from portal.services.scores.dataset import load_lines
from preprocessing import bundling, suggestions

# Job functions whose results are bundle mining runs (the page shows the latest one's outcome).
JOB = "bundles.mine"
JOB_FUNCS = (JOB, "train.bundles")  # the bundles page's mining, the Models page's
PARAM_KEYS = {
    "min_baskets": "bundles.min_baskets",
    "min_confidence": "bundles.min_confidence",
    "min_lift": "bundles.min_lift",
    "dead_stock_ratio": "bundles.dead_stock_ratio",
}
MAX_LEN = 2  # one product to put the dead item next to (two-product antecedents win on a handful of baskets)
UNKNOWN_LIMIT = 200


def _quiet(*_args) -> None:
    """A progress callback that records nothing (CLI)."""


# --------------------------------------------------------------------------- dead stock

STOCK_FRAME_COLUMNS = ["product_id", "product_name", "price", "initial_stock", "total_sold", "store", "store_id"]


def _stock_frame(store_id: int | None = None) -> pd.DataFrame:
    """Stock rows (one per product and store) with the product's price, as the pure module expects."""
    query = (
        select(
            Product.external_id.label("product_id"),
            Product.name.label("product_name"),
            Product.price.label("price"),
            StockLevel.initial_stock,
            StockLevel.total_sold,
            Store.name.label("store"),
            StockLevel.store_id,
        )
        .select_from(StockLevel)
        .join(Product, Product.id == StockLevel.product_id)
        .join(Store, Store.id == StockLevel.store_id)
    )
    if store_id is not None:
        query = query.where(StockLevel.store_id == store_id)
    rows = db.session.execute(query).all()
    frame = pd.DataFrame(rows, columns=STOCK_FRAME_COLUMNS)
    for col in ("price", "initial_stock", "total_sold"):  # NUMERIC arrives as Decimal; None stays missing
        frame[col] = pd.Series([None if v is None else float(v) for v in frame[col]], index=frame.index, dtype=object)
    return frame


def _dead_per_store(stock: pd.DataFrame, ratio: float) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Run the pure dead_stock on each store's rows (a product may be stocked in several stores).

    Returns (dead, errors, healthy count); both frames carry a ``store`` column.
    """
    dead, errors, healthy = [], [], 0
    for store, rows in stock.groupby("store", sort=True):  # a loop over stores, never over rows
        report = bundling.dead_stock(
            rows.drop(columns=["store", "store_id"]).reset_index(drop=True), threshold=ratio, price_column="price"
        )
        dead.append(report.dead.assign(store=store))
        errors.append(report.errors.assign(store=store))
        healthy += len(report.healthy)
    dead_frame = (
        pd.concat(dead, ignore_index=True) if dead else pd.DataFrame(columns=[*bundling.STOCK_COLUMNS, "store"])
    )
    error_frame = (
        pd.concat(errors, ignore_index=True) if errors else pd.DataFrame(columns=[*bundling.ERROR_COLUMNS, "store"])
    )
    if len(dead_frame):
        dead_frame = dead_frame.sort_values(
            ["sold_ratio", "stock_value"], ascending=[True, False], kind="stable", na_position="last"
        ).reset_index(drop=True)
    return dead_frame, error_frame, healthy


def _matches(frame: pd.DataFrame, q: str) -> pd.Series:
    """Rows whose product id equals q or whose id/name contains it (case-insensitive)."""
    q = q.strip().lower()
    pid = frame["product_id"].fillna("").astype(str).str.lower()
    name = frame["product_name"].fillna("").astype(str).str.lower()
    return (pid == q) | pid.str.contains(q, regex=False) | name.str.contains(q, regex=False)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Frame rows as dicts with None for missing values (templates test ``is none``)."""
    return [
        {k: (None if (not isinstance(v, str) and pd.isna(v)) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


@dataclass
class DeadStockReport:
    """What the page shows about stock: dead rows, rows we refused to divide, products sold without a record."""

    has_stock: bool
    threshold: float
    dead: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    unknown: list[dict] = field(default_factory=list)
    unknown_total: int = 0
    healthy: int = 0
    checked: int = 0
    value_tied_up: float = 0.0
    unpriced: int = 0


def _scope(user, store: str | None) -> tuple[int | None, bool]:
    """(store id to restrict to, True when the user may see no store at all)."""
    store_id = user_store_id(user) if user is not None else None
    if user is not None and user.role == "manager" and store_id is None:
        return None, True  # a manager without a store sees nothing rather than everything
    if store_id is None and store:
        found = db.session.scalar(
            select(Store.id).where(
                or_(Store.name == store, Store.id == (parse_id(store) if parse_id(store) is not None else -1))
            )
        )
        return (found if found is not None else -1), False
    return store_id, False


def store_names(user) -> list[str]:
    """Stores an admin can filter the dead-stock list by (others see their own store only)."""
    if user is None or user.role != "admin":
        return []
    return list(db.session.scalars(select(Store.name).order_by(Store.name)))


def unknown_products(
    store_id: int | None = None, q: str | None = None, limit: int = UNKNOWN_LIMIT
) -> tuple[list[dict], int]:
    """Products sold (quantity > 0) without any stock record (in the store, when one is given).

    Done in SQL rather than with ``bundling.unknown_products`` so the page never loads every
    purchase line; the result is the same (stock rows in the database always carry a product id).
    Returns (rows most sold first, up to ``limit``; total number of such products).
    """
    stock = select(StockLevel.id).where(StockLevel.product_id == PurchaseLine.product_id)
    if store_id is not None:
        stock = stock.where(StockLevel.store_id == store_id)
    query = (
        select(
            Product.external_id,
            Product.name,
            func.sum(PurchaseLine.quantity).label("total_sold"),
            func.count(distinct(PurchaseLine.transaction_ref)).label("transactions"),
        )
        .select_from(PurchaseLine)
        .join(Product, Product.id == PurchaseLine.product_id)
        .where(PurchaseLine.quantity > 0, ~exists(stock))
    )
    if store_id is not None:
        query = query.where(PurchaseLine.store_id == store_id)
    if q:
        like = f"%{q.strip()}%"
        query = query.where(or_(Product.external_id.ilike(like), Product.name.ilike(like)))
    query = query.group_by(Product.external_id, Product.name)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.execute(
        query.order_by(func.sum(PurchaseLine.quantity).desc(), Product.external_id).limit(limit)
    ).all()
    return (
        [
            {"product_id": r[0], "product_name": r[1], "total_sold": float(r[2]), "transactions": int(r[3])}
            for r in rows
        ],
        int(total or 0),
    )


def dead_stock_report(
    user=None, store: str | None = None, q: str | None = None, ratio: float | None = None
) -> DeadStockReport:
    """The dead-stock list the user may see (their store's stock rows; all stores for admins).

    Args:
        user: the viewer (None: all stores, e.g. the CLI).
        store: an admin's store filter (name or id).
        q: product id or name filter (case-insensitive substring).
        ratio: sold ratio below which stock is dead (default: the bundles.dead_stock_ratio setting).
    Returns:
        DeadStockReport. Stock rows with initial_stock 0/missing, total_sold missing and the like
        are in ``errors`` (never divided by); products sold but absent from the stock file are in
        ``unknown``, not guessed.
    """
    threshold = float(ratio if ratio is not None else settings_service.get("bundles.dead_stock_ratio"))
    store_id, nothing = _scope(user, store)
    stock = pd.DataFrame(columns=STOCK_FRAME_COLUMNS) if nothing else _stock_frame(store_id)
    report = DeadStockReport(has_stock=not stock.empty, threshold=threshold)
    if stock.empty:
        return report
    dead, errors, report.healthy = _dead_per_store(stock, threshold)
    report.checked = len(stock)
    if q:
        dead, errors = dead[_matches(dead, q)], errors[_matches(errors, q)]
    report.dead, report.errors = _records(dead), _records(errors)
    report.value_tied_up = float(dead["stock_value"].fillna(0).sum()) if len(dead) else 0.0
    report.unpriced = int(dead["stock_value"].isna().sum()) if len(dead) else 0
    report.unknown, report.unknown_total = unknown_products(store_id, q)
    return report


# --------------------------------------------------------------------------- mining


def parameters(**overrides) -> dict:
    """Mining parameters: the settings, replaced by any override that is not None.

    ``min_baskets`` (a count of baskets) replaces the old ``min_support`` (a share of baskets): the
    share that finds suggestions depends on the store's size, a number of baskets does not.
    """
    values = settings_service.all_values()
    params = {name: float(values[key]) for name, key in PARAM_KEYS.items()}
    params.update({k: float(v) for k, v in overrides.items() if k in PARAM_KEYS and v is not None})
    params["min_baskets"] = max(1, int(round(params["min_baskets"])))
    return params


def _window(lines: pd.DataFrame, n_baskets: int) -> dict:
    named = lines["customer_id"].notna()
    return {
        "from": str(lines["purchase_date"].min()),
        "to": str(lines["purchase_date"].max()),
        "lines": int(len(lines)),
        "customers": int(lines.loc[named, "customer_id"].nunique()),
        "transactions": int(lines["transaction_id"].nunique()),
        "baskets": int(n_baskets),
    }


def _with_names(lines: pd.DataFrame) -> pd.DataFrame:
    """load_lines() has no product names; add them from the products table."""
    names = dict(db.session.execute(select(Product.external_id, Product.name)).all())
    ids = lines["product_id"].astype(object)
    return lines.assign(product_name=ids.map(names).fillna(ids))


def _dead_products(dead: pd.DataFrame) -> pd.DataFrame:
    """One row per dead-stock product (dead in at least one store): its worst sold ratio, the stock value
    tied up in every store where it is dead (NaN when no such row has a price)."""
    if dead.empty:
        return pd.DataFrame(columns=["product_id", "product_name", "sold_ratio", "stock_value"])
    frame = dead.dropna(subset=["product_id"]).assign(
        sold_ratio=lambda f: pd.to_numeric(f["sold_ratio"], errors="coerce"),
        stock_value=lambda f: pd.to_numeric(f["stock_value"], errors="coerce"),
    )
    return (
        frame.groupby("product_id", sort=True)
        .agg(
            product_name=("product_name", "first"),
            sold_ratio=("sold_ratio", "min"),
            stock_value=("stock_value", lambda s: s.sum(min_count=1)),
        )
        .reset_index()
    )


def _fewer_baskets(lines, dead, params) -> tuple[int | None, int]:
    """When nothing passes: the largest smaller basket count that finds suggestions, and how many."""
    tried = sorted({b for b in (params["min_baskets"] // 2, params["min_baskets"] // 4, 3, 2) if 1 < b}, reverse=True)
    for baskets in (b for b in tried if b < params["min_baskets"]):
        found = suggestions.dead_stock_suggestions(
            lines, dead, baskets, params["min_confidence"], params["min_lift"], MAX_LEN
        )
        if len(found):
            return baskets, int(len(found))
    return None, 0


@jobs.job(JOB)
def train(
    progress=_quiet,
    min_baskets: int | None = None,
    min_confidence: float | None = None,
    min_lift: float | None = None,
    dead_stock_ratio: float | None = None,
) -> dict:
    """Find one bundle suggestion per dead-stock product on the stored transactions; store them as the model.

    A suggestion puts a dead-stock product (the consequent, the only item staff are asked to move) next to
    one product bought with it in at least ``min_baskets`` baskets (``suggestions.dead_stock_suggestions``).
    Rules are stored most stock value to clear first, so their id order is the page's rank. Parameters
    default to the settings; when nothing passes, nothing is stored (the previous suggestions stay) and the
    message says which smaller basket count would find some.

    Returns:
        {"message", "rules", "baskets", "dead_products", "params", "suggested_baskets",
        "suggested_rules", "model_id"} (JSON-safe).
    Raises:
        JobError: no purchase lines or no stock file yet (nothing to mine on).
    """
    params = parameters(
        min_baskets=min_baskets, min_confidence=min_confidence, min_lift=min_lift, dead_stock_ratio=dead_stock_ratio
    )
    progress(0.05, "reading stock levels")
    stock = _stock_frame()
    if stock.empty:
        raise JobError("No stock file imported yet: import one so we know which products are dead stock.")
    dead_rows, _errors, _healthy = _dead_per_store(stock, params["dead_stock_ratio"])
    dead = _dead_products(dead_rows)
    dead_ids = dead["product_id"].tolist()
    progress(0.15, "reading purchase lines")
    lines = load_lines()
    if lines.empty:
        raise JobError("No purchase lines yet: import a transactions file first.")
    lines = _with_names(lines)
    n_baskets = int(lines.loc[lines["quantity"] > 0, "transaction_id"].nunique())
    progress(0.35, f"mining pairs in at least {params['min_baskets']:,} baskets ({len(dead_ids)} dead-stock products)")
    with threadpool_limits(limits=1):  # the host is small and shared: no thread pools
        found = suggestions.dead_stock_suggestions(
            lines, dead, params["min_baskets"], params["min_confidence"], params["min_lift"], MAX_LEN
        )
        suggested, suggested_rules = _fewer_baskets(lines, dead, params) if found.empty else (None, 0)
    params["min_support"] = params["min_baskets"] / n_baskets if n_baskets else 0.0  # what the count means here
    sold = int(len(set(dead_ids) & set(lines["product_id"].astype(object))))
    summary = {
        "rules": int(len(found)),
        "baskets": n_baskets,
        "dead_products": len(dead_ids),
        "params": params,
        "suggested_baskets": suggested,
        "suggested_rules": suggested_rules,
        "model_id": None,
    }
    if found.empty:
        message = f"No suggestion with at least {params['min_baskets']:,} baskets behind it"
        if suggested:
            message += f"; {suggested_rules:,} with {suggested:,} baskets"
        return {**summary, "message": message}

    progress(0.9, f"storing {len(found):,} suggestions")
    value = float(found["stock_value"].fillna(0).sum())
    metrics = {
        "rules": summary["rules"],
        "baskets": n_baskets,
        "dead_products": len(dead_ids),
        "dead_products_sold": sold,
        "dead_with_suggestion": int(found["product_id"].nunique()),
        "stock_value_to_clear": value,
    }
    per_item = {
        str(r.product_id): {
            "stock_value": None if pd.isna(r.stock_value) else float(r.stock_value),
            "sold_ratio": None if pd.isna(r.sold_ratio) else float(r.sold_ratio),
        }
        for r in found.itertuples()
    }
    record = model_store.save(
        "bundles",
        {},
        data_window=_window(lines, n_baskets),
        metrics=metrics,
        params={**params, "max_len": MAX_LEN},
        extra={"dead_stock": per_item},
    )
    db.session.flush()
    old = select(ModelRecord.id).where(ModelRecord.name == "bundles", ModelRecord.id != record.id)
    db.session.execute(delete(BundleRule).where(BundleRule.model_id.in_(old)))  # superseded rules
    for r in found.itertuples():  # one at a time, in rank order: the ids are the ranking (a few hundred rows)
        db.session.execute(
            BundleRule.__table__.insert().values(
                model_id=record.id,
                antecedents=list(r.antecedents),
                consequents=[r.product_id],
                antecedent_names=r.antecedent_names,
                consequent_names=r.product_name,
                support=float(r.support),
                confidence=float(r.confidence),
                lift=float(r.lift),
                baskets=int(r.baskets),
            )
        )
    db.session.commit()
    message = (
        f"{len(found):,} bundle suggestion{'s' * (len(found) != 1)} for dead stock from {n_baskets:,} baskets, "
        f"each bought with its product in at least {params['min_baskets']:,} baskets ({len(dead_ids)} dead-stock "
        f"products, {sold} of them ever sold; {money(value)} of stock to clear)"
    )
    return {**summary, "message": message, "model_id": record.id}


# --------------------------------------------------------------------------- reading the rules


def active_model() -> ModelRecord | None:
    """The bundles model whose rules the page shows (the latest active record)."""
    return db.session.scalar(
        select(ModelRecord)
        .where(ModelRecord.name == "bundles", ModelRecord.active.is_(True))
        .order_by(ModelRecord.trained_at.desc(), ModelRecord.id.desc())
        .limit(1)
    )


def rules_query(model: ModelRecord | None, q: str | None = None):
    """``select(BundleRule)`` of the model, filtered by product name/id (q, case-insensitive)."""
    query = select(BundleRule).where(BundleRule.model_id == (model.id if model is not None else -1))
    if q:
        like = f"%{q.strip()}%"
        query = query.where(or_(BundleRule.antecedent_names.ilike(like), BundleRule.consequent_names.ilike(like)))
    return query


def latest_run() -> Job | None:
    """The latest mining job started from a page (``flask train`` runs leave no job row)."""
    return db.session.scalars(
        select(Job).where(Job.func.in_(JOB_FUNCS)).order_by(Job.created_at.desc()).limit(1)
    ).first()


def display_names(rules: list[BundleRule]) -> dict[str, str]:
    """Product id -> the name shown in pitches; names shared by several ids get the id added."""
    ids = {i for r in rules for i in [*(r.antecedents or []), *(r.consequents or [])]}
    if not ids:
        return {}
    names = dict(
        db.session.execute(select(Product.external_id, Product.name).where(Product.external_id.in_(ids))).all()
    )
    shared = set(
        db.session.scalars(
            select(Product.name)
            .where(Product.name.in_(set(names.values())))
            .group_by(Product.name)
            .having(func.count() > 1)
        )
    )
    out = {i: (f"{n} ({i})" if n in shared else n) or i for i, n in names.items()}
    for r in rules:  # one-product sides: the name the rule was mined with
        if len(r.antecedents or []) == 1 and r.antecedent_names:
            out[r.antecedents[0]] = r.antecedent_names
        if len(r.consequents or []) == 1 and r.consequent_names:
            out[r.consequents[0]] = r.consequent_names
    return out


_STARS = re.compile(r"\*([^*]+)\*")


def pitch_html(rule: BundleRule, names: dict[str, str]) -> Markup:
    """The rule as the sentence a manager acts on, product names in bold (escaped)."""
    text = bundling.pitch(
        {
            "antecedents": rule.antecedents,
            "consequents": rule.consequents,
            "confidence": rule.confidence,
            "lift": rule.lift,
            "baskets": rule.baskets,
        },
        names,
    )
    return Markup(_STARS.sub(r"<strong>\1</strong>", str(escape(text))))


@dataclass
class Lookup:
    """Answer to "I am selling X — what dead stock fits with it?"."""

    query: str
    products: list[dict]
    rules: list[BundleRule]
    names: dict[str, str]
    message: str = ""


def lookup(product: str, model: ModelRecord | None = None, limit: int = 20) -> Lookup:
    """Rules whose antecedent holds the product (by id, exact, or id/name substring, case-insensitive)."""
    text = (product or "").strip()
    model = model if model is not None else active_model()
    if not text:
        return Lookup(text, [], [], {}, "Type a product name or id.")
    exact = db.session.execute(
        select(Product.external_id, Product.name).where(func.lower(Product.external_id) == text.lower())
    ).all()
    like = f"%{text}%"
    found = (
        exact
        or db.session.execute(
            select(Product.external_id, Product.name)
            .where(or_(Product.name.ilike(like), Product.external_id.ilike(like)))
            .order_by(Product.name, Product.external_id)
            .limit(limit + 1)
        ).all()
    )
    products = [{"product_id": pid, "product_name": name} for pid, name in found[:limit]]
    if not products:
        return Lookup(text, [], [], {}, f"No product matches “{text}”.")
    if model is None:
        return Lookup(text, products, [], {}, "No bundle rules mined yet.")
    ids = {p["product_id"] for p in products}
    rules = [
        r
        for r in db.session.scalars(select(BundleRule).where(BundleRule.model_id == model.id))
        if ids & set(r.antecedents or [])
    ]
    # the product on its own first (the shelf it is already on), then with one more product; most baskets first
    rules.sort(key=lambda r: (len(r.antecedents), -r.baskets, -r.confidence, r.id))
    message = ""
    if not rules:
        what = products[0]["product_name"] if len(products) == 1 else f"{len(products)} matching products"
        params = model.manifest.get("params", {})
        floor = f"in {params['min_baskets']:,} baskets" if "min_baskets" in params else "at the mined support"
        message = f"No dead stock is bought often enough with {what} ({floor} or more)."
    return Lookup(text, products, rules, display_names(rules), message)


def pct(fraction: float) -> str:
    """A support as the page writes it (0.005 -> "0.5")."""
    return f"{fraction * 100:.3g}"


def start_mining(user, **params) -> Job:
    """Queue a mining run with the page's parameters; it mines the whole chain's baskets (chain-wide job)."""
    return jobs.enqueue(
        JOB,
        f"Mine bundles with at least {params['min_baskets']:,} baskets",
        user.email,
        scope_store_id=None,
        **params,
    )


def dead_item(model: ModelRecord | None, rule: BundleRule) -> dict:
    """The dead-stock item a suggestion moves: its id, name, worst sold ratio and the stock value it can clear."""
    pid = (rule.consequents or [None])[0]
    facts = ((model.manifest or {}).get("dead_stock") or {}).get(str(pid), {}) if model is not None else {}
    return {
        "product_id": pid,
        "name": rule.consequent_names or pid,
        "stock_value": facts.get("stock_value"),
        "sold_ratio": facts.get("sold_ratio"),
    }
