"""Logs never carry phone numbers or secrets; /readyz reports broken models."""

import logging
from pathlib import Path

from portal.logs import JsonFormatter, MaskingFilter, mask


def test_mask_hides_phones_and_secrets():
    line = mask("sent to +12025550142 with password=hunter22 and token: abc123")
    assert "2025550142" not in line and "hunter22" not in line and "abc123" not in line
    assert line.count("42") >= 1  # last two digits kept for support


def test_filter_masks_formatted_args():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "customer %s opted out", ("+1 202 555 0199",), None)
    MaskingFilter().filter(record)
    assert "555 01" not in JsonFormatter().format(record)


def test_readyz_reports_tampered_model(client, app, db):
    from portal import model_store

    model_store.save("segmentation", {"CS_model.pkl": [1, 2]})
    db.session.commit()
    assert client.get("/readyz").status_code == 200
    (Path(app.config["MODELS_DIR"]) / "CS_model.pkl").write_bytes(b"x")
    response = client.get("/readyz")
    assert response.status_code == 503 and "hash mismatch" in response.get_json()["checks"]["models"]
