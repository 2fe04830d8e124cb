"""The Alembic migrations build exactly the schema the models describe, and init-db is idempotent."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

REPO = Path(__file__).resolve().parents[2]


def _flask(args, env):
    return subprocess.run(
        [sys.executable, "-m", "flask", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_init_db_twice_and_models_match_migrations(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {
        **os.environ,
        "FLASK_APP": "app.py",
        "DATABASE_URL": url,
        "SECRET_KEY": "x" * 32,
        "ADMIN_EMAIL": "boss@example.com",
        "ADMIN_PASSWORD": "a-long-password",
    }
    first = _flask(["init-db"], env)
    assert first.returncode == 0, first.stderr
    assert "created admin boss@example.com" in first.stdout
    second = _flask(["init-db"], env)
    assert second.returncode == 0 and "created admin" not in second.stdout
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import portal.models  # noqa: F401  (registers the tables)
    from portal.extensions import db

    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_app_factory_has_no_side_effects(tmp_path):
    code = (
        "import os; from app import create_app; from portal.config import TestConfig; "
        f"c=TestConfig(database_url='sqlite:///{tmp_path}/none.db'); create_app(c); "
        f"print(os.path.exists('{tmp_path}/none.db'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_migrations_on_postgresql_match_models():
    """On PostgreSQL (CI's second pass) the migrations run in a scratch database and match the models."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.skip("DATABASE_URL is not PostgreSQL: this runs in CI's PostgreSQL pass")
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    base = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    scratch = f"loyalist_migrations_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}"'))
        conn.execute(text(f'CREATE DATABASE "{scratch}"'))
    try:
        target = base.set(database=scratch)
        env = {
            **os.environ,
            "FLASK_APP": "app.py",
            "SECRET_KEY": "x" * 32,
            "ADMIN_PASSWORD": "a-long-password",
            "DATABASE_URL": target.render_as_string(hide_password=False),
        }
        assert _flask(["init-db"], env).returncode == 0
        assert _flask(["init-db"], env).returncode == 0
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        import portal.models  # noqa: F401
        from portal.extensions import db

        engine = create_engine(target)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        engine.dispose()
        assert diff == [], f"models and migrations differ on PostgreSQL: {diff}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        admin.dispose()
