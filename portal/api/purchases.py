"""/api/v1/purchases: batches of purchase lines from a till or a shop, idempotent, rescored at once."""

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
        name are rescored (features, tier, churn, CLV, lifecycle) before the answer.
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
        events = []
        if current_app.config.get("API_RESCORE", True) and result.customer_ids:
            try:
                done = incremental.rescore_customers(
                    result.customer_ids, reason=f"rescored after API import #{body['import_id']}"
                )
                body["rescored"] = {"customers": done["scored"], "seconds": done["seconds"], "mode": "incremental"}
                events += done.get("transitions", [])
            except Exception:  # the lines are committed; a scoring failure must not make the batch look failed
                log.exception("incremental rescore after API import #%s failed", body["import_id"])
                body["rescored"] = None
        batch.record_answer(token.id, key, body)
        events.append(
            (
                "import.finished",
                {"import_id": body["import_id"], "source": "api", "lines": body["accepted"], "new": body["new"]},
            )
        )
        webhooks_out.notify(events)
        return body
