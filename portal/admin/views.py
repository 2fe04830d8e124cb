"""Admin pages: users, stores, settings and the audit log (admins only, checked on the server)."""
from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_user
from sqlalchemy import select

from portal.admin.forms import StoreForm, UserCreateForm, UserEditForm
from portal.extensions import db
from portal.models import AuditEntry, Store, User
from portal.security import roles_required
from portal.services import accounts, audit
from portal.services import settings as settings_service
from portal.services.listing import Page

bp = Blueprint("admin", __name__)


@bp.before_request
@roles_required("admin")
def admins_only():
    """Every admin page needs the admin role."""


def _store_choices(blank: str = "— none —"):
    return [(0, blank)] + [(s.id, s.name) for s in db.session.scalars(select(Store).order_by(Store.name))]


def _users_page(form: UserCreateForm, shown_once: str | None = None):
    """The users page; ``shown_once`` (a new password) is rendered in this response only.

    A flash would carry the password in the signed, unencrypted session cookie, so the POST
    answers with the page itself (not a redirect), marked no-store.
    """
    rows = db.session.scalars(select(User).order_by(User.email)).all()
    response = make_response(render_template("admin/users.html", form=form, users=rows, shown_once=shown_once))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/users", methods=["GET", "POST"])
def users():
    form = UserCreateForm()
    form.store_id.choices = _store_choices()
    if form.validate_on_submit():
        store = db.session.get(Store, form.store_id.data) if form.store_id.data else None
        password = accounts.generate_password(form.email.data)
        try:
            accounts.create_user(form.email.data, form.role.data, password,
                                 store.name if store else None, current_user.email)
        except accounts.AccountError as exc:
            form.email.errors.append(str(exc))
        else:
            shown = f"User {accounts.normalise_email(form.email.data)} created. Their password (shown once): {password}"
            fresh = UserCreateForm(formdata=None)
            fresh.store_id.choices = form.store_id.choices
            return _users_page(fresh, shown)
    return _users_page(form)


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def user_edit(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    form = UserEditForm(obj=user)
    form.store_id.choices = _store_choices()
    if request.method == "GET":
        form.store_id.data = user.store_id or 0
    if form.validate_on_submit():
        try:
            accounts.update_user(user, form.role.data, form.store_id.data or None,
                                 form.active.data, current_user.email)
        except accounts.AccountError as exc:
            form.role.errors.append(str(exc))
        else:
            if user.id == current_user.id and user.active:
                login_user(user)  # the change ended the user's sessions; an admin editing themself keeps this one
            flash(f"{user.email} updated.", "success")
            return redirect(url_for("admin.users"))
    return render_template("admin/user_edit.html", form=form, user=user)


@bp.route("/users/<int:user_id>/reset-password", methods=["POST"])
def user_reset(user_id: int):
    user = db.session.get(User, user_id) or abort(404)
    password = accounts.reset_password(user, current_user.email)
    if user.id == current_user.id:
        login_user(user)  # the reset ended the admin's own sessions too; keep this one
    form = UserCreateForm(formdata=None)
    form.store_id.choices = _store_choices()
    return _users_page(form, f"New password for {user.email} (shown once): {password}")


@bp.route("/stores", methods=["GET", "POST"])
def stores():
    form = StoreForm()
    if form.validate_on_submit():
        if db.session.scalar(select(Store).where(Store.name == form.name.data.strip())):
            form.name.errors.append("A store with this name exists.")
        else:
            store = Store()
            form.populate_obj(store)
            store.name = store.name.strip()
            db.session.add(store)
            audit.record("store.create", store.name, {k: getattr(store, k) for k in
                         ("timezone", "currency", "phone_region", "sender_name", "contact_line")})
            db.session.commit()
            flash(f"Store {store.name} created.", "success")
            return redirect(url_for("admin.stores"))
    rows = db.session.scalars(select(Store).order_by(Store.name)).all()
    return render_template("admin/stores.html", form=form, stores=rows)


@bp.route("/stores/<int:store_id>", methods=["GET", "POST"])
def store_edit(store_id: int):
    store = db.session.get(Store, store_id) or abort(404)
    form = StoreForm(obj=store)
    if form.validate_on_submit():
        clash = db.session.scalar(select(Store).where(Store.name == form.name.data.strip(), Store.id != store.id))
        if clash:
            form.name.errors.append("A store with this name exists.")
        else:
            fields = ("name", "timezone", "currency", "phone_region", "sender_name", "contact_line")
            before = {k: getattr(store, k) for k in fields}
            form.populate_obj(store)
            audit.record("store.update", store.name, {"before": before, "after": {k: getattr(store, k) for k in fields}})
            db.session.commit()
            flash(f"Store {store.name} saved.", "success")
            return redirect(url_for("admin.stores"))
    return render_template("admin/store_edit.html", form=form, store=store)


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    values = settings_service.all_values()
    errors: dict[str, str] = {}
    if request.method == "POST":
        submitted = {s.key: request.form.get(s.key, "") for s in settings_service.SPECS
                     if s.key in request.form or s.type == "bool"}
        errors = settings_service.update(submitted, current_user.email)
        if not errors:
            flash("Settings saved.", "success")
            return redirect(url_for("admin.settings"))
        values = {**values, **submitted}  # keep what the admin typed
        flash("Nothing was saved: fix the fields marked below.", "error")
    groups: dict[str, list] = {}
    for spec in settings_service.SPECS:
        groups.setdefault(spec.group, []).append(spec)
    return render_template("admin/settings.html", groups=groups, values=values, errors=errors), (400 if errors else 200)


@bp.route("/audit", endpoint="audit")
def audit_log():
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    q_user = request.args.get("user", "").strip()
    q_action = request.args.get("action", "").strip()
    if q_user:
        query = query.where(AuditEntry.user_email.ilike(f"%{q_user}%"))
    if q_action:
        query = query.where(AuditEntry.action.ilike(f"{q_action}%"))
    page = Page.from_request(query, key=AuditEntry.id, descending=True)
    return render_template("admin/audit.html", page=page, q_user=q_user, q_action=q_action)

