"""schemathesis over every operation of /api/v1, against the app served on a real socket.

A small store is seeded and trained (so scores, a campaign, a segment and bundle rules exist), an admin
token is made, and for each operation of the OpenAPI document schemathesis generates requests (valid
and invalid) and checks that no answer is a 5xx and that every answer — status code, content type,
headers and body — matches the document. Marked slow: ``make test`` runs it on SQLite and ``.ci/run``
runs this module again on PostgreSQL with Redis.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update
from werkzeug.serving import make_server

from portal.models import OutboxMessage
from portal.services import api_tokens
from portal.services.campaigns import campaigns
from portal.services.lists import segments
from portal.services.scores import training
from tests.conftest import synthetic_lines

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "40"))


@pytest.fixture()
def live_api(app, db, seed_lines, make_user):
    """The test app on 127.0.0.1:<free port> in a thread, with a seeded store and an admin's token."""
    store = seed_lines(synthetic_lines(n_customers=60, days=500, seed=3))
    training.train_all()
    admin = make_user("admin")
    for customer_id in (1, 2, 3):
        from portal.models import Customer

        db.session.get(Customer, customer_id).sms_consent = "opted_in"
        db.session.get(Customer, customer_id).sms_consent_at = datetime.now(timezone.utc) - timedelta(days=9)
        db.session.get(Customer, customer_id).phone = f"+1202555014{customer_id}"
    db.session.commit()
    campaigns.create_campaign(
        "Fuzz",
        {"store": store.name},
        "Hi {first_name}, code {code}",
        control_share=0,
        user=admin,
        expires_at=datetime.now(timezone.utc) + timedelta(days=30),
    )
    db.session.execute(update(OutboxMessage).values(status="dry-run", sent_at=datetime.now(timezone.utc)))
    db.session.commit()
    segments.create("Gold", "customers", "tier=Gold", admin)
    _, secret = api_tokens.create(admin, "schemathesis", None, admin)
    app.config["API_RATE_LIMIT"] = "100000 per minute"
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", secret
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.config["API_RATE_LIMIT"] = "600 per minute"


def test_every_operation_answers_as_documented_and_never_5xx(live_api):
    base, secret = live_api
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {secret}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 13  # every method of every path

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)

        run()
