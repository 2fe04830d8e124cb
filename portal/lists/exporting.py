"""``?format=csv|xlsx`` for any list page: one call in the view returns the download (or None).

Usage in a list view::

    response = export_response("at-risk")      # the request's filters, the logged-in user
    if response is not None:
        return response
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from urllib.parse import urlencode

from flask import Response, render_template, request, send_file, stream_with_context, url_for
from flask_login import current_user

from portal.services.lists import exports, registry

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export_response(name: str, params: Mapping | None = None, user=None) -> Response | None:
    """The CSV (streamed) or XLSX download of list ``name`` when ``format`` is asked for, else None."""
    params = request.args if params is None else params
    fmt = (params.get("format") or "").lower()
    if not fmt:
        return None
    user = user if user is not None else current_user
    if fmt not in {"csv", "xlsx"}:
        return export_error(name, params, f"Unknown format '{fmt}': choose csv or xlsx.")
    try:
        export = exports.prepare(name, params, user)
    except registry.ExportError as exc:
        return export_error(name, params, str(exc))
    if fmt == "csv":
        return _csv_response(export, user.email)
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)
    try:
        rows = exports.write_xlsx(export, spool)
    except registry.ExportError as exc:
        spool.close()
        return export_error(name, params, str(exc), csv_instead=True)
    exports.record_export(export, "xlsx", rows, "web", user_email=user.email)
    spool.seek(0)
    response = send_file(spool, mimetype=XLSX_MIME, as_attachment=True, download_name=exports.filename(export, "xlsx"))
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv_response(export: exports.Export, email: str) -> Response:
    def finish(rows: int, completed: bool) -> None:
        exports.record_export(export, "csv", rows, "web", completed, user_email=email)

    response = Response(stream_with_context(exports.csv_chunks(export, finish)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{exports.filename(export, "csv")}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # let proxies pass the stream on as it comes
    return response


def export_error(name: str, params: Mapping, message: str, csv_instead: bool = False):
    """A 400 page with the reason, a link back to the list and (for XLSX) a CSV link."""
    keep = [(k, v) for k, v in _items(params) if k not in {"format", "after"}]
    back = [(k, v) for k, v in keep if k not in {"columns", "include_opted_out"}]
    csv_url = (
        url_for("lists.export", list_name=name) + "?" + urlencode(keep + [("format", "csv")]) if csv_instead else None
    )
    definition = registry.LISTS.get(name)
    back_url = None
    if definition is not None and definition.endpoint:
        back_url = url_for(definition.endpoint) + ("?" + urlencode(back) if back else "")
    return render_template("lists/export_error.html", message=message, csv_url=csv_url, back_url=back_url), 400


def _items(params: Mapping) -> list[tuple[str, str]]:
    if hasattr(params, "items") and hasattr(params, "getlist"):
        return list(params.items(multi=True))
    return list(params.items())
