"""Imports pages: upload -> mapping and preview -> background import with progress -> result, history, undo."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from wtforms import SelectChoice

from portal.imports.forms import ActionForm, UploadForm, chosen_mapping, mapping_form
from portal.models import ImportRun, Store
from portal.paging import Page
from portal.security import roles_required, user_store_id
from portal.services import importer
from portal.services import stores as store_service

bp = Blueprint("imports", __name__)
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
IMPORTERS = ("admin", "manager")


def _samples() -> list[tuple[str, str]]:
    """(file name, kind) of the sample files shipped in data/samples/."""
    if not SAMPLES.is_dir():
        return []
    files = sorted(p.name for p in SAMPLES.iterdir() if p.is_file() and not p.name.startswith("."))
    return [
        (f, "stock" if f.startswith("stock") else "customers" if f.startswith("customers") else "transactions")
        for f in files
    ]


def _allowed_stores() -> list[Store]:
    """Stores the user may import into: a manager only their own, an admin every store."""
    stores = store_service.all_stores()
    if current_user.role == "manager":
        store_id = user_store_id()
        stores = [s for s in stores if s.id == (store_id or -1)]
    return stores


def _upload_form() -> UploadForm:
    form = UploadForm()
    stores = _allowed_stores()
    form.store_id.choices = (
        [SelectChoice(0, "Default store (the first store, or a new 'Main')")] if current_user.is_admin else []
    ) + [SelectChoice(s.id, s.name) for s in stores]
    return form


def _index(form: UploadForm | None = None, status: int = 200):
    can_import = current_user.role in IMPORTERS and (current_user.role != "manager" or current_user.store_id)
    query = importer.runs_for(current_user).where(ImportRun.status != "pending")
    page = Page.from_request(query, key=ImportRun.id, descending=True, size=25)
    stores = {s.id: s.name for s in store_service.all_stores()}
    return render_template(
        "imports/index.html",
        form=form or (_upload_form() if can_import else None),
        page=page,
        stores=stores,
        written=importer.written_stores([r.id for r in page.items]),
        store_rule=importer.store_rule(current_user),
        samples=_samples() if can_import else [],
        action=ActionForm(),
        can_import=can_import,
    ), status


@bp.route("/imports")
def index():
    return _index()[0]


def _begin(path: str, filename: str, kind: str, store: Store | None, all_or_nothing: bool):
    """Inspect a saved file and record a pending run; on an unreadable file, say why and keep nothing."""
    if not current_user.is_admin and not current_user.store_id:  # only admins import without a store limit
        os.remove(path)
        abort(403)
    try:
        run, _ = importer.create_run(
            kind,
            path,
            filename,
            store=store,
            user_email=current_user.email,
            source="web",
            all_or_nothing=all_or_nothing,
            only_store_id=None if current_user.is_admin else current_user.store_id,
        )
    except importer.ImportRefused as exc:
        os.remove(path)
        flash(f"{filename}: {exc}", "error")
        return None
    return redirect(url_for("imports.mapping", import_id=run.id))


@bp.route("/imports", methods=["POST"])
@roles_required(*IMPORTERS)
def upload():
    form = _upload_form()
    if not form.validate_on_submit():
        return _index(form, 400)
    store = store_service.get(form.store_id.data)
    if current_user.role == "manager" and (store is None or store.id != current_user.store_id):
        abort(403)
    upload_file = form.file.data
    path = importer.save_upload(upload_file.stream, upload_file.filename or "upload")
    response = _begin(path, upload_file.filename or "upload", form.kind.data, store, form.all_or_nothing.data)
    return response or _index(form, 400)


@bp.route("/imports/samples/<name>", methods=["POST"])
@roles_required(*IMPORTERS)
def sample(name: str):
    kinds = dict(_samples())
    if name not in kinds or not ActionForm().validate_on_submit():
        abort(404 if name not in kinds else 400)
    with open(SAMPLES / name, "rb") as src:
        path = importer.save_upload(src, name)
    store = store_service.get(current_user.store_id) if current_user.role == "manager" else None
    if current_user.role == "manager" and store is None:
        abort(403)
    return _begin(path, name, kinds[name], store, False) or redirect(url_for("imports.index"))


def _run_or_404(import_id: int) -> ImportRun:
    run = importer.get_for_user(import_id, current_user)
    if run is None:
        abort(404)
    return run


@bp.route("/imports/<int:import_id>/mapping", methods=["GET", "POST"])
def mapping(import_id: int):
    run = _run_or_404(import_id)
    if run.status != "pending":
        return redirect(url_for("imports.detail", import_id=run.id))
    if request.method == "POST" and current_user.role not in IMPORTERS:
        abort(403)
    try:
        found = importer.inspect(run.stored_path, run.filename, run.kind, run.mapping)
    except (importer.ImportRefused, OSError) as exc:
        importer.refuse(
            run, str(exc) if isinstance(exc, importer.ImportRefused) else "The uploaded file can no longer be read."
        )
        flash(run.message, "error")
        return redirect(url_for("imports.index"))
    form = mapping_form(run.kind, found.headers, found.mapping, (run.options or {}).get("all_or_nothing", False))
    problems: list[str] = []
    if form.validate_on_submit():
        chosen = chosen_mapping(form, run.kind)
        twice = sorted({h for h in chosen.values() if list(chosen.values()).count(h) > 1})
        missing = importer.missing_fields(chosen, run.kind)
        if twice:
            problems.append(
                "Each column can be used for one field only: "
                + ", ".join(repr(h) for h in twice)
                + " is chosen more than once."
            )
        if missing:
            problems.append("Required fields are not mapped: " + ", ".join(missing) + ".")
        if not problems:
            importer.set_mapping(
                run, chosen, all_or_nothing=bool(form.all_or_nothing.data), stale_ok=bool(form.stale_ok.data)
            )
            stale = importer.stale_refusal(run)
            if stale:
                problems.append(stale)
            else:
                importer.start(run)
                return redirect(url_for("imports.detail", import_id=run.id))
    elif request.method == "POST":
        problems.append("The form expired; reload the page and try again.")
    preview = found.preview.head(10)
    return render_template(
        "imports/mapping.html",
        run=run,
        found=found,
        form=form,
        problems=problems,
        check=importer.file_check(run),
        preview_rows=preview.to_dict("records"),
        preview_index=list(preview.index),
        can_import=current_user.role in IMPORTERS,
    ), 400 if problems else 200


@bp.route("/imports/<int:import_id>/discard", methods=["POST"])
@roles_required(*IMPORTERS)
def discard(import_id: int):
    run = _run_or_404(import_id)
    if run.status == "pending" and ActionForm().validate_on_submit() and importer.discard(run):
        flash(f"{run.filename} discarded; nothing was written.", "info")
    return redirect(url_for("imports.index"))


@bp.route("/imports/<int:import_id>")
def detail(import_id: int):
    run = _run_or_404(import_id)
    if run.status == "pending":
        return redirect(url_for("imports.mapping", import_id=run.id))
    job = importer.job_of(run)
    plan = importer.undo_plan(run) if run.status in ("done", "undone") else None
    return render_template(
        "imports/detail.html",
        run=run,
        job=job,
        problems=importer.first_problems(run),
        summary=importer.summary(run),
        plan=plan,
        action=ActionForm(),
        store=store_service.get(run.store_id),
        written=importer.written_stores([run.id]).get(run.id, []),
        can_import=current_user.role in IMPORTERS,
    )


@bp.route("/imports/<int:import_id>/problems.csv")
def problems_csv(import_id: int):
    run = _run_or_404(import_id)
    response = Response(stream_with_context(importer.problems_csv(run)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="import-{run.id}-problems.csv"'
    return response


@bp.route("/imports/<int:import_id>/undo", methods=["POST"])
@roles_required(*IMPORTERS)
def undo(import_id: int):
    run = _run_or_404(import_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        plan = importer.undo(run, current_user.email)
    except importer.UndoRefused as exc:
        flash(str(exc), "error")
    else:
        removed = f"{plan.stock_rows:,} stock levels" if run.kind == "stock" else f"{plan.lines:,} lines"
        flash(f"Import #{run.id} undone: removed {removed}.", "success")
    return redirect(url_for("imports.detail", import_id=run.id))
