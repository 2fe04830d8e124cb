"""The quick per-line check of POST /purchases accepts and refuses exactly what PurchaseLineSchema does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from portal.api.schemas import PurchaseLineSchema, check_line

VALUES = st.one_of(
    st.none(),
    st.text(alphabet="abcxyz", max_size=5),
    st.text(alphabet="abc", min_size=195, max_size=210),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=1),
)
KEYS = [*PurchaseLineSchema().fields, "extra"]


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES))
def test_check_line_agrees_with_the_schema(line):
    try:
        loaded, schema_errors = PurchaseLineSchema().load(line), {}
    except ValidationError as exc:
        loaded, schema_errors = None, exc.messages
    checked, errors = check_line(line)
    assert set(errors) == set(schema_errors)
    if not errors:
        assert checked == loaded


def test_huge_integers_are_refused_not_a_500():
    _, errors = check_line({"transaction_id": "t", "purchase_date": "d", "product_id": "p", "quantity": 10**400})
    assert errors == {"quantity": ["Number too large."]}
