"""The Alembic migrations build exactly the schema the models describe, and init-db is idempotent."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

REPO = Path(__file__).resolve().parents[2]


def _flask(args, env):
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_init_db_twice_and_models_match_migrations(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "FLASK_APP": "app.py", "DATABASE_URL": url, "SECRET_KEY": "x" * 32,
           "ADMIN_EMAIL": "boss@example.com", "ADMIN_PASSWORD": "a-long-password"}
    first = _flask(["init-db"], env)
    assert first.returncode == 0, first.stderr
    assert "created admin boss@example.com" in first.stdout
    second = _flask(["init-db"], env)
    assert second.returncode == 0 and "created admin" not in second.stdout
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from portal.extensions import db
    import portal.models  # noqa: F401  (registers the tables)

    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_app_factory_has_no_side_effects(tmp_path):
    code = ("import os; from app import create_app; from portal.config import TestConfig; "
            f"c=TestConfig(database_url='sqlite:///{tmp_path}/none.db'); create_app(c); "
            f"print(os.path.exists('{tmp_path}/none.db'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
