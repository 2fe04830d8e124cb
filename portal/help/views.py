"""The in-app help page: what each number means, and what the models know and when they were trained."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, render_template
from sqlalchemy import select

from portal import model_store
from portal.extensions import db
from portal.models import ModelRecord
from portal.services import settings as settings_service

bp = Blueprint("help", __name__)

MODELS = (  # (model name, manifest file or None when the model has no pickle, title)
    ("segmentation", "CS_model.pkl", "Loyalty tiers (K-Means)"),
    ("churn", "churn_model.pkl", "Churn risk"),
    ("clv", "clv_model.pkl", "Lifetime value (BG/NBD + Gamma-Gamma)"),
    ("bundles", None, "Dead-stock bundles (association rules)"),
)


def _when(value) -> datetime | None:
    """A manifest's ISO timestamp as an aware datetime (the |datetime filter shows it in the store's zone).

    Timestamps are stored in UTC; SQLite hands them back without a zone, so a naive one is UTC.
    """
    if value is None:
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def model_facts() -> list[dict]:
    """Per model, live from the manifest (and the database record): trained when, on which data, state."""
    try:
        status = model_store.status()
    except model_store.ModelUnavailable:
        status = {}
    records = {r.name: r for r in db.session.scalars(select(ModelRecord).where(ModelRecord.active.is_(True))
                                                     .order_by(ModelRecord.trained_at))}
    facts = []
    for name, file_name, title in MODELS:
        entry = status.get(file_name) if file_name else None
        record = records.get(name)
        if entry is None and (file_name is not None or record is None):
            facts.append({"name": name, "title": title, "trained": False})
            continue
        manifest = entry if entry is not None else {**record.manifest, "trained_at": record.trained_at, "state": "ok"}
        facts.append({"name": name, "title": title, "trained": True, "trained_at": _when(manifest.get("trained_at")),
                      "window": manifest.get("data_window") or {}, "metrics": manifest.get("metrics") or {},
                      "params": manifest.get("params") or {}, "state": manifest.get("state", "ok"),
                      "manifest": manifest, "record": record})
    return facts


@bp.route("/help")
def index():
    return render_template("help/index.html", models=model_facts(), values=settings_service.all_values())
