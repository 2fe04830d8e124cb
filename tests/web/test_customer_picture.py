"""One coherent customer picture (#20): lifecycle, reconciled scores and store-derived tiers, end to end.

The store is the demo generator's (``preprocessing.synthetic.generate_store``, smaller than ``flask demo``)
scored by the real training and scoring services.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from portal.models import Customer, TierChange
from portal.services import settings as settings_service
from portal.services.campaigns import campaigns as campaign_service
from portal.services.lists import (
    exports,  # noqa: F401  (registers the lists)
    registry,
)
from portal.services.scores import churn as churn_service
from portal.services.scores import scoring, training
from preprocessing.coherence import coherence
from preprocessing.synthetic import generate_store


def _demo_lines(n_customers: int = 2000) -> pd.DataFrame:
    lines = generate_store(n_customers, seed=42)["transactions"].drop(columns=["Mobile", "store"])
    lines["customer_id"] = lines["customer_id"].replace("", np.nan)
    lines["purchase_date"] = pd.to_datetime(lines["purchase_date"])
    return lines


@pytest.fixture
def scored_demo(app, db, seed_lines):
    seed_lines(_demo_lines())
    for train in (training.train_segmentation, training.train_churn, training.train_clv):
        train(rescore=False)
    scoring.rescore_all(reason="models retrained")
    return pd.DataFrame(
        db.session.execute(
            select(
                Customer.id,
                Customer.lifecycle,
                Customer.tier,
                Customer.recency,
                Customer.churn_probability,
                Customer.p_alive,
                Customer.p_return_12m,
                Customer.clv_12m,
                Customer.expected_purchases_90d,
            )
        ).all()
    )


def test_demo_store_scores_tell_one_story(scored_demo):
    frame = scored_demo
    assert frame["lifecycle"].notna().all()
    shares = coherence(frame)
    assert shares["n"] == len(frame) and shares["contradictions"] < 0.02
    shown = coherence(frame, "p_return_12m")  # the number the customer page shows beside the risk
    assert shown["n"] == len(frame) and shown["contradictions"] < 0.02
    # every status of a real store is there, and Lost never comes with a live-looking return chance
    counts = frame["lifecycle"].value_counts()
    assert set(counts.index) == {"New", "Active", "At risk", "Lapsing", "Lost"}
    assert (frame.loc[frame["lifecycle"] == "Lost", "p_return_12m"] < 0.2).all()
    assert (frame["p_return_12m"] <= frame["p_alive"] + 1e-9).all()
    assert (frame.loc[frame["lifecycle"] == "Active", "churn_probability"] <= 0.7).all()
    # expected purchases and CLV come from the same P(alive): nobody "gone" gets a big forecast
    gone = frame["p_alive"] < 0.05
    assert (frame.loc[gone, "expected_purchases_90d"] < 0.1).all()


def test_tiers_fit_the_store_and_are_reviewed_after_the_retention_period(db, scored_demo):
    frame = scored_demo
    recent = frame["recency"] <= 365
    assert 0.2 <= frame.loc[recent, "tier"].notna().mean() <= 0.6
    retention = scoring.retention_days(settings_service.all_values())
    assert not (frame["tier"].notna() & (frame["recency"] > retention)).any()
    # a customer idle past the retention period who held a tier before loses it, with the reason
    settings_service.update({"tiers.retention_months": "6"})
    scoring.rescore_all(reason="rescored")
    reviewed = db.session.scalars(select(TierChange).where(TierChange.reason.like("tier review:%"))).all()
    assert reviewed and all(c.new_tier is None for c in reviewed)
    assert reviewed[0].reason == "tier review: no purchase in the last 6 months"
    idle_tiered = db.session.scalar(
        select(Customer.id).where(Customer.tier.isnot(None), Customer.recency > 6 * 365 / 12).limit(1)
    )
    assert idle_tiered is None


def test_lost_customers_are_left_out_of_retention_by_default(db, scored_demo):
    lost = int((scored_demo["lifecycle"] == "Lost").sum())
    assert lost > 0
    at_risk = db.session.scalars(churn_service.at_risk_query({}, None)).all()
    assert at_risk and all(c.lifecycle != "Lost" for c in at_risk)
    with_lost = db.session.scalars(churn_service.at_risk_query({"include_lost": "1"}, None)).all()
    assert len(with_lost) == len(at_risk) + lost
    cards = churn_service.band_summary(None, {})
    assert sum(c["customers"] for c in cards["cards"]) == len(at_risk) and not cards["include_lost"]
    # the campaign builder counts them as an exclusion, and keeps them when asked
    audience = campaign_service.build_audience({"band": "High"}, None)
    high_lost = int(((scored_demo["lifecycle"] == "Lost") & (scored_demo["churn_probability"] > 0.7)).sum())
    assert audience.exclusions["lost"] == high_lost > 0
    assert campaign_service.build_audience({"band": "High", "include_lost": "1"}, None).exclusions["lost"] == 0
    # the list filter and the export column
    listed = registry.get("customers")
    assert listed.headers[-2:] == ("lifecycle", "p_return_12m")
    only_new = db.session.scalars(listed.query({"lifecycle": "New"}, None)).all()
    assert only_new and {c.lifecycle for c in only_new} == {"New"}
