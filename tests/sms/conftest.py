"""Fixtures for SMS tests: Prism serving Twilio's OpenAPI file, and a recording fake Twilio.

Prism comes from the project's package.json (``npm ci``). Without node_modules the Prism
contract tests are skipped on a developer machine and fail under CI (``CI`` set), so a CI run
can never pass without having exercised the real twilio client against Twilio's own spec.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_twilio import AUTH_TOKEN, FakeTwilio  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PRISM_BIN = ROOT / "node_modules" / ".bin" / "prism"
# Twilio's OpenAPI description of API v2010, as shipped by the npm package @twilio-alpha/mcp.
TWILIO_SPEC = ROOT / "node_modules" / "@twilio-alpha" / "mcp" / "twilio-oai" / "spec" / "json" / "twilio_api_v2010.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: run `npm ci` before the tests)", pytrace=False)
    pytest.skip(f"{reason}; run `npm ci` in the repository root to enable Prism contract tests")


@pytest.fixture(scope="session")
def prism():
    """Base URL of a Prism mock of Twilio's API v2010, started for the session."""
    if shutil.which("node") is None:
        _missing("node is not installed")
    if not PRISM_BIN.exists() or not TWILIO_SPEC.exists():
        _missing("Prism or Twilio's OpenAPI file is not in node_modules")
    port = _free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [str(PRISM_BIN), "mock", str(TWILIO_SPEC), "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # the 2 MB spec takes a few seconds to load
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"Prism exited ({proc.returncode}):\n{log.read().decode()[-2000:]}")
            try:
                # Any HTTP answer (401 without credentials) means it is serving.
                requests.get(f"{base}/2010-04-01/Accounts.json", timeout=2)
                break
            except requests.exceptions.RequestException:
                if time.monotonic() > deadline:
                    pytest.fail("Prism did not answer within 90 s")
                time.sleep(0.3)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture
def fake_twilio():
    """A fresh recording fake Twilio (see fake_twilio.py) for one test."""
    with FakeTwilio(auth_token=AUTH_TOKEN) as fake:
        yield fake
