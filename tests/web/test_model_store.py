"""Pickles are loaded only when their sha256 matches the manifest; problems say what to do."""

import json
from pathlib import Path

import pytest

from portal import model_store


def _train(db):
    record = model_store.save(
        "segmentation",
        {"CS_model.pkl": {"centres": [1, 2, 3]}, "CS_scalers.pkl": [0.5]},
        data_window={"from": "2025-01-01", "to": "2026-01-01"},
        metrics={"silhouette": 0.4},
    )
    db.session.commit()
    return record


def test_save_writes_manifest_and_loads(app, db):
    record = _train(db)
    manifest = json.loads((Path(app.config["MODELS_DIR"]) / "manifest.json").read_text())
    entry = next(e for e in manifest["models"] if e["file"] == "CS_model.pkl")
    assert entry["sha256"] == record.files["CS_model.pkl"] and entry["metrics"] == {"silhouette": 0.4}
    assert entry["versions"]["scikit-learn"] and entry["data_window"]["to"] == "2026-01-01"
    assert model_store.load("CS_model.pkl") == {"centres": [1, 2, 3]}


def test_tampered_pickle_is_refused(app, db):
    _train(db)
    path = Path(app.config["MODELS_DIR"]) / "CS_model.pkl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(model_store.ModelIntegrityError, match="does not match its sha256"):
        model_store.load("CS_model.pkl")
    assert model_store.status()["CS_model.pkl"]["state"].startswith("hash mismatch")


def test_truncated_and_missing(app, db):
    _train(db)
    path = Path(app.config["MODELS_DIR"]) / "CS_scalers.pkl"
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(model_store.ModelIntegrityError):
        model_store.load("CS_scalers.pkl")
    path.unlink()
    with pytest.raises(model_store.ModelMissing, match="missing"):
        model_store.load("CS_scalers.pkl")
    with pytest.raises(model_store.ModelMissing, match="not been trained"):
        model_store.load("churn_model.pkl")


def test_database_record_must_agree(app, db):
    record = _train(db)
    record.files = {**record.files, "CS_model.pkl": "0" * 64}
    db.session.commit()
    with pytest.raises(model_store.ModelIntegrityError, match="database"):
        model_store.load("CS_model.pkl")
