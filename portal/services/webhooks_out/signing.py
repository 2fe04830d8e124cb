"""The signature on every delivery: HMAC-SHA256 over "<timestamp>.<body>" with the endpoint's secret.

Header: ``Loyalist-Signature: t=<unix seconds>,v1=<hex digest>``. A receiver recomputes the digest
over the raw body it received, compares in constant time, and refuses timestamps older than a few
minutes (replays). ``verify`` is that receiver, used by the tests; docs/api.md shows it standalone.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Loyalist-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent at ``timestamp`` (default: now)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, now: float | None = None, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and is recent enough."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
