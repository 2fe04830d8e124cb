"""Structured logs: one JSON line per request (duration, user id, route, status); phone numbers
masked and secrets never written, whatever a message contains."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from urllib.parse import quote, unquote_plus

from flask import Flask, g, request
from flask_login import current_user

PHONE = re.compile(r"\+?\d[\d ().-]{7,}\d")
SECRET_KEYS = re.compile(r"(password|token|secret|auth|csrf)[^=:\s]*[=:]\s*\S+", re.IGNORECASE)


EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
# Printable ASCII stays as it is in a masked URL; control characters and the rest are %-encoded again.
URL_SAFE = "".join(chr(c) for c in range(0x20, 0x7F))


def mask(text: str) -> str:
    """Hide phone numbers (keep the last 2 digits) and key=value secrets in a log message."""
    text = PHONE.sub(lambda m: "*" * max(len(m.group()) - 2, 0) + m.group()[-2:], text)
    return SECRET_KEYS.sub(lambda m: m.group(1) + "=***", text)


def mask_url(url: str) -> str:
    """Mask phones, e-mails and secrets in a request line, path or query string (decoded first).

    Query strings arrive %-encoded (``%2B1202…``, ``ann%40example.com``), where the patterns
    would miss them; an unchanged URL is returned exactly as it came.
    """
    decoded = unquote_plus(url)
    masked = EMAIL.sub(lambda m: m.group()[0] + "***@" + m.group().split("@", 1)[1], mask(decoded))
    return url if masked == decoded else quote(masked, safe=URL_SAFE)


class MaskingFilter(logging.Filter):
    """Applied to every handler of the app's loggers so no record escapes unmasked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("route", "method", "status", "duration_ms", "user_id", "path"):
            if hasattr(record, key):
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(payload)


def register(app: Flask) -> None:
    """Install the JSON handler with masking on the root logger (once) and the per-request log line."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) and not app.testing:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler.addFilter(MaskingFilter())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    for handler in root.handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
    access = logging.getLogger("loyalist.request")

    @app.before_request
    def _start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        started = g.get("request_started")
        if started is not None and request.endpoint != "static":
            user_id = current_user.id if current_user and current_user.is_authenticated else None
            access.info(
                "request",
                extra={
                    "route": request.url_rule.rule if request.url_rule else None,
                    "method": request.method,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "user_id": user_id,
                    "path": request.path,
                },
            )
        return response
