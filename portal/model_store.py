"""The only door to pickled models: write with a manifest entry, load only when the sha256 matches.

``Models/manifest.json`` holds one entry per model file: file name, sha256, model name,
trained_at, data window, library versions, metrics and fitted parameters. A file whose hash
does not match its entry is refused, never unpickled. Uploaded files are never unpickled.
Every save is also recorded in the ``model_records`` table so every host can verify it runs
the same model as the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import ModelRecord

MANIFEST = "manifest.json"
# The model files, by the names the original system gave them (kept: other tools read Models/).
SEGMENTATION_FILE = "CS_model.pkl"
SCALER_FILE = "CS_scalers.pkl"
CHURN_FILE = "churn_model.pkl"
CLV_FILE = "clv_model.pkl"
# Each trained model's files, the one its manifest entry is read from first; bundles are rows, not a pickle.
FILES = {"segmentation": (SEGMENTATION_FILE, SCALER_FILE), "churn": (CHURN_FILE,), "clv": (CLV_FILE,), "bundles": ()}


class ModelUnavailable(Exception):
    """A model that cannot be used; the message says what to do."""


class ModelMissing(ModelUnavailable):
    pass


class ModelIntegrityError(ModelUnavailable):
    pass


def models_dir() -> Path:
    return Path(current_app.config["MODELS_DIR"])


_HASHED: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256 of the file as it was then


def _sha256(path: Path) -> str:
    """The file's sha256; re-read only when the file changed (another inode, size or mtime).

    Hashing a churn model of a few MB on every load cost more than an incremental rescore's own work.
    Safety does not rest on this cache: ``load`` unpickles only bytes whose hash it computed, and keeps
    the unpickled object under that hash, so a file swapped behind an unchanged stamp is never unpickled.
    """
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    known = _HASHED.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if len(_HASHED) > 256:
        _HASHED.clear()
    _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def library_versions() -> dict[str, str]:
    """Versions that matter for unpickling, recorded with each model."""
    import numpy
    import pandas
    import sklearn

    versions = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import mlxtend

        versions["mlxtend"] = mlxtend.__version__
    except ImportError:
        pass
    return versions


_MANIFESTS: dict[str, tuple[tuple, dict]] = {}  # path -> (file stamp, parsed manifest)


def read_manifest() -> dict[str, dict]:
    """The manifest as {file name: entry}; empty when no model was trained yet.

    Parsed again only when the file changed (inode, size, mtime). Callers get their own outer dict
    (``save`` adds to it); the entries are shared between callers and read only.
    """
    path = models_dir() / MANIFEST
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _MANIFESTS.get(str(path))
    if cached is None or cached[0] != stamp:
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ModelIntegrityError(f"{path} is not valid JSON ({exc}); retrain the models to rewrite it.") from None
        cached = (stamp, {entry["file"]: entry for entry in data.get("models", [])})
        _MANIFESTS[str(path)] = cached
    return dict(cached[1])


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(
    name: str,
    objects: dict[str, Any],
    *,
    data_window: dict | None = None,
    metrics: dict | None = None,
    params: dict | None = None,
    extra: dict | None = None,
) -> ModelRecord:
    """Pickle ``objects`` ({file name: object}) under Models/, update the manifest and record it.

    Args:
        name: the model family (segmentation, churn, clv, bundles).
        data_window: {"from": iso date, "to": iso date, ...} the data the model was fitted on.
        metrics, params: JSON-serialisable numbers shown on the Models page.
    Returns:
        The new active ModelRecord (previous records of ``name`` are deactivated). Not committed.
    """
    trained_at = datetime.now(timezone.utc)
    manifest = read_manifest()
    files: dict[str, str] = {}
    for file_name, obj in objects.items():
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        _write_atomic(models_dir() / file_name, payload)
        sha = hashlib.sha256(payload).hexdigest()
        files[file_name] = sha
        manifest[file_name] = {
            "file": file_name,
            "model": name,
            "sha256": sha,
            "bytes": len(payload),
            "trained_at": trained_at.isoformat(),
            "data_window": data_window or {},
            "versions": library_versions(),
            "metrics": metrics or {},
            "params": params or {},
            **(extra or {}),
        }
    body = json.dumps({"models": sorted(manifest.values(), key=lambda e: e["file"])}, indent=2, default=str)
    _write_atomic(models_dir() / MANIFEST, body.encode())
    db.session.execute(update(ModelRecord).where(ModelRecord.name == name).values(active=False))
    record = ModelRecord(
        name=name,
        files=files,
        trained_at=trained_at,
        active=True,
        manifest={
            "data_window": data_window or {},
            "metrics": metrics or {},
            "params": params or {},
            "versions": library_versions(),
            **(extra or {}),
        },
    )
    db.session.add(record)
    _cache().clear()
    return record


def _cache() -> dict:
    """Unpickled models by (file, sha256), kept on the app (not in a module global)."""
    return current_app.extensions.setdefault("loyalist_models", {})


def load(file_name: str) -> Any:
    """Unpickle a model file after checking its sha256 against the manifest (and the database record).

    Raises:
        ModelMissing: no such model trained yet, or its file is gone.
        ModelIntegrityError: the file's hash differs from the manifest (tampered, truncated or
            replaced), or the database records another hash for it.
    """
    entry = read_manifest().get(file_name)
    path = models_dir() / file_name
    if entry is None:
        raise ModelMissing(f"{file_name} has not been trained yet: run flask train or use the Models page.")
    if not path.exists():
        raise ModelMissing(f"{file_name} is listed in the manifest but the file is missing: retrain it.")
    sha = _sha256(path)
    if sha != entry["sha256"]:
        raise ModelIntegrityError(
            f"{file_name} does not match its sha256 in the manifest (file changed, truncated or replaced); "
            "it was not loaded. Retrain the model to replace it."
        )
    record = db.session.scalar(
        select(ModelRecord).where(ModelRecord.name == entry["model"], ModelRecord.active.is_(True))
    )
    if record is not None and record.files.get(file_name) not in (None, sha):
        raise ModelIntegrityError(
            f"{file_name} on this host differs from the model recorded in the database; "
            "sync the Models/ folder or retrain."
        )
    cache = _cache()
    key = (file_name, sha)
    if key not in cache:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:  # the very bytes unpickled are the ones checked
            raise ModelIntegrityError(f"{file_name} changed while it was being loaded; try again or retrain it.")
        cache[key] = pickle.loads(data)  # noqa: S301 (safe: exactly the bytes we wrote, sha256 checked)
    return cache[key]


def entry(file_name: str) -> dict | None:
    """The manifest entry of a model file, or None."""
    try:
        return read_manifest().get(file_name)
    except ModelIntegrityError:
        return None


def status() -> dict[str, dict]:
    """For each manifest file: its entry plus 'ok' / the reason it cannot be loaded (Models page, /readyz)."""
    result = {}
    try:
        manifest = read_manifest()
    except ModelIntegrityError as exc:
        return {MANIFEST: {"state": str(exc)}}
    for file_name, entry_ in manifest.items():
        path = models_dir() / file_name
        if not path.exists():
            state = "missing: retrain"
        elif _sha256(path) != entry_["sha256"]:
            state = "hash mismatch: refused, retrain"
        else:
            state = "ok"
        result[file_name] = {**entry_, "state": state}
    return result
