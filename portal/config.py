"""Configuration read from the environment (or ``.env``); tests use ``TestConfig`` or a dict."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
SECRET_FILE = INSTANCE / "secret_key"


def _read_secret() -> str | None:
    """SECRET_KEY from the environment, else the one ``flask init-db`` wrote to instance/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    if SECRET_FILE.exists():
        return SECRET_FILE.read_text().strip() or None
    return None


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE / 'loyalist.db'}"
    # Heroku-style URLs and plain postgresql:// both go through psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _count(name: str, default: str, meaning: str, maximum: int | None = None) -> int:
    """A whole-number setting from the environment; a clear error for anything else."""
    raw = (os.environ.get(name) or default).strip()
    if not (raw.isascii() and raw.isdigit() and (maximum is None or int(raw) <= maximum)):
        raise ValueError(f"{name} must be {meaning}, not {raw!r}")
    return int(raw)


def _proxy_fix() -> int:
    """PROXY_FIX: how many reverse proxies in front are trusted to set X-Forwarded-* (0, the default: none).

    Off by default because anyone can send those headers: trusting them with no proxy in front
    would let a client pick its own address (the login throttle's key) and scheme.
    """
    return _count("PROXY_FIX", "0", "the number of trusted reverse proxies (0, 1, 2, ...)")


def _session_limits() -> tuple[int, int]:
    """SESSION_IDLE_MINUTES (default 30) and SESSION_MAX_HOURS (default 12), enforced on the server.

    Idle: minutes without a request before a session is logged out; max: hours after logging in
    when it ends whatever the activity (portal.login_sessions checks both from the signed session).
    """
    idle = _count("SESSION_IDLE_MINUTES", "30", "a number of minutes (1 or more)")
    hours = _count("SESSION_MAX_HOURS", "12", "a number of hours (1 or more)")
    if not idle or not hours:
        raise ValueError("SESSION_IDLE_MINUTES and SESSION_MAX_HOURS must be 1 or more")
    return idle, hours


def _jobs_nice() -> int:
    """JOBS_NICE: how much lower than the web the CPU priority of job processes is (0 to 19; 0: the same)."""
    return _count("JOBS_NICE", "10", "a niceness step from 0 (off) to 19", maximum=19)


def _rate_limit() -> str:
    """API_RATE_LIMIT: requests per API token (Flask-Limiter syntax, e.g. "600 per minute"), checked at start."""
    from limits import parse_many

    raw = (os.environ.get("API_RATE_LIMIT") or "600 per minute").strip()
    try:
        parse_many(raw)
    except ValueError:
        raise ValueError(f"API_RATE_LIMIT must be a rate such as '600 per minute', not {raw!r}") from None
    return raw


class Config:
    """Settings for a real run; every value can come from the environment."""

    def __init__(self) -> None:
        self.SECRET_KEY = _read_secret()
        self.SQLALCHEMY_DATABASE_URI = _database_url()
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        self.REDIS_URL = os.environ.get("REDIS_URL") or None
        self.TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID")
        self.TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN")
        self.TWILIO_FROM = os.environ.get("TWILIO_FROM")
        self.TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID")
        self.TWILIO_API_BASE = os.environ.get("TWILIO_API_BASE")
        self.PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL")
        self.PROXY_FIX = _proxy_fix()
        self.MODELS_DIR = os.environ.get("MODELS_DIR") or str(ROOT / "Models")
        self.UPLOAD_DIR = os.environ.get("UPLOAD_DIR") or str(INSTANCE / "uploads")
        self.MAX_CONTENT_LENGTH = int(os.environ.get("MAX_UPLOAD_MB", "200")) * 1024 * 1024
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "").lower() in {"1", "true", "yes"}
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.SESSION_IDLE_MINUTES, self.SESSION_MAX_HOURS = _session_limits()
        # The cookie's own expiry follows the absolute lifetime; the server checks both limits itself.
        self.PERMANENT_SESSION_LIFETIME = timedelta(hours=self.SESSION_MAX_HOURS)
        self.REMEMBER_COOKIE_DURATION = timedelta(hours=self.SESSION_MAX_HOURS)
        self.WTF_CSRF_TIME_LIMIT = None
        self.JOBS_INLINE = False  # tests may run jobs synchronously
        # Embedded runner: each job in a child process, so CPU-bound jobs never hold the web process's GIL.
        self.JOBS_PROCESS = os.environ.get("JOBS_PROCESS", "1").lower() not in {"0", "false", "no"}
        # Job processes and batch commands run nicer than the web, so pages stay fast beside a job.
        self.JOBS_NICE = _jobs_nice()
        # Import limits, so one file cannot hold the single job slot for minutes (a gzip bomb, a giant file):
        # decompressed megabytes of a .gz and data rows of any file; beyond them the file is refused unread.
        self.IMPORT_MAX_EXPANDED_MB = _count("IMPORT_MAX_EXPANDED_MB", "1024", "a number of megabytes")
        self.IMPORT_MAX_ROWS = _count("IMPORT_MAX_ROWS", "5000000", "a number of rows")
        self.API_RATE_LIMIT = _rate_limit()
        # E-mail (alerts, weekly digest): without MAIL_SERVER mail is written to the log on /admin/mail only.
        self.MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
        self.MAIL_PORT = _count("MAIL_PORT", "587", "a port number", maximum=65535)
        self.MAIL_USE_TLS = os.environ.get("MAIL_USE_TLS", "1").lower() not in {"0", "false", "no"}
        self.MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
        self.MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
        self.MAIL_FROM = os.environ.get("MAIL_FROM") or "Loyalist <no-reply@localhost>"
        # Absolute links in e-mails (built by jobs, outside any request); falls back to PUBLIC_BASE_URL.
        self.PORTAL_URL = os.environ.get("PORTAL_URL") or None
        self.TESTING = False

    def as_dict(self) -> dict:
        """All upper-case settings, for ``app.config.from_mapping``."""
        return {k: v for k, v in vars(self).items() if k.isupper()}


class TestConfig(Config):
    """Settings for the test suite: CSRF stays on; DATABASE_URL (if set) picks PostgreSQL."""

    def __init__(self, database_url: str | None = None, models_dir: str | None = None) -> None:
        super().__init__()
        self.TESTING = True
        self.JOBS_INLINE = True  # jobs run at once; tests/web/test_jobs.py exercises the thread and RQ runners
        self.JOBS_PROCESS = False  # tests/web/test_jobs.py turns the child-process runner on where it tests it
        self.JOBS_NICE = 0  # tests/web/test_jobs.py sets it where it tests it
        self.PASSWORD_HASH_METHOD = "scrypt:1024:8:1"  # cheap scrypt: same code path, fast tests
        self.SECRET_KEY = "test-only-secret"
        self.PROXY_FIX = 0  # a developer's PROXY_FIX must not change what the suite's client sees
        self.MAIL_SERVER = None  # tests/mail/ point it at their own SMTP server
        self.PORTAL_URL = "https://loyalist.example.com"
        if database_url:
            self.SQLALCHEMY_DATABASE_URI = database_url
        if models_dir:
            self.MODELS_DIR = models_dir
