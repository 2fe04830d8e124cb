"""Error pages: a clear message, never a stack trace."""

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    401: "Please log in.",
    403: "You do not have access to this page.",
    404: "There is nothing here (or you do not have access to it).",
    405: "That action is not allowed here.",
    413: "The file is larger than the upload limit.",
    429: "Too many requests: wait a moment and try again.",
    500: "Something went wrong on our side. The error was logged; please try again.",
    503: "The service is not ready.",
}


def _render(status: int, message: str):
    if request.accept_mimetypes.best == "application/json" or request.path.startswith("/sms/"):
        return jsonify(error=message), status
    return render_template("errors/error.html", status=status, message=message), status


def register(app: Flask) -> None:
    for status in MESSAGES:
        if status not in (413, 500):
            app.register_error_handler(status, lambda _e, s=status: _render(s, MESSAGES[s]))

    @app.errorhandler(413)
    def too_large(_e):
        limit_mb = (app.config.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024)
        return _render(
            413, f"The file is larger than the upload limit of {limit_mb} MB. Split it, or import it with flask import."
        )

    @app.errorhandler(CSRFError)
    def csrf_error(e):
        return _render(
            400, "The form expired or was not sent from this site (missing CSRF token). Reload the page and try again."
        )

    @app.errorhandler(500)
    def server_error(e):
        from portal.extensions import db

        db.session.rollback()
        log.error(
            "unhandled error on %s %s", request.method, request.path, exc_info=getattr(e, "original_exception", e)
        )
        return _render(500, MESSAGES[500])
