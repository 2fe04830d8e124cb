"""Outgoing webhooks: registered on the admin page, signed as docs/api.md says, retried after a 500."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from portal import jobs
from portal.models import Job, WebhookDelivery
from tests.conftest import post_form


class Receiver:
    """The receiver of docs/api.md (standard library only), answering from a list of status codes."""

    def __init__(self, answers):
        self.secret = b""
        self.answers = list(answers)
        self.received = []  # (verified, body)
        outer = self

        def verified(body: bytes, header: str, tolerance: int = 300) -> bool:
            parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
            if not parts.get("t", "").isdigit() or abs(time.time() - int(parts["t"])) > tolerance:
                return False
            expected = hmac.new(outer.secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, parts.get("v1", ""))

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((verified(body, self.headers.get("Loyalist-Signature", "")), json.loads(body)))
                self.send_response(outer.answers.pop(0) if outer.answers else 204)
                self.end_headers()
                self.wfile.write(b"receiver says hi")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/loyalist"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture()
def receiver():
    made = []

    def make(answers=()):
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for r in made:
        r.close()


def register(client, url, events):
    response = post_form(client, "/admin/webhooks", {"url": url, "events": events, "description": "CRM"})
    assert response.status_code == 200
    match = re.search(r'id="webhook-secret".*?<code[^>]*>([^<]+)</code>', response.get_data(as_text=True), re.S)
    return match.group(1)


def test_an_event_is_signed_verifiably_and_retried_after_a_500(
    app, db, client, login_as, api_as, make_customer, receiver
):
    login_as("admin")
    hook = receiver(answers=[500])
    hook.secret = register(client, hook.url, ["customer.opted_out"]).encode()
    assert hook.secret.startswith(b"whsec_")
    assert hook.secret.decode() not in client.get("/admin/webhooks").get_data(as_text=True)  # shown once

    customer = make_customer()
    api = api_as("admin", email="till@example.com")
    assert api.post(f"/api/v1/customers/{customer.id}/consent", json={"status": "opted_out"}).status_code == 200

    delivery = db.session.scalar(select(WebhookDelivery))
    assert delivery.status == "retrying" and delivery.attempts == 1 and delivery.last_status_code == 500
    assert delivery.next_attempt_at is not None
    assert len(hook.received) == 1 and hook.received[0][0] is True  # signature verified by the receiver
    event = hook.received[0][1]
    assert event["type"] == "customer.opted_out" and event["data"]["external_id"] == customer.external_id

    retry = db.session.scalar(select(Job).where(Job.func == "webhooks.deliver", Job.status == "scheduled"))
    assert retry is not None and retry.kwargs == {"delivery_id": delivery.id}
    jobs.run_job(retry.id)  # the scheduler's turn comes
    db.session.expire_all()
    delivery = db.session.get(WebhookDelivery, delivery.id)
    assert delivery.status == "delivered" and delivery.attempts == 2 and delivery.last_status_code == 204
    assert len(hook.received) == 2 and hook.received[1] == (True, event)  # same event, same id
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert "delivered" in page and "customer.opted_out" in page


def test_a_wrong_secret_fails_verification_and_unsubscribed_events_are_not_sent(
    app, db, client, login_as, api_as, make_customer, receiver
):
    login_as("admin")
    hook = receiver()
    secret = register(client, hook.url, ["import.finished"])
    hook.secret = b"whsec_not-the-right-one"
    customer = make_customer()
    api = api_as("admin", email="till@example.com")
    api.post(f"/api/v1/customers/{customer.id}/consent", json={"status": "opted_out"})
    assert hook.received == []  # not subscribed to opt-outs
    batch = {
        "lines": [
            {
                "customer_id": "C1",
                "transaction_id": "T1",
                "purchase_date": "2026-10-01T10:00:00",
                "product_id": "P1",
                "quantity": 1,
                "price_per_unit": 3.0,
            }
        ]
    }
    assert api.post("/api/v1/purchases", json=batch, headers={"Idempotency-Key": "w1"}).status_code == 200
    assert len(hook.received) == 1 and hook.received[0][0] is False  # a receiver with another secret refuses it
    assert hook.received[0][1]["type"] == "import.finished"
    assert secret.encode() != hook.secret


def test_only_admins_reach_the_webhooks_page(app, client, login_as):
    login_as("manager")
    assert client.get("/admin/webhooks").status_code == 403


def test_bad_urls_are_refused(app, client, login_as):
    login_as("admin")
    response = post_form(client, "/admin/webhooks", {"url": "ftp://example.com/x", "events": ["import.finished"]})
    assert response.status_code == 200 and "http:// or https://" in response.get_data(as_text=True)
    response = post_form(client, "/admin/webhooks", {"url": "https://example.com/x"})
    assert "at least one event" in response.get_data(as_text=True)
