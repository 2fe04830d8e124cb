"""/api/v1/purchases: batches of purchase lines from a till or a shop, idempotent, rescored within seconds."""

from __future__ import annotations

import logging

from flask import current_app
from flask.views import MethodView

from portal.api import schemas
from portal.api.common import abort_with, api_token, api_user, make_blueprint
from portal.services import webhooks_out
from portal.services.importer import batch
from portal.services.scores import incremental

log = logging.getLogger(__name__)

blp = make_blueprint("api_purchases", "/purchases", "Purchase lines (the importer's rules, all or nothing).")


@blp.route("")
class Purchases(MethodView):
    @blp.arguments(schemas.PurchaseIdempotencyHeaders, location="headers", unknown="exclude")
    @blp.arguments(schemas.PurchaseBatchSchema)
    @blp.response(200, schemas.PurchaseResultSchema)
    def post(self, headers, data):
        """Add up to 5,000 purchase lines (admins and managers), all or none, then rescore their customers.

        The lines are checked by the importer's rules (dates, amounts, stores, lengths, the store's
        "no future dates"); any problem refuses the whole batch with a 422 listing `errors.lines`
        (`row` = the line's index in `lines`, `column`, `value`, `reason`). Send a unique
        `Idempotency-Key` per batch: a retry with the same key and body returns the first answer
        (nothing is written twice); the same key with another body is a 409. The customers the lines
        name are queued for an incremental rescore (features, tier, churn, CLV, lifecycle), which a
        background job runs within seconds, together with the customers of other batches that arrive
        meanwhile; `rescore.status` says whether it has already run (`done`) or is `queued`.
        """
        key = headers["idempotency_key"]
        token, user = api_token(), api_user()
        digest = batch.request_hash(data)
        try:
            result = batch.submit(data["lines"], data.get("store"), user, token, key, digest)
        except batch.BatchRefused as exc:
            errors = {"lines": exc.problems} if exc.problems is not None else None
            abort_with(exc.status, exc.message, errors)
        if result.replayed:
            return result.body, result.status
        body = dict(result.body)
        if current_app.config.get("API_RESCORE", True) and result.customer_ids:
            try:
                queued = incremental.queue(result.customer_ids)
                waiting = incremental.waiting_among(result.customer_ids)
                body["rescore"] = {
                    "customers": queued,
                    "status": "queued" if waiting else "done",
                    "mode": "incremental",
                }
            except Exception:  # the lines are committed; a queueing failure must not make the batch look failed
                log.exception("could not queue the rescore after API import #%s", body["import_id"])
                body["rescore"] = None
        batch.record_answer(token.id, key, body)
        webhooks_out.notify(
            [
                (
                    "import.finished",
                    {
                        "import_id": body["import_id"],
                        "source": "api",
                        "kind": "transactions",
                        "status": "done",
                        "lines": body["accepted"],
                        "new": body["new"],
                        "rejected": 0,
                        "message": None,
                    },
                )
            ]
        )
        return body
