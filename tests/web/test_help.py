"""The help page explains every number and says what the models know and when they were trained."""

from datetime import datetime

from portal import model_store
from portal.formatting import fmt_datetime
from portal.services import settings as settings_service
from portal.services.scores import training
from tests.conftest import synthetic_lines


def test_help_explains_the_numbers_with_current_settings(client, login_as):
    login_as("manager")
    page = client.get("/help").get_data(as_text=True)
    assert 'href="/help"' in page  # in the navigation
    for text in (
        "Recency",
        "distinct transactions",
        "net of returns",
        "log-scaled",
        "standardised",
        "Ranking by value",
        "Stability",
        "Time split",
        "Temporal holdout",
        "Fallback rule",
        "Reasons",
        "BG/NBD",
        "Gamma-Gamma",
        "exactly 100 %",
        "Support",
        "Confidence",
        "Lift",
        "Dead stock",
        "control group",
        "recorded opt-in",
        "Quiet hours",
        "Cohort retention",
    ):
        assert text in page, text
    assert "Derived from the store's own data" in page  # the default bar
    settings_service.update({"tiers.bar": "fixed", "tier.min_frequency": "5", "sms.quiet_start": "20:30"})
    page = client.get("/help").get_data(as_text=True)
    assert "at least 5 purchases" in page and "between 20:30 and 08:00" in page
    assert page.count("Not trained yet.") == 4


def test_help_lists_model_training_dates_from_the_manifest(client, login_as, db, seed_lines):
    seed_lines(synthetic_lines())
    settings_service.update({"tier.min_frequency": "5", "tier.min_monetary": "2000"})
    training.train_segmentation(rescore=False)
    training.train_churn(rescore=False)
    login_as("admin")
    page = client.get("/help").get_data(as_text=True)
    for file_name in ("CS_model.pkl", "churn_model.pkl"):
        entry = model_store.entry(file_name)
        assert fmt_datetime(datetime.fromisoformat(entry["trained_at"])) in page
        assert f"to {entry['data_window']['to'][:10]}" in page
    assert "checked on the temporal holdout" in page and "ROC-AUC" in page
    assert page.count("Not trained yet.") == 2  # CLV and bundles
    # A tampered model file shows as refused, live.
    (model_store.models_dir() / "churn_model.pkl").write_bytes(b"tampered")
    assert "hash mismatch: refused, retrain" in client.get("/help").get_data(as_text=True)
