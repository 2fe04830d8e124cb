"""Browser-test harness: Playwright driving Debian's Chromium against a live server on a free port.

The session starts the real app (gunicorn, one worker with threads, as ``make run`` does) on a fresh
SQLite file after ``flask init-db`` and a small seed, then hands tests a ``page`` and a ``shot(page,
name)`` that saves a full-page screenshot to docs/screenshots/<name>.png (overwritten each run).

When /usr/bin/chromium is missing the browser tests are skipped with the reason, unless the
environment variable CI is set: then they fail, so CI never passes without running them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Passwords must not contain the part of the e-mail before the @ (accounts.check_password_strength).
ADMIN = ("admin@example.com", "sea-otter-lantern-81")
MARKETER = ("marketer@example.com", "copper-kettle-harbor-22")
MANAGER = ("manager@example.com", "violet-meadow-compass-63")
DEMO_TIMEOUT = 600  # flask demo imports ~5,000 customers and trains every model

# Quiet hours off, so "send as soon as confirmed" sends now whatever the time of day in the demo stores.
NO_QUIET_HOURS = r'''
from app import create_app
from portal.extensions import db
from portal.services import settings

app = create_app()
with app.app_context():
    errors = settings.update({"sms.quiet_start": "00:00", "sms.quiet_end": "00:00"}, "browser-tests")
    assert not errors, errors
    db.session.commit()
'''

# Seed run inside the server's environment (a subprocess, so the test process never imports the app
# with the server's configuration). Deterministic: tests assert on these rows.
SEED = r'''
from datetime import datetime, timezone
from decimal import Decimal
from app import create_app
from portal.extensions import db
from portal.models import Customer, Store

app = create_app()
with app.app_context():
    north, south = Store(name="North", timezone="UTC"), Store(name="South", timezone="UTC")
    db.session.add_all([north, south])
    db.session.flush()
    scored = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)
    tiers = ["Gold", "Silver", "Gold", "Bronze", "Platinum", "Gold", None, "Silver"]
    bands = ["High", "Low", "Medium", "High", "Low", "High", None, "Medium"]
    consent = ["opted_in", "opted_in", "opted_out", "unknown", "opted_in", "opted_in", "unknown", "opted_in"]
    names = ["Ada Lovelace", "Brian Kernighan", "Claude Shannon", "Dorothy Vaughan", "Edsger Dijkstra",
             "=cmd|' /C calc'!A0", "Grace Hopper", "Hedy Lamarr"]
    for i in range(8):
        db.session.add(Customer(
            external_id=f"B{i + 1:03d}", name=names[i], phone=f"+1202555{i + 100:04d}",
            email=f"c{i + 1}@example.com", store_id=(north if i % 2 == 0 else south).id,
            sms_consent=consent[i], tier=tiers[i], churn_band=bands[i],
            churn_probability=None if bands[i] is None else [0.9, 0.1, 0.5, 0.8, 0.2, 0.75, 0, 0.4][i],
            monetary=Decimal(100 * (i + 1)) + Decimal("0.50"), frequency=3 + i, recency=10 * (i + 1),
            total_quantity=float(5 * (i + 1)), num_unique_products=2 + i, avg_price_per_unit=9.5 + i,
            store_visit_frequency=3 + i, active_days=60 + 10 * i, avg_purchase_gap_days=20.0 + i,
            scored_at=scored))
    db.session.commit()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, env, **kw):
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180, **kw
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def run_long(args, env, timeout, **kw):
    """Run ``python ARGS`` in the repository with ``env``; raise with the output tail when it fails."""
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@contextmanager
def gunicorn(env: dict, tmp: Path, port: int, what: str, start_timeout: float):
    """Serve the app with gunicorn (1 process, 4 threads) on ``port``; yield its base URL once /healthz answers."""
    log = open(tmp / "server.log", "w")
    command = ["-m", "gunicorn", "--config", "gunicorn.conf.py", "--workers", "1", "--threads", "4", "app:create_app()"]
    server = subprocess.Popen([sys.executable, *command], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            log.close()
            raise RuntimeError(f"the {what} server did not start:\n" + (tmp / "server.log").read_text()[-3000:])
        time.sleep(0.3)
    try:
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def server_env(tmp: Path, name: str) -> tuple[int, dict]:
    """A free port and the environment of a portal served from ``tmp``: a fresh SQLite file ``<name>.db``,
    Models and uploads under ``tmp``, the test admin, no Redis, no PostgreSQL, no Twilio credentials."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"}
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp / (name + '.db')}",
        SECRET_KEY=f"browser-{name}-secret",
        FLASK_APP="app.py",
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        BIND=f"127.0.0.1:{port}",
        MODELS_DIR=str(tmp / "Models"),
        UPLOAD_DIR=str(tmp / "uploads"),
        PYTHONUNBUFFERED="1",
    )
    return port, env


def serve_demo(tmp: Path, prepare=()):
    """Yield the base URL of the portal over a database filled by ``flask demo`` (data imported, models trained).

    A fresh SQLite file and Models directory under ``tmp``; quiet hours off; then each ``prepare(env)`` runs
    (e.g. CLI commands that add a campaign) before gunicorn starts. Used by module-scoped fixtures, so each
    test module gets a demo store of its own and never sees another module's campaigns or imports.
    """
    port, env = server_env(tmp, "demo")
    run_long(["-m", "flask", "demo"], env, DEMO_TIMEOUT)
    run_long(["-"], env, 120, input=NO_QUIET_HOURS)
    for step in prepare:
        step(env)
    with gunicorn(env, tmp, port, "demo", 90) as base:
        yield base


def browser_page(browser, base_url, width=1280, height=900):
    """A new page on ``base_url`` that records script errors, CSP violations and failed requests."""
    context = browser.new_context(base_url=base_url, accept_downloads=True, viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and not m.text.startswith("Failed to load resource") else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith("/favicon.ico") else None
        ),
    )
    page.js_errors = errors
    return page


@pytest.fixture(scope="session")
def chromium_path():
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def live_server(chromium_path, tmp_path_factory):
    """The portal served by gunicorn on a free port with a fresh, seeded SQLite database."""
    tmp = tmp_path_factory.mktemp("live")
    port, env = server_env(tmp, "browser")
    _run(["-m", "flask", "init-db"], env)
    _run(["-"], env, input=SEED)
    for (email, password), role, store in ((MARKETER, "marketer", None), (MANAGER, "manager", "North")):
        _run(
            [
                "-m",
                "flask",
                "users",
                "create",
                email,
                "--role",
                role,
                "--password-stdin",
                *(["--store", store] if store else []),
            ],
            env,
            input=password + "\n",
        )
    with gunicorn(env, tmp, port, "live", 60) as base:
        yield base


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, live_server):
    # Script errors, CSP violations and failed requests (the browser's own /favicon.ico probe aside).
    page = browser_page(browser, live_server)
    yield page
    page.context.close()


@pytest.fixture()
def shot():
    """Save a full-page screenshot of ``page`` as docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture()
def log_in():
    def do(page, who=MARKETER):
        page.goto("/login")
        page.get_by_label("E-mail").fill(who[0])
        page.get_by_label("Password").fill(who[1])
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)

    return do
