"""Database tables (SQLAlchemy 2 typed models). Models never commit; services do.

Money is NUMERIC in the database. Timestamps are stored in UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    Boolean,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db


def utcnow() -> datetime:
    """Callable default so every row gets its own timestamp (not one fixed at import)."""
    return datetime.now(timezone.utc)


UTCDateTime = DateTime(timezone=True)
MONEY = Numeric(14, 2)
PRICE = Numeric(14, 4)
QTY = Numeric(14, 3)

ROLES = ("admin", "manager", "marketer")
# Marketers only read and export (no imports, sending, mining or settings): the default for new users.
LEAST_PRIVILEGED_ROLE = "marketer"
CONSENT = ("opted_in", "opted_out", "unknown")


class Store(db.Model):
    __tablename__ = "stores"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    phone_region: Mapped[str] = mapped_column(String(2), default="US")
    contact_line: Mapped[str] = mapped_column(String(200), default="")
    sender_name: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped by logout, a password change or an admin's reset: every session carrying an older
    # number is refused, so those end every session of the user on every device.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    store: Mapped[Store | None] = relationship()

    def set_password(self, password: str) -> None:
        """Hash with werkzeug's scrypt (a memory-hard KDF); the plain text is never stored.

        Tests lower scrypt's cost through PASSWORD_HASH_METHOD; production keeps the default.
        """
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def get_id(self) -> str:
        """Flask-Login's id "<id>:<session version>": a session (or remember cookie) of an older version is refused."""
        return f"{self.id}:{self.session_version or 0}"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return bool(self.active)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LoginAttempt(db.Model):
    """One row per login attempt: throttling reads the recent failures per account and per address."""

    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Customer(db.Model):
    """A customer with their latest scores, denormalised so lists filter and sort with indexes."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), index=True)
    sms_consent: Mapped[str] = mapped_column(String(12), default="unknown")
    sms_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sms_consent_source: Mapped[str | None] = mapped_column(String(40))
    sms_consent_by: Mapped[str | None] = mapped_column(String(254))
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Features as of the last scoring run (see preprocessing.features).
    monetary: Mapped[Decimal | None] = mapped_column(MONEY)
    frequency: Mapped[int | None] = mapped_column(Integer)
    recency: Mapped[int | None] = mapped_column(Integer)
    total_quantity: Mapped[float | None] = mapped_column(Float)
    num_unique_products: Mapped[int | None] = mapped_column(Integer)
    avg_price_per_unit: Mapped[float | None] = mapped_column(Float)
    store_visit_frequency: Mapped[int | None] = mapped_column(Integer)
    active_days: Mapped[int | None] = mapped_column(Integer)
    avg_purchase_gap_days: Mapped[float | None] = mapped_column(Float)
    # Store-local wall time, like PurchaseLine.purchased_at.
    first_purchase_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(DateTime)
    spend_12m: Mapped[Decimal | None] = mapped_column(MONEY)
    # Model outputs.
    tier: Mapped[str | None] = mapped_column(String(16))
    churn_probability: Mapped[float | None] = mapped_column(Float)
    churn_band: Mapped[str | None] = mapped_column(String(8))
    # Probability × value (12-month CLV, else 12-month spend), stored at scoring so the at-risk list
    # reads an index in order instead of sorting every scored customer per request.
    churn_priority: Mapped[float | None] = mapped_column(Float)
    churn_reasons: Mapped[list | None] = mapped_column(JSON)
    p_alive: Mapped[float | None] = mapped_column(Float)
    # Chance of at least one purchase in the next 12 months (what the pages show as "still a customer").
    p_return_12m: Mapped[float | None] = mapped_column(Float)
    expected_purchases_90d: Mapped[float | None] = mapped_column(Float)
    clv_12m: Mapped[Decimal | None] = mapped_column(MONEY)
    # New / Active / At risk / Lapsing / Lost (preprocessing.lifecycle), set at scoring.
    lifecycle: Mapped[str | None] = mapped_column(String(10))
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sms_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # From the customers file's optional `birthday` column (the year may be a placeholder); the birthday flow reads it.
    birthday: Mapped[date | None] = mapped_column(Date)
    # Search keys kept by the database itself (generated columns: every writer, the importer's SQL included,
    # keeps them right): lower-case id, name and e-mail, and the phone's digits. Prefix searches read them
    # through b-tree indexes (services/customers/search.py); PostgreSQL's use text_pattern_ops.
    search_id: Mapped[str | None] = mapped_column(String(64), Computed("lower(external_id)", persisted=True))
    search_name: Mapped[str | None] = mapped_column(String(200), Computed("lower(name)", persisted=True))
    search_email: Mapped[str | None] = mapped_column(String(254), Computed("lower(email)", persisted=True))
    search_phone: Mapped[str | None] = mapped_column(String(20), Computed("replace(phone, '+', '')", persisted=True))
    store: Mapped[Store | None] = relationship()

    __table_args__ = (
        # A store's list filtered by tier (and band) in id order: one index range (keyset pages).
        Index("ix_customers_store_tier_band", "store_id", "tier", "churn_band", "id"),
        Index("ix_customers_store_band", "store_id", "churn_band"),
        Index("ix_customers_churn_probability", "churn_probability"),
        Index("ix_customers_monetary", "monetary"),
        Index("ix_customers_name", "name"),
        Index("ix_customers_recency", "recency"),
        Index("ix_customers_frequency", "frequency"),
        Index("ix_customers_clv_12m", "clv_12m"),
        Index("ix_customers_last_purchase_at", "last_purchase_at"),
        Index("ix_customers_store_monetary", "store_id", "monetary"),
        Index("ix_customers_store_churn", "store_id", "churn_probability"),
        Index("ix_customers_store_lifecycle", "store_id", "lifecycle"),
        Index("ix_customers_churn_priority", "churn_priority", "id"),
        # A tier's lowest spend (the customer page's "how far to the next reward") is one index seek.
        Index("ix_customers_tier_floor", "tier", "erased_at", "monetary"),
        *(
            Index(f"ix_customers_{col}", col, postgresql_ops={col: "text_pattern_ops"})
            for col in ("search_id", "search_name", "search_email", "search_phone")
        ),
    )

    @property
    def first_name(self) -> str:
        return (self.name or "").split(" ")[0]


class ConsentEvent(db.Model):
    """The legal record of every SMS consent change; kept even when a customer is erased."""

    __tablename__ = "consent_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(12))
    source: Mapped[str] = mapped_column(String(40))  # import | staff | sms_keyword | twilio_21610
    keyword: Mapped[str | None] = mapped_column(String(20))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_email: Mapped[str | None] = mapped_column(String(254))
    detail: Mapped[str | None] = mapped_column(String(400))


class Product(db.Model):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    category: Mapped[str | None] = mapped_column(String(120))
    price: Mapped[Decimal | None] = mapped_column(PRICE)


class StockLevel(db.Model):
    __tablename__ = "stock_levels"
    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    initial_stock: Mapped[Decimal | None] = mapped_column(QTY)
    total_sold: Mapped[Decimal | None] = mapped_column(QTY)
    as_of: Mapped[date | None] = mapped_column(Date)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"))
    product: Mapped[Product] = relationship()
    __table_args__ = (UniqueConstraint("product_id", "store_id", name="uq_stock_product_store"),)


class PurchaseLine(db.Model):
    """One purchase line. Transactions are the lines sharing ``transaction_ref``.

    Natural key: (transaction_ref, product, line_no) where line_no is the n-th identical line
    within the transaction, so re-importing a file adds nothing twice.
    """

    __tablename__ = "purchase_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_ref: Mapped[str] = mapped_column(String(100))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    line_no: Mapped[int] = mapped_column(Integer, default=0)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    purchased_at: Mapped[datetime] = mapped_column(DateTime)  # store-local wall time, as imported
    quantity: Mapped[Decimal] = mapped_column(QTY)
    unit_price: Mapped[Decimal] = mapped_column(PRICE)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    coupon_code: Mapped[str | None] = mapped_column(String(40))
    import_id: Mapped[int | None] = mapped_column(ForeignKey("imports.id"), index=True)
    __table_args__ = (
        UniqueConstraint("transaction_ref", "product_id", "line_no", name="uq_line_natural_key"),
        Index("ix_lines_customer_date", "customer_id", "purchased_at"),
        Index("ix_lines_store_date", "store_id", "purchased_at"),
    )


class ImportRun(db.Model):
    """One uploaded or CLI-imported file and its outcome (the imports history)."""

    __tablename__ = "imports"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # transactions | stock | customers
    filename: Mapped[str] = mapped_column(String(255))
    stored_path: Mapped[str | None] = mapped_column(String(500))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    user_email: Mapped[str | None] = mapped_column(String(254))
    source: Mapped[str] = mapped_column(String(8), default="web")  # web | cli
    status: Mapped[str] = mapped_column(String(16), default="pending")
    layout: Mapped[str | None] = mapped_column(String(40))
    mapping: Mapped[dict | None] = mapped_column(JSON)
    options: Mapped[dict | None] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    valid_rows: Mapped[int] = mapped_column(Integer, default=0)
    rejected_rows: Mapped[int] = mapped_column(Integer, default=0)
    new_rows: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_rows: Mapped[int] = mapped_column(Integer, default=0)
    anonymous_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    undone_by: Mapped[str | None] = mapped_column(String(254))
    job_id: Mapped[str | None] = mapped_column(String(36))


class ImportStore(db.Model):
    """A store an import wrote to: only a user whose scope covers every one of them sees or undoes the import."""

    __tablename__ = "import_stores"
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), primary_key=True, index=True)


class ImportProblem(db.Model):
    """A rejected row or a warning of an import: row number, column, value and reason."""

    __tablename__ = "import_problems"
    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("imports.id"), index=True)
    row: Mapped[int] = mapped_column(Integer)
    column: Mapped[str] = mapped_column(String(100))
    value: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(8), default="error")


class Job(db.Model):
    """A background job's state, kept in the database so every web worker can show it."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    func: Mapped[str] = mapped_column(String(200))
    kwargs: Mapped[dict | None] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued|running|done|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    user_email: Mapped[str | None] = mapped_column(String(254))
    # The store whose data the job reads or writes; None: chain-wide (admins and the job's starter only).
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Setting(db.Model):
    """An admin's override of a setting; defaults live in code (portal/services/settings.py)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(254))


class AuditEntry(db.Model):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_email: Mapped[str | None] = mapped_column(String(254), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict | None] = mapped_column(JSON)
    address: Mapped[str | None] = mapped_column(String(64))


class TierChange(db.Model):
    __tablename__ = "tier_changes"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    old_tier: Mapped[str | None] = mapped_column(String(16))
    new_tier: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200))


class ModelRecord(db.Model):
    """A trained model file and its manifest entry, so every host can verify it runs the same model."""

    __tablename__ = "model_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), index=True)  # segmentation | churn | bundles | clv
    files: Mapped[dict] = mapped_column(JSON)  # file name -> sha256
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    manifest: Mapped[dict] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class DashboardSummary(db.Model):
    """The dashboard's heavy numbers for one scope ("all" or a store id), computed after each scoring run.

    Revenue by month and tier, cohort retention and the 30-day revenue read every purchase line
    (seconds at 100k customers), so they are computed once and stored; ``version`` fingerprints the
    data they were computed from, so a page can tell when purchases changed since.
    See ``portal/services/dashboard_summary.py``.
    """

    __tablename__ = "dashboard_summaries"
    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    version: Mapped[str] = mapped_column(String(200))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    data: Mapped[dict] = mapped_column(JSON)


class CustomerSummary(db.Model):
    """One store's customer-level summary cube: per (tier, band, lifecycle), counts (all, scored, active,
    recent, priced, opted out) and sums (spend, 12-month spend, value at risk), and the latest score time.

    Computed when the store's customers change (scoring, imports, erasure, API upserts) so the dashboard,
    /tiers and /churn read a few stored rows instead of aggregating the customers table per request.
    See ``portal/services/summaries/customers.py``.
    """

    __tablename__ = "customer_summaries"
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data: Mapped[dict] = mapped_column(JSON)


class BundleRule(db.Model):
    __tablename__ = "bundle_rules"
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model_records.id"), index=True)
    antecedents: Mapped[list] = mapped_column(JSON)  # product external ids
    consequents: Mapped[list] = mapped_column(JSON)
    antecedent_names: Mapped[str] = mapped_column(Text, default="")
    consequent_names: Mapped[str] = mapped_column(Text, default="")
    support: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    lift: Mapped[float] = mapped_column(Float)
    baskets: Mapped[int] = mapped_column(Integer)


class SavedSegment(db.Model):
    __tablename__ = "saved_segments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    list_name: Mapped[str] = mapped_column(String(40), default="customers")
    query: Mapped[str] = mapped_column(Text, default="")
    owner_email: Mapped[str] = mapped_column(String(254))
    # The owner's store scope when saved; None: all stores (seen only by users who see all stores).
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Campaign(db.Model):
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    audience: Mapped[str] = mapped_column(Text, default="")  # the list filter query string
    template: Mapped[str] = mapped_column(Text)
    control_share: Mapped[float] = mapped_column(Float, default=0.1)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    exclusions: Mapped[dict | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set on the one campaign per flow per day that carries an automation's messages (portal/services/flows/).
    flow_id: Mapped[int | None] = mapped_column(ForeignKey("flows.id"), index=True)


class OutboxMessage(db.Model):
    """One campaign recipient: fixed when the campaign is created; unique per (campaign, customer)."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    group: Mapped[str] = mapped_column(String(8))  # message | control
    phone: Mapped[str | None] = mapped_column(String(20))
    body: Mapped[str | None] = mapped_column(Text)
    coupon_code: Mapped[str | None] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(String(400))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_by: Mapped[str | None] = mapped_column(String(254))
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", name="uq_outbox_campaign_customer"),
        Index("ix_outbox_campaign_status", "campaign_id", "status"),
        # The campaign page's recipients, a page at a time in id order (keyset): no sort of 100k rows.
        Index("ix_outbox_campaign_id", "campaign_id", "id"),
    )


class CampaignSummary(db.Model):
    """A campaign's numbers (delivery, results window, list figures), computed when its data changes.

    Pages read this row instead of aggregating the outbox and purchase lines per request;
    ``changed_at`` marks a change not yet folded in (a refresh job clears it); ``lines_changed`` says
    that it touched purchase lines (the window's purchases are measured again, not only the outbox).
    See ``portal/services/summaries/campaigns.py``.
    """

    __tablename__ = "campaign_summaries"
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lines_changed: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict] = mapped_column(JSON)


class SmsEvent(db.Model):
    """A Twilio webhook as received (status callback or inbound reply), for idempotency and audit."""

    __tablename__ = "sms_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # status | inbound
    message_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[int | None] = mapped_column(Integer)
    from_phone: Mapped[str | None] = mapped_column(String(20))
    keyword: Mapped[str | None] = mapped_column(String(20))
    payload: Mapped[dict | None] = mapped_column(JSON)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Inbound replies that are not STOP/HELP/START stay unread for the store's managers until viewed.
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_by: Mapped[str | None] = mapped_column(String(254))

    # A customer's replies on their page's timeline: kind=inbound rows for one phone, newest first.
    __table_args__ = (
        Index("ix_sms_events_phone", "from_phone", "received_at"),
        # The unread-replies badge (portal/services/flows/replies.py) reads inbound rows only.
        Index("ix_sms_events_kind_read", "kind", "read_at"),
    )


class Flow(db.Model):
    """An automation of one store (win-back, near next tier, ...): its switch, template, cooldown and limits."""

    __tablename__ = "flows"
    id: Mapped[int] = mapped_column(primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    kind: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    template: Mapped[str] = mapped_column(Text)
    cooldown_days: Mapped[int] = mapped_column(Integer, default=30)
    params: Mapped[dict | None] = mapped_column(JSON)
    control_share: Mapped[float] = mapped_column(Float, default=0.1)
    daily_limit: Mapped[int] = mapped_column(Integer, default=500)
    expiry_days: Mapped[int] = mapped_column(Integer, default=14)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(254))
    __table_args__ = (UniqueConstraint("store_id", "kind", name="uq_flow_store_kind"),)


class FlowEntry(db.Model):
    """A customer entering a flow's episode: the exactly-once key, the random group, the day's campaign row."""

    __tablename__ = "flow_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("flows.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    episode_key: Mapped[str] = mapped_column(String(60))
    group: Mapped[str] = mapped_column(String(8))  # message | control
    entered_on: Mapped[date] = mapped_column(Date)  # the store-local day of the run
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    __table_args__ = (
        UniqueConstraint("flow_id", "customer_id", "episode_key", name="uq_flow_entry_episode"),
        Index("ix_flow_entries_flow_day", "flow_id", "entered_on"),
    )


class MessageTemplate(db.Model):
    """An admin's version of a library message template (win-back, tier-up…) for all stores or one store.

    Purposes and their default texts live in portal/services/campaigns/templates.py; a row with no
    store overrides the default for every store, a row with a store overrides it for that store only.
    """

    __tablename__ = "message_templates"
    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(254))
    __table_args__ = (UniqueConstraint("purpose", "store_id", name="uq_message_template_purpose_store"),)


class ApiToken(db.Model):
    """A user's API token: only the sha256 of its secret is kept; it sees exactly what its user sees.

    Revocation, expiry and the user's deactivation take effect on the next request (checked every time).
    """

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown on the tokens page to tell tokens apart
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[User] = relationship()


class ApiIdempotencyKey(db.Model):
    """The first answer to an API write sent with an ``Idempotency-Key``: a replay gets it back unchanged."""

    __tablename__ = "api_idempotency_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_api_idempotency_token_key"),)


class MailPreference(db.Model):
    """Which e-mails a user gets. No row means the defaults: every alert, the digest on Monday at 08:00."""

    __tablename__ = "mail_preferences"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    digest: Mapped[bool] = mapped_column(Boolean, default=True)
    risk: Mapped[bool] = mapped_column(Boolean, default=True)
    failures: Mapped[bool] = mapped_column(Boolean, default=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=True)
    optouts: Mapped[bool] = mapped_column(Boolean, default=True)
    digest_weekday: Mapped[int] = mapped_column(Integer, default=0)  # 0 Monday … 6 Sunday, store-local
    digest_hour: Mapped[int] = mapped_column(Integer, default=8)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MailEvent(db.Model):
    """Something that may deserve an e-mail (a valuable customer turning High, a failed import, a pause),
    recorded once: UNIQUE (kind, event_key), inserted with ON CONFLICT DO NOTHING."""

    __tablename__ = "mail_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    event_key: Mapped[str] = mapped_column(String(120))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    data: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    __table_args__ = (UniqueConstraint("kind", "event_key", name="uq_mail_event_kind_key"),)


class MailMessage(db.Model):
    """One e-mail to one user: UNIQUE (user, kind, event or period key), claimed before it is sent.

    status: pending → sending (claimed, committed before SMTP) → sent | logged (no MAIL_SERVER) | failed;
    a row left in sending by a dead worker becomes unknown and is never re-sent by itself.
    """

    __tablename__ = "mail_outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    to_address: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(20))
    event_key: Mapped[str] = mapped_column(String(120))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    unsubscribe_url: Mapped[str | None] = mapped_column(String(600))
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(500))
    message_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    __table_args__ = (UniqueConstraint("user_id", "kind", "event_key", name="uq_mail_user_kind_key"),)


class MailSlot(db.Model):
    """An hour whose mail jobs were queued (one process claims each hour: its INSERT is the claim)."""

    __tablename__ = "mail_slots"
    slot: Mapped[str] = mapped_column(String(20), primary_key=True)  # "2026-12-07T08" (UTC)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEndpoint(db.Model):
    """An admin's URL that receives signed event notifications (portal/services/webhooks_out/)."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    events: Mapped[list] = mapped_column(JSON)
    # The signing key must be readable to sign with, so it is stored as is; the page shows it once.
    secret: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
    """One event sent (or to be sent) to one endpoint, with its attempts and the last response."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|retrying|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_response: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RescoreQueue(db.Model):
    """A customer whose purchases changed outside a full rescore (an API batch), waiting for an incremental rescore.

    One row per customer however many batches named them (a re-queue moves ``queued_at``); the rescore job
    deletes a row only if ``queued_at`` is still the one it read, so a batch arriving mid-rescore is rescored again.
    """

    __tablename__ = "rescore_queue"
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
