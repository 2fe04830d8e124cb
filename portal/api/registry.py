"""/api/v1/models: which models are trained, when, on which data, with which metrics (the Models page)."""

from __future__ import annotations

import math

from flask.views import MethodView

from portal.api import schemas
from portal.api.common import make_blueprint
from portal.services.scores import model_info

blp = make_blueprint("api_models", "/models", "Trained models: segmentation, churn, CLV, bundles.")


def _finite(value):
    """JSON has no NaN or infinity: such metrics (e.g. an AUC with one class) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@blp.route("")
class Models(MethodView):
    @blp.response(200, schemas.ModelListSchema)
    def get(self):
        """Every model with its state, training time, data window and stored metrics."""
        items = []
        for fact in model_info.model_facts():
            items.append(
                {
                    "name": fact["name"],
                    "title": fact["title"],
                    "trained": fact["trained"],
                    "trained_at": fact.get("trained_at"),
                    "state": fact.get("state"),
                    "window": _finite(fact.get("window")),
                    "metrics": _finite(fact.get("metrics")),
                }
            )
        return {"items": items}
