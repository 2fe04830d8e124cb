"""Absolute links into the portal for mail built outside any request (jobs): PORTAL_URL, no SERVER_NAME."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app

DEFAULT_URL = "http://127.0.0.1:5000"


def base_url() -> str:
    """PORTAL_URL, else PUBLIC_BASE_URL, else make run's address (say so in the docs: set PORTAL_URL)."""
    config = current_app.config
    return (config.get("PORTAL_URL") or config.get("PUBLIC_BASE_URL") or DEFAULT_URL).strip().rstrip("/")


@contextmanager
def external() -> Iterator[None]:
    """A request context whose host is PORTAL_URL, so ``url_for(..., _external=True)`` and templates build
    absolute links from a job or a command (no SERVER_NAME is set: it would change how requests route)."""
    with current_app.test_request_context("/", base_url=base_url()):
        yield
