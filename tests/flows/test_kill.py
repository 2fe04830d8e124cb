"""A flows run killed with SIGKILL mid-send, then run again: every entrant gets exactly one message.

The run goes in another process against the same database and sends to the recording fake Twilio
served from this process, which holds the answer to the 10th message (Twilio has created it) while the
process is killed: that row is left 'sending', the hard case. The second run enters nobody new (the
episodes are taken) and finishes the day's campaign through the campaigns' sender, which looks the
in-doubt message up instead of sending it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.models import Campaign, Customer, FlowEntry, OutboxMessage
from portal.services.flows import runner
from tests.flows.helpers import FROM
from tests.sms.fake_twilio import ACCOUNT_SID, AUTH_TOKEN

ROOT = Path(__file__).resolve().parents[2]
N = 30
FAST = {
    "quiet_start": "00:00",
    "quiet_end": "00:00",
    "rate_per_second": 40,
    "lease_seconds": 1,
    "lookup_delay_seconds": 0,
    "backoff_base_seconds": 0.05,
}
RUNNER = r"""
import sys
from app import create_app
from portal.config import TestConfig
db_url, api_base = sys.argv[1], sys.argv[2]
config = TestConfig(database_url=db_url)
config.TWILIO_ACCOUNT_SID, config.TWILIO_AUTH_TOKEN = %(sid)r, %(token)r
config.TWILIO_FROM, config.TWILIO_API_BASE = %(from_)r, api_base
config.SMS_SEND_OPTIONS = %(fast)r
app = create_app(config)
with app.app_context():
    from portal import sms
    from portal.services.flows import runner
    runs = runner.run_all(gateway=sms.gateway_from_config(app.config))
    print(" | ".join(r.line() for r in runs), flush=True)
""" % {"sid": ACCOUNT_SID, "token": AUTH_TOKEN, "from_": FROM, "fast": FAST}


def test_flow_run_killed_mid_send_then_rerun_sends_exactly_once(db, make_store, fake_twilio, database_url):
    store = make_store("Night", timezone="UTC")
    for i in range(N):
        db.session.add(
            Customer(
                external_id=f"K{i}",
                name=f"Kim{i} Ray",
                phone=f"+1202555{4000 + i:04d}",
                store_id=store.id,
                sms_consent="opted_in",
                churn_band="High",
                last_purchase_at=datetime.now() - timedelta(days=30),
            )
        )
    flow = runner.ensure_flows(store)[0]
    flow.enabled, flow.control_share = True, 0.0
    db.session.commit()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "FLASK_"))}
    env.update(PYTHONPATH=str(ROOT), SECRET_KEY="test")
    args = [sys.executable, "-c", RUNNER, database_url, fake_twilio.base_url]

    def start():
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )

    fake_twilio.delay_next(9, seconds=0)
    fake_twilio.delay_next(1, seconds=60)  # created at Twilio; the answer never reaches the run
    proc = start()
    deadline = time.monotonic() + 120
    while len(fake_twilio.messages) < 10:
        if proc.poll() is not None:
            pytest.fail(f"the run exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("the run did not reach the 10th message")
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    db.session.expire_all()
    rows = db.session.scalars(select(OutboxMessage)).all()
    statuses = Counter(r.status for r in rows)
    assert statuses["sent"] == 9 and statuses["sending"] == 1, statuses
    time.sleep(1.1)  # the dead run's lease (1 s) runs out
    out, err = start().communicate(timeout=180)
    assert "30 already had this episode" in out, (out, err[-3000:])

    db.session.expire_all()
    rows = db.session.scalars(select(OutboxMessage)).all()
    assert {r.status for r in rows} == {"sent"} and len(rows) == N
    assert Counter(m["to"] for m in fake_twilio.messages) == Counter(r.phone for r in rows)
    assert len(fake_twilio.requests) == N  # the 10th was found at Twilio, not sent again
    assert len(db.session.scalars(select(FlowEntry)).all()) == N
    assert db.session.scalar(select(Campaign.status)) == "done"
