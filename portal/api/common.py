"""What every API module shares: blueprints answering errors in JSON, the acting user, keyset pages."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from flask import g, jsonify
from flask_smorest import Blueprint
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.services.lists import exports, registry
from portal.services.lists import paging as keyset

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    401: "Send a valid API token: 'Authorization: Bearer <token>'.",
    403: "Your role does not allow this.",
    404: "There is nothing here (or your token's user has no access to it).",
    405: "This method is not allowed on this resource.",
    409: "This conflicts with an earlier request.",
    413: "The request body is too large.",
    415: "Send the body as JSON (Content-Type: application/json).",
    422: "The request is not valid; see 'errors'.",
    429: "Too many requests with this token: wait a moment and try again.",
    500: "Something went wrong on our side. The error was logged; please try again.",
}
MAX_PAGE = 500


def error_body(code: int, message: str | None = None, errors=None, name: str | None = None) -> dict:
    """The JSON every API error has: code, status, message and (for invalid input) errors."""
    body = {"code": code, "status": name or _name(code), "message": message or MESSAGES.get(code, _name(code))}
    if errors is not None:
        body["errors"] = errors
    return body


def _name(code: int) -> str:
    from werkzeug.http import HTTP_STATUS_CODES

    return HTTP_STATUS_CODES.get(code, "Error")


def error_response(code: int, message: str | None = None, errors=None, headers: Mapping | None = None):
    response = jsonify(error_body(code, message, errors))
    response.status_code = code
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def handle_http_exception(error: HTTPException):
    """Blueprint error handler: every error of the API as JSON, never an HTML page."""
    code = error.code or 500
    if code >= 500:
        db.session.rollback()
        log.error(
            "API error on %s",
            getattr(error, "original_exception", error),
            exc_info=getattr(error, "original_exception", None),
        )
        return error_response(500)
    data = getattr(error, "data", None) or {}
    errors = data.get("errors", data.get("messages"))  # webargs puts {location: {field: [messages]}} in messages
    message = data.get("message")
    headers = dict(data.get("headers") or {})
    if code == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="loyalist"')
    return error_response(code, message, errors, headers)


def make_blueprint(name: str, url_prefix: str, description: str) -> Blueprint:
    """A flask-smorest blueprint whose errors are JSON (app-wide error pages stay HTML for the pages)."""
    blp = Blueprint(name, __name__, url_prefix=url_prefix, description=description)
    # Flask looks for a handler by status code (blueprint, then app) before it looks by class, so the
    # codes the app's HTML error pages handle are registered here one by one.
    for code in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503):
        blp.register_error_handler(code, handle_http_exception)
    blp.register_error_handler(HTTPException, handle_http_exception)
    return blp


def api_user():
    """The user the request's token belongs to (set by the API gate before any view runs)."""
    return g.api_user


def api_token():
    return g.api_token


def abort_with(code: int, message: str | None = None, errors=None):
    """Stop the view with a JSON error (through the blueprint's handler)."""
    from flask_smorest import abort

    kwargs = {}
    if message is not None:
        kwargs["message"] = message
    if errors is not None:
        kwargs["errors"] = errors
    abort(code, **kwargs)


def list_page(
    name: str, params: Mapping, user, after: str | None, limit: int | None, options: tuple = ()
) -> tuple[list, str | None]:
    """One keyset page of list ``name`` with the list pages' filters, sort and store scoping.

    Returns (items, the ``after`` value of the next page or None). A cursor that no page produced is a 422.
    """
    definition = registry.get(name)
    sort, descending, _ = exports.sort_of(definition, params)
    try:
        cursor = keyset.parse_cursor(after, definition.key, sort)
    except keyset.BadCursor:
        abort_with(
            422,
            "The 'after' cursor is not one this list produced; start again without it.",
            {"query": {"after": ["invalid cursor"]}},
        )
    size = min(max(int(limit or keyset.PAGE_SIZE), 1), MAX_PAGE)
    query = definition.query(params, user)
    if options:
        query = query.options(*options)
    items, nxt = keyset.fetch_keyset(query, definition.key, sort, descending, size, cursor)
    return items, (json.dumps(nxt) if nxt is not None else None)
