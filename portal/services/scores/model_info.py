"""What the Models, help, tiers and churn pages say about each trained model, and starting a training run."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from portal import jobs, model_store
from portal.extensions import db
from portal.models import Job, ModelRecord
from portal.services.scores import training

TITLES = {
    "segmentation": "Loyalty tiers (K-Means)",
    "churn": "Churn risk (classifier)",
    "clv": "Lifetime value (MBG/NBD + Gamma-Gamma)",
    "bundles": "Dead-stock bundles (association rules)",
}
TRAIN_JOBS = {name: f"train.{name}" for name in (*training.MODELS, "all")}


def _active_records() -> dict[str, ModelRecord]:
    rows = db.session.scalars(select(ModelRecord).where(ModelRecord.active.is_(True)).order_by(ModelRecord.trained_at))
    return {r.name: r for r in rows}


def model_cards() -> tuple[list[dict], str | None]:
    """One card per model for the Models page (record, files and their state), and a problem reading the store."""
    try:
        status = model_store.status()
    except model_store.ModelUnavailable as exc:
        status, problem = {}, str(exc)
    else:
        problem = None
    records = _active_records()
    cards = []
    for name in training.MODELS:
        files = [status[f] for f in model_store.FILES[name] if f in status]
        cards.append(
            {
                "name": name,
                "title": TITLES[name],
                "record": records.get(name),
                "files": files,
                "entry": files[0] if files else None,
                "broken": [f for f in files if f["state"] != "ok"],
            }
        )
    return cards, problem


def latest_training(user) -> Job | None:
    """The latest training job, when ``user`` may see it (training is chain-wide: admins and its starter)."""
    latest = db.session.scalars(
        select(Job).where(Job.func.in_(TRAIN_JOBS.values())).order_by(Job.created_at.desc()).limit(1)
    ).first()
    return jobs.get(latest.id) if latest is not None and jobs.visible_to(latest, user) else None


def start_training(name: str, user) -> Job:
    """Queue the training of model ``name`` (or "all") on every store's data."""
    return jobs.enqueue(TRAIN_JOBS[name], f"Train {name}", user.email, scope_store_id=None)


def _when(value) -> datetime | None:
    """A manifest's ISO timestamp as an aware datetime (stored in UTC; SQLite hands it back naive)."""
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
    records = _active_records()
    facts = []
    for name in training.MODELS:
        file_name = next(iter(model_store.FILES[name]), None)
        title = TITLES[name]
        entry = status.get(file_name) if file_name else None
        record = records.get(name)
        if entry is None and (file_name is not None or record is None):
            facts.append({"name": name, "title": title, "trained": False})
            continue
        manifest = entry if entry is not None else {**record.manifest, "trained_at": record.trained_at, "state": "ok"}
        facts.append(
            {
                "name": name,
                "title": title,
                "trained": True,
                "trained_at": _when(manifest.get("trained_at")),
                "window": manifest.get("data_window") or {},
                "metrics": manifest.get("metrics") or {},
                "params": manifest.get("params") or {},
                "state": manifest.get("state", "ok"),
                "manifest": manifest,
                "record": record,
            }
        )
    return facts


def file_entry(model: str) -> dict | None:
    """The manifest entry of model ``model``'s main file (None: not trained yet)."""
    return model_store.entry(model_store.FILES[model][0])


def file_state(model: str) -> str | None:
    """ "ok", "missing" or why model ``model``'s main file is refused (a hash mismatch); None: never trained."""
    name = model_store.FILES[model][0]
    if model_store.entry(name) is None:
        return None
    return model_store.status().get(name, {}).get("state")
