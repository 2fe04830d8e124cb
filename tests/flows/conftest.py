"""Fixtures for the automations tests: the recording fake Twilio."""

from __future__ import annotations

import pytest

from tests.flows.helpers import AUTH_TOKEN
from tests.sms.fake_twilio import FakeTwilio


@pytest.fixture
def fake_twilio():
    with FakeTwilio(auth_token=AUTH_TOKEN) as fake:
        yield fake
