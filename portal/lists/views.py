"""Saved segments, the "my exports" history and the export endpoint that serves every list."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from wtforms import SelectChoice

from portal.lists.exporting import export_error, export_response
from portal.lists.forms import SegmentForm
from portal.models import AuditEntry
from portal.paging import Page
from portal.services.lists import exports, registry, segments

bp = Blueprint("lists", __name__)


@bp.app_template_global()
def list_definition(name: str):
    """The registered list ``name`` (headers, filter keys) for the export macros."""
    return registry.get(name)


@bp.app_context_processor
def list_names():
    return {"list_names": set(registry.LISTS)}


@bp.app_template_global()
def list_url(name: str, query: str = "", **extra) -> str:
    """The page of list ``name`` with a filter query string (export endpoint if it has no page)."""
    definition = registry.get(name)
    base = url_for(definition.endpoint) if definition.endpoint else url_for("lists.export", list_name=name)
    query = "&".join(filter(None, [query, urlencode(extra)]))
    return base + ("?" + query if query else "")


@bp.route("/exports/<list_name>")
def export(list_name: str):
    """``?format=csv|xlsx`` for any registered list, with the same filters as its page."""
    if list_name not in registry.LISTS:
        abort(404)
    response = export_response(list_name)
    if response is None:
        return export_error(list_name, request.args, "Say which format to export: format=csv or format=xlsx.")
    return response


@bp.route("/exports")
def history():
    """The logged-in user's own exports (from the audit log), newest first."""
    query = select(AuditEntry).where(AuditEntry.action == "export", AuditEntry.user_email == current_user.email)
    page = Page.from_request(query, key=AuditEntry.id, descending=True)
    return render_template("lists/history.html", page=page)


def _form() -> SegmentForm:
    form = SegmentForm()
    form.list_name.choices = [SelectChoice(d.name, d.title) for d in registry.LISTS.values()]
    return form


@bp.route("/segments", methods=["GET", "POST"])
def segment_list():
    form = _form()
    if request.method == "GET":
        form.list_name.data = request.args.get("list", "customers")
        form.query.data = request.args.get("query", "")
    if form.validate_on_submit():
        try:
            segment = segments.create(form.name.data, form.list_name.data, form.query.data or "", current_user)
        except segments.SegmentError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(f"Segment '{segment.name}' saved.", "success")
            return redirect(url_for("lists.segment_list"))
    rows = segments.visible(current_user)
    status = 400 if form.errors else 200
    return render_template(
        "lists/segments.html", form=form, segments=rows, can_delete=lambda s: segments.can_delete(s, current_user)
    ), status


@bp.route("/segments/<int:segment_id>/delete", methods=["POST"])
def segment_delete(segment_id: int):
    segment = segments.get(segment_id, current_user) or abort(404)  # another store's: 404, like an absent one
    if not segments.can_delete(segment, current_user):
        abort(403)
    segments.delete(segment, current_user)
    flash(f"Segment '{segment.name}' deleted.", "success")
    return redirect(url_for("lists.segment_list"))


@bp.route("/segments/<int:segment_id>/count")
def segment_count(segment_id: int):
    """The segment's live size for the logged-in user, as JSON."""
    segment = segments.get(segment_id, current_user) or abort(404)
    try:
        sized = exports.sizes(segment.list_name, registry.parse_filter(segment.query), current_user)
        return jsonify(list=segment.list_name, **sized)
    except registry.ExportError as exc:
        return jsonify(error=str(exc)), 400


@bp.route("/segments/count")
def filter_count():
    """How many rows ``list`` with the query-string filters would export, as JSON (live sizes)."""
    name = request.args.get("list", "customers")
    try:
        return jsonify(list=name, **exports.sizes(name, request.args, current_user))
    except registry.ExportError as exc:
        return jsonify(error=str(exc)), 400
