"""The churn page: bands, value at risk, the at-risk list in priority order, and the model card."""

from sqlalchemy import select

from portal.models import Customer
from portal.services.scores import scoring, training
from tests.conftest import synthetic_lines


def _scored(seed_lines):
    seed_lines(synthetic_lines())
    training.train_churn(rescore=False)
    scoring.rescore_all()


def test_empty_state(client, login_as):
    login_as("marketer")
    assert "No churn model trained yet" in client.get("/churn").get_data(as_text=True)


def test_bands_list_and_priority_order(client, login_as, db, seed_lines):
    _scored(seed_lines)
    login_as("manager", store=db.session.scalars(select(Customer)).first().store)
    html = client.get("/churn").get_data(as_text=True)
    assert "High risk" in html and "Medium risk" in html and "Low risk" in html
    assert "holdout ROC-AUC" in html and "Personal retention offer by SMS now" in html
    customers = db.session.scalars(select(Customer)).all()
    ranked = sorted(customers, key=lambda c: (-(c.churn_probability * float(c.spend_12m or 0)), -c.id))
    first = html.index(ranked[0].external_id)
    assert first < html.index(ranked[1].external_id) or ranked[1].external_id not in html[:first]
    high = client.get("/churn?band=High").get_data(as_text=True)
    low_ids = [c.external_id for c in customers if c.churn_band == "Low"]
    table = high.split("<tbody>")[-1]
    assert not any(f">{cid}<" in table for cid in low_ids)


def test_band_counts_match_list(client, login_as, db, seed_lines):
    _scored(seed_lines)
    login_as("admin")
    n_high = len(db.session.scalars(select(Customer).where(Customer.churn_band == "High")).all())
    html = client.get("/churn?band=High").get_data(as_text=True)
    rows = html.split("<tbody>")[-1].split("</tbody>")[0].count("<tr>")
    assert rows == min(n_high, 50)
