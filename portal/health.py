"""Health endpoints for a load balancer: /healthz (process up) and /readyz (dependencies)."""

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from portal import model_store
from portal.extensions import db

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """Ready when the database answers, Redis does (if configured) and every trained model loads."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        db.session.rollback()
        checks["database"] = f"error: {type(exc).__name__}"
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        try:
            import redis

            redis.Redis.from_url(redis_url, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    try:
        broken = {f: e["state"] for f, e in model_store.status().items() if e["state"] != "ok"}
        checks["models"] = "ok" if not broken else "; ".join(f"{f}: {s}" for f, s in broken.items())
    except Exception as exc:
        checks["models"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), (200 if ready else 503)
