"""Import forms: the upload (kind, store, file, all-or-nothing) and the per-field mapping correction."""

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, SelectChoice, SelectField

from preprocessing.columns import KINDS, SYNONYMS

KIND_LABELS = {"transactions": "Transactions (purchase lines)", "stock": "Stock levels", "customers": "Customers"}
FIELD_HELP = {
    "transaction_id": "receipt / invoice number",
    "customer_id": "loyalty or customer number",
    "purchase_date": "date (and time) of the purchase",
    "product_id": "SKU / stock code",
    "product_name": "description",
    "quantity": "units (negative for returns)",
    "price_per_unit": "unit price",
    "total_amount": "line total",
    "phone": "mobile number",
    "store": "store name",
    "coupon_code": "coupon redeemed",
    "initial_stock": "units received",
    "total_sold": "units sold",
    "price": "selling price",
    "name": "full name",
    "first_name": "first name",
    "last_name": "last name",
    "email": "e-mail address",
    "sms_consent": "yes / no",
    "sms_consent_date": "date consent was given or withdrawn",
    "birthday": "date of birth (the birthday automation)",
}


class UploadForm(FlaskForm):
    kind = SelectField("What the file holds", choices=[SelectChoice(k, KIND_LABELS[k]) for k in KINDS])
    store_id = SelectField("Store for rows without a store column", coerce=int)
    file = FileField("File (CSV, CSV.GZ or XLSX)", validators=[FileRequired("Choose a file to upload.")])
    all_or_nothing = BooleanField("Import nothing if any row is bad (default: import the valid rows)")


class ActionForm(FlaskForm):
    """A button that only needs the CSRF token (undo, samples, discard)."""


class ConfirmForm(FlaskForm):
    all_or_nothing = BooleanField("Import nothing if any row is bad")
    stale_ok = BooleanField("This file ends long before the store's data: I mean to import it anyway")


def mapping_form(kind: str, headers: list[str], mapping: dict[str, str], all_or_nothing: bool = False):
    """A form with one select per target field listing the file's columns (prefilled with the detected mapping)."""
    choices = [SelectChoice("", "— not in this file —")] + [SelectChoice(h, h) for h in headers]

    class MappingForm(ConfirmForm):
        pass

    for target in SYNONYMS[kind]:
        label = f"{target} ({FIELD_HELP.get(target, '')})" if target in FIELD_HELP else target
        setattr(MappingForm, f"map_{target}", SelectField(label, choices=choices, default=mapping.get(target, "")))
    form = MappingForm()
    if not form.is_submitted():
        form.all_or_nothing.data = all_or_nothing
    return form


def chosen_mapping(form, kind: str) -> dict[str, str]:
    """field -> header from a submitted mapping form ('' fields left out)."""
    return {t: getattr(form, f"map_{t}").data for t in SYNONYMS[kind] if getattr(form, f"map_{t}").data}
