"""Admin pages: users, stores, settings and the audit log (admins only, checked on the server)."""

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_user
from wtforms import SelectChoice

from portal.admin.forms import StoreForm, UserCreateForm, UserEditForm
from portal.models import AuditEntry
from portal.paging import Page
from portal.security import roles_required
from portal.services import accounts, audit
from portal.services import settings as settings_service
from portal.services import stores as store_service

bp = Blueprint("admin", __name__)


@bp.before_request
@roles_required("admin")
def admins_only():
    """Every admin page needs the admin role."""


def _store_choices(blank: str = "— none —"):
    return [SelectChoice(0, blank)] + [SelectChoice(s.id, s.name) for s in store_service.all_stores()]


def _users_page(form: UserCreateForm, shown_once: str | None = None):
    """The users page; ``shown_once`` (a new password) is rendered in this response only.

    A flash would carry the password in the signed, unencrypted session cookie, so the POST
    answers with the page itself (not a redirect), marked no-store.
    """
    rows = accounts.all_users()
    response = make_response(render_template("admin/users.html", form=form, users=rows, shown_once=shown_once))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/users", methods=["GET", "POST"])
def users():
    form = UserCreateForm()
    form.store_id.choices = _store_choices()
    if form.validate_on_submit():
        store = store_service.get(form.store_id.data)
        password = accounts.generate_password(form.email.data)
        try:
            accounts.create_user(
                form.email.data, form.role.data, password, store.name if store else None, current_user.email
            )
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
    user = accounts.get_user(user_id) or abort(404)
    form = UserEditForm(obj=user)
    form.store_id.choices = _store_choices()
    if request.method == "GET":
        form.store_id.data = user.store_id or 0
    if form.validate_on_submit():
        try:
            accounts.update_user(user, form.role.data, form.store_id.data or None, form.active.data, current_user.email)
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
    user = accounts.get_user(user_id) or abort(404)
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
        try:
            store = store_service.create(form.data, current_user.email)
        except store_service.StoreError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(f"Store {store.name} created.", "success")
            return redirect(url_for("admin.stores"))
    rows = store_service.all_stores()
    return render_template("admin/stores.html", form=form, stores=rows)


@bp.route("/stores/<int:store_id>", methods=["GET", "POST"])
def store_edit(store_id: int):
    store = store_service.get(store_id) or abort(404)
    form = StoreForm(obj=store)
    if form.validate_on_submit():
        try:
            store_service.update(store, form.data, current_user.email)
        except store_service.StoreError as exc:
            form.name.errors.append(str(exc))
        else:
            flash(f"Store {store.name} saved.", "success")
            return redirect(url_for("admin.stores"))
    return render_template("admin/store_edit.html", form=form, store=store)


# Settings stored as a share (0.1) that every other page writes as a percentage (10 %): the settings page
# shows and accepts them as percentages too, and stores the share as before.
SHARE_KEYS = (
    "tiers.share",
    "churn.high",
    "churn.low",
    "bundles.dead_stock_ratio",
    "bundles.min_confidence",
    "sms.control_share",
    "clv.discount_rate",
)


def _as_percent(value) -> str:
    """A stored share as the percentage typed on the page: 0.1 → "10", 0.0083 → "0.83"."""
    try:
        return f"{float(value) * 100:.6f}".rstrip("0").rstrip(".")
    except (TypeError, ValueError):
        return str(value)


def _from_percent(key: str, raw: str) -> tuple[str | None, str | None]:
    """A typed percentage ("10", "12.5 %") as the share string the settings service parses, or an error."""
    spec = settings_service.BY_KEY[key]
    text = (raw or "").strip().rstrip("%").strip().replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None, "must be a percentage, e.g. 10 for 10 %"
    low = spec.min * 100 if spec.min is not None else None
    high = spec.max * 100 if spec.max is not None else None
    if low is not None and value < low - 1e-9:
        return None, f"must be at least {_as_percent(spec.min)} %"
    if high is not None and value > high + 1e-9:
        return None, f"must be at most {_as_percent(spec.max)} %"
    return repr(round(value / 100, 10)), None


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    values = settings_service.all_values()
    shown = {k: (_as_percent(v) if k in SHARE_KEYS else v) for k, v in values.items()}
    errors: dict[str, str] = {}
    if request.method == "POST":
        typed = {
            s.key: request.form.get(s.key, "")
            for s in settings_service.SPECS
            if s.key in request.form or s.type == "bool"
        }
        submitted = {}
        for key, raw in typed.items():
            if key in SHARE_KEYS:
                share, problem = _from_percent(key, raw)
                if problem:
                    errors[key] = problem
                    continue
                submitted[key] = share
            else:
                submitted[key] = raw
        if not errors:
            errors = settings_service.update(submitted, current_user.email)
        if not errors:
            flash("Settings saved.", "success")
            return redirect(url_for("admin.settings"))
        shown = {**shown, **typed}  # keep what the admin typed
        flash("Nothing was saved: fix the fields marked below.", "error")
    groups: dict[str, list] = {}
    for spec in settings_service.SPECS:
        groups.setdefault(spec.group, []).append(spec)
    return render_template("admin/settings.html", groups=groups, values=shown, errors=errors, shares=SHARE_KEYS), (
        400 if errors else 200
    )


@bp.route("/audit", endpoint="audit")
def audit_log():
    q_user = request.args.get("user", "").strip()
    q_action = request.args.get("action", "").strip()
    q_from = request.args.get("from", "").strip()
    q_to = request.args.get("to", "").strip()
    store = current_user.store
    tz = store.timezone if store is not None and store.timezone else "UTC"
    problems = []
    days = {}
    for key, raw, label in (("from", q_from, "From"), ("to", q_to, "To")):
        try:
            days[key] = audit.parse_day(raw, label)
        except audit.AuditFilterError as exc:
            problems.append(str(exc))
            days[key] = None
    if days["from"] and days["to"] and days["from"] > days["to"]:
        problems.append("From is after To: the range holds no day.")
    query = audit.entries_query(q_user, q_action, days["from"], days["to"], tz)
    page = Page.from_request(query, key=AuditEntry.id, descending=True)
    return render_template(
        "admin/audit.html",
        page=page,
        q_user=q_user,
        q_action=q_action,
        q_from=q_from,
        q_to=q_to,
        tz=tz,
        problems=problems,
        actions=audit.actions(),
        users=audit.users(),
        readable=audit.readable,
    ), (400 if problems else 200)
